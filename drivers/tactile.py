"""Vision-tactile (GelSight-like) pads: markers on the gel tracked in camera frames -> displacement
field -> `robot_stack_msgs/TactileFrame` (the layout `sim.tactile` produces), plus a PCA embedding.

Tracking, per frame (`MarkerTracker.track`):
1. grey image; the illumination is estimated by a morphological closing (which erases the dark
   dots) and the "darkness" = background - image, so uneven lighting does not move the markers;
2. darkness > `threshold` -> mask, dilated by `edge_px` so a dot's soft edge belongs to it;
   connected components with an area in [min_area, max_area] are markers;
3. each marker's position is its darkness-weighted centroid (sub-pixel);
4. matching: every grid marker takes its nearest detection within `max_match_px` of where it is
   expected (its rest position, or with `temporal` its last tracked position), mutual nearest
   neighbours only; a marker with no match keeps its last position and is counted `lost`.
Displacements are image pixels converted to the pad frame with `m_per_px` (pad x = image x, pad y =
image y); the 2-D markers give no indentation, so `normal` is 0 and `normal_force` NaN.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from drivers.sensor_common import SensorConfigError, SensorError
from robot_stack import convert, messages
from robot_stack.clock import Time

TACTILE_FRAME = "robot_stack_msgs/msg/TactileFrame"


class TrackingError(SensorError):
    """Markers could not be found or matched as required (e.g. calibrating a reference grid)."""


@dataclass(frozen=True)
class MarkerGridConfig:
    rows: int = 7
    cols: int = 9
    width: int = 320                # image size [px]
    height: int = 240
    m_per_px: float = 24e-3 / 320   # pad metres per image pixel (a 24 mm wide pad across 320 px)
    threshold: float = 25.0         # darkness (grey levels below the local background) of a marker pixel
    edge_px: int = 2
    min_area: int = 6
    max_area: int = 400
    max_match_px: float = 12.0
    temporal: bool = True

    def __post_init__(self):
        if self.rows < 1 or self.cols < 1 or self.width < 8 or self.height < 8:
            raise SensorConfigError(
                f"MarkerGridConfig: bad grid {self.rows}x{self.cols} / image {self.width}x{self.height}")
        for name in ("m_per_px", "threshold", "max_match_px"):
            if not getattr(self, name) > 0:
                raise SensorConfigError(f"MarkerGridConfig.{name} must be > 0, got {getattr(self, name)}")

    def grid_px(self) -> np.ndarray:
        """(rows*cols, 2) default rest positions [x, y] px: cell centres, row-major."""
        xs = (np.arange(self.cols) + 0.5) * self.width / self.cols
        ys = (np.arange(self.rows) + 0.5) * self.height / self.rows
        gx, gy = np.meshgrid(xs, ys)
        return np.column_stack([gx.ravel(), gy.ravel()])


def detect_markers(image: np.ndarray, cfg: MarkerGridConfig) -> np.ndarray:
    """(D, 2) sub-pixel marker centres [x, y] in an HxW or HxWx3 uint8 image."""
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    grey = grey.astype(np.float32)
    k = 2 * int(np.sqrt(cfg.max_area / np.pi)) + 3
    background = cv2.morphologyEx(grey, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    dark = background - grey
    mask = (dark > cfg.threshold).astype(np.uint8)
    if cfg.edge_px:
        e = 2 * cfg.edge_px + 1
        mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (e, e)))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 1:
        return np.zeros((0, 2))
    w = np.clip(dark, 0, None).ravel()
    lab = labels.ravel()
    ys, xs = np.divmod(np.arange(lab.size), grey.shape[1])
    sw = np.bincount(lab, weights=w, minlength=n)
    sx = np.bincount(lab, weights=w * xs, minlength=n)
    sy = np.bincount(lab, weights=w * ys, minlength=n)
    area = stats[:, cv2.CC_STAT_AREA]
    keep = (np.arange(n) > 0) & (area >= cfg.min_area) & (area <= cfg.max_area) & (sw > 0)
    return np.column_stack([sx[keep] / sw[keep], sy[keep] / sw[keep]])


def match_nearest(expected: np.ndarray, found: np.ndarray, max_dist: float) -> np.ndarray:
    """For each expected point (K, 2), the index of its mutual-nearest found point (D, 2) within
    `max_dist`, else -1."""
    out = np.full(len(expected), -1, dtype=np.intp)
    if len(found) == 0 or len(expected) == 0:
        return out
    d = np.linalg.norm(expected[:, None, :] - found[None, :, :], axis=2)      # (K, D)
    best = d.argmin(axis=1)
    back = d.argmin(axis=0)
    ok = (d[np.arange(len(expected)), best] <= max_dist) & (back[best] == np.arange(len(expected)))
    out[ok] = best[ok]
    return out


def reference_from_image(image: np.ndarray, cfg: MarkerGridConfig) -> np.ndarray:
    """Rest positions (rows*cols, 2) from an image of the unloaded gel, sorted row-major."""
    found = detect_markers(image, cfg)
    if len(found) != cfg.rows * cfg.cols:
        raise TrackingError(f"reference image: found {len(found)} markers, expected {cfg.rows}x{cfg.cols}")
    rows = found[np.argsort(found[:, 1])].reshape(cfg.rows, cfg.cols, 2)
    return np.concatenate([r[np.argsort(r[:, 0])] for r in rows])


class MarkerTracker:
    """Tracks the grid through frames; `track(image)` -> (K, 2) displacement in px."""

    def __init__(self, cfg: MarkerGridConfig | None = None, reference_px: np.ndarray | None = None):
        self.config = cfg or MarkerGridConfig()
        ref = self.config.grid_px() if reference_px is None else np.asarray(reference_px, float)
        if ref.shape != (self.config.rows * self.config.cols, 2):
            k = self.config.rows * self.config.cols
            raise SensorConfigError(f"reference grid has shape {ref.shape}, expected ({k}, 2)")
        self.reference = ref
        self.position = ref.copy()
        self.frames = 0
        self.lost = 0             # marker-frames without a match
        self.lost_last = 0

    def reset(self) -> None:
        self.position = self.reference.copy()

    def track(self, image: np.ndarray) -> np.ndarray:
        found = detect_markers(image, self.config)
        expected = self.position if self.config.temporal else self.reference
        idx = match_nearest(expected, found, self.config.max_match_px)
        hit = idx >= 0
        self.position = np.where(hit[:, None], found[np.maximum(idx, 0)] if len(found) else expected, self.position)
        self.lost_last = int((~hit).sum())
        self.lost += self.lost_last
        self.frames += 1
        return self.position - self.reference

    def field_m(self, disp_px: np.ndarray) -> np.ndarray:
        """(K, 3) [shear_x, shear_y, normal=0] in metres from (K, 2) pixel displacements."""
        disp = np.asarray(disp_px, float) * self.config.m_per_px
        return np.column_stack([disp, np.zeros(len(disp))]).astype(np.float32)

    def rest_m(self) -> np.ndarray:
        """(K, 2) rest positions in the pad frame [m] (origin at the image centre)."""
        c = np.array([self.config.width / 2, self.config.height / 2])
        return ((self.reference - c) * self.config.m_per_px).astype(np.float32)

    def frame_msg(self, disp_px: np.ndarray, stamp: Time, sensor_id: str, frame_id: str = "",
                  embedding: np.ndarray | None = None) -> Any:
        cfg = self.config
        emb = np.zeros(0, np.float32) if embedding is None else np.asarray(embedding, np.float32).ravel()
        return messages.make(
            TACTILE_FRAME, header=convert.header(stamp, frame_id or f"{sensor_id}_pad"), sensor_id=sensor_id,
            rows=cfg.rows, cols=cfg.cols, marker_rest=self.rest_m().ravel(),
            displacement=self.field_m(disp_px).ravel(), embedding=emb, normal_force=float("nan"),
        )


class TactilePCA:
    """PCA embedding of displacement fields (numpy SVD), stored as JSON (never pickle)."""

    def __init__(self, mean: np.ndarray, components: np.ndarray, explained_variance: np.ndarray):
        self.mean = np.asarray(mean, np.float64)
        self.components = np.asarray(components, np.float64)          # (n_components, dim)
        self.explained_variance = np.asarray(explained_variance, np.float64)
        if self.components.ndim != 2 or self.components.shape[1] != self.mean.size:
            raise SensorConfigError(
                f"TactilePCA: components {self.components.shape} do not match mean {self.mean.shape}")

    @classmethod
    def fit(cls, fields: np.ndarray, n_components: int = 15) -> TactilePCA:
        x = np.asarray(fields, np.float64).reshape(len(fields), -1)
        if len(x) < 2:
            raise SensorConfigError(f"TactilePCA.fit needs at least 2 samples, got {len(x)}")
        n = min(n_components, *x.shape)
        mean = x.mean(axis=0)
        _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
        return cls(mean, vt[:n], s[:n] ** 2 / max(len(x) - 1, 1))

    def transform(self, fields: np.ndarray) -> np.ndarray:
        x = np.asarray(fields, np.float64)
        single = x.ndim == 1
        out = (x.reshape(-1, self.mean.size) - self.mean) @ self.components.T
        return (out[0] if single else out).astype(np.float32)

    def inverse(self, codes: np.ndarray) -> np.ndarray:
        return np.asarray(codes, np.float64) @ self.components + self.mean

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"format": "robot_stack.tactile_pca/1", "mean": self.mean.tolist(),
                                          "components": self.components.tolist(),
                                          "explained_variance": self.explained_variance.tolist()}))

    @classmethod
    def load(cls, path: str | Path) -> TactilePCA:
        try:
            data = json.loads(Path(path).read_text())
            return cls(np.array(data["mean"]), np.array(data["components"]), np.array(data["explained_variance"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SensorConfigError(f"{path}: not a tactile PCA file: {exc}") from exc
