"""Frozen config dataclasses from YAML mappings, with errors that name the file and the field.

`from_mapping(cls, data, source, where)` checks unknown keys (with a close-match hint), required
fields, turns lists into tuples and nested mappings into the dataclass a field's `nested` metadata
names; `FieldError`s raised by a dataclass's `__post_init__` become `TeleopConfigError`s.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from pathlib import Path
from typing import Any, TypeVar

import yaml

from teleop.errors import FieldError, TeleopConfigError

T = TypeVar("T")


def load_yaml(path: str | Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise TeleopConfigError(str(path), "file", f"cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise TeleopConfigError(str(path), "yaml", f"invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise TeleopConfigError(str(path), "top level", f"expected a mapping, got {type(data).__name__}")
    return data


def nested(cls: type, *, many: bool = False, **kwargs: Any) -> Any:
    """A dataclass field whose YAML value is a mapping (`many`: a list of mappings) built as `cls`."""
    return dataclasses.field(metadata={"nested": cls, "many": many}, **kwargs)


def _tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def from_mapping(cls: type[T], data: Any, source: str, where: str = "top level") -> T:
    if not isinstance(data, dict):
        raise TeleopConfigError(source, where, f"expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (valid fields: {', '.join(fields)})"
            raise TeleopConfigError(source, where, f"unknown field '{key}'{hint}")
    missing = [n for n, f in fields.items() if n not in data and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise TeleopConfigError(source, where, f"field '{missing[0]}' is required")
    values = {}
    for key, value in data.items():
        sub = fields[key].metadata.get("nested")
        if sub is None or value is None:
            values[key] = _tuples(value)
        elif fields[key].metadata.get("many"):
            if not isinstance(value, list):
                raise TeleopConfigError(source, key if where == "top level" else f"{where}.{key}",
                                    f"expected a list, got {type(value).__name__}")
            values[key] = tuple(from_mapping(sub, v, source, f"{where}.{key}[{i}]") for i, v in enumerate(value))
        else:
            values[key] = from_mapping(sub, value, source, f"{where}.{key}")
    try:
        return cls(**values)
    except FieldError as exc:
        field = exc.field if where == "top level" else f"{where}.{exc.field}"
        raise TeleopConfigError(source, field, exc.reason) from None
    except (TypeError, ValueError) as exc:
        raise TeleopConfigError(source, where, str(exc)) from None


def check(ok: bool, field: str, reason: str) -> None:
    """In `__post_init__`: raise a FieldError naming `field` unless `ok`."""
    if not ok:
        raise FieldError(field, reason)


def finite(values: Any) -> bool:
    try:
        return all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)
    except TypeError:
        return False
