"""`robot-stack eval --ray [ADDRESS]`: the evaluation's workers as Ray tasks.

One task per worker: worker k runs seeds `seeds[k::workers]` through `policies.evaluate.run_worker`,
the code path of a local evaluation (its own sim + policy server launch, lockstep, on DDS domain
`domains()[k]`), and returns the episode results as plain dicts; the driver rebuilds them into
`EpisodeResult`s for the usual report. Without an address a local Ray instance is started (one CPU
per worker, no dashboard) and shut down afterwards; with one, `ray.init(address=...)` joins that
cluster. A Ray that the caller has already initialized is used as it is and left running.

Every task gets `ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST` and its `ROS_DOMAIN_ID` through the
task's `runtime_env`, so DDS discovery never leaves the node a task runs on. Task arguments and
results are plain data (no project objects are pickled). On a cluster the checkpoint and the output
directory must be at the same absolute path on every node (a shared filesystem): videos are written
by the node that ran the episode. Ray has no authentication: keep its ports on a trusted network.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from policies.evaluate import EpisodeResult, EvalConfig, EvalError, Progress, run_worker

RAY_MISSING = "robot-stack eval --ray needs Ray, which is not installed: pip install 'robot-stack[ray]'"
WAIT_S = 0.5               # ray.wait blocks signals: the driver polls so that Ctrl-C and SIGTERM get through
CANCEL_WAIT_S = 30.0        # after Ctrl-C: how long cancelled tasks get to stop their launches


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise EvalError(RAY_MISSING) from exc
    return ray


def loopback_env(domain: int | None = None) -> dict[str, str]:
    """The DDS environment of a Ray task: discovery on loopback, and its domain when given."""
    env = {"ROS_AUTOMATIC_DISCOVERY_RANGE": os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")}
    if domain is not None:
        env["ROS_DOMAIN_ID"] = str(domain)
    return env


@contextlib.contextmanager
def ray_session(address: str | None, num_cpus: int) -> Iterator[Any]:
    """The `ray` module, initialized: as the caller left it, else local (`address` None or "local") or
    joined to the cluster at `address`."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    runtime_env = {"env_vars": loopback_env()}
    if address and address != "local":
        ray.init(address=address, runtime_env=runtime_env)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, runtime_env=runtime_env)
    try:
        yield ray
    finally:
        ray.shutdown()


def worker_chunks(seeds: list[int], workers: int) -> list[list[int]]:
    """Seeds dealt round-robin to at most `workers` non-empty chunks."""
    return [chunk for chunk in (seeds[k::workers] for k in range(workers)) if chunk]


def config_to_dict(cfg: EvalConfig) -> dict[str, Any]:
    """Plain data for a task (paths absolute: a Ray worker has its own working directory)."""
    data = dataclasses.asdict(cfg)
    data["checkpoint"], data["out"] = str(Path(cfg.checkpoint).resolve()), str(Path(cfg.out).resolve())
    data["policy_modules"] = list(cfg.policy_modules)
    return data


def config_from_dict(data: dict[str, Any]) -> EvalConfig:
    return EvalConfig(**{**data, "checkpoint": Path(data["checkpoint"]), "out": Path(data["out"]),
                         "policy_modules": tuple(data["policy_modules"])})


def ray_worker(cfg: dict[str, Any], worker: int, seeds: list[int], domain: int,
               log_level: str) -> list[dict[str, Any]]:
    """The body of a Ray task (module level, so Ray ships a reference, not the code)."""
    return run_worker(config_from_dict(cfg), worker, seeds, domain, log_level=log_level)


def evaluate_ray(cfg: EvalConfig, address: str | None = None, *, log_level: str = "WARNING",
                 progress: Progress | None = None) -> list[EpisodeResult]:
    """`evaluate(cfg)` with each worker as a Ray task; results sorted by seed."""
    progress = progress or (lambda *_: None)
    data, domains = config_to_dict(cfg), cfg.domains()
    with ray_session(address, cfg.workers) as ray:
        task = ray.remote(num_cpus=1, max_retries=0)(ray_worker)
        pending = {}
        for k, seeds in enumerate(worker_chunks(cfg.seeds, cfg.workers)):
            options = {"runtime_env": {"env_vars": loopback_env(domains[k])}, "name": f"eval_worker_{k}"}
            pending[task.options(**options).remote(data, k, seeds, domains[k], log_level)] = k
            progress("worker", (k, f"Ray task: {len(seeds)} seeds from {seeds[0]}, domain {domains[k]}"))
        try:
            return _collect(ray, pending, progress)
        except BaseException:
            _cancel(ray, list(pending))
            raise


def _collect(ray: Any, pending: dict[Any, int], progress: Progress) -> list[EpisodeResult]:
    results: list[EpisodeResult] = []
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT_S)     # a timeout: Ctrl-C gets through
        if not ready:
            continue
        k = pending.pop(ready[0])
        try:
            rows = ray.get(ready[0])
        except Exception as exc:
            raise EvalError(f"eval: Ray task of worker {k} failed: {exc}") from exc
        for row in rows:
            result = EpisodeResult(**row)
            results.append(result)
            progress("episode", result)
        progress("worker", (k, f"done ({len(rows)} episodes)"))
    return sorted(results, key=lambda r: r.seed)


def _cancel(ray: Any, refs: list[Any]) -> None:
    """Interrupt the tasks still running (KeyboardInterrupt in each: its launch is stopped cleanly)."""
    for ref in refs:
        ray.cancel(ref)
    if refs:
        ray.wait(refs, num_returns=len(refs), timeout=CANCEL_WAIT_S)
