"""`Policy`: the one interface of every visuomotor policy (DP, CARP, RDP, ...), and its checkpoints.

A policy is a `torch.nn.Module` built from a frozen config, the shapes of its input/output features
and a `data.loader.Normalizer` (dataset statistics). It sees batches exactly as
`data.loader.WindowDataset` yields them, in raw units; it normalizes inside:

    batch["obs.<feature>"]   (B, n_obs, D) low-dim, or (B, n_obs, 3, H, W) float images in [0, 1]
    batch["obs_is_pad"]      (B, n_obs) bool
    batch["action"]          (B, horizon, D_act)        (training only)
    batch["action_is_pad"]   (B, horizon) bool          (training only)

- `compute_loss(batch) -> {"loss": scalar, ...}` for the shared trainer (`policies.train`).
- `predict_action(obs) -> (B, horizon, D_act)` raw-unit actions; the server executes the first
  `n_action_steps` of them, as an `ActionChunk` stamped with the observation time.
- `reset()` clears per-episode state (caches, warm starts).
- Rates: `config.slow_hz` is how often `predict_action` runs when served, `config.fast_hz` the
  command rate of the fast part (interpolation, or RDP's fast decoder).

Checkpoints are a directory: `model.safetensors` (weights, never pickle) + `policy.json`
(format, policy name, config, feature shapes, normalizer statistics, training info). Loading a
checkpoint checks the policy name and every tensor shape and says what does not match.
"""

from __future__ import annotations

import dataclasses
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from data.loader import Normalizer
from robot_stack.errors import RobotStackError
from robot_stack.registry import Registry

FORMAT = "robot_stack.policy"
VERSION = 1


class PolicyError(RobotStackError):
    pass


class CheckpointError(PolicyError):
    pass


@dataclass(frozen=True)
class FeatureSpec:
    name: str                    # e.g. "observation.state", "observation.images.fixed", "action"
    kind: str                    # "state" | "lowdim" | "image" | "action"
    shape: tuple[int, ...]       # per step: (D,) or (3, H, W)
    names: tuple[str, ...] = ()  # per-dimension names (joint names, "ee_x", ...)


@dataclass(frozen=True)
class PolicyConfig:
    obs: tuple[str, ...] = ("observation.state",)   # input features (names as in the dataset)
    action: str = "action"
    n_obs: int = 2               # observation steps per prediction
    horizon: int = 16            # predicted action steps
    n_action_steps: int = 8      # executed action steps per prediction
    obs_rate: float = 10.0       # Hz between observation steps
    action_rate: float = 10.0    # Hz between action steps
    slow_hz: float = 10.0        # serving: predictions per second
    fast_hz: float = 100.0       # serving: commands per second
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.n_obs < 1 or self.horizon < 1:
            raise PolicyError(f"n_obs and horizon must be >= 1, got {self.n_obs}, {self.horizon}")
        if not 1 <= self.n_action_steps <= self.horizon:
            raise PolicyError(f"n_action_steps must be in [1, horizon={self.horizon}], got {self.n_action_steps}")
        if min(self.obs_rate, self.action_rate, self.slow_hz, self.fast_hz) <= 0:
            raise PolicyError("obs_rate, action_rate, slow_hz and fast_hz must be > 0")
        if not self.obs:
            raise PolicyError("a policy needs at least one observation feature")

    @property
    def future(self) -> tuple[str, ...]:
        """Low-dim features the policy trains on at the action times (`future.<name>` (B, H, D) in a batch)."""
        return ()


