"""`ByteSource`: non-blocking reads from an input device node, a pipe or a pty.

The source is a path (`/dev/input/event3`, `/dev/hidraw0`, `/dev/ttyACM0`; opened read-only and
non-blocking by `open()`, never in `__init__`), or an injected int fd / object with `fileno()`
(tests pass one end of a pipe or a pty). `read_available()` returns every byte waiting now and
raises `DeviceUnavailable` when the other end is gone (EOF, ENODEV after an unplug).
"""

from __future__ import annotations

import os
import select
import termios
import tty
from typing import Any

from teleop.errors import DeviceUnavailable

MAX_READ = 1 << 16


class ByteSource:
    def __init__(self, source: str | int | Any, *, raw_tty: bool = True):
        self.source = source
        self.raw_tty = raw_tty
        self._fd: int | None = None
        self._owned = False

    @property
    def name(self) -> str:
        return self.source if isinstance(self.source, str) else f"fd {self.fileno_of(self.source)}"

    @staticmethod
    def fileno_of(source: int | Any) -> int:
        return source if isinstance(source, int) else source.fileno()

    def open(self) -> None:
        if self._fd is not None:
            return
        if not isinstance(self.source, str):
            self._fd = self.fileno_of(self.source)
            return
        try:
            self._fd = os.open(self.source, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        except OSError as exc:
            raise DeviceUnavailable(f"cannot open {self.source}: {exc.strerror or exc}") from None
        self._owned = True
        if self.raw_tty and os.isatty(self._fd):
            try:
                tty.setraw(self._fd)         # a serial pedal / glove: bytes as sent, no line discipline
            except termios.error:
                pass

    def read_available(self) -> bytes:
        if self._fd is None:
            raise DeviceUnavailable(f"{self.name}: not open")
        chunks = []
        while select.select([self._fd], [], [], 0)[0]:
            try:
                data = os.read(self._fd, MAX_READ)
            except BlockingIOError:
                break
            except OSError as exc:
                raise DeviceUnavailable(f"{self.name}: {exc.strerror or exc}") from None
            if not data:
                raise DeviceUnavailable(f"{self.name}: end of stream (device gone)")
            chunks.append(data)
            if len(data) < MAX_READ:
                break
        return b"".join(chunks)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None and self._owned:
            try:
                os.close(fd)
            except OSError:
                pass
