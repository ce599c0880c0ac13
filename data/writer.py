"""`EpisodeWriter` (append-only recording of one episode) and `recover_episode` (after a crash).

See `data.store` for the layout and the crash-safety argument. The writer never blocks on video:
frames go to a `VideoEncoder` thread per stream (a full queue drops the frame and counts it).
Everything else is buffered in memory until `flush()`, which the recorder calls at least once a
second; `commit()` merges, writes meta.json and renames the episode into `episodes/`.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import robot_stack
from data.store import (
    EpisodeStore,
    StoreError,
    StreamSpec,
    _fsync_dir,
    flatten,
    remove_tree,
    stamp_of,
    write_json,
    write_parquet,
)
from data.video import VideoEncoder, VideoError, count_frames
from robot_stack import convert, messages

KEEP_FLUSHED_BYTES = 256 * 2**20    # flushed tables kept in memory per episode for commit (else: re-read)

DISCARD_MARKER = "DISCARDED"   # in an open episode: discarded, never to be recovered


def rgb_of(msg: Any) -> np.ndarray:
    """HxWx3 uint8 RGB from a sensor_msgs/Image in any 8-bit colour or mono encoding."""
    a = convert.image_array(msg)
    enc = msg.encoding
    if a.dtype != np.uint8:
        raise StoreError(f"video streams need 8-bit images, got encoding '{enc}'")
    if a.ndim == 2 or a.shape[2] == 1:
        return np.repeat(a.reshape(a.shape[0], a.shape[1], 1), 3, axis=2)
    if enc in ("bgr8", "bgra8"):
        return np.ascontiguousarray(a[:, :, 2::-1])
    return np.ascontiguousarray(a[:, :, :3])


class EpisodeWriter:
    def __init__(self, store: EpisodeStore, index: int, meta: dict[str, Any], streams: list[StreamSpec]):
        self.store, self.index = store, index
        self.dir = store.episode_dir(index, open_=True)
        keys = [s.key for s in streams]
        if len(set(keys)) != len(keys):
            raise StoreError(f"duplicate stream keys in {keys}")
        self.specs = {s.key: s for s in streams}
        self._rows: dict[str, list[dict[str, Any]]] = {k: [] for k in keys}
        self._segments = dict.fromkeys(keys, 0)
        self.counts = dict.fromkeys(keys, 0)
        self.dropped = dict.fromkeys(keys, 0)
        self._first: dict[str, int] = {}
        self._last: dict[str, int] = {}
        self._max_gap = dict.fromkeys(keys, 0)
        self.encoders = {k: VideoEncoder(self.dir / f"{k}.mp4", codec=s.codec, fps=s.fps)
                         for k, s in self.specs.items() if s.encoding == "video"}
        self.meta = {**meta, "episode_index": index, "streams": [asdict(s) for s in streams],
                     "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "platform_version": robot_stack.__version__}
        self.closed = False
        self.last_flush = time.monotonic()
        self._kept: dict[str, list[pa.Table]] | None = {k: [] for k in keys}   # flushed rows, for a fast commit
        self._kept_bytes = 0
        for k in keys:
            (self.dir / k).mkdir(exist_ok=True)
        write_json(self.dir / "meta.json", self.meta)

    # --- appending ------------------------------------------------------------------------------
    def write(self, key: str, msg: Any, recv_ns: int | None = None) -> bool:
        """Append one message; False if it was dropped (video queue full)."""
        spec = self._spec(key)
        recv_ns = time.time_ns() if recv_ns is None else int(recv_ns)
        stamp = stamp_of(msg, recv_ns)
        if spec.encoding == "video":
            return self.write_frame(key, rgb_of(msg), stamp, recv_ns, frame_id=msg.header.frame_id,
                                    encoding=msg.encoding)
        row = {"stamp_ns": stamp, "recv_ns": recv_ns, **flatten(messages.to_dict(msg)), "cdr": messages.serialize(msg)}
        self._append(key, row, stamp)
        return True

    def write_frame(self, key: str, rgb: np.ndarray, stamp_ns: int, recv_ns: int | None = None, *,
                    frame_id: str = "", encoding: str = "rgb8") -> bool:
        """Append one HxWx3 uint8 RGB frame to a video stream."""
        spec = self._spec(key)
        if spec.encoding != "video":
            raise StoreError(f"stream '{key}' is {spec.encoding}, not video")
        if not self.encoders[key].put(rgb, stamp_ns):
            self.dropped[key] += 1
            return False
        row = {"stamp_ns": int(stamp_ns), "recv_ns": int(recv_ns if recv_ns is not None else time.time_ns()),
               "frame_index": self.counts[key], "height": int(rgb.shape[0]), "width": int(rgb.shape[1]),
               "encoding": encoding, "frame_id": frame_id}
        self._append(key, row, int(stamp_ns))
        return True

    def _spec(self, key: str) -> StreamSpec:
        if self.closed:
            raise StoreError(f"episode {self.index} is closed")
        if key not in self.specs:
            raise StoreError(f"episode {self.index}: no stream '{key}'; streams: {', '.join(self.specs)}")
        return self.specs[key]

    def _append(self, key: str, row: dict[str, Any], stamp: int) -> None:
        self._rows[key].append(row)
        self.counts[key] += 1
        if key in self._last:
            self._max_gap[key] = max(self._max_gap[key], stamp - self._last[key])
        self._first.setdefault(key, stamp)
        self._last[key] = stamp

    # --- durability -----------------------------------------------------------------------------
    def flush(self) -> None:
        """Write every buffered row as a new segment file (whole on disk or absent)."""
        self.write_segments(self.take_rows())

    def take_rows(self) -> dict[str, tuple[int, list[dict[str, Any]]]]:
        """Hand the buffered rows over with their segment numbers (cheap: call it where `write` is
        called); `write_segments` can then do the disk work in another thread, in call order."""
        taken = {}
        for key, rows in self._rows.items():
            if rows:
                taken[key] = (self._segments[key], rows)
                self._segments[key] += 1
                self._rows[key] = []
        return taken

    def write_segments(self, taken: dict[str, tuple[int, list[dict[str, Any]]]]) -> None:
        for key, (number, rows) in taken.items():
            table = pa.Table.from_pylist(rows)
            write_parquet(self.dir / key / f"seg-{number:06d}.parquet", table)
            if self._kept is not None:     # commit merges these instead of reading every segment back
                self._kept_bytes += table.nbytes
                self._kept[key].append(table)
                if self._kept_bytes > KEEP_FLUSHED_BYTES:
                    self._kept = None
        self.last_flush = time.monotonic()

    def commit(self, *, success: bool | None = None, **extra: Any) -> int:
        """Finish the episode: merge, write meta.json, rename into episodes/. Returns its index."""
        self.flush()
        for enc in self.encoders.values():
            enc.close()
        self.closed = True
        self.meta.update(extra, success=success, stopped=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                         stream_stats=self.stream_stats())
        return _finish(self.store, self.index, self.meta, self._kept)

    def mark_discarded(self) -> None:
        """Make the discard durable at once: `dataset recover` deletes an open episode holding the marker,
        so a crash before the background `discard()` cannot bring the episode back."""
        (self.dir / DISCARD_MARKER).touch()

    def discard(self) -> None:
        for enc in self.encoders.values():
            try:
                enc.close()
            except (StoreError, VideoError):   # an encoder that failed (e.g. disk full) is gone anyway
                pass
        self.closed = True
        trash = self.dir.with_name(f".discarded-{self.dir.name}")   # gone at once (a crash mid-delete
        os.rename(self.dir, trash)                                  # must not leave a recoverable half)
        remove_tree(trash)

    def stream_stats(self) -> dict[str, dict[str, Any]]:
        out = {}
        for key in self.specs:
            n, first, last = self.counts[key], self._first.get(key), self._last.get(key)
            span = (last - first) / 1e9 if n > 1 else 0.0
            out[key] = {"count": n, "first_ns": first, "last_ns": last, "rate_hz": (n - 1) / span if span else 0.0,
                        "max_gap_s": self._max_gap[key] / 1e9, "dropped": self.dropped[key]}
        return out

    @property
    def duration_s(self) -> float:
        if not self._first:
            return 0.0
        return (max(self._last.values()) - min(self._first.values())) / 1e9


def _merge_segments(folder: Path) -> pa.Table | None:
    segs = sorted(folder.glob("seg-*.parquet")) if folder.is_dir() else []
    tables = []
    for seg in segs:
        try:
            tables.append(pq.read_table(seg, use_threads=False))   # many small files: threads only cost
        except (OSError, pa.ArrowInvalid):   # cannot happen for renamed segments; be safe after a crash
            break
    return pa.concat_tables(tables, promote_options="permissive") if tables else None


def _finish(store: EpisodeStore, index: int, meta: dict[str, Any], kept: dict[str, list] | None = None) -> int:
    """Merge each stream's segments (or the `kept` tables they were written from), write meta.json
    and rename the episode into episodes/. The segment folders go to `open/.trash-*` (one rename
    each) and are deleted in the background: unlinking hundreds of fsynced files took ~1 s."""
    src = store.episode_dir(index, open_=True)
    trash = []
    for spec in meta["streams"]:
        key = spec["key"]
        if kept is not None:
            table = pa.concat_tables(kept[key], promote_options="permissive") if kept[key] else None
        else:
            table = _merge_segments(src / key)
        if table is not None:
            write_parquet(src / f"{key}.parquet", table)
        if (src / key).is_dir():
            trash.append(src.parent / f".trash-{index:06d}-{key}-{time.time_ns()}")
            os.rename(src / key, trash[-1])
    firsts = [s["first_ns"] for s in meta.get("stream_stats", {}).values() if s.get("first_ns") is not None]
    lasts = [s["last_ns"] for s in meta.get("stream_stats", {}).values() if s.get("last_ns") is not None]
    meta["duration_s"] = (max(lasts) - min(firsts)) / 1e9 if firsts else 0.0
    write_json(src / "meta.json", meta)
    _fsync_dir(src)
    dst = store.episode_dir(index)
    os.rename(src, dst)
    _fsync_dir(dst.parent)
    trash += [p for p in src.parent.glob(f".trash-{index:06d}-*") if p not in trash]   # a killed commit's
    threading.Thread(target=lambda: [remove_tree(p) for p in trash], name="store-trash", daemon=True).start()
    return index


def _frames_on_disk(path: Path) -> int:
    """Decodable frames of a killed recording's video (0 when it never got past its header)."""
    try:
        return count_frames(path)
    except VideoError:
        return 0


