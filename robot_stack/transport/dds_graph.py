"""The ROS 2 graph as DDS discovery sees it, from cyclone's built-in endpoint topics.

Every endpoint known to this participant (its own and those of remote participants, rclpy nodes
included) is read from `DCPSPublication` / `DCPSSubscription`; ROS 2 topics are the `rt/` ones.
"""

from __future__ import annotations

import threading
from collections import Counter

from cyclonedds.builtin import BuiltinDataReader, BuiltinTopicDcpsPublication, BuiltinTopicDcpsSubscription
from cyclonedds.core import Entity, InstanceState, ReadCondition, SampleState, ViewState
from cyclonedds.domain import DomainParticipant

from robot_stack import messages
from robot_stack.transport.base import TopicInfo

ROS_TOPIC_PREFIX = "rt/"


def delete_entity(entity: Entity | None) -> None:
    """Delete a cyclone entity now (and make the wrapper's `__del__` a no-op)."""
    ref = getattr(entity, "_ref", None)
    if ref is not None and Entity._entities.get(ref) is entity:
        del Entity._entities[ref]
        entity._delete(ref)


class Graph:
    """The ROS 2 topics DDS discovery knows about, from cyclone's built-in endpoint topics."""

    def __init__(self, participant: DomainParticipant):
        self._participant = participant
        self._lock = threading.Lock()
        self._readers: list[tuple[BuiltinDataReader, ReadCondition]] = []

    def topics(self) -> list[TopicInfo]:
        with self._lock:
            if not self._readers:  # created on first use: most processes never ask
                for builtin in (BuiltinTopicDcpsPublication, BuiltinTopicDcpsSubscription):
                    reader = BuiltinDataReader(self._participant, builtin)
                    alive = ReadCondition(reader, SampleState.Any | ViewState.Any | InstanceState.Alive)
                    self._readers.append((reader, alive))
            (pubs_rd, pubs_alive), (subs_rd, subs_alive) = self._readers
            pubs, subs = _read_all(pubs_rd, pubs_alive), _read_all(subs_rd, subs_alive)
        types: dict[str, Counter] = {}
        counts: Counter = Counter()
        for kind, endpoints in (("pub", pubs), ("sub", subs)):
            for ep in endpoints:
                if not ep.topic_name.startswith(ROS_TOPIC_PREFIX):
                    continue
                name = "/" + ep.topic_name[len(ROS_TOPIC_PREFIX):]
                types.setdefault(name, Counter())[messages.normalize_type_name(ep.type_name)] += 1
                counts[(name, kind)] += 1
        return [
            TopicInfo(name, typ.most_common(1)[0][0], counts[(name, "pub")], counts[(name, "sub")])
            for name, typ in sorted(types.items())
        ]

    def close(self) -> None:
        with self._lock:
            for reader, alive in self._readers:
                delete_entity(alive)
                delete_entity(getattr(reader, "_next_condition", None))
                delete_entity(reader)
            self._readers.clear()


def _read_all(reader: BuiltinDataReader, condition: ReadCondition) -> list:
    n = 256
    while True:
        samples = reader.read(N=n, condition=condition)
        if len(samples) < n:
            return samples
        n *= 4
