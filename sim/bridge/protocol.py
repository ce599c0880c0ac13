"""Wire protocol of the simulator bridge (robot-stack <-> a simulator in another Python).

Python 3.8 compatible and dependency-free except numpy: the server side imports this module under
Isaac Gym's Python 3.8, next to `server.py` and `isaacgym_backend.py`, without robot_stack.

Frame (everything little-endian)::

    header  16 bytes  magic b"RSBR" | u16 version | u16 message type | u32 request id | u32 payload length
    payload           u32 json length | JSON object (utf-8) | float64 arrays, in the order JSON "arrays" lists

The JSON object carries the small fields; its reserved key "arrays" is a list of [name, count]
pairs describing the raw float64 arrays that follow it (state, commands, limits). No pickle.
Every request gets exactly one reply carrying the same request id.

Errors: a frame that cannot be trusted (bad magic, other version, unknown type, oversized, truncated,
malformed payload) raises `FrameError`; the receiver counts it and closes the connection, because
the byte stream cannot be resynchronised. A well-formed request with bad content (wrong array
length, NaN, unknown mode) raises `RequestError`; the server answers ERROR and keeps the connection.
"""

from __future__ import annotations

import enum
import json
import math
import select
import socket
import struct
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

MAGIC = b"RSBR"
VERSION = 1
HEADER = struct.Struct("<4sHHII")
JSON_LEN = struct.Struct("<I")
MAX_PAYLOAD = 1 << 20          # 1 MiB: a state of 100k joints would still fit
MAX_JSON = 64 * 1024
MAX_STEPS = 100000             # physics steps per STEP request
F64 = np.dtype("<f8")
MODES = ("position", "impedance", "torque")
COMMAND_ARRAYS = ("position", "velocity", "effort", "stiffness", "damping")
DEFAULT_PORT = 7460


class MsgType(enum.IntEnum):
    HELLO = 1        # client: {"version", "client", "token"}; server reply: robot description
    RESET = 2        # {"seed": int | null} -> STATE
    READ = 3         # -> STATE
    WRITE = 4        # {"mode"} + command arrays -> OK
    STEP = 5         # {"n"} -> OK {"stamp_ns"}
    SAFE_STOP = 6    # -> OK
    CLOSE = 7        # -> OK, then the server closes the connection
    STATE = 16       # {"stamp_ns"} + position, velocity, effort
    OK = 17          # {"stamp_ns"?}
    ERROR = 18       # {"code", "message"}


# --- errors -----------------------------------------------------------------------------------------
class ProtocolError(Exception):
    """Base of every bridge protocol error."""


class FrameError(ProtocolError):
    """A frame that cannot be trusted; the connection must be closed."""


class VersionMismatch(FrameError):
    pass


class PeerGone(ProtocolError):
    """The peer closed the connection or the network failed."""


class PeerTimeout(PeerGone):
    """The peer said nothing for longer than the timeout."""


class RequestError(ProtocolError):
    """A well-formed message with bad content; answered with ERROR, the connection stays."""


