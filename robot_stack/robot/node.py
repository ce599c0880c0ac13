"""`RobotNode`: the node that owns a `Robot`'s control loop (DESIGN.md "Hardware interface").

- `start()` connects the device and starts two timers: state (`state_rate_hz`: `robot.read()`
  -> `sensor_msgs/JointState` on `joint_states`, stamped with the capture time) and control
  (`control_rate_hz`: interpolate the buffered trajectory, write a `JointCommand` in `command_mode`:
  "position", or "impedance" = the setpoint with the device's default stiffness/damping).
  `destroy_node()` disconnects. Nothing is written before the first command arrives.
- Commands: `joint_commands` (`sensor_msgs/JointState` position targets, header.stamp = when
  due, 0 = now; names select joints, no names = all in order) and `action_chunk`
  (`robot_stack_msgs/ActionChunk`: step k due at stamp + k*dt; steps already past are skipped
  and counted in `stale_steps`). Targets are clamped to the joint limits (`clamped`).
- Chunk ensembling (`ensemble`, off by default): each chunk's targets are averaged with the
  overlapping earlier chunks' targets for the same times, ACT-style, with weights
  exp(-`ensemble_decay` * i), i = 0 for the oldest (`interpolation.ChunkEnsemble`).
- Bad commands (NaN/inf, wrong length, unknown names) are dropped and counted (`rejected`);
  `max_bad_commands` of them in a row trip the watchdog. `max_read_errors` failed or bad reads
  in a row trip it too. No command for `watchdog_periods` control periods after the trajectory
  ran out -> HOLD (keep writing the last setpoint); after `stop_periods` -> fault. A fault calls
  `robot.safe_stop()`, stops writing and ignores commands until `reset_fault()`.
- Health goes out as `diagnostic_msgs/DiagnosticStatus` on `~/status` on every change and at
  `status_rate_hz`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from robot_stack import convert, messages
from robot_stack.clock import NS, Time
from robot_stack.errors import ParameterError
from robot_stack.node import Node
from robot_stack.robot.interface import ControlMode, JointCommand, Robot, RobotState
from robot_stack.robot.interpolation import ChunkEnsemble, TrajectoryBuffer
from robot_stack.robot.watchdog import Health, Watchdog

JOINT_STATE = "sensor_msgs/msg/JointState"
ACTION_CHUNK = "robot_stack_msgs/msg/ActionChunk"
DIAGNOSTIC_STATUS = "diagnostic_msgs/msg/DiagnosticStatus"
_LEVEL = {Health.OK: 0, Health.HOLD: 1, Health.FAULT: 2}  # DiagnosticStatus OK / WARN / ERROR


class BadCommand(ValueError):
    pass


def _positive(node: Node, name: str, default: Any, kind: type) -> Any:
    value = node.declare_parameter(name, default).value
    if not isinstance(value, kind) or not value > 0:
        raise ParameterError(
            f"node '{node.get_name()}': parameter '{name}' must be a {kind.__name__} > 0, got {value!r}")
    return value


class RobotNode(Node):
    def __init__(self, robot: Robot, node_name: str = "robot", **node_kwargs: Any):
        super().__init__(node_name, **node_kwargs)
        self.robot = robot
        self.state_rate_hz = _positive(self, "state_rate_hz", 500.0, float)
        self.control_rate_hz = _positive(self, "control_rate_hz", 500.0, float)
        self.watchdog_periods = _positive(self, "watchdog_periods", 50, int)
        self.stop_periods = _positive(self, "stop_periods", 500, int)
        period_ns = NS / self.control_rate_hz
        self.watchdog = Watchdog(
            hold_ns=int(self.watchdog_periods * period_ns),
            stop_ns=int(max(self.stop_periods, self.watchdog_periods) * period_ns),
            max_bad_commands=_positive(self, "max_bad_commands", 1, int),
            max_read_errors=_positive(self, "max_read_errors", 5, int),
        )
        self.status_rate_hz = _positive(self, "status_rate_hz", 1.0, float)
        mode = self.declare_parameter("command_mode", "position").value
        modes = {m.value: m for m in (ControlMode.POSITION, ControlMode.IMPEDANCE)}
        if mode not in modes:
            raise ParameterError(f"node '{self.get_name()}': parameter 'command_mode' must be one of "
                                 f"{sorted(modes)}, got {mode!r}")
        self.command_mode = modes[mode]   # IMPEDANCE: the setpoint with the device's default gains
        self.joint_names = list(robot.joint_names)
        self._index = {name: i for i, name in enumerate(self.joint_names)}
        self.clamped = self.rejected = self.read_errors = self.write_errors = 0
        self.stale_steps = self.stale_chunks = self.ignored = 0
        self.state: RobotState | None = None
        self.started = False
        self._trajectory = TrajectoryBuffer()
        self._ensemble = self._make_ensemble()
        self._setpoint: np.ndarray | None = None
        self._last_command_ns = 0
        self.state_pub = self.create_publisher(JOINT_STATE, "joint_states", 10)
        self.status_pub = self.create_publisher(DIAGNOSTIC_STATUS, "~/status", 10)
        self.create_subscription(JOINT_STATE, "joint_commands", self._on_joint_command, 10)
        self.create_subscription(ACTION_CHUNK, "action_chunk", self._on_action_chunk, 10)

    def _make_ensemble(self) -> ChunkEnsemble | None:
        enabled = self.declare_parameter("ensemble", False).value
        decay = self.declare_parameter("ensemble_decay", 0.01).value
        if not decay >= 0:
            raise ParameterError(f"node '{self.get_name()}': parameter 'ensemble_decay' must be >= 0, got {decay!r}")
        return ChunkEnsemble(decay) if enabled else None

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Connect the device, read it once and start the state, control and status timers."""
        if self.started:
            return
        self.robot.connect()
        self.started = True
        self._read_state()
        self.state_timer = self.create_timer(1.0 / self.state_rate_hz, self._read_state, name="state")
        self.control_timer = self.create_timer(1.0 / self.control_rate_hz, self._control, name="control")
        self.create_timer(1.0 / self.status_rate_hz, self.publish_status, name="status")
        self.get_logger().info(
            f"{self.robot.kind}: {len(self.joint_names)} joints, state {self.state_rate_hz:g} Hz, "
            f"control {self.control_rate_hz:g} Hz on {self.state_pub.topic}"
        )
        self.publish_status()

    def destroy_node(self) -> None:
        if self.started:
            self.started = False
            try:
                self.robot.disconnect()
            except Exception as exc:  # shutting down: say why, keep going
                self.get_logger().error(f"disconnect failed: {exc!r}")
        super().destroy_node()

    @property
    def health(self) -> Health:
        return self.watchdog.health

    @property
    def watchdog_trips(self) -> int:
        return self.watchdog.trips

    def reset_fault(self) -> None:
        """Accept commands again after a fault; the next one starts from the measured position."""
        if self.watchdog.faulted:
            self.get_logger().warning(f"fault reset (was: {self.watchdog.reason})")
        self.watchdog.reset()
        self._trajectory.clear()
        self._clear_ensemble()
        self._setpoint = None
        self.publish_status()

    # --- state -----------------------------------------------------------------------------------
    def _read_state(self) -> None:
        try:
            state = self.robot.read()
            self._check_state(state)
        except Exception as exc:  # a device error is counted, never crashes the loop
            self.read_errors += 1
            why = self.watchdog.read_failed(f"{type(exc).__name__}: {exc}")
            if why:
                self._trip(why)
            return
        self.watchdog.read_ok()
        self.state = state
        self.state_pub.publish(convert.joint_state(
            self.joint_names, state.position, state.velocity, state.effort, stamp=Time(state.stamp_ns)))

    def _check_state(self, state: RobotState) -> None:
        n = len(self.joint_names)
        position = np.asarray(state.position, dtype=np.float64)
        if position.shape != (n,) or not np.all(np.isfinite(position)):
            raise ValueError(f"bad frame: need {n} finite positions, got {position!r}")

    # --- control ---------------------------------------------------------------------------------
    def _control(self) -> None:
        if self.watchdog.faulted or self._trajectory.empty:
            return
        now = self._now_ns()
        health = self.watchdog.health
        why = self.watchdog.silence(now - max(self._last_command_ns, self._trajectory.end_ns or 0))
        if why:
            self._trip(why)
            return
        if self.watchdog.health is not health:
            self.get_logger().warning(self.watchdog.reason)
            self.publish_status()
        self._setpoint = self._trajectory.sample(now)
        try:
            self.robot.write(JointCommand(self.command_mode, position=self._setpoint))
        except Exception as exc:  # counted; a failing device also fails its reads
            self.write_errors += 1
            if self.write_errors % 100 == 1:
                self.get_logger().error(f"write failed ({self.write_errors} so far): {exc!r}")

    def _trip(self, reason: str) -> None:
        if not self.watchdog.trip(reason):
            return
        self._trajectory.clear()
        self._clear_ensemble()
        self._setpoint = None
        self.get_logger().error(f"watchdog tripped, safe stop: {reason}")
        try:
            self.robot.safe_stop()
        except Exception as exc:  # report it; nothing else can be done here
            self.get_logger().critical(f"safe_stop() failed: {exc!r}")
        self.publish_status()

    # --- commands --------------------------------------------------------------------------------
    def _on_joint_command(self, msg: Any) -> None:
        if self._ignoring():
            return
        position = np.asarray(msg.position, dtype=np.float64)
        try:
            columns = self._columns(list(msg.name), position.size)
            self._check_finite(position)
        except BadCommand as exc:
            self._bad_command(f"joint_commands: {exc}")
            return
        now = self._now_ns()
        due = Time.from_msg(msg.header.stamp).nanoseconds or now
        start = self._current_setpoint(now)
        target = start.copy()
        target[columns] = position
        self._clear_ensemble()  # a waypoint replaces any plan
        self._accept(now, start, [due], [target])

    def _on_action_chunk(self, msg: Any) -> None:
        if self._ignoring():
            return
        try:
            rows, columns, dt_ns = self._chunk_rows(msg)
        except BadCommand as exc:
            self._bad_command(f"action_chunk: {exc}")
            return
        now = self._now_ns()
        t0 = Time.from_msg(msg.header.stamp).nanoseconds or now
        times = t0 + dt_ns * np.arange(len(rows), dtype=np.int64)
        fresh = times >= now
        self.stale_steps += int(np.count_nonzero(~fresh))
        if not fresh.any():
            self.stale_chunks += 1
            self.watchdog.command_ok()
            self.get_logger().warning(f"action_chunk entirely stale ({(now - int(times[-1])) / 1e6:.1f} ms late)")
            return
        start = self._current_setpoint(now)
        targets = np.tile(start, (int(np.count_nonzero(fresh)), 1))
        targets[:, columns] = rows[fresh]
        due = [int(t) for t in times[fresh]]
        if self._ensemble is not None:
            targets = self._ensemble.add(now, due, targets)
        self._accept(now, start, due, list(targets))

    def _chunk_rows(self, msg: Any) -> tuple[np.ndarray, np.ndarray, int]:
        names, steps = list(msg.names), int(msg.steps)
        actions = np.asarray(msg.actions, dtype=np.float64)
        if not names or steps < 1 or actions.size != steps * len(names):
            raise BadCommand(f"{actions.size} actions for {steps} steps x {len(names)} names")
        dt_ns = int(msg.dt.sec) * NS + int(msg.dt.nanosec)
        if steps > 1 and dt_ns <= 0:
            raise BadCommand(f"dt must be > 0 for {steps} steps")
        columns = self._columns(names, len(names))
        self._check_finite(actions)
        return actions.reshape(steps, len(names)), columns, dt_ns

    def _columns(self, names: list[str], width: int) -> np.ndarray:
        if not names:
            if width != len(self.joint_names):
                raise BadCommand(f"{width} positions without names for {len(self.joint_names)} joints")
            return np.arange(width)
        if len(names) != width:
            raise BadCommand(f"{width} values for {len(names)} names")
        unknown = [n for n in names if n not in self._index]
        if unknown or len(set(names)) != len(names):
            raise BadCommand(f"unknown or repeated joint names {unknown or names}; joints are {self.joint_names}")
        return np.array([self._index[n] for n in names], dtype=np.intp)

    @staticmethod
    def _check_finite(values: np.ndarray) -> None:
        if not np.all(np.isfinite(values)):
            raise BadCommand(f"non-finite values {values.tolist()}")

    def _accept(self, now: int, start: np.ndarray, times: list[int], targets: list[np.ndarray]) -> None:
        clamped = []
        any_clamped = False
        for target in targets:
            c, n = self.robot.limits.clamp(target)
            clamped.append(c)
            any_clamped = any_clamped or n > 0
        self.clamped += int(any_clamped)
        self._trajectory.replace(now, start, times, clamped)
        self._last_command_ns = now
        self.watchdog.command_ok()

    def _bad_command(self, why: str) -> None:
        self.rejected += 1
        if self.rejected % 100 == 1:
            self.get_logger().warning(f"rejected command #{self.rejected}: {why}")
        reason = self.watchdog.command_bad(why)
        if reason:
            self._trip(reason)

    def _ignoring(self) -> bool:
        no_base = self.state is None and self._setpoint is None and self._trajectory.empty
        if self.watchdog.faulted or not self.started or no_base:
            self.ignored += 1
            return True
        return False

    def _clear_ensemble(self) -> None:
        if self._ensemble is not None:
            self._ensemble.clear()

    def _current_setpoint(self, now: int) -> np.ndarray:
        if not self._trajectory.empty:
            return self._trajectory.sample(now)
        if self._setpoint is not None:
            return self._setpoint.copy()
        return np.asarray(self.state.position, dtype=np.float64).copy()

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    # --- status ----------------------------------------------------------------------------------
    def counters(self) -> dict[str, int]:
        return {
            "clamped": self.clamped, "rejected": self.rejected, "watchdog_trips": self.watchdog.trips,
            "holds": self.watchdog.holds, "read_errors": self.read_errors, "write_errors": self.write_errors,
            "stale_steps": self.stale_steps, "stale_chunks": self.stale_chunks, "ignored": self.ignored,
        }

    def publish_status(self) -> None:
        kv = messages.get_class("diagnostic_msgs/msg/KeyValue")
        self.status_pub.publish(messages.make(
            DIAGNOSTIC_STATUS, level=_LEVEL[self.watchdog.health], name=self.get_fully_qualified_name(),
            message=self.watchdog.reason or self.watchdog.health.value,
            hardware_id=getattr(self.robot, "kind", type(self.robot).__name__),
            values=[kv(key=k, value=str(v)) for k, v in self.counters().items()],
        ))
