"""`Robot`: the one hardware interface for real arms/hands and simulated ones (DESIGN.md).

A device exposes `connect()`, `read() -> RobotState`, `write(JointCommand)`, `disconnect()`,
`safe_stop()`, its joint names and limits. Implementations take their bus/transport/simulator
in the constructor, do no I/O in `__init__`, and register with `@register_robot("name")` beside
a frozen config dataclass. The robot node (interpolation, clamping, watchdog) sits on top.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from robot_stack.errors import RobotStackError
from robot_stack.registry import Registry


class UnknownRobot(RobotStackError, KeyError):
    def __str__(self) -> str:
        return self.args[0]


class ControlMode(enum.Enum):
    POSITION = "position"      # joint position targets
    IMPEDANCE = "impedance"    # position targets with per-joint stiffness/damping
    TORQUE = "torque"          # joint torques


@dataclass(frozen=True)
class JointLimits:
    lower: np.ndarray          # rad or m, per joint
    upper: np.ndarray
    velocity: np.ndarray       # rad/s (or m/s)
    effort: np.ndarray         # N*m (or N)

    def clamp(self, position: np.ndarray) -> tuple[np.ndarray, int]:
        """Positions clamped into [lower, upper] and how many joints were outside."""
        clamped = np.clip(position, self.lower, self.upper)
        return clamped, int(np.count_nonzero(clamped != position))


@dataclass
class RobotState:
    stamp_ns: int              # capture time on the process clock (sim time under simulation)
    position: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray


@dataclass
class JointCommand:
    mode: ControlMode
    position: np.ndarray | None = None
    velocity: np.ndarray | None = None
    effort: np.ndarray | None = None
    stiffness: np.ndarray | None = None   # IMPEDANCE only
    damping: np.ndarray | None = None


@dataclass(frozen=True)
class RobotConfig:
    """Base of every robot's frozen config dataclass."""

    name: str = ""
    extra: dict = field(default_factory=dict)


class Robot(ABC):
    kind: ClassVar[str]

    @property
    @abstractmethod
    def joint_names(self) -> list[str]: ...

    @property
    @abstractmethod
    def limits(self) -> JointLimits: ...

    @abstractmethod
    def connect(self) -> None: ...

    @abstractmethod
    def read(self) -> RobotState: ...

    @abstractmethod
    def write(self, command: JointCommand) -> None: ...

    @abstractmethod
    def safe_stop(self) -> None:
        """Hold still (or go limp where that is safe) now; must work even after errors."""

    @abstractmethod
    def disconnect(self) -> None: ...


ROBOTS: Registry[Robot] = Registry("robot", UnknownRobot, attr="kind")
register_robot = ROBOTS.register
available_robots = ROBOTS.names
robot_class = ROBOTS.get
