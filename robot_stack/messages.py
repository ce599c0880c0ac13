"""ROS 2 message types: the rosbags Jazzy typestore plus the project's `.msg` files.

One typestore per process (`typestore()`), holding the ROS 2 Jazzy standard types and every
`robot_stack/msg/*.msg` file registered under the package name `robot_stack_msgs`. Everything
else (CDR, RIHS01 hashes, DDS type names, YAML/dict conversion, field validation) goes through it.
"""

from __future__ import annotations

import difflib
import functools
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.base import Nodetype

from robot_stack.errors import MessageFieldError, UnknownMessageType

PROJECT_PACKAGE = "robot_stack_msgs"
MSG_DIR = Path(__file__).parent / "msg"

_NUMPY_DTYPES = {
    "bool": np.bool_, "byte": np.uint8, "char": np.uint8, "int8": np.int8, "uint8": np.uint8,
    "int16": np.int16, "uint16": np.uint16, "int32": np.int32, "uint32": np.uint32,
    "int64": np.int64, "uint64": np.uint64, "float32": np.float32, "float64": np.float64,
}
_INT_RANGES = {
    "byte": (0, 255), "char": (0, 255), "int8": (-(2**7), 2**7 - 1), "uint8": (0, 2**8 - 1),
    "int16": (-(2**15), 2**15 - 1), "uint16": (0, 2**16 - 1), "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1), "int64": (-(2**63), 2**63 - 1), "uint64": (0, 2**64 - 1),
}


