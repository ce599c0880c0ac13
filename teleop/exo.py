"""Isomorphic exoskeleton / leader arm (GELLO-, Koch-, SO-100-leader-like) -> follower joints.

The leader is a servo chain read through `drivers.servo` (`LeaderArm`: torque off, SYNC_READ of
`present_position`, ticks -> rad with the leader's servo calibration). `ExoMapping` (YAML) maps
joint to joint, no IK:

    joints:                      # follower = offset + sign * scale * leader   [rad]
      - {follower: panda_joint1, leader: shoulder_pan, sign: 1, scale: 1.0, offset: 0.0}
    gripper:                     # a trigger joint -> TeleopTarget.gripper 0 (open) .. 1 (closed)
      leader: gripper
      open: 0.0                  # leader angle when fully open / closed [rad]
      closed: 0.8
      follower_joints: [panda_finger_joint1, panda_finger_joint2]
      follower_open: 0.04        # their position when open / closed
      follower_closed: 0.0
    max_velocity: 2.0            # per follower joint [rad/s or m/s]: the command is rate-limited

`ExoNode` (a `TeleopNode`) publishes MODE_JOINT TeleopTargets (follower names, header.stamp = the
bus read time) and JointState commands on `command_topic` (default `joint_commands`). The first
engaged command starts from the follower's measured position (`state_topic`; with `wait_for_state`,
the default, the exo does not engage before it has seen it), so engaging with the leader far from
the follower moves it at `max_velocity`, not in one jump.
Parameters: `leader` (`gello`: 7 joints + trigger, or a drivers device: koch, so101), `port`,
`baudrate` (0 = the device's), `leader_calibration` (servo calibration YAML, "" = uncalibrated),
`mapping` (the file above), `state_topic`, `wait_for_state`, and `TeleopNode`'s.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from drivers.servo.bus import MotorBus, SerialMotorBus, get_protocol
from drivers.servo.calibration import Calibration, default_calibration, ticks_to_rad
from drivers.servo.device import ServoDeviceConfig, ServoJoint
from drivers.servo.devices import device_class
from drivers.servo.errors import ServoError
from robot_stack.errors import ParameterError
from teleop.base import Target, TeleopNode
from teleop.config import check, finite, from_mapping, load_yaml, nested
from teleop.errors import TeleopConfigError
from teleop.safety import limit_step


@dataclass(frozen=True)
class JointMap:
    follower: str
    leader: str
    sign: int = 1
    scale: float = 1.0
    offset: float = 0.0

    def __post_init__(self) -> None:
        check(self.sign in (1, -1), "sign", f"must be 1 or -1, got {self.sign!r}")
        check(finite([self.scale, self.offset]), "scale", "scale and offset must be finite numbers")


@dataclass(frozen=True)
class GripperMap:
    leader: str
    open: float = 0.0
    closed: float = 1.0
    follower_joints: tuple[str, ...] = ()
    follower_open: float = 0.0
    follower_closed: float = 0.0

    def __post_init__(self) -> None:
        check(finite([self.open, self.closed, self.follower_open, self.follower_closed]), "open",
              "open/closed/follower_open/follower_closed must be finite numbers")
        check(self.open != self.closed, "closed", f"must differ from open ({self.open})")

    def closure(self, leader_angle: float) -> float:
        return float(np.clip((leader_angle - self.open) / (self.closed - self.open), 0.0, 1.0))


@dataclass(frozen=True)
class ExoMapping:
    joints: tuple[JointMap, ...] = nested(JointMap, many=True)
    gripper: GripperMap | None = nested(GripperMap, default=None)
    max_velocity: float = 2.0

    def __post_init__(self) -> None:
        check(len(self.joints) > 0, "joints", "at least one joint map is needed")
        names = self.follower_names
        check(len(set(names)) == len(names), "joints", f"a follower joint appears twice: {names}")
        check(finite([self.max_velocity]) and self.max_velocity > 0, "max_velocity", "must be a number > 0")

    @classmethod
    def load(cls, path: str | Path) -> ExoMapping:
        return from_mapping(cls, load_yaml(path), str(path))

    @property
    def follower_names(self) -> list[str]:
        fingers = list(self.gripper.follower_joints) if self.gripper else []
        return [j.follower for j in self.joints] + fingers

    def check_leader(self, leader_names: list[str], source: str = "mapping") -> None:
        used = [j.leader for j in self.joints] + ([self.gripper.leader] if self.gripper else [])
        unknown = [n for n in used if n not in leader_names]
        if unknown:
            raise TeleopConfigError(source, "joints", f"leader joints {unknown} do not exist; the leader has "
                                                      f"{leader_names}")

    def apply(self, leader_names: list[str], leader_q: np.ndarray) -> tuple[np.ndarray, float]:
        """Follower positions (`follower_names` order) and gripper closure (NaN without a gripper)."""
        index = {n: i for i, n in enumerate(leader_names)}
        q = np.array([j.offset + j.sign * j.scale * leader_q[index[j.leader]] for j in self.joints])
        if self.gripper is None:
            return q, math.nan
        g = self.gripper.closure(float(leader_q[index[self.gripper.leader]]))
        grip = self.gripper
        finger = grip.follower_open + g * (grip.follower_closed - grip.follower_open)
        fingers = np.full(len(grip.follower_joints), finger)
        return np.concatenate([q, fingers]), g


@dataclass(frozen=True)
class GelloConfig(ServoDeviceConfig):
    """A GELLO-style 7-DoF leader for a Franka-sized arm: 7 XL330 joints and a trigger, Dynamixel 2.0."""

    name: str = "gello"
    joints: tuple[ServoJoint, ...] = tuple(ServoJoint(f"joint{i}", i, "xl330-m288") for i in range(1, 8)) + (
        ServoJoint("gripper", 8, "xl330-m077"),)
    baudrate: int = 57_600


LEADERS: dict[str, type[ServoDeviceConfig]] = {"gello": GelloConfig}


def leader_config(kind: str) -> ServoDeviceConfig:
    """A leader's bus layout: `gello`, or any servo device of `drivers.servo.devices` (koch, so101...)."""
    if kind in LEADERS:
        return LEADERS[kind]()
    return device_class(kind).config_class()


