"""The shared trainer of every policy: `robot-stack train --policy dp|carp|rdp --dataset PATH [--config FILE]`.

One `Trainer` for all policies: it builds the `WindowDataset`s (validation split by episode, seeded),
the policy (`build_policy`: config overrides + dataset feature shapes + normalizer statistics), an
AdamW optimizer with a warmup + cosine learning rate, EMA weights (Diffusion Policy's decay warmup),
gradient clipping, and runs on CUDA when available. The EMA weights are what gets validated and saved.

Outputs under `out`: `metrics.jsonl` (a line every `log_every` steps and every epoch), `loss.png`,
`checkpoints/best` (lowest validation loss; training loss without a validation split) and
`checkpoints/last` (every `checkpoint_every` epochs, at the end, and on Ctrl-C). Both are policy
checkpoints (`policies.base.load_policy`); `last` also holds `train_state.safetensors` (raw weights,
optimizer moments, the noise generator) + `train_state.json` (counters, optimizer hyper-parameters),
which `resume=True` continues from exactly: never pickle.

Multi-GPU: launched by torchrun (RANK/WORLD_SIZE/LOCAL_RANK set), each process joins the process
group (nccl on CUDA, gloo on CPU), wraps the policy in DistributedDataParallel and reads its share
through a DistributedSampler; `batch_size` is the global batch. Only rank 0 writes files or shows progress.
Policies whose `compute_loss` takes a `generator` keyword get the trainer's seeded generator (noise
and diffusion steps then resume exactly); model initialisation is seeded without touching global state.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from data.loader import WindowDataset
from policies.base import CheckpointError, FeatureSpec, Policy, PolicyConfig, PolicyError, policy_class
from policies.train_config import LoaderConfig, RunConfig, policy_config
from policies.train_state import (
    EMA,
    EpochSampler,
    PreloadedWindows,
    RunLog,
    batch_as_is,
    init_distributed,
    load_train_state,
    load_weights,
    save_train_state,
)

log = logging.getLogger("policies.train")

__all__ = ["Trainer", "build_policy", "features_from_dataset", "lr_factor", "split_episodes", "window_dataset"]


# --- dataset and policy ---------------------------------------------------------------------------
def features_from_dataset(ds: WindowDataset) -> dict[str, FeatureSpec]:
    """FeatureSpecs of the dataset's observation and action features: kind, per-step shape (from its
    first item), per-dimension names (joint names of JointState streams, LeRobot `names`) where known."""
    item = ds[0]
    out = {}
    for name in [*ds.obs_keys, ds.action_key]:
        value = item["action"] if name == ds.action_key else item[f"obs.{name}"]
        shape = tuple(int(s) for s in value.shape[1:])
        names = _dim_names(ds.source, name, shape[0]) if len(shape) == 1 else ()
        out[name] = FeatureSpec(name, ds.features[name].kind, shape, names)
    return out


def _dim_names(source: Any, name: str, dim: int) -> tuple[str, ...]:
    from data.loader_video import LeRobotSource, StoreSource
    from data.store import EpisodeStore, StoreError

    try:
        if isinstance(source, StoreSource):
            from data.formats.lerobot import _names

            names = _names(EpisodeStore(source.root).episode(source.episodes()[0]), source.features()[name], dim)
        elif isinstance(source, LeRobotSource):
            from data.formats.lerobot_import import feature_names

            names = feature_names(name, source.info.get("features", {}).get(name, {}), dim)
        else:
            return ()
    except (OSError, KeyError, IndexError, StoreError):
        return ()
    return tuple(str(n) for n in names) if len(names) == dim else ()


def window_dataset(source: Any, config: PolicyConfig, loader: LoaderConfig | None = None,
                   episodes: list[int] | None = None) -> WindowDataset:
    """The WindowDataset a policy config asks for (its obs/action features, n_obs, horizon, rates)."""
    loader = loader or LoaderConfig()
    return WindowDataset(source, obs=config.obs, action=config.action, n_obs=config.n_obs, obs_rate=config.obs_rate,
                         horizon=config.horizon, action_rate=config.action_rate,
                         sample_rate=loader.sample_rate or None, episodes=episodes, future=config.future,
                         cache_bytes=loader.cache_bytes)


def build_policy(name: str, config_overrides: dict[str, Any] | None, ds: WindowDataset, *, source: str = "<config>",
                 normalize: str = "", image_normalize: str = "") -> Policy:
    """Policy `name` with its config class + overrides, the dataset's feature shapes and normalizer."""
    cls = policy_class(name)
    config = policy_config(cls.config_class, name, dict(config_overrides or {}), source)
    want = {"obs": tuple(config.obs), "action": config.action, "n_obs": config.n_obs, "horizon": config.horizon,
            "obs_rate": config.obs_rate, "action_rate": config.action_rate}
    have = {"obs": tuple(ds.obs_keys), "action": ds.action_key, "n_obs": ds.n_obs, "horizon": ds.horizon,
            "obs_rate": ds.obs_rate, "action_rate": ds.action_rate}
    wrong = [f"{k}: policy {want[k]!r} vs dataset {have[k]!r}" for k in want if want[k] != have[k]]
    if wrong:
        raise PolicyError(f"{name}: the dataset's windows do not match the policy config: {'; '.join(wrong)}")
    normalizer = ds.normalizer(normalize or getattr(cls, "normalize_mode", "limits"),
                               image_normalize or getattr(cls, "image_normalize_mode", "identity"))
    return cls(config, features_from_dataset(ds), normalizer)


