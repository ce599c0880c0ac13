"""`robot-stack eval`: Wilson interval, reports from fake results, the observation map for the sim's
task topics, the driver's force / command recording fed known messages, and end-to-end runs (a tiny
MLP trained on the push_t demos, 2 episodes, 1 worker, sim + policy server processes in lockstep;
one trained briefly on wipe demos, whose force and smoothness then show on the sim side of
`eval-compare`) that check the pipeline, not the success rate.
The tiny push_t MLP checkpoint is conftest.py's `mlp_checkpoint`."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import psutil
import pytest
from test_train import MlpBC  # noqa: F401  (importing MlpBC registers test_mlp_bc)

from policies.base import CheckpointError, FeatureSpec, read_checkpoint_meta
from policies.eval_cli import register_eval
from policies.eval_driver import STATUS, EpisodeResult, EvalDriver
from policies.eval_report import summary, wilson_interval, write_report
from policies.evaluate import EvalConfig, EvalError, default_obs_map, evaluate, worker_launch
from policies.obs_buffer import ObsMapError, lowdim_value, parse_obs_map
from policies.paired_report import compare_dirs
from policies.server import action_chunk_msg
from robot_stack import convert, messages
from robot_stack.clock import NS, Time
from robot_stack.context import Context
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


def _status(seed: int, steps: int, elapsed_s: float, reset_ns: int):
    values = {"seed": seed, "progress": 0.0, "success": False, "elapsed_steps": steps, "elapsed_s": elapsed_s,
              "reset_ns": reset_ns, "sync_timeouts": 0}
    return messages.make(STATUS, message="running", values=[messages.make("diagnostic_msgs/msg/KeyValue", key=k,
                                                                           value=str(v)) for k, v in values.items()])


def _wrench(fz_xy: tuple[float, float, float], t_s: float):
    return convert.wrench([*fz_xy, 9.0, 9.0, 9.0], stamp=Time(round(t_s * NS)))   # torques never count


def test_driver_records_the_episodes_commands_and_tared_force(tmp_path):
    """Known chunks (x = t^3, y = 2t at 10 Hz: squared jerk 36 and 0) and wrench samples, with stale
    ones before the episode's start (reset at 10 s) and after its end (1.5 s later), in sim time."""
    ctx = Context("inproc")
    driver = EvalDriver(0, max_steps=15, control_hz=10.0, video_dir=None, action_dt_s=0.1, context=ctx)
    try:
        driver.start(7)
        driver._on_chunk(action_chunk_msg(np.full((4, 2), 1e3), ["x", "y"], 9_600_000_000, 0.1, 9_600_000_000, "p"))
        driver._on_wrench(_wrench((0.0, 0.0, 500.0), 9.9))
        driver._on_status(_status(7, 0, 0.0, 10 * NS))                     # the episode starts at 10 s
        for k in range(4):                                                 # obs at 10.0, 10.4, ...: 6 steps each
            t = 0.4 * k + 0.1 * np.arange(6)
            t0 = round((10.0 + 0.4 * k) * NS)
            driver._on_chunk(action_chunk_msg(np.stack([t**3, 2 * t], axis=1), ["x", "y"], t0, 0.1, t0, "p"))
        for xyz, t_s in (((0.0, 0.0, 5.0), 10.0), ((3.0, 4.0, 5.0), 10.1), ((0.0, 0.0, 17.0), 10.2),
                         ((0.0, 0.0, 900.0), 11.6)):                       # the last one is after the end
            driver._on_wrench(_wrench(xyz, t_s))
        driver._on_status(_status(7, 15, 1.5, 10 * NS))                    # max_steps: the end, at 11.5 s
        driver._on_chunk(action_chunk_msg(np.zeros((4, 2)), ["x", "y"], 11_600_000_000, 0.1, 11_600_000_000, "p"))
        ep = driver.poll(60.0)
    finally:
        driver.destroy_node()
        ctx.shutdown()
    t = 0.1 * np.arange(18)                  # 0 .. 1.7 s: the last chunk in the episode runs to its end (as on a robot)
    assert (ep.seed, ep.steps, ep.commands, ep.force_samples) == (7, 15, 4, 3)
    assert ep.mean_squared_jerk == pytest.approx((36.0 + 0.0) / 2)
    assert ep.mean_abs_delta == pytest.approx((np.mean(np.diff(t**3)) + 0.2) / 2)
    assert ep.force_mean_n == pytest.approx((0.0 + 5.0 + 12.0) / 3) and ep.force_max_n == pytest.approx(12.0)
    data = write_report([ep], tmp_path, {"policy": "p", "task": "wipe"})
    assert data["summary"]["force_n"] == {"episodes": 1, "mean": pytest.approx(17 / 3), "max": pytest.approx(12.0)}
    assert data["summary"]["smoothness"]["mean_squared_jerk"] == pytest.approx(18.0)
    md = (tmp_path / "report.md").read_text()
    assert "contact force |F| (N): mean 5.67, max 12.00 (1 episodes)" in md and "| 12.00 | 18 |" in md


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
        assert e["commands"] >= 2 and np.isfinite([e["mean_squared_jerk"], e["mean_abs_delta"]]).all()
        assert e["force_samples"] > 0                      # push_t's Panda has the wrist F/T too
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
                         video=False, policy_modules=("test_train",), episode_timeout_s=60.0, wrench_topic="")
        (result,) = evaluate(cfg)
        assert result.seed == 6 and not result.error and result.sync_timeouts == 0
        assert result.force_samples == 0 and result.force_max_n is None      # no wrench topic: no force
        assert result.mean_squared_jerk is not None
        curves.append(result.curve)
    assert curves[0] == curves[1] and len(curves[0]) >= 20


