#!/bin/bash
# Source ROS 2 Jazzy (rclpy, message packages, ros2 CLI), then run the command.
set -e
# shellcheck disable=SC1091
source /opt/ros/jazzy/setup.bash
exec "$@"
