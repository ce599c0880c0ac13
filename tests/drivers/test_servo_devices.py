"""Devices (so101, koch, leap_hand) against their emulators: read/write, calibration (library,
CLI), the launchable nodes, the emulator's command line."""

from __future__ import annotations

import importlib.metadata
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from polling import wait_until

import drivers
from drivers.__main__ import main as drivers_cli
from drivers.servo.bus import SerialMotorBus
from drivers.servo.calibration import Calibration, JointCalibration, NonInteractive, calibrate
from drivers.servo.devices import DEVICES, SO101, Koch, LeapHand
from drivers.servo.errors import CalibrationError, ServoError
from drivers.servo.node import ServoEmulatorNode, ServoRobotNode
from drivers.servo_emulator import ServoEmulator, emulator_for
from robot_stack.cli.main import main as cli_main
from robot_stack.launch.config import load_launch_file
from robot_stack.robot import ControlMode, JointCommand, robot_class

LAUNCH = Path(drivers.__file__).parent / "configs" / "launch"




@pytest.mark.parametrize("cls", [SO101, Koch, LeapHand], ids=lambda c: c.kind)
def test_device_moves_emulated_motors(cls):
    assert robot_class(cls.kind) is cls
    with emulator_for(cls.kind, tau_s=0.005) as emu:
        device = cls.on_port(emu.port)                    # no I/O yet
        device.connect()
        n = len(device.joint_names)
        assert n == (16 if cls is LeapHand else 6)
        np.testing.assert_allclose(device.read().position, 0.0, atol=1e-9)   # mid-turn = 0 rad uncalibrated
        target = np.linspace(-0.5, 0.5, n)
        device.write(JointCommand(ControlMode.POSITION, position=target))
        assert wait_until(lambda: np.allclose(device.read().position, target, atol=2 * math.pi / 4096))
        ticks = [emu.motors[j.id].get("goal_position") for j in device.config.joints]
        np.testing.assert_array_equal(ticks, np.rint(2048 + target * 4096 / (2 * math.pi)))
        with pytest.raises(ServoError, match="only position"):
            device.write(JointCommand(ControlMode.TORQUE, effort=np.zeros(n)))
        device.disconnect()                               # torque off (an un-answered sync write)
        assert wait_until(lambda: all(m.get("torque_enable") == 0 for m in emu.motors.values()))


def test_calibration_converts_ticks_with_sign_and_clamps():
    joints = {j.name: JointCalibration(j.id, 1000, -1 if j.id == 2 else 1, 500, 1500)
              for j in SO101.config_class().joints}
    cal = Calibration("so101", joints)
    with emulator_for("so101", tau_s=0.005) as emu:
        for m in emu.motors.values():
            m.move_to(1100)
        device = SO101.on_port(emu.port, calibration=cal)
        device.connect()
        pos = device.read().position
        step = 100 * 2 * math.pi / 4096
        np.testing.assert_allclose(pos, [step, -step, step, step, step, step])
        assert device.limits.lower[0] == pytest.approx(-500 * 2 * math.pi / 4096)
        device.write(JointCommand(ControlMode.POSITION, position=np.full(6, 3.0)))   # beyond the range
        device.bus.sync_read("id")
        assert [emu.motors[i].get("goal_position") for i in range(1, 7)] == [1500, 500, 1500, 1500, 1500, 1500]
        device.disconnect()


def test_calibrate_cli_non_interactive(tmp_path, capsys):
    out = tmp_path / "so101.yaml"
    with emulator_for("so101") as emu:
        for i, m in emu.motors.items():
            m.move_to(2000 + i)
        rc = drivers_cli(["calibrate", "so101", "--port", emu.port, "--out", str(out), "--non-interactive"])
    assert rc == 0
    cal = Calibration.load(out)
    assert cal.device == "so101" and list(cal.joints) == [j.name for j in SO101.config_class().joints]
    assert cal.joints["gripper"] == JointCalibration(6, 2006, 1, 0, 4095)
    assert drivers_cli(["calibrate", "so101", "--port", str(tmp_path / "nope"), "--non-interactive"]) == 2
    assert "cannot open" in capsys.readouterr().err
    entry = [e for e in importlib.metadata.entry_points(group="robot_stack.cli") if e.name == "drivers"]
    assert [e.value for e in entry] == ["drivers.__main__"]


