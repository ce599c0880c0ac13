"""SimNode: sim-time clock, composed robot node in lockstep, cameras, wrench, pacing, watchdog."""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import pytest

import robot_stack as rs
import sim
from robot_stack import convert, messages
from robot_stack.clock import Time
from robot_stack.errors import ParameterError
from robot_stack.launch.config import load_launch_file
from robot_stack.launch.process import ProcessRunner
from robot_stack.robot.watchdog import Health
from sim.node import SimNode


@pytest.fixture
def rig(ctx):
    """A SimNode (DIRECT), an observer node and an executor spinning both."""
    made = []

    def make(**params):
        params.setdefault("realtime", False)
        params.setdefault("cameras", [])
        node = SimNode(node_name="sim", context=ctx, parameter_overrides=params, publish_stats=False)
        obs = rs.Node("observer", context=ctx, publish_stats=False)
        ex = rs.Executor()
        ex.add_node(node)
        ex.add_node(obs)
        made.extend([obs, node])
        return node, obs, ex

    yield make
    for n in made:
        n.destroy_node()


def listen(obs, type_name, topic):
    got = []
    obs.create_subscription(type_name, topic, got.append, 10_000)
    return got


def stamp_ns(msg) -> int:
    return Time.from_msg(msg.header.stamp).nanoseconds


def test_clock_advances_and_joint_states_are_stamped_with_sim_time(rig):
    node, obs, ex = rig()
    clocks = listen(obs, "rosgraph_msgs/msg/Clock", "/clock")
    states = listen(obs, "sensor_msgs/msg/JointState", "joint_states")
    assert ex.spin_until(lambda: node.sim_time.seconds >= 0.2, 5.0)
    ticks = [Time.from_msg(m.clock).nanoseconds for m in clocks]
    assert ticks and np.all(np.diff(ticks) > 0) and ticks[-1] >= 199_000_000
    assert node.get_clock().sim_time and node.get_clock().now() == node.sim_time
    stamps = np.array([stamp_ns(m) for m in states])
    assert np.all(np.diff(stamps) == 2_000_000)          # 500 Hz of sim time, exactly
    assert stamps[-1] <= node.sim_time.nanoseconds and stamps[-1] > node.sim_time.nanoseconds - 3_000_000
    assert list(states[-1].name)[:7] == [f"panda_joint{i}" for i in range(1, 8)]


def test_joint_command_target_is_reached(rig):
    node, obs, ex = rig(stop_periods=5000)
    states = listen(obs, "sensor_msgs/msg/JointState", "joint_states")
    ex.spin_until(lambda: node.sim_time.seconds >= 0.05, 5.0)
    target = np.array(states[-1].position, dtype=float)
    target[:4] += [0.3, 0.2, -0.2, 0.3]
    pub = obs.create_publisher("sensor_msgs/msg/JointState", "joint_commands")
    due = node.sim_time + 0.5
    pub.publish(convert.joint_state(node.robot_node.joint_names, target, stamp=due))
    assert ex.spin_until(lambda: node.sim_time.seconds >= 2.0, 5.0)
    assert node.robot_node.health is not Health.FAULT
    assert np.allclose(states[-1].position[:7], target[:7], atol=0.02)


def test_cameras_publish_image_and_info_with_matching_stamps(rig):
    node, obs, ex = rig(cameras=["fixed", "wrist"], camera_width=64, camera_height=48, camera_hz=20.0)
    images = {n: listen(obs, "sensor_msgs/msg/Image", f"{n}/image_raw") for n in ("fixed", "wrist")}
    infos = {n: listen(obs, "sensor_msgs/msg/CameraInfo", f"{n}/camera_info") for n in ("fixed", "wrist")}
    assert ex.spin_until(lambda: node.sim_time.seconds >= 0.5, 5.0)
    for name in ("fixed", "wrist"):
        assert len(images[name]) == 10 == len(infos[name])  # 20 Hz for 0.5 s of sim time
        img, info = images[name][-1], infos[name][-1]
        assert (img.width, img.height, info.width, info.height) == (64, 48, 64, 48)
        assert stamp_ns(img) == stamp_ns(info) == 500_000_000
        assert convert.image_array(img).shape == (48, 64, 3)


