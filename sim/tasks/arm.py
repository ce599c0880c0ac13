"""`ArmTask`: the end-effector layer shared by the arm tasks (push_t, peg_insert, wipe).

Actions of arm tasks are end-effector targets in the world frame; `move_ee` turns one into joint
targets with pybullet's damped-least-squares IK (seeded from the current joints, tool pointing
down with a given yaw) and writes a `JointCommand` to the robot, so the robot is driven exactly as
a robot node would drive it (position motors, or joint impedance when `mode` says so).
`place_ee` teleports the arm to an end-effector pose at reset (IK iterated on the kinematics, no
dynamics), so episodes start without a settling transient.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from robot_stack.robot import ControlMode, JointCommand
from sim.tasks.base import Task, TaskConfig
from sim.world import SimError

EE_LINKS = {"sim_panda": "panda_grasptarget", "sim_iiwa": "lbr_iiwa_link_7"}


@dataclass(frozen=True)
class ArmTaskConfig(TaskConfig):
    ee_link: str = ""                       # "" = the robot's default (EE_LINKS)
    ik_iterations: int = 50


class ArmTask(Task):
    config_class = ArmTaskConfig

    def build(self) -> ArmTask:
        if self.built:
            return self
        super().build()
        link = self.config.ee_link or EE_LINKS.get(self.config.robot)
        if not link:
            raise SimError(f"{self.name}: no end-effector link known for robot '{self.config.robot}'; set ee_link")
        self.ee_index = self.robot.link_index(link)
        c, body = self.world.client, self.robot.body_id
        movable = [j for j in range(c.getNumJoints(body)) if c.getJointInfo(body, j)[2] != c.JOINT_FIXED]
        self._movable = movable                                  # joints IK returns values for, in order
        names = self.robot.joint_names
        index = {c.getJointInfo(body, j)[1].decode(): k for k, j in enumerate(movable)}
        self._ik_to_ctrl = np.array([index[n] for n in names])   # IK solution -> controlled joint order
        lim = self.robot.limits
        self._rest = self.robot.initial_positions
        self._ik_lower, self._ik_upper = lim.lower.copy(), lim.upper.copy()
        self._gripper = np.array([n in self.robot.config.gripper_joints for n in names])
        return self

    # --- end effector ---------------------------------------------------------------------------
    def ee_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """(position (3,), quaternion xyzw (4,)) of the end-effector link in the world."""
        s = self.world.client.getLinkState(self.robot.body_id, self.ee_index, computeForwardKinematics=True)
        return np.array(s[4]), np.array(s[5])

    def down_quaternion(self, yaw: float = 0.0) -> list[float]:
        """Tool z pointing down (-z world), rotated by `yaw` about the world z axis."""
        return list(self.world.client.getQuaternionFromEuler([np.pi, 0.0, float(yaw)]))

    def solve_ik(self, position, yaw: float = 0.0) -> np.ndarray:
        """Joint positions (controlled-joint order) putting the tool at `position`, pointing down."""
        c, robot = self.world.client, self.robot
        n = len(self._movable)
        sol = c.calculateInverseKinematics(
            robot.body_id, self.ee_index, [float(v) for v in position], self.down_quaternion(yaw),
            lowerLimits=self._ik_lower.tolist()[:n], upperLimits=self._ik_upper.tolist()[:n],
            jointRanges=(self._ik_upper - self._ik_lower).tolist()[:n], restPoses=self._rest.tolist()[:n],
            maxNumIterations=self.config.ik_iterations, residualThreshold=1e-5,
        )
        return np.clip(np.asarray(sol)[self._ik_to_ctrl], self._ik_lower, self._ik_upper)

    def move_ee(self, position, yaw: float = 0.0, *, gripper: float | None = None,
                mode: ControlMode = ControlMode.POSITION) -> np.ndarray:
        """Command the arm toward an end-effector target; `gripper` = opening width in m (Panda 0..0.08)."""
        q = self.solve_ik(position, yaw)
        q[self._gripper] = self._gripper_targets(gripper)
        self.send(JointCommand(mode, position=q))
        return q

    def place_ee(self, position, yaw: float = 0.0, *, gripper: float | None = None, iterations: int = 5) -> None:
        """Teleport the arm (no dynamics) so the tool is at `position`, and hold it there."""
        c, robot = self.world.client, self.robot
        q = self._rest.copy()
        for _ in range(iterations):
            robot.teleport(q)
            q = self.solve_ik(position, yaw)
        q[self._gripper] = self._gripper_targets(gripper)
        robot.teleport(q)
        robot.write(JointCommand(ControlMode.POSITION, position=q))
        c.performCollisionDetection()

    def _gripper_targets(self, width: float | None) -> np.ndarray:
        n = int(self._gripper.sum())
        if n == 0:
            return np.zeros(0)
        if width is None:   # keep the current command
            current = self.robot.command.position if self.robot.command is not None else self._rest
            return np.asarray(current)[self._gripper]
        upper = self.robot.limits.upper[self._gripper]
        return np.clip(np.full(n, float(width) / n), 0.0, upper)
