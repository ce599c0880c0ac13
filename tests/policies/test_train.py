"""The shared trainer (`policies.train`): learning, EMA, episode split, exact resume, checkpoints,
outputs, config errors, and DDP with two CPU processes on gloo (torchrun).

The trainer is exercised with `MlpBC`, a small but real behaviour-cloning policy (an MLP from the
flattened normalized observation window to the normalized action chunk, masked MSE), registered
under the test-only name `test_mlp_bc`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from data.loader import Normalizer
from policies.base import FeatureSpec, Policy, PolicyError, load_policy, policy_class, register_policy
from policies.rollout import layout_for
from policies.train import Trainer, build_policy, features_from_dataset, lr_factor, split_episodes, window_dataset
from policies.train_config import LoaderConfig, RunConfig, TrainConfig, TrainConfigError, load_run_config, policy_config

PUSHT_FEATURES = layout_for("push_t").with_cameras("fixed").features()   # as tests/policies/conftest.py records

ROOT = Path(__file__).resolve().parents[2]
FEATURES = {"observation.state": {"stream": "state", "field": "position", "kind": "state"},
            "action": {"stream": "action", "field": "position", "kind": "action"}}
POLICY = {"obs": ["observation.state"], "n_obs": 2, "horizon": 8, "n_action_steps": 4, "extra": {"hidden": 64}}


@register_policy("test_mlp_bc")
class MlpBC(Policy):
    """Behaviour cloning with an MLP: (B, n_obs*D_obs) normalized observations -> (B, horizon*D_act)."""

    def __init__(self, config, features: dict[str, FeatureSpec], normalizer: Normalizer):
        super().__init__(config, features, normalizer)
        d_in = config.n_obs * sum(features[n].shape[0] for n in config.obs)
        self.d_act = self.action_spec.shape[0]
        hidden = int(config.extra.get("hidden", 64))
        self.net = torch.nn.Sequential(torch.nn.Linear(d_in, hidden), torch.nn.ReLU(),
                                       torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
                                       torch.nn.Linear(hidden, config.horizon * self.d_act))

    def _forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        x = torch.cat([v.flatten(1) for v in self.normalized_obs(obs).values()], dim=1)
        return self.net(x).view(-1, self.config.horizon, self.d_act)

    def compute_loss(self, batch):
        target = self.normalizer.normalize(self.config.action, batch["action"])
        keep = (~batch["action_is_pad"]).float()[..., None]
        err = (self._forward(batch) - target) ** 2 * keep
        return {"loss": err.mean()}     # padded steps count as zero: the DDP mean of means is the global mean

    @torch.no_grad()
    def predict_action(self, obs):
        return self.normalizer.unnormalize(self.config.action, self._forward(obs))


def _run(**train) -> RunConfig:
    base = {"steps": 60, "batch_size": 32, "lr": 3e-3, "warmup_steps": 5, "val_fraction": 0.34, "log_every": 5,
            "checkpoint_every": 2, "num_workers": 0, "seed": 3, "device": "cpu"}
    return RunConfig(policy=dict(POLICY), features=FEATURES, train=TrainConfig(**{**base, **train}))


def _metrics(out: Path) -> list[dict]:
    return [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def trained(pusht_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    trainer = Trainer("test_mlp_bc", pusht_store, _run(), out=out, quiet=True)
    initial_val = trainer.validate()
    result = trainer.fit()
    return trainer, result, out, initial_val


def test_loss_goes_down_and_outputs_exist(trained):
    trainer, result, out, initial_val = trained
    rows = _metrics(out)
    train = [r["loss"] for r in rows if r["kind"] == "train"]
    assert result["step"] == 60 and train[-1] < 0.3 * train[0]
    assert result["val_loss"] < 0.5 * initial_val
    assert {"step", "lr", "grad_norm", "steps_per_s"} <= set(rows[0])
    assert (out / "loss.png").stat().st_size > 1000
    for kind in ("last", "best"):
        assert (out / "checkpoints" / kind / "model.safetensors").exists()
    assert (out / "checkpoints" / "last" / "train_state.json").exists()


def test_checkpoint_loads_and_predicts(trained, pusht_store):
    trainer, result, out, _ = trained
    policy = load_policy(out / "checkpoints" / "last", expect="test_mlp_bc")
    assert policy.features["observation.state"].names == ("agent_x", "agent_y", "block_x", "block_y",
                                                         "block_sin", "block_cos")
    info = json.loads((out / "checkpoints" / "last" / "policy.json").read_text())["train"]
    assert info["step"] == 60 and info["val_episodes"] == trainer.val_episodes
    for key, value in trainer.ema.model.state_dict().items():       # the EMA weights are what was saved
        assert torch.equal(policy.state_dict()[key], value)
    item = trainer.val_ds[10]
    pred = policy.predict_action({"obs.observation.state": item["obs.observation.state"][None]})
    assert pred.shape == (1, 8, 2)
    assert torch.mean((pred[0] - item["action"]) ** 2) < torch.var(item["action"]) + 0.05


def test_ema_differs_from_raw_weights(trained):
    trainer, *_ = trained
    raw, ema = trainer.policy.state_dict(), trainer.ema.model.state_dict()
    assert not all(torch.equal(raw[k], ema[k]) for k in raw)
    assert 0.0 < trainer.ema.decay() <= TrainConfig().ema_max


def test_val_split_by_episode(trained, pusht_store):
    trainer, *_ = trained
    assert set(trainer.train_episodes).isdisjoint(trainer.val_episodes) and len(trainer.val_episodes) == 2
    assert sorted(trainer.train_episodes + trainer.val_episodes) == pusht_store.episodes()
    assert set(trainer.val_ds.item_episodes.tolist()) == {0, 1}         # positions within val's episode list
    assert split_episodes(list(range(10)), 0.2, 3) == split_episodes(list(range(10)), 0.2, 3)
    assert split_episodes(list(range(10)), 0.2, 3) != split_episodes(list(range(10)), 0.2, 4)
    assert split_episodes([0], 0.5, 0) == ([0], [])


def test_resume_continues_exactly(pusht_store, tmp_path):
    run = _run(steps=20, checkpoint_every=100)      # 14 batches per epoch: stops and resumes mid-epoch 2
    full = Trainer("test_mlp_bc", pusht_store, run, out=tmp_path / "full", quiet=True)
    full.fit()
    part = Trainer("test_mlp_bc", pusht_store, run, out=tmp_path / "part", quiet=True)
    assert part.fit(stop_at_step=17)["step"] == 17
    resumed = Trainer("test_mlp_bc", pusht_store, run, out=tmp_path / "part", resume=True, quiet=True)
    assert (resumed.state.step, resumed.state.epoch, resumed.state.batch_in_epoch) == (17, 1, 3)
    assert resumed.optimizer.state_dict()["state"][0]["exp_avg"].abs().sum() > 0
    resumed.fit()
    for a, b in ((full.policy, resumed.policy), (full.ema.model, resumed.ema.model)):
        for (key, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            assert torch.equal(x, y), key
    assert [r["step"] for r in _metrics(tmp_path / "part") if r["kind"] == "train"] == list(range(5, 21, 5))
    with pytest.raises(PolicyError, match="already holds a run"):
        Trainer("test_mlp_bc", pusht_store, run, out=tmp_path / "part", quiet=True)
    with pytest.raises(PolicyError, match="nothing to resume"):
        Trainer("test_mlp_bc", pusht_store, run, out=tmp_path / "none", resume=True, quiet=True)
    other = RunConfig(policy={**POLICY, "extra": {"hidden": 32}}, features=FEATURES, train=run.train)
    with pytest.raises(PolicyError, match="extra"):
        Trainer("test_mlp_bc", pusht_store, other, out=tmp_path / "part", resume=True, quiet=True)


def test_features_and_build_policy(pusht_store):
    obs = ["observation.state", "observation.images.fixed"]
    config = policy_config(MlpBC.config_class, "test_mlp_bc", {**POLICY, "obs": obs})
    ds = window_dataset(pusht_store, config, episodes=[0])          # the store's default feature map
    assert ds.features["observation.state"] == PUSHT_FEATURES["observation.state"].__class__("state", "position")
    feats = features_from_dataset(ds)
    assert feats["observation.images.fixed"].shape == (3, 48, 48) and feats["observation.images.fixed"].kind == "image"
    assert feats["action"] == FeatureSpec("action", "action", (2,), ("ee_x", "ee_y"))
    policy = build_policy("test_mlp_bc", {**POLICY, "obs": obs}, ds)
    assert policy.normalizer.modes == {"observation.state": "limits", "observation.images.fixed": "identity",
                                       "action": "limits"}
    with pytest.raises(PolicyError, match="horizon: policy 16 vs dataset 8"):
        build_policy("test_mlp_bc", {"obs": obs}, ds)


def test_epoch_sampler_shards_blocks_and_skips(trained):
    from policies.train_state import EpochSampler

    ds = trained[0].train_ds
    for block in (0, 2):
        ranks = [EpochSampler(ds, 2, r, seed=5, episodes_per_block=block) for r in (0, 1)]
        for sampler in ranks:
            sampler.set_epoch(3)
        shards = [list(sampler) for sampler in ranks]
        assert sorted(set(shards[0] + shards[1])) == list(range(len(ds))) and len(shards[0]) == len(shards[1])
        ranks[0].skip = 5
        assert list(ranks[0]) == shards[0][5:] and len(ranks[0]) == len(shards[0]) - 5
    one = EpochSampler(ds, 1, 0, seed=5, episodes_per_block=2)
    one.set_epoch(0)
    episodes = ds.item_episodes[list(one)]
    a, b = list(dict.fromkeys(episodes.tolist()))[:2]              # the first block: two whole episodes
    n = int(np.isin(ds.item_episodes, [a, b]).sum())
    assert set(episodes[:n].tolist()) == {a, b}


def test_lr_schedule():
    assert lr_factor(0, 100, 10) == 0.0 and lr_factor(5, 100, 10) == 0.5 and lr_factor(10, 100, 10) == 1.0
    assert lr_factor(55, 100, 10) == pytest.approx(0.5) and lr_factor(100, 100, 10) == pytest.approx(0.0)
    assert lr_factor(70, 100, 10, "constant") == 1.0


def test_bad_config_names_key_and_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  stesp: 10\n")
    with pytest.raises(TrainConfigError, match=r"bad.yaml: train: unknown key 'stesp'; did you mean 'steps'"):
        load_run_config(path)
    path.write_text("train:\n  lr: fast\n")
    with pytest.raises(TrainConfigError, match=r"bad.yaml: train.lr: expected a number, got 'fast'"):
        load_run_config(path)
    path.write_text("trian: {}\n")
    with pytest.raises(TrainConfigError, match="unknown key 'trian'"):
        load_run_config(path)
    path.write_text("policy:\n  horizn: 8\n")
    run = load_run_config(path)
    with pytest.raises(TrainConfigError, match=r"bad.yaml: policy: unknown key 'horizn'"):
        policy_config(MlpBC.config_class, "test_mlp_bc", run.policy, run.source)
    path.write_text("policy:\n  n_action_steps: 40\n")
    run = load_run_config(path)
    with pytest.raises(TrainConfigError, match="n_action_steps"):
        policy_config(MlpBC.config_class, "test_mlp_bc", run.policy, run.source)
    run = load_run_config(None, ["train.lr=3e-4", "policy.horizon=8", "policy.dp.inference_steps=4"])
    assert run.train.lr == 3e-4 and run.policy["dp"] == {"inference_steps": 4}
    assert policy_config(MlpBC.config_class, "test_mlp_bc", run.policy).horizon == 8   # the dp section is skipped


def test_shipped_configs_load():
    for path in sorted((ROOT / "policies" / "configs").glob("*.yaml")):
        run = load_run_config(path)
        assert run.train.steps > 0 and run.policy, path
        assert run.features or "LeRobot" in path.read_text(), path   # a LeRobot dataset carries its features
        for name in ("dp", "carp", "rdp"):                            # every policy section builds its config
            if name in run.policy:
                policy_config(policy_class(name).config_class, name, run.policy, str(path))


def test_cli_trains_and_resumes(pusht_store, tmp_path):
    from policies.__main__ import main

    args = ["train", "--policy", "test_mlp_bc", "--dataset", str(pusht_store.root), "--config", "pusht_lowdim",
            "--out", str(tmp_path), "--quiet", "--set", "train.device=cpu", "--set", "train.batch_size=16",
            "--set", "policy.horizon=8"]
    assert main([*args, "--set", "train.steps=6"]) == 0
    assert main([*args, "--set", "train.steps=8", "--resume"]) == 0
    assert json.loads((tmp_path / "checkpoints" / "last" / "policy.json").read_text())["train"]["step"] == 8
    assert main([*args, "--set", "train.lr=fast"]) == 2


def test_ddp_two_gloo_processes_match_one_process(pusht_store, tmp_path):
    cfg = tmp_path / "ddp.yaml"
    cfg.write_text(json.dumps({"policy": POLICY, "features": FEATURES,
                               "train": {**_run(steps=6).train.__dict__, "betas": [0.95, 0.999], "out": ""}}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests" / "policies")]),
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "policies", "train", "--policy", "test_mlp_bc", "--import", "test_train", "--dataset",
           str(pusht_store.root), "--config", str(cfg), "--out", str(tmp_path / "ddp"), "--quiet"]
    # own session: a timeout kills torchrun *and* its workers (they would wait in the rendezvous forever)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, stderr[-3000:]
    assert "rank 0/2" in stderr and "rank 1/2" in stderr
    last = tmp_path / "ddp" / "checkpoints" / "last"
    assert json.loads((last / "policy.json").read_text())["train"]["world_size"] == 2
    single = Trainer("test_mlp_bc", pusht_store, load_run_config(cfg), out=tmp_path / "one", quiet=True)
    single.fit()
    raw = load_file(str(last / "train_state.safetensors"))
    for key, value in single.policy.state_dict().items():
        np.testing.assert_allclose(raw[f"model.{key}"].numpy(), value.numpy(), rtol=1e-4, atol=1e-6, err_msg=key)


def test_short_diffusion_policy_run_resumes_exactly(pusht_store, tmp_path):
    pytest.importorskip("policies.diffusion")
    policy = {"obs": ["observation.state"], "horizon": 8, "n_action_steps": 4,
              "dp": {"down_dims": [16, 32], "step_embed_dim": 16, "n_groups": 4, "inference_steps": 4}}
    run = RunConfig(policy=policy, features=FEATURES, loader=LoaderConfig(sample_rate=1.0),    # ~12 items/episode
                    train=TrainConfig(steps=4, batch_size=8, lr=1e-3, warmup_steps=2, val_fraction=0.2,
                                      log_every=2, seed=1, device="cpu", checkpoint_every=100))
    full = Trainer("dp", pusht_store, run, out=tmp_path / "full", quiet=True)
    assert full.generator is not None            # dp draws its noise from the trainer's generator
    assert full.fit()["val_loss"] > 0
    Trainer("dp", pusht_store, run, out=tmp_path / "part", quiet=True).fit(stop_at_step=2)
    resumed = Trainer("dp", pusht_store, run, out=tmp_path / "part", resume=True, quiet=True)
    resumed.fit()
    for (key, x), y in zip(full.ema.model.state_dict().items(), resumed.ema.model.state_dict().values(), strict=True):
        assert torch.equal(x, y), key
    loaded = load_policy(tmp_path / "part" / "checkpoints" / "best", expect="dp")
    item = resumed.val_ds[0]
    assert loaded.predict_action({"obs.observation.state": item["obs.observation.state"][None]},
                                 seed=0).shape == (1, 8, 2)


def test_preload_trains_exactly_like_the_loader(pusht_store, tmp_path):
    """`loader.preload` fetches the same batches in the same order, by indexing tensors built once."""
    base = _run(steps=6)
    preloaded = RunConfig(policy=base.policy, features=base.features, train=base.train,
                          loader=LoaderConfig(preload=True))
    a = Trainer("test_mlp_bc", pusht_store, base, out=tmp_path / "loader", quiet=True)
    b = Trainer("test_mlp_bc", pusht_store, preloaded, out=tmp_path / "preload", quiet=True)
    assert a.fit()["val_loss"] == pytest.approx(b.fit()["val_loss"], rel=1e-6)
    for (key, x), y in zip(a.policy.state_dict().items(), b.policy.state_dict().values(), strict=True):
        assert torch.allclose(x, y, atol=1e-6), key
    assert b.state.step == 6