def test_wrench_published_with_sim_time(rig):
    node, obs, ex = rig(ft_hz=100.0)
    wrenches = listen(obs, "geometry_msgs/msg/WrenchStamped", "wrench")
    assert ex.spin_until(lambda: node.sim_time.seconds >= 0.3, 5.0)
    assert len(wrenches) == 30
    assert stamp_ns(wrenches[-1]) == 300_000_000
    force = convert.wrench_vector(wrenches[-1])[:3]
    assert np.all(np.isfinite(force)) and np.linalg.norm(force) > 1.0  # the hand's weight at least


def test_a_task_with_its_own_ft_publishes_that_one_tared_at_reset(rig):
    """wipe tares its wrist F/T at each reset; the node's `wrench` is that sensor, so the topic
    carries what the task's observation (and so its demonstrations) carry, not the hand's ~10 N."""
    node, obs, ex = rig(task="wipe", seed=2, ft_hz=100.0)
    assert node.ft is node.task.ft
    wrenches = listen(obs, "geometry_msgs/msg/WrenchStamped", "wrench")
    assert ex.spin_until(lambda: node.sim_time.seconds >= 0.1 and wrenches, 5.0)
    assert np.linalg.norm(convert.wrench_vector(wrenches[0])[:3]) < 1.0
    assert np.linalg.norm(node.task.ft.raw()[:3]) > 1.0                 # un-tared, the hand weighs more


def test_bare_hand_runs_without_a_wrist_ft(rig):
    """`sim_leap_hand` has no `ft_joint`: the node runs its joints and publishes no wrench."""
    node, obs, ex = rig(robot="sim_leap_hand", ft_hz=100.0)
    wrenches = listen(obs, "geometry_msgs/msg/WrenchStamped", "wrench")
    states = listen(obs, "sensor_msgs/msg/JointState", "joint_states")
    assert node.ft is None
    assert ex.spin_until(lambda: node.sim_time.seconds >= 0.2 and states, 5.0)
    assert wrenches == [] and len(states[-1].name) == 16


def test_fast_mode_runs_faster_than_wall_time(rig):
    node, _obs, ex = rig(realtime=False)
    t0 = time.perf_counter()
    ex.spin_for(1.0)
    wall = time.perf_counter() - t0
    assert node.sim_time.seconds > 1.5 * wall


def test_realtime_mode_tracks_wall_time(rig):
    node, _obs, ex = rig(realtime=True)
    t0 = time.perf_counter()
    ex.spin_for(0.5)
    wall = time.perf_counter() - t0
    assert 0.7 * wall <= node.sim_time.seconds <= wall + 0.01


def test_nan_command_trips_watchdog_and_robot_holds(rig):
    node, obs, ex = rig(stop_periods=5000)
    states = listen(obs, "sensor_msgs/msg/JointState", "joint_states")
    ex.spin_until(lambda: node.sim_time.seconds >= 0.05, 5.0)
    pub = obs.create_publisher("sensor_msgs/msg/JointState", "joint_commands")
    start = np.array(states[-1].position, dtype=float)
    target = start.copy()
    target[0] += 1.0
    pub.publish(convert.joint_state(node.robot_node.joint_names, target, stamp=node.sim_time + 2.0))
    ex.spin_until(lambda: node.sim_time.seconds >= 0.5, 5.0)  # a quarter of the way, moving
    bad = target.copy()
    bad[2] = math.nan
    pub.publish(messages.make("sensor_msgs/msg/JointState", header=convert.header(None), position=bad))
    assert ex.spin_until(lambda: node.robot_node.health is Health.FAULT, 5.0)
    assert node.robot_node.rejected == 1
    tripped_at = states[-1].position[0]
    assert 0.1 < tripped_at - start[0] < 0.5
    until = node.sim_time.seconds + 1.0
    ex.spin_until(lambda: node.sim_time.seconds >= until, 5.0)
    assert abs(states[-1].position[0] - tripped_at) < 0.02     # held where it was, not at the target
    assert np.allclose(states[-1].velocity[:7], 0.0, atol=0.01)
    pub.publish(convert.joint_state(node.robot_node.joint_names, target))  # ignored until reset_fault()
    ex.spin_until(lambda: node.sim_time.seconds >= until + 0.2, 5.0)
    assert node.robot_node.ignored >= 1 and abs(states[-1].position[0] - tripped_at) < 0.02


