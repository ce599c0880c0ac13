"""Nodes used by the launch tests (imported by name in child processes: this directory is put on
PYTHONPATH by conftest.py). Each writes what happened to it into the file named by `path`."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from robot_stack.node import Node


class Marker(Node):
    """Writes `started <pid>` when built, `ticks <n>` and `stopped` when destroyed cleanly."""

    def __init__(self, node_name: str = "marker", **kwargs: Any):
        super().__init__(node_name, **kwargs)
        self.path = Path(self.declare_parameter("path", "").value)
        self.ticks = 0
        self.create_timer(0.01, self._tick, name="tick")
        self._write(f"started {os.getpid()} {os.environ.get('ROBOT_STACK_PROCESS')}")

    def _write(self, line: str) -> None:
        with self.path.open("a") as f:
            f.write(line + "\n")

    def _tick(self) -> None:
        self.ticks += 1

    def destroy_node(self) -> None:
        self._write(f"ticks {self.ticks}")
        self._write("stopped")
        super().destroy_node()


class Crasher(Marker):
    """A Marker whose timer raises after `after_s` seconds."""

    def __init__(self, node_name: str = "crasher", **kwargs: Any):
        super().__init__(node_name, **kwargs)
        self.after_s = self.declare_parameter("after_s", 0.5).value
        self._t0 = time.monotonic()

    def _tick(self) -> None:
        super()._tick()
        if time.monotonic() - self._t0 > self.after_s:
            raise RuntimeError("boom from the crasher")


class Stubborn(Marker):
    """A Marker whose process ignores SIGINT (and SIGTERM too with `ignore_term`)."""

    def __init__(self, node_name: str = "stubborn", **kwargs: Any):
        super().__init__(node_name, **kwargs)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if self.declare_parameter("ignore_term", False).value:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)


class Busy(Node):
    """Keeps one core busy: a 100 Hz timer whose callback spins for a full period."""

    def __init__(self, node_name: str = "busy", **kwargs: Any):
        super().__init__(node_name, **kwargs)
        self.create_timer(0.01, self._spin, name="busy")

    def _spin(self) -> None:
        end = time.perf_counter() + 0.01
        while time.perf_counter() < end:
            pass
