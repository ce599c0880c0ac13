"""Emulated operators for setups without hardware (the `sim_*` teleop configs, demos, benchmarks).

`leader_emulator(kind)`: a byte-level servo-bus emulator (`drivers.servo_emulator`, a pty) with a
leader's motors (`gello` or a drivers device such as koch). `LeaderEmulatorNode` runs one, links
its pty at `link`, and plays a scripted operator on the limp joints: joint k follows
`amplitude_rad * sin(2 pi t / period_s + k)` about mid-turn, updated at 50 Hz. Parameters:
`device`, `link`, `tau_s`, `amplitude_rad`, `period_s`.
"""

from __future__ import annotations

import math
import time
from typing import Any

from drivers.servo_emulator import ServoEmulator, link_port, unlink_port
from robot_stack.node import Node
from teleop.exo import leader_config


def leader_emulator(kind: str, tau_s: float = 0.05) -> ServoEmulator:
    config = leader_config(kind)
    return ServoEmulator(config.protocol, config.motors(), tau_s)


class LeaderEmulatorNode(Node):
    def __init__(self, node_name: str = "leader_emulator", **node_kwargs: Any):
        super().__init__(node_name, **node_kwargs)
        device = self.declare_parameter("device", "koch").value
        self.link = self.declare_parameter("link", f"/tmp/robot_stack_leader_{device}").value
        self.amplitude = float(self.declare_parameter("amplitude_rad", 0.3).value)
        self.period = float(self.declare_parameter("period_s", 8.0).value)
        self.emulator = leader_emulator(device, float(self.declare_parameter("tau_s", 0.05).value))
        self._t0 = time.monotonic()
        self._started = False
        self.create_timer(0.02, self.move, name="operator")

    def move(self) -> None:
        if not self._started:                 # the pty is opened here, not in __init__
            self._started = True
            link_port(self.emulator.start(), self.link)
            self.get_logger().info(f"emulated leader on {self.emulator.port} (linked at {self.link})")
        phase = 2 * math.pi * (time.monotonic() - self._t0) / self.period
        emu = self.emulator
        with emu.lock:
            for k, motor in enumerate(emu.motors.values()):
                ticks_per_rad = motor.table.resolution / (2 * math.pi)
                motor.move_to(motor.table.resolution / 2 + self.amplitude * math.sin(phase + k) * ticks_per_rad)

    def destroy_node(self) -> None:
        self.emulator.stop()
        unlink_port(self.link)
        super().destroy_node()
