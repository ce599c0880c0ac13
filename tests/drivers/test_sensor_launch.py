"""The emulated-sensor launch files parse, and every node in them builds with its parameters."""

from __future__ import annotations

from pathlib import Path

import pytest

from robot_stack.launch.config import load_launch_file

LAUNCH_DIR = Path(__file__).resolve().parents[2] / "drivers" / "configs" / "launch"


@pytest.mark.parametrize("name", ["glove_emulated", "ft_emulated", "camera_emulated", "tactile_emulated"])
def test_launch_file_nodes_build(name, ctx):
    config = load_launch_file(LAUNCH_DIR / f"{name}.yaml")
    for process in config.processes:
        for spec in process.nodes:
            node = spec.load_class()(node_name=spec.name, context=ctx, parameter_overrides=dict(spec.parameters))
            try:
                assert node.parameters.undeclared_overrides() == []
            finally:
                node.destroy_node()
