"""Our nodes on the ROS 2 graph: `ros_discovery_info`, as every rmw publishes it.

ROS 2 tools learn which nodes a DDS participant hosts (and which readers and writers belong to
each node) from `rmw_dds_common/msg/ParticipantEntitiesInfo` samples on the `ros_discovery_info`
topic: reliable, transient-local, keep-last 1, keyed by the participant's GUID. Publishing it
makes our nodes show up in `ros2 node list` / rclpy's `get_node_names_and_namespaces()`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from cyclonedds.domain import DomainParticipant
from cyclonedds.pub import DataWriter
from cyclonedds.topic import Topic

from robot_stack import messages
from robot_stack.errors import TransportError
from robot_stack.qos import LATCHED
from robot_stack.transport.dds_graph import delete_entity
from robot_stack.transport.dds_types import idl_struct

DISCOVERY_TOPIC = "ros_discovery_info"
INFO_TYPE = "rmw_dds_common/msg/ParticipantEntitiesInfo"


def gid(entity: Any) -> Any:
    """rmw_dds_common/Gid (16 bytes in Jazzy) of a cyclone entity: its DDS GUID."""
    return messages.make("rmw_dds_common/msg/Gid", data=list(entity.guid.bytes))


class NodeAnnouncer:
    def __init__(self, participant: DomainParticipant, write_cdr: Callable[[int, bytes], int]):
        from robot_stack.transport.dds import cyclone_qos, user_data  # dds imports this module

        self._participant, self._write_cdr = participant, write_cdr
        self._lock = threading.Lock()
        self._nodes: dict[tuple[str, str], tuple[list, list]] = {}
        self._topic = Topic(participant, DISCOVERY_TOPIC, idl_struct(INFO_TYPE))
        self._writer = DataWriter(participant, self._topic, qos=cyclone_qos(LATCHED, user_data(INFO_TYPE)))

    def update(self, namespace: str, name: str, readers: list, writers: list) -> None:
        """Set (or replace) one node's entry and republish the participant's info."""
        with self._lock:
            self._nodes[(namespace, name)] = (list(readers), list(writers))
            self._publish()

    def remove(self, namespace: str, name: str) -> None:
        with self._lock:
            if self._nodes.pop((namespace, name), None) is not None:
                self._publish()

    def _publish(self) -> None:
        nodes = [
            messages.make("rmw_dds_common/msg/NodeEntitiesInfo", node_namespace=ns, node_name=name,
                          reader_gid_seq=[gid(r) for r in readers], writer_gid_seq=[gid(w) for w in writers])
            for (ns, name), (readers, writers) in sorted(self._nodes.items())
        ]
        info = messages.make(INFO_TYPE, gid=gid(self._participant), node_entities_info_seq=nodes)
        if self._write_cdr(self._writer._ref, messages.serialize(info)) < 0:
            raise TransportError(f"could not publish {DISCOVERY_TOPIC}")

    def close(self) -> None:
        delete_entity(self._writer)
        delete_entity(self._topic)
