"""The recorder's YAML configuration (frozen dataclasses, validated with errors naming the field),
and the checks made before recording: free disk space, the calibration file.

```yaml
dataset: datasets/sim_push_t        # relative paths: to the directory you run the recorder in
task: "push the T into the target"  # default task text (CLI --task / the node's `task` overrides it)
robot:
  name: sim_panda
  calibration: sim_panda.calibration.yaml   # relative to this file; its content goes into episode meta
min_free_mb: 500                    # refuse to start (and stop, committing) below this much free disk
flush_period_s: 0.5                 # open episodes are flushed this often (<= 1 s)
status_hz: 2.0                      # DiagnosticStatus on ~/status
events_topic: episode_events        # robot_stack_msgs/EpisodeEvent
streams:
  - topic: /joint_states
    type: sensor_msgs/msg/JointState
    fps: 500                        # rate hint: sizes the receive queue (2 s of messages)
  - topic: /fixed/image_raw
    type: sensor_msgs/msg/Image     # Images default to encoding: video (others: columnar; TactileFrame: raw)
    key: cam_fixed                  # default: the topic with '/' -> '.' (fixed.image_raw)
    codec: libsvtav1                # or libx264
    fps: 30
    reliability: best_effort        # best_effort (matches any publisher; default) | reliable
```
"""

from __future__ import annotations

import difflib
import math
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from data.store import ENCODINGS, StoreError, StreamSpec
from data.video import CODECS
from robot_stack import messages
from robot_stack.errors import ConfigError, UnknownMessageType

IMAGE_TYPE = "sensor_msgs/msg/Image"
RAW_TYPES = ("robot_stack_msgs/msg/TactileFrame",)
RELIABILITIES = ("best_effort", "reliable")
_TOP_KEYS = ("dataset", "task", "robot", "min_free_mb", "flush_period_s", "status_hz", "events_topic", "streams")
_ROBOT_KEYS = ("name", "calibration")
_STREAM_KEYS = ("topic", "type", "key", "encoding", "codec", "fps", "reliability", "depth")


class RecorderConfigError(StoreError, ConfigError):
    """A recorder configuration is wrong; the message names the file and the field."""


@dataclass(frozen=True)
class RecordStream:
    topic: str
    type: str
    key: str
    encoding: str
    codec: str = "libsvtav1"
    fps: float = 30.0
    reliability: str = "best_effort"
    depth: int = 60

    def spec(self) -> StreamSpec:
        return StreamSpec(self.key, self.topic, self.type, self.encoding, self.codec, self.fps)


@dataclass(frozen=True)
class RecorderConfig:
    dataset: str
    streams: tuple[RecordStream, ...]
    task: str = ""
    robot_name: str = ""
    calibration: str = ""            # absolute path or ""
    min_free_mb: float = 500.0
    flush_period_s: float = 0.5
    status_hz: float = 2.0
    events_topic: str = "episode_events"
    source: str = field(default="", compare=False)

    def with_overrides(self, **values: Any) -> RecorderConfig:
        return replace(self, **{k: v for k, v in values.items() if v not in (None, "")})

    def as_meta(self) -> dict[str, Any]:
        """The recorder config as stored in episode meta."""
        return {"source": self.source, "dataset": self.dataset, "min_free_mb": self.min_free_mb,
                "flush_period_s": self.flush_period_s, "events_topic": self.events_topic,
                "streams": [vars(s) for s in self.streams]}


class DiskSpaceError(StoreError):
    pass


def check_disk(root: Path, min_free_mb: float) -> float:
    """Free MB under `root`; DiskSpaceError when below `min_free_mb`."""
    free_mb = shutil.disk_usage(root).free / 2**20
    if free_mb < min_free_mb:
        raise DiskSpaceError(f"dataset {root}: only {free_mb:.0f} MB free, the recorder needs min_free_mb = "
                             f"{min_free_mb:g} MB; free some space or lower min_free_mb")
    return free_mb


