"""The shared trainer's parts (`policies.train`): EMA, distributed set-up, sampler, state on disk, run log.

- `EMA`: exponential moving average of the weights with Diffusion Policy's decay warmup.
- `init_distributed`: rank/world/device, joining torchrun's process group (nccl on CUDA, gloo on CPU).
- `EpochSampler`: a DistributedSampler that can start mid-epoch (resume) and shuffle in episode blocks.
- `save_train_state` / `load_train_state`: what `checkpoints/last` needs beyond the policy checkpoint to
  continue exactly: `train_state.safetensors` (raw weights `model.*`, optimizer tensors
  `optim.<param>.<name>`, the noise generator `rng.generator`) and `train_state.json` (counters, EMA
  step, optimizer hyper-parameters and scalars). Tensors in safetensors, scalars in JSON: no pickle.
- `load_weights`: start a run from another checkpoint's weights (`train.init_from`).
- `RunLog`: rich progress (loss, val loss, lr, steps/s), `metrics.jsonl` and `loss.png` (rank 0 writes).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DistributedSampler

from data.loader import EpisodeBlockSampler, WindowDataset
from policies.base import CheckpointError, Policy, PolicyError, load_state_strict, read_checkpoint_meta
from policies.train_config import TrainConfig

if TYPE_CHECKING:
    from policies.train import Trainer

log = logging.getLogger("policies.train")
STATE_FORMAT = "robot_stack.train_state"


# --- EMA, distributed set-up, sampler -----------------------------------------------------------------
class EMA:
    """Exponential moving average of a policy's weights; decay warmup as Diffusion Policy's EMAModel."""

    def __init__(self, policy: Policy, cfg: TrainConfig):
        self.model = copy.deepcopy(policy).eval().requires_grad_(False)
        self.cfg, self.step = cfg, 0

    def decay(self) -> float:
        step = max(0, self.step - self.cfg.ema_update_after - 1)
        if step <= 0:
            return 0.0
        value = 1 - (1 + step / self.cfg.ema_inv_gamma) ** -self.cfg.ema_power
        return max(self.cfg.ema_min, min(value, self.cfg.ema_max))

    @torch.no_grad()
    def update(self, policy: Policy) -> None:
        decay = self.decay()
        for ema, p in zip(self.model.parameters(), policy.parameters(), strict=True):
            if p.requires_grad:
                ema.lerp_(p.detach(), 1.0 - decay)
            else:
                ema.copy_(p)
        for ema, b in zip(self.model.buffers(), policy.buffers(), strict=True):
            ema.copy_(b)
        self.step += 1


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "auto") -> Dist:
    """This process's rank/world/device; under torchrun, joins the process group (nccl/gloo)."""
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    if device == "auto":
        dev = torch.device(f"cuda:{local}" if cuda else "cpu")
    elif device == "cuda":
        dev = torch.device(f"cuda:{local}")
    else:
        dev = torch.device(device)
    if dev.type == "cuda" and not cuda:
        raise PolicyError(f"device {device!r}: CUDA is not available (use device: auto or cpu)")
    if world > 1 and not torch.distributed.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        torch.distributed.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Dist(rank, world, local, dev)


class EpochSampler(DistributedSampler):
    """DistributedSampler (order seeded by seed + epoch, this rank's share) that can start mid-epoch
    (`skip` items, for resume) and optionally shuffles in blocks of episodes (`EpisodeBlockSampler`)."""

    def __init__(self, ds: WindowDataset, world: int, rank: int, seed: int, episodes_per_block: int = 0):
        super().__init__(ds, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=False)
        self.blocks = EpisodeBlockSampler(ds, episodes_per_block, seed) if episodes_per_block else None
        self.skip = 0

    def __iter__(self):
        if self.blocks is None:
            indices = list(super().__iter__())
        else:
            self.blocks.set_epoch(self.epoch)
            order = list(self.blocks)
            order += order[:self.total_size - len(order)]
            indices = order[self.rank:self.total_size:self.num_replicas]
        return iter(indices[self.skip:])

    def __len__(self) -> int:
        return self.num_samples - self.skip


class PreloadedWindows(torch.utils.data.Dataset):
    """Every item of a WindowDataset materialized once as stacked tensors on `device`; the DataLoader
    fetches a whole batch by indexing (`__getitems__`), so a small low-dim model trains at GPU speed
    instead of the per-item Python loader's. Refuses datasets larger than `max_bytes`."""

    def __init__(self, ds: WindowDataset, device: torch.device, max_bytes: int = 2 * 2**30):
        first = ds[0]
        size = len(ds) * sum(v.numel() * v.element_size() for v in first.values())
        if size > max_bytes:
            raise PolicyError(f"loader.preload: the dataset needs {size / 2**30:.1f} GiB (limit "
                              f"{max_bytes / 2**30:.1f} GiB); turn preload off")
        items = [first, *(ds[i] for i in range(1, len(ds)))]
        self.data = {k: torch.stack([it[k] for it in items]).to(device) for k in first}
        self.item_episodes = ds.item_episodes
        self.device = device

    def __len__(self) -> int:
        return len(self.item_episodes)

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(indices, device=self.device)
        return {k: v[idx] for k, v in self.data.items()}


