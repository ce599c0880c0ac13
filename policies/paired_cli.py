"""`robot-stack eval-real` and `robot-stack eval-compare`: paired sim / real evaluation.

    robot-stack eval-real --checkpoint CKPT --launch drivers/configs/launch/so101_emulated.yaml \\
        --episodes 10 [--episode-s 20] [--obs-map FILE] [--score operator | --score auto-file FILE] --out DIR
    robot-stack eval-compare SIM_DIR REAL_DIR --out DIR

`eval-real` runs fixed-duration episodes on a robot launch (`policies.paired_eval`) and asks the
operator at the terminal to score each one (`--score operator`, the default) or reads the outcomes
from a YAML/JSON file (`--score auto-file FILE`); it writes report.json/.md, success.png and
metrics.json under `--out`. `eval-compare` pairs a sim eval directory (`robot-stack eval`) with a
real one into paired_report.json/.md and paired.png (`policies.paired_report`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def register_paired(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval-real", help="evaluate a policy checkpoint on a robot launch, operator-scored episodes",
        description="Start a robot launch and the policy server on a private loopback DDS domain, run N "
        "fixed-duration episodes (the runner sends the robot home between them), record commands and "
        "/wrench, ask for each episode's outcome and write a report eval-compare can pair with a sim eval.")
    p.add_argument("--checkpoint", required=True, type=Path, help="checkpoint directory (policy.json + weights)")
    p.add_argument("--launch", required=True, type=Path, help="robot launch file (real drivers or emulators)")
    p.add_argument("--episodes", type=int, default=10, help="episodes (default 10)")
    p.add_argument("--episode-s", type=float, default=20.0, metavar="S", help="seconds per episode (20)")
    p.add_argument("--obs-map", type=Path, metavar="FILE", help="YAML: policy feature -> {topic, type, field, names}")
    p.add_argument("--score", nargs="+", default=["operator"], metavar="MODE",
                   help="'operator' (terminal prompt, default) or 'auto-file FILE' (YAML/JSON list of outcomes)")
    p.add_argument("--out", type=Path, default=Path("eval_real"), help="output directory (default ./eval_real)")
    p.add_argument("--device", default="cpu", help="torch device of the policy server")
    p.add_argument("--import", dest="policy_modules", action="append", default=[], metavar="MODULE",
                   help="import MODULE in the policy process first (policies registered elsewhere); repeatable")
    p.add_argument("--wrench-topic", default="/wrench", help="WrenchStamped topic for contact forces (/wrench)")
    p.add_argument("--no-home", dest="home", action="store_false",
                   help="do not move the robot to its start joints between episodes (the operator resets it)")
    p.add_argument("--home-s", type=float, default=2.0, metavar="S", help="duration of the move home (2)")
    p.add_argument("--domain", type=int, help="DDS domain id (default: derived from the process id)")
    p.add_argument("--startup-timeout", type=float, default=60.0, metavar="S", help="wall seconds to come up")
    p.set_defaults(func=run_eval_real)

    c = subparsers.add_parser(
        "eval-compare", help="pair a sim and a real evaluation into one side-by-side report",
        description="Read two evaluation output directories (report.json, and metrics.json when present) "
        "and write paired_report.json, paired_report.md and paired.png.")
    c.add_argument("sim_dir", type=Path, help="sim evaluation directory (robot-stack eval --out)")
    c.add_argument("real_dir", type=Path, help="real evaluation directory (robot-stack eval-real --out)")
    c.add_argument("--out", type=Path, default=Path("eval_paired"), help="output directory (default ./eval_paired)")
    c.set_defaults(func=run_eval_compare)


class TerminalScorer:
    """Asks the operator: success y/n, optional completion time and note. `ask`/`say` are injectable."""

    def __init__(self, ask: Callable[[str], str] = input, say: Callable[[str], None] = print):
        self.ask, self.say = ask, say

    def score(self, episode: int, info: dict[str, Any]) -> Any:
        from policies.paired_eval import Score

        self.say(f"episode {episode} done ({info.get('duration_s', 0.0):.1f} s, {info.get('commands', 0)} commands)")
        while (answer := self.ask("  success? [y/n] ").strip().lower()) not in ("y", "n", "yes", "no"):
            self.say("  please answer y or n")
        success = answer.startswith("y")
        time_s = None
        while success:
            text = self.ask("  completion time in s (Enter: unknown) ").strip()
            try:
                time_s = float(text) if text else None
                break
            except ValueError:
                self.say("  a number of seconds, or Enter")
        return Score(success, self.ask("  note (Enter: none) ").strip(), time_s)


def scorer_from_args(score: list[str]) -> Any:
    from policies.paired_eval import RealEvalError, ScriptedScorer

    if score == ["operator"]:
        return TerminalScorer()
    if len(score) == 2 and score[0] == "auto-file":
        return ScriptedScorer.from_file(Path(score[1]))
    raise RealEvalError(f"--score: expected 'operator' or 'auto-file FILE', got {' '.join(score)!r}")


def config_from_args(args: argparse.Namespace) -> Any:
    from policies.paired_eval import RealEvalConfig
    from policies.serve_cli import read_obs_map

    return RealEvalConfig(checkpoint=args.checkpoint, launch=args.launch, episodes=args.episodes,
                          episode_s=args.episode_s, out=args.out, device=args.device,
                          policy_modules=tuple(args.policy_modules), obs_map=read_obs_map(args.obs_map),
                          wrench_topic=args.wrench_topic, home=args.home, home_s=args.home_s, domain=args.domain,
                          startup_timeout_s=args.startup_timeout)


def run_eval_real(args: argparse.Namespace) -> int:
    from rich.console import Console

    from policies.paired_eval import evaluate_real, write_results

    cfg = config_from_args(args)
    scorer = scorer_from_args(args.score)
    console = Console(soft_wrap=True, highlight=False, markup=False, emoji=False)

    def progress(kind: str, what: Any) -> None:
        if kind == "status":
            console.print(f"eval-real: {what}")
        else:
            console.print(f"eval-real: episode {what.seed}: {'success' if what.success else 'failure'}")

    try:
        results = evaluate_real(cfg, scorer, console=console, log_level=getattr(args, "log_level", "WARNING"),
                                progress=progress)
    except KeyboardInterrupt:
        print("eval-real interrupted: all launched processes stopped", file=sys.stderr)
        return 130
    s = write_results(results, cfg)["summary"]
    lo, hi = s["wilson95"]
    console.print(f"success {s['successes']}/{s['episodes']} = {s['success_rate']:.1%} "
                  f"(Wilson 95% [{lo:.1%}, {hi:.1%}]); report in {cfg.out}/report.md")
    return 0


def run_eval_compare(args: argparse.Namespace) -> int:
    from policies.paired_report import compare_dirs

    data = compare_dirs(args.sim_dir, args.real_dir, args.out)
    sim, real = (data["sides"][s]["summary"] for s in ("sim", "real"))
    print(f"sim {sim['successes']}/{sim['episodes']} vs real {real['successes']}/{real['episodes']}; "
          f"report in {args.out}/paired_report.md")
    return 0
