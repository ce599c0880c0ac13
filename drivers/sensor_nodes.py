"""Sensor nodes: glove, F/T, cameras and vision-tactile pads, each publishing at its own `rate_hz`.

Topics: `/glove/raw` (sensor_msgs/JointState, raw counts as positions, one entry per sensor) and
`/glove/joints` (JointState after calibration), `/wrench` (geometry_msgs/WrenchStamped),
`/camera/<name>/image` (sensor_msgs/Image, bgr8), `/tactile/<name>` (robot_stack_msgs/TactileFrame).
Every message's `header.stamp` is the sample's capture/arrival time.

Common behaviour (`SensorNode`): the device is opened on the first tick and, while that fails,
retried every `retry_s` (status "connecting: ..."). Once open, a read error (unplug), no first
sample within `startup_s`, or (after the first sample) `watchdog_periods` ticks without a new
sample trip the watchdog: the node closes the device and
stops publishing (its safe state), logs the reason once, and `status` / the `/diagnostics`
DiagnosticArray (level ERROR, message = the reason) say why. Devices may be injected for tests.
"""

from __future__ import annotations

import time
from typing import Any

from drivers.camera import Camera, CameraConfig, NoFrame, OpenCVCapture, StaleFrame
from drivers.ft import NetFT, NetFTConfig
from drivers.glove import Glove, GloveCalibration, GloveConfig
from drivers.sensor_common import SensorConfigError, SensorError, SilenceWatchdog
from drivers.tactile import MarkerGridConfig, MarkerTracker, TactilePCA
from robot_stack import convert, messages
from robot_stack.node import Node

JOINT_STATE = "sensor_msgs/msg/JointState"
DIAGNOSTICS = "diagnostic_msgs/msg/DiagnosticArray"
OK, WARN, ERROR = 0, 1, 2


class SensorNode(Node):
    """Base: connect/retry, watchdog, status and diagnostics. Subclasses implement the hooks below."""

    default_rate_hz = 100.0

    def __init__(self, node_name: str, **kwargs: Any):
        super().__init__(node_name, **kwargs)
        self.rate_hz = float(self.declare_parameter("rate_hz", self.default_rate_hz).value)
        if not self.rate_hz > 0:
            raise SensorConfigError(f"node '{node_name}': rate_hz must be > 0, got {self.rate_hz}")
        self.retry_s = float(self.declare_parameter("retry_s", 1.0).value)
        self.startup_s = float(self.declare_parameter("startup_s", 2.0).value)   # first sample may take this long
        self.watchdog = SilenceWatchdog(int(self.declare_parameter("watchdog_periods", 2).value))
        self.status, self.level = "connecting", WARN
        self.connected = False
        self.published = 0
        self._next_try = 0.0
        self._connected_at = 0.0
        self._count_at_connect = 0
        self._diag_pub = self.create_publisher(DIAGNOSTICS, "/diagnostics", 10)

    def start(self) -> None:
        """Create the timers (call at the end of the subclass constructor)."""
        self.timer = self.create_timer(1.0 / self.rate_hz, self.tick, name="sample")
        self.create_timer(1.0, self.publish_status, name="status")

    # --- hooks ---------------------------------------------------------------------------------
    def open_device(self) -> None:
        raise NotImplementedError

    def close_device(self) -> None:
        raise NotImplementedError

    def sample_count(self) -> int:
        raise NotImplementedError

    def publish_new(self) -> None:
        """Publish what arrived since the last tick; raise SensorError if the device failed."""
        raise NotImplementedError

    # --- loop ----------------------------------------------------------------------------------
    @property
    def faulted(self) -> bool:
        return self.watchdog.tripped

    def tick(self) -> None:
        if self.faulted:
            return
        if not self.connected:
            self._try_connect()
            return
        try:
            self.publish_new()
        except SensorError as exc:
            self.fault(str(exc))
            return
        count = self.sample_count()
        if count == self._count_at_connect:      # nothing yet since connecting: allow `startup_s`
            if time.monotonic() - self._connected_at > self.startup_s:
                self.fault(f"no data within {self.startup_s:g} s of connecting")
            return
        if self.watchdog.tick(count, 1.0 / self.rate_hz):
            self.fault(self.watchdog.reason)

    def _try_connect(self) -> None:
        now = time.monotonic()
        if now < self._next_try:
            return
        self._next_try = now + self.retry_s
        try:
            self.open_device()
        except SensorError as exc:
            self._set_status(f"connecting: {exc}", WARN)
            return
        self.connected = True
        self._connected_at, self._count_at_connect = time.monotonic(), self.sample_count()
        self.watchdog.reset()
        self._set_status("ok", OK)
        self.get_logger().info(f"connected to {self.hardware_id() or 'the device'}")

    def fault(self, reason: str) -> None:
        """Trip into the safe state: close the device, stop publishing, say why."""
        self.watchdog.trip(reason)
        self.connected = False
        try:
            self.close_device()
        except Exception as exc:  # the device is gone anyway; the fault reason matters more
            self.get_logger().debug("closing after fault failed: %s", exc)
        self.get_logger().error(f"{self.get_name()}: watchdog tripped, device closed: {self.watchdog.reason}")
        self._set_status(f"fault: {self.watchdog.reason}", ERROR)

    def _set_status(self, status: str, level: int) -> None:
        changed = status != self.status
        self.status, self.level = status, level
        if changed:
            self.publish_status()

    def publish_status(self) -> None:
        status = messages.make(
            "diagnostic_msgs/msg/DiagnosticStatus", level=self.level,
            name=self.get_fully_qualified_name(), message=self.status, hardware_id=self.hardware_id(),
            values=[messages.make("diagnostic_msgs/msg/KeyValue", key=k, value=str(v))
                    for k, v in self.counters().items()],
        )
        header = convert.header(self.get_clock().now())
        self._diag_pub.publish(messages.make(DIAGNOSTICS, header=header, status=[status]))

    def hardware_id(self) -> str:
        return ""

    def counters(self) -> dict[str, Any]:
        return {"published": self.published, "samples": self.sample_count() if self.connected else "-"}

    def destroy_node(self) -> None:
        if self.connected:
            self.close_device()
        super().destroy_node()


