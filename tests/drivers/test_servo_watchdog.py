"""Bus watchdog: retries, then safe stop and `BusTripped` on a silent bus, a checksum-error streak,
an unplugged port (within 2 control periods)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from drivers.servo.devices import SO101, Koch
from drivers.servo.errors import BusTripped, CommunicationError, MissingStatus
from drivers.servo.watchdog import RetryPolicy
from drivers.servo_emulator import ServoEmulator
from robot_stack.robot import ControlMode, JointCommand

FAST = RetryPolicy(timeout_s=0.05, retries=1, backoff_s=0.001, max_failures=3)


def _device(cls, emu: ServoEmulator, **policy):
    config = dataclasses.replace(cls.config_class(), policy=dataclasses.replace(FAST, **policy))
    device = cls.on_port(emu.port, config)
    device.connect()
    return device


@pytest.fixture(params=[SO101, Koch], ids=["feetech", "dynamixel"])
def rig(request):
    cls = request.param
    config = cls.config_class()
    with ServoEmulator(config.protocol, config.motors(), tau_s=0.005) as emu:
        yield cls, emu


def test_silent_bus_trips_after_threshold_and_holds(rig):
    cls, emu = rig
    device = _device(cls, emu)
    held = device.read().position
    emu.faults.silent = True
    for _ in range(FAST.max_failures - 1):
        with pytest.raises(MissingStatus):
            device.read()
    with pytest.raises(BusTripped, match="3 consecutive failure") as info:
        device.read()
    assert isinstance(info.value.__cause__, MissingStatus) and device.watchdog.trips == 1
    with pytest.raises(BusTripped):                       # stays tripped
        device.write(JointCommand(ControlMode.POSITION, position=held + 0.5))
    emu.faults.silent = False
    device.bus.sync_read("id")                            # the un-answered hold write has landed
    goals = [emu.motors[j.id].get("goal_position") for j in device.config.joints]
    np.testing.assert_array_equal(goals, device._last_ticks)


def test_checksum_error_streak_trips_torque_off(rig):
    cls, emu = rig
    device = _device(cls, emu, safe_stop="torque_off")
    emu.faults.corrupt_all = True
    with pytest.raises(BusTripped, match="checksum errors"):
        for _ in range(FAST.max_failures):
            try:
                device.read()
            except CommunicationError:
                pass
    assert device.bus.counters()["parser_checksum_errors"] >= FAST.max_failures * (FAST.retries + 1)
    emu.faults.corrupt_all = False
    assert set(device.bus.sync_read("torque_enable").values()) == {0}


def test_single_failures_do_not_trip(rig):
    cls, emu = rig
    device = _device(cls, emu)
    for _ in range(5):
        emu.faults.drop = (FAST.retries + 1) * len(emu.motors)   # every status of one cycle lost
        with pytest.raises(MissingStatus):
            device.read()
        device.read()                                     # a good cycle resets the count
    assert device.watchdog.trips == 0


def test_unplug_trips_within_two_control_periods(rig):
    cls, emu = rig
    device = _device(cls, emu)
    target = np.zeros(len(device.joint_names))
    tripped_at = None
    for period in range(10):
        if period == 3:
            emu.unplug()
        try:
            device.read()
            device.write(JointCommand(ControlMode.POSITION, position=target))
        except BusTripped as exc:
            tripped_at = period
            assert "unplugged" in str(exc)
            break
    assert tripped_at is not None and tripped_at - 3 < 2
    device.disconnect()
