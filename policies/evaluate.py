"""Seeded sim evaluation of a policy checkpoint (`robot-stack eval`, DESIGN.md "Policies").

Launch layout, one per worker, each on its own DDS domain (loopback discovery, `domain_base + k`),
so workers never see each other's topics (not even `/clock`):

    process sim:    sim.node:SimNode            task, realtime: false, lockstep sync_period_s = 1/slow_hz
    process policy: policies.eval_server:LockstepPolicyServer   use_sim_time, chunks on task/action_chunk

A policy with a fast decoder (RDP) runs reactively: lockstep at the control rate (1/action_rate), the
server re-running the slow part every `n_action_steps` steps and the fast decoder with fresh
force/tactile readings at every step (`policies.eval_server`, `reactive`).

The processes are started with the launch `Supervisor` (class paths only: `policies` never imports
`sim`). The driver (`policies.eval_driver.EvalDriver`), one node per worker in this process (own
context on the worker's domain), waits until the server acts, then runs the episodes: RESET with
`episode_id` = seed, `task/status` until success or `max_steps`, progress curve, video, and force
and smoothness (the sim's wrist F/T, published at `FT_HZ` in eval launches, and the policy's chunks).

Observation map: per checkpoint feature, images come from `<camera>/image_raw` (the sim renders
the cameras the policy needs, at the feature's size) and low-dim state from `task/observation`,
whose names are `<key>.<dim>` (e.g. `agent_pos.x`). Datasets name state dims their own way
(the push_t demos: agent_x, ..., block_sin, block_cos), so `STATE_ALIASES` maps a feature's dim
names to the sim's, with `sin:`/`cos:` for angles stored as sine and cosine
(`policies.obs_buffer` "names"); `--obs-map` overrides entries.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policies.base import PolicyError, policy_class, read_checkpoint_meta
from policies.eval_driver import VIDEO_CAMERA, EpisodeResult, EvalDriver
from policies.server import has_fast_decoder

SIM_CLASS = "sim.node:SimNode"
SERVER_CLASS = "policies.eval_server:LockstepPolicyServer"
FT_HZ = 100.0                      # sim wrist F/T rate in eval launches (its low-pass is at 30 Hz)
MAX_DOMAIN_ID = 232
INITIAL_SEED = 2**31 - 1           # the sim's start-up episode: never one of the evaluated seeds
STATE_ALIASES = {
    "push_t": {"agent_x": "agent_pos.x", "agent_y": "agent_pos.y", "block_x": "block_pose.x",
               "block_y": "block_pose.y", "block_yaw": "block_pose.yaw", "block_sin": "sin:block_pose.yaw",
               "block_cos": "cos:block_pose.yaw"},
    "wipe": {**{f"ee_{a}": f"ee_pos.{a}" for a in "xyz"}, **{f"area_{a}": f"surface_pos.{a}" for a in "xyz"},
             **{f"normal_{a}": f"surface_normal.n{a}" for a in "xyz"},
             **{f"{part}.{a}": f"wrench.{part[0]}{a}" for part in ("force", "torque") for a in "xyz"}},
}


class EvalError(PolicyError):
    pass


@dataclass(frozen=True)
class EvalConfig:
    checkpoint: Path
    task: str = "push_t"
    episodes: int = 10
    workers: int = 1
    seed0: int = 0
    perturb: bool = False
    randomize: bool = False
    out: Path = Path("eval")
    max_steps: int = 300
    video: bool = True
    device: str = "cpu"
    policy_modules: tuple[str, ...] = ()
    obs_map: dict[str, Any] = field(default_factory=dict)
    domain_base: int | None = None        # None: derived from the process id
    sync_timeout_s: float = 5.0
    startup_timeout_s: float = 120.0
    episode_timeout_s: float = 600.0
    wrench_topic: str = "wrench"           # "": record no force

    def __post_init__(self):
        for name in ("episodes", "workers", "max_steps"):
            if getattr(self, name) < 1:
                raise EvalError(f"eval: {name} must be >= 1, got {getattr(self, name)}")
        if self.seed0 < 0:
            raise EvalError(f"eval: seed0 must be >= 0, got {self.seed0}")

    @property
    def seeds(self) -> list[int]:
        return list(range(self.seed0, self.seed0 + self.episodes))

    def domains(self) -> list[int]:
        span = MAX_DOMAIN_ID - self.workers
        base = self.domain_base if self.domain_base is not None else 101 + os.getpid() % (span - 100)
        if not 0 <= base <= span:
            raise EvalError(f"eval: domain_base must be in 0..{span} for {self.workers} workers, got {base}")
        return [base + k for k in range(self.workers)]


# --- launch ------------------------------------------------------------------------------------
def default_obs_map(meta: dict[str, Any], task: str) -> dict[str, Any]:
    """Checkpoint features -> sim topics (see the module docstring)."""
    aliases = STATE_ALIASES.get(task, {})
    out: dict[str, Any] = {}
    for name in meta["config"]["obs"]:
        spec = meta["features"][name]
        if spec["kind"] == "image":
            out[name] = {"topic": f"{name.rsplit('.', 1)[-1]}/image_raw"}
        else:
            entry: dict[str, Any] = {"topic": "task/observation", "type": "sensor_msgs/msg/JointState",
                                     "field": "position"}
            if spec["names"]:
                entry["names"] = [aliases.get(n, n) for n in spec["names"]]
            out[name] = entry
    return out


def sim_cameras(meta: dict[str, Any], video: bool) -> tuple[list[str], tuple[int, int]]:
    """Cameras the sim renders (the policy's, plus the video camera) and their (width, height)."""
    images = [meta["features"][n] for n in meta["config"]["obs"] if meta["features"][n]["kind"] == "image"]
    cams = [n["name"].rsplit(".", 1)[-1] for n in images]
    sizes = {tuple(n["shape"][1:]) for n in images}
    if len(sizes) > 1:
        raise EvalError(f"eval: the policy's cameras have different sizes {sorted(sizes)}; the sim renders one")
    height, width = sizes.pop() if sizes else (96, 128)
    if video and VIDEO_CAMERA not in cams:
        cams.append(VIDEO_CAMERA)
    return cams, (int(width), int(height))


def reactive(meta: dict[str, Any]) -> bool:
    """Whether the checkpoint's policy has a fast decoder (RDP): then the lockstep server runs it reactively."""
    try:
        return has_fast_decoder(policy_class(str(meta.get("policy", ""))))
    except PolicyError:                    # a policy from a module this process has not imported
        return False


def worker_launch(cfg: EvalConfig, meta: dict[str, Any], worker: int) -> dict[str, Any]:
    """The launch data (`robot_stack.launch.parse_launch` input) of one worker."""
    slow_hz = float(meta["config"]["slow_hz"])
    fast = reactive(meta)                  # lockstep at the control rate, re-decoding at every step
    sync_hz = float(meta["config"]["action_rate"]) if fast else slow_hz
    cams, (width, height) = sim_cameras(meta, cfg.video)
    obs_map = {**default_obs_map(meta, cfg.task), **cfg.obs_map}
    sim = {"task": cfg.task, "max_steps": cfg.max_steps, "realtime": False, "sync_period_s": 1.0 / sync_hz,
           "sync_timeout_s": cfg.sync_timeout_s,
           "seed": INITIAL_SEED - worker, "perturb": cfg.perturb, "randomize": cfg.randomize, "cameras": cams,
           "camera_width": width, "camera_height": height, "camera_hz": slow_hz, "task_status_hz": slow_hz,
           "stop_periods": 5000, "ft_hz": FT_HZ}
    threads = max(1, (os.cpu_count() or 1) // min(cfg.workers, cfg.episodes))   # one share of the cores each
    server = {"checkpoint": str(Path(cfg.checkpoint).resolve()), "device": cfg.device, "use_sim_time": True,
              "torch_threads": threads,
              "observations": obs_map, "max_obs_age_s": 2.0, "status_rate_hz": 2.0,
              **({"mode": "chunk", "reactive": True} if fast else {}),
              **({"policy_modules": list(cfg.policy_modules)} if cfg.policy_modules else {})}
    return {"transport": "dds", "processes": {
        "sim": {"nodes": [{"name": "sim", "class": SIM_CLASS, "parameters": sim}]},
        "policy": {"nodes": [{"name": "policy_server", "class": SERVER_CLASS, "parameters": server,
                              "remap": {"action_chunk": "task/action_chunk"}}]}}}


@contextlib.contextmanager
def _domain_env(domain: int) -> Iterator[None]:
    """ROS_DOMAIN_ID for the children spawned inside (the Supervisor copies os.environ at spawn)."""
    old = os.environ.get("ROS_DOMAIN_ID")
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("ROS_DOMAIN_ID", None)
        else:
            os.environ["ROS_DOMAIN_ID"] = old


# --- running -----------------------------------------------------------------------------------
Progress = Callable[[str, Any], None]    # ("worker", (k, text)) | ("episode", EpisodeResult)


class Evaluation:
    """Launches, drivers and the episode loop; `run()` -> results sorted by seed."""

    def __init__(self, cfg: EvalConfig, *, console: Any = None, log_level: str = "WARNING",
                 progress: Progress | None = None, seeds: list[int] | None = None,
                 slots: list[tuple[int, int]] | None = None):
        """`seeds` (default `cfg.seeds`) run on `slots`, (worker index, DDS domain) pairs (default: all
        `cfg.workers` on `cfg.domains()`); a Ray task runs one slot with its share of the seeds."""
        self.cfg, self.console, self.log_level = cfg, console, log_level
        self.progress = progress or (lambda *_: None)
        self.seeds = list(cfg.seeds if seeds is None else seeds)
        self.slots = list(enumerate(cfg.domains()) if slots is None else slots)
        self.meta = read_checkpoint_meta(cfg.checkpoint)
        self.control_hz = float(self.meta["config"]["slow_hz"])
        self.action_dt_s = 1.0 / float(self.meta["config"].get("action_rate", 10.0))
        self.supervisors: list[Any] = []
        self.drivers: list[EvalDriver] = []
        self.contexts: list[Any] = []

    def start(self) -> None:
        from robot_stack.context import Context
        from robot_stack.launch.config import parse_launch
        from robot_stack.launch.supervisor import Supervisor

        video_dir = self.cfg.out / "videos" if self.cfg.video else None
        if video_dir is not None:
            video_dir.mkdir(parents=True, exist_ok=True)
        for k, domain in self.slots[:len(self.seeds)]:     # no idle workers
            config = parse_launch(worker_launch(self.cfg, self.meta, k), f"robot-stack eval (worker {k})")
            sup = Supervisor(config, log_level=self.log_level, console=self.console, stop_timeout=10.0)
            with _domain_env(domain):
                self.supervisors.append(sup)
                sup.start()
            ctx = Context("dds", domain_id=domain)
            self.contexts.append(ctx)
            self.drivers.append(EvalDriver(k, max_steps=self.cfg.max_steps, control_hz=self.control_hz,
                                           video_dir=video_dir, action_dt_s=self.action_dt_s,
                                           wrench_topic=self.cfg.wrench_topic, context=ctx))
            self.progress("worker", (k, f"domain {domain}: starting sim + policy"))

    def run(self) -> list[EpisodeResult]:
        from robot_stack.executor import Executor

        executor = Executor()
        for d in self.drivers:
            executor.add_node(d)
        todo, results = list(self.seeds), []
        t0 = time.perf_counter()
        while len(results) < len(self.seeds):
            executor.spin_once(0.02)
            self._check_children()
            for d in self.drivers:
                if not d.ready:
                    if time.perf_counter() - t0 > self.cfg.startup_timeout_s:
                        raise EvalError(f"eval: worker {d.worker}'s policy server is not acting after "
                                        f"{self.cfg.startup_timeout_s:g} s (state: {d.server_state!r})")
                    continue
                done = d.poll(self.cfg.episode_timeout_s)
                if done is not None:
                    results.append(done)
                    self.progress("episode", done)
                if not d.busy and todo:
                    d.start(todo.pop(0))
                    self.progress("worker", (d.worker, f"seed {d.episode.seed}"))
                elif d.busy and d.episode.curve:
                    ep = d.episode
                    self.progress("worker", (d.worker, f"seed {ep.seed}: step {ep.steps}, "
                                                       f"progress {ep.final_progress:.2f}"))
        return sorted(results, key=lambda r: r.seed)

    def _check_children(self) -> None:
        for k, sup in enumerate(self.supervisors):
            dead = sup.exited()
            if dead:
                from robot_stack.launch.supervisor import describe_exit

                what = "; ".join(f"'{c.name}' {describe_exit(c.popen.returncode)}" for c in dead)
                raise EvalError(f"eval: worker {k}: process {what}; see its output above")

    def close(self) -> dict[str, int | None]:
        """Stop every launch (SIGINT, then SIGTERM, SIGKILL) and the drivers; the children's exit codes."""
        codes: dict[str, int | None] = {}
        for k, sup in enumerate(self.supervisors):
            codes.update({f"{k}.{name}": code for name, code in sup.stop().items()})
        for d in self.drivers:
            d.destroy_node()
        for ctx in self.contexts:
            ctx.shutdown()
        self.supervisors, self.drivers, self.contexts = [], [], []
        return codes

    def pids(self) -> list[int]:
        return [c.popen.pid for sup in self.supervisors for c in sup.children]


def evaluate(cfg: EvalConfig, **kwargs: Any) -> list[EpisodeResult]:
    """Run the evaluation and stop every process it started, also on errors and Ctrl-C."""
    ev = Evaluation(cfg, **kwargs)
    try:
        ev.start()
        return ev.run()
    finally:
        ev.close()


def run_worker(cfg: EvalConfig, worker: int, seeds: list[int], domain: int, *,
               log_level: str = "WARNING") -> list[dict[str, Any]]:
    """One worker's share of an evaluation (a Ray task's body): `seeds` on one sim + policy launch
    on DDS `domain`; the results as plain dicts (`EpisodeResult(**d)` rebuilds them)."""
    results = evaluate(cfg, log_level=log_level, seeds=seeds, slots=[(worker, domain)])
    return [dataclasses.asdict(r) for r in results]
