"""`hand_grasp_lift`: pick a cube off the table with the 16-DoF hand on the iiwa and lift it 10 cm.

Scene: a table (top at z = 0) under the iiwa, the hand (`sim_iiwa_leap`) on its flange and one cube
at a random position and yaw in front of the robot. The action (20 values) is an end-effector
target for the hand's `grasp_site` (x, y, z in the world, yaw about the vertical; the palm is kept
facing down by the IK) and 16 hand joint targets (`sim.hands.HAND_JOINTS` order). The IK runs on
the merged body, so only the arm joints move the grasp site; the hand joints follow the action.

Success: the cube is >= `lift_height` above its rest height, touches the hand and not the table
(held, not thrown). `progress()` is the lift fraction in [0, 1]. Perturbation: an impulse on the
cube (a sideways velocity kick), whether it still lies on the table or is already held.
The expert (privileged state) approaches above the cube with the fingers spread, descends, closes
the fingers against the opposing thumb and lifts; it goes back to the approach when the cube has
moved away before the grasp (a perturbation).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from robot_stack.robot import ControlMode, JointCommand
from sim.camera import FixedCameraConfig
from sim.hands import HAND_JOINTS, MOUNT_JOINT, hand_limits
from sim.tasks.arm import ArmTask, ArmTaskConfig
from sim.tasks.base import Expert, Spec, register_task
from sim.world import SimError

ARM_DOF, HAND_DOF = 7, 16


def hand_pose(mcp: float, pip: float, dip: float, thumb: tuple[float, float, float] | None = None) -> np.ndarray:
    """(16,) hand joint targets: the same flexion on index/middle/ring, `thumb` (default the same) on the thumb."""
    finger = [0.0, mcp, pip, dip]
    t = thumb or (mcp, pip, dip)
    return np.array(finger * 3 + [0.0, *t])


OPEN_HAND = hand_pose(1.2, 0.15, 0.1)            # fingers spread around the cube, pointing down and out
CLOSED_HAND = hand_pose(1.75, 0.3, 0.3, thumb=(2.1, 0.35, 0.3))  # thumb well beyond contact, fingers just past it


@dataclass(frozen=True)
class HandGraspLiftConfig(ArmTaskConfig):
    robot: str = "sim_iiwa_leap"
    ee_link: str = "grasp_site"
    physics_hz: int = 240
    control_hz: float = 10.0
    max_steps: int = 80
    fixed_camera: FixedCameraConfig = field(default_factory=lambda: FixedCameraConfig(
        eye=(0.95, 0.3, 0.35), target=(0.55, 0.0, 0.08)))
    perturb_window: tuple[float, float] = (0.05, 0.25)  # steps 4-20: approaching, grasping or lifting
    cube_size: float = 0.055                         # edge [m]
    cube_mass: float = 0.1                           # kg
    cube_friction: float = 1.0                       # lateral friction (pybullet multiplies the two bodies')
    start_low: tuple[float, float] = (0.50, -0.12)   # cube centre x, y range on the table
    start_high: tuple[float, float] = (0.65, 0.12)
    workspace_low: tuple[float, float, float] = (0.3, -0.35, 0.0)
    workspace_high: tuple[float, float, float] = (0.8, 0.35, 0.5)
    lift_height: float = 0.10                        # success: cube this far above its rest height
    kick_speed: tuple[float, float] = (0.3, 0.6)     # perturbation: horizontal velocity kick [m/s]

    def __post_init__(self):
        super().__post_init__()
        if self.robot != "sim_iiwa_leap":
            raise SimError(f"HandGraspLiftConfig.robot must be 'sim_iiwa_leap' (hand on an arm), got {self.robot!r}")
        if min(self.cube_size, self.cube_mass, self.cube_friction, self.lift_height) <= 0:
            raise SimError("HandGraspLiftConfig: cube_size, cube_mass, cube_friction and lift_height must be > 0")


class HandGraspLiftExpert(Expert):
    """approach -> descend -> close -> lift, re-approaching if the cube moves before the grasp."""

    approach_height = 0.10       # grasp site above the grasp point while approaching [m]
    grasp_offset = -0.01         # grasp site relative to the cube centre at the grasp [m]
    max_speed = 0.04             # end-effector target step per control step [m]
    lift_speed = 0.02
    close_steps = 6
    lift_target = 0.16           # above the rest height

    def __init__(self, task: HandGraspLift):
        super().__init__(task)
        self.reset()

    def reset(self) -> None:
        self.phase, self.t = "approach", 0
        self.hand = OPEN_HAND.copy()
        self.grasp_xy: np.ndarray | None = None
        self.grasp_yaw = 0.0

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        cube = obs["object_pose"]
        xy = cube[:2]
        rest = float(obs["object_rest_z"][0])
        grasp_z = rest + self.grasp_offset
        self.t += 1
        ee = obs["ee_pos"].astype(float)
        if self.phase in ("approach", "descend") and self.grasp_xy is not None \
                and np.linalg.norm(xy - self.grasp_xy) > 0.015:
            self.phase, self.t = "approach", 0                               # the cube moved: start over
        if self.phase == "approach":
            goal = np.array([*xy, grasp_z + self.approach_height])
            self.grasp_xy, self.hand = xy.copy(), OPEN_HAND.copy()
            self.grasp_yaw = self._grasp_yaw(cube[3:7])                      # frozen from here on
            if np.linalg.norm(ee - goal) < 0.01 and self.t > 2:
                self.phase, self.t = "descend", 0
        elif self.phase == "descend":
            goal = np.array([*self.grasp_xy, grasp_z])
            if abs(ee[2] - grasp_z) < 0.006 or self.t > 15:
                self.phase, self.t = "close", 0
        elif self.phase == "close":
            goal = np.array([*self.grasp_xy, grasp_z])
            frac = min(1.0, self.t / self.close_steps)
            self.hand = OPEN_HAND + frac * (CLOSED_HAND - OPEN_HAND)
            if self.t >= self.close_steps + 2:
                self.phase, self.t = "lift", 0
        else:
            goal = np.array([*self.grasp_xy, rest + self.lift_target])
        step = self.lift_speed if self.phase == "lift" else self.max_speed
        return np.concatenate([self._limit(ee, goal, step), [self.grasp_yaw], self.hand])

    @staticmethod
    def _limit(ee: np.ndarray, goal: np.ndarray, step: float) -> np.ndarray:
        """A target (3,) at most `step` away from the current ee position."""
        d = goal - ee
        n = np.linalg.norm(d)
        return goal if n <= step else ee + d * (step / n)

    def _grasp_yaw(self, quat: np.ndarray) -> float:
        """Hand yaw facing two cube faces: the cube's yaw folded into [-pi/4, pi/4)."""
        x, y, z, w = quat
        yaw = np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
        return float((yaw + np.pi / 4) % (np.pi / 2) - np.pi / 4)


