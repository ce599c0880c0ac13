import os
import threading
from contextlib import contextmanager

import pytest

import robot_stack as rs
from robot_stack.cli.main import main

from .conftest import require_transport, run_cli, table_row, unique_topic

INPROC = ["--transport", "inproc"]


@contextmanager
def spinning_node(name: str, namespace: str, rate: float):
    """An in-process node with a timer at `rate`, spun in a thread (heartbeats on the inproc bus)."""
    with rs.Context("inproc") as ctx:
        node = rs.Node(name, namespace=namespace, context=ctx)
        node.create_timer(1.0 / rate, lambda: None, name="control")
        executor = rs.Executor()
        executor.add_node(node)
        thread = threading.Thread(target=executor.spin, daemon=True)
        thread.start()
        try:
            yield node
        finally:
            executor.shutdown()
            thread.join()
            node.destroy_node()


def test_node_list_inproc(capsys):
    ns = unique_topic("ns").strip("/")
    with spinning_node("arm", ns, 50.0):
        assert main(["node", "list", *INPROC]) == 0
        cells = table_row(capsys.readouterr().out, f"/{ns}/arm")
        assert cells[2:] == [str(os.getpid()), cells[3], "inproc"]
        assert main(["node", "list", "--names", *INPROC]) == 0
        assert f"/{ns}/arm" in capsys.readouterr().out.splitlines()


def test_node_stats_inproc(capsys):
    ns = unique_topic("ns").strip("/")
    with spinning_node("arm", ns, 50.0):
        assert main(["node", "stats", "arm", *INPROC]) == 0
        out = capsys.readouterr().out
    cells = table_row(out, f"/{ns}/arm")
    assert cells[1] == "control" and cells[2] == "50"
    assert int(cells[3]) > 10  # ticks
    assert all(c.isdigit() for c in cells[4:])  # overruns, lateness/jitter/callback in µs, dropped


def test_node_stats_unknown_node_exits_2(capsys):
    ns = unique_topic("ns").strip("/")
    with spinning_node("gripper", ns, 20.0):
        assert main(["node", "stats", "griper", *INPROC]) == 2
    err = capsys.readouterr().err
    assert "node 'griper' sent no heartbeat" in err and f"/{ns}/gripper" in err


@pytest.mark.slow
def test_node_list_and_stats_across_processes_dds(talker):
    require_transport("dds")
    proc = talker("dds", unique_topic(), 100.0)
    listing = run_cli("node", "list", "--wait", "2.5")
    assert listing.returncode == 0, listing.stderr
    cells = table_row(listing.stdout, "/cli_test/talker")
    assert cells[2] == str(proc.pid) and cells[4] == "dds"

    stats = run_cli("node", "stats", "/cli_test/talker", "--wait", "2.5")
    assert stats.returncode == 0, stats.stderr
    cells = table_row(stats.stdout, "/cli_test/talker")
    assert cells[1] == "publish" and cells[2] == "100" and int(cells[3]) > 50
