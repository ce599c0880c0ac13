"""Launch-file loading: dataclasses, defaults, and errors that name the file, the node and the field."""

from __future__ import annotations

import textwrap

import pytest

from robot_stack.errors import ConfigError
from robot_stack.launch.config import (
    BUNDLED_DIR,
    ProcessSpec,
    bundled_launch_files,
    load_launch_file,
    parse_launch,
    resolve_launch_path,
)

GOOD = """
transport: inproc
processes:
  arm:
    realtime: {priority: 80, cpus: [0]}
    nodes:
      - name: fake_arm
        class: robot_stack.demo_nodes:FakeArm
        namespace: /robot1
        parameters: {rate_hz: 500.0, gains: {kp: 2, kd: 0.1}, joint_names: [a, b]}
        remap: {joint_states: /arm/joint_states}
  commander:
    transport: dds
    nodes:
      - {name: commander, class: robot_stack.demo_nodes:Commander}
"""


def load(tmp_path, text: str, **kw):
    path = tmp_path / "demo.yaml"
    path.write_text(textwrap.dedent(text))
    return load_launch_file(path, **kw)


def test_good_file_becomes_frozen_dataclasses(tmp_path):
    cfg = load(tmp_path, GOOD, check_imports=False)
    assert cfg.transport == "inproc" and cfg.source.endswith("demo.yaml")
    arm, commander = cfg.processes
    assert (arm.name, arm.transport, commander.transport) == ("arm", "inproc", "dds")
    assert arm.realtime.priority == 80 and arm.realtime.cpus == (0,)
    node = arm.nodes[0]
    assert node.class_path == "robot_stack.demo_nodes:FakeArm"
    assert node.fully_qualified_name == "/robot1/fake_arm"
    assert node.parameters == {"rate_hz": 500.0, "gains.kp": 2, "gains.kd": 0.1, "joint_names": ["a", "b"]}
    assert node.remap == {"joint_states": "/arm/joint_states"}
    assert node.where == "processes.arm.nodes[0] (fake_arm)"
    assert commander.realtime is None and commander.nodes[0].parameters == {}
    with pytest.raises(AttributeError):
        arm.name = "other"  # frozen


def test_transport_defaults_to_dds(tmp_path):
    cfg = load(tmp_path, "processes: {p: {nodes: [{name: n, class: 'robot_stack.demo_nodes:FakeArm'}]}}",
               check_imports=False)
    assert cfg.transport == "dds" and cfg.processes[0].transport == "dds"


def test_process_spec_json_round_trip(tmp_path):
    cfg = load(tmp_path, GOOD, check_imports=False)
    for proc in cfg.processes:
        assert ProcessSpec.from_json(proc.to_json()) == proc


def test_bundled_demo_file_is_found_by_name_and_valid():
    assert "demo_fake_arm" in bundled_launch_files()
    assert resolve_launch_path("demo_fake_arm") == BUNDLED_DIR / "demo_fake_arm.yaml"
    assert resolve_launch_path("demo_fake_arm.yaml") == BUNDLED_DIR / "demo_fake_arm.yaml"
    cfg = load_launch_file("demo_fake_arm", check_imports=False)
    assert [p.name for p in cfg.processes] == ["arm", "commander"]
    assert cfg.transport == "dds"
    assert cfg.process("arm").nodes[0].parameters["rate_hz"] == 500.0


def test_class_imports_are_checked(tmp_path):
    cfg = load(tmp_path, GOOD.replace("transport: dds", "transport: inproc"))
    assert cfg.processes[0].nodes[0].load_class().__name__ == "FakeArm"


NODE = "processes.arm.nodes[0] (fake_arm)"


def _file(node: str = "{name: fake_arm, class: 'robot_stack.demo_nodes:FakeArm'}", top: str = "", proc: str = ""):
    return f"transport: inproc\n{top}processes:\n  arm:\n    {proc}nodes:\n      - {node}\n"


