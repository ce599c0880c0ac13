"""Launch files: YAML -> frozen dataclasses, validated with errors naming file, node and field.

```yaml
transport: dds                  # default for every process (one of the registered transports)
processes:
  arm:                          # process name: one OS process
    transport: dds              # optional per-process override
    realtime: {priority: 80, cpus: [1]}   # optional: SCHED_FIFO (when permitted) and CPU affinity
    nodes:
      - name: fake_arm
        class: robot_stack.demo_nodes:FakeArm   # module:Class, a robot_stack Node subclass
        namespace: ""
        parameters: {rate_hz: 500.0}            # nested mappings become dotted names (gains.kp)
        remap: {/joint_states: /arm/joint_states}
```
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import yaml

from robot_stack.errors import ConfigError, TransportUnavailable
from robot_stack.transport import available_names, transport_class

BUNDLED_DIR = Path(__file__).parent / "configs"
DEFAULT_TRANSPORT = "dds"

_TOP_KEYS = ("transport", "processes")
_PROCESS_KEYS = ("transport", "realtime", "nodes")
_NODE_KEYS = ("name", "class", "namespace", "parameters", "remap")
_REALTIME_KEYS = ("priority", "cpus")
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_PROCESS_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
_CLASS_RE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*\Z")
_SCALARS = (bool, int, float, str, type(None))


@dataclass(frozen=True)
class RealtimeSpec:
    priority: int  # SCHED_FIFO priority, 1..99
    cpus: tuple[int, ...] = ()  # CPU affinity; empty: leave it alone


@dataclass(frozen=True)
class NodeSpec:
    name: str
    class_path: str  # "module:Class"
    namespace: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    remap: dict[str, str] = field(default_factory=dict)
    where: str = ""  # "processes.arm.nodes[0] (fake_arm)": how errors name this node

    @property
    def fully_qualified_name(self) -> str:
        ns = self.namespace.strip("/")
        return f"/{ns}/{self.name}" if ns else f"/{self.name}"

    def load_class(self) -> type:
        return import_class(self.class_path)


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    transport: str
    nodes: tuple[NodeSpec, ...]
    realtime: RealtimeSpec | None = None
    source: str = ""  # the launch file, for messages

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ProcessSpec:
        data = json.loads(text)
        rt = data.pop("realtime")
        nodes = tuple(NodeSpec(**n) for n in data.pop("nodes"))
        realtime = RealtimeSpec(rt["priority"], tuple(rt["cpus"])) if rt else None
        return cls(nodes=nodes, realtime=realtime, **data)


@dataclass(frozen=True)
class LaunchConfig:
    source: str
    transport: str
    processes: tuple[ProcessSpec, ...]

    def process(self, name: str) -> ProcessSpec:
        for proc in self.processes:
            if proc.name == name:
                return proc
        raise KeyError(name)


def import_class(path: str) -> type:
    """`module:Class` (or `module:Outer.Inner`) -> the class. Raises ImportError/AttributeError."""
    module_name, _, attr = path.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def bundled_launch_files() -> list[str]:
    """Launch files shipped inside the package (`robot-stack launch demo_fake_arm`)."""
    return sorted(p.stem for p in BUNDLED_DIR.glob("*.yaml"))


def resolve_launch_path(name: str | Path) -> Path:
    """An existing file, else a bundled launch file by name (with or without `.yaml`)."""
    path = Path(name)
    if path.is_file():
        return path
    bundled = BUNDLED_DIR / (path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml")
    if path.parent == Path(".") and bundled.is_file():
        return bundled
    names = ", ".join(bundled_launch_files()) or "none"
    raise ConfigError(str(name), "file", f"no such file (bundled launch files: {names})")


def load_launch_file(path: str | Path, *, check_imports: bool = True) -> LaunchConfig:
    """Read and validate a launch file. `check_imports` also imports every node class and transport."""
    path = resolve_launch_path(path)
    source = str(path)
    try:
        data = yaml.load(path.read_text(), Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "yaml"
        raise ConfigError(source, where, f"invalid YAML: {getattr(exc, 'problem', None) or exc}") from None
    return parse_launch(data, source, check_imports=check_imports)


def parse_launch(data: Any, source: str, *, check_imports: bool = True) -> LaunchConfig:
    v = _Validator(source, check_imports)
    if not isinstance(data, dict):
        v.fail("top level", f"expected a mapping with 'processes', got {_kind(data)}")
    v.keys("top level", data, _TOP_KEYS, required=("processes",))
    transport = v.transport("top level", data.get("transport", DEFAULT_TRANSPORT))
    procs = data["processes"]
    if not isinstance(procs, dict) or not procs:
        v.fail("top level", f"field 'processes': expected a non-empty mapping name -> process, got {_kind(procs)}")
    processes = tuple(v.process(str(name), body, transport) for name, body in procs.items())
    v.check_unique_nodes(processes)
    return LaunchConfig(source, transport, processes)


class _Validator:
    def __init__(self, source: str, check_imports: bool):
        self.source = source
        self.check_imports = check_imports
        self._checked_transports: set[str] = set()

    def fail(self, where: str, reason: str) -> NoReturn:
        raise ConfigError(self.source, where, reason)

    def keys(self, where: str, mapping: dict, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> None:
        for key in mapping:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.5)
                hint = f" (did you mean '{close[0]}'?)" if close else f" (valid fields: {', '.join(allowed)})"
                self.fail(where, f"unknown field '{key}'{hint}")
        for key in required:
            if key not in mapping:
                self.fail(where, f"field '{key}' is required")

    def transport(self, where: str, name: Any) -> str:
        known = available_names()
        if not isinstance(name, str) or name not in known:
            close = difflib.get_close_matches(str(name), known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            self.fail(where, f"field 'transport': unknown transport {name!r}{hint}; known: {', '.join(known)}")
        if self.check_imports and name not in self._checked_transports:
            try:
                transport_class(name).check_available()
            except TransportUnavailable as exc:
                self.fail(where, f"field 'transport': transport '{name}' is unavailable here: {exc}")
            self._checked_transports.add(name)
        return name

    def process(self, name: str, body: Any, default_transport: str) -> ProcessSpec:
        where = f"processes.{name}"
        if not _PROCESS_RE.match(name):
            self.fail(where, "process names use letters, digits, '_', '.', '-'")
        if not isinstance(body, dict):
            self.fail(where, f"expected a mapping with 'nodes', got {_kind(body)}")
        self.keys(where, body, _PROCESS_KEYS, required=("nodes",))
        transport = self.transport(where, body["transport"]) if "transport" in body else default_transport
        nodes = body["nodes"]
        if not isinstance(nodes, list) or not nodes:
            self.fail(where, f"field 'nodes': expected a non-empty list of nodes, got {_kind(nodes)}")
        specs = tuple(self.node(f"{where}.nodes[{i}]", n) for i, n in enumerate(nodes))
        realtime = self.realtime(where, body.get("realtime"))
        return ProcessSpec(name, transport, specs, realtime, self.source)

    def realtime(self, where: str, body: Any) -> RealtimeSpec | None:
        if body is None:
            return None
        if not isinstance(body, dict):
            self.fail(where, f"field 'realtime': expected a mapping like {{priority: 80}}, got {_kind(body)}")
        self.keys(f"{where}.realtime", body, _REALTIME_KEYS, required=("priority",))
        prio = body["priority"]
        if isinstance(prio, bool) or not isinstance(prio, int) or not 1 <= prio <= 99:
            self.fail(where, f"field 'realtime.priority': expected an integer in 1..99, got {prio!r}")
        cpus = body.get("cpus", [])
        if not isinstance(cpus, list) or not all(type(c) is int and c >= 0 for c in cpus):
            self.fail(where, f"field 'realtime.cpus': expected a list of CPU numbers, got {cpus!r}")
        return RealtimeSpec(prio, tuple(cpus))

    def node(self, where: str, body: Any) -> NodeSpec:
        if not isinstance(body, dict):
            self.fail(where, f"expected a mapping with 'name' and 'class', got {_kind(body)}")
        name = body.get("name")
        if isinstance(name, str) and name:
            where = f"{where} ({name})"
        self.keys(where, body, _NODE_KEYS, required=("name", "class"))
        if not isinstance(name, str) or not _NAME_RE.match(name):
            self.fail(where, f"field 'name': {name!r} is not a valid node name (letters, digits, '_')")
        namespace = body.get("namespace") or ""
        if not isinstance(namespace, str) or not all(_NAME_RE.match(t) for t in namespace.strip("/").split("/") if t):
            self.fail(where, f"field 'namespace': {namespace!r} is not a valid namespace (like '/robot1')")
        class_path = self.node_class(where, body["class"])
        params = self.parameters(where, body.get("parameters"))
        remap = self.remap(where, body.get("remap"))
        return NodeSpec(name, class_path, namespace, params, remap, where)

    def node_class(self, where: str, path: Any) -> str:
        if not isinstance(path, str) or not _CLASS_RE.match(path):
            self.fail(where, f"field 'class': {path!r} is not module:Class")
        if not self.check_imports:
            return path
        try:
            cls = import_class(path)
        except ModuleNotFoundError as exc:
            self.fail(where, f"field 'class': cannot import '{path}': {exc}")
        except AttributeError:
            module_name, _, attr = path.partition(":")
            names = [n for n in dir(importlib.import_module(module_name)) if not n.startswith("_")]
            close = difflib.get_close_matches(attr.split(".")[-1], names, n=1)
            hint = f" (did you mean '{module_name}:{close[0]}'?)" if close else ""
            self.fail(where, f"field 'class': module '{module_name}' has no class '{attr}'{hint}")
        except Exception as exc:  # noqa: BLE001 - the module itself is broken; say so and where
            self.fail(where, f"field 'class': importing '{path}' raised {type(exc).__name__}: {exc}")
        from robot_stack.node import Node

        if not (isinstance(cls, type) and issubclass(cls, Node)):
            self.fail(where, f"field 'class': '{path}' is not a robot_stack.node.Node subclass")
        return path

    def parameters(self, where: str, params: Any) -> dict[str, Any]:
        if params is None:
            return {}
        if not isinstance(params, dict):
            self.fail(where, f"field 'parameters': expected a mapping of name -> value, got {_kind(params)}")
        out: dict[str, Any] = {}
        for key, value in params.items():
            if not isinstance(key, str) or not key:
                self.fail(where, f"field 'parameters': parameter names must be non-empty strings, got {key!r}")
            if isinstance(value, dict):
                for sub, sub_value in self.parameters(where, value).items():
                    out[f"{key}.{sub}"] = sub_value
            elif isinstance(value, _SCALARS) or (isinstance(value, list) and _scalar_list(value)):
                out[key] = value
            else:
                self.fail(where, f"field 'parameters.{key}': unsupported value {value!r} ({_kind(value)})")
        return out

    def remap(self, where: str, remap: Any) -> dict[str, str]:
        if remap is None:
            return {}
        if not isinstance(remap, dict):
            self.fail(where, f"field 'remap': expected a mapping of topic -> topic, got {_kind(remap)}")
        for src, dst in remap.items():
            for topic in (src, dst):
                if not isinstance(topic, str) or not topic or any(c.isspace() for c in topic):
                    self.fail(where, f"field 'remap': {topic!r} is not a topic name")
        return dict(remap)

    def check_unique_nodes(self, processes: tuple[ProcessSpec, ...]) -> None:
        seen: dict[str, str] = {}
        for proc in processes:
            for node in proc.nodes:
                fqn = node.fully_qualified_name
                if fqn in seen:
                    self.fail(node.where, f"field 'name': duplicate node name '{fqn}' (also {seen[fqn]})")
                seen[fqn] = node.where


def _scalar_list(values: list) -> bool:
    return all(isinstance(v, _SCALARS) or (isinstance(v, list) and _scalar_list(v)) for v in values)


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys instead of keeping the last one silently."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)
