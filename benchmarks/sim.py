"""Simulation throughput: env steps/s per task with 0 / 2x96x96 / 2x224x224 cameras, and physics-only.

Pinned to one core (the issue's goal: >= 200 env steps/s with two 96x96 cameras on one core).
Each task runs its scripted expert; only `task.step()` is timed (the expert's planning is not part
of the env). The baseline is the same scene's bare `stepSimulation()` loop measured in the same
run, so `env / physics` says what the control step (IK, hooks, observation, rendering) costs.
"""

from __future__ import annotations

import os
import time

import numpy as np

from benchmarks.report import percentiles, print_table, write_results

STEPS = 150                 # timed env steps per configuration
CAMERAS = {"none": ((), (96, 96)), "2x96x96": (("fixed", "wrist"), (96, 96)),
           "2x224x224": (("fixed", "wrist"), (224, 224))}
GOAL_STEPS_PER_S = 200.0


def _env_steps(name: str, cameras: tuple[str, ...], size: tuple[int, int]) -> dict[str, float]:
    from sim.tasks import make_task

    task = make_task(name, cameras=cameras, camera_size=size)
    try:
        obs, seed, times = task.reset(0), 0, []
        expert = task.expert()
        while len(times) < STEPS:
            if task.done():
                seed += 1
                obs = task.reset(seed)
            action = expert.act(obs)
            t0 = time.perf_counter()
            obs = task.step(action)
            times.append(time.perf_counter() - t0)
        return {"steps_per_s": len(times) / float(np.sum(times)), **percentiles(times),
                "physics_steps_per_step": task.physics_steps_per_step}
    finally:
        task.close()


def _physics_only(name: str, steps: int = 3000) -> float:
    from sim.tasks import make_task

    task = make_task(name)
    try:
        task.reset(0)
        client = task.world.client
        t0 = time.perf_counter()
        for _ in range(steps):
            client.stepSimulation()
        return steps / (time.perf_counter() - t0)
    finally:
        task.close()


def run() -> None:
    import sim  # noqa: F401
    from sim.tasks import available_tasks

    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(affinity)})
    rows = []
    try:
        for name in available_tasks():
            physics = _physics_only(name)
            for label, (cams, size) in CAMERAS.items():
                r = _env_steps(name, cams, size)
                env_physics = r["steps_per_s"] * r["physics_steps_per_step"]
                rows.append({"task": name, "cameras": label, "env_steps_per_s": r["steps_per_s"],
                             "p50_ms": r["p50_us"] / 1e3, "p99_ms": r["p99_us"] / 1e3,
                             "physics_steps_per_s": physics, "env_vs_physics": env_physics / physics,
                             "meets_goal": r["steps_per_s"] >= GOAL_STEPS_PER_S if label == "2x96x96" else ""})
    finally:
        os.sched_setaffinity(0, affinity)
    print_table("Simulation throughput, one core (env step = one control step; physics = bare stepSimulation)",
                rows, ["task", "cameras", "env_steps_per_s", "p50_ms", "p99_ms", "physics_steps_per_s",
                       "env_vs_physics", "meets_goal"])
    path = write_results("sim", rows, {"goal_env_steps_per_s_2x96": GOAL_STEPS_PER_S, "timed_steps": STEPS})
    print(f"wrote {path}")


if __name__ == "__main__":
    run()
