"""`FastDecoderNode`: the fast part of a slow-fast policy (RDP), in its own process.

The slow `PolicyServerNode` publishes the policy's latent (`robot_stack_msgs/LatentChunk` on
`latent_chunk`, header.stamp = the time of the chunk's step 0). At `fast_hz` this node re-decodes the
newest latent with the freshest force/tactile readings (`config.fast_obs`) (`trigger: reading`, the
default: as soon as a reading enters a new 1/fast_hz period or a new latent arrives, polled every
`poll_s`, 1 ms; `trigger: timer`: on a fixed fast_hz timer): with RDP's `fast_per_step`
(default) the readings at the times of the chunk's steps already passed, interpolated from the
stream's history like the training loader's `future` windows, then the newest one for the current
step, held over the rest; otherwise the newest sample alone, held over the chunk. It publishes the
steps of the executed range [start_step, start_step + chunk_steps) that are still ahead as an
`ActionChunk` on `action_chunk` (header.stamp = the time of the first step sent, observation_stamp =
the newest fast reading used), which the robot node interpolates.

Refuses (nothing published, `~/status` names the key, one log line) when a fast reading is missing or
older than `max_obs_age_s`. Latents from another checkpoint (policy_id) or of the wrong shape are
counted and dropped; a latent whose steps are all past publishes nothing (`expired`).
Parameters: checkpoint, observations.<feature>.<topic|type|field>, fast_hz (0: the checkpoint's),
trigger ("reading" | "timer"), poll_s (0.001), max_obs_age_s, device, chunk_steps, start_step, policy_id,
action_names, status_rate_hz, policy_modules (as `PolicyServerNode`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from policies.base import PolicyError
from policies.obs_buffer import ObservationInputs
from policies.server import ACTION_CHUNK, LATENT_CHUNK, ServingNode, action_chunk_msg, has_fast_decoder
from robot_stack.clock import NS, Time

TRIGGERS = ("timer", "reading")                 # the last one is the default


def fast_readings(inputs: ObservationInputs, names: list[str], step0_ns: int, newest_ns: int, dt_ns: float,
                  horizon: int, per_step: bool, device: Any) -> dict[str, torch.Tensor]:
    """The fast decoder's input for a latent whose chunk step 0 is at `step0_ns`, `newest_ns` the newest
    common reading: {name: (1, k+1, D)} the readings at the times of chunk steps 0..k-1 already passed
    (interpolated from the history), then the newest one for the current step k (held by the decoder
    over the rest); without `per_step`, {name: (1, D)} the newest alone."""
    newest = {n: torch.from_numpy(inputs.newest(n)[1])[None] for n in names}                   # 1, D
    if not per_step:
        return {n: v.to(device) for n, v in newest.items()}
    k = min(max(int((newest_ns - step0_ns) // dt_ns), 0), horizon - 1)
    times = step0_ns + np.round(np.arange(k) * dt_ns).astype(np.int64)
    return {n: torch.cat([torch.from_numpy(inputs.lowdim_at(n, times)), newest[n]])[None].to(device) for n in names}


class FastDecoderNode(ServingNode):
    default_name = "policy_fast"

    def __init__(self, node_name: str | None = None, **node_kwargs: Any):
        super().__init__(node_name, **node_kwargs)
        if not has_fast_decoder(self.policy):
            raise PolicyError(f"'{self.policy.name}' has no fast decoder (predict_latent + decode); serve it with "
                              "PolicyServerNode alone (the robot node's interpolation is its fast part)")
        self.fast_obs = list(getattr(self.config, "fast_obs", ()))
        if not self.fast_obs:
            raise PolicyError(f"'{self.policy.name}' config names no fast_obs features")
        self.per_step = bool(getattr(self.config, "fast_per_step", False))
        self.fast_hz = self.declare_parameter("fast_hz", 0.0).value or self.config.fast_hz
        self.inputs = self.make_inputs(self.fast_obs)
        self.latent: torch.Tensor | None = None
        self.latent_step0_ns = 0
        self.latents = self.foreign_latents = self.expired = 0
        self.reason = "waiting for a latent"
        self.create_subscription(LATENT_CHUNK, "latent_chunk", self._on_latent, 10)
        self.out_pub = self.create_publisher(ACTION_CHUNK, "action_chunk", 10)
        self.last_reading_ns: int | None = None          # the newest reading of the last decode
        self.create_trigger(self.fast_hz, TRIGGERS, 0.001, "fast")
        self.get_logger().info(f"{self.policy.name} '{self.policy_id}' fast decoder on {self.device} at "
                               f"{self.fast_hz:g} Hz: {', '.join(self.fast_obs)} -> {self.out_pub.topic}")

    def _on_latent(self, msg: Any) -> None:
        shape = tuple(int(s) for s in msg.shape)
        data = np.array(msg.data, dtype=np.float32)                       # a writable copy
        if msg.policy_id != self.policy_id or not shape or int(np.prod(shape)) != data.size:
            self.foreign_latents += 1
            if self.foreign_latents % 100 == 1:
                self.get_logger().warning(f"dropped latent #{self.foreign_latents} from '{msg.policy_id}' shape "
                                          f"{shape} ({data.size} values); expected policy '{self.policy_id}'")
            return
        self.latent = torch.from_numpy(data.reshape(shape)).to(self.device)
        self.latent_step0_ns = Time.from_msg(msg.header.stamp).nanoseconds
        self.latents += 1
        self.last_reading_ns, self._tried_ns = None, -1      # `trigger: reading` decodes it at the next poll

    def poll(self) -> None:
        if self.latent is not None:
            self.poll_inputs(self.inputs, self.last_reading_ns, self.period_ns, self.tick)

    def tick(self) -> None:
        if self.latent is None or not self.check(self.inputs):
            return
        now = self._now_ns()
        dt_ns = self.dt_s * NS
        end = self.start_step + self.chunk_steps
        first = max(self.start_step, math.ceil((now - self.latent_step0_ns) / dt_ns))
        if first >= end:
            self.expired += 1
            return
        stamps = [self.inputs.newest(name)[0] for name in self.fast_obs]
        readings = fast_readings(self.inputs, self.fast_obs, self.latent_step0_ns, min(stamps), dt_ns,
                                 self.config.horizon, self.per_step, self.device)
        actions = self.run_policy(self.policy.decode, self.latent, readings)
        if actions is None:
            return
        rows = actions[0, first:end].detach().cpu().numpy()
        first_ns = self.latent_step0_ns + int(round(first * dt_ns))
        self.out_pub.publish(action_chunk_msg(rows, self.action_names, first_ns, self.dt_s, max(stamps),
                                              self.policy_id))
        self.last_reading_ns = min(stamps)
        self.published(max(stamps))

    def counters(self) -> dict[str, Any]:
        return {**super().counters(), "latents": self.latents, "foreign_latents": self.foreign_latents,
                "expired": self.expired}