def recover_episode(store: EpisodeStore, index: int) -> int:
    """Commit an open episode from its flushed segments and the decodable frames of its videos."""
    import json

    src = store.episode_dir(index, open_=True)
    meta = json.loads((src / "meta.json").read_text())
    stats = {}
    for spec in meta["streams"]:
        key = spec["key"]
        merged = src / f"{key}.parquet"    # a commit killed after merging this stream: the merge is whole
        table = pq.read_table(merged) if merged.exists() else _merge_segments(src / key)
        if table is not None and spec["encoding"] == "video":
            table = table.slice(0, min(table.num_rows, _frames_on_disk(src / f"{key}.mp4")))
        n = 0 if table is None else table.num_rows
        stamps = np.zeros(0, np.int64) if table is None else table.column("stamp_ns").to_numpy()
        span = (stamps[-1] - stamps[0]) / 1e9 if n > 1 else 0.0
        stats[key] = {"count": n, "first_ns": int(stamps[0]) if n else None, "last_ns": int(stamps[-1]) if n else None,
                      "rate_hz": (n - 1) / span if span else 0.0,
                      "max_gap_s": float(np.diff(stamps).max() / 1e9) if n > 1 else 0.0, "dropped": None}
        remove_tree(src / key)
        if table is not None:
            write_parquet(src / f"{key}.parquet", table)
        (src / key).mkdir(exist_ok=True)      # _finish expects (and removes) the segment folder
    meta.update(recovered=True, success=None, stream_stats=stats)
    return _finish(store, index, meta)
