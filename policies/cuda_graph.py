"""Capture a tensor function once as a CUDA graph and replay it for new input values (GPU serving).

`CudaGraph(fn, inputs)` runs `fn(static)` a few times on a side stream (kernel selection, allocator
warm-up), then captures one call: `static` is a dict of clones of `inputs` (all CUDA tensors on one
device) that serve as the graph's input buffers. A call `graph(values)` checks that `values` has the
same names, shapes, dtypes and device (ValueError otherwise; `matches` asks without raising), copies
them into the buffers, replays the graph and returns its static output: the next replay overwrites
it, so clone what must outlive that. `fn` must be capturable: tensor work on that device only (no
`.item()`, no host-to-device copies, no branching on tensor values); the parameters and buffers it
reads are read in place at each replay (`load_state_dict` is seen, moving the module is not).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Inputs = dict[str, torch.Tensor]


class CudaGraph:
    """`fn(inputs) -> Tensor`, captured for the names, shapes, dtypes and device of `inputs`."""

    def __init__(self, fn: Callable[[Inputs], torch.Tensor], inputs: Inputs, warmup: int = 3):
        devices = {v.device for v in inputs.values()}
        if not inputs or len(devices) != 1 or next(iter(devices)).type != "cuda":
            raise ValueError(f"CUDA graph capture needs CUDA tensors on one device, got {sorted(map(str, devices))}")
        device = next(iter(devices))
        self.inputs = {k: v.clone() for k, v in inputs.items()}
        stream = torch.cuda.Stream(device=device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream), torch.no_grad():
            for _ in range(warmup):                       # warm up kernels/allocator off the capture
                fn(self.inputs)
        torch.cuda.current_stream(device).wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), torch.no_grad():
            self.output = fn(self.inputs)

    def mismatch(self, values: Inputs) -> str | None:
        """Why `values` cannot be replayed (None: they can)."""
        if set(values) != set(self.inputs):
            return f"captured for inputs {sorted(self.inputs)}, got {sorted(values)}"
        for name, static in self.inputs.items():
            v = values[name]
            if (v.shape, v.dtype, v.device) != (static.shape, static.dtype, static.device):
                return (f"'{name}' captured as {tuple(static.shape)} {static.dtype} on {static.device}, "
                        f"got {tuple(v.shape)} {v.dtype} on {v.device}")
        return None

    def matches(self, values: Inputs) -> bool:
        return self.mismatch(values) is None

    def __call__(self, values: Inputs) -> torch.Tensor:
        problem = self.mismatch(values)
        if problem is not None:
            raise ValueError(problem)
        for name, static in self.inputs.items():
            static.copy_(values[name])
        self.graph.replay()
        return self.output
