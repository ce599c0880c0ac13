"""Byte-level data-glove emulator: a pty whose slave end the driver opens with pyserial like a real
/dev/ttyACM0, streaming `drivers.glove` lines of generated finger motion at `rate_hz` (~1 kHz).

Fault injection: `inject_garbage(n)` (random bytes), `inject_truncated()` (half a line),
`silent = True` (stream paused), `unplug()` (the master end is closed: reads on the slave fail
like a USB device that went away). `GloveEmulatorNode` runs one inside a launch file and
publishes the slave path as a symlink (`link`, default /tmp/robot_stack_glove).
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
import tty
from typing import Any

import numpy as np

from drivers.glove import format_line
from drivers.sensor_common import ReaderThread, SensorError
from robot_stack.node import Node


class GloveEmulator:
    def __init__(self, num_sensors: int = 16, rate_hz: float = 1000.0, adc_max: int = 4095, seed: int = 0):
        self.num_sensors, self.rate_hz, self.adc_max = num_sensors, rate_hz, adc_max
        self._rng = np.random.default_rng(seed)
        self._phase = self._rng.uniform(0, 2 * math.pi, num_sensors)
        self._lock = threading.Lock()
        self._master: int | None = None
        self._slave: int | None = None
        self.port = ""
        self.silent = False
        self.lines_sent = 0
        self.bytes_dropped = 0          # not written because the reader did not keep up (pty full)
        self._start = 0.0
        self._thread = ReaderThread("glove-emulator", self._step)

    def values_at(self, t: float) -> np.ndarray:
        """Raw counts of a hand closing and opening (0.5 Hz), each finger a little out of phase."""
        wave = 0.5 + 0.45 * np.sin(2 * math.pi * 0.5 * t + self._phase)
        return np.round(wave * self.adc_max).astype(np.int32)

    def start(self) -> str:
        """Open the pty and start streaming; returns the slave path to open with pyserial."""
        master, slave = os.openpty()
        tty.setraw(slave)                   # no echo, no CR/LF translation: bytes pass as sent
        os.set_blocking(master, False)
        self._master, self._slave, self.port = master, slave, os.ttyname(slave)
        self._start = time.monotonic()
        self._thread.start()
        return self.port

    def _step(self) -> None:
        period = 1.0 / self.rate_hz
        due = int((time.monotonic() - self._start) / period)
        if self.silent:
            self.lines_sent = due
        elif due > self.lines_sent:
            n = min(due - self.lines_sent, 50)
            t0 = self.lines_sent * period
            data = b"".join(format_line(self.values_at(t0 + i * period)) for i in range(n))
            self._write(data)
            self.lines_sent = due
        time.sleep(min(period, 0.002))

    def _write(self, data: bytes) -> None:
        with self._lock:
            if self._master is None:
                raise SensorError("glove emulator unplugged")
            try:
                written = os.write(self._master, data)
            except BlockingIOError:
                written = 0
            self.bytes_dropped += len(data) - written

    def inject(self, data: bytes) -> None:
        self._write(data)

    def inject_garbage(self, n: int = 64) -> None:
        self._write(self._rng.integers(0, 256, n, dtype=np.uint8).tobytes())

    def inject_truncated(self) -> None:
        line = format_line(self.values_at(0.0))
        self._write(line[: len(line) // 2] + b"\n")

    def unplug(self) -> None:
        """Close the master end: the device is gone (the driver's reads fail)."""
        self._thread.stop()
        with self._lock:
            if self._master is not None:
                os.close(self._master)
                self._master = None

    def stop(self) -> None:
        self.unplug()
        if self._slave is not None:
            os.close(self._slave)
            self._slave = None


class GloveEmulatorNode(Node):
    """Runs a `GloveEmulator` in a launch file; the pty appears at parameter `link`."""

    def __init__(self, node_name: str = "glove_emulator", **kwargs: Any):
        super().__init__(node_name, **kwargs)
        self.link = self.declare_parameter("link", "/tmp/robot_stack_glove").value
        self.emulator = GloveEmulator(
            int(self.declare_parameter("num_sensors", 16).value), float(self.declare_parameter("rate_hz", 1000.0).value)
        )
        self._timer = self.create_timer(0.05, self._start_once, name="start")

    def _start_once(self) -> None:
        self._timer.cancel()
        port = self.emulator.start()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.link)
        os.symlink(port, self.link)
        self.get_logger().info(f"emulated glove on {port} (link {self.link})")

    def destroy_node(self) -> None:
        self.emulator.stop()
        with contextlib.suppress(OSError):
            os.unlink(self.link)
        super().destroy_node()
