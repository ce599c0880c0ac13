"""Inverse kinematics for real arms: pose teleop targets -> joint commands.

`KinematicChain.from_urdf(path, base_link, tip_link)` reads a URDF (xml.etree) along base -> tip:
joint origins (xyz/rpy), axes, types (revolute, continuous, prismatic, fixed) and limits. `fk(q)`
gives the tip's 4x4 pose in the base frame, `jacobian(q)` the analytic 6xN geometric Jacobian
(linear rows first, both in the base frame). `solve_ik` is damped least squares with joint-limit
clamping every iteration.

`IKNode` ("teleop.ik:IKNode") subscribes `teleop_target` (MODE_POSE / MODE_JOINT_AND_POSE, only
while engaged; NaN/inf poses are rejected and counted) and `joint_states` (the seed; nothing is
commanded before the first one), and publishes `joint_commands` (JointState, stamp = the target's
stamp). Unreachable targets are counted and the last good command is held. Parameters: `urdf`,
`base_link`, `tip_link`, `joint_names` ([]: the chain's), `position_only` (false), `rate_hz`
(0: solve on each target), `max_joint_step` (rad per solve, 0: no limit). Status:
diagnostic_msgs/DiagnosticStatus on `~/status` (solved, unreachable, rejected).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robot_stack import convert, messages
from robot_stack.errors import ParameterError
from robot_stack.node import Node
from teleop.errors import TeleopError

JOINT_TYPES = ("revolute", "continuous", "prismatic", "fixed")
MOVABLE = ("revolute", "continuous", "prismatic")
POSE_MODES = (1, 2)        # TeleopTarget.MODE_POSE, MODE_JOINT_AND_POSE


class URDFError(TeleopError):
    """A URDF cannot be read, or it lacks what the chain needs; the message says what."""


class UnknownLinkError(URDFError):
    """A link named in the configuration does not exist in the URDF, or is not on the chain."""


# --- small rotation helpers -----------------------------------------------------------------
def rpy_matrix(r: float, p: float, y: float) -> np.ndarray:
    """URDF fixed-axis roll/pitch/yaw -> 3x3 rotation (Rz(y) @ Ry(p) @ Rx(r))."""
    cr, sr, cp, sp, cy, sy = math.cos(r), math.sin(r), math.cos(p), math.sin(p), math.cos(y), math.sin(y)
    return np.array([[cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
                     [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
                     [-sp, cp * sr, cp * cr]])


def axis_angle_matrix(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues: rotation of `angle` about the unit `axis`."""
    x, y, z = axis
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + math.sin(angle) * k + (1.0 - math.cos(angle)) * (k @ k)


def quat_matrix(quat: np.ndarray) -> np.ndarray:
    """(x, y, z, w) quaternion -> 3x3 rotation (normalized first)."""
    x, y, z, w = np.asarray(quat, dtype=float) / np.linalg.norm(quat)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def rotation_error(r_target: np.ndarray, r_current: np.ndarray) -> np.ndarray:
    """Rotation vector (axis * angle, base frame) that turns `r_current` into `r_target`."""
    r = r_target @ r_current.T
    v = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])
    sin, cos = float(np.linalg.norm(v)) / 2.0, (float(np.trace(r)) - 1.0) / 2.0
    angle = math.atan2(sin, cos)                     # well conditioned at 0 and at pi
    if angle < 1e-9:
        return 0.5 * v
    if cos > -0.9:
        return angle * v / (2.0 * sin)
    b = (r + r.T) / 2.0 - cos * np.eye(3)            # = (1 - cos) * axis axis^T, near pi
    i = int(np.argmax(np.diag(b)))
    axis = b[:, i] / math.sqrt(b[i, i] * (1.0 - cos))
    axis = -axis if float(axis @ v) < 0 else axis    # the sign from the antisymmetric part
    return angle * axis / np.linalg.norm(axis)


# --- the chain ------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Joint:
    """One URDF joint: its origin (4x4, parent -> joint frame), unit axis, type and limits."""

    name: str
    type: str
    origin: np.ndarray
    axis: np.ndarray
    lower: float = -math.inf
    upper: float = math.inf


def _floats(text: str | None, default: str, what: str) -> np.ndarray:
    try:
        values = np.array([float(v) for v in (text or default).split()])
    except ValueError:
        raise URDFError(f"{what}: expected 3 numbers, got {text!r}") from None
    if values.size != 3 or not np.all(np.isfinite(values)):
        raise URDFError(f"{what}: expected 3 finite numbers, got {text!r}")
    return values