def test_launch_file_builds_the_sim_process():
    cfg = load_launch_file(Path(sim.__file__).parent / "configs" / "sim_panda.yaml")
    proc = dataclasses.replace(cfg.process("sim"), transport="inproc")
    runner = ProcessRunner(proc)
    try:
        runner.build()
        (_spec, node), = runner.nodes
        assert isinstance(node, SimNode) and set(node.cameras) == {"fixed", "wrist"} and node.realtime
        assert runner.executor.spin_until(lambda: node.sim_time.seconds >= 0.1, 5.0)
    finally:
        runner.close()


def test_bad_parameters_are_named(ctx):
    with pytest.raises(ParameterError, match="cameras"):
        SimNode(node_name="sim", context=ctx, parameter_overrides={"cameras": ["thermal"]}, publish_stats=False)
    with pytest.raises(ParameterError, match="physics_hz"):
        SimNode(node_name="sim", context=ctx, parameter_overrides={"physics_hz": -5}, publish_stats=False)


def _task_values(msg) -> dict[str, str]:
    return {kv.key: kv.value for kv in msg.values}


def test_task_scene_status_and_reset_by_episode_event(rig):
    node, obs, ex = rig(task="push_t", seed=3)
    assert node.robot.kind == "sim_panda" and node.physics_hz == node.task.config.physics_hz
    status = listen(obs, "diagnostic_msgs/msg/DiagnosticStatus", "task/status")
    assert ex.spin_until(lambda: node.sim_time.seconds >= 1.0, 5.0)
    values = _task_values(status[-1])
    assert values["task"] == "push_t" and values["seed"] == "3" and values["success"] == "False"
    assert 0.0 <= float(values["progress"]) < 0.7
    assert int(values["elapsed_steps"]) == pytest.approx(10, abs=1)        # 1 s at the task's 10 Hz
    start = node.task.block_pose()
    events = obs.create_publisher("robot_stack_msgs/msg/EpisodeEvent", "episode_events")
    events.publish(messages.make("robot_stack_msgs/msg/EpisodeEvent", event=5, source="test", episode_id="7"))
    assert ex.spin_until(lambda: node.task.seed == 7, 5.0)
    assert not np.allclose(node.task.block_pose(), start)
    assert ex.spin_until(lambda: _task_values(status[-1])["seed"] == "7", 5.0)
    events.publish(messages.make("robot_stack_msgs/msg/EpisodeEvent", event=5, source="test"))
    assert ex.spin_until(lambda: node.task.seed == 8, 5.0)


def test_task_status_goes_out_at_the_step_the_episode_reaches_max_steps(rig):
    """`max_steps` (here 7) reaches the task, and the status at that tick goes out at once, between
    the slow `task_status_hz` ones, so an eval follower stops at exactly max_steps."""
    node, obs, ex = rig(task="push_t", seed=3, max_steps=7, task_status_hz=0.1)
    assert node.task.config.max_steps == 7
    status = listen(obs, "diagnostic_msgs/msg/DiagnosticStatus", "task/status")
    assert ex.spin_until(lambda: node.task.elapsed_steps >= 9, 5.0)
    ex.spin_until(lambda: False, 0.05)                                    # deliver what is queued
    steps = [int(_task_values(m)["elapsed_steps"]) for m in status]
    assert 7 in steps and not node.task.success()


def test_task_robot_is_driven_through_the_robot_node(rig):
    node, obs, ex = rig(task="push_t", stop_periods=5000)
    ex.spin_until(lambda: node.sim_time.seconds >= 0.1, 5.0)
    before = node.task.ee_pose()[0]
    target = node.task.solve_ik(before + [0.05, 0.05, 0.0])
    pub = obs.create_publisher("sensor_msgs/msg/JointState", "joint_commands")
    pub.publish(convert.joint_state(node.robot_node.joint_names, target, stamp=node.sim_time + 0.5))
    assert ex.spin_until(lambda: node.sim_time.seconds >= 1.5, 5.0)
    assert node.task.ee_pose()[0][:2] == pytest.approx(before[:2] + 0.05, abs=0.01)


def test_unknown_task_lists_the_available_ones(ctx):
    with pytest.raises(KeyError, match="unknown task 'push'.*available: .*push_t"):
        SimNode(node_name="sim", context=ctx, parameter_overrides={"task": "push"}, publish_stats=False)


