"""CARP stage 1: a multi-scale residual VQ tokenizer of action chunks, one token sequence per action dimension.

Each action dimension's sequence (length H) is encoded on its own by one shared 1-D conv encoder
(channel = 1 input, so the tokenizer does not care how many dimensions there are) to a latent
`f` (C channels, L = scales[-1] steps). `f` is then quantized coarse to fine, VAR-style:

    f_rest = f, f_hat = 0
    for s_k in scales:                                  # e.g. 1, 2, 3, 4
        r_k   = area_resize(f_rest, s_k)                # (N, C, s_k)
        idx_k = nearest code of each r_k column         # (N, s_k)   the scale-k tokens
        h_k   = linear_resize(codebook[idx_k], L)       # (N, C, L)
        f_hat += h_k;  f_rest -= h_k

and a 1-D conv decoder maps f_hat back to the length-H sequence. Token k of a chunk therefore only
refines what the coarser scales left over; the first scale is one token per dimension (the mean).

Codebook: ONE codebook shared by every scale (as in VAR and CARP), `codebook_size` x C, learnt by
exponential moving averages of the residual vectors assigned to each code (no gradient), with
dead-code reset: a code whose EMA usage drops below `dead_code_threshold` is re-seeded with a
random residual vector of the current batch (the tokenizer owns a seeded `torch.Generator`, no
global random state). The codebook is initialized from the first training batch. VAR's phi
refinement convs are left out: with EMA codes they would make the code targets inconsistent.
Under DDP the EMA statistics are summed over ranks.

Loss (`forward(..., update=True)`): reconstruction MSE (straight-through estimator through the
quantizer) + `commitment` * MSE(f, sg(f_hat)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from policies.base import PolicyError


def _conv_stack(cin: int, hidden: int, cout: int, layers: int) -> nn.Sequential:
    mods: list[nn.Module] = [nn.Conv1d(cin, hidden, 3, padding=1), nn.GELU()]
    for _ in range(layers - 1):
        mods += [nn.Conv1d(hidden, hidden, 3, padding=1), nn.GELU()]
    mods.append(nn.Conv1d(hidden, cout, 3, padding=1))
    return nn.Sequential(*mods)


class MultiScaleActionTokenizer(nn.Module):
    """(B, H, D) normalized actions <-> per scale k, (B, D, scales[k]) int64 tokens."""

    def __init__(self, horizon: int, scales: tuple[int, ...] = (1, 2, 3, 4), *, codebook_size: int = 512,
                 latent_dim: int = 32, hidden: int = 64, layers: int = 3, commitment: float = 0.25,
                 ema_decay: float = 0.99, dead_code_threshold: float = 0.03, seed: int = 0):
        super().__init__()
        scales = tuple(int(s) for s in scales)
        if not scales or any(s < 1 for s in scales) or any(b <= a for a, b in zip(scales, scales[1:], strict=False)):
            raise PolicyError(f"carp scales must be strictly increasing positive ints, got {scales}")
        if scales[-1] > horizon:
            raise PolicyError(f"carp: the finest scale {scales[-1]} exceeds the horizon {horizon}")
        if codebook_size < 2 or latent_dim < 1 or not 0.0 < ema_decay < 1.0:
            raise PolicyError("carp tokenizer: codebook_size >= 2, latent_dim >= 1 and 0 < ema_decay < 1 needed")
        self.horizon, self.scales, self.latent_len = int(horizon), scales, scales[-1]
        self.codebook_size, self.latent_dim = int(codebook_size), int(latent_dim)
        self.commitment, self.decay, self.dead_threshold = float(commitment), float(ema_decay), dead_code_threshold
        self.encoder = _conv_stack(1, hidden, latent_dim, layers)
        self.decoder = _conv_stack(latent_dim, hidden, 1, layers)
        self.register_buffer("codebook", torch.randn(codebook_size, latent_dim) * 0.1)     # V, C
        self.register_buffer("cluster_size", torch.ones(codebook_size))                     # V
        self.register_buffer("embed_sum", self.codebook.clone())                             # V, C
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))
        self._gen = torch.Generator().manual_seed(int(seed))

    @property
    def n_tokens(self) -> int:
        """Tokens per action dimension over all scales."""
        return sum(self.scales)

    # --- encoder / decoder ----------------------------------------------------------------------
    def encode_latent(self, actions: torch.Tensor) -> torch.Tensor:
        """(B, H, D) -> (B*D, C, L) continuous latent, one row per (sample, dimension)."""
        b, h, d = self._check(actions)
        x = actions.permute(0, 2, 1).reshape(b * d, 1, h)                  # B*D, 1, H
        f = F.interpolate(self.encoder(x), size=self.latent_len, mode="area")         # B*D, C, L
        return torch.tanh(f)          # bounded: an unbounded latent keeps growing to outrun the quantization error

    def decode_latent(self, f_hat: torch.Tensor, batch: int) -> torch.Tensor:
        """(B*D, C, L) -> (B, H, D)."""
        x = F.interpolate(f_hat, size=self.horizon, mode="linear", align_corners=False)    # B*D, C, H
        y = self.decoder(x)                                                                  # B*D, 1, H
        return y.reshape(batch, -1, self.horizon).permute(0, 2, 1)

    # --- quantization ---------------------------------------------------------------------------
    def _nearest(self, r: torch.Tensor) -> torch.Tensor:
        """(N, C, s) -> (N, s) index of the nearest code (L2)."""
        flat = r.permute(0, 2, 1).reshape(-1, self.latent_dim)                               # N*s, C
        dist = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ self.codebook.t()
                + self.codebook.pow(2).sum(1)[None])                                         # N*s, V
        return dist.argmin(1).reshape(r.shape[0], r.shape[2])

    def lookup(self, idx: torch.Tensor, k: int) -> torch.Tensor:
        """(N, s_k) tokens of scale k -> (N, C, L) their contribution to f_hat."""
        z = self.codebook[idx].permute(0, 2, 1)                                              # N, C, s_k
        return F.interpolate(z, size=self.latent_len, mode="linear", align_corners=False)

    def next_input(self, f_hat: torch.Tensor, k: int) -> torch.Tensor:
        """(N, C, L) reconstruction of scales < k -> (N, C, s_k): what the transformer sees at scale k."""
        return F.interpolate(f_hat, size=self.scales[k], mode="area")

    def quantize(self, f: torch.Tensor, update: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(N, C, L) -> f_hat (N, C, L), tokens [(N, s_k)]; `update` runs the EMA codebook step."""
        if update and not bool(self.initialized):
            self._init_codebook(f.detach())
        f_rest, f_hat = f.detach(), torch.zeros_like(f)
        tokens, residuals = [], []
        for k, s in enumerate(self.scales):
            r = F.interpolate(f_rest, size=s, mode="area")                                   # N, C, s
            idx = self._nearest(r)                                                           # N, s
            h = self.lookup(idx, k)                                                          # N, C, L
            f_hat, f_rest = f_hat + h, f_rest - h
            tokens.append(idx)
            residuals.append(r.permute(0, 2, 1).reshape(-1, self.latent_dim))
        if update:
            self._ema_update(torch.cat(residuals), torch.cat([t.reshape(-1) for t in tokens]))
        return f_hat, tokens

    # --- public API -----------------------------------------------------------------------------
    def encode(self, actions: torch.Tensor) -> list[torch.Tensor]:
        """(B, H, D) normalized actions -> per scale k, (B, D, s_k) int64 tokens."""
        b, _, d = self._check(actions)
        _, tokens = self.quantize(self.encode_latent(actions))
        return [t.reshape(b, d, s) for t, s in zip(tokens, self.scales, strict=True)]

    def tokens_to_latent(self, tokens: list[torch.Tensor]) -> torch.Tensor:
        """[(B, D, s_k)] -> f_hat (B*D, C, L)."""
        if len(tokens) != len(self.scales):
            raise PolicyError(f"carp: {len(tokens)} token scales given, the tokenizer has {len(self.scales)}")
        f_hat = 0
        for k, (t, s) in enumerate(zip(tokens, self.scales, strict=True)):
            if t.shape[-1] != s:
                raise PolicyError(f"carp: scale {k} tokens have length {t.shape[-1]}, expected {s}")
            f_hat = f_hat + self.lookup(t.reshape(-1, s), k)
        return f_hat

    def decode(self, tokens: list[torch.Tensor]) -> torch.Tensor:
        """[(B, D, s_k)] int64 tokens -> (B, H, D) normalized actions."""
        return self.decode_latent(self.tokens_to_latent(tokens), tokens[0].shape[0])

    def forward(self, actions: torch.Tensor, update: bool = False):
        """(B, H, D) -> reconstruction (B, H, D), tokens [(B, D, s_k)], losses {"recon", "commit", "usage"}."""
        b, _, d = self._check(actions)
        f = self.encode_latent(actions)                                                      # B*D, C, L
        f_hat, tokens = self.quantize(f, update=update)
        f_st = f + (f_hat - f).detach()                                  # straight-through to the encoder
        recon = self.decode_latent(f_st, b)
        losses = {"recon": F.mse_loss(recon, actions), "commit": self.commitment * F.mse_loss(f, f_hat.detach()),
                  "usage": (self.cluster_size > self.dead_threshold).float().mean()}
        return recon, [t.reshape(b, d, s) for t, s in zip(tokens, self.scales, strict=True)], losses

    # --- codebook learning ----------------------------------------------------------------------
    def _random_rows(self, x: torch.Tensor, n: int) -> torch.Tensor:
        pick = torch.randint(0, x.shape[0], (n,), generator=self._gen).to(x.device)
        return x[pick]

    @torch.no_grad()
    def _init_codebook(self, f: torch.Tensor) -> None:
        flat = f.permute(0, 2, 1).reshape(-1, self.latent_dim)                               # N*L, C
        noise = torch.randn(self.codebook_size, self.latent_dim, generator=self._gen).to(f.device)
        rows = self._random_rows(flat, self.codebook_size) + 0.01 * flat.std() * noise
        self.codebook.copy_(rows)
        self.embed_sum.zero_()        # usage starts at 0: codes the first batches do not use are re-seeded early,
        self.cluster_size.zero_()     # while the model is young, instead of all at once later
        self.initialized.fill_(True)

    @torch.no_grad()
    def _ema_update(self, vectors: torch.Tensor, idx: torch.Tensor) -> None:
        """vectors (M, C) assigned to codes idx (M,): EMA of counts and sums, then dead-code reset."""
        counts = torch.bincount(idx, minlength=self.codebook_size).to(vectors.dtype)        # V
        sums = torch.zeros_like(self.embed_sum).index_add_(0, idx, vectors)                  # V, C
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(counts)
            torch.distributed.all_reduce(sums)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + 1e-5) / (n + self.codebook_size * 1e-5) * n          # Laplace smoothing
        self.codebook.copy_(self.embed_sum / smoothed[:, None])
        dead = self.cluster_size < self.dead_threshold
        if bool(dead.any()):
            rows = self._random_rows(vectors, int(dead.sum()))
            self.codebook[dead] = rows
            self.embed_sum[dead] = rows * self.dead_threshold
            self.cluster_size[dead] = self.dead_threshold      # re-seeded again next step unless it gets used

    def _check(self, actions: torch.Tensor) -> tuple[int, int, int]:
        if actions.dim() != 3 or actions.shape[1] != self.horizon:
            raise PolicyError(f"carp tokenizer expects (B, {self.horizon}, D) actions, got {tuple(actions.shape)}")
        return tuple(actions.shape)
