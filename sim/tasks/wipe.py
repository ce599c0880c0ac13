"""`wipe`: force-controlled wiping of a marked area (reactive, RDP-style) with a sponge held by the Panda.

Scene: a table (top at z = 0), the Panda at the origin and a static board whose top face carries the
marked area (`area_size`) divided into `grid` cells, drawn orange and turning light blue once wiped
(visual-only patches, so cameras see the progress). At reset the board's
pose is drawn from `rng`: the area centre moves by up to `center_range`, the board yaws by up to
`yaw_range` and tilts by up to `tilt_deg` about a random horizontal axis through the area centre.
The tool is a soft sphere (the sponge, `sponge_*`) fixed under the Panda's closed fingers (or the
iiwa's flange); its lowest point is `tool_length` below the end-effector point.

Action: an end-effector target (x, y, z) in the world frame, executed with joint impedance
(`ControlMode.IMPEDANCE`, 1 kHz physics, tool pointing down). The arm is a spring around the
target: commanding the target below the point where the sponge touches the board presses it in,
about 1 N per mm of commanded depth (arm impedance in series with the sponge's contact stiffness;
~10 N at 10 mm). The Panda's impedance damping is scaled by `damping_scale` (see `_robot_config`).

Force model: after every physics step the normal force is the sum of `normalForce` over the contact
points between the tool (sponge, or the fingers when pushed through it) and the board, low-passed
at `force_cutoff_hz` like a force sensor's filter. A cell counts as wiped when a sponge contact point
lies in it while that force is within `target_force +- force_band`: pressing too hard (or too
lightly) wipes nothing. `progress()` is the wiped fraction, `success()` is `>= success_fraction`.

Observation: `ee_pos`, the area centre and orientation (`surface_pos`, `surface_quat`,
`surface_normal`), the wrist wrench (`sim.ft.WristFT`, tared at reset with the arm free, sensor z
along the tool, so pressing reads fz < 0), the filtered `contact_force`, `wiped_fraction` and the
per-cell `wiped` flags (row-major, rows along the board's y).

Perturbation: the board moves kinematically over `perturb_duration` seconds (smoothstep), up or
down by `perturb_shift` and tilted by `perturb_tilt_deg` more about a random horizontal axis
through the area centre, so a policy (and the expert) has to react through force feedback.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from robot_stack.robot import ControlMode
from sim.ft import WristFT
from sim.tasks.arm import ArmTask, ArmTaskConfig
from sim.tasks.base import Spec, register_task
from sim.tasks.wipe_expert import WipeExpert, quat_matrix
from sim.world import SimError

SPONGE_OFFSETS = {"sim_panda": 0.012, "sim_iiwa": 0.06}   # clear of the closed fingers / the flange
DIRTY, CLEAN = [0.9, 0.55, 0.15, 1.0], [0.6, 0.85, 0.95, 1.0]      # cell colours of the marked area


@dataclass(frozen=True)
class WipeConfig(ArmTaskConfig):
    physics_hz: int = 1000                          # the Panda's impedance gains are tuned for 1 kHz
    control_hz: float = 20.0
    max_steps: int = 200                            # 10 s
    target_force: float = 10.0                      # N, normal force to keep while wiping
    force_band: float = 5.0                         # N, +- around target_force
    force_cutoff_hz: float = 50.0                   # low-pass on the measured contact force (0: off)
    area_size: tuple[float, float] = (0.12, 0.12)   # marked area on the board, m (along board x, y)
    grid: tuple[int, int] = (6, 6)                  # cells along board x, y
    success_fraction: float = 0.9
    board_size: tuple[float, float, float] = (0.24, 0.24, 0.04)
    board_friction: float = 0.3                     # lateral friction of the board
    damping_scale: float = 0.5                      # on the robot's default impedance damping (see Wipe)
    sponge_radius: float = 0.015                    # m, the spherical sponge held under the closed fingers
    sponge_offset: float = 0.0                      # m, sponge centre below the ee point; 0: SPONGE_OFFSETS
    sponge_stiffness: float = 3000.0                # N/m contact stiffness of the sponge (0: rigid)
    sponge_damping: float = 150.0                   # N s/m contact damping of the sponge
    center: tuple[float, float, float] = (0.5, 0.0, 0.05)    # nominal area centre (on the board's top face)
    center_range: tuple[float, float, float] = (0.03, 0.05, 0.015)   # +- uniform offsets at reset
    yaw_range: float = 0.3                          # rad, +- board yaw at reset
    tilt_deg: float = 4.0                           # max board tilt at reset
    perturb_window: tuple[float, float] = (0.2, 0.4)         # steps 40-80 of 200: while the expert wipes
    perturb_shift: tuple[float, float] = (0.01, 0.02)        # m, height change (random sign)
    perturb_tilt_deg: tuple[float, float] = (2.0, 4.0)       # extra tilt
    perturb_duration: float = 0.5                   # s over which the board moves
    workspace_low: tuple[float, float, float] = (0.3, -0.3, 0.0)
    workspace_high: tuple[float, float, float] = (0.75, 0.3, 0.3)

    def __post_init__(self):
        super().__post_init__()
        name = type(self).__name__
        if self.physics_hz < 500:
            raise SimError(f"{name}.physics_hz must be >= 500 for joint impedance control, got {self.physics_hz}")
        if not 0 < self.damping_scale <= 2:
            raise SimError(f"{name}.damping_scale must be in (0, 2], got {self.damping_scale}")
        if self.target_force <= 0 or not 0 < self.force_band < self.target_force:
            raise SimError(f"{name}: need target_force > 0 and 0 < force_band < target_force, "
                           f"got {self.target_force} and {self.force_band}")
        if len(self.grid) != 2 or min(self.grid) < 1:
            raise SimError(f"{name}.grid must be two counts >= 1, got {self.grid}")
        if min(self.area_size) <= 0 or any(a > b for a, b in zip(self.area_size, self.board_size[:2], strict=True)):
            raise SimError(f"{name}.area_size must be > 0 and fit on board_size {self.board_size[:2]}, "
                           f"got {self.area_size}")
        if not 0.0 < self.success_fraction <= 1.0:
            raise SimError(f"{name}.success_fraction must be in (0, 1], got {self.success_fraction}")
        if not 0 <= self.perturb_shift[0] <= self.perturb_shift[1] or self.perturb_duration <= 0:
            raise SimError(f"{name}: perturb_shift must be 0 <= low <= high and perturb_duration > 0")
        if max(self.tilt_deg, *self.perturb_tilt_deg) > 15.0 or min(self.tilt_deg, *self.perturb_tilt_deg) < 0:
            raise SimError(f"{name}: tilt_deg and perturb_tilt_deg must be in [0, 15] degrees")


@register_task("wipe")
class Wipe(ArmTask):
    command_mode = "impedance"
    config_class = WipeConfig
    expert_class = WipeExpert

    def action_spec(self) -> Spec:
        c = self.config
        return Spec((3,), low=c.workspace_low, high=c.workspace_high, names=("ee_x", "ee_y", "ee_z"))

    def _state_spec(self) -> dict[str, Spec]:
        nx, ny = self.config.grid
        return {
            "ee_pos": Spec((3,), names=("x", "y", "z")),
            "surface_pos": Spec((3,), names=("x", "y", "z")),
            "surface_quat": Spec((4,), names=("qx", "qy", "qz", "qw")),
            "surface_normal": Spec((3,), names=("nx", "ny", "nz")),
            "wrench": Spec((6,), names=("fx", "fy", "fz", "tx", "ty", "tz")),
            "contact_force": Spec((1,), names=("normal_force",)),
            "wiped_fraction": Spec((1,), names=("fraction",)),
            "wiped": Spec((nx * ny,)),
        }

    # --- scene ----------------------------------------------------------------------------------
    def _build_scene(self) -> None:
        cfg, c = self.config, self.world.client
        self.table = self.world.add_box((0.9, 0.9, 0.02), (0.3, 0.0, -0.02), mass=0.0, rgba=(0.85, 0.85, 0.8, 1.0))
        half = [v / 2 for v in cfg.board_size]
        vis = c.createVisualShape(c.GEOM_BOX, halfExtents=half, rgbaColor=[0.55, 0.55, 0.6, 1.0])
        col = c.createCollisionShape(c.GEOM_BOX, halfExtents=half)
        self.board = c.createMultiBody(baseMass=0.0, baseCollisionShapeIndex=col, baseVisualShapeIndex=vis)
        c.changeDynamics(self.board, -1, lateralFriction=cfg.board_friction, spinningFriction=0.001,
                         rollingFriction=0.0)
        self.objects.append(self.board)
        (sx, sy), (nx, ny) = cfg.area_size, cfg.grid
        cell = c.createVisualShape(c.GEOM_BOX, halfExtents=[sx / nx / 2, sy / ny / 2, 0.0005], rgbaColor=DIRTY)
        self._cells = [c.createMultiBody(baseMass=0.0, baseVisualShapeIndex=cell) for _ in range(nx * ny)]
        self._cell_uv = [((ix + 0.5) * sx / nx - sx / 2, (iy + 0.5) * sy / ny - sy / 2)
                         for iy in range(ny) for ix in range(nx)]                  # row-major, like `wiped`
        self.ft = WristFT(self.world, self.robot)
        self.ft.connect()
        self.wiped = np.zeros(cfg.grid[::-1], dtype=bool)        # [row (board y), column (board x)]
        self.force = 0.0
        self._motion: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int] | None = None
        self.set_surface(np.array(cfg.center), np.array([0.0, 0.0, 0.0, 1.0]))   # nominal pose until a reset

    def _robot_config(self, cls: type):
        """The robot's defaults with its impedance damping scaled by `damping_scale`: the Panda's default
        damping (50 N m s/rad on joints 1-3) chatters at 1 kHz when the shoulder is nearly straight
        (joint 2 below ~0.2 rad, the tool low and close to the base, where this task works); half of it
        is stable there and still well damped."""
        base = cls.config_class()
        damping = tuple(d * self.config.damping_scale for d in base.damping)
        return cls.config_class(visual_meshes="collision", damping=damping)

    def build(self) -> Wipe:
        if not self.built:
            super().build()
            self._make_sponge()           # needs the end-effector link, known once ArmTask.build is done
            self._tool_bodies = (self.sponge, self.robot.body_id)
            fc, dt = self.config.force_cutoff_hz, self.world.dt
            self._force_alpha = 1.0 if fc == 0 else dt / (dt + 1.0 / (2.0 * math.pi * fc))
        return self

    def _make_sponge(self) -> None:
        """A soft sphere fixed under the fingers (a constraint to the hand), colliding with nothing of the robot."""
        cfg, c, robot = self.config, self.world.client, self.robot
        r = cfg.sponge_radius
        self.sponge = c.createMultiBody(
            baseMass=0.02, baseCollisionShapeIndex=c.createCollisionShape(c.GEOM_SPHERE, radius=r),
            baseVisualShapeIndex=c.createVisualShape(c.GEOM_SPHERE, radius=r, rgbaColor=[0.95, 0.85, 0.2, 1.0]))
        for link in range(-1, c.getNumJoints(robot.body_id)):
            c.setCollisionFilterPair(self.sponge, robot.body_id, -1, link, 0)
        self._sponge_in_ee = [0.0, 0.0, self.sponge_offset]                      # tool z points down
        inertial = c.getDynamicsInfo(robot.body_id, self.ee_index)[3:5]           # constraint frames are COM frames
        anchor, _ = c.multiplyTransforms(*c.invertTransform(*inertial), self._sponge_in_ee, [0, 0, 0, 1])
        self._sponge_joint = c.createConstraint(robot.body_id, self.ee_index, self.sponge, -1, c.JOINT_FIXED,
                                                [0, 0, 0], anchor, [0, 0, 0])
        c.changeConstraint(self._sponge_joint, maxForce=1000.0)
        kw = {"contactStiffness": cfg.sponge_stiffness, "contactDamping": cfg.sponge_damping} \
            if cfg.sponge_stiffness > 0 else {}
        c.changeDynamics(self.sponge, -1, lateralFriction=1.0, spinningFriction=0.001, rollingFriction=0.0, **kw)

    def _place_sponge(self) -> None:
        c = self.world.client
        pos, quat = self.ee_pose()
        p, q = c.multiplyTransforms(pos.tolist(), quat.tolist(), self._sponge_in_ee, [0, 0, 0, 1])
        c.resetBasePositionAndOrientation(self.sponge, p, q)
        c.resetBaseVelocity(self.sponge, [0, 0, 0], [0, 0, 0])

    def close(self) -> None:
        if self.built and self.world.connected:
            self.ft.disconnect()
            c = self.world.client
            if self.robot.body_id is not None:      # removing the robot already removed its constraints
                c.removeConstraint(self._sponge_joint)
            for body in (self.sponge, self.board, self.table, *self._cells):
                c.removeBody(body)
        super().close()

    def _reset_scene(self, rng: np.random.Generator) -> None:
        cfg, c = self.config, self.world.client
        center = np.array(cfg.center) + rng.uniform(-1.0, 1.0, 3) * np.array(cfg.center_range)
        yaw = c.getQuaternionFromEuler([0.0, 0.0, float(rng.uniform(-cfg.yaw_range, cfg.yaw_range))])
        tilt = _tilt_quat(rng, 0.0, cfg.tilt_deg)
        self.set_surface(center, np.array(c.multiplyTransforms([0, 0, 0], tilt, [0, 0, 0], yaw)[1]))
        for k in np.flatnonzero(self.wiped):
            c.changeVisualShape(self._cells[k], -1, rgbaColor=DIRTY)
        self.wiped[:] = False
        self.force = 0.0
        self._motion = None
        start = center + np.array([0.0, 0.0, 0.08])
        self.place_ee(start, gripper=0.0)
        self._place_sponge()
        self.move_ee(start, gripper=0.0, mode=ControlMode.IMPEDANCE)
        self.ft.disconnect()                           # restart the F/T filter: no state from the last episode
        self.ft.connect()
        self.ft.clear_bias()
        self._perturb_step = None                      # (Task.reset draws it after this hook) none while settling
        self.world.step(self.world.steps_for(0.05))   # settle the hand and the F/T filter, then tare
        self.ft.bias()
        self.force = 0.0

    def set_surface(self, center, quat) -> None:
        """Put the board so that its top face's centre (the area centre) is at `center`, oriented `quat`."""
        c = self.world.client
        down = [0.0, 0.0, -self.config.board_size[2] / 2]
        pos, _ = c.multiplyTransforms([float(v) for v in center], [float(v) for v in quat], down, [0, 0, 0, 1])
        c.resetBasePositionAndOrientation(self.board, pos, [float(v) for v in quat])
        self._surface = (np.asarray(center, dtype=float), np.asarray(quat, dtype=float))
        self._rotation = quat_matrix(self._surface[1])
        self._cells_stale = True

    def _sync_cells(self) -> None:
        """Put the cell patches (visual only) back on the board after it moved."""
        c, (center, quat) = self.world.client, self._surface
        for body, (u, v) in zip(self._cells, self._cell_uv, strict=True):
            pos = center + self._rotation @ np.array([u, v, 0.0005])
            c.resetBasePositionAndOrientation(body, pos.tolist(), quat.tolist())
        self._cells_stale = False

    @property
    def tool_length(self) -> float:
        """How far below the end-effector point the sponge's lowest point is (tool pointing down)."""
        return self.sponge_offset + self.config.sponge_radius

    @property
    def sponge_offset(self) -> float:
        """The sponge centre's distance below the end-effector point (config, or the robot's default)."""
        offset = self.config.sponge_offset or SPONGE_OFFSETS.get(self.config.robot)
        if offset is None:
            raise SimError(f"{self.name}: no sponge offset known for robot '{self.config.robot}'; set sponge_offset")
        return offset

    def surface_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """(area centre (3,), quaternion xyzw (4,)) of the board's top face."""
        return self._surface[0].copy(), self._surface[1].copy()

    def surface_rotation(self) -> np.ndarray:
        return self._rotation.copy()

    # --- action, contact and observation -------------------------------------------------------------
    def _apply_action(self, action: np.ndarray) -> None:
        self.move_ee(action, gripper=0.0, mode=ControlMode.IMPEDANCE)

    def _on_step(self) -> None:
        self._move_surface()
        if self._cells_stale and self.world.steps % self.physics_steps_per_step == 0:
            self._sync_cells()                          # for cameras that render between observations
        cfg = self.config
        contacts = self.world.client.getContactPoints(bodyA=self.board)     # with the sponge, or the fingers
        raw = sum(p[9] for p in contacts if p[2] in self._tool_bodies)
        self.force += self._force_alpha * (raw - self.force)
        if contacts and abs(self.force - cfg.target_force) <= cfg.force_band:
            for p in contacts:
                if p[2] == self.sponge and p[9] > 0.0:
                    self._mark(p[5])

    def _mark(self, position) -> None:
        """Mark the cell containing the world point `position` (on the board) as wiped."""
        cfg = self.config
        d = np.subtract(position, self._surface[0])
        u, v = d @ self._rotation[:, 0], d @ self._rotation[:, 1]           # board-frame coordinates
        ix = math.floor((u / cfg.area_size[0] + 0.5) * cfg.grid[0])
        iy = math.floor((v / cfg.area_size[1] + 0.5) * cfg.grid[1])
        if 0 <= ix < cfg.grid[0] and 0 <= iy < cfg.grid[1] and not self.wiped[iy, ix]:
            self.wiped[iy, ix] = True
            self.world.client.changeVisualShape(self._cells[iy * cfg.grid[0] + ix], -1, rgbaColor=CLEAN)

    def _observe_state(self) -> dict[str, np.ndarray]:
        if self._cells_stale:
            self._sync_cells()
        return {
            "ee_pos": self.ee_pose()[0],
            "surface_pos": self._surface[0],
            "surface_quat": self._surface[1],
            "surface_normal": self.surface_rotation()[:, 2],
            "wrench": self.ft.read(),
            "contact_force": np.array([self.force]),
            "wiped_fraction": np.array([self.progress()]),
            "wiped": self.wiped.reshape(-1).astype(float),
        }

    def render(self, width: int = 256, height: int = 256) -> np.ndarray:
        if self._cells_stale:
            self._sync_cells()
        return super().render(width, height)

    # --- scoring --------------------------------------------------------------------------------
    def progress(self) -> float:
        return float(self.wiped.mean())

    def success(self) -> bool:
        return self.progress() >= self.config.success_fraction

    # --- perturbation ---------------------------------------------------------------------------
    def _perturb(self, rng: np.random.Generator) -> None:
        """Start moving the board: up or down by `perturb_shift`, tilted by `perturb_tilt_deg` more."""
        cfg, c = self.config, self.world.client
        center, quat = self.surface_pose()
        goal_center = center + np.array([0.0, 0.0, rng.choice([-1.0, 1.0]) * rng.uniform(*cfg.perturb_shift)])
        tilt = _tilt_quat(rng, *cfg.perturb_tilt_deg)
        goal_quat = np.array(c.multiplyTransforms([0, 0, 0], tilt, [0, 0, 0], quat.tolist())[1])
        self._motion = (center, quat, goal_center, goal_quat, self.world.steps)

    def _move_surface(self) -> None:
        """Advance the kinematic board motion started by `_perturb` (smoothstep in time)."""
        if self._motion is None:
            return
        c0, q0, c1, q1, start = self._motion
        t = min(1.0, (self.world.steps - start) / self.world.steps_for(self.config.perturb_duration))
        s = t * t * (3.0 - 2.0 * t)
        self.set_surface(c0 + s * (c1 - c0), self.world.client.getQuaternionSlerp(q0.tolist(), q1.tolist(), s))
        if t >= 1.0:
            self._motion = None


def _tilt_quat(rng: np.random.Generator, low_deg: float, high_deg: float) -> list[float]:
    """A rotation by a random angle in [low, high] degrees about a random horizontal axis."""
    heading = rng.uniform(0.0, 2.0 * np.pi)
    angle = np.deg2rad(rng.uniform(low_deg, high_deg))
    axis = np.array([np.cos(heading), np.sin(heading), 0.0])
    return [*(axis * np.sin(angle / 2)).tolist(), float(np.cos(angle / 2))]
