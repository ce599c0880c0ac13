"""The servo devices: `so101` (SO-100/SO-101 arm, Feetech STS3215), `koch` (Koch arm, Dynamixel
XM430/XL330), `leap_hand` (16-DoF LEAP-style hand, Dynamixel XC330/XL330)."""

from __future__ import annotations

from dataclasses import dataclass

from drivers.servo.device import ServoDevice, ServoDeviceConfig, ServoJoint
from drivers.servo.errors import ServoError
from robot_stack.robot import register_robot

ARM_JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")


@dataclass(frozen=True)
class SO101Config(ServoDeviceConfig):
    name: str = "so101"
    protocol: str = "feetech"
    joints: tuple[ServoJoint, ...] = tuple(ServoJoint(n, i + 1, "sts3215") for i, n in enumerate(ARM_JOINTS))
    effort_limit: float = 2.9                  # STS3215 12 V stall torque ~30 kg*cm
    effort_per_unit: float = 0.029             # N*m per % of load
    load_register: str = "present_load"


@dataclass(frozen=True)
class KochConfig(ServoDeviceConfig):
    name: str = "koch"
    joints: tuple[ServoJoint, ...] = tuple(
        ServoJoint(n, i + 1, "xm430-w350" if i < 2 else "xl330-m288") for i, n in enumerate(ARM_JOINTS))
    effort_limit: float = 4.1
    effort_per_unit: float = 0.0016            # N*m per mA (XM430-W350 ~4.1 N*m at 2.3 A)


def _leap_joints() -> tuple[ServoJoint, ...]:
    fingers = {"index": ("mcp_side", "mcp", "pip", "dip"), "middle": ("mcp_side", "mcp", "pip", "dip"),
               "ring": ("mcp_side", "mcp", "pip", "dip"), "thumb": ("cmc", "axl", "mcp", "ip")}
    names = [f"{f}_{j}" for f, joints in fingers.items() for j in joints]
    return tuple(ServoJoint(n, i, "xl330-m288" if n.startswith("thumb") else "xc330-m288")
                 for i, n in enumerate(names))


@dataclass(frozen=True)
class LeapHandConfig(ServoDeviceConfig):
    name: str = "leap_hand"
    joints: tuple[ServoJoint, ...] = _leap_joints()
    baudrate: int = 4_000_000
    effort_limit: float = 0.5
    effort_per_unit: float = 0.00035


@register_robot("so101")
class SO101(ServoDevice):
    config_class = SO101Config


@register_robot("koch")
class Koch(ServoDevice):
    config_class = KochConfig


@register_robot("leap_hand")
class LeapHand(ServoDevice):
    config_class = LeapHandConfig


DEVICES: dict[str, type[ServoDevice]] = {"so101": SO101, "koch": Koch, "leap_hand": LeapHand}


def device_class(name: str) -> type[ServoDevice]:
    try:
        return DEVICES[name]
    except KeyError:
        raise ServoError(f"unknown servo device '{name}'; known: {sorted(DEVICES)}") from None
