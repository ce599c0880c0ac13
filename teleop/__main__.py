"""`robot-stack teleop --config FILE` (also `python -m teleop --config FILE`): the operator flow.

Starts the config's processes (`teleop.launch`: emulators, robot or simulator, teleop devices,
recorder) under the launch `Supervisor`, shows a live status line (`teleop.monitor`: dead-man /
engaged and why not, robot health, recorder state and episode, task progress, last episode event)
and stops everything cleanly on Ctrl-C, after `--duration`, or when a process exits.
`--check` validates the config (imports included) and prints the process layout.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

DESCRIPTION = ("Run a teleop config: emulated or real input devices, the robot or simulator, the recorder, with "
               "a live status line. Bundled configs: sim_exo_push_t, sim_glove_hand, sim_keyboard.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="teleop config (YAML), or the name of a bundled one")
    p.add_argument("--duration", type=float, metavar="S", help="stop everything cleanly after S seconds")
    p.add_argument("--no-recorder", action="store_true", help="leave the recorder out")
    p.add_argument("--stop-timeout", type=float, default=5.0, metavar="S",
                   help="how long a process gets to stop after SIGINT (default 5)")
    p.add_argument("--check", action="store_true", help="validate the config, print the process layout, exit")
    p.set_defaults(func=run)


def register(subparsers: argparse._SubParsersAction) -> None:
    """`robot-stack teleop ...` (found through the `robot_stack.cli` entry-point group)."""
    add_arguments(subparsers.add_parser(
        "teleop", help="teleoperate a robot or simulator and record episodes (exo, glove, keyboard, pedal...)",
        description=DESCRIPTION))


def run(args: argparse.Namespace) -> int:
    from teleop.launch import TeleopConfig

    config = TeleopConfig.load(args.config)
    launch = config.launch(recorder=not args.no_recorder)
    if args.check:
        print(f"{launch.source}: OK, transport {launch.transport}")
        for proc in launch.processes:
            print(f"  {proc.name}: " + ", ".join(f"{n.name} ({n.class_path})" for n in proc.nodes))
        return 0
    return operate(config, launch, args)


def operate(config, launch, args: argparse.Namespace) -> int:
    from rich.live import Live

    import robot_stack as rs
    from robot_stack.launch.supervisor import Outcome, Supervisor, make_console
    from teleop.monitor import TeleopMonitor

    console = make_console()
    supervisor = Supervisor(launch, stop_timeout=args.stop_timeout, console=console,
                            log_level=getattr(args, "log_level", "INFO"))
    recorder = config.recorder.name if config.recorder is not None and not args.no_recorder else ""
    deadline = None if args.duration is None else time.monotonic() + args.duration
    with rs.Context(launch.transport) as ctx:
        monitor = TeleopMonitor(config.node_names("devices"), config.node_names("robot"), recorder,
                                context=ctx, publish_stats=False)
        executor = rs.Executor()
        executor.add_node(monitor)
        try:
            with supervisor, Live(monitor.line(), console=console, refresh_per_second=4) as live:
                while True:
                    executor.spin_for(0.1)
                    outcome = supervisor.wait(0)
                    if outcome in (Outcome.SIGNAL, Outcome.CHILD_EXIT):
                        break
                    if deadline is not None and time.monotonic() >= deadline:
                        outcome = Outcome.DURATION
                        break
                    live.update(monitor.line())
                if outcome is not Outcome.CHILD_EXIT:
                    supervisor.say(f"{outcome.value}: stopping {len(supervisor.children)} process(es)")
        finally:
            monitor.destroy_node()
    return supervisor.exit_code(outcome)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m teleop", description=DESCRIPTION)
    parser.add_argument("--log-level", default="INFO", help="Python logging level (default INFO)")
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="[%(levelname)s] [%(name)s] %(message)s")
    from robot_stack.cli.main import dispatch

    return dispatch(args)


if __name__ == "__main__":
    sys.exit(main())
