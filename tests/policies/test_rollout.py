"""In-process expert recording and closed-loop rollouts with the serving schedule (policies.rollout)."""

from __future__ import annotations

import math

import pytest
import torch

from data.store import EpisodeStore
from policies.base import PolicyError, policy_class
from policies.rollout import layout_for, record_expert, rollout
from policies.train import build_policy, window_dataset
from policies.train_config import policy_config

TINY_DP = {"obs": ["observation.state"], "horizon": 8, "n_action_steps": 4,
           "dp": {"down_dims": [16, 32], "step_embed_dim": 16, "n_groups": 4, "inference_steps": 2}}


@pytest.fixture(scope="module")
def wipe(tmp_path_factory):
    from sim.tasks import make_task

    task = make_task("wipe", max_steps=12)
    store = EpisodeStore.create(tmp_path_factory.mktemp("wipe"))
    record_expert(task, store, layout_for("wipe"), [0, 1])
    yield task, store
    task.close()


def _policy(name: str, store: EpisodeStore, overrides: dict):
    config = policy_config(policy_class(name).config_class, name, overrides, "<test>")
    ds = window_dataset(store, config)
    torch.manual_seed(0)
    return build_policy(name, overrides, ds).eval()


def test_record_expert_writes_the_layout(wipe):
    task, store = wipe
    assert len(store) == 2
    episode = store.episode(store.episodes()[0])
    table = episode.table("state")
    assert table.num_rows == 12                                      # one row per control step
    assert list(table.column("name")[0].as_py()) == list(layout_for("wipe").state_names)
    assert episode.table("wrench").num_rows == 12 and episode.table("action").num_rows == 12


def test_rollout_runs_the_slow_part_every_n_action_steps(wipe):
    task, store = wipe
    overrides = {**TINY_DP, "obs": ["observation.state", "observation.wrench"], "obs_rate": 20.0,
                 "action_rate": 20.0}
    policy = _policy("dp", store, overrides)
    result = rollout(policy, task, layout_for("wipe"), seed=5)
    assert result.steps == 12 and not result.fast_ms
    assert len(result.slow_ms) == math.ceil(result.steps / 4)
    assert 0.0 <= result.progress <= 1.0


def test_rdp_rollout_redecodes_every_step_with_fresh_force(wipe):
    task, store = wipe
    overrides = {"obs": ["observation.state", "observation.wrench"], "obs_rate": 20.0, "action_rate": 20.0,
                 "horizon": 8, "n_action_steps": 4,
                 "rdp": {"fast_obs": ["observation.wrench"], "downsample": 4, "denoiser_width": 32,
                         "inference_steps": 2}}
    policy = _policy("rdp", store, overrides)
    fast = rollout(policy, task, layout_for("wipe"), seed=5)
    assert len(fast.fast_ms) == fast.steps == 12 and len(fast.slow_ms) == 3
    held = rollout(policy, task, layout_for("wipe"), seed=5, fast=False)
    assert not held.fast_ms and len(held.slow_ms) == 3


def test_rate_mismatch_and_unknown_layout_are_errors(wipe):
    task, store = wipe
    policy = _policy("dp", store, {**TINY_DP, "obs": ["observation.state"], "obs_rate": 20.0,
                                   "action_rate": 20.0})
    object.__setattr__(policy.config, "action_rate", 10.0)
    with pytest.raises(PolicyError, match="control rate"):
        rollout(policy, task, layout_for("wipe"), seed=0)
    with pytest.raises(PolicyError, match="no task layout for 'stack_cups'"):
        layout_for("stack_cups")
