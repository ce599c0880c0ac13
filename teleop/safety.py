"""Safety pieces every teleop node uses: a stream watchdog, a joint velocity limiter and a
workspace box. Pure logic (time is passed in), so they are tested without a device."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from teleop.config import check, finite


class StreamWatchdog:
    """Trips when no device sample arrived for `timeout_s`; says why. A new sample clears it."""

    def __init__(self, timeout_s: float):
        if not timeout_s > 0:
            raise ValueError(f"StreamWatchdog timeout_s must be > 0, got {timeout_s!r}")
        self.timeout_ns = int(timeout_s * 1e9)
        self.last_ns: int | None = None
        self.reason = ""
        self.trips = 0

    def feed(self, now_ns: int) -> None:
        self.last_ns = now_ns
        self.reason = ""

    def check(self, now_ns: int) -> str:
        """"" while the stream is alive (or before its first sample), else why it is not."""
        if self.last_ns is None or self.reason:
            return self.reason
        silent = now_ns - self.last_ns
        if silent > self.timeout_ns:
            self.reason = f"teleop stream silent for {silent / 1e6:.0f} ms (limit {self.timeout_ns / 1e6:.0f} ms)"
            self.trips += 1
        return self.reason

    def reset(self) -> None:
        self.last_ns, self.reason = None, ""


def limit_step(previous: np.ndarray, target: np.ndarray, max_velocity: np.ndarray | float, dt: float) -> np.ndarray:
    """`target`, but at most `max_velocity * dt` away from `previous` (per element)."""
    step = np.asarray(max_velocity, dtype=float) * max(dt, 0.0)
    return previous + np.clip(target - previous, -step, step)


@dataclass(frozen=True)
class Workspace:
    """An axis-aligned box for the end-effector position (metres, in the target frame)."""

    low: tuple[float, float, float] = (0.25, -0.35, 0.0)
    high: tuple[float, float, float] = (0.85, 0.35, 0.6)

    def __post_init__(self) -> None:
        for name in ("low", "high"):
            value = getattr(self, name)
            check(isinstance(value, tuple) and len(value) == 3 and finite(value), name,
                  f"expected 3 finite numbers [x, y, z], got {value!r}")
        check(all(lo <= hi for lo, hi in zip(self.low, self.high, strict=True)), "high",
              f"every high must be >= low: low {self.low}, high {self.high}")

    def clamp(self, position: np.ndarray) -> tuple[np.ndarray, bool]:
        """The position inside the box, and whether it had to be moved."""
        clamped = np.clip(position, self.low, self.high)
        return clamped, bool(np.any(clamped != position))

    @property
    def center(self) -> tuple[float, float, float]:
        return tuple((lo + hi) / 2 for lo, hi in zip(self.low, self.high, strict=True))
