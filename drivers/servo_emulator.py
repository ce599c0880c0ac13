"""Byte-level servo-bus emulator: a pty whose slave path a driver opens exactly like /dev/ttyUSB0.

It answers Dynamixel 2.0 or Feetech STS instruction packets with real status packets from simulated
motors (control-table memory; the present position follows the goal with a first-order lag while
torque is on). `faults` injects failures: drop or corrupt the next N status packets (or all),
go silent; `unplug()` closes the pty. From the command line:

    python -m drivers.servo_emulator --protocol dynamixel --ids 1-6 [--model xl330-m288] [--link PATH]
    python -m drivers.servo_emulator --device so101 --link /tmp/so101

prints the pty path (and makes `--link` a symlink to it), then runs until Ctrl-C.
"""

from __future__ import annotations

import argparse
import math
import os
import select
import signal
import threading
import time
import tty
from collections.abc import Mapping
from dataclasses import dataclass

from drivers.servo.bus import PROTOCOLS, get_protocol
from drivers.servo.dynamixel import DYNAMIXEL
from drivers.servo.protocol import (
    ACTION,
    BROADCAST_ID,
    BULK_READ,
    PING,
    READ,
    REG_WRITE,
    SYNC_READ,
    SYNC_WRITE,
    WRITE,
    Request,
)
from drivers.servo.tables import ControlTable, table

DEFAULT_MODEL = {"dynamixel": "xl330-m288", "feetech": "sts3215"}
ACCESS_ERROR, INSTRUCTION_ERROR = 0x07, 0x02   # Dynamixel status error numbers


@dataclass
class Faults:
    drop: int = 0               # drop the next N status packets
    corrupt: int = 0            # corrupt the checksum of the next N status packets
    drop_all: bool = False
    corrupt_all: bool = False
    silent: bool = False        # answer nothing at all


class SimMotor:
    """One servo: its control-table memory and a first-order position model."""

    def __init__(self, motor_id: int, model: ControlTable, tau_s: float = 0.05):
        self.id, self.table, self.tau_s = motor_id, model, tau_s
        self.memory = bytearray(model.memory_size)
        self.read_only = frozenset(a for r in model.registers.values() if not r.writable
                                   for a in range(r.address, r.address + r.size))
        for name, value in {**model.defaults, "model_number": model.model_number, "id": motor_id}.items():
            self.set(name, value)
        self._pos = float(self.get("present_position"))

    def get(self, name: str) -> int:
        reg = self.table[name]
        return reg.decode(bytes(self.memory[reg.address:reg.address + reg.size]))

    def set(self, name: str, value: int) -> None:
        reg = self.table[name]
        self.memory[reg.address:reg.address + reg.size] = reg.encode(value)

    def move_to(self, ticks: float) -> None:
        """Put the shaft somewhere (an operator moving a limp joint)."""
        self._pos = float(ticks)
        self.set("present_position", round(ticks))

    def step(self, dt: float) -> None:
        before = self._pos
        if self.get("torque_enable"):
            lo, hi = self.get("min_position_limit"), self.get("max_position_limit")
            goal = min(max(self.get("goal_position"), lo), hi) if lo < hi else self.get("goal_position")
            self._pos += (goal - self._pos) * (1.0 - math.exp(-dt / self.tau_s))
            self.set("present_position", round(self._pos))
        vel = self.table["present_velocity"]
        ticks_per_s = (self._pos - before) / dt if dt > 0 else 0.0
        per_unit = 60.0 / self.table.resolution / vel.scale if vel.unit == "rpm" else 1.0
        self.set("present_velocity", round(ticks_per_s * per_unit))
        self.set("moving", int(abs(ticks_per_s) > 1.0))


