"""The episode store: one directory per episode, every stream at its own rate with its capture stamps.

Layout (a dataset is a directory):

    dataset.json                      {"format": "robot_stack.episodes", "version": 1, ...}
    episodes/ep-000000/               committed episodes (appear by an atomic rename)
        meta.json                     task, robot, calibration, streams, recorder config, counts, stamps
        <key>.parquet                 one row per message: stamp_ns, recv_ns, the fields, cdr
        <key>.mp4                     video streams: the frames (their rows in <key>.parquet)
    open/ep-000001/                   an episode being recorded (append-only)
        meta.json                     written at start
        <key>/seg-000000.parquet ...  one segment per flush (tmp file, fsync, rename: whole or absent)
        <key>.mp4                     fragmented MP4, complete up to its last fragment

Rows: `stamp_ns` is the message's `header.stamp` (the capture time; the receive time for messages
without a header), `recv_ns` when the recorder got it. Low-dim and raw streams keep the decoded
fields as columns (arrays as list columns, nested fields as `a.b`) plus the message's CDR bytes,
so exports reproduce the original messages exactly. Video rows hold frame_index, size and encoding.

Crash safety: an open episode only ever gains whole files; `commit()` merges the segments, writes
meta.json and renames the directory into `episodes/` (atomic on one filesystem). `recover()` turns
an open episode left by a killed recorder into a committed one from its flushed segments and the
decodable part of its videos.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from robot_stack import messages
from robot_stack.errors import RobotStackError

if TYPE_CHECKING:
    from data.writer import EpisodeWriter

FORMAT = "robot_stack.episodes"
VERSION = 1
ENCODINGS = ("columnar", "raw", "video")


class StoreError(RobotStackError):
    pass


@dataclass(frozen=True)
class StreamSpec:
    key: str                  # file name stem and column prefix in exports, e.g. "joint_states"
    topic: str
    type: str                 # ROS type, e.g. "sensor_msgs/msg/JointState"
    encoding: str = "columnar"   # columnar (low-dim) | raw (arrays kept whole, e.g. tactile) | video
    codec: str = "libsvtav1"  # video only
    fps: float = 30.0         # video only: nominal rate (GOP length = 1 s of frames)

    def __post_init__(self):
        if self.encoding not in ENCODINGS:
            raise StoreError(f"stream '{self.key}': encoding '{self.encoding}' unknown; use {', '.join(ENCODINGS)}")
        if not self.key or "/" in self.key or self.key.startswith("."):
            raise StoreError(f"stream key '{self.key}' must be a non-empty file name (no '/')")

    @staticmethod
    def key_for(topic: str) -> str:
        return topic.strip("/").replace("/", ".") or "root"


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: Path, value: Any) -> None:
    _write_atomic(path, json.dumps(value, indent=2, default=_json_default).encode())


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def write_parquet(path: Path, table: pa.Table) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested message dict -> {"a.b": leaf}; header stamps are dropped (they are stamp_ns)."""
    out: dict[str, Any] = {}
    for k, v in value.items():
        name = f"{prefix}{k}"
        if name == "header.stamp":
            continue
        if isinstance(v, dict):
            out.update(flatten(v, f"{name}."))
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            out[name] = json.dumps(v, default=_json_default)      # sequences of messages: JSON text
        else:
            out[name] = v.tolist() if isinstance(v, np.ndarray) else v
    return out


def stamp_of(msg: Any, recv_ns: int) -> int:
    header = getattr(msg, "header", None)
    if header is None:
        return recv_ns
    s = header.stamp
    return int(s.sec) * 1_000_000_000 + int(s.nanosec)


