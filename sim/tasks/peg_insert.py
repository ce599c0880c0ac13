"""`peg_insert`: insert a grasped square peg into a tight blind hole (contact-rich, force-aware).

Scene: a table (top at z = 0), the Panda at the origin, a static block with a square blind hole
(four walls and a floor, one compound body) and a square peg (`peg_size` = width, length) that
starts grasped between the Panda's fingers. The hole is `peg width + clearance` wide (total
clearance, default 1 mm) and `hole_depth` deep; its position and yaw are drawn from `rng` at reset,
as are the start pose of the tool and the peg's offset in the hand.

The Panda's two finger motors are force-limited position motors; two such motors squeezing an
object from both sides leave it free to slide along the closing axis, so the fingers are coupled by
a gear constraint (as the real hand's mechanism does) and the peg is held by friction only.

Action: an end-effector target (x, y, z, yaw) in the world frame (tool pointing down, yaw about the
world z axis), executed with joint impedance (`ControlMode.IMPEDANCE`, the Panda's default stiffness and
`arm_damping`, 1 kHz physics, 20 Hz control): the arm is a spring around the target, so pushing the
target below the point of contact presses the peg down. The gripper stays closed.

Observation: the tool position and yaw, the peg's position and orientation, the hole's top centre
and yaw, and the wrist wrench (`sim.ft.WristFT`, tared at reset with the peg in the hand).
`progress()` is the inserted depth of the peg's bottom face centre below the hole's top, over
`hole_depth`, counted while that point is inside the hole's outline; success is
`progress() >= success_depth`.

Perturbation: while the peg is still above the hole, the block jumps sideways by `perturb_shift`
(a bump of the fixture); once the peg is in the hole, a sideways push (`perturb_force` N on the
hand for `perturb_duration` s) instead.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from robot_stack.robot import ControlMode
from sim.ft import WristFT
from sim.tasks.arm import ArmTask, ArmTaskConfig
from sim.tasks.base import Expert, Spec, register_task
from sim.world import SimError

FINGERS = ("panda_finger_joint1", "panda_finger_joint2")


@dataclass(frozen=True)
class PegInsertConfig(ArmTaskConfig):
    physics_hz: int = 1000                          # >= 1 kHz: impedance gains and sub-mm contacts
    control_hz: float = 20.0
    max_steps: int = 200                            # 10 s
    peg_size: tuple[float, float] = (0.025, 0.07)   # square peg width, length [m]
    peg_mass: float = 0.08
    peg_friction: float = 1.0                       # lateral friction (x the fingers' 1.0, x the block's)
    clearance: float = 0.001                        # hole width - peg width [m]
    hole_depth: float = 0.035
    block_size: tuple[float, float] = (0.10, 0.01)  # outer width, floor thickness [m]
    block_friction: float = 0.3
    grasp_height: float = 0.015                     # peg top above the grasp target (nominal) [m]
    grasp_noise: tuple[float, float] = (0.003, 0.004)   # +- peg offset in the hand along x, z [m]
    hole_low: tuple[float, float] = (0.45, -0.15)   # hole centre range (x, y) [m]
    hole_high: tuple[float, float] = (0.65, 0.15)
    hole_yaw_range: float = 0.6                     # +- hole yaw [rad]
    start_offset: tuple[float, float, float] = (0.1, 0.1, 0.05)   # +- tool start about (hole, 0.17 m)
    success_depth: float = 0.9                      # inserted fraction of hole_depth for success
    perturb_window: tuple[float, float] = (0.05, 0.12)
    perturb_shift: tuple[float, float] = (0.002, 0.006)   # m, sideways jump of the block
    perturb_force: float = 15.0                     # N, sideways push once the peg is in the hole
    perturb_duration: float = 0.2                   # s
    workspace_low: tuple[float, float, float, float] = (0.3, -0.35, 0.0, -1.5)
    workspace_high: tuple[float, float, float, float] = (0.8, 0.35, 0.35, 1.5)
    # joint impedance damping D of the Panda: its defaults with 30 instead of 50 on joints 1 and 3. With joint 2
    # near 0 (tool close to the base) joints 1 and 3 are nearly coaxial and their anti-phase mode is so light
    # that the explicit damping torque diverges at 1 kHz into a full-torque oscillation at the physics rate
    # for D >= ~35 (measured over a grid of tool poses); lower D leaves the arm under-damped.
    arm_damping: tuple[float, ...] = (30.0, 50.0, 30.0, 30.0, 10.0, 5.0, 1.0, 0.0, 0.0)

    def __post_init__(self):
        super().__post_init__()
        name = type(self).__name__
        if self.robot != "sim_panda":
            raise SimError(f"{name}.robot must be 'sim_panda' (the task needs its gripper), got '{self.robot}'")
        if self.physics_hz < 1000:
            raise SimError(f"{name}.physics_hz must be >= 1000 (joint impedance and sub-mm contacts; at 500 Hz the "
                           f"tool jitters by more than the clearance), got {self.physics_hz}")
        if len(self.arm_damping) != 9 or min(self.arm_damping) < 0:
            raise SimError(f"{name}.arm_damping must be 9 values >= 0 (7 joints, 2 fingers), got {self.arm_damping}")
        if min(*self.peg_size, self.peg_mass, self.hole_depth, *self.block_size) <= 0:
            raise SimError(f"{name}: peg_size, peg_mass, hole_depth and block_size must be > 0")
        if not 0.0 < self.clearance <= 0.01:
            raise SimError(f"{name}.clearance must be in (0, 0.01] m, got {self.clearance}")
        if self.block_size[0] < self.peg_size[0] + self.clearance + 0.01:
            raise SimError(f"{name}.block_size[0] must leave walls >= 5 mm around the hole, got {self.block_size[0]}")
        if self.hole_depth + self.grasp_height >= self.peg_size[1]:
            raise SimError(f"{name}: hole_depth + grasp_height must be < the peg length {self.peg_size[1]}")
        if not 0.0 < self.success_depth <= 1.0:
            raise SimError(f"{name}.success_depth must be in (0, 1], got {self.success_depth}")
        if not 0 <= self.perturb_shift[0] <= self.perturb_shift[1] or self.perturb_duration <= 0:
            raise SimError(f"{name}: perturb_shift must be 0 <= low <= high and perturb_duration > 0")


# --- scripted expert --------------------------------------------------------------------------
def _wrap_quarter(a: float) -> float:
    """Angle wrapped into [-pi/4, pi/4) (a square peg is symmetric under quarter turns)."""
    return (a + np.pi / 4) % (np.pi / 2) - np.pi / 4


def _quat_matrix(q) -> np.ndarray:
    x, y, z, w = np.asarray(q, dtype=float) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def tip_of(pos, quat, length: float) -> np.ndarray:
    """Centre of the lower end face of a peg of `length` at pose (pos, quat xyzw)."""
    axis = _quat_matrix(quat)[:, 2]
    ends = [np.asarray(pos, dtype=float) + s * axis * length / 2 for s in (1.0, -1.0)]
    return min(ends, key=lambda e: e[2])


class PegInsertExpert(Expert):
    """Align the peg's tip over the hole, then a force-guarded descent (scripted demonstrator).

    The expert steers a commanded tool pose (x, y, z, yaw) with integral feedback on the peg itself
    (privileged state: the peg's pose and the hole's), so the sag of the compliant arm, the peg's
    offset in the hand and a moved hole are all corrected closed-loop:

    - approach: move the peg tip to `hover` above the hole, yaw aligned (step-limited);
    - insert: lower the command by `descend_step` per step while keeping the tip centred over the
      hole; the command never goes more than `max_press` below the tool, which caps the pressing
      force. Contact is read from the tared wrist F/T (-fz, the tool points down): when the peg
      presses on the block's top face (tip not yet below it) or stays stuck in the hole for `stuck`
      steps, the expert lifts by `backoff`, re-centres and tries again, with a small spiral search
      offset that grows with the number of tries.
    """

    move_step = 0.03            # m per control step in free space
    hover = 0.004               # m, tip height above the hole before descending
    descend_step = 0.003        # m per control step while inserting
    entry_step = 0.001          # m per control step through the hole's mouth
    max_press = 0.012           # m, command at most this far below the tool (caps the force)
    gain = 0.3                  # integral gain on the tip's position error (arm sag)
    align_tol = 0.4             # tip xy error that allows the descent, as a fraction of the clearance
    contact_force = 4.0         # N on the tared F/T that counts as contact
    stuck = 8                   # steps without progress under contact before backing off
    backoff = 0.006             # m lifted when backing off

    def __init__(self, task: PegInsert):
        super().__init__(task)
        self.tol = self.align_tol * task.config.clearance
        self.reset()

    def reset(self) -> None:
        self.phase = "approach"
        self.cmd: np.ndarray | None = None
        self.bias = np.zeros(2)
        self.tries = 0
        self.best = np.inf
        self.since_best = 0

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        ee, hole = obs["ee_pos"].astype(float), obs["hole_pos"].astype(float)
        if self.cmd is None:
            self.cmd = np.array([*ee, float(obs["ee_yaw"][0])])
        tip = tip_of(obs["peg_pos"], obs["peg_quat"], self.task.config.peg_size[1])
        yaw_err = _wrap_quarter(float(obs["hole_yaw"][0]) - self._peg_yaw(obs))
        self.cmd[3] = float(obs["ee_yaw"][0]) + yaw_err
        xy_err = hole[:2] + self._search() - tip[:2]
        if float(np.linalg.norm(xy_err)) < 0.004:
            self.bias = np.clip(self.bias + self.gain * xy_err, -0.01, 0.01)
        xy = ee[:2] + xy_err + self.bias
        if self.phase == "approach":
            z = ee[2] + hole[2] + self.hover - tip[2]
            self._move_toward(np.array([*xy, z]))
            if np.linalg.norm(xy_err) < self.tol and abs(yaw_err) < 0.02 and tip[2] < hole[2] + 2 * self.hover:
                self.phase, self.best, self.since_best = "insert", tip[2], 0
            return self.cmd.copy()
        self.cmd[:2] = xy
        return self._insert(obs, ee, tip, hole, float(np.linalg.norm(xy_err)))

    def _move_toward(self, goal: np.ndarray) -> None:
        d = goal - self.cmd[:3]
        n = float(np.linalg.norm(d))
        self.cmd[:3] += d if n <= self.move_step else d * (self.move_step / n)

    def _insert(self, obs, ee: np.ndarray, tip: np.ndarray, hole: np.ndarray, xy_err: float) -> np.ndarray:
        force = -float(obs["wrench"][2])
        entering = tip[2] > hole[2] - 0.002
        if not entering or xy_err < self.tol:     # hold above the entry until re-centred
            mouth = hole[2] - 0.003 < tip[2] < hole[2] + self.hover + 0.002
            step = self.entry_step if mouth else self.descend_step
            self.cmd[2] = max(self.cmd[2] - step, ee[2] - self.max_press)
        if tip[2] < self.best - 0.0005:
            self.best, self.since_best = tip[2], 0
        else:
            self.since_best += 1
        done_depth = tip[2] < hole[2] - self.task.config.hole_depth * 0.95
        blocked = force > self.contact_force and tip[2] > hole[2] - 0.001
        if not done_depth and (blocked or self.since_best > self.stuck) and force > self.contact_force:
            self.tries += 1
            self.cmd[2] = ee[2] + self.backoff
            self.phase = "approach" if tip[2] > hole[2] - 0.003 else "insert"
            self.best, self.since_best = tip[2], 0
        return self.cmd.copy()

    def _search(self) -> np.ndarray:
        """A spiral of small offsets over the tries (0 on the first try)."""
        if self.tries == 0:
            return np.zeros(2)
        r = min(0.4 * self.tries, 2.0) * self.task.config.clearance
        a = 2.4 * self.tries
        return r * np.array([np.cos(a), np.sin(a)])

    def _peg_yaw(self, obs) -> float:
        rot = _quat_matrix(obs["peg_quat"])
        return float(np.arctan2(rot[1, 0], rot[0, 0]))


@register_task("peg_insert")
class PegInsert(ArmTask):
    command_mode = "impedance"
    config_class = PegInsertConfig
    expert_class = PegInsertExpert

    def action_spec(self) -> Spec:
        c = self.config
        return Spec((4,), low=c.workspace_low, high=c.workspace_high, names=("ee_x", "ee_y", "ee_z", "ee_yaw"))

    def _state_spec(self) -> dict[str, Spec]:
        return {
            "ee_pos": Spec((3,), names=("x", "y", "z")),
            "ee_yaw": Spec((1,), names=("yaw",)),
            "peg_pos": Spec((3,), names=("x", "y", "z")),
            "peg_quat": Spec((4,), names=("qx", "qy", "qz", "qw")),
            "hole_pos": Spec((3,), names=("x", "y", "z")),
            "hole_yaw": Spec((1,), names=("yaw",)),
            "wrench": Spec((6,), names=("fx", "fy", "fz", "tx", "ty", "tz")),
            "inserted": Spec((1,), names=("fraction",)),
        }

    # --- scene ----------------------------------------------------------------------------------
    def _build_scene(self) -> None:
        cfg, c = self.config, self.world.client
        self.world.add_box((0.9, 0.9, 0.02), (0.3, 0.0, -0.02), mass=0.0, rgba=(0.85, 0.85, 0.8, 1.0))
        self.block = self._make_block()
        c.changeDynamics(self.block, -1, lateralFriction=cfg.block_friction, spinningFriction=0.0, rollingFriction=0.0)
        w, length = cfg.peg_size
        self.peg = self.world.add_box((w / 2, w / 2, length / 2), (0.3, 0.0, 0.3), mass=cfg.peg_mass,
                                      rgba=(0.85, 0.55, 0.2, 1.0))
        c.changeDynamics(self.peg, -1, lateralFriction=cfg.peg_friction, spinningFriction=0.001, rollingFriction=0.0)
        self.objects += [self.peg, self.block]
        body = self.robot.body_id
        j1, j2 = (self.robot.joint_index(n) for n in FINGERS)
        gear = c.createConstraint(body, j1, body, j2, c.JOINT_GEAR, [1, 0, 0], [0, 0, 0], [0, 0, 0])
        c.changeConstraint(gear, gearRatio=-1, erp=0.1, maxForce=100)
        self.ft = WristFT(self.world, self.robot)
        self.ft.connect()
        self._hole = (np.zeros(3), 0.0)
        self._push: tuple[np.ndarray, int] | None = None

    def _make_block(self) -> int:
        """The hole block: a floor and four walls around a square hole, origin at the block's bottom centre."""
        cfg, c = self.config, self.world.client
        outer, floor = cfg.block_size
        h, half = (cfg.peg_size[0] + cfg.clearance) / 2, outer / 2
        t = half - h                                          # wall thickness
        height = floor + cfg.hole_depth
        zc = height / 2
        halves = [[half, t / 2, zc], [half, t / 2, zc], [t / 2, h, zc], [t / 2, h, zc], [h, h, floor / 2]]
        centres = [[0, h + t / 2, zc], [0, -h - t / 2, zc], [h + t / 2, 0, zc], [-h - t / 2, 0, zc], [0, 0, floor / 2]]
        col = c.createCollisionShapeArray([c.GEOM_BOX] * 5, halfExtents=halves, collisionFramePositions=centres)
        vis = c.createVisualShapeArray([c.GEOM_BOX] * 5, halfExtents=halves, visualFramePositions=centres,
                                       rgbaColors=[[0.4, 0.45, 0.55, 1.0]] * 5)
        return c.createMultiBody(baseMass=0.0, baseCollisionShapeIndex=col, baseVisualShapeIndex=vis,
                                 basePosition=[0.55, 0.0, 0.0])

    def _robot_config(self, cls: type) -> Any:
        return dataclasses.replace(super()._robot_config(cls), damping=tuple(self.config.arm_damping))

    def close(self) -> None:
        if self.built:
            self.ft.disconnect()
        super().close()

    def _reset_scene(self, rng: np.random.Generator) -> None:
        cfg = self.config
        self._perturb_step = None   # Task.reset draws it after this hook; the settling steps below must not fire it
        hole = rng.uniform(cfg.hole_low, cfg.hole_high)
        yaw = float(rng.uniform(-cfg.hole_yaw_range, cfg.hole_yaw_range))
        self.set_hole(hole, yaw)
        start = np.array([hole[0], hole[1], 0.17]) + rng.uniform(-1.0, 1.0, 3) * np.array(cfg.start_offset)
        start_yaw = float(rng.uniform(-0.3, 0.3))
        offset = rng.uniform(-1.0, 1.0, 2) * np.array(cfg.grasp_noise)
        self._push = None
        self._grasp(start, start_yaw, offset)

    def _grasp(self, start: np.ndarray, yaw: float, offset: np.ndarray) -> None:
        """Teleport the arm to `start` with the fingers open on the peg, close them and let the grasp settle."""
        cfg, c = self.config, self.world.client
        w, length = cfg.peg_size
        self.place_ee(start, yaw, gripper=w + 0.002)
        pos, quat = self.ee_pose()
        local = [float(offset[0]), 0.0, length / 2 - cfg.grasp_height + float(offset[1])]   # tool z points down
        p, _ = c.multiplyTransforms(pos.tolist(), quat.tolist(), local, [0, 0, 0, 1])
        c.resetBasePositionAndOrientation(self.peg, p, quat.tolist())
        c.resetBaseVelocity(self.peg, [0, 0, 0], [0, 0, 0])
        self.move_ee(start, yaw, gripper=0.0, mode=ControlMode.IMPEDANCE)
        self.ft.clear_bias()
        self.world.step(self.world.steps_for(0.25))   # close the fingers, settle the hand and the F/T filter
        self.ft.bias()

    def set_hole(self, center, yaw: float) -> None:
        """Put the block so that the hole's top centre is at (x, y) = `center`, rotated by `yaw`."""
        c = self.world.client
        c.resetBasePositionAndOrientation(self.block, [float(center[0]), float(center[1]), 0.0],
                                          c.getQuaternionFromEuler([0.0, 0.0, float(yaw)]))
        top = self.config.block_size[1] + self.config.hole_depth
        self._hole = (np.array([float(center[0]), float(center[1]), top]), float(yaw))

    def hole_pose(self) -> tuple[np.ndarray, float]:
        """(top centre of the hole (3,), yaw)."""
        return self._hole[0].copy(), self._hole[1]

    def peg_pose(self) -> tuple[np.ndarray, np.ndarray]:
        pos, quat = self.world.client.getBasePositionAndOrientation(self.peg)
        return np.array(pos), np.array(quat)

    def peg_tip(self) -> np.ndarray:
        """Centre of the peg's lower end face (world)."""
        return tip_of(*self.peg_pose(), self.config.peg_size[1])

    # --- action and observation -----------------------------------------------------------------
    def _apply_action(self, action: np.ndarray) -> None:
        self.move_ee(action[:3], float(action[3]), gripper=0.0, mode=ControlMode.IMPEDANCE)

    def _on_step(self) -> None:
        if self._push is None:
            return
        force, until = self._push
        if self.world.steps >= until:
            self._push = None
            return
        c, hand = self.world.client, self.robot.link_index("panda_hand")
        pos = c.getLinkState(self.robot.body_id, hand)[0]
        c.applyExternalForce(self.robot.body_id, hand, force.tolist(), pos, c.WORLD_FRAME)

    def ee_yaw(self) -> float:
        """Tool yaw about the world z axis (tool pointing down)."""
        rot = np.array(self.world.client.getMatrixFromQuaternion(self.ee_pose()[1].tolist())).reshape(3, 3)
        return float(np.arctan2(rot[1, 0], rot[0, 0]))

    def _observe_state(self) -> dict[str, np.ndarray]:
        peg_pos, peg_quat = self.peg_pose()
        hole, yaw = self.hole_pose()
        return {
            "ee_pos": self.ee_pose()[0], "ee_yaw": np.array([self.ee_yaw()]),
            "peg_pos": peg_pos, "peg_quat": peg_quat,
            "hole_pos": hole, "hole_yaw": np.array([yaw]),
            "wrench": self.ft.read(), "inserted": np.array([self.progress()]),
        }

    # --- scoring --------------------------------------------------------------------------------
    def progress(self) -> float:
        hole, yaw = self.hole_pose()
        tip = self.peg_tip()
        d = tip[:2] - hole[:2]
        c, s = np.cos(yaw), np.sin(yaw)
        local = np.array([c * d[0] + s * d[1], -s * d[0] + c * d[1]])
        if np.max(np.abs(local)) > (self.config.peg_size[0] + self.config.clearance) / 2:
            return 0.0
        return float(np.clip((hole[2] - tip[2]) / self.config.hole_depth, 0.0, 1.0))

    def success(self) -> bool:
        return self.progress() >= self.config.success_depth

    # --- perturbation ---------------------------------------------------------------------------
    def _perturb(self, rng: np.random.Generator) -> None:
        """Bump the block sideways (peg still above it) or push the hand sideways (peg in the hole)."""
        cfg = self.config
        angle = rng.uniform(0.0, 2.0 * np.pi)
        direction = np.array([np.cos(angle), np.sin(angle)])
        hole, yaw = self.hole_pose()
        if self.peg_tip()[2] > hole[2] + 0.002:
            self.set_hole(hole[:2] + rng.uniform(*cfg.perturb_shift) * direction, yaw)
        else:
            force = np.array([*(cfg.perturb_force * direction), 0.0])
            self._push = (force, self.world.steps + self.world.steps_for(cfg.perturb_duration))
