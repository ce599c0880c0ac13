"""CARP-style coarse-to-fine autoregressive policy (Gong et al., "CARP: Visuomotor Policy Learning via
Coarse-to-Fine Autoregressive Prediction").

Stage 1, `policies.carp_tokenizer.MultiScaleActionTokenizer`: each action dimension's chunk becomes
tokens at scales s_1 < ... < s_K (default 1, 2, 3, 4 for a 16-step horizon), one shared codebook.
Stage 2, a GPT-style transformer predicts scale k's D*s_k tokens at once (VAR's next-scale
prediction) from
    prefix: one token per observation step (ObservationEncoder features -> d_model),
    scale-k inputs: a start token for k = 1, else the tokenizer reconstruction of scales < k resized
                    to s_k steps (per action dimension), + level, dimension and position embeddings,
under a block-causal mask: the prefix sees itself; scale k sees the prefix, every coarser scale and
itself. Inference runs K transformer forwards with a KV cache (the prefix goes with scale 1), then
one tokenizer decode: its cost is the number of scales, not denoising steps.

Training through the one shared trainer (`compute_loss` only), `stage` chooses:
    "sequential" (default): the first `tokenizer_steps` training calls of `compute_loss` fit the
        tokenizer (reconstruction + commitment, EMA codebook); later calls freeze it and train the
        observation encoder + transformer with cross-entropy on its tokens. The call count is a
        saved buffer, so resuming keeps the stage. Count it in optimizer micro-steps.
    "joint": both losses every call; the transformer's targets and inputs come from the current
        tokenizer with a stop-gradient (they move while the codebook learns).
    "tokenizer" / "transformer": one stage only (e.g. fine-tune the transformer of a checkpoint).
The reported "loss" is always recon + commit + cross-entropy (the part of the stage not trained is
computed without gradient), and validation (eval mode) computes the same sum without codebook
updates, so loss curves and the trainer's `best` checkpoint compare like with like across stages.
In the transformer stage the tokenizer's parameters are set to requires_grad=False (so the trainer's EMA
copy takes them exactly); under DDP they stay trainable and every parameter a stage does not use gets
a zero-weight loss term instead, so every rank reduces the same set.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from policies.base import FeatureSpec, Policy, PolicyConfig, PolicyError, register_policy
from policies.carp_tokenizer import MultiScaleActionTokenizer
from policies.encoders import ObservationEncoder

STAGES = ("sequential", "joint", "tokenizer", "transformer")


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


@dataclass(frozen=True)
class CarpConfig(PolicyConfig):
    scales: tuple[int, ...] = (1, 2, 3, 4)      # tokens per action dimension, coarse to fine
    codebook_size: int = 512                    # one codebook shared by every scale
    latent_dim: int = 32                        # tokenizer latent channels C
    tokenizer_hidden: int = 64
    commitment: float = 0.25
    ema_decay: float = 0.99
    dead_code_threshold: float = 0.03           # EMA uses per step below which a code is re-seeded
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    dropout: float = 0.1
    label_smoothing: float = 0.0
    stage: str = "sequential"                   # see the module docstring
    tokenizer_steps: int = 1000                 # "sequential": compute_loss calls spent on the tokenizer
    temperature: float = 0.0                    # 0: greedy decoding
    top_k: int = 0                              # 0: sample from every code
    image_size: tuple[int, int] = (84, 84)
    crop: float = 0.9
    image_feature_dim: int = 64
    image_widths: tuple[int, ...] = (32, 64, 128, 256)
    image_blocks: int = 2
    pooling: str = "spatial_softmax"
    seed: int = 0                               # tokenizer codebook init / dead-code reset generator
    relative_to: str = ""                       # a low-dim obs whose first D values are the action's own
                                                # coordinates: tokenize the chunk minus their newest value

    def __post_init__(self):
        super().__post_init__()
        if self.stage not in STAGES:
            raise PolicyError(f"carp: stage must be one of {', '.join(STAGES)}, got {self.stage!r}")
        if self.d_model % self.n_heads:
            raise PolicyError(f"carp: d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if self.temperature < 0 or self.top_k < 0 or self.tokenizer_steps < 0:
            raise PolicyError("carp: temperature, top_k and tokenizer_steps must be >= 0")


class _Block(nn.Module):
    """Pre-norm transformer block whose attention can append to a KV cache."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, cache: list | None) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if cache is not None:                                           # q, k, v: B, heads, t, dh
            if cache:
                k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
            cache[:] = [k, v]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.ln2(x))