def batch_as_is(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """collate_fn of a PreloadedWindows loader: the fetched batch is already stacked."""
    return batch


# --- train state --------------------------------------------------------------------------------------
def save_train_state(t: Trainer, path: Path) -> None:
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v for k, v in t.policy.state_dict().items()}
    opt = t.optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in opt["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"optim.{idx}.{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = value
    if t.generator is not None:
        tensors["rng.generator"] = t.generator.get_state()
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path / "train_state.safetensors.tmp"))
    (path / "train_state.safetensors.tmp").replace(path / "train_state.safetensors")
    s = t.state
    meta = {"format": STATE_FORMAT, "version": 1, "policy": t.name, "step": s.step, "epoch": s.epoch,
            "batch_in_epoch": s.batch_in_epoch, "best": None if math.isinf(s.best) else s.best,
            "last_val": s.last_val, "last_val_step": s.last_val_step, "ema_step": t.ema.step if t.ema else None,
            "total_steps": t.total_steps, "world_size": t.dist.world, "param_groups": opt["param_groups"],
            "optim_scalars": scalars}
    (path / "train_state.json.tmp").write_text(json.dumps(meta, indent=1))
    (path / "train_state.json.tmp").replace(path / "train_state.json")


def load_train_state(t: Trainer, path: Path) -> None:
    """Restore raw and EMA weights, optimizer, generator and counters from checkpoints/last."""
    from safetensors.torch import load_file

    from policies.train import Counters

    meta = json.loads((path / "train_state.json").read_text())
    if meta.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path}/train_state.json: format {meta.get('format')!r} is not {STATE_FORMAT!r}")
    ckpt = _check_same_policy(t.policy, path)
    if ckpt["train"].get("step") != meta["step"]:
        raise CheckpointError(f"{path}: policy.json (step {ckpt['train'].get('step')}) and train_state.json "
                              f"(step {meta['step']}) disagree: the checkpoint was cut while being written")
    tensors = load_file(str(path / "train_state.safetensors"))
    load_state_strict(t.policy, {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")},
                      f"{path}: weights do not fit")
    if t.ema is not None:
        load_state_strict(t.ema.model, load_file(str(path / "model.safetensors")), f"{path}: weights do not fit")
        t.ema.step = int(meta["ema_step"] or 0)
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    for idx, values in meta["optim_scalars"].items():
        state.setdefault(int(idx), {}).update(values)
    groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in meta["param_groups"]]
    try:
        t.optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: optimizer state does not fit this policy: {exc}") from exc
    if t.generator is not None and "rng.generator" in tensors:
        t.generator.set_state(tensors["rng.generator"])
    best = math.inf if meta["best"] is None else float(meta["best"])
    t.state = Counters(meta["step"], meta["epoch"], meta["batch_in_epoch"], best, meta["last_val"],
                       meta["last_val_step"])
    if meta["world_size"] != t.dist.world and meta["batch_in_epoch"]:
        log.warning(f"resuming mid-epoch with {t.dist.world} processes (saved with {meta['world_size']}): "
                    "the rest of this epoch's order differs from an uninterrupted run")
    if meta["total_steps"] != t.total_steps:
        log.info(f"total steps {meta['total_steps']} -> {t.total_steps}: the lr schedule follows the new total")
    log.info(f"resumed from {path} at step {t.state.step} (epoch {t.state.epoch})")


def _check_same_policy(policy: Policy, path: Path) -> dict[str, Any]:
    ckpt = read_checkpoint_meta(path)
    if ckpt["policy"] != policy.name:
        raise CheckpointError(f"{path} holds a '{ckpt['policy']}' policy, not '{policy.name}'")
    own = json.loads(json.dumps(dataclasses.asdict(policy.config)))
    diff = sorted(k for k in set(own) | set(ckpt["config"]) if own.get(k) != ckpt["config"].get(k))
    if diff:
        shown = ", ".join(f"{k}: checkpoint {ckpt['config'].get(k)!r} vs now {own.get(k)!r}" for k in diff[:5])
        raise CheckpointError(f"{path}: the policy config differs from the checkpoint's ({shown})")
    return ckpt


def load_weights(policy: Policy, path: str | Path) -> None:
    """Copy a checkpoint's weights into `policy` (same policy type and tensor shapes)."""
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_checkpoint_meta(path)
    if meta["policy"] != policy.name:
        raise CheckpointError(f"init_from {path} holds a '{meta['policy']}' policy, not '{policy.name}'")
    load_state_strict(policy, load_file(str(path / "model.safetensors")), f"{path}: weights do not fit")


