"""`robot-stack launch FILE [--duration S]`: run a launch file's processes until Ctrl-C."""

from __future__ import annotations

import argparse
from pathlib import Path

from robot_stack.launch.config import bundled_launch_files, load_launch_file


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "launch",
        help="start the processes and nodes of a launch file, watch them, stop them with Ctrl-C",
        description="Start one OS process per entry of a launch file, stream their output, stop them all "
        "when one exits, on Ctrl-C/SIGTERM or after --duration. Bundled launch files: "
        + (", ".join(bundled_launch_files()) or "none"),
    )
    p.add_argument("file", help="launch file (YAML), or the name of a bundled one")
    p.add_argument("--duration", type=float, metavar="S", help="stop everything cleanly after S seconds")
    p.add_argument("--stop-timeout", type=float, default=5.0, metavar="S",
                   help="how long a process gets to stop after SIGINT before SIGTERM/SIGKILL (default 5)")
    p.add_argument("--stats-dir", type=Path, metavar="DIR",
                   help="each process writes its timer statistics to DIR/<process>.json when it stops")
    p.add_argument("--check", action="store_true", help="validate the file (imports included) and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_launch_file(args.file)
    if args.check:
        nodes = sum(len(p.nodes) for p in config.processes)
        print(f"{config.source}: OK ({len(config.processes)} processes, {nodes} nodes)")
        return 0
    if args.stats_dir is not None:
        args.stats_dir.mkdir(parents=True, exist_ok=True)
    from robot_stack.launch.supervisor import Supervisor

    supervisor = Supervisor(
        config, stop_timeout=args.stop_timeout, stats_dir=args.stats_dir, log_level=args.log_level
    )
    return supervisor.run(args.duration)
