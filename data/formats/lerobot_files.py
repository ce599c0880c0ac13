"""LeRobot v3.0 files: parquet and mp4 shards with size limits, statistics, episodes and tasks tables.

Sharding follows LeRobot: episodes are appended to the current file of a kind until the file's size
plus the next episode's would reach the limit (`*_files_size_in_mb`), then the next file starts;
`chunks_size` files make a chunk (chunk-000/file-000 .. file-{chunks_size-1}, then chunk-001/file-000).
Video episodes are encoded one by one (PTS k / fps, pix_fmt yuv420p) and remuxed, packet for packet,
into the shard, shifted to start where the previous episode ended: that offset is the episode's
`from_timestamp`, exactly as LeRobot's concatenation lays it out.

Statistics (`compute_stats.py` in LeRobot): per feature min, max, mean, std, count and the quantiles
q01 q10 q50 q90 q99; low-dim per dimension over frames, images per channel over sampled frames,
normalized to [0, 1] with shape (3, 1, 1); dataset stats aggregate the episodes' (count-weighted).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from data.store import StoreError, write_parquet

QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
MB = 1024 * 1024


def next_file(chunk: int, file: int, chunks_size: int) -> tuple[int, int]:
    return (chunk + 1, 0) if file == chunks_size - 1 else (chunk, file + 1)


class ShardWriter:
    """Parquet shards (several episodes per file) under a `{chunk_index}/{file_index}` path template."""

    def __init__(self, root: Path, template: str, limit_mb: float, chunks_size: int):
        self.root, self.template, self.limit, self.chunks_size = root, template, limit_mb * MB, chunks_size
        self.chunk = self.file = 0
        self.size = 0
        self.writer: pq.ParquetWriter | None = None

    def add(self, table: pa.Table) -> tuple[int, int]:
        """Append one episode's rows; returns its (chunk_index, file_index)."""
        if self.writer is not None and self.size + table.nbytes >= self.limit:
            self.close()
            self.chunk, self.file = next_file(self.chunk, self.file, self.chunks_size)
        if self.writer is None:
            path = self.root / self.template.format(chunk_index=self.chunk, file_index=self.file)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.writer, self.size = pq.ParquetWriter(path, table.schema, compression="snappy"), 0
        self.writer.write_table(table)
        self.size += table.nbytes
        return self.chunk, self.file

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class VideoShards:
    """mp4 shards of one camera feature: each episode encoded at constant fps, then appended by remuxing."""

    def __init__(self, root: Path, key: str, template: str, limit_mb: float, chunks_size: int, fps: int,
                 codec: str, crf: int, tmp: Path):
        self.root, self.key, self.template, self.limit = root, key, template, limit_mb * MB
        self.chunks_size, self.fps, self.codec, self.crf, self.tmp = chunks_size, fps, codec, crf, tmp
        self.chunk = self.file = 0
        self.size = self.frames = 0
        self.container = self.stream = None
        self.first_path: Path | None = None

    def add(self, frames: Iterable[np.ndarray], n: int):
        """Encode `n` frames as the next episode: (chunk, file, from_timestamp, to_timestamp, shape, stats)."""
        import av

        tmp = self.tmp / f"{self.key}.mp4"
        shape, sampled = encode_episode(tmp, frames, n, self.fps, self.codec, self.crf)
        size = tmp.stat().st_size
        if self.container is not None and self.size + size >= self.limit:
            self.close()
            self.chunk, self.file = next_file(self.chunk, self.file, self.chunks_size)
        with av.open(str(tmp)) as src:
            src_stream = src.streams.video[0]
            if self.container is None:
                self._open(src_stream)
            offset = round(Fraction(self.frames, self.fps) / src_stream.time_base)
            for packet in src.demux(src_stream):
                if packet.dts is None:
                    continue
                packet.pts += offset
                packet.dts += offset
                packet.stream = self.stream
                self.container.mux(packet)
        start = self.frames / self.fps
        self.frames += n
        self.size += size
        return self.chunk, self.file, start, self.frames / self.fps, shape, frame_stats(sampled)

    def _open(self, template_stream) -> None:
        import av

        path = self.root / self.template.format(video_key=self.key, chunk_index=self.chunk, file_index=self.file)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.first_path = self.first_path or path
        self.container = av.open(str(path), "w", format="mp4")
        self.stream = self.container.add_stream_from_template(template_stream, opaque=True)
        self.size = self.frames = 0

    def close(self) -> None:
        if self.container is not None:
            self.container.close()
            self.container = self.stream = None

    def video_info(self) -> dict[str, Any]:
        """`info` of a video feature as LeRobot's `get_video_info` reads it from the first file."""
        import av

        with av.open(str(self.first_path)) as c:
            s = c.streams.video[0]
            return {"video.height": s.height, "video.width": s.width, "video.codec": s.codec.canonical_name,
                    "video.pix_fmt": s.pix_fmt, "video.is_depth_map": False, "video.fps": int(s.base_rate),
                    "video.channels": 3, "has_audio": len(c.streams.audio) > 0}


