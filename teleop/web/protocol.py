"""The page <-> server WebSocket protocol (schema version 1): parsing, validation, encoding.

Browser -> server, JSON text messages, each `{"v": 1, "type": ..., "seq": int, "t": client ms}`:
- `hello`: `{"token": str}` (only needed when the page URL carried no token);
- `pose`: `{"pos": [x, y, z], "quat": [x, y, z, w], "engaged": bool, "grip": 0..1 | null,
  "source": "xr" | "mouse"}` -- the controller's grip pose in the page's reference space;
- `event`: `{"event": "start" | "stop" | "discard" | "success" | "failure" | "reset"}`;
- `ack`: `{"drawn": n}` -- how many feedback updates the page has drawn (for statistics).
Anything else (not JSON, NaN or Infinity, wrong version or type, a missing or mistyped field,
more than `max_message_bytes`, binary) raises `BadClientMessage`, whose `reason` is counted.

Server -> browser: JSON `hello` (`send_hz`), `wrench`, `tactile`, `status`; camera frames are
binary messages holding one JPEG each.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from teleop.web.errors import BadClientMessage

SCHEMA_VERSION = 1
EVENTS = {"start": 0, "stop": 1, "discard": 2, "success": 3, "failure": 4, "reset": 5}
SOURCES = ("xr", "mouse")


@dataclass(frozen=True)
class Pose:
    seq: int
    t: float
    pos: tuple[float, float, float]
    quat: tuple[float, float, float, float]     # x, y, z, w
    engaged: bool
    grip: float                                 # NaN when the device has no trigger
    source: str


@dataclass(frozen=True)
class Event:
    seq: int
    t: float
    event: str

    @property
    def code(self) -> int:
        return EVENTS[self.event]


@dataclass(frozen=True)
class Hello:
    seq: int
    t: float
    token: str


@dataclass(frozen=True)
class Ack:
    seq: int
    t: float
    drawn: int


ClientMessage = Pose | Event | Hello | Ack


def _reject_constant(name: str) -> Any:
    raise BadClientMessage("nonfinite", f"JSON constant {name} is not allowed")


def _number(msg: dict, key: str) -> float:
    value = msg.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadClientMessage("schema", f"'{key}' must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise BadClientMessage("nonfinite", f"'{key}' is not finite")
    return float(value)


def _vector(msg: dict, key: str, size: int) -> tuple[float, ...]:
    value = msg.get(key)
    if not isinstance(value, list) or len(value) != size:
        raise BadClientMessage("schema", f"'{key}' must be a list of {size} numbers")
    return tuple(_number({key: v}, key) for v in value)


def _header(msg: Any) -> tuple[str, int, float]:
    if not isinstance(msg, dict):
        raise BadClientMessage("schema", f"a message must be a JSON object, got {type(msg).__name__}")
    if msg.get("v") != SCHEMA_VERSION:
        raise BadClientMessage("version", f"schema version {msg.get('v')!r}, this server speaks {SCHEMA_VERSION}")
    seq = msg.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise BadClientMessage("schema", "'seq' must be an integer >= 0")
    return str(msg.get("type")), seq, _number(msg, "t")


def _pose(msg: dict, seq: int, t: float) -> Pose:
    pos, quat = _vector(msg, "pos", 3), _vector(msg, "quat", 4)
    norm = math.sqrt(sum(q * q for q in quat))
    if not 0.5 < norm < 2.0:
        raise BadClientMessage("schema", f"'quat' must be a unit quaternion, norm {norm:.3g}")
    engaged, source = msg.get("engaged"), msg.get("source", "mouse")
    if not isinstance(engaged, bool):
        raise BadClientMessage("schema", "'engaged' must be true or false")
    if source not in SOURCES:
        raise BadClientMessage("schema", f"'source' must be one of {SOURCES}")
    grip = math.nan if msg.get("grip") is None else _number(msg, "grip")
    if not (math.isnan(grip) or 0.0 <= grip <= 1.0):
        raise BadClientMessage("schema", "'grip' must be 0..1 or null")
    return Pose(seq, t, pos, tuple(q / norm for q in quat), engaged, grip, source)


def parse_client(data: str | bytes, max_bytes: int) -> ClientMessage:
    """One browser message, validated; BadClientMessage (with a counter `reason`) otherwise."""
    if isinstance(data, bytes):
        raise BadClientMessage("binary", "the page sends JSON text only")
    if len(data) > max_bytes:
        raise BadClientMessage("oversize", f"{len(data)} characters, limit {max_bytes}")
    try:
        msg = json.loads(data, parse_constant=_reject_constant)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise BadClientMessage("json", str(exc)) from None
    kind, seq, t = _header(msg)
    if kind == "pose":
        return _pose(msg, seq, t)
    if kind == "event":
        if msg.get("event") not in EVENTS:
            raise BadClientMessage("schema", f"'event' must be one of {sorted(EVENTS)}")
        return Event(seq, t, msg["event"])
    if kind == "hello":
        token = msg.get("token", "")
        if not isinstance(token, str):
            raise BadClientMessage("schema", "'token' must be a string")
        return Hello(seq, t, token)
    if kind == "ack":
        drawn = msg.get("drawn")
        if isinstance(drawn, bool) or not isinstance(drawn, int):
            raise BadClientMessage("schema", "'drawn' must be an integer")
        return Ack(seq, t, drawn)
    raise BadClientMessage("schema", f"unknown message type {kind!r}")


def encode(kind: str, **fields: Any) -> str:
    """A server -> page JSON message (no NaN: non-finite floats go out as null)."""
    return json.dumps({"v": SCHEMA_VERSION, "type": kind, **_finite(fields)}, separators=(",", ":"))


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
