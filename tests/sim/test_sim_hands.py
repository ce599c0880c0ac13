"""The 16-DoF hand: its URDF, `sim_leap_hand` on a fixed base and `sim_iiwa_leap` on the iiwa's flange."""

from __future__ import annotations

import numpy as np
import pytest

import sim  # noqa: F401  (registers the simulated robots)
from robot_stack.robot import ControlMode, JointCommand, robot_class
from sim import SimError, SimIiwaLeap, SimLeapHand, SimWorld, SimWorldConfig, WristFT
from sim.camera import WRIST_LINKS
from sim.hands import HAND_JOINTS, HAND_URDF, IIWA_JOINTS, TIP_LINKS, hand_limits, iiwa_leap_urdf

CURL = np.tile([0.3, 1.2, 0.9, 0.7], 4)          # (16,) a grasp-like posture inside every joint's range


def hand_target(robot) -> np.ndarray:
    """(n,) the current command with the hand joints curled."""
    q = robot.command.position.copy()
    q[-16:] = CURL
    return q


@pytest.fixture(params=[240, 1000], ids=["240Hz", "1000Hz"])
def world(request):
    with SimWorld(SimWorldConfig(physics_hz=request.param)) as w:
        yield w


def test_registry_and_wrist_camera_links():
    assert robot_class("sim_leap_hand") is SimLeapHand and robot_class("sim_iiwa_leap") is SimIiwaLeap
    assert WRIST_LINKS["sim_leap_hand"] == WRIST_LINKS["sim_iiwa_leap"] == "palm"


def test_urdf_has_16_revolute_joints_with_leap_like_limits():
    assert HAND_URDF.exists()
    lower, upper = hand_limits()
    assert lower.shape == upper.shape == (16,) and np.all(lower < upper)
    side = [HAND_JOINTS.index(f"{d}_mcp_side") for d in ("index", "middle", "ring")]
    np.testing.assert_allclose(lower[side], -1.047)
    np.testing.assert_allclose(upper[side], 1.047)
    assert upper[HAND_JOINTS.index("index_mcp")] == pytest.approx(2.23)


def test_hand_loads_with_16_joints_tips_and_mass(world):
    hand = SimLeapHand(world)
    with pytest.raises(SimError, match="connect"):
        _ = hand.joint_names
    hand.connect()
    assert hand.joint_names == list(HAND_JOINTS)
    lim = hand.limits
    np.testing.assert_allclose(lim.effort, 0.95)
    np.testing.assert_allclose(lim.velocity, 8.0)
    np.testing.assert_allclose(np.stack([lim.lower, lim.upper]), np.stack(hand_limits()))
    c = world.client
    for name in (*TIP_LINKS, "grasp_site"):
        assert hand.link_index(name) >= 0
    links = sum(c.getDynamicsInfo(hand.body_id, j)[0] for j in range(c.getNumJoints(hand.body_id)))
    assert 0.55 < links + 0.16 < 0.75                                 # the fixed base reports mass 0
    palm_z = c.getBasePositionAndOrientation(hand.body_id)[0][2]
    for tip in TIP_LINKS:                                             # palm down: the pads are below the mount
        assert c.getLinkState(hand.body_id, hand.link_index(tip))[4][2] < palm_z


def test_hand_tracks_position_commands_and_respects_limits(world):
    hand = SimLeapHand(world, SimLeapHand.config_class(visual_meshes="collision"))
    hand.connect()
    hand.write(JointCommand(ControlMode.POSITION, position=CURL))
    world.step(world.steps_for(1.0))
    np.testing.assert_allclose(hand.read().position, CURL, atol=5e-3)
    lim = hand.limits
    hand.write(JointCommand(ControlMode.POSITION, position=lim.upper + 0.5))   # beyond the limits
    world.step(world.steps_for(1.0))
    q = hand.read().position
    assert np.all(q <= lim.upper + 0.02) and np.all(q >= lim.lower - 0.02)
    hand.safe_stop()
    held = hand.read().position
    world.step(world.steps_for(0.5))
    np.testing.assert_allclose(hand.read().position, held, atol=5e-3)


