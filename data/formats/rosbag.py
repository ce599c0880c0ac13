"""rosbag2 bags with MCAP storage (rosbags): export episodes, import bags (MCAP or sqlite3).

Export writes one bag per episode, `<out>/ep-000000/` (metadata.yaml + ep-000000.mcap), readable by
`rosbags`, `ros2 bag` and Foxglove: every stream on its original topic and type, each message with
its **capture stamp** (the store's `stamp_ns`) as the log time. Low-dim and raw streams write the
recorded CDR bytes unchanged; video streams are decoded and re-emitted as `sensor_msgs/msg/Image`
(rgb8), so their pixels carry the video codec's loss (listed in the bag's custom data under
`robot_stack.lossy_topics`). The message definitions come from the project typestore, so the MCAP
schemas of `robot_stack_msgs` types let Foxglove decode them. Episode meta (task, success, index)
goes into the bag's `custom_data`.

Import reads a bag (a directory with metadata.yaml, a lone .mcap/.db3 file, or a folder of such
bags as written by export) into the store, one episode per bag: every topic (or the selected
`topics`) becomes a stream; Image/CompressedImage -> video, TactileFrame -> raw, others columnar.
`recv_ns` is the bag's log time and `stamp_ns` the message's header.stamp.
"""

from __future__ import annotations

import heapq
import io
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from data.formats import register_format
from data.store import EpisodeReader, EpisodeStore, StoreError, StreamSpec, stamp_of
from data.writer import EpisodeWriter
from robot_stack import messages

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
RAW_TYPES = ("robot_stack_msgs/msg/TactileFrame",)
VIDEO_BYTES = {"rgb8", "bgr8", "rgba8", "bgra8", "mono8"}      # 8-bit encodings a video stream takes
CUSTOM_PREFIX = "robot_stack."
FLUSH_EVERY = 2000          # messages between writer flushes on import
QUEUE_HIGH = 128            # encoder queue depth above which import waits (the queue drops at 256)

Progress = Callable[[int, int], None] | None      # progress(done, total), per episode/bag


@register_format("rosbag2")
class Rosbag2Format:
    """`export`: one rosbag2 (MCAP) per episode; `import_`: bags -> episodes."""

    suffix = ""

    def export(self, store: EpisodeStore, out: str | Path, *, episodes: list[int] | None = None,
               features: dict | None = None, fps: float | None = None, progress: Progress = None,
               streams: list[str] | None = None, compress: bool = True) -> Path:
        """Write `<out>/ep-NNNNNN/` bags; `streams` (or the streams `features` name) select streams.
        `compress`: zstd-compressed MCAP chunks. `fps` is ignored: a bag keeps every message at its stamp."""
        out = Path(out)
        indices = store.episodes() if episodes is None else list(episodes)
        if not indices:
            raise StoreError(f"{store.root}: no episodes to export")
        keys = list(streams) if streams else sorted({f.stream for f in features.values()}) if features else None
        out.mkdir(parents=True, exist_ok=True)
        for n, index in enumerate(indices):
            episode = store.episode(index)
            bag = out / f"ep-{index:06d}"
            if bag.exists():
                raise StoreError(f"{bag} exists already; export into an empty directory")
            write_bag(episode, bag, keys, compress=compress)
            if progress:
                progress(n + 1, len(indices))
        return out

    def import_(self, src: str | Path, store: EpisodeStore, *, progress: Progress = None,
                topics: list[str] | None = None, task: str | None = None) -> list[int]:
        """Import one bag, or every bag in a folder of bags; returns the new episode indices."""
        bags = find_bags(Path(src))
        out = []
        for n, bag in enumerate(bags):
            out.append(import_bag(bag, store, topics=topics, task=task))
            if progress:
                progress(n + 1, len(bags))
        return out


# --- export ---------------------------------------------------------------------------------------
def write_bag(episode: EpisodeReader, path: Path, keys: list[str] | None = None, *, compress: bool = True) -> Path:
    """One episode -> one rosbag2 directory with MCAP storage (zstd chunks when `compress`)."""
    from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer, WriterError

    specs = [episode._spec(k) for k in keys] if keys else list(episode.streams.values())
    writer = Writer(path, version=Writer.VERSION_LATEST, storage_plugin=StoragePlugin.MCAP)
    if compress:
        writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    for key, value in _custom_data(episode, specs).items():
        writer.set_custom_data(key, value)
    try:
        writer.open()
        connections = {s.key: writer.add_connection(s.topic, messages.resolve_type(s.type),
                                                    typestore=messages.typestore()) for s in specs}
        for stamp, key, data in heapq.merge(*(_stream_cdr(episode, s) for s in specs)):
            writer.write(connections[key], stamp, data)
    except WriterError as exc:
        raise StoreError(f"cannot write bag {path}: {exc}") from exc
    finally:
        if writer.storage is not None:
            writer.close()
    return path


