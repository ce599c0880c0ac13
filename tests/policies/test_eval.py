"""`robot-stack eval`: Wilson interval, reports from fake results, the observation map for the sim's
task topics, and one end-to-end run (a tiny MLP trained on the push_t demos, 2 episodes, 1 worker,
sim + policy server processes in lockstep) that checks the pipeline, not the success rate.
The tiny MLP checkpoint is conftest.py's `mlp_checkpoint`."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import psutil
import pytest
from test_train import MlpBC  # noqa: F401  (importing MlpBC registers test_mlp_bc)

from policies.base import CheckpointError, FeatureSpec
from policies.eval_cli import register_eval
from policies.eval_report import summary, wilson_interval, write_report
from policies.evaluate import EpisodeResult, EvalConfig, EvalError, default_obs_map, evaluate, worker_launch
from policies.obs_buffer import ObsMapError, lowdim_value, parse_obs_map
from robot_stack import convert
from robot_stack.launch.config import parse_launch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


@pytest.mark.parametrize("wins, n, lo, hi", [(0, 10, 0.0, 0.2775), (5, 10, 0.2366, 0.7634), (8, 10, 0.4902, 0.9433),
                                             (10, 10, 0.7225, 1.0), (1, 1, 0.2065, 1.0), (45, 50, 0.7864, 0.9565)])
def test_wilson_interval_known_values(wins, n, lo, hi):
    assert wilson_interval(wins, n) == pytest.approx((lo, hi), abs=1e-4)


def test_wilson_interval_rejects_bad_counts():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="successes <= n"):
        wilson_interval(3, 2)


def _fake_results():
    return [EpisodeResult(seed=s, worker=0, success=ok, steps=st, time_to_success_s=t, final_progress=p,
                          curve=[(0, 0.1), (st, p)], wall_s=1.5)
            for s, ok, st, t, p in [(0, True, 40, 4.0, 0.97), (1, False, 100, None, 0.4),
                                    (2, True, 60, 6.0, 0.96), (3, False, 100, None, 0.1)]]


def test_report_files_carry_the_right_numbers(tmp_path):
    data = write_report(_fake_results(), tmp_path, {"policy": "dp", "task": "push_t", "seeds": "0..3"})
    s = data["summary"]
    assert s["episodes"] == 4 and s["successes"] == 2 and s["success_rate"] == 0.5
    assert s["wilson95"] == pytest.approx(wilson_interval(2, 4))
    assert s["mean_time_to_success_s"] == 5.0 and s["mean_final_progress"] == pytest.approx(0.6075)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["summary"] == s and [e["seed"] for e in saved["episodes"]] == [0, 1, 2, 3]
    assert saved["episodes"][1]["curve"] == [[0, 0.1], [100, 0.4]]
    md = (tmp_path / "report.md").read_text()
    lo, hi = s["wilson95"]
    assert f"Wilson 95% interval [{lo:.1%}, {hi:.1%}]" in md and "50.0% (2/4)" in md
    assert md.count("\n| ") == 5 and "| 2 | yes | 60 | 6.00 | 0.960 |" in md
    assert (tmp_path / "success.png").stat().st_size > 5000
    assert summary([])["episodes"] == 0


PUSHT_STATE = FeatureSpec("observation.state", "state", (6,),
                          ("agent_x", "agent_y", "block_x", "block_y", "block_sin", "block_cos"))
META = {"config": {"obs": ["observation.state"], "slow_hz": 10.0},
        "features": {"observation.state": {"name": "observation.state", "kind": "state", "shape": [6],
                                           "names": list(PUSHT_STATE.names)}}}


def test_pusht_state_names_are_mapped_onto_the_sim_observation():
    mapping = default_obs_map(META, "push_t")
    specs = {"observation.state": PUSHT_STATE}
    source = parse_obs_map(mapping, specs, ["observation.state"], ["observation.state"])["observation.state"]
    assert source.topic == "task/observation" and source.names[-1] == "cos:block_pose.yaw"
    sim_names = ["agent_pos.x", "agent_pos.y", "block_pose.x", "block_pose.y", "block_pose.yaw",
                 "goal_pose.x", "goal_pose.y", "goal_pose.yaw"]
    msg = convert.joint_state(sim_names, [0.1, 0.2, 0.5, -0.1, 0.7, 0.55, 0.0, 0.78])
    value = lowdim_value(msg, source, PUSHT_STATE)
    assert value == pytest.approx([0.1, 0.2, 0.5, -0.1, np.sin(0.7), np.cos(0.7)])
    bad = {"observation.state": {"topic": "x", "names": ["a", "b"]}}
    with pytest.raises(ObsMapError, match="2 names for 6 dimensions"):
        parse_obs_map(bad, specs, ["observation.state"], ["observation.state"])
    bad = {"observation.state": {"topic": "x", "names": ["tan:a", *"bcdef"]}}
    with pytest.raises(ObsMapError, match="unknown transform 'tan:'"):
        parse_obs_map(bad, specs, ["observation.state"], ["observation.state"])


def test_worker_launch_is_a_valid_two_process_launch(tmp_path):
    ckpt = tmp_path / "ckpt"
    cfg = EvalConfig(checkpoint=ckpt, episodes=2, out=tmp_path)
    data = worker_launch(cfg, META, 0)
    launch = parse_launch(data, "test", check_imports=False)
    assert [p.name for p in launch.processes] == ["sim", "policy"]
    sim, policy = (p.nodes[0] for p in launch.processes)
    assert sim.parameters["sync_period_s"] == pytest.approx(0.1) and sim.parameters["realtime"] is False
    assert sim.parameters["cameras"] == ["fixed"]            # the video camera only: a low-dim policy
    assert policy.remap == {"action_chunk": "task/action_chunk"}
    assert policy.parameters["observations.observation.state.topic"] == "task/observation"
    with pytest.raises(EvalError, match="episodes must be >= 1"):
        EvalConfig(checkpoint=ckpt, episodes=0)
    with pytest.raises(CheckpointError, match="is not a policy checkpoint"):     # before anything is launched
        evaluate(cfg)
    assert _launched() == []


def _launched() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True)
            if "robot_stack.launch.process" in " ".join(p.cmdline())]


def test_end_to_end_eval_of_two_episodes(mlp_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(HERE)]))   # the child imports test_train
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    register_eval(sub)
    out = tmp_path / "eval"
    args = parser.parse_args(["eval", "--checkpoint", str(mlp_checkpoint), "--task", "push_t", "--episodes", "2",
                              "--workers", "1", "--seed0", "5", "--max-steps", "25", "--out", str(out),
                              "--import", "test_train", "--episode-timeout", "60"])
    assert args.func(args) == 0
    report = json.loads((out / "report.json").read_text())
    episodes = report["episodes"]
    assert [e["seed"] for e in episodes] == [5, 6]
    for e in episodes:
        assert not e["error"]
        assert e["success"] or e["steps"] >= 25
        assert 0.0 <= e["final_progress"] <= 1.0 and e["curve"]
        assert e["frames"] > 5 and Path(e["video"]).stat().st_size > 1000
        assert e["sync_timeouts"] == 0                     # the policy answered every lockstep boundary
    assert report["summary"]["episodes"] == 2 and report["policy"] == "test_mlp_bc"
    assert (out / "report.md").exists() and (out / "success.png").exists()
    assert sorted(p.name for p in (out / "videos").iterdir()) == ["ep_5.mp4", "ep_6.mp4"]
    assert _launched() == []


def test_lockstep_makes_an_episode_repeatable(mlp_checkpoint, tmp_path, monkeypatch):
    """The same seed twice (fresh launches) gives the same progress curve: the policy's latency does not matter."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(HERE)]))
    curves = []
    for run in range(2):
        cfg = EvalConfig(checkpoint=mlp_checkpoint, episodes=1, seed0=6, max_steps=20, out=tmp_path / str(run),
                         video=False, policy_modules=("test_train",), episode_timeout_s=60.0)
        (result,) = evaluate(cfg)
        assert result.seed == 6 and not result.error and result.sync_timeouts == 0
        curves.append(result.curve)
    assert curves[0] == curves[1] and len(curves[0]) >= 20
