"""In-process demonstrations and closed-loop rollouts on a task object, with the serving schedule.

`policies` never imports `sim`: the caller passes a task (anything with `reset(seed) -> obs`,
`step(action) -> obs`, `expert()`, `done()`, `success()`, `progress()`, `world.time_ns`, `config.control_hz`),
e.g. `sim.tasks.make_task("push_t")`. A `TaskLayout` says how the task's observation dict becomes
the streams a dataset holds (and so the policy's inputs):

- `record_expert(task, store, layout, seeds)` writes one episode per seed from the task's scripted
  expert: `state` (JointState named `layout.state_names`), `action` (JointState), `wrench`
  (WrenchStamped, when the layout has force) and one video stream per camera, all stamped with the
  task's sim time at the control step, the action with the observation it answered.
- `rollout(policy, task, layout, seed)` runs one episode the way the servers do, at the task's
  control rate: the slow part (`predict_action`, or RDP's `predict_latent`) every `n_action_steps`
  steps on the last `n_obs` observations; in between, the chunk's steps are executed one per control
  step, and a policy with a fast decoder re-decodes the current latent at every step with the force
  readings of the chunk's steps so far (RDP `fast_per_step`; otherwise the freshest one)
  (`fast=False` holds the chunk decoded at the slow step instead). Returns success, final progress,
  steps and the slow/fast inference latencies.

The deployed path (`robot-stack eval`: sim and server processes over DDS, lockstep) runs the same
schedule through topics; this one is for sweeps (`benchmarks/success.py`) and tests.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from data.features import Feature
from data.store import EpisodeStore, StreamSpec
from policies.base import Policy, PolicyError
from robot_stack import convert
from robot_stack.clock import Time


@dataclass(frozen=True)
class TaskLayout:
    task: str
    state_names: tuple[str, ...]
    state: Callable[[dict[str, np.ndarray]], list[float]]     # task observation -> state vector
    action_names: tuple[str, ...]
    force: bool = False                                       # record the wrist wrench as `wrench`
    cameras: tuple[str, ...] = ()

    def features(self) -> dict[str, Feature]:
        """The `data.features` map of a dataset recorded with this layout."""
        out = {"observation.state": Feature("state", "position", "state")}
        if self.force:
            out["observation.wrench"] = Feature("wrench", "wrench", "lowdim")
        out.update({f"observation.images.{c}": Feature(c, "", "image") for c in self.cameras})
        out["action"] = Feature("action", "position", "action")
        return out

    def with_cameras(self, *cameras: str) -> TaskLayout:
        return TaskLayout(self.task, self.state_names, self.state, self.action_names, self.force, tuple(cameras))


def _pusht_state(obs: dict[str, np.ndarray]) -> list[float]:
    b = obs["block_pose"]
    return [*obs["agent_pos"], b[0], b[1], float(np.sin(b[2])), float(np.cos(b[2]))]


def _wipe_state(obs: dict[str, np.ndarray]) -> list[float]:
    return [*obs["ee_pos"], *obs["surface_pos"], *obs["surface_normal"]]


LAYOUTS = {
    "push_t": TaskLayout("push_t", ("agent_x", "agent_y", "block_x", "block_y", "block_sin", "block_cos"),
                         _pusht_state, ("ee_x", "ee_y")),
    "wipe": TaskLayout("wipe", ("ee_x", "ee_y", "ee_z", "area_x", "area_y", "area_z", "normal_x", "normal_y",
                                "normal_z"), _wipe_state, ("ee_x", "ee_y", "ee_z"), force=True),
}


def layout_for(task: str) -> TaskLayout:
    if task not in LAYOUTS:
        raise PolicyError(f"no task layout for '{task}'; have {', '.join(sorted(LAYOUTS))}")
    return LAYOUTS[task]


# --- demonstrations --------------------------------------------------------------------------------
def record_expert(task: Any, store: EpisodeStore, layout: TaskLayout, seeds: Iterable[int], *,
                  codec: str = "libx264", on_episode: Callable[[int, bool], None] | None = None) -> list[int]:
    """One expert episode per seed into `store` (see the module docstring); returns the episode indices."""
    fps = float(task.config.control_hz)
    streams = [StreamSpec("state", "/task/state", "sensor_msgs/msg/JointState"),
               StreamSpec("action", "/task/action", "sensor_msgs/msg/JointState")]
    if layout.force:
        streams.append(StreamSpec("wrench", "/wrist/wrench", "geometry_msgs/msg/WrenchStamped"))
    streams += [StreamSpec(c, f"/{c}/image_raw", "sensor_msgs/msg/Image", "video", codec=codec, fps=fps)
                for c in layout.cameras]
    indices = []
    for seed in seeds:
        obs = task.reset(int(seed))
        expert = task.expert()
        writer = store.new_episode({"task": layout.task, "seed": int(seed)}, streams)
        while not task.done():
            stamp = Time(task.world.time_ns)
            action = expert.act(obs)
            writer.write("state", convert.joint_state(list(layout.state_names), layout.state(obs), stamp=stamp))
            writer.write("action", convert.joint_state(list(layout.action_names), action, stamp=stamp))
            if layout.force:
                writer.write("wrench", convert.wrench(obs["wrench"], stamp=stamp))
            for c in layout.cameras:
                writer.write(c, convert.image(obs[f"{c}_image"], "rgb8", stamp=stamp))
            obs = task.step(action)
        indices.append(writer.commit(success=task.success()))
        if on_episode is not None:
            on_episode(int(seed), bool(task.success()))
    return indices


# --- closed-loop rollouts ----------------------------------------------------------------------------
@dataclass
class RolloutResult:
    seed: int
    success: bool
    progress: float
    steps: int
    slow_ms: list[float] = field(default_factory=list)
    fast_ms: list[float] = field(default_factory=list)


def _inputs(policy: Policy, layout: TaskLayout, obs: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """One observation step per policy input feature: (D,) vectors, (3, H, W) images in [0, 1]."""
    out = {}
    for name in policy.config.obs:
        if name == "observation.state":
            out[name] = torch.tensor(layout.state(obs), dtype=torch.float32)
        elif name == "observation.wrench":
            out[name] = torch.as_tensor(np.asarray(obs["wrench"], np.float32))
        elif name.startswith("observation.images."):
            frame = obs[f"{name.rsplit('.', 1)[-1]}_image"]
            out[name] = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1).float() / 255.0
        else:
            raise PolicyError(f"rollout: no observation for feature '{name}' in layout '{layout.task}'")
    return out


@torch.no_grad()
def rollout(policy: Policy, task: Any, layout: TaskLayout, seed: int, *, fast: bool = True,
            device: str | torch.device = "cpu") -> RolloutResult:
    """One closed-loop episode (see the module docstring)."""
    cfg = policy.config
    rate = float(task.config.control_hz)
    if abs(cfg.obs_rate - rate) > 1e-6 or abs(cfg.action_rate - rate) > 1e-6:
        raise PolicyError(f"rollout: the policy's obs/action rates ({cfg.obs_rate}, {cfg.action_rate} Hz) must "
                          f"equal the task's control rate ({rate} Hz)")
    decoder = fast and hasattr(policy, "predict_latent") and hasattr(policy, "decode")
    gen = torch.Generator(device=device).manual_seed(int(seed))
    policy.reset()
    obs = task.reset(int(seed))
    history: deque[dict[str, torch.Tensor]] = deque([_inputs(policy, layout, obs)] * cfg.n_obs, maxlen=cfg.n_obs)
    result = RolloutResult(int(seed), False, 0.0, 0)
    chunk = latent = None
    per_step = bool(getattr(cfg, "fast_per_step", False))
    since: list[dict[str, torch.Tensor]] = []          # observations at the chunk's steps 0..k
    k = cfg.n_action_steps
    while not task.done():
        if k >= cfg.n_action_steps:
            batch = {f"obs.{n}": torch.stack([h[n] for h in history])[None].to(device) for n in cfg.obs}
            batch["obs_is_pad"] = torch.zeros(1, cfg.n_obs, dtype=torch.bool, device=device)
            t0 = time.perf_counter()
            if decoder:
                latent = policy.predict_latent(batch, gen)
            else:
                chunk = policy.predict_action(batch, generator=gen)[0].cpu().numpy()     # H, D
            result.slow_ms.append((time.perf_counter() - t0) * 1e3)
            k, since = 0, []
        since.append(history[-1])
        if decoder:
            t0 = time.perf_counter()
            seen = since if per_step else since[-1:]
            fresh = {n: torch.stack([o[n] for o in seen])[None].to(device) for n in cfg.fast_obs}   # 1, k+1 | 1, D
            action = policy.decode(latent, fresh)[0, k].cpu().numpy()
            result.fast_ms.append((time.perf_counter() - t0) * 1e3)
        else:
            action = chunk[k]
        obs = task.step(action)
        history.append(_inputs(policy, layout, obs))
        k += 1
        result.steps += 1
        if task.success():
            break
    result.success, result.progress = bool(task.success()), float(task.progress())
    return result
