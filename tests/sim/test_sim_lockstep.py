"""SimNode lockstep (`sync_period_s`): in fast mode the sim waits at each sync boundary for the answer
to the newest task observation, polls while waiting (subscriptions keep being serviced) and goes on
after `sync_timeout_s` of wall time, counting `sync_timeouts`."""

from __future__ import annotations

import time

import numpy as np
import pytest

import robot_stack as rs
from policies.server import action_chunk_msg
from robot_stack import messages
from robot_stack.clock import NS, Clock, Time
from robot_stack.errors import ParameterError
from sim.node import SimNode

PERIOD_NS = NS // 10      # push_t's control period; also the sync period below


class SlowResponder(rs.Node):
    """Answers every task observation with a one-step chunk after `delay_s` of wall time."""

    def __init__(self, ctx, delay_s: float):
        super().__init__("responder", context=ctx, publish_stats=False)
        self.delay_s, self.pending, self.answered, self.seen = delay_s, [], [], []
        self.pub = self.create_publisher("robot_stack_msgs/msg/ActionChunk", "task/action_chunk", 10)
        self.create_subscription("sensor_msgs/msg/JointState", "task/observation", self._on_obs, 100)
        timer = self.create_timer(0.002, self._answer, name="answer")
        timer.clock = Clock()                 # wall time: the process clock follows the (waiting) sim

    def _on_obs(self, msg) -> None:
        stamp = Time.from_msg(msg.header.stamp).nanoseconds
        self.seen.append(stamp)
        self.pending.append((time.perf_counter() + self.delay_s, stamp))

    def _answer(self) -> None:
        while self.pending and self.pending[0][0] <= time.perf_counter():
            _, stamp = self.pending.pop(0)
            self.pub.publish(action_chunk_msg(np.array([[0.55, 0.0]]), ["ee_x", "ee_y"], stamp, 0.1, stamp, "slow"))
            self.answered.append(stamp)


@pytest.fixture
def sim_and(ctx):
    made = []

    def make(delay_s=None, **params):
        params = {"realtime": False, "cameras": [], "task": "push_t", "stop_periods": 5000, **params}
        node = SimNode(node_name="sim", context=ctx, parameter_overrides=params, publish_stats=False)
        made.append(node)
        ex = rs.Executor()
        ex.add_node(node)
        responder = None
        if delay_s is not None:
            responder = SlowResponder(ctx, delay_s)
            made.append(responder)
            ex.add_node(responder)
        return node, responder, ex

    yield make
    for n in reversed(made):
        n.destroy_node()


def test_sim_waits_for_a_slow_responder_at_every_boundary(sim_and):
    node, responder, ex = sim_and(delay_s=0.03, sync_period_s=0.1, sync_timeout_s=5.0)
    t0 = time.perf_counter()
    assert ex.spin_until(lambda: len(responder.answered) >= 15, 20.0)
    wall = time.perf_counter() - t0
    assert node.sync_timeouts == 0 and node.sync_waits >= 14
    assert wall >= 14 * 0.03                               # it really waited for each answer
    # never more than one sync period past the newest answered observation
    assert node.world.time_ns <= max(responder.answered) + PERIOD_NS
    assert node.task_io.applied >= 15 and node.task_io.rejected == 0
    seen = np.array(responder.seen)
    assert np.all(np.diff(seen) == PERIOD_NS)              # every observation, none skipped


def test_a_late_responder_gets_the_waiting_observation_again(sim_and, ctx):
    """A policy that subscribes after the sim published the observation it waits on (a server still
    loading its checkpoint) gets it re-sent within RESEND_S, and answers: no timeout."""
    node, _, ex = sim_and(sync_period_s=0.1, sync_timeout_s=4.0)
    assert ex.spin_until(lambda: node.lockstep.holding, 10.0)
    waiting_on = node.task_io.last_obs_ns
    late = SlowResponder(ctx, 0.0)
    ex.add_node(late)
    assert ex.spin_until(lambda: len(late.answered) >= 3, 10.0)
    assert late.seen[0] == waiting_on and node.sync_timeouts == 0         # the re-send, not the timeout
    late.destroy_node()


def test_without_answers_the_sim_times_out_and_counts(sim_and):
    node, _, ex = sim_and(sync_period_s=0.1, sync_timeout_s=0.05)
    t0 = time.perf_counter()
    assert ex.spin_until(lambda: node.sim_time.seconds >= 0.45, 10.0)
    assert time.perf_counter() - t0 >= 3 * 0.05
    assert node.sync_timeouts >= 3


def test_lockstep_off_runs_free(sim_and):
    node, _, ex = sim_and()
    assert ex.spin_until(lambda: node.sim_time.seconds >= 1.0, 10.0)
    assert node.sync_timeouts == 0 and node.sync_waits == 0


@pytest.mark.parametrize("params, match", [({"sync_period_s": -1.0}, "sync_period_s"),
                                           ({"sync_period_s": 0.1, "realtime": True}, "realtime: false"),
                                           ({"sync_period_s": 0.1, "task": ""}, "needs a task")])
def test_bad_lockstep_parameters_are_named(ctx, params, match):
    params = {"realtime": False, "cameras": [], "task": "push_t", **params}
    with pytest.raises(ParameterError, match=match):
        SimNode(node_name="sim", context=ctx, parameter_overrides=params, publish_stats=False)


def test_reset_in_lockstep_waits_for_the_next_task_tick(sim_and, ctx):
    node, responder, ex = sim_and(delay_s=0.0, sync_period_s=0.1)
    status = []
    responder.create_subscription("diagnostic_msgs/msg/DiagnosticStatus", "task/status", status.append, 100)
    events = responder.create_publisher("robot_stack_msgs/msg/EpisodeEvent", "episode_events", 10)
    assert ex.spin_until(lambda: len(responder.answered) >= 5, 10.0)
    events.publish(messages.make("robot_stack_msgs/msg/EpisodeEvent", event=5, episode_id="11"))
    assert ex.spin_until(lambda: node.task.seed == 11 and len(responder.answered) >= 10, 10.0)
    values = {kv.key: kv.value for kv in status[-1].values} if status else {}
    resets = [int(kv.value) for m in status for kv in m.values if kv.key == "reset_ns"]
    start = resets[-1]
    assert start % PERIOD_NS == 0 and start in responder.seen       # an observation on the grid opens the episode
    assert values.get("seed") == "11" and node.sync_timeouts == 0
