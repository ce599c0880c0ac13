"""zarr replay buffer in the Diffusion Policy layout (zarr format 2, as DP's `ReplayBuffer` reads it).

    <out>.zarr/
        data/<feature>      every episode concatenated along time, at one fixed rate `fps`
                            images uint8 (T, H, W, 3) chunked one frame per chunk; low-dim float32 (T, D)
        data/timestamp      float64 seconds since the episode's first aligned step
        meta/episode_ends   int64 cumulative episode ends (episode i is data[ends[i-1]:ends[i]])
        meta/episode_index  int64 store index of each exported episode
        .zattrs             fps, the feature map, per-episode start stamps (ns), tasks

Episodes are recorded with every stream at its own rate; export aligns them on a uniform grid at
`fps` over the span every feature's stream covers (`data.align`): low-dim values interpolated,
images the latest frame at or before each step. Feature names come from `features` or
`data.features.default_features` (`observation.state`, `action`, `observation.images.<cam>`...).

Import (a DP buffer -> episodes) maps each (T, H, W, 3) array (uint8, or float 0..255 as in DP's
PushT) to a video stream and every other array to a `sensor_msgs/JointState` stream (positions =
the flattened row, names `<key>_<i>`), stamped with `data/timestamp` when present, else step / fps.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from data.align import interpolate, previous_index, uniform_times
from data.features import Feature, default_features, feature_values
from data.formats import register_format
from data.store import EpisodeReader, EpisodeStore, StoreError, StreamSpec

DEFAULT_FPS = 10.0                 # Diffusion Policy's real-robot datasets run at 10 Hz
CHUNK_BYTES = 2_000_000            # target chunk size for low-dim arrays (as DP's optimal chunks)
IMAGE_BLOCK = 64                   # frames decoded and written per block
Progress = Callable[[int, int], None] | None


def _compressor():
    import numcodecs

    return numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.NOSHUFFLE)   # DP's default


def zarr_path(out: str | Path) -> Path:
    out = Path(out)
    return out if out.suffix == ".zarr" else out.with_name(out.name + ".zarr")


@register_format("zarr")
class ZarrFormat:
    """Diffusion Policy replay buffer (`data/<key>`, `meta/episode_ends`)."""

    suffix = ".zarr"

    def export(self, store: EpisodeStore, out: str | Path, *, episodes: list[int] | None = None,
               features: dict[str, Feature] | None = None, fps: float | None = None,
               progress: Progress = None) -> Path:
        import zarr

        path = zarr_path(out)
        indices = store.episodes() if episodes is None else list(episodes)
        if not indices:
            raise StoreError(f"{store.root}: no episodes to export")
        if path.exists():
            raise StoreError(f"{path} exists already; choose a new output path")
        fps = float(fps or DEFAULT_FPS)
        if not fps > 0:
            raise StoreError(f"fps must be positive, got {fps}")
        features = dict(features or default_features(store.episode(indices[0])))
        if not features:
            raise StoreError(f"episode {indices[0]}: no exportable streams; pass a feature map")
        grids = [episode_grid(store.episode(i), features, fps) for i in indices]    # small: stamps only
        ends = np.cumsum([len(g) for g in grids]).astype(np.int64)
        root = zarr.open_group(str(path), mode="w-", zarr_format=2)
        try:
            tasks = _fill(root.create_group("data"), store, indices, grids, features, progress)
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)       # no half-written buffer left behind
            raise
        meta = root.create_group("meta")
        meta.create_array("episode_ends", data=ends, chunks=(len(ends),), compressors=None)
        meta.create_array("episode_index", data=np.asarray(indices, np.int64), chunks=(len(ends),), compressors=None)
        root.attrs.update({"format": "diffusion_policy.replay_buffer", "fps": fps,
                           "episode_start_ns": [int(g[0]) for g in grids], "tasks": tasks, "source": str(store.root),
                           "features": {k: {"stream": f.stream, "field": f.field, "kind": f.kind}
                                        for k, f in features.items()}})
        return path

    def import_(self, src: str | Path, store: EpisodeStore, *, progress: Progress = None,
                task: str | None = None) -> list[int]:
        return import_buffer(Path(src), store, progress=progress, task=task)


# --- export ---------------------------------------------------------------------------------------
def _fill(data, store: EpisodeStore, indices: list[int], grids: list[np.ndarray], features: dict[str, Feature],
          progress: Progress) -> list[str]:
    """Write every episode's aligned rows into data/; returns the episodes' tasks."""
    total = sum(len(g) for g in grids)
    start, tasks = 0, []
    for n, (index, times) in enumerate(zip(indices, grids, strict=True)):
        episode = store.episode(index)
        rows = Rows(start, total)
        for name, feature in features.items():
            _write_feature(data, name, episode, feature, times, rows)
        _write(data, "timestamp", ((times - times[0]) / 1e9).astype(np.float64), rows)
        tasks.append(str(episode.meta.get("task", "")))
        start += len(times)
        if progress:
            progress(n + 1, len(indices))
    return tasks


def episode_grid(episode: EpisodeReader, features: dict[str, Feature], fps: float) -> np.ndarray:
    """(T,) int64 stamps at `fps` over the span that every feature's stream covers."""
    firsts, lasts = [], []
    for name, feature in features.items():
        if feature.stream not in episode.streams:
            raise StoreError(f"episode {episode.index}: feature '{name}' needs stream '{feature.stream}'; "
                             f"streams: {', '.join(episode.streams)}")
        stamps = episode.stamps(feature.stream)
        if len(stamps) == 0:
            raise StoreError(f"episode {episode.index}: stream '{feature.stream}' (feature '{name}') is empty")
        firsts.append(int(stamps.min()))
        lasts.append(int(stamps.max()))
    start, stop = max(firsts), min(lasts)
    if stop < start:
        raise StoreError(f"episode {episode.index}: the feature streams do not overlap in time")
    return uniform_times(start, stop, fps)


