"""Simulation backend (pybullet): worlds, simulated robots behind the `Robot` interface, cameras, F/T,
tactile pads.

Importing `sim` registers the gymnasium envs (`sim.gym_env.ENV_IDS`) and the simulated robots
("sim_panda", "sim_iiwa", "sim_leap_hand", "sim_iiwa_leap") with `robot_stack.robot.register_robot`.
pybullet itself is imported when a world connects.
"""

from sim.camera import CameraConfig, FixedCamera, FixedCameraConfig, SimCamera, WristCamera, WristCameraConfig
from sim.ft import WristFT, WristFTConfig
from sim.hands import SimIiwaLeap, SimIiwaLeapConfig, SimLeapHand, SimLeapHandConfig
from sim.robots import SimArm, SimArmConfig, SimIiwa, SimIiwaConfig, SimPanda, SimPandaConfig
from sim.tactile import TactilePad, TactilePadConfig, pads_for, register_pads
from sim.world import SimError, SimWorld, SimWorldConfig


def _register_gym_envs() -> None:
    try:
        from sim.gym_env import register_envs
    except ImportError:   # gymnasium missing: the envs are simply not registered
        return
    register_envs()


_register_gym_envs()

__all__ = [
    "CameraConfig", "FixedCamera", "FixedCameraConfig", "SimArm", "SimArmConfig", "SimCamera", "SimError",
    "SimIiwa", "SimIiwaConfig", "SimIiwaLeap", "SimIiwaLeapConfig", "SimLeapHand", "SimLeapHandConfig",
    "SimPanda", "SimPandaConfig", "SimWorld", "SimWorldConfig", "TactilePad",
    "TactilePadConfig", "WristCamera", "WristCameraConfig", "WristFT", "WristFTConfig", "pads_for", "register_pads",
]
