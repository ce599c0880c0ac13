"""Teleop configs -> a `robot-stack launch` process layout (`robot_stack.launch.parse_launch`).

    transport: dds
    emulators:                    # optional: emulated devices, started first (their ptys must exist)
      - {name: leader, class: teleop.emulated:LeaderEmulatorNode, parameters: {device: koch}}
    robot:                        # the robot (or simulator) the device drives: one node or a list
      - {name: sim, class: sim.node:SimNode, parameters: {task: push_t}}
    devices:                      # teleop input nodes (exo, glove driver + mapping, keyboard, pedal...)
      - {name: exo, class: teleop.exo:ExoNode, parameters: {mapping: exo_koch_to_panda.yaml}}
    recorder:                     # optional: the data recorder, fed by the devices' EpisodeEvents
      config: recorder_push_t.yaml
      parameters: {task: "push the T"}

Node entries are launch-file node entries (name, class, namespace, parameters, remap) and are
validated by `parse_launch`. Each group runs in its own process: `emulators`, `robot`, `teleop`,
`recorder`. Relative file paths in the parameters `mapping`, `config`, `calibration` and
`leader_calibration` (and `recorder.config`) are taken from the teleop config's directory when a
file is there. Classes are named by path strings (sim.*, data.*): teleop never imports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robot_stack.launch.config import LaunchConfig, parse_launch
from teleop.config import check, from_mapping, load_yaml, nested

RECORDER_CLASS = "data.recorder:RecorderNode"
PATH_PARAMETERS = ("mapping", "config", "calibration", "leader_calibration")
CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass(frozen=True)
class RecorderEntry:
    config: str
    name: str = "recorder"
    parameters: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check(isinstance(self.config, str) and self.config, "config", "a recorder YAML file is required")
        check(isinstance(self.parameters, dict), "parameters", "expected a mapping")


@dataclass(frozen=True)
class TeleopConfig:
    devices: tuple[dict[str, Any], ...]
    robot: tuple[dict[str, Any], ...]
    transport: str = "dds"
    emulators: tuple[dict[str, Any], ...] = ()
    recorder: RecorderEntry | None = nested(RecorderEntry, default=None)
    source: str = ""

    def __post_init__(self) -> None:
        robot = self.robot if isinstance(self.robot, tuple) else (self.robot,)
        object.__setattr__(self, "robot", robot)
        for name in ("devices", "robot", "emulators"):
            entries = getattr(self, name)
            check(isinstance(entries, tuple) and all(isinstance(e, dict) for e in entries), name,
                  "expected a list of node entries (mappings with name, class, parameters)")
        check(len(self.devices) > 0, "devices", "at least one teleop device node is needed")
        check(len(self.robot) > 0, "robot", "a robot (or simulator) node is needed")

    @classmethod
    def load(cls, path: str | Path) -> TeleopConfig:
        """A teleop config file, or a bundled one by name (`sim_exo_push_t`)."""
        path = resolve(path)
        data = load_yaml(path)
        data = {**data, "source": str(path)}
        return from_mapping(cls, _dicts(data), str(path))

    @property
    def base(self) -> Path:
        return Path(self.source).parent if self.source else Path.cwd()

    def layout(self, *, recorder: bool = True) -> dict[str, Any]:
        """The launch-file mapping: one process per group."""
        groups = [("emulators", self.emulators), ("robot", self.robot), ("teleop", self.devices)]
        if recorder and self.recorder is not None:
            params = {**self.recorder.parameters, "config": self.recorder.config}
            groups.append(("recorder", ({"name": self.recorder.name, "class": RECORDER_CLASS,
                                         "parameters": params},)))
        processes = {name: {"nodes": [self._resolve_paths(n) for n in nodes]} for name, nodes in groups if nodes}
        return {"transport": self.transport, "processes": processes}

    def launch(self, *, recorder: bool = True, check_imports: bool = True) -> LaunchConfig:
        return parse_launch(self.layout(recorder=recorder), self.source or "<teleop config>",
                            check_imports=check_imports)

    def _resolve_paths(self, node: dict[str, Any]) -> dict[str, Any]:
        params = dict(node.get("parameters") or {})
        for key in PATH_PARAMETERS:
            value = params.get(key)
            if isinstance(value, str) and value and not Path(value).is_absolute() and (self.base / value).is_file():
                params[key] = str((self.base / value).resolve())
        return {**node, "parameters": params} if params else dict(node)

    def node_names(self, group: str) -> list[str]:
        entries = {"devices": self.devices, "robot": self.robot, "emulators": self.emulators}[group]
        return [str(e.get("name", "")) for e in entries]


def _dicts(data: dict[str, Any]) -> dict[str, Any]:
    """Node lists stay lists of mappings (from_mapping would turn nested lists into tuples only)."""
    out = dict(data)
    for key in ("devices", "robot", "emulators"):
        value = out.get(key)
        if isinstance(value, dict):
            out[key] = [value]
    return out


def resolve(path: str | Path) -> Path:
    path = Path(path)
    if path.is_file():
        return path
    bundled = CONFIG_DIR / (path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml")
    if path.parent == Path(".") and bundled.is_file():
        return bundled
    return path          # load_yaml says it cannot be read