class RemoteError(ProtocolError):
    """The peer answered ERROR."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(f"{code}: {message}")


class BackendError(Exception):
    """A backend cannot do what was asked (missing package, bad robot, simulator failure)."""


# --- messages ---------------------------------------------------------------------------------------
@dataclass
class Message:
    type: MsgType
    request_id: int = 0
    fields: dict = field(default_factory=dict)
    arrays: dict = field(default_factory=dict)      # name -> 1-D float64 array


def encode(msg: Message, max_payload: int = MAX_PAYLOAD) -> bytes:
    """One frame for `msg`."""
    if "arrays" in msg.fields:
        raise ValueError("'arrays' is a reserved field name")
    arrays = [(name, np.ascontiguousarray(value, dtype=F64).reshape(-1)) for name, value in msg.arrays.items()]
    head = dict(msg.fields)
    head["arrays"] = [[name, int(a.size)] for name, a in arrays]
    text = json.dumps(head, separators=(",", ":"), allow_nan=False).encode("utf-8")
    payload = b"".join([JSON_LEN.pack(len(text)), text] + [a.tobytes() for _, a in arrays])
    if len(payload) > max_payload:
        raise FrameError(f"payload of {len(payload)} bytes exceeds the limit of {max_payload}")
    return HEADER.pack(MAGIC, VERSION, int(msg.type), msg.request_id & 0xFFFFFFFF, len(payload)) + payload


def decode_header(data: bytes, max_payload: int = MAX_PAYLOAD):
    """(type, request id, payload length) of a 16-byte header; FrameError when it cannot be trusted."""
    if len(data) != HEADER.size:
        raise FrameError(f"truncated header: {len(data)} of {HEADER.size} bytes")
    magic, version, mtype, request_id, length = HEADER.unpack(data)
    if magic != MAGIC:
        raise FrameError(f"bad magic {magic!r} (expected {MAGIC!r}): the peer does not speak the robot-stack bridge "
                         "protocol")
    if version != VERSION:
        raise VersionMismatch(f"protocol version {version}, this side speaks version {VERSION}")
    try:
        kind = MsgType(mtype)
    except ValueError:
        raise FrameError(f"unknown message type {mtype}") from None
    if length > max_payload:
        raise FrameError(f"{kind.name} frame announces {length} payload bytes, limit {max_payload}")
    return kind, request_id, length


def decode_payload(kind: MsgType, request_id: int, payload: bytes) -> Message:
    """The message in `payload`; FrameError when it is malformed."""
    if len(payload) < JSON_LEN.size:
        raise FrameError(f"{kind.name} payload of {len(payload)} bytes has no JSON length")
    (n_json,) = JSON_LEN.unpack_from(payload)
    if n_json > MAX_JSON or JSON_LEN.size + n_json > len(payload):
        raise FrameError(f"{kind.name}: JSON length {n_json} does not fit a payload of {len(payload)} bytes")
    try:
        head = json.loads(payload[JSON_LEN.size:JSON_LEN.size + n_json].decode("utf-8"))
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise FrameError(f"{kind.name}: JSON header is not valid: {exc}") from None
    if not isinstance(head, dict):
        raise FrameError(f"{kind.name}: JSON header must be an object, got {type(head).__name__}")
    spec = head.pop("arrays", [])
    arrays, offset = {}, JSON_LEN.size + n_json
    if not isinstance(spec, list):
        raise FrameError(f"{kind.name}: 'arrays' must be a list of [name, count]")
    for entry in spec:
        ok = isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)
        if not ok or not isinstance(entry[1], int) or isinstance(entry[1], bool) or entry[1] < 0:
            raise FrameError(f"{kind.name}: bad array entry {entry!r} (need [name, count >= 0])")
        end = offset + entry[1] * F64.itemsize
        if end > len(payload):
            raise FrameError(f"{kind.name}: array '{entry[0]}' runs past the payload end")
        arrays[entry[0]] = np.frombuffer(payload[offset:end], dtype=F64).astype(np.float64)
        offset = end
    if offset != len(payload):
        raise FrameError(f"{kind.name}: {len(payload) - offset} unexplained bytes after the arrays")
    return Message(kind, request_id, head, arrays)


def decode(frame: bytes, max_payload: int = MAX_PAYLOAD) -> Message:
    """Decode one complete frame (header + payload)."""
    kind, request_id, length = decode_header(frame[:HEADER.size], max_payload)
    if len(frame) - HEADER.size != length:
        raise FrameError(f"{kind.name} frame: {len(frame) - HEADER.size} payload bytes, header says {length}")
    return decode_payload(kind, request_id, frame[HEADER.size:])


def error_message(code: str, text: str, request_id: int = 0) -> Message:
    return Message(MsgType.ERROR, request_id, {"code": code, "message": text})


# --- typed payloads ---------------------------------------------------------------------------------
@dataclass
class RobotDescription:
    robot: str
    backend: str
    joint_names: list
    lower: np.ndarray
    upper: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray
    physics_hz: float

    def to_message(self, request_id: int = 0, **extra) -> Message:
        fields = {"robot": self.robot, "backend": self.backend, "joint_names": list(self.joint_names),
                  "physics_hz": float(self.physics_hz), "version": VERSION}
        fields.update(extra)
        arrays = {"lower": self.lower, "upper": self.upper, "velocity": self.velocity, "effort": self.effort}
        return Message(MsgType.HELLO, request_id, fields, arrays)

    @classmethod
    def from_message(cls, msg: Message) -> RobotDescription:
        names = msg.fields.get("joint_names")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise RequestError("HELLO: 'joint_names' must be a non-empty list of strings")
        arrays = _arrays(msg, ("lower", "upper", "velocity", "effort"), len(names), finite=False)
        hz = msg.fields.get("physics_hz")
        if not isinstance(hz, (int, float)) or not hz > 0:
            raise RequestError(f"HELLO: 'physics_hz' must be > 0, got {hz!r}")
        return cls(str(msg.fields.get("robot", "")), str(msg.fields.get("backend", "")), names,
                   arrays["lower"], arrays["upper"], arrays["velocity"], arrays["effort"], float(hz))


@dataclass
class State:
    stamp_ns: int          # simulator time
    position: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray

    def to_message(self, request_id: int = 0) -> Message:
        arrays = {"position": self.position, "velocity": self.velocity, "effort": self.effort}
        return Message(MsgType.STATE, request_id, {"stamp_ns": int(self.stamp_ns)}, arrays)

    @classmethod
    def from_message(cls, msg: Message, n: int) -> State:
        stamp = msg.fields.get("stamp_ns")
        if not isinstance(stamp, int) or isinstance(stamp, bool) or stamp < 0:
            raise RequestError(f"STATE: 'stamp_ns' must be an integer >= 0, got {stamp!r}")
        a = _arrays(msg, ("position", "velocity", "effort"), n, finite=False)
        return cls(stamp, a["position"], a["velocity"], a["effort"])


@dataclass
class Command:
    mode: str                          # one of MODES
    position: np.ndarray | None = None
    velocity: np.ndarray | None = None
    effort: np.ndarray | None = None
    stiffness: np.ndarray | None = None
    damping: np.ndarray | None = None

    def to_message(self, request_id: int = 0) -> Message:
        arrays = {}
        for name in COMMAND_ARRAYS:
            value = getattr(self, name)
            if value is not None:
                arrays[name] = value
        return Message(MsgType.WRITE, request_id, {"mode": self.mode}, arrays)

    @classmethod
    def from_message(cls, msg: Message, n: int) -> Command:
        mode = msg.fields.get("mode")
        if mode not in MODES:
            raise RequestError(f"WRITE: unknown mode {mode!r}; use one of {', '.join(MODES)}")
        unknown = sorted(set(msg.arrays) - set(COMMAND_ARRAYS))
        if unknown:
            raise RequestError(f"WRITE: unknown arrays {unknown}; allowed: {', '.join(COMMAND_ARRAYS)}")
        needed = "effort" if mode == "torque" else "position"
        if needed not in msg.arrays:
            raise RequestError(f"WRITE: a {mode} command needs '{needed}'")
        return cls(mode, **_arrays(msg, tuple(msg.arrays), n, finite=True))


def _arrays(msg: Message, names: tuple, n: int, finite: bool) -> dict:
    out = {}
    for name in names:
        value = msg.arrays.get(name)
        if value is None:
            raise RequestError(f"{msg.type.name}: missing array '{name}'")
        if value.size != n:
            raise RequestError(f"{msg.type.name}: '{name}' has {value.size} values for {n} joints")
        if finite and not np.all(np.isfinite(value)):
            raise RequestError(f"{msg.type.name}: '{name}' has non-finite values {value.tolist()}")
        out[name] = value
    return out


# --- backend interface (what the server asks a simulator for) --------------------------------------
class Backend(ABC):
    """A simulator behind the bridge server; one robot, stepped only when told to."""

    @abstractmethod
    def describe(self) -> RobotDescription: ...

    @abstractmethod
    def reset(self, seed: int | None) -> State:
        """Robot back to its initial pose at rest, holding it; sim time keeps counting up."""

    @abstractmethod
    def read(self) -> State: ...

    @abstractmethod
    def write(self, command: Command) -> None:
        """Store the command; it is applied before every following physics step."""

    @abstractmethod
    def step(self, n: int) -> int:
        """Advance n physics steps; the sim time in ns afterwards."""

    @abstractmethod
    def safe_stop(self) -> None:
        """Hold the current position."""

    @abstractmethod
    def close(self) -> None: ...


def sim_time_ns(steps: int, physics_hz: float) -> int:
    """Exact sim time of `steps` physics steps at an integer rate (rounded down to the ns)."""
    if float(physics_hz).is_integer():
        return steps * 1000000000 // int(physics_hz)
    return int(math.floor(steps * 1e9 / physics_hz))


# --- a framed connection ----------------------------------------------------------------------------
class Connection:
    """A socket that sends and receives whole frames; every wait is bounded by `timeout` seconds."""

    def __init__(self, sock: socket.socket, timeout: float = 5.0, max_payload: int = MAX_PAYLOAD):
        self.sock = sock
        self.timeout = float(timeout)
        self.max_payload = max_payload
        self.closed = False
        sock.settimeout(self.timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # not a TCP socket (socketpair in tests): nothing to tune
            pass

    def send(self, msg: Message) -> None:
        data = encode(msg, self.max_payload)
        try:
            self.sock.sendall(data)
        except socket.timeout:  # noqa: UP041  (Python 3.8: socket.timeout is not TimeoutError)
            raise PeerTimeout(f"send timed out after {self.timeout:.1f} s") from None
        except OSError as exc:
            raise PeerGone(f"connection lost while sending: {exc}") from None

    def recv(self) -> Message:
        header = self._recv_exact(HEADER.size, start=True)
        kind, request_id, length = decode_header(header, self.max_payload)
        return decode_payload(kind, request_id, self._recv_exact(length, start=False))

    def wait_readable(self, seconds: float) -> bool:
        """True when data (or EOF) is waiting within `seconds`."""
        readable, _, _ = select.select([self.sock], [], [], max(0.0, seconds))
        return bool(readable)

    def request(self, msg: Message) -> Message:
        """Send a request and return its reply; RemoteError when the reply is ERROR."""
        self.send(msg)
        reply = self.recv()
        if reply.request_id != msg.request_id:
            raise FrameError(f"reply to request {msg.request_id} carries request id {reply.request_id}")
        if reply.type == MsgType.ERROR:
            raise RemoteError(str(reply.fields.get("code", "error")), str(reply.fields.get("message", "")))
        return reply

    def close(self, drain_s: float = 0.0) -> None:
        """Close; with `drain_s`, first half-close and read what the peer still sends for up to that long,
        so a reply sent just before (an ERROR) is not destroyed by a reset over unread input."""
        if self.closed:
            return
        self.closed = True
        try:
            if drain_s > 0:
                self.sock.shutdown(socket.SHUT_WR)
                self._drain(drain_s)
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def _drain(self, seconds: float) -> None:
        deadline, left = time.monotonic() + seconds, 1 << 20
        self.sock.settimeout(seconds)
        while left > 0 and time.monotonic() < deadline:
            chunk = self.sock.recv(min(left, 1 << 16))
            if not chunk:
                return
            left -= len(chunk)

    def _recv_exact(self, n: int, start: bool) -> bytes:
        chunks, got = [], 0
        deadline = time.monotonic() + self.timeout
        while got < n:
            try:
                chunk = self.sock.recv(min(n - got, 1 << 16))
            except socket.timeout:  # noqa: UP041  (Python 3.8: socket.timeout is not TimeoutError)
                raise PeerTimeout(f"no data from the peer for {self.timeout:.1f} s") from None
            except OSError as exc:
                raise PeerGone(f"connection lost: {exc}") from None
            if not chunk:
                if start and got == 0:
                    raise PeerGone("the peer closed the connection")
                raise FrameError(f"connection closed in the middle of a frame ({got} of {n} bytes)")
            chunks.append(chunk)
            got += len(chunk)
            if got < n and time.monotonic() > deadline:
                raise PeerTimeout(f"frame incomplete after {self.timeout:.1f} s ({got} of {n} bytes)")
        return b"".join(chunks)
