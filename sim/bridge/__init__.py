"""Simulator bridge: a simulator in another process (Isaac Gym under Python 3.8, or pybullet) behind a
small TCP protocol (`protocol`), served by `server`, driven through the `Robot` interface by
`client.BridgeRobot` ("isaacgym_bridge"). See sim/bridge/README.md.

Importing `sim.bridge` registers the "isaacgym_bridge" robot.
"""

from sim.bridge.client import (
    BridgeConnectionError,
    BridgeError,
    BridgeProtocolError,
    BridgeRemoteError,
    BridgeRobot,
    BridgeRobotConfig,
)

__all__ = [
    "BridgeConnectionError", "BridgeError", "BridgeProtocolError", "BridgeRemoteError", "BridgeRobot",
    "BridgeRobotConfig",
]
