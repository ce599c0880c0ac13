"""Episode sources for the training loader (`data.loader`) and lazy video decoding with a bounded LRU.

An *episode source* is what `WindowDataset` reads; three implement the same small interface:
- `StoreSource`: the episode store (`data.store`), features from a feature map (`data.features`).
- `LeRobotSource`: a LeRobotDataset v3.0 directory (`meta/info.json`, `meta/episodes/chunk-*/file-*.parquet`,
  `data/chunk-*/file-*.parquet`, `videos/<key>/chunk-*/file-*.mp4`, several episodes per file).
- `ArraySource`: episodes already in memory as numpy arrays (pre-decoded frames; the benchmark baseline).

    episodes() -> list[int]
    features() -> {name: Feature}                        (kind "image" for cameras)
    lowdim(ep, name) -> stamps (N,) int64 ns, values (N, D) float64
    image_stamps(ep, name) -> (N,) int64 ns               (cheap: no decoding)
    decode(ep, name) -> (N, H, W, 3) uint8 RGB             (called inside DataLoader workers)

Sources hold only paths and small metadata (readers are reopened after pickling), so they travel
cheaply to spawned workers.

Decoding: our episode videos (AV1/H.264, fragmented MP4, one file per episode) are decoded
sequentially from the start and the whole episode is cached; for short episodes (tens of seconds)
that is cheaper than seeking per item, because every item of the episode then reuses the frames.
LeRobot files pack many episodes: there we seek to the keyframe before the episode's
`from_timestamp` and decode until its `to_timestamp`. `FrameCache` bounds the decoded frames
kept per process (bytes); an episode larger than the budget is decoded again for every item (slow;
raise the budget).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from data.features import Feature, default_features, feature_values
from data.store import EpisodeReader, EpisodeStore, StoreError

LEROBOT_INDEX_COLUMNS = ("timestamp", "frame_index", "episode_index", "index", "task_index")


class LoaderError(StoreError):
    pass


class FrameCache:
    """LRU of decoded frame arrays, bounded by total bytes (one per process)."""

    def __init__(self, budget_bytes: int):
        self.budget = int(budget_bytes)
        self._items: OrderedDict[Any, np.ndarray] = OrderedDict()
        self.nbytes = 0
        self.hits = self.misses = self.evictions = 0
        self.worker_id: int | None = None          # DataLoader worker that owns it (None: main process)

    def get(self, key: Any, load: Callable[[], np.ndarray]) -> np.ndarray:
        if key in self._items:
            self.hits += 1
            self._items.move_to_end(key)
            return self._items[key]
        self.misses += 1
        value = load()
        if value.nbytes > self.budget:         # never cached: decoded again on the next request
            return value
        while self.nbytes + value.nbytes > self.budget and self._items:
            _, old = self._items.popitem(last=False)
            self.nbytes -= old.nbytes
            self.evictions += 1
        self._items[key] = value
        self.nbytes += value.nbytes
        return value

    def __len__(self) -> int:
        return len(self._items)


def _stack(frames: list[np.ndarray], what: str) -> np.ndarray:
    if not frames:
        raise LoaderError(f"{what}: no decodable frames")
    return np.stack(frames)                 # N,H,W,3


# --- the episode store -----------------------------------------------------------------------------
class StoreSource:
    """Episodes of an `EpisodeStore`; `features` maps names to streams (default: `default_features`)."""

    def __init__(self, store: EpisodeStore | str | Path, features: dict[str, Feature] | None = None):
        self.root = Path(store.root if isinstance(store, EpisodeStore) else store)
        store = EpisodeStore(self.root)
        store.info  # noqa: B018  (a clear error if this is not a store)
        self._episodes = store.episodes()
        if not self._episodes:
            raise LoaderError(f"{self.root}: no committed episodes")
        self._features = dict(features) if features else default_features(store.episode(self._episodes[0]))
        self._readers: dict[int, EpisodeReader] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_readers": {}}

    def episodes(self) -> list[int]:
        return list(self._episodes)

    def features(self) -> dict[str, Feature]:
        return dict(self._features)

    def _reader(self, ep: int) -> EpisodeReader:
        if ep not in self._readers:
            self._readers[ep] = EpisodeStore(self.root).episode(ep)
        return self._readers[ep]

    def lowdim(self, ep: int, name: str) -> tuple[np.ndarray, np.ndarray]:
        return feature_values(self._reader(ep), self._features[name])

    def image_stamps(self, ep: int, name: str) -> np.ndarray:
        return self._reader(ep).stamps(self._features[name].stream)

    def decode(self, ep: int, name: str) -> np.ndarray:
        """Frames in row order (row i of `<stream>.parquet` is frame i), cropped to the recorded size."""
        stream = self._features[name].stream
        table = self._reader(ep).table(stream)
        if table.num_rows == 0:
            raise LoaderError(f"episode {ep} '{name}': no frames")
        h, w = table.column("height")[0].as_py(), table.column("width")[0].as_py()
        frames = [rgb[:h, :w] for _, rgb in decode_range(self._reader(ep).path / f"{stream}.mp4")]
        return _stack(frames, f"episode {ep} '{name}'")


# --- in-memory arrays ------------------------------------------------------------------------------
class ArraySource:
    """Episodes as arrays: `{ep: {name: (stamps (N,), values (N, D) or frames (N, H, W, 3) uint8)}}`."""

    def __init__(self, episodes: dict[int, dict[str, tuple[np.ndarray, np.ndarray]]],
                 features: dict[str, Feature]):
        self._data = episodes
        self._features = dict(features)

    @classmethod
    def from_source(cls, source: Any, episodes: list[int] | None = None) -> ArraySource:
        """Read (and decode) every feature of `source` into memory."""
        feats = source.features()
        data = {}
        for ep in episodes if episodes is not None else source.episodes():
            data[ep] = {name: ((source.image_stamps(ep, name), source.decode(ep, name)) if f.kind == "image"
                               else source.lowdim(ep, name)) for name, f in feats.items()}
        return cls(data, feats)

    def episodes(self) -> list[int]:
        return sorted(self._data)

    def features(self) -> dict[str, Feature]:
        return dict(self._features)

    def lowdim(self, ep: int, name: str) -> tuple[np.ndarray, np.ndarray]:
        stamps, values = self._data[ep][name]
        return np.asarray(stamps, np.int64), np.asarray(values, np.float64).reshape(len(stamps), -1)

    def image_stamps(self, ep: int, name: str) -> np.ndarray:
        return np.asarray(self._data[ep][name][0], np.int64)

    def decode(self, ep: int, name: str) -> np.ndarray:
        return self._data[ep][name][1]


# --- LeRobotDataset v3.0 ---------------------------------------------------------------------------
class LeRobotSource:
    """A LeRobotDataset v3.0 directory. Stamps are the rows' `timestamp` (s from the episode start),
    snapped to the frame grid `k / fps` when within 1% of a frame (they are float32 on disk)."""

    def __init__(self, root: str | Path):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.root = Path(root)
        info_path = self.root / "meta" / "info.json"
        if not info_path.exists():
            raise LoaderError(f"{self.root} is not a LeRobot dataset (no meta/info.json)")
        self.info = json.loads(info_path.read_text())
        version = str(self.info.get("codebase_version", ""))
        if not version.startswith("v3"):
            raise LoaderError(f"{info_path}: codebase_version {version!r}; only LeRobotDataset v3.x is supported")
        self.fps = float(self.info["fps"])
        self._features = self._parse_features(self.info.get("features", {}))
        files = sorted((self.root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
        if not files:
            raise LoaderError(f"{self.root}: no meta/episodes/chunk-*/file-*.parquet")
        table = pa.concat_tables([pq.read_table(f) for f in files], promote_options="permissive")
        table = table.select([c for c in table.column_names if not c.startswith("stats/")])
        self._meta = {int(r["episode_index"]): r for r in table.to_pylist()}
        self._tables: dict[Path, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_tables": {}}

    def _parse_features(self, spec: dict[str, Any]) -> dict[str, Feature]:
        out = {}
        for name, f in spec.items():
            if name in LEROBOT_INDEX_COLUMNS:
                continue
            dtype = f.get("dtype")
            if dtype == "video":
                out[name] = Feature(name, "", "image")
            elif dtype in ("float32", "float64", "int64", "int32", "int16", "int8", "uint8", "bool"):
                kind = "action" if name == "action" else "state" if name == "observation.state" else "lowdim"
                out[name] = Feature(name, name, kind)
        return out                # string columns and "image" (PNG in parquet) features are not loaded

    def episodes(self) -> list[int]:
        return sorted(self._meta)

    def features(self) -> dict[str, Feature]:
        return dict(self._features)

    def _episode(self, ep: int) -> dict[str, Any]:
        if ep not in self._meta:
            raise LoaderError(f"{self.root}: no episode {ep}")
        return self._meta[ep]

    def _rows(self, ep: int) -> Any:
        """The episode's rows of its data file, ordered by frame_index (pyarrow Table)."""
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        meta = self._episode(ep)
        path = self.root / self.info["data_path"].format(chunk_index=meta["data/chunk_index"],
                                                         file_index=meta["data/file_index"])
        if path not in self._tables:
            self._tables[path] = pq.read_table(path)
        table = self._tables[path]
        rows = table.filter(pc.equal(table.column("episode_index"), ep))
        return rows.take(pc.sort_indices(rows.column("frame_index")))

    def _stamps(self, rows: Any) -> np.ndarray:
        ts = rows.column("timestamp").to_numpy().astype(np.float64)
        k = np.round(ts * self.fps)
        on_grid = np.abs(ts * self.fps - k) < 1e-2
        return np.where(on_grid, np.round(k * 1e9 / self.fps), np.round(ts * 1e9)).astype(np.int64)

    def lowdim(self, ep: int, name: str) -> tuple[np.ndarray, np.ndarray]:
        rows = self._rows(ep)
        col = rows.column(self._features[name].field).combine_chunks()
        n = rows.num_rows
        flat = col.flatten() if hasattr(col, "flatten") else col          # list columns -> their values
        values = flat.to_numpy(zero_copy_only=False)
        return self._stamps(rows), np.asarray(values, np.float64).reshape(n, -1)

    def image_stamps(self, ep: int, name: str) -> np.ndarray:
        return self._stamps(self._rows(ep))

    def video_path(self, ep: int, name: str) -> Path:
        meta = self._episode(ep)
        prefix = f"videos/{name}/"
        return self.root / self.info["video_path"].format(
            video_key=name, chunk_index=meta[f"{prefix}chunk_index"], file_index=meta[f"{prefix}file_index"])

    def decode(self, ep: int, name: str) -> np.ndarray:
        meta = self._episode(ep)
        start, stop = float(meta[f"videos/{name}/from_timestamp"]), float(meta[f"videos/{name}/to_timestamp"])
        half = 0.5 / self.fps
        times, frames = [], []
        for t, rgb in decode_range(self.video_path(ep, name), start - half, stop - half):
            times.append(t - start)
            frames.append(rgb)
        if not frames:
            raise LoaderError(f"episode {ep} '{name}': no frames in [{start}, {stop}) s of {self.video_path(ep, name)}")
        want = self._stamps(self._rows(ep)) / 1e9
        nearest = _nearest(np.asarray(times), want)     # one frame per row, by its timestamp
        return np.stack(frames)[nearest]               # N,H,W,3


