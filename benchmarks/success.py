"""Policy success table: closed-loop rollouts of trained checkpoints on sim tasks, with Wilson intervals.

    python -m benchmarks.success TASK=CHECKPOINT [TASK=CHECKPOINT ...] [--episodes 20] [--seed0 1000]
                                 [--perturb] [--both] [--no-fast]

Each checkpoint runs `--episodes` seeded episodes (seeds seed0.., never the demonstrations' 0..99)
through `policies.rollout.rollout` (the serving schedule in-process: slow part every
`n_action_steps`, RDP's fast decoder re-decoding with the freshest force every control step).
`--both` runs each twice, without and with the task's perturbations. Prints a table and writes
`benchmarks/results/success.json`. Not part of `make bench` (it needs trained checkpoints, see
README "Policy results" for how they were trained).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np
import torch

from benchmarks.report import print_table, write_results


def evaluate_checkpoint(task_name: str, checkpoint: str, *, episodes: int, seed0: int, perturb: bool,
                        fast: bool = True) -> dict[str, Any]:
    from policies.base import load_policy
    from policies.eval_report import wilson_interval
    from policies.rollout import layout_for, rollout
    from sim.tasks import make_task

    policy = load_policy(checkpoint).eval()
    cameras = [n.rsplit(".", 1)[-1] for n in policy.image_features]      # render what the policy looks at
    sizes = {tuple(policy.features[n].shape[1:]) for n in policy.image_features}
    kwargs = {"cameras": tuple(cameras), "camera_size": sizes.pop()[::-1]} if cameras else {}
    layout = layout_for(task_name).with_cameras(*cameras)
    task = make_task(task_name, perturb=perturb, **kwargs)
    try:
        results = [rollout(policy, task, layout, seed, fast=fast)
                   for seed in range(seed0, seed0 + episodes)]
    finally:
        task.close()
    wins = sum(r.success for r in results)
    lo, hi = wilson_interval(wins, episodes)
    slow = np.concatenate([r.slow_ms for r in results])
    fast_ms = np.concatenate([r.fast_ms for r in results]) if any(r.fast_ms for r in results) else np.array([])
    return {"task": task_name, "policy": policy.name, "perturb": perturb, "episodes": episodes, "successes": wins,
            "success": wins / episodes, "wilson_lo": lo, "wilson_hi": hi,
            "mean_progress": float(np.mean([r.progress for r in results])),
            "slow_p50_ms": float(np.percentile(slow, 50)), "fast_p50_ms": float(np.percentile(fast_ms, 50))
            if fast_ms.size else None, "checkpoint": checkpoint}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.success", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", metavar="TASK=CHECKPOINT")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--seed0", type=int, default=1000)
    p.add_argument("--perturb", action="store_true")
    p.add_argument("--both", action="store_true", help="each checkpoint without and with perturbations")
    p.add_argument("--no-fast", dest="fast", action="store_false", help="hold RDP's slow-step decode")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    modes = [False, True] if args.both else [args.perturb]
    rows = []
    for run in args.runs:
        task_name, _, checkpoint = run.partition("=")
        for perturb in modes:
            rows.append(evaluate_checkpoint(task_name, checkpoint, episodes=args.episodes, seed0=args.seed0,
                                            perturb=perturb, fast=args.fast))
    print_table("Closed-loop success (Wilson 95% interval)", rows,
                ["task", "policy", "perturb", "successes", "episodes", "success", "wilson_lo", "wilson_hi",
                 "mean_progress", "slow_p50_ms", "fast_p50_ms"])
    write_results("success", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
