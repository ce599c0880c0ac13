"""`KinematicArm`: an ideal device model behind the `Robot` interface ("kinematic_arm").

Position commands are tracked with a first-order lag (`time_constant`) whose speed is capped by
the joint velocity limits, inside the position limits. Time comes from an injectable nanosecond
clock (default: the process wall clock, like the node clock), and the state advances whenever it
is read or written. It records what it was told (`written`, `safe_stops`) so demos and tests
can check the control loop above it without mocking anything.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from robot_stack.clock import NS
from robot_stack.demo_nodes import HOME, JOINT_NAMES, LOWER_LIMITS, UPPER_LIMITS
from robot_stack.errors import ConfigError, RobotStackError
from robot_stack.robot.interface import (
    ControlMode,
    JointCommand,
    JointLimits,
    Robot,
    RobotConfig,
    RobotState,
    register_robot,
)


class DeviceNotConnected(RobotStackError):
    pass


class UnsupportedCommand(RobotStackError, ValueError):
    pass


@dataclass(frozen=True)
class KinematicArmConfig(RobotConfig):
    name: str = "kinematic_arm"
    joint_names: tuple[str, ...] = tuple(JOINT_NAMES)
    lower: tuple[float, ...] = tuple(LOWER_LIMITS)
    upper: tuple[float, ...] = tuple(UPPER_LIMITS)
    velocity: tuple[float, ...] = (2.175, 2.175, 2.175, 2.175, 2.61, 2.61, 2.61)
    effort: tuple[float, ...] = (87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0)
    initial: tuple[float, ...] = tuple(HOME)
    time_constant: float = 0.05   # s
    history: int = 100_000        # written commands kept

    def __post_init__(self) -> None:
        n = len(self.joint_names)
        where = "KinematicArmConfig"
        if n == 0 or len(set(self.joint_names)) != n:
            raise ConfigError(where, "joint_names", f"need distinct names, got {list(self.joint_names)}")
        for field in ("lower", "upper", "velocity", "effort", "initial"):
            values = np.asarray(getattr(self, field), dtype=np.float64)
            if values.shape != (n,) or not np.all(np.isfinite(values)):
                raise ConfigError(where, field, f"need {n} finite numbers, got {getattr(self, field)!r}")
        if np.any(np.asarray(self.lower) > np.asarray(self.upper)):
            raise ConfigError(where, "lower", "exceeds upper")
        if min(self.velocity) <= 0:
            raise ConfigError(where, "velocity", "limits must be > 0")
        if not self.time_constant > 0:
            raise ConfigError(where, "time_constant", f"must be > 0, got {self.time_constant!r}")
        if self.history < 1:
            raise ConfigError(where, "history", f"must be >= 1, got {self.history!r}")


@register_robot("kinematic_arm")
class KinematicArm(Robot):
    def __init__(self, config: KinematicArmConfig | None = None, *, clock: Callable[[], int] = time.time_ns):
        self.config = config or KinematicArmConfig()
        c = self.config
        self._clock = clock
        self._limits = JointLimits(*(np.asarray(v, dtype=np.float64) for v in (c.lower, c.upper, c.velocity, c.effort)))
        self.position = np.clip(np.asarray(c.initial, dtype=np.float64), self._limits.lower, self._limits.upper)
        self.velocity = np.zeros_like(self.position)
        self.target = self.position.copy()
        self.connected = False
        self.stopped = False
        self.safe_stops = 0
        self.written: deque[tuple[int, np.ndarray]] = deque(maxlen=c.history)  # (stamp_ns, target)
        self._last_ns: int | None = None

    @property
    def joint_names(self) -> list[str]:
        return list(self.config.joint_names)

    @property
    def limits(self) -> JointLimits:
        return self._limits

    def connect(self) -> None:
        self.connected = True
        self._last_ns = self._clock()

    def disconnect(self) -> None:
        self.connected = False

    def read(self) -> RobotState:
        self._require_connected()
        now = self._advance()
        return RobotState(now, self.position.copy(), self.velocity.copy(), np.zeros_like(self.position))

    def write(self, command: JointCommand) -> None:
        self._require_connected()
        if command.mode is not ControlMode.POSITION or command.position is None:
            raise UnsupportedCommand(f"{self.kind} takes POSITION commands with positions, got {command.mode.name}")
        position = np.asarray(command.position, dtype=np.float64)
        if position.shape != self.position.shape or not np.all(np.isfinite(position)):
            raise UnsupportedCommand(f"{self.kind} needs {self.position.size} finite positions, got {position!r}")
        now = self._advance()
        self.target = np.clip(position, self._limits.lower, self._limits.upper)
        self.stopped = False
        self.written.append((now, self.target.copy()))

    def safe_stop(self) -> None:
        """Hold where the arm is now; works whether or not it is connected."""
        if self.connected:
            self._advance()
        self.target = self.position.copy()
        self.velocity = np.zeros_like(self.position)
        self.stopped = True
        self.safe_stops += 1

    def _require_connected(self) -> None:
        if not self.connected:
            raise DeviceNotConnected(f"{self.kind} '{self.config.name}' is not connected")

    def _advance(self) -> int:
        """Integrate the lagged, velocity-limited tracking up to now; returns now (ns)."""
        now = self._clock()
        dt = max(now - (self._last_ns if self._last_ns is not None else now), 0) / NS
        self._last_ns = now
        if dt > 0:
            step = (self.target - self.position) * (1.0 - math.exp(-dt / self.config.time_constant))
            vmax = self._limits.velocity * dt
            new = np.clip(self.position + np.clip(step, -vmax, vmax), self._limits.lower, self._limits.upper)
            self.velocity = (new - self.position) / dt
            self.position = new
        return now
