"""Waiting helpers for the driver tests (threads and emulators deliver asynchronously)."""

from __future__ import annotations

import time


def wait_until(pred, timeout: float = 5.0, poll: float = 0.003) -> bool:
    """Poll `pred()` until it is true or `timeout` seconds pass; its last value."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(poll)
    return bool(pred())


def settle(count, quiet: float = 0.05, timeout: float = 5.0) -> None:
    """Wait until `count()` stops changing for `quiet` seconds (in-flight data delivered)."""
    end = time.monotonic() + timeout
    last, since = count(), time.monotonic()
    while time.monotonic() < end and time.monotonic() - since < quiet:
        time.sleep(0.005)
        if count() != last:
            last, since = count(), time.monotonic()
