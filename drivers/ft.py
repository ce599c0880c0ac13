"""Force/torque sensor over ATI Net F/T "RDT" (Raw Data Transfer) UDP, port 49152, big-endian.

Request (8 bytes):  uint16 command_header = 0x1234, uint16 command, uint32 sample_count
    command 0x0000 stop streaming, 0x0002 start real-time streaming (sample_count records,
    0 = forever), 0x0003 start buffered streaming, 0x0042 set software bias (tare).
Record (36 bytes):  uint32 rdt_sequence, uint32 ft_sequence, uint32 status, int32 Fx Fy Fz Tx Ty Tz
    (counts; force N = counts / counts_per_force, torque Nm = counts / counts_per_torque).
A datagram holds one or more records (buffered mode); any other length is corrupt and dropped.
`rdt_sequence` increases by one per record: gaps are counted (`sequence_gaps`, `records_missed`);
a record with a non-zero status (the sensor's error bit 31 and friends) is counted and dropped.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from drivers.sensor_common import ReaderThread, SensorConfigError, SensorDisconnected, SensorTimeout
from robot_stack.clock import Clock, Time

RDT_PORT = 49152
RDT_HEADER = 0x1234
CMD_STOP, CMD_STREAM, CMD_BUFFERED, CMD_BIAS = 0x0000, 0x0002, 0x0003, 0x0042
REQUEST = struct.Struct(">HHI")
RECORD = struct.Struct(">III6i")


def request(command: int, sample_count: int = 0) -> bytes:
    return REQUEST.pack(RDT_HEADER, command, sample_count)


def parse_request(data: bytes) -> tuple[int, int] | None:
    """(command, sample_count) of a valid request, else None."""
    if len(data) != REQUEST.size:
        return None
    header, command, count = REQUEST.unpack(data)
    return (command, count) if header == RDT_HEADER else None


def record(rdt_seq: int, ft_seq: int, status: int, counts: np.ndarray | list[int]) -> bytes:
    return RECORD.pack(rdt_seq & 0xFFFFFFFF, ft_seq & 0xFFFFFFFF, status, *(int(c) for c in counts))


@dataclass(frozen=True)
class FTRecord:
    stamp: Time                # arrival time of the datagram
    rdt_sequence: int
    ft_sequence: int
    wrench: np.ndarray         # (6,) [fx fy fz tx ty tz] in N / Nm


class RDTParser:
    """Datagrams -> `FTRecord`s in N/Nm. Counts and drops bad input; never raises on data."""

    def __init__(self, counts_per_force: float = 1e6, counts_per_torque: float = 1e6):
        self._scale = np.array([counts_per_force] * 3 + [counts_per_torque] * 3, dtype=float)
        self.datagrams = 0
        self.corrupt = 0
        self.status_errors = 0
        self.records = 0
        self.sequence_gaps = 0
        self.records_missed = 0
        self._last_seq: int | None = None

    def counters(self) -> dict[str, int]:
        keys = ("datagrams", "corrupt", "status_errors", "records", "sequence_gaps", "records_missed")
        return {k: getattr(self, k) for k in keys}

    def feed(self, datagram: bytes, stamp: Time) -> list[FTRecord]:
        self.datagrams += 1
        n, rest = divmod(len(datagram), RECORD.size)
        if n == 0 or rest:
            self.corrupt += 1
            return []
        out = []
        for i in range(n):
            rdt, ft, status, *counts = RECORD.unpack_from(datagram, i * RECORD.size)
            self._sequence(rdt)
            if status != 0:
                self.status_errors += 1
                continue
            self.records += 1
            out.append(FTRecord(stamp, rdt, ft, np.asarray(counts, dtype=float) / self._scale))
        return out

    def _sequence(self, seq: int) -> None:
        last, self._last_seq = self._last_seq, seq
        if last is None:
            return
        step = (seq - last) & 0xFFFFFFFF
        if step == 1:
            return
        if 1 < step < 0x80000000:        # forward jump: records lost on the way
            self.sequence_gaps += 1
            self.records_missed += step - 1
        else:                            # repeated or reordered: counted as a gap, nothing missed
            self.sequence_gaps += 1


@dataclass(frozen=True)
class NetFTConfig:
    host: str = "192.168.1.1"
    port: int = RDT_PORT
    counts_per_force: float = 1e6
    counts_per_torque: float = 1e6
    recv_timeout_s: float = 0.05

    def __post_init__(self):
        if self.counts_per_force <= 0 or self.counts_per_torque <= 0:
            raise SensorConfigError(
                "NetFTConfig.counts_per_force/torque must be > 0, "
                f"got {self.counts_per_force}, {self.counts_per_torque}"
            )
        if not 0 < self.port < 65536:
            raise SensorConfigError(f"NetFTConfig.port must be 1..65535, got {self.port}")


def _udp_socket(config: NetFTConfig) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(config.recv_timeout_s)
    sock.connect((config.host, config.port))
    return sock


class NetFT:
    """A Net F/T sensor: streaming on a reader thread, latest record, bias, one-shot reads.

    `socket_factory(config)` returns a UDP socket connected to the sensor (inject for tests).
    """

    def __init__(self, config: NetFTConfig | None = None, *, clock: Clock | None = None,
                 socket_factory: Callable[[NetFTConfig], Any] = _udp_socket):
        self.config = config or NetFTConfig()
        self.clock = clock or Clock()
        self._factory = socket_factory
        self._sock: Any = None
        self.parser = RDTParser(self.config.counts_per_force, self.config.counts_per_torque)
        self._latest: FTRecord | None = None
        self._cond = threading.Condition()
        self.samples = 0
        self._reader = ReaderThread(f"netft:{self.config.host}", self._receive_once)

    def connect(self) -> None:
        if self._sock is not None:
            return
        try:
            self._sock = self._factory(self.config)
        except OSError as exc:
            raise SensorDisconnected(f"F/T {self.config.host}:{self.config.port}: cannot open socket: {exc}") from exc

    def _send(self, command: int, count: int = 0) -> None:
        if self._sock is None:
            raise SensorDisconnected(f"F/T {self.config.host} is not connected")
        try:
            self._sock.send(request(command, count))
        except OSError as exc:
            raise SensorDisconnected(f"F/T {self.config.host}: send failed: {exc}") from exc

    def start_streaming(self, sample_count: int = 0) -> None:
        self.connect()
        self._send(CMD_STREAM, sample_count)
        self._reader.start()

    def stop_streaming(self) -> None:
        if self._sock is not None:
            try:
                self._send(CMD_STOP)
            except SensorDisconnected:
                pass
        self._reader.stop()

    def bias(self) -> None:
        """Tare: the sensor subtracts its current reading from every later one."""
        self._send(CMD_BIAS)

    def _receive_once(self) -> None:
        try:
            data = self._sock.recv(2048)
        except TimeoutError:
            return
        except ConnectionRefusedError:   # ICMP port unreachable: nobody listens (yet); keep waiting
            return
        for rec in self.parser.feed(data, self.clock.now()):
            with self._cond:
                self._latest = rec
                self.samples += 1
                self._cond.notify_all()

    def latest(self) -> FTRecord | None:
        return self._latest

    def check(self) -> None:
        if self._reader.error is not None:
            raise SensorDisconnected(f"F/T {self.config.host}: receive failed: {self._reader.error}")
        if self._sock is None:
            raise SensorDisconnected(f"F/T {self.config.host} is not connected")

    def wait_sample(self, after: int, timeout: float = 1.0) -> FTRecord:
        """Block until more than `after` samples were received (streaming must be on)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.samples > after, timeout):
                raise SensorTimeout(f"F/T {self.config.host}: no record within {timeout:.3f} s")
            return self._latest

    def read_once(self, timeout: float = 1.0) -> FTRecord:
        """Request one record and wait for it (streaming must be off)."""
        self.connect()
        self._send(CMD_STREAM, 1)
        end = timeout
        while True:
            try:
                self._sock.settimeout(end)
                data = self._sock.recv(2048)
            except (TimeoutError, ConnectionRefusedError) as exc:
                raise SensorTimeout(f"F/T {self.config.host}: no reply within {timeout:.3f} s") from exc
            finally:
                self._sock.settimeout(self.config.recv_timeout_s)
            records = self.parser.feed(data, self.clock.now())
            if records:
                self._latest = records[-1]
                self.samples += 1
                return records[-1]

    def disconnect(self) -> None:
        self.stop_streaming()
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
