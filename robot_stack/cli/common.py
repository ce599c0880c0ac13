"""Helpers shared by the graph subcommands: `--transport`, the context, consoles, discovery waits."""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console

from robot_stack import messages
from robot_stack.context import DEFAULT_TRANSPORT_ENV, Context
from robot_stack.errors import RobotStackError
from robot_stack.qos import PRESETS, QoSProfile
from robot_stack.transport import shm

POLL = 0.05


def transport_parent() -> argparse.ArgumentParser:
    """A parent parser giving a subcommand `--transport NAME`."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--transport",
        default=None,
        metavar="NAME",
        help=f"transport backend (default: ${DEFAULT_TRANSPORT_ENV} or dds)",
    )
    return parent


def transport_name(args: argparse.Namespace) -> str:
    return getattr(args, "transport", None) or os.environ.get(DEFAULT_TRANSPORT_ENV, "dds")


def make_context(args: argparse.Namespace) -> Context:
    return Context(transport_name(args))


def console() -> Console:
    """stdout console; when piped, wide enough that tables do not wrap names (COLUMNS overrides)."""
    width = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 200
    return Console(highlight=False, width=width)


def stdout_closed() -> int:
    """Call on BrokenPipeError (`... | head`): silence stdout so the exit flush cannot fail; returns 0."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 0


def err_console() -> Console:
    return Console(stderr=True, highlight=False)


@contextmanager
def progress(message: str) -> Iterator[None]:
    """A spinner on stderr while something long happens (nothing is printed when not a terminal)."""
    with err_console().status(message):
        yield


def needs_discovery(ctx: Context) -> bool:
    """In-process transports know the whole graph at once: no point in waiting for discovery."""
    return ctx.transport_name != "inproc"


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= end:
            return False
        time.sleep(POLL)
    return True


def topic_types(ctx: Context) -> dict[str, str]:
    """Topic name -> canonical type name for everything on the graph right now."""
    return {t.name: messages.normalize_type_name(t.type_name) for t in ctx.transport.topics()}


def discover_types(ctx: Context, topics: list[str], timeout: float) -> dict[str, str]:
    """Wait (up to `timeout`) until every topic is on the graph; an error names the missing ones."""
    found: dict[str, str] = {}

    def all_found() -> bool:
        found.update({t: typ for t, typ in topic_types(ctx).items() if t in topics})
        return all(t in found for t in topics)

    wait = timeout if needs_discovery(ctx) else 0.0
    label = ", ".join(topics)
    with progress(f"waiting for {label} to appear on the graph ({ctx.transport_name})"):
        ok = wait_until(all_found, wait)
    if not ok:
        missing = [t for t in topics if t not in found]
        raise RobotStackError(unknown_topic_message(missing, list(topic_types(ctx)), wait))
    return {t: found[t] for t in topics}


def unknown_topic_message(missing: list[str], known: list[str], waited: float) -> str:
    parts = []
    for topic in missing:
        close = difflib.get_close_matches(topic, known, n=3, cutoff=0.55)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        parts.append(f"{topic}{hint}")
    after = f" after waiting {waited:g} s" if waited else ""
    tail = "" if known else "; no topics are visible at all (is a publisher running on this domain/transport?)"
    return f"topic not found on the graph{after}: {'; '.join(parts)}{tail}"


def add_qos_arg(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--qos",
        default=default,
        choices=sorted(PRESETS),
        help=f"QoS profile (default: {default}; a sensor_data (best effort) subscription matches any publisher)",
    )


def qos_profile(name: str, depth: int | None = None) -> QoSProfile:
    profile = PRESETS[name]
    return profile.with_depth(depth) if depth else profile


def subscribe(ctx: Context, topic: str, type_name: str, qos: QoSProfile, callback: Callable) -> None:
    """Subscribe like a Node does (Images through shared memory when the publisher is local)."""
    shm.create_subscription(ctx.transport, topic, type_name, qos, callback)