def split_episodes(episodes: list[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, val) episodes: round(fraction * n) (at least 1 when fraction > 0) held out, seeded."""
    episodes = list(episodes)
    if fraction <= 0 or len(episodes) < 2:
        return episodes, []
    n_val = min(len(episodes) - 1, max(1, round(fraction * len(episodes))))
    val = sorted(int(e) for e in np.random.default_rng(seed).choice(episodes, n_val, replace=False))
    return [e for e in episodes if e not in val], val


def lr_factor(step: int, total: int, warmup: int, schedule: str = "cosine") -> float:
    """diffusers' schedules: linear warmup from 0, then constant or half a cosine down to 0 at `total`."""
    if step < warmup:
        return step / max(1, warmup)
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))


class _LossModule(torch.nn.Module):
    """forward(batch) = policy.compute_loss(batch): what DistributedDataParallel wraps."""

    def __init__(self, policy: Policy, generator: torch.Generator | None):
        super().__init__()
        self.policy, self.generator = policy, generator

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return _loss(self.policy, batch, self.generator)


def _loss(policy: Policy, batch: dict[str, torch.Tensor], generator: torch.Generator | None) -> dict[str, Any]:
    kwargs = {"generator": generator} if generator is not None else {}
    out = policy.compute_loss(batch, **kwargs)
    if not isinstance(out, dict) or "loss" not in out:
        raise PolicyError(f"{policy.name}.compute_loss must return a dict with 'loss', got {type(out).__name__}")
    return out


# --- the trainer ---------------------------------------------------------------------------------------
@dataclass
class Counters:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best: float = math.inf
    last_val: float | None = None
    last_val_step: int = -1


