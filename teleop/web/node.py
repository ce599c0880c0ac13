"""`ARPageNode`: the TactAR-style AR page as a robot_stack node (launchable as `teleop.web.node:ARPageNode`).

Serves the page (see `teleop.web.server`) at `http://<host>:<port>/`. From each browser pose it
publishes `robot_stack_msgs/TeleopTarget` (MODE_POSE, `ee_pose` in `frame_id`, `engaged`,
`gripper`) on `teleop_target`: the controller pose through the frame map of
`teleop.web.mapping.Clutch`. Releasing the dead-man, closing the page, or `silence_timeout_s`
without a pose publishes one `engaged: false` target (the robot stops following). Page buttons
publish `robot_stack_msgs/EpisodeEvent` (source "ar_page") on `episode_events`.

Feedback to the page: `wrench_topic` (geometry_msgs/WrenchStamped) as the force arrow,
`tactile_topics` (robot_stack_msgs/TactileFrame, mean shear per pad) as tactile arrows,
`camera_topic` (sensor_msgs/Image) as JPEG frames. A wrench whose header stamp equals the stamp
of a TeleopTarget this node published carries that pose's sequence number back to the page, which
then reports pose-to-arrow latency (`window.__arState.echoes`).

Parameters: server `host` (127.0.0.1), `port` (8765; 0 = any), `token` (required off loopback),
`allowed_origins`, `max_message_bytes`, `send_hz`, `camera_max_hz`, `jpeg_quality`; frame map
`scale`, `axes`, `home`, `frame_id` (`teleop.web.config`); `silence_timeout_s`, `device`;
topics `target_topic`, `event_topic`, `wrench_topic`, `tactile_topics`, `camera_topic` ("" = off).
Example launch file: `teleop/web/configs/ar_push_t.yaml`.

Threads: the server's asyncio loop publishes targets and events; subscription callbacks run on the
executor and only hand data to the server. The server binds in the constructor (launch files
have no separate start step), and `destroy_node` stops it.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from typing import Any

from robot_stack import convert, messages
from robot_stack.clock import Time
from robot_stack.errors import ParameterError
from robot_stack.node import Node
from teleop.web.config import FrameMapConfig, ServerConfig
from teleop.web.errors import ARPageConfigError
from teleop.web.feedback import tactile_message, wrench_message
from teleop.web.mapping import Clutch
from teleop.web.protocol import Event, Pose
from teleop.web.server import ARServer, Client

TELEOP_TARGET = "robot_stack_msgs/msg/TeleopTarget"
EPISODE_EVENT = "robot_stack_msgs/msg/EpisodeEvent"
MODE_POSE = 1
ECHO_MEMORY = 256        # recent (stamp -> pose) pairs a wrench may answer


class ARPageNode(Node):
    def __init__(self, node_name: str = "ar_page", **node_kwargs: Any):
        super().__init__(node_name, **node_kwargs)
        self.server_config = self._server_config()
        self.frame_map = self._frame_map()
        self.silence_timeout_s = self._positive("silence_timeout_s", 0.5)
        self.device = self.declare_parameter("device", "ar_page").value
        topic = lambda name, default: self.declare_parameter(name, default).value
        self.target_pub = self.create_publisher(TELEOP_TARGET, topic("target_topic", "teleop_target"))
        self.event_pub = self.create_publisher(EPISODE_EVENT, topic("event_topic", "episode_events"))
        self._subscribe_feedback()
        self.clutch = Clutch(self.frame_map)
        self.operator: int | None = None          # the client whose dead-man is held
        self.poses = self.targets = self.events = self.silences = 0
        self._last_pose_at = 0.0
        self._echo: dict[int, dict] = {}          # stamp_ns -> {client, seq} of recent targets (server thread writes)
        self._echo_order: deque[int] = deque()
        self._lock = threading.Lock()
        self.server = ARServer(self.server_config, self._on_message, self._on_disconnect, self._check_silence)
        try:
            self.server.start()
        except Exception:
            super().destroy_node()
            raise
        self.get_logger().info(f"AR page at {self.server.url}")

    # --- parameters ----------------------------------------------------------------------------
    def _positive(self, name: str, default: float) -> float:
        value = self.declare_parameter(name, default).value
        if not value > 0:
            raise ParameterError(f"node '{self.get_name()}': parameter '{name}' must be > 0, got {value!r}")
        return float(value)

    def _server_config(self) -> ServerConfig:
        p = lambda name, default: self.declare_parameter(name, default).value
        try:
            return ServerConfig(host=p("host", "127.0.0.1"), port=p("port", 8765), token=p("token", ""),
                                max_message_bytes=p("max_message_bytes", 4096), send_hz=p("send_hz", 60.0),
                                camera_max_hz=p("camera_max_hz", 30.0), jpeg_quality=p("jpeg_quality", 70),
                                allowed_origins=tuple(p("allowed_origins", [])))
        except ARPageConfigError as exc:
            raise type(exc)(f"node '{self.get_name()}': {exc}") from None

    def _frame_map(self) -> FrameMapConfig:
        p = lambda name, default: self.declare_parameter(name, default).value
        try:
            return FrameMapConfig(scale=p("scale", 1.0), axes=tuple(p("axes", ["-z", "-x", "y"])),
                                  home=tuple(float(v) for v in p("home", [0.5, 0.0, 0.2])),
                                  frame_id=p("frame_id", "base_link"))
        except (ARPageConfigError, TypeError, ValueError) as exc:
            raise ARPageConfigError(f"node '{self.get_name()}': {exc}") from None

    def _subscribe_feedback(self) -> None:
        wrench = self.declare_parameter("wrench_topic", "wrench").value
        tactile = self.declare_parameter("tactile_topics", []).value
        camera = self.declare_parameter("camera_topic", "fixed/image_raw").value
        if wrench:
            self.create_subscription("geometry_msgs/msg/WrenchStamped", wrench, self._on_wrench, "sensor_data")
        for topic in (t for t in tactile if t):
            self.create_subscription("robot_stack_msgs/msg/TactileFrame", topic, self._on_tactile, "sensor_data")
        if camera:
            self.create_subscription("sensor_msgs/msg/Image", camera, self._on_image, "sensor_data")

    # --- feedback (executor thread) -----------------------------------------------------------
    def _on_wrench(self, msg: Any) -> None:
        if not self.server.clients:
            return
        answers = self._echo.get(Time.from_msg(msg.header.stamp).nanoseconds)    # one atomic dict read
        self.server.post_text("wrench", wrench_message(msg, answers))

    def _on_tactile(self, msg: Any) -> None:
        if self.server.clients:
            self.server.post_text(f"tactile:{msg.sensor_id}", tactile_message(msg))

    def _on_image(self, msg: Any) -> None:
        self.server.post_frame(msg)

    # --- browser input (server thread) ---------------------------------------------------------
    def _on_message(self, msg: Any, client: Client) -> None:
        if isinstance(msg, Pose):
            self._on_pose(msg, client)
        elif isinstance(msg, Event):
            self.event_pub.publish(messages.make(EPISODE_EVENT, header=convert.header(self.get_clock().now()),
                                                 event=msg.code, source=self.device))
            self.events += 1

    def _on_pose(self, pose: Pose, client: Client) -> None:
        with self._lock:
            self.poses += 1
            if self.operator not in (None, client.id):
                return                               # someone else holds the dead-man
            if not pose.engaged:
                if self.operator is not None:
                    self._disengage("dead-man released")
                return
            if self.operator is None:
                self.operator = client.id
                self.clutch.engage(pose.pos, pose.quat)
            self._last_pose_at = time.monotonic()
            pos, quat = self.clutch.target(pose.pos, pose.quat)
            stamp = self.get_clock().now()
            self._remember(stamp.nanoseconds, client.id, pose.seq)
            self._publish_target(stamp, pos, quat, pose.grip, engaged=True)

    def _remember(self, stamp_ns: int, client: int, seq: int) -> None:
        self._echo[stamp_ns] = {"client": client, "seq": seq}
        self._echo_order.append(stamp_ns)
        if len(self._echo_order) > ECHO_MEMORY:
            self._echo.pop(self._echo_order.popleft(), None)

    def _publish_target(self, stamp: Time, pos: Any, quat: Any, grip: float, *, engaged: bool) -> None:
        pose = messages.make("geometry_msgs/msg/Pose")
        pose.position.x, pose.position.y, pose.position.z = (float(v) for v in pos)
        o = pose.orientation
        o.x, o.y, o.z, o.w = (float(v) for v in quat)
        self.target_pub.publish(messages.make(
            TELEOP_TARGET, header=convert.header(stamp, self.frame_map.frame_id), mode=MODE_POSE, ee_pose=pose,
            gripper=float(grip), engaged=engaged, device=self.device))
        self.targets += 1

    def _disengage(self, why: str) -> None:
        """Publish one `engaged: false` target (at the last target) and release the clutch."""
        self.get_logger().info(f"operator {self.operator} disengaged: {why}")
        last = self.clutch.last
        pos, quat = last if last is not None else (self.frame_map.home, (0.0, 0.0, 0.0, 1.0))
        self._publish_target(self.get_clock().now(), pos, quat, math.nan, engaged=False)
        self.clutch.release()
        self.operator = None

    def _on_disconnect(self, client: Client) -> None:
        with self._lock:
            if self.operator == client.id:
                self._disengage("page closed")

    def _check_silence(self) -> None:
        with self._lock:
            silent = time.monotonic() - self._last_pose_at
            if self.operator is not None and silent > self.silence_timeout_s:
                self.silences += 1
                self.get_logger().warning(f"teleop stream silent for {silent:.2f} s")
                self._disengage(f"no pose for {self.silence_timeout_s:g} s")

    # --- state ---------------------------------------------------------------------------------
    @property
    def rejected(self) -> dict[str, int]:
        return dict(self.server.rejected)

    def destroy_node(self) -> None:
        self.server.stop()
        super().destroy_node()
