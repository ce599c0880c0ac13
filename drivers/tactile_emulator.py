"""Synthetic marker-gel images (the vision-tactile emulator).

`render_gel` draws a 320x240 (by default) gel: uneven illumination (a smooth gradient and
vignette), dark anti-aliased dots on the `MarkerGridConfig` grid displaced by a known field (px),
and Gaussian noise. `SyntheticGelCapture` serves such frames through the `cv2.VideoCapture`
surface (read()/isOpened()/release()) with a displacement field that moves over time (`field_at`),
so `drivers.camera.Camera` and the tactile node run on it as on a real gel camera.
"""

from __future__ import annotations

import math
import time

import numpy as np

from drivers.tactile import MarkerGridConfig


def _illumination(cfg: MarkerGridConfig, strength: float) -> np.ndarray:
    ys, xs = np.mgrid[0:cfg.height, 0:cfg.width].astype(np.float32)
    u, v = xs / cfg.width - 0.5, ys / cfg.height - 0.5
    return 200.0 * (1.0 - strength * (0.6 * (u * u + v * v) + 0.3 * u))


def render_gel(cfg: MarkerGridConfig, displacement_px: np.ndarray | None = None, *,
               reference_px: np.ndarray | None = None,
               radius: float = 4.0, contrast: float = 0.7, noise_std: float = 2.0, illumination: float = 0.3,
               rng: np.random.Generator | None = None) -> np.ndarray:
    """HxWx3 uint8 BGR gel image with markers at reference + displacement (both (K, 2) px)."""
    rng = rng or np.random.default_rng()
    ref = cfg.grid_px() if reference_px is None else np.asarray(reference_px, float)
    pos = ref + (0.0 if displacement_px is None else np.asarray(displacement_px, float))
    img = _illumination(cfg, illumination)
    shade = np.ones_like(img)
    r = int(math.ceil(radius + 2))
    for x, y in pos:
        x0, y0 = int(round(x)) - r, int(round(y)) - r
        x1, y1 = x0 + 2 * r + 1, y0 + 2 * r + 1
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, cfg.width), min(y1, cfg.height)
        if cx0 >= cx1 or cy0 >= cy1:
            continue
        yy, xx = np.mgrid[cy0:cy1, cx0:cx1]
        d = np.hypot(xx - x, yy - y)
        cover = np.clip(radius + 0.5 - d, 0.0, 1.0)              # anti-aliased disc coverage
        shade[cy0:cy1, cx0:cx1] *= 1.0 - contrast * cover
    img = img * shade + rng.normal(0.0, noise_std, img.shape)
    grey = np.clip(np.round(img), 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def field_at(cfg: MarkerGridConfig, t: float, amplitude_px: float = 5.0) -> np.ndarray:
    """A known moving field (K, 2) px: a press whose centre circles the pad, dragging markers
    outwards around it, plus a slow uniform shear."""
    ref = cfg.grid_px()
    centre = np.array([cfg.width * (0.5 + 0.25 * math.cos(t)), cfg.height * (0.5 + 0.25 * math.sin(t))])
    rel = ref - centre
    sigma = 0.2 * cfg.width
    bump = np.exp(-(rel ** 2).sum(1) / (2 * sigma**2))[:, None]
    radial = amplitude_px * bump * rel / sigma
    shear = 0.4 * amplitude_px * np.array([math.sin(0.5 * t), math.cos(0.5 * t)])
    return radial + shear


class SyntheticGelCapture:
    """Gel frames of `field_at(t)` (t = seconds since the first read), paced at `fps` (0 = unpaced)."""

    def __init__(self, cfg: MarkerGridConfig | None = None, fps: float = 30.0, noise_std: float = 2.0, seed: int = 0):
        self.cfg = cfg or MarkerGridConfig()
        self.fps, self.noise_std = fps, noise_std
        self._rng = np.random.default_rng(seed)
        self._opened = True
        self._t0: float | None = None
        self._next = 0.0
        self.count = 0
        self.last_field: np.ndarray | None = None

    def read(self) -> tuple[bool, np.ndarray | None]:
        if not self._opened:
            return False, None
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = self._next = now
        if self.fps > 0:
            self._next = max(self._next + 1.0 / self.fps, now)
            time.sleep(max(0.0, self._next - now))
        self.last_field = field_at(self.cfg, time.monotonic() - self._t0)
        self.count += 1
        return True, render_gel(self.cfg, self.last_field, noise_std=self.noise_std, rng=self._rng)

    def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
        return self._opened

    def release(self) -> None:
        self._opened = False
