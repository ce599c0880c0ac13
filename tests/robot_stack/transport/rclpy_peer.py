"""Helper process for test_interop_rclpy.py: a PLAIN rclpy node (Fast DDS), no robot_stack imports.

Publishes a fixed JointState, Image (640x480 rgb8, random pixels), WrenchStamped (sensor-data QoS)
and String on `<prefix>/ros_to_rs/<kind>` at 10 Hz, and subscribes to `<prefix>/rs_to_ros/<kind>`.
Reports on stdout, one JSON object per line:
    {"event": "ready"}
    {"event": "sent", "kind": K, "summary": {...}}       once per kind, what it publishes
    {"event": "received", "kind": K, "summary": {...}}   the first message received per kind
    {"event": "graph", "topics": {name: [types]}}         its view of `<prefix>/rs_to_ros/*` when it changes
Exits when stdin closes, or after --timeout seconds.
"""

from __future__ import annotations

import argparse
import array
import hashlib
import json
import os
import random
import sys
import threading
import time

import rclpy
from geometry_msgs.msg import WrenchStamped
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String

KINDS = {"joint_state": JointState, "image": Image, "wrench": WrenchStamped, "string": String}


def qos_for(kind: str):
    return qos_profile_sensor_data if kind == "wrench" else 10


def summary(kind: str, msg) -> dict:
    """The fields the test compares; test_interop_rclpy.summary() builds the same dict."""
    if kind == "string":
        return {"data": msg.data}
    out = {"stamp": [int(msg.header.stamp.sec), int(msg.header.stamp.nanosec)], "frame_id": msg.header.frame_id}
    if kind == "joint_state":
        out.update(name=list(msg.name), position=[float(v) for v in msg.position],
                   velocity=[float(v) for v in msg.velocity], effort=[float(v) for v in msg.effort])
    elif kind == "image":
        data = bytes(msg.data)
        out.update(height=int(msg.height), width=int(msg.width), encoding=msg.encoding,
                   is_bigendian=int(msg.is_bigendian), step=int(msg.step),
                   data_len=len(data), data_sha256=hashlib.sha256(data).hexdigest())
    elif kind == "wrench":
        f, t = msg.wrench.force, msg.wrench.torque
        out.update(force=[float(f.x), float(f.y), float(f.z)], torque=[float(t.x), float(t.y), float(t.z)])
    return out


def build(kind: str, rng: random.Random):
    msg = KINDS[kind]()
    if kind == "string":
        msg.data = "from rclpy: odd length!"
        return msg
    msg.header.stamp.sec = rng.randint(1, 2**31 - 1)
    msg.header.stamp.nanosec = rng.randint(0, 999_999_999)
    msg.header.frame_id = f"ros_{kind}_frame"
    if kind == "joint_state":
        msg.name = [f"ros_joint_{i}" for i in range(7)]
        msg.position = [rng.uniform(-3, 3) for _ in range(7)]
        msg.velocity = [rng.uniform(-1, 1) for _ in range(7)]
        msg.effort = [rng.uniform(-10, 10) for _ in range(7)]
    elif kind == "image":
        msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step = 480, 640, "rgb8", 0, 640 * 3
        msg.data = array.array("B", os.urandom(480 * 640 * 3))
    elif kind == "wrench":
        for vec in (msg.wrench.force, msg.wrench.torque):
            vec.x, vec.y, vec.z = (rng.uniform(-50, 50) for _ in range(3))
    return msg


def emit(**event) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


class Peer:
    def __init__(self, node, rng: random.Random, prefix: str):
        self.node, self.prefix = node, prefix
        self.received: set[str] = set()
        self.graph: dict = {}
        self.outgoing = {}
        for kind, cls in KINDS.items():
            msg = build(kind, rng)
            self.outgoing[kind] = (node.create_publisher(cls, f"{prefix}/ros_to_rs/{kind}", qos_for(kind)), msg)
            node.create_subscription(cls, f"{prefix}/rs_to_ros/{kind}", self._on_message(kind), qos_for(kind))
            emit(event="sent", kind=kind, summary=summary(kind, msg))
        node.create_timer(0.1, self.tick)

    def _on_message(self, kind: str):
        def callback(msg) -> None:
            if kind not in self.received:
                self.received.add(kind)
                emit(event="received", kind=kind, summary=summary(kind, msg))
        return callback

    def tick(self) -> None:
        for pub, msg in self.outgoing.values():
            pub.publish(msg)
        ours = f"{self.prefix}/rs_to_ros/"
        graph = {n: sorted(t) for n, t in self.node.get_topic_names_and_types() if n.startswith(ours)}
        if graph != self.graph:
            self.graph = graph
            emit(event="graph", topics=graph)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prefix", default="", help="topic namespace, e.g. /run123")
    args = parser.parse_args()
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    rclpy.init()
    node = rclpy.create_node("rclpy_interop_peer")
    Peer(node, random.Random(args.seed), args.prefix.rstrip("/"))
    emit(event="ready")
    end = time.monotonic() + args.timeout
    while not stop.is_set() and time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
