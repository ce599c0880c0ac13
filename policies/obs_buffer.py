"""Serving inputs: which topic feeds which policy feature, short timestamped histories, aligned windows.

An observation map says, per policy feature, where it comes from:

    observation.state:        {topic: /joint_states, type: sensor_msgs/msg/JointState, field: position}
    observation.images.fixed: {topic: /fixed/image_raw}             # type defaults to Image
    observation.wrench:       /wrench                               # shorthand: just the topic

A JointState source may also select and order its columns with `names` (a list, or one
comma-separated string): one entry per feature dimension, a JointState name, optionally wrapped as
`sin:<name>` / `cos:<name>` (an angle the dataset stored as sine and cosine). Without `names` the
feature's own dimension names select the columns. E.g. the sim's `task/observation` for a push_t
policy trained on `agent_x, agent_y, block_x, block_y, block_sin, block_cos`:

    observation.state: {topic: task/observation, names: [agent_pos.x, agent_pos.y, block_pose.x,
                        block_pose.y, "sin:block_pose.yaw", "cos:block_pose.yaw"]}

Missing entries get defaults from the feature (`default_source`). As node parameters the map is
flattened to `observations.<feature>.<topic|type|field>` (a launch file's nested mapping flattens
to exactly that; `obs_map_parameters` does it in code).

`ObservationInputs` subscribes to every source, keeps a ring buffer per feature (capture stamps from
`header.stamp`), says what is missing or stale, and builds windows aligned by timestamp like
`data.loader.WindowDataset`: low-dim values interpolated, images the latest frame at or before each
time, converted on arrival to float CHW in [0, 1] at the size the policy expects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from data.align import interpolate, previous_index
from data.features import DEFAULT_FIELDS
from policies.base import FeatureSpec, PolicyError
from robot_stack import convert
from robot_stack.clock import Time

PREFIX = "observations."
ATTRS = ("topic", "type", "field", "names")
JOINT_STATE = "sensor_msgs/msg/JointState"
TRANSFORMS = {"": None, "sin": np.sin, "cos": np.cos}
IMAGE = "sensor_msgs/msg/Image"
LOWDIM_HISTORY = 1024   # samples kept per low-dim stream (1 s at 1 kHz)
IMAGE_HISTORY = 32      # frames kept per camera


class ObsMapError(PolicyError):
    pass


@dataclass(frozen=True)
class ObsSource:
    feature: str
    topic: str
    type: str
    field: str = ""
    names: tuple[str, ...] = ()        # JointState column per dimension (`sin:`/`cos:` prefixes allowed)


def default_source(spec: FeatureSpec) -> ObsSource:
    """Where a feature comes from when the map does not say: cameras on /<cam>/image_raw, the state on
    /joint_states, `observation.<x>` on /<x> (a JointState unless its name says wrench or tactile)."""
    name = spec.name
    if spec.kind == "image":
        return ObsSource(name, f"/{name.rsplit('.', 1)[-1]}/image_raw", IMAGE)
    if name == "observation.state":
        return ObsSource(name, "/joint_states", "sensor_msgs/msg/JointState", "position")
    short = name.removeprefix("observation.")
    typ = "sensor_msgs/msg/JointState"
    if "wrench" in short or "force" in short:
        typ = "geometry_msgs/msg/WrenchStamped"
    elif "tactile" in short:
        typ = "robot_stack_msgs/msg/TactileFrame"
    return ObsSource(name, f"/{short.replace('.', '/')}", typ, DEFAULT_FIELDS.get(typ, ""))


def parse_obs_map(mapping: dict[str, Any], specs: dict[str, FeatureSpec], needed: list[str],
                  known: list[str] | tuple[str, ...]) -> dict[str, ObsSource]:
    """Sources for the `needed` features: the map's entries over `default_source`. Entries for other
    `known` features (another process's share of the policy's inputs) are ignored, unknown ones are errors."""
    unknown = sorted(set(mapping) - set(known))
    if unknown:
        raise ObsMapError(f"observation map names features {unknown} the policy does not use; it uses {list(known)}")
    out = {}
    for name in needed:
        base = default_source(specs[name])
        entry = mapping.get(name, {})
        if isinstance(entry, str):
            entry = {"topic": entry}
        bad = sorted(set(entry) - set(ATTRS))
        if bad:
            raise ObsMapError(f"observation map entry '{name}': unknown fields {bad}; use {', '.join(ATTRS)}")
        typ = entry.get("type", base.type)
        field = entry.get("field", base.field if typ == base.type else DEFAULT_FIELDS.get(typ, ""))
        names = parse_names(name, entry.get("names", ()), typ, specs[name])
        source = ObsSource(name, entry.get("topic", base.topic), typ, field, names)
        if specs[name].kind == "image" and source.type != IMAGE:
            raise ObsMapError(f"'{name}' is an image feature; its topic must carry {IMAGE}, not {source.type}")
        out[name] = source
    return out


def parse_names(feature: str, names: Any, typ: str, spec: FeatureSpec) -> tuple[str, ...]:
    """A `names` selection, checked: JointState only, one entry per dimension, known transforms."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if not names:
        return ()
    if typ != JOINT_STATE:
        raise ObsMapError(f"observation map entry '{feature}': 'names' selects JointState columns; the type is {typ}")
    if not all(isinstance(n, str) and n for n in names):
        raise ObsMapError(f"observation map entry '{feature}': 'names' must be non-empty strings, got {names!r}")
    size = int(np.prod(spec.shape))
    if len(names) != size:
        raise ObsMapError(f"observation map entry '{feature}': {len(names)} names for {size} dimensions")
    for n in names:
        fn = n.rpartition(":")[0]
        if fn not in TRANSFORMS:
            raise ObsMapError(f"observation map entry '{feature}': unknown transform '{fn}:' in {n!r}; "
                              f"use {', '.join(f'{t}:' for t in TRANSFORMS if t)} or a plain name")
    return tuple(names)


