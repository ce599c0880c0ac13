"""`robot-stack demo-transport`: the rate check reads `topic hz`'s summary; the whole demo passes over DDS."""

from __future__ import annotations

import io
import subprocess
import time

import pytest
from rich.console import Console

from robot_stack.cli import hz
from robot_stack.cli.demo import CHECKS, hz_command, parse_hz_summary
from robot_stack.errors import TransportUnavailable
from robot_stack.transport import transport_class

from .conftest import CLI, ROOT

TOPICS = [c.topic for c in CHECKS]


def hz_output(rates: dict[str, float | None]) -> list[str]:
    """What `topic hz` prints when piped: its rate table, rendered by its own code."""
    meters = {}
    for topic, rate in rates.items():
        meter = meters[topic] = hz.RateMeter()
        for i in range(50 if rate else 0):
            meter.tick(i / rate, 100.0 + i / rate)
    out = io.StringIO()
    Console(file=out, width=200, highlight=False).print(hz.rate_table(meters, "summary over 6.0 s"))
    return out.getvalue().splitlines()


def test_parse_hz_summary_reads_the_rate_column():
    lines = ["[INFO] unrelated line | with a bar", *hz_output({"/joint_states": 500.0, "/joint_commands": 10.0})]
    rates = parse_hz_summary(lines, TOPICS)
    assert rates["/joint_states"] == pytest.approx(500.0, rel=1e-3)
    assert rates["/joint_commands"] == pytest.approx(10.0, rel=1e-3)


def test_parse_hz_summary_takes_the_last_table_and_missing_rates_are_none():
    lines = hz_output({"/joint_states": 100.0, "/joint_commands": 10.0}) + hz_output(
        {"/joint_states": 490.0, "/joint_commands": None}
    )
    rates = parse_hz_summary(lines, TOPICS)
    assert rates["/joint_states"] == pytest.approx(490.0, rel=1e-3)
    assert rates["/joint_commands"] is None
    assert parse_hz_summary([], TOPICS) == dict.fromkeys(TOPICS)


def test_demo_runs_the_real_topic_hz_command():
    cmd = hz_command(6)
    assert cmd[1:] == ["-m", "robot_stack.cli.main", "topic", "hz", *TOPICS, "--duration", "6"]


@pytest.mark.slow
def test_demo_passes_over_dds():
    try:
        transport_class("dds").check_available()
    except TransportUnavailable as exc:
        pytest.skip(f"dds unavailable: {exc}")
    start = time.monotonic()
    result = subprocess.run([*CLI, "demo-transport"], capture_output=True, text=True, timeout=90, cwd=ROOT)
    elapsed = time.monotonic() - start
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "demo summary" in out and "demo OK" in out and "FAIL" not in out
    assert "[arm] " in out and "[commander] " in out and "[topic hz] " in out
    assert elapsed < 30
