"""`PolicyServerNode`: runs a policy checkpoint on live topics at its slow rate (DESIGN.md "Policies").

At `slow_hz` the node takes the newest time every observation stream has reached (the newest common
stamp), builds the policy's `n_obs` window at its `obs_rate` ending there, aligned by timestamp
(`policies.obs_buffer`), runs `predict_action` and publishes a `robot_stack_msgs/ActionChunk` on
`action_chunk`: `chunk_steps` actions (0: the policy's `n_action_steps`) starting at step
`start_step` of the predicted horizon, `header.stamp` = observation stamp + start_step * dt,
`dt` = 1 / action_rate, `observation_stamp` = the observation stamp, `policy_id` = the checkpoint's
directory name. The robot node skips steps already past and interpolates (the fast part of DP/CARP).

A policy with a fast decoder (RDP: `predict_latent` and `decode`) publishes its latent instead, as
`robot_stack_msgs/LatentChunk` on `latent_chunk` (`mode: auto|chunk|latent`); `policies.fast:
FastDecoderNode` decodes it at the fast rate with fresh force/tactile readings.

Trigger (`trigger`): "observation" (default) looks every `poll_s` (0.002) and predicts as soon as the
newest common observation stamp crosses a multiple of 1/slow_hz: one prediction per slow period,
started when its observation has arrived; "timer" predicts on a timer at `slow_hz`, so an observation
waits up to one period (half on average) for the next tick (benchmarks/policy_server.py: DP DDIM 8
e2e p50 131 ms with the timer vs 79 ms on observation, bare call 66-72 ms).

Refusal: an observation that is missing or older than `max_obs_age_s` -> nothing is published, the
`~/status` DiagnosticStatus (WARN) names the key, and a log line says so (once per change).
A window whose newest common stamp did not advance since the last prediction is not predicted again.

Parameters: checkpoint, observations.<feature>.<topic|type|field>, slow_hz (0: the checkpoint's),
max_obs_age_s (0.5), device ("cpu"), chunk_steps (0: n_action_steps), start_step (0), mode ("auto"),
trigger ("observation"), poll_s (0.002), policy_id ("": the checkpoint directory's name), action_names
([]: the checkpoint's), status_rate_hz (1), warmup (true: one prediction on zeros at start-up), seed
(0: the node's own torch.Generator for sampling policies), cuda_graph (true: on CUDA, capture a
policy that offers `capture_cuda_graph` during warm-up; Diffusion Policy captures its whole sampling
loop as one graph), cuda_graph_compile (false: true captures the UNet as `torch.compile` builds it,
fused kernels; tens of seconds more at start-up), torch_threads (0: torch's default; >0 sets the
intra-op threads), policy_modules ([]: modules to import first, for policies registered outside
`policies`).
Latency: `latency()` -> predict and observation-stamp -> published p50/p99 (also on `~/status`).
"""

from __future__ import annotations

import importlib
import inspect
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from policies.base import Policy, PolicyError, load_policy
from policies.obs_buffer import PREFIX as OBS_PREFIX
from policies.obs_buffer import ObservationInputs, obs_map_from_parameters, parse_obs_map
from robot_stack import convert, messages
from robot_stack.clock import NS, Time, duration_msg
from robot_stack.errors import ParameterError
from robot_stack.node import Node
from robot_stack.rates import quantile

ACTION_CHUNK = "robot_stack_msgs/msg/ActionChunk"
LATENT_CHUNK = "robot_stack_msgs/msg/LatentChunk"
DIAGNOSTIC_STATUS = "diagnostic_msgs/msg/DiagnosticStatus"
MODES = ("auto", "chunk", "latent")
TRIGGERS = ("timer", "observation")             # the last one is the default


class LatencyWindow:
    """The last `size` durations (seconds) with nearest-rank percentiles."""

    def __init__(self, size: int = 1000):
        self._values = np.zeros(size)
        self.count = 0

    def add(self, seconds: float) -> None:
        self._values[self.count % len(self._values)] = seconds
        self.count += 1

    def percentile(self, q: float) -> float:
        return quantile(self._values[: min(self.count, len(self._values))], q)

    def summary(self) -> dict[str, float]:
        return {"p50_ms": self.percentile(50) * 1e3, "p99_ms": self.percentile(99) * 1e3, "count": self.count}


def has_fast_decoder(policy: Policy | type[Policy]) -> bool:
    return callable(getattr(policy, "predict_latent", None)) and callable(getattr(policy, "decode", None))