def _custom_data(episode: EpisodeReader, specs: list[StreamSpec]) -> dict[str, str]:
    meta = episode.meta
    out = {"episode_index": str(episode.index), "task": str(meta.get("task", "")),
           "success": json.dumps(meta.get("success")), "platform_version": str(meta.get("platform_version", "")),
           "lossy_topics": ",".join(s.topic for s in specs if s.encoding == "video")}
    for key in ("robot", "calibration"):
        if meta.get(key) is not None:
            out[key] = json.dumps(meta[key])
    return {CUSTOM_PREFIX + k: v for k, v in out.items()}


def _stream_cdr(episode: EpisodeReader, spec: StreamSpec) -> Iterator[tuple[int, str, bytes]]:
    """(stamp_ns, key, CDR) of a stream in stamp order (ties keep their recorded order)."""
    if spec.encoding == "video":
        for stamp, msg in episode.messages(spec.key):
            yield stamp, spec.key, messages.serialize(msg)
        return
    table = episode.table(spec.key)
    if table.num_rows == 0:
        return
    stamps = table.column("stamp_ns").to_numpy()
    order = np.argsort(stamps, kind="stable")
    cdr = table.column("cdr")
    for i in order:
        yield int(stamps[i]), spec.key, cdr[int(i)].as_py()


# --- import ---------------------------------------------------------------------------------------
def find_bags(src: Path) -> list[Path]:
    """A bag directory, a lone .mcap/.db3 file, or a folder whose subfolders are bags."""
    if not src.exists():
        raise StoreError(f"{src} does not exist")
    if src.is_file():
        if src.suffix not in (".mcap", ".db3"):
            raise StoreError(f"{src} is not a rosbag2 bag (expected a bag directory, .mcap or .db3)")
        return [src]
    if (src / "metadata.yaml").exists():
        return [src]
    bags = sorted(p for p in src.iterdir() if p.is_dir() and (p / "metadata.yaml").exists())
    if not bags:
        raise StoreError(f"{src} is not a rosbag2 bag (no metadata.yaml) and holds no bags")
    return bags


def _open_reader(path: Path):
    from rosbags.rosbag2 import Reader

    try:
        reader = Reader(path)
        reader.open()
    except Exception as exc:   # ReaderError, and the storage plugins' own errors on corrupt files
        raise StoreError(f"{path} is not a readable rosbag2 bag: {type(exc).__name__}: {exc}") from exc
    return reader


def import_bag(path: Path, store: EpisodeStore, *, topics: list[str] | None = None,
               task: str | None = None) -> int:
    """One bag -> one committed episode; returns its index."""
    reader = _open_reader(path)
    try:
        conns, skipped = _select_connections(reader, path, topics)
        specs, key_of = _stream_specs(reader, conns)
        custom = _bag_custom_data(path)
        meta = {"task": task if task is not None else custom.get("task", ""),
                "source": {"format": "rosbag2", "path": str(path), "skipped_topics": skipped,
                           "custom_data": custom}}
        writer = store.new_episode(meta, specs)
        try:
            meta["source"]["unstamped_messages"] = _copy_messages(reader, writer, conns, key_of)
        except BaseException:
            writer.discard()
            raise
    finally:
        reader.close()
    success = custom.get("success")
    return writer.commit(success=json.loads(success) if success in ("true", "false") else None, source=meta["source"])


def _select_connections(reader, path: Path, topics: list[str] | None) -> tuple[list, list[str]]:
    known = messages.typestore().types
    by_topic: dict[str, list] = {}
    for conn in reader.connections:
        by_topic.setdefault(conn.topic, []).append(conn)
    if topics:
        missing = [t for t in topics if t not in by_topic]
        if missing:
            raise StoreError(f"{path}: no topic {', '.join(missing)}; topics: {', '.join(sorted(by_topic))}")
        unknown = [t for t in topics if by_topic[t][0].msgtype not in known]
        if unknown:
            raise StoreError(f"{path}: topic(s) {', '.join(unknown)} have types the typestore does not know: "
                             f"{', '.join(by_topic[t][0].msgtype for t in unknown)}")
    chosen = [t for t in by_topic if not topics or t in topics]
    skipped = [t for t in chosen if by_topic[t][0].msgtype not in known]
    conns = [c for t in chosen if t not in skipped for c in by_topic[t]]
    if not conns:
        raise StoreError(f"{path}: no importable topics (skipped for unknown types: {skipped or 'none'})")
    return conns, skipped


