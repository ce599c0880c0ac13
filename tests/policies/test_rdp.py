"""Reactive Diffusion Policy: shapes, the fast decoder really uses force, checkpoints, a short training on `wipe`.

Data: three short scripted-expert `wipe` episodes (20 Hz): `state` (JointState: ee position, area
centre, surface normal), `wrench` (WrenchStamped from the wrist F/T) and `action` (JointState ee
target). `benchmark_decode` measures the fast decoder's latency (run this file as a script to print it).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler

from data.loader import WindowDataset
from data.store import EpisodeStore
from policies.base import CheckpointError, FeatureSpec, PolicyError, load_policy
from policies.rdp import RdpConfig, ReactiveDiffusionPolicy
from policies.rollout import layout_for, record_expert

WIPE_LAYOUT = layout_for("wipe")
WIPE_FEATURES = WIPE_LAYOUT.features()
RATE = 20.0


def record_wipe(root, episodes: int = 3, max_steps: int = 80) -> EpisodeStore:
    from sim.tasks import make_task

    store = EpisodeStore.create(root)
    task = make_task("wipe", max_steps=max_steps)
    try:
        record_expert(task, store, WIPE_LAYOUT, range(episodes))
    finally:
        task.close()
    return store


@pytest.fixture(scope="module")
def wipe_store(tmp_path_factory):
    return record_wipe(tmp_path_factory.mktemp("wipe"))


@pytest.fixture(scope="module")
def wipe_data(wipe_store):
    return WindowDataset(wipe_store, obs=["observation.state", "observation.wrench"], features=WIPE_FEATURES,
                         n_obs=2, obs_rate=RATE, horizon=16, action_rate=RATE, future=["observation.wrench"])


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small models run several times faster on one intra-op thread than on busy shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _features(dataset: WindowDataset) -> dict[str, FeatureSpec]:
    item = dataset[0]
    return {n: FeatureSpec(n, WIPE_FEATURES[n].kind, tuple(item[f"obs.{n}" if n != "action" else n].shape[1:]))
            for n in WIPE_FEATURES}


def make_policy(dataset: WindowDataset, seed: int = 0, **overrides) -> ReactiveDiffusionPolicy:
    config = RdpConfig(obs=("observation.state",), fast_obs=("observation.wrench",), obs_rate=RATE,
                       action_rate=RATE, **overrides)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return ReactiveDiffusionPolicy(config, _features(dataset), dataset.normalizer())


def _batch(dataset: WindowDataset, indices) -> dict[str, torch.Tensor]:
    items = [dataset[int(i)] for i in indices]
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def benchmark_decode(policy: ReactiveDiffusionPolicy, iters: int = 300) -> dict[str, float]:
    """p50/p99 milliseconds of one fast decode (batch 1, one fresh wrench reading) and of one slow step."""
    obs = {"obs.observation.state": torch.zeros(1, policy.config.n_obs, 9),
           "obs.observation.wrench": torch.zeros(1, policy.config.n_obs, 6)}
    latent = policy.predict_latent(obs, torch.Generator().manual_seed(0))
    fast = {"observation.wrench": torch.zeros(1, 6)}

    def timed(fn, n):
        for _ in range(10):
            fn()
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t0) * 1e3)
        return np.percentile(out, [50, 99])

    with torch.inference_mode():
        d50, d99 = timed(lambda: policy.decode(latent, fast), iters)
        s50, s99 = timed(lambda: policy.predict_latent(obs), max(10, iters // 10))
    return {"decode_p50_ms": float(d50), "decode_p99_ms": float(d99), "slow_p50_ms": float(s50),
            "slow_p99_ms": float(s99)}


# --- tests ---------------------------------------------------------------------------------------
def test_config_adds_fast_obs_and_checks():
    config = RdpConfig(obs=("observation.state",), fast_obs=("observation.wrench",))
    assert config.obs == ("observation.state", "observation.wrench")
    with pytest.raises(PolicyError, match="stage"):
        RdpConfig(stage="both")
    with pytest.raises(PolicyError, match="no slow observation"):
        RdpConfig(obs=("observation.wrench",), fast_obs=("observation.wrench",), slow_uses_fast=False)


def test_shapes_and_losses(wipe_data):
    policy = make_policy(wipe_data)
    batch = _batch(wipe_data, range(4))
    for stage in ("tokenizer", "latent", "joint"):
        losses = policy.with_stage(stage).compute_loss(batch)
        assert losses["loss"].ndim == 0 and torch.isfinite(losses["loss"])
        assert ("recon" in losses) == (stage != "latent") and ("diffusion" in losses) == (stage != "tokenizer")
    # fast_per_step (default): the decoder trains on the loader's readings at the action times
    assert policy.config.future == ("observation.wrench",)
    assert batch["future.observation.wrench"].shape == (4, 16, 6)
    stepped = policy.compute_loss(batch, generator=torch.Generator().manual_seed(0))["recon"]
    moved = {**batch, "future.observation.wrench": torch.randn(4, 16, 6, generator=torch.Generator().manual_seed(1))}
    assert policy.compute_loss(moved, generator=torch.Generator().manual_seed(0))["recon"] != stepped
    with pytest.raises(PolicyError, match=r"future\.observation\.wrench"):
        policy.compute_loss({k: v for k, v in batch.items() if not k.startswith("future.")})
    # fast_per_step=False: the latest observed reading, held; the future windows are not asked for
    held = make_policy(wipe_data, fast_per_step=False)
    assert held.config.future == ()
    assert torch.isfinite(held.compute_loss({k: v for k, v in batch.items() if not k.startswith("future.")})["loss"])
    policy.eval()
    latent = policy.predict_latent(batch, torch.Generator().manual_seed(0))
    assert latent.shape == (4, 4, 8)                                     # B, H/4, c
    assert policy.predict_action(batch).shape == (4, 16, 3)
    seq = batch["obs.observation.wrench"][:, -1:].expand(-1, 5, -1)      # B, 5 readings for chunk steps 0..4
    assert policy.decode(latent, {"observation.wrench": seq}).shape == (4, 16, 3)
    with pytest.raises(PolicyError, match="observation.wrench"):
        policy.decode(latent, {"observation.force": seq})
    with pytest.raises(PolicyError, match="obs.observation.state"):
        policy.predict_latent({"obs.observation.wrench": batch["obs.observation.wrench"]})


@pytest.mark.parametrize("prediction_type", ["sample", "epsilon"])
def test_latent_sampling_equals_diffusers_ddim_loop(wipe_data, prediction_type):
    """The tensor-only sampler (`policies.ddim`) gives diffusers' DDIMScheduler loop bit for bit on CPU."""
    policy = make_policy(wipe_data, prediction_type=prediction_type, inference_steps=8).eval()
    batch = _batch(wipe_data, [0, 7])
    ours = policy.predict_latent(batch, torch.Generator().manual_seed(4))
    sched = DDIMScheduler.from_config(policy.infer_scheduler.config)
    sched.set_timesteps(8)
    with torch.no_grad():
        cond = policy._condition(batch)
        x = torch.randn((2, *policy.latent_shape), generator=torch.Generator().manual_seed(4))
        for t in sched.timesteps:
            x = sched.step(policy.denoiser(x, torch.full((2,), int(t)), cond), int(t), x).prev_sample
    assert torch.equal(ours, x * policy.latent_std)


