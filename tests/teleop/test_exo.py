"""Exoskeleton / leader arm: mapping, and end to end leader emulator (pty) -> ExoNode -> robot node
of a follower arm on its emulator; dead-man release holds; a silent leader stops the commands."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import robot_stack as rs
from drivers.servo.node import ServoRobotNode
from drivers.servo_emulator import emulator_for
from robot_stack import messages
from teleop.emulated import LeaderEmulatorNode, leader_emulator
from teleop.errors import TeleopConfigError
from teleop.exo import ExoMapping, ExoNode

TICKS_PER_RAD = 4096 / (2 * math.pi)
ARM = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll")
MAPPING = """
joints:
  - {follower: shoulder_pan, leader: shoulder_pan, sign: -1}
  - {follower: shoulder_lift, leader: shoulder_lift, offset: 0.1}
  - {follower: elbow_flex, leader: elbow_flex, scale: 0.5}
  - {follower: wrist_flex, leader: wrist_flex}
  - {follower: wrist_roll, leader: wrist_roll}
gripper: {leader: gripper, open: 0.0, closed: 0.5, follower_joints: [gripper], follower_open: 0.0,
          follower_closed: 1.0}
max_velocity: 20.0
"""


@pytest.fixture
def mapping_file(tmp_path):
    path = tmp_path / "exo.yaml"
    path.write_text(MAPPING)
    return path


def test_mapping_applies_offsets_signs_scales_and_gripper(mapping_file):
    m = ExoMapping.load(mapping_file)
    leader = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]
    q, g = m.apply(leader, np.array([0.2, 0.3, 0.4, 0.5, 0.6, 0.25]))
    assert m.follower_names == [*ARM, "gripper"]
    assert np.allclose(q, [-0.2, 0.4, 0.2, 0.5, 0.6, 0.5]) and g == pytest.approx(0.5)
    assert m.apply(leader, np.array([0, 0, 0, 0, 0, 9.0]))[1] == 1.0      # clamped to 0..1


def test_mapping_errors_name_the_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("joints:\n  - {follower: a, leader: b, sign: 2}\n")
    with pytest.raises(TeleopConfigError, match=r"joints\[0\]\.sign"):
        ExoMapping.load(bad)
    bad.write_text("joints: []\nmax_velocty: 1\n")
    with pytest.raises(TeleopConfigError, match="did you mean 'max_velocity'"):
        ExoMapping.load(bad)
    m = ExoMapping.load(bad.write_text("joints:\n  - {follower: a, leader: nope}\n") and bad)
    with pytest.raises(TeleopConfigError, match="nope"):
        m.check_leader(["shoulder_pan"])


def _move_leader(emu, angles):
    with emu.lock:
        for motor_id, angle in zip(sorted(emu.motors), angles, strict=True):
            emu.motors[motor_id].move_to(2048 + angle * TICKS_PER_RAD)


def _follower_rad(emu):
    with emu.lock:
        return np.array([(m.get("present_position") - 2048) / TICKS_PER_RAD for _, m in sorted(emu.motors.items())])


@pytest.fixture
def rig(ctx, mapping_file):
    with emulator_for("koch", tau_s=0.005) as leader_emu, emulator_for("so101", tau_s=0.005) as follower_emu:
        follower = ServoRobotNode("follower", context=ctx, publish_stats=False, parameter_overrides={
            "robot": "so101", "port": follower_emu.port, "control_rate_hz": 100.0, "state_rate_hz": 100.0,
            "stop_periods": 100000, "watchdog_periods": 100000})
        exo = ExoNode("exo", context=ctx, publish_stats=False, parameter_overrides={
            "leader": "koch", "port": leader_emu.port, "mapping": str(mapping_file), "rate_hz": 50.0,
            "deadman": "topic", "deadman_timeout_s": 0.0})
        obs = rs.Node("obs", context=ctx, publish_stats=False)
        ex = rs.Executor()
        for n in (follower, exo, obs):
            ex.add_node(n)
        try:
            yield leader_emu, follower_emu, exo, obs, ex
        finally:
            for n in (obs, exo, follower):
                n.destroy_node()


def test_leader_emulator_drives_follower_robot_node(rig):
    leader_emu, follower_emu, exo, obs, ex = rig
    targets = []
    obs.create_subscription("robot_stack_msgs/msg/TeleopTarget", "teleop_target", targets.append, 1000)
    deadman = obs.create_publisher("std_msgs/msg/Bool", "teleop/deadman")
    leader = [0.3, -0.2, 0.4, 0.1, -0.3, 0.25]
    _move_leader(leader_emu, leader)
    expected = np.array([-0.3, -0.1, 0.2, 0.1, -0.3, 0.5])
    ex.spin_for(0.2)
    assert targets and not targets[-1].engaged                       # dead-man not held yet
    assert np.allclose(_follower_rad(follower_emu), 0.0, atol=0.01)  # so nothing moved
    deadman.publish(messages.make("std_msgs/msg/Bool", data=True))
    assert ex.spin_until(lambda: np.allclose(_follower_rad(follower_emu), expected, atol=0.01), 10.0)
    t = targets[-1]
    assert t.engaged and t.mode == 0 and list(t.joint_names) == [*ARM, "gripper"]
    assert t.gripper == pytest.approx(0.5, abs=0.01) and t.header.stamp.sec > 0

    # dead-man released: the follower holds although the leader moves on
    deadman.publish(messages.make("std_msgs/msg/Bool", data=False))
    ex.spin_for(0.1)
    _move_leader(leader_emu, [0.0] * 6)
    ex.spin_for(0.3)
    assert not exo.engaged and exo.reason == "dead-man released"
    assert np.allclose(_follower_rad(follower_emu), expected, atol=0.01)


def test_silent_leader_stops_commands_and_says_why(rig):
    leader_emu, _, exo, obs, ex = rig
    commands, targets = [], []
    obs.create_subscription("sensor_msgs/msg/JointState", "joint_commands", commands.append, 1000)
    obs.create_subscription("robot_stack_msgs/msg/TeleopTarget", "teleop_target", targets.append, 1000)
    deadman = obs.create_publisher("std_msgs/msg/Bool", "teleop/deadman")
    deadman.publish(messages.make("std_msgs/msg/Bool", data=True))
    assert ex.spin_until(lambda: exo.engaged and len(commands) > 3, 5.0)
    leader_emu.faults.silent = True
    assert ex.spin_until(lambda: not exo.engaged, 5.0)
    assert "device error" in exo.reason and exo.device_errors >= 1
    assert targets[-1].engaged is False                          # task-space followers drop it too
    n = len(commands)
    ex.spin_for(0.2)
    assert len(commands) == n


@pytest.mark.parametrize("leader,mapping", [("koch", "exo_koch_to_panda.yaml"), ("gello", "exo_gello_to_panda.yaml")])
def test_leader_emulator_drives_the_sim_panda(ctx, leader, mapping):
    from sim.node import SimNode

    mapping = Path(__file__).resolve().parents[2] / "teleop" / "configs" / mapping
    with leader_emulator(leader, tau_s=0.005) as leader_emu:
        sim = SimNode("sim", context=ctx, publish_stats=False, parameter_overrides={
            "robot": "sim_panda", "realtime": True, "cameras": [], "stop_periods": 1000000})
        exo = ExoNode("exo", context=ctx, publish_stats=False, parameter_overrides={
            "leader": leader, "port": leader_emu.port, "mapping": str(mapping), "rate_hz": 50.0})
        states = []
        obs = rs.Node("obs", context=ctx, publish_stats=False)
        obs.create_subscription("sensor_msgs/msg/JointState", "joint_states", states.append, 100)
        ex = rs.Executor()
        for n in (sim, exo, obs):
            ex.add_node(n)
        try:
            angles = [0.2, 0.1, -0.1, 0.15, 0.3, -0.2, 0.1, 0.3][-len(leader_emu.motors):]   # trigger last
            _move_leader(leader_emu, angles)
            expected, _ = exo.mapping.apply(exo.leader.joint_names, np.array(angles))
            names = list(sim.robot_node.joint_names)
            cols = [names.index(n) for n in exo.mapping.follower_names]

            def there() -> bool:
                return bool(states) and np.allclose(np.asarray(states[-1].position)[cols], expected, atol=0.03)

            assert ex.spin_until(there, 20.0), (np.asarray(states[-1].position)[cols], expected)
        finally:
            for n in (obs, exo, sim):
                n.destroy_node()


def test_leader_emulator_node_plays_an_operator(ctx, tmp_path):
    link = tmp_path / "leader"
    node = LeaderEmulatorNode("leader", context=ctx, publish_stats=False,
                              parameter_overrides={"device": "gello", "link": str(link), "period_s": 1.0})
    ex = rs.Executor()
    ex.add_node(node)
    try:
        ex.spin_for(0.1)
        assert link.is_symlink() and len(node.emulator.motors) == 8
        assert any(m.get("present_position") != 2048 for m in node.emulator.motors.values())
    finally:
        node.destroy_node()
    assert not link.exists()
