"""`robot-stack` entry point. Each module in SUBCOMMANDS exposes `register(subparsers)`, which adds
its parser(s) and sets `func=handler(args) -> int` on them."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import logging
import os
import sys

from robot_stack.errors import RobotStackError

SUBCOMMANDS = (
    "robot_stack.cli.topic",
    "robot_stack.cli.msg",
    "robot_stack.cli.node",
    "robot_stack.cli.launch",
    "robot_stack.cli.doctor",
    "robot_stack.cli.demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="robot-stack", description="robot-stack: robot learning platform CLI")
    parser.add_argument("--log-level", default="INFO", help="Python logging level (default INFO)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # subcommand not built yet
                continue
            raise
        module.register(sub)
    # Other packages add subcommands through the `robot_stack.cli` entry-point group (robot_stack
    # itself may not import them): e.g. `sim = "sim.__main__"` gives `robot-stack sim run`.
    for entry in importlib.metadata.entry_points(group="robot_stack.cli"):
        importlib.import_module(entry.value).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="[%(levelname)s] [%(name)s] %(message)s")
    return dispatch(args)


def dispatch(args: argparse.Namespace) -> int:
    """Run `args.func(args)` as a command: Ctrl-C -> 130, a RobotStackError -> its message and 2.
    Also what the packages' `python -m <package>` entry points use."""
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `robot-stack ... | head`: the reader left; that is not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except RobotStackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
