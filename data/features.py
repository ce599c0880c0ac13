"""Feature maps: which stream (and field) of an episode becomes which training/export feature.

A feature is `name -> Feature(stream, field, kind)`: `kind` "state"/"action"/"lowdim" take a numeric
field (a fixed-length list column such as `position`, or a scalar column), "image" takes a video
stream. Names follow LeRobot's convention (`observation.state`, `action`,
`observation.images.<camera>`), so the same map drives the loader, the LeRobot v3 export and the
zarr export. `default_features(episode)` derives one from the streams when none is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from data.store import EpisodeReader, StoreError

KINDS = ("state", "action", "lowdim", "image")
# Preferred numeric field per message type when a map names only the stream.
DEFAULT_FIELDS = {
    "sensor_msgs/msg/JointState": "position",
    "geometry_msgs/msg/WrenchStamped": "wrench",
    "robot_stack_msgs/msg/TactileFrame": "displacement",
    "robot_stack_msgs/msg/TeleopTarget": "joint_positions",
    "std_msgs/msg/Float64MultiArray": "data",
}


@dataclass(frozen=True)
class Feature:
    stream: str
    field: str = ""            # "" for images, or the default field of the stream's type
    kind: str = "lowdim"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise StoreError(f"feature kind '{self.kind}' unknown; use {', '.join(KINDS)}")


def parse_features(spec: dict[str, Any]) -> dict[str, Feature]:
    """From YAML/JSON: {"action": {"stream": "joint_commands", "field": "position", "kind": "action"}, ...}."""
    out = {}
    for name, value in spec.items():
        if isinstance(value, str):
            value = {"stream": value}
        unknown = set(value) - {"stream", "field", "kind"}
        if unknown or "stream" not in value:
            raise StoreError(f"feature '{name}': needs 'stream' (and optionally 'field', 'kind'); got {sorted(value)}")
        kind = value.get("kind") or _kind_for(name)
        out[name] = Feature(value["stream"], value.get("field", ""), kind)
    return out


def _kind_for(name: str) -> str:
    if name.startswith("observation.images."):
        return "image"
    if name == "action" or name.startswith("action."):
        return "action"
    if name == "observation.state":
        return "state"
    return "lowdim"


def default_features(episode: EpisodeReader) -> dict[str, Feature]:
    """Every video stream as `observation.images.<key>`, every other stream's default field as
    `observation.<key>` (JointState `joint_states` becomes `observation.state`, `joint_commands` or
    `action_chunk`-free command streams become `action`)."""
    out: dict[str, Feature] = {}
    for key, spec in episode.streams.items():
        if spec.encoding == "video":
            out[f"observation.images.{key}"] = Feature(key, "", "image")
            continue
        field = DEFAULT_FIELDS.get(spec.type)
        if field is None:
            continue
        if key in ("joint_states",):
            out["observation.state"] = Feature(key, field, "state")
        elif key in ("joint_commands", "teleop_target", "action"):
            out["action"] = Feature(key, field, "action")
        else:
            out[f"observation.{key}"] = Feature(key, field, "lowdim")
    return out


def feature_values(episode: EpisodeReader, feature: Feature) -> tuple[Any, Any]:
    """(stamps (N,) int64, values (N, D) float64) of a low-dim feature.

    `field` names a list column (`position`), a scalar column (`normal_force`) or a prefix of scalar
    columns (`wrench` -> wrench.force.x .. wrench.torque.z, in column order)."""
    import numpy as np

    if feature.kind == "image":
        raise StoreError(f"feature on '{feature.stream}' is an image; use EpisodeReader.frames()")
    spec = episode.streams.get(feature.stream)
    if spec is None:
        raise StoreError(
            f"episode {episode.index}: no stream '{feature.stream}'; streams: {', '.join(episode.streams)}")
    field = feature.field or DEFAULT_FIELDS.get(spec.type, "")
    table = episode.table(feature.stream)
    stamps = table.column("stamp_ns").to_numpy()
    if field in table.column_names:
        values = episode.column(feature.stream, field)
        return stamps, values.reshape(len(stamps), -1).astype(np.float64)
    cols = [c for c in table.column_names if c.startswith(f"{field}.")]
    numeric = [c for c in cols if table.schema.field(c).type in (_numeric_types())]
    if not numeric:
        raise StoreError(f"stream '{feature.stream}' has no numeric field '{field}'; columns: {table.column_names}")
    return stamps, np.stack([table.column(c).to_numpy().astype(np.float64) for c in numeric], axis=1)


def _numeric_types() -> tuple:
    import pyarrow as pa

    return (pa.float64(), pa.float32(), pa.int64(), pa.int32(), pa.int16(), pa.int8(), pa.uint8(), pa.uint16(),
            pa.uint32(), pa.uint64())
