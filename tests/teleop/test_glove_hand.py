"""Glove -> hand: linear mapping with limits, garbage rejection, fingertip retargeting, and end to end
glove emulator (pty) -> GloveNode -> GloveHandNode -> the simulated hand's robot node."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import robot_stack as rs
from drivers.glove import GloveCalibration, format_line
from drivers.glove_emulator import GloveEmulator
from drivers.sensor_nodes import GloveNode
from teleop.errors import TeleopConfigError
from teleop.glove_hand import GloveFilter, GloveHandMapping, GloveHandNode
from teleop.retarget import RetargetConfig, fingertip, solve_chain

CONFIG = Path(__file__).resolve().parents[2] / "teleop" / "configs" / "glove_leap_hand.yaml"
SENSORS = [f"sensor{i}" for i in range(16)]


@pytest.fixture
def mapping():
    return GloveHandMapping.load(CONFIG)


def test_linear_mapping_clamps_to_limits(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("joints:\n  - {hand: index_mcp, sensor: s0, scale: 2.0, offset: 0.1, lower: 0.0, upper: 1.0}\n"
                    "  - {hand: index_pip, sensor: s1, scale: -1.0}\n")
    f = GloveFilter(GloveHandMapping.load(path))
    assert np.allclose(f.apply(["s1", "s0"], np.array([0.3, 0.2])), [0.5, -0.3])
    assert np.allclose(f.apply(["s0", "s1"], np.array([0.9, 0.3])), [1.0, -0.3])     # clamped to upper


def test_garbage_samples_are_counted_and_dropped(mapping):
    f = GloveFilter(mapping)
    pose = np.full(16, 0.6)
    good = f.apply(SENSORS, pose)
    assert good is not None
    assert f.apply(SENSORS[:15], pose[:15]) is None                      # a sensor missing
    assert f.apply(SENSORS, np.where(np.arange(16) == 3, np.nan, pose)) is None
    assert f.apply(SENSORS, np.where(np.arange(16) == 5, 40.0, pose)) is None       # outside input_range
    spike = np.where(np.arange(16) == 2, 1.57, 0.0)                      # one sample far away
    assert f.apply(SENSORS, spike) is None and f.rejected == 4
    assert np.allclose(f.accepted, good)
    for _ in range(mapping.confirm_samples - 2):     # a real fast move: confirm_samples in a row agree
        assert f.apply(SENSORS, spike) is None
    assert f.apply(SENSORS, spike) is not None and f.jumps == 1


def test_retargeting_puts_the_fingertip_on_the_scaled_human_fingertip(mapping):
    cfg = RetargetConfig(chains=(("a", "b", "c"),), weight=0.0, iterations=30)
    human = np.array([0.4, 0.6, 0.3])
    robot_links = np.array(cfg.robot_links)
    target = fingertip(human, np.array(cfg.human_links)) * robot_links.sum() / sum(cfg.human_links)
    q = solve_chain(target, human, robot_links, np.full(3, -0.5), np.full(3, 2.0), 0.0, 30, 1e-6)
    assert np.allclose(fingertip(q, robot_links), target, atol=1e-4)
    q = solve_chain(np.array([0.0, -0.2]), human, robot_links, np.full(3, -0.1), np.full(3, 0.5), 0.0, 30, 1e-6)
    assert np.all(q >= -0.1) and np.all(q <= 0.5)                       # limits hold when unreachable
    with_retarget = GloveFilter(mapping).apply(SENSORS, np.full(16, 0.9))
    assert with_retarget is not None and np.all(np.isfinite(with_retarget))


def test_mapping_file_errors(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("joints:\n  - {hand: a, sensor: s0}\nretarget: {chains: [[a, b, c]]}\n")
    with pytest.raises(TeleopConfigError, match=r"retarget\.chains.*\['b', 'c'\]"):
        GloveHandMapping.load(path)
    path.write_text("joints:\n  - {hand: a, sensor: s0, lower: 1.0, upper: 0.0}\n")
    with pytest.raises(TeleopConfigError, match=r"joints\[0\]\.upper"):
        GloveHandMapping.load(path)


def test_glove_emulator_drives_the_sim_hand_and_garbage_does_not(ctx, mapping):
    from sim.node import SimNode

    emu = GloveEmulator()
    emu.silent = True                       # the test writes the lines itself
    port = emu.start()
    glove = GloveNode("glove", context=ctx, publish_stats=False, parameter_overrides={
        "port": port, "rate_hz": 100.0, "watchdog_periods": 100000, "startup_s": 60.0, "retry_s": 0.05})
    hand = GloveHandNode("glove_hand", context=ctx, publish_stats=False, parameter_overrides={
        "mapping": str(CONFIG), "rate_hz": 100.0, "stream_timeout_s": 5.0})
    sim = SimNode("sim", context=ctx, publish_stats=False, parameter_overrides={
        "robot": "sim_iiwa_leap", "realtime": True, "cameras": [], "stop_periods": 1000000,
        "watchdog_periods": 1000000})
    states = []
    obs = rs.Node("obs", context=ctx, publish_stats=False)
    obs.create_subscription("sensor_msgs/msg/JointState", "joint_states", states.append, 100)
    ex = rs.Executor()
    for n in (glove, hand, sim, obs):
        ex.add_node(n)
    names = list(sim.robot_node.joint_names)
    columns = [names.index(n) for n in mapping.hand_names]

    def hand_q():
        return np.asarray(states[-1].position)[columns]

    try:
        raw = np.array([2048, 2600, 2400, 2200] * 3 + [1500, 2000, 1800, 1600])
        calibrated = GloveCalibration.default(16).joints(raw)
        expected = GloveFilter(mapping).apply(SENSORS, calibrated)

        def feed(extra: bytes = b"") -> None:
            emu.inject(extra + format_line(raw))
            ex.spin_for(0.02)

        for _ in range(400):
            feed()
            if states and np.allclose(hand_q(), expected, atol=0.05):
                break
        assert np.allclose(hand_q(), expected, atol=0.05), (hand_q(), expected)
        command = hand.last_command.copy()
        for _ in range(30):                 # garbage between the lines: dropped, the hand stays put
            emu.inject_garbage(64)
            emu.inject_truncated()
            emu.inject(b"1,2,3\n" + b",".join([b"9999"] * 16) + b"\n")
            ex.spin_for(0.02)
        assert glove.glove.parser.lines_bad > 30
        assert np.array_equal(hand.last_command, command)          # the commands did not change
        assert np.allclose(hand_q(), expected, atol=0.05) and hand.filter.jumps == 0
    finally:
        for n in (obs, sim, hand, glove):
            n.destroy_node()
        emu.stop()


def test_silent_glove_stream_disengages_and_stops_commands(ctx):
    from robot_stack import convert

    hand = GloveHandNode("glove_hand", context=ctx, publish_stats=False, parameter_overrides={
        "mapping": str(CONFIG), "rate_hz": 100.0, "stream_timeout_s": 0.1})
    src = rs.Node("src", context=ctx, publish_stats=False)
    pub = src.create_publisher("sensor_msgs/msg/JointState", "/glove/joints", "sensor_data")
    commands, targets = [], []
    src.create_subscription("sensor_msgs/msg/JointState", "joint_commands", commands.append, 1000)
    src.create_subscription("robot_stack_msgs/msg/TeleopTarget", "teleop_target", targets.append, 1000)
    ex = rs.Executor()
    ex.add_node(hand)
    ex.add_node(src)
    try:
        for _ in range(10):
            pub.publish(convert.joint_state(SENSORS, np.full(16, 0.5), stamp=hand.get_clock().now()))
            ex.spin_for(0.01)
        assert hand.engaged and commands and targets[-1].mode == 0 and targets[-1].header.stamp.sec > 0
        assert ex.spin_until(lambda: not hand.engaged, 2.0)
        assert "silent" in hand.reason and targets[-1].engaged is False
        n = len(commands)
        ex.spin_for(0.1)
        assert len(commands) == n
    finally:
        src.destroy_node()
        hand.destroy_node()
