"""Starts one OS process per launch-file process, streams their output, watches and stops them.

A child that exits is never restarted silently: the supervisor says which one and how it
ended, stops the others and fails. SIGINT/SIGTERM (or the end of `duration`) stop every child:
SIGINT, then SIGTERM after `stop_timeout`, then SIGKILL; a second Ctrl-C skips ahead a step.
Children run in their own process groups (a terminal Ctrl-C reaches the supervisor only, which
stops them in order) and die with the supervisor even when it is SIGKILLed (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import enum
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from rich.console import Console
from rich.text import Text

from robot_stack.launch.config import LaunchConfig, ProcessSpec

STYLES = ("cyan", "magenta", "green", "yellow", "blue", "bright_red", "bright_cyan", "bright_magenta")
POLL_INTERVAL = 0.05
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


class Outcome(enum.Enum):
    DURATION = "duration elapsed"
    SIGNAL = "stop requested"
    CHILD_EXIT = "a process exited"
    DONE = "done"


def make_console() -> Console:
    return Console(soft_wrap=True, highlight=False, markup=False, emoji=False)


def describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class OutputPump(threading.Thread):
    """Copies a child's output line by line to the console, prefixed `[label]`; keeps it if asked."""

    def __init__(self, label: str, stream: IO[bytes], console: Console, style: str, keep: list[str] | None = None):
        super().__init__(name=f"output-{label}", daemon=True)
        self.label, self.stream, self.console, self.style, self.keep = label, stream, console, style, keep

    def run(self) -> None:
        prefix = (f"[{self.label}] ", self.style)
        for raw in iter(self.stream.readline, b""):
            line = raw.decode(errors="replace").rstrip("\r\n")
            if self.keep is not None:
                self.keep.append(line)
            self.console.print(Text.assemble(prefix, line))
        self.stream.close()


@dataclass
class Child:
    spec: ProcessSpec
    popen: subprocess.Popen
    pump: OutputPump
    started: float = field(default_factory=time.monotonic)

    @property
    def name(self) -> str:
        return self.spec.name

    def running(self) -> bool:
        return self.popen.poll() is None

    def send(self, sig: int) -> None:
        """Signal the child's process group (the child and anything it started)."""
        if self.running():
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                pass


