"""`robot-stack dataset replay PATH --episode N`: republish an episode on its original topics with its timing.

Every stream's messages (video streams as sensor_msgs/Image rebuilt from the decoded frames) are
merged by capture stamp and published on the original topic and type at the original spacing,
scaled by `rate` (2.0 = twice as fast). By default each message's `header.stamp` is moved to the
replay clock (original offset from the episode start + the replay start time) so live consumers
(a robot node treats a command stamp as the time it is due) see fresh data; `keep_stamps=True`
publishes the recorded stamps unchanged. Works against the sim or a real robot: whatever
subscribes to the topics.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterator
from typing import Any

from data.store import EpisodeReader, StoreError
from robot_stack.clock import Time


def _timeline(ep: EpisodeReader, keys: list[str]) -> Iterator[tuple[int, str, Any]]:
    """(stamp_ns, key, message) of the chosen streams, merged in stamp order (lazily)."""
    def stream(key: str) -> Iterator[tuple[int, str, Any]]:
        for stamp, msg in ep.messages(key):
            yield stamp, key, msg

    return heapq.merge(*(stream(k) for k in keys), key=lambda item: item[0])


def replay(ep: EpisodeReader, node: Any, *, rate: float = 1.0, keep_stamps: bool = False,
           keys: list[str] | None = None, on_message: Callable[[int, str], None] | None = None,
           should_stop: Callable[[], bool] = lambda: False) -> dict[str, int]:
    """Publish the episode through `node`'s publishers; returns messages published per stream."""
    if rate <= 0:
        raise StoreError(f"replay rate must be > 0, got {rate}")
    keys = list(ep.streams) if keys is None else keys
    unknown = [k for k in keys if k not in ep.streams]
    if unknown:
        raise StoreError(f"episode {ep.index}: no streams {unknown}; streams: {', '.join(ep.streams)}")
    pubs = {k: node.create_publisher(ep.streams[k].type, ep.streams[k].topic, 10) for k in keys}
    counts = dict.fromkeys(keys, 0)
    stats = ep.meta["stream_stats"]
    firsts = [stats[k]["first_ns"] for k in keys if stats[k]["first_ns"] is not None]
    if not firsts:
        return counts
    t0, wall0 = min(firsts), time.perf_counter()
    clock0 = node.get_clock().now().nanoseconds
    for stamp, key, msg in _timeline(ep, keys):
        if should_stop():
            break
        delay = wall0 + (stamp - t0) / 1e9 / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        if not keep_stamps and hasattr(msg, "header"):
            msg.header.stamp = Time(clock0 + int((stamp - t0) / rate)).to_msg()
        pubs[key].publish(msg)
        counts[key] += 1
        if on_message is not None:
            on_message(stamp - t0, key)
    return counts
