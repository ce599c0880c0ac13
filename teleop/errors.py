"""Teleop exception types."""

from __future__ import annotations

from robot_stack.errors import ConfigError, RobotStackError


class TeleopError(RobotStackError):
    """Base class of the teleop errors."""


class TeleopConfigError(TeleopError, ConfigError):
    """A teleop configuration or calibration file is wrong; the message names the file and the field."""


class DeviceUnavailable(TeleopError):
    """A teleop input device cannot be opened or went away."""


class FieldError(ValueError):
    """Raised by a config dataclass's checks; `from_mapping` turns it into a TeleopConfigError naming the field."""

    def __init__(self, field: str, reason: str):
        self.field, self.reason = field, reason
        super().__init__(f"{field}: {reason}")
