"""Our nodes appear on the ROS 2 graph (`ros_discovery_info`), as `ros2 node list` shows them."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest

from robot_stack.context import Context
from robot_stack.node import Node

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(importlib.util.find_spec("rclpy") is None, reason="rclpy (ROS 2 Jazzy) is not installed"),
]

NS = f"/graph_{os.getpid()}"
OBSERVER = textwrap.dedent("""
    import json, sys, time
    import rclpy
    ns, want_gone = sys.argv[1], sys.argv[2] == "gone"
    rclpy.init()
    node = rclpy.create_node("observer")
    result, end = None, time.time() + 20
    while time.time() < end:
        rclpy.spin_once(node, timeout_sec=0.2)
        present = ("arm", ns) in node.get_node_names_and_namespaces()
        if want_gone:
            if not present:
                result = {"gone": True}
                break
            continue
        if present:
            pubs = node.get_publisher_names_and_types_by_node("arm", ns)
            subs = node.get_subscriber_names_and_types_by_node("arm", ns)
            result = {"pubs": pubs, "subs": subs}
            if pubs and subs:
                break
    print(json.dumps(result), flush=True)
    node.destroy_node()
    rclpy.shutdown()
""")


def observe(mode: str) -> dict | None:
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", RMW_IMPLEMENTATION="rmw_fastrtps_cpp")
    out = subprocess.run([sys.executable, "-c", OBSERVER, NS, mode], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_rclpy_sees_our_node_and_its_endpoints_then_its_removal():
    with Context("dds") as ctx:
        node = Node("arm", namespace=NS, context=ctx, publish_stats=False)
        node.create_publisher("sensor_msgs/msg/JointState", "joint_states")
        node.create_subscription("sensor_msgs/msg/JointState", "joint_commands", lambda m: None)
        seen = observe("present")
        assert seen is not None, "rclpy never listed our node"
        assert [f"{NS}/joint_states", ["sensor_msgs/msg/JointState"]] in seen["pubs"]
        assert [f"{NS}/joint_commands", ["sensor_msgs/msg/JointState"]] in seen["subs"]
        node.destroy_node()
        assert observe("gone") == {"gone": True}
