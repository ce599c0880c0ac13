"""`LockstepPolicyServer`: the policy server as `robot-stack eval` runs it against a lockstep sim.

A plain `PolicyServerNode` predicts on a timer of the process clock. Under sim time that timer fires
when `/clock` passes its deadline, which can be before the observation stamped at that time has
arrived (different topics), and a lockstep sim that waits for the answer then never advances the
clock to the next deadline. This subclass instead uses the server's `trigger: observation` (a
`poll_s` of wall time, 4 ms here) and predicts as soon as the newest common observation stamp
crosses a multiple of 1/slow_hz of sim time, so every sync boundary of the sim (`sync_period_s` =
1/slow_hz) gets exactly one answer, whatever the delivery order or the prediction time.

Episodes: the sim's `task/status` carries `reset_ns`, the sim time of the episode's first
observation. When it changes the server resets the policy and forgets every observation older than
that (also ones still in flight), so an episode's first window holds its own first observation,
padded, never the previous episode's: the same seed gives the same windows.

Reactive (`reactive: true`, with `mode: chunk`, for a policy with a fast decoder, RDP): the lockstep
period is the control period (1/action_rate), and at each boundary the server does what the deployed
slow server + `FastDecoderNode` pair does, in one process and in step with the sim: every
`n_action_steps` steps the slow part (`predict_latent`) on the observation window, and at every step
the fast decoder on the current latent with the fresh force/tactile readings (`policies.fast.fast_readings`),
publishing the chunk's steps from the current one on, answering that boundary's observation.

Everything else (inputs, refusal, chunks, status, latency) is the `PolicyServerNode`'s. Run it with
`use_sim_time: true` so the staleness check uses sim time.
"""

from __future__ import annotations

from typing import Any

import torch

from policies.base import PolicyError
from policies.fast import fast_readings
from policies.obs_buffer import ObservationInputs, StreamBuffer
from policies.server import PolicyServerNode, action_chunk_msg, has_fast_decoder
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
        overrides = {"poll_s": 0.004, **(node_kwargs.pop("parameter_overrides", None) or {}), "trigger": "observation"}
        super().__init__(node_name, parameter_overrides=overrides, **node_kwargs)   # a 1 ms poll costs a core
        self.reactive = bool(self.declare_parameter("reactive", False).value)
        if self.reactive and (self.latent_mode or not has_fast_decoder(self.policy)):
            raise PolicyError(f"node '{self.get_name()}': reactive lockstep needs mode 'chunk' and a policy with a "
                              f"fast decoder; '{self.policy.name}' in {'latent' if self.latent_mode else 'chunk'} mode")
        self.latent: torch.Tensor | None = None
        self.latent_step0_ns = 0
        if self.reactive:
            self.period_ns = max(1, int(round(NS / self.config.action_rate)))
        self.episode_start_ns: int | None = None
        self.create_subscription(STATUS, "task/status", self._on_task_status, 10)
        self.timer.clock = Clock()          # wall time: sim time stands still while the sim waits for us

    def _on_task_status(self, msg: Any) -> None:
        value = next((kv.value for kv in msg.values if kv.key == "reset_ns"), "")
        if not value.isdigit() or int(value) == self.episode_start_ns:
            return
        self.episode_start_ns = int(value)
        self.inputs.restart(self.episode_start_ns)
        self.policy.reset()
        self.last_obs_ns = self.latent = None
        self._tried_ns = -1                 # the new episode's first window is acted on even if seen before

    def act(self) -> None:
        self.reactive_tick() if self.reactive else self.tick()

    def reactive_tick(self) -> None:
        """Slow part every `n_action_steps` control steps, fast decode at every one (module docstring)."""
        if not self.check(self.inputs):
            return
        obs_ns = self.inputs.newest_common_ns()
        self.last_obs_ns = obs_ns
        dt_ns = self.dt_s * NS
        k = 0 if self.latent is None else int(round((obs_ns - self.latent_step0_ns) / dt_ns))
        if self.latent is None or k >= self.config.n_action_steps:
            obs = self.inputs.window(obs_ns + self.obs_offsets_ns, self.device)
            self.latent = self.run_policy(self.policy.predict_latent, obs, **self.sample_kwargs)
            self.latent_step0_ns, k = obs_ns, 0
            if self.latent is None:
                return
        fast = list(self.config.fast_obs)
        readings = fast_readings(self.inputs, fast, self.latent_step0_ns, obs_ns, dt_ns, self.config.horizon,
                                 bool(getattr(self.config, "fast_per_step", False)), self.device)
        actions = self.run_policy(self.policy.decode, self.latent, readings)
        if actions is None:
            return
        rows = actions[0, k:self.config.n_action_steps].detach().cpu().numpy()
        self.out_pub.publish(action_chunk_msg(rows, self.action_names, obs_ns, self.dt_s, obs_ns, self.policy_id))
        self.published(obs_ns)

