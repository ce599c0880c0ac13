"""`Wakeup`: the executor's doorbell, a lighter `threading.Event`.

`threading.Event` allocates a lock and goes through a Condition on every wait; on the hot path
of a message handed from a transport thread to an executor that costs tens of microseconds. This
is a single lock used as a binary semaphore: `set()` releases it, `wait()` acquires it (one futex
operation each way). Same methods as Event: `set`, `clear`, `is_set`, `wait`.
"""

from __future__ import annotations

import threading
from typing import Any


class Wakeup:
    def __init__(self):
        self._lock = threading.Lock()
        self._lock.acquire()  # held = not signalled
        self._flag = False

    def set(self) -> None:
        """Thread-safe; cheap when already set."""
        if self._flag:
            return
        self._flag = True
        try:
            self._lock.release()
        except RuntimeError:  # another thread released it first
            pass

    def is_set(self) -> bool:
        return self._flag

    def clear(self) -> None:
        self._flag = False
        self._lock.acquire(blocking=False)  # re-arm (no-op if still held)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until `set()` or the timeout; True when set."""
        if self._flag:
            return True
        if self._lock.acquire(timeout=-1 if timeout is None else max(timeout, 0.0)):
            self._lock.release()  # stay signalled until clear()
        return self._flag

    # A plain doorbell polls nothing: subscriptions deliver from their own threads.
    def watch(self, subscription: Any) -> None:
        """Let this doorbell take `subscription`'s samples itself where it can."""

    def unwatch(self, subscription: Any) -> None:
        """Undo `watch` (the subscription delivers from its own thread again)."""

    def poll(self) -> None:
        """Take pending samples of watched subscriptions (their callbacks run in this thread)."""
