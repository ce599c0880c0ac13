"""`robot-stack eval --ray`: seeds dealt to tasks, the task's plain-data config, the error without
Ray, and one run on a local Ray instance (2 CPUs, no dashboard): the tiny MLP checkpoint of
conftest.py, 2 episodes on 2 workers, each worker a Ray task."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import pytest
from test_eval import _launched

from policies.eval_cli import register_eval
from policies.eval_ray import config_from_dict, config_to_dict, evaluate_ray, worker_chunks
from policies.evaluate import EvalConfig, EvalError

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def test_seeds_are_dealt_round_robin_and_the_config_travels_as_plain_data():
    assert worker_chunks(list(range(5)), 2) == [[0, 2, 4], [1, 3]]
    assert worker_chunks([7], 3) == [[7]]                                       # no idle tasks
    cfg = EvalConfig(checkpoint=Path("ckpt"), out=Path("eval"), policy_modules=("m",), obs_map={"a": {"topic": "t"}})
    data = config_to_dict(cfg)
    assert json.loads(json.dumps(data)) == data
    back = config_from_dict(data)
    assert back.checkpoint == Path("ckpt").resolve() and back.out.is_absolute() and back.policy_modules == ("m",)


def test_without_ray_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(EvalError, match=r"pip install 'robot-stack\[ray\]'"):
        evaluate_ray(EvalConfig(checkpoint=Path("ckpt")))


@pytest.fixture
def local_ray(request):
    """A local Ray whose workers import test_train (the policy processes get `--import test_train`)."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'robot-stack[ray]')")
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)])}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
    request.addfinalizer(ray.shutdown)
    return ray


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_eval_runs_each_worker_as_a_ray_task(mlp_checkpoint, local_ray, tmp_path):
    parser = argparse.ArgumentParser()
    register_eval(parser.add_subparsers())
    out = tmp_path / "eval"
    args = parser.parse_args(["eval", "--checkpoint", str(mlp_checkpoint), "--episodes", "2", "--workers", "2",
                              "--seed0", "5", "--max-steps", "20", "--out", str(out), "--import", "test_train",
                              "--episode-timeout", "60", "--ray"])
    assert args.ray == "local"
    assert args.func(args) == 0
    report = json.loads((out / "report.json").read_text())
    episodes = report["episodes"]
    assert [(e["seed"], e["worker"]) for e in episodes] == [(5, 0), (6, 1)]      # one seed per task
    for e in episodes:
        assert not e["error"] and e["curve"] and (e["success"] or e["steps"] >= 20)
        assert Path(e["video"]).stat().st_size > 1000                           # written by the task
        assert e["commands"] >= 2 and e["mean_squared_jerk"] is not None        # the metrics come back too
    assert report["summary"]["episodes"] == 2 and report["policy"] == "test_mlp_bc"
    assert _launched() == []                   # every task stopped its sim and policy processes
