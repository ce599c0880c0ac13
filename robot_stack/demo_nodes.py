"""Demo nodes: a 7-joint fake arm and a commander that moves it along a sinusoid.

`FakeArm` publishes `sensor_msgs/JointState` on `joint_states` at `rate_hz` (500 Hz) with
`header.stamp` from the node clock, and follows position commands from `joint_commands` with
first-order dynamics (`time_constant`), clamped to its joint limits. `Commander` publishes those
commands at 10 Hz. Both run under `robot-stack demo` (robot_stack/launch/configs/demo_fake_arm.yaml).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from robot_stack import messages
from robot_stack.errors import ParameterError
from robot_stack.node import Node

JOINT_STATE = "sensor_msgs/msg/JointState"
JOINT_NAMES = [f"joint{i}" for i in range(1, 8)]
# Limits and ready pose of a Franka-like 7-DoF arm (radians).
LOWER_LIMITS = [-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973]
UPPER_LIMITS = [2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973]
HOME = [0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785]


def _vector(node: Node, name: str, default: list[float], size: int) -> np.ndarray:
    value = node.declare_parameter(name, list(default)).value
    arr = np.asarray(value, dtype=float)
    if arr.shape != (size,) or not np.all(np.isfinite(arr)):
        raise ParameterError(f"node '{node.get_name()}': parameter '{name}' needs {size} finite numbers, got {value!r}")
    return arr


def _positive(node: Node, name: str, default: float) -> float:
    value = node.declare_parameter(name, default).value
    if not value > 0:
        raise ParameterError(f"node '{node.get_name()}': parameter '{name}' must be > 0, got {value!r}")
    return value


class FakeArm(Node):
    """A simulated arm: first-order position tracking within joint limits, state at `rate_hz`."""

    def __init__(self, node_name: str = "fake_arm", **kwargs: Any):
        super().__init__(node_name, **kwargs)
        self.rate_hz = _positive(self, "rate_hz", 500.0)
        self.time_constant = _positive(self, "time_constant", 0.1)
        self.joint_names = list(self.declare_parameter("joint_names", JOINT_NAMES).value)
        n = len(self.joint_names)
        self.lower = _vector(self, "lower_limits", LOWER_LIMITS, n)
        self.upper = _vector(self, "upper_limits", UPPER_LIMITS, n)
        if np.any(self.lower > self.upper):
            raise ParameterError(f"node '{node_name}': lower_limits exceed upper_limits")
        self.position = np.clip(_vector(self, "initial_positions", HOME, n), self.lower, self.upper)
        self.velocity = np.zeros(n)
        self.target = self.position.copy()
        self.rejected_commands = 0
        self._index = {name: i for i, name in enumerate(self.joint_names)}
        self._msg = messages.get_class(JOINT_STATE)
        self._header = messages.get_class("std_msgs/msg/Header")
        self._last_time = None
        self.state_pub = self.create_publisher(JOINT_STATE, "joint_states", 10)
        self.create_subscription(JOINT_STATE, "joint_commands", self._on_command, 10)
        self.timer = self.create_timer(1.0 / self.rate_hz, self._step, name="state")
        self.get_logger().info(f"{n} joints, state at {self.rate_hz:g} Hz on {self.state_pub.topic}")

    def _on_command(self, msg: Any) -> None:
        """Take the named (or, without names, all) joint targets; bad commands are counted and dropped."""
        pos = np.asarray(msg.position, dtype=float)
        if len(msg.name):
            idx = [self._index.get(name, -1) for name in msg.name]
            ok = len(idx) == pos.size and -1 not in idx
        else:
            idx = list(range(len(self.joint_names)))
            ok = pos.size == len(idx)
        if not ok or not np.all(np.isfinite(pos)):
            self.rejected_commands += 1
            if self.rejected_commands % 100 == 1:
                self.get_logger().warning(
                    f"dropped bad command #{self.rejected_commands}: names {list(msg.name)}, {pos.size} positions"
                )
            return
        self.target[idx] = np.clip(pos, self.lower[idx], self.upper[idx])

    def _step(self) -> None:
        now = self.get_clock().now()
        period = self.timer.period
        dt = period if self._last_time is None else min(max(now - self._last_time, 0.0), 10 * period)
        self._last_time = now
        alpha = 1.0 - math.exp(-dt / self.time_constant)
        new = np.clip(self.position + alpha * (self.target - self.position), self.lower, self.upper)
        self.velocity = (new - self.position) / dt if dt > 0 else np.zeros_like(new)
        self.position = new
        self.state_pub.publish(
            self._msg(
                header=self._header(stamp=now.to_msg(), frame_id=""),
                name=self.joint_names,
                position=new,
                velocity=self.velocity,
                effort=np.zeros_like(new),
            )
        )


class Commander(Node):
    """Publishes joint position commands along a smooth sinusoid around `center` at `rate_hz`."""

    def __init__(self, node_name: str = "commander", **kwargs: Any):
        super().__init__(node_name, **kwargs)
        self.rate_hz = _positive(self, "rate_hz", 10.0)
        self.amplitude = self.declare_parameter("amplitude", 0.3).value
        self.frequency_hz = _positive(self, "frequency_hz", 0.2)
        self.joint_names = list(self.declare_parameter("joint_names", JOINT_NAMES).value)
        self.center = _vector(self, "center", HOME, len(self.joint_names))
        self._signs = np.where(np.arange(len(self.joint_names)) % 2 == 0, 1.0, -1.0)
        self._msg = messages.get_class(JOINT_STATE)
        self._header = messages.get_class("std_msgs/msg/Header")
        self._start = None
        self.command_pub = self.create_publisher(JOINT_STATE, "joint_commands", 10)
        self.timer = self.create_timer(1.0 / self.rate_hz, self._tick, name="command")

    def command_at(self, t: float) -> np.ndarray:
        return self.center + self.amplitude * math.sin(2 * math.pi * self.frequency_hz * t) * self._signs

    def _tick(self) -> None:
        now = self.get_clock().now()
        self._start = self._start or now
        empty = np.zeros(0)
        self.command_pub.publish(
            self._msg(
                header=self._header(stamp=now.to_msg(), frame_id=""),
                name=self.joint_names,
                position=self.command_at(now - self._start),
                velocity=empty,
                effort=empty,
            )
        )
