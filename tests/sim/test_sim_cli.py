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


def test_sim_run_a_task_scene():
    out = subprocess.run([*CLI, "sim", "run", "--task", "push_t", "--seed", "4", "--fast", "--duration", "0.5",
                          "--cameras", "", "--transport", "inproc"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "task push_t: reset, seed 4" in out.stderr and "stopped at sim time 0." in out.stderr


def test_unknown_task_lists_the_available_ones():
    out = subprocess.run([*CLI, "sim", "run", "--task", "push", "--transport", "inproc"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "unknown task 'push'" in out.stderr and "push_t" in out.stderr


def test_sim_tasks_lists_tasks_with_their_gym_ids():
    out = subprocess.run([*CLI, "sim", "tasks"], capture_output=True, text=True, timeout=120,
                         env={"COLUMNS": "200", **__import__("os").environ})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "push_t" in out.stdout and "robot_stack/PushT-v0" in out.stdout and "ee_x" in out.stdout
