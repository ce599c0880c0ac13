import numpy as np
import pytest

import robot_stack as rs
from robot_stack import convert, messages
from robot_stack.errors import ParameterError, TransportError


def test_publish_subscribe_inproc_is_zero_copy(ctx):
    talker = rs.Node("talker", context=ctx, publish_stats=False)
    listener = rs.Node("listener", context=ctx, publish_stats=False)
    got = []
    pub = talker.create_publisher("sensor_msgs/msg/JointState", "joint_states", 10)
    listener.create_subscription("sensor_msgs/JointState", "/joint_states", got.append, 10)
    ex = rs.Executor()
    ex.add_node(talker)
    ex.add_node(listener)
    msg = convert.joint_state(["a", "b"], [1.0, 2.0])
    pub.publish(msg)
    assert ex.spin_until(lambda: got, 1.0)
    assert got[0] is msg
    assert pub.get_subscription_count() == 1


def test_names_namespace_private_and_remap(ctx):
    node = rs.Node("arm", namespace="left", context=ctx, remappings={"cmd": "/shared/cmd"}, publish_stats=False)
    assert node.create_publisher("std_msgs/msg/Empty", "state").topic == "/left/state"
    assert node.create_publisher("std_msgs/msg/Empty", "~/debug").topic == "/left/arm/debug"
    assert node.create_publisher("std_msgs/msg/Empty", "/abs").topic == "/abs"
    assert node.create_publisher("std_msgs/msg/Empty", "cmd").topic == "/shared/cmd"
    assert node.get_fully_qualified_name() == "/left/arm"


def test_publish_rejects_wrong_type_and_bad_fields(ctx):
    node = rs.Node("n", context=ctx, publish_stats=False)
    pub = node.create_publisher("sensor_msgs/msg/JointState", "js")
    with pytest.raises(TypeError, match="takes sensor_msgs/msg/JointState"):
        pub.publish(messages.make("std_msgs/msg/String", data="x"))
    bad = convert.joint_state(["a"], [1.0])
    bad.name = ["a", 5]
    with pytest.raises(messages.MessageFieldError, match="name\\[1\\]"):
        pub.publish(bad)


def test_topic_type_conflict_is_an_error(ctx):
    node = rs.Node("n", context=ctx, publish_stats=False)
    node.create_publisher("std_msgs/msg/String", "conflict")
    with pytest.raises(TransportError, match="carries std_msgs/msg/String"):
        node.create_subscription("std_msgs/msg/Int32", "conflict", print)


def test_keep_last_queue_drops_oldest_when_executor_lags(ctx):
    node = rs.Node("n", context=ctx, publish_stats=False)
    got = []
    sub = node.create_subscription("std_msgs/msg/Int32", "ints", lambda m: got.append(m.data), 3)
    pub = node.create_publisher("std_msgs/msg/Int32", "ints")
    for i in range(10):
        pub.publish(messages.make("std_msgs/msg/Int32", data=i))
    ex = rs.Executor()
    ex.add_node(node)
    ex.spin_until(lambda: len(got) >= 3, 1.0)
    assert got == [7, 8, 9]
    assert sub.overflowed == 7


def test_parameters_overrides_and_types(ctx):
    node = rs.Node("n", context=ctx, parameter_overrides={"rate_hz": 250, "name": "x", "extra": 1},
                   publish_stats=False)
    assert node.declare_parameter("rate_hz", 100.0).value == 250.0
    assert isinstance(node.get_parameter("rate_hz").value, float)
    assert node.declare_parameter("name", "default").value == "x"
    assert node.parameters.undeclared_overrides() == ["extra"]
    with pytest.raises(ParameterError, match="expects float, got str"):
        node.set_parameter("rate_hz", "fast")
    with pytest.raises(ParameterError, match="not declared"):
        node.get_parameter("nope")
    with pytest.raises(ParameterError, match="expects bool"):
        rs.Node("m", context=ctx, parameter_overrides={"use_sim_time": 1}, publish_stats=False)


def test_timer_rate_and_stats(ctx):
    node = rs.Node("n", context=ctx, publish_stats=False)
    ticks = []
    timer = node.create_timer(0.005, lambda: ticks.append(1), name="control")
    ex = rs.Executor()
    ex.add_node(node)
    ex.spin_for(0.5)
    assert 80 <= len(ticks) <= 101
    s = timer.stats.summary()
    assert s.name == "control" and s.target_hz == pytest.approx(200.0)
    assert s.ticks == len(ticks)
    assert 0.0 <= s.lateness_p50 <= s.lateness_p99 <= s.lateness_max


def test_timer_overrun_counts_skipped_ticks(ctx):
    import time

    node = rs.Node("n", context=ctx, publish_stats=False)
    calls = []

    def slow():
        calls.append(1)
        if len(calls) == 2:
            time.sleep(0.035)  # misses ~3 ticks of a 10 ms timer

    timer = node.create_timer(0.01, slow)
    ex = rs.Executor()
    ex.add_node(node)
    ex.spin_for(0.2)
    assert timer.stats.overruns >= 2


def test_node_stats_heartbeat(ctx):
    node = rs.Node("worker", context=ctx)
    node.create_timer(0.01, lambda: None, name="loop")
    beats = []
    mon = rs.Node("monitor", context=ctx, publish_stats=False)
    mon.create_subscription("robot_stack_msgs/msg/NodeStats", "/robot_stack/node_stats", beats.append)
    ex = rs.Executor()
    ex.add_node(node)
    ex.add_node(mon)
    assert ex.spin_until(lambda: beats, 3.0)
    beat = beats[0]
    assert beat.name == "worker" and beat.transport == "inproc"
    assert [t.name for t in beat.timers] == ["loop"]
    assert beat.timers[0].target_hz == pytest.approx(100.0)
    assert beat.timers[0].ticks > 50


def test_sim_time_clock_and_timers_follow_clock_topic(ctx):
    node = rs.Node("sim_user", context=ctx, parameter_overrides={"use_sim_time": True}, publish_stats=False)
    clock_pub = rs.Node("sim", context=ctx, publish_stats=False).create_publisher("rosgraph_msgs/msg/Clock", "/clock")
    ticks = []
    node.create_timer(0.1, lambda: ticks.append(node.get_clock().now().nanoseconds))
    ex = rs.Executor()
    ex.add_node(node)
    assert node.get_clock().sim_time and node.get_clock().now().nanoseconds == 0
    for step in range(1, 31):  # 30 steps of 10 ms sim time = 0.3 s -> ~3 ticks of a 10 Hz timer
        clock_pub.publish(messages.make("rosgraph_msgs/msg/Clock", clock={"sec": 0, "nanosec": step * 10_000_000}))
        ex.spin_once(0.001)
    assert node.get_clock().now().nanoseconds == 300_000_000
    assert 2 <= len(ticks) <= 3
    assert all(np.diff(ticks) >= 100_000_000 - 1)


def test_spin_once_returns_after_running_ready_work_without_waiting(ctx):
    import time

    node = rs.Node("n", context=ctx, publish_stats=False)
    got = []
    node.create_subscription("std_msgs/msg/Int32", "once", got.append)
    pub = node.create_publisher("std_msgs/msg/Int32", "once")
    ex = rs.Executor()
    ex.add_node(node)
    pub.publish(messages.make("std_msgs/msg/Int32", data=1))
    t0 = time.monotonic()
    assert ex.spin_once(30.0) is True  # the message was ready: run it, do not wait 30 s
    assert got and time.monotonic() - t0 < 10.0
    assert ex.spin_once(0.05) is False  # nothing to do: waits the timeout, runs nothing
