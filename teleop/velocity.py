"""End-effector velocity teleop from a keyboard, gamepad (Linux evdev) or SpaceMouse (HID reports).

`VelocityTeleopNode` reads its device's bytes (`device`: /dev/input/event*, /dev/hidraw*; or an
injected fd), turns the bound inputs into a normalised velocity (`velocity_config`), and while the
dead-man is held integrates it into a pose target (`PoseIntegrator`): speed at most `max_linear` /
`max_angular`, position kept in the `workspace` box, at most `max_dt` integrated per tick. It
publishes `TeleopTarget` MODE_POSE (ee_pose position + orientation from roll/pitch/yaw, `gripper`
0..1) on `teleop_target`; a RESET episode event sends the target back `home`. Button actions:
`deadman` (held), `gripper` (toggle open/closed) and the episode actions.

Silence: a keyboard at rest sends nothing (held keys auto-repeat), a gamepad sends nothing while
its sticks stay put, a SpaceMouse streams while deflected. So the stream watchdog only runs while a
key is held (keyboard) or the SpaceMouse is deflected; tripping releases every input and says why.
Parameters: `config` (a YAML file or a bundled name: keyboard, gamepad, spacemouse), `device`,
and `TeleopNode`'s (dead-man defaults to "device": a button bound to `deadman`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from robot_stack.errors import ParameterError
from teleop import evdev, spacemouse
from teleop.base import Target, TeleopNode
from teleop.episode import RESET
from teleop.reader import ByteSource
from teleop.safety import StreamWatchdog
from teleop.velocity_config import TARGET_AXES, AxisBinding, VelocityConfig


def rpy_to_quaternion(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """(x, y, z, w) of R = Rz(yaw) Ry(pitch) Rx(roll)."""
    cr, sr = math.cos(roll / 2), math.sin(roll / 2)
    cp, sp = math.cos(pitch / 2), math.sin(pitch / 2)
    cy, sy = math.cos(yaw / 2), math.sin(yaw / 2)
    return np.array([sr * cp * cy - cr * sp * sy, cr * sp * cy + sr * cp * sy,
                     cr * cp * sy - sr * sp * cy, cr * cp * cy + sr * sp * sy])


class PoseIntegrator:
    """Velocity (x y z roll pitch yaw gripper, each in [-1, 1]) -> pose target, with the limits above.
    Rotations integrate roll/pitch/yaw about the target frame's axes (fine at teleop rates)."""

    def __init__(self, config: VelocityConfig):
        self.config = config
        self.clamped = 0
        self.reset()

    def reset(self) -> None:
        self.position, _ = self.config.workspace.clamp(np.array(self.config.home[:3], dtype=float))
        self.rpy = np.array(self.config.home[3:], dtype=float)
        self.gripper = 0.0

    def step(self, velocity: np.ndarray, dt: float) -> None:
        c = self.config
        dt = min(max(dt, 0.0), c.max_dt)
        v = np.clip(velocity, -1.0, 1.0)
        self.position, clamped = c.workspace.clamp(self.position + v[:3] * c.max_linear * dt)
        self.clamped += int(clamped)
        self.rpy = (self.rpy + v[3:6] * c.max_angular * dt + math.pi) % (2 * math.pi) - math.pi
        self.gripper = float(np.clip(self.gripper + v[6] * c.gripper_rate * dt, 0.0, 1.0))

    @property
    def orientation(self) -> np.ndarray:
        return rpy_to_quaternion(*self.rpy)


def _velocity(values: list[tuple[AxisBinding, float]]) -> np.ndarray:
    """Sum of each binding's scaled, normalised input on its axis."""
    v = np.zeros(len(TARGET_AXES))
    for binding, raw in values:
        v[TARGET_AXES.index(binding.axis)] += binding.scale * raw
    return np.clip(v, -1.0, 1.0)