def _nearest(sorted_times: np.ndarray, want: np.ndarray) -> np.ndarray:
    i = np.clip(np.searchsorted(sorted_times, want), 1, max(len(sorted_times) - 1, 1))
    if len(sorted_times) == 1:
        return np.zeros(len(want), np.int64)
    left_closer = (want - sorted_times[i - 1]) <= (sorted_times[i] - want)
    return np.where(left_closer, i - 1, i)


def decode_range(path: Path, start_s: float = 0.0, stop_s: float = float("inf")) -> Iterator[tuple[float, np.ndarray]]:
    """(pts seconds, HxWx3 uint8 RGB) of the frames with start_s <= pts < stop_s; seeks to the
    keyframe at or before start_s, then decodes forward. One decoder thread: DataLoader workers are
    the parallelism (frame threads only add overhead there)."""
    import av

    try:
        container = av.open(str(path))
    except (av.error.InvalidDataError, av.error.FileNotFoundError, OSError) as exc:
        raise LoaderError(f"cannot open video {path}: {exc}") from exc
    with container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        if start_s > 0:
            container.seek(int(start_s / stream.time_base), stream=stream, backward=True, any_frame=False)
        try:
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                t = float(frame.pts * stream.time_base)
                if t < start_s:
                    continue
                if t >= stop_s:
                    break
                yield t, frame.to_ndarray(format="rgb24")
        except av.error.InvalidDataError:     # truncated tail of a recovered recording: stop there
            return


def open_source(source: Any, features: dict[str, Feature] | None = None) -> Any:
    """An episode source from a source object, an `EpisodeStore`, or a path (store or LeRobot v3)."""
    if hasattr(source, "decode") and hasattr(source, "lowdim"):
        return source
    if isinstance(source, EpisodeStore):
        return StoreSource(source, features)
    path = Path(source)
    if (path / "dataset.json").exists():
        return StoreSource(path, features)
    if (path / "meta" / "info.json").exists():
        if features:
            raise LoaderError("a LeRobot dataset names its own features; pass feature names, not a feature map")
        return LeRobotSource(path)
    raise LoaderError(f"{path}: neither an episode store (dataset.json) nor a LeRobot v3 dataset (meta/info.json)")
