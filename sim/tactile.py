"""Simulated vision-tactile (GelSight-like) pads: a marker displacement field from pybullet contacts.

A pad is a rectangle fixed to a robot link (`TactilePadConfig`: centre offset, outward normal and
shear-x axis in the link frame, size). Its frame has z = the outward normal, x = `x_axis`, y = z × x;
markers sit on a rows x cols grid over the pad (row-major, columns along x, rows along y).

Model: the gel is a linear elastic layer. Every contact i of the last physics step that lies on the
pad (in-plane position p_i inside the rectangle, within `depth_tolerance` of the pad plane, its
normal within 60 degrees of the pad normal) contributes the force it exerts on the pad, split in the
pad frame into a compression N_i = -f_i·z >= 0 and a shear t_i = (f_i·x, f_i·y). Each force is
spread over the markers m by a Gaussian kernel w_s(r) = exp(-r^2 / 2 s^2) (peak 1, s = the spread
length), so

    u_n(m) = c_n * sum_i N_i * w_sn(|m - p_i|)        u_t(m) = c_t * sum_i t_i * w_st(|m - p_i|)

(c = compliance in m/N), then saturates softly at what the gel allows: normal indentation
d_max * tanh(u_n / d_max) with d_max = `gel_thickness`, shear magnitude s_max * tanh(|u_t| / s_max).
`read()` returns [shear_x, shear_y, normal] per marker with normal = indentation depth (>= 0, into
the gel) and shear along the force the object exerts on the gel (an object dragged along +x drags
the markers along +x).
pybullet reports 1-4 contact points per touching pair (a flat box on the Panda's finger hull often
gives one, at the hull's most protruding vertex), so the field is a sum of a few blobs whose width is
the spread length, not an image of the contact patch.

Contact forces come from `getContactPoints()` without filters: pybullet's filtered query swaps
bodies A/B to match the filter but flips only the normal, not the friction directions, so the sign
of the friction force could not be recovered. For the raw contact, the force on body A is
N n_B + f1 d1 + f2 d2 and the force on body B its negative.

Contact points (and the link pose) are those of the last `stepSimulation`: the pad computes the
field at read time from them, once per physics step (cached by step count), so it costs nothing
while nobody reads it. Read it after stepping; after a teleport the values are stale until the
next step. There is no temporal filter: like a 30-60 Hz camera frame, a read is one snapshot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from robot_stack import convert, messages
from robot_stack.clock import Time
from sim.world import SimError, SimWorld

TACTILE_FRAME = "robot_stack_msgs/msg/TactileFrame"
_MIN_NORMAL_COS = math.cos(math.radians(60.0))   # contacts on side faces/edges do not load the gel


@dataclass(frozen=True)
class TactilePadConfig:
    link: str                                          # robot link the pad is mounted on
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)   # pad centre in the link frame [m]
    normal: tuple[float, float, float] = (0.0, 0.0, 1.0)   # pad z: out of the finger surface (link frame)
    x_axis: tuple[float, float, float] = (1.0, 0.0, 0.0)   # pad x (shear x, marker columns), link frame
    size: tuple[float, float] = (0.024, 0.018)        # extent along pad x, y [m]
    rows: int = 7                                      # marker rows (along pad y)
    cols: int = 9                                      # marker columns (along pad x)
    gel_thickness: float = 0.002                       # max normal indentation [m]
    max_shear: float = 0.001                           # max in-plane marker displacement [m]
    normal_compliance: float = 5e-5                    # [m/N]: 20 N on one spot -> ~1 mm before saturation
    shear_compliance: float = 1e-4                     # [m/N]
    normal_spread: float = 0.003                       # Gaussian sigma of the indentation kernel [m]
    shear_spread: float = 0.004                        # Gaussian sigma of the shear kernel [m]
    depth_tolerance: float = 0.004                     # max distance of a contact from the pad plane [m]
    sensor_id: str = ""                                # "" -> the link name
    frame_id: str = ""                                 # "" -> "<sensor_id>_pad"

    def __post_init__(self):
        name = type(self).__name__
        if not self.link:
            raise SimError(f"{name}.link must name a robot link")
        if self.rows < 1 or self.cols < 1:
            raise SimError(f"{name}.rows/cols must be >= 1, got {self.rows} x {self.cols}")
        if len(self.size) != 2 or min(self.size) <= 0:
            raise SimError(f"{name}.size must be two lengths > 0 [m], got {self.size}")
        for field in ("gel_thickness", "max_shear", "normal_compliance", "shear_compliance",
                      "normal_spread", "shear_spread", "depth_tolerance"):
            if not getattr(self, field) > 0:
                raise SimError(f"{name}.{field} must be > 0, got {getattr(self, field)}")
        for field in ("offset", "normal", "x_axis"):
            if len(getattr(self, field)) != 3:
                raise SimError(f"{name}.{field} must be 3 values, got {getattr(self, field)}")
        n, x = np.asarray(self.normal, float), np.asarray(self.x_axis, float)
        if np.linalg.norm(n) < 1e-9 or np.linalg.norm(x) < 1e-9:
            raise SimError(f"{name}.normal and x_axis must be non-zero, got {self.normal}, {self.x_axis}")
        if abs(n @ x) > 1e-6 * np.linalg.norm(n) * np.linalg.norm(x):
            raise SimError(f"{name}.normal {self.normal} and x_axis {self.x_axis} must be orthogonal")

    @property
    def rotation(self) -> np.ndarray:
        """(3, 3): columns are the pad x, y, z axes in the link frame."""
        z = np.asarray(self.normal, float) / np.linalg.norm(self.normal)
        x = np.asarray(self.x_axis, float) / np.linalg.norm(self.x_axis)
        return np.column_stack([x, np.cross(z, x), z])

    @property
    def marker_rest(self) -> np.ndarray:
        """(rows*cols, 2) marker rest positions [x, y] in the pad frame, row-major, cell centres."""
        sx, sy = self.size
        xs = ((np.arange(self.cols) + 0.5) / self.cols - 0.5) * sx      # (cols,)
        ys = ((np.arange(self.rows) + 0.5) / self.rows - 0.5) * sy      # (rows,)
        gx, gy = np.meshgrid(xs, ys)                                     # (rows, cols) each
        return np.column_stack([gx.ravel(), gy.ravel()])

    @property
    def resolved_sensor_id(self) -> str:
        return self.sensor_id or self.link

    @property
    def resolved_frame_id(self) -> str:
        return self.frame_id or f"{self.resolved_sensor_id}_pad"


class TactilePad:
    """One pad on a link of a connected sim robot (see the module docstring for the model)."""

    def __init__(self, world: SimWorld, robot: Any, config: TactilePadConfig):
        self.world = world
        self.robot = robot
        self.config = config
        self._link: int | None = None
        self._rot = config.rotation                                     # (3, 3) pad axes in the link frame
        self._rest = config.marker_rest.astype(np.float64)              # (K, 2)
        self._cache_step = -1
        self._field = np.zeros((config.rows, config.cols, 3), np.float32)
        self._force = 0.0

    @property
    def sensor_id(self) -> str:
        return self.config.resolved_sensor_id

    @property
    def frame_id(self) -> str:
        return self.config.resolved_frame_id

    @property
    def marker_rest(self) -> np.ndarray:
        """(rows*cols, 2) float32 marker rest positions in the pad frame [m], row-major."""
        return self._rest.astype(np.float32)

    def connect(self) -> None:
        """Look up the pad's link (the robot must be connected)."""
        if getattr(self.robot, "body_id", None) is None:
            raise SimError(f"{type(self.robot).__name__} is not connected; connect the robot before its pads")
        self._link = self.robot.link_index(self.config.link)
        self._cache_step = -1

    def disconnect(self) -> None:
        self._link = None

    def pad_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """World pose of the pad frame at the last physics step: origin (3,), rotation (3, 3) (columns x, y, z)."""
        self._require()
        c = self.world.client
        state = c.getLinkState(self.robot.body_id, self._link)
        r_link = np.asarray(c.getMatrixFromQuaternion(state[5])).reshape(3, 3)
        origin = np.asarray(state[4]) + r_link @ np.asarray(self.config.offset, float)
        return origin, r_link @ self._rot

    def read(self) -> np.ndarray:
        """(rows, cols, 3) float32 displacement per marker in the pad frame [shear_x, shear_y, normal] [m]."""
        self._update()
        return self._field.copy()

    def normal_force(self) -> float:
        """Total normal force pressing on the pad [N] (sum of the compressions of its contacts)."""
        self._update()
        return self._force

    def frame_msg(self, stamp: Time | None = None) -> Any:
        """robot_stack_msgs/TactileFrame of `read()`, stamped with `stamp` (default: sim time)."""
        stamp = self.world.now() if stamp is None else stamp
        cfg = self.config
        return messages.make(
            TACTILE_FRAME, header=convert.header(stamp, self.frame_id), sensor_id=self.sensor_id,
            rows=cfg.rows, cols=cfg.cols, marker_rest=self.marker_rest.ravel(),
            displacement=self.read().ravel(), embedding=np.zeros(0, np.float32), normal_force=self.normal_force(),
        )

    # --- internals ----------------------------------------------------------------------------
    def _require(self) -> None:
        if self._link is None:
            raise SimError(f"TactilePad '{self.sensor_id}' is not connected; call connect() first")

    def _update(self) -> None:
        self._require()
        if self._cache_step == self.world.steps:
            return
        pos, force = self._pad_contacts()                               # (n, 2), (n, 3) pad frame
        self._field, self._force = self._displacement(pos, force), float(np.clip(-force[:, 2], 0.0, None).sum())
        self._cache_step = self.world.steps

    def _raw_contacts(self) -> np.ndarray:
        """(n, 9) contacts on the link, world frame: [position, normal-force direction, force on the link]."""
        body, link = self.robot.body_id, self._link
        rows = []
        for p in self.world.client.getContactPoints():
            if p[1] == body and p[3] == link:
                sign, pos = 1.0, p[5]          # the pad's link is body A: force on A = N n + f1 d1 + f2 d2
            elif p[2] == body and p[4] == link:
                sign, pos = -1.0, p[6]         # body B: the opposite force
            else:
                continue
            n, d1, d2 = np.asarray(p[7]), np.asarray(p[11]), np.asarray(p[13])
            force = sign * (p[9] * n + p[10] * d1 + p[12] * d2)
            rows.append(np.concatenate([pos, sign * n, force]))
        return np.array(rows).reshape(-1, 9)

    def _pad_contacts(self) -> tuple[np.ndarray, np.ndarray]:
        """Contacts on the pad area: in-plane positions (n, 2) and forces on the pad (n, 3), pad frame."""
        raw = self._raw_contacts()                                      # (m, 9)
        origin, rot = self.pad_pose()
        pos = (raw[:, 0:3] - origin) @ rot                              # (m, 3) pad frame
        normal = raw[:, 3:6] @ rot                                      # (m, 3) normal force direction
        force = raw[:, 6:9] @ rot                                       # (m, 3)
        half = np.asarray(self.config.size) / 2
        keep = (
            np.all(np.abs(pos[:, :2]) <= half, axis=1)
            & (np.abs(pos[:, 2]) <= self.config.depth_tolerance)
            & (-normal[:, 2] >= _MIN_NORMAL_COS)                       # pushes into the gel
        )
        return pos[keep, :2], force[keep]

    def _displacement(self, pos: np.ndarray, force: np.ndarray) -> np.ndarray:
        """(rows, cols, 3) saturated displacement of the markers for contacts at pos (n, 2) with force (n, 3)."""
        cfg = self.config
        d2 = ((self._rest[:, None, :] - pos[None, :, :]) ** 2).sum(-1)  # (K, n)
        w_n = np.exp(-d2 / (2 * cfg.normal_spread**2))                  # (K, n)
        w_t = np.exp(-d2 / (2 * cfg.shear_spread**2))                   # (K, n)
        press = np.clip(-force[:, 2], 0.0, None)                        # (n,) compression
        normal = cfg.normal_compliance * (w_n @ press)                  # (K,)
        shear = cfg.shear_compliance * (w_t @ force[:, :2])             # (K, 2)
        normal = cfg.gel_thickness * np.tanh(normal / cfg.gel_thickness)
        mag = np.linalg.norm(shear, axis=1, keepdims=True)              # (K, 1)
        scale = np.where(mag > 0, cfg.max_shear * np.tanh(mag / cfg.max_shear) / np.maximum(mag, 1e-30), 0.0)
        field = np.column_stack([shear * scale, normal])                # (K, 3)
        return field.reshape(cfg.rows, cfg.cols, 3).astype(np.float32)


