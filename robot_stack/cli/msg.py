"""`robot-stack msg show | list`: message definitions from the typestore (like `ros2 interface`)."""

from __future__ import annotations

import argparse
import difflib

from robot_stack import messages
from robot_stack.cli import common
from robot_stack.errors import RobotStackError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("msg", help="show and list message types")
    sub = parser.add_subparsers(dest="msg_command", required=True, metavar="SUBCOMMAND")
    parent = common.transport_parent()  # accepted for uniformity; types need no transport

    p = sub.add_parser("show", parents=[parent], help="the full definition of a type (with nested types)")
    p.add_argument("type", metavar="TYPE", help="e.g. sensor_msgs/msg/JointState or sensor_msgs/JointState")
    p.set_defaults(func=run_show)

    p = sub.add_parser("list", parents=[parent], help="known message types")
    p.add_argument("package", nargs="?", default=None, metavar="PKG", help="only this package, e.g. sensor_msgs")
    p.set_defaults(func=run_list)


def run_show(args: argparse.Namespace) -> int:
    print(messages.definition(args.type), flush=True)
    return 0


def known_types(package: str | None = None) -> list[str]:
    names = sorted(messages.typestore().types)
    if package is None:
        return names
    package = package.strip("/").split("/")[0]
    selected = [n for n in names if n.split("/")[0] == package]
    if not selected:
        packages = sorted({n.split("/")[0] for n in names})
        close = difflib.get_close_matches(package, packages, n=3, cutoff=0.5)
        hint = f"; closest: {', '.join(close)}" if close else f"; known packages: {', '.join(packages)}"
        raise RobotStackError(f"no message package '{package}'{hint}")
    return selected


def run_list(args: argparse.Namespace) -> int:
    print("\n".join(known_types(args.package)), flush=True)
    return 0
