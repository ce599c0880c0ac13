"""The per-process context: one transport and one clock shared by every node of the process."""

from __future__ import annotations

import os
import threading
from typing import Any

from robot_stack.clock import Clock
from robot_stack.transport import Transport, create_transport

DEFAULT_TRANSPORT_ENV = "ROBOT_STACK_TRANSPORT"


class Context:
    def __init__(self, transport: str | Transport | None = None, **options: Any):
        if transport is None:
            transport = os.environ.get(DEFAULT_TRANSPORT_ENV, "dds")
        self.transport: Transport = (
            transport if isinstance(transport, Transport) else create_transport(transport, **options)
        )
        self.clock = Clock()
        self.process_name = os.environ.get("ROBOT_STACK_PROCESS", f"pid{os.getpid()}")
        self._closed = False

    @property
    def transport_name(self) -> str:
        return self.transport.name

    def shutdown(self) -> None:
        if not self._closed:
            self._closed = True
            self.transport.close()

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()


_default: Context | None = None
_lock = threading.Lock()


def init(transport: str | Transport | None = None, **options: Any) -> Context:
    """Create the process's default context (like `rclpy.init`); nodes use it unless given one."""
    global _default
    with _lock:
        if _default is not None and not _default._closed:
            raise RuntimeError("robot_stack.init() called twice; call robot_stack.shutdown() first")
        _default = Context(transport, **options)
        return _default


def default_context() -> Context:
    global _default
    with _lock:
        if _default is None or _default._closed:
            _default = Context()
        return _default


def shutdown() -> None:
    global _default
    with _lock:
        if _default is not None:
            _default.shutdown()
            _default = None
