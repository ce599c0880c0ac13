"""Reactive Diffusion Policy (RDP, Xue et al. 2025): slow latent diffusion + fast force-conditioned decoder.

Two parts behind one `Policy`:
- slow (`predict_latent`, a few Hz): DDIM over the tokenizer's latent (B, h, c), conditioned on the
  slow observations (state / images through `ObservationEncoder`, the n_obs window flattened);
  the denoiser is a small FiLM-conditioned residual MLP over the flattened latent.
- fast (`decode`, tens to hundreds of Hz): the asymmetric tokenizer's decoder
  (`policies.rdp_tokenizer`) turns that latent plus the freshest force/tactile reading(s) into the
  action chunk; the server re-decodes the current latent with each new reading.

Inputs: `config.obs` lists every observation the dataset must load; `config.fast_obs` (force /
tactile features, e.g. "observation.wrench") are added to `obs` automatically. The slow encoder
sees every `obs` feature, the fast ones' n_obs window included (`slow_uses_fast`, default: on a
short `wipe` training it cut the chunk error 3x, since force tells the planner whether it is in
contact); with `slow_uses_fast=False` it sees `obs` minus `fast_obs`, as a vision-only planner would.

Training (`compute_loss`, one entry point for the shared trainer), by `config.stage`:
- "tokenizer": stage 1 only, reconstruction (MSE, normalized actions) + `kl_weight` * KL.
- "latent": stage 2 only, the tokenizer frozen (no gradients reach it): DDPM loss on the posterior
  mean of the chunk's latent, scaled by `latent_std`. The denoiser predicts the clean latent
  (`prediction_type="sample"`, default: after 400 steps of a short `wipe` training its chunk error
  was half that of epsilon prediction) or the noise ("epsilon").
- "joint" (default): both losses in one step; the diffusion target is the *detached* posterior
  mean (stop-grad), so the diffusion loss never shapes the tokenizer. One run trains a usable
  policy. The paper's two-stage recipe with the shared trainer: a run with `stage: tokenizer`, then
  one with `stage: latent` and `train.init_from: <stage-1 checkpoint>`.
The parts a stage does not train get `requires_grad=False` (the trainer's optimizer and DDP skip them).
`latent_std` (a buffer, saved with the checkpoint) tracks the latent's standard deviation while the
tokenizer trains (EMA), so the diffusion sees unit-scale targets.

Fast features in training (`fast_per_step`, default on, the paper's recipe): the decoder trains on
the fast reading at each chunk step, `future.<name>` (B, H, F), which the loader samples at the
action times (`config.future` names them); being causal, output step k sees readings 0..k only. At
run time the fast loop feeds the readings at the chunk steps reached so far (`decode` takes
(B, T<=H, F)), the newest held over the rest. With `fast_per_step=False` the latest observed reading `obs.<name>[:, -1]`
is held over the whole chunk in training, and the fast loop feeds only the newest reading.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler
from torch import nn

from data.loader import Normalizer
from policies.base import FeatureSpec, Policy, PolicyConfig, PolicyError, register_policy
from policies.ddim import DdimSamplers
from policies.encoders import ObservationEncoder
from policies.rdp_tokenizer import AsymmetricTokenizer

STAGES = ("tokenizer", "latent", "joint")


@dataclass(frozen=True)
class RdpConfig(PolicyConfig):
    fast_obs: tuple[str, ...] = ("observation.wrench",)   # force / tactile features of the fast decoder
    slow_uses_fast: bool = True       # the slow latent diffusion also sees the fast features' n_obs window
    fast_per_step: bool = True        # the decoder trains on / is fed the reading at each chunk step
    stage: str = "joint"              # "tokenizer" | "latent" | "joint" (see the module docstring)
    slow_hz: float = 6.0
    fast_hz: float = 100.0
    # tokenizer
    latent_dim: int = 8               # c: channels per latent step
    downsample: int = 4               # H / h
    encoder_width: int = 64
    decoder_width: int = 64
    fast_embed: int = 16
    kl_weight: float = 1e-3
    # latent diffusion
    denoiser_width: int = 256
    denoiser_depth: int = 3
    train_timesteps: int = 100
    inference_steps: int = 8
    prediction_type: str = "sample"   # what the denoiser predicts: "sample" (clean latent) or "epsilon" (noise)
    # image encoder (when images are among the slow observations)
    image_size: tuple[int, int] = (84, 84)
    image_feature_dim: int = 64
    image_widths: tuple[int, ...] = (32, 64, 128, 256)

    def __post_init__(self):
        super().__post_init__()
        if not self.fast_obs:
            raise PolicyError("rdp needs at least one fast (force/tactile) feature in fast_obs")
        if self.stage not in STAGES:
            raise PolicyError(f"rdp stage must be one of {', '.join(STAGES)}, got {self.stage!r}")
        if not 1 <= self.inference_steps <= self.train_timesteps:
            raise PolicyError(f"inference_steps must be in [1, train_timesteps={self.train_timesteps}]")
        if self.prediction_type not in ("epsilon", "sample"):
            raise PolicyError(f"prediction_type must be 'epsilon' or 'sample', got {self.prediction_type!r}")
        if self.kl_weight < 0 or self.denoiser_depth < 1:
            raise PolicyError("kl_weight must be >= 0 and denoiser_depth >= 1")
        missing = tuple(n for n in self.fast_obs if n not in self.obs)
        if missing:
            object.__setattr__(self, "obs", (*self.obs, *missing))     # the dataset must load them too
        if not self.slow_uses_fast and not [n for n in self.obs if n not in self.fast_obs]:
            raise PolicyError("rdp: no slow observation left (obs minus fast_obs); add one or set slow_uses_fast")

    @property
    def future(self) -> tuple[str, ...]:
        return tuple(self.fast_obs) if self.fast_per_step else ()


def _timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """(B,) diffusion steps -> (B, dim) sinusoidal embedding."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]                            # B, half
    return torch.cat([args.sin(), args.cos()], dim=-1)


