"""Every bus operation, both protocols, through a real pty to the byte-level emulator."""

from __future__ import annotations

import time

import pytest

from drivers.servo.bus import SerialMotorBus
from drivers.servo.dynamixel import DYNAMIXEL
from drivers.servo.errors import MissingStatus, MixedRegisterLayout, StatusError, UnknownRegister
from drivers.servo.feetech import FEETECH
from drivers.servo.tables import ControlTable, Register, table
from drivers.servo.watchdog import RetryPolicy
from drivers.servo_emulator import ServoEmulator, parse_ids

MODEL = {"dynamixel": "xl330-m288", "feetech": "sts3215"}
PROTO = {"dynamixel": DYNAMIXEL, "feetech": FEETECH}
POLICY = RetryPolicy(timeout_s=0.5, retries=1)


def _bus(emu: ServoEmulator, models: dict[int, str], policy: RetryPolicy = POLICY) -> SerialMotorBus:
    bus = SerialMotorBus(emu.port, emu.protocol, {i: table(m) for i, m in models.items()}, policy=policy)
    bus.connect()
    return bus


@pytest.fixture(params=["dynamixel", "feetech"])
def setup(request):
    models = dict.fromkeys(range(1, 7), MODEL[request.param])
    with ServoEmulator(request.param, models, tau_s=0.005) as emu:
        bus = _bus(emu, models)
        yield emu, bus
        bus.disconnect()


def test_ping(setup):
    emu, bus = setup
    model = bus.ping(3)
    assert model == (1200 if emu.protocol is DYNAMIXEL else None)
    bus.policy = RetryPolicy(timeout_s=0.02, retries=1)
    with pytest.raises(MissingStatus, match=r"motor\(s\) \[9\]"):
        bus.ping(9)                                        # nobody has id 9
    assert bus.retries == 1 and bus.timeouts == 2


def test_read_write_one(setup):
    emu, bus = setup
    assert bus.read_one("model_number", 2) == emu.motors[2].table.model_number
    bus.write_one("goal_position", 2, 1234)
    assert emu.motors[2].get("goal_position") == 1234 and bus.read("goal_position", [2]) == {2: 1234}
    with pytest.raises(UnknownRegister):
        bus.read_one("no_such_register", 2)


def test_sync_write_then_sync_read_moves_motors(setup):
    emu, bus = setup
    bus.sync_write("torque_enable", dict.fromkeys(range(1, 7), 1))
    goals = {i: 1000 + 100 * i for i in range(1, 7)}
    bus.write("goal_position", goals)
    assert bus.sync_read("goal_position") == goals          # (after the un-answered sync write landed)
    assert {i: m.get("goal_position") for i, m in emu.motors.items()} == goals
    for _ in range(200):
        if bus.sync_read("present_position") == goals:
            break
        time.sleep(0.005)
    assert bus.sync_read("present_position") == goals
    block = bus.read_many(["present_velocity", "present_position"])
    assert block["present_position"] == goals and set(block["present_velocity"]) == set(goals)


def test_sync_read_16_motors_mixed_models():
    models = {i: ("xl330-m288" if i >= 12 else "xc330-m288") for i in range(16)}
    with ServoEmulator("dynamixel", models) as emu:
        for i, m in emu.motors.items():
            m.move_to(100 + i)
        bus = _bus(emu, models)
        assert bus.sync_read("present_position") == {i: 100 + i for i in range(16)}
        assert bus.read("model_number", [0, 15]) == {0: 1240, 15: 1200}
        bus.disconnect()


def test_bulk_read_and_mixed_layout():
    models = {1: "xl330-m288", 2: "xm430-w350"}
    with ServoEmulator("dynamixel", models) as emu:
        emu.motors[1].move_to(-77)
        bus = _bus(emu, models)
        assert bus.bulk_read({1: "present_position", 2: "model_number"}) == {1: -77, 2: 1020}
        odd = ControlTable("odd", 1, "dynamixel", 4096, {"present_position": Register("present_position", 10, 2)})
        bus.tables[2] = odd
        with pytest.raises(MixedRegisterLayout):
            bus.sync_read("present_position")
        bus.disconnect()


def test_status_error_is_specific():
    with ServoEmulator("dynamixel", {1: "xl330-m288"}) as emu:
        bus = _bus(emu, {1: "xl330-m288"})
        with pytest.raises(StatusError, match="access error"):
            bus.write_one("present_position", 1, 5)        # read-only register
        bus.disconnect()


def test_retry_recovers_from_a_dropped_and_a_corrupt_status(setup):
    emu, bus = setup
    bus.policy = RetryPolicy(timeout_s=0.1, retries=3)
    emu.faults.drop = 1
    assert bus.read_one("id", 4) == 4
    emu.faults.corrupt = 1
    assert bus.read_one("id", 5) == 5
    assert bus.retries >= 2 and bus.counters()["parser_checksum_errors"] >= 1


def test_parse_ids():
    assert parse_ids("1-3,7") == [1, 2, 3, 7]
