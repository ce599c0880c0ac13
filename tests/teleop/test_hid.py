"""Keyboard / gamepad (evdev) and SpaceMouse (HID) bytes -> velocity teleop -> TeleopTarget MODE_POSE.
Real report bytes go through a pipe; garbage is counted and dropped; limits and the dead-man hold."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

import robot_stack as rs
from teleop import evdev, spacemouse
from teleop.errors import TeleopConfigError
from teleop.velocity import PoseIntegrator, VelocityTeleopNode, rpy_to_quaternion
from teleop.velocity_config import AxisBinding, VelocityConfig

K = evdev.KEYS


def key(name: str, value: int) -> bytes:
    return evdev.pack_frame([(evdev.EV_KEY, K[name], value)], time.time_ns())


def test_evdev_parser_frames_partial_reads_and_resyncs_after_garbage():
    p = evdev.EvdevParser()
    data = key("KEY_W", 1) + evdev.pack_frame([(evdev.EV_ABS, 0, -5000), (evdev.EV_ABS, 1, 300)])
    frames = [f for i in range(0, len(data), 7) for f in p.feed(data[i:i + 7])]      # 7-byte reads
    assert [[(e.type, e.code, e.value) for e in f] for f in frames] == [[(1, 17, 1)], [(3, 0, -5000), (3, 1, 300)]]
    garbage = bytes(np.random.default_rng(1).integers(0, 256, 101, dtype=np.uint8))
    frames = p.feed(garbage + key("KEY_A", 1))
    assert [[e.code for e in f] for f in frames] == [[K["KEY_A"]]]
    assert p.bad_records == 1 and p.bytes_skipped == 101
    now = time.time_ns()
    bogus = evdev.pack_event(evdev.EV_KEY, K["KEY_W"], 7, now) + evdev.pack_event(0x1F, 0, 0, now)  # bad value, type
    frames = p.feed(bogus + key("KEY_D", 0))
    assert [[e.code for e in f] for f in frames] == [[K["KEY_D"]]] and p.bad_records == 2


def test_syn_dropped_releases_held_keys():
    p, state = evdev.EvdevParser(), evdev.InputState()
    for frame in p.feed(key("KEY_W", 1)):
        state.apply(frame)
    assert state.keys == {K["KEY_W"]}
    lost = evdev.pack_event(evdev.EV_KEY, K["KEY_A"], 1) + evdev.pack_event(evdev.EV_SYN, evdev.SYN_DROPPED, 0)
    frames = p.feed(lost + evdev.pack_event(evdev.EV_SYN, evdev.SYN_REPORT, 0))
    assert frames == [None] and state.apply(frames[0]) == [(K["KEY_W"], False)] and not state.keys


def test_spacemouse_parser_merged_split_and_garbage():
    p = spacemouse.SpaceMouseParser()
    sm = spacemouse
    data = sm.pack_translation(100, -200, 350) + sm.pack_rotation(-1, 2, -3) + sm.pack_buttons(2)
    reports = p.feed(data[:3]) + p.feed(data[3:] + b"\x09\x01\xff\x7f\x00\x00\x00\x00" + data)
    assert [r.values for r in reports] == [(100, -200, 350), (-1, 2, -3), (2,)] * 2
    assert p.bad_reports == 1 and p.bytes_skipped == 8      # unknown id, then an axis far out of range
    state = spacemouse.SpaceMouseState()
    changes = [c for r in reports[:3] for c in state.apply(r)]
    assert changes == [(1, True)] and list(state.axes) == [100, -200, 350, -1, 2, -3]


def test_axis_binding_normalizes_with_deadzone_and_trigger_rest():
    stick = AxisBinding("ABS_X", "y", min=-32768, max=32767, deadzone=0.1)
    assert stick.normalize(0) == 0.0 and stick.normalize(32767) == pytest.approx(1.0)
    assert stick.normalize(-32768) == pytest.approx(-1.0) and stick.normalize(1000) == 0.0
    trigger = AxisBinding("ABS_RZ", "gripper", min=0, max=1023, zero=0, deadzone=0.0)
    assert trigger.normalize(0) == 0.0 and trigger.normalize(1023) == pytest.approx(1.0)


def test_config_errors_name_the_field(tmp_path):
    bad = tmp_path / "k.yaml"
    bad.write_text("device: keyboard\naxes: [{input: KEY_NOPE, axis: x}]\n")
    with pytest.raises(TeleopConfigError, match=r"axes\[0\]\.input.*unknown key"):
        VelocityConfig.load(bad)
    bad.write_text("device: keyboard\naxes: []\nbuttons: {KEY_SPACE: dance}\n")
    with pytest.raises(TeleopConfigError, match=r"buttons\.KEY_SPACE.*unknown action"):
        VelocityConfig.load(bad)


def test_integrator_keeps_velocity_and_workspace_limits():
    cfg = VelocityConfig.load("keyboard")
    pose = PoseIntegrator(cfg)
    start = pose.position.copy()
    pose.step(np.array([5.0, 0, 0, 0, 0, 0, 0]), 10.0)          # over-range input, stalled loop
    assert pose.position[0] - start[0] == pytest.approx(cfg.max_linear * cfg.max_dt)
    for _ in range(200):
        pose.step(np.array([1.0, 1.0, -1.0, 0, 0, 1.0, 0]), 0.05)
    assert np.allclose(pose.position, [0.82, 0.32, 0.0]) and pose.clamped > 0
    q = rpy_to_quaternion(0.0, 0.0, np.pi / 2)
    assert np.allclose(q, [0, 0, np.sqrt(0.5), np.sqrt(0.5)])


@pytest.fixture
def pipe_rig(ctx):
    made = []

    def make(config: str, **params):
        r, w = os.pipe()
        params = {"config": config, "rate_hz": 100.0, **params}
        node = VelocityTeleopNode("vt", context=ctx, source=r, publish_stats=False, parameter_overrides=params)
        obs = rs.Node("obs", context=ctx, publish_stats=False)
        targets, events = [], []
        obs.create_subscription("robot_stack_msgs/msg/TeleopTarget", "teleop_target", targets.append, 10000)
        obs.create_subscription("robot_stack_msgs/msg/EpisodeEvent", "episode_events", events.append, 100)
        ex = rs.Executor()
        ex.add_node(node)
        ex.add_node(obs)
        made.append((node, obs, r, w))
        return node, ex, (lambda data: os.write(w, data)), targets, events

    yield make
    for node, obs, r, w in made:
        obs.destroy_node()
        node.destroy_node()
        os.close(r)
        os.close(w)


def _x(targets):
    return targets[-1].ee_pose.position.x


def test_keyboard_moves_only_while_deadman_held_and_counts_garbage(pipe_rig):
    node, ex, write, targets, events = pipe_rig("keyboard")
    ex.spin_for(0.05)
    x0 = _x(targets)
    write(key("KEY_W", 1))                                    # no dead-man: nothing moves
    ex.spin_for(0.1)
    assert _x(targets) == x0 and not targets[-1].engaged
    write(key("KEY_SPACE", 1))
    for _ in range(10):                                       # held keys auto-repeat (value 2)
        write(key("KEY_W", 2))
        ex.spin_for(0.03)
    moved = _x(targets) - x0
    assert targets[-1].engaged and targets[-1].mode == 1 and moved > 0.005
    write(key("KEY_SPACE", 0))                                # dead-man released: the target stops
    ex.spin_for(0.05)
    x1 = _x(targets)
    write(os.urandom(500))
    ex.spin_for(0.1)
    assert _x(targets) == x1 and not targets[-1].engaged
    assert node.input.parser.bad_records >= 1 and node.input.parser.bytes_skipped >= 476
    write(key("KEY_ENTER", 1) + key("KEY_ENTER", 0))          # episode toggle -> START
    ex.spin_for(0.05)
    assert [e.event for e in events] == [0] and node.episodes.recording


def test_keyboard_silence_while_key_held_releases_everything(pipe_rig):
    node, ex, write, targets, _ = pipe_rig("keyboard", stream_timeout_s=0.2)
    write(key("KEY_SPACE", 1) + key("KEY_W", 1))
    assert ex.spin_until(lambda: node.engaged, 2.0)
    assert ex.spin_until(lambda: not node.engaged, 2.0)       # no auto-repeat arrives: the stream is dead
    assert node.watchdog.trips == 1 and not node.input.state.keys and not node.device_deadman
    assert targets[-1].engaged is False


def test_spacemouse_reports_move_the_target(pipe_rig):
    node, ex, write, targets, _ = pipe_rig("spacemouse")
    ex.spin_for(0.05)
    y0 = targets[-1].ee_pose.position.y
    write(spacemouse.pack_buttons(1))                         # left button: dead-man
    for _ in range(20):
        write(spacemouse.pack_translation(-350, 0, 0) + b"\x07garbage")
        ex.spin_for(0.01)
    assert targets[-1].engaged and targets[-1].ee_pose.position.y > y0 + 0.005
    assert node.input.parser.bad_reports >= 1
    ex.spin_for(0.4)                                          # deflected but silent: watchdog
    assert not node.engaged and "silent" in node.reason


def test_keyboard_drives_push_t_and_reset_reaches_the_sim(pipe_rig, ctx):
    from sim.node import SimNode

    sim = SimNode("sim", context=ctx, publish_stats=False, parameter_overrides={
        "task": "push_t", "realtime": True, "cameras": [], "stop_periods": 1000000})
    try:
        node, ex, write, targets, events = pipe_rig("keyboard")
        ex.add_node(sim)
        actions = []
        status = []
        probe = rs.Node("probe", context=ctx, publish_stats=False)
        probe.create_subscription("sensor_msgs/msg/JointState", "task/action", actions.append, 1000)
        probe.create_subscription("diagnostic_msgs/msg/DiagnosticStatus", "task/status", status.append, 100)
        ex.add_node(probe)
        write(key("KEY_SPACE", 1) + key("KEY_A", 1))            # +y while the dead-man is held
        for _ in range(15):
            write(key("KEY_A", 2))
            ex.spin_for(0.02)
        assert actions and list(actions[-1].name)[:2] == ["ee_x", "ee_y"]
        assert actions[-1].position[1] > node.config.home[1] + 0.005     # the sim applied the target
        seed = sim.task.seed
        write(key("KEY_SPACE", 0) + key("KEY_HOME", 1) + key("KEY_HOME", 0))   # reset button
        assert ex.spin_until(lambda: sim.task.seed == seed + 1, 5.0)
        assert events[-1].event == 5 and node.pose.position[1] == pytest.approx(node.config.home[1])
        probe.destroy_node()
    finally:
        sim.destroy_node()


def test_gamepad_stick_trigger_and_buttons(pipe_rig):
    node, ex, write, targets, _ = pipe_rig("gamepad")
    ex.spin_for(0.05)
    x0 = _x(targets)
    now = time.time_ns()
    abs_y, abs_rz = evdev.AXES["ABS_Y"], evdev.AXES["ABS_RZ"]
    write(evdev.pack_frame([(evdev.EV_KEY, K["BTN_TL"], 1), (evdev.EV_ABS, abs_y, -32768),
                            (evdev.EV_ABS, abs_rz, 1023)], now))          # dead-man, stick forward, trigger
    ex.spin_for(0.2)                                                     # a still stick sends nothing: no trip
    assert node.engaged and _x(targets) > x0 + 0.005 and targets[-1].gripper > 0.1
    write(evdev.pack_frame([(evdev.EV_ABS, abs_y, 0)], time.time_ns()))  # stick back to rest
    ex.spin_for(0.05)
    x1 = _x(targets)
    ex.spin_for(0.1)
    assert _x(targets) == x1 and node.watchdog.trips == 0
