"""`robot-stack launch`: processes start, run, stop cleanly; crashes and signals leave no orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from .conftest import (
    ROOT,
    gone,
    launch_cmd,
    marker_pid,
    multiprocess_transport,
    read_marker,
    run_launch,
    wait_for,
    write_launch,
)


def two_markers(tmp_path, second: str = "Marker", params: str = "") -> str:
    return f"""
transport: {multiprocess_transport()}
processes:
  first:
    nodes:
      - {{name: m1, class: 'launch_test_nodes:Marker', parameters: {{path: '{tmp_path / "m1.txt"}'}}}}
  second:
    nodes:
      - name: m2
        class: 'launch_test_nodes:{second}'
        parameters: {{path: '{tmp_path / "m2.txt"}'{params}}}
"""


def stopped_cleanly(path) -> bool:
    lines = read_marker(path)
    return bool(lines) and lines[-1] == "stopped"


def test_launch_runs_both_processes_and_stops_cleanly_after_duration(tmp_path):
    path = write_launch(tmp_path, two_markers(tmp_path))
    start = time.monotonic()
    result = run_launch(path, "--duration", "4")
    elapsed = time.monotonic() - start
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert elapsed < 15
    m1, m2 = read_marker(tmp_path / "m1.txt"), read_marker(tmp_path / "m2.txt")
    assert m1[0].endswith(" first") and m2[0].endswith(" second")  # ROBOT_STACK_PROCESS
    for lines in (m1, m2):
        assert lines[-1] == "stopped"
        assert int(lines[-2].split()[1]) > 0  # ticks: the executor spun
    assert "[first] " in out and "[second] " in out  # prefixed child output
    assert "duration elapsed" in out and "all processes stopped cleanly" in out
    assert gone(marker_pid(tmp_path / "m1.txt")) and gone(marker_pid(tmp_path / "m2.txt"))


def test_crashing_node_is_reported_and_the_others_are_stopped(tmp_path):
    path = write_launch(tmp_path, two_markers(tmp_path, "Crasher", ", after_s: 0.3"))
    result = run_launch(path, "--duration", "30")
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "process 'second' exited with code 1" in out
    assert "not restarting" in out
    assert "node 'm2' (launch_test_nodes:Crasher, processes.second.nodes[0] (m2)) raised RuntimeError" in out
    assert "boom from the crasher" in out
    assert stopped_cleanly(tmp_path / "m1.txt")  # the survivor was stopped, not killed
    assert gone(marker_pid(tmp_path / "m1.txt")) and gone(marker_pid(tmp_path / "m2.txt"))


def test_setup_failure_names_node_and_field(tmp_path):
    path = write_launch(tmp_path, two_markers(tmp_path, "Marker", ", no_such_param: 1"))
    result = run_launch(path, "--duration", "30")
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "process 'second' exited with code 1" in out
    assert "processes.second.nodes[0] (m2): field 'parameters': Marker declares no parameter 'no_such_param'" in out


def test_bad_launch_file_exits_2_before_starting_anything(tmp_path):
    path = write_launch(tmp_path, two_markers(tmp_path, "NoSuchNode"))
    result = run_launch(path)
    assert result.returncode == 2
    assert "processes.second.nodes[0] (m2): field 'class'" in result.stderr
    assert not (tmp_path / "m1.txt").exists()


def test_check_validates_without_running(tmp_path):
    result = run_launch(write_launch(tmp_path, two_markers(tmp_path)), "--check")
    assert result.returncode == 0 and "OK (2 processes, 2 nodes)" in result.stdout
    assert not (tmp_path / "m1.txt").exists()


def start_launch(tmp_path, text: str, *args: str) -> subprocess.Popen:
    path = write_launch(tmp_path, text)
    proc = subprocess.Popen(launch_cmd(path, *args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=ROOT)
    try:
        wait_for(lambda: read_marker(tmp_path / "m1.txt") and read_marker(tmp_path / "m2.txt"), 30, "both nodes")
    except AssertionError:
        proc.kill()
        raise AssertionError(proc.communicate()[0]) from None
    return proc


def test_sigint_stops_all_children_cleanly(tmp_path):
    proc = start_launch(tmp_path, two_markers(tmp_path))
    pids = [marker_pid(tmp_path / "m1.txt"), marker_pid(tmp_path / "m2.txt")]
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    assert "stop requested" in out and "all processes stopped cleanly" in out
    assert stopped_cleanly(tmp_path / "m1.txt") and stopped_cleanly(tmp_path / "m2.txt")
    assert all(gone(pid) for pid in pids)


def test_children_die_when_the_launcher_is_sigkilled(tmp_path):
    proc = start_launch(tmp_path, two_markers(tmp_path))
    pids = [marker_pid(tmp_path / "m1.txt"), marker_pid(tmp_path / "m2.txt")]
    assert all(os.getpgid(pid) == pid for pid in pids)  # each in its own process group
    proc.kill()
    proc.communicate(timeout=10)
    wait_for(lambda: all(gone(pid) for pid in pids), 15, "the children to die (PR_SET_PDEATHSIG)")
    # SIGTERM from PDEATHSIG is a clean stop: the nodes were destroyed in order
    assert stopped_cleanly(tmp_path / "m1.txt") and stopped_cleanly(tmp_path / "m2.txt")


@pytest.mark.slow
def test_child_ignoring_sigint_gets_sigterm(tmp_path):
    proc = start_launch(tmp_path, two_markers(tmp_path, "Stubborn"), "--stop-timeout", "1")
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert "'second' still running: sending SIGTERM" in out
    assert proc.returncode == 0, out  # SIGTERM is handled: a clean stop
    assert stopped_cleanly(tmp_path / "m2.txt")


@pytest.mark.slow
def test_child_ignoring_sigint_and_sigterm_is_killed(tmp_path):
    proc = start_launch(tmp_path, two_markers(tmp_path, "Stubborn", ", ignore_term: true"), "--stop-timeout", "1")
    pid = marker_pid(tmp_path / "m2.txt")
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert "sending SIGKILL" in out and "process 'second' was killed by SIGKILL while stopping" in out
    assert proc.returncode == 1, out
    assert stopped_cleanly(tmp_path / "m1.txt") and gone(pid)
