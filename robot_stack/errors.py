"""Exception types of the core runtime. Each says what was wrong and where."""

from __future__ import annotations


class RobotStackError(Exception):
    """Base class of every robot_stack error."""


class UnknownMessageType(RobotStackError, KeyError):
    def __init__(self, name: str, suggestions: list[str]):
        self.name = name
        self.suggestions = suggestions
        hint = f"; closest known types: {', '.join(suggestions)}" if suggestions else ""
        super().__init__(f"unknown message type '{name}'{hint}")

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class MessageFieldError(RobotStackError, TypeError):
    def __init__(self, type_name: str, field: str, reason: str):
        self.type_name = type_name
        self.field = field
        self.reason = reason
        super().__init__(f"{type_name}: field '{field}': {reason}")


class TransportUnavailable(RobotStackError):
    """A transport backend cannot be used here (missing package, no permission...)."""


class TransportError(RobotStackError):
    pass


class ParameterError(RobotStackError):
    pass


class ConfigError(RobotStackError):
    """A configuration file is wrong; the message names the file and the field."""

    def __init__(self, source: str, where: str, reason: str):
        self.source = source
        self.where = where
        self.reason = reason
        super().__init__(f"{source}: {where}: {reason}")
