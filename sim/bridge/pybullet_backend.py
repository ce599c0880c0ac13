"""`PybulletBackend`: a `SimWorld` + registered sim robot (`sim_panda`, `sim_iiwa`) behind the bridge server.

It serves the same protocol as the Isaac Gym backend, so the bridge (protocol, server, client) is
tested end to end on any machine, and a pybullet simulator can run in a process of its own.
Control modes are those of `sim.robots.SimArm` (POSITION motors, IMPEDANCE with gravity
compensation, TORQUE); commands are applied before every physics step. pybullet is deterministic,
so RESET's seed is recorded but changes nothing.
"""

from __future__ import annotations

import numpy as np

from robot_stack.robot import ControlMode, JointCommand, robot_class
from robot_stack.robot.interface import UnknownRobot
from sim.bridge import protocol as P
from sim.robots import SimArm
from sim.world import SimError, SimWorld, SimWorldConfig


class PybulletBackend(P.Backend):
    def __init__(self, robot: str = "sim_panda", physics_hz: int = 1000):
        try:
            cls = robot_class(robot)
        except UnknownRobot as exc:
            raise P.BackendError(str(exc)) from None
        if not issubclass(cls, SimArm):
            raise P.BackendError(f"robot '{robot}' is not a pybullet sim robot (sim_panda, sim_iiwa, ...)")
        try:
            self.world = SimWorld(SimWorldConfig(physics_hz=physics_hz)).connect()
        except SimError as exc:
            raise P.BackendError(str(exc)) from None
        try:
            self.robot = cls(self.world)
            self.robot.connect()
        except Exception:
            self.world.disconnect()
            raise
        self.name = robot
        self.seed: int | None = None

    def describe(self) -> P.RobotDescription:
        lim = self.robot.limits
        return P.RobotDescription(self.name, "pybullet", self.robot.joint_names, lim.lower, lim.upper, lim.velocity,
                                  lim.effort, float(self.world.config.physics_hz))

    def reset(self, seed: int | None) -> P.State:
        self.seed = seed
        home = self.robot.initial_positions
        self.robot.teleport(home)
        self.robot.write(JointCommand(ControlMode.POSITION, position=home, velocity=np.zeros_like(home)))
        return self.read()

    def read(self) -> P.State:
        s = self.robot.read()
        return P.State(s.stamp_ns, s.position, s.velocity, s.effort)

    def write(self, command: P.Command) -> None:
        cmd = JointCommand(ControlMode(command.mode), position=command.position, velocity=command.velocity,
                           effort=command.effort, stiffness=command.stiffness, damping=command.damping)
        try:
            self.robot.write(cmd)
        except SimError as exc:
            raise P.RequestError(str(exc)) from None

    def step(self, n: int) -> int:
        return self.world.step(n)

    def safe_stop(self) -> None:
        self.robot.safe_stop()

    def close(self) -> None:
        self.robot.disconnect()
        self.world.disconnect()