@functools.cache
def typestore():
    """The process-wide typestore: Jazzy standard types + robot_stack_msgs."""
    store = get_typestore(Stores.ROS2_JAZZY)
    types: dict = {}
    for path in sorted(MSG_DIR.glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{PROJECT_PACKAGE}/msg/{path.stem}"))
    store.register(types)
    return store


def normalize_type_name(name: str) -> str:
    """`pkg/Type`, `pkg/msg/Type` or `pkg::msg::dds_::Type_` -> `pkg/msg/Type` (no existence check)."""
    name = name.strip()
    if "::" in name:
        parts = name.split("::")
        pkg, typ = parts[0], parts[-1]
        return f"{pkg}/msg/{typ[:-1] if typ.endswith('_') else typ}"
    parts = name.split("/")
    if len(parts) == 2:
        return f"{parts[0]}/msg/{parts[1]}"
    return name


def resolve_type(name: str) -> str:
    """Canonical type name, or UnknownMessageType naming the closest known types."""
    full = normalize_type_name(name)
    known = typestore().types
    if full in known:
        return full
    candidates = sorted(known)
    by_short = [t for t in candidates if t.rsplit("/", 1)[-1].lower() == full.rsplit("/", 1)[-1].lower()]
    close = difflib.get_close_matches(full, candidates, n=5, cutoff=0.5)
    suggestions = list(dict.fromkeys(by_short + close))[:5]
    raise UnknownMessageType(name, suggestions)


def get_class(name: str):
    """The message dataclass for a type name."""
    return typestore().types[resolve_type(name)]


def type_name_of(msg: Any) -> str:
    typ = getattr(msg, "__msgtype__", None)
    if typ is None:
        raise TypeError(f"{type(msg).__name__} is not a ROS message (no __msgtype__)")
    return typ


def dds_type_name(name: str) -> str:
    """ROS 2 DDS type name: `sensor_msgs/msg/JointState` -> `sensor_msgs::msg::dds_::JointState_`."""
    pkg, _, typ = resolve_type(name).split("/")
    return f"{pkg}::msg::dds_::{typ}_"


@functools.cache
def type_hash(name: str) -> str:
    """RIHS01 type hash as used in ROS 2 Jazzy discovery (USER_DATA `typehash=...;`)."""
    return typestore().hash_rihs01(resolve_type(name))


def definition(name: str) -> str:
    """Full text definition (the type and every nested type), as `ros2 interface show` would."""
    text, _ = typestore().generate_msgdef(resolve_type(name), ros_version=2)
    return text


def fields(name: str) -> list[tuple[str, tuple]]:
    return typestore().get_msgdef(resolve_type(name)).fields


def serialize(msg: Any) -> bytes:
    """CDR (little endian, with the 4-byte encapsulation header) for any typestore message."""
    typ = type_name_of(msg)
    try:
        return bytes(typestore().serialize_cdr(msg, typ))
    except Exception as exc:  # turn an opaque struct/numpy error into one naming the field
        validate(msg)
        raise MessageFieldError(typ, "?", f"could not serialize: {exc}") from exc


def deserialize(data: bytes | memoryview, name: str) -> Any:
    return typestore().deserialize_cdr(data, name)


def make(type_name: str, /, **values: Any) -> Any:
    """Build a message with defaults for every field not given (values are validated)."""
    return from_dict(type_name, values)


def default_value(kind: Nodetype, detail: Any) -> Any:
    if kind == Nodetype.BASE:
        base = detail[0]
        return "" if base == "string" else (False if base == "bool" else _NUMPY_DTYPES[base](0).item())
    if kind == Nodetype.NAME:
        return from_dict(detail, {})
    (sub_kind, sub_detail), length = detail
    if sub_kind == Nodetype.BASE and sub_detail[0] in _NUMPY_DTYPES:
        return np.zeros(length if kind == Nodetype.ARRAY else 0, dtype=_NUMPY_DTYPES[sub_detail[0]])
    if kind == Nodetype.ARRAY:
        return [default_value(sub_kind, sub_detail) for _ in range(length)]
    return []


def from_dict(name: str, values: dict | None) -> Any:
    """Build a message from plain data (YAML/JSON), checking every field; errors name the field."""
    typ = resolve_type(name)
    values = dict(values or {})
    out = {}
    for fname, (kind, detail) in fields(typ):
        if fname in values:
            out[fname] = _coerce(typ, fname, kind, detail, values.pop(fname))
        else:
            out[fname] = default_value(kind, detail)
    if values:
        known = [f for f, _ in fields(typ)]
        bad = next(iter(values))
        close = difflib.get_close_matches(bad, known, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else f" (fields: {', '.join(known)})"
        raise MessageFieldError(typ, bad, f"no such field{hint}")
    return typestore().types[typ](**out)


def validate(msg: Any) -> Any:
    """Check (and normalize in place: lists -> numpy arrays) every field of a message.

    Runs on every publish, so each type gets a cached list of cheap per-field checks; only a
    field failing its check goes through the full coercion, which converts or names the field.
    """
    typ = type_name_of(msg)
    for fname, ok, kind, detail in _field_checks(typ):
        value = getattr(msg, fname)
        if not ok(value):
            setattr(msg, fname, _coerce(typ, fname, kind, detail, value))
    return msg


@functools.cache
def _field_checks(typ: str) -> tuple:
    return tuple((fname, _fast_check(kind, detail), kind, detail) for fname, (kind, detail) in fields(typ))


def _fast_check(kind: Nodetype, detail: Any) -> Any:
    """A predicate that is True only for values already in canonical form (never a false True)."""
    if kind == Nodetype.BASE:
        base = detail[0]
        if base == "string":
            return (lambda v: type(v) is str) if not detail[1] else (lambda v: False)
        if base == "bool":
            return lambda v: type(v) is bool
        if base in ("float32", "float64"):
            return lambda v: type(v) is float
        return lambda v: False  # integers: range checks go through _coerce_base
    if kind == Nodetype.NAME:
        return lambda v: getattr(v, "__msgtype__", None) == detail and _nested_valid(v)
    (sub_kind, sub_detail), length = detail
    if sub_kind == Nodetype.BASE and sub_detail[0] in _NUMPY_DTYPES:
        dtype = np.dtype(_NUMPY_DTYPES[sub_detail[0]])
        fixed = length if kind == Nodetype.ARRAY else None
        bound = length if kind == Nodetype.SEQUENCE and length else None
        return lambda v: (
            type(v) is np.ndarray and v.dtype == dtype and v.ndim == 1
            and (fixed is None or v.size == fixed) and (bound is None or v.size <= bound)
        )
    if sub_kind == Nodetype.BASE and sub_detail[0] == "string" and not sub_detail[1] and not length:
        return lambda v: type(v) is list and all(type(x) is str for x in v)
    return lambda v: False


def _nested_valid(value: Any) -> bool:
    try:
        validate(value)
    except MessageFieldError:
        return False  # _coerce then raises with the full field path
    return True


def _coerce(typ: str, fname: str, kind: Nodetype, detail: Any, value: Any) -> Any:
    if kind == Nodetype.BASE:
        return _coerce_base(typ, fname, detail[0], value)
    if kind == Nodetype.NAME:
        if isinstance(value, dict):
            try:
                return from_dict(detail, value)
            except MessageFieldError as err:
                raise MessageFieldError(typ, f"{fname}.{err.field}", err.reason) from None
        if getattr(value, "__msgtype__", None) != detail:
            raise MessageFieldError(typ, fname, f"expected {detail}, got {type(value).__name__}")
        try:
            return validate(value)
        except MessageFieldError as err:
            raise MessageFieldError(typ, f"{fname}.{err.field}", err.reason) from None
    return _coerce_sequence(typ, fname, kind, detail, value)


def _coerce_sequence(typ: str, fname: str, kind: Nodetype, detail: Any, value: Any) -> Any:
    (sub_kind, sub_detail), length = detail
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__len__"):
        if not (isinstance(value, bytes) and sub_kind == Nodetype.BASE and sub_detail[0] in ("uint8", "byte", "char")):
            raise MessageFieldError(typ, fname, f"expected a sequence, got {type(value).__name__}")
    n = len(value)
    if kind == Nodetype.ARRAY and n != length:
        raise MessageFieldError(typ, fname, f"expected exactly {length} elements, got {n}")
    if kind == Nodetype.SEQUENCE and length and n > length:
        raise MessageFieldError(typ, fname, f"at most {length} elements allowed, got {n}")
    if sub_kind == Nodetype.BASE and sub_detail[0] in _NUMPY_DTYPES:
        dtype = np.dtype(_NUMPY_DTYPES[sub_detail[0]])
        if isinstance(value, np.ndarray) and value.dtype == dtype and value.ndim == 1:
            return value
        if isinstance(value, (bytes, bytearray, memoryview)) and dtype == np.uint8:
            return np.frombuffer(value, dtype=np.uint8)
        return _to_array(typ, fname, sub_detail[0], dtype, value)
    return [_coerce(typ, f"{fname}[{i}]", sub_kind, sub_detail, v) for i, v in enumerate(value)]


def _to_array(typ: str, fname: str, base: str, dtype: np.dtype, value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != 1 and arr.size:
        raise MessageFieldError(typ, fname, f"expected a 1-D sequence of {base}, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "biuf":
        bad = next((i for i, v in enumerate(value) if not isinstance(v, (int, float, np.number, bool))), 0)
        got = value[bad]
        raise MessageFieldError(typ, f"{fname}[{bad}]", f"expected {base}, got {type(got).__name__} {got!r}")
    if base in _INT_RANGES and arr.size:
        if arr.dtype.kind == "f" and not np.all(np.mod(arr, 1) == 0):
            raise MessageFieldError(typ, fname, f"expected integers ({base}), got {arr.dtype}")
        lo, hi = _INT_RANGES[base]
        if arr.min() < lo or arr.max() > hi:
            raise MessageFieldError(typ, fname, f"values out of range for {base} [{lo}, {hi}]")
    return arr.astype(dtype).reshape(-1)


def _coerce_base(typ: str, fname: str, base: str, value: Any) -> Any:
    if base == "string":
        if not isinstance(value, str):
            raise MessageFieldError(typ, fname, f"expected string, got {type(value).__name__} {value!r}")
        return value
    if base == "bool":
        if not isinstance(value, (bool, np.bool_)):
            raise MessageFieldError(typ, fname, f"expected bool, got {type(value).__name__} {value!r}")
        return bool(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise MessageFieldError(typ, fname, f"expected {base}, got {type(value).__name__} {value!r}")
    if base in _INT_RANGES:
        if isinstance(value, (float, np.floating)) and not float(value).is_integer():
            raise MessageFieldError(typ, fname, f"expected {base} (an integer), got {value!r}")
        lo, hi = _INT_RANGES[base]
        if not lo <= int(value) <= hi:
            raise MessageFieldError(typ, fname, f"{value} out of range for {base} [{lo}, {hi}]")
        return int(value)
    return float(value)


def to_dict(msg: Any) -> Any:
    """Plain Python data (dicts, lists, numbers, strings) for YAML/JSON output."""
    if hasattr(msg, "__msgtype__"):
        return {f: to_dict(getattr(msg, f)) for f, _ in fields(msg.__msgtype__)}
    if isinstance(msg, np.ndarray):
        return msg.tolist()
    if isinstance(msg, (list, tuple)):
        return [to_dict(v) for v in msg]
    if isinstance(msg, np.generic):
        return msg.item()
    return msg