@register_task("hand_grasp_lift")
class HandGraspLift(ArmTask):
    config_class = HandGraspLiftConfig
    expert_class = HandGraspLiftExpert

    def action_spec(self) -> Spec:
        c, lim = self.config, hand_limits()
        names = ("ee_x", "ee_y", "ee_z", "ee_yaw") + HAND_JOINTS
        low = (*c.workspace_low, -np.pi, *lim[0])
        high = (*c.workspace_high, np.pi, *lim[1])
        return Spec((4 + HAND_DOF,), low=tuple(float(v) for v in low), high=tuple(float(v) for v in high), names=names)

    def _state_spec(self) -> dict[str, Spec]:
        return {
            "joint_pos": Spec((ARM_DOF + HAND_DOF,)),
            "ee_pos": Spec((3,), names=("x", "y", "z")),
            "ee_yaw": Spec((1,), names=("yaw",)),
            "object_pose": Spec((7,), names=("x", "y", "z", "qx", "qy", "qz", "qw")),
            "object_rest_z": Spec((1,), names=("z",)),
        }

    # --- scene ----------------------------------------------------------------------------------
    def _build_scene(self) -> None:
        cfg, c = self.config, self.world.client
        self.table = self.world.add_box((0.9, 0.9, 0.02), (0.3, 0.0, -0.02), mass=0.0, rgba=(0.85, 0.85, 0.8, 1.0))
        h = cfg.cube_size / 2
        self.cube = self.world.add_box((h, h, h), (0.55, 0.0, h), mass=cfg.cube_mass, rgba=(0.3, 0.7, 0.35, 1.0))
        c.changeDynamics(self.cube, -1, lateralFriction=cfg.cube_friction, spinningFriction=0.002,
                         rollingFriction=0.0001)
        c.changeDynamics(self.table, -1, lateralFriction=0.6)
        self.objects.append(self.cube)
        self.rest_z = h                                                     # cube centre resting on the table
        mount = self.robot.joint_index(MOUNT_JOINT)                         # hand links come after the mount
        self._hand_links = set(range(mount, c.getNumJoints(self.robot.body_id)))

    def _reset_scene(self, rng: np.random.Generator) -> None:
        cfg, c = self.config, self.world.client
        xy = rng.uniform(cfg.start_low, cfg.start_high)                     # (2,)
        yaw = rng.uniform(-np.pi, np.pi)
        # park the cube out of reach first: its old contacts (and their warm-start impulses) are dropped,
        # so an episode does not depend on how the previous one ended
        c.resetBasePositionAndOrientation(self.cube, [0.0, 0.0, -10.0], [0.0, 0.0, 0.0, 1.0])
        c.performCollisionDetection()
        c.resetBasePositionAndOrientation(self.cube, [xy[0], xy[1], self.rest_z + 1e-4],
                                          c.getQuaternionFromEuler([0.0, 0.0, yaw]))
        c.resetBaseVelocity(self.cube, [0, 0, 0], [0, 0, 0])
        start = np.array([0.55, 0.0, 0.25]) + rng.uniform(-0.03, 0.03, size=3)
        self.place_ee(start, 0.0)
        q = self.robot.command.position.copy()                              # (23,)
        q[ARM_DOF:] = OPEN_HAND
        self.robot.teleport(q)
        self._write(q)

    # --- action and observation -----------------------------------------------------------------
    def _apply_action(self, action: np.ndarray) -> None:
        q = self.solve_ik(action[:3], float(action[3]))                     # (23,) arm part from IK
        q[ARM_DOF:] = action[4:]
        self._write(q)

    def _write(self, q: np.ndarray) -> None:
        self.send(JointCommand(ControlMode.POSITION, position=q))

    def ee_yaw(self) -> float:
        c = self.world.client
        rot = np.array(c.getMatrixFromQuaternion(self.ee_pose()[1])).reshape(3, 3)
        return float(np.arctan2(rot[1, 0], rot[0, 0]))                     # heading of the finger axis x

    def object_pose(self) -> np.ndarray:
        pos, quat = self.world.client.getBasePositionAndOrientation(self.cube)
        return np.array([*pos, *quat])                                      # (7,)

    def _observe_state(self) -> dict[str, np.ndarray]:
        return {"joint_pos": self.robot.read().position, "ee_pos": self.ee_pose()[0],
                "ee_yaw": np.array([self.ee_yaw()]), "object_pose": self.object_pose(),
                "object_rest_z": np.array([self.rest_z])}

    # --- scoring --------------------------------------------------------------------------------
    def held(self) -> bool:
        """The cube touches the hand (at least two of its links) and not the table (last physics step)."""
        c = self.world.client
        if c.getContactPoints(self.cube, self.table):
            return False
        links = {p[4] for p in c.getContactPoints(self.cube, self.robot.body_id)} & self._hand_links
        return len(links) >= 2

    def progress(self) -> float:
        lifted = self.object_pose()[2] - self.rest_z
        return float(np.clip(lifted / self.config.lift_height, 0.0, 1.0))

    def success(self) -> bool:
        return self.progress() >= 1.0 and self.held()

    def _perturb(self, rng: np.random.Generator) -> None:
        """A sideways velocity kick on the cube (an impulse of m * v)."""
        c = self.world.client
        angle = rng.uniform(0, 2 * np.pi)
        speed = rng.uniform(*self.config.kick_speed)
        lin, ang = c.getBaseVelocity(self.cube)
        kick = speed * np.array([np.cos(angle), np.sin(angle), 0.0])
        c.resetBaseVelocity(self.cube, (np.array(lin) + kick).tolist(), list(ang))
