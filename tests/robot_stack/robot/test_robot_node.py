import numpy as np
import pytest

import robot_stack as rs
from robot_stack import convert, messages
from robot_stack.clock import Time, duration_msg
from robot_stack.robot.kinematic import KinematicArm
from robot_stack.robot.node import RobotNode
from robot_stack.robot.watchdog import Health


class SilentArm(KinematicArm):
    """A device whose bus goes quiet after `good_reads` frames: read() raises from then on."""

    def __init__(self, good_reads: int, **kw):
        super().__init__(**kw)
        self.good_reads = good_reads
        self.reads = 0

    def read(self):
        self.reads += 1
        if self.reads > self.good_reads:
            raise TimeoutError("no frame from the arm within 2 ms")
        return super().read()


@pytest.fixture
def rig(ctx):
    """A started RobotNode on a KinematicArm, a commander node and an executor spinning both."""
    nodes = []

    def make(arm=None, **params):
        arm = arm or KinematicArm()
        node = RobotNode(arm, context=ctx, parameter_overrides=params, publish_stats=False)
        cmd = rs.Node("commander", context=ctx, publish_stats=False)
        ex = rs.Executor()
        ex.add_node(node)
        ex.add_node(cmd)
        node.start()
        nodes.extend([node, cmd])
        return arm, node, cmd, ex

    yield make
    for n in nodes:
        n.destroy_node()


def now_ns(node) -> int:
    return node.get_clock().now().nanoseconds


def send(cmd, names, position, due_ns=0):
    pub = cmd.create_publisher("sensor_msgs/msg/JointState", "joint_commands")
    stamp = Time(due_ns) if due_ns else None
    if names:
        pub.publish(convert.joint_state(names, position, stamp=stamp))
    else:  # positions for all joints in order (convert.joint_state insists on names)
        pub.publish(messages.make("sensor_msgs/msg/JointState", header=convert.header(stamp),
                                  position=np.asarray(position, dtype=np.float64)))


def test_state_published_at_rate_with_names_and_capture_stamps(rig, ctx):
    arm, node, cmd, ex = rig()
    got = []
    cmd.create_subscription("sensor_msgs/msg/JointState", "joint_states", got.append, 1000)
    t0 = now_ns(node)
    ex.spin_for(0.4)
    assert 120 <= len(got) <= 205  # 500 Hz for 0.4 s (+ the read in start())
    assert all(list(m.name) == arm.joint_names for m in got)
    stamps = np.array([Time.from_msg(m.header.stamp).nanoseconds for m in got])
    assert np.all(np.diff(stamps) > 0) and stamps[0] >= t0 - 50_000_000
    assert stamps[-1] == node.state.stamp_ns  # the device's capture time, not the publish time
    assert np.allclose(got[-1].position, arm.position)


def test_joint_command_waypoint_is_interpolated_and_tracked(rig):
    arm, node, cmd, ex = rig()
    target = arm.position.copy()
    target[0] += 0.2
    send(cmd, ["joint1"], [target[0]], due_ns=now_ns(node) + 100_000_000)
    ex.spin_for(0.6)
    assert np.allclose(arm.position, target, atol=2e-3)
    written = np.array([w[1][0] for w in arm.written])
    assert written[0] < target[0] - 0.1  # ramps over 100 ms instead of jumping
    assert np.all(np.diff(written) >= -1e-12) and written[-1] == pytest.approx(target[0])
    assert node.rejected == node.clamped == 0
    assert node.health is Health.HOLD and not arm.stopped  # 0.5 s with nothing new: holding the waypoint


def test_action_chunk_skips_stale_steps(rig):
    arm, node, cmd, ex = rig()
    home = arm.position[0]
    values = [home + 0.5] * 3 + [home + 0.1] * 5  # the first three are already past when it arrives
    chunk = messages.make(
        "robot_stack_msgs/msg/ActionChunk", header=convert.header(Time(now_ns(node) - 120_000_000)),
        dt=duration_msg(0.05), names=["joint1"], steps=len(values), actions=np.array(values), policy_id="test",
    )
    cmd.create_publisher("robot_stack_msgs/msg/ActionChunk", "action_chunk").publish(chunk)
    ex.spin_for(0.4)
    assert node.stale_steps == 3 and node.rejected == 0
    written = np.array([w[1][0] for w in arm.written])
    assert written.size > 50
    assert written.max() <= home + 0.1 + 1e-12 and written[-1] == pytest.approx(home + 0.1)


