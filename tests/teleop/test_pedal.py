"""Foot pedal (evdev keys through a pipe, ASCII lines through a pty) -> EpisodeEvents; dead-man pedal."""

from __future__ import annotations

import os
import time
import tty

import pytest

import robot_stack as rs
from robot_stack.errors import ParameterError
from teleop import evdev
from teleop.episode import DISCARD, RESET, START, STOP, SUCCESS
from teleop.pedal import LineParser, PedalNode


def press(name: str) -> bytes:
    code = evdev.KEYS[name]
    now = time.time_ns()
    return (evdev.pack_frame([(evdev.EV_KEY, code, 1)], now)
            + evdev.pack_frame([(evdev.EV_MSC, 4, 0x70004), (evdev.EV_KEY, code, 0)], now))


@pytest.fixture
def rig(ctx):
    made = []

    def make(fd, **params):
        node = PedalNode("pedal", context=ctx, source=fd, publish_stats=False,
                         parameter_overrides={"rate_hz": 200.0, **params})
        obs = rs.Node("obs", context=ctx, publish_stats=False)
        events, deadman = [], []
        obs.create_subscription("robot_stack_msgs/msg/EpisodeEvent", "episode_events", events.append, 100)
        obs.create_subscription("std_msgs/msg/Bool", "teleop/deadman", lambda m: deadman.append(m.data), 100)
        ex = rs.Executor()
        ex.add_node(node)
        ex.add_node(obs)
        made.extend([obs, node])
        return node, ex, events, deadman

    yield make
    for n in made:
        n.destroy_node()


def test_pcsensor_pedal_keys_become_episode_events(rig):
    r, w = os.pipe()
    try:
        node, ex, events, _ = rig(r)
        for name in ("KEY_A", "KEY_C", "KEY_A", "KEY_A", "KEY_B"):    # start, success, stop, start, discard
            os.write(w, press(name))
            ex.spin_for(0.03)
        os.write(w, os.urandom(200))                                 # garbage: counted, no event
        ex.spin_for(0.05)
        assert [e.event for e in events] == [START, SUCCESS, STOP, RESET, START, DISCARD, RESET]
        assert all(e.source == "pedal" for e in events) and not node.episodes.recording
        assert node.parser.bad_records >= 1 and node.presses == 5
    finally:
        os.close(r)
        os.close(w)


def test_deadman_pedal_publishes_held_state(rig):
    r, w = os.pipe()
    try:
        node, ex, events, deadman = rig(r, keys=["KEY_B=deadman", "KEY_A=toggle"])
        os.write(w, evdev.pack_frame([(evdev.EV_KEY, evdev.KEYS["KEY_B"], 1)], time.time_ns()))
        ex.spin_for(0.25)                                            # repeated while held
        os.write(w, evdev.pack_frame([(evdev.EV_KEY, evdev.KEYS["KEY_B"], 0)], time.time_ns()))
        ex.spin_for(0.03)
        assert deadman[0] is True and deadman.count(True) >= 2 and deadman[-1] is False and events == []
    finally:
        os.close(r)
        os.close(w)


def test_serial_pedal_lines_through_a_pty(rig):
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        node, ex, events, _ = rig(slave, source="serial")
        os.write(master, b"A\r\nnoise\x01\xff\nA\nC\n" + b"x" * 100 + b"\n")
        ex.spin_for(0.05)
        assert [e.event for e in events] == [START, STOP, RESET, SUCCESS]
        assert node.parser.bad_lines == 2
    finally:
        os.close(master)
        os.close(slave)


def test_line_parser_and_bad_key_map(ctx):
    p = LineParser()
    assert p.feed(b"A\nB") == ["A"] and p.feed(b"\n") == ["B"]
    with pytest.raises(ParameterError, match="INPUT=action"):
        PedalNode("p", context=ctx, source=0, parameter_overrides={"keys": ["KEY_A:start"]})
    with pytest.raises(ParameterError, match="dead-man"):
        PedalNode("p", context=ctx, source=0, parameter_overrides={"source": "serial",
                                                                   "keys": ["A=deadman"]})


def test_pedal_drives_the_recorder(rig, ctx, tmp_path):
    from data.recorder import RecorderNode
    from data.recorder_config import parse_config
    from robot_stack import convert

    cfg = parse_config({"dataset": str(tmp_path / "ds"), "robot": {"name": "arm"}, "min_free_mb": 1,
                        "flush_period_s": 0.2,
                        "streams": [{"topic": "/joint_states", "type": "sensor_msgs/msg/JointState", "fps": 100}]},
                       source="test.yaml")
    rec = RecorderNode("recorder", config=cfg, context=ctx, publish_stats=False)
    r, w = os.pipe()
    try:
        node, ex, events, _ = rig(r)
        ex.add_node(rec)
        js = node.create_publisher("sensor_msgs/msg/JointState", "/joint_states")
        for name in ("KEY_A", "KEY_C", "KEY_A", "KEY_A", "KEY_B"):   # start, success, stop, start, discard
            os.write(w, press(name))
            for i in range(5):
                js.publish(convert.joint_state(["a"], [float(i)], stamp=node.get_clock().now()))
                ex.spin_for(0.01)
        assert rec.wait_idle() and rec.committed == [0] and rec.state == "idle"
    finally:
        rec.destroy_node()
        os.close(r)
        os.close(w)


def test_deadman_pedal_engages_the_keyboard_and_a_vanished_pedal_releases_it(rig, ctx):
    from teleop.velocity import VelocityTeleopNode

    r, w = os.pipe()
    kr, kw = os.pipe()
    keyboard = VelocityTeleopNode("kb", context=ctx, source=kr, publish_stats=False, parameter_overrides={
        "config": "keyboard", "deadman": "topic", "deadman_timeout_s": 0.3})
    try:
        pedal, ex, _, _ = rig(r, keys=["KEY_B=deadman"])
        ex.add_node(keyboard)
        os.write(w, evdev.pack_frame([(evdev.EV_KEY, evdev.KEYS["KEY_B"], 1)], time.time_ns()))
        assert ex.spin_until(lambda: keyboard.engaged, 2.0)
        ex.remove_node(pedal)                                     # the pedal process died while held
        assert ex.spin_until(lambda: not keyboard.engaged, 2.0)
        assert "dead-man topic silent" in keyboard.reason
    finally:
        keyboard.destroy_node()
        for fd in (r, w, kr, kw):
            os.close(fd)
