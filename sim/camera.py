"""Simulated pinhole cameras: a fixed one (eye/target/up) and a wrist one riding on a robot link.

Images come from `getCameraImage` with the tiny (CPU) renderer, so they work in DIRECT mode on any
machine: `render()` gives an HxWx3 uint8 RGB array and an HxW float32 depth in meters.
`camera_info()` is the matching sensor_msgs/CameraInfo (no distortion, "plumb_bob" with zero D),
with fx = fy = h / (2 tan(fovy / 2)), cx = w / 2, cy = h / 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from robot_stack import convert, messages
from robot_stack.clock import Time
from sim.world import SimError, SimWorld

# Link a wrist camera rides on, per robot kind (robots add theirs where they are defined).
WRIST_LINKS: dict[str, str] = {"sim_panda": "panda_hand", "sim_iiwa": "lbr_iiwa_link_7"}


@dataclass(frozen=True)
class CameraConfig:
    width: int = 128
    height: int = 96
    fov_deg: float = 60.0          # vertical field of view
    near: float = 0.01             # m
    far: float = 5.0               # m
    frame_id: str = "camera_optical_frame"

    def __post_init__(self):
        if self.width <= 0 or self.height <= 0:
            raise SimError(f"CameraConfig width/height must be > 0, got {self.width}x{self.height}")
        if not 0.0 < self.fov_deg < 180.0:
            raise SimError(f"CameraConfig.fov_deg must be in (0, 180), got {self.fov_deg}")
        if not 0.0 < self.near < self.far:
            raise SimError(f"CameraConfig needs 0 < near < far, got near={self.near} far={self.far}")


@dataclass(frozen=True)
class FixedCameraConfig(CameraConfig):
    eye: tuple[float, float, float] = (1.2, 0.0, 0.8)
    target: tuple[float, float, float] = (0.3, 0.0, 0.2)
    up: tuple[float, float, float] = (0.0, 0.0, 1.0)


@dataclass(frozen=True)
class WristCameraConfig(CameraConfig):
    link: str = "panda_hand"                               # link the camera is rigidly attached to
    offset: tuple[float, float, float] = (0.05, 0.0, 0.04)  # camera position in the link frame
    forward: tuple[float, float, float] = (0.0, 0.0, 1.0)   # viewing direction in the link frame
    up: tuple[float, float, float] = (1.0, 0.0, 0.0)        # image-up direction in the link frame
    frame_id: str = "wrist_camera_optical_frame"


class SimCamera:
    """Base: intrinsics, rendering and messages; subclasses say where the camera looks from."""

    def __init__(self, world: SimWorld, config: CameraConfig):
        self.world = world
        self.config = config
        self.jitter: np.ndarray | None = None    # 2x3: eye and target offsets [m] (domain randomization)
        self.light: dict[str, Any] | None = None  # getCameraImage light keywords (domain randomization)

    def view(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(eye, target, up) in world coordinates."""
        raise NotImplementedError

    @property
    def intrinsics(self) -> np.ndarray:
        c = self.config
        f = c.height / (2.0 * math.tan(math.radians(c.fov_deg) / 2.0))
        return np.array([[f, 0.0, c.width / 2.0], [0.0, f, c.height / 2.0], [0.0, 0.0, 1.0]])

    def render(self) -> tuple[np.ndarray, np.ndarray]:
        """(rgb HxWx3 uint8, depth HxW float32 meters) from the current world state."""
        cl, c = self.world.client, self.config
        eye, target, up = self.view()
        if self.jitter is not None:
            eye, target = eye + self.jitter[0], target + self.jitter[1]
        view = cl.computeViewMatrix(eye.tolist(), target.tolist(), up.tolist())
        proj = cl.computeProjectionMatrixFOV(c.fov_deg, c.width / c.height, c.near, c.far)
        _, _, rgba, depth, _ = cl.getCameraImage(
            c.width, c.height, viewMatrix=view, projectionMatrix=proj, renderer=cl.ER_TINY_RENDERER,
            flags=cl.ER_NO_SEGMENTATION_MASK, **(self.light or {}),
        )
        rgb = np.asarray(rgba, dtype=np.uint8).reshape(c.height, c.width, 4)[:, :, :3].copy()
        zbuf = np.asarray(depth, dtype=np.float64).reshape(c.height, c.width)
        meters = (c.far * c.near / (c.far - (c.far - c.near) * zbuf)).astype(np.float32)
        return rgb, meters

    def rgb(self) -> np.ndarray:
        return self.render()[0]

    def camera_info(self, stamp: Time | None = None) -> Any:
        c, k = self.config, self.intrinsics
        stamp = self.world.now() if stamp is None else stamp
        p = np.zeros((3, 4))
        p[:, :3] = k
        return messages.make(
            "sensor_msgs/msg/CameraInfo", header=convert.header(stamp, c.frame_id), height=c.height,
            width=c.width, distortion_model="plumb_bob", d=np.zeros(5), k=k.reshape(-1),
            r=np.eye(3).reshape(-1), p=p.reshape(-1),
        )

    def image_msg(self, stamp: Time | None = None) -> Any:
        """sensor_msgs/Image (rgb8) rendered now, stamped `stamp` (default: the world's sim time)."""
        stamp = self.world.now() if stamp is None else stamp
        return convert.image(self.rgb(), "rgb8", stamp=stamp, frame_id=self.config.frame_id)


class FixedCamera(SimCamera):
    def __init__(self, world: SimWorld, config: FixedCameraConfig | None = None):
        super().__init__(world, config or FixedCameraConfig())

    def view(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        c = self.config
        return np.array(c.eye, float), np.array(c.target, float), np.array(c.up, float)


class WristCamera(SimCamera):
    """A camera rigidly attached to `config.link` of `robot` (anything with body_id and link_index)."""

    def __init__(self, world: SimWorld, robot: Any, config: WristCameraConfig | None = None):
        super().__init__(world, config or WristCameraConfig())
        self.robot = robot

    def view(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        c, cl = self.config, self.world.client
        state = cl.getLinkState(self.robot.body_id, self.robot.link_index(c.link), computeForwardKinematics=True)
        pos, quat = np.array(state[4]), state[5]          # link frame in world
        rot = np.array(cl.getMatrixFromQuaternion(quat)).reshape(3, 3)
        eye = pos + rot @ np.array(c.offset, float)
        forward = rot @ np.array(c.forward, float)
        return eye, eye + forward, rot @ np.array(c.up, float)
