"""Packet layers: documented byte strings, CRC, byte stuffing, register encodings, the stream parsers."""

from __future__ import annotations

import random

import pytest

from drivers.servo.dynamixel import DYNAMIXEL, crc16, stuff, unstuff
from drivers.servo.feetech import FEETECH, checksum
from drivers.servo.protocol import BULK_READ, READ, SYNC_READ, SYNC_WRITE, WRITE, Packet
from drivers.servo.tables import MODELS, STS3215, XL330_M288, Register, table

H = bytes.fromhex

# ROBOTIS e-Manual, "Protocol 2.0" instruction examples (ID 1, or broadcast 0xFE).
DXL_DOCUMENTED = [
    (lambda: DYNAMIXEL.ping(1), "FF FF FD 00 01 03 00 01 19 4E"),
    (lambda: DYNAMIXEL.ping(0xFE), "FF FF FD 00 FE 03 00 01 31 42"),
    (lambda: DYNAMIXEL.read(1, 132, 4), "FF FF FD 00 01 07 00 02 84 00 04 00 1D 15"),
    (lambda: DYNAMIXEL.write(1, 116, (512).to_bytes(4, "little")), "FF FF FD 00 01 09 00 03 74 00 00 02 00 00 CA 89"),
    (lambda: DYNAMIXEL.sync_read(132, 4, [1, 2]), "FF FF FD 00 FE 09 00 82 84 00 04 00 01 02 CE FA"),
    (lambda: DYNAMIXEL.sync_write(116, 4, {1: (150).to_bytes(4, "little"), 2: (170).to_bytes(4, "little")}),
     "FF FF FD 00 FE 11 00 83 74 00 04 00 01 96 00 00 00 02 AA 00 00 00 82 87"),
    (lambda: DYNAMIXEL.pack_status(1, 0, H("06 04 26")), "FF FF FD 00 01 07 00 55 00 06 04 26 65 5D"),
]
# Feetech SCS/STS manual: ping ID 1; read 2 bytes of present position (0x38) of ID 1.
FEETECH_DOCUMENTED = [
    (lambda: FEETECH.ping(1), "FF FF 01 02 01 FB"),
    (lambda: FEETECH.read(1, 0x38, 2), "FF FF 01 04 02 38 02 BE"),
    (lambda: FEETECH.pack_status(1, 0, b""), "FF FF 01 02 00 FC"),
]


@pytest.mark.parametrize("build,expected", DXL_DOCUMENTED + FEETECH_DOCUMENTED)
def test_documented_packets(build, expected):
    assert build() == H(expected)


@pytest.mark.parametrize("proto,build,expected", [(DYNAMIXEL, *c) for c in DXL_DOCUMENTED]
                         + [(FEETECH, *c) for c in FEETECH_DOCUMENTED])
def test_documented_packets_decode(proto, build, expected):
    packets = proto.parser().feed(H(expected))
    assert len(packets) == 1
    assert proto.pack(packets[0].id, packets[0].code, packets[0].params) == H(expected)


def test_crc16_and_checksum():
    assert crc16(H("FF FF FD 00 01 03 00 01")) == 0x4E19
    assert crc16(b"") == 0
    assert checksum(H("01 04 02 38 02")) == 0xBE


def test_byte_stuffing_round_trip():
    params = H("FF FF FD 11 FF FF FD FD FF FF FD")
    assert stuff(params) == H("FF FF FD FD 11 FF FF FD FD FD FF FF FD FD")
    assert unstuff(stuff(params)) == params
    rng = random.Random(1)
    for _ in range(300):
        raw = bytes(rng.choice(b"\xff\xfd\x00\x01") for _ in range(rng.randrange(0, 40)))
        assert unstuff(stuff(raw)) == raw
        frame = DYNAMIXEL.write(3, 116, raw)
        assert H("FF FF FD 00") not in frame[4:]
        assert DYNAMIXEL.parser().feed(frame) == [Packet(3, WRITE, (116).to_bytes(2, "little") + raw)]


def test_register_encodings():
    pos = XL330_M288["present_position"]
    assert pos.decode(pos.encode(-1000)) == -1000 and pos.encode(-1) == b"\xff\xff\xff\xff"
    sts_pos, load = STS3215["present_position"], STS3215["present_load"]
    assert sts_pos.encode(-5) == (0x8005).to_bytes(2, "little") and sts_pos.decode(b"\x05\x80") == -5
    assert load.decode((0x400 | 37).to_bytes(2, "little")) == -37
    assert Register("x", 0, 1).encode(300) == b"\xff"   # unsigned values saturate
    assert table("sts3215").model_number == 777 and XL330_M288["goal_position"].address == 116
    assert {t.protocol for t in MODELS.values()} == {"dynamixel", "feetech"}


@pytest.mark.parametrize("proto", [DYNAMIXEL, FEETECH])
def test_requests_parse(proto):
    parse = lambda b: proto.parse_request(proto.parser().feed(b)[0])   # noqa: E731
    r = parse(proto.read(4, 56, 2))
    assert (r.instruction, r.id, r.address, r.size) == (READ, 4, 56, 2)
    r = parse(proto.sync_read(56, 2, [1, 2, 3]))
    assert (r.instruction, r.ids) == (SYNC_READ, (1, 2, 3))
    r = parse(proto.sync_write(42, 2, {1: b"\x01\x02", 7: b"\x03\x04"}))
    assert (r.instruction, r.items) == (SYNC_WRITE, ((1, b"\x01\x02"), (7, b"\x03\x04")))
    if proto.bulk_read:
        r = parse(proto.bulk_read_packet([(1, 132, 4), (2, 126, 2)]))
        assert (r.instruction, r.reads) == (BULK_READ, ((1, 132, 4), (2, 126, 2)))


@pytest.mark.parametrize("proto", [DYNAMIXEL, FEETECH])
def test_parser_split_garbage_and_bad_checksum(proto):
    frame = proto.pack_status(5, 0, b"\x10\x20")
    parser = proto.parser()
    stream = b"\x00\x13" + frame[:-1] + bytes([frame[-1] ^ 1]) + b"\x44" + frame
    out = [p for b in stream for p in parser.feed(bytes([b]))]       # one byte at a time
    assert [p.id for p in out] == [5]
    assert parser.checksum_errors >= 1
    assert parser.bytes_in == parser.frame_bytes + parser.garbage_bytes + parser.pending == len(stream)


@pytest.mark.parametrize("proto", [DYNAMIXEL, FEETECH])
def test_parser_flush_counts_truncated(proto):
    parser = proto.parser()
    frame = proto.pack_status(2, 0, b"\x01\x02\x03")
    assert parser.feed(frame[:-3]) == []
    assert parser.flush() == [] and parser.truncated == 1 and parser.pending == 0
    assert parser.garbage_bytes == len(frame) - 3
