"""`dds`: cyclonedds-python speaking the ROS 2 wire format, so plain rclpy nodes interoperate.

Topic `rt/<name>`, type `<pkg>::msg::dds_::<Type>_`, CDR from the typestore and USER_DATA
`typehash=RIHS01_...;` like rmw does. Endpoints are created with an IDL type generated from the
typestore (`dds_types`) so discovery carries truthful type information, but samples bypass
cyclonedds-python's serializer: the typestore's CDR bytes are written as they are, and received
bytes are taken raw and deserialized by the typestore.

Threads: subscription callbacks run on cyclone's receive thread (a listener), or inline in the
publishing thread for a reader in the same process -- unless an executor polls the reader from
its own thread through a `DdsWaiter` (the normal case for a Node: see `dds_waiter`).
Writes release the GIL (a raw `dds_write` through ctypes), so a listener waiting for the GIL
never blocks a writer delivering to that same reader. Never close a subscription or publish to
its own topic from inside its callback.
"""

from __future__ import annotations

import ctypes
import logging
import socket
import threading
from importlib import metadata
from typing import Any

from cyclonedds import _clayer
from cyclonedds.core import (
    DDSException,
    InstanceState,
    Listener,
    Policy,
    Qos,
    ReadCondition,
    SampleState,
    ViewState,
)
from cyclonedds.domain import Domain, DomainParticipant
from cyclonedds.internal import DDS
from cyclonedds.pub import DataWriter
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from robot_stack import messages
from robot_stack.errors import TransportError, TransportUnavailable
from robot_stack.qos import Durability, QoSProfile, Reliability
from robot_stack.transport import dds_config
from robot_stack.transport.base import (
    MessageCallback,
    TopicInfo,
    Transport,
    TransportPublisher,
    TransportSubscription,
    register_transport,
)
from robot_stack.transport.dds_graph import ROS_TOPIC_PREFIX, Graph, delete_entity
from robot_stack.transport.dds_nodes import NodeAnnouncer
from robot_stack.transport.dds_types import idl_struct

log = logging.getLogger("robot_stack.transport.dds")

TAG_KEY = "rs_tag"
_ANY_STATE = SampleState.Any | ViewState.Any | InstanceState.Any
_TAKE_BATCH = 64
_MAX_BLOCKING = duration(milliseconds=100)  # rmw's default for reliable writers


class _Sample(ctypes.Structure):
    """cyclonedds-python's sample container: the CDR bytes handed to its serdata."""

    _fields_ = [("data", ctypes.c_char_p), ("size", ctypes.c_size_t)]


# A private function object (indexing, not attribute access) so its signature is ours alone.
_dds_write = DDS._dll_handle["dds_write"]
_dds_write.argtypes = [ctypes.c_int32, ctypes.POINTER(_Sample)]
_dds_write.restype = ctypes.c_int32


def write_cdr(ref: int, data: bytes) -> int:
    """Write one sample's CDR bytes (encapsulation header included) with the GIL released."""
    if len(data) & 3:
        data = _with_padding(data)
    return _dds_write(ref, _Sample(data, len(data)))


def ros_to_dds_topic(topic: str) -> str:
    """`/joint_states` -> `rt/joint_states`."""
    name = topic.strip("/")
    if not name or "//" in name:
        raise TransportError(f"invalid topic name {topic!r}")
    return ROS_TOPIC_PREFIX + name


def user_data(type_name: str, tag: str | None = None) -> bytes:
    """USER_DATA QoS as rmw writes it (`typehash=RIHS01_...;`), plus our subscription tag."""
    text = f"typehash={messages.type_hash(type_name)};"
    if tag is not None:
        if not tag or any(c in tag for c in ";=\0"):
            raise TransportError(f"subscription tag {tag!r} must be non-empty without ';', '=' or NUL")
        text += f"{TAG_KEY}={tag};"
    return text.encode()


def parse_user_data(data: bytes | None) -> dict[str, str]:
    """`k1=v1;k2=v2;` -> {k1: v1, k2: v2}; anything unparsable is ignored."""
    out: dict[str, str] = {}
    for item in (data or b"").decode("utf-8", "replace").split(";"):
        key, sep, value = item.partition("=")
        if sep:
            out[key.strip()] = value
    return out