def _parse_joint(el: ET.Element) -> Joint:
    name, kind = el.get("name", "?"), el.get("type", "")
    if kind not in JOINT_TYPES:
        raise URDFError(f"joint '{name}': unsupported type {kind!r} (supported: {', '.join(JOINT_TYPES)})")
    origin = el.find("origin")
    xyz = _floats(origin.get("xyz") if origin is not None else None, "0 0 0", f"joint '{name}' origin xyz")
    rpy = _floats(origin.get("rpy") if origin is not None else None, "0 0 0", f"joint '{name}' origin rpy")
    t = np.eye(4)
    t[:3, :3], t[:3, 3] = rpy_matrix(*rpy), xyz
    axis_el = el.find("axis")
    axis = _floats(axis_el.get("xyz") if axis_el is not None else None, "1 0 0", f"joint '{name}' axis")
    if kind in MOVABLE:
        if np.linalg.norm(axis) < 1e-12:
            raise URDFError(f"joint '{name}': axis must not be zero")
        axis = axis / np.linalg.norm(axis)
    lower, upper = -math.inf, math.inf
    limit = el.find("limit")
    if kind in ("revolute", "prismatic"):
        if limit is None:
            raise URDFError(f"joint '{name}': a {kind} joint needs a <limit>")
        try:
            lower, upper = float(limit.get("lower", "0")), float(limit.get("upper", "0"))
        except ValueError:
            raise URDFError(f"joint '{name}': limit lower/upper must be numbers") from None
        if not lower <= upper:
            raise URDFError(f"joint '{name}': limit lower {lower} > upper {upper}")
    return Joint(name, kind, t, axis, lower, upper)


def _read_urdf(path: str | Path) -> ET.Element:
    try:
        root = ET.parse(path).getroot()
    except OSError as exc:
        raise URDFError(f"cannot read URDF '{path}': {exc.strerror or exc}") from None
    except ET.ParseError as exc:
        raise URDFError(f"URDF '{path}' is not valid XML: {exc}") from None
    if root.tag != "robot":
        raise URDFError(f"URDF '{path}': top-level element is <{root.tag}>, expected <robot>")
    return root


