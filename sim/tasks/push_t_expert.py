"""Scripted push_t demonstrator: greedy push planning on a quasi-static model, re-planned after each push.

Every plan step scores candidate pushes: a contact point on the T's outline (sampled every
`spacing` along the edges, outward normal n), pushed along -n for a few lengths. The block's
motion under a sticking point push follows the ellipsoidal limit-surface model (Lynch & Mason):
for a contact at r (block frame, from the centre of mass) and pusher velocity v,
    v_block = ((c^2 + rx^2) vx + rx ry vy, rx ry vx + (c^2 + ry^2) vy) / (c^2 + rx^2 + ry^2),
    omega   = (rx v_block_y - ry v_block_x) / c^2,
with c the block's radius of gyration about its centre. A push is scored by the predicted pose
error after it (|dp| + `angle_weight` |dyaw|) plus the travel needed to reach it, and executed
closed-loop: approach (around the block when the straight path is blocked), push, back off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from sim.tasks.base import Expert

if TYPE_CHECKING:
    from sim.tasks.push_t import PushT

PUSHER_RADIUS = 0.017       # closed Panda fingertips, as a disc [m]
CLEARANCE = 0.012           # gap left in front of the contact before a push [m]


def _wrap(a: float) -> float:
    return (a + np.pi) % (2 * np.pi) - np.pi


class PushTExpert(Expert):
    travel_step = 0.04      # m per control step while travelling
    push_step = 0.012       # m per control step while pushing
    angle_weight = 0.1      # m of position error worth one radian of yaw error
    travel_weight = 0.03    # cost per m of travel to reach a contact
    spacing = 0.01          # m between candidate contact points
    lengths = (0.004, 0.01, 0.025, 0.05, 0.08)

    def __init__(self, task: PushT):
        super().__init__(task)
        from sim.tasks.push_t import signed_distance, to_local, to_world

        self._sd, self._to_local, self._to_world = signed_distance, to_local, to_world
        self._contacts, self._normals = self._outline(task.rects)             # (K, 2), (K, 2) block frame
        pts = task._goal_points_local
        self._c2 = float(np.mean(np.sum(pts**2, axis=1)))                      # radius of gyration^2
        corners = np.concatenate([task.rects[:, [0, 1]], task.rects[:, [2, 3]], task.rects[:, [0, 3]],
                                  task.rects[:, [2, 1]]])
        reach = float(np.max(np.linalg.norm(corners, axis=1))) + PUSHER_RADIUS
        self._rings = (reach + 0.01, reach + 0.035)
        self.reset()

    def reset(self) -> None:
        self._phase, self._start, self._end, self._backoff = "plan", None, None, None
        self._path, self._path_block, self._banned = None, None, set()

    # --- acting -----------------------------------------------------------------------------------
    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        pos = np.asarray(obs["agent_pos"], float)
        block, goal = np.asarray(obs["block_pose"], float), np.asarray(obs["goal_pose"], float)
        if self._phase == "plan":
            plan = self._plan(pos, block, goal)
            if plan is None:
                return self._step(pos, self._clear_spot(pos, block), self.travel_step)
            self._start, self._end, self._backoff, self._contact = plan
            self._phase, self._approach_steps, self._path = "approach", 0, None
        if self._phase == "approach":
            self._approach_steps += 1
            if np.linalg.norm(pos - self._start) < 0.006:
                self._phase = "push"
            elif self._approach_steps > 60 or self._path == []:   # cannot get there: re-plan without it
                self._banned.add(self._contact)
                self._phase = "plan"
                return pos
            else:
                return self._route(pos, self._start, block)
        if self._phase == "push":
            if np.linalg.norm(pos - self._end) < 0.006:
                self._phase, self._banned = "backoff", set()
            else:
                return self._step(pos, self._end, self.push_step)
        self._phase = "plan"
        return self._step(pos, self._backoff, self.travel_step)

    def _step(self, pos: np.ndarray, target: np.ndarray, size: float) -> np.ndarray:
        d = target - pos
        n = np.linalg.norm(d)
        return target.copy() if n <= size else pos + d * (size / n)

    def _clear_spot(self, pos: np.ndarray, block: np.ndarray) -> np.ndarray:
        """Nothing worth pushing: stay put, or step away if touching the block."""
        if self._sd(self._to_local(pos[None], block), self.task.rects)[0] < PUSHER_RADIUS + 0.005:
            away = pos - block[:2]
            return pos + 0.02 * away / max(np.linalg.norm(away), 1e-9)
        return pos

    def _route(self, pos: np.ndarray, target: np.ndarray, block: np.ndarray) -> np.ndarray:
        """Next waypoint toward `target` on a collision-free path around the block."""
        if self._path is None or np.linalg.norm(block - self._path_block) > 0.005:
            self._path, self._path_block = self._shortest_path(pos, target, block), block.copy()
        while self._path and np.linalg.norm(self._path[0] - pos) < 0.008 and len(self._path) > 1:
            self._path.pop(0)
        return self._step(pos, self._path[0], self.travel_step) if self._path else pos

    def _shortest_path(self, pos: np.ndarray, target: np.ndarray, block: np.ndarray) -> list[np.ndarray]:
        """Dijkstra over rings of waypoints around the block (inside the workspace, clear of it)."""
        escape = []
        if not self._clear(pos, pos, block):            # touching the block: first step straight out of it
            pos = pos + 0.02 * self._outward(pos, block)
            escape = [pos]
        if self._clear(pos, target, block):
            return escape + [target]
        a = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        ring = np.concatenate([block[:2] + r * np.stack([np.cos(a), np.sin(a)], 1) for r in self._rings])
        lo, hi = np.array(self.task.config.workspace_low), np.array(self.task.config.workspace_high)
        ring = ring[np.all((ring >= lo) & (ring <= hi), axis=1)]
        nodes = np.concatenate([pos[None], ring, target[None]])                   # (N, 2): start .. goal
        n = len(nodes)
        s = np.linspace(0.0, 1.0, 12)[None, None, :, None]
        pts = nodes[:, None, None, :] + s * (nodes[None, :, None, :] - nodes[:, None, None, :])   # (N, N, 12, 2)
        sd = self._sd(self._to_local(pts.reshape(-1, 2), block), self.task.rects).reshape(n, n, -1)
        length = np.linalg.norm(nodes[:, None] - nodes[None], axis=2)
        cost = np.where(sd.min(axis=2) > PUSHER_RADIUS + 0.003, length, np.inf)  # (N, N)
        dist, prev, done = np.full(n, np.inf), np.full(n, -1), np.zeros(n, bool)
        dist[0] = 0.0
        for _ in range(n):
            i = int(np.argmin(np.where(done, np.inf, dist)))
            if not np.isfinite(dist[i]) or i == n - 1:
                break
            done[i] = True
            better = (dist[i] + cost[i] < dist) & ~done
            dist[better], prev[better] = dist[i] + cost[i][better], i
        if not np.isfinite(dist[-1]):
            return []
        path, i = [], n - 1
        while i > 0:
            path.append(nodes[i])
            i = prev[i]
        return escape + path[::-1]

    def _outward(self, pos: np.ndarray, block: np.ndarray) -> np.ndarray:
        """Unit direction increasing the distance to the block at `pos` (numeric gradient)."""
        e = 1e-3
        pts = pos + np.array([[e, 0], [-e, 0], [0, e], [0, -e]])
        d = self._sd(self._to_local(pts, block), self.task.rects)
        g = np.array([d[0] - d[1], d[2] - d[3]])
        return g / max(np.linalg.norm(g), 1e-9)

    def _clear(self, a: np.ndarray, b: np.ndarray, block: np.ndarray) -> bool:
        s = np.linspace(0.0, 1.0, max(2, int(np.linalg.norm(b - a) / 0.005) + 1))[:, None]
        pts = a + s * (b - a)
        return bool(np.all(self._sd(self._to_local(pts, block), self.task.rects) > PUSHER_RADIUS + 0.003))

    # --- planning ---------------------------------------------------------------------------------
    def _cost(self, pose: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """(N,) pose error of (N, 3) poses."""
        pose = np.atleast_2d(pose)
        dyaw = (pose[:, 2] - goal[2] + np.pi) % (2 * np.pi) - np.pi
        return np.linalg.norm(pose[:, :2] - goal[:2], axis=1) + self.angle_weight * np.abs(dyaw)

    def _plan(self, pos: np.ndarray, block: np.ndarray, goal: np.ndarray):
        """(approach point, push end, back-off point) of the best push, or None if none helps."""
        now = float(self._cost(block, goal)[0])
        if self.task.coverage(block) >= self.task.config.success_coverage:   # from the observation
            return None
        starts = self._to_world(self._contacts + self._normals * (PUSHER_RADIUS + CLEARANCE), block)   # (K, 2)
        ok = self._sd(self._to_local(starts, block), self.task.rects) > PUSHER_RADIUS + 0.002
        lo = np.array(self.task.config.workspace_low) + 0.01
        hi = np.array(self.task.config.workspace_high) - 0.01
        best, best_score = None, np.inf
        for length in self.lengths:
            after = self._cost(self._simulate(block, length), goal)                # (K,)
            score = after + self.travel_weight * np.linalg.norm(starts - pos, axis=1)
            score[~ok | (after > now - 0.3 * length * 0.1)] = np.inf
            score[list(self._banned)] = np.inf
            k = int(np.argmin(score))
            if score[k] < best_score:
                c, s = np.cos(block[2]), np.sin(block[2])
                d_world = -np.array([c * self._normals[k, 0] - s * self._normals[k, 1],
                                     s * self._normals[k, 0] + c * self._normals[k, 1]])
                end = starts[k] + d_world * (CLEARANCE + length)
                if np.all(end >= lo) and np.all(end <= hi):
                    best, best_score = (starts[k], end, end - d_world * 0.015, k), score[k]
        return best

    def _simulate(self, block: np.ndarray, length: float, substeps: int = 6) -> np.ndarray:
        """(K, 3) predicted block poses after pushing each contact by `length` along -normal."""
        pose = np.tile(block, (len(self._contacts), 1))                             # (K, 3)
        r, c2 = self._contacts, self._c2
        d_local0 = -self._normals                                                  # push dir, block frame at t0
        ds = length / substeps
        for _ in range(substeps):
            rel = pose[:, 2] - block[2]                                            # rotation since start
            cr, sr = np.cos(rel), np.sin(rel)
            vx = (cr * d_local0[:, 0] + sr * d_local0[:, 1]) * ds                 # world-fixed push in the
            vy = (-sr * d_local0[:, 0] + cr * d_local0[:, 1]) * ds                # rotated block frame
            den = c2 + r[:, 0] ** 2 + r[:, 1] ** 2
            bx = ((c2 + r[:, 0] ** 2) * vx + r[:, 0] * r[:, 1] * vy) / den
            by = (r[:, 0] * r[:, 1] * vx + (c2 + r[:, 1] ** 2) * vy) / den
            w = (r[:, 0] * by - r[:, 1] * bx) / c2
            ca, sa = np.cos(pose[:, 2]), np.sin(pose[:, 2])
            pose[:, 0] += ca * bx - sa * by
            pose[:, 1] += sa * bx + ca * by
            pose[:, 2] += w
        return pose

    def _outline(self, rects: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Points on the T's outer boundary and their outward normals (block frame)."""
        pts, normals = [], []
        for x0, y0, x1, y1 in rects:
            for (ax, ay), (bx, by), n in (((x0, y0), (x1, y0), (0, -1)), ((x1, y0), (x1, y1), (1, 0)),
                                          ((x1, y1), (x0, y1), (0, 1)), ((x0, y1), (x0, y0), (-1, 0))):
                length = np.hypot(bx - ax, by - ay)
                for s in np.arange(self.spacing / 2, length, self.spacing) / length:
                    pts.append((ax + s * (bx - ax), ay + s * (by - ay)))
                    normals.append(n)
        pts, normals = np.array(pts), np.array(normals, dtype=float)
        outside = self._sd(pts + normals * 0.002, rects) > 0
        inner = self._sd(pts - normals * 0.002, rects) < 0
        keep = outside & inner
        return pts[keep], normals[keep]