class Rows(NamedTuple):
    start: int       # first row of this episode in the concatenated arrays
    total: int       # rows of all exported episodes


def _write_feature(data, name: str, episode: EpisodeReader, feature: Feature, times: np.ndarray, rows: Rows) -> None:
    if feature.kind == "image":
        _write_frames(data, name, episode, feature.stream, times, rows)
        return
    stamps, values = feature_values(episode, feature)
    order = np.argsort(stamps, kind="stable")
    _write(data, name, interpolate(stamps[order], values[order], times).astype(np.float32), rows)


def _array(data, name: str, shape: tuple[int, ...], dtype: Any, chunks: tuple[int, ...]):
    """data/<name> of (total, *shape), created on first use; every episode must agree on the shape."""
    if name not in data:
        data.create_array(name, shape=shape, dtype=dtype, chunks=chunks, compressors=_compressor())
    array = data[name]
    if array.shape[1:] != shape[1:]:
        raise StoreError(f"feature '{name}': shape {shape[1:]} differs from earlier episodes' {array.shape[1:]}")
    return array


def _write(data, name: str, values: np.ndarray, rows: Rows) -> None:
    row_bytes = max(1, int(np.prod(values.shape[1:], dtype=np.int64)) * values.dtype.itemsize)
    chunk = min(max(1, CHUNK_BYTES // row_bytes), rows.total)
    array = _array(data, name, (rows.total, *values.shape[1:]), values.dtype, (chunk, *values.shape[1:]))
    array[rows.start: rows.start + len(values)] = values


def _write_frames(data, name: str, episode: EpisodeReader, key: str, times: np.ndarray, rows: Rows) -> None:
    """Latest frame at or before each step (the first frame before it), decoded and written in blocks."""
    table = episode.table(key)
    size = (int(table.column("height")[0].as_py()), int(table.column("width")[0].as_py()))
    array = _array(data, name, (rows.total, *size, 3), np.uint8, (1, *size, 3))
    want = np.clip(previous_index(episode.stamps(key), times), 0, None)    # frame index per step
    block: list[np.ndarray] = []
    step = 0
    for i, (_, rgb) in enumerate(episode.frames(key)):
        while step < len(want) and want[step] == i:
            block.append(rgb)
            step += 1
        if len(block) >= IMAGE_BLOCK or step == len(want):
            array[rows.start + step - len(block): rows.start + step] = np.stack(block)
            block = []
        if step == len(want):
            break
    if step != len(want):
        raise StoreError(f"episode {episode.index}: video '{key}' decoded fewer frames than its rows")


# --- import ---------------------------------------------------------------------------------------
def import_buffer(src: Path, store: EpisodeStore, *, progress: Progress = None, task: str | None = None) -> list[int]:
    """A DP replay buffer -> one episode per `meta/episode_ends` entry."""
    root = _open_buffer(src)
    ends = np.asarray(root["meta"]["episode_ends"][:], np.int64)
    keys = [k for k in root["data"].array_keys() if k != "timestamp"]
    fps = float(root.attrs.get("fps", DEFAULT_FPS))
    tasks = list(root.attrs.get("tasks", []))
    starts = list(root.attrs.get("episode_start_ns", []))
    stamps_s = root["data"]["timestamp"] if "timestamp" in root["data"] else None
    specs = [_spec_for(k, root["data"][k], fps) for k in keys]
    out = []
    for i, end in enumerate(ends):
        begin = int(ends[i - 1]) if i else 0
        rel = (np.asarray(stamps_s[begin:end], np.float64) if stamps_s is not None
               else np.arange(end - begin) / fps)
        t0 = int(starts[i]) if i < len(starts) else 0
        meta = {"task": task if task is not None else (tasks[i] if i < len(tasks) else ""),
                "source": {"format": "zarr", "path": str(src), "episode": i}}
        writer = store.new_episode(meta, specs)
        try:
            _write_episode(writer, root["data"], dict(zip(keys, specs, strict=True)), begin, int(end),
                           t0 + np.round(rel * 1e9).astype(np.int64))
        except BaseException:
            writer.discard()
            raise
        out.append(writer.commit())
        if progress:
            progress(i + 1, len(ends))
    return out


def _open_buffer(src: Path):
    import zarr

    if not src.exists():
        raise StoreError(f"{src} does not exist")
    try:
        root = zarr.open_group(str(src), mode="r")
        ok = "data" in root and "meta" in root and "episode_ends" in root["meta"]
    except Exception as exc:      # zarr raises several types for a non-zarr directory
        raise StoreError(f"{src} is not a zarr replay buffer: {exc}") from exc
    if not ok:
        raise StoreError(f"{src} is not a replay buffer (needs data/ and meta/episode_ends)")
    return root


def stream_key(name: str) -> str:
    """Feature name -> stream key, so `default_features` of the import gives the names back."""
    if name.startswith("observation.images."):
        return name[len("observation.images."):]
    if name == "observation.state":
        return "joint_states"
    return name[len("observation."):] if name.startswith("observation.") else name


def _spec_for(name: str, array, fps: float) -> StreamSpec:
    key = stream_key(name)
    topic = "/" + key.replace(".", "/")
    if not np.issubdtype(array.dtype, np.number):
        raise StoreError(f"data/{name}: dtype {array.dtype} is not numeric")
    if array.ndim == 4 and array.shape[-1] == 3:       # images (uint8, or float 0..255 as in DP's PushT)
        return StreamSpec(key, topic, "sensor_msgs/msg/Image", "video", fps=fps)
    return StreamSpec(key, topic, "sensor_msgs/msg/JointState")     # (T,), (T, D), (T, N, D): flattened rows


def _write_episode(writer, data, specs: dict[str, StreamSpec], begin: int, end: int, stamps: np.ndarray) -> None:
    from robot_stack import convert
    from robot_stack.clock import Time

    for name, spec in specs.items():
        if spec.encoding == "video":
            for s in range(begin, end, IMAGE_BLOCK):
                block = data[name][s:min(s + IMAGE_BLOCK, end)]
                block = block if block.dtype == np.uint8 else np.clip(np.rint(block), 0, 255).astype(np.uint8)
                for j, rgb in enumerate(block):
                    _wait(writer.encoders[spec.key])
                    writer.write_frame(spec.key, rgb, int(stamps[s - begin + j]))
            continue
        values = np.asarray(data[name][begin:end], np.float64).reshape(end - begin, -1)
        names = [f"{spec.key}_{i}" for i in range(values.shape[1])]
        for t, row in zip(stamps, values, strict=True):
            writer.write(spec.key, convert.joint_state(names, row, stamp=Time(int(t))), recv_ns=int(t))
        writer.flush()


def _wait(encoder: Any) -> None:
    while encoder.pending >= 128:            # import is faster than encoding: never let the queue drop
        time.sleep(0.002)