ERRORS = {
    "class not module:Class": (
        _file("{name: fake_arm, class: foo}"), [NODE, "field 'class'", "'foo' is not module:Class"]),
    "module missing": (
        _file("{name: fake_arm, class: 'no_such_module_xyz:Arm'}"),
        [NODE, "field 'class'", "cannot import 'no_such_module_xyz:Arm'"]),
    "class missing, closest named": (
        _file("{name: fake_arm, class: 'robot_stack.demo_nodes:FakeArn'}"),
        [NODE, "no class 'FakeArn'", "did you mean 'robot_stack.demo_nodes:FakeArm'"]),
    "not a Node": (
        _file("{name: fake_arm, class: 'robot_stack.errors:ConfigError'}"), [NODE, "not a robot_stack.node.Node"]),
    "unknown node field": (
        _file("{name: fake_arm, clas: 'robot_stack.demo_nodes:FakeArm'}"),
        [NODE, "unknown field 'clas'", "did you mean 'class'"]),
    "unknown top-level field": (
        _file(top="proceses: {}\n"), ["top level", "unknown field 'proceses'", "did you mean 'processes'"]),
    "unknown process field": (
        _file(proc="realtme: {priority: 5}\n    "), ["processes.arm", "unknown field 'realtme'", "'realtime'"]),
    "name missing": (
        _file("{class: 'robot_stack.demo_nodes:FakeArm'}"), ["processes.arm.nodes[0]", "field 'name' is required"]),
    "bad node name": (
        _file("{name: 'fake arm', class: 'robot_stack.demo_nodes:FakeArm'}"),
        ["processes.arm.nodes[0] (fake arm)", "field 'name'", "not a valid node name"]),
    "parameters not a mapping": (
        _file("{name: fake_arm, class: 'robot_stack.demo_nodes:FakeArm', parameters: [1, 2]}"),
        [NODE, "field 'parameters'", "expected a mapping", "got list"]),
    "parameter value unsupported": (
        _file("{name: fake_arm, class: 'robot_stack.demo_nodes:FakeArm', parameters: {x: [{a: 1}]}}"),
        [NODE, "field 'parameters.x'", "unsupported value"]),
    "remap not a mapping": (
        _file("{name: fake_arm, class: 'robot_stack.demo_nodes:FakeArm', remap: /a}"),
        [NODE, "field 'remap'", "expected a mapping"]),
    "bad namespace": (
        _file("{name: fake_arm, class: 'robot_stack.demo_nodes:FakeArm', namespace: 'a b'}"),
        [NODE, "field 'namespace'"]),
    "realtime priority out of range": (
        _file(proc="realtime: {priority: 150}\n    "), ["processes.arm", "field 'realtime.priority'", "1..99"]),
    "realtime not a mapping": (
        _file(proc="realtime: yes\n    "), ["processes.arm", "field 'realtime'"]),
    "unknown transport": (
        _file().replace("transport: inproc", "transport: ddss"),
        ["top level", "field 'transport'", "did you mean 'dds'"]),
    "unknown process transport": (
        _file(proc="transport: inprok\n    "), ["processes.arm", "field 'transport'", "did you mean 'inproc'"]),
    "no processes": ("transport: inproc\nprocesses: {}\n", ["top level", "field 'processes'", "non-empty"]),
    "processes missing": ("transport: inproc\n", ["top level", "field 'processes' is required"]),
    "no nodes": ("processes:\n  arm:\n    nodes: []\n", ["processes.arm", "field 'nodes'", "non-empty list"]),
    "node not a mapping": (_file("fake_arm"), ["processes.arm.nodes[0]", "expected a mapping", "got str"]),
    "bad process name": (
        "processes:\n  'my arm':\n    nodes: [{name: a, class: 'robot_stack.demo_nodes:FakeArm'}]\n",
        ["processes.my arm", "process names"]),
    "file is a list": ("- a\n- b\n", ["top level", "expected a mapping"]),
    "duplicate yaml key": (
        "processes:\n  arm: {nodes: [{name: a, class: 'robot_stack.demo_nodes:FakeArm'}]}\n"
        "  arm: {nodes: [{name: b, class: 'robot_stack.demo_nodes:FakeArm'}]}\n",
        ["line 3", "duplicate key 'arm'"]),
    "yaml syntax": ("processes:\n  arm: {nodes: [\n", ["line", "invalid YAML"]),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_errors_name_file_node_and_field(tmp_path, case):
    text, fragments = ERRORS[case]
    with pytest.raises(ConfigError) as err:
        load(tmp_path, text)
    message = str(err.value)
    assert message.startswith(str(tmp_path / "demo.yaml") + ": "), message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_duplicate_node_names_across_processes(tmp_path):
    text = """
    transport: inproc
    processes:
      a: {nodes: [{name: arm, class: 'robot_stack.demo_nodes:FakeArm', namespace: r1}]}
      b: {nodes: [{name: arm, class: 'robot_stack.demo_nodes:FakeArm', namespace: r2},
                  {name: arm, class: 'robot_stack.demo_nodes:FakeArm', namespace: /r1}]}
    """
    with pytest.raises(ConfigError) as err:
        load(tmp_path, text)
    msg = str(err.value)
    assert "processes.b.nodes[1] (arm)" in msg and "duplicate node name '/r1/arm'" in msg
    assert "also processes.a.nodes[0] (arm)" in msg


def test_missing_file_lists_bundled_files(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_launch_file(tmp_path / "nope.yaml")
    assert "nope.yaml" in str(err.value) and "demo_fake_arm" in str(err.value)


def test_parse_launch_names_the_given_source():
    with pytest.raises(ConfigError) as err:
        parse_launch({"processes": {"p": {"nodes": [{"name": "n", "class": "x"}]}}}, "inline.yaml")
    assert str(err.value).startswith("inline.yaml: processes.p.nodes[0] (n): field 'class'")
