"""A robot_stack node on `dds` and a PLAIN rclpy node (Fast DDS) see and talk to each other.

rclpy runs only in a subprocess (rclpy_peer.py), never in the pytest process. Both directions:
JointState, Image (640x480 rgb8, random pixels), WrenchStamped (sensor-data QoS) and an odd-length
String; every compared field is listed in `summary()` (the peer builds the same dict).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from robot_stack import messages
from robot_stack.context import Context
from robot_stack.executor import Executor
from robot_stack.node import Node

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(importlib.util.find_spec("rclpy") is None, reason="rclpy (ROS 2 Jazzy) is not installed"),
]

PEER_SCRIPT = Path(__file__).with_name("rclpy_peer.py")
KINDS = {
    "joint_state": "sensor_msgs/msg/JointState",
    "image": "sensor_msgs/msg/Image",
    "wrench": "geometry_msgs/msg/WrenchStamped",
    "string": "std_msgs/msg/String",
}
TIMEOUT = 30.0
NS = f"/interop_{os.getpid()}"  # parallel runs that draw the same domain stay apart


def qos_for(kind: str) -> str | int:
    return "sensor_data" if kind == "wrench" else 10


def summary(kind: str, msg) -> dict:
    """Same dict as rclpy_peer.summary() for the same message."""
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


def build(kind: str, rng: np.random.Generator):
    if kind == "string":
        return messages.make(KINDS[kind], data="from robot_stack: odd")
    header = {"stamp": {"sec": int(rng.integers(1, 2**31)), "nanosec": int(rng.integers(0, 10**9))},
              "frame_id": f"rs_{kind}_frame"}
    if kind == "joint_state":
        return messages.make(KINDS[kind], header=header, name=[f"rs_joint_{i}" for i in range(7)],
                             position=rng.normal(size=7), velocity=rng.normal(size=7), effort=rng.normal(size=7))
    if kind == "image":
        return messages.make(KINDS[kind], header=header, height=480, width=640, encoding="rgb8", is_bigendian=0,
                             step=640 * 3, data=rng.integers(0, 256, 640 * 480 * 3, dtype=np.uint8))
    wrench = {part: dict(zip("xyz", rng.normal(size=3).tolist(), strict=True)) for part in ("force", "torque")}
    return messages.make(KINDS[kind], header=header, wrench=wrench)


class RclpyPeer:
    """The rclpy_peer.py subprocess and the JSON events it prints."""

    def __init__(self):
        env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", RMW_IMPLEMENTATION="rmw_fastrtps_cpp")
        cmd = [sys.executable, str(PEER_SCRIPT), "--timeout", str(TIMEOUT * 3), "--prefix", NS]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
        self._events: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.sent: dict[str, dict] = {}
        self.received: dict[str, dict] = {}
        self.graph: dict[str, list[str]] = {}

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                self._events.put(json.loads(line))
            except json.JSONDecodeError:
                pass  # rclpy logging or similar noise

    def poll(self) -> None:
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return
            if event["event"] in ("sent", "received"):
                getattr(self, event["event"])[event["kind"]] = event["summary"]
            elif event["event"] == "graph":
                self.graph = event["topics"]

    def sees_our_topics(self) -> bool:
        return all(KINDS[k] in self.graph.get(f"{NS}/rs_to_ros/{k}", []) for k in KINDS)

    def stop(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def test_rclpy_node_and_robot_stack_node_interoperate():
    peer = RclpyPeer()
    ctx = Context("dds", discovery="localhost")
    try:
        node = Node("rs_interop", context=ctx, publish_stats=False)
        ours = {k: build(k, np.random.default_rng(i)) for i, k in enumerate(KINDS)}
        got: dict[str, object] = {}
        for kind, type_name in KINDS.items():
            node.create_subscription(type_name, f"{NS}/ros_to_rs/{kind}", lambda m, k=kind: got.setdefault(k, m),
                                     qos_for(kind))
        pubs = {k: node.create_publisher(t, f"{NS}/rs_to_ros/{k}", qos_for(k)) for k, t in KINDS.items()}
        executor = Executor()
        executor.add_node(node)
        end = time.monotonic() + TIMEOUT
        topics = {}
        while time.monotonic() < end:
            for kind, pub in pubs.items():
                if kind not in peer.received:
                    pub.publish(ours[kind])
            executor.spin_for(0.1)
            peer.poll()
            topics = {t.name: t for t in ctx.transport.topics()}
            if (len(peer.received) == len(got) == len(peer.sent) == len(KINDS) and peer.sees_our_topics()
                    and all(f"{NS}/ros_to_rs/{k}" in topics for k in KINDS)):
                break
            assert peer.proc.poll() is None, "rclpy_peer.py exited early"

        # robot_stack -> rclpy
        assert set(peer.received) == set(KINDS), f"rclpy got only {sorted(peer.received)} within {TIMEOUT} s"
        for kind in KINDS:
            assert peer.received[kind] == summary(kind, ours[kind]), kind
        # rclpy -> robot_stack
        assert set(got) == set(KINDS), f"robot_stack got only {sorted(got)} within {TIMEOUT} s"
        for kind in KINDS:
            assert summary(kind, got[kind]) == peer.sent[kind], kind
        # each side's graph shows the other's topics with their types
        assert peer.sees_our_topics(), f"rclpy's graph: {peer.graph}"
        for kind, type_name in KINDS.items():
            info = topics[f"{NS}/ros_to_rs/{kind}"]
            assert info.type_name == type_name and info.publishers >= 1, info
    finally:
        peer.stop()
        ctx.shutdown()
