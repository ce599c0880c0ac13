"""Helpers for the CLI tests: a talker/listener process built on robot_stack, and CLI runners."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from robot_stack.errors import TransportUnavailable
from robot_stack.transport import transport_class

ROOT = Path(__file__).resolve().parents[3]
_SCRIPT = Path(sys.executable).with_name("robot-stack")  # the installed console script
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "robot_stack.cli.main"]

# A node publishing sensor_msgs/JointState (stamped) at RATE on TOPIC, and printing every
# std_msgs/String it receives on LISTEN as one line on stdout.
TALKER = """
import sys
import robot_stack as rs
from robot_stack import convert

transport, topic, rate, listen = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
ctx = rs.Context(transport)
node = rs.Node("talker", namespace="cli_test", context=ctx, publish_stats=transport != "rclpy")
pub = node.create_publisher("sensor_msgs/msg/JointState", topic, 10)
names = ["j1", "j2", "j3"]
count = [0]

def tick():
    count[0] += 1
    pub.publish(convert.joint_state(names, [0.5, -1.25, float(count[0])], stamp=node.get_clock().now()))

node.create_timer(1.0 / rate, tick, name="publish")
node.create_subscription("std_msgs/msg/String", listen, lambda m: print("heard", m.data, flush=True), 10)
print("ready", flush=True)
try:
    rs.spin(node)
except KeyboardInterrupt:
    pass
finally:
    ctx.shutdown()
"""


def unique_topic(prefix: str = "cli") -> str:
    return f"/{prefix}_{uuid.uuid4().hex[:8]}"


def require_transport(name: str) -> None:
    try:
        transport_class(name).check_available()
    except TransportUnavailable as exc:
        pytest.skip(f"transport {name} unavailable: {exc}")


def run_cli(*args: str, timeout: float = 60, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `robot-stack ARGS` in a fresh process (inherits ROS_DOMAIN_ID from tests/conftest.py)."""
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})}
    )


def start_cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def table_row(output: str, first_cell: str) -> list[str]:
    """Cells of the last rich-table row whose first cell is `first_cell` (box characters stripped)."""
    rows = []
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip().strip("│┃").split("│")]
        if cells and cells[0] == first_cell:
            rows.append(cells)
    assert rows, f"no table row for {first_cell!r} in:\n{output}"
    return rows[-1]


def stop(proc: subprocess.Popen) -> None:
    """Stop a process started by a test (this process's own child, by its handle)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # a clean exit: rclpy/Fast DDS remove their /dev/shm segments
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture
def talker():
    """Start talker processes: `talker(transport, topic, rate, listen_topic)`; all stopped at the end."""
    procs: list[subprocess.Popen] = []

    def start(transport: str, topic: str, rate: float = 100.0, listen: str = "/cli_test_listen") -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-c", TALKER, transport, topic, str(rate), listen],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        )
        procs.append(proc)
        line = proc.stdout.readline()
        if line.strip() != "ready":
            stop(proc)
            raise RuntimeError(f"talker did not start: {line!r} {proc.stderr.read()}")
        return proc

    try:
        yield start
    finally:
        for proc in procs:
            stop(proc)
