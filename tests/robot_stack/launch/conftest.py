"""Launch tests: helper nodes importable by name here and in launched child processes, launch-file
writing, the `robot-stack launch` runner and process checks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from robot_stack.errors import TransportUnavailable
from robot_stack.transport import transport_class

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
CLI = [sys.executable, "-m", "robot_stack.cli.main"]


def multiprocess_transport() -> str:
    """dds (the default, what launch files use) where it works here, else inproc."""
    try:
        transport_class("dds").check_available()
        return "dds"
    except TransportUnavailable:
        return "inproc"


@pytest.fixture(autouse=True)
def test_nodes_importable(monkeypatch):
    """`launch_test_nodes:Marker` etc. import here (load-time checks) and in launched children."""
    monkeypatch.syspath_prepend(str(HERE))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])))


def write_launch(tmp_path: Path, text: str, name: str = "test_launch.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def launch_cmd(path: Path, *args: str) -> list[str]:
    return [*CLI, "launch", str(path), *args]


def run_launch(path: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(launch_cmd(path, *args), capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def read_marker(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def marker_pid(path: Path) -> int:
    return int(next(line for line in read_marker(path) if line.startswith("started")).split()[1])


def wait_for(predicate, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def gone(pid: int) -> bool:
    """True when the process no longer exists (a zombie waiting for its reaper counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