class Policy(torch.nn.Module, ABC):
    name: ClassVar[str]
    config_class: ClassVar[type[PolicyConfig]] = PolicyConfig

    def __init__(self, config: PolicyConfig, features: dict[str, FeatureSpec], normalizer: Normalizer):
        super().__init__()
        missing = [n for n in (*config.obs, config.action) if n not in features]
        if missing:
            raise PolicyError(f"{self.name}: features {missing} missing; have {sorted(features)}")
        self.config = config
        self.features = features
        self.normalizer = normalizer

    @property
    def action_spec(self) -> FeatureSpec:
        return self.features[self.config.action]

    @property
    def image_features(self) -> list[str]:
        return [n for n in self.config.obs if self.features[n].kind == "image"]

    @property
    def lowdim_features(self) -> list[str]:
        return [n for n in self.config.obs if self.features[n].kind != "image"]

    def reset(self) -> None:
        """Forget per-episode state."""

    @abstractmethod
    def compute_loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]: ...

    @abstractmethod
    def predict_action(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, horizon, D_act) actions in raw units from raw observations (see the module docstring)."""

    def normalized_obs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The observation features of `batch`, normalized (images pass through the image mode)."""
        return {n: self.normalizer.normalize(n, batch[f"obs.{n}"]) for n in self.config.obs}

    # --- checkpoints ----------------------------------------------------------------------------
    def save(self, path: str | Path, **train_info: Any) -> Path:
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(tensors, str(path / "model.safetensors.tmp"))
        (path / "model.safetensors.tmp").replace(path / "model.safetensors")
        meta = {"format": FORMAT, "version": VERSION, "policy": self.name, "config": dataclasses.asdict(self.config),
                "features": {n: dataclasses.asdict(f) for n, f in self.features.items()},
                "normalizer": self.normalizer.to_dict(), "train": train_info}
        (path / "policy.json.tmp").write_text(json.dumps(meta, indent=2))
        (path / "policy.json.tmp").replace(path / "policy.json")
        return path


# --- registry and loading -----------------------------------------------------------------------
def _load_builtin() -> None:
    import policies  # noqa: F401  (registers the built-in policies)


POLICIES: Registry[Policy] = Registry("policy", PolicyError, loader=_load_builtin)
register_policy = POLICIES.register
available_policies = POLICIES.names
policy_class = POLICIES.get


def read_checkpoint_meta(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    meta_path = path / "policy.json"
    if not meta_path.exists() or not (path / "model.safetensors").exists():
        raise CheckpointError(f"{path} is not a policy checkpoint (needs policy.json and model.safetensors)")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_path}: format {meta.get('format')!r} is not {FORMAT!r}")
    return meta


def load_policy(path: str | Path, *, expect: str | None = None, device: str | torch.device = "cpu") -> Policy:
    """Rebuild a policy from a checkpoint directory; `expect` = the policy name the caller needs."""
    from safetensors.torch import load_file

    meta = read_checkpoint_meta(path)
    if expect is not None and meta["policy"] != expect:
        raise CheckpointError(f"{path} holds a '{meta['policy']}' policy, not '{expect}'")
    cls = policy_class(meta["policy"])
    config = _config_from_dict(cls.config_class, meta["config"])
    features = {n: FeatureSpec(**{**f, "shape": tuple(f["shape"]), "names": tuple(f["names"])})
                for n, f in meta["features"].items()}
    policy = cls(config, features, Normalizer.from_dict(meta["normalizer"]))
    load_state_strict(policy, load_file(str(Path(path) / "model.safetensors")),
                      f"{path}: checkpoint does not fit a '{cls.name}' built from its config")
    return policy.to(device).eval()


def load_state_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """`module.load_state_dict(state)` after checking every name and shape; `CheckpointError` says what differs."""
    own = module.state_dict()
    wrong = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}" for k, v in state.items()
             if k in own and own[k].shape != v.shape]
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if wrong or missing or extra:
        raise CheckpointError(f"{what}: shape mismatches {wrong[:5]}, missing {missing[:5]}, unexpected {extra[:5]}")
    module.load_state_dict(state)


def _config_from_dict(cls: type[PolicyConfig], values: dict[str, Any]) -> PolicyConfig:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise CheckpointError(f"{cls.__name__}: unknown config fields {unknown}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
