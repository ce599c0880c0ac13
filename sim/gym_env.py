"""Gymnasium environments over the task objects: `gymnasium.make("robot_stack/PushT-v0")`.

`import sim` registers one id per task (`ENV_IDS`); `gymnasium.make("sim:robot_stack/PushT-v0")`
works without importing first. Keyword arguments to `make` are task config fields
(`gymnasium.make("robot_stack/PushT-v0", cameras=("fixed",), randomize=True)`).

- observation_space: a `Dict` of `Box`es from the task's observation spec (images uint8 0..255).
- action_space: a `Box` with the task's action bounds (out-of-bound actions are clipped by the task
  and counted in `info["clipped"]`; NaN/inf raise `BadAction`).
- reward: the task's progress in [0, 1]; terminated = success; truncated = `max_steps` reached.
- `reset(seed=None)`: a seed drawn from the env's `np_random` when none is given, so
  `reset(seed=s)` replays episode s exactly.
- `render()`: an RGB frame from the fixed viewpoint (`render_mode="rgb_array"`).
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from sim.tasks import Spec, make_task

ENV_IDS = {
    "push_t": "robot_stack/PushT-v0",
    "peg_insert": "robot_stack/PegInsert-v0",
    "wipe": "robot_stack/Wipe-v0",
    "hand_grasp_lift": "robot_stack/HandGraspLift-v0",
}


def _box(spec: Spec) -> spaces.Box:
    if spec.dtype == "uint8":
        return spaces.Box(0, 255, spec.shape, np.uint8)
    low = -np.inf if spec.low is None else np.asarray(spec.low, np.float32)
    high = np.inf if spec.high is None else np.asarray(spec.high, np.float32)
    return spaces.Box(low, high, spec.shape, np.dtype(spec.dtype))


class TaskEnv(gymnasium.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, task: str, render_mode: str | None = None, render_size: tuple[int, int] = (256, 256),
                 **config: Any):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if "cameras" in config:
            config["cameras"] = tuple(config["cameras"])
        self.task = make_task(task, **config)
        self.render_mode = render_mode
        self.render_size = tuple(render_size)
        self.metadata = {**self.metadata, "render_fps": self.task.config.control_hz}
        self.observation_space = spaces.Dict({k: _box(s) for k, s in self.task.observation_spec().items()})
        self.action_space = _box(self.task.action_spec())

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        episode_seed = seed if seed is not None else int(self.np_random.integers(2**31 - 1))
        obs = self.task.reset(episode_seed)
        return obs, self._info()

    def step(self, action):
        obs = self.task.step(action)
        success = self.task.success()
        truncated = not success and self.task.step_count >= self.task.config.max_steps
        return obs, self.task.reward(), success, truncated, self._info()

    def _info(self) -> dict[str, Any]:
        t = self.task
        return {"success": t.success(), "progress": t.progress(), "clipped": t.clipped, "seed": t.seed,
                "perturbed_at": t.perturbed_at}

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        w, h = self.render_size
        return self.task.render(w, h)

    def close(self) -> None:
        self.task.close()


def register_envs() -> None:
    """Register `robot_stack/...` ids with gymnasium (idempotent)."""
    for task, env_id in ENV_IDS.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(env_id, entry_point="sim.gym_env:TaskEnv", kwargs={"task": task},
                               disable_env_checker=False)
