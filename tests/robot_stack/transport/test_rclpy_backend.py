"""The `rclpy` transport: robot_stack nodes on top of a real rclpy (ROS 2 Jazzy, Fast DDS)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid

import numpy as np
import pytest

from robot_stack import convert, messages
from robot_stack.errors import TransportError, TransportUnavailable
from robot_stack.qos import LATCHED, SENSOR_DATA, QoSProfile
from robot_stack.transport import shm, transport_class

try:
    AVAILABLE = transport_class("rclpy").check_available()
except TransportUnavailable as exc:  # pragma: no cover - depends on the environment
    pytest.skip(f"rclpy transport unavailable: {exc}", allow_module_level=True)

from robot_stack.transport.rclpy_backend import RclpyTransport, rclpy_qos  # noqa: E402


def _topic(stem: str) -> str:
    return f"/{stem}_{uuid.uuid4().hex[:8]}"


def _wait(predicate, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture(scope="module")
def transport():
    t = RclpyTransport()
    yield t
    t.close()


def test_check_available_names_the_rmw():
    assert "rclpy" in AVAILABLE and "rmw_" in AVAILABLE


def test_missing_rclpy_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "rclpy", None)  # `import rclpy` now raises ImportError
    with pytest.raises(TransportUnavailable, match="pip install 'ros-jazzy-rclpy"):
        RclpyTransport.check_available()


def test_qos_mapping():
    from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

    sensor, latched = rclpy_qos(SENSOR_DATA), rclpy_qos(LATCHED)
    assert (sensor.depth, sensor.reliability, sensor.durability) == (
        5, ReliabilityPolicy.BEST_EFFORT, DurabilityPolicy.VOLATILE
    )
    assert (latched.depth, latched.reliability, latched.durability) == (
        1, ReliabilityPolicy.RELIABLE, DurabilityPolicy.TRANSIENT_LOCAL
    )


def test_roundtrip_topics_and_tags_ignored(transport):
    topic = _topic("js")
    got: list = []
    sub = transport.create_subscription(topic, "sensor_msgs/JointState", QoSProfile(), got.append, tag="shm-x")
    pub = transport.create_publisher(topic, "sensor_msgs/msg/JointState", QoSProfile())
    assert _wait(lambda: pub.matched_subscriptions() == 1)
    assert pub.matched_subscriptions(excluding_tag="shm-x") == 1, "rclpy cannot see tags: everything counts"
    sent = convert.joint_state(["a", "b"], [0.5, -1.25], [1.0, 2.0], stamp=None, frame_id="base")
    pub.publish(sent)
    assert _wait(lambda: len(got) == 1)
    assert messages.to_dict(got[0]) == messages.to_dict(sent)
    info = {t.name: t for t in transport.topics()}[topic]
    assert (info.type_name, info.publishers, info.subscribers) == ("sensor_msgs/msg/JointState", 1, 1)
    pub.close()
    sub.close()
    sub.close()  # idempotent
    with pytest.raises(TransportError, match="closed"):
        pub.publish(sent)


def test_malformed_bytes_are_counted_and_dropped(transport):
    topic = _topic("bad")
    got: list = []
    sub = transport.create_subscription(topic, "sensor_msgs/msg/JointState", QoSProfile(), got.append)
    raw = transport.create_publisher(topic, "sensor_msgs/msg/JointState", QoSProfile())  # rclpy publish(bytes)
    assert _wait(lambda: raw.matched_subscriptions() == 1)
    raw.publish_serialized(b"\x00\x01\x00\x00" + b"\xff" * 64)  # string length 2^32-1
    raw.publish_serialized(b"garbage!")  # unknown CDR encapsulation
    raw.publish(convert.joint_state(["ok"], [1.0]))
    assert _wait(lambda: len(got) == 1 and sub.dropped == 2)
    assert got[0].name == ["ok"]
    raw.close()
    sub.close()


def test_project_types_give_a_clear_error(transport):
    for create in (
        lambda: transport.create_publisher("/a", "robot_stack_msgs/msg/ActionChunk", QoSProfile()),
        lambda: transport.create_subscription("/a", "robot_stack_msgs/msg/ShmImage", QoSProfile(), print),
    ):
        with pytest.raises(TransportError, match=r"cannot carry robot_stack_msgs/msg/\w+: .*'dds' transport"):
            create()


def test_rclpy_errors_become_transport_errors(transport):
    with pytest.raises(TransportError, match="could not create a publisher on '/bad topic!'"):
        transport.create_publisher("/bad topic!", "sensor_msgs/msg/Image", QoSProfile())
    closed = RclpyTransport()
    closed.close()
    closed.close()  # idempotent
    with pytest.raises(TransportError, match="closed"):
        closed.create_subscription("/a", "sensor_msgs/msg/Image", QoSProfile(), print)


def test_node_over_rclpy_works_and_images_skip_shm():
    from robot_stack.context import Context
    from robot_stack.node import Node

    with Context("rclpy") as ctx:
        node = Node("cam", context=ctx)  # node stats need a project type: quietly not published
        pub = node.create_publisher("sensor_msgs/msg/Image", _topic("cam"), 10)
        sub = node.create_subscription("sensor_msgs/msg/Image", pub.topic, print, 10)
        assert not isinstance(pub._impl, shm.ShmImagePublisher)
        assert not isinstance(sub._impl, shm.ShmImageSubscription)
        node.destroy_node()


def test_discovery_range_defaults_to_localhost():
    env = {k: v for k, v in os.environ.items() if k != "ROS_AUTOMATIC_DISCOVERY_RANGE"}
    code = "import os; from robot_stack.transport.rclpy_backend import RclpyTransport as T; " \
           "t = T(); print(os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE']); t.close()"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "LOCALHOST"


# --- across processes -------------------------------------------------------------------------
_ECHO = """
    import sys, threading
    from robot_stack.context import Context
    from robot_stack.executor import Executor
    from robot_stack.node import Node
    transport, prefix = sys.argv[1], sys.argv[2]
    ctx = Context(transport)
    node = Node("echo", context=ctx, publish_stats=False)
    for typ, name in (("sensor_msgs/msg/JointState", "js"), ("geometry_msgs/msg/WrenchStamped", "wrench")):
        pub = node.create_publisher(typ, f"{prefix}/out_{name}", 10)
        node.create_subscription(typ, f"{prefix}/in_{name}", pub.publish, 10)
    executor = Executor()
    executor.add_node(node)
    threading.Thread(target=lambda: (sys.stdin.read(), executor.shutdown()), daemon=True).start()
    executor.spin()  # until the test closes our stdin
    node.destroy_node()
    ctx.shutdown()
