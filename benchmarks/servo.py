"""Servo-bus benchmarks (issue 8): sync read of 6 and 16 motors through a pty to the byte-level
emulator (in its own process, like a real bus), round trips/s and latency p50/p99. Baselines
measured in the same run: one READ per motor (what sync read saves) and a bare pty echo of the same
bytes by another process (the floor: pty + process wake-ups, without our packet layers, bus or emulator).

Writes benchmarks/results/servo.json and prints a table.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from contextlib import contextmanager

from benchmarks.report import percentiles, print_table, write_results
from drivers.servo.bus import SerialMotorBus, get_protocol
from drivers.servo.devices import device_class

ROUNDS = int(os.environ.get("BENCH_SERVO_ROUNDS", "2000"))
SETUPS = (("so101", "feetech x6"), ("koch", "dynamixel x6"), ("leap_hand", "dynamixel x16"))
ECHO = """
import os, select, sys, tty
master, slave = os.openpty(); tty.setraw(slave)
n, reply = int(sys.argv[1]), bytes.fromhex(sys.argv[2])
print(os.ttyname(slave), flush=True)
got = 0
while True:
    got += len(os.read(master, 4096))
    while got >= n:
        got -= n
        os.write(master, reply)
"""


def _time(fn, rounds: int) -> list[float]:
    for _ in range(min(50, rounds)):
        fn()
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return samples


def _row(device: str, what: str, op: str, samples: list[float]) -> dict:
    p = percentiles(samples)
    return {"device": device, "bus": what, "op": op, "round_trips_per_s": len(samples) / sum(samples), **p}


@contextmanager
def _process(*args: str):
    """A helper process that prints its pty path first."""
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, text=True)
    try:
        yield proc.stdout.readline().strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _echo_baseline(request: bytes, reply: bytes, rounds: int) -> list[float]:
    """Round trips of the same byte counts over a bare pty to a process that answers at once."""
    with _process("-c", ECHO, str(len(request)), reply.hex()) as port:
        fd = os.open(port, os.O_RDWR | os.O_NOCTTY)

        def round_trip() -> None:
            os.write(fd, request)
            need = len(reply)
            while need:
                select.select([fd], [], [])
                need -= len(os.read(fd, need))

        try:
            return _time(round_trip, rounds)
        finally:
            os.close(fd)


def bench_device(name: str, what: str, rounds: int = ROUNDS) -> list[dict]:
    config = device_class(name).config_class()
    ids = list(config.motors())
    protocol = get_protocol(config.protocol)
    with _process("-m", "drivers.servo_emulator", "--device", name) as port:
        bus = SerialMotorBus(port, protocol, config.tables(), baudrate=config.baudrate)
        bus.connect()
        rows = [_row(name, what, "sync_read", _time(lambda: bus.sync_read("present_position"), rounds))]
        rows.append(_row(name, what, "sync_read pos+vel+load",
                         _time(lambda: bus.read_many([config.load_register, "present_velocity", "present_position"]),
                               rounds)))
        rows.append(_row(name, what, "read per motor", _time(lambda: [bus.read_one("present_position", i) for i in ids],
                                                             max(rounds // 4, 1))))
        if bus.counters()["retries"]:
            print(f"note: {name}: {bus.counters()['retries']} retries during the run")
        bus.disconnect()
    reg = config.tables()[ids[0]]["present_position"]
    request = protocol.sync_read(reg.address, reg.size, ids)
    reply = b"".join(protocol.pack_status(i, 0, bytes(reg.size)) for i in ids)
    rows.append(_row(name, what, "bare pty echo", _echo_baseline(request, reply, rounds)))
    return rows


def run() -> dict:
    rows = [r for name, what in SETUPS for r in bench_device(name, what)]
    by = {(r["device"], r["op"]): r for r in rows}
    summary = {}
    for name, _ in SETUPS:
        sync, many, floor = (by[(name, op)] for op in ("sync_read", "read per motor", "bare pty echo"))
        summary[f"{name}_sync_read_p50_us"] = sync["p50_us"]
        summary[f"{name}_sync_read_speedup_vs_per_motor_reads"] = many["p50_us"] / sync["p50_us"]
        summary[f"{name}_sync_read_p50_vs_bare_pty"] = sync["p50_us"] / floor["p50_us"]
    print_table("Servo bus through a pty to the emulator (us)", rows,
                ["device", "bus", "op", "round_trips_per_s", "p50_us", "p99_us", "max_us", "n"])
    print_table("Servo bus figures", [{"figure": k, "value": v} for k, v in summary.items()], ["figure", "value"])
    path = write_results("servo", rows, {"summary": summary, "rounds": ROUNDS})
    return {"rows": rows, "summary": summary, "path": str(path)}


if __name__ == "__main__":
    run()
