"""LeRobotDataset v3.0 export and import (`robot-stack dataset export/import --format lerobot`).

Layout written (LeRobot `codebase_version` "v3.0", field definitions as in lerobot's
`datasets/utils.py`, `lerobot_dataset.py`, `compute_stats.py` and the v2.1 -> v3.0 converter):

    meta/info.json                            schema, fps, totals, chunks_size, file size limits, path templates
    meta/stats.json                           per feature min/max/mean/std/count (+ q01..q99); images per
                                              channel in [0, 1], shape (3, 1, 1)
    meta/tasks.parquet                        task_index, task string as the (pandas) index
    meta/episodes/chunk-XXX/file-XXX.parquet  one row per episode: tasks, length, dataset_from/to_index,
                                              data/..., videos/<key>/..., stats/<feature>/<stat>
    data/chunk-XXX/file-XXX.parquet           one row per frame: features, timestamp, frame_index, episode_index,
                                              index, task_index (several episodes per file)
    videos/<key>/chunk-XXX/file-XXX.mp4       episodes concatenated, frame k of a file at PTS k / fps
    meta/robot_stack.json                     robot-stack extras (source streams, stamps, rates, success); a
                                              separate file so LeRobot readers never see unknown info.json keys

The episode store keeps every stream at its own rate; LeRobot is fixed-rate. Each episode is resampled
on the grid t_k = t0 + k / fps from the latest first stamp to the earliest last stamp of the exported
streams: low-dim values interpolated, images the latest frame at or before each tick. `timestamp` is
exactly k / fps, so data rows and video frames agree. Import (`data.formats.lerobot_import`) reads
v3.0 datasets written here or by LeRobot back into the episode store.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

import data.video  # noqa: F401  (sets SVT_LOG before any encoder starts)
from data.align import interpolate, previous_index, uniform_times
from data.features import DEFAULT_FIELDS, Feature, default_features, feature_values, parse_features
from data.formats import register_format
from data.formats.lerobot_files import (
    ShardWriter,
    VideoShards,
    aggregate_stats,
    lowdim_stats,
    write_episodes,
    write_tasks,
)
from data.store import EpisodeReader, EpisodeStore, StoreError, remove_tree, write_json

CODEBASE_VERSION = "v3.0"
CHUNK_FILE = "chunk-{chunk_index:03d}/file-{file_index:03d}"
DATA_PATH = "data/" + CHUNK_FILE + ".parquet"
VIDEO_PATH = "videos/{video_key}/" + CHUNK_FILE + ".mp4"
EPISODES_PATH = "meta/episodes/" + CHUNK_FILE + ".parquet"
EXTRAS_PATH = "meta/robot_stack.json"
EXTRAS_FORMAT = "robot_stack.lerobot_extras"
INDEX_FEATURES = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}
Progress = Callable[[int, int], None] | None


@register_format("lerobot")
class LeRobotFormat:
    """LeRobotDataset v3.0. The file limits are parameters so small values can force many files and chunks."""

    def __init__(self, *, chunks_size: int = 1000, data_files_size_in_mb: float = 100,
                 video_files_size_in_mb: float = 200, codec: str = "libsvtav1", crf: int = 30,
                 robot_type: str | None = None):
        if chunks_size < 1 or data_files_size_in_mb <= 0 or video_files_size_in_mb <= 0:
            raise StoreError("chunks_size and the file size limits must be positive")
        self.chunks_size, self.codec, self.crf, self.robot_type = int(chunks_size), codec, int(crf), robot_type
        self.data_mb, self.video_mb = data_files_size_in_mb, video_files_size_in_mb

    def export(self, store: EpisodeStore, out: str | Path, *, episodes: list[int] | None = None,
               features: dict[str, Feature] | None = None, fps: float | None = None,
               progress: Progress = None) -> Path:
        out = Path(out)
        indices = list(store.episodes() if episodes is None else episodes)
        if not indices:
            raise StoreError(f"{store.root}: no episodes to export")
        if out.exists() and any(out.iterdir()):
            raise StoreError(f"{out} exists and is not empty; export into a new directory")
        first = store.episode(indices[0])
        if features and not all(isinstance(f, Feature) for f in features.values()):
            features = parse_features(features)            # as written in YAML/JSON
        features = dict(features or default_features(first))
        if not features:
            raise StoreError(f"episode {first.index}: no stream maps to a feature; pass features=")
        rate = _export_fps(first, features, fps)
        created = not out.exists()
        run = _Export(self, out, features, rate)
        try:
            for n, index in enumerate(indices):
                run.add_episode(store.episode(index))
                if progress:
                    progress(n + 1, len(indices))
            run.finish(first)
        except BaseException:
            run.abort()
            if created:
                remove_tree(out)          # no half-written dataset left behind
            raise
        return out

    def import_(self, src: str | Path, store: EpisodeStore, *, progress: Progress = None) -> list[int]:
        from data.formats.lerobot_import import import_dataset

        return import_dataset(Path(src), store, progress=progress)


def _export_fps(episode: EpisodeReader, features: dict[str, Feature], fps: float | None) -> int:
    """`fps` (a whole number: LeRobot's fps is an int), else the state stream's recorded rate, rounded."""
    if fps is None:
        order = sorted(features.values(), key=lambda f: ("state", "action", "lowdim", "image").index(f.kind))
        stats = episode.meta.get("stream_stats", {})
        rates = [stats.get(f.stream, {}).get("rate_hz") or 0.0 for f in order]
        fps = round(next((r for r in rates if r > 0), 0.0))
        if fps < 1:
            raise StoreError(f"episode {episode.index}: no recorded rate to export at; pass fps=")
    if fps <= 0 or abs(fps - round(fps)) > 1e-6:
        raise StoreError(f"cannot export at fps={fps}: LeRobot datasets have a whole, positive fps")
    return int(round(fps))


class _Export:
    """One export run: writes data/video shards per episode, then the meta files."""

    def __init__(self, fmt: LeRobotFormat, out: Path, features: dict[str, Feature], fps: int):
        self.fmt, self.out, self.features, self.fps = fmt, out, features, fps
        self.data = ShardWriter(out, DATA_PATH, fmt.data_mb, fmt.chunks_size)
        self.tmp = tempfile.TemporaryDirectory(prefix="lerobot-export-")
        self.videos = {name: VideoShards(out, name, VIDEO_PATH, fmt.video_mb, fmt.chunks_size, fps, fmt.codec,
                                         fmt.crf, Path(self.tmp.name)) for name, f in features.items()
                       if f.kind == "image"}
        self.specs: dict[str, dict[str, Any]] = {}      # feature name -> LeRobot feature dict
        self.tasks: dict[str, int] = {}
        self.rows: list[dict[str, Any]] = []
        self.extras: list[dict[str, Any]] = []
        self.episode_stats: list[dict[str, Any]] = []
        self.total = 0

    def add_episode(self, ep: EpisodeReader) -> None:
        n_ep = len(self.rows)
        times = self._grid(ep)
        task = str(ep.meta.get("task") or "")
        task_index = self.tasks.setdefault(task, len(self.tasks))
        columns, stats = self._lowdim(ep, times)
        t = len(times)
        index_cols = {"timestamp": (np.arange(t) / self.fps).astype(np.float32), "frame_index": np.arange(t),
                      "episode_index": np.full(t, n_ep), "index": self.total + np.arange(t),
                      "task_index": np.full(t, task_index)}
        for key, values in index_cols.items():
            stats[key] = lowdim_stats(values.reshape(-1, 1))
        table = _frame_table(columns, index_cols, self.specs)
        row: dict[str, Any] = {"episode_index": n_ep, "tasks": [task], "length": t}
        chunk, file = self.data.add(table)
        row.update({"data/chunk_index": chunk, "data/file_index": file, "dataset_from_index": self.total,
                    "dataset_to_index": self.total + t})
        for name, shards in self.videos.items():
            frames = _frames_on_grid(ep, self.features[name], times)
            chunk, file, t0, t1, shape, fstats = shards.add(frames, t)
            self._video_spec(name, shape)
            stats[name] = fstats
            row.update({f"videos/{name}/chunk_index": chunk, f"videos/{name}/file_index": file,
                        f"videos/{name}/from_timestamp": t0, f"videos/{name}/to_timestamp": t1})
        stats = {name: stats[name] for name in [*self.features, *INDEX_FEATURES]}       # LeRobot's column order
        row.update({f"stats/{name}/{k}": v.tolist() for name, s in stats.items() for k, v in s.items()})
        self.rows.append(row)
        self.extras.append(_episode_extras(ep, n_ep, int(times[0]), self.features))
        self.episode_stats.append(stats)
        self.total += t

    def _grid(self, ep: EpisodeReader) -> np.ndarray:
        firsts, lasts = [], []
        for name, feat in self.features.items():
            stamps = ep.stamps(feat.stream)
            if len(stamps) == 0:
                raise StoreError(f"episode {ep.index}: stream '{feat.stream}' (feature '{name}') has no samples; "
                                 "leave the episode out (episodes=) or drop the feature")
            firsts.append(int(stamps[0]))
            lasts.append(int(stamps[-1]))
        if max(firsts) > min(lasts):
            raise StoreError(f"episode {ep.index}: the streams of {sorted(self.features)} do not overlap in time")
        return uniform_times(max(firsts), min(lasts), self.fps)

    def _lowdim(self, ep: EpisodeReader, times: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        columns, stats = {}, {}
        for name, feat in self.features.items():
            if feat.kind == "image":
                continue
            stamps, values = feature_values(ep, feat)
            values = interpolate(stamps, values, times).astype(np.float32)
            spec = {"dtype": "float32", "shape": [values.shape[1]], "names": _names(ep, feat, values.shape[1])}
            if self.specs.setdefault(name, spec)["shape"] != spec["shape"]:
                raise StoreError(f"episode {ep.index}: feature '{name}' has shape {spec['shape']}, "
                                 f"earlier episodes {self.specs[name]['shape']}")
            columns[name] = values
            stats[name] = lowdim_stats(values)
        return columns, stats

    def _video_spec(self, name: str, shape: tuple[int, int, int]) -> None:
        spec = {"dtype": "video", "shape": list(shape), "names": ["height", "width", "channels"]}
        if self.specs.setdefault(name, spec)["shape"] != spec["shape"]:
            raise StoreError(f"feature '{name}': frames of {list(shape)}, earlier episodes {self.specs[name]['shape']}")

    def abort(self) -> None:
        for closer in (self.data.close, *(v.close for v in self.videos.values())):
            try:
                closer()
            except Exception:  # noqa: BLE001  (already failing: the first error is the one reported)
                pass
        self.tmp.cleanup()

    def finish(self, first: EpisodeReader) -> None:
        self.data.close()
        for shards in self.videos.values():
            shards.close()
        self.tmp.cleanup()
        for name, shards in self.videos.items():
            self.specs[name]["info"] = shards.video_info()
        ordered = {name: self.specs[name] for name in self.features}
        (self.out / "meta").mkdir(parents=True, exist_ok=True)
        info = {"codebase_version": CODEBASE_VERSION, "robot_type": self.fmt.robot_type or _robot_type(first),
                "total_episodes": len(self.rows), "total_frames": self.total, "total_tasks": len(self.tasks),
                "chunks_size": self.fmt.chunks_size, "data_files_size_in_mb": self.fmt.data_mb,
                "video_files_size_in_mb": self.fmt.video_mb, "fps": self.fps,
                "splits": {"train": f"0:{len(self.rows)}"}, "data_path": DATA_PATH,
                "video_path": VIDEO_PATH if self.videos else None, "features": {**ordered, **INDEX_FEATURES}}
        write_json(self.out / "meta" / "info.json", info)
        write_json(self.out / "meta" / "stats.json",
                   {k: {s: v.tolist() for s, v in st.items()} for k, st in aggregate_stats(self.episode_stats).items()})
        write_tasks(self.out / "meta" / "tasks.parquet", list(self.tasks))
        write_episodes(self.out, EPISODES_PATH, self.rows, self.fmt.data_mb, self.fmt.chunks_size)
        features = {name: {"stream": f.stream, "field": f.field, "kind": f.kind,
                           "type": first.streams[f.stream].type if f.stream in first.streams else "",
                           "topic": first.streams[f.stream].topic if f.stream in first.streams else ""}
                    for name, f in self.features.items()}
        write_json(self.out / EXTRAS_PATH, {"format": EXTRAS_FORMAT, "version": 1, "features": features,
                                            "episodes": self.extras})


def _frame_table(columns: dict[str, np.ndarray], index_cols: dict[str, np.ndarray],
                 specs: dict[str, dict[str, Any]]) -> pa.Table:
    """One episode's rows: features (shape (1,) -> scalar column, (n,) -> fixed-size list) then the index columns."""
    arrays = {}
    for name, values in columns.items():
        flat = pa.array(values.reshape(-1), pa.float32())
        dim = values.shape[1]
        arrays[name] = flat if dim == 1 else pa.FixedSizeListArray.from_arrays(flat, type=pa.list_(pa.float32(), dim))
    arrays["timestamp"] = pa.array(index_cols["timestamp"], pa.float32())
    for key in ("frame_index", "episode_index", "index", "task_index"):
        arrays[key] = pa.array(index_cols[key].astype(np.int64))
    return pa.table(arrays)


def _frames_on_grid(ep: EpisodeReader, feat: Feature, times: np.ndarray):
    """The latest frame at or before each grid time, decoded once in order (the grid starts after frame 0)."""
    picks = np.maximum(previous_index(ep.stamps(feat.stream), times), 0)
    j = 0
    for i, (_stamp, rgb) in enumerate(ep.frames(feat.stream)):
        while j < len(picks) and picks[j] == i:
            yield rgb
            j += 1
        if j == len(picks):
            return
    if j < len(picks):
        raise StoreError(f"episode {ep.index}: video '{feat.stream}' decodes fewer frames than its table lists")


def _names(ep: EpisodeReader, feat: Feature, dim: int) -> list[str]:
    """Joint names for JointState fields, sub-field names for prefixed scalar fields, else field_i."""
    table = ep.table(feat.stream)
    field = feat.field or DEFAULT_FIELDS.get(ep.streams[feat.stream].type, "")
    if "name" in table.column_names and table.num_rows and field in ("position", "velocity", "effort"):
        names = table.column("name")[0].as_py() or []
        if len(names) == dim:
            return [str(n) for n in names]
    if field not in table.column_names:
        sub = [c[len(field) + 1:] for c in table.column_names if c.startswith(f"{field}.")]
        if len(sub) == dim:
            return sub
    return [field] if dim == 1 else [f"{field}_{i}" for i in range(dim)]


def _robot_type(ep: EpisodeReader) -> str | None:
    robot = ep.meta.get("robot_type", ep.meta.get("robot"))
    if isinstance(robot, dict):
        robot = robot.get("type") or robot.get("name")
    return str(robot) if robot else None


def _episode_extras(ep: EpisodeReader, n: int, start_ns: int, features: dict[str, Feature]) -> dict[str, Any]:
    stats = ep.meta.get("stream_stats", {})
    streams = {f.stream for f in features.values()}
    return {"episode_index": n, "source_episode": ep.index, "start_ns": start_ns, "success": ep.meta.get("success"),
            "task": ep.meta.get("task"), "robot": ep.meta.get("robot"),
            "streams": {k: {"rate_hz": s.get("rate_hz"), "first_ns": s.get("first_ns"), "last_ns": s.get("last_ns"),
                            "count": s.get("count")} for k, s in stats.items() if k in streams}}


def load_json(path: Path) -> Any:
    if not path.exists():
        raise StoreError(f"{path} is missing: not a LeRobot v3.0 dataset")
    return json.loads(path.read_text())
