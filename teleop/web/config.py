"""Frozen configuration of the AR page: the server and the controller -> end-effector frame map."""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass

from teleop.web.errors import ARPageConfigError, TokenRequired

AXES = ("x", "y", "z")
LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and `localhost`; 0.0.0.0, "" and every other name are not."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServerConfig:
    """Where the page is served and what a browser may send.

    `host` defaults to loopback; any other address needs a `token`, which a browser gives as
    `?token=` on the page/WebSocket URL or in its first (`hello`) message. Cross-origin browser
    WebSockets are refused whatever the host (see `allowed_origins`).
    """

    host: str = "127.0.0.1"
    port: int = 8765                    # 0: any free port (tests)
    token: str = ""
    max_message_bytes: int = 4096       # a longer client message is dropped and counted
    send_hz: float = 60.0               # the pose rate the page is asked to send
    camera_max_hz: float = 30.0         # frames are forwarded at most this often (newest wins)
    jpeg_quality: int = 70
    hello_timeout_s: float = 2.0        # a client without a token must authenticate this fast
    # Browsers send `Origin` with every WebSocket; only the page's own origin (and these, e.g. an
    # HTTPS reverse proxy's "https://robot.lab:8443") may connect, so no other web site the operator
    # visits can drive the robot through localhost. Clients without `Origin` (not browsers) pass.
    allowed_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.host:
            raise ARPageConfigError("ServerConfig.host: must not be empty (use 0.0.0.0 for every interface)")
        if not 0 <= self.port <= 65535:
            raise ARPageConfigError(f"ServerConfig.port: must be 0..65535, got {self.port}")
        for name in ("max_message_bytes", "send_hz", "camera_max_hz", "hello_timeout_s"):
            if not getattr(self, name) > 0:
                raise ARPageConfigError(f"ServerConfig.{name}: must be > 0, got {getattr(self, name)!r}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ARPageConfigError(f"ServerConfig.jpeg_quality: must be 1..100, got {self.jpeg_quality}")
        if not self.loopback and not self.token:
            raise TokenRequired(
                f"ServerConfig.token: binding {self.host} exposes the robot beyond localhost; "
                "set a token (browsers then open http://<host>:<port>/?token=...)")

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


@dataclass(frozen=True)
class FrameMapConfig:
    """Controller (WebXR: x right, y up, -z forward) -> robot base frame (x forward, y left, z up).

    `axes[i]` names the controller axis (with sign) that robot axis i follows; the default maps
    WebXR's forward/left/up onto the robot's. Motion is scaled by `scale` and is relative to where
    the operator engaged (clutch); the first engagement anchors at `home` (robot frame, metres).
    """

    scale: float = 1.0
    axes: tuple[str, str, str] = ("-z", "-x", "y")
    home: tuple[float, float, float] = (0.5, 0.0, 0.2)
    frame_id: str = "base_link"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ARPageConfigError(f"FrameMapConfig.scale: must be a finite number > 0, got {self.scale!r}")
        if len(self.axes) != 3 or sorted(a.lstrip("+-") for a in self.axes) != list(AXES):
            raise ARPageConfigError("FrameMapConfig.axes: need a signed permutation of x, y, z "
                                    f"such as ['-z', '-x', 'y'], got {self.axes!r}")
        if len(self.home) != 3 or not all(math.isfinite(v) for v in self.home):
            raise ARPageConfigError(f"FrameMapConfig.home: need 3 finite numbers, got {self.home!r}")
