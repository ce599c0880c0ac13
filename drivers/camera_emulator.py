"""Camera emulator: a generated moving pattern with `cv2.VideoCapture`'s read()/isOpened()/release().

`PatternCapture` draws a colour gradient with a moving square and the frame number, paced at
`fps` (0 = as fast as asked). Faults: `fail_reads = n` (the next n reads return no frame),
`stall = True` (read() blocks, like a camera that stopped delivering), `unplug()` (every read
fails from now on). A recorded file plays through `drivers.camera.OpenCVCapture(path)`.
"""

from __future__ import annotations

import time

import numpy as np


class PatternCapture:
    def __init__(self, width: int = 320, height: int = 240, fps: float = 30.0):
        self.width, self.height, self.fps = width, height, fps
        self.count = 0
        self.fail_reads = 0
        self.stall = False
        self._unplugged = False
        self._opened = True
        self._next = 0.0
        ys, xs = np.mgrid[0:height, 0:width]
        self._base = np.stack([xs * 255 // max(width - 1, 1), ys * 255 // max(height - 1, 1),
                               np.full_like(xs, 96)], axis=-1).astype(np.uint8)

    def frame(self, i: int) -> np.ndarray:
        """Frame number `i`: the gradient with a 32-px white square moving left to right."""
        img = self._base.copy()
        x = (i * 4) % max(self.width - 32, 1)
        y = (self.height - 32) // 2
        img[y:y + 32, x:x + 32] = 255
        img[0, 0:4, 0] = np.frombuffer(int(i).to_bytes(4, "little"), np.uint8)   # frame number, readable back
        return img

    def read(self) -> tuple[bool, np.ndarray | None]:
        while self.stall and self._opened:
            time.sleep(0.005)
        if self._unplugged or not self._opened:
            time.sleep(0.001)
            return False, None
        if self.fail_reads > 0:
            self.fail_reads -= 1
            return False, None
        if self.fps > 0:
            now = time.monotonic()
            self._next = max(self._next + 1.0 / self.fps, now)
            time.sleep(max(0.0, self._next - now))
        self.count += 1
        return True, self.frame(self.count)

    def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
        return self._opened

    def release(self) -> None:
        self._opened = False

    def unplug(self) -> None:
        self._unplugged = True


def frame_number(image: np.ndarray) -> int:
    return int.from_bytes(np.ascontiguousarray(image[0, 0:4, 0]).tobytes(), "little")
