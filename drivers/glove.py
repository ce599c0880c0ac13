"""Data glove: Hall-effect sensors streamed as ASCII lines over USB serial (115200 baud, ~1 kHz).

Line format (what open glove/exoskeleton firmwares print, one sample per line):

    <v0>,<v1>,...,<vN-1>\\n        e.g.  "512,498,1023,0,77,...\\n"   (N = `num_sensors`, 15 or 16)

- exactly N fields separated by ',', each an unsigned decimal integer 0..`adc_max` (default 4095);
  spaces around a field and a '\\r' before the '\\n' are allowed; nothing else is;
- every '\\n' ends one line (except the one ending a skipped partial first line), which is counted
  either `lines_ok` or `lines_bad` (empty, truncated, wrong field count, non-digit, out of range,
  or longer than `max_line` bytes), so `lines_ok + lines_bad` equals the number of newlines fed
  (less the one ending a skipped first line);
- bytes before the first newline after (re)connecting are a partial line and are skipped once
  (`bytes_skipped`), as is the tail of an over-long line.

A line is stamped with the time its last byte arrived (the reader thread's clock reading right
after the read that returned it). `GloveCalibration` maps raw counts to 0..1 per sensor with a
stored min/max (YAML) and to joint positions in [joint_lower, joint_upper].
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from drivers.sensor_common import ReaderThread, SensorConfigError, SensorDisconnected
from robot_stack.clock import Clock, Time

BAUDRATE = 115200


@dataclass(frozen=True)
class GloveSample:
    stamp: Time          # arrival time of the line's last byte
    values: np.ndarray   # (N,) int32 raw counts


@dataclass(frozen=True)
class GloveConfig:
    port: str = "/dev/ttyACM0"
    num_sensors: int = 16
    adc_max: int = 4095
    max_line: int = 256
    baudrate: int = BAUDRATE
    read_timeout_s: float = 0.05
    queue_size: int = 4096                 # samples kept for drain(); older ones are dropped (counted)

    def __post_init__(self):
        if not 1 <= self.num_sensors <= 64:
            raise SensorConfigError(f"GloveConfig.num_sensors must be 1..64, got {self.num_sensors}")
        if self.adc_max < 1:
            raise SensorConfigError(f"GloveConfig.adc_max must be >= 1, got {self.adc_max}")
        if self.max_line < 2 * self.num_sensors:
            raise SensorConfigError(f"GloveConfig.max_line {self.max_line} is too short for {self.num_sensors} fields")


class GloveLineParser:
    """Streaming parser: `feed(chunk, stamp)` -> complete valid samples. Never raises on data."""

    def __init__(self, num_sensors: int = 16, adc_max: int = 4095, max_line: int = 256, skip_first: bool = False):
        self.num_sensors, self.adc_max, self.max_line = num_sensors, adc_max, max_line
        self._buf = bytearray()
        self._overflow = False               # over-long line: discarding up to its newline (one bad line)
        self._resync = skip_first            # partial first line: discarding up to the next newline (not a line)
        self.lines_ok = 0
        self.lines_bad = 0
        self.bytes_skipped = 0

    @property
    def lines(self) -> int:
        return self.lines_ok + self.lines_bad

    def counters(self) -> dict[str, int]:
        return {"lines_ok": self.lines_ok, "lines_bad": self.lines_bad, "bytes_skipped": self.bytes_skipped}

    def resync(self) -> None:
        """After a reconnect: forget the partial line and skip up to the next newline."""
        self._buf.clear()
        self._overflow, self._resync = False, True

    def feed(self, chunk: bytes, stamp: Time) -> list[GloveSample]:
        out: list[GloveSample] = []
        start = 0
        while True:
            nl = chunk.find(b"\n", start)
            if nl < 0:
                self._keep(chunk[start:])
                return out
            piece = chunk[start:nl]
            start = nl + 1
            if self._overflow or self._resync:
                self.bytes_skipped += len(piece) + len(self._buf)
                self._buf.clear()
                self.lines_bad += self._overflow     # a skipped partial first line is not a line
                self._overflow = self._resync = False
                continue
            line = bytes(self._buf) + piece if self._buf else piece
            self._buf.clear()
            values = self.parse_line(line) if len(line) <= self.max_line else None
            if values is None:
                self.lines_bad += 1
            else:
                self.lines_ok += 1
                out.append(GloveSample(stamp, values))

    def _keep(self, tail: bytes) -> None:
        if self._overflow or self._resync:
            self.bytes_skipped += len(tail)
            return
        self._buf += tail
        if len(self._buf) > self.max_line:
            self.bytes_skipped += len(self._buf)
            self._buf.clear()
            self._overflow = True

    def parse_line(self, line: bytes) -> np.ndarray | None:
        """The values of one line (without its '\\n'), or None if it is not a valid line."""
        if line.endswith(b"\r"):
            line = line[:-1]
        fields = line.split(b",")
        if len(fields) != self.num_sensors:
            return None
        values = []
        for f in fields:
            f = f.strip(b" ")
            if not f or len(f) > 6 or not f.isdigit():
                return None
            v = int(f)
            if v > self.adc_max:
                return None
            values.append(v)
        return np.array(values, dtype=np.int32)


def format_line(values: np.ndarray | list[int]) -> bytes:
    """The line a glove prints for `values` (used by the emulator and tests)."""
    return (",".join(str(int(v)) for v in values) + "\n").encode("ascii")


@dataclass(frozen=True)
class GloveCalibration:
    """Per-sensor raw min/max -> 0..1, then 0..1 -> [joint_lower, joint_upper] (rad)."""

    sensor_names: tuple[str, ...]
    raw_min: tuple[float, ...]
    raw_max: tuple[float, ...]
    joint_lower: tuple[float, ...] = field(default=())
    joint_upper: tuple[float, ...] = field(default=())

    def __post_init__(self):
        n = len(self.sensor_names)
        if n == 0:
            raise SensorConfigError("GloveCalibration.sensor_names must not be empty")
        if not self.joint_lower:
            object.__setattr__(self, "joint_lower", (0.0,) * n)
        if not self.joint_upper:
            object.__setattr__(self, "joint_upper", (1.5708,) * n)
        for name in ("raw_min", "raw_max", "joint_lower", "joint_upper"):
            values = getattr(self, name)
            if len(values) != n:
                raise SensorConfigError(f"GloveCalibration.{name} has {len(values)} values for {n} sensors")
            if not all(np.isfinite(v) for v in values):
                raise SensorConfigError(f"GloveCalibration.{name} must be finite numbers, got {list(values)}")
            object.__setattr__(self, name, tuple(float(v) for v in values))
        bad = [s for s, lo, hi in zip(self.sensor_names, self.raw_min, self.raw_max, strict=True) if not hi > lo]
        if bad:
            raise SensorConfigError(f"GloveCalibration.raw_max must exceed raw_min; not so for {bad}")

    @classmethod
    def default(cls, num_sensors: int = 16, adc_max: int = 4095) -> GloveCalibration:
        names = tuple(f"sensor{i}" for i in range(num_sensors))
        return cls(names, (0.0,) * num_sensors, (float(adc_max),) * num_sensors)

    @classmethod
    def from_samples(cls, values: np.ndarray, sensor_names: tuple[str, ...] | None = None,
                     **joints: Any) -> GloveCalibration:
        """Min/max over recorded raw samples (M, N), e.g. the operator opening and closing the hand."""
        values = np.asarray(values, dtype=float)
        if values.ndim != 2 or values.shape[0] < 2:
            raise SensorConfigError(f"calibration needs at least 2 samples of shape (M, N), got {values.shape}")
        names = sensor_names or tuple(f"sensor{i}" for i in range(values.shape[1]))
        return cls(tuple(names), tuple(values.min(0)), tuple(values.max(0)), **joints)

    def normalize(self, raw: np.ndarray) -> np.ndarray:
        lo, hi = np.asarray(self.raw_min), np.asarray(self.raw_max)
        return np.clip((np.asarray(raw, dtype=float) - lo) / (hi - lo), 0.0, 1.0)

    def joints(self, raw: np.ndarray) -> np.ndarray:
        lo, hi = np.asarray(self.joint_lower), np.asarray(self.joint_upper)
        return lo + self.normalize(raw) * (hi - lo)

    def save(self, path: str | Path) -> None:
        data = {k: list(getattr(self, k)) for k in ("sensor_names", "raw_min", "raw_max", "joint_lower", "joint_upper")}
        Path(path).write_text(yaml.safe_dump(data, sort_keys=False))

    @classmethod
    def load(cls, path: str | Path) -> GloveCalibration:
        try:
            data = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise SensorConfigError(f"{path}: cannot read glove calibration: {exc}") from exc
        if not isinstance(data, dict):
            raise SensorConfigError(f"{path}: a glove calibration is a mapping, got {type(data).__name__}")
        keys = ("sensor_names", "raw_min", "raw_max", "joint_lower", "joint_upper")
        unknown = set(data) - set(keys)
        if unknown or not {"sensor_names", "raw_min", "raw_max"} <= set(data):
            raise SensorConfigError(f"{path}: glove calibration needs {keys[:3]} (+ optional joint_*), "
                                    f"unknown: {sorted(unknown)}")
        try:
            return cls(**{k: tuple(data[k]) for k in keys if k in data})
        except (TypeError, ValueError) as exc:
            if isinstance(exc, SensorConfigError):
                raise SensorConfigError(f"{path}: {exc}") from exc
            raise SensorConfigError(f"{path}: bad glove calibration: {exc}") from exc


def _open_serial(config: GloveConfig) -> Any:
    import serial

    return serial.Serial(config.port, config.baudrate, timeout=config.read_timeout_s)


class Glove:
    """The glove over pyserial: a reader thread parses and stamps lines; `drain()`/`latest()` read them.

    `serial_factory(config)` opens the port (default: `serial.Serial(port, 115200)`); inject
    another for tests. A read error (unplug) stops the thread; `check()` then raises it.
    """

    def __init__(self, config: GloveConfig | None = None, *, clock: Clock | None = None,
                 serial_factory: Callable[[GloveConfig], Any] = _open_serial):
        self.config = config or GloveConfig()
        self.clock = clock or Clock()
        self._factory = serial_factory
        self._port: Any = None
        self.parser = GloveLineParser(self.config.num_sensors, self.config.adc_max, self.config.max_line)
        self._queue: deque[GloveSample] = deque(maxlen=self.config.queue_size)
        self._latest: GloveSample | None = None
        self.samples = 0
        self.queue_dropped = 0
        self._reader = ReaderThread(f"glove:{self.config.port}", self._read_once)

    @property
    def connected(self) -> bool:
        return self._port is not None and self._reader.running

    def connect(self) -> None:
        if self.connected:
            return
        self.disconnect()                      # a port left over from a reader that died
        try:
            self._port = self._factory(self.config)
        except Exception as exc:  # serial.SerialException, OSError, ...
            raise SensorDisconnected(f"glove: cannot open {self.config.port}: {exc}") from exc
        self.parser.resync()
        self._reader.start()

    def _read_once(self) -> None:
        port = self._port
        chunk = port.read(max(1, port.in_waiting))
        if not chunk:
            return
        for sample in self.parser.feed(chunk, self.clock.now()):
            if len(self._queue) == self._queue.maxlen:
                self.queue_dropped += 1
            self._queue.append(sample)
            self._latest = sample
            self.samples += 1

    def check(self) -> None:
        """Raise SensorDisconnected if the reader stopped on an error (e.g. the device was unplugged)."""
        if self._reader.error is not None:
            raise SensorDisconnected(f"glove on {self.config.port} disconnected: {self._reader.error}")
        if self._port is None:
            raise SensorDisconnected(f"glove on {self.config.port} is not connected")

    def drain(self) -> list[GloveSample]:
        out = []
        while self._queue:
            out.append(self._queue.popleft())
        return out

    def latest(self) -> GloveSample | None:
        return self._latest

    def disconnect(self) -> None:
        self._reader.stop()
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except Exception:  # closing a port whose device is gone may fail; it is closed either way
                pass
