"""Lockstep pacing for a fast-mode sim node (`SimNode` parameter `sync_period_s`, see `sim.node`).

`Lockstep.limit(now_ns, answered_ns, last_obs_ns)` says how far the sim may step: up to the next
multiple of the sync period, and past it only once the newest observation published at or before
it has been answered (`answered_ns >= last_obs_ns`), or `timeout_s` of wall time went by (counted in
`timeouts`). While it holds, `holding` is True and the caller returns to its executor and asks again.
"""

from __future__ import annotations

import logging
import time

from robot_stack.clock import NS


class Lockstep:
    def __init__(self, period_s: float, timeout_s: float, now_ns: int, logger: logging.Logger):
        if period_s <= 0 or timeout_s <= 0:
            raise ValueError(f"Lockstep: period_s and timeout_s must be > 0, got {period_s}, {timeout_s}")
        self.period_ns = max(1, int(round(period_s * NS)))
        self.timeout_s, self.logger = float(timeout_s), logger
        self.timeouts = self.waits = 0
        self.next_ns = self._after(now_ns)
        self._hold_since: float | None = None

    @property
    def holding(self) -> bool:
        return self._hold_since is not None

    @property
    def held_s(self) -> float:
        """Wall seconds the current hold has lasted (0 when not holding)."""
        return 0.0 if self._hold_since is None else time.perf_counter() - self._hold_since

    def _after(self, now_ns: int) -> int:
        return (now_ns // self.period_ns + 1) * self.period_ns

    def limit(self, now_ns: int, answered_ns: int, last_obs_ns: int) -> int:
        """The sim time not to step past (== now_ns: hold, step nothing now)."""
        if now_ns >= self.next_ns:
            if answered_ns < last_obs_ns and not self._expired(last_obs_ns):
                return now_ns
            self._hold_since = None
            self.next_ns = self._after(now_ns)
        return self.next_ns

    def _expired(self, last_obs_ns: int) -> bool:
        wall = time.perf_counter()
        if self._hold_since is None:
            self._hold_since = wall
            self.waits += 1
            return False
        if wall - self._hold_since < self.timeout_s:
            return False
        self.timeouts += 1
        if self.timeouts == 1 or self.timeouts % 100 == 0:
            self.logger.warning(f"lockstep: no answer to the observation at {last_obs_ns / NS:.3f} s within "
                                f"{self.timeout_s:g} s; going on ({self.timeouts} timeouts)")
        return True
