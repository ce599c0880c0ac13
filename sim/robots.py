"""Simulated arms implementing `robot_stack.robot.Robot`: `sim_panda` (Franka Panda + hand), `sim_iiwa`.

A `SimArm` is built with its `SimWorld` injected and loads its URDF (from pybullet_data) on
`connect()`. Joint names and limits come from the URDF. `write()` only stores the command; before
every physics step the arm applies the latest one, so the control rate (how often `write()` is
called) is independent of the physics rate:

- POSITION: pybullet's position motors (force-limited by the URDF effort limits).
- IMPEDANCE: tau = K (q_d - q) - D qdot + g(q) (gravity compensation from
  `calculateInverseDynamics` at zero velocity and acceleration), recomputed every physics step;
  K/D from the command or the config. Torques are explicit, so high gains on light distal links
  need a fast physics rate: the defaults are tuned for 1000 Hz (the iiwa's are unstable at 240 Hz).
- TORQUE: the command's efforts, as given (no gravity compensation); the velocity motors pybullet
  puts on every joint are switched off first (VELOCITY_CONTROL with force 0).

Gripper: the Panda's two finger joints are the last two entries of the joint vector (each 0..0.04 m,
the opening width is their sum). They are always position-controlled, like the real hand, whatever
the mode: in POSITION/IMPEDANCE they follow `command.position`, in TORQUE they keep the last target.

The joint named by `ft_joint` gets pybullet's joint force/torque sensor (`sim.ft.WristFT` reads it).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robot_stack.robot import (
    ControlMode,
    JointCommand,
    JointLimits,
    Robot,
    RobotConfig,
    RobotState,
    register_robot,
)
from sim.world import SimError, SimWorld


@dataclass(frozen=True)
class SimArmConfig(RobotConfig):
    urdf: str = ""                                    # path relative to pybullet_data
    base_position: tuple[float, float, float] = (0.0, 0.0, 0.0)
    base_orientation: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 1.0)   # quaternion xyzw
    controlled_joints: tuple[str, ...] = ()           # () = every movable joint, in URDF order
    initial_positions: tuple[float, ...] = ()         # per controlled joint; () = zeros
    gripper_joints: tuple[str, ...] = ()              # always position-controlled
    ft_joint: str = ""                                # wrist joint with the force/torque sensor
    stiffness: tuple[float, ...] = ()                 # default impedance K per controlled joint
    damping: tuple[float, ...] = ()                   # default impedance D per controlled joint
    position_gain: float = 0.1                        # pybullet motor gains (POSITION mode)
    velocity_gain: float = 1.0
    visual_meshes: str = "full"                       # "collision": draw the (low-poly) collision meshes

    def __post_init__(self):
        if self.visual_meshes not in ("full", "collision"):
            raise SimError(
                f"{type(self).__name__}.visual_meshes must be 'full' or 'collision', got {self.visual_meshes!r}")


@dataclass(frozen=True)
class SimPandaConfig(SimArmConfig):
    urdf: str = "franka_panda/panda.urdf"
    controlled_joints: tuple[str, ...] = tuple(f"panda_joint{i}" for i in range(1, 8)) + (
        "panda_finger_joint1", "panda_finger_joint2",
    )
    initial_positions: tuple[float, ...] = (0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785, 0.04, 0.04)
    gripper_joints: tuple[str, ...] = ("panda_finger_joint1", "panda_finger_joint2")
    ft_joint: str = "panda_joint8"                    # fixed joint link7 -> link8 (the flange)
    stiffness: tuple[float, ...] = (600.0, 600.0, 600.0, 600.0, 250.0, 150.0, 50.0, 0.0, 0.0)
    # joints 1 and 3 at 30: with 50 the arm chatters at full torque at 1 kHz when joint 2 is near 0
    # (tool low and close to the base); 34 is stable there, 37 is not
    damping: tuple[float, ...] = (30.0, 50.0, 30.0, 30.0, 10.0, 5.0, 1.0, 0.0, 0.0)


@dataclass(frozen=True)
class SimIiwaConfig(SimArmConfig):
    urdf: str = "kuka_iiwa/model.urdf"
    initial_positions: tuple[float, ...] = (0.0, 0.5, 0.0, -1.2, 0.0, 1.0, 0.0)
    ft_joint: str = "lbr_iiwa_joint_7"                # last joint: its reaction is the wrist load
    stiffness: tuple[float, ...] = (800.0, 800.0, 600.0, 600.0, 50.0, 30.0, 5.0)
    damping: tuple[float, ...] = (60.0, 60.0, 30.0, 30.0, 0.5, 0.3, 0.03)


def urdf_path(urdf: str, visual_meshes: str = "full") -> str:
    """The URDF to load: as given, or (`"collision"`) a cached copy whose visual meshes are the
    collision meshes. pybullet's CPU renderer spends ~20 ms per frame on the Panda's 9 MB of
    visual meshes and ~2 ms on its collision hulls, so tasks that render every step use those."""
    if visual_meshes == "full":
        return urdf
    import pybullet_data

    src = Path(urdf) if Path(urdf).is_absolute() else Path(pybullet_data.getDataPath()) / urdf
    text = src.read_text()
    digest = hashlib.sha1(text.encode()).hexdigest()[:12]
    out = Path(tempfile.gettempdir()) / "robot_stack_urdf" / f"{src.stem}-lowpoly-{digest}.urdf"
    if not out.exists():
        root = src.parent

        def absolute(match: re.Match) -> str:
            path = match.group(1).replace("package://", "").replace("meshes/visual/", "meshes/collision/")
            return f'filename="{(root / path).resolve()}"'

        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(re.sub(r'filename="([^"]+)"', absolute, text))
        os.replace(tmp, out)
    return str(out)


class SimArm(Robot):
    """A fixed-base arm in a SimWorld (see the module docstring for the control modes)."""

    config_class = SimArmConfig

    def __init__(self, world: SimWorld, config: SimArmConfig | None = None):
        self.world = world
        self.config = config or self.config_class()
        self.body_id: int | None = None
        self._names: list[str] = []
        self._limits: JointLimits | None = None
        self._command: JointCommand | None = None
        self._pending = False          # a POSITION command not yet handed to the motors
        self._motors_on = True         # pybullet's default velocity motors active on the arm joints
        self._tau = np.zeros(0)

    # --- Robot interface ----------------------------------------------------------------------
    @property
    def joint_names(self) -> list[str]:
        self._require()
        return list(self._names)

    @property
    def limits(self) -> JointLimits:
        self._require()
        return self._limits

    def connect(self) -> None:
        if self.body_id is not None:
            return
        c = self.world.client
        cfg = self.config
        self.body_id = c.loadURDF(
            urdf_path(cfg.urdf, cfg.visual_meshes), basePosition=list(cfg.base_position),
            baseOrientation=list(cfg.base_orientation),
            useFixedBase=True,
        )
        try:
            self._index_joints()
        except SimError:
            c.removeBody(self.body_id)
            self.body_id = None
            raise
        for j, q in zip(self._ctrl, self._initial(), strict=True):
            c.resetJointState(self.body_id, int(j), float(q))
        free = [int(j) for j in self._movable if j not in self._ctrl]
        if free:  # movable joints nobody controls: held where the URDF puts them
            c.setJointMotorControlArray(self.body_id, free, c.POSITION_CONTROL, targetPositions=[0.0] * len(free))
        if cfg.ft_joint:
            c.enableJointForceTorqueSensor(self.body_id, self.joint_index(cfg.ft_joint), True)
        self._tau = np.zeros(len(self._ctrl))
        self._command = JointCommand(ControlMode.POSITION, position=self._initial())
        self._pending = True
        self.world.add_pre_step(self._apply)

    def read(self) -> RobotState:
        self._require()
        states = self.world.client.getJointStates(self.body_id, self._ctrl.tolist())
        pos = np.array([s[0] for s in states])
        vel = np.array([s[1] for s in states])
        eff = np.array([s[3] for s in states])
        if not self._motors_on:
            eff[self._arm] = self._tau[self._arm]
        return RobotState(stamp_ns=self.world.time_ns, position=pos, velocity=vel, effort=eff)

    def write(self, command: JointCommand) -> None:
        self._require()
        n = len(self._names)
        for field in ("position", "velocity", "effort", "stiffness", "damping"):
            value = getattr(command, field)
            if value is not None and np.size(value) != n:
                raise SimError(f"JointCommand.{field} has {np.size(value)} values for {n} joints {self._names}")
        needs = {ControlMode.POSITION: "position", ControlMode.IMPEDANCE: "position", ControlMode.TORQUE: "effort"}
        if getattr(command, needs[command.mode]) is None:
            raise SimError(f"{command.mode.name} command needs JointCommand.{needs[command.mode]}")
        self._command = command
        self._pending = True

    def safe_stop(self) -> None:
        """Hold the current position with the position motors (no-op when not connected)."""
        if self.body_id is None or not self.world.connected:
            return
        position = self.read().position
        self._command = JointCommand(ControlMode.POSITION, position=position, velocity=np.zeros_like(position))
        self._pending = True

    def disconnect(self) -> None:
        if self.body_id is None:
            return
        if self.world.connected:
            self.world.remove_hook(self._apply)
            self.world.client.removeBody(self.body_id)
        self.body_id = None
        self._command = None

    # --- lookups for sensors and cameras ------------------------------------------------------
    def joint_index(self, name: str) -> int:
        self._require()
        if name not in self._all_joints:
            raise SimError(f"{self.kind}: no joint '{name}'; joints: {', '.join(self._all_joints)}")
        return self._all_joints[name]

    def link_index(self, name: str) -> int:
        """Index of a link by name (pybullet: a link's index is that of its parent joint)."""
        self._require()
        if name not in self._links:
            raise SimError(f"{self.kind}: no link '{name}'; links: {', '.join(self._links)}")
        return self._links[name]

    @property
    def command(self) -> JointCommand | None:
        return self._command

    @property
    def initial_positions(self) -> np.ndarray:
        """The configured start pose (controlled-joint order)."""
        self._require()
        return self._initial()

    def teleport(self, position) -> None:
        """Set the joint positions directly (zero velocity, no dynamics), e.g. at an episode reset."""
        self._require()
        c = self.world.client
        for j, q in zip(self._ctrl, np.asarray(position, dtype=float), strict=True):
            c.resetJointState(self.body_id, int(j), float(q), 0.0)

    # --- internals ----------------------------------------------------------------------------
    def _require(self) -> None:
        if self.body_id is None:
            raise SimError(f"{type(self).__name__} is not connected; call connect() first")

    def _index_joints(self) -> None:
        c, body = self.world.client, self.body_id
        infos = [c.getJointInfo(body, j) for j in range(c.getNumJoints(body))]
        self._all_joints = {i[1].decode(): i[0] for i in infos}
        self._links = {i[12].decode(): i[0] for i in infos}
        movable = [i for i in infos if i[2] != c.JOINT_FIXED]
        self._movable = np.array([i[0] for i in movable], dtype=int)
        names = list(self.config.controlled_joints) or [i[1].decode() for i in movable]
        movable_names = [i[1].decode() for i in movable]
        unknown = [n for n in names if n not in movable_names]
        if unknown:
            raise SimError(f"{self.kind}: controlled_joints {unknown} are not movable joints of {movable_names}")
        self._names = names
        self._ctrl = np.array([self._all_joints[n] for n in names], dtype=int)
        self._ctrl_in_movable = np.array([movable_names.index(n) for n in names], dtype=int)
        self._arm = np.array([n not in self.config.gripper_joints for n in names])
        info = [infos[j] for j in self._ctrl]
        self._limits = JointLimits(
            lower=np.array([i[8] for i in info]), upper=np.array([i[9] for i in info]),
            velocity=np.array([i[11] for i in info]), effort=np.array([i[10] for i in info]),
        )
        self._check_config_lengths()

    def _check_config_lengths(self) -> None:
        n = len(self._names)
        for field in ("initial_positions", "stiffness", "damping"):
            value = getattr(self.config, field)
            if value and len(value) != n:
                raise SimError(f"{type(self.config).__name__}.{field} has {len(value)} values for {n} joints")

    def _initial(self) -> np.ndarray:
        init = self.config.initial_positions
        return np.array(init, dtype=float) if init else np.zeros(len(self._names))

    def _apply(self) -> None:
        """Pre-step hook: hand the latest command to the physics."""
        cmd = self._command
        if cmd is None:
            return
        if cmd.mode is ControlMode.POSITION:
            if self._pending:
                self._set_motors(np.ones(len(self._ctrl), dtype=bool), cmd.position, cmd.velocity)
                self._motors_on = True
            self._pending = False
            return
        if self._motors_on:
            self._motors_off()
        if self._pending and cmd.mode is ControlMode.IMPEDANCE:
            self._set_motors(~self._arm, cmd.position, None)
        self._pending = False
        tau = self._impedance(cmd) if cmd.mode is ControlMode.IMPEDANCE else np.asarray(cmd.effort, dtype=float)
        self._tau = np.clip(tau, -self._limits.effort, self._limits.effort)
        self.world.client.setJointMotorControlArray(
            self.body_id, self._ctrl[self._arm].tolist(), self.world.client.TORQUE_CONTROL,
            forces=self._tau[self._arm].tolist(),
        )

    def _set_motors(self, mask: np.ndarray, position, velocity) -> None:
        """Position motors on the controlled joints selected by `mask` (full-length arrays in)."""
        if not mask.any():
            return
        n = int(mask.sum())
        vel = np.zeros(n) if velocity is None else np.asarray(velocity, dtype=float)[mask]
        self.world.client.setJointMotorControlArray(
            self.body_id, self._ctrl[mask].tolist(), self.world.client.POSITION_CONTROL,
            targetPositions=np.asarray(position, dtype=float)[mask].tolist(), targetVelocities=vel.tolist(),
            forces=self._limits.effort[mask].tolist(),
            positionGains=[self.config.position_gain] * n, velocityGains=[self.config.velocity_gain] * n,
        )

    def _motors_off(self) -> None:
        """Switch off pybullet's default velocity motors on the arm joints (before torque control)."""
        joints = self._ctrl[self._arm].tolist()
        self.world.client.setJointMotorControlArray(
            self.body_id, joints, self.world.client.VELOCITY_CONTROL, forces=[0.0] * len(joints),
        )
        self._motors_on = False

    def _impedance(self, cmd: JointCommand) -> np.ndarray:
        c = self.world.client
        states = c.getJointStates(self.body_id, self._movable.tolist())
        q_all = [s[0] for s in states]
        qd_all = [s[1] for s in states]
        zeros = [0.0] * len(q_all)
        gravity = np.array(c.calculateInverseDynamics(self.body_id, q_all, zeros, zeros))
        q = np.array(q_all)[self._ctrl_in_movable]
        qd = np.array(qd_all)[self._ctrl_in_movable]
        k = np.asarray(cmd.stiffness if cmd.stiffness is not None else self._gains(self.config.stiffness), float)
        d = np.asarray(cmd.damping if cmd.damping is not None else self._gains(self.config.damping), float)
        return k * (np.asarray(cmd.position, float) - q) - d * qd + gravity[self._ctrl_in_movable]

    def _gains(self, values: tuple[float, ...]) -> np.ndarray:
        if not values:
            raise SimError(f"IMPEDANCE needs stiffness/damping in the command or in {type(self.config).__name__}")
        return np.array(values, dtype=float)


@register_robot("sim_panda")
class SimPanda(SimArm):
    """Franka Panda (7 joints) with its two-finger hand (2 prismatic joints, last in the vector)."""

    config_class = SimPandaConfig


@register_robot("sim_iiwa")
class SimIiwa(SimArm):
    """KUKA LBR iiwa 14 (7 joints)."""

    config_class = SimIiwaConfig
