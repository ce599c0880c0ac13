"""Paired sim / real evaluation: the report (`policies.paired_report`), the real-robot runner
(`policies.paired_eval`) and their CLI (`policies.paired_cli`).

The end-to-end test trains the test MLP (`test_train.MlpBC`) for a few steps on synthetic joint-space
episodes of the SO-101 (JointState `joint_states` -> `joint_commands`), runs `eval-real` against the
emulated SO-101 launch (plus an emulated F/T sensor on /wrench) with scripted scores, and pairs it
with a fabricated sim report through `eval-compare`.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
from pathlib import Path

import numpy as np
import psutil
import pytest
import yaml
from test_train import MlpBC  # noqa: F401  (importing MlpBC registers test_mlp_bc)

from policies.eval_report import wilson_interval, write_report
from policies.evaluate import EpisodeResult
from policies.paired_cli import TerminalScorer, register_paired, scorer_from_args
from policies.paired_eval import (
    POLICY_TOPIC,
    RealEvalConfig,
    RealEvalError,
    ScriptedScorer,
    episode_metrics,
    real_launch,
)
from policies.paired_report import (
    PairedReportError,
    command_trajectory,
    compare_dirs,
    force_stats,
    smoothness,
    write_paired_report,
)

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SO101_LAUNCH = ROOT / "drivers" / "configs" / "launch" / "so101_emulated.yaml"
SO101_JOINTS = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]


# --- the report ------------------------------------------------------------------------------------
def _sim_records() -> list[dict]:
    return [{"seed": 10 + k, "success": k < 8, "time_to_success_s": 2.0 + k if k < 8 else None}
            for k in range(10)]


def _real_records() -> list[dict]:
    rows = []
    for k in range(4):
        rows.append({"episode": k, "success": k == 0, "completion_time_s": 7.5 if k == 0 else 3.0,
                     "force_mean_n": [1.0, 2.0, 3.0, 6.0][k], "force_max_n": [2.0, 9.0, 4.0, 7.0][k],
                     "mean_squared_jerk": 4.0 * (k + 1), "mean_abs_delta": 0.1, "note": "slipped|twice" if k else ""})
    return rows


def test_smoothness_of_a_cubic_and_force_stats():
    dt = 0.1
    t = np.arange(12) * dt
    x = np.stack([t**3, 2 * t], axis=1)            # jerk 6 and 0; |dx| per step: varies, 0.2
    s = smoothness(x, dt)
    assert s["mean_squared_jerk"] == pytest.approx((36.0 + 0.0) / 2)
    assert s["mean_abs_delta"] == pytest.approx((np.mean(np.diff(t**3)) + 0.2) / 2)
    assert smoothness(x[:3], dt)["mean_squared_jerk"] is None
    with pytest.raises(PairedReportError):
        smoothness(x[:, 0], dt)
    assert force_stats([[3.0, 4.0, 0.0, 9, 9, 9], [0.0, 0.0, 12.0, 0, 0, 0]]) == {"force_mean_n": 8.5,
                                                                                   "force_max_n": 12.0}
    assert force_stats([]) == {"force_mean_n": None, "force_max_n": None}


def test_command_trajectory_skips_stale_steps_and_replaces_the_rest():
    ms = 1_000_000
    a = (0, 0, 100 * ms, np.array([[0.0], [1.0], [2.0], [3.0]]))          # steps at 0, 100, 200, 300 ms
    b = (150 * ms, 100 * ms, 100 * ms, np.array([[10.0], [11.0], [12.0]]))  # 100 ms is stale; replaces a at 150
    times, values = command_trajectory([b, a])
    assert times.tolist() == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert values[:, 0].tolist() == [0.0, 1.0, 11.0, 12.0]
    metrics = episode_metrics([(r, f, d, ("j",), x) for r, f, d, x in (a, b)] + [(400 * ms, 0, 0, ("k",), [[5.0]])],
                              [], 0.1)
    assert metrics["commands"] == 3 and metrics["force_mean_n"] is None      # the odd-named one is left out
    assert metrics["mean_abs_delta"] == pytest.approx((1 + 10 + 1) / 3)


def test_paired_report_numbers_and_files(tmp_path):
    data = write_paired_report(_sim_records(), _real_records(), tmp_path, {"checkpoint": "ckpt"})
    sim, real = data["sides"]["sim"]["summary"], data["sides"]["real"]["summary"]
    assert (sim["episodes"], sim["successes"], real["episodes"], real["successes"]) == (10, 8, 4, 1)
    assert sim["wilson95"] == pytest.approx(list(wilson_interval(8, 10)))
    assert sim["wilson95"] == pytest.approx([0.4902, 0.9433], abs=1e-4)   # Wilson (1927), 8/10 at 95 %
    assert real["wilson95"] == pytest.approx([0.0456, 0.6994], abs=1e-4)
    assert sim["completion_time_s"] == {"n": 8, "mean": pytest.approx(5.5), "median": pytest.approx(5.5)}
    assert real["completion_time_s"] == {"n": 1, "mean": 7.5, "median": 7.5}   # failures' times do not count
    assert sim["force_n"] is None and sim["smoothness"] is None
    assert real["force_n"] == {"episodes": 4, "mean": pytest.approx(3.0), "max": 9.0}
    assert real["smoothness"]["mean_squared_jerk"] == pytest.approx(10.0)
    rows = data["sides"]["sim"]["episodes"]
    assert rows[0]["episode"] == 10 and rows[9]["completion_time_s"] is None
    assert json.loads((tmp_path / "paired_report.json").read_text()) == json.loads(json.dumps(data))
    md = (tmp_path / "paired_report.md").read_text()
    assert "| success rate (Wilson 95%) | 80.0% (8/10) [49.0%, 94.3%] | 25.0% (1/4) [4.6%, 69.9%] |" in md
    assert "| contact force max (N) | n/a | 9.00 |" in md
    assert "| 9 | 19 | no |" in md and "slipped/twice" in md       # 10 rows: the longer side sets the count
    assert (tmp_path / "paired.png").stat().st_size > 5000


def test_compare_dirs_merges_reports_and_metrics(tmp_path):
    sim = [EpisodeResult(seed=s, worker=0, success=s != 2, steps=10, time_to_success_s=1.5) for s in range(3)]
    write_report(sim, tmp_path / "sim", {"policy": "test_mlp_bc", "task": "push_t", "checkpoint": "c"})
    real = [EpisodeResult(seed=k, worker=0, success=k == 1, time_to_success_s=4.0 if k == 1 else None)
            for k in range(2)]
    write_report(real, tmp_path / "real", {"policy": "test_mlp_bc", "task": "so101.yaml"})
    metrics = {"episodes": [{"seed": 1, "force_mean_n": 2.0, "force_max_n": 3.0, "mean_squared_jerk": 1.0,
                             "mean_abs_delta": 0.5, "note": "ok"}]}
    (tmp_path / "real" / "metrics.json").write_text(json.dumps(metrics))
    data = compare_dirs(tmp_path / "sim", tmp_path / "real", tmp_path / "paired")
    assert data["sides"]["sim"]["summary"]["successes"] == 2
    assert data["sides"]["sim"]["summary"]["completion_time_s"]["mean"] == 1.5
    real_rows = data["sides"]["real"]["episodes"]
    assert real_rows[1]["note"] == "ok" and real_rows[1]["force_max_n"] == 3.0 and real_rows[0]["force_max_n"] is None
    assert data["info"]["real launch"] == "so101.yaml"
    with pytest.raises(PairedReportError, match="cannot read"):
        compare_dirs(tmp_path / "sim", tmp_path / "nothing", tmp_path / "paired")


# --- scoring, launch, CLI --------------------------------------------------------------------------
def test_scripted_and_terminal_scorers(tmp_path):
    path = tmp_path / "scores.yaml"
    path.write_text(yaml.safe_dump({"episodes": [True, {"success": False, "note": "dropped"},
                                                 {"success": True, "time_s": 4}]}))
    scorer = scorer_from_args(["auto-file", str(path)])
    assert [scorer.score(k, {}).success for k in range(3)] == [True, False, True]
    assert scorer.score(1, {}).note == "dropped" and scorer.score(2, {}).time_s == 4.0
    with pytest.raises(RealEvalError, match="no outcome for episode 3"):
        scorer.score(3, {})
    with pytest.raises(RealEvalError, match="boolean 'success'"):
        ScriptedScorer([{"success": "yes"}])
    with pytest.raises(RealEvalError, match="--score"):
        scorer_from_args(["auto-file"])
    answers, said = iter(["maybe", "y", "soon", "6.5", "  fine "]), []
    score = TerminalScorer(ask=lambda _prompt: next(answers), say=said.append).score(0, {"duration_s": 20.0})
    assert (score.success, score.time_s, score.note) == (True, 6.5, "fine") and len(said) == 3
    answers = iter(["n", ""])
    assert TerminalScorer(ask=lambda _p: next(answers), say=lambda _s: None).score(1, {}).success is False


def test_real_launch_adds_the_gated_policy_server(tmp_path):
    cfg = RealEvalConfig(checkpoint=tmp_path / "ckpt", launch=SO101_LAUNCH, obs_map={"observation.state": "/js"},
                         policy_modules=("test_train",))
    launch = real_launch(cfg)
    assert [p.name for p in launch.processes] == ["bus", "arm", "eval_policy"]
    server = launch.process("eval_policy").nodes[0]
    assert server.remap == {"action_chunk": POLICY_TOPIC}
    assert server.parameters["observations.observation.state"] == "/js"
    assert server.parameters["policy_modules"] == ["test_train"]
    with pytest.raises(RealEvalError, match="episodes must be >= 1"):
        RealEvalConfig(checkpoint=tmp_path, launch=SO101_LAUNCH, episodes=0)
    inproc = tmp_path / "inproc.yaml"
    inproc.write_text(yaml.safe_dump({"transport": "inproc", "processes": {"a": {"nodes": [
        {"name": "x", "class": "robot_stack.demo_nodes:FakeArm"}]}}}))
    with pytest.raises(RealEvalError, match="transport 'inproc'"):
        real_launch(RealEvalConfig(checkpoint=tmp_path, launch=inproc))


def _cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register_paired(parser.add_subparsers())
    return parser.parse_args(argv)


def test_cli_arguments():
    args = _cli(["eval-real", "--checkpoint", "c", "--launch", "l.yaml", "--episodes", "3",
                 "--score", "auto-file", "s.yaml", "--no-home"])
    assert args.score == ["auto-file", "s.yaml"] and args.home is False and args.episode_s == 20.0
    args = _cli(["eval-compare", "a", "b", "--out", "o"])
    assert (args.sim_dir, args.real_dir, args.out) == (Path("a"), Path("b"), Path("o"))


# --- end to end ------------------------------------------------------------------------------------
def _joint_store(root: Path, episodes: int = 4, steps: int = 60):
    """Synthetic SO-101 joint-space demos at 10 Hz: slow sinusoids, the action leading the state by a step."""
    from data.store import EpisodeStore, StreamSpec
    from robot_stack import convert
    from robot_stack.clock import Time

    store = EpisodeStore.create(root)
    streams = [StreamSpec("joint_states", "/joint_states", "sensor_msgs/msg/JointState"),
               StreamSpec("joint_commands", "/joint_commands", "sensor_msgs/msg/JointState")]
    rng = np.random.default_rng(0)
    for _ in range(episodes):
        phase = rng.uniform(0, 2 * np.pi, len(SO101_JOINTS))
        writer = store.new_episode({"task": "so101_wave"}, streams)
        for k in range(steps):
            stamp = Time(int(k * 1e8))
            state = 0.2 * np.sin(0.5 * k * 0.1 + phase)
            action = 0.2 * np.sin(0.5 * (k + 1) * 0.1 + phase)
            writer.write("joint_states", convert.joint_state(SO101_JOINTS, state, stamp=stamp))
            writer.write("joint_commands", convert.joint_state(SO101_JOINTS, action, stamp=stamp))
        writer.commit(success=True)
    return store


@pytest.fixture(scope="module")
def joint_checkpoint(tmp_path_factory):
    import torch
    from test_train import POLICY

    from policies.train import Trainer
    from policies.train_config import RunConfig, TrainConfig

    root = tmp_path_factory.mktemp("paired")
    store = _joint_store(root / "store")
    features = {"observation.state": {"stream": "joint_states", "field": "position", "kind": "state"},
                "action": {"stream": "joint_commands", "field": "position", "kind": "action"}}
    train = TrainConfig(steps=20, batch_size=16, lr=3e-3, warmup_steps=2, val_fraction=0.25, log_every=10,
                        checkpoint_every=1000, num_workers=0, seed=1, device="cpu")
    torch.set_num_threads(2)
    trainer = Trainer("test_mlp_bc", store, RunConfig(policy=dict(POLICY), features=features, train=train),
                      out=root / "run", quiet=True)
    try:
        trainer.fit()
    finally:
        trainer.close()
    return root / "run" / "checkpoints" / "last"


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _test_launch(tmp_path: Path) -> Path:
    """The emulated SO-101 launch on a private pty link, with an emulated F/T sensor on /wrench."""
    data = yaml.safe_load(SO101_LAUNCH.read_text())
    link = str(tmp_path / "so101_pty")
    data["processes"]["bus"]["nodes"][0]["parameters"]["link"] = link
    data["processes"]["arm"]["nodes"][0]["parameters"]["port"] = link
    data["processes"]["arm"].pop("realtime", None)
    port = _free_udp_port()
    data["processes"]["bus"]["nodes"] += [
        {"name": "ft_emulator", "class": "drivers.ft_emulator:FTEmulatorNode",
         "parameters": {"port": port, "rate_hz": 200.0}},
        {"name": "ft_sensor", "class": "drivers.sensor_nodes:FTNode",
         "parameters": {"host": "127.0.0.1", "port": port, "rate_hz": 100.0, "watchdog_periods": 50}}]
    path = tmp_path / "so101_test.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.slow
def test_eval_real_on_the_emulated_so101_then_compare(joint_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), str(HERE)]))   # the child imports test_train
    scores = tmp_path / "scores.json"
    scores.write_text(json.dumps([{"success": True, "time_s": 1.2, "note": "clean"}, False]))
    real_dir = tmp_path / "real"
    args = _cli(["eval-real", "--checkpoint", str(joint_checkpoint), "--launch", str(_test_launch(tmp_path)),
                 "--episodes", "2", "--episode-s", "2", "--home-s", "0.5", "--score", "auto-file", str(scores),
                 "--import", "test_train", "--out", str(real_dir), "--startup-timeout", "60"])
    assert args.func(args) == 0
    report = json.loads((real_dir / "report.json").read_text())
    assert [e["seed"] for e in report["episodes"]] == [0, 1] and report["summary"]["successes"] == 1
    for e in report["episodes"]:
        assert not e["error"] and 1.9 < e["duration_s"] < 3.0
        assert e["commands"] >= 5                       # ~10 chunks a second were forwarded to the robot
        assert e["mean_squared_jerk"] is not None and e["mean_abs_delta"] > 0
        assert e["force_samples"] > 50 and e["force_max_n"] is not None
    assert (real_dir / "metrics.json").exists() and (real_dir / "report.md").exists()
    assert _launched() == []

    sim = [EpisodeResult(seed=s, worker=0, success=s < 2, steps=20, time_to_success_s=1.0 + s) for s in range(3)]
    write_report(sim, tmp_path / "sim", {"policy": "test_mlp_bc", "task": "push_t"})
    args = _cli(["eval-compare", str(tmp_path / "sim"), str(real_dir), "--out", str(tmp_path / "paired")])
    assert args.func(args) == 0
    paired = json.loads((tmp_path / "paired" / "paired_report.json").read_text())
    real = paired["sides"]["real"]
    assert real["summary"]["completion_time_s"] == {"n": 1, "mean": 1.2, "median": 1.2}
    assert real["summary"]["smoothness"]["episodes"] == 2 and real["summary"]["force_n"]["episodes"] == 2
    assert real["episodes"][0]["note"] == "clean"
    assert paired["sides"]["sim"]["summary"]["successes"] == 2
    assert (tmp_path / "paired" / "paired.png").exists() and (tmp_path / "paired" / "paired_report.md").exists()


def _launched() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True)
            if "robot_stack.launch.process" in " ".join(p.cmdline())]