def cyclone_qos(profile: QoSProfile, data: bytes) -> Qos:
    """A ROS 2 QoS profile as cyclone policies (XCDR1 like every ROS 2 rmw)."""
    reliable = profile.reliability == Reliability.RELIABLE
    return Qos(
        Policy.Reliability.Reliable(_MAX_BLOCKING) if reliable else Policy.Reliability.BestEffort,
        Policy.Durability.TransientLocal if profile.durability == Durability.TRANSIENT_LOCAL
        else Policy.Durability.Volatile,
        Policy.History.KeepLast(profile.depth),
        Policy.DataRepresentation(use_cdrv0_representation=True),
        Policy.Userdata(data),
    )


def _with_padding(data: bytes) -> bytes:
    """XCDR1 payloads are a multiple of 4 bytes; the header's last 2 bits say how many were added."""
    pad = -len(data) & 3
    if not pad:
        return data
    return data[:3] + bytes((data[3] | pad,)) + data[4:] + b"\0" * pad


class _Domains:
    """One cyclone Domain (and configuration) per domain id per process, shared by transports."""

    def __init__(self):
        self._lock = threading.Lock()
        self._open: dict[int, list] = {}  # domain id -> [Domain, xml, users]

    def acquire(self, config: dds_config.DdsConfig) -> None:
        xml = config.xml()
        with self._lock:
            entry = self._open.get(config.domain_id)
            if entry is not None:
                if entry[1] != xml:
                    raise TransportError(
                        f"DDS domain {config.domain_id} is already open in this process with another discovery "
                        f"configuration; use one configuration per domain per process ({config.describe()})"
                    )
                entry[2] += 1
                return
            try:
                domain = Domain(config.domain_id, xml)
            except DDSException as exc:
                hint = ""
                if exc.code == DDSException.DDS_RETCODE_PRECONDITION_NOT_MET:
                    hint = " (another cyclonedds user in this process opened the domain with its own configuration)"
                raise TransportError(f"cyclonedds could not start {config.describe()}{hint}: {exc}") from exc
            self._open[config.domain_id] = [domain, xml, 1]

    def release(self, domain_id: int) -> None:
        with self._lock:
            entry = self._open.get(domain_id)
            if entry is None:
                return
            entry[2] -= 1
            if entry[2] == 0:
                del self._open[domain_id]
                delete_entity(entry[0])


_DOMAINS = _Domains()


class DdsPublisher(TransportPublisher):
    def __init__(self, transport: DdsTransport, topic: str, type_name: str, writer: DataWriter):
        self.topic, self.type_name = topic, type_name
        self._transport = transport
        self._writer: DataWriter | None = writer
        self._ref = writer._ref
        self._tags: dict[int, str | None] = {}  # matched reader handle -> its rs_tag

    def publish(self, msg: Any) -> None:
        ret = write_cdr(self._ref, messages.serialize(msg))
        if ret < 0:
            if self._writer is None:
                raise TransportError(f"publisher on '{self.topic}' is closed")
            raise TransportError(f"dds write on '{self.topic}' failed: {DDSException(ret)}")

    def matched_subscriptions(self, *, excluding_tag: str | None = None) -> int:
        writer = self._writer
        if writer is None:
            return 0
        handles = writer.get_matched_subscriptions()
        if excluding_tag is None:
            return len(handles)
        if len(self._tags) > 4 * len(handles) + 64:
            self._tags = {h: t for h, t in self._tags.items() if h in handles}
        return sum(1 for h in handles if self._tag_of(writer, h) != excluding_tag)

    def _tag_of(self, writer: DataWriter, handle: int) -> str | None:
        if handle not in self._tags:
            endpoint = writer.get_matched_subscription_data(handle)
            policy = endpoint.qos[Policy.Userdata] if endpoint is not None else None
            self._tags[handle] = parse_user_data(policy.data if policy else None).get(TAG_KEY)
        return self._tags[handle]

    def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            self._ref = 0  # never a valid handle: a late publish() fails instead of reaching a reused one
            delete_entity(writer)
            self._transport._forget(self)


