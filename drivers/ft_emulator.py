"""Net F/T emulator: a UDP server on 127.0.0.1 speaking ATI RDT bytes (see `drivers.ft`).

It answers 0x0002/0x0003 requests by streaming `sample_count` records (0 = until 0x0000) at
`rate_hz` to the requester, tares on 0x0042, and ignores malformed requests (counted). The wrench
is `wrench_fn(t)` (default: a slow sinusoid plus the weight of a 0.5 kg tool) in N/Nm, turned into
counts with the same calibration factors as the driver. `stop()` closes the socket (a dead sensor).
`FTEmulatorNode` runs one in a launch file on parameter `port`.
"""

from __future__ import annotations

import math
import socket
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from drivers.ft import CMD_BIAS, CMD_BUFFERED, CMD_STOP, CMD_STREAM, parse_request, record
from drivers.sensor_common import ReaderThread
from robot_stack.node import Node


def default_wrench(t: float) -> np.ndarray:
    return np.array([0.5 * math.sin(t), 0.2 * math.cos(t), 4.9 + 0.3 * math.sin(2 * t), 0.01, -0.02, 0.005])


class FTEmulator:
    def __init__(self, port: int = 0, rate_hz: float = 1000.0, counts_per_force: float = 1e6,
                 counts_per_torque: float = 1e6, wrench_fn: Callable[[float], np.ndarray] = default_wrench):
        self.requested_port, self.rate_hz = port, rate_hz
        self._scale = np.array([counts_per_force] * 3 + [counts_per_torque] * 3)
        self.wrench_fn = wrench_fn
        self._sock: socket.socket | None = None
        self._client: Any = None
        self._remaining = 0           # records still to send; -1 = forever
        self._next_send = 0.0
        self._bias = np.zeros(6)
        self.rdt_sequence = 0
        self.status = 0               # put a non-zero status in the records (fault injection)
        self.skip_sequence = 0        # skip this many sequence numbers once (fault injection)
        self.bad_requests = 0
        self._t0 = 0.0
        self._thread = ReaderThread("ft-emulator", self._step)

    @property
    def address(self) -> tuple[str, int]:
        if self._sock is None:
            raise RuntimeError("FTEmulator is not started")
        return self._sock.getsockname()

    def start(self) -> tuple[str, int]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", self.requested_port))
        sock.settimeout(0.0005)
        self._sock, self._t0 = sock, time.monotonic()
        self._thread.start()
        return self.address

    def counts(self, t: float) -> np.ndarray:
        return np.round((self.wrench_fn(t) - self._bias) * self._scale).astype(np.int64)

    def _step(self) -> None:
        try:
            data, addr = self._sock.recvfrom(64)
            self._handle(data, addr)
        except (TimeoutError, BlockingIOError):
            pass
        now = time.monotonic()
        if self._remaining != 0 and now >= self._next_send:
            self._send_record(now)
            self._next_send = max(self._next_send + 1.0 / self.rate_hz, now - 0.01)

    def _handle(self, data: bytes, addr: Any) -> None:
        req = parse_request(data)
        if req is None:
            self.bad_requests += 1
            return
        command, count = req
        if command in (CMD_STREAM, CMD_BUFFERED):
            self._client, self._remaining = addr, (count if count > 0 else -1)
            self._next_send = time.monotonic()
            if count == 1:
                self._send_record(self._next_send)   # one-shot: answer at once
        elif command == CMD_STOP:
            self._remaining = 0
        elif command == CMD_BIAS:
            self._bias = self.wrench_fn(time.monotonic() - self._t0)
        else:
            self.bad_requests += 1

    def _send_record(self, now: float) -> None:
        self.rdt_sequence += 1 + self.skip_sequence
        self.skip_sequence = 0
        counts = np.clip(self.counts(now - self._t0), -(2**31), 2**31 - 1)
        try:
            self._sock.sendto(record(self.rdt_sequence, self.rdt_sequence, self.status, counts), self._client)
        except OSError:
            self._remaining = 0        # the client went away
            return
        if self._remaining > 0:
            self._remaining -= 1

    def stop(self) -> None:
        self._thread.stop()
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


class FTEmulatorNode(Node):
    """Runs an `FTEmulator` in a launch file, on 127.0.0.1:`port`."""

    def __init__(self, node_name: str = "ft_emulator", **kwargs: Any):
        super().__init__(node_name, **kwargs)
        self.emulator = FTEmulator(int(self.declare_parameter("port", 49152).value),
                                   float(self.declare_parameter("rate_hz", 1000.0).value))
        self._timer = self.create_timer(0.01, self._start_once, name="start")

    def _start_once(self) -> None:
        self._timer.cancel()
        host, port = self.emulator.start()
        self.get_logger().info(f"emulated Net F/T on udp://{host}:{port}")

    def destroy_node(self) -> None:
        self.emulator.stop()
        super().destroy_node()
