"""Simulation backend (pybullet): worlds, simulated robots behind the `Robot` interface, cameras, F/T.

Importing `sim` registers the simulated robots ("sim_panda", "sim_iiwa") with
`robot_stack.robot.register_robot`. pybullet itself is imported when a world connects.
"""

from sim.camera import CameraConfig, FixedCamera, FixedCameraConfig, SimCamera, WristCamera, WristCameraConfig
from sim.ft import WristFT, WristFTConfig
from sim.robots import SimArm, SimArmConfig, SimIiwa, SimIiwaConfig, SimPanda, SimPandaConfig
from sim.world import SimError, SimWorld, SimWorldConfig

__all__ = [
    "CameraConfig", "FixedCamera", "FixedCameraConfig", "SimArm", "SimArmConfig", "SimCamera", "SimError",
    "SimIiwa", "SimIiwaConfig", "SimPanda", "SimPandaConfig", "SimWorld", "SimWorldConfig", "WristCamera",
    "WristCameraConfig", "WristFT", "WristFTConfig",
]