def select_columns(values: np.ndarray, names: list[str], selection: tuple[str, ...]) -> np.ndarray:
    """`values` (one per JointState name) picked and transformed as `selection` says."""
    index = {n: i for i, n in enumerate(names)}
    out = np.empty(len(selection))
    for i, entry in enumerate(selection):
        fn, _, name = entry.rpartition(":")
        if name not in index:
            raise KeyError(f"JointState lacks '{name}'; it has {names}")
        out[i] = values[index[name]] if not fn else TRANSFORMS[fn](values[index[name]])
    return out


def obs_map_parameters(mapping: dict[str, Any]) -> dict[str, Any]:
    """{feature: {topic, type, field} | topic} -> flat node parameters `observations.<feature>.<attr>`."""
    out = {}
    for name, entry in mapping.items():
        entry = {"topic": entry} if isinstance(entry, str) else entry
        for attr, value in entry.items():
            out[f"{PREFIX}{name}.{attr}"] = value
    return out


def obs_map_from_parameters(params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The inverse of `obs_map_parameters` (keys without the prefix are ignored)."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in params.items():
        if not key.startswith(PREFIX):
            continue
        rest = key[len(PREFIX):]
        feature, _, attr = rest.rpartition(".")
        if attr not in ATTRS:                       # shorthand `observations.<feature>: topic`
            feature, attr = rest, "topic"
        if not feature:
            raise ObsMapError(f"parameter '{key}': expected {PREFIX}<feature>[.<{'|'.join(ATTRS)}>]")
        names_list = attr == "names" and isinstance(value, list) and all(isinstance(v, str) for v in value)
        if not names_list and (not isinstance(value, str) or not value):
            raise ObsMapError(f"parameter '{key}' must be a non-empty string, got {value!r}")
        out.setdefault(feature, {})[attr] = value
    return out


# --- message -> array ---------------------------------------------------------------------------
def _flatten(value: Any) -> list[float]:
    if isinstance(value, np.ndarray):
        return value.astype(np.float64).ravel().tolist()
    if isinstance(value, (bool, int, float, np.number)):
        return [float(value)]
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in _flatten(v)]
    if hasattr(value, "__msgtype__"):
        names = [n for n in value.__dataclass_fields__ if n != "header" and not n.startswith("__")]
        return [x for name in names for x in _flatten(getattr(value, name))]
    raise TypeError(f"cannot read numbers from {type(value).__name__}")


def lowdim_value(msg: Any, source: ObsSource, spec: FeatureSpec) -> np.ndarray:
    """The (D,) float vector of `source.field` in `msg` (JointState columns in the feature's joint order)."""
    if source.type == JOINT_STATE and source.names:
        arrays = convert.joint_arrays(msg)
        value = select_columns(getattr(arrays, source.field or "position"), arrays.names, source.names)
    elif source.type == JOINT_STATE and spec.names and len(msg.name):
        value = getattr(convert.joint_arrays(msg, spec.names), source.field or "position")
    else:
        value = msg
        for part in filter(None, source.field.split(".")):
            value = getattr(value, part)
        value = np.asarray(_flatten(value), dtype=np.float64)
    size = int(np.prod(spec.shape))
    if value.size != size or not np.all(np.isfinite(value)):
        raise ValueError(f"need {size} finite values for {spec.name}, got {np.asarray(value).tolist()}")
    return value.reshape(spec.shape)


def image_value(msg: Any, spec: FeatureSpec) -> np.ndarray:
    """(C, H, W) float32 in [0, 1] at the feature's size from an Image of any supported encoding."""
    pixels = convert.image_array(msg)                                     # H, W, C (view)
    enc = msg.encoding
    scale = 1.0 if pixels.dtype == np.float32 else 1.0 / np.iinfo(pixels.dtype).max
    if enc.startswith("bgr"):
        pixels = pixels[:, :, 2::-1]
    pixels = pixels[:, :, :3]
    channels, height, width = spec.shape
    if pixels.shape[2] != channels:
        mono = pixels.shape[2] == 1
        pixels = np.repeat(pixels[:, :, :1], channels, axis=2) if mono else pixels.mean(2, keepdims=True)
    x = torch.from_numpy(np.array(pixels.transpose(2, 0, 1), dtype=np.float32)) * scale
    if x.shape[1:] != (height, width):
        x = torch.nn.functional.interpolate(x[None], size=(height, width), mode="bilinear", antialias=True,
                                            align_corners=False)[0]
    return x.clamp_(0.0, 1.0).numpy()


