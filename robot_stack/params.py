"""Node parameters: declared with a default, overridden from launch files, typed after declaration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from robot_stack.errors import ParameterError

_ALLOWED = (bool, int, float, str, list, type(None))


@dataclass(frozen=True)
class Parameter:
    name: str
    value: Any
    description: str = ""


class ParameterStore:
    """The parameters of one node (rclpy's declare/get/set shape, without services)."""

    def __init__(self, node_name: str, overrides: dict[str, Any] | None = None):
        self._node = node_name
        self._overrides = dict(overrides or {})
        self._params: dict[str, Parameter] = {}

    def declare(self, name: str, default: Any = None, description: str = "") -> Parameter:
        if name in self._params:
            raise ParameterError(f"node '{self._node}': parameter '{name}' declared twice")
        value = self._overrides.get(name, default)
        if default is not None and value is not None:
            value = _check_type(self._node, name, default, value)
        elif not isinstance(value, _ALLOWED):
            raise ParameterError(f"node '{self._node}': parameter '{name}': unsupported type {type(value).__name__}")
        param = Parameter(name, value, description)
        self._params[name] = param
        return param

    def get(self, name: str) -> Parameter:
        if name not in self._params:
            raise ParameterError(f"node '{self._node}': parameter '{name}' was not declared")
        return self._params[name]

    def has(self, name: str) -> bool:
        return name in self._params

    def set(self, name: str, value: Any) -> Parameter:
        old = self.get(name)
        if old.value is not None and value is not None:
            value = _check_type(self._node, name, old.value, value)
        self._params[name] = Parameter(name, value, old.description)
        return self._params[name]

    def undeclared_overrides(self) -> list[str]:
        """Overrides given (e.g. in a launch file) for parameters the node never declared."""
        return sorted(set(self._overrides) - set(self._params))

    def as_dict(self) -> dict[str, Any]:
        return {n: p.value for n, p in self._params.items()}


def _check_type(node: str, name: str, default: Any, value: Any) -> Any:
    if isinstance(default, bool) or isinstance(value, bool):
        if isinstance(default, bool) and isinstance(value, bool):
            return value
    elif isinstance(default, float) and isinstance(value, (int, float)):
        return float(value)
    elif isinstance(value, type(default)):
        return value
    raise ParameterError(
        f"node '{node}': parameter '{name}' expects {type(default).__name__}, got {type(value).__name__} {value!r}"
    )
