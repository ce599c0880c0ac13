"""`robot-stack topic list | echo | hz | pub`: look at and poke the topic graph (like `ros2 topic`)."""

from __future__ import annotations

import argparse
import queue
import time
from typing import Any

import yaml
from rosbags.typesys.base import Nodetype

from robot_stack import messages
from robot_stack.cli import common, hz
from robot_stack.clock import NS
from robot_stack.errors import RobotStackError

TIME_TYPE = "builtin_interfaces/msg/Time"
HEADER_TYPE = "std_msgs/msg/Header"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("topic", help="list, echo, measure and publish topics")
    sub = parser.add_subparsers(dest="topic_command", required=True, metavar="SUBCOMMAND")
    parent = common.transport_parent()

    p = sub.add_parser("list", parents=[parent], help="topics on the graph")
    p.add_argument("-t", "--show-types", action="store_true", help="show each topic's type")
    p.add_argument("-v", "--verbose", action="store_true", help="show types and publisher/subscriber counts")
    p.add_argument("--wait", type=float, default=1.0, help="seconds to wait for discovery (default 1)")
    p.set_defaults(func=run_list)

    p = sub.add_parser("echo", parents=[parent], help="print messages as YAML")
    p.add_argument("topic", metavar="TOPIC")
    p.add_argument("--type", default=None, help="message type (default: discovered from the graph)")
    p.add_argument("--once", action="store_true", help="print one message and exit")
    p.add_argument("--field", default=None, help="print only this (dotted) field, e.g. header.stamp")
    p.add_argument("--csv", action="store_true", help="one comma-separated line per message")
    p.add_argument("--no-arr", action="store_true", help="do not print array contents, only their length")
    p.add_argument("--truncate-length", type=int, default=128, help="cut arrays/strings longer than this")
    p.add_argument("--full-length", action="store_true", help="never cut arrays or strings")
    p.add_argument("--wait", type=float, default=5.0, help="seconds to wait for the topic to appear")
    common.add_qos_arg(p, "sensor_data")
    p.set_defaults(func=run_echo)

    hz.register(sub, parent)

    p = sub.add_parser(
        "pub", parents=[parent], help="publish a message given as YAML",
        description="Publish TYPE on TOPIC. `now` in a builtin_interfaces/Time field is the current time, "
        "`auto` in a std_msgs/Header field a header stamped now; a top-level header.stamp left out "
        "is filled with the publish time.",
    )
    p.add_argument("topic", metavar="TOPIC")
    p.add_argument("type", metavar="TYPE")
    p.add_argument("values", metavar="YAML", nargs="?", default="{}", help="field values, e.g. '{data: 1}'")
    p.add_argument("-r", "--rate", type=float, default=None, help="publish repeatedly at this rate [Hz]")
    p.add_argument("-1", "--once", action="store_true", help="publish one message and exit (the default)")
    p.add_argument("-t", "--times", type=int, default=None, help="publish N messages (at --rate, default 1 Hz)")
    p.add_argument("-w", "--wait-matching-subscriptions", type=int, default=1, metavar="N",
                   help="wait for N matching subscriptions before publishing (default 1)")
    p.add_argument("--max-wait", type=float, default=3.0, help="publish anyway after this many seconds")
    p.add_argument("--keep-alive", type=float, default=0.5, help="seconds to linger after the last message")
    common.add_qos_arg(p, "default")
    p.set_defaults(func=run_pub)


# --- list ------------------------------------------------------------------------------------
def run_list(args: argparse.Namespace) -> int:
    with common.make_context(args) as ctx:
        if common.needs_discovery(ctx) and args.wait > 0:
            with common.progress(f"discovering topics ({ctx.transport_name})"):
                time.sleep(args.wait)
        infos = sorted(ctx.transport.topics(), key=lambda t: t.name)
    for info in infos:
        line = info.name
        if args.show_types or args.verbose:
            line += f" [{messages.normalize_type_name(info.type_name)}]"
        if args.verbose:
            line += f" publishers: {info.publishers} subscribers: {info.subscribers}"
        print(line, flush=True)
    return 0


# --- echo ------------------------------------------------------------------------------------
def run_echo(args: argparse.Namespace) -> int:
    type_name = messages.resolve_type(args.type) if args.type else None
    limit = None if args.full_length else args.truncate_length
    with common.make_context(args) as ctx:
        if type_name is None:
            type_name = common.discover_types(ctx, [args.topic], args.wait)[args.topic]
        inbox: queue.Queue = queue.Queue(maxsize=1000)

        def on_msg(msg: Any) -> None:
            try:
                inbox.put_nowait(msg)
            except queue.Full:  # the terminal cannot keep up: drop, like a keep-last queue
                pass

        common.subscribe(ctx, args.topic, type_name, common.qos_profile(args.qos), on_msg)
        try:
            while True:
                msg = inbox.get()
                print(format_message(messages.to_dict(msg), args.field, args.csv, args.no_arr, limit), flush=True)
                if args.once:
                    return 0
        except KeyboardInterrupt:
            return 0
        except BrokenPipeError:
            return common.stdout_closed()