class _FiLMBlock(nn.Module):
    def __init__(self, width: int, cond_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.film = nn.Linear(cond_dim, 2 * width)
        self.fc1, self.fc2 = nn.Linear(width, 2 * width), nn.Linear(2 * width, width)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(cond).chunk(2, dim=-1)                # B, W each
        y = self.norm(x) * (1.0 + scale) + shift
        return x + self.fc2(F.mish(self.fc1(y)))                       # B, W


class LatentDenoiser(nn.Module):
    """Noisy latent (B, h, c), steps (B,), condition (B, C) -> predicted noise (B, h, c)."""

    def __init__(self, latent_shape: tuple[int, int], cond_dim: int, width: int, depth: int, t_dim: int = 64):
        super().__init__()
        size = latent_shape[0] * latent_shape[1]
        self.t_dim = t_dim
        self.cond = nn.Sequential(nn.Linear(t_dim + cond_dim, width), nn.Mish(), nn.Linear(width, width))
        self.inp = nn.Linear(size, width)
        self.blocks = nn.ModuleList(_FiLMBlock(width, width) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, size))

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        c = self.cond(torch.cat([_timestep_embedding(t, self.t_dim), cond], dim=-1))    # B, W
        y = self.inp(x.flatten(1))                                     # B, W
        for block in self.blocks:
            y = block(y, c)
        return self.out(y).reshape(x.shape)                            # B, h, c