def test_latent_stage_does_not_train_tokenizer(wipe_data):
    policy = make_policy(wipe_data, stage="latent")
    policy.compute_loss(_batch(wipe_data, range(4)))["loss"].backward()
    assert all(p.grad is None and not p.requires_grad for p in policy.tokenizer.parameters())
    assert all(p.grad is not None for p in policy.denoiser.parameters())
    policy.with_stage("tokenizer")
    assert not any(p.requires_grad for p in policy.denoiser.parameters())
    assert all(p.requires_grad for p in policy.tokenizer.parameters())


def test_decoder_uses_force_causally(wipe_data):
    policy = make_policy(wipe_data).eval()
    batch = _batch(wipe_data, [0])
    latent = policy.predict_latent(batch, torch.Generator().manual_seed(0))
    free = policy.decode(latent, {"observation.wrench": torch.zeros(1, 6)})
    pressed = policy.decode(latent, {"observation.wrench": torch.tensor([[0.0, 0.0, -20.0, 0.0, 0.0, 0.0]])})
    assert (free - pressed).abs().max() > 1e-4
    # per-step conditioning is causal: readings from step 8 on do not change steps 0..7
    seq = torch.zeros(1, 16, 6)
    late = seq.clone()
    late[:, 8:, 2] = -20.0
    a, b = policy.decode(latent, {"observation.wrench": seq}), policy.decode(latent, {"observation.wrench": late})
    assert torch.equal(a[:, :8], b[:, :8]) and not torch.allclose(a[:, 8:], b[:, 8:])


