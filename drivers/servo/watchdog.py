"""Bus watchdog: retry policy (timeouts, exponential backoff) and the consecutive-failure trip."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from drivers.servo.errors import BusTripped, CommunicationError, PortUnplugged, ServoError

T = TypeVar("T")
SAFE_STOPS = ("hold", "torque_off")


@dataclass(frozen=True)
class RetryPolicy:
    timeout_s: float = 0.05          # wait for the status packets of one try
    retries: int = 2                 # tries after the first, on missing/corrupt status
    backoff_s: float = 0.001         # sleep before the first retry, doubled (x backoff_factor) each time
    backoff_factor: float = 2.0
    max_backoff_s: float = 0.02
    max_failures: int = 3            # consecutive failed transactions -> trip
    safe_stop: str = "hold"          # "hold": goal = present position; "torque_off"

    def __post_init__(self) -> None:
        if self.safe_stop not in SAFE_STOPS:
            raise ServoError(f"RetryPolicy.safe_stop must be one of {SAFE_STOPS}, got {self.safe_stop!r}")
        if self.timeout_s <= 0 or self.retries < 0 or self.max_failures < 1:
            raise ServoError(f"RetryPolicy: need timeout_s > 0, retries >= 0, max_failures >= 1; got {self}")

    def delays(self) -> list[float]:
        """The sleep before each retry."""
        out, d = [], self.backoff_s
        for _ in range(self.retries):
            out.append(min(d, self.max_backoff_s))
            d *= self.backoff_factor
        return out


class BusWatchdog:
    """Counts consecutive failed cycles; at `max_failures` (or at once on an unplugged port) it calls
    `on_trip` (the device's safe stop, which must not raise) and raises `BusTripped`."""

    def __init__(self, port: str, policy: RetryPolicy, on_trip: Callable[[], None]):
        self.port, self.policy, self.on_trip = port, policy, on_trip
        self.failures = 0
        self.trips = 0
        self.tripped: BusTripped | None = None

    def call(self, fn: Callable[[], T]) -> T:
        if self.tripped is not None:     # a fresh exception each time: re-raising one grows its traceback
            raise BusTripped(self.port, self.tripped.reason, self.tripped.failures)
        try:
            result = fn()
        except PortUnplugged as exc:
            self.failures += 1
            self._trip(f"port unplugged: {exc}", exc)
        except CommunicationError as exc:
            self.failures += 1
            if self.failures >= self.policy.max_failures:
                self._trip(f"{type(exc).__name__}: {exc}", exc)
            raise
        self.failures = 0
        return result

    def _trip(self, reason: str, cause: Exception) -> None:
        self.trips += 1
        self.tripped = BusTripped(self.port, reason, self.failures)
        self.on_trip()
        raise self.tripped from cause

    def reset(self) -> None:
        self.failures = 0
        self.tripped = None