class EvdevInput:
    """Keyboard / gamepad: evdev frames -> held keys and axes -> velocity; key transitions -> buttons."""

    def __init__(self, config: VelocityConfig):
        self.parser, self.state = evdev.EvdevParser(), evdev.InputState()
        self.keys = [(evdev.key_code(b.input), b) for b in config.axes if not b.input.startswith("ABS_")]
        self.abs = [(evdev.axis_code(b.input), b) for b in config.axes if b.input.startswith("ABS_")]
        self.buttons = {evdev.key_code(name): action for name, action in config.buttons.items()}
        self.streams_while_active = config.device == "keyboard"      # auto-repeat; gamepads do not repeat

    def feed(self, data: bytes) -> tuple[int, list[tuple[str, bool]]]:
        frames = self.parser.feed(data)
        changes = [change for frame in frames for change in self.state.apply(frame)]
        return len(frames), [(self.buttons[c], p) for c, p in changes if c in self.buttons]

    def velocity(self) -> np.ndarray:
        held = [(b, 1.0) for code, b in self.keys if code in self.state.keys]
        moved = [(b, b.normalize(self.state.axes[code])) for code, b in self.abs if code in self.state.axes]
        return _velocity(held + moved)

    def active(self) -> bool:
        return self.streams_while_active and bool(self.state.keys)

    def release_all(self) -> list[tuple[str, bool]]:
        return [(self.buttons[c], p) for c, p in self.state.release_all() if c in self.buttons]

    def counters(self) -> dict[str, int]:
        return self.parser.counters()


class SpaceMouseInput:
    """SpaceMouse: HID reports -> deflection -> velocity; button bits -> buttons."""

    def __init__(self, config: VelocityConfig):
        self.parser = spacemouse.SpaceMouseParser(config.combined, config.button_bytes)
        self.state = spacemouse.SpaceMouseState()
        self.bindings = [(spacemouse.INPUTS.index(b.input), b) for b in config.axes]
        self.buttons = {int(name[7:]): action for name, action in config.buttons.items()}

    def feed(self, data: bytes) -> tuple[int, list[tuple[str, bool]]]:
        reports = self.parser.feed(data)
        changes = [change for r in reports for change in self.state.apply(r)]
        return len(reports), [(self.buttons[b], p) for b, p in changes if b in self.buttons]

    def velocity(self) -> np.ndarray:
        return _velocity([(b, b.normalize(self.state.axes[i])) for i, b in self.bindings])

    def active(self) -> bool:
        return bool(np.any(self.state.axes != 0))

    def release_all(self) -> list[tuple[str, bool]]:
        return [(self.buttons[b], p) for b, p in self.state.release_all() if b in self.buttons]

    def counters(self) -> dict[str, int]:
        return self.parser.counters()


class VelocityTeleopNode(TeleopNode):
    default_deadman = "device"
    default_rate_hz = 100.0

    def __init__(self, node_name: str = "velocity_teleop", *, source: Any = None, **node_kwargs: Any):
        super().__init__(node_name, **node_kwargs)
        name = self.declare_parameter("config", "keyboard").value
        self.config = VelocityConfig.load(name)
        self.device_label = self.config.device
        if not self.get_parameter("stream_timeout_s").value:
            self.watchdog = StreamWatchdog(self.config.stream_timeout_s)
        if self.deadman_source == "device" and "deadman" not in self.config.buttons.values():
            raise ParameterError(f"node '{node_name}': deadman is 'device' but {name} binds no button to "
                                 "'deadman'; bind one or set the parameter deadman to topic/none")
        self.source = ByteSource(source if source is not None else self.declare_parameter("device", "").value)
        self.input = SpaceMouseInput(self.config) if self.config.device == "spacemouse" else EvdevInput(self.config)
        self.pose = PoseIntegrator(self.config)
        self._stamp = self.get_clock().now()
        self.start_loop()

    def open_device(self) -> None:
        self.source.open()

    def close_device(self) -> None:
        self.source.close()

    def poll(self) -> int:
        data = self.source.read_available()
        if not data:
            return 0
        self._stamp = self.get_clock().now()
        count, buttons = self.input.feed(data)
        self._buttons(buttons)
        return count

    def _buttons(self, changes: list[tuple[str, bool]]) -> None:
        for action, pressed in changes:
            if action == "deadman":
                self.device_deadman = pressed
            elif action == "gripper":
                if pressed:
                    self.pose.gripper = 0.0 if self.pose.gripper > 0.5 else 1.0
            elif pressed:
                self.episode_action(action)

    def step(self, dt: float, engaged: bool) -> Target:
        if engaged:
            self.pose.step(self.input.velocity(), dt)
        return Target(self._stamp, position=self.pose.position.copy(), orientation=self.pose.orientation,
                      gripper=self.pose.gripper)

    def stream_expected(self) -> bool:
        return self.input.active()

    def on_silence(self) -> None:
        self._buttons(self.input.release_all())

    def on_episode(self, event: int) -> None:
        if event == RESET:
            self.pose.reset()

    def counters(self) -> dict[str, Any]:
        return {**self.input.counters(), "workspace_clamped": self.pose.clamped}