"""


def _sent_messages(i: int) -> dict:
    stamp = messages.make("builtin_interfaces/msg/Time", sec=100 + i, nanosec=12345)
    return {
        "js": convert.joint_state(
            ["shoulder", "elbow", "wrist"], [0.1 * i, -1.5, 3.25], [1.0, 2.0, 3.0], [-0.5, 0.0, 0.5],
            stamp=stamp, frame_id="arm",
        ),
        "wrench": convert.wrench([1.5, -2.0, 9.81, 0.01, -0.02, 0.03 * i], stamp=stamp, frame_id="ft_sensor"),
    }


def _echo_roundtrip(other_transport: str) -> None:
    from robot_stack.context import Context
    from robot_stack.executor import Executor
    from robot_stack.node import Node

    prefix = _topic("echo")
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_ECHO), other_transport, prefix],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    ctx = Context("rclpy")
    try:
        node = Node("tester", context=ctx, publish_stats=False)
        got: dict[str, dict[int, object]] = {"js": {}, "wrench": {}}
        pubs = {}
        for typ, name in (("sensor_msgs/msg/JointState", "js"), ("geometry_msgs/msg/WrenchStamped", "wrench")):
            pubs[name] = node.create_publisher(typ, f"{prefix}/in_{name}", 10)
            keep = lambda m, n=name: got[n].update({m.header.stamp.sec: m})
            node.create_subscription(typ, f"{prefix}/out_{name}", keep, 10)
        executor = Executor()
        executor.add_node(node)
        end = time.monotonic() + 30
        i = 0
        while (len(got["js"]) < 3 or len(got["wrench"]) < 3) and time.monotonic() < end and proc.poll() is None:
            for name, msg in _sent_messages(i % 10).items():
                pubs[name].publish(msg)
            executor.spin_for(0.05)
            i += 1
        assert len(got["js"]) >= 3 and len(got["wrench"]) >= 3, f"echo over {other_transport} silent: {got}"
        for sec, js in got["js"].items():
            sent = _sent_messages(sec - 100)["js"]
            assert js.header.stamp.nanosec == 12345 and js.header.frame_id == "arm"
            assert js.name == ["shoulder", "elbow", "wrist"]
            for field in ("position", "velocity", "effort"):
                np.testing.assert_array_equal(getattr(js, field), getattr(sent, field))
        for sec, w in got["wrench"].items():
            sent = _sent_messages(sec - 100)["wrench"]
            assert w.header.frame_id == "ft_sensor" and w.header.stamp.nanosec == 12345
            np.testing.assert_array_equal(convert.wrench_vector(w), convert.wrench_vector(sent))
            assert messages.to_dict(w) == messages.to_dict(sent)
        node.destroy_node()
    finally:
        ctx.shutdown()
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    try:
        _, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    assert proc.returncode == 0, err


@pytest.mark.slow
def test_node_over_rclpy_talks_to_rclpy_node_in_another_process():
    _echo_roundtrip("rclpy")


@pytest.mark.slow
@pytest.mark.interop
def test_node_over_rclpy_talks_to_dds_node_in_another_process():
    try:
        transport_class("dds").check_available()
    except TransportUnavailable as exc:
        pytest.skip(f"dds transport unavailable: {exc}")
    _echo_roundtrip("dds")


_IMAGE_VIEWER = """
    import json, sys, time
    import numpy as np
    from robot_stack import convert
    from robot_stack.context import Context
    from robot_stack.executor import Executor
    from robot_stack.node import Node
    ctx = Context("rclpy")
    node = Node("viewer", context=ctx, publish_stats=False)
    got = []
    node.create_subscription("sensor_msgs/msg/Image", sys.argv[1], got.append, 10)
    executor = Executor()
    executor.add_node(node)
    print("ready", flush=True)
    executor.spin_until(lambda: len(got) >= 5, 30)
    frames = [convert.image_array(m) for m in got]
    print(json.dumps({"n": len(got), "sums": [int(f.sum()) for f in frames], "shape": list(frames[0].shape)}))
    node.destroy_node()
    ctx.shutdown()
