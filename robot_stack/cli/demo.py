"""`robot-stack demo-transport`: the fake arm and its commander in two processes, with their rates checked.

Runs the bundled launch file `demo_fake_arm` through the supervisor and, while it runs,
`robot-stack topic hz /joint_states /joint_commands --duration 6` as a subprocess (the real
command, so the demo shows exactly what a user sees). Ends by itself after about 10 s with a
summary; exits 1 when a rate is far off its target, so `make demo` is a real check.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from dataclasses import dataclass

from rich.table import Table

from robot_stack.launch.config import BUNDLED_DIR, load_launch_file
from robot_stack.launch.supervisor import Outcome, OutputPump, Supervisor, describe_exit, make_console

DEMO_LAUNCH = BUNDLED_DIR / "demo_fake_arm.yaml"
WARMUP = 2.0  # seconds for the processes to start and discover each other before measuring


@dataclass(frozen=True)
class RateCheck:
    topic: str
    low_hz: float
    high_hz: float


CHECKS = (RateCheck("/joint_states", 400.0, 600.0), RateCheck("/joint_commands", 8.0, 12.0))


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo-transport", help="run the fake-arm demo (two processes over DDS) and check its topic rates",
        description="Launch the bundled demo_fake_arm launch file (fake arm publishing /joint_states at "
        "500 Hz, commander publishing /joint_commands at 10 Hz, in separate processes), measure both rates "
        "with `robot-stack topic hz`, print a summary; exit 1 if a rate is far off.",
    )
    p.add_argument("--measure", type=float, default=6.0, metavar="S", help="seconds of rate measurement (default 6)")
    p.set_defaults(func=run)


def hz_command(seconds: float) -> list[str]:
    topics = [c.topic for c in CHECKS]
    return [sys.executable, "-m", "robot_stack.cli.main", "topic", "hz", *topics, "--duration", f"{seconds:g}"]


def parse_hz_summary(lines: list[str], topics: list[str]) -> dict[str, float | None]:
    """Rates from the last table `topic hz` prints (columns 'topic' and 'rate [Hz]'); None if absent."""
    rates: dict[str, float | None] = dict.fromkeys(topics)
    rate_col = None
    for line in lines:
        cells = [c.strip() for c in re.split(r"[│┃|║]", line)]
        if "rate [Hz]" in cells:
            rate_col = cells.index("rate [Hz]")
        elif rate_col is not None and len(cells) > rate_col and cells[1] in rates:
            try:
                rates[cells[1]] = float(cells[rate_col])
            except ValueError:
                rates[cells[1]] = None
    return rates


def _measure(sup: Supervisor, seconds: float) -> tuple[Outcome, list[str], int | None]:
    lines: list[str] = []
    hz = subprocess.Popen(
        hz_command(seconds), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        process_group=0, env={**os.environ, "COLUMNS": "200"},  # wide enough that its table rows never wrap
    )
    pump = OutputPump("topic hz", hz.stdout, sup.console, "bold blue", keep=lines)
    pump.start()
    try:
        outcome = sup.wait(seconds + 20.0, until=lambda: hz.poll() is not None)
    finally:
        if hz.poll() is None:
            hz.terminate()
        try:
            hz.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            hz.kill()
            hz.wait()
        pump.join(timeout=2.0)
    return outcome, lines, hz.returncode


def _summary(sup: Supervisor, rates: dict[str, float | None]) -> bool:
    table = Table(title="demo summary", title_justify="left")
    for col in ("topic", "expected [Hz]", "measured [Hz]", "result"):
        table.add_column(col)
    ok = True
    for check in CHECKS:
        rate = rates.get(check.topic)
        good = rate is not None and check.low_hz <= rate <= check.high_hz
        ok &= good
        table.add_row(
            check.topic, f"{check.low_hz:g} - {check.high_hz:g}", "-" if rate is None else f"{rate:.1f}",
            "ok" if good else "FAIL",
        )
    sup.console.print(table)
    return ok


def run(args: argparse.Namespace) -> int:
    config = load_launch_file(DEMO_LAUNCH)
    console = make_console()
    with Supervisor(config, console=console, log_level=args.log_level) as sup:
        outcome = sup.wait(WARMUP)
        if outcome is Outcome.DURATION:
            sup.say(f"measuring rates for {args.measure:g} s: {' '.join(hz_command(args.measure)[3:])}")
            outcome, lines, hz_code = _measure(sup, args.measure)
        if outcome is not Outcome.DONE:
            sup.say(f"demo interrupted: {outcome.value}", "bold red")
            return 130 if outcome is Outcome.SIGNAL else 1
        sup.say("measurement done: stopping the demo processes")
    unclean = {c.name: c.popen.returncode for c in sup.children if c.popen.returncode != 0}
    for name, code in unclean.items():
        sup.say(f"process '{name}' {describe_exit(code)} while stopping", "bold red")
    ok = _summary(sup, parse_hz_summary(lines, [c.topic for c in CHECKS]))
    if hz_code != 0:
        sup.say(f"`topic hz` {describe_exit(hz_code)}", "bold red")
    verdict = ok and not unclean and hz_code == 0
    sup.say("demo OK" if verdict else "demo FAILED", "bold green" if verdict else "bold red")
    return 0 if verdict else 1