def test_checkpoint_round_trip_and_errors(wipe_data, tmp_path):
    policy = make_policy(wipe_data).eval()
    policy.latent_std.fill_(0.7)
    batch = _batch(wipe_data, [0, 5])
    path = policy.save(tmp_path / "rdp", steps=0)
    loaded = load_policy(path, expect="rdp")
    assert isinstance(loaded, ReactiveDiffusionPolicy) and loaded.config == policy.config
    a = policy.predict_action(batch, torch.Generator().manual_seed(3))
    b = loaded.predict_action(batch, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    with pytest.raises(CheckpointError, match="not 'dp'"):
        load_policy(path, expect="dp")
    meta = json.loads((path / "policy.json").read_text())
    meta["config"]["latent_dim"] = 4                                      # same policy, other shapes
    (path / "policy.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_policy(path)


def test_shared_trainer_runs_both_stages(wipe_store, tmp_path):
    """Stage 1 (tokenizer) then stage 2 (latent diffusion, `init_from` stage 1) through `policies.train`."""
    from policies.train import Trainer
    from policies.train_config import RunConfig, TrainConfig

    features = {n: {"stream": f.stream, "field": f.field, "kind": f.kind} for n, f in WIPE_FEATURES.items()}
    policy = {"obs": ["observation.state"], "fast_obs": ["observation.wrench"], "obs_rate": RATE,
              "action_rate": RATE, "denoiser_width": 64}
    train = {"steps": 6, "batch_size": 32, "lr": 1e-3, "warmup_steps": 1, "val_fraction": 0.34, "log_every": 3,
             "checkpoint_every": 1, "seed": 0, "device": "cpu"}

    def run(stage: str, **extra):
        config = RunConfig(policy={**policy, "stage": stage}, features=features, train=TrainConfig(**train, **extra))
        return Path(Trainer("rdp", wipe_store, config, out=tmp_path / stage, quiet=True).fit()["out"])

    stage1 = load_policy(run("tokenizer") / "checkpoints" / "last", expect="rdp")
    stage2 = load_policy(run("latent", init_from=str(tmp_path / "tokenizer" / "checkpoints" / "last"))
                         / "checkpoints" / "last", expect="rdp")
    assert (stage1.config.stage, stage2.config.stage) == ("tokenizer", "latent")
    one, two = stage1.state_dict(), stage2.state_dict()
    assert all(torch.equal(one[k], two[k]) for k in one if k.startswith("tokenizer.") or k == "latent_std")
    assert not all(torch.equal(one[k], two[k]) for k in one if k.startswith("denoiser."))


def test_short_training_approaches_demos(wipe_data):
    """300 steps of joint training on 3 episodes (~10 s): predicted chunks (slow DDIM + fast decode with the
    wrench at each chunk step, as the fast loop feeds it) much closer to the demos than the mean action.
    Seen: ~0.12x the baseline error."""
    policy = make_policy(wipe_data, seed=1, denoiser_width=128)
    data = _batch(wipe_data, range(len(wipe_data)))                              # every item, M ~ 240
    gen = np.random.default_rng(0)
    optim = torch.optim.AdamW(policy.parameters(), lr=2e-3, weight_decay=1e-6)
    noise = torch.Generator().manual_seed(1)
    policy.train()
    for _ in range(300):
        idx = torch.from_numpy(gen.integers(0, len(wipe_data), 64))
        loss = policy.compute_loss({k: v[idx] for k, v in data.items()}, generator=noise)["loss"]
        optim.zero_grad()
        loss.backward()
        optim.step()
    policy.eval()
    batch = _batch(wipe_data, range(0, len(wipe_data), 3))
    latent = policy.predict_latent(batch, torch.Generator().manual_seed(0))
    pred = policy.decode(latent, {"observation.wrench": batch["future.observation.wrench"]})   # B, H, 3 (m)
    target = batch["action"]
    mean_action = torch.tensor(wipe_data.stats["action"]["mean"], dtype=torch.float32)
    err = (pred - target).norm(dim=-1).mean()
    baseline = (mean_action - target).norm(dim=-1).mean()
    print(f"chunk error {float(err):.4f} m vs mean-action baseline {float(baseline):.4f} m")
    assert err < 0.3 * baseline, (float(err), float(baseline))


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        data = WindowDataset(record_wipe(tmp), obs=["observation.state", "observation.wrench"],
                             features=WIPE_FEATURES, n_obs=2, obs_rate=RATE, horizon=16, action_rate=RATE)
        torch.set_num_threads(1)
        rdp = make_policy(data).eval()
        print(rdp.parameter_counts())
        print(benchmark_decode(rdp))
