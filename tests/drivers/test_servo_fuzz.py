"""Fuzz: 10^6 random bytes plus mutated valid frames into each parser, around valid frames."""

from __future__ import annotations

import random

import pytest

from drivers.servo.dynamixel import DYNAMIXEL
from drivers.servo.feetech import FEETECH


def _mutate(rng: random.Random, frame: bytes) -> bytes:
    b = bytearray(frame)
    kind = rng.randrange(4)
    if kind == 0:                                     # flip a byte after the header
        b[rng.randrange(2, len(b))] ^= rng.randrange(1, 256)
    elif kind == 1:                                   # truncate
        del b[rng.randrange(2, len(b)):]
    elif kind == 2:                                   # corrupt the checksum
        b[-1] ^= 0xA5
    else:                                             # insert a byte
        b.insert(rng.randrange(2, len(b)), rng.randrange(256))
    return bytes(b)


@pytest.mark.parametrize("proto", [DYNAMIXEL, FEETECH])
def test_fuzz_parser(proto):
    rng = random.Random(20241126)
    parser = proto.parser()
    valid = []
    stream = bytearray()
    for k in range(1000):
        stream += rng.randbytes(1000)                 # 10^6 random bytes in all
        data = rng.randbytes(rng.randrange(0, 8))
        good = proto.pack_status(k % 200, 0, data)
        for _ in range(rng.randrange(0, 3)):
            stream += _mutate(rng, proto.pack_status(rng.randrange(200), 0, rng.randbytes(4)))
        stream += good + b"\x00" * 4                  # a quiet gap after each valid frame
        valid.append((k % 200, data))
    decoded = []
    pos = 0
    while pos < len(stream):                          # random chunking
        n = rng.randrange(1, 4096)
        decoded += parser.feed(bytes(stream[pos:pos + n]))
        pos += n
    decoded += parser.flush()
    got = [(p.id, p.params if proto is not DYNAMIXEL else p.params[1:]) for p in decoded]
    found, j = 0, 0
    for v in valid:                                   # in order
        try:
            j = got.index(v, j) + 1
            found += 1
        except ValueError:
            pass
    # CRC-16 lets nothing through; Feetech's 8-bit checksum passes 1 in 256 false candidates, and a
    # false frame in the garbage just before a valid one can swallow its header (1 frame here)
    assert found == len(valid) if proto is DYNAMIXEL else found >= len(valid) - 5
    assert parser.bytes_in == len(stream)
    assert parser.bytes_in == parser.frame_bytes + parser.garbage_bytes + parser.pending
    assert parser.pending == 0 and parser.frames == len(decoded)
    assert parser.checksum_errors > 0 and parser.garbage_bytes > 10**6 - 1000