class GloveNode(SensorNode):
    default_rate_hz = 100.0

    def __init__(self, node_name: str = "glove", *, glove: Glove | None = None, **kwargs: Any):
        super().__init__(node_name, **kwargs)
        n = int(self.declare_parameter("num_sensors", 16).value)
        cfg = GloveConfig(port=self.declare_parameter("port", "/dev/ttyACM0").value, num_sensors=n,
                          adc_max=int(self.declare_parameter("adc_max", 4095).value))
        path = self.declare_parameter("calibration", "").value
        self.calibration = GloveCalibration.load(path) if path else GloveCalibration.default(n, cfg.adc_max)
        if len(self.calibration.sensor_names) != n:
            raise SensorConfigError(f"{path}: calibration has {len(self.calibration.sensor_names)} sensors, glove {n}")
        self.glove = glove or Glove(cfg, clock=self.get_clock())
        self._last = 0
        self.raw_pub = self.create_publisher(JOINT_STATE, "/glove/raw", "sensor_data")
        self.joints_pub = self.create_publisher(JOINT_STATE, "/glove/joints", "sensor_data")
        self.start()

    def open_device(self) -> None:
        self.glove.connect()

    def close_device(self) -> None:
        self.glove.disconnect()

    def sample_count(self) -> int:
        return self.glove.samples

    def hardware_id(self) -> str:
        return self.glove.config.port

    def publish_new(self) -> None:
        self.glove.check()
        self.glove.drain()
        sample = self.glove.latest()
        if sample is None or self.glove.samples == self._last:
            return
        self._last = self.glove.samples
        names = self.calibration.sensor_names
        self.raw_pub.publish(convert.joint_state(names, sample.values, stamp=sample.stamp))
        self.joints_pub.publish(convert.joint_state(names, self.calibration.joints(sample.values), stamp=sample.stamp))
        self.published += 1

    def counters(self) -> dict[str, Any]:
        return {**super().counters(), **self.glove.parser.counters()}


class FTNode(SensorNode):
    default_rate_hz = 500.0

    def __init__(self, node_name: str = "ft_sensor", *, ft: NetFT | None = None, **kwargs: Any):
        super().__init__(node_name, **kwargs)
        cfg = NetFTConfig(host=self.declare_parameter("host", "192.168.1.1").value,
                          port=int(self.declare_parameter("port", 49152).value),
                          counts_per_force=float(self.declare_parameter("counts_per_force", 1e6).value),
                          counts_per_torque=float(self.declare_parameter("counts_per_torque", 1e6).value))
        self.frame_id = self.declare_parameter("frame_id", "ft_sensor").value
        self.bias_on_start = bool(self.declare_parameter("bias_on_start", False).value)
        self.ft = ft or NetFT(cfg, clock=self.get_clock())
        self._last = 0
        self.wrench_pub = self.create_publisher("geometry_msgs/msg/WrenchStamped", "/wrench", "sensor_data")
        self.create_subscription("std_msgs/msg/Empty", "~/bias", lambda _msg: self.bias(), 10)
        self.start()

    def bias(self) -> None:
        if self.connected:
            try:
                self.ft.bias()
            except SensorError as exc:
                self.fault(str(exc))

    def open_device(self) -> None:
        self.ft.read_once(timeout=min(self.retry_s, 0.2))     # does the sensor answer at all?
        self.ft.start_streaming()
        if self.bias_on_start:
            self.ft.bias()

    def close_device(self) -> None:
        self.ft.disconnect()

    def sample_count(self) -> int:
        return self.ft.samples

    def hardware_id(self) -> str:
        return f"{self.ft.config.host}:{self.ft.config.port}"

    def publish_new(self) -> None:
        self.ft.check()
        rec = self.ft.latest()
        if rec is None or self.ft.samples == self._last:
            return
        self._last = self.ft.samples
        self.wrench_pub.publish(convert.wrench(rec.wrench, stamp=rec.stamp, frame_id=self.frame_id))
        self.published += 1

    def counters(self) -> dict[str, Any]:
        return {**super().counters(), **self.ft.parser.counters()}


