"""`Watchdog`: decides when the robot node must hold or safe-stop, and remembers why.

Three triggers (DESIGN.md "Hardware interface"): command silence after a trajectory ran out
(hold after `hold_ns`, fault after `stop_ns`), a streak of bad commands, a streak of failed
device reads. A fault latches until `reset()`; the node then ignores commands.
"""

from __future__ import annotations

import enum


class Health(enum.Enum):
    OK = "ok"
    HOLD = "hold"      # no fresh command: holding the last setpoint
    FAULT = "fault"    # safe-stopped; commands ignored until reset


class Watchdog:
    def __init__(self, *, hold_ns: int, stop_ns: int, max_bad_commands: int, max_read_errors: int):
        if not 0 < hold_ns <= stop_ns:
            raise ValueError(f"need 0 < hold_ns <= stop_ns, got {hold_ns}, {stop_ns}")
        self.hold_ns, self.stop_ns = int(hold_ns), int(stop_ns)
        self.max_bad_commands, self.max_read_errors = int(max_bad_commands), int(max_read_errors)
        self.health = Health.OK
        self.reason = ""
        self.trips = 0
        self.holds = 0
        self.bad_streak = 0
        self.read_streak = 0

    @property
    def faulted(self) -> bool:
        return self.health is Health.FAULT

    def trip(self, reason: str) -> bool:
        """Latch a fault; False when one was latched already (the first reason is kept)."""
        if self.faulted:
            return False
        self.health, self.reason = Health.FAULT, reason
        self.trips += 1
        return True

    def reset(self) -> None:
        self.health, self.reason = Health.OK, ""
        self.bad_streak = self.read_streak = 0

    # --- commands ------------------------------------------------------------------------------
    def command_ok(self) -> None:
        self.bad_streak = 0
        if self.health is Health.HOLD:
            self.health, self.reason = Health.OK, ""

    def command_bad(self, why: str) -> str | None:
        """Count a rejected command; the fault reason when the streak is long enough."""
        self.bad_streak += 1
        if self.bad_streak >= self.max_bad_commands:
            return f"{self.bad_streak} bad command(s) in a row, last: {why}"
        return None

    # --- device reads --------------------------------------------------------------------------
    def read_ok(self) -> None:
        self.read_streak = 0

    def read_failed(self, why: str) -> str | None:
        """Count a failed read; the fault reason when the streak is long enough."""
        self.read_streak += 1
        if self.read_streak >= self.max_read_errors:
            return f"device read failed {self.read_streak} times in a row, last: {why}"
        return None

    # --- silence -------------------------------------------------------------------------------
    def silence(self, silent_ns: int) -> str | None:
        """Update HOLD for `silent_ns` without a command past the trajectory's end; a fault reason
        when the silence is long enough to stop."""
        if self.faulted:
            return None
        if silent_ns >= self.stop_ns:
            return f"no command for {silent_ns / 1e6:.0f} ms (limit {self.stop_ns / 1e6:.0f} ms)"
        if silent_ns >= self.hold_ns and self.health is Health.OK:
            self.health = Health.HOLD
            self.reason = f"holding: no command for {silent_ns / 1e6:.0f} ms"
            self.holds += 1
        return None
