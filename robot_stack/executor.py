"""Single-threaded executor: runs subscription callbacks and timers of its nodes.

Timers keep absolute deadlines on the monotonic clock (or on sim time when the process clock
follows `/clock`). To hit deadlines without burning a core, the executor sleeps until shortly
before a deadline and spins the rest; the spin margin adapts to the oversleep this machine
actually shows (p99 of recent wake-ups), so an idle 1 kHz loop costs a few percent of a core.
"""

from __future__ import annotations

import ctypes
import math
import time
from collections.abc import Callable

import numpy as np

from robot_stack.node import Node, Timer
from robot_stack.rates import quantile
from robot_stack.wakeup import Wakeup

_PR_SET_TIMERSLACK = 29
MAX_SPIN_FRACTION = 0.1


def reduce_timer_slack(ns: int = 1000) -> bool:
    """Ask Linux for `ns` timer slack on this thread (default is 50 us); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_TIMERSLACK, ctypes.c_ulong(ns), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


class _SpinMargin:
    """How early to wake before a deadline: p99 of observed oversleep plus a small guard."""

    def __init__(self, initial: float = 200e-6, lo: float = 40e-6, hi: float = 1e-3, window: int = 256):
        self.value, self.lo, self.hi = initial, lo, hi
        self._samples = np.zeros(window)
        self._n = 0

    def observe(self, oversleep: float) -> None:
        self._samples[self._n % self._samples.size] = oversleep
        self._n += 1
        if self._n % self._samples.size == 0:
            p99 = quantile(self._samples, 99)
            self.value = min(max(p99 + 30e-6, self.lo), self.hi)


class Executor:
    def __init__(self, *, adaptive_spin: bool = True, spin_margin: float = 200e-6):
        self._nodes: list[Node] = []
        self._wake = Wakeup()
        self._shutdown = False
        self._margin = _SpinMargin(initial=spin_margin) if adaptive_spin else None
        self._fixed_margin = spin_margin
        self._slack_set = False

    # --- nodes -------------------------------------------------------------------------------
    def add_node(self, node: Node) -> None:
        if node in self._nodes:
            return
        if not self._nodes and not self._wake.is_set():
            # The first node's transport may offer a doorbell that polls its readers in our thread.
            self._wake = node.context.transport.create_waiter() or self._wake
        self._nodes.append(node)
        node._attach(self._wake)
        node.context.clock.add_listener(self._wake.set)

    def remove_node(self, node: Node) -> None:
        if node in self._nodes:
            self._nodes.remove(node)
            node.context.clock.remove_listener(self._wake.set)
            node._attach(Wakeup())  # its subscriptions deliver from their own threads again

    def get_nodes(self) -> list[Node]:
        return list(self._nodes)

    # --- spinning ----------------------------------------------------------------------------
    def spin(self) -> None:
        while not self._shutdown:
            self.spin_once(None)

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self._shutdown and (left := end - time.monotonic()) > 0:
            self.spin_once(left)

    def spin_until(self, predicate: Callable[[], bool], timeout_sec: float) -> bool:
        end = time.monotonic() + timeout_sec
        while not predicate():
            left = end - time.monotonic()
            if left <= 0 or self._shutdown:
                return False
            self.spin_once(min(left, 0.05))
        return True

    def shutdown(self) -> None:
        """Stop `spin()` (thread-safe)."""
        self._shutdown = True
        self._wake.set()

    def spin_once(self, timeout_sec: float | None = None) -> bool:
        """Run what is ready; if nothing was, wait up to `timeout_sec` for work and run it.

        Returns True when a callback ran (like rclpy, it never waits after doing work, so a
        caller looping `while not done: spin_once(t)` sees each result at once).
        """
        if not self._slack_set:
            self._slack_set = reduce_timer_slack()
        if self._run_ready_work():
            return True
        self._wait(timeout_sec)
        return self._run_ready_work()

    # --- internals ---------------------------------------------------------------------------
    def _timers(self) -> list[Timer]:
        return [t for n in self._nodes for t in n.timers if not t.cancelled]

    @staticmethod
    def _now(timer: Timer) -> float:
        return timer.clock.now().seconds if timer.clock.sim_time else time.perf_counter()

    def _run_ready_work(self) -> bool:
        return (self._run_due_timers() + self._run_ready_subscriptions()) > 0

    def _run_due_timers(self) -> int:
        ran = 0
        for timer in self._timers():
            now = self._now(timer)
            if timer.next_deadline is None:
                timer.next_deadline = now + timer.period
                continue
            if now < timer.next_deadline:
                continue
            deadline = timer.next_deadline
            missed = int(math.floor((now - deadline) / timer.period))
            timer.next_deadline = deadline + (missed + 1) * timer.period
            timer.callback()
            timer.stats.record(deadline, now, self._now(timer), missed)
            ran += 1
        return ran

    def _run_ready_subscriptions(self, budget: int = 256) -> int:
        self._wake.poll()
        ran = 0
        for node in tuple(self._nodes):
            for _ in range(budget):
                sub = node.take_ready()
                if sub is None:
                    break
                msg = sub.take()
                if msg is not None:
                    sub.callback(msg)
                    ran += 1
        return ran

    def _next_wall_deadline(self) -> tuple[float | None, float]:
        """The earliest wall-clock timer deadline and that timer's period."""
        due = [(t.next_deadline, t.period) for t in self._timers()
               if t.next_deadline is not None and not t.clock.sim_time]
        return min(due) if due else (None, math.inf)

    def _wait(self, timeout_sec: float | None) -> None:
        if any(n._ready for n in self._nodes):
            return
        self._wake.clear()
        if any(n._ready for n in self._nodes):
            return
        now = time.perf_counter()
        deadline, period = self._next_wall_deadline()
        if timeout_sec is not None:
            deadline = min(deadline, now + timeout_sec) if deadline is not None else now + timeout_sec
        if deadline is None:
            self._wake.wait()
            return
        # Spin at most 10% of the period: on a loaded machine late wake-ups come from CPU
        # contention, and spinning longer would only cost the loop more of its CPU share.
        margin = min(self._margin.value if self._margin else self._fixed_margin, MAX_SPIN_FRACTION * period)
        sleep_for = deadline - now - margin
        if sleep_for > 0:
            if self._wake.wait(sleep_for):
                return
            if self._margin:
                self._margin.observe(time.perf_counter() - (now + sleep_for))
        while time.perf_counter() < deadline:
            if self._wake.is_set():
                return


def spin(node: Node, executor: Executor | None = None) -> None:
    """Spin one node until shutdown (rclpy.spin)."""
    executor = executor or Executor()
    executor.add_node(node)
    executor.spin()
