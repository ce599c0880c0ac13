"""Rate statistics: period jitter, lateness and overruns of timers, over a recent window."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WINDOW = 4096


@dataclass(frozen=True)
class RateSummary:
    name: str
    target_hz: float
    ticks: int
    overruns: int
    lateness_p50: float
    lateness_p99: float
    lateness_max: float
    jitter_p50: float
    jitter_p99: float
    jitter_max: float
    callback_p99: float


def quantile(a: np.ndarray, q: float) -> float:
    """The q-th percentile (nearest rank). Cheap enough for a control loop: np.percentile costs
    ~100 us a call and ~8 ms on its first call in a process; np.partition costs a few us."""
    n = a.size
    if n == 0:
        return 0.0
    k = min(n - 1, max(0, int(round(q / 100.0 * (n - 1)))))
    return float(np.partition(a, k)[k])


class RateStats:
    """Ring buffers of per-tick lateness, period error and callback duration (seconds)."""

    def __init__(self, name: str, period: float, window: int = WINDOW):
        self.name = name
        self.period = period
        self.ticks = 0
        self.overruns = 0
        self._late = np.zeros(window)
        self._jitter = np.zeros(window)
        self._cb = np.zeros(window)
        self._last_start: float | None = None

    def record(self, deadline: float, start: float, end: float, missed: int) -> None:
        i = self.ticks % self._late.size
        self._late[i] = start - deadline
        self._jitter[i] = abs((start - self._last_start) - self.period) if self._last_start is not None else 0.0
        self._cb[i] = end - start
        self._last_start = start
        self.ticks += 1
        self.overruns += missed

    def reset(self) -> None:
        self.ticks = self.overruns = 0
        self._last_start = None

    def lateness_samples(self) -> np.ndarray:
        """Lateness of the most recent ticks (up to the window), oldest first [s]."""
        n = min(self.ticks, self._late.size)
        if self.ticks <= self._late.size:
            return self._late[:n].copy()
        i = self.ticks % self._late.size
        return np.concatenate([self._late[i:], self._late[:i]])

    def summary(self) -> RateSummary:
        n = min(self.ticks, self._late.size)
        late, jit, cb = self._late[:n], self._jitter[:n], self._cb[:n]

        return RateSummary(
            self.name, 1.0 / self.period, self.ticks, self.overruns,
            quantile(late, 50), quantile(late, 99), float(late.max()) if n else 0.0,
            quantile(jit, 50), quantile(jit, 99), float(jit.max()) if n else 0.0, quantile(cb, 99),
        )
