"""cyclonedds IDL types generated from the typestore, so discovery announces truthful XTypes info.

The generated classes are never instantiated: samples travel as the typestore's CDR bytes. They
only give cyclone the type name (`pkg::msg::dds_::Type_`), the member layout and the type
identifier it announces to (and checks against) other DDS participants.
"""

from __future__ import annotations

import functools
import keyword
from typing import Any

from cyclonedds.idl import IdlStruct, make_idl_struct
from cyclonedds.idl import types as idl
from rosbags.typesys.base import Nodetype

from robot_stack import messages

# ROS 2 IDL mapping (rosidl): `byte` is an octet, `char` is an uint8.
_BASE_TYPES: dict[str, Any] = {
    "bool": bool, "byte": idl.byte, "char": idl.uint8,
    "int8": idl.int8, "uint8": idl.uint8, "int16": idl.int16, "uint16": idl.uint16,
    "int32": idl.int32, "uint32": idl.uint32, "int64": idl.int64, "uint64": idl.uint64,
    "float32": idl.float32, "float64": idl.float64,
}


@functools.cache
def idl_struct(type_name: str) -> type[IdlStruct]:
    """The cyclonedds struct for a typestore type (cached; nested types share their structs)."""
    full = messages.resolve_type(type_name)
    members = {
        member_name(name): _member_type(full, name, kind, detail) for name, (kind, detail) in messages.fields(full)
    }
    pkg, _, typ = full.split("/")
    # dataclassify=False: never instantiated, and a member may be a Python keyword.
    return make_idl_struct(f"{pkg}__{typ}_", messages.dds_type_name(full), members, dataclassify=False)


def member_name(field: str) -> str:
    """The wire name of a field: rosbags appends `_` to Python keywords (`from` -> `from_`)."""
    if field.endswith("_") and keyword.iskeyword(field[:-1]):
        return field[:-1]
    return field


def _member_type(owner: str, field: str, kind: Nodetype, detail: Any) -> Any:
    if kind == Nodetype.BASE:
        return _base_type(owner, field, *detail)
    if kind == Nodetype.NAME:
        return idl_struct(detail)
    if kind in (Nodetype.ARRAY, Nodetype.SEQUENCE):
        (sub_kind, sub_detail), length = detail
        sub = _member_type(owner, field, sub_kind, sub_detail)
        if kind == Nodetype.ARRAY:
            return idl.array[sub, length]
        return idl.sequence[sub, length] if length else idl.sequence[sub]
    raise TypeError(f"{owner}: field '{field}' has an unsupported kind {kind!r}")


def _base_type(owner: str, field: str, base: str, bound: int) -> Any:
    if base == "string":
        return idl.bounded_str[bound] if bound else str
    if base == "wstring":
        raise TypeError(f"{owner}: field '{field}': wstring is not supported by the dds transport")
    try:
        return _BASE_TYPES[base]
    except KeyError:
        raise TypeError(f"{owner}: field '{field}' has an unsupported base type {base!r}") from None