class DdsSubscription(TransportSubscription):
    """Takes raw CDR from cyclone on its receive thread, deserializes, calls the callback."""

    def __init__(self, transport: DdsTransport, topic: str, type_name: str, callback: MessageCallback):
        self.topic, self.type_name = topic, type_name
        self.dropped = 0
        self.callback_errors = 0
        self._transport = transport
        self._callback = callback
        self._ref: int | None = None
        self._reader: DataReader | None = None
        self._drain_lock = threading.RLock()  # re-entrant: a callback run by attach() may publish into it
        self._in_callback = threading.local()
        self.listener = Listener(on_data_available=self._on_data_available)

    def attach(self, reader: DataReader) -> None:
        """Called once the reader exists; takes what arrived while it was being created."""
        self._reader, self._ref = reader, reader._ref
        self._drain()

    # --- polled mode: an executor's DdsWaiter takes the samples in its own thread ---------------
    def enter_polled(self) -> ReadCondition | None:
        """Drop the listener; return a ReadCondition for the waiter (None when closed)."""
        reader = self._reader
        if reader is None:
            return None
        reader.set_listener(None)  # waits for a running listener call (GIL released meanwhile)
        return ReadCondition(reader, _ANY_STATE)

    def leave_polled(self, condition: ReadCondition) -> None:
        delete_entity(condition)
        reader = self._reader
        if reader is not None:
            reader.set_listener(self.listener)
            self._drain()

    def poll(self) -> bool:
        """Deliver pending samples in this thread; False once the subscription is closed."""
        if self._ref is None:
            return False
        self._drain()
        return True

    def _on_data_available(self, _reader: Any) -> None:
        # Runs on a cyclone thread: nothing may escape from here.
        try:
            self._in_callback.active = True
            self._drain()
        except Exception:  # noqa: BLE001 - the boundary of cyclone's thread
            log.exception("dds subscription on '%s': receive failed", self.topic)
        finally:
            self._in_callback.active = False

    def _drain(self) -> None:
        with self._drain_lock:
            while (ref := self._ref) is not None:
                samples = _clayer.ddspy_take(ref, _ANY_STATE, _TAKE_BATCH)
                if not isinstance(samples, list):  # an error code: the reader is gone
                    return
                for data, info in samples:
                    if info.valid_data:
                        self._deliver(data)
                if len(samples) < _TAKE_BATCH:
                    return

    def _deliver(self, data: bytes) -> None:
        try:
            msg = messages.deserialize(data, self.type_name)
        except Exception as exc:  # noqa: BLE001 - any malformed sample is counted and dropped
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("dds subscription on '%s': dropped %d malformed sample(s) (%d bytes: %s)",
                            self.topic, self.dropped, len(data), exc)
            return
        try:
            self._callback(msg)
        except Exception:  # noqa: BLE001 - a failing callback must not stop the subscription
            self.callback_errors += 1
            if self.callback_errors == 1 or self.callback_errors % 1000 == 0:
                log.exception("dds subscription on '%s': callback failed (%d times)", self.topic, self.callback_errors)

    def close(self) -> None:
        if getattr(self._in_callback, "active", False):
            raise TransportError(f"cannot close the subscription on '{self.topic}' from inside its own callback")
        reader, self._reader = self._reader, None
        if reader is not None:
            self._ref = None
            delete_entity(reader)  # waits for a running listener (the GIL is released meanwhile)
            self._transport._forget(self)