def _train_on_wipe(root, name, policy):
    """`name` trained 20 steps on two 40-step scripted wipe demos (state + tared wrist wrench -> ee_x/y/z):
    a policy that runs, not one that wipes."""
    import torch

    from data.store import EpisodeStore
    from policies.rollout import layout_for, record_expert
    from policies.train import Trainer
    from policies.train_config import RunConfig, TrainConfig
    from sim.tasks import make_task

    layout, store = layout_for("wipe"), EpisodeStore.create(root / "store")
    task = make_task("wipe", max_steps=40)
    try:
        record_expert(task, store, layout, range(2))
    finally:
        task.close()
    features = {n: {"stream": f.stream, "field": f.field, "kind": f.kind} for n, f in layout.features().items()}
    policy = {"obs": ["observation.state", "observation.wrench"], "n_obs": 2, "horizon": 8, "n_action_steps": 4,
              "obs_rate": 20.0, "action_rate": 20.0, "slow_hz": 5.0, **policy}
    train = TrainConfig(steps=20, batch_size=16, lr=3e-3, warmup_steps=2, val_fraction=0.0, log_every=10,
                        checkpoint_every=1000, num_workers=0, seed=0, device="cpu")
    torch.set_num_threads(2)
    trainer = Trainer(name, store, RunConfig(policy=policy, features=features, train=train), out=root / "train",
                      quiet=True)
    try:
        trainer.fit()
    finally:
        trainer.close()
    return root / "train" / "checkpoints" / "last"


@pytest.fixture(scope="module")
def wipe_checkpoint(tmp_path_factory):
    return _train_on_wipe(tmp_path_factory.mktemp("wipe"), "test_mlp_bc", {"extra": {"hidden": 32}})


def test_rdp_eval_decodes_at_every_control_step(tmp_path):
    """An RDP checkpoint through `robot-stack eval`: lockstep at the control rate, the latent every
    n_action_steps, the fast decoder at every step (one chunk per step answering it, no sync timeouts)."""
    ckpt = _train_on_wipe(tmp_path / "rdp", "rdp", {
        "fast_obs": ["observation.wrench"], "latent_dim": 4, "downsample": 4, "encoder_width": 16, "decoder_width": 16,
        "fast_embed": 8, "denoiser_width": 32, "denoiser_depth": 1, "train_timesteps": 10, "inference_steps": 2})
    launch = worker_launch(EvalConfig(checkpoint=ckpt, task="wipe", video=False), read_checkpoint_meta(ckpt), 0)
    sim, server = (launch["processes"][p]["nodes"][0]["parameters"] for p in ("sim", "policy"))
    assert sim["sync_period_s"] == pytest.approx(1 / 20.0) and server["reactive"] and server["mode"] == "chunk"
    cfg = EvalConfig(checkpoint=ckpt, task="wipe", episodes=1, seed0=2, max_steps=24, out=tmp_path / "eval",
                     video=False, episode_timeout_s=60.0)
    (result,) = evaluate(cfg)
    assert not result.error and result.sync_timeouts == 0 and result.steps >= 24
    assert result.commands >= 20                          # one chunk per 20 Hz control step (24+ steps)
    assert result.force_samples > 0 and result.mean_squared_jerk is not None
    assert _launched() == []


def test_wipe_eval_records_force_and_smoothness_for_eval_compare(wipe_checkpoint, tmp_path, monkeypatch):
    """A wipe eval (default observation map, lockstep) records the sim's wrist force and the policy's
    commands per episode; `eval-compare` then shows them in the sim column instead of n/a."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(HERE)]))
    parser = argparse.ArgumentParser()
    register_eval(parser.add_subparsers())
    out = tmp_path / "sim"
    args = parser.parse_args(["eval", "--checkpoint", str(wipe_checkpoint), "--task", "wipe", "--episodes", "1",
                              "--seed0", "3", "--max-steps", "30", "--no-video", "--out", str(out),
                              "--import", "test_train", "--episode-timeout", "60"])
    assert args.func(args) == 0
    (e,) = json.loads((out / "report.json").read_text())["episodes"]
    assert not e["error"] and e["sync_timeouts"] == 0 and e["steps"] >= 30
    assert e["force_samples"] > 0 and e["commands"] >= 2
    metrics = [e[k] for k in ("force_mean_n", "force_max_n", "mean_squared_jerk", "mean_abs_delta")]
    assert all(m is not None for m in metrics) and np.isfinite(metrics).all()
    assert 0.0 <= e["force_mean_n"] <= e["force_max_n"]
    real = [EpisodeResult(seed=0, worker=0, success=True, time_to_success_s=3.0, force_samples=10,
                          force_mean_n=2.0, force_max_n=3.0, mean_squared_jerk=1.0, mean_abs_delta=0.5)]
    write_report(real, tmp_path / "real", {"policy": "test_mlp_bc", "task": "robot.yaml"})
    data = compare_dirs(out, tmp_path / "real", tmp_path / "paired")
    sim = data["sides"]["sim"]["summary"]
    assert sim["force_n"]["max"] == pytest.approx(e["force_max_n"])
    assert sim["smoothness"]["mean_squared_jerk"] == pytest.approx(e["mean_squared_jerk"])
    md = (tmp_path / "paired" / "paired_report.md").read_text()
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in md.splitlines() if line.startswith("| ")]
    sim_column = {row[0]: row[1] for row in cells if len(row) == 3}          # the metrics table: metric, sim, real
    for name in ("contact force mean (N)", "contact force max (N)", "mean squared jerk", "mean abs Δaction per step"):
        assert sim_column[name] != "n/a" and float(sim_column[name]) >= 0.0, name
    assert _launched() == []
