"""Controller pose -> end-effector target: axis remap, scale and a clutch.

While the operator is engaged the target position is `anchor + scale * A (p - p0)` and the target
rotation `(A R R0^T A^T) anchor_R`: the controller's motion since engaging, in robot axes, on
top of the anchor. `A` is the signed permutation of `FrameMapConfig.axes`, `p0`/`R0` the
controller pose when the operator engaged, the anchor where the previous engagement left the
target (`home` at first), so re-clutching never makes the target jump.
"""

from __future__ import annotations

import numpy as np

from teleop.web.config import AXES, FrameMapConfig

IDENTITY_QUAT = (0.0, 0.0, 0.0, 1.0)


def axis_matrix(axes: tuple[str, str, str]) -> np.ndarray:
    """Row i of the result picks (with sign) the controller axis that robot axis i follows."""
    m = np.zeros((3, 3))
    for row, name in enumerate(axes):
        m[row, AXES.index(name.lstrip("+-"))] = -1.0 if name.startswith("-") else 1.0
    return m


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    x, y, z, w = np.asarray(q, dtype=float) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def matrix_to_quat(m: np.ndarray) -> np.ndarray:
    """x, y, z, w (w >= 0) of a rotation matrix (Shepperd's method)."""
    t = np.trace(m)
    if t > 0:
        s = 2.0 * np.sqrt(t + 1.0)
        q = np.array([(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s])
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k])
        q = np.empty(4)
        q[i], q[j], q[k] = 0.25 * s, (m[j, i] + m[i, j]) / s, (m[k, i] + m[i, k]) / s
        q[3] = (m[k, j] - m[j, k]) / s
    q /= np.linalg.norm(q)
    return -q if q[3] < 0 else q


class Clutch:
    """Relative teleoperation: engage() remembers the controller pose; target() maps later poses."""

    def __init__(self, config: FrameMapConfig):
        self.config = config
        self._a = axis_matrix(config.axes)
        self.anchor_pos = np.array(config.home, dtype=float)
        self.anchor_rot = np.eye(3)
        self._p0: np.ndarray | None = None
        self._r0: np.ndarray | None = None
        self.last: tuple[np.ndarray, np.ndarray] | None = None    # last target (position, quaternion)

    @property
    def engaged(self) -> bool:
        return self._p0 is not None

    def engage(self, pos: tuple[float, ...], quat: tuple[float, ...]) -> None:
        self._p0, self._r0 = np.asarray(pos, dtype=float), quat_to_matrix(quat)

    def release(self) -> None:
        """Disengage; the next engagement continues from the last target."""
        if self.last is not None:
            self.anchor_pos, self.anchor_rot = self.last[0].copy(), quat_to_matrix(self.last[1])
        self._p0 = self._r0 = None

    def target(self, pos: tuple[float, ...], quat: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Robot-frame target position and quaternion (x, y, z, w) for a controller pose."""
        if self._p0 is None:
            self.engage(pos, quat)
        a = self._a
        delta = self.config.scale * (a @ (np.asarray(pos, dtype=float) - self._p0))
        rel = a @ (quat_to_matrix(quat) @ self._r0.T) @ a.T     # controller rotation since engaging, robot axes
        self.last = (self.anchor_pos + delta, matrix_to_quat(rel @ self.anchor_rot))
        return self.last
