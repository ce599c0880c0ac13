"""IK for real arms: URDF chain FK vs pybullet's, Jacobian vs finite differences, DLS IK, and the
IKNode in-process (seed from joint_states, engaged-only, NaN rejected, no command before a seed)."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

import robot_stack as rs
from robot_stack import convert, messages
from teleop.errors import TeleopError
from teleop.ik import (
    IKNode,
    KinematicChain,
    UnknownLinkError,
    URDFError,
    axis_angle_matrix,
    quat_matrix,
    rotation_error,
    solve_ik,
)

pybullet = pytest.importorskip("pybullet")
pybullet_data = pytest.importorskip("pybullet_data")
PANDA = os.path.join(pybullet_data.getDataPath(), "franka_panda/panda.urdf")
HOME = np.array([0.0, -0.3, 0.0, -2.2, 0.0, 2.0, 0.8])


@pytest.fixture(scope="module")
def chain():
    return KinematicChain.from_urdf(PANDA, "panda_link0", "panda_hand")


def _random_q(chain, rng):
    lo, hi = chain.lower, chain.upper
    return lo + (hi - lo) * (0.1 + 0.8 * rng.random(lo.size))


def _quat_xyzw(rot):
    """3x3 rotation -> (x, y, z, w) quaternion."""
    w = math.sqrt(max(0.0, 1.0 + np.trace(rot))) / 2.0
    if w > 1e-3:
        return np.array([(rot[2, 1] - rot[1, 2]) / (4 * w), (rot[0, 2] - rot[2, 0]) / (4 * w),
                         (rot[1, 0] - rot[0, 1]) / (4 * w), w])
    i = int(np.argmax(np.diag(rot)))
    j, k = (i + 1) % 3, (i + 2) % 3
    s = math.sqrt(max(0.0, 1.0 + rot[i, i] - rot[j, j] - rot[k, k])) * 2
    q = np.zeros(4)
    q[i], q[j], q[k] = s / 4, (rot[j, i] + rot[i, j]) / s, (rot[k, i] + rot[i, k]) / s
    q[3] = (rot[k, j] - rot[j, k]) / s
    return q


def test_chain_reads_the_panda(chain):
    assert chain.names == [f"panda_joint{i}" for i in range(1, 8)]
    assert chain.lower[3] == pytest.approx(-3.1416) and chain.upper[5] == pytest.approx(3.8223)
    assert len(chain.joints) == 9                                  # 7 revolute + 2 fixed


@pytest.mark.parametrize("tip", ["panda_link8", "panda_hand"])
def test_fk_matches_pybullet(tip):
    chain = KinematicChain.from_urdf(PANDA, "panda_link0", tip)
    client = pybullet.connect(pybullet.DIRECT)
    try:
        body = pybullet.loadURDF(PANDA, useFixedBase=True, physicsClientId=client)
        infos = [pybullet.getJointInfo(body, i, physicsClientId=client)
                 for i in range(pybullet.getNumJoints(body, physicsClientId=client))]
        index = {info[1].decode(): info[0] for info in infos}
        link = next(info[0] for info in infos if info[12].decode() == tip)
        rng = np.random.default_rng(0)
        for _ in range(5):
            q = _random_q(chain, rng)
            for name, value in zip(chain.names, q, strict=True):
                pybullet.resetJointState(body, index[name], value, physicsClientId=client)
            state = pybullet.getLinkState(body, link, computeForwardKinematics=True, physicsClientId=client)
            pos, orn = np.array(state[4]), np.array(state[5])
            t = chain.fk(q)
            assert np.allclose(t[:3, 3], pos, atol=1e-6)
            assert np.allclose(t[:3, :3], quat_matrix(orn), atol=1e-6)
    finally:
        pybullet.disconnect(client)


def test_jacobian_matches_finite_differences(chain):
    rng = np.random.default_rng(1)
    eps = 1e-6
    for _ in range(3):
        q = _random_q(chain, rng)
        jac, t0 = chain.jacobian(q), chain.fk(q)
        num = np.zeros_like(jac)
        for i in range(q.size):
            dq = np.zeros_like(q)
            dq[i] = eps
            t1 = chain.fk(q + dq)
            num[:3, i] = (t1[:3, 3] - t0[:3, 3]) / eps
            num[3:, i] = rotation_error(t1[:3, :3], t0[:3, :3]) / eps
        assert np.allclose(jac, num, atol=1e-5)


def test_ik_reaches_random_reachable_targets(chain):
    rng = np.random.default_rng(2)
    for _ in range(10):
        q_goal = _random_q(chain, rng)
        t = chain.fk(q_goal)
        seed = chain.clamp(q_goal + rng.uniform(-0.3, 0.3, q_goal.size))
        q, ok, residual = solve_ik(chain, t[:3, 3], _quat_xyzw(t[:3, :3]), seed)
        reached = chain.fk(q)
        assert ok and residual < 1e-3 + 1e-2
        assert np.linalg.norm(reached[:3, 3] - t[:3, 3]) < 1e-3
        assert np.linalg.norm(rotation_error(t[:3, :3], reached[:3, :3])) < 1e-2
        assert np.all(q >= chain.lower - 1e-12) and np.all(q <= chain.upper + 1e-12)


def test_ik_position_only_and_unreachable(chain):
    target = chain.fk(HOME)[:3, 3] + [0.05, -0.05, 0.05]
    q, ok, _ = solve_ik(chain, target, None, HOME)
    assert ok and np.linalg.norm(chain.fk(q)[:3, 3] - target) < 1e-3
    q, ok, residual = solve_ik(chain, [2.0, 0.0, 0.5], [0, 0, 0, 1], HOME)
    assert not ok and residual > 0.5
    assert np.all(q >= chain.lower - 1e-12) and np.all(q <= chain.upper + 1e-12)


def test_rotation_error_near_pi():
    rz = np.diag([-1.0, -1.0, 1.0])                                  # 180 deg about z
    assert np.allclose(np.abs(rotation_error(rz, np.eye(3))), [0, 0, math.pi], atol=1e-6)
    axis = np.array([0.6, -0.64, 0.48])
    for angle in (math.pi - 1e-3, math.pi - 1.5e-6, 1e-7, 1.0):      # atan2: accurate near 0 and pi
        assert np.allclose(rotation_error(axis_angle_matrix(axis, angle), np.eye(3)), axis * angle, atol=1e-8)


def test_bad_urdf_and_unknown_links_say_what(tmp_path):
    with pytest.raises(URDFError, match="cannot read URDF"):
        KinematicChain.from_urdf(tmp_path / "missing.urdf", "a", "b")
    bad = tmp_path / "bad.urdf"
    bad.write_text("<robot><link name='a'>")
    with pytest.raises(URDFError, match="not valid XML"):
        KinematicChain.from_urdf(bad, "a", "b")
    with pytest.raises(UnknownLinkError, match="tip_link 'panda_nose' is not a link"):
        KinematicChain.from_urdf(PANDA, "panda_link0", "panda_nose")
    with pytest.raises(UnknownLinkError, match="not below base_link"):
        KinematicChain.from_urdf(PANDA, "panda_hand", "panda_link3")
    assert issubclass(URDFError, TeleopError)


# --- the node -----------------------------------------------------------------------------
@pytest.fixture
def rig(ctx):
    node = IKNode("ik", context=ctx, publish_stats=False, parameter_overrides={
        "urdf": PANDA, "base_link": "panda_link0", "tip_link": "panda_hand"})
    obs = rs.Node("obs", context=ctx, publish_stats=False)
    commands = []
    obs.create_subscription("sensor_msgs/msg/JointState", "joint_commands", commands.append, 100)
    ex = rs.Executor()
    for n in (node, obs):
        ex.add_node(n)
    try:
        yield node, obs, ex, commands
    finally:
        for n in (obs, node):
            n.destroy_node()


def _target(pos, quat, *, engaged=True, mode=1, sec=7):
    stamp = messages.make("builtin_interfaces/msg/Time", sec=sec, nanosec=5)
    pose = {"position": dict(zip("xyz", map(float, pos), strict=True)),
            "orientation": dict(zip("xyzw", map(float, quat), strict=True))}
    return messages.make("robot_stack_msgs/msg/TeleopTarget", header=convert.header(stamp), mode=mode,
                         joint_names=[], joint_positions=np.zeros(0), ee_pose=pose, gripper=math.nan,
                         engaged=engaged, device="test")


def test_node_commands_the_pose_from_the_seed(rig, chain):
    node, obs, ex, commands = rig
    targets = obs.create_publisher("robot_stack_msgs/msg/TeleopTarget", "teleop_target")
    states = obs.create_publisher("sensor_msgs/msg/JointState", "joint_states")
    goal_q = HOME + [0.1, 0.1, -0.1, 0.1, 0.1, -0.1, 0.1]
    t = chain.fk(goal_q)
    targets.publish(_target(t[:3, 3], _quat_xyzw(t[:3, :3])))
    ex.spin_for(0.05)
    assert commands == []                                           # no seed yet: never jump
    states.publish(convert.joint_state(chain.names, HOME))
    ex.spin_for(0.05)
    targets.publish(_target(t[:3, 3], _quat_xyzw(t[:3, :3])))
    assert ex.spin_until(lambda: len(commands) == 1, 2.0)
    cmd = commands[0]
    assert list(cmd.name) == chain.names and cmd.header.stamp.sec == 7 and cmd.header.stamp.nanosec == 5
    reached = chain.fk(np.asarray(cmd.position))
    assert np.linalg.norm(reached[:3, 3] - t[:3, 3]) < 1e-3
    assert node.solved == 1

    # disengaged: nothing; NaN pose: rejected; unreachable: counted, last good command held
    targets.publish(_target(t[:3, 3], [0, 0, 0, 1], engaged=False))
    targets.publish(_target([math.nan, 0.0, 0.3], [0, 0, 0, 1]))
    targets.publish(_target([0.3, 0.0, math.inf], [0, 0, 0, 1]))
    ex.spin_for(0.1)
    assert len(commands) == 1 and node.rejected == 2
    targets.publish(_target([2.0, 0.0, 0.5], [0, 0, 0, 1]))
    assert ex.spin_until(lambda: len(commands) == 2, 2.0)
    assert node.unreachable == 1 and np.allclose(commands[1].position, cmd.position)


def test_node_ignores_joint_targets_and_reports_status(rig, chain):
    node, obs, ex, commands = rig
    status = []
    obs.create_subscription("diagnostic_msgs/msg/DiagnosticStatus", "/ik/status", status.append, 10)
    obs.create_publisher("sensor_msgs/msg/JointState", "joint_states").publish(
        convert.joint_state(chain.names, HOME))
    obs.create_publisher("robot_stack_msgs/msg/TeleopTarget", "teleop_target").publish(
        _target([0.4, 0.0, 0.4], [1, 0, 0, 0], mode=0))
    ex.spin_for(0.05)
    node.publish_status()
    ex.spin_for(0.05)
    assert commands == [] and node.ignored == 1
    values = {kv.key: kv.value for kv in status[-1].values}
    assert values["solved"] == "0" and values["rejected"] == "0" and values["has_state"] == "True"


def test_node_rate_limits_the_step(ctx, chain):
    node = IKNode("ik2", context=ctx, publish_stats=False, parameter_overrides={
        "urdf": PANDA, "base_link": "panda_link0", "tip_link": "panda_hand", "max_joint_step": 0.02})
    try:
        node.state = HOME.copy()
        t = chain.fk(HOME + 0.2)
        assert node.solve(None, t[:3, 3], _quat_xyzw(t[:3, :3]))
        assert np.max(np.abs(node.last_command - HOME)) <= 0.02 + 1e-12
    finally:
        node.destroy_node()


def test_node_bad_parameters_say_what(ctx, tmp_path):
    with pytest.raises(UnknownLinkError, match="panda_tip"):
        IKNode("ik3", context=ctx, publish_stats=False, parameter_overrides={
            "urdf": PANDA, "base_link": "panda_link0", "tip_link": "panda_tip"})
    with pytest.raises(URDFError, match="cannot read URDF"):
        IKNode("ik4", context=ctx, publish_stats=False, parameter_overrides={
            "urdf": str(tmp_path / "nope.urdf"), "base_link": "a", "tip_link": "b"})
    with pytest.raises(rs.errors.ParameterError, match="joint_names"):
        IKNode("ik5", context=ctx, publish_stats=False, parameter_overrides={
            "urdf": PANDA, "base_link": "panda_link0", "tip_link": "panda_hand", "joint_names": ["a"]})