def test_hand_fingers_curl_toward_the_palm_normal(world):
    hand = SimLeapHand(world)
    hand.connect()
    c = world.client
    tip = hand.link_index("index_tip")
    before = np.array(c.getLinkState(hand.body_id, tip, computeForwardKinematics=True)[4])
    q = np.zeros(16)
    q[HAND_JOINTS.index("index_mcp")] = 1.5
    hand.teleport(q)
    after = np.array(c.getLinkState(hand.body_id, tip, computeForwardKinematics=True)[4])
    assert after[2] < before[2] - 0.05                               # palm down: the finger swings down


def test_iiwa_leap_has_23_joints_and_a_working_wrist_ft(world):
    robot = robot_class("sim_iiwa_leap")(world, SimIiwaLeap.config_class(visual_meshes="collision"))
    robot.connect()
    assert robot.joint_names == list(IIWA_JOINTS + HAND_JOINTS)
    assert robot.config.ft_joint == "leap_mount" and robot.joint_index("leap_mount") >= 0
    for name in TIP_LINKS:
        robot.link_index(name)
    ft = WristFT(world, robot)
    ft.connect()
    world.step(world.steps_for(0.5))
    fz = ft.read()[2]
    assert fz == pytest.approx(0.645 * 9.81, rel=0.1)                 # the hand hangs from the flange
    assert robot.read().position.shape == (23,)


@pytest.mark.parametrize("mode", [ControlMode.POSITION, ControlMode.IMPEDANCE])
def test_iiwa_leap_tracks_commands_in_both_modes(world, mode):
    robot = SimIiwaLeap(world)
    robot.connect()
    target = hand_target(robot)
    target[:7] += np.array([0.1, -0.1, 0.1, 0.1, 0.0, -0.1, 0.3])
    robot.write(JointCommand(mode, position=target))
    world.step(world.steps_for(1.5))
    q = robot.read().position
    np.testing.assert_allclose(q[7:], target[7:], atol=1e-2)          # hand: position motors
    np.testing.assert_allclose(q[:7], target[:7], atol=2e-2)
    robot.safe_stop()
    world.step(world.steps_for(0.3))
    assert np.all(np.isfinite(robot.read().velocity)) and np.abs(robot.read().velocity).max() < 0.05


def test_merged_urdf_is_cached_and_validated():
    path = iiwa_leap_urdf("collision")
    assert path == iiwa_leap_urdf("collision") and path != iiwa_leap_urdf("full")
    text = open(path).read()
    assert 'name="leap_mount"' in text and "link_7.stl" in text and ".obj" not in text
    with pytest.raises(SimError, match="visual_meshes"):
        iiwa_leap_urdf("pretty")


def test_fingertip_pads_feel_the_grasp():
    from sim import pads_for
    from sim.tasks.hand_grasp_lift import HandGraspLift

    task = HandGraspLift()
    try:
        obs = task.reset(0)
        pads = pads_for(task.robot)
        assert [p.sensor_id for p in pads] == ["index_tip", "middle_tip", "ring_tip", "thumb_tip"]
        for pad in pads:
            pad.connect()
        assert all(p.normal_force() == 0.0 for p in pads)
        peak = dict.fromkeys((p.sensor_id for p in pads), 0.0)
        expert = task.expert()
        while not task.done():
            obs = task.step(expert.act(obs))
            for pad in pads:
                peak[pad.sensor_id] = max(peak[pad.sensor_id], pad.normal_force())
        assert task.success()
        assert peak["thumb_tip"] > 2.0 and sum(v > 0.5 for v in peak.values()) >= 3
        frame = pads[3].frame_msg()
        assert (frame.rows, frame.cols) == (7, 9) and frame.header.frame_id == "thumb_tip"
    finally:
        task.close()
