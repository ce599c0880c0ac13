"""`robot-stack dataset ...` (and `python -m data ...`): inspect and manage episode stores.

Registered through the `robot_stack.cli` entry-point group. `dataset info PATH` prints the
episodes, their durations and each stream's count, rate, largest gap and drops.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    dataset = subparsers.add_parser("dataset", help="inspect, export, import, recover, replay and view datasets")
    sub = dataset.add_subparsers(dest="dataset_command", required=True, metavar="COMMAND")
    info = sub.add_parser("info", help="episodes, duration, streams, rates, gaps")
    info.add_argument("path", help="dataset directory")
    info.set_defaults(func=info_command)
    from data.record_cli import register_record, register_recover
    from data.tools_cli import register_tools

    register_tools(sub)
    register_recover(sub)
    register_record(subparsers)


def info_command(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from data.store import EpisodeStore

    store = EpisodeStore(args.path)
    meta = store.info
    console = Console()
    console.print(f"[bold]{args.path}[/]: {len(store)} episodes ({meta['format']} v{meta['version']}), "
                  f"{len(store.open_episodes())} open (run `robot-stack dataset recover` on them)")
    table = Table("episode", "task", "duration s", "success", "stream", "count", "rate Hz", "max gap s", "dropped")
    for ep in store:
        stats = ep.meta.get("stream_stats", {})
        for i, (key, s) in enumerate(stats.items()):
            head = (str(ep.index), str(ep.meta.get("task", "")), f"{ep.duration_s:.2f}",
                    str(ep.meta.get("success"))) if i == 0 else ("", "", "", "")
            table.add_row(*head, key, str(s["count"]), f"{s['rate_hz']:.1f}", f"{s['max_gap_s']:.3f}",
                          str(s.get("dropped", "")))
    console.print(table)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
