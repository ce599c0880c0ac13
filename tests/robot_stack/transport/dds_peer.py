"""Helper process for test_dds.py: a robot_stack node on the `dds` transport in its own process.

    python dds_peer.py --echo IN OUT TYPE [--echo ...] [--advertise TOPIC TYPE] [--qos sensor_data]
    python dds_peer.py --flood TOPIC --timeout SECONDS

Echoes every message received on IN to OUT, keeps the advertised publishers open, prints `READY`
once its endpoints exist and exits when its stdin closes (or after --timeout seconds).
`--flood` publishes JointStates on TOPIC as fast as it can while subscribed to TOPIC itself, for
--timeout seconds, then prints `DONE <sent> <received>`.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

from robot_stack import messages
from robot_stack.context import Context
from robot_stack.executor import Executor
from robot_stack.node import Node


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--echo", nargs=3, metavar=("IN", "OUT", "TYPE"), action="append", default=[])
    parser.add_argument("--advertise", nargs=2, metavar=("TOPIC", "TYPE"), action="append", default=[])
    parser.add_argument("--qos", default="default")
    parser.add_argument("--flood")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    if args.flood:
        return flood(args.flood, args.timeout)

    context = Context("dds")
    node = Node("dds_peer", context=context, publish_stats=False)
    for src, dst, type_name in args.echo:
        pub = node.create_publisher(type_name, dst, args.qos)
        node.create_subscription(type_name, src, pub.publish, args.qos)
    for topic, type_name in args.advertise:
        node.create_publisher(type_name, topic, args.qos)
    executor = Executor()
    executor.add_node(node)

    def stop_on_eof() -> None:
        sys.stdin.read()
        executor.shutdown()

    threading.Thread(target=stop_on_eof, daemon=True).start()
    print("READY", flush=True)
    executor.spin_for(args.timeout)
    node.destroy_node()
    context.shutdown()
    return 0


def flood(topic: str, seconds: float) -> int:
    """Local writes into a reader that remote writers feed too (the GIL/listener deadlock case)."""
    context = Context("dds")
    node = Node("dds_flood", context=context, publish_stats=False)
    sub = node.create_subscription("sensor_msgs/msg/JointState", topic, lambda m: None)
    pub = node.create_publisher("sensor_msgs/msg/JointState", topic)
    msg = messages.make("sensor_msgs/msg/JointState", name=[f"j{i}" for i in range(7)], position=list(range(7)))
    print("READY", flush=True)
    sent, start = 0, time.monotonic()
    # at least `seconds`, and on until the other process's messages arrived too (a loaded machine can
    # start the two processes seconds apart), at most 5x `seconds`
    while (elapsed := time.monotonic() - start) < seconds or (sub.received <= sent and elapsed < 5 * seconds):
        pub.publish(msg)
        sent += 1
    print(f"DONE {sent} {sub.received}", flush=True)
    context.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
