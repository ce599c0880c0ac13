"""Training loader: observation/action windows aligned by timestamp, normalization statistics.

`WindowDataset` samples, for each sample time t of an episode,
- an observation window: `n_obs` steps at `obs_rate`, ending at t (t - (n_obs-1)/r_obs, ..., t),
- an action window: `horizon` steps at `action_rate`, starting at t (t, ..., t + (H-1)/r_act),
- optionally `future` windows: low-dim observation features sampled at the action window's times
  (e.g. the force reading at each chunk step, what a reactive policy's fast decoder trains on),
aligned by timestamp on the streams recorded at their own rates: low-dim features are linearly
interpolated (`data.align.interpolate`), images are the latest frame at or before each time
(`data.align.previous_index`).

Sample times are a uniform grid per episode at `sample_rate` (default `action_rate`) over the
episode's valid span: from the latest first stamp to the earliest last stamp of the features used.
Windows that reach outside the span repeat the edge value (Diffusion Policy's pad_before/pad_after)
and are flagged in `obs_is_pad` / `action_is_pad`.

Items (dict of tensors):
    obs.<name>      (n_obs, D) float32, or (n_obs, 3, H, W) float32 in [0, 1] for images
    obs_is_pad      (n_obs,) bool
    action          (H, D_act) float32
    action_is_pad   (H,) bool
    future.<name>   (H, D) float32, for each name in `future`
    episode_index   () int64
    t_ns            () int64    the sample time

Video is never decoded in `__init__`: each process (DataLoader worker, or the main process with
num_workers=0) decodes an episode's camera the first time an item needs it and keeps it in its own
`FrameCache` (`cache_bytes` per process). See `data.loader_video` for sources and decoding.

Shuffling a dataset whose decoded video exceeds the cache: use `EpisodeBlockSampler` (items shuffled
within blocks of episodes that fit the cache) instead of `shuffle=True`, or every item decodes again.

`dataset.stats` holds per-feature min/max/mean/std over every recorded sample of the selected
episodes (images: fixed [0, 1] range); `Normalizer` applies them and saves/loads them as JSON.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, get_worker_info

from data.align import interpolate, previous_index, uniform_times
from data.features import Feature
from data.loader_video import FrameCache, LoaderError, open_source

__all__ = ["EpisodeBlockSampler", "LoaderError", "Normalizer", "WindowDataset", "compute_stats"]

NORMALIZER_FORMAT = "robot_stack.normalizer"
MODES = ("limits", "gaussian", "identity")


@dataclass
class _Episode:
    index: int
    start_ns: int
    stop_ns: int
    lowdim: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)   # (N,), (N, D)
    image_stamps: dict[str, np.ndarray] = field(default_factory=dict)                # (N,)


class WindowDataset(Dataset):
    """Timestamp-aligned observation/action windows over an episode source (see the module docstring).

    source: an `EpisodeStore`, a path (episode store or LeRobot v3 directory) or an episode source.
    obs: feature names for observations (default: every `observation.*` feature).
    future: low-dim feature names also sampled at the action times (`future.<name>`, (H, D)).
    features: feature map for an episode store (default: `data.features.default_features`).
    cache_bytes: decoded-frame budget per process (worker)."""

    def __init__(self, source: Any, *, obs: Sequence[str] | None = None, action: str = "action", n_obs: int = 2,
                 obs_rate: float = 10.0, horizon: int = 16, action_rate: float = 10.0,
                 sample_rate: float | None = None, episodes: Sequence[int] | None = None, future: Sequence[str] = (),
                 features: dict[str, Feature] | None = None, cache_bytes: int = 512 * 2**20):
        _check_positive(n_obs=n_obs, horizon=horizon, obs_rate=obs_rate, action_rate=action_rate,
                        sample_rate=action_rate if sample_rate is None else sample_rate, cache_bytes=cache_bytes)
        self.n_obs, self.horizon = int(n_obs), int(horizon)
        self.obs_rate, self.action_rate = float(obs_rate), float(action_rate)
        self.sample_rate = float(action_rate if sample_rate is None else sample_rate)
        self.cache_bytes = int(cache_bytes)
        self.source = open_source(source, features)
        self.features = self.source.features()
        self.action_key = action
        self.obs_keys = list(obs) if obs is not None else _default_obs(self.features, action)
        self._check_names([*self.obs_keys, action])
        self.future_keys = list(future)
        self._check_names(self.future_keys)
        images = [n for n in [action, *self.future_keys] if self.features[n].kind == "image"]
        if images:
            raise LoaderError(f"action / future features must be low-dim, got image(s): {', '.join(images)}")
        self._obs_offsets = -np.round(np.arange(self.n_obs - 1, -1, -1) * 1e9 / self.obs_rate).astype(np.int64)
        self._act_offsets = np.round(np.arange(self.horizon) * 1e9 / self.action_rate).astype(np.int64)
        self._episodes = [self._load_episode(ep) for ep in self._select(episodes)]
        grids = [uniform_times(e.start_ns, e.stop_ns, self.sample_rate) for e in self._episodes]
        self._item_episode = np.concatenate([np.full(len(g), i, np.int64) for i, g in enumerate(grids)])   # M
        self._item_time = np.concatenate(grids).astype(np.int64)                                         # M
        used = dict.fromkeys([*self.obs_keys, action, *self.future_keys])
        self.stats = compute_stats(self._episodes, {n: self.features[n] for n in used})
        self._cache: FrameCache | None = None
        self._cache_pid: int | None = None

    # --- set-up ----------------------------------------------------------------------------------
    def _check_names(self, names: list[str]) -> None:
        for name in names:
            if name not in self.features:
                close = difflib.get_close_matches(name, list(self.features), n=2)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise LoaderError(f"unknown feature '{name}'; features: {', '.join(self.features)}{hint}")
        if len(set(names)) != len(names):
            raise LoaderError(f"feature names repeat: {names}")

    def _select(self, episodes: Sequence[int] | None) -> list[int]:
        available = self.source.episodes()
        if episodes is None:
            return available
        if len(episodes) == 0:
            raise LoaderError("episodes is empty: select at least one episode")
        missing = sorted(set(episodes) - set(available))
        if missing:
            raise LoaderError(f"episodes {missing} not in the dataset; available: {available}")
        return list(episodes)

    def _load_episode(self, ep: int) -> _Episode:
        """Low-dim values and image stamps of one episode (no video decoding)."""
        lowdim, images = {}, {}
        for name in dict.fromkeys([*self.obs_keys, self.action_key, *self.future_keys]):
            if self.features[name].kind == "image":
                images[name] = np.asarray(self.source.image_stamps(ep, name), np.int64)
            else:
                lowdim[name] = self.source.lowdim(ep, name)
        stamps = [s for s, _ in lowdim.values()] + list(images.values())
        empty = [n for n, s in zip([*lowdim, *images], stamps, strict=True) if len(s) == 0]
        if empty:
            raise LoaderError(f"episode {ep}: no samples for {', '.join(empty)}")
        start, stop = max(int(s[0]) for s in stamps), min(int(s[-1]) for s in stamps)
        if stop < start:
            raise LoaderError(f"episode {ep}: the streams do not overlap in time (valid span is empty)")
        return _Episode(ep, start, stop, lowdim, images)

    # --- items -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._item_time)

    @property
    def item_episodes(self) -> np.ndarray:
        """(M,) position (in the dataset's episode list) of each item's episode."""
        return self._item_episode

    def sample_times(self, episode: int) -> np.ndarray:
        """(T,) int64 sample times of one episode (by its episode index)."""
        pos = [e.index for e in self._episodes].index(episode)
        return self._item_time[self._item_episode == pos]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"item {i} out of range ({len(self)} items)")
        ep = self._episodes[int(self._item_episode[i])]
        t = int(self._item_time[i])
        obs_t = t + self._obs_offsets                       # n_obs
        act_t = t + self._act_offsets                       # H
        out: dict[str, torch.Tensor] = {}
        for name in self.obs_keys:
            out[f"obs.{name}"] = self._window(ep, name, np.clip(obs_t, ep.start_ns, ep.stop_ns))
        out["obs_is_pad"] = torch.from_numpy(obs_t < ep.start_ns)
        act_clipped = np.clip(act_t, ep.start_ns, ep.stop_ns)
        out["action"] = self._window(ep, self.action_key, act_clipped)
        for name in self.future_keys:
            out[f"future.{name}"] = self._window(ep, name, act_clipped)
        out["action_is_pad"] = torch.from_numpy(act_t > ep.stop_ns)
        out["episode_index"] = torch.tensor(ep.index, dtype=torch.int64)
        out["t_ns"] = torch.tensor(t, dtype=torch.int64)
        return out

    def _window(self, ep: _Episode, name: str, times: np.ndarray) -> torch.Tensor:
        if name in ep.lowdim:
            stamps, values = ep.lowdim[name]
            return torch.from_numpy(interpolate(stamps, values, times).astype(np.float32))    # T,D
        frames = self._frames(ep.index, name)                                               # N,H,W,3 uint8
        idx = np.clip(previous_index(ep.image_stamps[name], times), 0, len(frames) - 1)
        images = frames[idx].transpose(0, 3, 1, 2).astype(np.float32)                       # T,3,H,W
        images *= np.float32(1.0 / 255.0)       # numpy: several times faster than torch's per-item ops here
        return torch.from_numpy(images)

    def _frames(self, ep: int, name: str) -> np.ndarray:
        """Decoded frames of one episode's camera, from this process's cache (created after fork/spawn)."""
        if self._cache is None or self._cache_pid != os.getpid():
            self._cache = FrameCache(self.cache_bytes)
            self._cache_pid = os.getpid()
            info = get_worker_info()                        # None in the main process
            self._cache.worker_id = None if info is None else info.id
        return self._cache.get((ep, name), lambda: self.source.decode(ep, name))

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_cache": None, "_cache_pid": None}     # workers build their own cache

    @property
    def cache(self) -> FrameCache | None:
        return self._cache

    def normalizer(self, mode: str = "limits", image_mode: str = "identity") -> Normalizer:
        return Normalizer.from_stats(self.stats, mode=mode, image_mode=image_mode)


def _default_obs(features: dict[str, Feature], action: str) -> list[str]:
    """Every `observation.*` feature (or, when none is named so, every feature but the action)."""
    named = [n for n in features if n.startswith("observation.") and n != action]
    return named or [n for n in features if n != action]


class EpisodeBlockSampler(Sampler[int]):
    """Shuffles episodes into blocks of `episodes_per_block`, then the items within each block.

    With plain shuffling over a dataset whose decoded video exceeds `cache_bytes`, almost every item
    needs a fresh decode of a whole episode; with blocks that fit the cache each episode is decoded
    about once per worker and epoch. Seeded by (seed, epoch); the epoch advances on each pass
    (or set it with `set_epoch`)."""

    def __init__(self, dataset: WindowDataset, episodes_per_block: int, seed: int = 0):
        if episodes_per_block < 1:
            raise LoaderError(f"episodes_per_block must be >= 1, got {episodes_per_block}")
        self.item_episodes = np.asarray(dataset.item_episodes)
        self.block, self.seed, self.epoch = int(episodes_per_block), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.item_episodes)

    def __iter__(self):
        rng = np.random.default_rng((self.seed, self.epoch))
        self.epoch += 1
        episodes = rng.permutation(np.unique(self.item_episodes))
        for b in range(0, len(episodes), self.block):
            items = np.flatnonzero(np.isin(self.item_episodes, episodes[b:b + self.block]))
            yield from (int(i) for i in rng.permutation(items))


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise LoaderError(f"{name} must be > 0, got {value}" + (" (n_obs >= 1)" if name == "n_obs" else ""))
    for name in ("n_obs", "horizon"):
        if int(values[name]) != values[name]:
            raise LoaderError(f"{name} must be an integer, got {values[name]}")


def compute_stats(episodes: list[_Episode], features: dict[str, Feature]) -> dict[str, dict[str, Any]]:
    """{name: {kind, min, max, mean, std (per dim), count}} over every recorded sample of each low-dim
    feature; images get the fixed [0, 1] range per channel (mean 0.5, std 0.5)."""
    stats: dict[str, dict[str, Any]] = {}
    for name, feat in features.items():
        if feat.kind == "image":
            stats[name] = {"kind": "image", "min": [0.0] * 3, "max": [1.0] * 3, "mean": [0.5] * 3,
                           "std": [0.5] * 3, "count": int(sum(len(e.image_stamps[name]) for e in episodes))}
            continue
        values = np.concatenate([e.lowdim[name][1] for e in episodes], axis=0)    # N,D
        stats[name] = {"kind": feat.kind, "min": values.min(0).tolist(), "max": values.max(0).tolist(),
                       "mean": values.mean(0).tolist(), "std": values.std(0).tolist(), "count": int(len(values))}
    return stats


class Normalizer:
    """Per-feature normalization from dataset statistics, saved/loaded as JSON (never pickle).

    Modes: "limits" maps [min, max] to [-1, 1] (a constant dim maps to 0), "gaussian" maps to zero
    mean and unit std (std < eps treated as 1), "identity" leaves values alone. Low-dim tensors are
    (..., D); images (..., 3, H, W) use per-channel statistics."""

    EPS = 1e-8

    def __init__(self, stats: dict[str, dict[str, Any]], modes: dict[str, str]):
        unknown = {n: m for n, m in modes.items() if m not in MODES}
        if unknown:
            raise LoaderError(f"unknown normalization mode(s) {unknown}; use {', '.join(MODES)}")
        missing = sorted(set(modes) - set(stats))
        if missing:
            raise LoaderError(f"no statistics for {missing}")
        self.stats, self.modes = stats, dict(modes)
        self._scale: dict[str, torch.Tensor] = {}
        self._offset: dict[str, torch.Tensor] = {}
        self._tables: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}   # (name, device, dtype) -> tables
        for name, mode in self.modes.items():
            self._scale[name], self._offset[name] = self._affine(stats[name], mode)

    @classmethod
    def from_stats(cls, stats: dict[str, dict[str, Any]], mode: str = "limits",
                   image_mode: str = "identity") -> Normalizer:
        return cls(stats, {n: image_mode if s.get("kind") == "image" else mode for n, s in stats.items()})

    def _affine(self, s: dict[str, Any], mode: str) -> tuple[torch.Tensor, torch.Tensor]:
        """y = x * scale + offset, per dim (D,) or per channel (3, 1, 1)."""
        lo, hi = np.asarray(s["min"], np.float64), np.asarray(s["max"], np.float64)
        if mode == "limits":
            span = hi - lo
            scale = np.where(span > self.EPS, 2.0 / np.where(span > self.EPS, span, 1.0), 1.0)
            offset = np.where(span > self.EPS, -1.0 - lo * scale, -lo)
        elif mode == "gaussian":
            std = np.asarray(s["std"], np.float64)
            scale = 1.0 / np.where(std > self.EPS, std, 1.0)
            offset = -np.asarray(s["mean"], np.float64) * scale
        else:
            scale, offset = np.ones_like(lo), np.zeros_like(lo)
        shape = (-1, 1, 1) if s.get("kind") == "image" else (-1,)
        return (torch.tensor(scale, dtype=torch.float32).reshape(shape),
                torch.tensor(offset, dtype=torch.float32).reshape(shape))

    def _params(self, name: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`name`'s affine tables on x's device and dtype, copied there once (then cached: no
        host-to-device copy per call on a GPU, which a CUDA graph capture could not contain)."""
        if name not in self.modes:
            raise LoaderError(f"no normalization for '{name}'; known: {', '.join(self.modes)}")
        key = (name, x.device, x.dtype)
        if key not in self._tables:
            self._tables[key] = (self._scale[name].to(x.device, x.dtype), self._offset[name].to(x.device, x.dtype))
        return self._tables[key]

    def normalize(self, name: str, x: torch.Tensor) -> torch.Tensor:
        scale, offset = self._params(name, x)
        return x * scale + offset

    def unnormalize(self, name: str, y: torch.Tensor) -> torch.Tensor:
        scale, offset = self._params(name, y)
        return (y - offset) / scale

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Normalize a dataset item/batch: `obs.<name>` and `action` entries with statistics; others as is."""
        out = dict(batch)
        for key, value in batch.items():
            name = key[4:] if key.startswith("obs.") else key
            if name in self.modes and (key.startswith("obs.") or key == "action"):
                out[key] = self.normalize(name, value)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"format": NORMALIZER_FORMAT, "version": 1, "modes": self.modes, "stats": self.stats}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Normalizer:
        if data.get("format") != NORMALIZER_FORMAT:
            raise LoaderError(f"not a normalizer: format {data.get('format')!r} is not {NORMALIZER_FORMAT!r}")
        return cls(data["stats"], data["modes"])

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Normalizer:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise LoaderError(f"cannot read normalizer {path}: {exc}") from exc
        return cls.from_dict(data)
