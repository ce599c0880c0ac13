"""`robot-stack sim run`: registered through the `robot_stack.cli` entry-point group."""

from __future__ import annotations

import subprocess
import sys

CLI = [sys.executable, "-m", "robot_stack.cli.main"]


def test_sim_run_fast_for_a_sim_duration():
    out = subprocess.run([*CLI, "sim", "run", "--fast", "--duration", "0.5", "--cameras", "", "--transport", "inproc"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "stopped at sim time 0.5" in out.stderr


def test_unknown_robot_lists_the_available_ones():
    out = subprocess.run([*CLI, "sim", "run", "--robot", "sim_pandaa", "--transport", "inproc"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "sim_panda" in out.stderr and "sim_iiwa" in out.stderr