class Trainer:
    """Trains policy `policy_name` on `dataset` (path, EpisodeStore or episode source); see the module docstring."""

    def __init__(self, policy_name: str, dataset: Any, run: RunConfig | None = None, *, out: str | Path | None = None,
                 resume: bool = False, quiet: bool = False):
        from data.features import parse_features
        from data.loader_video import open_source

        self.run, self.cfg = run or RunConfig(), (run or RunConfig()).train
        self.name, self.quiet = policy_name, quiet
        self.dist = init_distributed(self.cfg.device)
        root = getattr(dataset, "root", dataset)
        self.dataset_path = str(root)
        self.out = Path(out or self.cfg.out or f"runs/{policy_name}_{Path(str(root)).name}")
        self._check_out(resume)
        source = open_source(dataset, parse_features(self.run.features) if self.run.features else None)
        pconfig = policy_config(policy_class(policy_name).config_class, policy_name, self.run.policy, self.run.source)
        episodes = list(self.run.loader.episodes) or source.episodes()
        self.train_episodes, self.val_episodes = split_episodes(episodes, self.cfg.val_fraction, self.cfg.seed)
        self.train_ds = window_dataset(source, pconfig, self.run.loader, self.train_episodes)
        self.val_ds = window_dataset(source, pconfig, self.run.loader, self.val_episodes) if self.val_episodes else None
        self._build_model()
        self._build_loaders()
        self.state = Counters()
        if resume:
            load_train_state(self, self.out / "checkpoints" / "last")
        log.info(f"rank {self.dist.rank}/{self.dist.world} on {self.dist.device}: {len(self.train_ds)} train items "
                 f"({len(self.train_episodes)} episodes), {len(self.val_ds) if self.val_ds else 0} val items "
                 f"({len(self.val_episodes)} episodes), local batch {self.local_batch}, {self.total_steps} steps")

    def _check_out(self, resume: bool) -> None:
        last = self.out / "checkpoints" / "last"
        if resume and not (last / "train_state.json").exists():
            raise PolicyError(f"nothing to resume: {last} has no train_state.json (start without --resume)")
        if not resume and last.exists():
            raise PolicyError(f"{self.out} already holds a run (checkpoints/last): pass --resume to continue it "
                              f"or choose another --out")

    def _build_model(self) -> None:
        cfg, dev = self.cfg, self.dist.device
        with torch.random.fork_rng(devices=[]):      # seeded initial weights, global RNG state left alone
            torch.manual_seed(cfg.seed)
            self.policy = build_policy(self.name, self.run.policy, self.train_ds, source=self.run.source,
                                       normalize=self.run.loader.normalize,
                                       image_normalize=self.run.loader.image_normalize)
        if cfg.init_from:
            load_weights(self.policy, cfg.init_from)
        self.policy.to(dev).train()
        self.ema = EMA(self.policy, cfg) if cfg.ema else None
        takes_gen = "generator" in inspect.signature(self.policy.compute_loss).parameters
        self.generator = torch.Generator(dev).manual_seed(cfg.seed * 1000 + self.dist.rank) if takes_gen else None
        groups = getattr(self.policy, "optimizer_param_groups", None)
        params = groups(cfg.weight_decay) if callable(groups) else [p for p in self.policy.parameters()
                                                                      if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
        self.model: torch.nn.Module = _LossModule(self.policy, self.generator)
        if self.dist.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [dev.index] if dev.type == "cuda" else None
            self.model = DistributedDataParallel(self.model, device_ids=ids,
                                                 find_unused_parameters=cfg.find_unused_parameters)

    def _build_loaders(self) -> None:
        cfg, d = self.cfg, self.dist
        if cfg.batch_size % d.world:
            raise PolicyError(f"batch_size {cfg.batch_size} (global) is not divisible by {d.world} processes")
        self.local_batch = cfg.batch_size // d.world
        common = {"num_workers": cfg.num_workers, "pin_memory": d.device.type == "cuda",
                  "persistent_workers": cfg.num_workers > 0}
        train_ds, val_ds = self.train_ds, self.val_ds
        if self.run.loader.preload:       # whole batches by tensor indexing on the device, no workers
            train_ds = PreloadedWindows(train_ds, d.device)
            val_ds = PreloadedWindows(val_ds, d.device) if val_ds is not None else None
            common = {"num_workers": 0, "collate_fn": batch_as_is}
        self.sampler = EpochSampler(train_ds, d.world, d.rank, cfg.seed, self.run.loader.episodes_per_block)
        self.loader = DataLoader(train_ds, batch_size=self.local_batch, sampler=self.sampler, **common)
        self.batches_per_epoch = len(self.loader)
        self.total_steps = cfg.steps or cfg.epochs * self.batches_per_epoch
        self.val_loader = None
        if val_ds is not None:
            sampler = DistributedSampler(val_ds, d.world, d.rank, shuffle=False) if d.world > 1 else None
            self.val_loader = DataLoader(val_ds, batch_size=self.local_batch, sampler=sampler, **common)

    @property
    def eval_policy(self) -> Policy:
        """The weights that get validated and saved: the EMA copy (or the raw policy without EMA)."""
        return self.ema.model if self.ema is not None else self.policy

    # --- loop ------------------------------------------------------------------------------------------
    def fit(self, stop_at_step: int | None = None) -> dict[str, Any]:
        """Train to `total_steps` (or stop early at `stop_at_step`, saving checkpoints/last to resume from)."""
        stop = min(self.total_steps, stop_at_step or self.total_steps)
        self.runlog = RunLog(self, enabled=self.dist.main, quiet=self.quiet)
        with self.runlog:
            try:
                while self.state.step < stop:
                    self._run_epoch(stop)
            except KeyboardInterrupt:
                if self.dist.main:
                    self.save("last")
                    log.warning(f"interrupted at step {self.state.step}; --resume continues from {self.out}")
                raise
            self._finish()
        return {"step": self.state.step, "epoch": self.state.epoch, "best": self.state.best,
                "val_loss": self.state.last_val, "out": str(self.out)}

    def _run_epoch(self, stop: int) -> None:
        s = self.state
        self.sampler.set_epoch(s.epoch)
        self.sampler.skip = s.batch_in_epoch * self.local_batch
        for batch in self.loader:
            self._train_step(batch)
            s.batch_in_epoch += 1
            if s.step >= stop:
                break
        if s.batch_in_epoch >= self.batches_per_epoch:
            s.epoch, s.batch_in_epoch = s.epoch + 1, 0
            self.sampler.skip = 0
            self._end_of_epoch()

    def _train_step(self, batch: dict[str, torch.Tensor]) -> None:
        dev, cfg = self.dist.device, self.cfg
        batch = {k: v.to(dev, non_blocking=True) for k, v in batch.items()}
        lr = cfg.lr * lr_factor(self.state.step, self.total_steps, cfg.warmup_steps, cfg.lr_schedule)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        losses = self.model(batch)
        self.optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        grad_norm = None
        if cfg.grad_clip > 0:
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.policy)
        self.state.step += 1
        self.runlog.step(losses, lr, grad_norm)

    def _end_of_epoch(self) -> None:
        s = self.state
        train_loss = self._reduce_mean(self.runlog.take_epoch_loss())
        val = self.validate() if s.epoch % self.cfg.val_every == 0 or s.step >= self.total_steps else None
        self._maybe_best(val if self.val_loader is not None else train_loss)
        self.runlog.epoch(train_loss, val)
        if self.dist.main and s.epoch % self.cfg.checkpoint_every == 0:
            self.save("last")
            self.runlog.plot()

    def _finish(self) -> None:
        if self.state.last_val_step != self.state.step and self.val_loader is not None:
            val = self.validate()
            self._maybe_best(val)
            self.runlog.epoch(None, val)
        if math.isinf(self.state.best) and self.val_loader is None:
            self._maybe_best(self._reduce_mean(self.runlog.take_epoch_loss()))
        if self.dist.main:
            self.save("last")
            self.runlog.plot()

    def _maybe_best(self, value: float | None) -> None:
        if value is not None and math.isfinite(value) and value < self.state.best:
            self.state.best = value
            if self.dist.main:
                self.save("best")

    @torch.no_grad()
    def validate(self) -> float | None:
        """Mean validation loss of the evaluated (EMA) weights, over every process's share."""
        if self.val_loader is None:
            return None
        policy, dev = self.eval_policy, self.dist.device
        was_training = policy.training
        policy.eval()
        gen = torch.Generator(dev).manual_seed(self.cfg.seed + 1) if self.generator is not None else None
        total = torch.zeros(2, dtype=torch.float64, device=dev)
        for batch in self.val_loader:
            batch = {k: v.to(dev, non_blocking=True) for k, v in batch.items()}
            n = batch["action"].shape[0]
            total += torch.stack([_loss(policy, batch, gen)["loss"].detach().double() * n, total.new_tensor(n)])
        policy.train(was_training)
        if self.dist.world > 1:
            torch.distributed.all_reduce(total)
        self.state.last_val, self.state.last_val_step = float(total[0] / total[1].clamp_min(1)), self.state.step
        return self.state.last_val

    def _reduce_mean(self, pair: tuple[float, int] | None) -> float | None:
        total = torch.tensor(pair or (0.0, 0), dtype=torch.float64, device=self.dist.device)
        if self.dist.world > 1:
            torch.distributed.all_reduce(total)
        return float(total[0] / total[1]) if total[1] > 0 else None

    # --- outputs -------------------------------------------------------------------------------------
    def save(self, kind: str) -> Path:
        """checkpoints/<kind>: the evaluated weights as a policy checkpoint (+ the train state for `last`)."""
        s = self.state
        path = self.out / "checkpoints" / kind
        info = {"step": s.step, "epoch": s.epoch, "total_steps": self.total_steps, "val_loss": s.last_val,
                "best": None if math.isinf(s.best) else s.best, "ema": self.ema is not None,
                "dataset": self.dataset_path, "train_episodes": self.train_episodes,
                "val_episodes": self.val_episodes, "world_size": self.dist.world,
                "train_config": dataclasses.asdict(self.cfg), "loader_config": dataclasses.asdict(self.run.loader),
                "features_map": self.run.features}
        if kind == "last":
            save_train_state(self, path)
        self.eval_policy.save(path, **info)
        return path

    def close(self) -> None:
        """Leave the process group (when this process joined one)."""
        if self.dist.world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def read_metrics(out: str | Path) -> list[dict[str, Any]]:
    path = Path(out) / "metrics.jsonl"
    if not path.exists():
        raise CheckpointError(f"{path} does not exist")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

