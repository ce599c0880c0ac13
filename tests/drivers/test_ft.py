"""Net F/T RDT: packet layout, datagram parser under random input, UDP emulator end to end."""

from __future__ import annotations

import struct
import time

import numpy as np
import pytest
from polling import settle, wait_until

from drivers.ft import (
    CMD_BIAS,
    CMD_STREAM,
    RECORD,
    NetFT,
    NetFTConfig,
    RDTParser,
    parse_request,
    record,
    request,
)
from drivers.ft_emulator import FTEmulator
from drivers.sensor_common import SensorConfigError, SensorDisconnected
from robot_stack.clock import Time

T0 = Time(1)






def test_request_bytes_are_big_endian():
    assert request(CMD_STREAM, 10) == bytes([0x12, 0x34, 0x00, 0x02, 0, 0, 0, 10])
    assert parse_request(request(CMD_BIAS)) == (CMD_BIAS, 0)
    assert parse_request(b"\x00" * 8) is None and parse_request(b"\x12\x34") is None


def test_record_to_newtons():
    p = RDTParser(counts_per_force=1000.0, counts_per_torque=2000.0)
    data = record(7, 9, 0, [1000, -2000, 500, 2000, 0, -4000])
    assert len(data) == 36 and data[:4] == b"\x00\x00\x00\x07"
    (rec,) = p.feed(data, T0)
    assert (rec.rdt_sequence, rec.ft_sequence, rec.stamp) == (7, 9, T0)
    np.testing.assert_allclose(rec.wrench, [1.0, -2.0, 0.5, 1.0, 0.0, -2.0])


def test_buffered_datagram_sequence_gaps_and_status():
    p = RDTParser()
    zero = [0] * 6
    out = p.feed(record(1, 1, 0, zero) + record(2, 2, 0, zero) + record(5, 5, 0, zero), T0)
    assert len(out) == 3 and (p.sequence_gaps, p.records_missed) == (1, 2)
    assert p.feed(record(6, 6, 0x80000000, zero), T0) == [] and p.status_errors == 1
    p.feed(record(2**32 - 1, 0, 0, zero), T0)
    p.feed(record(0, 0, 0, zero), T0)          # wrap-around is not a gap
    assert p.sequence_gaps == 2


def test_random_datagrams_are_counted_and_dropped():
    rng = np.random.default_rng(3)
    p = RDTParser()
    valid, seq = 0, 0
    for i in range(20000):
        if i % 4 == 0:
            seq += 1
            out = p.feed(record(seq, seq, 0, rng.integers(-(2**31), 2**31, 6)), T0)
            assert len(out) == 1
            valid += 1
        else:
            n = int(rng.integers(0, 120))
            if n % RECORD.size == 0:
                n += 1
            assert p.feed(rng.integers(0, 256, n, dtype=np.uint8).tobytes(), T0) == []
    assert p.datagrams == 20000
    assert p.corrupt == 20000 - valid
    assert p.records == valid


def test_config_validation():
    with pytest.raises(SensorConfigError, match="counts_per_force"):
        NetFTConfig(counts_per_force=0)


@pytest.fixture
def emulated():
    emu = FTEmulator(rate_hz=1000.0, counts_per_force=1e6, counts_per_torque=1e6)
    host, port = emu.start()
    ft = NetFT(NetFTConfig(host=host, port=port))
    yield emu, ft
    ft.disconnect()
    emu.stop()


def test_one_shot_and_bias(emulated):
    emu, ft = emulated
    rec = ft.read_once(timeout=2.0)
    assert rec.wrench[2] == pytest.approx(4.9, abs=0.5)
    ft.bias()
    assert wait_until(lambda: emu._bias[2] != 0.0)
    rec = ft.read_once(timeout=2.0)
    assert abs(rec.wrench[2]) < 0.3


def test_streaming_gaps_and_stop(emulated):
    emu, ft = emulated
    ft.start_streaming()
    first = ft.wait_sample(0, timeout=2.0)
    assert first.wrench.shape == (6,)
    emu.skip_sequence = 3
    assert wait_until(lambda: ft.parser.records_missed >= 3)
    emu._sock.sendto(b"\x01\x02\x03", ft._sock.getsockname())   # a corrupt datagram
    assert wait_until(lambda: ft.parser.corrupt == 1)
    ft.check()
    emu.stop()                                 # the sensor dies: samples stop
    settle(lambda: ft.samples)
    m = ft.samples
    time.sleep(0.05)
    assert ft.samples == m


def test_send_without_connect_raises():
    with pytest.raises(SensorDisconnected):
        NetFT(NetFTConfig(host="127.0.0.1", port=9)).bias()


def test_big_endian_counts_negative():
    data = record(1, 1, 0, [-1, 0, 0, 0, 0, 0])
    assert struct.unpack(">i", data[12:16])[0] == -1


def test_ft_node_publishes_and_trips_when_server_stops(ctx):
    from drivers.sensor_nodes import FTNode
    from robot_stack.node import Node

    emu = FTEmulator(rate_hz=1000.0)
    host, port = emu.start()
    node = FTNode("ft", context=ctx, parameter_overrides={"host": host, "port": port, "frame_id": "wrist_ft"})
    listener = Node("listener", context=ctx)
    sub = listener.create_subscription("geometry_msgs/msg/WrenchStamped", "/wrench", lambda m: None, 10)
    bias = listener.create_publisher("std_msgs/msg/Empty", "/ft/bias", 10)
    try:
        node.tick()
        assert node.connected
        assert wait_until(lambda: node.ft.samples > 3)
        node.tick()
        msg = sub.take()
        assert msg.header.frame_id == "wrist_ft" and msg.wrench.force.z == pytest.approx(4.9, abs=0.5)
        bias.publish(bias.msg_class())
        node.subscriptions[0].callback(node.subscriptions[0].take())
        assert wait_until(lambda: emu._bias[2] != 0.0)
        emu.stop()
        settle(lambda: node.ft.samples)
        node.tick()                     # sees the records sent before the stop
        node.tick()
        node.tick()
        assert node.faulted and "silent for 2 periods" in node.status
    finally:
        node.destroy_node()
        listener.destroy_node()
        emu.stop()


def test_ft_node_keeps_connecting_while_nobody_answers(ctx):
    import socket

    from drivers.sensor_nodes import FTNode

    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()                                   # a port nobody listens on
    node = FTNode("ft", context=ctx, parameter_overrides={"host": "127.0.0.1", "port": port, "retry_s": 0.05})
    try:
        node.tick()
        assert not node.connected and not node.faulted and "no reply" in node.status
    finally:
        node.destroy_node()
