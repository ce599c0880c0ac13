"""The scripted operator drives a SimNode over topics only: RESET/START/.../STOP events, teleop targets
stamped with the observation they answer (what the lockstep sim waits for), episodes solved."""

from __future__ import annotations

import robot_stack as rs
from sim.node import SimNode
from sim.operator import DISCARD, FAILURE, RESET, START, STOP, SUCCESS, ScriptedOperator, observation_dict


def _rig(ctx, episodes):
    """A lockstep push_t sim, the scripted operator (`episodes` from seed 3) and an observer, on one executor."""
    sim = SimNode(node_name="sim", context=ctx, publish_stats=False, parameter_overrides={
        "task": "push_t", "realtime": False, "cameras": [], "sync_period_s": 0.1, "sync_timeout_s": 5.0,
        "seed": 2**31 - 1, "stop_periods": 5000, "task_status_hz": 10.0})
    operator = ScriptedOperator("operator", context=ctx, publish_stats=False,
                                parameter_overrides={"episodes": episodes, "seed0": 3, "max_steps": 200})
    observer = rs.Node("observer", context=ctx, publish_stats=False)
    ex = rs.Executor()
    for n in (sim, operator, observer):
        ex.add_node(n)
    return sim, operator, observer, ex


def test_operator_records_episodes_through_teleop_targets(ctx):
    sim, operator, observer, ex = _rig(ctx, episodes=2)
    events, targets = [], []
    observer.create_subscription("robot_stack_msgs/msg/EpisodeEvent", "episode_events", events.append, 1000)
    observer.create_subscription("robot_stack_msgs/msg/TeleopTarget", "teleop_target", targets.append, 10_000)
    try:
        assert ex.spin_until(lambda: operator.finished, 240.0)
    finally:
        for n in (observer, operator, sim):
            n.destroy_node()
    kinds = [e.event for e in events if e.event != RESET]
    assert kinds == [START, SUCCESS, STOP, START, SUCCESS, STOP] or FAILURE in kinds, kinds
    assert [e.episode_id for e in events if e.event == START] == ["3", "4"]
    assert operator.successes == kinds.count(SUCCESS) and operator.successes >= 1
    assert targets and all(t.engaged and t.mode == 1 for t in targets)
    assert sim.sync_timeouts == 0          # every observation was answered: the sim never waited out


def test_observation_dict_groups_dims_by_key():
    class Msg:
        name = ["agent_pos.x", "agent_pos.y", "block_pose.yaw"]
        position = [0.1, 0.2, 0.3]

    obs = observation_dict(Msg())
    assert obs["agent_pos"].tolist() == [0.1, 0.2] and obs["block_pose"].tolist() == [0.3]


def test_a_second_reset_of_the_same_episode_restarts_its_recording(ctx):
    sim, operator, observer, ex = _rig(ctx, episodes=1)
    events = []
    observer.create_subscription("robot_stack_msgs/msg/EpisodeEvent", "episode_events", events.append, 1000)
    reset = observer.create_publisher("robot_stack_msgs/msg/EpisodeEvent", "episode_events", 10)
    try:
        assert ex.spin_until(lambda: operator.state == "recording" and sim.task.elapsed_steps >= 5, 60.0)
        reset.publish(rs.messages.make("robot_stack_msgs/msg/EpisodeEvent", event=RESET, episode_id="3"))
        assert ex.spin_until(lambda: operator.finished, 120.0)
    finally:
        for n in (observer, operator, sim):
            n.destroy_node()
    kinds = [e.event for e in events if e.event != RESET]
    assert kinds[:3] == [START, DISCARD, START] and kinds[-1] == STOP, kinds
