"""The child-process runner, in this process over inproc: build, spin, stop, report, fail by node."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest

from robot_stack import messages
from robot_stack.context import Context
from robot_stack.demo_nodes import HOME, LOWER_LIMITS, UPPER_LIMITS, FakeArm
from robot_stack.errors import ConfigError
from robot_stack.executor import Executor
from robot_stack.launch.config import parse_launch
from robot_stack.launch.process import EXIT_FAILED, EXIT_OK, ProcessRunner, set_parent_death_signal
from robot_stack.node import Node


def spec(nodes: list[dict], source: str = "t.yaml"):
    return parse_launch({"transport": "inproc", "processes": {"p": {"nodes": nodes}}}, source).processes[0]


def spin_briefly(runner: ProcessRunner, seconds: float) -> int:
    timer = threading.Timer(seconds, runner.request_stop)
    timer.start()
    try:
        return runner.spin()
    finally:
        timer.cancel()


def test_runner_builds_spins_reports_and_closes():
    runner = ProcessRunner(spec([
        {"name": "arm", "class": "robot_stack.demo_nodes:FakeArm", "parameters": {"rate_hz": 200.0}},
        {"name": "cmd", "class": "robot_stack.demo_nodes:Commander", "namespace": "x",
         "remap": {"joint_commands": "/joint_commands"}},
    ]))
    runner.build()
    runner.warm_up()
    assert spin_briefly(runner, 0.6) == EXIT_OK
    runner.close()
    report = runner.rate_report()
    assert set(report["nodes"]) == {"/arm", "/x/cmd"}
    state = report["nodes"]["/arm"]["timers"][0]
    assert state["name"] == "state" and state["target_hz"] == 200.0
    assert 30 <= state["ticks"] <= 130  # 200 Hz for 0.6 s, on a machine that may be loaded
    arm = runner.nodes[0][1]
    assert not np.allclose(arm.target, HOME)  # the remapped commander reached it


def test_undeclared_parameter_is_a_config_error_naming_node_and_closest():
    runner = ProcessRunner(spec([{"name": "arm", "class": "robot_stack.demo_nodes:FakeArm",
                                  "parameters": {"rate_hzz": 100.0}}]))
    with pytest.raises(ConfigError) as err:
        runner.build()
    runner.close()
    msg = str(err.value)
    assert msg.startswith("t.yaml: processes.p.nodes[0] (arm): field 'parameters'")
    assert "'rate_hzz'" in msg and "did you mean 'rate_hz'" in msg


def test_exception_in_a_callback_names_the_node(caplog):
    runner = ProcessRunner(spec([
        {"name": "arm", "class": "robot_stack.demo_nodes:FakeArm"},
        {"name": "cmd", "class": "robot_stack.demo_nodes:Commander"},
    ]))
    runner.build()
    runner.nodes[1][1].center = None  # its timer callback now raises TypeError inside the node
    with caplog.at_level(logging.ERROR, logger="robot_stack.launch.process"):
        assert spin_briefly(runner, 2.0) == EXIT_FAILED
    runner.close()
    assert "node 'cmd' (robot_stack.demo_nodes:Commander, processes.p.nodes[1] (cmd)) raised TypeError" in caplog.text


def test_stop_requested_before_spin_returns_at_once():
    runner = ProcessRunner(spec([{"name": "arm", "class": "robot_stack.demo_nodes:FakeArm"}]))
    runner.request_stop()
    runner.build()
    assert runner.spin() == EXIT_OK
    runner.close()


def test_parent_death_signal_is_supported_on_linux():
    assert set_parent_death_signal()


def test_fake_arm_follows_commands_within_limits():
    ctx = Context("inproc")
    arm = FakeArm(node_name="arm_t", context=ctx, parameter_overrides={"time_constant": 0.01},
                  remappings={"joint_commands": "/arm_t_cmd", "joint_states": "/arm_t_states"})
    states = []
    listener = Node("listener_t", context=ctx)
    listener.create_subscription("sensor_msgs/msg/JointState", "/arm_t_states", states.append, 100)
    pub = listener.create_publisher("sensor_msgs/msg/JointState", "/arm_t_cmd", 10)
    target = [5.0, -5.0, 0.1, -1.0, 0.2, 0.3, 0.4]  # first two beyond the limits
    pub.publish(messages.make("sensor_msgs/msg/JointState", name=arm.joint_names, position=target))
    pub.publish(messages.make("sensor_msgs/msg/JointState", name=["nope"], position=[1.0]))  # dropped
    ex = Executor()
    ex.add_node(arm)
    ex.add_node(listener)
    ex.spin_for(0.3)
    ctx.shutdown()
    expected = np.clip(target, LOWER_LIMITS, UPPER_LIMITS)
    last = states[-1]
    assert np.allclose(last.position, expected, atol=1e-3)
    assert list(last.name) == arm.joint_names and last.header.stamp.sec > 0
    assert arm.rejected_commands == 1
    assert 20 <= len(states) <= 170  # 500 Hz for 0.3 s (fewer on a loaded machine)
