"""Registry: registration sets the name attribute, lookups suggest close names, loaders run lazily."""

from __future__ import annotations

import pytest

from robot_stack.registry import Registry


class Unknown(KeyError):
    pass


def test_register_get_names_and_suggestions():
    reg: Registry[object] = Registry("widget", Unknown, attr="kind")

    @reg.register("gear_box")
    class GearBox:
        pass

    assert GearBox.kind == "gear_box" and reg.get("gear_box") is GearBox and reg.names() == ["gear_box"]
    with pytest.raises(Unknown, match="unknown widget 'gearbox'; available: gear_box; did you mean gear_box"):
        reg.get("gearbox")
    assert "gear_box" in reg and "x" not in reg


def test_loader_runs_before_lookups():
    calls = []
    reg: Registry[object] = Registry("thing", loader=lambda: calls.append(1) or reg.register("late")(type("L", (), {})))
    assert reg.names() == ["late"] and calls
    with pytest.raises(KeyError, match="available: late"):
        reg.get("other")
