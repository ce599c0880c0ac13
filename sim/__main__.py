"""`python -m sim run [--task push_t] [--robot KIND] [--gui] [--realtime/--fast] [--duration S]`: one SimNode.

`python -m sim tasks` lists the tasks (robot, action, observations). Both are also
`robot-stack sim run` / `robot-stack sim tasks`.

Ctrl-C (or SIGTERM) stops it cleanly. `--duration` is in seconds of sim time (in `--fast` mode that
is reached sooner than on the wall clock).
"""

from __future__ import annotations

import argparse
import logging
import math
import signal
import sys

from robot_stack.context import Context
from robot_stack.executor import Executor


def _add_run(sub) -> None:
    run_p = sub.add_parser("run", help="run a simulated robot node until Ctrl-C (or --duration)")
    run_p.add_argument("--task", default="", help="task scene (push_t, peg_insert, ...; see `sim tasks`)")
    run_p.add_argument("--seed", type=int, default=0, help="the task's first episode seed (default 0)")
    run_p.add_argument("--randomize", action="store_true", help="domain randomization on the task")
    run_p.add_argument("--perturb", action="store_true", help="the task's mid-episode perturbation on")
    run_p.add_argument("--robot", default="", help="robot kind (default: the task's, else sim_panda)")
    run_p.add_argument("--tactile", action="store_true", help="publish the robot's tactile pads")
    run_p.add_argument("--gui", action="store_true", help="open pybullet's GUI window")
    pace = run_p.add_mutually_exclusive_group()
    pace.add_argument("--realtime", dest="realtime", action="store_true", default=True,
                      help="pace physics to wall time (default)")
    pace.add_argument("--fast", dest="realtime", action="store_false", help="step as fast as possible")
    run_p.add_argument("--duration", type=float, default=math.inf, help="stop after S seconds of sim time")
    run_p.add_argument("--cameras", default="fixed,wrist", help="comma-separated cameras (fixed, wrist; '' for none)")
    run_p.add_argument("--transport", default=None, help="transport (default: $ROBOT_STACK_TRANSPORT or dds)")
    run_p.add_argument("--name", default="sim", help="node name (default: sim)")
    run_p.set_defaults(func=run)


def _add_tasks(sub) -> None:
    tasks_p = sub.add_parser("tasks", help="list the simulated tasks")
    tasks_p.set_defaults(func=list_tasks)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sim", description="Simulated robots for robot-stack.")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run(sub)
    _add_tasks(sub)
    return parser


def register(subparsers) -> None:
    """`robot-stack sim ...` (found through the `robot_stack.cli` entry-point group)."""
    sim = subparsers.add_parser("sim", help="simulated robots and tasks (pybullet)")
    sub = sim.add_subparsers(dest="sim_command", required=True, metavar="COMMAND")
    _add_run(sub)
    _add_tasks(sub)


def list_tasks(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from sim.gym_env import ENV_IDS
    from sim.tasks import available_tasks, task_class

    table = Table("task", "gymnasium id", "robot", "physics / control Hz", "action")
    for name in available_tasks():
        cls = task_class(name)
        cfg = cls.config_class()
        table.add_row(name, ENV_IDS.get(name, ""), cfg.robot, f"{cfg.physics_hz} / {cfg.control_hz:g}",
                      ", ".join(cls(cfg).action_spec().names))   # constructing a task does no I/O
    Console().print(table)
    return 0


def run(args: argparse.Namespace) -> int:
    from sim.node import SimNode

    params = {
        "robot": args.robot, "gui": args.gui, "realtime": args.realtime, "tactile": args.tactile,
        "cameras": [c for c in args.cameras.split(",") if c],
        "task": args.task, "seed": args.seed, "randomize": args.randomize, "perturb": args.perturb,
    }
    executor = Executor()
    with Context(args.transport) as context:
        node = SimNode(node_name=args.name, context=context, parameter_overrides=params)
        executor.add_node(node)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: executor.shutdown())
        try:
            executor.spin_until(lambda: node.sim_time.seconds >= args.duration, math.inf)
        finally:
            executor.remove_node(node)
            node.destroy_node()
        logging.getLogger("sim").info(f"stopped at sim time {node.sim_time.seconds:.3f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