def make_capture(source: str, width: int = 0, height: int = 0, fps: float = 0.0) -> Any:
    """"pattern" (moving test pattern), "synthetic_gel" (tactile emulator), or an OpenCV source
    (a device index such as "0", a video file, a URL)."""
    if source == "pattern":
        from drivers.camera_emulator import PatternCapture

        return PatternCapture(width or 320, height or 240, fps or 30.0)
    if source == "synthetic_gel":
        from drivers.tactile_emulator import SyntheticGelCapture

        return SyntheticGelCapture(MarkerGridConfig(width=width or 320, height=height or 240), fps=fps or 30.0)
    return OpenCVCapture(source, width, height, fps)


class CameraNode(SensorNode):
    default_rate_hz = 30.0

    def __init__(self, node_name: str = "camera", *, capture: Any = None, **kwargs: Any):
        super().__init__(node_name, **kwargs)
        self.cam_name = self.declare_parameter("name", "cam0").value
        source = str(self.declare_parameter("source", "0").value)
        size = (int(self.declare_parameter("width", 0).value), int(self.declare_parameter("height", 0).value))
        fps = float(self.declare_parameter("fps", 0.0).value)
        self.max_age_s = float(self.declare_parameter("max_age_s", 0.1).value)
        self.camera = Camera(capture or make_capture(source, *size, fps), CameraConfig(name=self.cam_name),
                             clock=self.get_clock())
        self.stale = 0
        self._last_seq = 0
        self.setup_outputs()
        self.start()

    def setup_outputs(self) -> None:
        self.image_pub = self.create_publisher("sensor_msgs/msg/Image", f"/camera/{self.cam_name}/image", "sensor_data")

    def open_device(self) -> None:
        self.camera.start()

    def close_device(self) -> None:
        self.camera.stop()

    def sample_count(self) -> int:
        return self.camera.frames

    def hardware_id(self) -> str:
        return self.cam_name

    def publish_new(self) -> None:
        self.camera.check()
        try:
            frame, _age = self.camera.latest(self.max_age_s)
        except NoFrame:
            return
        except StaleFrame:
            self.stale += 1
            return
        if frame.seq == self._last_seq:
            return
        self._last_seq = frame.seq
        self.publish_frame(frame)
        self.published += 1

    def publish_frame(self, frame: Any) -> None:
        frame_id = f"{self.cam_name}_optical"
        self.image_pub.publish(convert.image(frame.image, "bgr8", stamp=frame.stamp, frame_id=frame_id))

    def counters(self) -> dict[str, Any]:
        cam = self.camera
        return {**super().counters(), "read_failures": cam.read_failures, "dropped": cam.dropped, "stale": self.stale}


class TactileNode(CameraNode):
    """A gel camera + marker tracking -> `/tactile/<name>` TactileFrame (optionally PCA-embedded).

    Parameters as `CameraNode` (`source: synthetic_gel` runs the emulator) plus the marker grid
    (rows, cols, image_width, image_height, m_per_px) and `pca`: a `TactilePCA` JSON fitted on
    flattened (rows*cols*2) pixel displacement fields (`MarkerTracker.track` outputs).
    """

    def setup_outputs(self) -> None:
        g = MarkerGridConfig()
        cfg = MarkerGridConfig(
            rows=int(self.declare_parameter("rows", g.rows).value),
            cols=int(self.declare_parameter("cols", g.cols).value),
            width=int(self.declare_parameter("image_width", g.width).value),
            height=int(self.declare_parameter("image_height", g.height).value),
            m_per_px=float(self.declare_parameter("m_per_px", g.m_per_px).value),
        )
        self.tracker = MarkerTracker(cfg)
        pca = self.declare_parameter("pca", "").value
        self.pca = TactilePCA.load(pca) if pca else None
        self.tactile_pub = self.create_publisher("robot_stack_msgs/msg/TactileFrame", f"/tactile/{self.cam_name}",
                                                 "sensor_data")

    def publish_frame(self, frame: Any) -> None:
        disp = self.tracker.track(frame.image)
        emb = self.pca.transform(disp.ravel()) if self.pca is not None else None
        self.tactile_pub.publish(self.tracker.frame_msg(disp, frame.stamp, self.cam_name, embedding=emb))

    def counters(self) -> dict[str, Any]:
        return {**super().counters(), "markers_lost": self.tracker.lost, "markers_lost_last": self.tracker.lost_last}
