"""Policy inference latency: one `predict_action` (encode the observation window, sample a chunk) at
batch 1 with an image + low-dim observation, p50/p99 per variant and device.

Variants are `VARIANTS`, a list of (name, build_fn) entries; `build_fn(device)` returns a `Case` (a
zero-argument inference call, the timed iterations, extra columns) or None where the variant does
not apply to that device. Other policies (CARP, RDP slow step / fast decode) add entries to it.

Diffusion Policy rows: DDIM 16/8/4 steps at the CPU-sized network (down dims 64/128/256) and at the
paper's size (256/512/1024; only a few iterations on CPU: ~30-50 ms per denoiser step there). With
CUDA also: the paper size with the denoiser under `torch.compile(mode="reduce-overhead")` (the DDIM
updates and the encoder eager around it), and "graph": `capture_cuda_graph`, which captures the
whole chunk (encoder + every DDIM step + unnormalization) as one CUDA graph; the noise is drawn
outside it (goal: DP-DDIM16 <= 25 ms on an H100); "graph-compiled": the same with the UNet captured
as `torch.compile` builds it (inductor's fused kernels). Rows that fail (e.g. a compile error) are reported
with the error instead of stopping the suite. `encode_ms` is the observation encoder alone, run
eagerly (inside the graph it is cheaper); `ms_per_step` = (p50 - encode) / steps. `python -m benchmarks.policies N`
runs the CPU rows with N intra-op threads (on a busy 2-core machine 1 thread is often faster).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch

from benchmarks.report import percentiles, print_table, write_results

CAMERA = "observation.images.fixed"
STATE = "observation.state"
CAMERA_HW = (96, 96)
SIZES = {"cpu": {"down_dims": (64, 128, 256), "step_embed_dim": 128},
         "paper": {"down_dims": (256, 512, 1024), "step_embed_dim": 256}}
ITERS = {"cpu": 20, "paper": 3}          # timed iterations on CPU (GPU: GPU_ITERS)
GPU_ITERS = 50
GPU_GOAL_MS = 25.0                       # DP-DDIM16 at the paper size, whole-loop CUDA graph, H100


@dataclass
class Case:
    run: Callable[[], Any]               # one inference, finished when it returns (synchronised)
    iters: int
    warmup: int = 1
    info: dict[str, Any] = field(default_factory=dict)


BuildFn = Callable[[str], "Case | None"]


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _features_and_normalizer():
    from data.loader import Normalizer
    from policies.base import FeatureSpec

    features = {STATE: FeatureSpec(STATE, "state", (6,)), CAMERA: FeatureSpec(CAMERA, "image", (3, *CAMERA_HW)),
                "action": FeatureSpec("action", "action", (2,))}
    lowdim = {"kind": "state", "min": [-1.0] * 6, "max": [1.0] * 6, "mean": [0.0] * 6, "std": [1.0] * 6}
    action = {"kind": "action", "min": [-1.0] * 2, "max": [1.0] * 2, "mean": [0.0] * 2, "std": [1.0] * 2}
    image = {"kind": "image", "min": [0.0] * 3, "max": [1.0] * 3, "mean": [0.5] * 3, "std": [0.5] * 3}
    return features, Normalizer.from_stats({STATE: lowdim, CAMERA: image, "action": action})


def example_obs(n_obs: int, device: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A batch-1 raw observation window: state (1, n_obs, 6) and a camera (1, n_obs, 3, 96, 96) in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    return {f"obs.{STATE}": torch.rand(1, n_obs, 6, generator=g).to(device),
            f"obs.{CAMERA}": torch.rand(1, n_obs, 3, *CAMERA_HW, generator=g).to(device)}


def build_dp(device: str, *, size: str, steps: int, mode: str = "eager") -> Case | None:
    """DP at `size` with DDIM `steps`; mode "eager", or (CUDA only) "compile" (the denoiser) / "graph"
    (the whole chunk captured by `capture_cuda_graph`)."""
    from policies.diffusion import DiffusionConfig, DiffusionPolicy

    if mode != "eager" and device != "cuda":
        return None
    features, normalizer = _features_and_normalizer()
    config = DiffusionConfig(obs=(STATE, CAMERA), inference_steps=steps, **SIZES[size])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        policy = DiffusionPolicy(config, features, normalizer).to(device).eval()
    obs = example_obs(config.n_obs, device)
    if mode == "compile":
        policy.set_denoiser(torch.compile(policy.unet, mode="reduce-overhead"))
    elif mode in ("graph", "graph-compiled"):
        policy.capture_cuda_graph(obs, compile_unet=mode == "graph-compiled")
    gen = torch.Generator(device=device).manual_seed(0)

    def run() -> torch.Tensor:
        out = policy.predict_action(obs, generator=gen)
        _sync(device)
        return out

    with torch.no_grad():
        encode_ms = time_case(Case(lambda: (policy.encode(obs), _sync(device)), iters=7))["p50_ms"]
    params = sum(p.numel() for p in policy.parameters())
    unet = sum(p.numel() for p in policy.unet.parameters())
    iters = GPU_ITERS if device == "cuda" else ITERS[size]
    return Case(run, iters, warmup=5 if mode != "eager" else 1,
                info={"steps": steps, "params_M": params / 1e6, "unet_params_M": unet / 1e6, "mode": mode,
                      "encode_ms": encode_ms})


VARIANTS: list[tuple[str, BuildFn]] = [
    *[(f"dp-{size}-ddim{steps}", partial(build_dp, size=size, steps=steps))
      for size in ("cpu", "paper") for steps in (16, 8, 4)],
    *[(f"dp-paper-ddim{steps}-{mode}", partial(build_dp, size="paper", steps=steps, mode=mode))
      for mode in ("compile", "graph", "graph-compiled") for steps in (16, 8, 4)],
]


def build_rdp(device: str, *, part: str) -> Case | None:
    """RDP (image + state + wrench): the slow step (`predict_latent`, DDIM 8) or one fast decode (goal <= 2 ms CPU)."""
    from policies.base import FeatureSpec
    from policies.rdp import RdpConfig, ReactiveDiffusionPolicy

    features, normalizer = _features_and_normalizer()
    wrench = "observation.wrench"
    features[wrench] = FeatureSpec(wrench, "lowdim", (6,))
    stats = {**normalizer.stats, wrench: {"kind": "lowdim", "min": [-20.0] * 6, "max": [20.0] * 6,
                                          "mean": [0.0] * 6, "std": [5.0] * 6}}
    config = RdpConfig(obs=(STATE, CAMERA), fast_obs=(wrench,))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        policy = ReactiveDiffusionPolicy(config, features, type(normalizer).from_stats(stats)).to(device).eval()
    obs = {**example_obs(config.n_obs, device), f"obs.{wrench}": torch.zeros(1, config.n_obs, 6, device=device)}
    gen = torch.Generator(device=device).manual_seed(0)
    latent = policy.predict_latent(obs, generator=gen)
    reading = {wrench: torch.zeros(1, 6, device=device)}

    def run() -> torch.Tensor:
        out = policy.predict_latent(obs, generator=gen) if part == "slow" else policy.decode(latent, reading)
        _sync(device)
        return out

    counts = policy.parameter_counts()
    if part == "slow":
        params = counts["obs_encoder"] + counts["denoiser"]
        return Case(run, ITERS["cpu"], info={"steps": config.inference_steps, "params_M": params / 1e6})
    return Case(run, 200, warmup=10, info={"mode": "fast-decode", "params_M": counts["tokenizer_decoder"] / 1e6})


VARIANTS += [("rdp-slow-ddim8", partial(build_rdp, part="slow")), ("rdp-fast-decode", partial(build_rdp, part="fast"))]


def build_carp(device: str) -> Case:
    """CARP (image + state, horizon 16, default CPU size): `steps` = transformer forwards = scales (KV cache)."""
    from policies.carp import CarpConfig, CarpPolicy

    features, normalizer = _features_and_normalizer()
    config = CarpConfig(obs=(STATE, CAMERA))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        policy = CarpPolicy(config, features, normalizer).to(device).eval()
    obs = example_obs(config.n_obs, device)

    def run() -> torch.Tensor:
        out = policy.predict_action(obs)
        _sync(device)
        return out

    with torch.no_grad():
        encode_ms = time_case(Case(lambda: (policy.obs_encoder(policy.normalized_obs(obs)), _sync(device)),
                                   iters=3))["p50_ms"]
    params = sum(p.numel() for p in policy.parameters())
    info = {"steps": len(config.scales), "params_M": params / 1e6, "mode": "kv-cache", "encode_ms": encode_ms}
    return Case(run, GPU_ITERS if device == "cuda" else ITERS["cpu"], warmup=3, info=info)


VARIANTS += [("carp-scales4", build_carp)]

def time_case(case: Case) -> dict[str, Any]:
    for _ in range(case.warmup):
        case.run()
    samples = []
    for _ in range(case.iters):
        t0 = time.perf_counter()
        case.run()
        samples.append(time.perf_counter() - t0)
    p = percentiles(samples)
    return {"p50_ms": p["p50_us"] / 1e3, "p99_ms": p["p99_us"] / 1e3, "n": p["n"]}


def _row(name: str, build: BuildFn, device: str) -> dict[str, Any] | None:
    try:
        case = build(device)
        if case is None:
            return None
        row = {"variant": name, "device": device, **case.info, **time_case(case)}
    except Exception as exc:           # noqa: BLE001  (a failing variant is reported, the others still run)
        return {"variant": name, "device": device, "error": f"{type(exc).__name__}: {exc}"[:200]}
    if "steps" in row:
        row["ms_per_step"] = max(row["p50_ms"] - row.get("encode_ms", 0.0), 0.0) / row["steps"]
    if device == "cuda" and name.startswith("dp-paper-ddim16-graph"):
        row["goal_ms"], row["goal_met"] = GPU_GOAL_MS, row["p50_ms"] <= GPU_GOAL_MS
    return row


def run(variants: list[tuple[str, BuildFn]] | None = None, cpu_threads: int | None = None,
        devices: list[str] | None = None) -> list[dict[str, Any]]:
    """Every variant on `devices`: default the CPU (`cpu_threads` intra-op threads, default torch's)
    and, when present, CUDA."""
    devices = devices or ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
    default_threads = torch.get_num_threads()
    rows = []
    for device in devices:
        threads = (cpu_threads or default_threads) if device == "cpu" else default_threads
        torch.set_num_threads(threads)
        for name, build in variants or VARIANTS:
            row = _row(name, build, device)
            if row is not None:
                rows.append({**row, "threads": threads})
    torch.set_num_threads(default_threads)
    columns = ["variant", "device", "threads", "mode", "steps", "params_M", "encode_ms", "p50_ms", "p99_ms",
               "ms_per_step", "n", "goal_met", "error"]
    print_table("Policy inference latency (batch 1, image + low-dim obs)", rows, columns)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    write_results("policies", rows, {"torch": torch.__version__, "gpu": gpu})
    return rows


if __name__ == "__main__":
    import sys

    run(cpu_threads=int(sys.argv[1]) if len(sys.argv) > 1 else None)
