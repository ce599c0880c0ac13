"""Control tables as data: one frozen `Register` per entry, one `ControlTable` per motor model.

Addresses are the published ones (ROBOTIS e-Manual "Control Table" of the X series, protocol 2.0;
Feetech SMS/STS memory table of the STS3215). Both buses are little-endian. Signed values are two's
complement on Dynamixel and sign-magnitude on Feetech (`sign_bit`: the bit that carries the sign).
Generic names (`present_position`, `goal_position`, `torque_enable`...) are the same on every model,
so devices and the bus never spell an address.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from drivers.servo.errors import UnknownRegister


@dataclass(frozen=True)
class Register:
    name: str
    address: int
    size: int                    # bytes: 1, 2 or 4
    signed: bool = False         # two's complement (unless sign_bit is set)
    sign_bit: int | None = None  # sign-magnitude: this bit is the sign, the bits below the magnitude
    unit: str = ""
    scale: float = 1.0           # one tick in `unit`
    writable: bool = True

    def encode(self, value: int) -> bytes:
        """A value in ticks -> the register's bytes."""
        value = int(value)
        if self.sign_bit is not None:
            magnitude = min(abs(value), (1 << self.sign_bit) - 1)
            raw = magnitude | ((1 << self.sign_bit) if value < 0 else 0)
        elif self.signed:
            lo, hi = -(1 << (8 * self.size - 1)), (1 << (8 * self.size - 1)) - 1
            raw = min(max(value, lo), hi) & ((1 << (8 * self.size)) - 1)
        else:
            raw = min(max(value, 0), (1 << (8 * self.size)) - 1)
        return raw.to_bytes(self.size, "little")

    def decode(self, data: bytes) -> int:
        """The register's bytes -> a value in ticks."""
        raw = int.from_bytes(data[: self.size], "little")
        if self.sign_bit is not None:
            magnitude = raw & ((1 << self.sign_bit) - 1)
            return -magnitude if raw & (1 << self.sign_bit) else magnitude
        if self.signed and raw & (1 << (8 * self.size - 1)):
            return raw - (1 << (8 * self.size))
        return raw


@dataclass(frozen=True)
class ControlTable:
    model: str
    model_number: int
    protocol: str                 # "dynamixel" or "feetech"
    resolution: int               # position ticks per turn
    registers: Mapping[str, Register] = field(default_factory=dict)
    memory_size: int = 256        # bytes of control-table memory (the emulator's)
    defaults: Mapping[str, int] = field(default_factory=dict)   # factory values (the emulator's)

    def __getitem__(self, name: str) -> Register:
        try:
            return self.registers[name]
        except KeyError:
            raise UnknownRegister(f"{self.model}: no register '{name}'; has {sorted(self.registers)}") from None

    def __contains__(self, name: str) -> bool:
        return name in self.registers

    @property
    def radians_per_tick(self) -> float:
        return 2 * math.pi / self.resolution


def _table(model: str, number: int, protocol: str, resolution: int, memory: int,
           regs: list[Register], defaults: dict[str, int]) -> ControlTable:
    return ControlTable(model, number, protocol, resolution, MappingProxyType({r.name: r for r in regs}),
                        memory, MappingProxyType(defaults))


def _x_series(current_ma: float) -> list[Register]:
    """The Dynamixel X-series (XL330, XC330, XM430) protocol 2.0 table; only the current unit differs."""
    R = Register
    deg = 0.087891  # 360/4096
    return [
        R("model_number", 0, 2, writable=False), R("firmware_version", 6, 1, writable=False),
        R("id", 7, 1), R("baud_rate", 8, 1), R("return_delay_time", 9, 1, unit="us", scale=2.0),
        R("drive_mode", 10, 1), R("operating_mode", 11, 1), R("homing_offset", 20, 4, signed=True, unit="deg",
                                                                     scale=deg),
        R("moving_threshold", 24, 4), R("temperature_limit", 31, 1, unit="C"),
        R("max_voltage_limit", 32, 2, unit="V", scale=0.1), R("min_voltage_limit", 34, 2, unit="V", scale=0.1),
        R("pwm_limit", 36, 2), R("current_limit", 38, 2, unit="mA", scale=current_ma),
        R("velocity_limit", 44, 4, unit="rpm", scale=0.229),
        R("max_position_limit", 48, 4), R("min_position_limit", 52, 4), R("shutdown", 63, 1),
        R("torque_enable", 64, 1), R("led", 65, 1), R("status_return_level", 68, 1),
        R("hardware_error_status", 70, 1, writable=False),
        R("velocity_i_gain", 76, 2), R("velocity_p_gain", 78, 2),
        R("position_d_gain", 80, 2), R("position_i_gain", 82, 2), R("position_p_gain", 84, 2),
        R("goal_pwm", 100, 2, signed=True), R("goal_current", 102, 2, signed=True, unit="mA", scale=current_ma),
        R("goal_velocity", 104, 4, signed=True, unit="rpm", scale=0.229),
        R("profile_acceleration", 108, 4), R("profile_velocity", 112, 4),
        R("goal_position", 116, 4, signed=True, unit="deg", scale=deg),
        R("moving", 122, 1, writable=False),
        R("present_pwm", 124, 2, signed=True, writable=False),
        R("present_current", 126, 2, signed=True, unit="mA", scale=current_ma, writable=False),
        R("present_velocity", 128, 4, signed=True, unit="rpm", scale=0.229, writable=False),
        R("present_position", 132, 4, signed=True, unit="deg", scale=deg, writable=False),
        R("present_input_voltage", 144, 2, unit="V", scale=0.1, writable=False),
        R("present_temperature", 146, 1, unit="C", writable=False),
    ]