# --- history ------------------------------------------------------------------------------------
class StreamBuffer:
    """A ring of (stamp_ns, value) with increasing stamps; older or repeated stamps are dropped."""

    def __init__(self, shape: tuple[int, ...], capacity: int):
        self.stamps = np.zeros(capacity, np.int64)
        self.values = np.zeros((capacity, *shape), np.float32)
        self.count = 0           # samples ever added
        self.out_of_order = 0

    @property
    def newest_ns(self) -> int | None:
        return int(self.stamps[(self.count - 1) % len(self.stamps)]) if self.count else None

    def add(self, stamp_ns: int, value: np.ndarray) -> bool:
        newest = self.newest_ns
        if newest is not None and stamp_ns <= newest:
            self.out_of_order += 1
            return False
        i = self.count % len(self.stamps)
        self.stamps[i], self.values[i] = stamp_ns, value
        self.count += 1
        return True

    def ordered(self) -> tuple[np.ndarray, np.ndarray]:
        n = min(self.count, len(self.stamps))
        order = (np.arange(n) + self.count - n) % len(self.stamps)
        return self.stamps[order], self.values[order]

    def at(self, times: np.ndarray, image: bool) -> tuple[np.ndarray, np.ndarray]:
        """(T, ...) values at `times` and (T,) bool "before the oldest kept sample" (padded with it)."""
        stamps, values = self.ordered()
        pad = times < stamps[0]
        if image:
            return values[np.clip(previous_index(stamps, times), 0, len(stamps) - 1)], pad
        flat = interpolate(stamps, values.reshape(len(stamps), -1), times)
        return flat.reshape(len(times), *values.shape[1:]).astype(np.float32), pad


class ObservationInputs:
    """Subscriptions + ring buffers for a set of features on one node."""

    def __init__(self, node: Any, sources: dict[str, ObsSource], specs: dict[str, FeatureSpec], depth: int = 50):
        self.node, self.sources, self.specs = node, sources, specs
        self.buffers = {n: StreamBuffer(specs[n].shape, IMAGE_HISTORY if specs[n].kind == "image" else LOWDIM_HISTORY)
                        for n in sources}
        self.bad = dict.fromkeys(sources, 0)
        for name, source in sources.items():
            node.create_subscription(source.type, source.topic, lambda msg, n=name: self._on_msg(n, msg), depth)

    def _on_msg(self, name: str, msg: Any) -> None:
        source, spec = self.sources[name], self.specs[name]
        try:
            value = image_value(msg, spec) if spec.kind == "image" else lowdim_value(msg, source, spec)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # bad input: counted and dropped
            self.bad[name] += 1
            if self.bad[name] % 100 == 1:
                self.node.get_logger().warning(f"dropped bad message #{self.bad[name]} on {source.topic}: {exc}")
            return
        stamp = Time.from_msg(msg.header.stamp).nanoseconds or self.node.get_clock().now().nanoseconds
        self.buffers[name].add(stamp, value)

    def problems(self, now_ns: int, max_age_ns: int) -> list[tuple[str, str]]:
        """(feature, why) for every feature that is missing or older than `max_age_ns`."""
        out = []
        for name, buf in self.buffers.items():
            topic = self.sources[name].topic
            if buf.newest_ns is None:
                out.append((name, f"observation '{name}' missing (nothing received on {topic})"))
            elif now_ns - buf.newest_ns > max_age_ns:
                age = (now_ns - buf.newest_ns) / 1e9
                out.append((name, f"observation '{name}' stale ({age:.3f} s old on {topic}, "
                                  f"limit {max_age_ns / 1e9:g} s)"))
        return out

    def newest_common_ns(self) -> int:
        """The newest time every stream has reached (the window's last step)."""
        return min(int(buf.newest_ns) for buf in self.buffers.values())

    def newest(self, name: str) -> tuple[int, np.ndarray]:
        stamps, values = self.buffers[name].ordered()
        return int(stamps[-1]), values[-1]

    def lowdim_at(self, name: str, times: np.ndarray) -> np.ndarray:
        """(T, D) float32 values of a low-dim feature at `times` (interpolated; edge values outside the history)."""
        return self.buffers[name].at(times, image=False)[0]

    def window(self, times: np.ndarray, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
        """`obs.<feature>` (1, T, ...) float32 at `times` and `obs_is_pad` (1, T), like a loader batch."""
        out, pad = {}, np.zeros(len(times), bool)
        for name, buf in self.buffers.items():
            values, p = buf.at(times, self.specs[name].kind == "image")
            out[f"obs.{name}"] = torch.from_numpy(values)[None].to(device)
            pad |= p
        out["obs_is_pad"] = torch.from_numpy(pad)[None].to(device)
        return out
