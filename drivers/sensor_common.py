"""Shared pieces of the sensor drivers (glove, F/T, cameras, tactile): errors, a background
reader thread that records why it stopped, and the silence watchdog their nodes use.

A sensor driver reads its device on a thread of its own (so every sample is stamped when it
arrives, not when a node polls), and keeps the first error that stopped the thread; `check()`
re-raises it in the caller's thread as a `SensorDisconnected` naming the device.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from robot_stack.errors import RobotStackError


class SensorError(RobotStackError):
    """Base class of the sensor drivers' errors."""


class SensorConfigError(SensorError, ValueError):
    """A sensor configuration or calibration value is wrong (the message names the field)."""


class SensorDisconnected(SensorError):
    """The device went away (unplugged, port closed, socket error) or was never connected."""


class SensorTimeout(SensorError):
    """No data from the device within the allowed time."""


class ReaderThread:
    """Calls `step()` in a loop on a daemon thread until `stop()` or until `step` raises.

    The exception that ended the loop is kept (`error`) instead of escaping the thread.
    """

    def __init__(self, name: str, step: Callable[[], None]):
        self.name = name
        self._step = step
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self.error = None
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._step()
        except BaseException as exc:  # kept for check(); a reader thread must never die silently
            if not self._stop.is_set():
                self.error = exc

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)


class SilenceWatchdog:
    """Trips when `tick()` sees no new sample for `max_silent_ticks` ticks in a row, or when it is
    told the device failed. The first reason latches until `reset()`."""

    def __init__(self, max_silent_ticks: int = 2):
        if max_silent_ticks < 1:
            raise SensorConfigError(f"max_silent_ticks must be >= 1, got {max_silent_ticks}")
        self.max_silent_ticks = int(max_silent_ticks)
        self.silent_ticks = 0
        self.reason = ""
        self.trips = 0
        self._last_count = -1

    @property
    def tripped(self) -> bool:
        return bool(self.reason)

    def trip(self, reason: str) -> bool:
        """Latch `reason`; False when already tripped (the first reason is kept)."""
        if self.tripped:
            return False
        self.reason = reason
        self.trips += 1
        return True

    def tick(self, sample_count: int, period_s: float) -> bool:
        """One node period with `sample_count` samples received so far; True if it tripped now."""
        if self.tripped:
            return False
        if sample_count != self._last_count:
            self._last_count, self.silent_ticks = sample_count, 0
            return False
        self.silent_ticks += 1
        if self.silent_ticks >= self.max_silent_ticks:
            ms = self.silent_ticks * period_s * 1e3
            return self.trip(f"device silent for {self.silent_ticks} periods ({ms:.0f} ms)")
        return False

    def reset(self) -> None:
        self.reason, self.silent_ticks, self._last_count = "", 0, -1
