"""`ServoDevice`: a `Robot` on a servo bus (position control), and the shared config types.

The bus is injected (`ServoDevice(bus, config, calibration)`; `ServoDevice.on_port(port)` builds a
serial one); nothing touches it before `connect()`, which reads the present pose, sets the goal to
it and turns torque on (the device holds still). Every bus cycle goes through a `BusWatchdog`:
`max_failures` failed cycles in a row (or an unplugged port, at once) -> `safe_stop()` and
`BusTripped`.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np

from drivers.servo.bus import PROTOCOLS, MotorBus, SerialMotorBus, get_protocol
from drivers.servo.calibration import Calibration, default_calibration, rad_to_ticks, ticks_to_rad
from drivers.servo.errors import ServoError
from drivers.servo.tables import ControlTable, table
from drivers.servo.watchdog import BusWatchdog, RetryPolicy
from robot_stack.robot import ControlMode, JointCommand, JointLimits, Robot, RobotConfig, RobotState

log = logging.getLogger("drivers.servo")


@dataclass(frozen=True)
class ServoJoint:
    name: str
    id: int
    model: str
    drive_sign: int = 1            # default sign before calibration


@dataclass(frozen=True)
class ServoDeviceConfig(RobotConfig):
    protocol: str = "dynamixel"
    joints: tuple[ServoJoint, ...] = ()
    baudrate: int = 1_000_000
    velocity_limit: float = 4.0            # rad/s, every joint
    effort_limit: float = 1.0              # N*m, every joint
    effort_per_unit: float = 0.00035       # N*m per unit of the load/current register's `unit`
    load_register: str = "present_current"
    policy: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ServoError(f"{type(self).__name__}.protocol must be one of {sorted(PROTOCOLS)}, "
                             f"got {self.protocol!r}")
        ids = [j.id for j in self.joints]
        if len(set(ids)) != len(ids):
            raise ServoError(f"{type(self).__name__}.joints: repeated motor ids {ids}")

    def tables(self) -> dict[int, ControlTable]:
        return {j.id: table(j.model) for j in self.joints}

    def motors(self) -> dict[int, str]:
        """id -> model (what an emulator of this device needs)."""
        return {j.id: j.model for j in self.joints}


class ServoDevice(Robot):
    config_class = ServoDeviceConfig

    def __init__(self, bus: MotorBus, config: ServoDeviceConfig | None = None,
                 calibration: Calibration | None = None):
        self.config = config or self.config_class()
        self.bus = bus
        names = [j.name for j in self.config.joints]
        self._ids = [j.id for j in self.config.joints]
        first = table(self.config.joints[0].model)
        self.resolution = first.resolution
        self.calibration = calibration or default_calibration(
            self.kind, [(j.name, j.id, j.drive_sign) for j in self.config.joints], self.resolution)
        self._cal = self.calibration.arrays(names)
        self._names = names
        self._velocity_scale = self._per_tick(first, "present_velocity")
        self._effort_scale = first[self.config.load_register].scale * self.config.effort_per_unit
        self._last_ticks: np.ndarray | None = None
        self.watchdog = BusWatchdog(getattr(bus, "port", "bus"), self.config.policy, self.safe_stop)

    @classmethod
    def on_port(cls, port: str, config: ServoDeviceConfig | None = None,
                calibration: Calibration | None = None) -> ServoDevice:
        """The device on a serial port (opened by `connect()`)."""
        config = config or cls.config_class()
        bus = SerialMotorBus(port, get_protocol(config.protocol), config.tables(), baudrate=config.baudrate,
                             policy=config.policy)
        return cls(bus, config, calibration)

    def _per_tick(self, t: ControlTable, name: str) -> float:
        reg = t[name]
        if reg.unit == "rpm":
            return reg.scale * 2 * math.pi / 60
        return 2 * math.pi / t.resolution

    # --- Robot -----------------------------------------------------------------------------------
    @property
    def joint_names(self) -> list[str]:
        return list(self._names)

    @property
    def limits(self) -> JointLimits:
        a = ticks_to_rad(self._cal["range_min"], self._cal, self.resolution)
        b = ticks_to_rad(self._cal["range_max"], self._cal, self.resolution)
        n = len(self._names)
        return JointLimits(np.minimum(a, b), np.maximum(a, b), np.full(n, self.config.velocity_limit),
                           np.full(n, self.config.effort_limit))

    def connect(self) -> None:
        """Open the bus (again, after a trip), hold the present pose, torque on."""
        if self.watchdog.tripped is not None:
            self.bus.disconnect()
        self.bus.connect()
        self.watchdog.reset()
        ticks = self.watchdog.call(lambda: self.bus.sync_read("present_position", self._ids))
        self._last_ticks = np.array([ticks[i] for i in self._ids], dtype=np.float64)
        self.watchdog.call(lambda: self.bus.sync_write("goal_position", dict(ticks)))
        self.watchdog.call(lambda: self.bus.sync_write("torque_enable", {i: 1 for i in self._ids}))

    def read(self) -> RobotState:
        regs = [self.config.load_register, "present_velocity", "present_position"]
        values = self.watchdog.call(lambda: self.bus.read_many(regs, self._ids))
        stamp = time.time_ns()             # the process clock of a real robot: wall time (RobotState.stamp_ns)
        col = lambda r: np.array([values[r][i] for i in self._ids], dtype=np.float64)   # noqa: E731
        ticks = col("present_position")
        self._last_ticks = ticks
        sign = self._cal["drive_sign"]
        return RobotState(stamp, ticks_to_rad(ticks, self._cal, self.resolution),
                          sign * col("present_velocity") * self._velocity_scale,
                          sign * col(self.config.load_register) * self._effort_scale)

    def write(self, command: JointCommand) -> None:
        if command.mode not in (ControlMode.POSITION, ControlMode.IMPEDANCE) or command.position is None:
            raise ServoError(f"{self.kind}: only position commands are supported, got {command.mode.value}")
        goal = rad_to_ticks(np.asarray(command.position, dtype=np.float64), self._cal, self.resolution)
        values = {i: int(t) for i, t in zip(self._ids, goal, strict=True)}
        self.watchdog.call(lambda: self.bus.sync_write("goal_position", values))

    def safe_stop(self) -> None:
        """`hold` (goal = last known position) or `torque_off`; never raises."""
        try:
            if self.config.policy.safe_stop == "torque_off" or self._last_ticks is None:
                self.bus.sync_write("torque_enable", {i: 0 for i in self._ids})
            else:
                self.bus.sync_write("goal_position", {i: int(t) for i, t in zip(self._ids, self._last_ticks,
                                                                                strict=True)})
        except Exception as exc:  # noqa: BLE001 - the bus may be gone; say so, keep going
            log.error(f"{self.kind}: safe stop ({self.config.policy.safe_stop}) could not be sent: {exc}")

    def disconnect(self) -> None:
        if self.bus.connected and self.watchdog.tripped is None:
            try:
                self.bus.sync_write("torque_enable", {i: 0 for i in self._ids})
            except Exception as exc:  # noqa: BLE001 - going away anyway
                log.warning(f"{self.kind}: torque off at disconnect failed: {exc}")
        self.bus.disconnect()