def test_tactile_pads_publish_frames(rig):
    node, obs, ex = rig(tactile=True, tactile_hz=50.0)
    frames = listen(obs, "robot_stack_msgs/msg/TactileFrame", "tactile/left_finger")
    assert ex.spin_until(lambda: node.sim_time.seconds >= 0.2, 5.0)
    assert len(frames) == 10
    f = frames[-1]
    assert (f.rows, f.cols) == (7, 9) and len(f.displacement) == 7 * 9 * 3 and stamp_ns(f) == 200_000_000


def _obs_from_msg(msg) -> dict[str, np.ndarray]:
    """task/observation (names `<key>.<dim>`) -> {key: array}."""
    out: dict[str, list[float]] = {}
    for name, value in zip(msg.name, msg.position, strict=True):
        out.setdefault(name.rsplit(".", 1)[0], []).append(value)
    return {k: np.array(v) for k, v in out.items()}


def test_expert_through_teleop_targets_solves_push_t(rig):
    """The scripted expert as an operator: task/observation in, teleop_target out, robot node in between."""
    node, obs_node, ex = rig(task="push_t", seed=3, stop_periods=5000)
    observations = listen(obs_node, "sensor_msgs/msg/JointState", "task/observation")
    actions = listen(obs_node, "sensor_msgs/msg/JointState", "task/action")
    status = listen(obs_node, "diagnostic_msgs/msg/DiagnosticStatus", "task/status")
    teleop = obs_node.create_publisher("robot_stack_msgs/msg/TeleopTarget", "teleop_target")
    expert = node.task.expert()
    seen = 0

    def operate() -> bool:
        nonlocal seen
        if len(observations) > seen:
            seen = len(observations)
            obs = _obs_from_msg(observations[-1])
            x, y = expert.act(obs)
            pose = {"position": {"x": float(x), "y": float(y), "z": 0.0}, "orientation": {"w": 1.0}}
            teleop.publish(messages.from_dict("robot_stack_msgs/msg/TeleopTarget",
                                              {"mode": 1, "ee_pose": pose, "engaged": True, "device": "expert"}))
        return node.task.success() or node.sim_time.seconds > 30.0

    assert ex.spin_until(operate, 120.0)
    assert node.task.success(), f"progress {node.task.progress():.3f}"
    assert node.robot_node.health is Health.OK and node.task_io.rejected == 0
    assert actions and list(actions[-1].name) == ["ee_x", "ee_y"]
    names = list(observations[-1].name)
    assert names[:2] == ["agent_pos.x", "agent_pos.y"] and "block_pose.yaw" in names
    assert any(_task_values(m)["success"] == "True" for m in status)   # sent the moment it succeeded


def test_task_action_chunks_are_followed_and_stale_steps_skipped(rig):
    node, obs_node, ex = rig(task="push_t", seed=1, stop_periods=5000)
    ex.spin_until(lambda: node.sim_time.seconds >= 0.5, 5.0)
    start = node.task.ee_pose()[0][:2]
    pub = obs_node.create_publisher("robot_stack_msgs/msg/ActionChunk", "task/action_chunk")
    steps = np.stack([start - [0.01 * k, 0.0] for k in range(1, 11)])
    stamp = Time(node.sim_time.nanoseconds - 250_000_000)   # the first 2-3 steps are already in the past
    pub.publish(messages.from_dict("robot_stack_msgs/msg/ActionChunk", {
        "header": {"stamp": stamp.to_msg()}, "dt": {"sec": 0, "nanosec": 100_000_000}, "names": ["ee_x", "ee_y"],
        "steps": 10, "actions": steps.reshape(-1).tolist()}))
    assert ex.spin_until(lambda: node.sim_time.seconds >= 2.0, 10.0)
    assert node.task.ee_pose()[0][:2] == pytest.approx(start - [0.10, 0.0], abs=0.01)
    assert node.task_io.stale_steps >= 2
    bad = {"names": ["ee_x"], "steps": 1, "actions": [0.5]}
    pub.publish(messages.from_dict("robot_stack_msgs/msg/ActionChunk", bad))
    assert ex.spin_until(lambda: node.task_io.rejected == 1, 5.0)