def read_calibration(path: str) -> Any:
    """A calibration file's content for episode meta: parsed YAML/JSON, else the text."""
    if not path:
        return None
    text = Path(path).read_text()
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def load_config(path: str | Path) -> RecorderConfig:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise RecorderConfigError(str(path), "file", f"cannot read: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise RecorderConfigError(str(path), "file", f"not valid YAML: {exc}") from exc
    return parse_config(data, source=str(path), base=path.parent)


def parse_config(data: Any, *, source: str = "<config>", base: Path | None = None) -> RecorderConfig:
    """Validate a config mapping; `base` resolves a relative calibration path."""
    err = _Errors(source)
    if not isinstance(data, dict):
        err.fail("top level", f"must be a mapping with keys {', '.join(_TOP_KEYS)}, got {type(data).__name__}")
    err.unknown_keys(data, _TOP_KEYS, "top level")
    dataset = err.string(data, "dataset", "dataset", required=True)
    robot = data.get("robot") or {}
    if not isinstance(robot, dict):
        err.fail("robot", "must be a mapping with 'name' and 'calibration'")
    err.unknown_keys(robot, _ROBOT_KEYS, "robot")
    calibration = err.string(robot, "calibration", "robot.calibration")
    if calibration:
        cal = Path(calibration).expanduser()
        cal = cal if cal.is_absolute() or base is None else base / cal
        if not cal.is_file():
            err.fail("robot.calibration", f"file {cal} does not exist")
        calibration = str(cal.resolve())
    streams = data.get("streams")
    if not isinstance(streams, list) or not streams:
        err.fail("streams", "must be a non-empty list of {topic, type, ...}")
    parsed = tuple(_parse_stream(err, s, f"streams[{i}]") for i, s in enumerate(streams))
    keys = [s.key for s in parsed]
    for i, key in enumerate(keys):
        if key in keys[:i]:
            err.fail(f"streams[{i}].key", f"'{key}' is used by two streams; give one a different key")
    flush = err.number(data, "flush_period_s", "flush_period_s", 0.5)
    if flush > 1.0:
        err.fail("flush_period_s", f"must be <= 1 s (episodes are flushed at least once a second), got {flush}")
    return RecorderConfig(
        dataset=dataset, streams=parsed, task=err.string(data, "task", "task"),
        robot_name=err.string(robot, "name", "robot.name"), calibration=calibration,
        min_free_mb=err.number(data, "min_free_mb", "min_free_mb", 500.0, allow_zero=True),
        flush_period_s=flush, status_hz=err.number(data, "status_hz", "status_hz", 2.0),
        events_topic=err.string(data, "events_topic", "events_topic") or "episode_events", source=source,
    )


def _parse_stream(err: _Errors, s: Any, where: str) -> RecordStream:
    if not isinstance(s, dict):
        err.fail(where, f"must be a mapping with keys {', '.join(_STREAM_KEYS)}")
    err.unknown_keys(s, _STREAM_KEYS, where)
    topic = err.string(s, "topic", f"{where}.topic", required=True)
    try:
        typ = messages.resolve_type(err.string(s, "type", f"{where}.type", required=True))
    except UnknownMessageType as exc:
        err.fail(f"{where}.type", str(exc))
    default_encoding = "video" if typ == IMAGE_TYPE else "raw" if typ in RAW_TYPES else "columnar"
    encoding = err.string(s, "encoding", f"{where}.encoding") or default_encoding
    if encoding not in ENCODINGS:
        err.fail(f"{where}.encoding", f"'{encoding}' unknown; use one of {', '.join(ENCODINGS)}")
    if encoding == "video" and typ != IMAGE_TYPE:
        err.fail(f"{where}.encoding", f"video needs type {IMAGE_TYPE}, the stream is {typ}")
    codec = err.string(s, "codec", f"{where}.codec") or "libsvtav1"
    if codec not in CODECS:
        err.fail(f"{where}.codec", f"'{codec}' unknown; use one of {', '.join(CODECS)}")
    reliability = err.string(s, "reliability", f"{where}.reliability") or "best_effort"
    if reliability not in RELIABILITIES:
        err.fail(f"{where}.reliability", f"'{reliability}' unknown; use one of {', '.join(RELIABILITIES)}")
    fps = err.number(s, "fps", f"{where}.fps", 30.0)
    depth = s.get("depth", max(10, math.ceil(2 * fps)))
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        err.fail(f"{where}.depth", f"must be an integer >= 1, got {depth!r}")
    key = err.string(s, "key", f"{where}.key") or StreamSpec.key_for(topic)
    try:
        spec = RecordStream(topic, typ, key, encoding, codec, fps, reliability, depth)
        spec.spec()
    except StoreError as exc:
        err.fail(f"{where}.key", str(exc))
    return spec


class _Errors:
    def __init__(self, source: str):
        self.source = source

    def fail(self, where: str, reason: str):
        raise RecorderConfigError(self.source, f"field '{where}'", reason)

    def unknown_keys(self, data: dict, allowed: tuple[str, ...], where: str) -> None:
        for key in data:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else f"; known: {', '.join(allowed)}"
                self.fail(f"{where}.{key}" if where != "top level" else str(key), f"unknown field{hint}")

    def string(self, data: dict, key: str, where: str, *, required: bool = False) -> str:
        value = data.get(key)
        if value is None:
            if required:
                self.fail(where, "is required")
            return ""
        if not isinstance(value, str) or (required and not value.strip()):
            self.fail(where, f"must be a non-empty string, got {value!r}")
        return value

    def number(self, data: dict, key: str, where: str, default: float, *, allow_zero: bool = False) -> float:
        value = data.get(key, default)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or value < 0 or (value == 0 and not allow_zero):
            self.fail(where, f"must be a number {'>= 0' if allow_zero else '> 0'}, got {value!r}")
        return float(value)
