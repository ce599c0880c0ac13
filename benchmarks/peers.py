"""Benchmark peer processes: `python -m benchmarks.peers ROLE [ARGS...]`; results as one JSON line.

Roles come in pairs (a driver and the process it talks to) for three stacks: robot_stack (`rs_`),
raw cyclonedds-python (`cy_`) and rclpy (`rclpy_`). Every pair exchanges a 7-DOF
`sensor_msgs/JointState` (or a 640x480 rgb8 `Image`) on the same topics.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

JOINTS = [f"joint{i}" for i in range(1, 8)]
WARMUP = 200


def emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


# --- robot_stack -----------------------------------------------------------------------------
def _rs_node(name: str):
    import robot_stack as rs

    ctx = rs.Context("dds")
    node = rs.Node(name, context=ctx, publish_stats=False)
    ex = rs.Executor()
    ex.add_node(node)
    return rs, node, ex


def rs_echo(seconds: str) -> None:
    rs, node, ex = _rs_node("echo")
    pub = node.create_publisher("sensor_msgs/msg/JointState", "/bench/pong", 10)
    node.create_subscription("sensor_msgs/msg/JointState", "/bench/ping", pub.publish, 10)
    ex.spin_for(float(seconds))


def rs_ping(count: str) -> None:
    from robot_stack import convert

    rs, node, ex = _rs_node("ping")
    pub = node.create_publisher("sensor_msgs/msg/JointState", "/bench/ping", 10)
    got: list = []
    node.create_subscription("sensor_msgs/msg/JointState", "/bench/pong", got.append, 10)
    msg = convert.joint_state(JOINTS, np.zeros(7), np.zeros(7), np.zeros(7))
    rtts = []
    while not got:  # discovery + matching
        pub.publish(msg)
        ex.spin_once(0.05)
    for i in range(int(count) + WARMUP):
        got.clear()
        msg.position[0] = i
        t0 = time.perf_counter()
        pub.publish(msg)
        while not got:
            ex.spin_once(1.0)
        rtts.append(time.perf_counter() - t0)
    emit({"rtt_s": rtts[WARMUP:]})


def _rs_flood_msg(kind: str):
    from robot_stack import convert, messages

    if kind == "int64":
        return messages.make("std_msgs/msg/Int64", data=7)
    return convert.joint_state(JOINTS, np.zeros(7), np.zeros(7), np.zeros(7))


def rs_sink(seconds: str, kind: str) -> None:
    rs, node, ex = _rs_node("sink")
    times: list[float] = []
    node.create_subscription(_rs_flood_msg(kind).__msgtype__, "/bench/flood",
                             lambda m: times.append(time.perf_counter()), 1000)
    ex.spin_for(float(seconds))
    emit({"received": len(times), "span_s": (times[-1] - times[0]) if len(times) > 1 else 0.0})


def rs_flood(seconds: str, kind: str) -> None:
    rs, node, ex = _rs_node("flood")
    msg = _rs_flood_msg(kind)
    pub = node.create_publisher(msg.__msgtype__, "/bench/flood", 1000)
    _wait_matched(pub.get_subscription_count)
    end, sent = time.perf_counter() + float(seconds), 0
    while time.perf_counter() < end:
        pub.publish(msg)
        sent += 1
    emit({"sent": sent})


def _rs_image_qos(rs, qos: str):
    return rs.SENSOR_DATA if qos == "sensor" else rs.QoSProfile(depth=10)


def rs_image_pub(count: str, hz: str, qos: str) -> None:
    """`hz` 0: back to back (throughput); else paced like a camera (latency)."""
    from robot_stack import convert

    rs, node, ex = _rs_node("camera")
    pub = node.create_publisher("sensor_msgs/msg/Image", "/bench/image", _rs_image_qos(rs, qos))
    frame = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    _wait_matched(pub.get_subscription_count)
    for i in range(int(count)):
        frame[0, 0, 0] = i % 255
        pub.publish(convert.image(frame, "rgb8", stamp=rs.clock.Time(time.time_ns())))
        ex.spin_once(1.0 / float(hz) if float(hz) else 0.0)
    time.sleep(0.5)
    emit({"sent": int(count), "full_images_sent": getattr(pub._impl, "full_published", None)})


def rs_image_sink(seconds: str, qos: str) -> None:
    from robot_stack import convert

    rs, node, ex = _rs_node("viewer")
    lat: list[float] = []
    times: list[float] = []

    def on_image(m) -> None:
        convert.image_array(m)  # the consumer gets a usable HxWx3 array
        times.append(time.perf_counter())
        lat.append(time.time() - (m.header.stamp.sec + m.header.stamp.nanosec * 1e-9))

    node.create_subscription("sensor_msgs/msg/Image", "/bench/image", on_image, _rs_image_qos(rs, qos))
    ex.spin_for(float(seconds))
    emit({"latency_s": lat, "fps": _rate(times)})


def rs_image_echo(seconds: str) -> None:
    """Acknowledge each frame (an Int64 with its index) once it is a usable HxWx3 array."""
    from robot_stack import convert, messages

    rs, node, ex = _rs_node("image_echo")
    ack = node.create_publisher("std_msgs/msg/Int64", "/bench/image_ack", 10)

    def on_image(m) -> None:
        px = convert.image_array(m)
        ack.publish(messages.make("std_msgs/msg/Int64", data=int(px[0, 0, 0])))

    node.create_subscription("sensor_msgs/msg/Image", "/bench/image_rt", on_image, 10)
    ex.spin_for(float(seconds))


def rs_image_ping(count: str) -> None:
    from robot_stack import convert

    rs, node, ex = _rs_node("image_ping")
    pub = node.create_publisher("sensor_msgs/msg/Image", "/bench/image_rt", 10)
    acks: list[int] = []
    node.create_subscription("std_msgs/msg/Int64", "/bench/image_ack", lambda m: acks.append(m.data), 10)
    source = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)

    def send(index: int) -> None:
        source[0, 0, 0] = index
        pub.publish(convert.image(source, "rgb8"))

    while not acks:
        send(0)
        ex.spin_once(0.1)
    rtts = []
    for i in range(int(count) + WARMUP // 4):
        acks.clear()
        t0 = time.perf_counter()
        send(i % 200)
        while not acks or acks[-1] != i % 200:
            ex.spin_once(1.0)
        rtts.append(time.perf_counter() - t0)
    emit({"rtt_s": rtts[WARMUP // 4:]})


def _rate(times: list[float]) -> float:
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 2 else 0.0


def _wait_matched(count_fn, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while count_fn() == 0 and time.monotonic() < end:
        time.sleep(0.05)
    time.sleep(0.3)


# --- raw cyclonedds-python -------------------------------------------------------------------
def _cy_types():
    from benchmarks.cyclone_types import Header, JointState, Time

    return Time, Header, JointState


def _cy_endpoints(read_topic: str, write_topic: str):
    from cyclonedds.core import InstanceState, ReadCondition, SampleState, ViewState, WaitSet
    from cyclonedds.domain import Domain, DomainParticipant
    from cyclonedds.pub import DataWriter
    from cyclonedds.qos import Policy, Qos
    from cyclonedds.sub import DataReader
    from cyclonedds.topic import Topic

    from robot_stack.transport import dds_config

    cfg = dds_config.resolve()  # the same loopback discovery set-up as the dds transport
    domain = cfg.domain_id
    keep = Domain(domain, cfg.xml())
    dp = DomainParticipant(domain)
    _, _, JointState = _cy_types()
    qos = Qos(Policy.Reliability.Reliable(0), Policy.History.KeepLast(10))
    reader = DataReader(dp, Topic(dp, read_topic, JointState, qos=qos), qos=qos)
    writer = DataWriter(dp, Topic(dp, write_topic, JointState, qos=qos), qos=qos)
    ws = WaitSet(dp)
    ws.attach(ReadCondition(reader, SampleState.Any | ViewState.Any | InstanceState.Any))
    return keep, dp, reader, writer, ws


def cy_echo(seconds: str) -> None:
    keep, dp, reader, writer, ws = _cy_endpoints("rt/bench/ping", "rt/bench/pong")
    end = time.monotonic() + float(seconds)
    while time.monotonic() < end:
        ws.wait(100_000_000)
        for s in reader.take(N=10):
            if s.sample_info.valid_data:  # skip the "no writers" notice when the driver exits
                writer.write(s)


def cy_ping(count: str) -> None:
    keep, dp, reader, writer, ws = _cy_endpoints("rt/bench/pong", "rt/bench/ping")
    Time, Header, JointState = _cy_types()
    msg = JointState(Header(Time(0, 0), ""), list(JOINTS), [0.0] * 7, [0.0] * 7, [0.0] * 7)
    while True:
        writer.write(msg)
        ws.wait(50_000_000)
        if reader.take(N=10):
            break
    rtts = []
    for i in range(int(count) + WARMUP):
        msg.position[0] = float(i)
        t0 = time.perf_counter()
        writer.write(msg)
        while not reader.take(N=10):
            ws.wait(1_000_000_000)
        rtts.append(time.perf_counter() - t0)
    emit({"rtt_s": rtts[WARMUP:]})


# --- rclpy -----------------------------------------------------------------------------------
def _rclpy_node(name: str):
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    import rclpy

    rclpy.init()
    return rclpy, rclpy.create_node(name)


def _rclpy_js():
    from sensor_msgs.msg import JointState

    m = JointState()
    m.name = list(JOINTS)
    m.position, m.velocity, m.effort = [0.0] * 7, [0.0] * 7, [0.0] * 7
    return JointState, m


def rclpy_echo(seconds: str) -> None:
    rclpy, node = _rclpy_node("echo")
    JointState, _ = _rclpy_js()
    pub = node.create_publisher(JointState, "/bench/pong", 10)
    node.create_subscription(JointState, "/bench/ping", pub.publish, 10)
    end = time.monotonic() + float(seconds)
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.1)


def rclpy_ping(count: str) -> None:
    rclpy, node = _rclpy_node("ping")
    JointState, msg = _rclpy_js()
    pub = node.create_publisher(JointState, "/bench/ping", 10)
    got: list = []
    node.create_subscription(JointState, "/bench/pong", got.append, 10)
    while not got:
        pub.publish(msg)
        rclpy.spin_once(node, timeout_sec=0.05)
    rtts = []
    for i in range(int(count) + WARMUP):
        got.clear()
        msg.position[0] = float(i)
        t0 = time.perf_counter()
        pub.publish(msg)
        while not got:
            rclpy.spin_once(node, timeout_sec=1.0)
        rtts.append(time.perf_counter() - t0)
    emit({"rtt_s": rtts[WARMUP:]})


def _rclpy_flood_msg(kind: str):
    if kind == "int64":
        from std_msgs.msg import Int64

        return Int64, Int64(data=7)
    return _rclpy_js()


def rclpy_flood(seconds: str, kind: str) -> None:
    rclpy, node = _rclpy_node("flood")
    cls, msg = _rclpy_flood_msg(kind)
    pub = node.create_publisher(cls, "/bench/flood", 1000)
    _wait_matched(pub.get_subscription_count)
    end, sent = time.perf_counter() + float(seconds), 0
    while time.perf_counter() < end:
        pub.publish(msg)
        sent += 1
    emit({"sent": sent})


def rclpy_sink(seconds: str, kind: str) -> None:
    rclpy, node = _rclpy_node("sink")
    cls, _ = _rclpy_flood_msg(kind)
    times: list[float] = []
    node.create_subscription(cls, "/bench/flood", lambda m: times.append(time.perf_counter()), 1000)
    from rclpy.executors import SingleThreadedExecutor

    executor = SingleThreadedExecutor()  # rclpy's fastest way to spin one node
    executor.add_node(node)
    end = time.monotonic() + float(seconds)
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.1)
    emit({"received": len(times), "span_s": (times[-1] - times[0]) if len(times) > 1 else 0.0})


def _rclpy_image_qos(qos: str):
    from rclpy.qos import QoSProfile, qos_profile_sensor_data

    return qos_profile_sensor_data if qos == "sensor" else QoSProfile(depth=10)


def rclpy_image_pub(count: str, hz: str, qos: str) -> None:
    from sensor_msgs.msg import Image

    rclpy, node = _rclpy_node("camera")
    pub = node.create_publisher(Image, "/bench/image", _rclpy_image_qos(qos))
    frame = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    _wait_matched(pub.get_subscription_count)
    for i in range(int(count)):
        frame[0, 0, 0] = i % 255
        ns = time.time_ns()
        m = Image(height=480, width=640, encoding="rgb8", step=640 * 3, data=frame.tobytes())
        m.header.stamp.sec, m.header.stamp.nanosec = ns // 1_000_000_000, ns % 1_000_000_000
        pub.publish(m)
        rclpy.spin_once(node, timeout_sec=1.0 / float(hz) if float(hz) else 0.0)
    time.sleep(0.5)
    emit({"sent": int(count)})


def rclpy_image_sink(seconds: str, qos: str) -> None:
    from sensor_msgs.msg import Image

    rclpy, node = _rclpy_node("viewer")
    lat: list[float] = []
    times: list[float] = []

    def on_image(m) -> None:
        np.frombuffer(m.data, dtype=np.uint8).reshape(m.height, m.width, 3)
        times.append(time.perf_counter())
        lat.append(time.time() - (m.header.stamp.sec + m.header.stamp.nanosec * 1e-9))

    node.create_subscription(Image, "/bench/image", on_image, _rclpy_image_qos(qos))
    end = time.monotonic() + float(seconds)
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.1)
    emit({"latency_s": lat, "fps": _rate(times)})


def rclpy_image_echo(seconds: str) -> None:
    from sensor_msgs.msg import Image
    from std_msgs.msg import Int64

    rclpy, node = _rclpy_node("image_echo")
    ack = node.create_publisher(Int64, "/bench/image_ack", 10)

    def on_image(m) -> None:
        px = np.frombuffer(m.data, dtype=np.uint8).reshape(m.height, m.width, 3)
        ack.publish(Int64(data=int(px[0, 0, 0])))

    node.create_subscription(Image, "/bench/image_rt", on_image, 10)
    end = time.monotonic() + float(seconds)
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.1)


def rclpy_image_ping(count: str) -> None:
    from sensor_msgs.msg import Image
    from std_msgs.msg import Int64

    rclpy, node = _rclpy_node("image_ping")
    pub = node.create_publisher(Image, "/bench/image_rt", 10)
    acks: list[int] = []
    node.create_subscription(Int64, "/bench/image_ack", lambda m: acks.append(m.data), 10)
    frame = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)

    def image() -> Image:
        return Image(height=480, width=640, encoding="rgb8", step=640 * 3, data=frame.tobytes())

    while not acks:
        pub.publish(image())
        rclpy.spin_once(node, timeout_sec=0.1)
    rtts = []
    for i in range(int(count) + WARMUP // 4):
        frame[0, 0, 0] = i % 200
        acks.clear()
        t0 = time.perf_counter()
        pub.publish(image())
        while not acks or acks[-1] != i % 200:
            rclpy.spin_once(node, timeout_sec=1.0)
        rtts.append(time.perf_counter() - t0)
    emit({"rtt_s": rtts[WARMUP // 4:]})


# --- timers ----------------------------------------------------------------------------------
def busy(seconds: str) -> None:
    end = time.monotonic() + float(seconds)
    x = 0
    while time.monotonic() < end:
        x += 1


def timer(hz: str, seconds: str, mode: str) -> None:
    """mode: `executor` (robot_stack timer) or `sleep_spin` (plain sleep-then-spin baseline)."""
    period, lateness = 1.0 / float(hz), []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if mode == "executor":
        import robot_stack as rs

        node = rs.Node("timer", context=rs.Context("inproc"), publish_stats=False)
        t = node.create_timer(period, lambda: None)
        ex = rs.Executor()
        ex.add_node(node)
        ex.spin_for(0.5)  # warm-up: first-use costs, spin-margin adaptation
        t.stats.reset()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        ex.spin_for(float(seconds))
        lateness = t.stats.lateness_samples().tolist()
    else:
        deadline, end = time.perf_counter() + period, time.perf_counter() + float(seconds)
        while deadline < end:
            wait = deadline - time.perf_counter() - 100e-6
            if wait > 0:
                time.sleep(wait)
            while (now := time.perf_counter()) < deadline:
                pass
            lateness.append(now - deadline)
            deadline += period
    cpu = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    emit({"lateness_s": lateness[-4096:], "cpu_fraction": cpu, "ticks": len(lateness)})


ROLES = {f.__name__: f for f in (
    rs_echo, rs_ping, rs_sink, rs_flood, rs_image_pub, rs_image_sink, rs_image_echo, rs_image_ping, cy_echo,
    cy_ping, rclpy_echo, rclpy_ping, rclpy_flood, rclpy_sink, rclpy_image_pub, rclpy_image_sink, rclpy_image_echo,
    rclpy_image_ping, busy, timer,
)}

if __name__ == "__main__":
    ROLES[sys.argv[1]](*sys.argv[2:])
