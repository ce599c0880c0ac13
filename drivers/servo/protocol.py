"""What Dynamixel 2.0 and Feetech SCS/STS share: packets, instruction building, request parsing and
one streaming parser (`StreamParser`) that resynchronises on garbage and never raises on bad input.

A protocol (`drivers.servo.dynamixel.DYNAMIXEL`, `drivers.servo.feetech.FEETECH`) only supplies its
framing (header, length field, checksum, byte stuffing), address width and status/error layout.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

PING, READ, WRITE, REG_WRITE, ACTION = 0x01, 0x02, 0x03, 0x04, 0x05
SYNC_READ, SYNC_WRITE, BULK_READ = 0x82, 0x83, 0x92
BROADCAST_ID = 0xFE


@dataclass(frozen=True)
class Packet:
    """A decoded frame: `code` is the instruction (requests) or, on Feetech, the error byte (status)."""

    id: int
    code: int
    params: bytes


@dataclass(frozen=True)
class Status:
    id: int
    error: int
    data: bytes


@dataclass(frozen=True)
class Request:
    """An instruction packet, decoded for a motor (the emulator's side)."""

    instruction: int
    id: int
    address: int = 0
    size: int = 0
    data: bytes = b""
    ids: tuple[int, ...] = ()                           # SYNC_READ
    items: tuple[tuple[int, bytes], ...] = ()           # SYNC_WRITE: (id, data)
    reads: tuple[tuple[int, int, int], ...] = ()        # BULK_READ: (id, address, size)


class Protocol(ABC):
    name: str
    header: bytes
    min_frame: int
    address_width: int           # bytes of an address / length field in READ, WRITE, SYNC_*
    bulk_read: bool = False

    # --- framing (per protocol) ----------------------------------------------------------------
    @abstractmethod
    def pack(self, motor_id: int, code: int, params: bytes) -> bytes: ...

    @abstractmethod
    def frame_length(self, buf: bytearray, pos: int) -> int:
        """Total length of the frame whose header starts at `pos` (enough bytes are buffered to
        read its length field), or -1 when the length field is impossible."""

    @abstractmethod
    def check(self, frame: bytes) -> bool: ...

    @abstractmethod
    def unpack(self, frame: bytes) -> Packet | None:
        """A checked frame -> Packet (None when its content is impossible)."""

    @abstractmethod
    def status(self, packet: Packet) -> Status: ...

    @abstractmethod
    def pack_status(self, motor_id: int, error: int, data: bytes) -> bytes: ...

    @abstractmethod
    def instruction_error(self, error: int) -> str:
        """"" when `error` is fine for the data (hardware alerts are not instruction errors)."""

    @abstractmethod
    def ping_data(self, model_number: int, firmware: int) -> bytes:
        """The parameters of a ping status (the emulator's)."""

    @abstractmethod
    def model_from_ping(self, data: bytes) -> int | None: ...

    # --- instructions (shared) -----------------------------------------------------------------
    def _field(self, value: int) -> bytes:
        return value.to_bytes(self.address_width, "little")

    def ping(self, motor_id: int) -> bytes:
        return self.pack(motor_id, PING, b"")

    def read(self, motor_id: int, address: int, size: int) -> bytes:
        return self.pack(motor_id, READ, self._field(address) + self._field(size))

    def write(self, motor_id: int, address: int, data: bytes) -> bytes:
        return self.pack(motor_id, WRITE, self._field(address) + data)

    def sync_read(self, address: int, size: int, ids: Iterable[int]) -> bytes:
        return self.pack(BROADCAST_ID, SYNC_READ, self._field(address) + self._field(size) + bytes(ids))

    def sync_write(self, address: int, size: int, items: Mapping[int, bytes]) -> bytes:
        body = b"".join(bytes([i]) + d for i, d in items.items())
        return self.pack(BROADCAST_ID, SYNC_WRITE, self._field(address) + self._field(size) + body)

    def bulk_read_packet(self, reads: Iterable[tuple[int, int, int]]) -> bytes:
        """BULK_READ (Dynamixel only): (id, address, size) per motor."""
        if not self.bulk_read:
            raise NotImplementedError(f"{self.name} has no bulk read")
        body = b"".join(bytes([i]) + self._field(a) + self._field(n) for i, a, n in reads)
        return self.pack(BROADCAST_ID, BULK_READ, body)

    def parse_request(self, packet: Packet) -> Request | None:
        """An instruction packet -> Request; None for instructions this layer does not know or
        parameters of the wrong length."""
        w, p, code = self.address_width, packet.params, packet.code
        field = lambda k: int.from_bytes(p[k * w:(k + 1) * w], "little")   # noqa: E731
        if code in (PING, ACTION):
            return Request(code, packet.id)
        if code == READ and len(p) == 2 * w:
            return Request(code, packet.id, field(0), field(1))
        if code in (WRITE, REG_WRITE) and len(p) > w:
            return Request(code, packet.id, field(0), len(p) - w, p[w:])
        if code == SYNC_READ and len(p) >= 2 * w:
            return Request(code, packet.id, field(0), field(1), ids=tuple(p[2 * w:]))
        if code == SYNC_WRITE and len(p) >= 2 * w:
            size, body = field(1), p[2 * w:]
            if size == 0 or len(body) % (size + 1):
                return None
            items = tuple((body[k], body[k + 1:k + 1 + size]) for k in range(0, len(body), size + 1))
            return Request(code, packet.id, field(0), size, items=items)
        if code == BULK_READ and self.bulk_read and len(p) % (1 + 2 * w) == 0:
            step = 1 + 2 * w
            reads = tuple((p[k], int.from_bytes(p[k + 1:k + 1 + w], "little"),
                           int.from_bytes(p[k + 1 + w:k + step], "little")) for k in range(0, len(p), step))
            return Request(code, packet.id, reads=reads)
        return None

    def parser(self, max_buffer: int = 1 << 16) -> StreamParser:
        return StreamParser(self, max_buffer)


class StreamParser:
    """Bytes in, packets out. Garbage is skipped to the next header, a frame failing its checksum
    costs one byte and a rescan, so a valid frame after any garbage still decodes. Every byte fed is
    counted once: `bytes_in == frame_bytes + garbage_bytes + pending`."""

    def __init__(self, protocol: Protocol, max_buffer: int = 1 << 16):
        self.protocol = protocol
        self.max_buffer = max_buffer
        self._buf = bytearray()
        self.bytes_in = self.frames = self.frame_bytes = self.garbage_bytes = 0
        self.checksum_errors = self.truncated = 0

    @property
    def pending(self) -> int:
        return len(self._buf)

    def counters(self) -> dict[str, int]:
        return {"bytes_in": self.bytes_in, "frames": self.frames, "frame_bytes": self.frame_bytes,
                "garbage_bytes": self.garbage_bytes, "checksum_errors": self.checksum_errors,
                "truncated": self.truncated, "pending": self.pending}

    def feed(self, data: bytes) -> list[Packet]:
        self.bytes_in += len(data)
        self._buf += data
        out: list[Packet] = []
        pos = self._scan(out)
        del self._buf[:pos]
        if len(self._buf) > self.max_buffer:      # a runaway candidate: give its first byte up
            self.flush(out)
        return out

    def flush(self, out: list[Packet] | None = None) -> list[Packet]:
        """Give up on whatever is buffered (a timeout): a started frame counts as truncated, and the
        bytes after its first one are rescanned for frames."""
        out = [] if out is None else out
        while self._buf:
            if self._buf.startswith(self.protocol.header):
                self.truncated += 1
            del self._buf[:1]
            self.garbage_bytes += 1
            pos = self._scan(out)
            del self._buf[:pos]
        return out

    def _scan(self, out: list[Packet]) -> int:
        proto, buf = self.protocol, self._buf
        header, pos = proto.header, 0
        while True:
            i = buf.find(header, pos)
            if i < 0:
                keep = self._partial_header(pos)
                self.garbage_bytes += len(buf) - keep - pos
                return len(buf) - keep
            self.garbage_bytes += i - pos
            pos = i
            if len(buf) - pos < proto.min_frame:
                return pos
            n = proto.frame_length(buf, pos)
            if n < 0:
                self.garbage_bytes += 1
                pos += 1
                continue
            if len(buf) - pos < n:
                return pos
            frame = bytes(buf[pos:pos + n])
            packet = proto.unpack(frame) if proto.check(frame) else None
            if packet is None:
                self.checksum_errors += 1
                self.garbage_bytes += 1
                pos += 1
                continue
            self.frames += 1
            self.frame_bytes += n
            out.append(packet)
            pos += n

    def _partial_header(self, pos: int) -> int:
        """How many trailing bytes could be the start of a header."""
        header, buf = self.protocol.header, self._buf
        for k in range(min(len(header) - 1, len(buf) - pos), 0, -1):
            if buf.endswith(header[:k]):
                return k
        return 0