def action_chunk_msg(actions: np.ndarray, names: list[str], first_ns: int, dt_s: float, obs_ns: int,
                     policy_id: str) -> Any:
    """ActionChunk of (S, D) actions, step 0 due at `first_ns`."""
    return messages.make(ACTION_CHUNK, header=convert.header(Time(first_ns)), dt=duration_msg(dt_s), names=names,
                         steps=int(actions.shape[0]), actions=np.ascontiguousarray(actions, np.float64).ravel(),
                         observation_stamp=Time(obs_ns).to_msg(), policy_id=policy_id)


class ServingNode(Node):
    """What the slow server and the fast decoder share: checkpoint, inputs, refusal, status, latency."""

    default_name = "policy_server"
    inputs_class: type[ObservationInputs] = ObservationInputs     # subclasses may filter or reset inputs

    def __init__(self, node_name: str | None = None, **node_kwargs: Any):
        super().__init__(node_name or self.default_name, **node_kwargs)
        checkpoint = self.declare_parameter("checkpoint", "").value
        if not checkpoint:
            raise ParameterError(f"node '{self.get_name()}': parameter 'checkpoint' (a checkpoint directory) is needed")
        self.device = self.declare_parameter("device", "cpu").value
        threads = int(self.declare_parameter("torch_threads", 0).value)
        if threads > 0:                      # several servers on few cores: oversubscribed threads crawl
            torch.set_num_threads(threads)
        for module in self.declare_parameter("policy_modules", []).value:   # out-of-tree policies register on import
            importlib.import_module(str(module))
        self.policy = load_policy(checkpoint, device=self.device)
        self.config = self.policy.config
        self.policy_id = self.declare_parameter("policy_id", "").value or Path(checkpoint).resolve().name
        self.max_obs_age_ns = int(self._positive("max_obs_age_s", 0.5) * NS)
        self.chunk_steps = self._steps("chunk_steps", 0, self.config.n_action_steps)
        self.start_step = self.declare_parameter("start_step", 0).value
        if not 0 <= self.start_step <= self.config.horizon - self.chunk_steps:
            raise ParameterError(f"node '{self.get_name()}': start_step {self.start_step} + chunk_steps "
                                 f"{self.chunk_steps} exceeds the policy's horizon {self.config.horizon}")
        self.dt_s = 1.0 / self.config.action_rate
        names = self.declare_parameter("action_names", []).value
        self.action_names = [str(n) for n in names if n] or list(self.policy.action_spec.names)
        if len(self.action_names) != self.policy.action_spec.shape[0]:
            raise ParameterError(f"node '{self.get_name()}': {len(self.action_names)} action names "
                                 f"{self.action_names} for {self.policy.action_spec.shape[0]} action dims "
                                 "(set 'action_names' when the checkpoint has none)")
        self.obs_map = {}
        for key in self.parameters.undeclared_overrides():   # observations.<feature>.<attr>: names vary
            if key.startswith(OBS_PREFIX):
                self.obs_map[key] = self.declare_parameter(key).value
        self.chunks = self.refusals = self.predict_errors = 0
        self.refused: list[str] = []        # feature names of the current refusal (empty: acting)
        self.reason = "waiting for the first tick"
        self.predict_latency = LatencyWindow()
        self.publish_latency = LatencyWindow()
        self._checked_s, self._tried_ns = 0.0, -1        # poll_inputs: last wall-time check, last stamp tried
        self.status_pub = self.create_publisher(DIAGNOSTIC_STATUS, "~/status", 10)
        self.create_timer(1.0 / self._positive("status_rate_hz", 1.0), self.publish_status, name="status")

    # --- parameters --------------------------------------------------------------------------
    def _positive(self, name: str, default: float) -> float:
        value = self.declare_parameter(name, default).value
        if not value > 0:
            raise ParameterError(f"node '{self.get_name()}': parameter '{name}' must be > 0, got {value!r}")
        return float(value)

    def _steps(self, name: str, default: int, fallback: int) -> int:
        value = self.declare_parameter(name, default).value or fallback
        if not 1 <= value <= self.config.horizon:
            raise ParameterError(f"node '{self.get_name()}': {name} must be in [1, {self.config.horizon}], got {value}")
        return int(value)

    def make_inputs(self, features: list[str]) -> ObservationInputs:
        mapping = obs_map_from_parameters(self.obs_map)
        sources = parse_obs_map(mapping, self.policy.features, features, self.config.obs)
        for name, src in sources.items():
            self.get_logger().info(f"{name} <- {src.topic} ({src.type}{' ' + src.field if src.field else ''})")
        return self.inputs_class(self, sources, self.policy.features)

    # --- refusal and status ------------------------------------------------------------------
    def check(self, inputs: ObservationInputs) -> bool:
        """True when every input is present and fresh; else refuse (status + one log line per change)."""
        problems = inputs.problems(self._now_ns(), self.max_obs_age_ns)
        if not problems:
            if self.refused:
                self.get_logger().info("all observations present and fresh: acting again")
                self.refused, self.reason = [], "acting"
                self.publish_status()
            return True
        self.refusals += 1
        keys = [name for name, _ in problems]
        if keys != self.refused:
            self.refused, self.reason = keys, "refusing to act: " + "; ".join(why for _, why in problems)
            self.get_logger().warning(self.reason)
            self.publish_status()
        return False

    def published(self, obs_ns: int) -> None:
        """Count a published output computed from observations stamped `obs_ns`."""
        self.chunks += 1
        self.publish_latency.add((self._now_ns() - obs_ns) / NS)
        if self.reason != "acting":
            self.reason = "acting"
            self.publish_status()

    def latency(self) -> dict[str, dict[str, float]]:
        return {"predict": self.predict_latency.summary(), "obs_to_publish": self.publish_latency.summary()}

    def counters(self) -> dict[str, Any]:
        out: dict[str, Any] = {"policy_id": self.policy_id, "chunks": self.chunks, "refusals": self.refusals,
                               "refused_keys": ",".join(self.refused), "predict_errors": self.predict_errors}
        for what, summary in self.latency().items():
            out.update({f"{what}_{q}": f"{summary[q]:.3f}" for q in ("p50_ms", "p99_ms")})
        return out

    def publish_status(self) -> None:
        kv = messages.get_class("diagnostic_msgs/msg/KeyValue")
        level = 2 if self.predict_errors and not self.chunks else (1 if self.refused else 0)
        self.status_pub.publish(messages.make(
            DIAGNOSTIC_STATUS, level=level, name=self.get_fully_qualified_name(), message=self.reason,
            hardware_id=self.policy.name, values=[kv(key=k, value=str(v)) for k, v in self.counters().items()]))

    def run_policy(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """`fn(*args, **kwargs)` timed into `predict_latency`; None (counted, logged) when it raises."""
        t0 = time.perf_counter()
        try:
            with torch.inference_mode():
                out = fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - a failing prediction is reported, the node keeps serving
            self.predict_errors += 1
            if self.predict_errors % 100 == 1:
                self.get_logger().exception(f"prediction failed (#{self.predict_errors}): {exc!r}")
            self.reason = f"prediction failed: {exc!r}"
            return None
        self.predict_latency.add(time.perf_counter() - t0)
        return out

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def create_trigger(self, hz: float, triggers: tuple[str, ...], poll_s: float, timer_name: str) -> None:
        """The `trigger` parameter (default triggers[-1]): "timer" runs `tick` at `hz`; the other polls
        every `poll_s` (parameter) and `poll` decides. Sets `period_ns` (1/hz) and `timer`."""
        self.period_ns = max(1, int(round(NS / hz)))
        trigger = self.declare_parameter("trigger", triggers[-1]).value
        if trigger not in triggers:
            raise ParameterError(f"node '{self.get_name()}': trigger must be one of {triggers}, got {trigger!r}")
        if trigger == "timer":
            self.timer = self.create_timer(1.0 / hz, self.tick, name=timer_name)
        else:
            self.timer = self.create_timer(self._positive("poll_s", poll_s), self.poll, name="poll")

    def poll_inputs(self, inputs: ObservationInputs, last_ns: int | None, period_ns: int, act: Any) -> None:
        """What an observation-driven trigger's poll timer runs: `act()` once the newest common stamp of
        `inputs` is in a later `period_ns` than `last_ns` (the stamp last acted on; None: act at once);
        otherwise, once a period of wall time, only the missing/stale check (status, log)."""
        if all(buf.newest_ns is not None for buf in inputs.buffers.values()):
            obs_ns = inputs.newest_common_ns()
            new_period = last_ns is None or obs_ns // period_ns > last_ns // period_ns
            if new_period and obs_ns != self._tried_ns:      # a refused window is not retried every poll
                self._checked_s, self._tried_ns = time.monotonic(), obs_ns
                act()
                return
        if time.monotonic() - self._checked_s >= period_ns / NS:
            self._checked_s = time.monotonic()
            self.check(inputs)


class PolicyServerNode(ServingNode):
    def __init__(self, node_name: str | None = None, **node_kwargs: Any):
        super().__init__(node_name, **node_kwargs)
        cfg = self.config
        mode = self.declare_parameter("mode", "auto").value
        if mode not in MODES:
            raise ParameterError(f"node '{self.get_name()}': mode must be one of {MODES}, got {mode!r}")
        if mode == "latent" and not has_fast_decoder(self.policy):
            raise PolicyError(f"mode 'latent' needs a policy with a fast decoder; '{self.policy.name}' has none")
        self.latent_mode = mode == "latent" or (mode == "auto" and has_fast_decoder(self.policy))
        self.slow_hz = self.declare_parameter("slow_hz", 0.0).value or cfg.slow_hz
        self.obs_offsets_ns = -np.round(np.arange(cfg.n_obs - 1, -1, -1) * NS / cfg.obs_rate).astype(np.int64)
        slow_obs = getattr(self.policy, "slow_obs", None) if self.latent_mode else None
        self.inputs = self.make_inputs(list(slow_obs or cfg.obs))
        self.last_obs_ns: int | None = None
        self.predict = self.policy.predict_latent if self.latent_mode else self.policy.predict_action
        seed = self.declare_parameter("seed", 0).value      # sampling policies draw from this node's generator
        self.sample_kwargs = {}
        if "generator" in inspect.signature(self.predict).parameters:
            self.sample_kwargs["generator"] = torch.Generator(self.device).manual_seed(seed)
        if self.latent_mode:
            self.out_pub = self.create_publisher(LATENT_CHUNK, "latent_chunk", 10)
        else:
            self.out_pub = self.create_publisher(ACTION_CHUNK, "action_chunk", 10)
        self.cuda_graph = self.declare_parameter("cuda_graph", True).value
        self.cuda_graph_compile = self.declare_parameter("cuda_graph_compile", False).value
        if self.declare_parameter("warmup", True).value:
            self._warm_up()
        self.create_trigger(self.slow_hz, TRIGGERS, 0.002, "slow")
        what = "latents" if self.latent_mode else f"{self.chunk_steps}-step chunks"
        self.get_logger().info(f"{self.policy.name} '{self.policy_id}' on {self.device}: {what} at "
                               f"{self.slow_hz:g} Hz on {self.out_pub.topic}")

    def _warm_up(self) -> None:
        """One prediction on a zero window so first-call costs do not land on the first real tick."""
        obs = {f"obs.{n}": torch.zeros(1, self.config.n_obs, *self.policy.features[n].shape, device=self.device)
               for n in self.inputs.sources}
        obs["obs_is_pad"] = torch.zeros(1, self.config.n_obs, dtype=torch.bool, device=self.device)
        capture = getattr(self.policy, "capture_cuda_graph", None)
        if self.cuda_graph and capture is not None and torch.device(self.device).type == "cuda":
            kwargs = {"compile_unet": True} if self.cuda_graph_compile else {}
            capture(obs, **kwargs)                 # the GPU path replays the captured graph
            self.get_logger().info("inference captured as a CUDA graph")
        with torch.inference_mode():
            self.predict(obs, **self.sample_kwargs)
        self.policy.reset()

    def tick(self) -> None:
        if not self.check(self.inputs):
            return
        obs_ns = self.inputs.newest_common_ns()
        if obs_ns == self.last_obs_ns:
            return
        self.last_obs_ns = obs_ns
        obs = self.inputs.window(obs_ns + self.obs_offsets_ns, self.device)
        out = self.run_policy(self.predict, obs, **self.sample_kwargs)
        if out is None:
            return
        self.out_pub.publish(self._latent_msg(out, obs_ns) if self.latent_mode else self._chunk_msg(out, obs_ns))
        self.published(obs_ns)

    def poll(self) -> None:
        """`trigger: observation`: `act()` once the newest common stamp enters a new period."""
        self.poll_inputs(self.inputs, self.last_obs_ns, self.period_ns, self.act)

    def act(self) -> None:
        """One prediction on the newest window (what a due `poll` runs)."""
        self.tick()

    def _chunk_msg(self, actions: torch.Tensor, obs_ns: int) -> Any:
        rows = actions[0, self.start_step:self.start_step + self.chunk_steps].detach().cpu().numpy()
        first_ns = obs_ns + int(round(self.start_step * self.dt_s * NS))
        return action_chunk_msg(rows, self.action_names, first_ns, self.dt_s, obs_ns, self.policy_id)

    def _latent_msg(self, latent: torch.Tensor, obs_ns: int) -> Any:
        data = latent.detach().to("cpu", torch.float32).contiguous()
        return messages.make(LATENT_CHUNK, header=convert.header(Time(obs_ns)), observation_stamp=Time(obs_ns).to_msg(),
                             shape=np.asarray(data.shape, np.uint32), data=data.numpy().ravel(),
                             policy_id=self.policy_id)
