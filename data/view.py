"""`robot-stack dataset view PATH --episode N`: a rerun recording and a static PNG summary of an episode.

The rerun recording (`.rrd`, open with `rerun FILE`) logs every stream on the `capture` timeline
at its own stamps: camera frames as images, joint positions / wrench components as scalar series,
tactile frames as 2-D marker arrows (rest position -> shear) plus the normal force. rerun is an
optional dependency (`pip install rerun-sdk`); the PNG summary only needs matplotlib: joint
positions, wrench, tactile shear/normal over time, each stream's sample times (rates and gaps at a
glance) and first/middle/last frames of every camera.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from data.features import DEFAULT_FIELDS, Feature, feature_values
from data.store import EpisodeReader, StoreError

TACTILE = "robot_stack_msgs/msg/TactileFrame"


def _lowdim_streams(ep: EpisodeReader) -> list[str]:
    return [k for k, s in ep.streams.items() if s.encoding != "video" and s.type in DEFAULT_FIELDS]


def _series(ep: EpisodeReader, key: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(t (N,) s since the episode start, values (N, D), labels) of a low-dim stream's default field."""
    stamps, values = feature_values(ep, Feature(key, "", "lowdim"))
    t0 = min(s["first_ns"] for s in ep.meta["stream_stats"].values() if s.get("first_ns") is not None)
    table = ep.table(key)
    spec = ep.streams[key]
    if spec.type == TACTILE:   # (N, rows*cols*3) -> mean shear x, y and mean normal per frame
        values = values.reshape(len(values), -1, 3).mean(axis=1)
        labels = ["mean shear x", "mean shear y", "mean normal"]
    elif "name" in table.column_names and table.num_rows and len(table.column("name")[0]) == values.shape[1]:
        labels = [str(n) for n in table.column("name")[0].as_py()]
    else:
        field = DEFAULT_FIELDS[spec.type]
        cols = [c for c in table.column_names if c.startswith(f"{field}.")]
        labels = cols if len(cols) == values.shape[1] else [f"{field}[{i}]" for i in range(values.shape[1])]
    return (stamps - t0) / 1e9, values, labels


def summary_png(ep: EpisodeReader, out: Path) -> Path:
    """A one-page summary figure of the episode (see the module docstring)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lowdim = _lowdim_streams(ep)
    videos = [k for k, s in ep.streams.items() if s.encoding == "video"]
    rows = len(lowdim) + 1 + len(videos)
    fig = plt.figure(figsize=(11, 2.4 * rows), constrained_layout=True)
    grid = fig.add_gridspec(rows, 3)
    for i, key in enumerate(lowdim):
        ax = fig.add_subplot(grid[i, :])
        t, values, labels = _series(ep, key)
        for d in range(values.shape[1]):
            ax.plot(t, values[:, d], lw=1, label=labels[d] if d < 10 else None)
        ax.set_title(f"{key} ({ep.streams[key].type})", fontsize=9)
        ax.legend(fontsize=6, ncol=5, loc="upper right")
    _timing_axis(fig.add_subplot(grid[len(lowdim), :]), ep)
    for j, key in enumerate(videos):
        frames = list(ep.frames(key))
        for c, k in enumerate(sorted({0, len(frames) // 2, max(len(frames) - 1, 0)})):
            if not frames:
                break
            ax = fig.add_subplot(grid[len(lowdim) + 1 + j, c])
            ax.imshow(frames[k][1])
            ax.set_title(f"{key} frame {k}", fontsize=8)
            ax.axis("off")
    fig.suptitle(f"episode {ep.index}: {ep.meta.get('task', '')} ({ep.duration_s:.1f} s, "
                 f"success={ep.meta.get('success')})", fontsize=10)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def _timing_axis(ax: Any, ep: EpisodeReader) -> None:
    stats = ep.meta["stream_stats"]
    t0 = min(s["first_ns"] for s in stats.values() if s.get("first_ns") is not None)
    for i, key in enumerate(ep.streams):
        t = (ep.stamps(key) - t0) / 1e9
        ax.plot(t, np.full(len(t), i), "|", ms=8)
    ax.set_yticks(range(len(ep.streams)), [f"{k} {stats[k]['rate_hz']:.0f} Hz" for k in ep.streams], fontsize=7)
    ax.set_xlabel("capture time [s]")
    ax.set_title("sample times per stream", fontsize=9)


def rerun_recording(ep: EpisodeReader, out: Path) -> Path:
    """Write a rerun `.rrd` recording of the episode."""
    try:
        import rerun as rr
    except ImportError as exc:
        raise StoreError("the rerun recording needs rerun-sdk: pip install rerun-sdk") from exc
    rec = rr.RecordingStream(f"robot_stack_episode_{ep.index}")
    for key in _lowdim_streams(ep):
        t, values, labels = _series(ep, key)
        times = rr.TimeColumn("capture", duration=t)
        rec.send_columns(f"{key}", indexes=[times], columns=rr.Scalars.columns(scalars=values))
        rec.log(f"{key}", rr.SeriesLines(names=labels[: values.shape[1]]), static=True)
    for key, spec in ep.streams.items():
        if spec.encoding == "video":
            for stamp, rgb in ep.frames(key):
                rec.set_time("capture", duration=_since(ep, stamp))
                rec.log(f"{key}/image", rr.Image(rgb))
        elif spec.type == TACTILE:
            _log_tactile(rec, rr, ep, key)
    out.parent.mkdir(parents=True, exist_ok=True)
    rec.save(str(out))
    return out


def _since(ep: EpisodeReader, stamp: int) -> float:
    t0 = min(s["first_ns"] for s in ep.meta["stream_stats"].values() if s.get("first_ns") is not None)
    return (stamp - t0) / 1e9


def _log_tactile(rec: Any, rr: Any, ep: EpisodeReader, key: str) -> None:
    for stamp, msg in ep.messages(key):
        rest = np.asarray(msg.marker_rest, np.float32).reshape(-1, 2)
        disp = np.asarray(msg.displacement, np.float32).reshape(-1, 3)
        rec.set_time("capture", duration=_since(ep, stamp))
        scale = 10.0   # shear is sub-millimetre: drawn 10x
        rec.log(f"{key}/markers", rr.Arrows2D(origins=rest * 1e3, vectors=disp[:, :2] * 1e3 * scale))
        rec.log(f"{key}/normal_force", rr.Scalars(float(msg.normal_force)))
