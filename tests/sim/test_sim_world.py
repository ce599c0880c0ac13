"""SimWorld: own client per world, sim time, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from robot_stack.clock import NS
from robot_stack.robot import ControlMode, JointCommand
from sim import SimError, SimPanda, SimWorld, SimWorldConfig


def test_no_connection_until_connect():
    world = SimWorld()
    assert not world.connected
    with pytest.raises(SimError, match="connect"):
        _ = world.client


def test_two_worlds_coexist():
    with SimWorld() as a, SimWorld(SimWorldConfig(physics_hz=240)) as b:
        assert a.client_id != b.client_id
        box_a = a.add_box([0.05] * 3, [0, 0, 1.0], mass=1.0)
        b.add_box([0.05] * 3, [0, 0, 1.0], mass=1.0)
        b.add_box([0.05] * 3, [1, 0, 1.0], mass=1.0)
        assert a.client.getNumBodies() == 2 and b.client.getNumBodies() == 3   # plane + boxes
        a.step(200)                                     # a's box falls, b's stays put
        assert a.client.getBasePositionAndOrientation(box_a)[0][2] < 0.9
        assert b.client.getBasePositionAndOrientation(box_a)[0][2] == pytest.approx(1.0)


def test_sim_time_counts_physics_steps():
    with SimWorld(SimWorldConfig(physics_hz=240)) as world:
        assert world.time_ns == 0
        assert world.step(240) == NS
        assert world.now().nanoseconds == NS
        world.step(1)
        assert world.time_ns == NS + NS // 240


def test_config_is_frozen_and_validated():
    cfg = SimWorldConfig()
    with pytest.raises(AttributeError):
        cfg.physics_hz = 5  # type: ignore[misc]
    with pytest.raises(SimError, match="physics_hz"):
        SimWorldConfig(physics_hz=0)


def _run_once() -> np.ndarray:
    with SimWorld() as world:
        robot = SimPanda(world)
        robot.connect()
        q0 = robot.read().position
        for k in range(20):
            robot.write(JointCommand(ControlMode.POSITION, position=q0 + 0.02 * k))
            world.step(10)
        return robot.read().position


def test_deterministic_given_same_commands():
    np.testing.assert_array_equal(_run_once(), _run_once())
