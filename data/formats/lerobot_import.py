"""Import a LeRobotDataset v3.0 (exported here or written by LeRobot) into the episode store.

One store episode per LeRobot episode. Stamps are the episode start + `timestamp` (snapped to the
k / fps grid when within LeRobot's 1e-4 s tolerance); the start is the original capture stamp when
the dataset carries `meta/robot_stack.json` (our exports), else 0. Streams:
- `observation.state` -> `joint_states`, `action` -> `joint_commands`: `sensor_msgs/msg/JointState`
  with the joint names from the feature's `names`;
- other numeric features -> `std_msgs/msg/Float64MultiArray` (key: the name without `observation.`);
- video features (`observation.images.<cam>` -> `<cam>`) -> video streams of the decoded frames.
Our exports' `robot_stack.json` restores the original stream keys, topics and success flags. Features of
dtype `image` (PNG frames inside the parquet) and `string` are not imported (a warning names them).
Task strings go to the episode meta (`task`, `tasks`).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from data.formats.lerobot import EXTRAS_FORMAT, EXTRAS_PATH, INDEX_FEATURES, load_json
from data.formats.lerobot_files import read_tasks
from data.store import EpisodeStore, StoreError, StreamSpec
from robot_stack import convert, messages
from robot_stack.clock import Time

TOLERANCE_S = 1e-4
JOINT_STATE = "sensor_msgs/msg/JointState"
MULTI_ARRAY = "std_msgs/msg/Float64MultiArray"
NUMERIC = ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "bool")


def import_dataset(src: Path, store: EpisodeStore, *, progress: Callable[[int, int], None] | None = None) -> list[int]:
    info = load_json(src / "meta" / "info.json")
    version = str(info.get("codebase_version", ""))
    if not version.startswith("v3."):
        raise StoreError(f"{src}: LeRobot dataset {version or '(no codebase_version)'} is not v3.x; convert it "
                         "with LeRobot's convert_dataset_v21_to_v30 first")
    extras = _extras(src)
    plan = stream_plan(info["features"], extras.get("features", {}))
    tasks = read_tasks(src / "meta" / "tasks.parquet")
    rows = episode_rows(src)
    by_episode = {e["episode_index"]: e for e in extras.get("episodes", [])}
    reader = _DataReader(src, info["data_path"])
    new = []
    for n, row in enumerate(rows):
        new.append(_import_episode(src, store, info, plan, row, tasks, by_episode.get(row["episode_index"], {}),
                                   reader))
        if progress:
            progress(n + 1, len(rows))
    return new


def _extras(src: Path) -> dict[str, Any]:
    path = src / EXTRAS_PATH
    if not path.exists():
        return {}
    extras = load_json(path)
    return extras if extras.get("format") == EXTRAS_FORMAT else {}


def episode_rows(src: Path) -> list[dict[str, Any]]:
    """Every meta/episodes row (without the stats/ columns), by episode_index."""
    paths = sorted((src / "meta" / "episodes").glob("*/*.parquet"))
    if not paths:
        raise StoreError(f"{src}: no meta/episodes/*/*.parquet")
    rows = []
    for path in paths:
        table = pq.read_table(path)
        table = table.select([c for c in table.column_names if not c.startswith("stats/")])
        rows.extend(table.to_pylist())
    return sorted(rows, key=lambda r: r["episode_index"])


def stream_plan(features: dict[str, dict], sources: dict[str, dict]) -> dict[str, StreamSpec]:
    """Feature name -> the stream it becomes (string and parquet-image features are left out)."""
    plan: dict[str, StreamSpec] = {}
    used: set[str] = set()
    for name, ft in features.items():
        if name in INDEX_FEATURES:
            continue
        if ft["dtype"] not in (*NUMERIC, "video"):
            warnings.warn(f"LeRobot feature '{name}' ({ft['dtype']}) is not imported", stacklevel=2)
            continue
        key = _default_key(name, ft)
        source = sources.get(name, {})
        if source.get("stream") and source["stream"] not in used:
            key = source["stream"]
        if key in used:
            key = name
        used.add(key)
        topic = source.get("topic") or "/" + key.replace(".", "/")
        if ft["dtype"] == "video":
            plan[name] = StreamSpec(key, topic, "sensor_msgs/msg/Image", "video", fps=float(ft.get("info", {})
                                                                                               .get("video.fps", 30)))
        else:
            joint = name in ("observation.state", "action") or source.get("type") == JOINT_STATE
            plan[name] = StreamSpec(key, topic, JOINT_STATE if joint else MULTI_ARRAY)
    return plan


def _default_key(name: str, ft: dict) -> str:
    if name == "observation.state":
        return "joint_states"
    if name == "action":
        return "joint_commands"
    if ft["dtype"] == "video":
        return name.removeprefix("observation.images.").removeprefix("observation.")
    return name.removeprefix("observation.")


def feature_names(name: str, ft: dict, dim: int) -> list[str]:
    """`names` as a list (LeRobot writes a list, older datasets {"motors": [...]}), else name_i."""
    names = ft.get("names")
    if isinstance(names, dict):
        names = next((v for v in names.values() if isinstance(v, list)), None)
    if isinstance(names, list) and len(names) == dim and all(isinstance(n, str) for n in names):
        return list(names)
    return [f"{name}_{i}" for i in range(dim)]


class _DataReader:
    """Rows of one episode from the data shards (the last shard read is kept: episodes come in order)."""

    def __init__(self, src: Path, template: str):
        self.src, self.template = src, template
        self.path: Path | None = None
        self.table: pa.Table | None = None

    def episode(self, row: dict[str, Any]) -> pa.Table:
        path = self.src / self.template.format(chunk_index=row["data/chunk_index"], file_index=row["data/file_index"])
        if path != self.path:
            if not path.exists():
                raise StoreError(f"episode {row['episode_index']}: data file {path} is missing")
            self.path, self.table = path, pq.read_table(path)
        rows = self.table.filter(pc.equal(self.table.column("episode_index"), row["episode_index"]))
        if rows.num_rows != row["length"]:
            raise StoreError(f"episode {row['episode_index']}: {rows.num_rows} rows in {path.name}, "
                             f"meta/episodes says {row['length']}")
        return rows.sort_by("frame_index")


def grid_stamps(start_ns: int, seconds: np.ndarray, fps: float) -> np.ndarray:
    """start + t in ns; t snapped to k / fps (as the export's grid) when within the tolerance."""
    seconds = np.asarray(seconds, dtype=np.float64)
    k = np.round(seconds * fps)
    snapped = np.abs(seconds - k / fps) < TOLERANCE_S
    offsets = np.where(snapped, np.round(k * (1e9 / fps)), np.round(seconds * 1e9)).astype(np.int64)
    return start_ns + offsets


def column_values(column: pa.ChunkedArray) -> np.ndarray:
    """(N, D) float64 from a scalar, fixed-size list or list column."""
    column = column.combine_chunks()
    if pa.types.is_fixed_size_list(column.type):
        return column.flatten().to_numpy(zero_copy_only=False).astype(np.float64).reshape(len(column), -1)
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        return np.array(column.to_pylist(), dtype=np.float64).reshape(len(column), -1)
    return column.to_numpy(zero_copy_only=False).astype(np.float64).reshape(-1, 1)


def _import_episode(src: Path, store: EpisodeStore, info: dict, plan: dict[str, StreamSpec], row: dict[str, Any],
                    tasks: dict[int, str], extra: dict[str, Any], reader: _DataReader) -> int:
    table = reader.episode(row)
    fps = float(info["fps"])
    start = int(extra.get("start_ns") or 0)
    stamps = grid_stamps(start, table.column("timestamp").to_numpy(), fps)
    ep_tasks = list(row.get("tasks") or [tasks[i] for i in dict.fromkeys(table.column("task_index").to_pylist())])
    meta = {"task": ep_tasks[0] if ep_tasks else "", "tasks": ep_tasks, "robot": info.get("robot_type"),
            "source": {"format": "lerobot", "codebase_version": info["codebase_version"], "path": str(src),
                       "episode_index": row["episode_index"]}}
    writer = store.new_episode(meta, list(plan.values()))
    try:
        for name, spec in plan.items():
            if spec.encoding == "video":
                _write_video(writer, spec, src, info, row, name, start, fps)
            else:
                _write_lowdim(writer, spec, name, info["features"][name], column_values(table.column(name)), stamps)
    except BaseException:
        writer.discard()
        raise
    return writer.commit(success=extra.get("success"))


def _write_lowdim(writer, spec: StreamSpec, name: str, ft: dict, values: np.ndarray, stamps: np.ndarray) -> None:
    names = feature_names(name, ft, values.shape[1])
    for stamp, v in zip(stamps.tolist(), values, strict=True):
        if spec.type == JOINT_STATE:
            msg = convert.joint_state(names, v, stamp=Time(stamp))
        else:
            layout = {"dim": [{"label": name, "size": len(v), "stride": len(v)}], "data_offset": 0}
            msg = messages.from_dict(MULTI_ARRAY, {"layout": layout, "data": v})
        writer.write(spec.key, msg, recv_ns=stamp)


def _write_video(writer, spec: StreamSpec, src: Path, info: dict, row: dict, name: str, start: int,
                 fps: float) -> None:
    path = src / info["video_path"].format(video_key=name, chunk_index=row[f"videos/{name}/chunk_index"],
                                           file_index=row[f"videos/{name}/file_index"])
    t0, t1 = float(row[f"videos/{name}/from_timestamp"]), float(row[f"videos/{name}/to_timestamp"])
    encoder = writer.encoders[spec.key]
    for t, rgb in decode_range(path, t0, t1):
        while encoder.pending >= 128:                   # never let the store's encoder queue drop a frame
            time.sleep(0.002)
        stamp = int(grid_stamps(start, np.array([t - t0]), fps)[0])
        writer.write_frame(spec.key, rgb, stamp, stamp)


def decode_range(path: Path, t0: float, t1: float) -> Iterator[tuple[float, np.ndarray]]:
    """(time s, HxWx3 RGB) of the frames with t0 - tol <= time < t1 - tol in an mp4 holding several episodes."""
    import av

    path = Path(path)
    if not path.exists():
        raise StoreError(f"video file {path} is missing")
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if t0 > 0:
            container.seek(int(Fraction(t0).limit_denominator(1_000_000) / stream.time_base), stream=stream,
                           backward=True)
        for frame in container.decode(stream):
            t = float(frame.pts * stream.time_base)
            if t >= t1 - TOLERANCE_S:
                return
            if t >= t0 - TOLERANCE_S:
                yield t, frame.to_ndarray(format="rgb24")