@register_transport("dds")
class DdsTransport(Transport):
    """One DomainParticipant per instance; discovery on loopback unless `discovery="network"`."""

    def __init__(self, *, domain_id: int | str | None = None, discovery: str | None = None,
                 interface: str | None = None):
        self.config = dds_config.resolve(domain_id, discovery, interface)
        _DOMAINS.acquire(self.config)
        try:
            self._participant = DomainParticipant(self.config.domain_id)
        except DDSException as exc:
            _DOMAINS.release(self.config.domain_id)
            raise TransportError(f"cyclonedds could not create a participant ({self.config.describe()}): {exc}") \
                from exc
        self._lock = threading.Lock()
        self._topics: dict[str, tuple[str, Topic]] = {}
        self._endpoints: list[DdsPublisher | DdsSubscription] = []
        self._graph = Graph(self._participant)
        self._announcer: NodeAnnouncer | None = None
        self._closed = False

    def _topic(self, topic: str, type_name: str) -> Topic:
        dds_name = ros_to_dds_topic(topic)
        with self._lock:
            if self._closed:
                raise TransportError("the dds transport is closed")
            known = self._topics.get(dds_name)
            if known is not None:
                if known[0] != type_name:
                    raise TransportError(f"topic '{topic}' carries {known[0]}, cannot use it with {type_name}")
                return known[1]
            try:
                created = Topic(self._participant, dds_name, idl_struct(type_name))
            except DDSException as exc:
                raise TransportError(f"cannot create DDS topic '{dds_name}' for {type_name}: {exc}") from exc
            self._topics[dds_name] = (type_name, created)
            return created

    def create_publisher(self, topic: str, type_name: str, qos: QoSProfile) -> TransportPublisher:
        dds_topic = self._topic(topic, type_name)
        try:
            writer = DataWriter(self._participant, dds_topic, qos=cyclone_qos(qos, user_data(type_name)))
        except DDSException as exc:
            raise TransportError(f"cannot create a DDS writer on '{topic}': {exc}") from exc
        return self._remember(DdsPublisher(self, topic, type_name, writer))

    def create_subscription(
        self, topic: str, type_name: str, qos: QoSProfile, callback: MessageCallback, *, tag: str | None = None
    ) -> TransportSubscription:
        dds_topic = self._topic(topic, type_name)
        sub = DdsSubscription(self, topic, type_name, callback)
        try:
            reader = DataReader(self._participant, dds_topic, qos=cyclone_qos(qos, user_data(type_name, tag)),
                                listener=sub.listener)
        except DDSException as exc:
            raise TransportError(f"cannot create a DDS reader on '{topic}': {exc}") from exc
        sub.attach(reader)
        return self._remember(sub)

    def _remember(self, endpoint):
        with self._lock:
            self._endpoints.append(endpoint)
        return endpoint

    def _forget(self, endpoint) -> None:
        with self._lock:
            if endpoint in self._endpoints:
                self._endpoints.remove(endpoint)

    def create_waiter(self):
        """An executor doorbell on a cyclone WaitSet that polls this transport's readers."""
        from robot_stack.transport.dds_waiter import DdsWaiter

        if self._closed:
            raise TransportError("the dds transport is closed")
        return DdsWaiter(self)

    def announce_node(self, namespace: str, name: str, endpoints: list) -> None:
        """Publish the node (and its readers/writers) on `ros_discovery_info` for ROS 2 tools."""
        with self._lock:
            if self._closed:
                return
            if self._announcer is None:
                self._announcer = NodeAnnouncer(self._participant, write_cdr)
        readers = [e._reader for e in endpoints if isinstance(e, DdsSubscription) and e._reader is not None]
        writers = [e._writer for e in endpoints if isinstance(e, DdsPublisher) and e._writer is not None]
        self._announcer.update(namespace, name, readers, writers)

    def forget_node(self, namespace: str, name: str) -> None:
        if self._announcer is not None and not self._closed:
            self._announcer.remove(namespace, name)

    def topics(self) -> list[TopicInfo]:
        if self._closed:
            raise TransportError("the dds transport is closed")
        return self._graph.topics()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            endpoints, self._endpoints = self._endpoints, []
            topics, self._topics = self._topics, {}
        for ep in endpoints:
            ep.close()
        if self._announcer is not None:
            self._announcer.close()
        self._graph.close()
        for _, topic in topics.values():
            delete_entity(topic)
        delete_entity(self._participant)
        _DOMAINS.release(self.config.domain_id)

    @classmethod
    def check_available(cls) -> str:
        try:
            config = dds_config.resolve()
            if config.discovery == dds_config.LOCALHOST:
                socket.if_nametoindex(dds_config.LOOPBACK_INTERFACE)
        except TransportError as exc:
            raise TransportUnavailable(f"dds: {exc}") from exc
        except OSError as exc:
            raise TransportUnavailable(f"dds: no loopback interface '{dds_config.LOOPBACK_INTERFACE}': {exc}") from exc
        try:
            version = metadata.version("cyclonedds")
        except metadata.PackageNotFoundError:
            version = "(unknown version)"
        return f"cyclonedds {version}, ROS 2 wire format, {config.describe()}"
