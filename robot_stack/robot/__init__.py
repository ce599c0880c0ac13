"""The hardware interface shared by real drivers (`drivers/`) and simulators (`sim/`)."""

from robot_stack.robot.interface import (
    ControlMode,
    JointCommand,
    JointLimits,
    Robot,
    RobotConfig,
    RobotState,
    available_robots,
    register_robot,
    robot_class,
)

__all__ = [
    "ControlMode", "JointCommand", "JointLimits", "Robot", "RobotConfig", "RobotState",
    "available_robots", "register_robot", "robot_class",
]
