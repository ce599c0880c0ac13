"""`Node`: rclpy's API shape (publishers, subscriptions, timers, parameters, logger, clock).

Parameters, name resolution and statistics live in small helpers (`ParameterStore`,
`NameResolver`, `NodeStatsReporter`); the node only wires them together.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from robot_stack import messages
from robot_stack.clock import Clock
from robot_stack.context import Context, default_context
from robot_stack.convert import IMAGE_ENCODINGS
from robot_stack.params import Parameter, ParameterStore
from robot_stack.qos import QoSProfile, as_profile
from robot_stack.rates import RateStats
from robot_stack.stats import NodeStatsReporter
from robot_stack.transport import shm
from robot_stack.wakeup import Wakeup


class NameResolver:
    """ROS 2 name expansion (`name`, `/abs`, `~/private`) followed by remapping."""

    def __init__(self, node_name: str, namespace: str, remaps: dict[str, str] | None):
        self.node_name = node_name
        self.namespace = "/" + namespace.strip("/") if namespace.strip("/") else ""
        self._remaps = {self._expand(k): self._expand(v) for k, v in (remaps or {}).items()}

    def _expand(self, name: str) -> str:
        if not name:
            raise ValueError("topic name must not be empty")
        if name.startswith("~"):
            return f"{self.namespace}/{self.node_name}{name[1:]}"
        if name.startswith("/"):
            return name
        return f"{self.namespace}/{name}"

    def resolve(self, name: str) -> str:
        full = self._expand(name)
        return self._remaps.get(full, full)


def _type_name(msg_type: Any) -> str:
    return messages.resolve_type(msg_type if isinstance(msg_type, str) else msg_type.__msgtype__)


class Publisher:
    def __init__(self, node: Node, topic: str, type_name: str, qos: QoSProfile):
        self.topic, self.type_name, self.qos = topic, type_name, qos
        self._node = node
        self._impl = shm.create_publisher(node.context.transport, topic, type_name, qos)  # Images: shm path
        self.published = 0

    @property
    def msg_class(self):
        return messages.get_class(self.type_name)

    def publish(self, msg: Any) -> None:
        typ = getattr(msg, "__msgtype__", None)
        if typ != self.type_name:
            raise TypeError(f"publisher on '{self.topic}' takes {self.type_name}, got {typ or type(msg).__name__}")
        messages.validate(msg)
        self._impl.publish(msg)
        self.published += 1

    def loan_image(self, height: int, width: int, encoding: str = "rgb8") -> np.ndarray:
        """An HxWxC array to render or decode a frame into, then publish with `convert.image`.

        On a cross-process transport the array lives in the publisher's shared-memory ring, so
        publishing it copies no pixels (ROS 2's loaned messages, for Images). Elsewhere it is a
        plain array. Fill it and publish it before asking for the next loan.
        """
        if self.type_name != shm.IMAGE_TYPE:
            raise TypeError(f"loan_image() needs a sensor_msgs/msg/Image publisher, '{self.topic}' is {self.type_name}")
        dtype, channels = IMAGE_ENCODINGS[encoding]
        shape, nbytes = (height, width, channels), height * width * channels * dtype.itemsize
        loan = self._impl.loan(nbytes) if isinstance(self._impl, shm.ShmImagePublisher) else None
        return np.empty(shape, dtype) if loan is None else loan.view(dtype).reshape(shape)

    def get_subscription_count(self) -> int:
        return self._impl.matched_subscriptions()

    def destroy(self) -> None:
        self._impl.close()


class Subscription:
    """Messages wait in a keep-last queue (QoS depth) until the executor runs the callback."""

    def __init__(self, node: Node, topic: str, type_name: str, callback: Callable, qos: QoSProfile):
        self.topic, self.type_name, self.qos, self.callback = topic, type_name, qos, callback
        self._node = node
        self._queue: deque = deque(maxlen=qos.depth)
        self.received = 0
        self.overflowed = 0  # dropped because the executor fell behind (keep-last semantics)
        self._impl = shm.create_subscription(node.context.transport, topic, type_name, qos, self._enqueue)

    @property
    def dropped(self) -> int:
        """Malformed samples discarded by the transport."""
        return self._impl.dropped

    def _enqueue(self, msg: Any) -> None:
        if len(self._queue) == self._queue.maxlen:
            self.overflowed += 1
        self._queue.append(msg)
        self.received += 1
        self._node._notify(self)

    def take(self) -> Any | None:
        try:
            return self._queue.popleft()
        except IndexError:
            return None

    def destroy(self) -> None:
        self._impl.close()
        self._queue.clear()


class Timer:
    """A periodic callback with a target rate. Deadlines are absolute: no drift."""

    def __init__(self, node: Node, period: float, callback: Callable[[], Any], name: str, clock: Clock):
        if period <= 0:
            raise ValueError(f"timer period must be positive, got {period}")
        self.period, self.callback, self.name = period, callback, name
        self.clock = clock
        self.stats = RateStats(name, period)
        self.cancelled = False
        self.next_deadline: float | None = None  # set by the executor (its time base)

    def cancel(self) -> None:
        self.cancelled = True

    def reset(self) -> None:
        self.cancelled = False
        self.next_deadline = None


class Node:
    def __init__(
        self,
        node_name: str,
        *,
        namespace: str = "",
        context: Context | None = None,
        parameter_overrides: dict[str, Any] | None = None,
        remappings: dict[str, str] | None = None,
        publish_stats: bool = True,
    ):
        if not node_name or "/" in node_name:
            raise ValueError(f"invalid node name {node_name!r}")
        self.context = context or default_context()
        self.names = NameResolver(node_name, namespace, remappings)
        self.parameters = ParameterStore(node_name, parameter_overrides)
        self.publishers: list[Publisher] = []
        self.subscriptions: list[Subscription] = []
        self.timers: list[Timer] = []
        self._ready: deque[Subscription] = deque()
        self._wake: Wakeup = Wakeup()
        self._logger = logging.getLogger(f"robot_stack.{self.get_fully_qualified_name().strip('/').replace('/', '.')}")
        if self.declare_parameter("use_sim_time", False).value:
            self.context.clock.enable_sim_time(self.context.transport)
        self.stats = NodeStatsReporter(self) if publish_stats else None
        self._announce()

    # --- identity ---------------------------------------------------------------------------
    def get_name(self) -> str:
        return self.names.node_name

    def get_namespace(self) -> str:
        return self.names.namespace or "/"

    def get_fully_qualified_name(self) -> str:
        return f"{self.names.namespace}/{self.names.node_name}"

    def get_logger(self) -> logging.Logger:
        return self._logger

    def get_clock(self) -> Clock:
        return self.context.clock

    # --- endpoints ---------------------------------------------------------------------------
    def create_publisher(self, msg_type: Any, topic: str, qos_profile: QoSProfile | int | str = 10) -> Publisher:
        pub = Publisher(self, self.names.resolve(topic), _type_name(msg_type), as_profile(qos_profile))
        self.publishers.append(pub)
        self._announce()
        return pub

    def create_subscription(
        self, msg_type: Any, topic: str, callback: Callable[[Any], Any], qos_profile: QoSProfile | int | str = 10
    ) -> Subscription:
        sub = Subscription(self, self.names.resolve(topic), _type_name(msg_type), callback, as_profile(qos_profile))
        self.subscriptions.append(sub)
        self._wake.watch(sub._impl)
        self._announce()
        return sub

    def create_timer(self, timer_period_sec: float, callback: Callable[[], Any], *, name: str | None = None) -> Timer:
        timer = Timer(self, float(timer_period_sec), callback, name or f"timer{len(self.timers)}", self.context.clock)
        self.timers.append(timer)
        self._wake.set()
        return timer

    def destroy_publisher(self, pub: Publisher) -> None:
        pub.destroy()
        self.publishers.remove(pub)
        self._announce()

    def destroy_subscription(self, sub: Subscription) -> None:
        self._wake.unwatch(sub._impl)
        sub.destroy()
        self.subscriptions.remove(sub)
        self._announce()

    def _announce(self) -> None:
        """Tell the transport (and through it ROS 2 tools) about this node and its endpoints."""
        endpoints = [part for ep in (*self.publishers, *self.subscriptions) for part in ep._impl.parts()]
        self.context.transport.announce_node(self.get_namespace(), self.get_name(), endpoints)

    # --- parameters --------------------------------------------------------------------------
    def declare_parameter(self, name: str, value: Any = None, *, description: str = "") -> Parameter:
        return self.parameters.declare(name, value, description)

    def get_parameter(self, name: str) -> Parameter:
        return self.parameters.get(name)

    def set_parameter(self, name: str, value: Any) -> Parameter:
        return self.parameters.set(name, value)

    def has_parameter(self, name: str) -> bool:
        return self.parameters.has(name)

    # --- executor hooks ----------------------------------------------------------------------
    def _notify(self, sub: Subscription) -> None:
        self._ready.append(sub)
        self._wake.set()

    def _attach(self, wake: Wakeup) -> None:
        """Ring `wake` (an executor's doorbell) from now on; it may poll our subscriptions."""
        for sub in self.subscriptions:
            self._wake.unwatch(sub._impl)
            wake.watch(sub._impl)
        self._wake = wake
        if self._ready or self.timers:
            wake.set()

    def take_ready(self) -> Subscription | None:
        try:
            return self._ready.popleft()
        except IndexError:
            return None

    def destroy_node(self) -> None:
        self.context.transport.forget_node(self.get_namespace(), self.get_name())
        for t in self.timers:
            t.cancel()
        for ep in (*self.publishers, *self.subscriptions):
            ep.destroy()
        self.publishers.clear()
        self.subscriptions.clear()
