"""The one transport interface. Backends register themselves with `@register_transport`.

A backend moves typestore messages between publishers and subscriptions; callbacks run on the
backend's own thread (or inline for `inproc`) and must be quick: the Node hands them to its
executor. Bad bytes from the wire are counted in `dropped` and never reach a callback.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from robot_stack.errors import TransportUnavailable
from robot_stack.qos import QoSProfile

MessageCallback = Callable[[Any], None]


@dataclass(frozen=True)
class TopicInfo:
    """A topic seen on the graph: name (`/joint_states`), type (`sensor_msgs/msg/JointState`)."""

    name: str
    type_name: str
    publishers: int = 0
    subscribers: int = 0


class TransportPublisher(ABC):
    topic: str
    type_name: str

    def parts(self) -> list[TransportPublisher]:
        """The transport-level publishers this one is made of."""
        return [self]

    @abstractmethod
    def publish(self, msg: Any) -> None:
        """Send one (already validated) message."""

    @abstractmethod
    def matched_subscriptions(self, *, excluding_tag: str | None = None) -> int:
        """How many subscriptions currently receive this publisher's messages.

        `excluding_tag` leaves out subscriptions created with that `tag` (the shared-memory
        image path uses it to publish a full `Image` only when someone outside needs it).
        """

    def close(self) -> None:
        """Stop publishing; idempotent."""


class TransportSubscription(ABC):
    topic: str
    type_name: str
    dropped: int = 0  # malformed samples received and discarded

    def parts(self) -> list[TransportSubscription]:
        """The transport-level subscriptions this one is made of (a doorbell may poll them)."""
        return [self]

    def close(self) -> None:
        """Stop receiving; idempotent."""


class Transport(ABC):
    """A message backend. One instance per process is the norm (see `robot_stack.context`)."""

    name: ClassVar[str]

    @abstractmethod
    def create_publisher(self, topic: str, type_name: str, qos: QoSProfile) -> TransportPublisher: ...

    @abstractmethod
    def create_subscription(
        self, topic: str, type_name: str, qos: QoSProfile, callback: MessageCallback, *, tag: str | None = None
    ) -> TransportSubscription:
        """`tag` is visible to publishers (see `TransportPublisher.matched_subscriptions`)."""

    @abstractmethod
    def topics(self) -> list[TopicInfo]:
        """Topics known on the graph right now (local and discovered remote endpoints)."""

    @abstractmethod
    def close(self) -> None: ...

    def announce_node(self, namespace: str, name: str, endpoints: list) -> None:
        """Make a node and its endpoints (transport-level `parts()`) visible to ROS 2 tools."""

    def forget_node(self, namespace: str, name: str) -> None:
        """Undo `announce_node`."""

    def create_waiter(self) -> Any | None:
        """A doorbell for an executor thread that can poll this transport's subscriptions itself
        (see `robot_stack.wakeup`), or None when subscriptions deliver from their own threads."""
        return None

    @classmethod
    def check_available(cls) -> str:
        """Return a one-line description if usable here, else raise TransportUnavailable(why)."""
        return "available"


_REGISTRY: dict[str, type[Transport]] = {}
# Where each built-in backend lives: imported on first use so optional packages stay optional.
_BUILTIN_MODULES = {
    "inproc": "robot_stack.transport.inproc",
    "dds": "robot_stack.transport.dds",
    "rclpy": "robot_stack.transport.rclpy_backend",
}


def register_transport(name: str):
    def deco(cls: type[Transport]) -> type[Transport]:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def transport_class(name: str) -> type[Transport]:
    if name not in _REGISTRY and name in _BUILTIN_MODULES:
        try:
            importlib.import_module(_BUILTIN_MODULES[name])
        except ImportError as exc:
            raise TransportUnavailable(f"transport '{name}' needs a package that is missing: {exc}") from exc
    if name not in _REGISTRY:
        raise TransportUnavailable(f"unknown transport '{name}'; known: {', '.join(available_names())}")
    return _REGISTRY[name]


def available_names() -> list[str]:
    return sorted(set(_REGISTRY) | set(_BUILTIN_MODULES))


def create_transport(name: str, **options: Any) -> Transport:
    return transport_class(name)(**options)
