"""Cameras: capture thread, stamped frames, stale-frame errors, counters, a real video file via OpenCV."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
from polling import settle, wait_until

from drivers.camera import Camera, CameraConfig, NoFrame, OpenCVCapture, StaleFrame
from drivers.camera_emulator import PatternCapture, frame_number
from drivers.sensor_common import SensorConfigError, SensorDisconnected
from robot_stack.clock import Clock, Time


class ManualClock(Clock):
    def __init__(self):
        super().__init__()
        self.t = Time(10**9)

    def now(self) -> Time:
        return self.t






def test_latest_reports_age_and_refuses_stale_frames():
    clock = ManualClock()
    cap = PatternCapture(64, 48, fps=0)
    cam = Camera(cap, CameraConfig(name="front"), clock=clock)
    with pytest.raises(NoFrame):
        cam.latest(1.0)
    cap.stall = True
    cam.start()
    try:
        cap.stall = False
        first = cam.wait_frame(0, timeout=2.0)
        cap.stall = True                      # no more frames
        time.sleep(0.01)
        frame, age = cam.latest(0.5)
        assert frame.seq >= first.seq and age == 0.0 and frame.stamp == clock.t
        assert frame_number(frame.image) == cap.count
        clock.t = clock.t + 0.2
        assert cam.latest(0.5)[1] == pytest.approx(0.2)
        with pytest.raises(StaleFrame, match="200.0 ms old") as info:
            cam.latest(0.1)
        assert info.value.age_s == pytest.approx(0.2)
    finally:
        cap.release()
        cam.stop()


def test_counters_and_unplug():
    cap = PatternCapture(32, 24, fps=0)
    cam = Camera(cap, CameraConfig(name="wrist", max_read_failures=5))
    cam.start()
    try:
        assert wait_until(lambda: cam.frames > 10)
        cap.fail_reads = 3
        assert wait_until(lambda: cam.read_failures >= 3)
        assert cam.dropped > 0                 # nobody took the early frames
        f = cam.wait_frame(cam.frames)
        assert f.image.shape == (24, 32, 3)
        cam.check()
        cap.unplug()
        assert wait_until(lambda: cam._reader.error is not None)
        with pytest.raises(SensorDisconnected, match="failed reads"):
            cam.check()
    finally:
        cam.stop()


def test_video_file_through_opencv(tmp_path):
    path = str(tmp_path / "clip.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (64, 48))
    pattern = PatternCapture(64, 48, fps=0)
    for i in range(20):
        writer.write(pattern.frame(i))
    writer.release()
    cam = Camera(OpenCVCapture(path), CameraConfig(name="file", max_read_failures=2))
    cam.start()
    try:
        assert wait_until(lambda: cam._reader.error is not None)   # end of file: the capture is gone
        assert cam.frames == 20
        assert np.abs(cam.latest(10.0)[0].image.astype(int) - pattern.frame(19)).mean() < 10
    finally:
        cam.stop()


def test_unopenable_capture_and_config():
    with pytest.raises(SensorDisconnected, match="could not be opened"):
        Camera(OpenCVCapture("/nonexistent.avi")).start()
    with pytest.raises(SensorConfigError):
        CameraConfig(name="a/b")


def test_camera_node_publishes_and_trips(ctx):
    from drivers.sensor_nodes import CameraNode
    from robot_stack import convert
    from robot_stack.node import Node

    cap = PatternCapture(64, 48, fps=0)
    node = CameraNode("cam", context=ctx, capture=cap, parameter_overrides={"name": "front", "max_age_s": 10.0})
    listener = Node("listener", context=ctx)
    sub = listener.create_subscription("sensor_msgs/msg/Image", "/camera/front/image", lambda m: None, 10)
    try:
        node.tick()
        node.camera.wait_frame(0, timeout=2.0)
        node.tick()
        msg = sub.take()
        assert (msg.width, msg.height, msg.encoding) == (64, 48, "bgr8")
        assert convert.image_array(msg).shape == (48, 64, 3)
        cap.fail_reads = 10**6                 # the camera stops delivering frames
        settle(lambda: node.camera.frames, quiet=0.02)
        node.tick()
        node.tick()
        node.tick()
        assert node.faulted and node.status.startswith("fault: ")
        assert "silent" in node.status or "failed reads" in node.status
    finally:
        cap.release()
        node.destroy_node()
        listener.destroy_node()