@register_policy("rdp")
class ReactiveDiffusionPolicy(Policy):
    config_class = RdpConfig

    def __init__(self, config: RdpConfig, features: dict[str, FeatureSpec], normalizer: Normalizer):
        if not isinstance(config, RdpConfig):
            raise PolicyError(f"rdp needs an RdpConfig, got {type(config).__name__}")
        super().__init__(config, features, normalizer)
        act = self.action_spec
        if len(act.shape) != 1:
            raise PolicyError(f"rdp: action '{config.action}' must be a vector, got shape {act.shape}")
        bad = [n for n in config.fast_obs if len(features[n].shape) != 1]
        if bad:
            raise PolicyError(f"rdp: fast features must be vectors (force/tactile), got images or tensors: {bad}")
        self.slow_obs = [n for n in config.obs if config.slow_uses_fast or n not in config.fast_obs]
        images = {n: features[n].shape for n in self.slow_obs if features[n].kind == "image"}
        lowdim = {n: features[n].shape[0] for n in self.slow_obs if features[n].kind != "image"}
        self.obs_encoder = ObservationEncoder(images, lowdim, image_size=config.image_size,
                                              feature_dim=config.image_feature_dim, widths=config.image_widths)
        fast_dim = sum(features[n].shape[0] for n in config.fast_obs)
        self.tokenizer = AsymmetricTokenizer(act.shape[0], fast_dim, config.horizon, latent_dim=config.latent_dim,
                                             downsample=config.downsample, encoder_width=config.encoder_width,
                                             decoder_width=config.decoder_width, fast_embed=config.fast_embed)
        self.latent_shape = (self.tokenizer.latent_steps, config.latent_dim)
        self.denoiser = LatentDenoiser(self.latent_shape, config.n_obs * self.obs_encoder.out_dim,
                                       config.denoiser_width, config.denoiser_depth)
        self.register_buffer("latent_std", torch.ones(()))
        kw = dict(num_train_timesteps=config.train_timesteps, beta_schedule="squaredcos_cap_v2",
                  clip_sample=False, prediction_type=config.prediction_type)
        self.train_scheduler = DDPMScheduler(**kw)
        self.infer_scheduler = DDIMScheduler(**kw)             # configures the samplers; never stepped
        self._samplers = DdimSamplers(self.infer_scheduler)
        self._freeze_for_stage()

    # --- stages ----------------------------------------------------------------------------------
    def with_stage(self, stage: str) -> ReactiveDiffusionPolicy:
        """Switch the training stage in place (e.g. "tokenizer" -> "latent" after stage 1; call it before
        building the optimizer / DDP wrapper); saved with the config."""
        self.config = dataclasses.replace(self.config, stage=stage)
        self._freeze_for_stage()
        return self

    def _freeze_for_stage(self) -> None:
        """Parts the stage's loss does not use get requires_grad=False: the trainer's optimizer and DDP skip them."""
        stage = self.config.stage
        self.tokenizer.requires_grad_(stage != "latent")
        self.obs_encoder.requires_grad_(stage != "tokenizer")
        self.denoiser.requires_grad_(stage != "tokenizer")

    def parameter_counts(self) -> dict[str, int]:
        return {"obs_encoder": sum(p.numel() for p in self.obs_encoder.parameters()),
                "tokenizer_encoder": self.tokenizer.encoder_parameters(),
                "tokenizer_decoder": self.tokenizer.decoder_parameters(),
                "denoiser": sum(p.numel() for p in self.denoiser.parameters())}

    # --- inputs ----------------------------------------------------------------------------------
    def _require(self, batch: dict[str, torch.Tensor], names: list[str] | tuple[str, ...]) -> None:
        missing = [f"obs.{n}" for n in names if f"obs.{n}" not in batch]
        if missing:
            raise PolicyError(f"rdp: observation(s) {missing} missing; have {sorted(batch)}")

    def _condition(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Slow observations -> (B, n_obs * F) condition."""
        self._require(batch, self.slow_obs)
        nobs = {n: self.normalizer.normalize(n, batch[f"obs.{n}"].float()) for n in self.slow_obs}   # B, T, ...
        steps = {n: v.shape[1] for n, v in nobs.items()}
        if set(steps.values()) != {self.config.n_obs}:
            raise PolicyError(f"rdp: observation windows must have n_obs={self.config.n_obs} steps, got {steps}")
        return self.obs_encoder(nobs).flatten(1)                       # B, T*F

    def _fast(self, readings: dict[str, torch.Tensor]) -> torch.Tensor:
        """{name: (B, D) | (B, T, D)} raw fast readings -> (B, [T,] F) normalized and concatenated."""
        missing = [n for n in self.config.fast_obs if n not in readings]
        if missing:
            raise PolicyError(f"rdp: fast feature(s) {missing} missing; have {sorted(readings)}")
        parts = [self.normalizer.normalize(n, readings[n].float()) for n in self.config.fast_obs]
        if len({p.shape[:-1] for p in parts}) != 1:
            raise PolicyError(f"rdp: fast features disagree in batch/time shape: {[tuple(p.shape) for p in parts]}")
        return torch.cat(parts, dim=-1)

    def _training_fast(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, H, F) readings at the action times (`future.<name>`), or (B, F) the latest observed one, held."""
        if self.config.fast_per_step:
            missing = [f"future.{n}" for n in self.config.fast_obs if f"future.{n}" not in batch]
            if missing:
                raise PolicyError(f"rdp (fast_per_step): batch lacks {missing}: build the dataset with "
                                  f"future={list(self.config.future)} (policies.train.window_dataset does)")
            return self._fast({n: batch[f"future.{n}"] for n in self.config.fast_obs})
        self._require(batch, self.config.fast_obs)
        return self._fast({n: batch[f"obs.{n}"][:, -1] for n in self.config.fast_obs})     # B, F (held)

    # --- training --------------------------------------------------------------------------------
    def compute_loss(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None
                     ) -> dict[str, torch.Tensor]:
        """Losses of `config.stage`; `generator` (the trainer's, seeded) draws every noise sample and step."""
        if "action" not in batch:
            raise PolicyError("rdp.compute_loss needs batch['action'] (B, horizon, D_act)")
        actions = self.normalizer.normalize(self.config.action, batch["action"])   # B, H, D
        stage, out = self.config.stage, {}
        loss = actions.new_zeros(())
        if stage in ("tokenizer", "joint"):
            recon, mean, logvar = self.tokenizer(actions, self._training_fast(batch), generator)
            out["recon"] = F.mse_loss(recon, actions)
            out["kl"] = self.tokenizer.kl(mean, logvar)
            loss = loss + out["recon"] + self.config.kl_weight * out["kl"]
            if self.training:
                with torch.no_grad():
                    self.latent_std.lerp_(mean.std().clamp_min(1e-3), 0.05)
            target = mean.detach()                                    # stop-grad: diffusion never moves the tokenizer
        else:
            with torch.no_grad():
                target = self.tokenizer.encode(actions)[0]            # B, h, c (frozen tokenizer)
        if stage in ("latent", "joint"):
            out["diffusion"] = self._diffusion_loss(target / self.latent_std, self._condition(batch), generator)
            loss = loss + out["diffusion"]
        out["loss"] = loss
        return out

    def _diffusion_loss(self, x0: torch.Tensor, cond: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)     # B, h, c
        t = torch.randint(0, self.config.train_timesteps, (x0.shape[0],), generator=generator, device=x0.device)
        noisy = self.train_scheduler.add_noise(x0, noise, t)
        target = noise if self.config.prediction_type == "epsilon" else x0
        return F.mse_loss(self.denoiser(noisy, t, cond), target)

    # --- inference -------------------------------------------------------------------------------
    @torch.no_grad()
    def predict_latent(self, obs: dict[str, torch.Tensor], generator: torch.Generator | None = None) -> torch.Tensor:
        """Slow part: raw observations -> latent (B, h, c) by DDIM (`inference_steps`, `policies.ddim`) from noise."""
        cond = self._condition(obs)                                   # B, C
        x = torch.randn((cond.shape[0], *self.latent_shape), generator=generator, device=cond.device)
        x = self._samplers(self.config.inference_steps, cond.device).run(self.denoiser, x, cond)   # B, h, c
        return x * self.latent_std                                    # B, h, c

    @torch.no_grad()
    def decode(self, latent: torch.Tensor, fast_obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Fast part: latent (B, h, c) + raw fast readings {name: (B, D) latest | (B, T<=H, D) per chunk step}
        -> raw actions (B, H, D_act)."""
        latent = latent.to(self.latent_std.dtype)                      # latents from a message may be float64
        actions = self.tokenizer.decode(latent, self._fast(fast_obs))   # B, H, D (normalized)
        return self.normalizer.unnormalize(self.config.action, actions)

    @torch.no_grad()
    def predict_action(self, obs: dict[str, torch.Tensor], generator: torch.Generator | None = None) -> torch.Tensor:
        """Both parts, the fast decoder fed the observation's own latest fast readings -> (B, H, D_act)."""
        self._require(obs, self.config.fast_obs)
        latent = self.predict_latent(obs, generator)
        return self.decode(latent, {n: obs[f"obs.{n}"][:, -1] for n in self.config.fast_obs})
