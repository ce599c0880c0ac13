"""CARP: multi-scale action tokenizer, next-scale transformer with KV cache, checkpoints, a short push_t fit."""

from __future__ import annotations

import json
import math

import pytest
import torch

from data.features import Feature
from data.loader import Normalizer, WindowDataset
from policies.base import CheckpointError, FeatureSpec, PolicyError, load_policy
from policies.carp import CarpConfig, CarpPolicy, build_carp_for_benchmark
from policies.carp_tokenizer import MultiScaleActionTokenizer

LOWDIM_FEATURES = {"observation.state": Feature("state", "position", "state"),
                   "action": Feature("action", "position", "action")}
SMALL = {"d_model": 32, "n_layers": 2, "n_heads": 4, "tokenizer_hidden": 16, "codebook_size": 64, "dropout": 0.0}


@pytest.fixture(autouse=True)
def _one_thread():
    """These models are tiny: one intra-op thread beats two threads fighting over a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _stats(d: int, kind: str) -> dict:
    return {"kind": kind, "min": [-2.0] * d, "max": [2.0] * d, "mean": [0.0] * d, "std": [1.0] * d}


def _policy(**overrides) -> CarpPolicy:
    features = {"observation.state": FeatureSpec("observation.state", "state", (5,)),
                "action": FeatureSpec("action", "action", (3,))}
    normalizer = Normalizer.from_stats({"observation.state": _stats(5, "state"), "action": _stats(3, "action")})
    return CarpPolicy(CarpConfig(**{**SMALL, **overrides}), features, normalizer).eval()


def _obs(batch: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    return {"obs.observation.state": torch.randn(batch, 2, 5, generator=torch.Generator().manual_seed(seed))}


def _smooth(n: int, gen: torch.Generator, horizon: int = 16, dims: int = 2) -> torch.Tensor:
    """(n, horizon, dims) smooth curves in [-1, 1]: offset + amplitude * sin(frequency * t + phase)."""
    t = torch.linspace(0, 1, horizon)[None, :, None]
    offset, amp = torch.rand(n, 1, dims, generator=gen) - 0.5, torch.rand(n, 1, dims, generator=gen) * 0.5
    freq, phase = torch.rand(n, 1, dims, generator=gen) * 4, torch.rand(n, 1, dims, generator=gen) * math.pi
    return offset + amp * torch.sin(freq * t + phase)


# --- tokenizer -----------------------------------------------------------------------------------
def test_tokenizer_token_shapes_per_scale():
    tok = MultiScaleActionTokenizer(16, (1, 2, 4, 8), codebook_size=32, latent_dim=8, hidden=8)
    tokens = tok.encode(torch.randn(3, 16, 5))
    assert [tuple(t.shape) for t in tokens] == [(3, 5, 1), (3, 5, 2), (3, 5, 4), (3, 5, 8)]
    assert all(t.dtype == torch.int64 and 0 <= int(t.min()) and int(t.max()) < 32 for t in tokens)
    assert tok.decode(tokens).shape == (3, 16, 5)
    with pytest.raises(PolicyError, match="expects"):
        tok.encode(torch.randn(3, 12, 5))
    with pytest.raises(PolicyError, match="scale 1 tokens"):
        tok.decode([tokens[0], tokens[2], tokens[2], tokens[3]])


@pytest.mark.parametrize("scales", [(2, 1), (0, 4), (1, 2, 32)])
def test_tokenizer_rejects_bad_scales(scales):
    with pytest.raises(PolicyError, match="scale"):
        MultiScaleActionTokenizer(16, scales)


def test_tokenizer_reconstructs_smooth_sequences_after_a_short_fit():
    gen = torch.Generator().manual_seed(0)
    with torch.random.fork_rng():                   # seeded initialisation; the global state is restored
        torch.manual_seed(0)
        tok = MultiScaleActionTokenizer(16, (1, 2, 3, 4), codebook_size=256, latent_dim=16, hidden=32, seed=0)
    opt = torch.optim.Adam(tok.parameters(), lr=2e-3)
    for _ in range(250):
        _, _, losses = tok(_smooth(32, gen), update=True)
        opt.zero_grad()
        (losses["recon"] + losses["commit"]).backward()
        opt.step()
    test = _smooth(256, gen)
    with torch.no_grad():
        recon = tok.decode(tok.encode(test))
    mse, var = float((recon - test).pow(2).mean()), float(test.var())
    assert mse < 0.1 * var, (mse, var)              # > 90 % of the variance explained through the tokens
    assert float(losses["usage"]) > 0.2             # dead-code reset keeps the codebook in use


# --- transformer inference -----------------------------------------------------------------------
def test_kv_cache_inference_equals_full_recompute():
    policy = _policy()
    obs = _obs(batch=5)
    cached = policy.generate_tokens(obs, use_cache=True)
    full = policy.generate_tokens(obs, use_cache=False)
    assert [tuple(t.shape) for t in cached] == [(5, 3, s) for s in (1, 2, 3, 4)]
    assert all(torch.equal(a, b) for a, b in zip(cached, full, strict=True))
    sampled = _policy(temperature=1.0, top_k=8)
    a = sampled.generate_tokens(obs, use_cache=True, generator=torch.Generator().manual_seed(3))
    b = sampled.generate_tokens(obs, use_cache=False, generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_inference_costs_one_transformer_forward_per_scale():
    policy = _policy(scales=(1, 2, 4, 8))
    calls = []
    policy.transformer.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[1]))
    actions = policy.predict_action(_obs(batch=2))
    assert actions.shape == (2, 16, 3)
    assert len(calls) == 4                                   # = number of scales
    assert calls == [2 + 3 * 1, 3 * 2, 3 * 4, 3 * 8]         # prefix with scale 1, then one new scale each


def test_image_observations_train_and_predict():
    features = {"observation.images.fixed": FeatureSpec("observation.images.fixed", "image", (3, 24, 24)),
                "observation.state": FeatureSpec("observation.state", "state", (5,)),
                "action": FeatureSpec("action", "action", (3,))}
    image_stats = {"kind": "image", "min": [0.0] * 3, "max": [1.0] * 3, "mean": [0.5] * 3, "std": [0.5] * 3}
    normalizer = Normalizer.from_stats({"observation.images.fixed": image_stats,
                                        "observation.state": _stats(5, "state"), "action": _stats(3, "action")})
    config = CarpConfig(**SMALL, obs=("observation.images.fixed", "observation.state"), image_size=(24, 24),
                        image_widths=(8, 16), image_blocks=1, image_feature_dim=16, stage="joint")
    policy = CarpPolicy(config, features, normalizer).train()
    batch = {**_obs(batch=2), "obs.observation.images.fixed": torch.rand(2, 2, 3, 24, 24),
             "action": torch.rand(2, 16, 3) * 4 - 2}
    policy.compute_loss(batch)["loss"].backward()
    assert any(p.grad is not None for p in policy.obs_encoder.parameters())
    assert policy.eval().predict_action(batch).shape == (2, 16, 3)


def test_config_is_validated():
    with pytest.raises(PolicyError, match="stage"):
        CarpConfig(stage="both")
    with pytest.raises(PolicyError, match="n_heads"):
        CarpConfig(d_model=30, n_heads=4)
    with pytest.raises(PolicyError, match="horizon"):
        _policy(scales=(1, 2, 32))
    with pytest.raises(PolicyError, match="obs.observation.state"):
        _policy().predict_action({"obs.other": torch.zeros(1, 2, 5)})


def test_relative_to_must_name_a_lowdim_observation_with_the_action_coordinates():
    with pytest.raises(PolicyError, match="relative_to"):
        _policy(relative_to="observation.other")
    features = {"observation.state": FeatureSpec("observation.state", "state", (2,)),
                "action": FeatureSpec("action", "action", (3,))}
    normalizer = Normalizer.from_stats({"observation.state": _stats(2, "state"), "action": _stats(3, "action")})
    with pytest.raises(PolicyError, match="at least 3"):
        CarpPolicy(CarpConfig(**SMALL, relative_to="observation.state"), features, normalizer)


def test_relative_to_tokenizes_the_chunk_relative_to_the_newest_state():
    """Moving the state's first D values and the chunk together leaves the tokens unchanged, and the
    predicted chunk is the decoded tokens plus the newest state."""
    policy = _policy(relative_to="observation.state", tokenizer_steps=1).train()
    obs, actions = _obs(batch=8), torch.rand(8, 16, 3) * 2 - 1
    policy.compute_loss({**obs, "action": actions})            # fits the codebook to relative chunks
    policy.eval()
    shift = torch.tensor([0.5, -0.3, 0.2])
    moved = obs["obs.observation.state"].clone()
    moved[..., :3] += shift

    def tokens(o, a):
        return policy.tokenizer.encode(policy.normalizer.normalize("action", a) - policy._origin(o))

    before, after = tokens(obs, actions), tokens({"obs.observation.state": moved}, actions + shift)
    assert all(torch.equal(x, y) for x, y in zip(before, after, strict=True))
    newest = policy.normalizer.normalize("action", obs["obs.observation.state"][:, -1:, :3])
    decoded = policy.tokenizer.decode(policy.generate_tokens(obs)) + newest
    torch.testing.assert_close(policy.predict_action(obs), policy.normalizer.unnormalize("action", decoded))


def test_sequential_stages_switch_after_tokenizer_steps():
    policy = _policy(tokenizer_steps=2).train()
    batch = {**_obs(batch=8), "action": torch.rand(8, 16, 3) * 4 - 2}
    trained = []
    for _ in range(3):
        policy.zero_grad(set_to_none=True)
        out = policy.compute_loss(batch)
        out["loss"].backward()
        assert torch.allclose(out["loss"], out["tokenizer_recon"] + out["tokenizer_commit"] + out["cross_entropy"])
        trained.append((any(p.grad is not None for p in policy.tokenizer.parameters()),
                        any(p.grad is not None for p in policy.transformer.parameters())))
    assert trained == [(True, False), (True, False), (False, True)]
    assert int(policy.train_calls) == 3 and policy.current_stage() == "transformer"
    assert not any(p.requires_grad for p in policy.tokenizer.parameters())      # frozen in the transformer stage


# --- checkpoints ---------------------------------------------------------------------------------
def test_save_load_round_trip_gives_identical_predictions(tmp_path):
    policy = _policy()
    obs = _obs(batch=3, seed=1)
    expected = policy.predict_action(obs)
    policy.save(tmp_path / "ckpt", step=7)
    loaded = load_policy(tmp_path / "ckpt", expect="carp")
    assert isinstance(loaded, CarpPolicy) and loaded.config == policy.config
    assert torch.equal(loaded.predict_action(obs), expected)


def test_wrong_checkpoint_type_or_shape_is_a_checkpoint_error(tmp_path):
    _policy().save(tmp_path / "a")
    with pytest.raises(CheckpointError, match="'carp' policy, not 'dp'"):
        load_policy(tmp_path / "a", expect="dp")
    _policy(codebook_size=32).save(tmp_path / "b")
    (tmp_path / "a" / "policy.json").write_text((tmp_path / "b" / "policy.json").read_text())
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_policy(tmp_path / "a")
    meta = json.loads((tmp_path / "b" / "policy.json").read_text())
    meta["policy"] = "nope"
    (tmp_path / "b" / "policy.json").write_text(json.dumps(meta))
    with pytest.raises(PolicyError, match="unknown policy"):
        load_policy(tmp_path / "b")


def test_benchmark_builder_predicts_a_chunk():
    policy, obs = build_carp_for_benchmark(horizon=16, state_dim=6, action_dim=2)
    assert policy.predict_action(obs).shape == (1, 16, 2)


# --- a short fit on push_t -----------------------------------------------------------------------
def test_short_training_on_pusht_approaches_demo_actions(pusht_store):
    ds = WindowDataset(pusht_store, obs=["observation.state"], features=LOWDIM_FEATURES)
    items = [ds[i] for i in range(len(ds))]
    data = {k: torch.stack([it[k] for it in items]) for k in ("obs.observation.state", "action")}
    features = {n: FeatureSpec(n, ds.features[n].kind, (len(ds.stats[n]["min"]),)) for n in LOWDIM_FEATURES}
    config = CarpConfig(d_model=64, n_layers=2, n_heads=4, tokenizer_hidden=32, codebook_size=128, dropout=0.0,
                        tokenizer_steps=150)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        policy = CarpPolicy(config, features, ds.normalizer()).train()
    opt = torch.optim.AdamW(policy.parameters(), lr=3e-3, weight_decay=0.0)
    gen = torch.Generator().manual_seed(0)
    for _ in range(150 + 400):
        idx = torch.randint(0, len(ds), (32,), generator=gen)
        loss = policy.compute_loss({k: v[idx] for k, v in data.items()})["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    policy.eval()
    actions = policy.normalizer.normalize("action", data["action"])                      # N, H, 2 in [-1, 1]
    predicted = policy.normalizer.normalize("action", policy.predict_action({"obs.observation.state":
                                                                             data["obs.observation.state"]}))
    mse = float((predicted - actions).pow(2).mean())
    mean_action = float((actions - actions.mean((0, 1))).pow(2).mean())                  # predict-the-mean baseline
    print(f"carp push_t fit: mse {mse:.4f} vs predict-the-mean {mean_action:.4f}")
    assert mse < 0.5 * mean_action, (mse, mean_action)


def test_trains_through_the_shared_trainer(pusht_store, tmp_path):
    from policies.train import Trainer
    from policies.train_config import RunConfig, TrainConfig

    features = {n: {"stream": f.stream, "field": f.field, "kind": f.kind} for n, f in LOWDIM_FEATURES.items()}
    policy = {"obs": ["observation.state"], "carp": {**SMALL, "scales": [1, 2, 4], "tokenizer_steps": 10}}
    train = TrainConfig(steps=20, batch_size=16, lr=1e-3, warmup_steps=2, val_fraction=0.34, num_workers=0, seed=0,
                        device="cpu", log_every=5)
    result = Trainer("carp", pusht_store, RunConfig(policy=policy, features=features, train=train), out=tmp_path,
                     quiet=True).fit()
    assert math.isfinite(result["val_loss"])
    loaded = load_policy(tmp_path / "checkpoints" / "last", expect="carp")
    assert loaded.config.scales == (1, 2, 4) and int(loaded.train_calls) == 20
    assert loaded.current_stage() == "transformer"
    assert loaded.predict_action({"obs.observation.state": torch.zeros(2, 2, 6)}).shape == (2, 16, 2)
