"""The tensor-only DDIM sampler against diffusers' `DDIMScheduler.step` loop (eta = 0), on the CPU."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler
from torch.utils._python_dispatch import TorchDispatchMode

from policies.ddim import DdimSampler, DdimSamplers

STEPS = (16, 8, 4, 1)


def _scheduler(**kw) -> DDIMScheduler:
    base = {"num_train_timesteps": 100, "beta_schedule": "squaredcos_cap_v2", "prediction_type": "epsilon",
            "clip_sample": True, "set_alpha_to_one": True, "steps_offset": 0, "timestep_spacing": "trailing"}
    return DDIMScheduler(**{**base, **kw})


def _denoiser(seed: int = 0):
    """A cheap nonlinear stand-in for the UNet: (B, H, D), (B,), (B, D) -> (B, H, D), large enough to clip."""
    w = torch.randn(2, 2, generator=torch.Generator().manual_seed(seed))

    def fn(x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return 2.0 * torch.tanh(x @ w + cond[:, None, :]) + t.float()[:, None, None] / 100
    return fn


def _diffusers_loop(scheduler: DDIMScheduler, steps: int, denoiser, x: torch.Tensor, cond: torch.Tensor):
    scheduler.set_timesteps(steps)
    for t in scheduler.timesteps:
        t_batch = torch.full((x.shape[0],), int(t), dtype=torch.long)
        x = scheduler.step(denoiser(x, t_batch, cond), t, x, eta=0.0).prev_sample
    return x


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
@pytest.mark.parametrize("clip_sample", [True, False])
@pytest.mark.parametrize("spacing", ["trailing", "leading", "linspace"])
def test_matches_diffusers_bit_for_bit(prediction_type, clip_sample, spacing):
    g = torch.Generator().manual_seed(1)
    x0, cond = torch.randn(3, 16, 2, generator=g), torch.randn(3, 2, generator=g)
    denoiser = _denoiser()
    for beta_schedule in ("squaredcos_cap_v2", "linear"):
        scheduler = _scheduler(prediction_type=prediction_type, clip_sample=clip_sample,
                               timestep_spacing=spacing, beta_schedule=beta_schedule)
        for steps in (*STEPS, 3, 100):                  # 3: steps that do not divide train_steps
            expected = _diffusers_loop(scheduler, steps, denoiser, x0, cond)
            got = DdimSampler.from_scheduler(scheduler, steps).run(denoiser, x0, cond)
            assert torch.equal(got, expected), (beta_schedule, steps, float((got - expected).abs().max()))


def test_other_scheduler_settings_are_read():
    g = torch.Generator().manual_seed(2)
    x0, cond = torch.randn(2, 8, 2, generator=g), torch.randn(2, 2, generator=g)
    for kw in ({"set_alpha_to_one": False}, {"clip_sample_range": 0.5}, {"rescale_betas_zero_snr": True,
               "prediction_type": "v_prediction"}, {"timestep_spacing": "leading", "steps_offset": 1}):
        scheduler = _scheduler(**kw)
        expected = _diffusers_loop(scheduler, 8, _denoiser(), x0, cond)
        assert torch.equal(DdimSampler.from_scheduler(scheduler, 8).run(_denoiser(), x0, cond), expected), kw


def test_timesteps_and_scheduler_left_alone():
    scheduler = _scheduler()
    scheduler.set_timesteps(5)
    sampler = DdimSampler.from_scheduler(scheduler, 16)
    assert len(scheduler.timesteps) == 5                     # the caller's scheduler is not re-stepped
    scheduler.set_timesteps(16)
    assert torch.equal(sampler.timesteps, scheduler.timesteps) and sampler.steps == 16
    t = sampler.timestep(0, 4)
    assert t.shape == (4,) and t.dtype == torch.long and (t == 99).all()
    with pytest.raises(ValueError, match="thresholding"):
        DdimSampler.from_scheduler(_scheduler(thresholding=True), 4)
    with pytest.raises(ValueError, match="prediction_type"):
        DdimSampler(torch.tensor([9]), torch.tensor([0.5]), torch.tensor([1.0]), prediction_type="flow")


def test_samplers_are_built_once_per_step_count_and_device():
    samplers = DdimSamplers(_scheduler())
    eight = samplers(8, "cpu")
    assert samplers(8, torch.device("cpu")) is eight and samplers(4, "cpu") is not eight
    assert torch.equal(eight.timesteps, DdimSampler.from_scheduler(_scheduler(), 8).timesteps)
    assert eight.steps == 8 and samplers(4, "cpu").steps == 4


class _Ops(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(func.__name__.split(".")[0])
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
def test_a_step_is_elementwise_tensor_ops_only(prediction_type):
    """What makes it capturable: no .item(), no tensors made from host values, no copies per step."""
    sampler = DdimSampler.from_scheduler(_scheduler(prediction_type=prediction_type), 16)
    x, out = torch.randn(2, 16, 2), torch.randn(2, 16, 2)
    with _Ops() as ops:
        for i in range(sampler.steps):
            x = sampler.step(i, out, x)
            sampler.timestep(i, 2)
    assert "mul" in ops.names and set(ops.names) <= {"mul", "sub", "div", "add", "clamp", "expand"}, set(ops.names)