class LeaderArm:
    """A limp servo chain the operator moves: torque off, positions read in radians."""

    def __init__(self, bus: MotorBus, config: ServoDeviceConfig, calibration: Calibration | None = None):
        self.bus, self.config = bus, config
        self.joint_names = [j.name for j in config.joints]
        self._ids = [j.id for j in config.joints]
        self.resolution = next(iter(config.tables().values())).resolution
        self.calibration = calibration or default_calibration(
            config.name, [(j.name, j.id, j.drive_sign) for j in config.joints], self.resolution)
        self._cal = self.calibration.arrays(self.joint_names)

    @classmethod
    def on_port(cls, device: str, port: str, calibration: str = "", baudrate: int = 0) -> LeaderArm:
        config = leader_config(device)
        if baudrate:
            config = dataclasses.replace(config, baudrate=baudrate)
        bus = SerialMotorBus(port, get_protocol(config.protocol), config.tables(), baudrate=config.baudrate,
                             policy=config.policy)
        return cls(bus, config, Calibration.load(calibration) if calibration else None)

    def connect(self) -> None:
        self.bus.connect()
        self.bus.write("torque_enable", {i: 0 for i in self._ids})

    def read(self) -> np.ndarray:
        ticks = self.bus.sync_read("present_position", self._ids)
        return ticks_to_rad(np.array([ticks[i] for i in self._ids], dtype=float), self._cal, self.resolution)

    def disconnect(self) -> None:
        self.bus.disconnect()


class ExoNode(TeleopNode):
    default_command_topic = "joint_commands"
    device_label = "exo"

    def __init__(self, node_name: str = "exo", *, leader: LeaderArm | None = None, **node_kwargs: Any):
        super().__init__(node_name, **node_kwargs)
        p = lambda name, default: self.declare_parameter(name, default).value   # noqa: E731
        mapping_path = p("mapping", "")
        if not mapping_path:
            raise ParameterError(f"node '{node_name}': parameter 'mapping' (an exo mapping YAML file) is required")
        self.mapping = ExoMapping.load(mapping_path)
        kind, port = p("leader", "koch"), p("port", "/dev/ttyUSB0")
        try:
            self.leader = leader or LeaderArm.on_port(kind, port, p("leader_calibration", ""), int(p("baudrate", 0)))
        except ServoError as exc:
            raise ParameterError(f"node '{node_name}': leader '{kind}': {exc}") from exc
        self.mapping.check_leader(self.leader.joint_names, mapping_path)
        self.follower_joint_names = self.mapping.follower_names
        self.max_velocity = self.mapping.max_velocity
        self._q: np.ndarray | None = None
        self._stamp = None
        self._follower: dict[str, float] = {}
        self._previous: np.ndarray | None = None
        self.wait_for_state = bool(p("wait_for_state", True))
        state = self.create_subscription("sensor_msgs/msg/JointState", p("state_topic", "joint_states"),
                                         self._on_state, 10)
        self.state_topic = state.topic
        self.start_loop()

    def open_device(self) -> None:
        self.leader.connect()

    def close_device(self) -> None:
        self.leader.disconnect()

    def poll(self) -> int:
        q = self.leader.read()
        self._stamp = self.get_clock().now()
        if not np.all(np.isfinite(q)):
            return 0
        self._q = q
        return 1

    def _on_state(self, msg: Any) -> None:
        self._follower = dict(zip(msg.name, np.asarray(msg.position, dtype=float), strict=False))

    def step(self, dt: float, engaged: bool) -> Target | None:
        if self._q is None:
            return None
        q, gripper = self.mapping.apply(self.leader.joint_names, self._q)
        if engaged:
            following = self._previous is not None
            previous = self._previous if following else self._start_from(q)
            if previous is not None:
                q = limit_step(previous, q, self.max_velocity, dt if following else 1.0 / self.rate_hz)
            self._previous = q
        else:
            self._previous = None        # re-engaging starts from the follower's measured position
        return Target(self._stamp, list(self.follower_joint_names), q, gripper=gripper)

    def not_ready(self) -> str:
        if self.wait_for_state and not self._follower:
            return f"waiting for the follower's state on {self.state_topic}"
        return ""

    def _start_from(self, q: np.ndarray) -> np.ndarray | None:
        """Where an engaged stretch starts: the follower's measured position (else the held command)."""
        if not self._follower:
            return self.last_command
        return np.array([self._follower.get(n, q[i]) for i, n in enumerate(self.follower_joint_names)])

    def counters(self) -> dict[str, Any]:
        return {"leader_port": getattr(self.leader.bus, "port", "")}
