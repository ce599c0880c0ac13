"""Node heartbeats: identity, endpoints and timer statistics on `/robot_stack/node_stats` (1 Hz).

`robot-stack node list` and `node stats` read this topic, so they see every node on the graph,
in any process, over any transport that reaches them.
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING

from robot_stack import messages
from robot_stack.errors import TransportError
from robot_stack.qos import QoSProfile

if TYPE_CHECKING:
    from robot_stack.node import Node

STATS_TOPIC = "/robot_stack/node_stats"
STATS_TYPE = "robot_stack_msgs/msg/NodeStats"
STATS_PERIOD = 1.0


class NodeStatsReporter:
    def __init__(self, node: Node):
        self._node = node
        self._hostname = socket.gethostname()
        self._timer = None
        try:
            self._pub = node.context.transport.create_publisher(STATS_TOPIC, STATS_TYPE, QoSProfile(depth=10))
        except TransportError as exc:  # e.g. rclpy cannot carry project types
            node.get_logger().info("node stats are not published: %s", exc)
            return
        self._timer = node.create_timer(STATS_PERIOD, self.publish, name="_stats")

    def build(self):
        node = self._node
        timers = [
            messages.make("robot_stack_msgs/msg/TimerStats", **vars(t.stats.summary()))
            for t in node.timers
            if t is not self._timer
        ]
        header = messages.make("std_msgs/msg/Header", stamp=node.get_clock().now().to_msg())
        return messages.make(
            STATS_TYPE,
            header=header,
            name=node.get_name(),
            namespace=node.get_namespace(),
            process=node.context.process_name,
            hostname=self._hostname,
            pid=os.getpid(),
            transport=node.context.transport_name,
            publishers=[f"{p.topic} [{p.type_name}]" for p in node.publishers],
            subscriptions=[f"{s.topic} [{s.type_name}]" for s in node.subscriptions],
            timers=timers,
            dropped_messages=sum(s.dropped for s in node.subscriptions),
        )

    def publish(self) -> None:
        self._pub.publish(self.build())
