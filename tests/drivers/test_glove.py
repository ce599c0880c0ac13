"""Data glove: line parser (incl. 10^6 random bytes), calibration YAML, pty emulator end to end."""

from __future__ import annotations

import numpy as np
import pytest
from polling import settle, wait_until

from drivers.glove import Glove, GloveCalibration, GloveConfig, GloveLineParser, format_line
from drivers.glove_emulator import GloveEmulator
from drivers.sensor_common import SensorConfigError, SensorDisconnected
from robot_stack.clock import Time

T0 = Time(123)






def test_parser_valid_lines_split_anywhere():
    p = GloveLineParser(num_sensors=3, adc_max=1023)
    data = b"1,2,3\n 4 , 5,6\r\n1023,0,7\n"
    out = []
    for i in range(len(data)):
        out += p.feed(data[i:i + 1], Time(i))
    assert [s.values.tolist() for s in out] == [[1, 2, 3], [4, 5, 6], [1023, 0, 7]]
    assert out[0].stamp == Time(5)          # stamped by the chunk holding its newline
    assert p.counters() == {"lines_ok": 3, "lines_bad": 0, "bytes_skipped": 0}


@pytest.mark.parametrize("line", [b"", b"1,2\n"[:-1], b"1,2,3,4", b"1,x,3", b"1,-2,3", b"1,2,1024", b"1,+2,3",
                                  b"1,2_0,3", b"1,,3", "1,٣,3".encode(), b"1,2,3\x00", b"\xff\xfe,1,2"])
def test_parser_rejects_bad_lines(line):
    p = GloveLineParser(num_sensors=3, adc_max=1023)
    assert p.feed(line + b"\n" + b"7,8,9\n", T0)[0].values.tolist() == [7, 8, 9]
    assert (p.lines_ok, p.lines_bad) == (1, 1)


def test_parser_overlong_line_is_one_bad_line():
    p = GloveLineParser(num_sensors=3, max_line=32)
    out = p.feed(b"1" * 100, T0) + p.feed(b"2" * 100 + b"\n1,2,3\n", T0)
    assert [s.values.tolist() for s in out] == [[1, 2, 3]]
    assert (p.lines_ok, p.lines_bad, p.bytes_skipped) == (1, 1, 200)


def test_parser_random_bytes_and_mutations_never_raise():
    rng = np.random.default_rng(1)
    p = GloveLineParser(num_sensors=16)
    good = [rng.integers(0, 4096, 16) for _ in range(2000)]
    garbage = rng.integers(0, 256, 1_000_000, dtype=np.uint8).tobytes()
    newlines = 0
    ok = 0
    chunks = []
    for i, values in enumerate(good):
        line = bytearray(format_line(values))
        if i % 3 == 1:    # mutate: flip a byte, truncate or duplicate a separator
            kind = i % 4
            pos = int(rng.integers(0, len(line) - 1))
            if kind == 0:
                line[pos] = int(rng.integers(0, 256))
            elif kind == 1:
                line = line[:pos] + b"\n"
            else:
                line = line[:pos] + b",," + line[pos:]
        else:
            ok += 1
        g = garbage[i * 500:(i + 1) * 500] + b"\n"    # garbage, then a newline so the next line is clean
        chunks += [bytes(line), g]
    stream = b"".join(chunks)
    newlines = stream.count(b"\n")
    out = []
    for start in range(0, len(stream), 977):      # arbitrary chunking
        out += p.feed(stream[start:start + 977], T0)
    assert p.lines_ok + p.lines_bad == newlines
    got = {tuple(s.values.tolist()) for s in out}
    assert all(tuple(v.tolist()) in got for i, v in enumerate(good) if i % 3 != 1)
    assert p.lines_ok >= ok
    assert all(s.values.shape == (16,) and s.values.max() <= 4095 for s in out)


def test_calibration_roundtrip_and_normalize(tmp_path):
    raw = np.array([[100, 200], [900, 1200], [500, 700]])
    cal = GloveCalibration.from_samples(raw, ("thumb", "index"), joint_upper=(1.0, 2.0))
    path = tmp_path / "glove.yaml"
    cal.save(path)
    back = GloveCalibration.load(path)
    assert back == cal
    np.testing.assert_allclose(back.normalize([500, 700]), [0.5, 0.5])
    np.testing.assert_allclose(back.normalize([0, 5000]), [0.0, 1.0])
    np.testing.assert_allclose(back.joints([900, 700]), [1.0, 1.0])


def test_calibration_errors(tmp_path):
    with pytest.raises(SensorConfigError, match="raw_max must exceed"):
        GloveCalibration(("a",), (5.0,), (5.0,))
    path = tmp_path / "bad.yaml"
    path.write_text("sensor_names: [a, b]\nraw_min: [0]\nraw_max: [1, 2]\n")
    with pytest.raises(SensorConfigError, match="raw_min has 1 values"):
        GloveCalibration.load(path)


