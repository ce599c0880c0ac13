"""`robot-stack calibrate DEVICE --port P [--out FILE] [--non-interactive]` (also `python -m drivers`).

Interactive: torque off, the operator puts the device in its middle pose and confirms, then moves
every joint end to end while the ranges are recorded, and confirms. `--non-interactive`: the present
pose is home and the ranges are the motors' position-limit registers (scripts, tests, emulators).
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Callable

from rich.console import Console

from drivers.servo.calibration import NonInteractive, Prompt, calibrate, default_path
from drivers.servo.devices import DEVICES, device_class

console = Console(stderr=True)


class TerminalPrompt:
    """The operator on this terminal: Enter confirms."""

    def __init__(self, period_s: float = 0.05):
        self.period_s = period_s

    def confirm(self, message: str) -> None:
        console.print(f"[bold]{message}[/] (press Enter)")
        sys.stdin.readline()

    def record(self, message: str, sample: Callable[[], None]) -> None:
        console.print(f"[bold]{message}[/] (press Enter when done)")
        done = threading.Event()
        threading.Thread(target=lambda: (sys.stdin.readline(), done.set()), daemon=True).start()
        with console.status("recording ranges..."):
            while not done.wait(self.period_s):
                sample()
        sample()


def _add_calibrate(sub) -> None:
    p = sub.add_parser("calibrate", help="calibrate a servo device (homing offsets, ranges) into a YAML file")
    p.add_argument("device", choices=sorted(DEVICES), help="device kind")
    p.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyUSB0")
    p.add_argument("--out", default="",
                   help="calibration file (default: ~/.config/robot_stack/calibration/DEVICE.yaml)")
    p.add_argument("--baudrate", type=int, default=0, help="bus baud rate (default: the device's)")
    p.add_argument("--non-interactive", action="store_true",
                   help="present pose = home, ranges from the motors' position-limit registers")
    p.set_defaults(func=run_calibrate)


def run_calibrate(args: argparse.Namespace, prompt: Prompt | None = None) -> int:
    cls = device_class(args.device)
    config = cls.config_class()
    if args.baudrate:
        import dataclasses

        config = dataclasses.replace(config, baudrate=args.baudrate)
    device = cls.on_port(args.port, config)
    prompt = prompt or (NonInteractive() if args.non_interactive else TerminalPrompt())
    device.bus.connect()
    try:
        cal = calibrate(device.bus, args.device, [(j.name, j.id, j.drive_sign) for j in config.joints], prompt,
                        resolution=device.resolution, ranges_from_limits=args.non_interactive)
    finally:
        device.bus.disconnect()
    path = cal.save(args.out or default_path(args.device))
    console.print(f"calibration of {args.device} ({len(cal.joints)} joints) written to {path}")
    return 0


def register(subparsers) -> None:
    """`robot-stack calibrate ...` (found through the `robot_stack.cli` entry-point group)."""
    _add_calibrate(subparsers)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drivers", description="robot-stack hardware drivers")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_calibrate(sub)
    args = parser.parse_args(argv)
    from robot_stack.cli.main import dispatch

    return dispatch(args)


if __name__ == "__main__":
    sys.exit(main())
