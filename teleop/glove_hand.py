"""Data glove -> dexterous hand joints (16-DoF LEAP-like hand), through a calibrated mapping.

Input: `/glove/joints` (sensor_msgs/JointState from `drivers.sensor_nodes.GloveNode`: one entry per
glove sensor, calibrated to the operator's joint angles [rad], stamped with the line's arrival time).
`GloveHandMapping` (YAML) maps it per hand joint, linearly, then clamps to the joint's limits:

    joints:                          # hand = offset + scale * glove[sensor], clamped to lower..upper
      - {hand: index_mcp_side, sensor: sensor0, scale: 0.6, offset: -0.47, lower: -1.0, upper: 1.0}
      - {hand: index_mcp, sensor: sensor1, lower: -0.3, upper: 2.2}
    input_range: [-0.1, 3.3]         # a glove value outside this is garbage
    max_jump: 0.8                    # rad: a sample jumping further from the last accepted one is garbage...
    confirm_samples: 3               # ...unless this many consecutive samples agree (a real fast move)
    max_velocity: 10.0               # rad/s: the command is rate-limited
    retarget:                        # optional fingertip-vector retargeting (`teleop.retarget`)
      chains: [[index_mcp, index_pip, index_dip], ...]

Garbage never moves the hand: malformed lines are already dropped by the glove driver; here a
message with missing sensors, NaN/inf, values outside `input_range` or an unconfirmed jump is
counted (`rejected`) and dropped. `GloveHandNode` (a `TeleopNode`, so the stream watchdog and
dead-man apply) publishes MODE_JOINT TeleopTargets (hand names, header.stamp = the glove sample's)
and JointState commands on `command_topic` (default `joint_commands`). Parameters: `mapping`,
`glove_topic`, and `TeleopNode`'s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robot_stack.clock import Time
from robot_stack.errors import ParameterError
from teleop.base import Target, TeleopNode
from teleop.config import check, finite, from_mapping, load_yaml, nested
from teleop.errors import TeleopConfigError
from teleop.retarget import FingertipRetargeter, RetargetConfig
from teleop.safety import limit_step


@dataclass(frozen=True)
class HandJointMap:
    hand: str
    sensor: str
    scale: float = 1.0
    offset: float = 0.0
    lower: float = -math.pi
    upper: float = math.pi

    def __post_init__(self) -> None:
        check(finite([self.scale, self.offset, self.lower, self.upper]), "scale",
              "scale/offset/lower/upper must be finite numbers")
        check(self.lower <= self.upper, "upper", f"must be >= lower ({self.lower})")


@dataclass(frozen=True)
class GloveHandMapping:
    joints: tuple[HandJointMap, ...] = nested(HandJointMap, many=True)
    input_range: tuple[float, float] = (-0.1, 3.3)
    max_jump: float = 0.8
    confirm_samples: int = 3
    max_velocity: float = 10.0
    retarget: RetargetConfig | None = nested(RetargetConfig, default=None)

    def __post_init__(self) -> None:
        names = [j.hand for j in self.joints]
        check(len(names) > 0 and len(set(names)) == len(names), "joints", f"need distinct hand joints, got {names}")
        lo_hi = self.input_range
        check(len(lo_hi) == 2 and finite(lo_hi) and lo_hi[0] < lo_hi[1], "input_range", "need [low, high], low < high")
        check(finite([self.max_jump, self.max_velocity]) and min(self.max_jump, self.max_velocity) > 0, "max_jump",
              "max_jump and max_velocity must be > 0")
        check(isinstance(self.confirm_samples, int) and self.confirm_samples >= 1, "confirm_samples", "must be >= 1")

    @classmethod
    def load(cls, path: str | Path) -> GloveHandMapping:
        mapping = from_mapping(cls, load_yaml(path), str(path))
        try:
            mapping.retargeter()
        except ValueError as exc:
            raise TeleopConfigError(str(path), "retarget.chains", str(exc)) from None
        return mapping

    @property
    def hand_names(self) -> list[str]:
        return [j.hand for j in self.joints]

    def retargeter(self) -> FingertipRetargeter | None:
        if self.retarget is None:
            return None
        return FingertipRetargeter(self.retarget, self.hand_names, *self.limits())

    def limits(self) -> tuple[np.ndarray, np.ndarray]:
        return np.array([j.lower for j in self.joints]), np.array([j.upper for j in self.joints])


class GloveFilter:
    """Glove JointState -> hand joints, or None (counted) when the message is garbage."""

    def __init__(self, mapping: GloveHandMapping):
        self.mapping = mapping
        self.sensors = [j.sensor for j in mapping.joints]
        self.scale = np.array([j.scale for j in mapping.joints])
        self.offset = np.array([j.offset for j in mapping.joints])
        self.lower, self.upper = mapping.limits()
        self.retargeter = mapping.retargeter()
        self.accepted: np.ndarray | None = None
        self._candidate: np.ndarray | None = None
        self._agreeing = 0
        self.rejected = self.jumps = 0

    def apply(self, names: list[str], values: np.ndarray) -> np.ndarray | None:
        index = {n: i for i, n in enumerate(names)}
        if len(values) != len(names) or any(s not in index for s in self.sensors):
            return self._reject()
        glove = np.array([values[index[s]] for s in self.sensors], dtype=float)
        lo, hi = self.mapping.input_range
        if not np.all(np.isfinite(glove)) or np.any(glove < lo) or np.any(glove > hi):
            return self._reject()
        q = np.clip(self.offset + self.scale * glove, self.lower, self.upper)
        if self.retargeter is not None:
            q = self.retargeter.apply(q, glove)
        if not self._plausible(q):
            return None
        self.accepted = q
        return q

    def _plausible(self, q: np.ndarray) -> bool:
        """A jump beyond `max_jump` is accepted only once `confirm_samples` samples in a row agree."""
        jump = self.mapping.max_jump
        if self.accepted is None or np.max(np.abs(q - self.accepted)) <= jump:
            self._candidate, self._agreeing = None, 0
            return True
        if self._candidate is not None and np.max(np.abs(q - self._candidate)) <= jump:
            self._agreeing += 1
        else:
            self._agreeing = 1
        self._candidate = q
        if self._agreeing >= self.mapping.confirm_samples:
            self.jumps += 1
            return True
        self._reject()
        return False

    def _reject(self) -> None:
        self.rejected += 1
        return None


class GloveHandNode(TeleopNode):
    default_command_topic = "joint_commands"
    device_label = "glove"

    def __init__(self, node_name: str = "glove_hand", **node_kwargs: Any):
        super().__init__(node_name, **node_kwargs)
        path = self.declare_parameter("mapping", "").value
        if not path:
            raise ParameterError(f"node '{node_name}': parameter 'mapping' (a glove -> hand YAML file) is required")
        self.mapping = GloveHandMapping.load(path)
        self.filter = GloveFilter(self.mapping)
        self.hand_names = self.mapping.hand_names
        self._new = 0
        self._q: np.ndarray | None = None
        self._stamp = Time(0)
        self._previous: np.ndarray | None = None
        topic = self.declare_parameter("glove_topic", "/glove/joints").value
        self.create_subscription("sensor_msgs/msg/JointState", topic, self._on_glove, "sensor_data")
        self.start_loop()

    def _on_glove(self, msg: Any) -> None:
        q = self.filter.apply(list(msg.name), np.asarray(msg.position, dtype=float))
        if q is not None:
            self._q, self._stamp = q, Time.from_msg(msg.header.stamp)
            self._new += 1

    def poll(self) -> int:
        new, self._new = self._new, 0
        return new

    def step(self, dt: float, engaged: bool) -> Target | None:
        if self._q is None:
            return None
        q = self._q
        previous = self._previous if self._previous is not None else self.last_command   # the held pose
        if engaged and previous is not None:
            q = limit_step(previous, q, self.mapping.max_velocity, dt)
        self._previous = q if engaged else None
        return Target(self._stamp, list(self.hand_names), q)

    def counters(self) -> dict[str, Any]:
        return {"rejected": self.filter.rejected, "confirmed_jumps": self.filter.jumps}