class ServoEmulator:
    """Simulated motors behind a pty, served by a background thread."""

    def __init__(self, protocol: str, motors: Mapping[int, str], tau_s: float = 0.05):
        self.protocol = get_protocol(protocol)
        self.motors = {i: SimMotor(i, table(m), tau_s) for i, m in sorted(motors.items())}
        self.faults = Faults()
        self.lock = threading.Lock()
        self.requests = self.statuses = 0
        self._master = self._slave = -1
        self.port = ""
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = -1, -1
        self._last = time.perf_counter()

    def start(self) -> str:
        """Open the pty and start answering; returns the port path."""
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.port = os.ttyname(self._slave)
        self._wake_r, self._wake_w = os.pipe()
        self._last = time.perf_counter()
        self._thread = threading.Thread(target=self._serve, name=f"servo-emulator {self.port}", daemon=True)
        self._thread.start()
        return self.port

    def unplug(self) -> None:
        """Close the pty, like pulling the USB adapter out."""
        self.stop()

    def stop(self) -> None:
        if self._thread is None:
            return
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=2.0)
        self._thread = None
        for fd in (self._master, self._slave, self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._master = self._slave = -1

    def __enter__(self) -> ServoEmulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def step(self) -> None:
        """Advance every motor's model to now."""
        now = time.perf_counter()
        with self.lock:
            dt, self._last = now - self._last, now
            for m in self.motors.values():
                m.step(dt)

    # --- serving -------------------------------------------------------------------------------
    def _serve(self) -> None:
        parser = self.protocol.parser()
        while True:
            ready = select.select([self._master, self._wake_r], [], [])[0]
            if self._wake_r in ready:
                return
            try:
                data = os.read(self._master, 4096)
            except BlockingIOError:
                continue
            except OSError:
                return
            for packet in parser.feed(data):
                request = self.protocol.parse_request(packet)
                self.requests += 1
                self.step()
                with self.lock:
                    replies = self._answer(request, packet.id, packet.code)
                self._send(replies)

    def _send(self, replies: list[bytes]) -> None:
        f = self.faults
        for reply in replies:
            if f.silent or f.drop_all or f.drop > 0:
                f.drop = max(0, f.drop - 1)
                continue
            if f.corrupt_all or f.corrupt > 0:
                f.corrupt = max(0, f.corrupt - 1)
                reply = reply[:-1] + bytes([reply[-1] ^ 0x5A])
            try:
                os.write(self._master, reply)
                self.statuses += 1
            except OSError:      # nobody reads: a real bus would lose it too
                return

    def _answer(self, req: Request | None, motor_id: int, code: int) -> list[bytes]:
        if req is None:
            return self._error(motor_id, INSTRUCTION_ERROR)
        if req.instruction == PING:
            ids = list(self.motors) if req.id == BROADCAST_ID else [req.id]
            return [self._status(i, 0, self.protocol.ping_data(self.motors[i].table.model_number, 0x30))
                    for i in ids if i in self.motors]
        if req.instruction == READ:
            return self._read(req.id, req.address, req.size)
        if req.instruction in (WRITE, REG_WRITE):
            error = self._write(req.id, req.address, req.data)
            return [] if req.id == BROADCAST_ID or req.id not in self.motors else [self._status(req.id, error, b"")]
        if req.instruction == SYNC_WRITE:
            for i, data in req.items:
                self._write(i, req.address, data)
            return []
        if req.instruction == SYNC_READ:
            return [r for i in req.ids for r in self._read(i, req.address, req.size)]
        if req.instruction == BULK_READ:
            return [r for i, a, n in req.reads for r in self._read(i, a, n)]
        if req.instruction == ACTION:
            return []
        return self._error(motor_id, INSTRUCTION_ERROR)

    def _read(self, motor_id: int, address: int, size: int) -> list[bytes]:
        motor = self.motors.get(motor_id)
        if motor is None:
            return []
        if address + size > len(motor.memory) or size == 0:
            return self._error(motor_id, ACCESS_ERROR)
        return [self._status(motor_id, 0, bytes(motor.memory[address:address + size]))]

    def _write(self, motor_id: int, address: int, data: bytes) -> int:
        motor = self.motors.get(motor_id)
        if motor is None:
            return 0
        if address + len(data) > len(motor.memory):
            return ACCESS_ERROR if self.protocol is DYNAMIXEL else 0
        if not motor.read_only.isdisjoint(range(address, address + len(data))):
            return ACCESS_ERROR if self.protocol is DYNAMIXEL else 0
        motor.memory[address:address + len(data)] = data
        return 0

    def _error(self, motor_id: int, error: int) -> list[bytes]:
        if motor_id not in self.motors or self.protocol is not DYNAMIXEL:
            return []
        return [self._status(motor_id, error, b"")]

    def _status(self, motor_id: int, error: int, data: bytes) -> bytes:
        return self.protocol.pack_status(motor_id, error, data)


def parse_ids(text: str) -> list[int]:
    """"1-6" or "1,2,5-7" -> ids."""
    ids: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        ids.extend(range(int(lo), int(hi or lo) + 1))
    return ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drivers.servo_emulator", description=__doc__.split("\n")[0])
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="dynamixel")
    parser.add_argument("--ids", default="1-6", help="motor ids, e.g. 1-6 or 1,2,5-7")
    parser.add_argument("--model", default="", help="control table of every motor (default per protocol)")
    parser.add_argument("--link", default="", help="also make this path a symlink to the pty")
    parser.add_argument("--device", default="", help="emulate this device's motors (so101, koch, leap_hand)")
    parser.add_argument("--tau", type=float, default=0.05, help="position time constant in seconds")
    args = parser.parse_args(argv)
    emulator = emulator_for(args.device, args.tau) if args.device else ServoEmulator(
        args.protocol, {i: args.model or DEFAULT_MODEL[args.protocol] for i in parse_ids(args.ids)}, args.tau)
    port = emulator.start()
    if args.link:
        link_port(port, args.link)
    print(port, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    emulator.stop()
    return 0


def emulator_for(device: str, tau_s: float = 0.05) -> ServoEmulator:
    """An emulator of `device`'s motors (its protocol, ids and models)."""
    from drivers.servo.devices import device_class

    config = device_class(device).config_class()
    return ServoEmulator(config.protocol, config.motors(), tau_s)


def link_port(port: str, link: str) -> None:
    """Atomically point the symlink `link` at `port`."""
    tmp = f"{link}.{os.getpid()}.tmp"
    os.symlink(port, tmp)
    os.replace(tmp, link)


def unlink_port(link: str) -> None:
    """Remove the symlink `link` made by `link_port` (nothing if it is gone or not a link)."""
    try:
        if os.path.islink(link):
            os.unlink(link)
    except OSError:
        pass


if __name__ == "__main__":
    raise SystemExit(main())
