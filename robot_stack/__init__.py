"""robot-stack core: ROS 2-typed messages, transports, nodes at rates, launch and CLI."""

from robot_stack.context import Context, default_context, init, shutdown
from robot_stack.executor import Executor, spin
from robot_stack.node import Node
from robot_stack.qos import DEFAULT, SENSOR_DATA, QoSProfile

__all__ = [
    "Context", "DEFAULT", "Executor", "Node", "QoSProfile", "SENSOR_DATA",
    "default_context", "init", "shutdown", "spin",
]
__version__ = "0.1.0"