class CoarseToFineTransformer(nn.Module):
    """Next-scale token predictor over [prefix (n_prefix) | scale 1 (D*s_1) | ... | scale K (D*s_K)]."""

    def __init__(self, cond_dim: int, n_prefix: int, action_dim: int, scales: tuple[int, ...], latent_dim: int,
                 vocab: int, d: int, layers: int, heads: int, dropout: float):
        super().__init__()
        self.n_prefix, self.action_dim, self.scales = n_prefix, action_dim, scales
        self.cond_proj = nn.Linear(cond_dim, d)
        self.prefix_pos = nn.Parameter(torch.randn(n_prefix, d) * 0.02)
        self.start = nn.Parameter(torch.randn(d) * 0.02)
        self.token_in = nn.Linear(latent_dim, d)
        self.level_emb = nn.Parameter(torch.randn(len(scales), d) * 0.02)
        self.dim_emb = nn.Parameter(torch.randn(action_dim, d) * 0.02)
        self.pos_emb = nn.Parameter(torch.randn(sum(scales), d) * 0.02)
        self.blocks = nn.ModuleList(_Block(d, heads, dropout) for _ in range(layers))
        self.ln_f, self.head = nn.LayerNorm(d), nn.Linear(d, vocab)
        level = torch.cat([torch.zeros(n_prefix, dtype=torch.long)]
                          + [torch.full((action_dim * s,), k + 1) for k, s in enumerate(scales)])
        self.register_buffer("mask", level[None, :] <= level[:, None], persistent=False)   # T, T block-causal

    @property
    def d(self) -> int:
        return self.start.shape[0]

    def scale_embedding(self, k: int) -> torch.Tensor:
        """(D*s_k, d) level + dimension + position embedding of scale k's tokens (dimension-major)."""
        s, off = self.scales[k], sum(self.scales[:k])
        emb = self.level_emb[k][None, None] + self.dim_emb[:, None] + self.pos_emb[None, off:off + s]   # D, s, d
        return emb.reshape(-1, self.d)

    def prefix(self, cond: torch.Tensor) -> torch.Tensor:
        """(B, n_prefix, F) observation features -> (B, n_prefix, d)."""
        return self.cond_proj(cond) + self.prefix_pos

    def scale_input(self, k: int, inp: torch.Tensor | None, batch: int) -> torch.Tensor:
        """Scale k's input tokens: inp (B, D, C, s_k) coarser reconstruction (None for k = 0) -> (B, D*s_k, d)."""
        if k == 0:
            x = self.start.expand(batch, self.action_dim * self.scales[0], -1)
        else:
            x = self.token_in(inp.permute(0, 1, 3, 2)).reshape(batch, -1, self.d)        # B, D*s_k, d
        return x + self.scale_embedding(k)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, caches: list | None = None) -> torch.Tensor:
        """(B, t, d) tokens -> (B, t, vocab) logits; `caches` (one list per block) holds past keys/values."""
        for i, block in enumerate(self.blocks):
            x = block(x, mask, None if caches is None else caches[i])
        return self.head(self.ln_f(x))


