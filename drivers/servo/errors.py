"""Exception types of the servo buses. Each names the port, motor and register concerned."""

from __future__ import annotations

from robot_stack.errors import RobotStackError


class ServoError(RobotStackError):
    """Base class of every servo-bus error."""


class BusNotConnected(ServoError):
    pass


class UnknownRegister(ServoError, KeyError):
    def __str__(self) -> str:
        return self.args[0]


class MixedRegisterLayout(ServoError):
    """A sync read/write over motors whose register has different addresses or sizes."""


class CommunicationError(ServoError):
    """One transaction failed after its retries (missing, corrupt or unexpected status packets)."""


class MissingStatus(CommunicationError):
    pass


class StatusError(CommunicationError):
    """A motor answered with an instruction error in its status packet."""

    def __init__(self, motor_id: int, error: int, reason: str):
        self.motor_id, self.error = motor_id, error
        super().__init__(f"motor {motor_id}: status error 0x{error:02x} ({reason})")


class PortUnplugged(ServoError):
    """The serial port went away (adapter unplugged, pty closed)."""


class BusTripped(ServoError):
    """The bus watchdog gave up: too many consecutive failures; the device was safe-stopped."""

    def __init__(self, port: str, reason: str, failures: int):
        self.port, self.reason, self.failures = port, reason, failures
        super().__init__(f"servo bus {port}: watchdog tripped after {failures} consecutive failure(s): {reason}")


class CalibrationError(ServoError):
    pass