class EpisodeStore:
    """A dataset directory of episodes (see the module docstring)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @classmethod
    def create(cls, root: str | Path, **info: Any) -> EpisodeStore:
        """Open `root`, creating it (and checking that it is writable) if needed."""
        root = Path(root)
        try:
            (root / "episodes").mkdir(parents=True, exist_ok=True)
            (root / "open").mkdir(exist_ok=True)
            probe = root / f".probe-{os.getpid()}"
            _write_atomic(probe, b"ok")
            probe.unlink()
        except OSError as exc:
            raise StoreError(f"dataset directory {root} is not writable: {exc.strerror or exc}") from exc
        if not (root / "dataset.json").exists():
            write_json(root / "dataset.json", {"format": FORMAT, "version": VERSION,
                                               "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **info})
        return cls(root)

    @property
    def info(self) -> dict[str, Any]:
        path = self.root / "dataset.json"
        if not path.exists():
            raise StoreError(f"{self.root} is not an episode store (no dataset.json)")
        info = json.loads(path.read_text())
        if info.get("format") != FORMAT:
            raise StoreError(f"{path}: format {info.get('format')!r} is not {FORMAT!r}")
        return info

    def episodes(self) -> list[int]:
        return self._indices(self.root / "episodes")

    def open_episodes(self) -> list[int]:
        return self._indices(self.root / "open")

    @staticmethod
    def _indices(folder: Path) -> list[int]:
        if not folder.is_dir():
            return []
        return sorted(int(p.name[3:]) for p in folder.iterdir() if p.is_dir() and p.name.startswith("ep-")
                      and p.name[3:].isdigit())

    def episode_dir(self, index: int, *, open_: bool = False) -> Path:
        return self.root / ("open" if open_ else "episodes") / f"ep-{index:06d}"

    def episode(self, index: int) -> EpisodeReader:
        path = self.episode_dir(index)
        if not path.is_dir():
            raise StoreError(f"{self.root}: no episode {index}; episodes: {self.episodes()}")
        return EpisodeReader(path)

    def __iter__(self) -> Iterator[EpisodeReader]:
        return (self.episode(i) for i in self.episodes())

    def __len__(self) -> int:
        return len(self.episodes())

    def new_episode(self, meta: dict[str, Any], streams: list[StreamSpec]) -> EpisodeWriter:
        """Start an episode at the next free index (open/ep-N is created exclusively)."""
        from data.writer import EpisodeWriter

        self.info  # noqa: B018  (checks the directory is a store)
        # open/ first: a commit renaming open/ep-N into episodes/ meanwhile is then seen in one of the two
        index = max(self.open_episodes() + self.episodes(), default=-1) + 1
        while True:
            try:
                self.episode_dir(index, open_=True).mkdir()
                break
            except FileExistsError:
                index += 1
        return EpisodeWriter(self, index, meta, streams)

    def recover(self, index: int) -> int:
        """Commit an open episode left by a killed recorder from what it flushed; returns its index."""
        from data.writer import recover_episode

        path = self.episode_dir(index, open_=True)
        if not path.is_dir():
            raise StoreError(f"{self.root}: no open episode {index}; open: {self.open_episodes()}")
        return recover_episode(self, index)


class EpisodeReader:
    """One committed episode: meta, per-stream tables, decoded messages and video frames."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.meta: dict[str, Any] = json.loads((self.path / "meta.json").read_text())
        self.streams = {s["key"]: StreamSpec(**s) for s in self.meta["streams"]}
        self._tables: dict[str, pa.Table] = {}

    @property
    def index(self) -> int:
        return int(self.meta["episode_index"])

    def _spec(self, key: str) -> StreamSpec:
        if key not in self.streams:
            raise StoreError(f"episode {self.index}: no stream '{key}'; streams: {', '.join(self.streams)}")
        return self.streams[key]

    def table(self, key: str) -> pa.Table:
        self._spec(key)
        if key not in self._tables:
            path = self.path / f"{key}.parquet"
            empty = pa.table({"stamp_ns": pa.array([], pa.int64())})
            self._tables[key] = pq.read_table(path) if path.exists() else empty
        return self._tables[key]

    def stamps(self, key: str) -> np.ndarray:
        """(N,) int64 capture stamps in ns."""
        return self.table(key).column("stamp_ns").to_numpy()

    def column(self, key: str, field: str) -> np.ndarray:
        """A field as an array: (N,) for scalars, (N, D) for fixed-length arrays."""
        col = self.table(key).column(field)
        if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
            return np.array(col.to_pylist(), dtype=float)
        return col.to_numpy()

    def messages(self, key: str) -> Iterator[tuple[int, Any]]:
        """(stamp_ns, message) in order; video streams rebuild sensor_msgs/Image from the frames."""
        spec = self._spec(key)
        if spec.encoding == "video":
            yield from self._image_messages(spec)
            return
        table = self.table(key)
        for stamp, cdr in zip(table.column("stamp_ns").to_pylist(), table.column("cdr").to_pylist(), strict=True):
            yield stamp, messages.deserialize(cdr, spec.type)

    def frames(self, key: str) -> Iterator[tuple[int, np.ndarray]]:
        """(stamp_ns, HxWx3 uint8 RGB) of a video stream."""
        from data.video import decode_frames

        spec = self._spec(key)
        if spec.encoding != "video":
            raise StoreError(f"stream '{key}' is {spec.encoding}, not video")
        table = self.table(key)
        if table.num_rows == 0:
            return
        size = (table.column("height")[0].as_py(), table.column("width")[0].as_py())
        stamps = table.column("stamp_ns").to_pylist()
        yield from zip(stamps, decode_frames(self.path / f"{key}.mp4", size=size), strict=False)

    def _image_messages(self, spec: StreamSpec) -> Iterator[tuple[int, Any]]:
        from robot_stack import convert
        from robot_stack.clock import Time

        frame_ids = self.table(spec.key).column("frame_id").to_pylist()
        for (stamp, rgb), frame_id in zip(self.frames(spec.key), frame_ids, strict=False):
            yield stamp, convert.image(rgb, "rgb8", stamp=Time(stamp), frame_id=frame_id)

    @property
    def duration_s(self) -> float:
        return float(self.meta.get("duration_s", 0.0))

    def spec_dicts(self) -> list[dict[str, Any]]:
        return [asdict(s) for s in self.streams.values()]


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