@register_policy("carp")
class CarpPolicy(Policy):
    config_class = CarpConfig

    def __init__(self, config: CarpConfig, features: dict[str, FeatureSpec], normalizer):
        super().__init__(config, features, normalizer)
        if len(self.action_spec.shape) != 1:
            raise PolicyError(f"carp: action '{config.action}' must be a vector, got shape {self.action_spec.shape}")
        self.action_dim = int(self.action_spec.shape[0])
        self.tokenizer = MultiScaleActionTokenizer(
            config.horizon, config.scales, codebook_size=config.codebook_size, latent_dim=config.latent_dim,
            hidden=config.tokenizer_hidden, commitment=config.commitment, ema_decay=config.ema_decay,
            dead_code_threshold=config.dead_code_threshold, seed=config.seed)
        self.obs_encoder = ObservationEncoder(
            {n: tuple(features[n].shape) for n in self.image_features},
            {n: int(features[n].shape[0]) for n in self.lowdim_features},
            image_size=config.image_size, crop=config.crop, feature_dim=config.image_feature_dim,
            widths=config.image_widths, blocks=config.image_blocks, pooling=config.pooling)
        self.transformer = CoarseToFineTransformer(
            self.obs_encoder.out_dim, config.n_obs, self.action_dim, self.tokenizer.scales, config.latent_dim,
            config.codebook_size, config.d_model, config.n_layers, config.n_heads, config.dropout)
        self.register_buffer("train_calls", torch.zeros((), dtype=torch.long))
        rel = config.relative_to
        if rel and (rel not in config.obs or rel not in self.lowdim_features
                    or int(features[rel].shape[0]) < self.action_dim):
            raise PolicyError(f"carp: relative_to '{rel}' must be a low-dim observation in obs with at least "
                              f"{self.action_dim} values (the action's coordinates first)")

    # --- training -------------------------------------------------------------------------------
    def current_stage(self) -> str:
        """"tokenizer", "transformer" or "joint": what the next training `compute_loss` call trains."""
        c = self.config
        if c.stage == "sequential":
            return "tokenizer" if int(self.train_calls) < c.tokenizer_steps else "transformer"
        return c.stage

    def compute_loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """{"loss": recon + commit + cross-entropy, ...}; only the current stage's part carries gradients, the
        other is a constant, so the value means the same in every stage (the trainer's `best` compares it)."""
        stage = self.current_stage() if self.training else "joint"
        if self.training:
            self.train_calls += 1
        if stage == "transformer" and self.training and not _distributed():
            self.tokenizer.requires_grad_(False)    # frozen: the trainer's EMA copy then takes it exactly
        grad = torch.is_grad_enabled()
        actions = self.normalizer.normalize(self.config.action, batch["action"]) - self._origin(batch)  # B, H, D
        with torch.set_grad_enabled(grad and stage in ("tokenizer", "joint")):
            _, _, tok = self.tokenizer(actions, update=self.training and stage != "transformer")
        with torch.set_grad_enabled(grad and stage in ("transformer", "joint")):
            ce, acc = self._transformer_loss(batch, actions)
        loss = tok["recon"] + tok["commit"] + ce
        if self.training and _distributed():
            loss = loss + 0.0 * sum(p.sum() for p in self.parameters() if p.requires_grad)   # DDP: all reduced
        out = {f"tokenizer_{k}": v.detach() for k, v in tok.items()}
        return {**out, "cross_entropy": ce.detach(), "token_accuracy": acc, "loss": loss}

    def _transformer_loss(self, batch, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced next-scale cross-entropy; the tokenizer is frozen here (stop-gradient)."""
        b = actions.shape[0]
        with torch.no_grad():
            _, tokens = self.tokenizer.quantize(self.tokenizer.encode_latent(actions))      # [(B*D, s_k)]
            inputs = self._teacher_inputs(tokens, b)
        x = torch.cat([self.transformer.prefix(self._cond(batch))]
                      + [self.transformer.scale_input(k, inp, b) for k, inp in enumerate(inputs)], dim=1)
        logits = self.transformer(x, self.transformer.mask)[:, self.config.n_obs:]        # B, D*sum(s), V
        target = torch.cat([t.reshape(b, -1) for t in tokens], dim=1)                       # B, D*sum(s)
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                             label_smoothing=self.config.label_smoothing)
        return ce, (logits.argmax(-1) == target).float().mean()

    def _teacher_inputs(self, tokens: list[torch.Tensor], b: int) -> list[torch.Tensor | None]:
        """Per scale k: the reconstruction of the true tokens of scales < k, resized to s_k: (B, D, C, s_k)."""
        inputs: list[torch.Tensor | None] = [None]
        f_hat = 0
        for k in range(1, len(tokens)):
            f_hat = f_hat + self.tokenizer.lookup(tokens[k - 1], k - 1)                      # B*D, C, L
            inputs.append(self._resized(f_hat, k, b))
        return inputs

    def _resized(self, f_hat: torch.Tensor, k: int, b: int) -> torch.Tensor:
        r = self.tokenizer.next_input(f_hat, k)                                             # B*D, C, s_k
        return r.reshape(b, self.action_dim, *r.shape[1:])                                  # B, D, C, s_k

    def _origin(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | float:
        """What the tokens are relative to, in normalized action units: (B, 1, D) the newest value of
        `relative_to`'s first D entries (normalized as actions: same coordinates), or 0."""
        rel = self.config.relative_to
        if not rel:
            return 0.0
        if f"obs.{rel}" not in batch:
            raise PolicyError(f"carp: observation key 'obs.{rel}' missing; got {sorted(batch)}")
        newest = batch[f"obs.{rel}"][:, -1:, :self.action_dim]                               # B, 1, D raw
        return self.normalizer.normalize(self.config.action, newest)

    def _cond(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        missing = [f"obs.{n}" for n in self.config.obs if f"obs.{n}" not in batch]
        if missing:
            raise PolicyError(f"carp: observation keys {missing} missing; got {sorted(batch)}")
        return self.obs_encoder(self.normalized_obs(batch))                                # B, n_obs, F

    # --- inference ------------------------------------------------------------------------------
    @torch.no_grad()
    def generate_tokens(self, obs: dict[str, torch.Tensor], *, use_cache: bool = True,
                        generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Raw observations -> per scale k, (B, D, s_k) tokens, one transformer forward per scale."""
        cond = self._cond(obs)
        b, tf = cond.shape[0], self.transformer
        seq = tf.prefix(cond)                                                              # B, n_obs, d
        caches = [[] for _ in tf.blocks] if use_cache else None
        f_hat, tokens, inp = 0, [], None
        for k, s in enumerate(self.tokenizer.scales):
            new = tf.scale_input(k, inp, b)                                                 # B, D*s, d
            if use_cache and k > 0:
                logits = tf(new, None, caches)                 # attends to the whole cache and its own scale
            else:                                              # no cache (or scale 1): the whole sequence so far
                seq = torch.cat([seq, new], 1)
                n = seq.shape[1]
                logits = tf(seq, tf.mask[:n, :n], caches)
            idx = self._pick(logits[:, -new.shape[1]:], generator)                          # B, D*s
            tokens.append(idx.reshape(b, self.action_dim, s))
            f_hat = f_hat + self.tokenizer.lookup(idx.reshape(b * self.action_dim, s), k)
            if k + 1 < len(self.tokenizer.scales):
                inp = self._resized(f_hat, k + 1, b)
        return tokens

    def _pick(self, logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """(B, t, V) -> (B, t) greedy (temperature 0) or sampled tokens."""
        c = self.config
        if c.temperature == 0:
            return logits.argmax(-1)
        logits = logits / c.temperature
        if c.top_k:
            kth = logits.topk(min(c.top_k, logits.shape[-1]), dim=-1).values[..., -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = torch.softmax(logits, -1).reshape(-1, logits.shape[-1])
        return torch.multinomial(probs, 1, generator=generator).reshape(logits.shape[:-1])

    @torch.no_grad()
    def predict_action(self, obs: dict[str, torch.Tensor], generator: torch.Generator | None = None) -> torch.Tensor:
        """Raw observations {"obs.<name>": (B, n_obs, ...)} -> (B, horizon, D_act) raw-unit actions."""
        tokens = self.generate_tokens(obs, generator=generator)
        actions = self.tokenizer.decode(tokens) + self._origin(obs)                         # B, H, D normalized
        return self.normalizer.unnormalize(self.config.action, actions)


def build_carp_for_benchmark(*, horizon: int = 16, n_obs: int = 2, state_dim: int = 6, action_dim: int = 2,
                             batch: int = 1, seed: int = 0, **overrides) -> tuple[CarpPolicy, dict[str, torch.Tensor]]:
    """An untrained low-dim CARP (default CPU size: d_model 128, 4 layers, 4 heads, codebook 512) in eval mode
    and a matching raw observation batch, for inference benchmarks (its cost does not depend on the weights)."""
    from data.loader import Normalizer

    def stats(d: int, kind: str) -> dict:
        return {"kind": kind, "min": [-1.0] * d, "max": [1.0] * d, "mean": [0.0] * d, "std": [1.0] * d}

    features = {"observation.state": FeatureSpec("observation.state", "state", (state_dim,)),
                "action": FeatureSpec("action", "action", (action_dim,))}
    normalizer = Normalizer.from_stats({"observation.state": stats(state_dim, "state"),
                                        "action": stats(action_dim, "action")})
    config = CarpConfig(horizon=horizon, n_obs=n_obs, n_action_steps=min(8, horizon), seed=seed, **overrides)
    gen = torch.Generator().manual_seed(seed)
    obs = {"obs.observation.state": torch.rand(batch, n_obs, state_dim, generator=gen) * 2 - 1}
    with torch.random.fork_rng():                  # seeded weights; the caller's global RNG state is restored
        torch.manual_seed(seed)
        policy = CarpPolicy(config, features, normalizer)
    return policy.eval(), obs
