"""Configuration of end-effector velocity teleop (keyboard, gamepad, SpaceMouse), from YAML.

    device: keyboard              # keyboard | gamepad | spacemouse
    max_linear: 0.10              # m/s at full deflection (velocity limit)
    stream_timeout_s: 0.8         # silence while a key is held / the cap deflected -> release all
    max_angular: 0.6              # rad/s
    gripper_rate: 1.5             # closure per second at full 'gripper' axis
    workspace: {low: [0.28, -0.32, 0.0], high: [0.82, 0.32, 0.4]}
    home: [0.55, 0.0, 0.1, 3.14159, 0.0, 0.0]      # x y z roll pitch yaw (RESET returns here)
    axes:                         # input -> target axis (x y z roll pitch yaw gripper)
      - {input: KEY_W, axis: x}                    # a key/button: 1 while held
      - {input: KEY_S, axis: x, scale: -1}
      - {input: ABS_Y, axis: x, scale: -1, min: -32768, max: 32767, deadzone: 0.1}   # gamepad axis
      - {input: tx, axis: y, scale: -1, min: -350, max: 350}                        # SpaceMouse
    buttons: {KEY_SPACE: deadman, KEY_ENTER: toggle, KEY_BACKSPACE: discard, KEY_G: gripper}

Inputs: keyboard/gamepad `KEY_*`/`BTN_*` (held = 1) and gamepad `ABS_*` axes, normalised from
`min..max` with rest at `zero` (default the middle; 0 for a trigger that rests at its minimum) and a
`deadzone`; SpaceMouse `tx ty tz rx ry rz` (raw counts, +-350 at full travel) and buttons
`BUTTON_<bit>`. Button actions: `teleop.episode.ACTIONS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from teleop import evdev, spacemouse
from teleop.config import check, finite, from_mapping, load_yaml, nested
from teleop.episode import ACTIONS
from teleop.errors import FieldError
from teleop.safety import Workspace

DEVICES = ("keyboard", "gamepad", "spacemouse")
TARGET_AXES = ("x", "y", "z", "roll", "pitch", "yaw", "gripper")
CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass(frozen=True)
class AxisBinding:
    input: str
    axis: str
    scale: float = 1.0
    min: float = -32768.0
    max: float = 32767.0
    zero: float | None = None
    deadzone: float = 0.1

    def __post_init__(self) -> None:
        check(self.axis in TARGET_AXES, "axis", f"must be one of {list(TARGET_AXES)}, got {self.axis!r}")
        check(finite([self.scale, self.min, self.max, self.deadzone]), "scale",
              "scale/min/max/deadzone must be numbers")
        check(self.max > self.min, "max", f"must exceed min ({self.min})")
        zero = self.rest
        check(self.min <= zero <= self.max, "zero", f"must lie in min..max, got {zero}")
        check(0.0 <= self.deadzone < 1.0, "deadzone", f"must be in [0, 1), got {self.deadzone}")

    @property
    def rest(self) -> float:
        return (self.min + self.max) / 2 if self.zero is None else float(self.zero)

    def normalize(self, raw: float) -> float:
        """Raw axis value -> [-1, 1] with the dead zone removed (and the rest rescaled to full travel)."""
        span = (self.max - self.rest) if raw >= self.rest else (self.rest - self.min)
        v = 0.0 if span <= 0 else min(max((raw - self.rest) / span, -1.0), 1.0)
        if abs(v) <= self.deadzone:
            return 0.0
        return (abs(v) - self.deadzone) / (1.0 - self.deadzone) * (1.0 if v > 0 else -1.0)


@dataclass(frozen=True)
class VelocityConfig:
    device: str
    axes: tuple[AxisBinding, ...] = nested(AxisBinding, many=True)
    buttons: dict[str, str] = field(default_factory=dict)
    max_linear: float = 0.1
    max_angular: float = 0.6
    gripper_rate: float = 1.5
    max_dt: float = 0.1                       # a stalled loop never integrates more than this at once
    stream_timeout_s: float = 0.25            # silence while active -> release (keyboard: > auto-repeat delay)
    workspace: Workspace = nested(Workspace, default_factory=Workspace)
    home: tuple[float, ...] = (0.55, 0.0, 0.1, 3.141592653589793, 0.0, 0.0)
    combined: bool = False                    # SpaceMouse: rotation inside report 1
    button_bytes: int = 2                     # SpaceMouse: size of the button report

    def __post_init__(self) -> None:
        check(self.device in DEVICES, "device", f"must be one of {list(DEVICES)}, got {self.device!r}")
        limits = [self.max_linear, self.max_angular, self.gripper_rate, self.max_dt, self.stream_timeout_s]
        check(finite(limits) and min(limits) > 0, "max_linear",
              "max_linear/max_angular/gripper_rate/max_dt/stream_timeout_s must be numbers > 0")
        check(len(self.home) == 6 and finite(self.home), "home", "need 6 numbers: x y z roll pitch yaw")
        check(isinstance(self.buttons, dict), "buttons", "expected a mapping input -> action")
        for name, action in self.buttons.items():
            check(action in ACTIONS, f"buttons.{name}", f"unknown action {action!r}; use one of {list(ACTIONS)}")
            self._check_input(f"buttons.{name}", name, button=True)
        for i, binding in enumerate(self.axes):
            self._check_input(f"axes[{i}].input", binding.input, button=False)

    def _check_input(self, where: str, name: str, *, button: bool) -> None:
        if self.device == "spacemouse":
            ok = name.startswith("BUTTON_") and name[7:].isdigit() if button else name in spacemouse.INPUTS
            check(ok, where, f"SpaceMouse inputs are {list(spacemouse.INPUTS)} and BUTTON_<n>, got {name!r}")
            return
        try:
            evdev.key_code(name) if button or not name.startswith("ABS_") else evdev.axis_code(name)
        except KeyError as exc:
            raise FieldError(where, str(exc.args[0])) from None
        check(self.device == "gamepad" or not name.startswith("ABS_"), where, "a keyboard has no ABS_ axes")

    @classmethod
    def load(cls, path_or_name: str | Path) -> VelocityConfig:
        """A YAML file, or a bundled config by name (`keyboard`, `gamepad`, `spacemouse`)."""
        path = Path(path_or_name)
        if not path.is_file() and (CONFIG_DIR / f"{path_or_name}.yaml").is_file():
            path = CONFIG_DIR / f"{path_or_name}.yaml"
        return from_mapping(cls, load_yaml(path), str(path))

