"""Helpers shared by the AR page tests."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(predicate: Callable[[], object], timeout_s: float = 20.0) -> None:
    """Poll `predicate` until it is truthy (AssertionError after `timeout_s`)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)
