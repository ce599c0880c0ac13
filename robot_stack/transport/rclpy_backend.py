"""`rclpy`: the transport interface on top of a real ROS 2 installation (rclpy + its RMW).

Messages stay typestore messages: publishers send rosbags CDR as serialized bytes and
subscriptions are `raw=True`, deserialized with `robot_stack.messages`. rclpy still needs the
generated Python class of a type (its type support), so only types whose ROS 2 package is
installed (`sensor_msgs`, `geometry_msgs`, ...) can be carried; project types
(`robot_stack_msgs/...`) are not built for ROS and raise a `TransportError` saying so.

Each transport owns its own rclpy `Context`, a hidden node (`_robot_stack_<pid>_<n>`) and a
background thread spinning an rclpy executor; subscription callbacks run on that thread.
Domain: `ROS_DOMAIN_ID` (or `domain_id=`). Discovery: `ROS_AUTOMATIC_DISCOVERY_RANGE`, set to
`LOCALHOST` when unset (going onto the network is explicit).

Limitation: rclpy has no per-endpoint user data, so subscription tags are ignored and
`matched_subscriptions(excluding_tag=...)` counts every subscription. (The shared-memory image
path therefore never starts on this transport: it also needs the project descriptor type.)
"""

from __future__ import annotations

import importlib
import itertools
import logging
import os
import threading
import weakref
from typing import Any

from robot_stack import messages
from robot_stack.errors import TransportError, TransportUnavailable
from robot_stack.qos import Durability, QoSProfile, Reliability
from robot_stack.transport.base import (
    MessageCallback,
    TopicInfo,
    Transport,
    TransportPublisher,
    TransportSubscription,
    register_transport,
)

_log = logging.getLogger("robot_stack.transport.rclpy")
_INSTALL_HINT = (
    "pip install 'ros-jazzy-rclpy[fastrtps]' ros-jazzy-std-msgs ros-jazzy-sensor-msgs ros-jazzy-geometry-msgs "
    "(or source a ROS 2 Jazzy installation)"
)
_counter = itertools.count()


def _import_rclpy():
    """rclpy with its C extension loaded, or TransportUnavailable saying what to install."""
    try:
        import rclpy
        from rclpy.utilities import get_rmw_implementation_identifier

        get_rmw_implementation_identifier()  # loads the C extension and the RMW library
    except Exception as exc:  # ImportError, or OSError/RuntimeError from a broken C library
        why = f"{type(exc).__name__}: {exc}"
        raise TransportUnavailable(f"the rclpy transport needs rclpy ({why}); {_INSTALL_HINT}") from exc
    return rclpy


def ros_message_class(type_name: str) -> Any:
    """The rclpy (rosidl-generated) class of a type, or TransportError naming the type and why."""
    full = messages.resolve_type(type_name)
    pkg, _, name = full.split("/")
    why = ""
    try:
        module = importlib.import_module(f"{pkg}.msg")
    except ImportError as exc:
        why = f"its ROS 2 Python package '{pkg}' is not importable ({exc})"
    else:
        cls = getattr(module, name, None)
        if cls is not None and hasattr(cls, "__import_type_support__"):
            return cls
        why = f"'{pkg}.msg' has no generated class '{name}'"
    hint = (
        "project types are not built as ROS 2 packages; carry them over the 'dds' transport"
        if pkg == messages.PROJECT_PACKAGE
        else f"install the ROS 2 package for '{pkg}' (e.g. pip install ros-jazzy-{pkg.replace('_', '-')})"
    )
    raise TransportError(f"rclpy transport cannot carry {full}: {why}; {hint}")


def rclpy_qos(qos: QoSProfile) -> Any:
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, ReliabilityPolicy
    from rclpy.qos import QoSProfile as RclpyQoS

    return RclpyQoS(
        history=HistoryPolicy.KEEP_LAST,
        depth=qos.depth,
        reliability=(
            ReliabilityPolicy.BEST_EFFORT if qos.reliability is Reliability.BEST_EFFORT else ReliabilityPolicy.RELIABLE
        ),
        durability=(
            DurabilityPolicy.TRANSIENT_LOCAL
            if qos.durability is Durability.TRANSIENT_LOCAL
            else DurabilityPolicy.VOLATILE
        ),
    )


class _RclpyPublisher(TransportPublisher):
    def __init__(self, transport: RclpyTransport, topic: str, type_name: str, qos: QoSProfile):
        self.topic, self.type_name, self.qos = topic, type_name, qos
        self._transport = transport
        self._pub = transport._node.create_publisher(ros_message_class(type_name), topic, rclpy_qos(qos))
        self._closed = False

    def publish(self, msg: Any) -> None:
        if self._closed:
            raise TransportError(f"publisher on '{self.topic}' is closed")
        self._pub.publish(messages.serialize(msg))

    def publish_serialized(self, data: bytes) -> None:
        """Send CDR bytes as they are (tools and tests; no checks)."""
        self._pub.publish(bytes(data))

    def matched_subscriptions(self, *, excluding_tag: str | None = None) -> int:
        # rclpy has no per-endpoint user data: tags are invisible, every subscription counts.
        return 0 if self._closed else self._pub.get_subscription_count()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._transport._destroy(self._transport._node.destroy_publisher, self._pub)