def encode_episode(path: Path, frames: Iterable[np.ndarray], n: int, fps: int, codec: str, crf: int):
    """Encode frames at PTS 0, 1, .. (time base 1/fps) into a plain mp4; returns (shape, sampled frames).

    Odd sizes are cropped to even (yuv420p needs even sizes)."""
    import av

    options = {"crf": str(crf)}
    options.update({"preset": "10", "svtav1-params": "lp=1"} if codec == "libsvtav1" else {"preset": "veryfast"})
    keep = set(sample_indices(n))
    sampled, count, shape = [], 0, None
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream(codec, rate=fps, options=options)
        for rgb in frames:
            if shape is None:
                shape = (rgb.shape[0] - rgb.shape[0] % 2, rgb.shape[1] - rgb.shape[1] % 2, 3)
                stream.width, stream.height, stream.pix_fmt = shape[1], shape[0], "yuv420p"
                stream.time_base = stream.codec_context.time_base = Fraction(1, fps)
                stream.codec_context.gop_size = 2         # LeRobot's g=2: cheap random access
            rgb = np.ascontiguousarray(rgb[: shape[0], : shape[1], :3])
            if count in keep:
                sampled.append(_downsample(rgb))
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = count, Fraction(1, fps)
            container.mux(stream.encode(frame))
            count += 1
        container.mux(stream.encode(None))
    if count != n or shape is None:
        raise StoreError(f"{path.name}: got {count} frames for an episode of {n}")
    return shape, np.stack(sampled)


def sample_indices(n: int) -> list[int]:
    """LeRobot's frame sampling for image stats: ~n**0.75 frames (at least min(n, 100)), evenly spaced."""
    k = max(min(n, 100), min(int(n**0.75), 10_000))
    return np.round(np.linspace(0, n - 1, k)).astype(int).tolist()


def _downsample(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    if max(h, w) < 300:
        return rgb
    step = int(w / 150) if w > h else int(h / 150)
    return rgb[::step, ::step]


def lowdim_stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """(N, D) -> per-dimension stats, each (D,), count (1,); min and max keep the values' dtype, as LeRobot's."""
    raw = np.asarray(values).reshape(len(values), -1)
    v = raw.astype(np.float64)
    out = {"min": raw.min(0), "max": raw.max(0), "mean": v.mean(0), "std": v.std(0), "count": np.array([len(v)])}
    out.update({k: np.quantile(v, q, axis=0) for k, q in QUANTILES.items()})
    return out


def frame_stats(frames: np.ndarray) -> dict[str, np.ndarray]:
    """(K, H, W, 3) uint8 -> per-channel stats in [0, 1], each (3, 1, 1); count = K frames."""
    pixels = frames.reshape(-1, 3).astype(np.float64) / 255.0
    out = {k: v.reshape(3, 1, 1) for k, v in lowdim_stats(pixels).items() if k != "count"}
    return {**out, "count": np.array([len(frames)])}


def aggregate_stats(per_episode: list[dict[str, dict[str, np.ndarray]]]) -> dict[str, dict[str, np.ndarray]]:
    """Count-weighted mean and pooled variance, min of mins, max of maxes, weighted mean of quantiles."""
    out = {}
    for key in per_episode[0]:
        stats = [ep[key] for ep in per_episode]
        counts = np.array([s["count"][0] for s in stats], dtype=np.float64)
        w = counts.reshape(-1, *([1] * np.ndim(stats[0]["mean"])))
        means = np.stack([s["mean"] for s in stats])
        mean = (means * w).sum(0) / counts.sum()
        var = ((np.stack([s["std"] for s in stats]) ** 2 + (means - mean) ** 2) * w).sum(0) / counts.sum()
        agg = {"min": np.min([s["min"] for s in stats], 0), "max": np.max([s["max"] for s in stats], 0),
               "mean": mean, "std": np.sqrt(var), "count": np.array([int(counts.sum())])}
        agg.update({q: (np.stack([s[q] for s in stats]) * w).sum(0) / counts.sum() for q in QUANTILES})
        out[key] = agg
    return out


def write_episodes(root: Path, template: str, rows: list[dict[str, Any]], limit_mb: float, chunks_size: int) -> None:
    """meta/episodes shards: rows split by size like the data files, each row told its own chunk/file."""
    per_row = max(1, pa.Table.from_pylist(rows).nbytes // len(rows))
    per_file = max(1, int(limit_mb * MB // per_row))
    chunk = file = 0
    for start in range(0, len(rows), per_file):
        part = [{**r, "meta/episodes/chunk_index": chunk, "meta/episodes/file_index": file}
                for r in rows[start : start + per_file]]
        path = root / template.format(chunk_index=chunk, file_index=file)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_parquet(path, pa.Table.from_pylist(part))
        chunk, file = next_file(chunk, file, chunks_size)


def write_tasks(path: Path, tasks: list[str]) -> None:
    """tasks.parquet as pandas writes `DataFrame({"task_index": ...}, index=tasks)` (the task string is the index)."""
    pandas_meta = {
        "index_columns": ["__index_level_0__"],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
                            "metadata": {"encoding": "UTF-8"}}],
        "columns": [{"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
                     "metadata": None},
                    {"name": None, "field_name": "__index_level_0__", "pandas_type": "unicode",
                     "numpy_type": "object", "metadata": None}],
        "attributes": {}, "creator": {"library": "pyarrow", "version": pa.__version__}, "pandas_version": "2.2.0"}
    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()),
                      "__index_level_0__": pa.array(tasks, pa.string())})
    path.parent.mkdir(parents=True, exist_ok=True)
    write_parquet(path, table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()}))


def read_tasks(path: Path) -> dict[int, str]:
    """task_index -> task from a tasks.parquet (the task column: the pandas index, or named `task`)."""
    table = pq.read_table(path)
    if "task_index" not in table.column_names:
        raise StoreError(f"{path}: no task_index column; columns: {table.column_names}")
    text = [c for c in table.column_names if c != "task_index" and pa.types.is_string(table.schema.field(c).type)
            or c != "task_index" and pa.types.is_large_string(table.schema.field(c).type)]
    if not text:
        raise StoreError(f"{path}: no task text column; columns: {table.column_names}")
    return dict(zip(table.column("task_index").to_pylist(), table.column(text[0]).to_pylist(), strict=True))