class Supervisor:
    """`with Supervisor(cfg) as sup: sup.wait(...)`, or `Supervisor(cfg).run(duration)` -> exit code."""

    def __init__(
        self,
        config: LaunchConfig,
        *,
        stop_timeout: float = 5.0,
        kill_timeout: float = 2.0,
        stats_dir: Path | None = None,
        log_level: str = "INFO",
        console: Console | None = None,
    ):
        self.config = config
        self.stop_timeout, self.kill_timeout = stop_timeout, kill_timeout
        self.stats_dir = stats_dir
        self.log_level = log_level
        self.console = console or make_console()
        self.children: list[Child] = []
        self.signals = 0
        self._wake = threading.Event()
        self._previous_handlers: dict[int, object] = {}

    # --- messages ----------------------------------------------------------------------------
    def say(self, message: str, style: str = "bold") -> None:
        self.console.print(Text.assemble(("[launch] ", style), message))

    # --- starting ----------------------------------------------------------------------------
    def start(self) -> None:
        self.say(f"{self.config.source}: {len(self.config.processes)} process(es)")
        if self.stats_dir is not None:
            Path(self.stats_dir).mkdir(parents=True, exist_ok=True)
        for i, spec in enumerate(self.config.processes):
            self.children.append(self._spawn(spec, STYLES[i % len(STYLES)]))

    def _spawn(self, spec: ProcessSpec, style: str) -> Child:
        cmd = [
            sys.executable, "-m", "robot_stack.launch.process", "--spec", spec.to_json(),
            "--parent-pid", str(os.getpid()), "--log-level", self.log_level,
        ]
        if self.stats_dir is not None:
            cmd += ["--stats-out", str(Path(self.stats_dir) / f"{spec.name}.json")]
        env = {**os.environ, "ROBOT_STACK_PROCESS": spec.name, "PYTHONUNBUFFERED": "1"}
        # The child starts with SIGINT/SIGTERM blocked (the mask survives exec) and unblocks them once its
        # handlers are in place: a stop request during its start-up waits instead of killing it mid-import.
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            popen = subprocess.Popen(
                cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                process_group=0,
            )
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        pump = OutputPump(spec.name, popen.stdout, self.console, style)
        pump.start()
        nodes = ", ".join(n.name for n in spec.nodes)
        rt = f", realtime priority {spec.realtime.priority}" if spec.realtime else ""
        self.say(f"started '{spec.name}' (pid {popen.pid}): {nodes} on {spec.transport}{rt}")
        return Child(spec, popen, pump)

    # --- signals -----------------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in STOP_SIGNALS:
            self._previous_handlers[sig] = signal.signal(sig, self._on_signal)

    def restore_signal_handlers(self) -> None:
        for sig, handler in self._previous_handlers.items():
            signal.signal(sig, handler)
        self._previous_handlers.clear()

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.signals += 1
        self._wake.set()

    def request_stop(self) -> None:
        """Make `wait` return Outcome.SIGNAL (thread-safe)."""
        self._on_signal(signal.SIGTERM, None)

    # --- watching ----------------------------------------------------------------------------
    def exited(self) -> list[Child]:
        return [c for c in self.children if not c.running()]

    def wait(self, timeout: float | None = None, until: Callable[[], bool] | None = None) -> Outcome:
        """Watch the children until `timeout`, a stop signal, a child's exit or `until()`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.signals:
                return Outcome.SIGNAL
            dead = self.exited()
            if dead:
                self._report_exits(dead)
                return Outcome.CHILD_EXIT
            if until is not None and until():
                return Outcome.DONE
            left = POLL_INTERVAL if deadline is None else min(POLL_INTERVAL, deadline - time.monotonic())
            if left <= 0:
                return Outcome.DURATION
            self._wake.wait(left)
            self._wake.clear()

    def _report_exits(self, dead: list[Child]) -> None:
        for child in dead:
            child.pump.join(timeout=1.0)  # let its last words (a traceback) print first
            self.say(
                f"process '{child.name}' {describe_exit(child.popen.returncode)} after "
                f"{time.monotonic() - child.started:.1f} s; not restarting, stopping the others",
                "bold red",
            )

    # --- stopping ----------------------------------------------------------------------------
    def stop(self) -> dict[str, int | None]:
        """Stop every running child (reverse start order): SIGINT, then SIGTERM, then SIGKILL."""
        stages = ((signal.SIGINT, self.stop_timeout), (signal.SIGTERM, self.kill_timeout),
                  (signal.SIGKILL, self.kill_timeout))
        for sig, timeout in stages:
            running = [c for c in reversed(self.children) if c.running()]
            if not running:
                break
            if sig != signal.SIGINT:
                names = ", ".join(f"'{c.name}'" for c in running)
                self.say(f"{names} still running: sending {sig.name}", "bold yellow")
            for child in running:
                child.send(sig)
            self._wait_for_exit(running, timeout)
        for child in self.children:
            child.pump.join(timeout=1.0)
        return {c.name: c.popen.returncode for c in self.children}

    def _wait_for_exit(self, children: list[Child], timeout: float) -> None:
        """Until they exit, `timeout` passes, or another stop signal asks to escalate."""
        signals_before = self.signals
        deadline = time.monotonic() + timeout
        while any(c.running() for c in children) and time.monotonic() < deadline:
            if self.signals != signals_before:
                return
            time.sleep(0.01)

    # --- all together --------------------------------------------------------------------------
    def __enter__(self) -> Supervisor:
        self.install_signal_handlers()
        try:
            self.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        try:
            self.stop()
        finally:
            self.restore_signal_handlers()

    def run(self, duration: float | None = None) -> int:
        """Start, watch until `duration`/signal/a child's exit, stop. 0 when all stopped cleanly."""
        with self:
            outcome = self.wait(duration)
            if outcome is not Outcome.CHILD_EXIT:
                self.say(f"{outcome.value}: stopping {len(self.children)} process(es)")
        return self.exit_code(outcome)

    def exit_code(self, outcome: Outcome) -> int:
        if outcome is Outcome.CHILD_EXIT:
            return 1
        unclean = [c for c in self.children if c.popen.returncode != 0]
        for child in unclean:
            self.say(f"process '{child.name}' {describe_exit(child.popen.returncode)} while stopping", "bold red")
        if not unclean:
            self.say("all processes stopped cleanly", "bold green")
        return 1 if unclean else 0