@pytest.mark.slow
def test_robot_stack_calibrate_command(tmp_path):
    """The same through `robot-stack calibrate` (builds every subcommand: imports torch, pybullet...)."""
    out = tmp_path / "koch.yaml"
    with emulator_for("koch") as emu:
        rc = cli_main(["calibrate", "koch", "--port", emu.port, "--out", str(out), "--non-interactive"])
    assert rc == 0 and Calibration.load(out).joints["shoulder_pan"].homing_offset == 2048


class ScriptedOperator:
    """Moves the emulated joints the way an operator would during `calibrate`."""

    def __init__(self, emu: ServoEmulator):
        self.emu, self.confirmed = emu, []

    def confirm(self, message: str) -> None:
        self.confirmed.append(message)
        for i, m in self.emu.motors.items():
            m.move_to(2048 + 10 * i)

    def record(self, message: str, sample) -> None:
        for offset in (-600, 0, 700):
            for i, m in self.emu.motors.items():
                m.move_to(2048 + offset - i)
            sample()


def test_calibrate_records_ranges_from_the_operator():
    config = Koch.config_class()
    joints = [(j.name, j.id, j.drive_sign) for j in config.joints]
    with emulator_for("koch") as emu:
        bus = SerialMotorBus(emu.port, emu.protocol, config.tables())
        bus.connect()
        operator = ScriptedOperator(emu)
        cal = calibrate(bus, "koch", joints, operator)
        assert len(operator.confirmed) == 1 and all(m.get("torque_enable") == 0 for m in emu.motors.values())
        assert cal.joints["elbow_flex"] == JointCalibration(3, 2078, 1, 2048 - 600 - 3, 2048 + 700 - 3)
        with pytest.raises(CalibrationError, match="moved only 0 ticks"):
            calibrate(bus, "koch", joints, NonInteractive(samples=3))
        bus.disconnect()


def test_calibration_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("device: so101\njoints:\n  a: {id: 1, drive_sign: 2}\n")
    with pytest.raises(CalibrationError, match="drive_sign"):
        Calibration.load(bad)
    with pytest.raises(CalibrationError, match="range_min"):
        JointCalibration(1, range_min=10, range_max=10)


def test_robot_node_on_emulated_bus(ctx):
    with emulator_for("leap_hand") as emu:
        node = ServoRobotNode("hand", context=ctx, parameter_overrides={
            "robot": "leap_hand", "port": emu.port, "state_rate_hz": 50.0, "control_rate_hz": 50.0})
        try:
            assert node.started and node.state is not None and len(node.joint_names) == 16
            assert node.parameters.undeclared_overrides() == []
        finally:
            node.destroy_node()


def test_emulator_node_links_the_pty(ctx, tmp_path):
    link = tmp_path / "so101"
    node = ServoEmulatorNode("bus", context=ctx, parameter_overrides={"device": "so101", "link": str(link)})
    try:
        device = SO101.on_port(str(link))
        device.connect()
        assert device.read().position.shape == (6,)
        device.disconnect()
    finally:
        node.destroy_node()
    assert not link.exists()


@pytest.mark.parametrize("name", sorted(DEVICES))
def test_launch_files_parse(name):
    cfg = load_launch_file(LAUNCH / f"{name}_emulated.yaml")
    classes = [n.class_path for p in cfg.processes for n in p.nodes]
    assert classes == ["drivers.servo.node:ServoEmulatorNode", "drivers.servo.node:ServoRobotNode"]


