"""Feetech SCS/STS framing: `FF FF | ID | LEN | INST-or-ERROR | PARAMS | CHECKSUM`.

LEN = parameters + 2; CHECKSUM = ~(ID + LEN + INST + PARAMS) & 0xFF. Addresses and lengths are one
byte. Status packets carry the servo's error/alarm bits where requests carry the instruction; the
bits are hardware alarms (voltage, sensor, temperature, current, angle, overload), not instruction
errors. STS registers are little-endian. A ping status has no parameters.
"""

from __future__ import annotations

from drivers.servo.protocol import Packet, Protocol, Status

HEADER = b"\xff\xff"


def checksum(body: bytes) -> int:
    return ~sum(body) & 0xFF


class FeetechSTS(Protocol):
    name = "feetech"
    header = HEADER
    min_frame = 6
    address_width = 1

    def pack(self, motor_id: int, code: int, params: bytes) -> bytes:
        body = bytes([motor_id, len(params) + 2, code]) + params
        return HEADER + body + bytes([checksum(body)])

    def frame_length(self, buf: bytearray, pos: int) -> int:
        n = buf[pos + 3]
        return 4 + n if n >= 2 and buf[pos + 2] != 0xFF else -1

    def check(self, frame: bytes) -> bool:
        return checksum(frame[2:-1]) == frame[-1]

    def unpack(self, frame: bytes) -> Packet | None:
        return Packet(frame[2], frame[4], frame[5:-1])

    def status(self, packet: Packet) -> Status:
        return Status(packet.id, packet.code, packet.params)

    def pack_status(self, motor_id: int, error: int, data: bytes) -> bytes:
        return self.pack(motor_id, error, data)

    def instruction_error(self, error: int) -> str:
        return ""

    def ping_data(self, model_number: int, firmware: int) -> bytes:
        return b""

    def model_from_ping(self, data: bytes) -> int | None:
        return None


FEETECH = FeetechSTS()