@dataclass(frozen=True, eq=False)
class KinematicChain:
    """A serial chain base -> tip; `joints` includes fixed ones, `names` only the movable ones."""

    base_link: str
    tip_link: str
    joints: tuple[Joint, ...]
    movable: tuple[Joint, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "movable", tuple(j for j in self.joints if j.type in MOVABLE))

    @classmethod
    def from_urdf(cls, path: str | Path, base_link: str, tip_link: str) -> KinematicChain:
        root = _read_urdf(path)
        links = {el.get("name") for el in root.findall("link")}
        for role, link in (("base_link", base_link), ("tip_link", tip_link)):
            if link not in links:
                raise UnknownLinkError(f"URDF '{path}': {role} '{link}' is not a link; links: {sorted(links)}")
        by_child = {el.find("child").get("link"): el for el in root.findall("joint")
                    if el.find("child") is not None and el.find("parent") is not None}
        chain: list[Joint] = []
        link = tip_link
        while link != base_link:
            el = by_child.get(link)
            if el is None:
                raise UnknownLinkError(f"URDF '{path}': tip_link '{tip_link}' is not below base_link "
                                       f"'{base_link}' (reached the root at '{link}')")
            chain.append(_parse_joint(el))
            link = el.find("parent").get("link")
            if len(chain) > len(by_child):
                raise URDFError(f"URDF '{path}': the joints form a loop at link '{link}'")
        return cls(base_link, tip_link, tuple(reversed(chain)))

    @property
    def names(self) -> list[str]:
        return [j.name for j in self.movable]

    @property
    def lower(self) -> np.ndarray:
        return np.array([j.lower for j in self.movable])

    @property
    def upper(self) -> np.ndarray:
        return np.array([j.upper for j in self.movable])

    def _frames(self, q: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """Tip pose and, for each movable joint, its frame before its own motion (base frame)."""
        q = np.asarray(q, dtype=float).reshape(-1)
        if q.size != len(self.movable):
            raise ValueError(f"chain has {len(self.movable)} joints, got {q.size} positions")
        t, frames, i = np.eye(4), [], 0
        for joint in self.joints:
            t = t @ joint.origin
            if joint.type == "fixed":
                continue
            frames.append(t)
            motion = np.eye(4)
            if joint.type == "prismatic":
                motion[:3, 3] = joint.axis * q[i]
            else:
                motion[:3, :3] = axis_angle_matrix(joint.axis, q[i])
            t = t @ motion
            i += 1
        return t, frames

    def fk(self, q: np.ndarray) -> np.ndarray:
        """The tip link's 4x4 pose in the base link's frame."""
        return self._frames(q)[0]

    def jacobian(self, q: np.ndarray) -> np.ndarray:
        """Geometric Jacobian (6xN): rows 0-2 linear velocity, 3-5 angular velocity, base frame."""
        tip, frames = self._frames(q)
        jac = np.zeros((6, len(self.movable)))
        for i, (joint, frame) in enumerate(zip(self.movable, frames, strict=True)):
            z = frame[:3, :3] @ joint.axis
            if joint.type == "prismatic":
                jac[:3, i] = z
            else:
                jac[:3, i], jac[3:, i] = np.cross(z, tip[:3, 3] - frame[:3, 3]), z
        return jac

    def clamp(self, q: np.ndarray) -> np.ndarray:
        return np.clip(q, self.lower, self.upper)


def solve_ik(chain: KinematicChain, target_pos: np.ndarray, target_quat: np.ndarray | None, q_seed: np.ndarray,
             *, iters: int = 100, damping: float = 1e-2, tol_pos: float = 1e-3, tol_rot: float = 1e-2,
             position_only: bool = False, max_step: float = 0.5) -> tuple[np.ndarray, bool, float]:
    """Damped least squares from `q_seed`; returns (q, converged, residual).

    `target_quat` is (x, y, z, w); None (or `position_only`) solves for position only. The residual
    is the position error [m] plus, with orientation, the rotation error [rad]. Each iteration's
    step is at most `max_step` rad (norm) and q is clamped to the joint limits.
    """
    goal = np.asarray(target_pos, dtype=float)
    use_rot = target_quat is not None and not position_only
    r_goal = quat_matrix(np.asarray(target_quat, dtype=float)) if use_rot else None
    q = chain.clamp(np.asarray(q_seed, dtype=float).copy())
    lam2 = damping ** 2
    for _ in range(iters + 1):
        tip = chain.fk(q)
        e_pos = goal - tip[:3, 3]
        e_rot = rotation_error(r_goal, tip[:3, :3]) if use_rot else np.zeros(3)
        p_err, r_err = float(np.linalg.norm(e_pos)), float(np.linalg.norm(e_rot))
        if p_err <= tol_pos and r_err <= tol_rot:
            return q, True, p_err + r_err
        jac = chain.jacobian(q)
        jac, err = (jac, np.concatenate([e_pos, e_rot])) if use_rot else (jac[:3], e_pos)
        dq = jac.T @ np.linalg.solve(jac @ jac.T + lam2 * np.eye(jac.shape[0]), err)
        norm = float(np.linalg.norm(dq))
        if norm > max_step:
            dq *= max_step / norm
        q = chain.clamp(q + dq)
    return q, False, p_err + r_err


# --- the node -------------------------------------------------------------------------------
@dataclass(frozen=True)
class IKConfig:
    """The IK node's parameters (checked; `joint_names` empty: the chain's)."""

    urdf: str
    base_link: str
    tip_link: str
    joint_names: tuple[str, ...] = ()
    position_only: bool = False
    rate_hz: float = 0.0
    max_joint_step: float = 0.0

    def __post_init__(self) -> None:
        for name in ("urdf", "base_link", "tip_link"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ParameterError(f"IK: parameter '{name}' is required (a non-empty string)")
        for name in ("rate_hz", "max_joint_step"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
                raise ParameterError(f"IK: parameter '{name}' must be a number >= 0, got {value!r}")

    @classmethod
    def from_node(cls, node: Node) -> IKConfig:
        p = lambda name, default: node.declare_parameter(name, default).value   # noqa: E731
        return cls(p("urdf", ""), p("base_link", ""), p("tip_link", ""), tuple(p("joint_names", [])),
                   bool(p("position_only", False)), p("rate_hz", 0.0), p("max_joint_step", 0.0))


class IKNode(Node):
    """Pose TeleopTargets -> JointState commands through `solve_ik` (see the module docstring)."""

    def __init__(self, node_name: str = "ik", **node_kwargs: Any):
        super().__init__(node_name, **node_kwargs)
        self.config = cfg = IKConfig.from_node(self)
        self.chain = KinematicChain.from_urdf(cfg.urdf, cfg.base_link, cfg.tip_link)
        self.joint_names = list(cfg.joint_names) or self.chain.names
        if len(self.joint_names) != len(self.chain.movable):
            raise ParameterError(f"node '{node_name}': joint_names has {len(self.joint_names)} names, the chain "
                                 f"{cfg.base_link} -> {cfg.tip_link} has {len(self.chain.movable)} joints "
                                 f"({self.chain.names})")
        self.solved = self.unreachable = self.rejected = self.ignored = self.bad_states = 0
        self.state: np.ndarray | None = None
        self.last_command: np.ndarray | None = None
        self._previous: np.ndarray | None = None       # last command of the current engaged stretch
        self._pending: Any = None
        self.command_pub = self.create_publisher("sensor_msgs/msg/JointState", "joint_commands", 10)
        self.status_pub = self.create_publisher("diagnostic_msgs/msg/DiagnosticStatus", "~/status", 10)
        self.create_subscription("robot_stack_msgs/msg/TeleopTarget", "teleop_target", self._on_target, 10)
        self.create_subscription("sensor_msgs/msg/JointState", "joint_states", self._on_state, 10)
        if cfg.rate_hz > 0:
            self.create_timer(1.0 / cfg.rate_hz, self._on_timer, name="ik")
        self.create_timer(1.0, self.publish_status, name="status")

    def _on_state(self, msg: Any) -> None:
        try:
            q = convert.joint_arrays(msg, self.joint_names).position
        except KeyError:
            self.bad_states += 1
            return
        if q.size == len(self.joint_names) and np.all(np.isfinite(q)):
            self.state = q
        else:
            self.bad_states += 1

    def _on_target(self, msg: Any) -> None:
        if int(msg.mode) not in POSE_MODES:
            self.ignored += 1
            return
        if not msg.engaged:
            self._previous, self._pending = None, None     # re-engaging starts from the measured state
            return
        p, o = msg.ee_pose.position, msg.ee_pose.orientation
        pos, quat = np.array([p.x, p.y, p.z], dtype=float), np.array([o.x, o.y, o.z, o.w], dtype=float)
        if not (np.all(np.isfinite(pos)) and np.all(np.isfinite(quat)) and np.linalg.norm(quat) > 1e-6):
            self.rejected += 1
            return
        self._pending = (msg.header.stamp, pos, quat)
        if self.config.rate_hz == 0:
            self._on_timer()

    def _on_timer(self) -> None:
        if self._pending is None or self.state is None:
            return                                        # nothing to do / no seed yet: never jump
        stamp, pos, quat = self._pending
        self._pending = None
        self.solve(stamp, pos, quat)

    def solve(self, stamp: Any, pos: np.ndarray, quat: np.ndarray) -> bool:
        """Solve one target and publish the command (or hold the last good one); whether it converged."""
        start = self._previous if self._previous is not None else self.state
        q, ok, _ = solve_ik(self.chain, pos, quat, start, position_only=self.config.position_only)
        if not ok:
            self.unreachable += 1
            if self.last_command is not None:
                self.command_pub.publish(convert.joint_state(self.joint_names, self.last_command, stamp=stamp))
            return False
        step = self.config.max_joint_step
        if step > 0:
            q = start + np.clip(q - start, -step, step)
        self._previous = self.last_command = q
        self.command_pub.publish(convert.joint_state(self.joint_names, q, stamp=stamp))
        self.solved += 1
        return True

    def publish_status(self) -> None:
        values = {"solved": self.solved, "unreachable": self.unreachable, "rejected": self.rejected,
                  "ignored": self.ignored, "bad_states": self.bad_states, "has_state": self.state is not None}
        ready = self.state is not None
        kv = messages.get_class("diagnostic_msgs/msg/KeyValue")
        self.status_pub.publish(messages.make(
            "diagnostic_msgs/msg/DiagnosticStatus", level=0 if ready else 1, name=self.get_fully_qualified_name(),
            message="ready" if ready else "waiting for joint_states", hardware_id="ik",
            values=[kv(key=k, value=str(v)) for k, v in values.items()]))
