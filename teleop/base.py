"""`TeleopNode`: what every teleop device node shares.

A timer at `rate_hz` opens the device (retried every `retry_s` while it fails; never in
`__init__`), polls it (`poll()` -> number of new samples), asks the subclass for the current target
(`step(dt, engaged)`) and publishes it:
- `teleop_target` (`target_topic`): robot_stack_msgs/TeleopTarget, header.stamp = the capture time
  of the device sample it came from, `engaged` = stream alive and dead-man held;
- `command_topic` (off when ""): sensor_msgs/JointState position targets for a robot node (due
  now: stamp 0), only for joint targets. While disengaged (`hold_when_disengaged`) the last command
  is repeated, so the robot holds where it is instead of running into its own command watchdog.

Safety. Dead-man (`deadman`): "device" (a held button of the device itself), "topic" (std_msgs/Bool
on `deadman_topic`, e.g. from a pedal, which repeats it; older than `deadman_timeout_s` counts as
released) or "none". Stream watchdog: while samples are expected
(`stream_expected()`: always for an exo or glove, only while a key is held for a keyboard), no
sample for `stream_timeout_s` (0: the device's default) -> `on_silence()` (drop held inputs), one
TeleopTarget with engaged=false, then nothing until new data (the robot node's own watchdog holds
and stops the robot); the reason is logged and shown in `~/status`. A device error closes the
device, says why and reopens it after `retry_s`. Episode buttons go out as EpisodeEvents on
`events_topic` (`teleop.episode`). Status: diagnostic_msgs/DiagnosticStatus on `~/status`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robot_stack import convert, messages
from robot_stack.clock import Time
from robot_stack.errors import ParameterError, RobotStackError
from robot_stack.node import Node
from teleop.episode import EPISODE_EVENT, EVENT_NAMES, EpisodeControl, event_msg
from teleop.safety import StreamWatchdog

TELEOP_TARGET = "robot_stack_msgs/msg/TeleopTarget"
JOINT_STATE = "sensor_msgs/msg/JointState"
DIAGNOSTIC_STATUS = "diagnostic_msgs/msg/DiagnosticStatus"
BOOL = "std_msgs/msg/Bool"
MODE_JOINT, MODE_POSE = 0, 1
DEADMAN_SOURCES = ("device", "topic", "none")


@dataclass
class Target:
    """What a device asks for now. `position` + `orientation` (x, y, z, w) make a pose target."""

    stamp: Time
    joint_names: list[str] = field(default_factory=list)
    joint_positions: np.ndarray | None = None
    position: np.ndarray | None = None
    orientation: np.ndarray | None = None
    gripper: float = math.nan


class TeleopNode(Node):
    default_rate_hz = 100.0
    default_deadman = "none"
    default_command_topic = ""
    default_stream_timeout_s = 0.25
    publishes_targets = True          # False: a buttons-only device (pedal)
    device_label = "teleop"

    def __init__(self, node_name: str, **node_kwargs: Any):
        super().__init__(node_name, **node_kwargs)
        self.rate_hz = self.positive("rate_hz", self.default_rate_hz)
        self.retry_s = self.positive("retry_s", 1.0)
        timeout = self.non_negative("stream_timeout_s", 0.0)          # 0: the device's default
        self.watchdog = StreamWatchdog(timeout or self.default_stream_timeout_s)
        self.deadman_timeout_s = self.non_negative("deadman_timeout_s", 0.5)   # 0: a topic dead-man latches
        self.deadman_source = self.choice("deadman", self.default_deadman, DEADMAN_SOURCES)
        self.hold_when_disengaged = bool(self.declare_parameter("hold_when_disengaged", True).value)
        self.frame_id = self.declare_parameter("frame_id", "").value
        self.episodes = EpisodeControl(bool(self.declare_parameter("auto_reset", True).value))
        p = lambda name, default: self.declare_parameter(name, default).value   # noqa: E731
        self.target_pub = (self.create_publisher(TELEOP_TARGET, p("target_topic", "teleop_target"), 10)
                           if self.publishes_targets else None)
        command_topic = p("command_topic", self.default_command_topic)
        self.command_pub = self.create_publisher(JOINT_STATE, command_topic, 10) if command_topic else None
        events_topic = p("events_topic", "episode_events")
        self.event_pub = self.create_publisher(EPISODE_EVENT, events_topic, 10)
        self.create_subscription(EPISODE_EVENT, events_topic, self._on_episode_event, 10)
        if self.deadman_source == "topic":
            self.create_subscription(BOOL, p("deadman_topic", "teleop/deadman"), self._on_deadman, 10)
        self.status_pub = self.create_publisher(DIAGNOSTIC_STATUS, "~/status", 10)
        self.device_open = False
        self.device_deadman = False          # subclasses: a held dead-man button of the device
        self._topic_deadman = False
        self._topic_deadman_at = 0.0
        self.engaged = False
        self.reason = "connecting"
        self.samples = self.published = self.commands = self.device_errors = 0
        self.last_command: np.ndarray | None = None
        self._last_target: Target | None = None
        self._command_names: list[str] = []
        self._next_try = 0.0
        self._last_tick: float | None = None
        self._silenced = False

    # --- parameters ----------------------------------------------------------------------------
    def positive(self, name: str, default: float) -> float:
        value = self.declare_parameter(name, default).value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ParameterError(f"node '{self.get_name()}': parameter '{name}' must be a number > 0, got {value!r}")
        return float(value)

    def non_negative(self, name: str, default: float) -> float:
        value = self.declare_parameter(name, default).value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ParameterError(f"node '{self.get_name()}': parameter '{name}' must be a number >= 0, got {value!r}")
        return float(value)

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.declare_parameter(name, default).value
        if value not in allowed:
            raise ParameterError(f"node '{self.get_name()}': parameter '{name}' must be one of {list(allowed)}, "
                                 f"got {value!r}")
        return value

    def start_loop(self) -> None:
        """Create the timers (subclasses call it at the end of their constructor)."""
        self.timer = self.create_timer(1.0 / self.rate_hz, self.tick, name="teleop")
        self.create_timer(0.5, self.publish_status, name="status")

    # --- hooks -----------------------------------------------------------------------------------
    def open_device(self) -> None:
        """Open the device; raise a RobotStackError or OSError saying why it cannot be."""

    def close_device(self) -> None:
        pass

    def poll(self) -> int:
        """Read what the device sent since the last tick; the number of new valid samples."""
        raise NotImplementedError

    def step(self, dt: float, engaged: bool) -> Target | None:
        """The current target (None before there is one)."""
        raise NotImplementedError

    def counters(self) -> dict[str, Any]:
        return {}

    def stream_expected(self) -> bool:
        """Whether samples must keep coming now (a keyboard at rest sends nothing, and that is fine)."""
        return True

    def not_ready(self) -> str:
        """Why the node may not engage yet ("" when it may), e.g. the follower's state is unknown."""
        return ""

    def on_silence(self) -> None:
        """The stream went silent while expected: drop held inputs (the safe state)."""

    def on_episode(self, event: int) -> None:
        """An EpisodeEvent from any source (RESET: go back home, ...)."""

    def _on_episode_event(self, msg: Any) -> None:
        self.episodes.observe(int(msg.event))
        self.on_episode(int(msg.event))

    # --- the loop --------------------------------------------------------------------------------
    def tick(self) -> None:
        if not self.device_open and not self._try_open():
            return
        now = time.monotonic()
        try:
            new = self.poll()
        except (RobotStackError, OSError) as exc:      # a device error: close, say why, reopen later
            self._device_lost(f"{type(exc).__name__}: {exc}")
            return
        if new:
            self.samples += new
            self.watchdog.feed(time.monotonic_ns())
            self._silenced = False
        elif not self._silenced and not self.stream_expected():
            self.watchdog.feed(time.monotonic_ns())      # at rest silence is fine; a trip stays until new data
        dt = 0.0 if self._last_tick is None else now - self._last_tick
        self._last_tick = now
        silent = self.watchdog.check(time.monotonic_ns())
        if silent and not self._silenced:                # say it once, then publish nothing until new data
            self._silenced = True
            self.on_silence()
            self.get_logger().error(f"{self.device_label}: stopping: {silent}")
            self._publish_disengaged()
        deadman, waiting = self._deadman_held(), self.not_ready()
        engaged = not silent and deadman and not waiting and self.watchdog.last_ns is not None
        self._set_engaged(engaged, silent or waiting or ("" if deadman else self._deadman_why()))
        target = self.step(dt, engaged)
        if target is None or self.target_pub is None or silent:
            return
        self._last_target = target
        self._publish_target(target, engaged)
        self._publish_command(target, engaged)

    def _publish_disengaged(self) -> None:
        """One TeleopTarget with engaged=false (the last target), so task-space followers drop it too."""
        if self._last_target is not None and self.target_pub is not None:
            self._publish_target(self._last_target, False)

    def _try_open(self) -> bool:
        now = time.monotonic()
        if now < self._next_try:
            return False
        self._next_try = now + self.retry_s
        try:
            self.open_device()
        except (RobotStackError, OSError) as exc:
            self._set_reason(f"cannot open device: {exc}")
            return False
        self.device_open = True
        self.watchdog.reset()
        self._last_tick = None
        self._set_reason("waiting for the first sample")
        self.get_logger().info(f"{self.device_label}: device open")
        return True

    def _device_lost(self, why: str) -> None:
        self.device_errors += 1
        self.device_open = False
        try:
            self.close_device()
        except (RobotStackError, OSError) as exc:
            self.get_logger().debug(f"closing after an error failed: {exc}")
        self._set_engaged(False, f"device error: {why}")
        self._publish_disengaged()
        self.get_logger().error(f"{self.device_label}: device error, closed (retrying): {why}")
        self._next_try = time.monotonic() + self.retry_s

    def _deadman_held(self) -> bool:
        if self.deadman_source == "device":
            return self.device_deadman
        if self.deadman_source == "topic":
            fresh = not self.deadman_timeout_s or time.monotonic() - self._topic_deadman_at <= self.deadman_timeout_s
            return self._topic_deadman and fresh
        return True

    def _deadman_why(self) -> str:
        if self.deadman_source == "topic" and self._topic_deadman:
            return f"dead-man topic silent for more than {self.deadman_timeout_s:g} s"
        return "dead-man released"

    def _on_deadman(self, msg: Any) -> None:
        self._topic_deadman, self._topic_deadman_at = bool(msg.data), time.monotonic()

    def _set_engaged(self, engaged: bool, why: str) -> None:
        if engaged != self.engaged:
            self.engaged = engaged
            self.get_logger().info(f"{self.device_label}: {'engaged' if engaged else 'disengaged: ' + why}")
        self._set_reason("" if engaged else why)

    def _set_reason(self, reason: str) -> None:
        if reason != self.reason:
            self.reason = reason
            self.publish_status()

    # --- publishing ------------------------------------------------------------------------------
    def _publish_target(self, target: Target, engaged: bool) -> None:
        pose = {}
        if target.position is not None:
            q = target.orientation if target.orientation is not None else np.array([0.0, 0.0, 0.0, 1.0])
            pose = {"position": dict(zip("xyz", map(float, target.position), strict=True)),
                    "orientation": dict(zip("xyzw", map(float, q), strict=True))}
        has_joints = target.joint_positions is not None
        mode = MODE_JOINT if has_joints and target.position is None else MODE_POSE if not has_joints else 2
        self.target_pub.publish(messages.make(
            TELEOP_TARGET, header=convert.header(target.stamp, self.frame_id), mode=mode,
            joint_names=list(target.joint_names),
            joint_positions=target.joint_positions if has_joints else np.zeros(0),
            ee_pose=pose, gripper=float(target.gripper), engaged=bool(engaged), device=self.device_label))
        self.published += 1

    def _publish_command(self, target: Target, engaged: bool) -> None:
        if self.command_pub is None or target.joint_positions is None:
            return
        if engaged:
            self.last_command = np.asarray(target.joint_positions, dtype=float).copy()
            self._command_names = list(target.joint_names)
        elif not self.hold_when_disengaged or self.last_command is None:
            return
        self.command_pub.publish(convert.joint_state(self._command_names, self.last_command))
        self.commands += 1

    def episode_action(self, action: str) -> list[int]:
        """Publish the EpisodeEvents of a button `action`; returns their codes."""
        events = self.episodes.on_action(action)
        for event in events:
            self.event_pub.publish(event_msg(event, self.device_label, self.get_clock().now()))
            self.episodes.observe(event)
            self.get_logger().info(f"{self.device_label}: episode {EVENT_NAMES[event]}")
        if events:
            self.publish_status()
        return events

    def publish_status(self) -> None:
        engaged = self.engaged if self.publishes_targets else "-"      # a pedal has nothing to engage
        message = ("engaged" if self.engaged else self.reason) if self.publishes_targets else self.reason or "ready"
        values = {"device": self.device_label, "engaged": engaged, "reason": self.reason,
                  "episode": self.episodes.state, "samples": self.samples, "published": self.published,
                  "commands": self.commands, "device_errors": self.device_errors,
                  "watchdog_trips": self.watchdog.trips, **self.counters()}
        level = 0 if self.engaged else 2 if self.reason.startswith(("teleop stream", "device", "cannot")) else 1
        kv = messages.get_class("diagnostic_msgs/msg/KeyValue")
        self.status_pub.publish(messages.make(
            DIAGNOSTIC_STATUS, level=level, name=self.get_fully_qualified_name(),
            message=message, hardware_id=self.device_label,
            values=[kv(key=k, value=str(v)) for k, v in values.items()]))

    def destroy_node(self) -> None:
        if self.device_open:
            self.device_open = False
            try:
                self.close_device()
            except (RobotStackError, OSError) as exc:
                self.get_logger().warning(f"closing the device failed: {exc}")
        super().destroy_node()
