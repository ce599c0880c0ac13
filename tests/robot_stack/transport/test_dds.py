"""The `dds` transport: ROS 2 wire conventions, QoS, bad input, graph, loopback-only discovery.

Everything runs on the loopback interface in the random domain tests/conftest.py picks.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from cyclonedds import _clayer
from cyclonedds.builtin import BuiltinDataReader, BuiltinTopicDcpsPublication, BuiltinTopicDcpsSubscription
from cyclonedds.core import Policy
from cyclonedds.domain import DomainParticipant
from cyclonedds.pub import DataWriter
from cyclonedds.topic import Topic

from robot_stack import messages
from robot_stack.context import Context
from robot_stack.errors import TransportError, TransportUnavailable
from robot_stack.executor import Executor
from robot_stack.node import Node
from robot_stack.qos import DEFAULT, LATCHED, SENSOR_DATA
from robot_stack.transport import TopicInfo, dds_config, transport_class
from robot_stack.transport.dds import DdsTransport, cyclone_qos, user_data
from robot_stack.transport.dds_types import idl_struct

JS = "sensor_msgs/msg/JointState"
WRENCH = "geometry_msgs/msg/WrenchStamped"
PEER_SCRIPT = Path(__file__).with_name("dds_peer.py")
NS = f"/rs_test_{os.getpid()}"  # topic namespace: parallel runs that draw the same domain stay apart


def wait_until(predicate, timeout: float = 10.0, step: float = 0.01) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


def joint_state(seed: int):
    rng = np.random.default_rng(seed)
    msg = messages.make(JS, name=[f"joint_{seed}_{i}" for i in range(7)], position=rng.normal(size=7),
                        velocity=rng.normal(size=7), effort=rng.normal(size=7))
    msg.header.stamp.sec, msg.header.stamp.nanosec = int(rng.integers(1, 2**31)), int(rng.integers(0, 10**9))
    msg.header.frame_id = f"base_link_{seed}"
    return msg


def assert_joint_state_equal(got, want) -> None:
    assert (got.header.stamp.sec, got.header.stamp.nanosec) == (want.header.stamp.sec, want.header.stamp.nanosec)
    assert got.header.frame_id == want.header.frame_id
    assert list(got.name) == list(want.name)
    for field in ("position", "velocity", "effort"):
        np.testing.assert_array_equal(getattr(got, field), getattr(want, field), err_msg=field)


@pytest.fixture
def transport():
    t = DdsTransport(discovery="localhost")
    yield t
    t.close()


@pytest.fixture
def raw_participant(transport):
    """A plain cyclone participant in the same process and domain (the transport opened the domain)."""
    return DomainParticipant(transport.config.domain_id)


# --- configuration: loopback unless asked ------------------------------------------------------


def test_loopback_is_the_default(monkeypatch):
    monkeypatch.delenv(dds_config.DISCOVERY_ENV, raising=False)
    config = dds_config.resolve()
    assert config.discovery == dds_config.LOCALHOST
    xml = config.xml()
    assert f'<NetworkInterface name="{dds_config.LOOPBACK_INTERFACE}"/>' in xml
    assert "<AllowMulticast>false</AllowMulticast>" in xml
    assert '<Peer address="127.0.0.1"/>' in xml
    assert "<ParticipantIndex>auto</ParticipantIndex>" in xml
    assert "<MaxAutoParticipantIndex>100</MaxAutoParticipantIndex>" in xml


def test_transport_starts_with_the_loopback_config(monkeypatch):
    monkeypatch.delenv(dds_config.DISCOVERY_ENV, raising=False)
    t = DdsTransport()
    try:
        assert t.config.xml() == dds_config.loopback_xml()
        assert t.config.domain_id == int(os.environ["ROS_DOMAIN_ID"])
    finally:
        t.close()


def test_network_discovery_only_when_asked(monkeypatch):
    monkeypatch.delenv(dds_config.DISCOVERY_ENV, raising=False)
    assert dds_config.resolve(discovery="network").xml() is None  # cyclone's defaults / CYCLONEDDS_URI
    eth = dds_config.resolve(discovery="network", interface="eth0").xml()
    assert '<NetworkInterface name="eth0"/>' in eth and "AllowMulticast" not in eth and "127.0.0.1" not in eth
    monkeypatch.setenv(dds_config.DISCOVERY_ENV, "network")
    assert dds_config.resolve().discovery == dds_config.NETWORK
    assert dds_config.resolve(discovery="localhost").discovery == dds_config.LOCALHOST  # option beats env
    monkeypatch.delenv(dds_config.DISCOVERY_ENV)
    with pytest.raises(TransportError, match="needs discovery='network'"):
        dds_config.resolve(interface="eth0")
    with pytest.raises(TransportError, match="'localhost' or 'network'"):
        dds_config.resolve(discovery="everywhere")


def test_domain_id_from_option_or_env(monkeypatch):
    monkeypatch.setenv("ROS_DOMAIN_ID", "42")
    assert dds_config.resolve().domain_id == 42
    assert dds_config.resolve(domain_id=7).domain_id == 7
    monkeypatch.setenv("ROS_DOMAIN_ID", "")
    assert dds_config.resolve().domain_id == 0
    monkeypatch.setenv("ROS_DOMAIN_ID", "abc")
    with pytest.raises(TransportError, match="ROS_DOMAIN_ID"):
        dds_config.resolve()
    with pytest.raises(TransportError, match="0..232"):
        dds_config.resolve(domain_id=300)


def test_one_config_per_domain_per_process(transport):
    # Refused before anything is started: no traffic leaves the machine.
    with pytest.raises(TransportError, match="another discovery configuration"):
        DdsTransport(discovery="network")


def test_check_available(monkeypatch):
    assert "cyclonedds" in transport_class("dds").check_available()
    monkeypatch.setenv("ROS_DOMAIN_ID", "not-a-number")
    with pytest.raises(TransportUnavailable, match="ROS_DOMAIN_ID"):
        DdsTransport.check_available()


# --- ROS 2 wire conventions ---------------------------------------------------------------------


def test_wire_names_type_and_user_data(transport, raw_participant):
    transport.create_publisher(f"{NS}/wire", JS, DEFAULT)
    transport.create_subscription(f"{NS}/wire", JS, DEFAULT, lambda m: None, tag="shm")
    pubs = BuiltinDataReader(raw_participant, BuiltinTopicDcpsPublication)
    subs = BuiltinDataReader(raw_participant, BuiltinTopicDcpsSubscription)

    def endpoint(reader):
        found = [e for e in reader.read(N=1000) if e.topic_name == f"rt{NS}/wire"]
        return found[0] if found else None

    assert wait_until(lambda: endpoint(pubs) and endpoint(subs))
    typehash = messages.type_hash(JS)
    assert typehash.startswith("RIHS01_")
    for ep, data in ((endpoint(pubs), f"typehash={typehash};"), (endpoint(subs), f"typehash={typehash};rs_tag=shm;")):
        assert ep.type_name == "sensor_msgs::msg::dds_::JointState_"
        assert ep.qos[Policy.Userdata].data == data.encode()
        assert ep.qos[Policy.DataRepresentation].use_cdrv0_representation
        assert ep.type_id is not None  # XTypes type information is announced


def test_qos_mapping(transport, raw_participant):
    transport.create_publisher(f"{NS}/qos_be", JS, SENSOR_DATA)
    transport.create_publisher(f"{NS}/qos_latched", JS, LATCHED)
    reader = BuiltinDataReader(raw_participant, BuiltinTopicDcpsPublication)

    def qos_of(name):
        found = [e.qos for e in reader.read(N=1000) if e.topic_name == name]
        return found[0] if found else None

    assert wait_until(lambda: qos_of(f"rt{NS}/qos_be") and qos_of(f"rt{NS}/qos_latched"))
    be, latched = qos_of(f"rt{NS}/qos_be"), qos_of(f"rt{NS}/qos_latched")
    assert be[Policy.Reliability] == Policy.Reliability.BestEffort
    assert be[Policy.Durability] == Policy.Durability.Volatile
    assert be[Policy.History] == Policy.History.KeepLast(5)
    assert isinstance(latched[Policy.Reliability], Policy.Reliability.Reliable)
    assert latched[Policy.Durability] == Policy.Durability.TransientLocal
    assert latched[Policy.History] == Policy.History.KeepLast(1)


# --- delivery in one process --------------------------------------------------------------------


def test_in_process_nodes_with_executor():
    ctx_a, ctx_b = Context("dds", discovery="localhost"), Context("dds", discovery="localhost")
    try:
        talker = Node("talker", context=ctx_a, publish_stats=False)
        listener = Node("listener", context=ctx_b, publish_stats=False)
        sent, got = joint_state(1), []
        pub = talker.create_publisher(JS, f"{NS}/in_process")
        talker.create_timer(0.01, lambda: pub.publish(sent))
        listener.create_subscription(JS, f"{NS}/in_process", got.append)
        executor = Executor()
        executor.add_node(talker)
        executor.add_node(listener)
        assert executor.spin_until(lambda: len(got) >= 3, timeout_sec=10)
        assert_joint_state_equal(got[-1], sent)
        assert listener.subscriptions[0].dropped == 0
    finally:
        ctx_a.shutdown()
        ctx_b.shutdown()


def test_sensor_data_is_best_effort(transport):
    best_effort, reliable = [], []
    pub = transport.create_publisher(f"{NS}/sensor", JS, SENSOR_DATA)
    transport.create_subscription(f"{NS}/sensor", JS, SENSOR_DATA, best_effort.append)
    # A reliable reader cannot match a best-effort writer (DDS request/offer rule), as in ROS 2.
    transport.create_subscription(f"{NS}/sensor", JS, DEFAULT, reliable.append)
    msg = joint_state(2)
    assert wait_until(lambda: (pub.publish(msg), len(best_effort) >= 3)[1])
    assert_joint_state_equal(best_effort[-1], msg)
    assert reliable == []
    assert pub.matched_subscriptions() == 1


def test_transient_local_reaches_a_late_subscriber(transport):
    msg = joint_state(3)
    transport.create_publisher(f"{NS}/latched", JS, LATCHED).publish(msg)
    got = []
    transport.create_subscription(f"{NS}/latched", JS, LATCHED, got.append)
    assert wait_until(lambda: got)
    assert_joint_state_equal(got[0], msg)


def test_odd_length_payload(transport):
    got = []
    pub = transport.create_publisher(f"{NS}/odd", "std_msgs/msg/String", DEFAULT)
    transport.create_subscription(f"{NS}/odd", "std_msgs/msg/String", DEFAULT, got.append)
    for text in ("a", "ab", "abc", "abcd", "héllo"):
        pub.publish(messages.make("std_msgs/msg/String", data=text))
    assert wait_until(lambda: len(got) == 5)
    assert [m.data for m in got] == ["a", "ab", "abc", "abcd", "héllo"]


def test_malformed_samples_are_counted_and_dropped(transport, raw_participant):
    got = []
    sub = transport.create_subscription(f"{NS}/malformed", JS, DEFAULT, got.append)
    topic = Topic(raw_participant, f"rt{NS}/malformed", idl_struct(JS))
    writer = DataWriter(raw_participant, topic, qos=cyclone_qos(DEFAULT, user_data(JS)))
    assert wait_until(lambda: writer.get_matched_subscriptions())
    want = joint_state(4)
    good = messages.serialize(want)
    # cyclone itself checks the CDR against the announced type (at write, and on receive) and
    # refuses structurally broken samples: those never reach the subscription.
    for refused in (b"\x07\x07\x00\x00" + good[4:], good[:40], good[:4]):
        assert _clayer.ddspy_write(writer._ref, refused) < 0
    # What passes cyclone's check but not the typestore's is counted and dropped.
    frame = want.header.frame_id.encode()
    garbage = [
        good.replace(frame, b"\xff" * len(frame)),  # frame_id is not UTF-8
        good + b"\x00" * 4,  # trailing bytes beyond CDR padding
        good + b"\x00" * 64,
    ]
    for data in garbage:
        assert _clayer.ddspy_write(writer._ref, data) == 0
    assert _clayer.ddspy_write(writer._ref, good) == 0
    assert wait_until(lambda: got)
    assert sub.dropped == len(garbage)
    assert_joint_state_equal(got[0], want)
    assert len(got) == 1


def test_callback_error_does_not_stop_the_subscription(transport):
    got = []

    def callback(msg):
        got.append(msg)
        if len(got) == 1:
            raise RuntimeError("first one fails")

    pub = transport.create_publisher(f"{NS}/cb_error", JS, DEFAULT)
    sub = transport.create_subscription(f"{NS}/cb_error", JS, DEFAULT, callback)
    pub.publish(joint_state(5))
    pub.publish(joint_state(6))
    assert wait_until(lambda: len(got) == 2)
    assert sub.callback_errors == 1 and sub.dropped == 0


def test_matched_subscriptions_excluding_tag(transport):
    pub = transport.create_publisher(f"{NS}/tagged", JS, DEFAULT)
    tagged = transport.create_subscription(f"{NS}/tagged", JS, DEFAULT, lambda m: None, tag="shm")
    transport.create_subscription(f"{NS}/tagged", JS, DEFAULT, lambda m: None)
    assert wait_until(lambda: pub.matched_subscriptions() == 2)
    assert pub.matched_subscriptions(excluding_tag="shm") == 1
    assert pub.matched_subscriptions(excluding_tag="other") == 2
    tagged.close()
    assert wait_until(lambda: pub.matched_subscriptions() == 1)
    assert pub.matched_subscriptions(excluding_tag="shm") == 1


def test_topics_lists_local_endpoints(transport):
    transport.create_publisher(f"{NS}/local", JS, DEFAULT)
    transport.create_subscription(f"{NS}/local", JS, DEFAULT, lambda m: None)
    transport.create_subscription(f"{NS}/local", JS, DEFAULT, lambda m: None)
    want = TopicInfo(f"{NS}/local", JS, publishers=1, subscribers=2)
    assert wait_until(lambda: want in transport.topics())


def test_close_is_clean_and_idempotent(transport):
    pub = transport.create_publisher(f"{NS}/close", JS, DEFAULT)
    sub = transport.create_subscription(f"{NS}/close", JS, DEFAULT, lambda m: None)
    with pytest.raises(TransportError, match="carries sensor_msgs/msg/JointState"):
        transport.create_publisher(f"{NS}/close", WRENCH, DEFAULT)
    sub.close()
    sub.close()
    pub.close()
    pub.close()
    with pytest.raises(TransportError, match="closed"):
        pub.publish(joint_state(7))
    assert pub.matched_subscriptions() == 0
    transport.close()
    transport.close()
    with pytest.raises(TransportError, match="closed"):
        transport.topics()
    with pytest.raises(TransportError, match="closed"):
        transport.create_publisher(f"{NS}/close", JS, DEFAULT)
    again = DdsTransport(discovery="localhost")  # the domain is opened afresh
    again.close()


# --- two processes ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def peer():
    """A robot_stack node in another process: echoes {NS}/ping -> {NS}/pong, advertises a wrench."""
    env = dict(os.environ, ROBOT_STACK_DISCOVERY="localhost")
    args = ["--echo", f"{NS}/ping", f"{NS}/pong", JS, "--advertise", f"{NS}/peer_only", WRENCH]
    proc = subprocess.Popen([sys.executable, str(PEER_SCRIPT), *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line.strip()) for line in proc.stdout], daemon=True).start()
    try:
        try:
            assert lines.get(timeout=30) == "READY"
        except queue.Empty:
            pytest.fail(f"dds_peer.py did not start: {proc.poll()=}")
        yield proc
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_two_processes_exchange_joint_state(peer):
    ctx = Context("dds", discovery="localhost")
    try:
        node = Node("pinger", context=ctx, publish_stats=False)
        got = []
        node.create_subscription(JS, f"{NS}/pong", got.append)
        pub = node.create_publisher(JS, f"{NS}/ping")
        executor = Executor()
        executor.add_node(node)
        sent = joint_state(8)
        end = time.monotonic() + 30
        while not got and time.monotonic() < end:
            pub.publish(sent)
            executor.spin_for(0.05)
        assert got, "no echo from the peer process within 30 s"
        assert_joint_state_equal(got[0], sent)
        assert peer.poll() is None
    finally:
        ctx.shutdown()


def test_topics_sees_another_process(peer, transport):
    def peer_topic():
        return next((t for t in transport.topics() if t.name == f"{NS}/peer_only"), None)

    assert wait_until(lambda: peer_topic() is not None, timeout=30, step=0.1), transport.topics()
    info = peer_topic()
    assert info.type_name == WRENCH and info.publishers >= 1


def _normal_scheduling() -> None:
    if hasattr(os, "sched_setscheduler"):
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


@pytest.mark.slow
def test_local_and_remote_writers_into_one_reader_do_not_deadlock():
    """Two processes each write into a topic they also read, fed by the other process as well.

    A write that kept the GIL (cyclonedds-python's `ddspy_write`) deadlocks here within seconds:
    cyclone's receive thread holds the reader's listener slot waiting for the GIL, while the
    writer holds the GIL waiting for that listener slot.
    """
    env = dict(os.environ, ROBOT_STACK_DISCOVERY="localhost")
    cmd = [sys.executable, str(PEER_SCRIPT), "--flood", f"{NS}/flood", "--timeout", "3"]
    # SCHED_OTHER: a thread that opened an SVT-AV1 encoder as root earlier in this process runs SCHED_FIFO 99,
    # and busy-looping children inheriting that starve each other's discovery threads
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, text=True, preexec_fn=_normal_scheduling)
             for _ in range(2)]
    try:
        outputs = [p.communicate(timeout=60)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for proc, out in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out
        _, sent, received = out.split()[-3:]
        assert int(received) > int(sent) > 0  # its own messages plus the other process's
