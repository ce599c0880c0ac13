"""`push_t`: push a T-shaped block onto a goal pose with the arm's closed gripper (Diffusion Policy's task).

Scene: a table (top at z = 0), the Panda at the origin, a T block (bar on top, stem below, in its
own frame the bar spans y in [0, bar_w] and the stem hangs to -stem_l, origin at the centre of mass)
and a green, collision-free outline of the goal pose. The action is a planar end-effector target
(x, y) at a fixed tool height; the closed fingers are the pusher.

Coverage (`progress()`) is the fraction of the goal T's area covered by the block, computed on a
fixed set of points sampled in the goal T (`coverage_resolution` apart); success is coverage >=
`success_coverage` (0.95 as in Diffusion Policy). Perturbation: a sideways shove of the block.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sim.camera import FixedCameraConfig
from sim.tasks.arm import ArmTask, ArmTaskConfig
from sim.tasks.base import Spec, register_task
from sim.tasks.push_t_expert import PushTExpert
from sim.world import SimError


@dataclass(frozen=True)
class PushTConfig(ArmTaskConfig):
    max_steps: int = 300
    solver_iterations: int = 20                      # enough for pushing; 2x the env steps/s of 50
    fixed_camera: FixedCameraConfig = field(default_factory=lambda: FixedCameraConfig(
        eye=(0.9, -0.75, 1.0), target=(0.55, 0.0, 0.0), up=(0.0, 0.0, 1.0)))
    bar: tuple[float, float] = (0.20, 0.05)          # T top bar length x width [m]
    stem: tuple[float, float] = (0.05, 0.15)         # stem width x length [m]
    height: float = 0.04
    mass: float = 0.3
    friction: float = 0.35                           # block lateral friction
    goal: tuple[float, float, float] = (0.55, 0.0, np.pi / 4)     # x, y, yaw
    start_low: tuple[float, float, float] = (0.47, -0.12, -np.pi)   # block start range
    start_high: tuple[float, float, float] = (0.63, 0.12, np.pi)
    min_start_coverage_gap: float = 0.3              # start coverage must be below 1 - this
    tool_height: float = 0.03                        # ee (grasp target) z while pushing
    workspace_low: tuple[float, float] = (0.28, -0.32)
    workspace_high: tuple[float, float] = (0.82, 0.32)
    success_coverage: float = 0.95
    coverage_resolution: float = 0.004               # m between coverage sample points
    shove: tuple[float, float] = (0.02, 0.05)        # perturbation displacement range [m]

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 < self.success_coverage <= 1.0:
            raise SimError(f"PushTConfig.success_coverage must be in (0, 1], got {self.success_coverage}")
        if min(*self.bar, *self.stem, self.height, self.mass) <= 0:
            raise SimError("PushTConfig: bar, stem, height and mass must be > 0")


def t_rectangles(cfg: PushTConfig) -> np.ndarray:
    """(2, 4) rectangles [x_min, y_min, x_max, y_max] of bar and stem in the block frame (origin = COM)."""
    (bl, bw), (sw, sl) = cfg.bar, cfg.stem
    bar = np.array([-bl / 2, 0.0, bl / 2, bw])
    stem = np.array([-sw / 2, -sl, sw / 2, 0.0])
    areas = np.array([bl * bw, sw * sl])
    com_y = (areas @ np.array([bw / 2, -sl / 2])) / areas.sum()
    return np.stack([bar, stem]) - np.array([0.0, com_y, 0.0, com_y])


def to_local(points: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """World (N,2) points into the frame of planar pose (x, y, yaw)."""
    c, s = np.cos(pose[2]), np.sin(pose[2])
    d = points - pose[:2]
    return np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]], axis=1)


def to_world(points: np.ndarray, pose: np.ndarray) -> np.ndarray:
    c, s = np.cos(pose[2]), np.sin(pose[2])
    return np.stack([c * points[:, 0] - s * points[:, 1], s * points[:, 0] + c * points[:, 1]], axis=1) + pose[:2]


def signed_distance(local: np.ndarray, rects: np.ndarray) -> np.ndarray:
    """Signed distance (N,) from block-frame points to the T (negative inside)."""
    best = np.full(len(local), np.inf)
    for x0, y0, x1, y1 in rects:
        cx, cy, hx, hy = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
        qx, qy = np.abs(local[:, 0] - cx) - hx, np.abs(local[:, 1] - cy) - hy
        outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
        best = np.minimum(best, outside + np.minimum(np.maximum(qx, qy), 0))
    return best


@register_task("push_t")
class PushT(ArmTask):
    config_class = PushTConfig
    expert_class = PushTExpert

    def action_spec(self) -> Spec:
        c = self.config
        return Spec((2,), low=c.workspace_low, high=c.workspace_high, names=("ee_x", "ee_y"))

    def _state_spec(self) -> dict[str, Spec]:
        return {"agent_pos": Spec((2,), names=("x", "y")), "block_pose": Spec((3,), names=("x", "y", "yaw")),
                "goal_pose": Spec((3,), names=("x", "y", "yaw"))}

    # --- scene ----------------------------------------------------------------------------------
    def _build_scene(self) -> None:
        cfg, c = self.config, self.world.client
        self.rects = t_rectangles(cfg)
        self.world.add_box((0.9, 0.9, 0.02), (0.3, 0.0, -0.02), mass=0.0, rgba=(0.85, 0.85, 0.8, 1.0))
        self.block = self._make_t(mass=cfg.mass, rgba=(0.45, 0.55, 0.75, 1.0), collide=True)
        c.changeDynamics(self.block, -1, lateralFriction=cfg.friction, spinningFriction=0.001, rollingFriction=0.0)
        self.goal_marker = self._make_t(mass=0.0, rgba=(0.3, 0.8, 0.3, 0.6), collide=False, height=0.001)
        self.objects.append(self.block)
        x0, y0, x1, y1 = self.rects.T
        r = cfg.coverage_resolution
        xs = np.arange(x0.min() + r / 2, x1.max(), r)
        ys = np.arange(y0.min() + r / 2, y1.max(), r)
        grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
        self._goal_points_local = grid[signed_distance(grid, self.rects) < 0]       # (P, 2)
        self._goal_points = to_world(self._goal_points_local, np.array(self.config.goal, dtype=float))

    def _make_t(self, *, mass: float, rgba, collide: bool, height: float | None = None) -> int:
        c, h = self.world.client, height or self.config.height
        halves = [[(x1 - x0) / 2, (y1 - y0) / 2, h / 2] for x0, y0, x1, y1 in self.rects]
        centres = [[(x0 + x1) / 2, (y0 + y1) / 2, 0.0] for x0, y0, x1, y1 in self.rects]
        vis = c.createVisualShapeArray([c.GEOM_BOX] * 2, halfExtents=halves, visualFramePositions=centres,
                                       rgbaColors=[list(rgba)] * 2)
        col = c.createCollisionShapeArray([c.GEOM_BOX] * 2, halfExtents=halves, collisionFramePositions=centres) \
            if collide else -1
        return c.createMultiBody(baseMass=mass, baseCollisionShapeIndex=col, baseVisualShapeIndex=vis,
                                 basePosition=[0, 0, h / 2], baseInertialFramePosition=[0, 0, 0])

    def _reset_scene(self, rng: np.random.Generator) -> None:
        cfg, c = self.config, self.world.client
        goal = np.array(cfg.goal, dtype=float)
        self._goal_points = to_world(self._goal_points_local, goal)               # (P, 2) world
        c.resetBasePositionAndOrientation(self.goal_marker, [goal[0], goal[1], 0.0005], _yaw_quat(c, goal[2]))
        for _ in range(100):
            pose = rng.uniform(cfg.start_low, cfg.start_high)
            if self.coverage(pose) < 1.0 - cfg.min_start_coverage_gap:
                break
        self.set_block_pose(pose)
        agent = self._free_start(rng, pose)
        self.place_ee([agent[0], agent[1], cfg.tool_height], gripper=0.0)

    def _free_start(self, rng: np.random.Generator, block: np.ndarray) -> np.ndarray:
        """A tool start position in the workspace at least 4 cm clear of the block."""
        lo, hi = np.array(self.config.workspace_low) + 0.06, np.array(self.config.workspace_high) - 0.06
        for _ in range(100):
            p = rng.uniform(lo, hi)
            if signed_distance(to_local(p[None], block), self.rects)[0] > 0.04:
                return p
        return np.array([0.35, 0.0])

    def set_block_pose(self, pose) -> None:
        c = self.world.client
        c.resetBasePositionAndOrientation(self.block, [pose[0], pose[1], self.config.height / 2 + 1e-4],
                                          _yaw_quat(c, pose[2]))
        c.resetBaseVelocity(self.block, [0, 0, 0], [0, 0, 0])

    # --- action and observation -----------------------------------------------------------------
    def _apply_action(self, action: np.ndarray) -> None:
        self.move_ee([action[0], action[1], self.config.tool_height], gripper=0.0)

    def block_pose(self) -> np.ndarray:
        c = self.world.client
        pos, quat = c.getBasePositionAndOrientation(self.block)
        return np.array([pos[0], pos[1], c.getEulerFromQuaternion(quat)[2]])

    def _observe_state(self) -> dict[str, np.ndarray]:
        return {"agent_pos": self.ee_pose()[0][:2], "block_pose": self.block_pose(),
                "goal_pose": np.array(self.config.goal, dtype=float)}

    # --- scoring --------------------------------------------------------------------------------
    def coverage(self, pose: np.ndarray) -> float:
        """Fraction of the goal T covered by a block at `pose` (x, y, yaw): what `progress()` reports."""
        inside = signed_distance(to_local(self._goal_points, pose), self.rects) < 0
        return float(inside.mean())

    def progress(self) -> float:
        return self.coverage(self.block_pose())

    def success(self) -> bool:
        return self.progress() >= self.config.success_coverage

    def _perturb(self, rng: np.random.Generator) -> None:
        """Shove the block sideways by a random 2-5 cm (as if knocked), keeping its orientation."""
        pose = self.block_pose()
        angle = rng.uniform(0, 2 * np.pi)
        pose[:2] += rng.uniform(*self.config.shove) * np.array([np.cos(angle), np.sin(angle)])
        self.set_block_pose(pose)


def _yaw_quat(client, yaw: float) -> list[float]:
    return list(client.getQuaternionFromEuler([0.0, 0.0, float(yaw)]))
