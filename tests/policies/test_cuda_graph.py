"""CudaGraph: capture a tensor function once, replay it for new inputs (CUDA only; the CPU checks errors)."""

from __future__ import annotations

import pytest
import torch

from policies.cuda_graph import CudaGraph


def _fn(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.tanh(inputs["x"] @ inputs["w"]) * 2.0 + 1.0


def test_needs_cuda_tensors_on_one_device():
    with pytest.raises(ValueError, match="CUDA tensors on one device"):
        CudaGraph(_fn, {"x": torch.zeros(2, 3), "w": torch.zeros(3, 3)})
    with pytest.raises(ValueError, match="CUDA tensors"):
        CudaGraph(_fn, {})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_replays_new_values_and_rejects_other_shapes():
    x, w = torch.randn(2, 3, device="cuda"), torch.randn(3, 3, device="cuda")
    graph = CudaGraph(_fn, {"x": x, "w": w})
    for _ in range(2):
        x, w = torch.randn_like(x), torch.randn_like(w)
        torch.testing.assert_close(graph({"x": x, "w": w}), _fn({"x": x, "w": w}))
    assert graph.matches({"x": x, "w": w})
    with pytest.raises(ValueError, match=r"'x' captured as \(2, 3\)"):
        graph({"x": torch.zeros(4, 3, device="cuda"), "w": w})
    with pytest.raises(ValueError, match="captured for inputs"):
        graph({"x": x})
    assert "on cpu" in graph.mismatch({"x": x.cpu(), "w": w})
