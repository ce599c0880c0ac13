"""Training loader throughput: samples/s from the mp4-backed dataset vs the same data as raw arrays.

Both sides are `WindowDataset` with the same windows and alignment; only the frame source differs:
- video: an episode store (AV1 in fragmented MP4), decoded lazily inside the DataLoader workers and
  cached per worker (`data.loader_video.FrameCache`);
- arrays: `ArraySource`, the same episodes pre-decoded into numpy arrays before the loader starts
  (the baseline; its decoding is not timed).
Same process, DataLoader with 2 workers, shuffled, persistent workers over several epochs, the two
loaders alternating epoch by epoch (machine noise hits both alike). The first
epoch (cold: every worker decodes the episodes it meets) and the following ones (warm) are reported
separately; the goal (>= 0.5x) is checked on the whole run. Per-batch time is the wait for the next
batch in the training loop (p50/p99).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.report import percentiles, print_table, write_results

EPISODES = 8
EPISODE_S = 15.0
STATE_HZ, ACTION_HZ, CAMERA_FPS = 200, 10, 30
CONFIGS = {"1x96x96": (1, 96), "2x96x96": (2, 96)}
WINDOWS = {"n_obs": 2, "obs_rate": 10.0, "horizon": 16, "action_rate": 10.0, "sample_rate": 30.0}
BATCH, WORKERS, EPOCHS = 64, 2, 4
GOAL_RATIO = 0.5


def _make_store(root: Path, cameras: int, size: int) -> Path:
    """Episodes with JointState at 200 Hz, commands at 10 Hz and `cameras` textured cameras at 30 fps."""
    from data.store import EpisodeStore, StreamSpec
    from robot_stack import convert
    from robot_stack.clock import Time

    cams = [f"cam{c}" for c in range(cameras)]
    streams = [StreamSpec("joint_states", "/joint_states", "sensor_msgs/msg/JointState"),
               StreamSpec("joint_commands", "/joint_commands", "sensor_msgs/msg/JointState"),
               *[StreamSpec(c, f"/{c}/image_raw", "sensor_msgs/msg/Image", "video", fps=CAMERA_FPS) for c in cams]]
    store = EpisodeStore.create(root)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    for _ in range(EPISODES):
        w = store.new_episode({"task": "bench"}, streams)
        t0 = 1_000_000_000
        for i in range(int(EPISODE_S * STATE_HZ)):
            t = t0 + i * 1_000_000_000 // STATE_HZ
            w.write("joint_states", convert.joint_state([f"j{j}" for j in range(7)], rng.normal(size=7), stamp=Time(t)))
            if i % (STATE_HZ // ACTION_HZ) == 0:
                w.write("joint_commands", convert.joint_state([f"j{j}" for j in range(7)], rng.normal(size=7),
                                                              stamp=Time(t)))
        for k in range(int(EPISODE_S * CAMERA_FPS)):
            t = t0 + round(k * 1e9 / CAMERA_FPS)
            for c, cam in enumerate(cams):
                frame = ((xx + 3 * k + 40 * c) % 64 * 4 + (yy // 8) * 8) % 256
                w.write_frame(cam, np.repeat(frame[:, :, None], 3, axis=2).astype(np.uint8), t)
        w.commit()
    return root


def _loader(dataset):
    import torch
    from torch.utils.data import DataLoader

    return DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=WORKERS, persistent_workers=True,
                      generator=torch.Generator().manual_seed(0))


def _epoch(loader) -> list[float]:
    """Per-batch wait times (s) of one pass."""
    times, it = [], iter(loader)
    while True:
        t0 = time.perf_counter()
        try:
            next(it)
        except StopIteration:
            return times
        times.append(time.perf_counter() - t0)


def _compare(video, arrays) -> tuple[list[list[float]], list[list[float]]]:
    """Epochs of both loaders, alternating (arrays, mp4, arrays, ...) so machine noise hits both alike."""
    loaders = {"arrays": _loader(arrays), "mp4": _loader(video)}
    out: dict[str, list[list[float]]] = {"arrays": [], "mp4": []}
    for _ in range(EPOCHS):
        for name, loader in loaders.items():
            out[name].append(_epoch(loader))
    del loaders                                 # stops the persistent workers
    return out["arrays"], out["mp4"]


def _row(label: str, cameras: str, epochs: list[list[float]], batch: int, n_items: int) -> dict:
    cold, warm = epochs[0], [t for e in epochs[1:] for t in e]
    total = sum(sum(e) for e in epochs)
    p = percentiles(cold + warm)
    return {"cameras": cameras, "source": label, "samples_per_s": n_items * len(epochs) / total,
            "cold_samples_per_s": n_items / sum(cold), "warm_samples_per_s": n_items * (len(epochs) - 1) / sum(warm),
            "p50_ms": p["p50_us"] / 1e3, "p99_ms": p["p99_us"] / 1e3, "batches": p["n"], "batch_size": batch}


def run() -> None:
    from data.loader import WindowDataset
    from data.loader_video import ArraySource

    rows = []
    with tempfile.TemporaryDirectory(prefix="loader-bench-") as tmp:
        for label, (cameras, size) in CONFIGS.items():
            root = _make_store(Path(tmp) / label, cameras, size)
            video = WindowDataset(root, **WINDOWS)
            arrays = WindowDataset(ArraySource.from_source(video.source), **WINDOWS)
            arrays_epochs, mp4_epochs = _compare(video, arrays)
            base = _row("arrays", label, arrays_epochs, BATCH, len(arrays))
            mp4 = _row("mp4", label, mp4_epochs, BATCH, len(video))
            for key in ("samples_per_s", "cold_samples_per_s", "warm_samples_per_s"):
                mp4[f"{key.removesuffix('_samples_per_s').removesuffix('samples_per_s') or 'all'}_ratio"] = (
                    mp4[key] / base[key])
            mp4["meets_goal"] = mp4["all_ratio"] >= GOAL_RATIO
            rows += [base, mp4]
    print_table(f"Loader: mp4 (decoded in {WORKERS} workers) vs raw arrays, {EPOCHS} epochs, batch {BATCH}",
                rows, ["cameras", "source", "samples_per_s", "cold_samples_per_s", "warm_samples_per_s", "p50_ms",
                       "p99_ms", "all_ratio", "cold_ratio", "warm_ratio", "meets_goal"])
    path = write_results("loader", rows, {"goal_ratio": GOAL_RATIO, "episodes": EPISODES, "episode_s": EPISODE_S,
                                          "windows": WINDOWS, "workers": WORKERS, "epochs": EPOCHS})
    print(f"wrote {path}")


if __name__ == "__main__":
    run()
