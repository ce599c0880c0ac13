"""Joint calibration of a servo device: ticks <-> radians, stored as YAML.

    device: so101
    joints:
      shoulder_pan: {id: 1, homing_offset: 2048, drive_sign: 1, range_min: 1000, range_max: 3100}

angle [rad] = drive_sign * (ticks - homing_offset) * 2*pi / resolution; `range_min..range_max`
(ticks) bound what is ever written and give the joint limits. `calibrate()` records a home pose and
the ranges; the operator's confirmations come through a `Prompt` the caller provides (the CLI's
asks on the terminal; library code never reads stdin).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import yaml

from drivers.servo.bus import MotorBus
from drivers.servo.errors import CalibrationError

MIN_RANGE_TICKS = 20


@dataclass(frozen=True)
class JointCalibration:
    id: int
    homing_offset: int = 2048
    drive_sign: int = 1
    range_min: int = 0
    range_max: int = 4095

    def __post_init__(self) -> None:
        if self.drive_sign not in (1, -1):
            raise CalibrationError(f"motor {self.id}: drive_sign must be 1 or -1, got {self.drive_sign!r}")
        if not self.range_min < self.range_max:
            raise CalibrationError(f"motor {self.id}: range_min {self.range_min} must be < range_max {self.range_max}")


@dataclass(frozen=True)
class Calibration:
    device: str
    joints: Mapping[str, JointCalibration]
    resolution: int = 4096

    def arrays(self, names: Sequence[str]) -> dict[str, np.ndarray]:
        """Per-joint offset, sign and range in `names` order, as float arrays."""
        missing = [n for n in names if n not in self.joints]
        if missing:
            raise CalibrationError(f"{self.device} calibration has no joint(s) {missing}")
        rows = [self.joints[n] for n in names]
        return {k: np.array([getattr(r, k) for r in rows], dtype=np.float64)
                for k in ("homing_offset", "drive_sign", "range_min", "range_max")}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        body = {"device": self.device, "resolution": self.resolution,
                "joints": {n: asdict(j) for n, j in self.joints.items()}}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(body, sort_keys=False))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        try:
            data = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise CalibrationError(f"{path}: cannot read calibration: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("joints"), dict):
            raise CalibrationError(f"{path}: need a mapping with 'device' and 'joints'")
        joints = {}
        for name, body in data["joints"].items():
            try:
                joints[name] = JointCalibration(**body)
            except TypeError as exc:
                raise CalibrationError(f"{path}: joints.{name}: {exc}") from exc
        return cls(str(data.get("device", "")), joints, int(data.get("resolution", 4096)))


def default_calibration(device: str, joints: Sequence[tuple[str, int, int]], resolution: int = 4096) -> Calibration:
    """Uncalibrated: home at mid-turn, the full turn as range. `joints`: (name, id, drive_sign)."""
    return Calibration(device, {n: JointCalibration(i, resolution // 2, s, 0, resolution - 1) for n, i, s in joints},
                       resolution)


class Prompt(Protocol):
    """How `calibrate` talks to the operator."""

    def confirm(self, message: str) -> None:
        """Show `message`; return once the operator confirms."""

    def record(self, message: str, sample: Callable[[], None]) -> None:
        """Show `message`; call `sample()` repeatedly until the operator confirms."""


class NonInteractive:
    """No operator: the present pose is home; `record` samples `samples` times."""

    def __init__(self, samples: int = 1):
        self.samples = samples

    def confirm(self, message: str) -> None:
        pass

    def record(self, message: str, sample: Callable[[], None]) -> None:
        for _ in range(self.samples):
            sample()


def calibrate(bus: MotorBus, device: str, joints: Sequence[tuple[str, int, int]], prompt: Prompt, *,
              resolution: int = 4096, ranges_from_limits: bool = False) -> Calibration:
    """Torque off, home pose = the middle of every joint's range, then the ranges: recorded while
    the operator moves each joint end to end, or (`ranges_from_limits`) the motors' position-limit
    registers. `joints`: (name, motor id, drive sign)."""
    ids = [i for _, i, _ in joints]
    bus.write("torque_enable", {i: 0 for i in ids})
    prompt.confirm("Torque is off. Move every joint to the middle of its range, then confirm.")
    home = bus.read("present_position", ids)
    low, high = dict(home), dict(home)

    def sample() -> None:
        for i, p in bus.read("present_position", ids).items():
            low[i], high[i] = min(low[i], p), max(high[i], p)

    if ranges_from_limits:
        low, high = bus.read("min_position_limit", ids), bus.read("max_position_limit", ids)
    else:
        prompt.record("Move every joint slowly through its whole range, then confirm.", sample)
    out = {}
    for name, i, sign in joints:
        if high[i] - low[i] < MIN_RANGE_TICKS:
            raise CalibrationError(f"{device}: joint '{name}' (motor {i}) moved only {high[i] - low[i]} ticks "
                                   f"({(high[i] - low[i]) * 360 / resolution:.1f} deg); move it end to end")
        out[name] = JointCalibration(i, home[i], sign, low[i], high[i])
    return Calibration(device, out, resolution)


def ticks_to_rad(ticks: np.ndarray, cal: dict[str, np.ndarray], resolution: int) -> np.ndarray:
    return cal["drive_sign"] * (ticks - cal["homing_offset"]) * (2 * math.pi / resolution)


def rad_to_ticks(rad: np.ndarray, cal: dict[str, np.ndarray], resolution: int) -> np.ndarray:
    ticks = cal["homing_offset"] + cal["drive_sign"] * rad * (resolution / (2 * math.pi))
    return np.clip(np.rint(ticks), cal["range_min"], cal["range_max"]).astype(np.int64)


def default_path(device: str) -> Path:
    """Where `robot-stack calibrate DEVICE` writes by default: $XDG_CONFIG_HOME/robot_stack/calibration/."""
    import os

    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "robot_stack" / "calibration" / f"{device}.yaml"
