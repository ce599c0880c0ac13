"""The training run's configuration: frozen dataclasses loaded from YAML, errors naming the file and field.

```yaml
policy:                      # the policy's config fields (policies.base.PolicyConfig and its subclass)
  obs: [observation.state]
  horizon: 16
  n_action_steps: 8
  dp: {inference_steps: 16}   # a section named after a policy applies only to that policy
features:                    # optional: data.features.parse_features map for an episode store
  observation.state: {stream: state, field: position, kind: state}
  action: {stream: action, field: position, kind: action}
train:                       # TrainConfig
  steps: 2000                # or epochs: 100 (steps, when > 0, wins)
  batch_size: 64             # global: split over the DDP processes
  lr: 1.0e-4
loader:                      # LoaderConfig (WindowDataset arguments not owned by the policy config)
  sample_rate: 10.0
```

`--set train.lr=3e-4 --set policy.horizon=8` overrides single values (parsed as YAML); feature names hold
dots, so `--set 'features.observation.state={stream: state, kind: state}'` replaces a whole feature.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from policies.base import PolicyConfig, PolicyError
from robot_stack.errors import ConfigError

SECTIONS = ("policy", "features", "train", "loader")
POLICY_NAMES = ("dp", "carp", "rdp")          # per-policy sections accepted even before a policy is registered
LR_SCHEDULES = ("cosine", "constant")


class TrainConfigError(PolicyError, ConfigError):
    """A training configuration is wrong; the message names the file and the field."""


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 100                # used when steps == 0
    steps: int = 0                   # total optimizer steps (> 0: overrides epochs)
    batch_size: int = 64             # global batch (per process: batch_size / world size)
    lr: float = 1e-4
    weight_decay: float = 1e-6
    betas: tuple[float, float] = (0.95, 0.999)
    lr_schedule: str = "cosine"      # cosine | constant (both after a linear warmup)
    warmup_steps: int = 500
    grad_clip: float = 1.0           # max gradient norm; 0 turns clipping off
    ema: bool = True                 # the EMA weights are what gets saved and evaluated
    ema_power: float = 0.75          # EMA decay warmup as Diffusion Policy's EMAModel:
    ema_inv_gamma: float = 1.0       #   1 - (1 + step / inv_gamma) ** -power, clamped to [min, max]
    ema_min: float = 0.0
    ema_max: float = 0.9999
    ema_update_after: int = 0
    val_fraction: float = 0.1        # share of the episodes held out (at least one when > 0)
    val_every: int = 1               # epochs between validation passes
    checkpoint_every: int = 10       # epochs between checkpoints/last (also written at the end)
    log_every: int = 10              # steps between metrics.jsonl lines
    num_workers: int = 0             # DataLoader workers per process
    seed: int = 0
    device: str = "auto"             # auto (cuda when available) | cpu | cuda | cuda:N
    find_unused_parameters: bool = False  # DDP: true for policies whose loss skips trainable parameters
    out: str = ""                    # default: runs/<policy>_<dataset directory name>
    init_from: str = ""              # a policy checkpoint whose weights start the run (e.g. RDP stage 2)

    def __post_init__(self):
        checks = {"epochs": self.epochs >= 1, "steps": self.steps >= 0, "batch_size": self.batch_size >= 1,
                  "lr": self.lr > 0, "weight_decay": self.weight_decay >= 0, "warmup_steps": self.warmup_steps >= 0,
                  "grad_clip": self.grad_clip >= 0, "val_fraction": 0 <= self.val_fraction < 1,
                  "val_every": self.val_every >= 1, "checkpoint_every": self.checkpoint_every >= 1,
                  "log_every": self.log_every >= 1, "num_workers": self.num_workers >= 0,
                  "ema_max": 0 <= self.ema_min <= self.ema_max < 1, "betas": len(self.betas) == 2,
                  "lr_schedule": self.lr_schedule in LR_SCHEDULES}
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise PolicyError(f"TrainConfig: invalid {', '.join(f'{k}={getattr(self, k)!r}' for k in bad)}"
                              f" (lr_schedule: {'|'.join(LR_SCHEDULES)}; val_fraction in [0, 1))")


@dataclass(frozen=True)
class LoaderConfig:
    sample_rate: float = 0.0         # sample times per second of an episode (0: the policy's action_rate)
    episodes: tuple[int, ...] = ()   # restrict to these episodes (empty: all)
    cache_bytes: int = 512 * 2**20   # decoded-video budget per process
    episodes_per_block: int = 0      # > 0: shuffle within blocks of episodes (video datasets beyond the cache)
    normalize: str = ""              # low-dim normalization mode (default: the policy's, else limits)
    image_normalize: str = ""        # image normalization mode (default: the policy's, else identity)
    preload: bool = False            # materialize every window on the training device once (low-dim data)


@dataclass(frozen=True)
class RunConfig:
    policy: dict[str, Any] = field(default_factory=dict)      # overrides of the policy config
    features: dict[str, Any] | None = None                    # data.features.parse_features map
    train: TrainConfig = TrainConfig()
    loader: LoaderConfig = LoaderConfig()
    source: str = field(default="<config>", compare=False)   # file the config came from (for errors)


def load_run_config(path: str | Path | None = None, sets: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """A RunConfig from a YAML file (or defaults when None) with `key.path=value` overrides."""
    source = str(path) if path else "<defaults>"
    data: dict[str, Any] = {}
    if path:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise TrainConfigError(source, "file", f"cannot read: {exc}") from exc
        if not isinstance(data, dict):
            raise TrainConfigError(source, "top level", "must be a mapping with keys " + ", ".join(SECTIONS))
    for item in sets:
        _apply_set(data, item)
    return run_config_from_dict(data, source)


def run_config_from_dict(data: dict[str, Any], source: str = "<config>") -> RunConfig:
    _check_keys(data, SECTIONS, source, "top level")
    policy = data.get("policy") or {}
    if not isinstance(policy, dict):
        raise TrainConfigError(source, "policy", "must be a mapping of policy config fields")
    features = data.get("features")
    if features is not None:
        from data.features import parse_features
        from data.store import StoreError

        try:
            parse_features(features)
        except (StoreError, AttributeError, TypeError) as exc:
            raise TrainConfigError(source, "features", str(exc)) from exc
    train = dataclass_from_dict(TrainConfig, data.get("train") or {}, source, "train")
    loader = dataclass_from_dict(LoaderConfig, data.get("loader") or {}, source, "loader")
    return RunConfig(dict(policy), features, train, loader, source)


def policy_config(config_class: type[PolicyConfig], name: str, overrides: dict[str, Any],
                  source: str = "<config>") -> PolicyConfig:
    """`config_class` with the shared overrides and those of the section named `name`; other policies'
    sections are skipped, anything else unknown is an error naming the key."""
    from policies.base import available_policies

    names = {*POLICY_NAMES, *available_policies()}
    own = {k: v for k, v in overrides.items() if k not in names}
    section = overrides.get(name) or {}
    if not isinstance(section, dict):
        raise TrainConfigError(source, f"policy.{name}", "must be a mapping of policy config fields")
    own.update(section)
    return dataclass_from_dict(config_class, own, source, "policy")


def dataclass_from_dict(cls: type, values: dict[str, Any], source: str, where: str) -> Any:
    if not isinstance(values, dict):
        raise TrainConfigError(source, where, f"must be a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and f.name != "source"}
    _check_keys(values, tuple(fields), source, where)
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(v, hints[k], source, f"{where}.{k}") for k, v in values.items()}
    try:
        return cls(**kwargs)
    except (PolicyError, ValueError, TypeError) as exc:
        raise TrainConfigError(source, where, str(exc)) from exc


def _coerce(value: Any, hint: Any, source: str, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return None if value is None else _coerce(value, args[0], source, where)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise TrainConfigError(source, where, f"expected a list, got {value!r}")
        args = typing.get_args(hint)
        item = args[0] if args else Any
        return tuple(_coerce(v, item, source, f"{where}[{i}]") for i, v in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise TrainConfigError(source, where, f"expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
            raise TrainConfigError(source, where, f"expected an integer, got {value!r}")
        return int(value)
    if hint is float:
        if isinstance(value, str):              # YAML 1.1 reads 3e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TrainConfigError(source, where, f"expected a number, got {value!r}")
        return float(value)
    if hint is str and not isinstance(value, str):
        raise TrainConfigError(source, where, f"expected a string, got {value!r}")
    if (hint is dict or origin is dict) and not isinstance(value, dict):
        raise TrainConfigError(source, where, f"expected a mapping, got {value!r}")
    return value


def _check_keys(values: dict[str, Any], known: tuple[str, ...] | list[str], source: str, where: str) -> None:
    for key in values:
        if key not in known:
            close = difflib.get_close_matches(str(key), list(known), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise TrainConfigError(source, where, f"unknown key '{key}'{hint} (known: {', '.join(known)})")


def _apply_set(data: dict[str, Any], item: str) -> None:
    """`train.lr=3e-4` -> data["train"]["lr"] = 3e-4 (the value parsed as YAML)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise TrainConfigError("--set", item, "expected key.path=value, e.g. train.lr=3e-4")
    parts = key.strip().split(".")
    if parts[0] == "features" and len(parts) > 1:       # feature names contain dots
        parts = ["features", ".".join(parts[1:])]
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise TrainConfigError("--set", key, f"cannot parse value {raw!r}: {exc}") from exc
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise TrainConfigError("--set", key, f"'{part}' is not a section")
    node[parts[-1]] = value