"""


@pytest.mark.slow
@pytest.mark.interop
def test_shm_publisher_over_dds_sends_full_images_to_an_rclpy_subscriber():
    from robot_stack.context import Context
    from robot_stack.node import Node

    try:
        ctx = Context("dds")
    except TransportUnavailable as exc:
        pytest.skip(f"dds transport unavailable: {exc}")
    topic = _topic("cam")
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_IMAGE_VIEWER), topic],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        node = Node("camera", context=ctx, publish_stats=False)
        pub = node.create_publisher("sensor_msgs/msg/Image", topic, 10)
        assert isinstance(pub._impl, shm.ShmImagePublisher)
        frame = (np.arange(48 * 64 * 3) % 256).astype(np.uint8).reshape(48, 64, 3)
        end = time.monotonic() + 40
        while proc.poll() is None and time.monotonic() < end:
            pub.publish(convert.image(frame))
            time.sleep(0.02)
        out, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
        result = json.loads(out.strip().splitlines()[-1])
        assert result["n"] >= 5 and result["shape"] == [48, 64, 3]
        assert set(result["sums"]) == {int(frame.sum())}
        assert pub._impl.full_published >= 5 and pub._impl.shm_published == 0, "rclpy subscribers are outside"
        node.destroy_node()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        ctx.shutdown()
