"""`DdsWaiter`: an executor doorbell on a cyclone WaitSet (see `robot_stack.wakeup`).

The executor thread blocks in `dds_waitset_wait` (GIL released) on a GuardCondition, for
`set()` from any thread, and on one ReadCondition per watched reader. Watched readers have no
listener: their samples are taken, deserialized and handed to the callbacks in the executor
thread by `poll()`. Compared with a listener this removes the Python call on cyclone's receive
thread and the thread hand-off per message, which is most of a round trip's cost in Python.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from cyclonedds.core import DDSException, GuardCondition, WaitSet
from cyclonedds.internal import dds_infinity

if TYPE_CHECKING:
    from robot_stack.transport.dds import DdsSubscription, DdsTransport


class DdsWaiter:
    def __init__(self, transport: DdsTransport):
        self._transport = transport
        participant = transport._participant
        self._waitset = WaitSet(participant)
        self._guard = GuardCondition(participant)
        self._waitset.attach(self._guard)
        self._flag = False
        self._lock = threading.Lock()
        self._watched: dict[DdsSubscription, Any] = {}  # subscription -> its ReadCondition

    # --- doorbell (threading.Event's shape) ---------------------------------------------------
    def set(self) -> None:
        if self._flag:
            return
        self._flag = True
        self._guard.set(True)

    def clear(self) -> None:
        self._flag = False
        self._guard.set(False)

    def is_set(self) -> bool:
        return self._flag

    def wait(self, timeout: float | None = None) -> bool:
        if self._flag:
            return True
        ns = dds_infinity if timeout is None else max(int(timeout * 1e9), 0)
        try:
            return self._waitset.wait(ns) > 0 or self._flag
        except DDSException:  # the participant is being deleted (transport closed)
            return True

    # --- polled subscriptions -----------------------------------------------------------------
    def watch(self, subscription: Any) -> None:
        from robot_stack.transport.dds import DdsSubscription

        for part in subscription.parts():
            if not isinstance(part, DdsSubscription) or part._transport is not self._transport:
                continue  # another transport's subscription keeps delivering from its own thread
            with self._lock:
                if part in self._watched:
                    continue
                condition = part.enter_polled()
                if condition is None:
                    continue
                self._waitset.attach(condition)
                self._watched[part] = condition
        self.set()  # samples may have arrived before the condition existed: poll once

    def unwatch(self, subscription: Any) -> None:
        for part in subscription.parts():
            with self._lock:
                condition = self._watched.pop(part, None)
            if condition is not None:
                self._detach(condition)
                part.leave_polled(condition)

    def poll(self) -> None:
        for part in tuple(self._watched):
            if not part.poll():  # closed meanwhile: its condition died with the reader
                with self._lock:
                    condition = self._watched.pop(part, None)
                if condition is not None:
                    self._detach(condition)

    def _detach(self, condition: Any) -> None:
        try:
            self._waitset.detach(condition)
        except DDSException:  # already deleted together with its reader
            self._waitset.attached = [a for a in self._waitset.attached if a[0] is not condition]
