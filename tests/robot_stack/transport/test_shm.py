"""Shared-memory image path: the seqlocked ring, the Image publisher/subscription, cross-process."""

from __future__ import annotations

import errno
import gc
import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest

from robot_stack import convert, messages
from robot_stack.errors import TransportUnavailable
from robot_stack.qos import LATCHED, QoSProfile
from robot_stack.transport import shm, shm_ring
from robot_stack.transport.inproc import InprocTransport

SHM = Path("/dev/shm")
pytestmark = pytest.mark.skipif(not SHM.is_dir(), reason="needs /dev/shm")


def _ours() -> set[str]:
    return {p.name for p in SHM.glob(shm_ring.PREFIX + "*")}


@pytest.fixture(autouse=True)
def no_shm_leak():
    before = _ours()
    yield
    gc.collect()
    leaked = _ours() - before
    assert not leaked, f"shared-memory segments leaked: {leaked}"


def _frame(i: int, shape=(480, 640, 3)) -> np.ndarray:
    return ((np.arange(np.prod(shape), dtype=np.uint32) * 7 + i) % 251).astype(np.uint8).reshape(shape)


# --- the ring ---------------------------------------------------------------------------------
def test_write_read_roundtrip_and_unlink_on_close():
    ring = shm_ring.ShmRing(1000, slots=4, label="/cam/left")
    assert ring.path.exists() and "cam_left" in ring.name and f"_{os.getpid()}_" in ring.name
    data = np.arange(1000, dtype=np.uint16).astype(np.uint8)
    slot, seq = ring.write(data)
    reader = shm_ring.ShmRingReader(ring.name)
    assert (reader.slots, reader.slot_size, reader.writer_pid) == (4, ring.slot_size, os.getpid())
    np.testing.assert_array_equal(reader.read(slot, seq, data.size), data)
    assert reader.read(slot, seq, 10).tolist() == data[:10].tolist()
    reader.close()
    assert ring.path.exists(), "a reader never unlinks"
    ring.close()
    ring.close()  # idempotent
    assert not ring.path.exists()


def test_reader_keeps_its_mapping_after_unlink():
    ring = shm_ring.ShmRing(64, slots=2)
    slot, seq = ring.write(b"hello")
    reader = shm_ring.ShmRingReader(ring.name)
    ring.close()
    assert reader.read(slot, seq, 5).tobytes() == b"hello"
    reader.close()


def test_wrap_around_overwrites_oldest_slot():
    ring = shm_ring.ShmRing(16, slots=3)
    reader = shm_ring.ShmRingReader(ring.name)
    written = [ring.write(bytes([i]) * 16) for i in range(5)]
    assert [s for s, _ in written] == [0, 1, 2, 0, 1]
    assert [q for _, q in written] == [2, 4, 6, 8, 10]
    assert reader.read(*written[0], 16) is None  # slot 0 now holds frame 3
    assert reader.read(*written[1], 16) is None
    for i in (2, 3, 4):
        assert reader.read(*written[i], 16).tolist() == [i] * 16
    reader.close()
    ring.close()


