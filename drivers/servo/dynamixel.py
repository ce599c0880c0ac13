"""Dynamixel Protocol 2.0 framing: `FF FF FD 00 | ID | LEN_L LEN_H | INST | PARAMS | CRC_L CRC_H`.

LEN counts instruction + (stuffed) parameters + CRC. The CRC is CRC-16 with polynomial 0x8005
(init 0, not reflected) over everything before it. Byte stuffing: `FF FF FD` inside the instruction
and parameters is sent as `FF FF FD FD`, so the header never appears inside a packet. Status
packets carry instruction 0x55 then the error byte (bit 7: hardware alert, bits 0-6: instruction
error number).
"""

from __future__ import annotations

from drivers.servo.protocol import Packet, Protocol, Status

HEADER = b"\xff\xff\xfd\x00"
STATUS = 0x55
MAX_LENGTH = 1024      # longest LEN accepted (larger ones are garbage)
ERRORS = {1: "result fail", 2: "instruction error", 3: "CRC error", 4: "data range error",
          5: "data length error", 6: "data limit error", 7: "access error"}


def _crc_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        crc = i << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return tuple(table)


_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    crc = 0
    for b in data:
        crc = ((crc << 8) ^ _TABLE[((crc >> 8) ^ b) & 0xFF]) & 0xFFFF
    return crc


def stuff(body: bytes) -> bytes:
    return body.replace(b"\xff\xff\xfd", b"\xff\xff\xfd\xfd")


def unstuff(body: bytes) -> bytes:
    return body.replace(b"\xff\xff\xfd\xfd", b"\xff\xff\xfd")


class Dynamixel2(Protocol):
    name = "dynamixel"
    header = HEADER
    min_frame = 10
    address_width = 2
    bulk_read = True

    def pack(self, motor_id: int, code: int, params: bytes) -> bytes:
        body = stuff(bytes([code]) + params)
        head = HEADER + bytes([motor_id]) + (len(body) + 2).to_bytes(2, "little") + body
        return head + crc16(head).to_bytes(2, "little")

    def frame_length(self, buf: bytearray, pos: int) -> int:
        n = buf[pos + 5] | (buf[pos + 6] << 8)
        return 7 + n if 3 <= n <= MAX_LENGTH else -1

    def check(self, frame: bytes) -> bool:
        return crc16(frame[:-2]) == (frame[-2] | (frame[-1] << 8))

    def unpack(self, frame: bytes) -> Packet | None:
        if frame[4] == 0xFF:
            return None
        return Packet(frame[4], frame[7], unstuff(frame[8:-2]))

    def status(self, packet: Packet) -> Status:
        if packet.code != STATUS or not packet.params:
            return Status(packet.id, 0x02, b"")      # not a status packet: an instruction error
        return Status(packet.id, packet.params[0], packet.params[1:])

    def pack_status(self, motor_id: int, error: int, data: bytes) -> bytes:
        return self.pack(motor_id, STATUS, bytes([error]) + data)

    def instruction_error(self, error: int) -> str:
        code = error & 0x7F
        return ERRORS.get(code, f"error {code}") if code else ""

    def ping_data(self, model_number: int, firmware: int) -> bytes:
        return model_number.to_bytes(2, "little") + bytes([firmware & 0xFF])

    def model_from_ping(self, data: bytes) -> int | None:
        return int.from_bytes(data[:2], "little") if len(data) >= 2 else None


DYNAMIXEL = Dynamixel2()