def test_emulator_command_line():
    proc = subprocess.Popen([sys.executable, "-m", "drivers.servo_emulator", "--protocol", "dynamixel",
                             "--ids", "1-3"], stdout=subprocess.PIPE, text=True)
    try:
        port = proc.stdout.readline().strip()
        config = Koch.config_class()
        bus = SerialMotorBus(port, emulator_for("koch").protocol, {i: config.tables()[i] for i in (1, 2, 3)})
        bus.connect()
        assert bus.ping(2) == 1200 and bus.sync_read("id") == {1: 1, 2: 2, 3: 3}
        bus.disconnect()
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_robot_node_follows_commands_and_trips_on_unplug(ctx, tmp_path):
    from robot_stack import messages
    from robot_stack.executor import Executor
    from robot_stack.node import Node

    link = str(tmp_path / "koch")
    bus = ServoEmulatorNode("bus", context=ctx, parameter_overrides={"device": "koch", "link": link, "tau_s": 0.01})
    arm = ServoRobotNode("arm", context=ctx, parameter_overrides={
        "robot": "koch", "port": link, "state_rate_hz": 100.0, "control_rate_hz": 100.0})
    commander = Node("commander", context=ctx)
    pub = commander.create_publisher("sensor_msgs/msg/JointState", "joint_commands", 10)
    ex = Executor()
    for node in (bus, arm, commander):
        ex.add_node(node)
    try:
        pub.publish(messages.make("sensor_msgs/msg/JointState", name=["elbow_flex"], position=[0.4]))
        goal = round(2048 + 0.4 * 4096 / (2 * math.pi))
        assert ex.spin_until(lambda: bus.emulator.motors[3].get("present_position") == goal, 10.0)
        bus.emulator.unplug()
        assert ex.spin_until(lambda: arm.robot.watchdog.tripped is not None, 10.0)
        assert "unplugged" in str(arm.robot.watchdog.tripped)
    finally:
        for node in (commander, arm, bus):
            node.destroy_node()


@pytest.mark.slow
def test_emulated_launch_file_runs(tmp_path):
    text = (LAUNCH / "so101_emulated.yaml").read_text().replace("/tmp/robot_stack_so101", str(tmp_path / "so101"))
    path = tmp_path / "so101.yaml"
    path.write_text(text.replace("transport: dds", "transport: inproc"))
    result = subprocess.run([sys.executable, "-m", "robot_stack.cli.main", "launch", str(path), "--duration", "3"],
                            capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "so101: 6 joints" in result.stdout and "emulated so101 bus" in result.stdout


@pytest.mark.parametrize("cls,load", [(SO101, "present_load"), (Koch, "present_current")], ids=["so101", "koch"])
def test_velocity_and_effort_units(cls, load):
    with emulator_for(cls.kind) as emu:
        device = cls.on_port(emu.port)
        device.connect()
        with emu.lock:                                     # hold still, one motor loaded and turning
            emu.motors[2].set("torque_enable", 0)
            emu.motors[2].set(load, -100)
        emu.motors[2].step = lambda dt: None
        emu.motors[2].set("present_velocity", 50)
        state = device.read()
        reg = emu.motors[2].table
        assert state.effort[1] == pytest.approx(-100 * reg[load].scale * device.config.effort_per_unit)
        per_tick = reg["present_velocity"].scale * 2 * math.pi / 60 if cls is Koch else 2 * math.pi / 4096
        assert state.velocity[1] == pytest.approx(50 * per_tick)
        device.disconnect()


def test_robot_node_without_port_fails_clearly(ctx, tmp_path):
    with pytest.raises(ServoError, match="did not appear"):
        ServoRobotNode("arm", context=ctx, parameter_overrides={"port": str(tmp_path / "none"), "port_wait_s": 0.1})


def test_robot_node_retries_a_port_that_does_not_open(ctx, tmp_path):
    not_a_tty = tmp_path / "file"
    not_a_tty.write_text("")
    with pytest.raises(ServoError, match="could not be opened"):
        ServoRobotNode("arm", context=ctx, parameter_overrides={"port": str(not_a_tty), "port_wait_s": 0.1})


def test_robot_node_waits_for_motors_that_answer_late(ctx, tmp_path):
    """A bus that opens but stays silent at first (an emulator or adapter still coming up) is retried
    until `port_wait_s`; a bus silent for longer fails with the missing-status error."""
    import threading

    link = str(tmp_path / "koch")
    bus = ServoEmulatorNode("bus", context=ctx, parameter_overrides={"device": "koch", "link": link})
    bus.emulator.faults.silent = True
    try:
        with pytest.raises(ServoError, match="no valid status"):
            ServoRobotNode("arm", context=ctx, parameter_overrides={"robot": "koch", "port": link,
                                                                    "port_wait_s": 0.3})
        threading.Timer(0.3, lambda: setattr(bus.emulator.faults, "silent", False)).start()
        arm = ServoRobotNode("arm2", context=ctx, parameter_overrides={"robot": "koch", "port": link,
                                                                       "port_wait_s": 5.0})
        assert arm.started
        arm.destroy_node()
    finally:
        bus.destroy_node()