def _stream_specs(reader, conns: list) -> tuple[list[StreamSpec], dict[int, str]]:
    specs: dict[str, StreamSpec] = {}
    key_of: dict[int, str] = {}
    seen: dict[str, str] = {}           # topic -> key
    duration_s = max(reader.duration / 1e9, 1e-9)
    for conn in conns:
        if conn.topic in seen:
            key_of[conn.id] = seen[conn.topic]
            continue
        key = StreamSpec.key_for(conn.topic)
        while key in specs:
            key += "_"
        encoding = _encoding_for(reader, conn)
        count = sum(c.msgcount for c in conns if c.topic == conn.topic)
        fps = float(np.clip(round(count / duration_s), 1, 240)) if count > 1 else 30.0
        specs[key] = StreamSpec(key, conn.topic, conn.msgtype, encoding, fps=fps)
        seen[conn.topic] = key_of[conn.id] = key
    return list(specs.values()), key_of


def _encoding_for(reader, conn) -> str:
    if conn.msgtype == COMPRESSED:
        return "video"
    if conn.msgtype == IMAGE:       # 8-bit images -> video; depth/float images stay raw (lossless)
        gen = reader.messages(connections=[conn])
        try:
            first = next(gen, None)
        finally:
            gen.close()
        if first is None:
            return "video"
        return "video" if messages.deserialize(first[2], IMAGE).encoding in VIDEO_BYTES else "raw"
    return "raw" if conn.msgtype in RAW_TYPES else "columnar"


def _copy_messages(reader, writer: EpisodeWriter, conns: list, key_of: dict[int, str]) -> dict[str, int]:
    """Every message into its stream; returns, per topic, how many had an unset (zero) header stamp,
    which is replaced by the log time so the stream keeps a usable time axis."""
    unstamped: dict[str, int] = {}
    for n, (conn, log_ns, data) in enumerate(reader.messages(connections=conns)):
        key = key_of[conn.id]
        try:
            msg = messages.deserialize(data, conn.msgtype)
        except Exception as exc:
            raise StoreError(f"{conn.topic}: message {n} does not decode as {conn.msgtype}: {exc}") from exc
        header = getattr(msg, "header", None)
        if header is not None and header.stamp.sec == 0 and header.stamp.nanosec == 0:
            header.stamp.sec, header.stamp.nanosec = divmod(int(log_ns), 1_000_000_000)
            unstamped[conn.topic] = unstamped.get(conn.topic, 0) + 1
        if writer.specs[key].encoding == "video":
            _wait_for_encoder(writer, key)
            if conn.msgtype == COMPRESSED:
                writer.write_frame(key, _decode_compressed(msg, conn.topic), stamp_of(msg, log_ns), log_ns,
                                   frame_id=msg.header.frame_id)
                continue
        writer.write(key, msg, recv_ns=log_ns)
        if (n + 1) % FLUSH_EVERY == 0:
            writer.flush()
    return unstamped


def _wait_for_encoder(writer: EpisodeWriter, key: str) -> None:
    """Import is faster than encoding: wait instead of letting the encoder queue drop frames."""
    encoder = writer.encoders[key]
    while encoder.pending >= QUEUE_HIGH:
        time.sleep(0.002)


def _decode_compressed(msg: Any, topic: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(bytes(msg.data))) as img:
            return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise StoreError(f"{topic}: CompressedImage ({msg.format!r}) does not decode: {exc}") from exc


def _bag_custom_data(path: Path) -> dict[str, str]:
    """The robot_stack.* entries of metadata.yaml's custom_data (prefix stripped), if any."""
    import yaml

    meta_path = path / "metadata.yaml" if path.is_dir() else path.parent / "metadata.yaml"
    if not meta_path.exists():
        return {}
    try:
        info = yaml.safe_load(meta_path.read_text()).get("rosbag2_bagfile_information", {})
    except (yaml.YAMLError, AttributeError):
        return {}
    custom = info.get("custom_data") or {}
    return {k[len(CUSTOM_PREFIX):]: str(v) for k, v in custom.items() if k.startswith(CUSTOM_PREFIX)}
