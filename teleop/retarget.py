"""Fingertip-vector retargeting by a small least-squares solve (numpy only).

Model (documented simplification): every digit, of the operator and of the robot hand, is a planar
3-link chain in its flexion plane: MCP, PIP and DIP flexions q1..q3 about parallel axes, links
l1..l3. With the finger along +x at zero flexion and flexion curling it towards -z,

    tip(q) = sum_i l_i * (cos(q1 + .. + qi), -sin(q1 + .. + qi))          (x, z in the finger plane)

Abduction (`*_mcp_side`) only turns that plane, so it passes through from the linear mapping.
For each chain the operator's fingertip vector p_h = tip_h(glove angles) is scaled by the ratio of
total finger lengths, and the robot flexions solve

    min_q  |tip_r(q) - s * p_h|^2 + w * |q - q_lin|^2,     lower <= q <= upper

(q_lin: the linear mapping, which also starts the solve) by damped Gauss-Newton with projection
onto the joint limits, `iterations` steps. The regularisation keeps the redundant 3-link solution
near the operator's own joint angles, so the result is the linear map corrected to put the robot's
fingertip where the (scaled) human fingertip is, which is what matters for pinches and grasps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from teleop.config import check, finite


@dataclass(frozen=True)
class RetargetConfig:
    chains: tuple[tuple[str, str, str], ...]       # (mcp, pip, dip) hand joint names per digit
    human_links: tuple[float, float, float] = (0.045, 0.027, 0.02)
    robot_links: tuple[float, float, float] = (0.05, 0.038, 0.03)
    weight: float = 0.05
    iterations: int = 8
    damping: float = 1e-4

    def __post_init__(self) -> None:
        check(len(self.chains) > 0 and all(len(c) == 3 for c in self.chains), "chains",
              "need a list of [mcp, pip, dip] joint-name triples")
        for name in ("human_links", "robot_links"):
            links = getattr(self, name)
            check(len(links) == 3 and finite(links) and min(links) > 0, name, "need 3 link lengths > 0 [m]")
        check(finite([self.weight, self.damping]) and self.weight >= 0 and self.damping > 0, "weight",
              "weight must be >= 0 and damping > 0")
        check(isinstance(self.iterations, int) and 1 <= self.iterations <= 100, "iterations", "must be 1..100")


def fingertip(q: np.ndarray, links: np.ndarray) -> np.ndarray:
    """(..., 2) tip position in the finger plane for flexions q (..., 3)."""
    angles = np.cumsum(q, axis=-1)
    return np.stack([(links * np.cos(angles)).sum(-1), (-links * np.sin(angles)).sum(-1)], axis=-1)


def jacobian(q: np.ndarray, links: np.ndarray) -> np.ndarray:
    """(2, 3) d tip / d q."""
    angles = np.cumsum(q)
    dx = -links * np.sin(angles)
    dz = -links * np.cos(angles)
    # joint j moves every link i >= j
    return np.stack([np.cumsum(dx[::-1])[::-1], np.cumsum(dz[::-1])[::-1]])


def solve_chain(target: np.ndarray, q0: np.ndarray, links: np.ndarray, lower: np.ndarray, upper: np.ndarray,
                weight: float, iterations: int, damping: float) -> np.ndarray:
    """Flexions whose tip reaches `target` (2,), regularised towards q0, within limits."""
    q = np.clip(q0, lower, upper)
    eye = np.eye(3)
    for _ in range(iterations):
        residual = fingertip(q, links) - target
        jac = jacobian(q, links)
        grad = jac.T @ residual + weight * (q - q0)
        hess = jac.T @ jac + (weight + damping) * eye
        q = np.clip(q - np.linalg.solve(hess, grad), lower, upper)
    return q


class FingertipRetargeter:
    """Corrects the flexion joints of each chain so the fingertip vectors match (see the module doc)."""

    def __init__(self, config: RetargetConfig, joint_names: list[str], lower: np.ndarray, upper: np.ndarray):
        self.config = config
        index = {n: i for i, n in enumerate(joint_names)}
        missing = [n for chain in config.chains for n in chain if n not in index]
        if missing:
            raise ValueError(f"retarget chains name joints {missing} that the mapping does not produce")
        self.columns = [np.array([index[n] for n in chain]) for chain in config.chains]
        self.lower, self.upper = np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)
        self.human = np.asarray(config.human_links, dtype=float)
        self.robot = np.asarray(config.robot_links, dtype=float)
        self.scale = self.robot.sum() / self.human.sum()

    def apply(self, q_linear: np.ndarray, human_angles: np.ndarray) -> np.ndarray:
        """`q_linear` (hand joints) with each chain's flexions re-solved; `human_angles`: the operator's
        flexion angles in the same layout as `q_linear` (the glove values feeding those joints)."""
        c = self.config
        q = q_linear.copy()
        for cols in self.columns:
            target = self.scale * fingertip(human_angles[cols], self.human)
            q[cols] = solve_chain(target, q_linear[cols], self.robot, self.lower[cols], self.upper[cols],
                                  c.weight, c.iterations, c.damping)
        return q
