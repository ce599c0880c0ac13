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

import functools
import logging
import os
import threading
import time
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any

import numpy as np

from robot_stack import messages
from robot_stack.errors import TransportError
from robot_stack.qos import Durability, QoSProfile
from robot_stack.transport.base import MessageCallback, Transport, TransportPublisher, TransportSubscription
from robot_stack.transport.shm_ring import DEFAULT_SLOTS, ShmError, ShmRing, ShmRingReader, shm_dir

SHM_ENV = "ROBOT_STACK_SHM"
IMAGE_TYPE = "sensor_msgs/msg/Image"
DESCRIPTOR_TYPE = "robot_stack_msgs/msg/ShmImage"
DESCRIPTOR_SUFFIX = "/_shm"
_log = logging.getLogger("robot_stack.transport.shm")


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
        self.zero_copy_published = 0  # frames published from a loan: no copy into the ring
        self.broken = False  # set when no segment could be created: everyone gets full Images
        self._loan: tuple[int, int, np.ndarray] | None = None  # (slot, seq, array) lent out

    def loan(self, nbytes: int) -> np.ndarray | None:
        """A writable uint8 array in the next ring slot, or None where shared memory is unusable.

        Publishing an Image whose `data` is this array (e.g. `convert.image(arr.reshape(h, w, c))`)
        sends it without copying the pixels into the ring.
        """
        if self.broken or not self._ensure_ring(nbytes):
            return None
        self._loan = self._ring.loan(nbytes)
        return self._loan[2]

    def publish(self, msg: Any) -> None:
        if self._descriptor.matched_subscriptions() > 0 and not self.broken:
            self._publish_descriptor(msg)
        # Once shared memory failed, shm-aware subscribers need the full Image too.
        if self._plain.matched_subscriptions(excluding_tag=None if self.broken else self._tag) > 0:
            self._plain.publish(msg)
            self.full_published += 1

    def _ensure_ring(self, nbytes: int) -> bool:
        if self._ring is not None and nbytes <= self._ring.slot_size:
            return True
        if self._ring is not None:
            self._ring.close()
            self._ring, self._loan = None, None
        try:
            self._ring = ShmRing(max(nbytes, 1), self._slots, label=self.topic)
        except OSError as exc:  # e.g. /dev/shm full (64 MB in a default docker container)
            _log.warning("shared memory unusable for '%s' (%s): publishing full Images", self.topic, exc)
            self.broken = True
            return False
        return True

    def _take_loan(self, data: np.ndarray) -> tuple[int, int] | None:
        """(slot, seq) when `data` is the array lent out by `loan()`: it is already in the ring."""
        loan, self._loan = self._loan, None
        if loan is None or data.nbytes != loan[2].nbytes:
            return None
        if data.__array_interface__["data"][0] != loan[2].__array_interface__["data"][0]:
            return None
        return loan[0], loan[1]

    def _publish_descriptor(self, msg: Any) -> None:
        data = np.ascontiguousarray(msg.data, dtype=np.uint8)
        loaned = self._take_loan(data)
        if loaned is not None:
            slot, seq = loaned
            self._ring.commit(slot, seq)
            self.zero_copy_published += 1
        elif self._ensure_ring(data.nbytes):
            slot, seq = self._ring.write(data)
        else:
            return
        desc = messages.get_class(DESCRIPTOR_TYPE)(
            header=msg.header, segment=self._ring.name, slot=slot, seq=seq, height=msg.height, width=msg.width,
            encoding=msg.encoding, is_bigendian=msg.is_bigendian, step=msg.step, size=data.nbytes,
            boot_id=self._host,
        )
        self._descriptor.publish(desc)
        self.shm_published += 1

    def parts(self) -> list[TransportPublisher]:
        return [*self._plain.parts(), *self._descriptor.parts()]

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
