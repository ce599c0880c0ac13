"""Shared-memory path for `sensor_msgs/msg/Image` between processes on one host.

An Image publisher on `/cam` writes each frame into a ring of slots in a file under /dev/shm and
publishes a small `robot_stack_msgs/msg/ShmImage` descriptor on `/cam/_shm`; robot_stack
subscriptions listen there and on `/cam` with the tag `shm_tag()`, so the full Image goes out on
`/cam` only for other subscribers (rclpy nodes, other hosts). A frame arriving both ways is
delivered once. Slots are seqlocked (odd sequence number while written, the descriptor's even
one when done; readers check before and after copying and drop a torn frame). No explicit fence:
it relies on the x86/ARMv8 store order seen through CPython's memcpy.
Only the publisher unlinks (close, GC, exit); it holds an `flock` on its file, so the next
publisher removes segments of crashed ones. Tag and descriptor carry a host key (boot id + shm
mount): other hosts/containers ignore our descriptors and get full Images instead.
Off for `inproc`, latched publishers, `ROBOT_STACK_SHM=0`, and transports that cannot carry
the descriptor type (`rclpy`).
"""

from __future__ import annotations

import errno
import fcntl
import functools
import logging
import mmap
import os
import re
import secrets
import struct
import threading
import time
import weakref
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any

import numpy as np

from robot_stack import messages
from robot_stack.errors import RobotStackError, TransportError
from robot_stack.qos import Durability, QoSProfile
from robot_stack.transport.base import MessageCallback, Transport, TransportPublisher, TransportSubscription

SHM_ENV = "ROBOT_STACK_SHM"
SHM_DIR_ENV = "ROBOT_STACK_SHM_DIR"
IMAGE_TYPE = "sensor_msgs/msg/Image"
DESCRIPTOR_TYPE = "robot_stack_msgs/msg/ShmImage"
DESCRIPTOR_SUFFIX = "/_shm"
PREFIX = "robot_stack_"
DEFAULT_SLOTS = 6
_NAME_RE = re.compile(r"^robot_stack_[A-Za-z0-9_]{1,200}$")
_MAGIC = b"RSSHMv1\0"
_HEADER = struct.Struct("<8sIIQQ")  # magic, slots, reserved, slot size, writer pid
_SEQ = struct.Struct("<Q")
_ALIGN = 64  # segment header and slot header sizes; slots start on cache lines
_log = logging.getLogger("robot_stack.transport.shm")


class ShmError(RobotStackError):
    """A shared-memory segment or descriptor is not usable (wrong name, size, format)."""


def shm_dir() -> Path:
    return Path(os.environ.get(SHM_DIR_ENV, "/dev/shm"))


@functools.cache
def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return f"noboot-{os.uname().nodename}"


def host_key() -> str:
    """Who can read our segments: same boot of the same kernel, same shm mount."""
    try:
        dev = os.stat(shm_dir()).st_dev
    except OSError:
        dev = 0
    return f"{_boot_id()}-{dev:x}"


def shm_tag() -> str:
    return f"shm-{host_key()}"


def enabled(transport: Transport) -> bool:
    return transport.name != "inproc" and os.environ.get(SHM_ENV, "1") != "0" and shm_dir().is_dir()


