"""`BridgeRobot` ("isaacgym_bridge"): the platform's `Robot` interface over the bridge protocol.

The simulator (Isaac Gym under Python 3.8, or pybullet) runs in its own process behind
`sim.bridge.server`; this backend connects to it in `connect()` (never in `__init__`), takes the
joint names and limits from the server's HELLO reply, and turns read/write/safe_stop into
requests, so a `RobotNode` and its topics work unchanged in front of a remote simulator.

Time: the remote simulator only advances when told to. With `lockstep` (the default) every
`write()` is followed by STEP of `steps_per_write` physics steps, so the node's control loop drives
the simulation (set `steps_per_write = physics_hz / control_rate_hz` for real-time-like pacing);
without it call `step(n)` yourself. States are stamped with the simulator's time.

Failures: a dead or silent server raises `BridgeConnectionError` within `timeout` seconds and marks
the link dead, so every later call fails at once (a RobotNode's read-error watchdog then trips);
`safe_stop()` on a dead link does nothing, because the server safe-stops the robot itself when
its client goes away. The server answering ERROR raises `BridgeRemoteError`; the link stays up.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

import numpy as np

from robot_stack.errors import ConfigError, RobotStackError
from robot_stack.robot.interface import (
    ControlMode,
    JointCommand,
    JointLimits,
    Robot,
    RobotConfig,
    RobotState,
    register_robot,
)
from sim.bridge import protocol as P


class BridgeError(RobotStackError):
    """Base of the bridge client's errors."""


class BridgeConnectionError(BridgeError):
    """The server cannot be reached, went away or stopped answering."""


class BridgeProtocolError(BridgeError):
    """The server sent something that does not follow the protocol."""