def select_field(data: Any, path: str | None) -> Any:
    for part in path.split(".") if path else ():
        if not isinstance(data, dict) or part not in data:
            known = ", ".join(data) if isinstance(data, dict) else "none"
            raise RobotStackError(f"no field '{part}' in '{path}' (fields here: {known})")
        data = data[part]
    return data


def _shorten(data: Any, no_arr: bool, limit: int | None) -> Any:
    if isinstance(data, dict):
        return {k: _shorten(v, no_arr, limit) for k, v in data.items()}
    if isinstance(data, list):
        if no_arr:
            return f"<sequence, length {len(data)}>"
        items = [_shorten(v, no_arr, limit) for v in data[:limit]]
        return items + ["..."] if limit is not None and len(data) > limit else items
    if isinstance(data, str) and limit is not None and len(data) > limit:
        return data[:limit] + "..."
    return data


def _flatten(data: Any) -> list[str]:
    if isinstance(data, dict):
        return [x for v in data.values() for x in _flatten(v)]
    if isinstance(data, list):
        return [x for v in data for x in _flatten(v)]
    return [str(data)]


def format_message(data: Any, field: str | None, csv: bool, no_arr: bool, limit: int | None) -> str:
    data = _shorten(select_field(data, field), no_arr, None if csv else limit)
    if csv:
        return ",".join(_flatten(data))
    if not isinstance(data, (dict, list)):
        return f"{data}\n---"
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True) + "---"


# --- pub -------------------------------------------------------------------------------------
def parse_values(text: str) -> dict:
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RobotStackError(f"invalid YAML for the message values: {exc}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise RobotStackError(f"message values must be a YAML mapping like '{{field: value}}', got {text!r}")
    return values


def expand_keywords(type_name: str, values: dict, now: dict) -> dict:
    """Replace `now` (Time fields) and `auto` (Header fields) with the current time, recursively."""
    out = dict(values)
    for fname, (kind, detail) in messages.fields(type_name):
        if fname in out:
            out[fname] = _expand_value(kind, detail, out[fname], now)
    return out


def _expand_value(kind: Nodetype, detail: Any, value: Any, now: dict) -> Any:
    if kind == Nodetype.NAME:
        if detail == TIME_TYPE and value == "now":
            return dict(now)
        if detail == HEADER_TYPE and value == "auto":
            return {"stamp": dict(now), "frame_id": ""}
        return expand_keywords(detail, value, now) if isinstance(value, dict) else value
    if kind in (Nodetype.ARRAY, Nodetype.SEQUENCE) and isinstance(value, list):
        (sub_kind, sub_detail), _ = detail
        if sub_kind == Nodetype.NAME:
            return [_expand_value(sub_kind, sub_detail, v, now) for v in value]
    return value


def build_message(type_name: str, values: dict, now: dict) -> Any:
    values = dict(values)
    if dict(messages.fields(type_name)).get("header") == (Nodetype.NAME, HEADER_TYPE):
        header = values.get("header", {})
        if isinstance(header, dict) and "stamp" not in header:
            values["header"] = {**header, "stamp": "now"}
    return messages.from_dict(type_name, expand_keywords(type_name, values, now))


def _publish_plan(args: argparse.Namespace) -> tuple[int | None, float]:
    """(messages to send or None for endless, period)."""
    if args.times is not None and args.times < 1:
        raise RobotStackError(f"--times must be at least 1, got {args.times}")
    if args.rate is not None and args.rate <= 0:
        raise RobotStackError(f"--rate must be positive, got {args.rate}")
    period = 1.0 / args.rate if args.rate else 1.0
    if args.once:
        return 1, period
    if args.times is not None:
        return args.times, period
    return (None if args.rate else 1), period


def run_pub(args: argparse.Namespace) -> int:
    type_name = messages.resolve_type(args.type)
    values = parse_values(args.values)
    count, period = _publish_plan(args)
    build_message(type_name, values, {"sec": 0, "nanosec": 0})  # bad fields fail before any networking
    with common.make_context(args) as ctx:
        pub = ctx.transport.create_publisher(args.topic, type_name, common.qos_profile(args.qos))
        want = args.wait_matching_subscriptions if count is not None else 0  # endless: start right away
        if want > 0 and common.needs_discovery(ctx):
            with common.progress(f"waiting for {want} subscriber(s) on {args.topic}"):
                common.wait_until(lambda: pub.matched_subscriptions() >= want, args.max_wait)
        print(f"publishing {type_name} on {args.topic} (subscribers: {pub.matched_subscriptions()})", flush=True)
        sent = _publish_loop(ctx, pub, type_name, values, count, period)
        print(f"published {sent} message(s)", flush=True)
        if common.needs_discovery(ctx):
            time.sleep(args.keep_alive)  # let reliable delivery finish before the writer goes away
        pub.close()
    return 0


def _now(ctx) -> dict:
    sec, nanosec = divmod(ctx.clock.now().nanoseconds, NS)
    return {"sec": sec, "nanosec": nanosec}


def _publish_loop(ctx, pub, type_name: str, values: dict, count: int | None, period: float) -> int:
    sent = 0
    next_time = time.monotonic()
    try:
        while count is None or sent < count:
            delay = next_time - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pub.publish(build_message(type_name, values, _now(ctx)))
            sent += 1
            next_time += period
    except KeyboardInterrupt:
        pass
    return sent
