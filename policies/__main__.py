"""`robot-stack train` (and `python -m policies train`): train a policy on a dataset.

    robot-stack train --policy dp --dataset datasets/push_t --config pusht_lowdim --out runs/dp_pusht
    robot-stack train ... --resume                       # continue out/checkpoints/last
    robot-stack train ... --set train.lr=3e-4 --set policy.horizon=8
    torchrun --nproc-per-node 4 -m policies train ...    # DDP: one process per GPU (gloo on CPU)

`--config` is a YAML file or the name of a shipped config (policies/configs/<name>.yaml); see
`policies.train_config` for its format. `--import MODULE` imports modules that register extra policies.
Registered through the `robot_stack.cli` entry-point group.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path

CONFIG_DIR = Path(__file__).parent / "configs"


def register(subparsers) -> None:
    train = subparsers.add_parser("train", help="train a policy (dp, carp, rdp) on a dataset; torchrun for DDP")
    train.add_argument("--policy", required=True, help="policy name (dp, carp, rdp, ...)")
    train.add_argument("--dataset", required=True, help="episode store or LeRobot v3 directory")
    train.add_argument("--config", default=None, help="YAML file or shipped config name (e.g. pusht_lowdim)")
    train.add_argument("--out", default=None,
                       help="output directory (default: train.out, else runs/<policy>_<dataset>)")
    train.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last")
    train.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. train.steps=500 (repeatable)")
    train.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                       help="import a module that registers extra policies (repeatable)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=train_command)
    from policies.serve_cli import register_serve

    register_serve(subparsers)
    from policies.eval_cli import register_eval

    register_eval(subparsers)
    from policies.demo_cli import register_demo

    register_demo(subparsers)
    from policies.paired_cli import register_paired
    register_paired(subparsers)


def resolve_config(name: str | None) -> Path | None:
    from policies.train_config import TrainConfigError

    if name is None:
        return None
    path = Path(name)
    if path.exists():
        return path
    shipped = CONFIG_DIR / f"{name}.yaml"
    if shipped.exists():
        return shipped
    known = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
    raise TrainConfigError(name, "--config", f"no such file, nor a shipped config (shipped: {known})")


def train_command(args: argparse.Namespace) -> int:
    from policies.train import Trainer
    from policies.train_config import load_run_config

    for module in args.imports:
        importlib.import_module(module)
    run = load_run_config(resolve_config(args.config), args.sets)
    trainer = Trainer(args.policy, args.dataset, run, out=args.out, resume=args.resume, quiet=args.quiet)
    try:
        result = trainer.fit()
    finally:
        trainer.close()
    if trainer.dist.main:
        best = "n/a" if result["best"] == float("inf") else f"{result['best']:.5g}"
        print(f"trained {args.policy} for {result['step']} steps ({result['epoch']} epochs); best loss {best}; "
              f"checkpoints in {result['out']}/checkpoints (best, last)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m policies", description="robot-stack policies")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s] [%(name)s] %(message)s")
    from robot_stack.cli.main import dispatch

    return dispatch(args)


if __name__ == "__main__":
    sys.exit(main())