class BridgeRemoteError(BridgeError):
    """The server refused a request (bad command, backend failure, version, token)."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


@dataclass(frozen=True)
class BridgeRobotConfig(RobotConfig):
    name: str = "isaacgym_bridge"
    host: str = "127.0.0.1"
    port: int = P.DEFAULT_PORT
    timeout: float = 2.0             # s, per request (and to connect)
    robot: str = ""                  # expected remote robot ("" = whatever the server has)
    lockstep: bool = True            # every write() is followed by STEP(steps_per_write)
    steps_per_write: int = 1
    token: str = ""                  # the server's shared secret, needed beyond localhost
    reset_on_connect: bool = False   # RESET(seed) right after HELLO
    seed: int | None = None

    def __post_init__(self) -> None:
        where = "BridgeRobotConfig"
        if not 0 < self.port < 65536:
            raise ConfigError(where, "port", f"must be in 1..65535, got {self.port}")
        if not self.timeout > 0:
            raise ConfigError(where, "timeout", f"must be > 0, got {self.timeout}")
        if not 1 <= self.steps_per_write <= P.MAX_STEPS:
            raise ConfigError(where, "steps_per_write", f"must be in 1..{P.MAX_STEPS}, got {self.steps_per_write}")


_MODE = {ControlMode.POSITION: "position", ControlMode.IMPEDANCE: "impedance", ControlMode.TORQUE: "torque"}


@register_robot("isaacgym_bridge")
class BridgeRobot(Robot):
    config_class = BridgeRobotConfig

    def __init__(self, config: BridgeRobotConfig | None = None):
        self.config = config or self.config_class()
        self.description: P.RobotDescription | None = None
        self.server_info: dict = {}
        self.sim_time_ns = 0
        self._conn: P.Connection | None = None
        self._dead = ""                  # why the link is unusable ("" = fine)
        self._next_id = 0
        self._limits: JointLimits | None = None

    # --- Robot interface ----------------------------------------------------------------------
    @property
    def joint_names(self) -> list[str]:
        return list(self._described().joint_names)

    @property
    def limits(self) -> JointLimits:
        self._described()
        return self._limits

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._dead

    def connect(self) -> None:
        """Connect and HELLO; again after the link went down, a fresh connection."""
        if self.connected:
            return
        self._close_link()
        cfg = self.config
        address = f"{cfg.host}:{cfg.port}"
        try:
            sock = socket.create_connection((cfg.host, cfg.port), timeout=cfg.timeout)
        except OSError as exc:
            raise BridgeConnectionError(
                f"cannot reach the bridge server at {address}: {exc} (is `python -m sim.bridge.server` running?)"
            ) from None
        self._conn, self._dead = P.Connection(sock, cfg.timeout), ""
        try:
            self._hello(address)
            if cfg.reset_on_connect:
                self.reset(cfg.seed)
        except BaseException:
            self._close_link()
            raise

    def read(self) -> RobotState:
        reply = self._request(P.Message(P.MsgType.READ))
        return self._state(reply)

    def write(self, command: JointCommand) -> None:
        cmd = P.Command(_MODE[command.mode], *(_array(getattr(command, f)) for f in P.COMMAND_ARRAYS))
        self._request(cmd.to_message())
        if self.config.lockstep:
            self.step(self.config.steps_per_write)

    def safe_stop(self) -> None:
        """Ask the server to hold the current position; on a dead link the server has done so already."""
        if not self.connected:
            return
        self._request(P.Message(P.MsgType.SAFE_STOP))

    def disconnect(self) -> None:
        if self._conn is None:
            return
        if not self._dead:
            try:
                self._request(P.Message(P.MsgType.CLOSE))
            except BridgeError:
                pass
        self._close_link()

    # --- simulator control --------------------------------------------------------------------
    def step(self, n: int = 1) -> int:
        """Advance the remote simulation `n` physics steps; its time in ns afterwards."""
        reply = self._request(P.Message(P.MsgType.STEP, fields={"n": int(n)}))
        self.sim_time_ns = int(reply.fields.get("stamp_ns", self.sim_time_ns))
        return self.sim_time_ns

    def reset(self, seed: int | None = None) -> RobotState:
        """Put the remote robot back at its initial pose (sim time keeps running)."""
        return self._state(self._request(P.Message(P.MsgType.RESET, fields={"seed": seed})))

    # --- internals ----------------------------------------------------------------------------
    def _hello(self, address: str) -> None:
        reply = self._request(P.Message(P.MsgType.HELLO, fields={
            "version": P.VERSION, "client": "robot-stack BridgeRobot", "token": self.config.token}))
        try:
            desc = P.RobotDescription.from_message(reply)
        except P.RequestError as exc:
            raise BridgeProtocolError(f"{address}: bad HELLO reply: {exc}") from None
        if self.config.robot and desc.robot != self.config.robot:
            raise BridgeRemoteError("robot", f"{address} simulates '{desc.robot}', expected '{self.config.robot}'")
        self.description = desc
        self.server_info = dict(reply.fields)
        self._limits = JointLimits(desc.lower, desc.upper, desc.velocity, desc.effort)

    def _request(self, msg: P.Message) -> P.Message:
        if self._conn is None:
            raise BridgeConnectionError("BridgeRobot is not connected; call connect() first")
        if self._dead:
            raise BridgeConnectionError(f"bridge link is down: {self._dead}")
        self._next_id = (self._next_id + 1) & 0xFFFFFFFF
        msg.request_id = self._next_id
        try:
            return self._conn.request(msg)
        except P.RemoteError as exc:
            raise BridgeRemoteError(exc.code, f"server refused {msg.type.name}: {exc}") from None
        except P.PeerGone as exc:
            self._dead = f"{msg.type.name}: {exc}"
            raise BridgeConnectionError(f"bridge server {self.config.host}:{self.config.port} lost: {exc}") from None
        except P.FrameError as exc:  # the stream cannot be trusted any more
            self._dead = f"{msg.type.name}: {exc}"
            raise BridgeProtocolError(f"bad frame from the bridge server: {exc}") from None

    def _state(self, reply: P.Message) -> RobotState:
        try:
            s = P.State.from_message(reply, len(self._described().joint_names))
        except P.RequestError as exc:
            raise BridgeProtocolError(f"bad STATE from the bridge server: {exc}") from None
        self.sim_time_ns = s.stamp_ns
        return RobotState(stamp_ns=s.stamp_ns, position=s.position, velocity=s.velocity, effort=s.effort)

    def _described(self) -> P.RobotDescription:
        if self.description is None:
            raise BridgeConnectionError("BridgeRobot has no robot description yet; call connect() first")
        return self.description

    def _close_link(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def _array(value) -> np.ndarray | None:
    return None if value is None else np.asarray(value, dtype=np.float64).reshape(-1)
