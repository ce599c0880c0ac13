"""`robot-stack eval --checkpoint CKPT --task push_t --episodes N --workers K [--seed0 S] [--perturb]
[--randomize] [--out DIR] [--max-steps M] [--ray [ADDRESS]]`: seeded sim episodes in parallel launches (see
`policies.evaluate` for the launch layout), then `out/report.json`, `out/report.md`, `out/success.png`
and `out/videos/ep_<seed>.mp4`. Ctrl-C stops every launched process. `--ray [ADDRESS]` runs the workers as
Ray tasks (`policies.eval_ray`).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any


def register_eval(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval", help="evaluate a policy checkpoint on seeded sim episodes (success rate, Wilson CI, videos)",
        description="Run N seeded episodes of a sim task with a policy checkpoint in K parallel workers "
        "(sim + policy server processes per worker, each on its own DDS domain, lockstep in fast mode) "
        "and write a JSON/markdown report, a progress plot and one video per episode.")
    p.add_argument("--checkpoint", required=True, type=Path, help="checkpoint directory (policy.json + weights)")
    p.add_argument("--task", default="push_t", help="sim task (default push_t)")
    p.add_argument("--episodes", type=int, default=10, help="episodes (seeds seed0 .. seed0+N-1)")
    p.add_argument("--workers", type=int, default=1, help="parallel sim + policy launches")
    p.add_argument("--seed0", type=int, default=0, help="first episode seed")
    p.add_argument("--perturb", action="store_true", help="task perturbations on (pushes, moving surfaces)")
    p.add_argument("--randomize", action="store_true", help="domain randomization on")
    p.add_argument("--out", type=Path, default=Path("eval"), help="output directory (default ./eval)")
    p.add_argument("--max-steps", type=int, default=300, help="task steps per episode before failure (300)")
    p.add_argument("--no-video", dest="video", action="store_false", help="do not record videos")
    p.add_argument("--device", default="cpu", help="torch device of the policy servers")
    p.add_argument("--obs-map", type=Path, metavar="FILE", help="YAML: policy feature -> {topic, type, field, names}")
    p.add_argument("--import", dest="policy_modules", action="append", default=[], metavar="MODULE",
                   help="import MODULE in the policy process first (policies registered elsewhere); repeatable")
    p.add_argument("--domain-base", type=int, help="DDS domain of worker 0 (worker k: base + k)")
    p.add_argument("--sync-timeout", type=float, default=5.0, metavar="S",
                   help="lockstep: wall seconds the sim waits for the policy before going on")
    p.add_argument("--episode-timeout", type=float, default=600.0, metavar="S", help="wall seconds per episode")
    p.add_argument("--wrench-topic", default="wrench", metavar="TOPIC",
                   help="the sim's WrenchStamped topic for contact forces (wrench; '' records none)")
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="run each worker as a Ray task: alone, on a new local Ray instance; with ADDRESS "
                   "(host:port, ray://host:port or auto), on that cluster (pip install 'robot-stack[ray]')")
    p.set_defaults(func=run_eval)


def config_from_args(args: argparse.Namespace) -> Any:
    from policies.evaluate import EvalConfig
    from policies.serve_cli import read_obs_map

    return EvalConfig(checkpoint=args.checkpoint, task=args.task, episodes=args.episodes, workers=args.workers,
                      seed0=args.seed0, perturb=args.perturb, randomize=args.randomize, out=args.out,
                      max_steps=args.max_steps, video=args.video, device=args.device,
                      policy_modules=tuple(args.policy_modules), obs_map=read_obs_map(args.obs_map),
                      domain_base=args.domain_base, sync_timeout_s=args.sync_timeout,
                      episode_timeout_s=args.episode_timeout, wrench_topic=args.wrench_topic)


def _raise_interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def run_eval(args: argparse.Namespace) -> int:
    """SIGTERM acts like Ctrl-C: every launched process is stopped (SIGINT first) before returning 130."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) if main else None
    try:
        return _run_eval(args)
    except KeyboardInterrupt:
        print("eval interrupted: all launched processes stopped", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run_eval(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from policies.eval_report import write_report
    from policies.evaluate import evaluate

    cfg = config_from_args(args)
    console = Console(soft_wrap=True, highlight=False, markup=False, emoji=False)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        total = bar.add_task(f"eval {cfg.task}", total=cfg.episodes)
        lines = [bar.add_task(f"  worker {k}", total=None) for k in range(cfg.workers)]
        wins = [0]

        def progress(kind: str, what: Any) -> None:
            if kind == "worker":
                k, text = what
                bar.update(lines[k], description=f"  worker {k}: {text}")
            else:
                wins[0] += bool(what.success)
                bar.update(total, advance=1, description=f"eval {cfg.task}: {wins[0]} successes")

        log_level = getattr(args, "log_level", "WARNING")
        if getattr(args, "ray", None) is not None:
            from policies.eval_ray import evaluate_ray

            results = evaluate_ray(cfg, args.ray, log_level=log_level, progress=progress)
        else:
            results = evaluate(cfg, console=console, log_level=log_level, progress=progress)
    info = report_info(cfg)
    data = write_report(results, cfg.out, info)
    s = data["summary"]
    lo, hi = s["wilson95"]
    console.print(f"success {s['successes']}/{s['episodes']} = {s['success_rate']:.1%} "
                  f"(Wilson 95% [{lo:.1%}, {hi:.1%}]); report in {cfg.out}/report.md")
    return 0


def report_info(cfg: Any) -> dict[str, Any]:
    from policies.base import read_checkpoint_meta

    meta = read_checkpoint_meta(cfg.checkpoint)
    seeds = cfg.seeds
    return {"policy": meta["policy"], "checkpoint": str(Path(cfg.checkpoint).resolve()), "task": cfg.task,
            "seeds": f"{seeds[0]}..{seeds[-1]}", "workers": cfg.workers, "perturb": cfg.perturb,
            "randomize": cfg.randomize, "max_steps": cfg.max_steps}
