"""`inproc`: same-process delivery, zero copy (subscribers get the publisher's object itself).

All `InprocTransport` instances in a process share one bus, so nodes built with separate
contexts still talk. Treat received messages as read-only: they are shared.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any

from robot_stack.errors import TransportError
from robot_stack.qos import QoSProfile
from robot_stack.transport.base import (
    MessageCallback,
    TopicInfo,
    Transport,
    TransportPublisher,
    TransportSubscription,
    register_transport,
)


class _Bus:
    def __init__(self):
        self.lock = threading.Lock()
        self.subs: dict[str, list[_InprocSubscription]] = defaultdict(list)
        self.pubs: dict[str, list[_InprocPublisher]] = defaultdict(list)
        self.types: dict[str, str] = {}
        self.latched: dict[str, Any] = {}

    def claim_type(self, topic: str, type_name: str) -> None:
        known = self.types.setdefault(topic, type_name)
        if known != type_name:
            raise TransportError(f"topic '{topic}' carries {known}, cannot use it with {type_name}")


_BUS = _Bus()


class _InprocPublisher(TransportPublisher):
    def __init__(self, topic: str, type_name: str, qos: QoSProfile):
        self.topic, self.type_name, self.qos = topic, type_name, qos
        self._closed = False

    def publish(self, msg: Any) -> None:
        if self._closed:
            raise TransportError(f"publisher on '{self.topic}' is closed")
        if self.qos.durability.value == "transient_local":
            _BUS.latched[self.topic] = msg
        for sub in tuple(_BUS.subs.get(self.topic, ())):
            sub.callback(msg)

    def matched_subscriptions(self, *, excluding_tag: str | None = None) -> int:
        return sum(1 for s in _BUS.subs.get(self.topic, ()) if excluding_tag is None or s.tag != excluding_tag)

    def close(self) -> None:
        with _BUS.lock:
            if not self._closed and self in _BUS.pubs[self.topic]:
                _BUS.pubs[self.topic].remove(self)
            self._closed = True


class _InprocSubscription(TransportSubscription):
    def __init__(self, topic: str, type_name: str, callback: MessageCallback, tag: str | None):
        self.topic, self.type_name, self.callback, self.tag = topic, type_name, callback, tag

    def close(self) -> None:
        with _BUS.lock:
            if self in _BUS.subs[self.topic]:
                _BUS.subs[self.topic].remove(self)


@register_transport("inproc")
class InprocTransport(Transport):
    def __init__(self, **_options: Any):
        self._endpoints: list = []

    def create_publisher(self, topic: str, type_name: str, qos: QoSProfile) -> TransportPublisher:
        with _BUS.lock:
            _BUS.claim_type(topic, type_name)
            pub = _InprocPublisher(topic, type_name, qos)
            _BUS.pubs[topic].append(pub)
        self._endpoints.append(pub)
        return pub

    def create_subscription(
        self, topic: str, type_name: str, qos: QoSProfile, callback: MessageCallback, *, tag: str | None = None
    ) -> TransportSubscription:
        with _BUS.lock:
            _BUS.claim_type(topic, type_name)
            sub = _InprocSubscription(topic, type_name, callback, tag)
            _BUS.subs[topic].append(sub)
            latched = _BUS.latched.get(topic) if qos.durability.value == "transient_local" else None
        self._endpoints.append(sub)
        if latched is not None:
            callback(latched)
        return sub

    def topics(self) -> list[TopicInfo]:
        with _BUS.lock:
            return [
                TopicInfo(t, typ, len(_BUS.pubs.get(t, ())), len(_BUS.subs.get(t, ())))
                for t, typ in sorted(_BUS.types.items())
                if _BUS.pubs.get(t) or _BUS.subs.get(t)
            ]

    def close(self) -> None:
        for ep in self._endpoints:
            ep.close()
        self._endpoints.clear()
