"""`robot-stack demo [--out demo_out] [--policy dp|carp|rdp] [--episodes N] [--train-steps S]
[--eval-episodes M] [--workers K]`: teleop -> record -> export -> train -> serve -> evaluate in
simulation, with a progress display and `OUT/report.md` (see `policies.demo`). `make demo` runs it."""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path
from typing import Any


def register_demo(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo", help="the main job end to end in sim: teleop -> record -> train -> serve -> evaluate -> report",
        description="Record push_t demonstrations through the teleop target topic with a scripted operator, "
        "export them to LeRobot v3, train a policy, serve it and evaluate seeded episodes; writes OUT/report.md.")
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output directory (default ./demo_out)")
    p.add_argument("--policy", default="dp", help="dp (default), carp or rdp")
    p.add_argument("--episodes", type=int, default=30, help="demonstrations to record (30)")
    p.add_argument("--train-steps", type=int, default=2000, help="training steps (2000)")
    p.add_argument("--eval-episodes", type=int, default=10, help="evaluation episodes (10)")
    p.add_argument("--workers", type=int, default=2, help="parallel evaluation workers (2)")
    p.add_argument("--max-steps", type=int, default=300, help="task steps per episode, recorded or evaluated (300)")
    p.add_argument("--domain-base", type=int, help="DDS domain of the recording (evaluation: base+1..)")
    p.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from policies import demo

    cfg = demo.DemoConfig(out=args.out, policy=args.policy, episodes=args.episodes, train_steps=args.train_steps,
                          eval_episodes=args.eval_episodes, workers=args.workers, max_steps=args.max_steps,
                          domain_base=args.domain_base)
    if cfg.out.exists():
        shutil.rmtree(cfg.out)
    cfg.out.mkdir(parents=True)
    console = Console(soft_wrap=True, highlight=False, markup=False, emoji=False)
    wall: dict[str, float] = {}
    parts: dict[str, Any] = {"wall_s": wall}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as bar:
        t = time.monotonic()
        rec = bar.add_task("1/4 teleop + record", total=cfg.episodes)
        parts["record_status"] = demo.record(cfg, console, lambda n, text: bar.update(
            rec, completed=n, description=f"1/4 teleop + record: {text}"))
        bar.update(rec, completed=cfg.episodes)
        parts["recording"], parts["loops"] = demo.recording_counters(cfg), demo.loop_stats(cfg.out / "stats")
        wall["record"], t = time.monotonic() - t, time.monotonic()
        parts["lerobot"] = str(demo.export_lerobot(cfg))
        wall["export"], t = time.monotonic() - t, time.monotonic()
    console.print(f"2/4 training {cfg.policy} for {cfg.train_steps} steps on {parts['lerobot']}")
    parts["checkpoint"] = str(demo.train(cfg, Path(parts["lerobot"]), quiet=False))
    wall["train"], t = time.monotonic() - t, time.monotonic()
    with Progress(*columns, console=console) as bar:
        ev = bar.add_task("3/4 serve + evaluate", total=cfg.eval_episodes)
        wins = [0]

        def progress(kind: str, what: Any) -> None:
            if kind == "episode":
                wins[0] += bool(what.success)
                bar.update(ev, advance=1, description=f"3/4 serve + evaluate: {wins[0]} successes")

        parts["eval"] = demo.evaluate(cfg, Path(parts["checkpoint"]), console, progress)
    wall["evaluate"] = time.monotonic() - t
    report = demo.write_demo_report(cfg, parts)
    s = parts["eval"]["summary"]
    lo, hi = s["wilson95"]
    console.print(f"4/4 report: {report}\nsuccess {s['successes']}/{s['episodes']} = {s['success_rate']:.0%} "
                  f"(Wilson 95% [{lo:.0%}, {hi:.0%}]), mean final coverage {s['mean_final_progress']:.2f}")
    return 0
