"""`MotorBus`: the servo-bus interface, and `SerialMotorBus`, its one implementation for both
protocols (the protocol object supplies the packets; reading, writing, retries and status checks
are the same code for Dynamixel and Feetech).

Values are ticks (register units); devices convert to radians through their calibration.
"""

from __future__ import annotations

import select
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import serial

from drivers.servo.dynamixel import DYNAMIXEL
from drivers.servo.errors import (
    BusNotConnected,
    CommunicationError,
    MissingStatus,
    MixedRegisterLayout,
    PortUnplugged,
    ServoError,
    StatusError,
)
from drivers.servo.feetech import FEETECH
from drivers.servo.protocol import BROADCAST_ID, Protocol, Status
from drivers.servo.tables import ControlTable, Register
from drivers.servo.watchdog import RetryPolicy

PROTOCOLS: dict[str, Protocol] = {"dynamixel": DYNAMIXEL, "feetech": FEETECH}


def get_protocol(name: str) -> Protocol:
    """The packet layer called `name` ("dynamixel": Protocol 2.0, "feetech": SCS/STS)."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ServoError(f"unknown servo protocol '{name}'; known: {sorted(PROTOCOLS)}") from None


class MotorBus(ABC):
    """A chain of servos on one port, addressed by id, registers by generic name."""

    tables: Mapping[int, ControlTable]

    @abstractmethod
    def connect(self) -> None: ...

    @abstractmethod
    def disconnect(self) -> None: ...

    @property
    @abstractmethod
    def connected(self) -> bool: ...

    @abstractmethod
    def ping(self, motor_id: int) -> int | None:
        """The model number where the protocol reports it (None on Feetech); raises when silent."""

    @abstractmethod
    def sync_read(self, register: str, ids: Iterable[int] | None = None) -> dict[int, int]: ...

    @abstractmethod
    def sync_write(self, register: str, values: Mapping[int, int]) -> None: ...

    @abstractmethod
    def read_one(self, register: str, motor_id: int) -> int: ...

    @abstractmethod
    def write_one(self, register: str, motor_id: int, value: int) -> None: ...

    def read_many(self, registers: list[str], ids: Iterable[int] | None = None) -> dict[str, dict[int, int]]:
        """Several registers of each motor (one sync read per register unless overridden)."""
        ids = list(self.tables) if ids is None else list(ids)
        return {r: self.sync_read(r, ids) for r in registers}

    def read(self, register: str, ids: Iterable[int] | None = None) -> dict[int, int]:
        """`register` of each motor (all when `ids` is None): one sync read, or a read for one motor."""
        ids = list(self.tables) if ids is None else list(ids)
        if len(ids) == 1:
            return {ids[0]: self.read_one(register, ids[0])}
        return self.sync_read(register, ids)

    def write(self, register: str, values: Mapping[int, int]) -> None:
        """Write `register` of each motor: one acknowledged write, or one sync write for several."""
        if len(values) == 1:
            (motor_id, value), = values.items()
            self.write_one(register, motor_id, value)
        else:
            self.sync_write(register, values)


class SerialMotorBus(MotorBus):
    """A `MotorBus` on a serial port (or a pty) opened with pyserial."""

    def __init__(self, port: str, protocol: Protocol, tables: Mapping[int, ControlTable], *,
                 baudrate: int = 1_000_000, policy: RetryPolicy | None = None,
                 serial_factory: Callable[..., Any] = serial.Serial):
        self.port, self.protocol, self.tables = port, protocol, dict(tables)
        self.baudrate = baudrate
        self.policy = policy or RetryPolicy()
        self._factory = serial_factory
        self._serial: Any = None
        self._parser = protocol.parser()
        self.transactions = self.retries = self.timeouts = self.stale_packets = self.hardware_alerts = 0

    # --- lifecycle -----------------------------------------------------------------------------
    def connect(self) -> None:
        if self._serial is not None:
            return
        try:
            self._serial = self._factory(self.port, self.baudrate, timeout=0, write_timeout=1.0)
        except (serial.SerialException, OSError) as exc:
            raise PortUnplugged(f"cannot open {self.port}: {exc}") from exc

    def disconnect(self) -> None:
        if self._serial is not None:
            try:
                self._serial.close()
            except (serial.SerialException, OSError):
                pass
            self._serial = None

    @property
    def connected(self) -> bool:
        return self._serial is not None

    def counters(self) -> dict[str, int]:
        return {"transactions": self.transactions, "retries": self.retries, "timeouts": self.timeouts,
                "stale_packets": self.stale_packets, "hardware_alerts": self.hardware_alerts,
                **{f"parser_{k}": v for k, v in self._parser.counters().items()}}

    # --- operations ----------------------------------------------------------------------------
    def ping(self, motor_id: int) -> int | None:
        status = self._transact(self.protocol.ping(motor_id), [motor_id], "PING")[motor_id]
        return self.protocol.model_from_ping(status.data)

    def read_one(self, register: str, motor_id: int) -> int:
        reg = self.tables[motor_id][register]
        packet = self.protocol.read(motor_id, reg.address, reg.size)
        status = self._transact(packet, [motor_id], f"READ {register}", reg.size)[motor_id]
        return reg.decode(status.data)

    def write_one(self, register: str, motor_id: int, value: int) -> None:
        reg = self.tables[motor_id][register]
        self._transact(self.protocol.write(motor_id, reg.address, reg.encode(value)), [motor_id],
                       f"WRITE {register}")

    def sync_read(self, register: str, ids: Iterable[int] | None = None) -> dict[int, int]:
        return self.read_many([register], ids)[register]

    def read_many(self, registers: list[str], ids: Iterable[int] | None = None) -> dict[str, dict[int, int]]:
        """One SYNC_READ of the address span covering `registers` (e.g. current, velocity, position)."""
        ids = list(self.tables) if ids is None else list(ids)
        regs = [self._uniform(r, ids) for r in registers]
        start = min(r.address for r in regs)
        size = max(r.address + r.size for r in regs) - start
        packet = self.protocol.sync_read(start, size, ids)
        statuses = self._transact(packet, ids, f"SYNC_READ {'+'.join(registers)}", size)
        return {r.name: {i: r.decode(statuses[i].data[r.address - start:]) for i in ids} for r in regs}

    def sync_write(self, register: str, values: Mapping[int, int]) -> None:
        reg = self._uniform(register, list(values))
        items = {i: reg.encode(v) for i, v in values.items()}
        self._transact(self.protocol.sync_write(reg.address, reg.size, items), [], f"SYNC_WRITE {register}")

    def bulk_read(self, registers: Mapping[int, str]) -> dict[int, int]:
        """Dynamixel BULK_READ: a (possibly different) register per motor, one packet."""
        regs = {i: self.tables[i][name] for i, name in registers.items()}
        packet = self.protocol.bulk_read_packet([(i, r.address, r.size) for i, r in regs.items()])
        statuses = self._transact(packet, list(regs), "BULK_READ")
        for i, r in regs.items():
            self._check_size(statuses[i], r.size, "BULK_READ")
        return {i: r.decode(statuses[i].data) for i, r in regs.items()}

    def _uniform(self, register: str, ids: list[int]) -> Register:
        regs = {i: self.tables[i][register] for i in ids}
        layouts = {(r.address, r.size) for r in regs.values()}
        if len(layouts) > 1:
            raise MixedRegisterLayout(f"{self.port}: '{register}' differs between motors {sorted(regs)}: "
                                      f"{sorted(layouts)}; use bulk_read")
        return next(iter(regs.values()))

    # --- transactions --------------------------------------------------------------------------
    def _transact(self, packet: bytes, expect: list[int], what: str, size: int | None = None) -> dict[int, Status]:
        """Send `packet`, collect one status from each id in `expect`; retry with backoff."""
        if self._serial is None:
            raise BusNotConnected(f"{self.port}: not connected")
        if BROADCAST_ID in expect:
            expect = []
        self.transactions += 1
        last: CommunicationError | None = None
        for delay in [*self.policy.delays(), None]:
            try:
                statuses = self._exchange(packet, expect, what)
                if size is not None:
                    for s in statuses.values():
                        self._check_size(s, size, what)
                return statuses
            except StatusError:
                raise
            except CommunicationError as exc:
                last = exc
            if delay is not None:
                self.retries += 1
                time.sleep(delay)
        raise last

    def _exchange(self, packet: bytes, expect: list[int], what: str) -> dict[int, Status]:
        self._drain()
        self._io(self._serial.write, packet)
        got: dict[int, Status] = {}
        deadline = time.perf_counter() + self.policy.timeout_s
        fd = self._serial.fileno()
        while len(got) < len(expect):
            left = deadline - time.perf_counter()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                self.timeouts += 1
                self._parser.flush()
                missing = [i for i in expect if i not in got]
                raise MissingStatus(f"{self.port}: {what}: no valid status from motor(s) {missing} within "
                                    f"{self.policy.timeout_s * 1e3:.0f} ms "
                                    f"({self._parser.checksum_errors} checksum errors so far)")
            for p in self._parser.feed(self._io(self._serial.read, 4096)):
                self._accept(self.protocol.status(p), expect, got)
        return got

    def _accept(self, status: Status, expect: list[int], got: dict[int, Status]) -> None:
        if status.id not in expect or status.id in got:
            self.stale_packets += 1
            return
        reason = self.protocol.instruction_error(status.error)
        if reason:
            raise StatusError(status.id, status.error, reason)
        if status.error:
            self.hardware_alerts += 1
        got[status.id] = status

    def _drain(self) -> None:
        """Drop bytes left from an earlier transaction (late or unexpected status packets)."""
        fd = self._serial.fileno()
        while select.select([fd], [], [], 0)[0]:
            self.stale_packets += len(self._parser.feed(self._io(self._serial.read, 4096)))
        self.stale_packets += len(self._parser.flush())

    def _io(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except (serial.SerialException, OSError) as exc:
            raise PortUnplugged(f"{self.port}: {exc}") from exc

    @staticmethod
    def _check_size(status: Status, size: int, what: str) -> None:
        if len(status.data) != size:
            raise CommunicationError(f"{what}: motor {status.id} sent {len(status.data)} bytes, expected {size}")
