"""Executors poll DDS readers from their own thread through a cyclone WaitSet (`DdsWaiter`)."""

from __future__ import annotations

import os
import threading

import pytest

from robot_stack import messages
from robot_stack.context import Context
from robot_stack.executor import Executor
from robot_stack.node import Node
from robot_stack.transport.dds_waiter import DdsWaiter
from robot_stack.wakeup import Wakeup

NS = f"/rs_waiter_{os.getpid()}"


@pytest.fixture
def ctx():
    with Context("dds") as c:
        yield c


def _int(i: int):
    return messages.make("std_msgs/msg/Int32", data=i)


def test_callbacks_run_in_the_executor_thread_without_listener(ctx):
    node = Node("listener", context=ctx, publish_stats=False)
    threads, got = [], []

    def on_msg(m):
        threads.append(threading.get_ident())
        got.append(m.data)

    sub = node.create_subscription("std_msgs/msg/Int32", f"{NS}/a", on_msg, 100)
    ex = Executor()
    ex.add_node(node)
    assert isinstance(ex._wake, DdsWaiter)
    assert sub._impl._reader._listener is None  # polled: no Python runs on cyclone's threads
    pub = Node("talker", context=ctx, publish_stats=False).create_publisher("std_msgs/msg/Int32", f"{NS}/a", 100)
    for i in range(50):
        pub.publish(_int(i))
    assert ex.spin_until(lambda: len(got) == 50, 5.0)
    assert got == list(range(50))
    assert set(threads) == {threading.get_ident()}


def test_subscription_created_after_attach_is_polled_and_remove_node_restores_listener(ctx):
    node = Node("late", context=ctx, publish_stats=False)
    ex = Executor()
    ex.add_node(node)
    got = []
    sub = node.create_subscription("std_msgs/msg/Int32", f"{NS}/b", lambda m: got.append(m.data))
    assert sub._impl in ex._wake._watched
    pub = node.create_publisher("std_msgs/msg/Int32", f"{NS}/b")
    pub.publish(_int(1))
    assert ex.spin_until(lambda: got == [1], 5.0)

    ex.remove_node(node)
    assert isinstance(node._wake, Wakeup) and sub._impl not in ex._wake._watched
    assert sub._impl._reader._listener is not None
    pub.publish(_int(2))  # delivered by the listener into the node's queue again
    other = Executor()
    other.add_node(node)
    assert other.spin_until(lambda: got == [1, 2], 5.0)


def test_destroyed_subscription_leaves_the_waitset(ctx):
    node = Node("n", context=ctx, publish_stats=False)
    ex = Executor()
    ex.add_node(node)
    sub = node.create_subscription("std_msgs/msg/Int32", f"{NS}/c", lambda m: None)
    node.destroy_subscription(sub)
    assert sub._impl not in ex._wake._watched
    keep = []
    node.create_subscription("std_msgs/msg/Int32", f"{NS}/c", lambda m: keep.append(m.data))
    node.create_publisher("std_msgs/msg/Int32", f"{NS}/c").publish(_int(5))
    assert ex.spin_until(lambda: keep == [5], 5.0)


def test_wakeup_from_another_thread_and_timers_still_run(ctx):
    node = Node("t", context=ctx, publish_stats=False)
    ticks = []
    node.create_timer(0.01, lambda: ticks.append(1))
    ex = Executor()
    ex.add_node(node)
    threading.Timer(0.2, ex.shutdown).start()
    ex.spin()  # returns because shutdown() rang the guard condition
    assert 10 <= len(ticks) <= 21


def test_malformed_samples_dropped_in_polled_mode(ctx):
    from cyclonedds import _clayer
    from cyclonedds.domain import DomainParticipant
    from cyclonedds.pub import DataWriter
    from cyclonedds.topic import Topic

    from robot_stack.qos import DEFAULT
    from robot_stack.transport.dds import cyclone_qos, user_data
    from robot_stack.transport.dds_types import idl_struct

    node = Node("strict", context=ctx, publish_stats=False)
    got = []
    sub = node.create_subscription("std_msgs/msg/String", f"{NS}/bad", lambda m: got.append(m.data))
    ex = Executor()
    ex.add_node(node)
    raw = DomainParticipant(ctx.transport.config.domain_id)
    topic = Topic(raw, f"rt{NS}/bad", idl_struct("std_msgs/msg/String"))
    writer = DataWriter(raw, topic, qos=cyclone_qos(DEFAULT, user_data("std_msgs/msg/String")))
    assert ex.spin_until(lambda: writer.get_matched_subscriptions(), 5.0)
    good = messages.serialize(messages.make("std_msgs/msg/String", data="okay"))
    bad = good.replace(b"okay", b"\xff\xfe\xfd\xfc")  # passes cyclone's CDR check, not UTF-8
    assert _clayer.ddspy_write(writer._ref, bad) == 0
    assert _clayer.ddspy_write(writer._ref, good) == 0
    assert ex.spin_until(lambda: got == ["okay"], 5.0)
    assert sub.dropped == 1