_X_DEFAULTS = {"operating_mode": 3, "max_position_limit": 4095, "min_position_limit": 0,
               "present_position": 2048, "goal_position": 2048, "firmware_version": 0x30,
               "present_input_voltage": 50, "present_temperature": 30, "velocity_limit": 445}

XL330_M288 = _table("xl330-m288", 1200, "dynamixel", 4096, 700, _x_series(1.0), _X_DEFAULTS)
XL330_M077 = _table("xl330-m077", 1190, "dynamixel", 4096, 700, _x_series(1.0), _X_DEFAULTS)
XC330_M288 = _table("xc330-m288", 1240, "dynamixel", 4096, 700, _x_series(1.0), _X_DEFAULTS)
XM430_W350 = _table("xm430-w350", 1020, "dynamixel", 4096, 700, _x_series(2.69),
                    {**_X_DEFAULTS, "present_input_voltage": 120})


def _sts3215() -> list[Register]:
    R = Register
    deg = 0.087891
    return [
        R("firmware_major", 0, 1, writable=False), R("firmware_minor", 1, 1, writable=False),
        R("model_number", 3, 2, writable=False), R("id", 5, 1), R("baud_rate", 6, 1),
        R("return_delay_time", 7, 1, unit="us", scale=2.0), R("status_return_level", 8, 1),
        R("min_position_limit", 9, 2), R("max_position_limit", 11, 2), R("temperature_limit", 13, 1, unit="C"),
        R("max_voltage_limit", 14, 1, unit="V", scale=0.1), R("min_voltage_limit", 15, 1, unit="V", scale=0.1),
        R("max_torque_limit", 16, 2, unit="%", scale=0.1), R("phase", 18, 1), R("unloading_condition", 19, 1),
        R("led_alarm_condition", 20, 1), R("position_p_gain", 21, 1), R("position_d_gain", 22, 1),
        R("position_i_gain", 23, 1), R("minimum_startup_force", 24, 2), R("cw_dead_zone", 26, 1),
        R("ccw_dead_zone", 27, 1), R("protection_current", 28, 2, unit="mA", scale=6.5),
        R("angular_resolution", 30, 1), R("homing_offset", 31, 2, sign_bit=11, unit="deg", scale=deg),
        R("operating_mode", 33, 1), R("protective_torque", 34, 1), R("protection_time", 35, 1),
        R("overload_torque", 36, 1), R("torque_enable", 40, 1), R("acceleration", 41, 1),
        R("goal_position", 42, 2, sign_bit=15, unit="deg", scale=deg), R("goal_time", 44, 2, unit="ms"),
        R("goal_velocity", 46, 2, sign_bit=15, unit="step/s"), R("torque_limit", 48, 2, unit="%", scale=0.1),
        R("lock", 55, 1), R("present_position", 56, 2, sign_bit=15, unit="deg", scale=deg, writable=False),
        R("present_velocity", 58, 2, sign_bit=15, unit="step/s", writable=False),
        R("present_load", 60, 2, sign_bit=10, unit="%", scale=0.1, writable=False),
        R("present_input_voltage", 62, 1, unit="V", scale=0.1, writable=False),
        R("present_temperature", 63, 1, unit="C", writable=False), R("status", 65, 1, writable=False),
        R("moving", 66, 1, writable=False),
        R("present_current", 69, 2, sign_bit=15, unit="mA", scale=6.5, writable=False),
    ]


STS3215 = _table("sts3215", 777, "feetech", 4096, 256, _sts3215(),
                 {"firmware_major": 3, "firmware_minor": 10, "max_position_limit": 4095, "min_position_limit": 0,
                  "present_position": 2048, "goal_position": 2048, "max_torque_limit": 1000, "torque_limit": 1000,
                  "present_input_voltage": 120, "present_temperature": 30, "lock": 1})

MODELS: Mapping[str, ControlTable] = MappingProxyType(
    {t.model: t for t in (XL330_M288, XL330_M077, XC330_M288, XM430_W350, STS3215)})


def table(model: str) -> ControlTable:
    """The control table of `model` (e.g. "xl330-m288", "sts3215")."""
    try:
        return MODELS[model]
    except KeyError:
        raise UnknownRegister(f"unknown servo model '{model}'; known: {sorted(MODELS)}") from None
