"""Diffusion Policy (Chi et al. 2023): a conditional 1-D UNet denoises action chunks.

Training (`compute_loss`): observations are normalized (low-dim by the dataset statistics, images in
[0, 1]) and encoded by `ObservationEncoder` into (B, n_obs, F), flattened to the global condition
(B, n_obs*F); actions are normalized to [-1, 1] ("limits" mode), noised by diffusers'
`DDPMScheduler` (100 steps, squaredcos_cap_v2) at a random step, and the UNet predicts the noise
(`prediction_type="epsilon"`, or the clean chunk with "sample"); the loss is the MSE over the
action steps that are not padding (`action_is_pad`).

Inference (`predict_action`): deterministic DDIM (eta = 0, same noise schedule, `inference_steps`
steps) denoises Gaussian noise drawn from the caller's generator (or seed) into a (B, horizon, D_act)
chunk, unnormalized to raw units. The DDIM updates are `policies.ddim.DdimSampler`, built from a
configured diffusers `DDIMScheduler` (`ddim_scheduler`): tensor operations only, bit-identical to
diffusers' `step` on the CPU, so it is the one sampler on every device. `denoiser` is the callable
used per step: by default the UNet itself (`set_denoiser(torch.compile(policy.unet,
mode="reduce-overhead"))` swaps in a compiled one). The GPU serving path, `capture_cuda_graph`,
captures encoder + all DDIM steps + unnormalization as ONE CUDA graph for a fixed batch shape;
the initial noise is drawn outside it (from the same generator) and copied into its input buffer.

CPU defaults are a small network (down dims 64/128/256, ~5 M parameters, ~8 ms per denoiser step on
2 cores); Diffusion Policy's size is `down_dims=(256, 512, 1024), step_embed_dim=256` (~67 M in the
UNet alone, ~30-50 ms per step here).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from data.loader import Normalizer
from policies.base import FeatureSpec, Policy, PolicyConfig, PolicyError, register_policy
from policies.cuda_graph import CudaGraph
from policies.ddim import DdimSamplers
from policies.encoders import ObservationEncoder
from policies.unet1d import ConditionalUnet1D

PREDICTION_TYPES = ("epsilon", "sample")
POOLINGS = ("spatial_softmax", "avg")
Denoiser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class DiffusionConfig(PolicyConfig):
    # denoiser (ConditionalUnet1D)
    down_dims: tuple[int, ...] = (64, 128, 256)      # Diffusion Policy: (256, 512, 1024)
    kernel_size: int = 5
    n_groups: int = 8
    step_embed_dim: int = 128                        # Diffusion Policy: 256
    # noise schedule (diffusers DDPMScheduler for training, DDIMScheduler for inference)
    train_steps: int = 100
    beta_schedule: str = "squaredcos_cap_v2"
    prediction_type: str = "epsilon"
    clip_sample: bool = True                         # clamp the predicted clean chunk to [-1, 1]
    inference_steps: int = 16
    timestep_spacing: str = "trailing"               # DDIM steps include t = train_steps - 1 (pure noise)
    # image encoder (policies.encoders.ObservationEncoder)
    image_size: tuple[int, int] = (84, 84)
    crop: float = 0.9
    encoder_widths: tuple[int, ...] = (32, 64, 128, 256)
    encoder_blocks: int = 2
    feature_dim: int = 64
    pooling: str = "spatial_softmax"

    def __post_init__(self):
        super().__post_init__()
        divisor = 2 ** (len(self.down_dims) - 1)
        if not self.down_dims or min(self.down_dims) < 1:
            raise PolicyError(f"down_dims must be positive widths, got {self.down_dims}")
        if self.horizon % divisor:
            raise PolicyError(f"horizon {self.horizon} must be a multiple of {divisor} "
                              f"(the UNet halves it {len(self.down_dims) - 1} times)")
        if self.prediction_type not in PREDICTION_TYPES:
            raise PolicyError(f"prediction_type must be one of {PREDICTION_TYPES}, got {self.prediction_type!r}")
        if self.pooling not in POOLINGS:
            raise PolicyError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if not 1 <= self.inference_steps <= self.train_steps:
            raise PolicyError(f"inference_steps must be in [1, train_steps={self.train_steps}], "
                              f"got {self.inference_steps}")
        if self.step_embed_dim % 2 or self.kernel_size % 2 == 0:
            raise PolicyError("step_embed_dim must be even and kernel_size odd")
        if len(self.image_size) != 2 or not 0 < self.crop <= 1:
            raise PolicyError(f"image_size must be (H, W) and crop in (0, 1], got {self.image_size}, {self.crop}")


@register_policy("dp")
class DiffusionPolicy(Policy):
    config_class = DiffusionConfig
    config: DiffusionConfig

    def __init__(self, config: DiffusionConfig, features: dict[str, FeatureSpec], normalizer: Normalizer):
        if not isinstance(config, DiffusionConfig):
            raise PolicyError(f"dp needs a DiffusionConfig, got {type(config).__name__}")
        super().__init__(config, features, normalizer)
        self._check_normalizer()
        self.encoder = ObservationEncoder(
            {n: tuple(features[n].shape) for n in self.image_features},
            {n: int(features[n].shape[-1]) for n in self.lowdim_features},
            image_size=tuple(config.image_size), crop=config.crop, feature_dim=config.feature_dim,
            widths=tuple(config.encoder_widths), blocks=config.encoder_blocks, pooling=config.pooling)
        self.action_dim = int(self.action_spec.shape[-1])
        self.unet = ConditionalUnet1D(self.action_dim, config.n_obs * self.encoder.out_dim,
                                      down_dims=tuple(config.down_dims), kernel_size=config.kernel_size,
                                      n_groups=config.n_groups, step_embed_dim=config.step_embed_dim)
        self.train_scheduler = self._scheduler("ddpm")
        self.ddim_scheduler = self._scheduler("ddim")       # configures `ddim`; never stepped
        self.ddim = DdimSamplers(self.ddim_scheduler)       # ddim(steps, device) -> the tensor-only sampler

    def _check_normalizer(self) -> None:
        names = [*self.config.obs, self.config.action]
        missing = [n for n in names if n not in self.normalizer.modes]
        if missing:
            raise PolicyError(f"dp: the normalizer has no statistics for {missing}")
        mode = self.normalizer.modes[self.config.action]
        if self.config.clip_sample and mode != "limits":
            raise PolicyError(f"dp: actions must be normalized in 'limits' mode (to [-1, 1]) when clip_sample "
                              f"is on; the normalizer uses {mode!r} for '{self.config.action}'")

    def _scheduler(self, kind: str):
        from diffusers import DDIMScheduler, DDPMScheduler

        c = self.config
        common = {"num_train_timesteps": c.train_steps, "beta_schedule": c.beta_schedule,
                  "prediction_type": c.prediction_type, "clip_sample": c.clip_sample}
        if kind == "ddpm":
            return DDPMScheduler(**common, variance_type="fixed_small")
        return DDIMScheduler(**common, set_alpha_to_one=True, steps_offset=0, timestep_spacing=c.timestep_spacing)

    # --- shared -----------------------------------------------------------------------------------
    def encode(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Raw observation windows -> (B, n_obs*F) global condition."""
        self._check_obs(batch)
        features = self.encoder(self.normalized_obs(batch))                   # B, n_obs, F
        return features.flatten(1)                                            # B, n_obs*F

    def _check_obs(self, batch: dict[str, torch.Tensor]) -> None:
        for name in self.config.obs:
            key = f"obs.{name}"
            if key not in batch:
                raise PolicyError(f"dp: observation '{key}' missing; have {sorted(batch)}")
            x, spec = batch[key], self.features[name]
            if x.dim() != 2 + len(spec.shape) or x.shape[1] != self.config.n_obs:
                raise PolicyError(f"dp: '{key}' must be (B, n_obs={self.config.n_obs}, *{spec.shape}), "
                                  f"got {tuple(x.shape)}")
            if spec.kind != "image" and tuple(x.shape[2:]) != tuple(spec.shape):
                raise PolicyError(f"dp: '{key}' per-step shape {tuple(x.shape[2:])} is not {spec.shape}")

    # --- training ---------------------------------------------------------------------------------
    def compute_loss(self, batch: dict[str, torch.Tensor], *,
                     generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """{"loss": masked MSE of the UNet's prediction}; noise and steps drawn from `generator`."""
        if "action" not in batch or "action_is_pad" not in batch:
            raise PolicyError("dp: a training batch needs 'action' and 'action_is_pad'")
        cond = self.encode(batch)                                                     # B, C
        actions = self.normalizer.normalize(self.config.action, batch["action"])    # B, H, D in [-1, 1]
        b, h, d = actions.shape
        if (h, d) != (self.config.horizon, self.action_dim):
            raise PolicyError(f"dp: 'action' must be (B, {self.config.horizon}, {self.action_dim}), "
                              f"got {tuple(actions.shape)}")
        noise = torch.randn(actions.shape, generator=generator, device=actions.device, dtype=actions.dtype)
        steps = torch.randint(0, self.config.train_steps, (b,), generator=generator, device=actions.device)
        noisy = self.train_scheduler.add_noise(actions, noise, steps)                  # B, H, D
        pred = self.unet(noisy, steps, cond)                                          # B, H, D
        target = noise if self.config.prediction_type == "epsilon" else actions
        keep = (~batch["action_is_pad"].to(actions.device)).to(actions.dtype)[..., None]   # B, H, 1
        err = (pred - target) ** 2 * keep                                             # B, H, D
        loss = err.sum() / (keep.sum() * d).clamp_min(1.0)
        return {"loss": loss}

    # --- inference --------------------------------------------------------------------------------
    @torch.no_grad()
    def predict_action(self, obs: dict[str, torch.Tensor], *, generator: torch.Generator | None = None,
                       seed: int | None = None, inference_steps: int | None = None) -> torch.Tensor:
        """(B, horizon, D_act) raw-unit actions by DDIM from noise (`generator`, else `seed`, else random).

        With a captured CUDA graph (`capture_cuda_graph`) whose batch shape, device and step count
        match, the noise is drawn here as on the eager path and the graph replays the rest; other
        calls run eagerly (with a warning: see `capture_cuda_graph`)."""
        steps = self._steps(inference_steps)
        graph = self._graph_for(obs, steps)
        if graph is not None:
            buffer = graph.inputs["noise"]                                            # B, H, D
            noise = self.initial_noise(buffer.shape[0], buffer.device, generator=generator, seed=seed)
            return graph({**{k: obs[k] for k in self._obs_keys}, "noise": noise}).clone()
        cond = self.encode(obs)                                                       # B, C
        x = self.initial_noise(cond.shape[0], cond.device, generator=generator, seed=seed)
        x = self.sample(x, cond, steps)                                               # B, H, D
        return self.normalizer.unnormalize(self.config.action, x)

    def initial_noise(self, batch_size: int, device: torch.device, *, generator: torch.Generator | None = None,
                      seed: int | None = None) -> torch.Tensor:
        """(B, horizon, D_act) standard normal noise from `generator`, or one seeded with `seed` (else fresh)."""
        if generator is None:
            generator = torch.Generator(device=device)
            if seed is None:
                generator.seed()
            else:
                generator.manual_seed(int(seed))
        shape = (batch_size, self.config.horizon, self.action_dim)
        return torch.randn(shape, generator=generator, device=device)

    def sample(self, x: torch.Tensor, cond: torch.Tensor, inference_steps: int | None = None) -> torch.Tensor:
        """Denoise (B, H, D) noise `x` given the (B, C) condition with DDIM -> (B, H, D) normalized actions."""
        return self.ddim(self._steps(inference_steps), x.device).run(self.denoiser, x, cond)

    def _steps(self, inference_steps: int | None) -> int:
        steps = self.config.inference_steps if inference_steps is None else int(inference_steps)
        if not 1 <= steps <= self.config.train_steps:
            raise PolicyError(f"dp: inference_steps must be in [1, {self.config.train_steps}], got {steps}")
        return steps

    @property
    def _obs_keys(self) -> list[str]:
        return [f"obs.{n}" for n in self.config.obs]

    # --- GPU serving ------------------------------------------------------------------------------
    def capture_cuda_graph(self, obs: dict[str, torch.Tensor], *, inference_steps: int | None = None,
                           compile_unet: bool = False) -> None:
        """Capture encoder + DDIM loop (`inference_steps`, default the config's) + unnormalization as
        one CUDA graph for the batch shape of `obs` (a CUDA observation batch; the policy in eval mode).
        `compile_unet`: capture the UNet as `torch.compile` (inductor, without CUDA graphs of its own)
        builds it: fused kernels, fewer per step; compiling costs tens of seconds once, at capture.

        The eager UNet is captured: a denoiser set with `set_denoiser` is dropped, and `set_denoiser`
        (None included) drops the graph. Its inputs are static buffers for the `obs.*` tensors and the
        initial noise; `predict_action` draws the noise from its `generator`/`seed` outside the graph
        (as the eager path does, so a seeded call gives the same chunk either way) and copies both in.
        A call whose observation shapes, dtypes or device or whose step count differ runs eagerly with
        a warning (the graph stays for matching calls); recapture to serve another shape."""
        if self.training:
            raise PolicyError("dp: capture_cuda_graph needs eval mode (training crops at random)")
        steps = self._steps(inference_steps)
        self._check_obs(obs)
        inputs = {k: obs[k] for k in self._obs_keys}
        device = next(iter(inputs.values())).device
        if device.type != "cuda" or any(v.device != device for v in inputs.values()):
            raise PolicyError(f"dp: capture_cuda_graph needs the observations on one CUDA device, got "
                              f"{sorted({str(v.device) for v in inputs.values()})}")
        self.set_denoiser(None)
        noise = self.initial_noise(next(iter(inputs.values())).shape[0], device, seed=0)
        unet = torch.compile(self.unet, dynamic=False) if compile_unet else self.unet
        self.__dict__["_graph"] = (CudaGraph(self._chunk_fn(steps, device, unet), {**inputs, "noise": noise}), steps)

    def _chunk_fn(self, steps: int, device: torch.device,
                  unet: Denoiser | None = None) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
        """What `capture_cuda_graph` captures: {obs.*: raw windows, "noise": (B, H, D)} -> (B, H, D) raw
        actions, with `unet` (default the eager UNet); tensor work on `device` only (the DDIM tables are
        made here; the normalizer copies its tables to `device` once, in `CudaGraph`'s warm-up)."""
        ddim, norm = self.ddim(steps, device), self.normalizer     # its tables reach `device` in the warm-up
        unet = self.unet if unet is None else unet

        def chunk(static: dict[str, torch.Tensor]) -> torch.Tensor:
            x = ddim.run(unet, static["noise"], self.encode(static))                 # B, H, D
            return norm.unnormalize(self.config.action, x)                           # B, H, D raw units
        return chunk

    def _graph_for(self, obs: dict[str, torch.Tensor], steps: int) -> CudaGraph | None:
        captured = self.__dict__.get("_graph")
        if captured is None or any(k not in obs for k in self._obs_keys):
            return None                     # missing observations: the eager path reports them
        graph, graph_steps = captured
        inputs = {k: obs[k] for k in self._obs_keys}
        problem = graph.mismatch({**inputs, "noise": graph.inputs["noise"]})
        if problem is None and steps != graph_steps:
            problem = f"captured for {graph_steps} DDIM steps, asked for {steps}"
        if problem is not None:
            # stacklevel 4: predict_action's caller (predict_action runs under no_grad's wrapper)
            warnings.warn(f"dp: running eagerly, not from the captured CUDA graph: {problem}", stacklevel=4)
            return None
        return graph

    def set_denoiser(self, fn: Denoiser | None) -> None:
        """Use `fn(x, t, cond)` as the per-step denoiser (None: the eager UNet) and drop a captured graph.
        Not saved, not a submodule."""
        self.__dict__["_denoiser_fn"] = fn
        self.__dict__.pop("_graph", None)

    @property
    def denoiser(self) -> Denoiser:
        fn = self.__dict__.get("_denoiser_fn")
        return self.unet if fn is None else fn