def test_out_of_limit_target_is_clamped_and_counted(rig):
    arm, node, cmd, ex = rig()
    send(cmd, ["joint1", "joint2"], [10.0, -10.0])
    assert ex.spin_until(lambda: arm.written, 1.0)
    assert node.clamped == 1
    assert arm.written[-1][1][0] == arm.limits.upper[0] and arm.written[-1][1][1] == arm.limits.lower[1]


def test_nan_command_rejected_trips_safe_stop_until_reset(rig):
    arm, node, cmd, ex = rig()
    status = []
    cmd.create_subscription("diagnostic_msgs/msg/DiagnosticStatus", "/robot/status", status.append, 100)
    send(cmd, ["joint1"], [arm.position[0] + 0.3])
    ex.spin_for(0.05)
    send(cmd, [], [np.nan] * 7)
    assert ex.spin_until(lambda: node.health is Health.FAULT, 1.0)
    assert node.rejected == 1 and node.watchdog_trips == 1 and arm.safe_stops == 1 and arm.stopped
    assert "non-finite" in node.watchdog.reason
    held, n_written = arm.position.copy(), len(arm.written)
    send(cmd, ["joint1"], [0.0])  # ignored while faulted
    ex.spin_for(0.1)
    assert node.ignored == 1 and len(arm.written) == n_written and np.allclose(arm.read().position, held)
    assert any(int(s.level) == 2 and "non-finite" in s.message for s in status)
    node.reset_fault()
    send(cmd, ["joint1"], [0.0])
    assert ex.spin_until(lambda: len(arm.written) > n_written, 1.0)
    assert node.health is Health.OK


def test_unknown_joint_names_are_rejected(rig):
    arm, node, cmd, ex = rig(max_bad_commands=3)
    send(cmd, ["gripper"], [0.0])
    assert ex.spin_until(lambda: node.rejected == 1, 1.0)
    assert node.health is Health.OK and not arm.written  # one bad command of a streak of 3 allowed


def test_command_silence_holds_then_safe_stops(rig):
    arm, node, cmd, ex = rig(watchdog_periods=10, stop_periods=100)  # 20 ms hold, 200 ms stop at 500 Hz
    target = arm.position.copy()
    target[0] += 0.1
    send(cmd, ["joint1"], [target[0]])
    assert ex.spin_until(lambda: node.health is Health.HOLD, 1.0)
    assert node.watchdog.holds == 1 and not arm.stopped
    assert ex.spin_until(lambda: node.health is Health.FAULT, 1.0)
    assert arm.safe_stops == 1 and "no command" in node.watchdog.reason
    assert all(np.allclose(w[1], target) for w in arm.written)  # held the setpoint: no jump


def test_device_read_errors_trip_the_watchdog(rig):
    arm, node, cmd, ex = rig(SilentArm(good_reads=20), max_read_errors=5)
    got = []
    cmd.create_subscription("sensor_msgs/msg/JointState", "joint_states", got.append, 1000)
    assert ex.spin_until(lambda: node.health is Health.FAULT, 1.0)
    assert node.read_errors == 5 and arm.safe_stops == 1
    assert "read failed 5 times" in node.watchdog.reason and "TimeoutError" in node.watchdog.reason
    assert len(got) == 19  # the 20th good read happened in start(), before the subscription
    ex.spin_for(0.05)
    assert arm.safe_stops == 1 and node.watchdog_trips == 1  # latched: no repeated stops


def test_destroy_disconnects_and_start_connects(ctx):
    arm = KinematicArm()
    node = RobotNode(arm, context=ctx, publish_stats=False)
    assert not arm.connected and not node.timers  # no I/O before start()
    node.start()
    assert arm.connected and node.state is not None
    node.destroy_node()
    assert not arm.connected
