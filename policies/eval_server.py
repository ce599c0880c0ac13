"""`LockstepPolicyServer`: the policy server as `robot-stack eval` runs it against a lockstep sim.

A plain `PolicyServerNode` predicts on a timer of the process clock. Under sim time that timer fires
when `/clock` passes its deadline, which can be before the observation stamped at that time has
arrived (different topics), and a lockstep sim that waits for the answer then never advances the
clock to the next deadline. This subclass instead looks every `poll_s` of wall time and predicts as
soon as the newest common observation stamp crosses a multiple of 1/slow_hz of sim time, so every
sync boundary of the sim (`sync_period_s` = 1/slow_hz) gets exactly one answer, whatever the
delivery order or the prediction time.

Episodes: the sim's `task/status` carries `reset_ns`, the sim time of the episode's first
observation. When it changes the server resets the policy and forgets every observation older than
that (also ones still in flight), so an episode's first window holds its own first observation,
padded, never the previous episode's: the same seed gives the same windows.

Everything else (inputs, refusal, chunks, status, latency) is the `PolicyServerNode`'s. Run it with
`use_sim_time: true` so the staleness check uses sim time.
"""

from __future__ import annotations

from typing import Any

from policies.obs_buffer import ObservationInputs, StreamBuffer
from policies.server import PolicyServerNode
from robot_stack.clock import NS, Clock, Time

STATUS = "diagnostic_msgs/msg/DiagnosticStatus"


class EpisodeInputs(ObservationInputs):
    """ObservationInputs that drop samples stamped before `min_ns` (the current episode's start)."""

    min_ns = -1

    def _on_msg(self, name: str, msg: Any) -> None:
        if Time.from_msg(msg.header.stamp).nanoseconds >= self.min_ns:
            super()._on_msg(name, msg)

    def restart(self, start_ns: int) -> None:
        """Forget samples older than `start_ns`; keep the ones at or after it (they may arrive first)."""
        self.min_ns = start_ns
        for name, old in self.buffers.items():
            stamps, values = old.ordered()
            buf = StreamBuffer(values.shape[1:], len(old.stamps))
            for stamp, value in zip(stamps, values, strict=True):
                if stamp >= start_ns:
                    buf.add(int(stamp), value)
            self.buffers[name] = buf


class LockstepPolicyServer(PolicyServerNode):
    inputs_class = EpisodeInputs

    def __init__(self, node_name: str | None = None, **node_kwargs: Any):
        super().__init__(node_name, **node_kwargs)
        poll_s = self._positive("poll_s", 0.004)     # wall seconds between looks (a 1 ms poll costs a core)
        self.period_ns = max(1, int(round(NS / self.slow_hz)))
        self.episode_start_ns: int | None = None
        self.create_subscription(STATUS, "task/status", self._on_task_status, 10)
        self.timer.cancel()
        self.timer = self.create_timer(poll_s, self.lockstep_tick, name="lockstep")
        self.timer.clock = Clock()          # wall time: sim time stands still while the sim waits for us

    def _on_task_status(self, msg: Any) -> None:
        value = next((kv.value for kv in msg.values if kv.key == "reset_ns"), "")
        if not value.isdigit() or int(value) == self.episode_start_ns:
            return
        self.episode_start_ns = int(value)
        self.inputs.restart(self.episode_start_ns)
        self.policy.reset()
        self.last_obs_ns = None

    def lockstep_tick(self) -> None:
        if any(buf.newest_ns is None for buf in self.inputs.buffers.values()):
            return                          # nothing to act on yet (status still says so)
        obs_ns = self.inputs.newest_common_ns()
        if self.last_obs_ns is not None and obs_ns // self.period_ns <= self.last_obs_ns // self.period_ns:
            return
        self.tick()