# --- default pads per robot kind ------------------------------------------------------------------
def _panda_finger(link: str, side: str, y_out: float) -> TactilePadConfig:
    """Pad on the flat inner face of a Panda finger (collision hull: the face is the link plane y = 0,
    |x| <= 8.7 mm, z = 36..54 mm from the finger joint; the left finger's faces -y, the right finger's +y)."""
    return TactilePadConfig(
        link=link, offset=(0.0, 0.0, 0.045), normal=(0.0, y_out, 0.0), x_axis=(0.0, 0.0, 1.0),
        size=(0.024, 0.018), sensor_id=f"{side}_finger", frame_id=f"{link}_pad",
    )


DEFAULT_PADS: dict[str, tuple[TactilePadConfig, ...]] = {
    "sim_panda": (
        _panda_finger("panda_leftfinger", "left", -1.0),
        _panda_finger("panda_rightfinger", "right", 1.0),
    ),
}


def register_pads(kind: str, configs: tuple[TactilePadConfig, ...] | list[TactilePadConfig]) -> None:
    """Declare (or replace) the default pads of robot kind `kind` (used by `pads_for`)."""
    configs = tuple(configs)
    if not configs or not all(isinstance(c, TactilePadConfig) for c in configs):
        raise SimError(f"register_pads('{kind}'): expected one or more TactilePadConfig")
    DEFAULT_PADS[kind] = configs


def pads_for(robot: Any, world: SimWorld | None = None) -> list[TactilePad]:
    """The default (unconnected) pads of `robot` by its kind; `world` defaults to `robot.world`."""
    kind = getattr(robot, "kind", type(robot).__name__)
    if kind not in DEFAULT_PADS:
        raise SimError(f"no tactile pads for robot '{kind}'; robots with pads: {', '.join(sorted(DEFAULT_PADS))}")
    world = world if world is not None else robot.world
    return [TactilePad(world, robot, cfg) for cfg in DEFAULT_PADS[kind]]