class _RclpySubscription(TransportSubscription):
    def __init__(
        self, transport: RclpyTransport, topic: str, type_name: str, qos: QoSProfile, callback: MessageCallback
    ):
        self.topic, self.type_name, self.qos, self.callback = topic, type_name, qos, callback
        self.dropped = 0
        self._transport = transport
        self._closed = False
        self._sub = transport._node.create_subscription(
            ros_message_class(type_name), topic, self._on_raw, rclpy_qos(qos), raw=True
        )

    def _on_raw(self, data: bytes) -> None:
        if self._closed:
            return
        try:
            msg = messages.deserialize(data, self.type_name)
        except Exception:  # malformed bytes from the wire: count and drop
            self.dropped += 1
            return
        try:
            self.callback(msg)
        except Exception:  # never let a callback kill the spin thread
            _log.exception("callback of subscription on '%s' failed", self.topic)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._transport._destroy(self._transport._node.destroy_subscription, self._sub)


def _start_node(domain_id: int | None) -> tuple[Any, Any]:
    """A fresh rclpy Context (no signal handlers, no command line) and a hidden node on it."""
    rclpy = _import_rclpy()
    from rclpy.signals import SignalHandlerOptions

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # the network is opt-in
    context = rclpy.context.Context()
    try:
        rclpy.init(args=[], context=context, domain_id=domain_id, signal_handler_options=SignalHandlerOptions.NO)
        node = rclpy.create_node(
            f"_robot_stack_{os.getpid()}_{next(_counter)}",
            context=context,
            enable_rosout=False,
            start_parameter_services=False,
            use_global_arguments=False,
        )
    except Exception as exc:
        context.try_shutdown()
        raise TransportUnavailable(f"rclpy could not start: {type(exc).__name__}: {exc}") from exc
    return context, node


@register_transport("rclpy")
class RclpyTransport(Transport):
    def __init__(self, *, domain_id: int | None = None, **_options: Any):
        from rclpy.executors import SingleThreadedExecutor

        self._context, self._node = _start_node(domain_id)
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(self._node)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._endpoints: weakref.WeakSet = weakref.WeakSet()
        self._thread = threading.Thread(
            target=_spin, args=(self._stop, self._executor, self._context), name="robot_stack-rclpy", daemon=True
        )
        self._thread.start()
        parts = (self._stop, self._thread, self._executor, self._node, self._context)
        self._finalizer = weakref.finalize(self, _shutdown, *parts)  # close() or at exit

    @classmethod
    def check_available(cls) -> str:
        _import_rclpy()
        from rclpy.utilities import get_rmw_implementation_identifier

        return f"rclpy (ROS 2 {os.environ.get('ROS_DISTRO', 'jazzy')}, {get_rmw_implementation_identifier()})"

    def create_publisher(self, topic: str, type_name: str, qos: QoSProfile) -> TransportPublisher:
        return self._create("publisher", _RclpyPublisher, topic, type_name, qos)

    def create_subscription(
        self, topic: str, type_name: str, qos: QoSProfile, callback: MessageCallback, *, tag: str | None = None
    ) -> TransportSubscription:
        """`tag` is accepted and ignored: rclpy cannot attach user data to one endpoint."""
        return self._create("subscription", _RclpySubscription, topic, type_name, qos, callback)

    def _create(self, kind: str, cls: type, topic: str, type_name: str, *args: Any) -> Any:
        if self._stop.is_set():
            raise TransportError("rclpy transport is closed")
        full = messages.resolve_type(type_name)
        with self._lock:
            try:
                endpoint = cls(self, topic, full, *args)
            except TransportError:
                raise
            except Exception as exc:  # rclpy's own errors: invalid topic name, incompatible type...
                raise TransportError(f"rclpy could not create a {kind} on '{topic}' [{full}]: {exc}") from exc
            self._endpoints.add(endpoint)
        return endpoint

    def _destroy(self, destroy: Any, entity: Any) -> None:
        with self._lock:
            if not self._stop.is_set():  # after close, the node took its endpoints with it
                destroy(entity)

    def topics(self) -> list[TopicInfo]:
        if self._stop.is_set():
            raise TransportError("rclpy transport is closed")
        out = []
        for name, types in self._node.get_topic_names_and_types():
            type_name = messages.normalize_type_name(types[0]) if types else ""
            out.append(
                TopicInfo(name, type_name, self._node.count_publishers(name), self._node.count_subscribers(name))
            )
        return sorted(out, key=lambda t: t.name)

    def close(self) -> None:
        with self._lock:
            for ep in list(self._endpoints):
                ep._closed = True
            self._endpoints.clear()
        self._finalizer()


def _spin(stop: threading.Event, executor: Any, context: Any) -> None:
    while not stop.is_set():
        try:
            executor.spin_once(timeout_sec=0.1)
        except Exception as exc:  # context shut down under us, or an rclpy error
            if stop.is_set() or not context.ok():
                return
            _log.warning("rclpy spin error: %s", exc)


def _shutdown(stop: threading.Event, thread: threading.Thread, executor: Any, node: Any, context: Any) -> None:
    stop.set()
    try:
        executor.wake()
    except Exception:  # the context may already be gone
        pass
    if thread is not threading.current_thread():
        thread.join(timeout=5.0)
    for step in (executor.shutdown, node.destroy_node, context.try_shutdown):
        try:
            step()
        except Exception as exc:
            _log.debug("rclpy shutdown step %s: %s", getattr(step, "__name__", step), exc)
