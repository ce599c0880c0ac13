"""Real-robot evaluation of a policy checkpoint (`robot-stack eval-real`, DESIGN.md "Policies").

The same protocol as the sim evaluation, on a robot launch (real drivers, or their emulators from
`drivers/`): the runner starts, with the launch `Supervisor` and on its own loopback DDS domain,

    every process of the robot launch file (as written; its nodes publish `joint_states`, take
        `joint_commands` / `action_chunk`, and may publish `/wrench`)
    process eval_policy: policies.server:PolicyServerNode   chunks remapped to `eval_real/action_chunk`

and, in this process, `RealEvalDriver`, the episode gate: it forwards the server's chunks to the
robot's `action_chunk` only while an episode runs, so between episodes the robot obeys the runner.

Episode k (fixed duration `episode_s`):
1. reset, the operator's job: `episode_events` RESET (episode_id k); with `home` the runner also
   moves the robot back to the joints it had at start-up (a `joint_commands` waypoint due `home_s`
   later, for emulated robots and arms that can go home unattended); then `settle_s`.
2. run: `episode_events` START, the gate opens for `episode_s`, every command the robot gets (the
   forwarded chunks, and `joint_commands` waypoints from anyone else) and every `/wrench` sample is
   recorded; then the gate closes, STOP, and the robot holds where it is.
3. score: the injected `Scorer` (operator prompt in the CLI, `ScriptedScorer` in tests) says
   success, an optional note and an optional completion time (s from the episode's start).
Between episodes the runner re-sends its hold waypoint every `hold_period_s`, so the robot node's
watchdog stays quiet while the operator scores and resets.

Output (`write_results`): `report.json`/`report.md`/`success.png` in the sim eval's shape
(`policies.eval_report.write_report`, `seed` = episode index) whose rows also carry the metrics,
and `metrics.json` (`policies.paired_report` metrics per episode) for `robot-stack eval-compare`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import yaml

from policies.base import PolicyError, read_checkpoint_meta
from policies.eval_driver import EPISODE_EVENT, EPISODE_RESET, EpisodeResult
from policies.evaluate import MAX_DOMAIN_ID, _domain_env
from policies.paired_report import METRICS_FILE, Command, chunk_command, episode_metrics
from robot_stack import convert, messages
from robot_stack.clock import NS, Time
from robot_stack.node import Node

SERVER_CLASS = "policies.server:PolicyServerNode"
POLICY_PROCESS = "eval_policy"
POLICY_TOPIC = "eval_real/action_chunk"
ACTION_CHUNK = "robot_stack_msgs/msg/ActionChunk"
JOINT_STATE = "sensor_msgs/msg/JointState"
WRENCH = "geometry_msgs/msg/WrenchStamped"
STATUS = "diagnostic_msgs/msg/DiagnosticStatus"
EPISODE_START, EPISODE_STOP = 0, 1
HOLD_FRAME = "eval_real_hold"          # frame_id of the runner's own joint_commands (not recorded)


class RealEvalError(PolicyError):
    pass


@dataclass(frozen=True)
class RealEvalConfig:
    checkpoint: Path
    launch: Path
    episodes: int = 10
    episode_s: float = 20.0
    out: Path = Path("eval_real")
    device: str = "cpu"
    policy_modules: tuple[str, ...] = ()
    obs_map: dict[str, Any] = field(default_factory=dict)
    max_obs_age_s: float = 0.5
    wrench_topic: str = "/wrench"
    home: bool = True
    home_s: float = 2.0
    settle_s: float = 0.5
    hold_period_s: float = 0.2
    domain: int | None = None              # None: derived from the process id
    startup_timeout_s: float = 60.0

    def __post_init__(self):
        if self.episodes < 1:
            raise RealEvalError(f"eval-real: episodes must be >= 1, got {self.episodes}")
        for name in ("episode_s", "home_s", "hold_period_s", "max_obs_age_s", "startup_timeout_s"):
            if not getattr(self, name) > 0:
                raise RealEvalError(f"eval-real: {name} must be > 0, got {getattr(self, name)}")
        if self.domain is not None and not 0 <= self.domain <= MAX_DOMAIN_ID:
            raise RealEvalError(f"eval-real: domain must be in 0..{MAX_DOMAIN_ID}, got {self.domain}")

    def domain_id(self) -> int:
        return self.domain if self.domain is not None else 101 + (os.getpid() + 50) % 100


@dataclass
class RealEpisodeResult(EpisodeResult):
    """A sim `EpisodeResult` (seed = episode index; its `commands` = command messages the robot
    received, its force and smoothness fields from the robot's `/wrench` and commands) plus the
    operator's note and the episode's wall duration."""

    note: str = ""
    duration_s: float = 0.0


# --- scoring -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Score:
    success: bool
    note: str = ""
    time_s: float | None = None            # completion time from the episode's start, when known


class Scorer(Protocol):
    def score(self, episode: int, info: dict[str, Any]) -> Score: ...


class ScriptedScorer:
    """Outcomes given in advance: a list of booleans or {success, note, time_s} mappings."""

    def __init__(self, outcomes: list[Any]):
        self.scores = [self._parse(k, o) for k, o in enumerate(outcomes)]

    @staticmethod
    def _parse(k: int, entry: Any) -> Score:
        if isinstance(entry, bool):
            return Score(entry)
        if not isinstance(entry, dict) or not isinstance(entry.get("success"), bool):
            raise RealEvalError(f"scripted scores: entry {k} must be true/false or a mapping with a boolean "
                                f"'success' (and optional 'note', 'time_s'), got {entry!r}")
        time_s = entry.get("time_s")
        return Score(entry["success"], str(entry.get("note", "")), None if time_s is None else float(time_s))

    @classmethod
    def from_file(cls, path: Path) -> ScriptedScorer:
        """A YAML or JSON file: a list of outcomes, or a mapping with one under `episodes`."""
        try:
            data = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise RealEvalError(f"scripted scores {path}: cannot read: {exc}") from None
        data = data.get("episodes") if isinstance(data, dict) else data
        if not isinstance(data, list):
            raise RealEvalError(f"scripted scores {path}: expected a list of outcomes (or 'episodes: [...]')")
        return cls(data)

    def score(self, episode: int, info: dict[str, Any]) -> Score:
        if episode >= len(self.scores):
            raise RealEvalError(f"scripted scores: no outcome for episode {episode} ({len(self.scores)} given)")
        return self.scores[episode]


# --- launch --------------------------------------------------------------------------------------
def real_launch(cfg: RealEvalConfig) -> Any:
    """The robot launch file's processes plus the policy server's, as one `LaunchConfig`."""
    from robot_stack.launch.config import LaunchConfig, load_launch_file, parse_launch

    robot = load_launch_file(cfg.launch, check_imports=False)
    for proc in robot.processes:
        if proc.transport != "dds":
            raise RealEvalError(f"eval-real: {robot.source} process '{proc.name}' uses transport "
                                f"'{proc.transport}'; the evaluation talks to the robot over dds")
        if proc.name == POLICY_PROCESS:
            raise RealEvalError(f"eval-real: {robot.source} already has a process named '{POLICY_PROCESS}'")
    params: dict[str, Any] = {"checkpoint": str(Path(cfg.checkpoint).resolve()), "device": cfg.device,
                              "max_obs_age_s": cfg.max_obs_age_s, "status_rate_hz": 2.0}
    if cfg.obs_map:
        params["observations"] = cfg.obs_map
    if cfg.policy_modules:
        params["policy_modules"] = list(cfg.policy_modules)
    node = {"name": "policy_server", "class": SERVER_CLASS, "parameters": params,
            "remap": {"action_chunk": POLICY_TOPIC}}
    policy = parse_launch({"transport": "dds", "processes": {POLICY_PROCESS: {"nodes": [node]}}},
                          f"robot-stack eval-real ({POLICY_PROCESS})", check_imports=False)
    return LaunchConfig(robot.source, "dds", robot.processes + policy.processes)


# --- the driver ----------------------------------------------------------------------------------
class RealEvalDriver(Node):
    """The episode gate and recorder (see the module docstring). Callbacks run in the executor's
    thread, the protocol in the caller's: shared state is guarded by `lock`."""

    def __init__(self, *, wrench_topic: str, hold_period_s: float, **kwargs: Any):
        super().__init__("eval_real_driver", publish_stats=False, **kwargs)
        self.lock = threading.Lock()
        self.server_state, self.ready = "starting", False
        self.measured: tuple[list[str], np.ndarray] | None = None
        self.start_pose: tuple[list[str], np.ndarray] | None = None
        self.recording = False
        self.commands: list[Command] = []
        self.forces: list[np.ndarray] = []
        self._hold: tuple[list[str], np.ndarray, int] | None = None
        self.chunk_pub = self.create_publisher(ACTION_CHUNK, "action_chunk", 10)
        self.command_pub = self.create_publisher(JOINT_STATE, "joint_commands", 10)
        self.event_pub = self.create_publisher(EPISODE_EVENT, "episode_events", 10)
        self.create_subscription(ACTION_CHUNK, POLICY_TOPIC, self._on_chunk, 10)
        self.create_subscription(JOINT_STATE, "joint_commands", self._on_joint_command, 10)
        self.create_subscription(JOINT_STATE, "joint_states", self._on_state, 10)
        self.create_subscription(WRENCH, wrench_topic, self._on_wrench, "sensor_data")
        self.create_subscription(STATUS, "/policy_server/status", self._on_server_status, 10)
        self.create_timer(hold_period_s, self._keep_holding, name="hold")

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _on_server_status(self, msg: Any) -> None:
        self.server_state = msg.message
        self.ready = self.ready or msg.message == "acting"

    def _on_state(self, msg: Any) -> None:
        pose = (list(msg.name), np.asarray(msg.position, dtype=np.float64).copy())
        with self.lock:
            self.measured = pose
            self.start_pose = self.start_pose or pose

    def _on_chunk(self, msg: Any) -> None:
        with self.lock:
            if not self.recording:
                return
            self.chunk_pub.publish(msg)
            self.commands.append(chunk_command(msg, self._now_ns()))

    def _on_joint_command(self, msg: Any) -> None:
        with self.lock:
            if self.recording and msg.header.frame_id != HOLD_FRAME:
                due = Time.from_msg(msg.header.stamp).nanoseconds
                self._record(due, 0, tuple(msg.name), np.asarray(msg.position, dtype=np.float64)[None])

    def _record(self, first_ns: int, dt_ns: int, names: tuple[str, ...], rows: np.ndarray) -> None:
        now = self._now_ns()
        self.commands.append((now, first_ns or now, dt_ns, names, rows))

    def _on_wrench(self, msg: Any) -> None:
        with self.lock:
            if self.recording:
                self.forces.append(convert.wrench_vector(msg)[:3])

    # --- called by the protocol ----------------------------------------------------------------
    def event(self, kind: int, episode: int, note: str = "") -> None:
        self.event_pub.publish(messages.make(EPISODE_EVENT, header=convert.header(self.get_clock().now()), event=kind,
                                             source="eval-real", episode_id=str(episode), note=note))

    def hold_at(self, pose: tuple[list[str], np.ndarray], after_s: float = 0.0) -> None:
        """Command `pose`, reached `after_s` from now, and keep commanding it until `begin()`."""
        with self.lock:
            self._hold = (pose[0], pose[1], self._now_ns() + int(after_s * NS))
        self._keep_holding()

    def _keep_holding(self) -> None:
        with self.lock:              # also serializes the two threads that call it
            if self._hold is None or self.recording:
                return
            names, position, due = self._hold
            stamp = Time(max(due, self._now_ns()))
            self.command_pub.publish(convert.joint_state(names, position, stamp=stamp, frame_id=HOLD_FRAME))

    def begin(self) -> None:
        with self.lock:
            self.commands, self.forces = [], []
            self._hold, self.recording = None, True

    def end(self) -> tuple[list[Command], list[np.ndarray]]:
        with self.lock:
            self.recording = False
            return self.commands, self.forces


# --- running -------------------------------------------------------------------------------------
Progress = Callable[[str, Any], None]   # ("status", text) | ("episode", RealEpisodeResult)


class RealEvaluation:
    """Launch, driver (spun in a background thread) and the episode protocol; `run(scorer)`."""

    def __init__(self, cfg: RealEvalConfig, *, console: Any = None, log_level: str = "WARNING",
                 progress: Progress | None = None):
        self.cfg, self.console, self.log_level = cfg, console, log_level
        self.progress = progress or (lambda *_: None)
        self.meta = read_checkpoint_meta(cfg.checkpoint)
        self.dt_s = 1.0 / float(self.meta["config"].get("action_rate", 10.0))
        self.supervisor: Any = None
        self.context: Any = None
        self.driver: RealEvalDriver | None = None
        self.executor: Any = None
        self._spinner: threading.Thread | None = None

    def start(self) -> None:
        from robot_stack.context import Context
        from robot_stack.executor import Executor
        from robot_stack.launch.supervisor import Supervisor

        config = real_launch(self.cfg)
        domain = self.cfg.domain_id()
        self.supervisor = Supervisor(config, log_level=self.log_level, console=self.console, stop_timeout=10.0)
        with _domain_env(domain):
            self.supervisor.start()
        self.context = Context("dds", domain_id=domain)
        self.driver = RealEvalDriver(wrench_topic=self.cfg.wrench_topic, hold_period_s=self.cfg.hold_period_s,
                                     context=self.context)
        self.executor = Executor()
        self.executor.add_node(self.driver)
        self._spinner = threading.Thread(target=self.executor.spin, name="eval-real-spin", daemon=True)
        self._spinner.start()
        self.progress("status", f"domain {domain}: starting robot + policy server")

    def _wait(self, seconds: float, until: Callable[[], bool] | None = None) -> bool:
        """Sleep up to `seconds` (True early once `until()` holds), failing if a launched process died."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self._check_children()
            if until is not None and until():
                return True
            time.sleep(0.02)
        return until is None

    def _check_children(self) -> None:
        dead = self.supervisor.exited()
        if dead:
            from robot_stack.launch.supervisor import describe_exit

            what = "; ".join(f"'{c.name}' {describe_exit(c.popen.returncode)}" for c in dead)
            raise RealEvalError(f"eval-real: process {what}; see its output above")

    def run(self, scorer: Scorer) -> list[RealEpisodeResult]:
        d = self.driver
        if not self._wait(self.cfg.startup_timeout_s, lambda: d.ready and d.start_pose is not None):
            raise RealEvalError(f"eval-real: the policy server is not acting, or the robot publishes no "
                                f"joint_states, after {self.cfg.startup_timeout_s:g} s "
                                f"(server: {d.server_state!r}, joint_states: {d.start_pose is not None})")
        return [self._episode(k, scorer) for k in range(self.cfg.episodes)]

    def _episode(self, k: int, scorer: Scorer) -> RealEpisodeResult:
        d, cfg = self.driver, self.cfg
        d.event(EPISODE_RESET, k)
        self.progress("status", f"episode {k}: reset")
        with d.lock:
            pose = d.start_pose if cfg.home else d.measured
        d.hold_at(pose, cfg.home_s if cfg.home else 0.0)
        self._wait((cfg.home_s if cfg.home else 0.0) + cfg.settle_s)
        d.event(EPISODE_START, k)
        self.progress("status", f"episode {k}: running for {cfg.episode_s:g} s")
        t0 = time.perf_counter()
        d.begin()
        self._wait(cfg.episode_s)
        commands, forces = d.end()
        duration = time.perf_counter() - t0
        with d.lock:
            measured = d.measured
        d.hold_at(measured)
        d.event(EPISODE_STOP, k)
        metrics = episode_metrics(commands, forces, self.dt_s)
        self.progress("status", f"episode {k}: scoring")
        score = scorer.score(k, {"episode": k, "duration_s": duration, **metrics})
        result = RealEpisodeResult(seed=k, worker=0, success=score.success, steps=metrics["commands"],
                                   time_to_success_s=score.time_s if score.success else None,
                                   final_progress=1.0 if score.success else 0.0, wall_s=duration,
                                   note=score.note, duration_s=duration, **metrics)
        self.progress("episode", result)
        return result

    def close(self) -> dict[str, int | None]:
        """Stop the spinner, the driver and every launched process (SIGINT, SIGTERM, SIGKILL)."""
        if self.executor is not None:
            self.executor.shutdown()
        if self._spinner is not None:
            self._spinner.join(timeout=5.0)
        codes = self.supervisor.stop() if self.supervisor is not None else {}
        if self.driver is not None:
            self.driver.destroy_node()
        if self.context is not None:
            self.context.shutdown()
        self.supervisor = self.driver = self.context = self.executor = self._spinner = None
        return codes


def evaluate_real(cfg: RealEvalConfig, scorer: Scorer, **kwargs: Any) -> list[RealEpisodeResult]:
    """Run the real-robot evaluation; every launched process is stopped, also on errors and Ctrl-C."""
    ev = RealEvaluation(cfg, **kwargs)
    try:
        ev.start()
        return ev.run(scorer)
    finally:
        ev.close()


def report_info(cfg: RealEvalConfig) -> dict[str, Any]:
    meta = read_checkpoint_meta(cfg.checkpoint)
    return {"policy": meta["policy"], "checkpoint": str(Path(cfg.checkpoint).resolve()),
            "task": str(cfg.launch), "seeds": f"0..{cfg.episodes - 1}", "workers": 1, "side": "real",
            "episode_s": cfg.episode_s, "home": cfg.home}


def write_results(results: list[RealEpisodeResult], cfg: RealEvalConfig) -> dict[str, Any]:
    """report.json / report.md / success.png (the sim eval's shape) and metrics.json under `cfg.out`."""
    from policies.eval_report import write_report

    data = write_report(results, cfg.out, report_info(cfg))
    keys = ("seed", "note", "duration_s", "commands", "force_samples", "force_mean_n", "force_max_n",
            "mean_squared_jerk", "mean_abs_delta")
    rows = [{k: v for k, v in dataclasses.asdict(r).items() if k in keys} for r in results]
    (Path(cfg.out) / METRICS_FILE).write_text(json.dumps({"side": "real", "episodes": rows}, indent=1))
    return data
