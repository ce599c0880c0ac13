"""Wrist F/T: gravity load direction, low-pass filtering of a step, tare, WrenchStamped."""

from __future__ import annotations

import numpy as np
import pytest

from robot_stack import convert
from robot_stack.clock import Time
from sim import SimError, SimIiwa, SimPanda, SimWorld, WristFT, WristFTConfig


@pytest.fixture
def rig():
    with SimWorld() as world:
        robot = SimPanda(world)
        robot.connect()
        ft = WristFT(world, robot, WristFTConfig(cutoff_hz=10.0))
        ft.connect()
        world.step(300)
        yield world, robot, ft


def _hang_mass(world, robot, mass: float) -> int:
    """A box rigidly fixed 12 cm along the hand's z axis, spawned already in place (no snap transient)."""
    c = world.client
    hand = robot.link_index("panda_hand")
    state = c.getLinkState(robot.body_id, hand)
    pos, quat = np.array(state[0]), state[1]          # constraint frames are relative to the COM frame
    offset = np.array(c.getMatrixFromQuaternion(quat)).reshape(3, 3) @ [0.0, 0.0, 0.12]
    box = world.add_box([0.02] * 3, pos + offset, mass=mass, orientation=quat)
    c.createConstraint(robot.body_id, hand, box, -1, c.JOINT_FIXED, [0, 0, 0], [0, 0, 0.12], [0, 0, 0])
    return box


def test_hand_weight_pulls_along_flange_z(rig):
    _, _, ft = rig
    wrench = ft.read()
    assert wrench[2] == pytest.approx(ft.raw()[2], rel=0.05)
    assert 5.0 < wrench[2] < 15.0                  # home pose: flange z points down, the hand weighs ~1 kg
    assert np.abs(wrench[:2]).max() < 1.0


def test_added_mass_increases_load_by_mg(rig):
    world, robot, ft = rig
    before = ft.read()[2]
    _hang_mass(world, robot, 1.0)
    world.step(1000)
    assert ft.read()[2] - before == pytest.approx(9.81, rel=0.05)


def test_filter_lags_then_converges_and_tare(rig):
    world, robot, ft = rig
    bias = ft.bias()
    np.testing.assert_allclose(ft.read(), 0.0, atol=1e-9)
    _hang_mass(world, robot, 1.0)
    world.step(5)                                  # the raw load jumps; the 10 Hz filter (tau 16 ms) lags
    raw_step = ft.raw()[2] - bias[2]
    early = ft.read()[2]
    assert raw_step > 5.0 and 0.0 < early < 0.6 * raw_step
    world.step(1000)
    late = ft.read()[2]
    assert late == pytest.approx(ft.raw()[2] - bias[2], rel=0.02)
    assert late > 2 * early
    ft.bias()
    np.testing.assert_allclose(ft.read(), 0.0, atol=1e-9)
    ft.clear_bias()
    assert ft.read()[2] > 15.0                     # hand + 1 kg


def test_wrench_msg(rig):
    world, _, ft = rig
    msg = ft.wrench_msg(Time(42), "panda_link8")
    assert msg.header.frame_id == "panda_link8" and Time.from_msg(msg.header.stamp) == Time(42)
    np.testing.assert_allclose(convert.wrench_vector(msg), ft.read())
    assert Time.from_msg(ft.wrench_msg().header.stamp).nanoseconds == world.time_ns


def test_needs_connect_and_ft_joint(rig):
    world, robot, _ = rig
    with pytest.raises(SimError, match="connect"):
        WristFT(world, robot).raw()
    assert WristFT(world, robot, WristFTConfig(cutoff_hz=0)).alpha == 1.0


def test_iiwa_wrist_ft_sees_link_weight():
    with SimWorld() as world:
        robot = SimIiwa(world)
        robot.connect()
        ft = WristFT(world, robot, WristFTConfig(cutoff_hz=0))
        ft.connect()
        world.step(200)
        force = ft.read()[:3]
        assert 1.0 < np.linalg.norm(force) < 20.0          # link 7 (+ nothing else) hangs on the last joint
