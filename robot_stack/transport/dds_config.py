"""Where the `dds` transport discovers peers: domain id and the cyclonedds XML configuration.

Discovery stays on the loopback interface unless a launch asks for the network explicitly
(`discovery="network"` or env `ROBOT_STACK_DISCOVERY=network`, optionally `interface="eth0"`).
The loopback set-up (no multicast, unicast peer 127.0.0.1, participant indices 0..100) meets
rclpy nodes started with `ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

from robot_stack.errors import TransportError

DOMAIN_ENV = "ROS_DOMAIN_ID"
DISCOVERY_ENV = "ROBOT_STACK_DISCOVERY"
LOCALHOST = "localhost"
NETWORK = "network"
_DISCOVERY_ALIASES = {"localhost": LOCALHOST, "loopback": LOCALHOST, "local": LOCALHOST, "network": NETWORK}
MAX_DOMAIN_ID = 232  # highest id whose RTPS ports fit in 16 bits with the default port mapping
MAX_PARTICIPANT_INDEX = 100
LOOPBACK_INTERFACE = "lo0" if sys.platform == "darwin" else "lo"


@dataclass(frozen=True)
class DdsConfig:
    """Resolved settings of one `dds` transport instance."""

    domain_id: int
    discovery: str = LOCALHOST
    interface: str | None = None

    def xml(self) -> str | None:
        """cyclonedds configuration, or None for cyclone's own defaults (and `CYCLONEDDS_URI`)."""
        if self.discovery == LOCALHOST:
            return loopback_xml()
        if self.interface:
            return (
                '<CycloneDDS><Domain id="any"><General><Interfaces>'
                f"<NetworkInterface name={quoteattr(self.interface)}/>"
                "</Interfaces></General></Domain></CycloneDDS>"
            )
        return None

    def describe(self) -> str:
        where = "loopback only" if self.discovery == LOCALHOST else f"network ({self.interface or 'default interface'})"
        return f"domain {self.domain_id}, discovery {where}"


def loopback_xml() -> str:
    return (
        '<CycloneDDS><Domain id="any"><General><Interfaces>'
        f'<NetworkInterface name="{LOOPBACK_INTERFACE}"/></Interfaces>'
        "<AllowMulticast>false</AllowMulticast></General>"
        "<Discovery><ParticipantIndex>auto</ParticipantIndex>"
        f"<MaxAutoParticipantIndex>{MAX_PARTICIPANT_INDEX}</MaxAutoParticipantIndex>"
        '<Peers><Peer address="127.0.0.1"/></Peers></Discovery></Domain></CycloneDDS>'
    )


def resolve(
    domain_id: int | str | None = None, discovery: str | None = None, interface: str | None = None
) -> DdsConfig:
    """Options first, then the environment, then the defaults (domain 0, loopback)."""
    return DdsConfig(_domain_id(domain_id), _discovery(discovery, interface), interface or None)


def _domain_id(value: int | str | None) -> int:
    source = "option domain_id"
    if value is None:
        value, source = os.environ.get(DOMAIN_ENV, "").strip() or 0, DOMAIN_ENV
    if isinstance(value, bool):
        raise TransportError(f"{source} must be an integer, got {value!r}")
    try:
        domain = int(value)
    except (TypeError, ValueError):
        raise TransportError(f"{source} must be an integer 0..{MAX_DOMAIN_ID}, got {value!r}") from None
    if not 0 <= domain <= MAX_DOMAIN_ID:
        raise TransportError(f"{source} must be in 0..{MAX_DOMAIN_ID}, got {domain}")
    return domain


def _discovery(value: str | None, interface: str | None) -> str:
    source = "option discovery"
    if value is None:
        value, source = os.environ.get(DISCOVERY_ENV, "").strip() or LOCALHOST, DISCOVERY_ENV
    mode = _DISCOVERY_ALIASES.get(str(value).strip().lower())
    if mode is None:
        raise TransportError(f"{source} must be 'localhost' or 'network', got {value!r}")
    if interface and mode != NETWORK:
        raise TransportError(
            f"interface={interface!r} needs discovery='network' (or {DISCOVERY_ENV}=network); "
            "the default keeps DDS on the loopback interface"
        )
    return mode
