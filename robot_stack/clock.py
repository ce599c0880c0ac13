"""Time and the process clock: wall time for real robots, sim time from `/clock` under simulation."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from robot_stack import messages

NS = 1_000_000_000


@dataclass(frozen=True, order=True)
class Time:
    """A point in time in nanoseconds (rclpy.time.Time-like)."""

    nanoseconds: int = 0

    @property
    def seconds(self) -> float:
        return self.nanoseconds / NS

    def to_msg(self) -> Any:
        sec, nsec = divmod(self.nanoseconds, NS)
        return messages.get_class("builtin_interfaces/msg/Time")(sec=int(sec), nanosec=int(nsec))

    @classmethod
    def from_msg(cls, msg: Any) -> Time:
        return cls(int(msg.sec) * NS + int(msg.nanosec))

    @classmethod
    def from_seconds(cls, seconds: float) -> Time:
        return cls(int(round(seconds * NS)))

    def __add__(self, seconds: float) -> Time:
        return Time(self.nanoseconds + int(round(seconds * NS)))

    def __sub__(self, other: Time) -> float:
        return (self.nanoseconds - other.nanoseconds) / NS


def duration_msg(seconds: float) -> Any:
    sec, nsec = divmod(int(round(seconds * NS)), NS)
    return messages.get_class("builtin_interfaces/msg/Duration")(sec=int(sec), nanosec=int(nsec))


class Clock:
    """One per process. `now()` is wall time until sim time is enabled, then the last `/clock`."""

    def __init__(self):
        self._sim_ns: int | None = None
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []
        self._subscription = None

    @property
    def sim_time(self) -> bool:
        return self._subscription is not None

    def now(self) -> Time:
        if self._subscription is None:
            return Time(time.time_ns())
        return Time(self._sim_ns or 0)

    def enable_sim_time(self, transport: Any) -> None:
        """Follow `rosgraph_msgs/msg/Clock` on `/clock` (idempotent)."""
        from robot_stack.qos import QoSProfile

        if self._subscription is not None:
            return
        self._subscription = transport.create_subscription(
            "/clock", "rosgraph_msgs/msg/Clock", QoSProfile(depth=1), self._on_clock
        )

    def set_sim_time(self, t: Time) -> None:
        """Advance sim time directly (the simulator's own process does this)."""
        with self._lock:
            self._sim_ns = t.nanoseconds
        for notify in tuple(self._listeners):
            notify()

    def _on_clock(self, msg: Any) -> None:
        self.set_sim_time(Time.from_msg(msg.clock))

    def add_listener(self, notify: Callable[[], None]) -> None:
        """Called after every sim-time update (executors wake on it)."""
        self._listeners.append(notify)

    def remove_listener(self, notify: Callable[[], None]) -> None:
        if notify in self._listeners:
            self._listeners.remove(notify)