def test_torn_read_detected_when_the_slot_is_overwritten_during_the_copy():
    ring = shm_ring.ShmRing(8, slots=1)
    slot, seq = ring.write(b"AAAAAAAA")

    class RacingReader(shm_ring.ShmRingReader):
        def _copy(self, offset, size):
            first_half = super()._copy(offset, size // 2)
            ring.write(b"BBBBBBBB")  # the writer laps us in the middle of the copy
            return np.concatenate([first_half, super()._copy(offset + size // 2, size - size // 2)])

    reader = RacingReader(ring.name)
    assert reader.read(slot, seq, 8) is None
    assert shm_ring.ShmRingReader._copy(reader, shm_ring._ALIGN * 2, 8).tobytes() == b"BBBBBBBB"
    reader.close()
    ring.close()


def test_slot_being_written_is_not_read():
    ring = shm_ring.ShmRing(8, slots=1)
    slot, seq = ring.write(b"AAAAAAAA")
    shm_ring._SEQ.pack_into(ring._mm, shm_ring._ALIGN, seq + 1)  # odd: a write in progress
    reader = shm_ring.ShmRingReader(ring.name)
    assert reader.read(slot, seq, 8) is None
    reader.close()
    ring.close()


def test_bad_descriptors_and_names_are_rejected():
    ring = shm_ring.ShmRing(8, slots=2)
    reader = shm_ring.ShmRingReader(ring.name)
    for slot, seq, size in ((2, 2, 8), (0, 2, 10_000), (0, 3, 8)):
        with pytest.raises(shm_ring.ShmError):
            reader.read(slot, seq, size)
    reader.close()
    ring.close()
    for name in ("../etc/passwd", "robot_stack_../../x", "other_segment", ""):
        with pytest.raises(shm_ring.ShmError):
            shm_ring.ShmRingReader(name)
    with pytest.raises(FileNotFoundError):
        shm_ring.ShmRingReader(ring.name)
    with pytest.raises(shm_ring.ShmError, match="does not fit"):
        shm_ring.ShmRing(8, slots=1).write(b"x" * 100)  # the ring is collected (and unlinked) right after


def test_finalizer_unlinks_a_dropped_ring():
    ring = shm_ring.ShmRing(8)
    path = ring.path
    del ring
    gc.collect()
    assert not path.exists()


def _run(code: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **env},
    )


def test_exit_unlinks_and_a_crashed_publishers_segment_is_swept():
    code = """
        import os, sys
        from robot_stack.transport import shm_ring
        ring = shm_ring.ShmRing(64, label="crash")
        print(ring.name, flush=True)
        if sys.argv[-1] == "crash" or os.environ.get("CRASH"):
            os._exit(1)  # no atexit, no finalizers: the segment stays behind
    """
    clean = _run(code)
    assert clean.returncode == 0, clean.stderr
    assert not (SHM / clean.stdout.strip()).exists(), "atexit unlinks"
    crashed = _run(code, CRASH="1")
    stale = SHM / crashed.stdout.strip()
    assert crashed.returncode == 1 and stale.exists()
    live = shm_ring.ShmRing(8)
    removed = shm_ring.sweep_stale()
    assert stale.name in removed and not stale.exists()
    assert live.path.exists(), "a live publisher's segment is locked and kept"
    live.close()


# --- publisher / subscription logic (over inproc, which supports tags) ------------------------
class _Pair:
    """An Image publisher and a shm-aware subscription on one inproc bus."""

    def __init__(self, topic: str):
        self.transport = InprocTransport()
        q = QoSProfile(depth=10)
        plain = self.transport.create_publisher(topic, shm.IMAGE_TYPE, q)
        desc = self.transport.create_publisher(topic + shm.DESCRIPTOR_SUFFIX, shm.DESCRIPTOR_TYPE, q)
        self.pub = shm.ShmImagePublisher(plain, desc, slots=4)
        self.got: list = []
        self.sub = shm.ShmImageSubscription(self.transport, topic, q, self.got.append)

    def close(self):
        self.sub.close()
        self.pub.close()
        self.transport.close()


@pytest.fixture
def pair():
    p = _Pair(f"/cam_{uuid.uuid4().hex[:8]}")
    yield p
    p.close()


def test_only_shm_aware_subscribers_get_no_full_image(pair):
    frames = [_frame(i, (48, 64, 3)) for i in range(6)]
    for i, f in enumerate(frames):
        pair.pub.publish(convert.image(f, stamp=messages.make("builtin_interfaces/msg/Time", sec=i), frame_id="cam"))
    assert (pair.pub.shm_published, pair.pub.full_published) == (6, 0)
    assert pair.sub.from_shm == 6 and len(pair.got) == 6
    for f, msg in zip(frames, pair.got, strict=True):
        np.testing.assert_array_equal(convert.image_array(msg), f)
        assert msg.header.frame_id == "cam" and msg.encoding == "rgb8"


def test_outside_subscriber_gets_full_images_and_ours_each_frame_once(pair):
    outside: list = []
    pair.transport.create_subscription(pair.pub.topic, shm.IMAGE_TYPE, QoSProfile(), outside.append)
    for i in range(5):  # all stamps zero: pairing must still be one to one
        pair.pub.publish(convert.image(_frame(i, (4, 4, 1)), "mono8"))
    assert (pair.pub.shm_published, pair.pub.full_published) == (5, 5)
    assert len(outside) == 5 and len(pair.got) == 5 and pair.sub.duplicates == 5
    assert [int(m.data[0]) for m in pair.got] == [int(_frame(i, (4, 4, 1))[0, 0, 0]) for i in range(5)]


def test_full_image_first_then_descriptor_is_deduplicated():
    d = shm._Dedupe()
    key = (1, 2, "cam", 4, 4)
    assert not d.is_duplicate("full", key)
    d.remember("full", key)
    assert d.is_duplicate("shm", key)
    assert not d.is_duplicate("shm", key), "one arrival cancels only one"


def test_images_from_outside_publishers_arrive_on_the_plain_topic(pair):
    plain = pair.transport.create_publisher(pair.pub.topic, shm.IMAGE_TYPE, QoSProfile())
    plain.publish(convert.image(_frame(1, (2, 2, 3))))
    assert len(pair.got) == 1 and pair.sub.from_shm == 0


def test_descriptor_from_another_host_is_ignored(pair):
    desc_pub = pair.transport.create_publisher(
        pair.pub.topic + shm.DESCRIPTOR_SUFFIX, shm.DESCRIPTOR_TYPE, QoSProfile()
    )
    desc_pub.publish(messages.make(shm.DESCRIPTOR_TYPE, segment="robot_stack_1_x", seq=2, size=1, boot_id="elsewhere"))
    desc_pub.publish(messages.make(shm.DESCRIPTOR_TYPE, segment="../../etc/passwd", seq=2, size=1,
                                   boot_id=shm.host_key()))
    assert pair.got == [] and pair.sub.foreign == 1 and pair.sub.unreadable == 1 and pair.sub.dropped == 1


def test_overwritten_frame_is_dropped_and_counted(pair):
    for i in range(5):  # 4 slots: frame 0 (slot 0, seq 2) is overwritten by frame 4
        pair.pub.publish(convert.image(_frame(i, (2, 2, 3))))
    late = pair.transport.create_publisher(pair.pub.topic + shm.DESCRIPTOR_SUFFIX, shm.DESCRIPTOR_TYPE, QoSProfile())
    late.publish(messages.make(shm.DESCRIPTOR_TYPE, segment=pair.pub.segment, slot=0, seq=2, size=12,
                               height=2, width=2, boot_id=shm.host_key()))
    assert len(pair.got) == 5 and pair.sub.torn == 1 and pair.sub.dropped == 1


def test_publisher_falls_back_to_full_images_when_shared_memory_fails(pair, monkeypatch):
    def no_space(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shm, "ShmRing", no_space)
    for i in range(3):
        pair.pub.publish(convert.image(_frame(i, (4, 4, 3)), stamp=messages.make("builtin_interfaces/msg/Time", sec=i)))
    assert pair.pub.broken and (pair.pub.shm_published, pair.pub.full_published) == (0, 3)
    assert [m.header.stamp.sec for m in pair.got] == [0, 1, 2] and pair.sub.from_shm == 0


def test_ring_grows_when_frames_get_bigger(pair):
    pair.pub.publish(convert.image(_frame(0, (2, 2, 3))))
    first = pair.pub.segment
    pair.pub.publish(convert.image(_frame(1, (20, 20, 3))))
    assert pair.pub.segment != first and not (SHM / first).exists()
    np.testing.assert_array_equal(convert.image_array(pair.got[-1]), _frame(1, (20, 20, 3)))


def test_when_the_shm_path_applies(monkeypatch):
    inproc = InprocTransport()
    topic = f"/cam_{uuid.uuid4().hex[:8]}"
    assert not shm.enabled(inproc)
    assert not isinstance(shm.create_publisher(inproc, topic, shm.IMAGE_TYPE, QoSProfile()), shm.ShmImagePublisher)
    inproc.name = "fake"  # instance attribute: pretend to be a cross-process transport
    assert shm.enabled(inproc)
    assert isinstance(shm.create_publisher(inproc, topic, shm.IMAGE_TYPE, QoSProfile()), shm.ShmImagePublisher)
    assert not isinstance(shm.create_publisher(inproc, topic, shm.IMAGE_TYPE, LATCHED), shm.ShmImagePublisher)
    sub = shm.create_subscription(inproc, topic, shm.IMAGE_TYPE, QoSProfile(), print)
    assert isinstance(sub, shm.ShmImageSubscription)
    monkeypatch.setenv(shm.SHM_ENV, "0")
    assert not shm.enabled(inproc)
    inproc.close()


# --- across processes over dds ----------------------------------------------------------------
_PUBLISHER = """
    import json, sys, time
    import numpy as np
    from robot_stack import convert, messages
    from robot_stack.context import Context
    from robot_stack.node import Node
    topic, n, need_outside = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
    ctx = Context("dds")
    node = Node("camera", context=ctx, publish_stats=False)
    pub = node.create_publisher("sensor_msgs/msg/Image", topic, 10)
    impl = pub._impl
    deadline = time.monotonic() + 20
    def ready():
        outside = impl.matched_subscriptions(excluding_tag=impl._tag)
        return impl._descriptor.matched_subscriptions() > 0 and (outside > 0) == need_outside
    while not ready() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    shape = (480, 640, 3)
    for i in range(n):  # the same pixels as the test's _frame(i)
        frame = ((np.arange(np.prod(shape), dtype=np.uint32) * 7 + i) % 251).astype(np.uint8).reshape(shape)
        stamp = messages.make("builtin_interfaces/msg/Time", sec=1000 + i)
        pub.publish(convert.image(frame, stamp=stamp, frame_id="cam"))
        time.sleep(0.03)
    time.sleep(1.0)
    segment = impl.segment
    print(json.dumps({"shm": impl.shm_published, "full": impl.full_published, "segment": segment}), flush=True)
    node.destroy_node()
    ctx.shutdown()
"""


def _dds_context():
    from robot_stack.context import Context

    try:
        return Context("dds")
    except TransportUnavailable as exc:
        pytest.skip(f"dds transport unavailable: {exc}")


def _receive(outside_subscriber: bool, n: int = 20):
    from robot_stack.executor import Executor
    from robot_stack.node import Node

    ctx = _dds_context()
    topic = f"/cam_{uuid.uuid4().hex[:8]}"
    node = Node("viewer", context=ctx, publish_stats=False)
    got: list = []
    sub = node.create_subscription("sensor_msgs/msg/Image", topic, got.append, 10)
    outside: list = []
    if outside_subscriber:  # a plain dds subscription: no tag, so it needs full Images
        ctx.transport.create_subscription(topic, shm.IMAGE_TYPE, QoSProfile(depth=10), outside.append)
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_PUBLISHER), topic, str(n), "1" if outside_subscriber else "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    executor = Executor()
    executor.add_node(node)
    try:
        executor.spin_until(lambda: proc.poll() is not None, 60)
        out, err = proc.communicate(timeout=10)
        executor.spin_for(0.2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    stats = json.loads(out.strip().splitlines()[-1])
    impl = sub._impl
    node.destroy_node()
    ctx.shutdown()
    return stats, got, outside, impl


@pytest.mark.slow
def test_cross_process_images_travel_through_shared_memory_only():
    stats, got, _, impl = _receive(outside_subscriber=False)
    assert stats["shm"] == 20 and stats["full"] == 0, stats
    assert not (SHM / stats["segment"]).exists(), "the publisher unlinked its segment"
    assert [m.header.stamp.sec for m in got] == list(range(1000, 1020))
    assert impl.from_shm == 20 and impl.torn == 0 and impl.duplicates == 0
    for m in got:
        np.testing.assert_array_equal(convert.image_array(m), _frame(m.header.stamp.sec - 1000))


@pytest.mark.slow
def test_cross_process_outside_subscriber_gets_full_images_ours_get_each_frame_once():
    stats, got, outside, impl = _receive(outside_subscriber=True)
    assert stats["shm"] == 20 and stats["full"] == 20, stats
    assert [m.header.stamp.sec for m in outside] == list(range(1000, 1020))
    assert sorted(m.header.stamp.sec for m in got) == list(range(1000, 1020)), "each frame exactly once"
    assert impl.duplicates == 20
    for m in got:
        np.testing.assert_array_equal(convert.image_array(m), _frame(m.header.stamp.sec - 1000))


def test_loaned_frame_is_published_without_a_copy(pair):
    loan = pair.pub.loan(4 * 5 * 3)
    frame = loan.reshape(4, 5, 3)
    frame[:] = _frame(7, (4, 5, 3))
    pair.pub.publish(convert.image(frame))
    assert pair.pub.zero_copy_published == 1 and pair.pub.shm_published == 1
    np.testing.assert_array_equal(convert.image_array(pair.got[-1]), _frame(7, (4, 5, 3)))
    # An ordinary frame after a loan is copied as usual; an abandoned loan is just overwritten.
    pair.pub.loan(60)
    pair.pub.publish(convert.image(_frame(8, (4, 5, 3))))
    assert pair.pub.zero_copy_published == 1 and pair.pub.shm_published == 2
    np.testing.assert_array_equal(convert.image_array(pair.got[-1]), _frame(8, (4, 5, 3)))


@pytest.mark.parametrize("transport", ["dds", "inproc"])
def test_node_publisher_loan_image(transport):
    from robot_stack.context import Context
    from robot_stack.executor import Executor
    from robot_stack.node import Node

    with Context(transport) as ctx:
        node = Node("camera", context=ctx, publish_stats=False)
        topic = f"/loan_{uuid.uuid4().hex[:8]}"
        got: list = []
        node.create_subscription("sensor_msgs/msg/Image", topic, got.append)
        pub = node.create_publisher("sensor_msgs/msg/Image", topic)
        ex = Executor()
        ex.add_node(node)
        if transport == "dds":
            assert ex.spin_until(lambda: pub._impl._descriptor.matched_subscriptions() > 0, 10.0)
        frame = pub.loan_image(6, 8, "rgb8")
        assert frame.shape == (6, 8, 3) and frame.dtype == np.uint8
        frame[:] = _frame(3, (6, 8, 3))
        pub.publish(convert.image(frame, "rgb8"))
        assert ex.spin_until(lambda: got, 10.0)
        np.testing.assert_array_equal(convert.image_array(got[0]), _frame(3, (6, 8, 3)))
        if transport == "dds":
            assert pub._impl.zero_copy_published == 1
        with pytest.raises(TypeError, match="needs a sensor_msgs/msg/Image publisher"):
            node.create_publisher("std_msgs/msg/String", f"{topic}_s").loan_image(1, 1)
        node.destroy_node()
