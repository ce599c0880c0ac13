import math

import numpy as np
import pytest

import robot_stack as rs
from robot_stack import convert, messages
from robot_stack.clock import NS, Time, duration_msg
from robot_stack.errors import ParameterError
from robot_stack.robot.interpolation import ChunkEnsemble
from robot_stack.robot.kinematic import KinematicArm
from robot_stack.robot.node import RobotNode

HALF = math.log(2.0)   # decay with exp(-decay) = 0.5: the second chunk weighs half the first


def pts(*values):
    return [np.array([v], dtype=np.float64) for v in values]


def test_first_chunk_passes_through_unchanged():
    ens = ChunkEnsemble(HALF)
    out = ens.add(50, [100, 200, 300], pts(0.0, 1.0, 2.0))
    assert np.allclose(np.concatenate(out), [0.0, 1.0, 2.0]) and len(ens) == 1


def test_overlap_weighted_oldest_first_by_hand():
    ens = ChunkEnsemble(HALF)
    ens.add(50, [100, 200, 300], pts(0.0, 1.0, 2.0))
    out = np.concatenate(ens.add(150, [200, 300, 400], pts(10.0, 10.0, 10.0)))
    # 200: (1*1 + 0.5*10) / 1.5 = 4;  300: (1*2 + 0.5*10) / 1.5 = 14/3;  400: only the new chunk
    assert np.allclose(out, [4.0, 14.0 / 3.0, 10.0])


def test_older_chunk_sampled_between_its_steps_and_only_inside_its_span():
    ens = ChunkEnsemble(HALF)
    ens.add(50, [100, 200, 300], pts(0.0, 1.0, 2.0))
    out = np.concatenate(ens.add(150, [250, 350], pts(10.0, 10.0)))
    assert np.allclose(out, [(1.5 + 5.0) / 1.5, 10.0])     # A(250) = 1.5; 350 is past A's end


def test_three_chunks_and_expiry():
    ens = ChunkEnsemble(HALF)
    ens.add(0, [100, 200, 300], pts(0.0, 0.0, 0.0))
    ens.add(0, [200, 300, 400], pts(1.0, 1.0, 1.0))
    out = np.concatenate(ens.add(0, [300, 400], pts(2.0, 2.0)))
    # 300: weights 1, 0.5, 0.25 -> (0 + 0.5 + 0.5) / 1.75;  400: the 2nd and 3rd chunks -> (1 + 1) / 1.5
    assert np.allclose(out, [1.0 / 1.75, 2.0 / 1.5])
    out = np.concatenate(ens.add(350, [400], pts(5.0)))       # the first chunk ended at 300: forgotten
    # 400 covered by chunks 2, 3 and 4: (1*1 + 0.5*2 + 0.25*5) / 1.75
    assert np.allclose(out, [(1.0 + 1.0 + 1.25) / 1.75]) and len(ens) == 3


def test_zero_decay_is_a_plain_mean_and_max_chunks_bounds_memory():
    ens = ChunkEnsemble(0.0, max_chunks=2)
    ens.add(0, [100], pts(0.0))
    ens.add(0, [100], pts(3.0))
    assert np.allclose(np.concatenate(ens.add(0, [100], pts(6.0))), [4.5])   # the first one was dropped
    assert len(ens) == 2
    with pytest.raises(ValueError, match="decay"):
        ChunkEnsemble(-0.1)


# --- in the robot node ----------------------------------------------------------------------------
def chunk(start_ns, values, dt=0.1):
    values = np.asarray(values, dtype=np.float64)
    return messages.make("robot_stack_msgs/msg/ActionChunk", header=convert.header(Time(start_ns)),
                         dt=duration_msg(dt), names=["joint1"], steps=len(values), actions=values)


def run_two_chunks(ctx, **params):
    """Sim time: chunk A (due 10.1, 10.2, 10.3 s) at 10.0 s, chunk B (10.2, 10.3, 10.4 s) at 10.15 s;
    returns joint1's commanded setpoint (minus its start) at 10.2, 10.3 and 10.4 s."""
    arm = KinematicArm()
    node = RobotNode(arm, context=ctx, publish_stats=False, parameter_overrides={
        "use_sim_time": True, "control_rate_hz": 100.0, "watchdog_periods": 1000, "stop_periods": 2000, **params})
    cmd = rs.Node("commander", context=ctx, publish_stats=False)
    pub = cmd.create_publisher("robot_stack_msgs/msg/ActionChunk", "action_chunk")
    ex = rs.Executor()
    for n in (node, cmd):
        ex.add_node(n)
    t0 = 10 * NS
    try:
        ctx.clock.set_sim_time(Time(t0))
        node.start()
        x0 = float(node.state.position[0])
        pub.publish(chunk(t0 + NS // 10, x0 + np.array([0.0, 1.0, 2.0]) / 10))
        ex.spin_until(lambda: node._trajectory.end_ns is not None, 2.0)
        ctx.clock.set_sim_time(Time(t0 + 150_000_000))
        pub.publish(chunk(t0 + 2 * NS // 10, x0 + np.array([1.0, 1.0, 1.0])))
        ex.spin_until(lambda: node._trajectory.end_ns == t0 + 4 * NS // 10, 2.0)
        out = []
        for k in (2, 3, 4):
            ctx.clock.set_sim_time(Time(t0 + k * NS // 10))
            n = len(arm.written)
            ex.spin_until(lambda n=n: len(arm.written) > n, 2.0)
            out.append(arm.written[-1][1][0] - x0)
        return np.array(out)
    finally:
        node.destroy_node()
        cmd.destroy_node()


def test_robot_node_ensembles_overlapping_chunks_when_asked(ctx):
    got = run_two_chunks(ctx, ensemble=True, ensemble_decay=HALF)
    assert np.allclose(got, [(0.1 + 0.5) / 1.5, (0.2 + 0.5) / 1.5, 1.0], atol=1e-9)


def test_robot_node_without_ensembling_follows_the_newest_chunk(ctx):
    assert np.allclose(run_two_chunks(ctx), [1.0, 1.0, 1.0], atol=1e-9)


def test_negative_decay_is_rejected(ctx):
    with pytest.raises(ParameterError, match="ensemble_decay"):
        RobotNode(KinematicArm(), context=ctx, publish_stats=False, parameter_overrides={"ensemble_decay": -1.0})
