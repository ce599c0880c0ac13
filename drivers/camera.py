"""Cameras: a capture thread per camera over anything with OpenCV's `VideoCapture` surface
(`read() -> (ok, frame)`, `isOpened()`, `release()`), frames stamped with the process clock.

`Camera.latest(max_age_s)` hands back the newest frame with its age, and raises `StaleFrame`
(older than `max_age_s`) or `NoFrame` (nothing captured yet) rather than a stale image. Counters:
`frames` (captured), `read_failures` (read() returned no frame), `dropped` (captured frames that
were replaced before anybody took them with `latest()`/`wait_frame()`).
`OpenCVCapture` wraps `cv2.VideoCapture` (a device index, a file, a URL); `drivers.camera_emulator`
has a generated moving pattern with the same surface.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from drivers.sensor_common import ReaderThread, SensorConfigError, SensorDisconnected, SensorError, SensorTimeout
from robot_stack.clock import Clock, Time


class NoFrame(SensorError):
    """The camera has not captured any frame yet."""


class StaleFrame(SensorError):
    """The newest frame is older than the caller allows."""

    def __init__(self, camera: str, age_s: float, max_age_s: float):
        self.age_s, self.max_age_s = age_s, max_age_s
        super().__init__(f"camera '{camera}': newest frame is {age_s * 1e3:.1f} ms old (max {max_age_s * 1e3:.1f} ms)")


class Capture(Protocol):
    def read(self) -> tuple[bool, np.ndarray | None]: ...
    def isOpened(self) -> bool: ...  # noqa: N802 (OpenCV's name)
    def release(self) -> None: ...


class OpenCVCapture:
    """`cv2.VideoCapture(source)` opened lazily (no I/O before `open()`), optional size/fps requests."""

    def __init__(self, source: int | str, width: int = 0, height: int = 0, fps: float = 0.0):
        self.source, self.width, self.height, self.fps = source, width, height, fps
        self._cap: Any = None

    def open(self) -> None:
        import cv2

        src = int(self.source) if isinstance(self.source, str) and self.source.isdigit() else self.source
        self._cap = cv2.VideoCapture(src)
        for prop, value in ((cv2.CAP_PROP_FRAME_WIDTH, self.width), (cv2.CAP_PROP_FRAME_HEIGHT, self.height),
                            (cv2.CAP_PROP_FPS, self.fps)):
            if value:
                self._cap.set(prop, value)

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self._cap is None:
            self.open()
        return self._cap.read()

    def isOpened(self) -> bool:  # noqa: N802
        if self._cap is None:
            self.open()
        return bool(self._cap.isOpened())

    def release(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


@dataclass(frozen=True)
class Frame:
    image: np.ndarray    # HxWx3 uint8, BGR as OpenCV captures it
    stamp: Time          # capture time (the process clock right after read() returned)
    seq: int             # 1, 2, ... per camera


@dataclass(frozen=True)
class CameraConfig:
    name: str = "cam0"
    max_read_failures: int = 30       # read() failures in a row before the camera counts as gone
    retry_sleep_s: float = 0.005

    def __post_init__(self):
        if not self.name or "/" in self.name:
            raise SensorConfigError(f"CameraConfig.name must be a non-empty topic-safe name, got {self.name!r}")
        if self.max_read_failures < 1:
            raise SensorConfigError(f"CameraConfig.max_read_failures must be >= 1, got {self.max_read_failures}")


class Camera:
    """One camera: `start()` runs the capture thread; `latest()` / `wait_frame()` read frames."""

    def __init__(self, capture: Capture, config: CameraConfig | None = None, *,
                 clock: Clock | None = None):
        self.config = config or CameraConfig()
        self.clock = clock or Clock()
        self._capture_arg = capture
        self._cap: Capture | None = None
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._taken_seq = 0
        self.frames = 0
        self.read_failures = 0
        self.dropped = 0
        self._fail_streak = 0
        self._reader = ReaderThread(f"camera:{self.config.name}", self._capture_once)

    @property
    def name(self) -> str:
        return self.config.name

    def start(self) -> None:
        if self._reader.running:
            return
        cap = self._capture_arg
        if not cap.isOpened():
            raise SensorDisconnected(f"camera '{self.name}': capture could not be opened")
        self._cap, self._fail_streak = cap, 0
        self._reader.start()

    def _capture_once(self) -> None:
        ok, image = self._cap.read()
        stamp = self.clock.now()
        if not ok or image is None:
            self.read_failures += 1
            self._fail_streak += 1
            if self._fail_streak >= self.config.max_read_failures:
                raise SensorDisconnected(f"camera '{self.name}': {self._fail_streak} failed reads in a row")
            time.sleep(self.config.retry_sleep_s)
            return
        self._fail_streak = 0
        with self._cond:
            if self._frame is not None and self._frame.seq > self._taken_seq:
                self.dropped += 1
            self.frames += 1
            self._frame = Frame(image, stamp, self.frames)
            self._cond.notify_all()

    def check(self) -> None:
        if self._reader.error is not None:
            raise SensorDisconnected(f"camera '{self.name}' stopped: {self._reader.error}")

    def _take(self, max_age_s: float) -> tuple[Frame, float]:
        frame = self._frame
        if frame is None:
            self.check()
            raise NoFrame(f"camera '{self.name}' has no frame yet")
        age = self.clock.now() - frame.stamp
        if age > max_age_s:
            self.check()
            raise StaleFrame(self.name, age, max_age_s)
        self._taken_seq = max(self._taken_seq, frame.seq)
        return frame, age

    def latest(self, max_age_s: float) -> tuple[Frame, float]:
        """(newest frame, its age in s); StaleFrame / NoFrame / SensorDisconnected otherwise."""
        with self._cond:
            return self._take(max_age_s)

    def wait_frame(self, after_seq: int = 0, timeout: float = 1.0) -> Frame:
        """Block until a frame newer than `after_seq` is captured."""
        with self._cond:
            ready = self._cond.wait_for(
                lambda: (self._frame is not None and self._frame.seq > after_seq) or self._reader.error is not None,
                timeout,
            )
            self.check()
            if not ready:
                raise SensorTimeout(f"camera '{self.name}': no new frame within {timeout:.3f} s")
            return self._take(float("inf"))[0]

    def stop(self) -> None:
        self._reader.stop()
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()
