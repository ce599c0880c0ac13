"""Transports: one interface (`Transport`), backends `inproc`, `dds` (default), `rclpy`."""

from robot_stack.transport.base import (
    TopicInfo,
    Transport,
    TransportPublisher,
    TransportSubscription,
    available_names,
    create_transport,
    register_transport,
    transport_class,
)

__all__ = [
    "TopicInfo", "Transport", "TransportPublisher", "TransportSubscription",
    "available_names", "create_transport", "register_transport", "transport_class",
]
