"""Conditional 1-D UNet over action sequences (Diffusion Policy's denoiser), FiLM-conditioned.

`ConditionalUnet1D(action_dim, cond_dim)` maps a noisy action chunk (B, T, D), the diffusion step
(B,) and a global condition (B, C) (flattened observation features) to a (B, T, D) prediction
(the noise, or the clean sample). Layout, after Chi et al. 2023 ("Diffusion Policy"):

- the step is embedded sinusoidally, then by a 2-layer MLP (Mish), and concatenated with the
  global condition: cond = [step_emb, global_cond]  (B, E + C);
- an encoder of levels with channel widths `down_dims` (e.g. 256/512/1024): per level two residual
  blocks, then a stride-2 convolution (except at the last level);
- two residual blocks in the middle, then a decoder mirroring the encoder with skip connections
  (concatenated) and transposed-convolution upsampling;
- every residual block: Conv1d -> GroupNorm -> Mish, FiLM (per-channel scale and bias computed from
  cond), Conv1d -> GroupNorm -> Mish, plus a 1x1 convolution on the skip path when widths differ.

T must be divisible by 2 ** (len(down_dims) - 1).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _groups(channels: int, n_groups: int) -> int:
    g = min(n_groups, channels)
    while channels % g:
        g -= 1
    return g


class SinusoidalEmbedding(nn.Module):
    """(B,) diffusion steps -> (B, dim) sin/cos features at geometrically spaced frequencies."""

    def __init__(self, dim: int):
        super().__init__()
        if dim % 2:
            raise ValueError(f"sinusoidal embedding dim must be even, got {dim}")
        half = dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / max(half - 1, 1))
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = t.float()[:, None] * self.freqs[None, :]                    # B, dim/2
        return torch.cat([angles.sin(), angles.cos()], dim=-1)               # B, dim


class ConvNormMish(nn.Sequential):
    """(B, Cin, T) -> (B, Cout, T): same-length convolution, GroupNorm, Mish."""

    def __init__(self, cin: int, cout: int, kernel: int, n_groups: int):
        super().__init__(nn.Conv1d(cin, cout, kernel, padding=kernel // 2),
                         nn.GroupNorm(_groups(cout, n_groups), cout), nn.Mish())


class FiLMResBlock(nn.Module):
    """(B, Cin, T), cond (B, C) -> (B, Cout, T); cond sets a per-channel scale and bias after the first conv."""

    def __init__(self, cin: int, cout: int, cond_dim: int, kernel: int, n_groups: int):
        super().__init__()
        self.conv1 = ConvNormMish(cin, cout, kernel, n_groups)
        self.conv2 = ConvNormMish(cout, cout, kernel, n_groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * cout))
        self.skip = nn.Conv1d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.conv1(x)                                                    # B, Cout, T
        scale, bias = self.film(cond).unsqueeze(-1).chunk(2, dim=1)          # B, Cout, 1 each
        h = self.conv2(h * scale + bias)                                     # B, Cout, T
        return h + self.skip(x)


class ConditionalUnet1D(nn.Module):
    """(B, T, D) noisy actions, (B,) steps, (B, C) global condition -> (B, T, D) (see the module docstring)."""

    def __init__(self, action_dim: int, cond_dim: int, *, down_dims: tuple[int, ...] = (64, 128, 256),
                 kernel_size: int = 5, n_groups: int = 8, step_embed_dim: int = 128):
        super().__init__()
        if not down_dims:
            raise ValueError("down_dims must name at least one level")
        self.action_dim, self.cond_dim = action_dim, cond_dim
        self.down_dims = tuple(down_dims)
        self.step_encoder = nn.Sequential(SinusoidalEmbedding(step_embed_dim),
                                          nn.Linear(step_embed_dim, 4 * step_embed_dim), nn.Mish(),
                                          nn.Linear(4 * step_embed_dim, step_embed_dim))
        c = step_embed_dim + cond_dim

        def block(cin: int, cout: int) -> FiLMResBlock:
            return FiLMResBlock(cin, cout, c, kernel_size, n_groups)

        widths = [action_dim, *self.down_dims]
        last = len(self.down_dims) - 1
        self.down = nn.ModuleList()
        for i, (cin, cout) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            resample = nn.Conv1d(cout, cout, 3, stride=2, padding=1) if i < last else nn.Identity()
            self.down.append(nn.ModuleList([block(cin, cout), block(cout, cout), resample]))
        self.mid = nn.ModuleList([block(widths[-1], widths[-1]), block(widths[-1], widths[-1])])
        self.up = nn.ModuleList()
        for cin, cout in reversed(list(zip(widths[1:-1], widths[2:], strict=True))):
            # in: the deeper level's output (cout) + the skip of this level (cout) -> cin channels
            upsample = nn.ConvTranspose1d(cin, cin, 4, stride=2, padding=1)
            self.up.append(nn.ModuleList([block(2 * cout, cin), block(cin, cin), upsample]))
        self.head = nn.Sequential(ConvNormMish(widths[1], widths[1], kernel_size, n_groups),
                                  nn.Conv1d(widths[1], action_dim, 1))

    @property
    def time_divisor(self) -> int:
        """T must be a multiple of this."""
        return 2 ** (len(self.down_dims) - 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        if t.dim() == 0:
            t = t.expand(b)
        c = torch.cat([self.step_encoder(t.to(x.device)), cond], dim=-1)    # B, E+C
        h = x.transpose(1, 2)                                                # B, D, T
        skips = []
        for res1, res2, downsample in self.down:
            h = res2(res1(h, c), c)                                          # B, W_i, T_i
            skips.append(h)
            h = downsample(h)                                                # B, W_i, T_i/2 (not last)
        for res in self.mid:
            h = res(h, c)                                                    # B, W_last, T_last
        # the up path uses the skips of every level but the first (as in Diffusion Policy): it ends upsampled to T
        for res1, res2, upsample in self.up:
            h = torch.cat([h, skips.pop()], dim=1)                           # B, 2 W_i, T_i
            h = upsample(res2(res1(h, c), c))                                # B, W_{i-1}, 2 T_i
        return self.head(h).transpose(1, 2)                                  # B, T, D

