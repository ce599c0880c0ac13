"""One launched OS process: `python -m robot_stack.launch.process --spec JSON`.

Builds the process's nodes in one Context (its transport) and one Executor, applies the
`realtime` settings, freezes the GC generations created by set-up, and spins. SIGINT/SIGTERM
stop it cleanly (exit 0); a node that raises is named in the log and the process exits 1.
The supervisor starts these; `PR_SET_PDEATHSIG` makes them die with it even if it is SIGKILLed.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import difflib
import gc
import json
import logging
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from types import TracebackType
from typing import Any

from robot_stack import messages
from robot_stack.context import Context
from robot_stack.errors import ConfigError
from robot_stack.executor import Executor
from robot_stack.launch.config import NodeSpec, ProcessSpec, RealtimeSpec
from robot_stack.node import Node

_PR_SET_PDEATHSIG = 1
EXIT_OK, EXIT_FAILED = 0, 1
log = logging.getLogger("robot_stack.launch.process")


def set_parent_death_signal(sig: int = signal.SIGTERM) -> bool:
    """Ask Linux to send `sig` to this process when its parent dies; False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, ctypes.c_ulong(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def apply_realtime(spec: RealtimeSpec | None) -> str:
    """CPU affinity and SCHED_FIFO for the calling thread, or a warning saying why not.

    Returns what was applied ("" for nothing), e.g. "SCHED_FIFO 80" or "normal (SCHED_FIFO 80 not permitted)".
    """
    if spec is None:
        return ""
    if spec.cpus:
        try:
            os.sched_setaffinity(0, spec.cpus)
        except OSError as exc:
            log.warning(f"realtime: cannot pin to CPUs {list(spec.cpus)} ({exc}); continuing unpinned")
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(spec.priority))
    except (OSError, AttributeError) as exc:
        log.warning(
            f"realtime: SCHED_FIFO priority {spec.priority} not permitted ({exc}); needs CAP_SYS_NICE "
            "or an rtprio limit (ulimit -r); continuing with normal scheduling"
        )
        return f"normal (SCHED_FIFO {spec.priority} not permitted)"
    log.info(f"realtime: SCHED_FIFO priority {spec.priority}")
    return f"SCHED_FIFO {spec.priority}"