# --- run log --------------------------------------------------------------------------------------------
class RunLog:
    """Loss sums on every rank; progress bar, metrics.jsonl and loss.png on rank 0 (`enabled`)."""

    def __init__(self, t: Trainer, *, enabled: bool, quiet: bool = False):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.t, self.enabled = t, enabled
        self.path = t.out / "metrics.jsonl"
        self.sums: dict[str, torch.Tensor] = {}
        self.n = 0
        self.epoch_sum, self.epoch_n = torch.zeros((), device=t.dist.device), 0
        self.lr, self.grad_norm, self.info = 0.0, None, {}
        self.clock, self.clock_step = time.perf_counter(), t.state.step
        self.progress = Progress(TextColumn(f"[bold]{t.name}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                 disable=not enabled or quiet)

    def __enter__(self) -> RunLog:
        if self.enabled:
            self.t.out.mkdir(parents=True, exist_ok=True)
            keep = []
            if self.t.state.step > 0 and self.path.exists():    # resumed: drop lines past the checkpoint
                keep = [ln for ln in self.path.read_text().splitlines()
                        if ln.strip() and json.loads(ln).get("step", 0) <= self.t.state.step]
            self.path.write_text("".join(f"{ln}\n" for ln in keep))
        self.progress.start()
        self.task = self.progress.add_task("train", total=self.t.total_steps, completed=self.t.state.step, info="")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def step(self, losses: dict[str, Any], lr: float, grad_norm: torch.Tensor | None) -> None:
        for key, value in losses.items():
            if torch.is_tensor(value) and value.numel() == 1:
                self.sums[key] = self.sums.get(key, 0.0) + value.detach().float()
        self.epoch_sum += losses["loss"].detach().float()
        self.epoch_n += 1
        self.n += 1
        self.lr, self.grad_norm = lr, grad_norm
        self.progress.advance(self.task)
        if self.t.state.step % self.t.cfg.log_every == 0:
            self.flush()

    def flush(self) -> None:
        if not self.n:
            return
        values = {k: float(v) / self.n for k, v in self.sums.items()}
        step = self.t.state.step
        if not math.isfinite(values["loss"]):
            raise PolicyError(f"the training loss became {values['loss']} at step {step}; lower train.lr "
                              f"or check the data")
        now = time.perf_counter()
        rate = (step - self.clock_step) / max(now - self.clock, 1e-9)
        self.clock, self.clock_step = now, step
        record = {"kind": "train", "step": step, "epoch": self.t.state.epoch, "lr": self.lr,
                  "grad_norm": None if self.grad_norm is None else float(self.grad_norm), "steps_per_s": rate,
                  **values}
        self.sums, self.n = {}, 0
        self.info.update(loss=f"{values['loss']:.4g}", lr=f"{self.lr:.2e}", rate=f"{rate:.1f} steps/s")
        self.write(record)

    def take_epoch_loss(self) -> tuple[float, int] | None:
        """(sum, count) of the training losses since the last call (this rank)."""
        if not self.epoch_n:
            return None
        out = (float(self.epoch_sum), self.epoch_n)
        self.epoch_sum, self.epoch_n = torch.zeros((), device=self.t.dist.device), 0
        return out

    def epoch(self, train_loss: float | None, val_loss: float | None) -> None:
        if val_loss is not None:
            self.info["val"] = f"{val_loss:.4g}"
        self.write({"kind": "epoch", "step": self.t.state.step, "epoch": self.t.state.epoch,
                    "train_loss": train_loss, "val_loss": val_loss, "lr": self.lr})

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        text = "  ".join(f"{k} {v}" for k, v in self.info.items())
        self.progress.update(self.task, info=text)

    def plot(self) -> Path | None:
        """out/loss.png: training loss (per log line) and validation loss over steps, and the lr."""
        from matplotlib.figure import Figure

        if not self.enabled or not self.path.exists():
            return None
        rows = [json.loads(ln) for ln in self.path.read_text().splitlines() if ln.strip()]
        train = [(r["step"], r["loss"]) for r in rows if r["kind"] == "train"]
        val = [(r["step"], r["val_loss"]) for r in rows if r["kind"] == "epoch" and r["val_loss"] is not None]
        fig = Figure(figsize=(8, 6))
        ax, ax_lr = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
        for points, label, style in ((train, "train loss", "-"), (val, "val loss (EMA)", "o-")):
            if points:
                ax.plot(*zip(*points, strict=True), style, label=label)
        if any(v > 0 for _, v in train + val):
            ax.set_yscale("log")
        ax.set_ylabel("loss")
        ax.legend()
        ax.set_title(f"{self.t.name} on {Path(self.t.dataset_path).name}")
        ax_lr.plot([r["step"] for r in rows if r["kind"] == "train"], [r["lr"] for r in rows if r["kind"] == "train"])
        ax_lr.set_ylabel("lr")
        ax_lr.set_xlabel("step")
        fig.subplots_adjust(left=0.1, right=0.97, top=0.94, bottom=0.09, hspace=0.08)
        path = self.t.out / "loss.png"
        fig.savefig(path.with_suffix(".png.tmp"), format="png", dpi=100)
        path.with_suffix(".png.tmp").replace(path)
        return path
