"""`robot-stack topic hz`: message rates of one or more topics, from receive times and header stamps.

`RateMeter` is the reusable part: feed it `tick(receive_time, stamp)` from any thread and read
`report()` whenever you like.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
from rich.live import Live
from rich.table import Table
from rich.text import Text

from robot_stack.cli import common
from robot_stack.clock import NS


@dataclass(frozen=True)
class RateReport:
    count: int  # messages received since the start
    window: int  # messages in the statistics window
    rate_hz: float | None  # 1 / mean receive period over the window
    min_period: float | None  # [s]
    max_period: float | None
    std_period: float | None
    stamp_rate_hz: float | None  # from header.stamp, when the type has one and stamps are set


class RateMeter:
    """Receive periods (and header stamp periods) over the last `window` messages. Thread-safe."""

    def __init__(self, window: int = 10000):
        self._times: deque[float] = deque(maxlen=window)
        self._stamps: deque[float] = deque(maxlen=window)
        self._lock = threading.Lock()
        self.count = 0

    def tick(self, receive_time: float | None = None, stamp: float | None = None) -> None:
        t = time.monotonic() if receive_time is None else receive_time
        with self._lock:
            self._times.append(t)
            if stamp:  # an unset (zero) stamp says nothing about the rate
                self._stamps.append(stamp)
            self.count += 1

    def report(self) -> RateReport:
        with self._lock:
            times = np.fromiter(self._times, float, len(self._times))
            stamps = np.fromiter(self._stamps, float, len(self._stamps))
            count = self.count
        if times.size < 2:
            return RateReport(count, int(times.size), None, None, None, None, None)
        periods = np.diff(times)
        mean = float(periods.mean())
        stamp_rate = None
        if stamps.size >= 2 and stamps[-1] > stamps[0]:
            stamp_rate = (stamps.size - 1) / float(stamps[-1] - stamps[0])
        return RateReport(
            count, int(times.size), 1.0 / mean if mean > 0 else None,
            float(periods.min()), float(periods.max()), float(periods.std()), stamp_rate,
        )


def header_stamp(msg: Any) -> float | None:
    """`header.stamp` in seconds, or None when the message has no std_msgs/Header."""
    header = getattr(msg, "header", None)
    stamp = getattr(header, "stamp", None)
    if stamp is None:
        return None
    return (int(stamp.sec) * NS + int(stamp.nanosec)) / NS


def register(topic_sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = topic_sub.add_parser(
        "hz", parents=[parent], help="message rate of one or more topics",
        description="Average rate, min/max period and its std dev per topic, from receive times "
        "(and header stamps where the type has them), refreshed about once a second.",
    )
    p.add_argument("topics", nargs="+", metavar="TOPIC")
    p.add_argument("--window", "-w", type=int, default=10000, help="messages in the statistics window")
    p.add_argument("--duration", type=float, default=None, help="stop after S seconds and print a summary")
    p.add_argument("--wait", type=float, default=5.0, help="seconds to wait for the topics to appear")
    common.add_qos_arg(p, "sensor_data")
    p.set_defaults(func=run_hz)


def _fmt(value: float | None, scale: float = 1.0, spec: str = ".3f") -> str:
    return "-" if value is None else format(value * scale, spec)


RATE_COLUMNS = ("topic", "msgs", "rate [Hz]", "stamp rate [Hz]", "min [ms]", "max [ms]", "std dev [ms]")


def rate_table(meters: dict[str, RateMeter], title: str) -> Table:
    rows = []
    for topic, meter in meters.items():
        r = meter.report()
        rows.append((
            topic, str(r.count), _fmt(r.rate_hz), _fmt(r.stamp_rate_hz),
            _fmt(r.min_period, 1e3), _fmt(r.max_period, 1e3), _fmt(r.std_period, 1e3),
        ))
    table = Table(title=title, title_justify="left")
    for i, col in enumerate(RATE_COLUMNS):
        # numbers never fold; on a narrow terminal headers and long topic names wrap instead
        width = max((len(row[i]) for row in rows), default=1) if i else None
        table.add_column(Text(col), justify="left" if i == 0 else "right", min_width=width, overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    return table


def _subscribe(ctx, topics: dict[str, str], args: argparse.Namespace) -> dict[str, RateMeter]:
    qos = common.qos_profile(args.qos, depth=100)
    meters: dict[str, RateMeter] = {}
    for topic, type_name in topics.items():
        meter = meters[topic] = RateMeter(args.window)

        def on_msg(msg: Any, meter: RateMeter = meter) -> None:
            meter.tick(time.monotonic(), header_stamp(msg))

        common.subscribe(ctx, topic, type_name, qos, on_msg)
    return meters


def _watch(meters: dict[str, RateMeter], duration: float | None) -> None:
    """Refresh the table about once a second until the duration is over (or Ctrl-C)."""
    out = common.console()
    start = time.monotonic()
    end = start + duration if duration is not None else float("inf")
    title = lambda: f"topic hz ({time.monotonic() - start:.0f} s)"
    live = Live(rate_table(meters, title()), console=out, auto_refresh=False) if out.is_terminal else None
    try:
        if live:
            live.start()
        while (now := time.monotonic()) < end:
            time.sleep(min(1.0, end - now))
            if live:
                live.update(rate_table(meters, title()), refresh=True)
            elif time.monotonic() < end:
                out.print(rate_table(meters, title()))
    except KeyboardInterrupt:
        pass
    finally:
        if live:
            live.update("", refresh=True)
            live.stop()
        out.print(rate_table(meters, f"summary over {time.monotonic() - start:.1f} s"))


def run_hz(args: argparse.Namespace) -> int:
    topics = list(dict.fromkeys(args.topics))
    with common.make_context(args) as ctx:
        types = common.discover_types(ctx, topics, args.wait)
        meters = _subscribe(ctx, types, args)
        _watch(meters, args.duration)
    silent = [t for t, m in meters.items() if m.count == 0]
    for topic in silent:
        print(f"error: no messages received on {topic}", file=sys.stderr)
    return 1 if silent else 0
