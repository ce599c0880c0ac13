"""`TrajectoryBuffer`: timestamped joint waypoints, sampled linearly in time at the control rate.

A new command replaces what is buffered: the trajectory restarts at the current setpoint *now*
and runs through the new waypoints, so a fresh command never makes the setpoint jump unless it
is due now. Waypoints due at or before *now* collapse into the start point (due immediately).
After the last waypoint the buffer holds it.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import numpy as np


class TrajectoryBuffer:
    def __init__(self) -> None:
        self._times: list[int] = []
        self._points: list[np.ndarray] = []

    @property
    def empty(self) -> bool:
        return not self._times

    @property
    def end_ns(self) -> int | None:
        """When the last waypoint is due (None when empty)."""
        return self._times[-1] if self._times else None

    def __len__(self) -> int:
        return len(self._times)

    def clear(self) -> None:
        self._times.clear()
        self._points.clear()

    def replace(
        self, now_ns: int, start: np.ndarray, times_ns: Sequence[int], points: Sequence[np.ndarray]
    ) -> None:
        """Go from `start` at `now_ns` through `points` due at increasing `times_ns`."""
        if len(times_ns) != len(points):
            raise ValueError(f"{len(times_ns)} times for {len(points)} waypoints")
        if any(b <= a for a, b in zip(times_ns, times_ns[1:], strict=False)):
            raise ValueError("waypoint times must increase")
        self._times = [int(now_ns)]
        self._points = [np.array(start, dtype=np.float64)]
        for t, p in zip(times_ns, points, strict=True):
            point = np.array(p, dtype=np.float64)
            if t <= now_ns:
                self._points[0] = point  # due already: the target from now on
            else:
                self._times.append(int(t))
                self._points.append(point)

    def sample(self, t_ns: int) -> np.ndarray | None:
        """The setpoint at `t_ns` (linear between waypoints, the last one after the end)."""
        if not self._times:
            return None
        i = bisect.bisect_right(self._times, t_ns) - 1
        if i <= 0 and t_ns < self._times[0]:
            return self._points[0].copy()
        if i > 0:  # waypoints before the current segment are done
            del self._times[:i], self._points[:i]
        if len(self._times) == 1:
            return self._points[0].copy()
        t0, t1 = self._times[0], self._times[1]
        s = (t_ns - t0) / (t1 - t0)
        return self._points[0] + s * (self._points[1] - self._points[0])


class ChunkEnsemble:
    """ACT-style temporal ensembling of overlapping action chunks (Zhao et al. 2023).

    `add(now, times, points)` keeps the chunk and returns, for each of its step times, the weighted
    mean of every kept chunk's target at that time (older chunks sampled linearly between their
    steps, only inside their own span): of the chunks covering a time, oldest first, the i-th weighs
    exp(-decay * i), so a larger `decay` trusts the older plans more (ACT's convention; 0 is a plain mean). Chunks whose
    last step is before `now` are forgotten, and at most `max_chunks` are kept.
    """

    def __init__(self, decay: float, max_chunks: int = 32):
        if not decay >= 0 or max_chunks < 1:
            raise ValueError(f"ensemble decay must be >= 0 and max_chunks >= 1, got {decay}, {max_chunks}")
        self.decay, self.max_chunks = float(decay), int(max_chunks)
        self._chunks: list[tuple[np.ndarray, np.ndarray]] = []   # (S,) int64 times, (S, D) targets

    def __len__(self) -> int:
        return len(self._chunks)

    def clear(self) -> None:
        self._chunks.clear()

    def add(self, now_ns: int, times_ns: Sequence[int], points: Sequence[np.ndarray]) -> list[np.ndarray]:
        times = np.asarray(times_ns, dtype=np.int64)
        new = np.asarray(points, dtype=np.float64).reshape(len(times), -1)
        live = [c for c in self._chunks if c[0][-1] >= now_ns]
        self._chunks = [*live[max(0, len(live) - self.max_chunks + 1):], (times, new)]
        total, weight = np.zeros_like(new), np.zeros(len(times))
        rank = np.zeros(len(times))             # per step time: how many older chunks covered it
        for t, p in self._chunks:
            inside = (times >= t[0]) & (times <= t[-1])
            if not inside.any():
                continue
            values = np.stack([np.interp(times[inside], t, p[:, d]) for d in range(p.shape[1])], axis=1)
            w = np.exp(-self.decay * rank[inside])
            total[inside] += w[:, None] * values
            weight[inside] += w
            rank[inside] += 1
        return list(total / weight[:, None])
