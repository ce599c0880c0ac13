"""Scripted `wipe` demonstrator: plan a raster from the first observation, then follow it on force feedback.

Approach above the first raster point, descend until the wrist F/T feels contact, then sweep a
boustrophedon path over the marked area (one row per cell row) while an integral (+ proportional)
term on the normal-force error moves the commanded depth; the raster only advances while the force
is in the band (or after `max_wait` steps), and an integral term on the end-effector's sideways
tracking error compensates friction drag and the arm's posture-dependent deflection. Cells still
dry after the raster are visited one by one, from the `wiped` observation.

Only the first observation's surface pose is used (where the area is and how it is tilted, as a
camera would see it); after that the depth follows the measured force alone, so a perturbation
that lifts, lowers or tilts the board is handled by force feedback, not by reading its new pose.
The normal force is -fz of the tared wrist wrench (the sensor's z axis points along the tool).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from sim.tasks.base import Expert

if TYPE_CHECKING:
    from sim.tasks.wipe import Wipe


class WipeExpert(Expert):
    """Approach, guarded descent, raster with force regulation, then the leftovers (see the module)."""

    approach_step = 0.02        # m per control step in free space
    descend_step = 0.003        # m per control step while seeking contact
    wipe_step = 0.01            # m per control step along the raster
    ki = 1.5e-4                 # m per N per step (integral on the force error)
    kp = 1.0e-4                 # m per N (proportional)
    max_dz = 0.006              # m, largest depth change per step
    hover = 0.03                # m above the surface before descending
    contact_force = 2.0         # N that counts as contact
    max_wait = 5                # steps the raster waits for an in-band force before moving on
    kxy = 0.3                   # per step, integral gain on the tool's sideways tracking error
    max_shift = 0.03            # m

    def __init__(self, task: Wipe):
        super().__init__(task)
        self.reset()

    def reset(self) -> None:
        self.phase = "approach"
        self.plan: tuple[np.ndarray, np.ndarray] | None = None
        self.path: np.ndarray | None = None
        self.index = 0
        self.depth = 0.0
        self.wait = 0
        self.shift = np.zeros(2)
        self.command = np.zeros(3)

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        if self.plan is None:
            self.plan = (obs["surface_pos"].astype(float), quat_matrix(obs["surface_quat"]))
            self.path = self._raster()
            self.command = obs["ee_pos"].astype(float)
        cfg = self.task.config
        force = -float(obs["wrench"][2])
        if self.phase == "approach":
            height = self.task.tool_length + self.hover
            start = self._on_plane(self.path[0]) + np.array([0.0, 0.0, height])
            self.command = _toward(self.command, start, self.approach_step)
            if np.linalg.norm(self.command - start) < 1e-9:
                self.phase, self.depth = "descend", height
            return self.command
        if self.phase == "descend":
            if force < self.contact_force:
                self.depth -= self.descend_step
                return self._on_plane(self.path[0]) + np.array([0.0, 0.0, self.depth])
            self.phase = "wipe"
        return self._wipe(obs, force, cfg.target_force, cfg.force_band)

    def _wipe(self, obs, force: float, target: float, band: float) -> np.ndarray:
        error = target - force
        step = -self.descend_step if force < self.contact_force else -self.ki * error
        self.depth += float(np.clip(step, -self.max_dz, self.max_dz))
        in_band = abs(error) < 0.7 * band
        self.wait = 0 if in_band else self.wait + 1
        if in_band or self.wait > self.max_wait:
            self.index += 1
        if self.index >= len(self.path):
            self.path, self.index = self._leftovers(obs), 0
        point = self._on_plane(self.path[self.index])
        if force >= self.contact_force:     # integral correction of the tool's sideways offset (friction, posture)
            self.shift += self.kxy * (point[:2] - obs["ee_pos"][:2])
            self.shift = np.clip(self.shift, -self.max_shift, self.max_shift)
        return point + np.array([*self.shift, self.depth - self.kp * error])

    def _on_plane(self, uv: np.ndarray) -> np.ndarray:
        """World point on the planned surface plane at area coordinates (u, v)."""
        center, rot = self.plan
        return center + rot[:, 0] * uv[0] + rot[:, 1] * uv[1]

    def _raster(self) -> np.ndarray:
        cfg = self.task.config
        (sx, sy), ny = cfg.area_size, cfg.grid[1]
        us = np.arange(-sx / 2 + 0.006, sx / 2 - 0.006 + 1e-9, self.wipe_step)
        rows = [(k + 0.5) * sy / ny - sy / 2 for k in range(ny)]
        path = []
        for k, v in enumerate(rows):
            path += [(u, v) for u in (us if k % 2 == 0 else us[::-1])]
        return _densify(np.array(path), self.wipe_step)

    def _leftovers(self, obs) -> np.ndarray:
        """A path through the centres of the cells not wiped yet (greedy nearest first)."""
        cfg = self.task.config
        (sx, sy), (nx, ny) = cfg.area_size, cfg.grid
        dry = np.argwhere(obs["wiped"].reshape(ny, nx) < 0.5)
        cells = [np.array([(ix + 0.5) * sx / nx - sx / 2, (iy + 0.5) * sy / ny - sy / 2]) for iy, ix in dry]
        path = [self.path[-1]]
        while cells:
            k = int(np.argmin([np.linalg.norm(c - path[-1]) for c in cells]))
            path.append(cells.pop(k))
        return _densify(np.array(path), self.wipe_step)


def _densify(path: np.ndarray, step: float) -> np.ndarray:
    out = [path[0]]
    for a, b in zip(path[:-1], path[1:], strict=True):
        n = max(1, int(np.ceil(np.linalg.norm(b - a) / step - 1e-6)))
        out += [a + (b - a) * (k / n) for k in range(1, n + 1)]
    return np.array(out)


def _toward(current: np.ndarray, goal: np.ndarray, step: float) -> np.ndarray:
    d = goal - current
    n = float(np.linalg.norm(d))
    return goal.copy() if n <= step else current + d * (step / n)


def quat_matrix(q) -> np.ndarray:
    """Rotation matrix of a unit quaternion (x, y, z, w)."""
    x, y, z, w = np.asarray(q, dtype=float) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])
