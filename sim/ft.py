"""Simulated wrist force/torque sensor from the joint reaction wrench of the arm's `ft_joint`.

The reading is the wrench the tool side (hand, grasped object, contacts) exerts on the sensor,
expressed in the sensor joint's frame, as [fx fy fz tx ty tz] (N, N*m) - the negated reaction
pybullet reports on the child link. A hand hanging under gravity with the flange z pointing down
reads fz ~ +m g. Like a real F/T's internal filter, the raw value goes through a first-order
low-pass (cutoff `cutoff_hz`) updated after every physics step; `bias()` tares it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from robot_stack import convert
from robot_stack.clock import Time
from sim.world import SimError, SimWorld


@dataclass(frozen=True)
class WristFTConfig:
    cutoff_hz: float = 30.0          # first-order low-pass cutoff; 0 disables the filter
    frame_id: str = "ft_sensor"

    def __post_init__(self):
        if self.cutoff_hz < 0:
            raise SimError(f"WristFTConfig.cutoff_hz must be >= 0, got {self.cutoff_hz}")


class WristFT:
    """The wrist F/T of a `SimArm` (its config's `ft_joint`, whose sensor the arm enables)."""

    def __init__(self, world: SimWorld, robot: Any, config: WristFTConfig | None = None):
        self.world = world
        self.robot = robot
        self.config = config or WristFTConfig()
        self._joint: int | None = None
        self._filtered = np.zeros(6)
        self._bias = np.zeros(6)
        self._primed = False

    @property
    def alpha(self) -> float:
        """Per-physics-step smoothing factor of the low-pass (1 = no filtering)."""
        fc = self.config.cutoff_hz
        if fc == 0:
            return 1.0
        tau = 1.0 / (2.0 * math.pi * fc)
        return self.world.dt / (self.world.dt + tau)

    def connect(self) -> None:
        """Start filtering (the robot must be connected: its sensor joint is looked up here)."""
        if self._joint is not None:
            return
        name = getattr(self.robot.config, "ft_joint", "")
        if not name:
            raise SimError(f"{type(self.robot).__name__} has no ft_joint configured")
        self._joint = self.robot.joint_index(name)
        self._primed = False
        self.world.add_post_step(self._update)

    def disconnect(self) -> None:
        if self._joint is not None and self.world.connected:
            self.world.remove_hook(self._update)
        self._joint = None

    def raw(self) -> np.ndarray:
        """Unfiltered, un-tared wrench right now."""
        if self._joint is None:
            raise SimError("WristFT is not connected; call connect() first")
        reaction = self.world.client.getJointState(self.robot.body_id, self._joint)[2]
        return -np.asarray(reaction, dtype=float)

    def _update(self) -> None:
        raw = self.raw()
        if not self._primed:
            self._filtered, self._primed = raw, True
            return
        self._filtered = self._filtered + self.alpha * (raw - self._filtered)

    def read(self) -> np.ndarray:
        """Filtered wrench minus the bias, [fx fy fz tx ty tz]."""
        if not self._primed:
            self._update()
        return self._filtered - self._bias

    def bias(self) -> np.ndarray:
        """Tare: the current filtered reading becomes zero; returns the stored bias."""
        self._bias = self.read() + self._bias
        return self._bias.copy()

    def clear_bias(self) -> None:
        self._bias = np.zeros(6)

    def wrench_msg(self, stamp: Time | None = None, frame_id: str | None = None) -> Any:
        """geometry_msgs/WrenchStamped of `read()`, stamped with `stamp` (default: sim time)."""
        stamp = self.world.now() if stamp is None else stamp
        return convert.wrench(self.read(), stamp=stamp, frame_id=frame_id or self.config.frame_id)