@pytest.fixture
def emulated():
    emu = GloveEmulator(num_sensors=16, rate_hz=1000.0)
    port = emu.start()
    glove = Glove(GloveConfig(port=port, num_sensors=16))
    yield emu, glove
    glove.disconnect()
    emu.stop()


def test_glove_over_pty_with_faults(emulated):
    emu, glove = emulated
    glove.connect()
    assert wait_until(lambda: glove.samples > 20)
    before = glove.parser.lines_bad
    emu.inject_garbage(200)
    emu.inject(b"\n")
    emu.inject_truncated()
    n = glove.samples
    assert wait_until(lambda: glove.samples > n + 20)
    assert glove.parser.lines_bad >= before + 2
    samples = glove.drain()
    assert samples and all(s.values.shape == (16,) for s in samples)
    stamps = [s.stamp.nanoseconds for s in samples]
    assert stamps == sorted(stamps)
    glove.check()


def test_glove_unplug_is_reported(emulated):
    emu, glove = emulated
    glove.connect()
    assert wait_until(lambda: glove.samples > 5)
    emu.unplug()
    assert wait_until(lambda: glove._reader.error is not None)
    with pytest.raises(SensorDisconnected, match="disconnected"):
        glove.check()


def test_glove_open_failure():
    glove = Glove(GloveConfig(port="/nonexistent/ttyACM9"))
    with pytest.raises(SensorDisconnected, match="cannot open"):
        glove.connect()


def test_glove_node_publishes_and_trips_on_unplug(ctx, tmp_path):
    from drivers.sensor_nodes import GloveNode
    from robot_stack.node import Node

    cal = GloveCalibration.default(16)
    cal.save(tmp_path / "cal.yaml")
    emu = GloveEmulator(num_sensors=16)
    port = emu.start()
    params = {"port": port, "calibration": str(tmp_path / "cal.yaml")}
    node = GloveNode("glove", context=ctx, parameter_overrides=params)
    listener = Node("listener", context=ctx)
    raw = listener.create_subscription("sensor_msgs/msg/JointState", "/glove/raw", lambda m: None, 10)
    joints = listener.create_subscription("sensor_msgs/msg/JointState", "/glove/joints", lambda m: None, 10)
    diag = listener.create_subscription("diagnostic_msgs/msg/DiagnosticArray", "/diagnostics", lambda m: None, 10)
    try:
        node.tick()
        assert node.connected and node.status == "ok"
        assert wait_until(lambda: node.glove.samples > 3)
        node.tick()
        r, j = raw.take(), joints.take()
        assert len(r.name) == 16 and r.position.max() <= 4095
        assert 0.0 <= j.position.min() and j.position.max() <= 1.5708 + 1e-9
        assert r.header.stamp == j.header.stamp
        emu.unplug()
        assert wait_until(lambda: node.glove._reader.error is not None)
        node.tick()                                 # first period after the unplug
        assert node.faulted and node.status.startswith("fault:") and "disconnected" in node.status
        assert not node.connected
        while (d := diag.take()) is not None:
            last = d
        assert last.status[0].level == 2 and last.status[0].message == node.status
        node.tick()                                 # latched: nothing happens
        assert raw.take() is None
    finally:
        node.destroy_node()
        listener.destroy_node()
        emu.stop()


def test_glove_node_silence_trips_within_two_periods(ctx):
    from drivers.sensor_nodes import GloveNode

    emu = GloveEmulator(num_sensors=16)
    port = emu.start()
    node = GloveNode("glove", context=ctx, parameter_overrides={"port": port})
    try:
        node.tick()
        assert wait_until(lambda: node.glove.samples > 3)
        node.tick()
        emu.silent = True
        settle(lambda: node.glove.samples)
        node.tick()                                 # sees the lines sent before the pause
        node.tick()
        node.tick()
        assert node.faulted and "silent for 2 periods" in node.status
    finally:
        node.destroy_node()
        emu.stop()


def test_glove_node_retries_missing_port(ctx):
    from drivers.sensor_nodes import GloveNode

    node = GloveNode("glove", context=ctx, parameter_overrides={"port": "/nonexistent/ttyACM0", "retry_s": 0.0})
    try:
        node.tick()
        node.tick()
        assert not node.faulted and node.status.startswith("connecting: glove: cannot open")
    finally:
        node.destroy_node()


def test_glove_reconnects_after_replug():
    import serial

    emus = [GloveEmulator(num_sensors=16)]
    emus[0].start()

    def open_current(cfg):       # the device comes back on another pty, as a replugged USB glove may
        return serial.Serial(emus[-1].port, cfg.baudrate, timeout=cfg.read_timeout_s)

    glove = Glove(GloveConfig(), serial_factory=open_current)
    try:
        glove.connect()
        assert wait_until(lambda: glove.samples > 3)
        emus[0].unplug()
        assert wait_until(lambda: glove._reader.error is not None)
        emus.append(GloveEmulator(num_sensors=16))
        emus[-1].start()
        glove.connect()
        n = glove.samples
        assert wait_until(lambda: glove.samples > n + 3)
        glove.check()
    finally:
        glove.disconnect()
        for emu in emus:
            emu.stop()