def _round_up(n: int) -> int:
    return max(_ALIGN, (n + _ALIGN - 1) // _ALIGN * _ALIGN)


# --- the ring ---------------------------------------------------------------------------------
class ShmRing:
    """Writer side: `slots` slots of `slot_size` bytes in one shared-memory file."""

    _swept: set[str] = set()

    def __init__(self, slot_size: int, slots: int = DEFAULT_SLOTS, *, label: str = "", directory: Path | None = None):
        if slots < 1 or slot_size < 1:
            raise ValueError(f"a ring needs at least one slot of at least one byte (got {slots} x {slot_size})")
        self.directory = Path(directory or shm_dir())
        if str(self.directory) not in ShmRing._swept:  # once per process and directory
            ShmRing._swept.add(str(self.directory))
            sweep_stale(self.directory)
        label = re.sub(r"[^A-Za-z0-9]+", "_", label).strip("_")[:48]
        self.name = f"{PREFIX}{os.getpid()}_{label + '_' if label else ''}{secrets.token_hex(4)}"
        self.path = self.directory / self.name
        self.slots, self.slot_size = slots, _round_up(slot_size)
        self._stride = _ALIGN + self.slot_size
        self._mm, fd = _create_locked(self.path, _ALIGN + slots * self._stride)
        _HEADER.pack_into(self._mm, 0, _MAGIC, slots, 0, self.slot_size, os.getpid())
        self._frames = 0
        self._finalizer = weakref.finalize(self, _release_writer, self._mm, fd, str(self.path), os.getpid())

    def write(self, data: Any) -> tuple[int, int]:
        """Copy bytes into the next slot; returns (slot, seq) for the descriptor."""
        view = memoryview(np.ascontiguousarray(data) if isinstance(data, np.ndarray) else data).cast("B")
        if view.nbytes > self.slot_size:
            raise ShmError(f"frame of {view.nbytes} bytes does not fit slots of {self.slot_size} in {self.name}")
        self._frames += 1
        slot, seq = (self._frames - 1) % self.slots, 2 * self._frames
        off = _ALIGN + slot * self._stride
        _SEQ.pack_into(self._mm, off, seq - 1)  # odd: being written
        self._mm[off + _ALIGN : off + _ALIGN + view.nbytes] = view
        _SEQ.pack_into(self._mm, off, seq)  # even: complete
        return slot, seq

    def close(self) -> None:
        """Unmap and unlink (idempotent). Readers that mapped it keep their mapping."""
        self._finalizer()


def _create_locked(path: Path, size: int) -> tuple[mmap.mmap, int]:
    """Create `path` under a temporary name, lock it, size and map it, then give it its name."""
    tmp = path.with_name(path.name + ".init")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held while we live: marks the segment in use
        os.ftruncate(fd, size)
        try:  # reserve the pages now: a full tmpfs fails here instead of SIGBUS on a later write
            os.posix_fallocate(fd, 0, size)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
        mm = mmap.mmap(fd, size)
        os.rename(tmp, path)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    return mm, fd


def _release_writer(mm: mmap.mmap, fd: int, path: str, owner_pid: int) -> None:
    if os.getpid() != owner_pid:  # a forked child inherited the finalizer: not its segment
        return
    Path(path).unlink(missing_ok=True)
    try:
        mm.close()
    except BufferError:  # someone still holds a view; the mapping goes with the process
        pass
    os.close(fd)


def sweep_stale(directory: Path | None = None, *, init_grace: float = 10.0) -> list[str]:
    """Unlink this user's segments whose publisher is gone (nobody holds the lock)."""
    directory = Path(directory or shm_dir())
    removed: list[str] = []
    for path in directory.glob(PREFIX + "*"):
        try:
            st = path.stat()
            if st.st_uid != os.getuid() or (path.suffix == ".init" and time.time() - st.st_mtime < init_grace):
                continue
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            path.unlink(missing_ok=True)
            removed.append(path.name)
            _log.info("removed stale shared-memory segment %s (its publisher is gone)", path.name)
        except OSError:  # locked: its publisher is alive
            pass
        finally:
            os.close(fd)
    return removed


class ShmRingReader:
    """Reader side of one segment: maps it read-only, never unlinks it."""

    def __init__(self, name: str, directory: Path | None = None):
        if not _NAME_RE.match(name):
            raise ShmError(f"not a robot_stack shared-memory segment name: {name!r}")
        self.name = name
        fd = os.open(Path(directory or shm_dir()) / name, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            if size < _ALIGN:
                raise ShmError(f"segment {name} is too small ({size} bytes)")
            self._mm = mmap.mmap(fd, size, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        magic, self.slots, _, self.slot_size, self.writer_pid = _HEADER.unpack_from(self._mm, 0)
        self._stride = _ALIGN + self.slot_size
        if magic != _MAGIC or _ALIGN + self.slots * self._stride > size:
            self._mm.close()
            raise ShmError(f"segment {name} has an unknown layout")

    def read(self, slot: int, seq: int, size: int) -> np.ndarray | None:
        """A copy of the frame, or None when the slot no longer (or not yet fully) holds `seq`."""
        if slot >= self.slots or size > self.slot_size or seq % 2:
            raise ShmError(f"descriptor slot {slot} / size {size} / seq {seq} does not fit segment {self.name}")
        off = _ALIGN + slot * self._stride
        if _SEQ.unpack_from(self._mm, off)[0] != seq:
            return None
        data = self._copy(off + _ALIGN, size)
        if _SEQ.unpack_from(self._mm, off)[0] != seq:  # overwritten while we copied
            return None
        return data

    def _copy(self, offset: int, size: int) -> np.ndarray:
        return np.frombuffer(self._mm, dtype=np.uint8, count=size, offset=offset).copy()

    def close(self) -> None:
        try:
            self._mm.close()
        except BufferError:
            pass


# --- Image publisher / subscription -----------------------------------------------------------
def create_publisher(transport: Transport, topic: str, type_name: str, qos: QoSProfile) -> TransportPublisher:
    """The transport's publisher, wrapped in the shared-memory path for Images where it applies."""
    plain = transport.create_publisher(topic, type_name, qos)
    if type_name != IMAGE_TYPE or qos.durability is Durability.TRANSIENT_LOCAL or not enabled(transport):
        return plain
    try:
        descriptor = transport.create_publisher(topic + DESCRIPTOR_SUFFIX, DESCRIPTOR_TYPE, qos)
    except TransportError as exc:
        _log.debug("no shared-memory path for '%s': %s", topic, exc)
        return plain
    return ShmImagePublisher(plain, descriptor)


def create_subscription(
    transport: Transport, topic: str, type_name: str, qos: QoSProfile, callback: MessageCallback
) -> TransportSubscription:
    """The transport's subscription; for Images also the shared-memory descriptors."""
    if type_name != IMAGE_TYPE or not enabled(transport):
        return transport.create_subscription(topic, type_name, qos, callback)
    try:
        return ShmImageSubscription(transport, topic, qos, callback)
    except TransportError as exc:
        _log.debug("no shared-memory path for '%s': %s", topic, exc)
        return transport.create_subscription(topic, type_name, qos, callback)


class ShmImagePublisher(TransportPublisher):
    """Frames go to the ring + descriptor topic, and in full only to subscribers outside shm."""

    def __init__(self, plain: TransportPublisher, descriptor: TransportPublisher, slots: int = DEFAULT_SLOTS):
        self.topic, self.type_name = plain.topic, plain.type_name
        self._plain, self._descriptor, self._slots = plain, descriptor, slots
        self._ring: ShmRing | None = None
        self._tag, self._host = shm_tag(), host_key()
        self.shm_published = 0
        self.full_published = 0
        self.broken = False  # set when no segment could be created: everyone gets full Images

    def publish(self, msg: Any) -> None:
        if self._descriptor.matched_subscriptions() > 0 and not self.broken:
            self._publish_descriptor(msg)
        # Once shared memory failed, shm-aware subscribers need the full Image too.
        if self._plain.matched_subscriptions(excluding_tag=None if self.broken else self._tag) > 0:
            self._plain.publish(msg)
            self.full_published += 1

    def _publish_descriptor(self, msg: Any) -> None:
        data = np.ascontiguousarray(msg.data, dtype=np.uint8)
        if self._ring is None or data.nbytes > self._ring.slot_size:
            if self._ring is not None:
                self._ring.close()
                self._ring = None
            try:
                self._ring = ShmRing(max(data.nbytes, 1), self._slots, label=self.topic)
            except OSError as exc:  # e.g. /dev/shm full (64 MB in a default docker container)
                _log.warning("shared memory unusable for '%s' (%s): publishing full Images", self.topic, exc)
                self.broken = True
                return
        slot, seq = self._ring.write(data)
        desc = messages.get_class(DESCRIPTOR_TYPE)(
            header=msg.header, segment=self._ring.name, slot=slot, seq=seq, height=msg.height, width=msg.width,
            encoding=msg.encoding, is_bigendian=msg.is_bigendian, step=msg.step, size=data.nbytes,
            boot_id=self._host,
        )
        self._descriptor.publish(desc)
        self.shm_published += 1

    @property
    def segment(self) -> str | None:
        return None if self._ring is None else self._ring.name

    def matched_subscriptions(self, *, excluding_tag: str | None = None) -> int:
        return self._plain.matched_subscriptions(excluding_tag=excluding_tag)

    def close(self) -> None:
        self._plain.close()
        self._descriptor.close()
        if self._ring is not None:
            self._ring.close()


class _Dedupe:
    """Pairs up a frame that came both ways (descriptor and full Image): the second is a duplicate.

    Each arrival cancels at most one recent arrival of the same key on the other path, so frames
    with repeated stamps (e.g. all zero) still pair one to one.
    """

    def __init__(self, window: float = 2.0, limit: int = 256):
        self.window = window
        self._seen = {"shm": deque(maxlen=limit), "full": deque(maxlen=limit)}  # (arrival, key), oldest first

    def is_duplicate(self, path: str, key: tuple) -> bool:
        other, now = self._seen["full" if path == "shm" else "shm"], time.monotonic()
        while other and now - other[0][0] > self.window:
            other.popleft()
        for i, (_, seen) in enumerate(other):
            if seen == key:
                del other[i]
                return True
        return False

    def remember(self, path: str, key: tuple) -> None:
        self._seen[path].append((time.monotonic(), key))


def _frame_key(msg: Any) -> tuple:  # an Image or a ShmImage
    return (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id, msg.height, msg.width)


class ShmImageSubscription(TransportSubscription):
    """Images from shared memory (same host) and from the plain topic (everyone else), each once."""

    def __init__(self, transport: Transport, topic: str, qos: QoSProfile, callback: MessageCallback, cache: int = 4):
        self.topic, self.type_name, self.callback = topic, IMAGE_TYPE, callback
        self.torn = self.unreadable = self.foreign = self.duplicates = self.from_shm = 0
        self._readers: OrderedDict[str, ShmRingReader] = OrderedDict()
        self._cache, self._lock, self._dedupe = cache, threading.Lock(), _Dedupe()
        self._host, self._closed = host_key(), False
        self._descriptors = transport.create_subscription(topic + DESCRIPTOR_SUFFIX, DESCRIPTOR_TYPE, qos, self._on_shm)
        try:
            self._plain = transport.create_subscription(topic, IMAGE_TYPE, qos, self._on_full, tag=shm_tag())
        except BaseException:
            self._descriptors.close()
            raise

    def parts(self) -> list[TransportSubscription]:
        return [*self._descriptors.parts(), *self._plain.parts()]

    @property
    def dropped(self) -> int:
        """Malformed samples, plus frames lost to an overwrite or an unreadable segment."""
        return self._descriptors.dropped + self._plain.dropped + self.torn + self.unreadable

    def _on_shm(self, desc: Any) -> None:
        if desc.boot_id != self._host:
            self.foreign += 1  # another host/container: its full Images reach us on the plain topic
            return
        key = _frame_key(desc)
        with self._lock:
            if self._closed:
                return
            if self._dedupe.is_duplicate("shm", key):
                self.duplicates += 1
                return
            data = self._read(desc)
            if data is None:
                return
            self._dedupe.remember("shm", key)
            self.from_shm += 1
        # The descriptor was type-checked when deserialized: build the Image without re-validating.
        self.callback(messages.get_class(IMAGE_TYPE)(
            header=desc.header, height=desc.height, width=desc.width, encoding=desc.encoding,
            is_bigendian=desc.is_bigendian, step=desc.step, data=data,
        ))

    def _read(self, desc: Any) -> np.ndarray | None:
        try:
            data = self._reader(desc.segment).read(desc.slot, desc.seq, desc.size)
        except (OSError, ShmError) as exc:
            if not self.unreadable:
                _log.warning("shared-memory images on '%s' unreadable (%s); ROBOT_STACK_SHM=0 turns shm off",
                             self.topic, exc)
            self.unreadable += 1
            return None
        if data is None:
            self.torn += 1
        return data

    def _reader(self, name: str) -> ShmRingReader:
        reader = self._readers.get(name)
        if reader is None:
            reader = self._readers[name] = ShmRingReader(name)
            while len(self._readers) > self._cache:
                self._readers.popitem(last=False)[1].close()
        self._readers.move_to_end(name)
        return reader

    def _on_full(self, msg: Any) -> None:
        key = _frame_key(msg)
        with self._lock:
            if self._closed:
                return
            if self._dedupe.is_duplicate("full", key):
                self.duplicates += 1
                return
            self._dedupe.remember("full", key)
        self.callback(msg)

    def close(self) -> None:
        self._descriptors.close()
        self._plain.close()
        with self._lock:
            self._closed = True
            for reader in self._readers.values():
                reader.close()
            self._readers.clear()
