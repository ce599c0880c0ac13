"""Deterministic DDIM (eta = 0) as tensor operations only, so a whole sampling loop can be captured.

`DdimSampler.from_scheduler(scheduler, steps, device)` reads a configured diffusers `DDIMScheduler`
(its `alphas_cumprod`, the `timesteps` that `set_timesteps(steps)` gives, `final_alpha_cumprod`,
`prediction_type`, `clip_sample` / `clip_sample_range`, `num_train_timesteps`) and precomputes the
coefficients of each of diffusers' `DDIMScheduler.step(..., eta=0)` updates as 0-dim tensors on
`device`. `step(i, model_output, x)` is then that update with the same operations in the same order:
no `.item()`, no branching on tensor values, no host scalars made per step, so it can run inside a
CUDA graph; on the CPU it reproduces diffusers' result bit for bit (tests/policies/test_ddim.py). On
CUDA it can differ in the last bit: diffusers divides by a CPU scalar there (a multiply by its
reciprocal), this divides by a device scalar.

As in diffusers, the step before timestep t is t - num_train_timesteps // steps (not always the next
entry of `timesteps`: with "trailing" or "linspace" spacing they differ when `steps` does not divide
`num_train_timesteps`), and its alpha_cumprod is `final_alpha_cumprod` once that index is below 0.
Every setting that only shapes `alphas_cumprod` or `timesteps` (beta schedule, trained betas,
zero-SNR rescaling, timestep spacing, steps offset, set_alpha_to_one) is read from the scheduler.
Not supported (ValueError): thresholding (a per-sample quantile) and stochastic DDIM (eta > 0).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
StepDenoiser = Callable[..., torch.Tensor]          # (x (B, ...), t (B,), *condition) -> (B, ...)


class DdimSampler:
    """Deterministic DDIM for a fixed step count on one device (see the module docstring)."""

    def __init__(self, timesteps: torch.Tensor, alpha: torch.Tensor, alpha_prev: torch.Tensor, *,
                 prediction_type: str = "epsilon", clip_range: float | None = None):
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
        if not timesteps.dim() == alpha.dim() == alpha_prev.dim() == 1 or \
                not len(timesteps) == len(alpha) == len(alpha_prev) >= 1:
            raise ValueError("timesteps, alpha and alpha_prev must be 1-D with one entry per step")
        self.prediction_type, self.clip_range = prediction_type, clip_range
        self.timesteps = timesteps.to(torch.long)                               # S, descending
        alpha, alpha_prev = alpha.to(torch.float32), alpha_prev.to(torch.float32)
        # the same float32 operations as diffusers' step (its std_dev_t is 0 at eta = 0)
        self.coeffs = torch.stack([alpha ** 0.5, (1 - alpha) ** 0.5,
                                   alpha_prev ** 0.5, (1 - alpha_prev) ** 0.5], dim=1)   # S, 4
        self._split()

    @classmethod
    def from_scheduler(cls, scheduler, steps: int, device: torch.device | str | None = None) -> DdimSampler:
        """The `steps`-step sampler of a diffusers `DDIMScheduler` (left unchanged), on `device`."""
        cfg = scheduler.config
        if getattr(cfg, "thresholding", False):
            raise ValueError("DdimSampler does not support thresholding (dynamic, per-sample)")
        fresh = type(scheduler).from_config(cfg)          # set_timesteps mutates; keep the caller's as is
        fresh.set_timesteps(int(steps))
        ac = fresh.alphas_cumprod.detach().cpu()                                # train_steps
        t = fresh.timesteps.detach().cpu().to(torch.long)                       # S
        prev = t - cfg.num_train_timesteps // int(steps)                        # S
        final = torch.as_tensor(fresh.final_alpha_cumprod, dtype=ac.dtype).cpu()
        alpha_prev = torch.where(prev >= 0, ac[prev.clamp_min(0)], final)      # S
        clip = float(cfg.clip_sample_range) if cfg.clip_sample else None
        return cls(t, ac[t], alpha_prev, prediction_type=cfg.prediction_type, clip_range=clip).to(device)

    def _split(self) -> None:
        # per-step 0-dim tensors made once: indexing a Python tuple in the loop creates nothing
        self._t = self.timesteps.unbind()
        self._c = [tuple(row.unbind()) for row in self.coeffs]

    def to(self, device: torch.device | str | None) -> DdimSampler:
        """Move the tables to `device` (in place; None: stay). Returns self."""
        if device is not None:
            self.timesteps, self.coeffs = self.timesteps.to(device), self.coeffs.to(device)
            self._split()
        return self

    @property
    def steps(self) -> int:
        return len(self._t)

    @property
    def device(self) -> torch.device:
        return self.timesteps.device

    def timestep(self, i: int, batch_size: int) -> torch.Tensor:
        """(B,) long: the denoiser's diffusion step at iteration i (an expanded view, nothing allocated)."""
        return self._t[i].expand(batch_size)

    def step(self, i: int, model_output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """x at iteration i and the denoiser's output there -> x at the next step (same shape as x)."""
        sqrt_a, sqrt_b, sqrt_a_prev, sqrt_b_prev = self._c[i]
        if self.prediction_type == "epsilon":
            x0 = (x - sqrt_b * model_output) / sqrt_a
            eps = model_output
        elif self.prediction_type == "sample":
            x0 = model_output
            eps = (x - sqrt_a * x0) / sqrt_b
        else:                                                                   # v_prediction
            x0 = sqrt_a * x - sqrt_b * model_output
            eps = sqrt_a * model_output + sqrt_b * x
        if self.clip_range is not None:
            x0 = x0.clamp(-self.clip_range, self.clip_range)
        return sqrt_a_prev * x0 + sqrt_b_prev * eps

    def run(self, denoiser: StepDenoiser, x: torch.Tensor, *condition: torch.Tensor) -> torch.Tensor:
        """Denoise noise x (B, ...) in `steps` steps: x <- step(i, denoiser(x, t_i, *condition), x)."""
        b = x.shape[0]
        for i in range(self.steps):
            x = self.step(i, denoiser(x, self.timestep(i, b), *condition), x)
        return x


class DdimSamplers:
    """The `DdimSampler`s of one diffusers `DDIMScheduler`: `samplers(steps, device)`, each built on
    first use and kept (a policy samples with a few step counts on one or two devices)."""

    def __init__(self, scheduler):
        self.scheduler = scheduler
        self._built: dict[tuple[int, torch.device], DdimSampler] = {}

    def __call__(self, steps: int, device: torch.device | str) -> DdimSampler:
        key = (int(steps), torch.device(device))
        if key not in self._built:
            self._built[key] = DdimSampler.from_scheduler(self.scheduler, *key)
        return self._built[key]
