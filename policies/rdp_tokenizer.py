"""Asymmetric action tokenizer of the slow-fast reactive policy (RDP, Xue et al. 2025).

Asymmetric: the encoder sees the whole action chunk and is only used in training (and to make the
latent-diffusion targets); the decoder is the fast part that runs at tens to hundreds of Hz.

- Encoder (training only): normalized actions (B, H, D) -> 1D conv stack, `log2(downsample)`
  stride-2 convolutions (GroupNorm, Mish) -> a Gaussian posterior (mean, logvar), each
  (B, h, c) with h = H / downsample latent steps of c channels. The latent is regularized by a KL
  term towards N(0, 1) (a small weight: it keeps the latent scale tame for diffusion without
  making it uninformative).
- Decoder (fast): latent (B, h, c) + fast features (B, H, F) -> actions (B, H, D).
  Each latent step is repeated over the `downsample` action steps it covers, concatenated with a
  learned per-step position embedding and with the embedded force/tactile reading of that step,
  and run through a one-layer causal GRU, then a linear head. Force conditioning therefore enters
  *per time step*: output step k depends on the fast readings of steps 0..k only, so at run time a
  decoder fed "readings so far, the latest one held for the rest of the chunk" gives for step k
  exactly what it would give with the full sequence. Feeding one reading (B, F) broadcasts it over
  the chunk (what the fast loop does with each fresh sample).

Sizes (defaults, D = 3, F = 6, H = 16): encoder ~35 k parameters, decoder ~23 k; a decode at batch 1
takes well under the 2 ms goal on CPU (see `tests/policies/test_rdp.py::benchmark_decode`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from policies.base import PolicyError


def _groups(channels: int) -> int:
    return max(1, min(8, channels // 8))


class AsymmetricTokenizer(nn.Module):
    """Action chunk <-> (B, h, c) latent; the decoder is conditioned on fast force/tactile features."""

    def __init__(self, action_dim: int, fast_dim: int, horizon: int, *, latent_dim: int = 8, downsample: int = 4,
                 encoder_width: int = 64, decoder_width: int = 64, fast_embed: int = 16):
        super().__init__()
        if downsample < 1 or downsample & (downsample - 1):
            raise PolicyError(f"tokenizer downsample must be a power of two >= 1, got {downsample}")
        if horizon % downsample:
            raise PolicyError(f"horizon {horizon} is not a multiple of the tokenizer downsample {downsample}")
        if min(action_dim, fast_dim, latent_dim, encoder_width, decoder_width, fast_embed) < 1:
            raise PolicyError("tokenizer sizes must be >= 1")
        self.action_dim, self.fast_dim, self.horizon = action_dim, fast_dim, horizon
        self.latent_dim, self.downsample = latent_dim, downsample
        self.latent_steps = horizon // downsample
        # encoder: (B, D, H) -> (B, 2c, h)
        layers: list[nn.Module] = [nn.Conv1d(action_dim, encoder_width, 3, padding=1),
                                   nn.GroupNorm(_groups(encoder_width), encoder_width), nn.Mish()]
        for _ in range(int(math.log2(downsample))):
            layers += [nn.Conv1d(encoder_width, encoder_width, 4, stride=2, padding=1),
                       nn.GroupNorm(_groups(encoder_width), encoder_width), nn.Mish()]
        layers.append(nn.Conv1d(encoder_width, 2 * latent_dim, 1))
        self.encoder = nn.Sequential(*layers)
        # decoder: small, causal over the chunk
        self.fast_proj = nn.Linear(fast_dim, fast_embed)
        self.position = nn.Parameter(torch.zeros(horizon, fast_embed))
        self.gru = nn.GRU(latent_dim + 2 * fast_embed, decoder_width, batch_first=True)
        self.init_state = nn.Linear(latent_dim * self.latent_steps, decoder_width)
        self.head = nn.Linear(decoder_width, action_dim)
        nn.init.normal_(self.position, std=0.1)

    # --- encoder (training) ----------------------------------------------------------------------
    def encode(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalized actions (B, H, D) -> posterior (mean, logvar), each (B, h, c)."""
        if actions.ndim != 3 or actions.shape[1:] != (self.horizon, self.action_dim):
            raise PolicyError(f"tokenizer.encode needs (B, {self.horizon}, {self.action_dim}), "
                              f"got {tuple(actions.shape)}")
        stats = self.encoder(actions.transpose(1, 2))                  # B, 2c, h
        mean, logvar = stats.transpose(1, 2).chunk(2, dim=-1)          # B, h, c each
        return mean, logvar.clamp(-10.0, 4.0)

    @staticmethod
    def sample(mean: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + torch.exp(0.5 * logvar) * noise                  # B, h, c

    @staticmethod
    def kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL(q || N(0, 1)), mean over every latent element."""
        return 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).mean()

    # --- decoder (fast) --------------------------------------------------------------------------
    def fast_sequence(self, fast: torch.Tensor) -> torch.Tensor:
        """(B, F) or (B, T, F) with 1 <= T <= H readings for chunk steps 0..T-1 -> (B, H, F), the last held."""
        if fast.ndim == 2:
            fast = fast.unsqueeze(1)                                   # B, 1, F
        if fast.ndim != 3 or fast.shape[-1] != self.fast_dim or not 1 <= fast.shape[1] <= self.horizon:
            raise PolicyError(f"fast features must be (B, {self.fast_dim}) or (B, T<={self.horizon}, "
                              f"{self.fast_dim}), got {tuple(fast.shape)}")
        missing = self.horizon - fast.shape[1]
        if missing:
            fast = torch.cat([fast, fast[:, -1:].expand(-1, missing, -1)], dim=1)
        return fast                                                    # B, H, F

    def decode(self, latent: torch.Tensor, fast: torch.Tensor) -> torch.Tensor:
        """Latent (B, h, c) + normalized fast features (B, F) | (B, T, F) -> normalized actions (B, H, D)."""
        if latent.ndim != 3 or latent.shape[1:] != (self.latent_steps, self.latent_dim):
            raise PolicyError(f"latent must be (B, {self.latent_steps}, {self.latent_dim}), got {tuple(latent.shape)}")
        fast = self.fast_sequence(fast)                                # B, H, F
        if fast.shape[0] != latent.shape[0]:
            raise PolicyError(f"batch sizes differ: latent {latent.shape[0]}, fast features {fast.shape[0]}")
        b = latent.shape[0]
        up = latent.repeat_interleave(self.downsample, dim=1)          # B, H, c
        pos = self.position.unsqueeze(0).expand(b, -1, -1)             # B, H, E
        x = torch.cat([up, pos, torch.tanh(self.fast_proj(fast))], dim=-1)   # B, H, c+2E
        h0 = torch.tanh(self.init_state(latent.reshape(b, -1))).unsqueeze(0)  # 1, B, W
        y, _ = self.gru(x, h0)                                         # B, H, W
        return self.head(y)                                            # B, H, D

    def forward(self, actions: torch.Tensor, fast: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruction (B, H, D) of normalized actions from a posterior sample, and (mean, logvar)."""
        mean, logvar = self.encode(actions)
        return self.decode(self.sample(mean, logvar, generator), fast), mean, logvar

    def encoder_parameters(self) -> int:
        return sum(p.numel() for p in self.encoder.parameters())

    def decoder_parameters(self) -> int:
        return sum(p.numel() for n, p in self.named_parameters() if not n.startswith("encoder."))

