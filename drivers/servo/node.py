"""Launchable nodes: `ServoRobotNode` (a `RobotNode` on a servo device) and `ServoEmulatorNode`
(an emulated bus behind a pty, linked at a fixed path, for emulated setups).

    - name: arm
      class: drivers.servo.node:ServoRobotNode
      parameters: {robot: so101, port: /dev/ttyUSB0, calibration: "", control_rate_hz: 100.0}

`ServoRobotNode` parameters, besides `RobotNode`'s: `robot` (so101, koch, leap_hand), `port`,
`calibration` (YAML file; "" = the default path when it exists, else uncalibrated), `baudrate`
(0 = the device's), `port_wait_s` (wait that long for the port to appear, e.g. an emulator started
beside it), `safe_stop` (hold / torque_off), `max_failures`, `retries`, `timeout_ms`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

from drivers.servo.calibration import Calibration, default_path
from drivers.servo.device import ServoDevice
from drivers.servo.devices import device_class
from drivers.servo.errors import MissingStatus, PortUnplugged
from drivers.servo.watchdog import RetryPolicy
from drivers.servo_emulator import emulator_for, link_port, unlink_port
from robot_stack.node import Node
from robot_stack.robot.node import RobotNode

_DEFAULTS: dict[str, Any] = {"robot": "so101", "port": "/dev/ttyUSB0", "calibration": "", "baudrate": 0,
                             "port_wait_s": 5.0, "safe_stop": "hold", "max_failures": 3, "retries": 2,
                             "timeout_ms": 50.0}


def build_device(params: dict[str, Any]) -> ServoDevice:
    """The device a `ServoRobotNode` drives, from its parameters (no I/O but reading the calibration)."""
    p = {**_DEFAULTS, **{k: v for k, v in params.items() if k in _DEFAULTS}}
    cls = device_class(p["robot"])
    policy = RetryPolicy(timeout_s=float(p["timeout_ms"]) / 1e3, retries=int(p["retries"]),
                         max_failures=int(p["max_failures"]), safe_stop=p["safe_stop"])
    config = dataclasses.replace(cls.config_class(), policy=policy)
    if p["baudrate"]:
        config = dataclasses.replace(config, baudrate=int(p["baudrate"]))
    path = Path(p["calibration"]) if p["calibration"] else default_path(p["robot"])
    calibration = Calibration.load(path) if p["calibration"] or path.exists() else None
    return cls.on_port(p["port"], config, calibration)


def start_when_port_ready(node: RobotNode, port: str, wait_s: float) -> None:
    """`node.start()` once `port` exists, opens and the motors answer (an emulator or adapter may
    still be coming up, or a stale link may point at a closed pty); the last error after `wait_s`."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            if os.path.exists(port):
                node.start()
                return
            why = "did not appear"
        except PortUnplugged as exc:
            why = f"could not be opened ({exc})"
        except MissingStatus as exc:          # open, but the motors are not answering (yet)
            node.robot.disconnect()
            if time.monotonic() > deadline:
                raise
            why = f"did not answer ({exc})"
        if time.monotonic() > deadline:
            raise PortUnplugged(f"serial port {port} {why} within {wait_s:g} s")
        time.sleep(0.05)


class ServoRobotNode(RobotNode):
    def __init__(self, node_name: str = "servo_robot", **node_kwargs: Any):
        overrides = dict(node_kwargs.get("parameter_overrides") or {})
        robot = build_device(overrides)
        super().__init__(robot, node_name=node_name, **node_kwargs)
        params = {k: self.declare_parameter(k, d).value for k, d in _DEFAULTS.items()}
        default = default_path(params["robot"])
        cal = params["calibration"] or (str(default) if default.exists() else "none (mid-turn home, full-turn range)")
        self.get_logger().info(f"{params['robot']} on {params['port']}: calibration {cal}")
        try:
            start_when_port_ready(self, params["port"], float(params["port_wait_s"]))
        except Exception:
            self.destroy_node()
            raise


class ServoEmulatorNode(Node):
    """Parameters: `device` (whose motors to emulate), `link` (symlink to the pty), `tau_s`."""

    def __init__(self, node_name: str = "servo_emulator", **node_kwargs: Any):
        super().__init__(node_name, **node_kwargs)
        device = self.declare_parameter("device", "so101").value
        self.link = self.declare_parameter("link", f"/tmp/robot_stack_{device}").value
        self.emulator = emulator_for(device, float(self.declare_parameter("tau_s", 0.05).value))
        port = self.emulator.start()
        link_port(port, self.link)
        self.get_logger().info(f"emulated {device} bus on {port} (linked at {self.link})")

    def destroy_node(self) -> None:
        self.emulator.stop()
        unlink_port(self.link)
        super().destroy_node()
