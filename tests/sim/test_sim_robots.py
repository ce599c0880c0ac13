"""Simulated arms behind the Robot interface: registry, limits, position/impedance/torque control."""

from __future__ import annotations

import numpy as np
import pytest

import sim  # noqa: F401  (registers sim_panda / sim_iiwa)
from robot_stack.robot import ControlMode, JointCommand, Robot, robot_class
from robot_stack.robot.interface import UnknownRobot
from sim import SimError, SimIiwa, SimPanda, SimPandaConfig, SimWorld, SimWorldConfig


@pytest.fixture
def world():
    with SimWorld() as w:
        yield w


@pytest.fixture
def panda(world):
    robot = robot_class("sim_panda")(world)
    robot.connect()
    yield robot
    robot.disconnect()


def test_registry_and_unknown_kind():
    assert robot_class("sim_panda") is SimPanda and robot_class("sim_iiwa") is SimIiwa
    with pytest.raises(UnknownRobot) as err:
        robot_class("sim_ur5")
    assert "sim_iiwa" in str(err.value) and "sim_panda" in str(err.value)


def test_panda_joints_and_limits(panda):
    assert isinstance(panda, Robot)
    assert panda.joint_names[:7] == [f"panda_joint{i}" for i in range(1, 8)]
    assert panda.joint_names[7:] == ["panda_finger_joint1", "panda_finger_joint2"]
    lim = panda.limits
    assert lim.upper[3] == pytest.approx(0.0) and lim.lower[3] == pytest.approx(-3.1416)
    assert lim.effort[0] == pytest.approx(87.0) and lim.upper[7] == pytest.approx(0.04)


def test_iiwa_loads_with_7_joints(world):
    robot = SimIiwa(world)
    with pytest.raises(SimError, match="connect"):
        _ = robot.joint_names
    robot.connect()
    assert len(robot.joint_names) == 7 and robot.joint_names[0] == "lbr_iiwa_joint_1"
    np.testing.assert_allclose(robot.limits.upper[1], 2.0944, atol=1e-4)
    np.testing.assert_allclose(robot.limits.lower, -robot.limits.upper)
    assert robot.read().position.shape == (7,)


def test_read_stamp_is_sim_time(world, panda):
    world.step(5)
    state = panda.read()
    assert state.stamp_ns == world.time_ns == 5_000_000
    assert state.position.shape == state.velocity.shape == state.effort.shape == (9,)


def test_position_control_reaches_target(world, panda):
    target = np.array([0.3, -0.6, 0.2, -2.2, 0.1, 1.7, 0.5, 0.02, 0.02])
    panda.write(JointCommand(ControlMode.POSITION, position=target))
    world.step(1500)
    np.testing.assert_allclose(panda.read().position, target, atol=2e-3)


def test_100hz_control_on_1khz_physics_tracks_trajectory(world, panda):
    q0 = panda.read().position.copy()
    errors = []
    for k in range(150):                       # 1.5 s of a 0.5 Hz sine on joints 1 and 4
        t = k / 100.0
        target = q0.copy()
        target[0] += 0.3 * np.sin(np.pi * t)
        target[3] += 0.2 * np.sin(np.pi * t)
        panda.write(JointCommand(ControlMode.POSITION, position=target))
        world.step(10)
        errors.append(np.abs(panda.read().position - target).max())
    assert world.steps == 1500
    assert max(errors[20:]) < 0.05


def test_impedance_holds_pose_against_gravity(world, panda):
    q0 = panda.read().position.copy()
    panda.write(JointCommand(ControlMode.IMPEDANCE, position=q0))
    world.step(1000)
    state = panda.read()
    assert np.abs(state.position - q0).max() < 0.01
    assert np.abs(state.effort[1]) > 1.0        # gravity compensation is doing the work


def test_impedance_iiwa_reaches_offset(world):
    robot = SimIiwa(world)
    robot.connect()
    target = robot.read().position + 0.1
    robot.write(JointCommand(ControlMode.IMPEDANCE, position=target))
    world.step(2000)
    assert np.abs(robot.read().position - target).max() < 0.01


def test_zero_torque_lets_arm_fall(world, panda):
    q0 = panda.read().position.copy()
    panda.write(JointCommand(ControlMode.TORQUE, effort=np.zeros(9)))
    world.step(300)
    moved = np.abs(panda.read().position - q0)
    assert moved[:7].max() > 0.1
    assert moved[7:].max() < 1e-3               # the fingers stay position-held


def test_safe_stop_holds_current_position(world, panda):
    panda.write(JointCommand(ControlMode.TORQUE, effort=np.zeros(9)))
    world.step(100)
    panda.safe_stop()
    held = panda.read().position.copy()
    world.step(1000)
    assert panda.command.mode is ControlMode.POSITION
    assert np.abs(panda.read().position - held).max() < 0.05


def test_bad_commands_are_rejected(panda):
    with pytest.raises(SimError, match="9 joints"):
        panda.write(JointCommand(ControlMode.POSITION, position=np.zeros(7)))
    with pytest.raises(SimError, match="effort"):
        panda.write(JointCommand(ControlMode.TORQUE))


def test_two_robots_in_one_world_and_disconnect(world):
    a, b = SimPanda(world), SimIiwa(world, SimIiwa.config_class(base_position=(1.0, 0.0, 0.0)))
    a.connect()
    b.connect()
    world.step(10)
    a.disconnect()
    world.step(10)
    assert b.read().stamp_ns == world.time_ns
    a.safe_stop()                               # no-op once disconnected


def test_240hz_physics(world):
    with SimWorld(SimWorldConfig(physics_hz=240)) as w240:
        robot = SimPanda(w240)
        robot.connect()
        target = robot.read().position + np.r_[np.full(7, 0.1), 0.0, 0.0]
        robot.write(JointCommand(ControlMode.POSITION, position=target))
        w240.step(480)
        np.testing.assert_allclose(robot.read().position, target, atol=5e-3)


def test_arm_only_panda_and_bad_config(world):
    arm = tuple(f"panda_joint{i}" for i in range(1, 8))
    cfg = SimPandaConfig(
        controlled_joints=arm, gripper_joints=(), initial_positions=SimPandaConfig.initial_positions[:7],
        stiffness=SimPandaConfig.stiffness[:7], damping=SimPandaConfig.damping[:7],
    )
    robot = SimPanda(world, cfg)
    robot.connect()
    assert robot.joint_names == list(arm)
    robot.write(JointCommand(ControlMode.IMPEDANCE, position=robot.read().position))
    world.step(200)
    assert np.abs(robot.read().velocity).max() < 0.05
    bad = SimPanda(world, SimPandaConfig(controlled_joints=("panda_joint8",)))
    with pytest.raises(SimError, match="not movable"):
        bad.connect()
    assert bad.body_id is None
    with pytest.raises(SimError, match="initial_positions"):
        SimPanda(world, SimPandaConfig(initial_positions=(0.0,))).connect()