class ProcessRunner:
    """The nodes of one process, their context and executor."""

    def __init__(self, spec: ProcessSpec):
        self.spec = spec
        self.executor = Executor()
        self.context: Context | None = None
        self.nodes: list[tuple[NodeSpec, Node]] = []
        self.spin_seconds = 0.0
        self.stop_requested = False
        self.scheduler = ""  # what `apply_realtime` achieved

    def request_stop(self, signum: int | None = None, _frame: Any = None) -> None:
        """Signal handler (main thread): make `spin` return."""
        if signum is not None and not self.stop_requested:
            log.info(f"{signal.Signals(signum).name} received, stopping")
        self.stop_requested = True
        self.executor.shutdown()

    def build(self) -> None:
        self.context = Context(self.spec.transport)
        for node_spec in self.spec.nodes:
            node = self._build_node(node_spec)
            self.nodes.append((node_spec, node))
            self.executor.add_node(node)

    def _build_node(self, node_spec: NodeSpec) -> Node:
        cls = node_spec.load_class()
        node = cls(
            node_name=node_spec.name,
            namespace=node_spec.namespace,
            context=self.context,
            parameter_overrides=dict(node_spec.parameters),
            remappings=dict(node_spec.remap),
        )
        unknown = node.parameters.undeclared_overrides()
        if unknown:
            node.destroy_node()
            declared = sorted(node.parameters.as_dict())
            close = difflib.get_close_matches(unknown[0], declared, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (declared: {', '.join(declared)})"
            raise ConfigError(
                self.spec.source, node_spec.where,
                f"field 'parameters': {cls.__name__} declares no parameter '{unknown[0]}'{hint}",
            )
        return node

    def warm_up(self) -> None:
        """Pay first-use costs (message definitions compiled on first use, the stats message)
        before the loops start, so they do not land on the first ticks."""
        for _spec, node in self.nodes:
            for endpoint in (*node.publishers, *node.subscriptions):
                messages.fields(endpoint.type_name)
            if node.stats is not None:
                node.stats.build()

    def spin(self) -> int:
        """Spin until stopped; EXIT_FAILED (after logging which node raised) on an exception."""
        start = time.perf_counter()
        try:
            if not self.stop_requested:
                self.executor.spin()
            return EXIT_OK
        except Exception as exc:  # noqa: BLE001 - any node error ends the process, with its name
            who = self._node_in_traceback(exc.__traceback__)
            log.error(f"node {who} raised {type(exc).__name__}: {exc}\n{traceback.format_exc().rstrip()}")
            return EXIT_FAILED
        finally:
            self.spin_seconds = time.perf_counter() - start

    def _node_in_traceback(self, tb: TracebackType | None) -> str:
        """The node whose method is on the stack (outermost first), as `'name' (class)`."""
        ours = {id(node): spec for spec, node in self.nodes}
        while tb is not None:
            spec = ours.get(id(tb.tb_frame.f_locals.get("self")))
            if spec is not None:
                return f"'{spec.name}' ({spec.class_path}, {spec.where})"
            tb = tb.tb_next
        return "(unknown: the failing callback is not a node method)"

    def close(self) -> None:
        for spec, node in reversed(self.nodes):
            self.executor.remove_node(node)
            try:
                node.destroy_node()
            except Exception:  # noqa: BLE001 - keep destroying the others, say which failed
                log.exception(f"node '{spec.name}': destroy_node failed")
        if self.context is not None:
            self.context.shutdown()

    def rate_report(self) -> dict[str, Any]:
        """Timer statistics of every node (the 1 Hz `_stats` heartbeat timers left out)."""
        nodes = {
            node.get_fully_qualified_name(): {
                "class": spec.class_path,
                "timers": [dataclasses.asdict(t.stats.summary()) for t in node.timers if t.name != "_stats"],
            }
            for spec, node in self.nodes
        }
        return {
            "process": self.spec.name, "pid": os.getpid(), "transport": self.spec.transport,
            "scheduler": self.scheduler or "normal", "spin_seconds": self.spin_seconds, "nodes": nodes,
        }


def log_rates(report: dict[str, Any]) -> None:
    secs = report["spin_seconds"]
    for fqn, node in report["nodes"].items():
        for t in node["timers"]:
            achieved = t["ticks"] / secs if secs > 0 else 0.0
            log.info(
                f"rate {fqn} {t['name']}: {achieved:.1f}/{t['target_hz']:g} Hz, {t['ticks']} ticks, "
                f"lateness p50 {t['lateness_p50'] * 1e3:.3f} ms p99 {t['lateness_p99'] * 1e3:.3f} ms "
                f"max {t['lateness_max'] * 1e3:.3f} ms, overruns {t['overruns']}"
            )


def run(spec: ProcessSpec, stats_out: Path | None = None) -> int:
    runner = ProcessRunner(spec)
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    for sig in stop_signals:
        signal.signal(sig, runner.request_stop)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)  # the supervisor starts us with them blocked
    if runner.stop_requested:  # a stop that arrived during start-up
        return EXIT_OK
    try:
        runner.build()
    except Exception as exc:  # noqa: BLE001 - report set-up failures with the node that caused them
        where = spec.nodes[len(runner.nodes)].where if len(runner.nodes) < len(spec.nodes) else spec.name
        detail = str(exc) if isinstance(exc, ConfigError) else traceback.format_exc().rstrip()
        log.error(f"set-up failed at {where}: {detail}")
        runner.close()
        return EXIT_FAILED
    runner.warm_up()
    runner.scheduler = apply_realtime(spec.realtime)
    gc.collect()
    gc.freeze()  # set-up objects leave the GC generations: later collections stay short
    log.info(f"{len(runner.nodes)} node(s) up on transport '{spec.transport}'")
    code = runner.spin()
    runner.close()
    report = runner.rate_report()
    log_rates(report)
    if stats_out is not None:
        stats_out.write_text(json.dumps(report, indent=1))
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m robot_stack.launch.process")
    parser.add_argument("--spec", required=True, help="the ProcessSpec as JSON")
    parser.add_argument("--parent-pid", type=int, help="exit at once if the parent is already gone")
    parser.add_argument("--stats-out", type=Path, help="write the timer statistics here (JSON) at exit")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    set_parent_death_signal(signal.SIGTERM)
    if args.parent_pid is not None and os.getppid() != args.parent_pid:
        return EXIT_FAILED  # the launcher died before PDEATHSIG was armed
    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr, format="[%(levelname)s] [%(name)s] %(message)s"
    )
    return run(ProcessSpec.from_json(args.spec), args.stats_out)


if __name__ == "__main__":
    sys.exit(main())
