"""QoS profiles, named like ROS 2's (rclpy.qos) and mapped onto each transport."""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace


class Reliability(enum.Enum):
    RELIABLE = "reliable"
    BEST_EFFORT = "best_effort"


class Durability(enum.Enum):
    VOLATILE = "volatile"
    TRANSIENT_LOCAL = "transient_local"


@dataclass(frozen=True)
class QoSProfile:
    depth: int = 10
    reliability: Reliability = Reliability.RELIABLE
    durability: Durability = Durability.VOLATILE

    def __post_init__(self):
        if not isinstance(self.depth, int) or self.depth < 1:
            raise ValueError(f"QoS depth must be a positive integer, got {self.depth!r}")

    def with_depth(self, depth: int) -> QoSProfile:
        return replace(self, depth=depth)


# ROS 2 presets (rmw_qos_profile_default / rmw_qos_profile_sensor_data / latched).
DEFAULT = QoSProfile()
SENSOR_DATA = QoSProfile(depth=5, reliability=Reliability.BEST_EFFORT)
LATCHED = QoSProfile(depth=1, durability=Durability.TRANSIENT_LOCAL)
PRESETS = {"default": DEFAULT, "sensor_data": SENSOR_DATA, "latched": LATCHED}


def as_profile(qos: QoSProfile | int | str) -> QoSProfile:
    """Accept a profile, a history depth (rclpy style) or a preset name."""
    if isinstance(qos, QoSProfile):
        return qos
    if isinstance(qos, bool):
        raise TypeError("QoS must be a QoSProfile, a depth or a preset name")
    if isinstance(qos, int):
        return QoSProfile(depth=qos)
    if isinstance(qos, str) and qos in PRESETS:
        return PRESETS[qos]
    raise ValueError(f"unknown QoS {qos!r}; use a QoSProfile, a depth or one of {sorted(PRESETS)}")
