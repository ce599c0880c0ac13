"""`robot-stack node list | stats`: nodes and their timer statistics, from NodeStats heartbeats."""

from __future__ import annotations

import argparse
import difflib
import threading
from typing import Any

from rich.table import Table
from rich.text import Text

from robot_stack.cli import common
from robot_stack.errors import RobotStackError
from robot_stack.qos import QoSProfile
from robot_stack.stats import STATS_PERIOD, STATS_TOPIC, STATS_TYPE

US = 1e6


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("node", help="nodes on the graph and their timer statistics")
    sub = parser.add_subparsers(dest="node_command", required=True, metavar="SUBCOMMAND")
    parent = common.transport_parent()
    parent.add_argument("--wait", type=float, default=1.5, help=f"seconds to collect {STATS_TOPIC} heartbeats")

    p = sub.add_parser("list", parents=[parent], help="fully-qualified node names, process, pid, transport")
    p.add_argument("--names", action="store_true", help="only the names, one a line")
    p.set_defaults(func=run_list)

    p = sub.add_parser("stats", parents=[parent], help="timer rates, lateness, jitter, overruns per node")
    p.add_argument("node", nargs="?", default=None, metavar="NODE", help="one node (name or /namespace/name)")
    p.set_defaults(func=run_stats)


def full_name(msg: Any) -> str:
    namespace = msg.namespace.rstrip("/")
    return f"{namespace}/{msg.name}"


def collect(args: argparse.Namespace) -> list[Any]:
    """The latest heartbeat of every node heard within `--wait` seconds, sorted by name."""
    latest: dict[tuple, Any] = {}
    lock = threading.Lock()

    def on_msg(msg: Any) -> None:
        with lock:
            latest[(full_name(msg), msg.hostname, msg.pid)] = msg

    with common.make_context(args) as ctx:
        ctx.transport.create_subscription(STATS_TOPIC, STATS_TYPE, QoSProfile(depth=100), on_msg)
        wait = args.wait if common.needs_discovery(ctx) else max(args.wait, STATS_PERIOD * 1.2)
        with common.progress(f"collecting node heartbeats for {wait:g} s ({ctx.transport_name})"):
            common.wait_until(lambda: False, wait)
    with lock:
        return [latest[k] for k in sorted(latest)]


def run_list(args: argparse.Namespace) -> int:
    nodes = collect(args)
    if args.names:
        print("\n".join(full_name(n) for n in nodes), flush=True)
        return 0
    table = Table(title=f"{len(nodes)} node(s)", title_justify="left")
    for col in ("node", "process", "pid", "host", "transport"):
        table.add_column(col, no_wrap=True, justify="right" if col == "pid" else "left")
    for n in nodes:
        table.add_row(Text(full_name(n)), Text(n.process), str(n.pid), Text(n.hostname), Text(n.transport))
    common.console().print(table)
    return 0


def _select(nodes: list[Any], wanted: str | None) -> list[Any]:
    if wanted is None:
        return nodes
    chosen = [n for n in nodes if wanted in (full_name(n), n.name, full_name(n).lstrip("/"))]
    if not chosen:
        names = [full_name(n) for n in nodes]
        close = difflib.get_close_matches(wanted, names, n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; nodes seen: {', '.join(names) or 'none'}"
        raise RobotStackError(f"node '{wanted}' sent no heartbeat on {STATS_TOPIC}{hint}")
    return chosen


def _us(seconds: float) -> str:
    return f"{seconds * US:.0f}"


def stats_table(nodes: list[Any]) -> Table:
    table = Table(title="timer statistics (times in µs)", title_justify="left")
    table.add_column("node", no_wrap=True)
    table.add_column("timer", no_wrap=True)
    cols = ("target Hz", "ticks", "overruns", "late p50", "late p99", "late max",
            "jitter p50", "jitter p99", "jitter max", "cb p99", "dropped")
    for col in cols:
        table.add_column(col, justify="right", no_wrap=True)
    for n in nodes:
        dropped = str(n.dropped_messages)
        if not n.timers:
            table.add_row(Text(full_name(n)), "-", *["-"] * (len(cols) - 1), dropped)
        for t in n.timers:
            table.add_row(
                Text(full_name(n)), Text(t.name), f"{t.target_hz:g}", str(t.ticks), str(t.overruns),
                _us(t.lateness_p50), _us(t.lateness_p99), _us(t.lateness_max),
                _us(t.jitter_p50), _us(t.jitter_p99), _us(t.jitter_max), _us(t.callback_p99), dropped,
            )
    return table


def run_stats(args: argparse.Namespace) -> int:
    nodes = _select(collect(args), args.node)
    if not nodes:
        common.err_console().print(f"no node heartbeats on {STATS_TOPIC} within {args.wait:g} s")
        return 1
    common.console().print(stats_table(nodes))
    return 0

