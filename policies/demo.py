"""`robot-stack demo`: the platform's main job end to end in simulation (what `make demo` runs).

1. **Teleop -> record.** One launch (own DDS domain, loopback): `sim.node:SimNode` with the `push_t`
   scene (lockstep at the task's 10 Hz, fixed camera), `sim.operator:ScriptedOperator` (the scripted
   expert as the operator: it drives the robot only through `teleop_target`, exactly where a human
   device would, and presses RESET/START/SUCCESS/STOP as `EpisodeEvent`s) and `data.recorder:RecorderNode`
   (task observation, applied action and the camera as video). Loop rates and jitter of every node
   come from the launch's `--stats-out` files; the drop counters from the episodes' stream stats.
2. **Export** the episode store to LeRobot v3 (`data.formats`), and **train** the policy on the
   export (`policies.train.Trainer`, config `demo_pusht`; DP by default, `--policy carp|rdp`).
3. **Serve + evaluate**: `policies.evaluate` launches, per worker, the sim and the policy server in
   separate processes (the server's slow rate in its process, the robot node's interpolation at the
   control rate in the sim's) and runs seeded episodes in lockstep; its report, plot and videos go
   to `OUT/eval/`.
4. `OUT/report.md` (+ `report.json`): the success rate with its Wilson interval, the plot, a rollout
   video, the loop rates/jitter and the recording's counters. The success rate is whatever the
   trained policy achieves; nothing is tuned for the demo.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from policies.base import PolicyError

TASK = "push_t"
TASK_TEXT = "push the T onto the goal"
CAMERA = "fixed"
FREE_RUNNING_HZ = 1e4          # timers asking for more than this run back to back (fast-mode sim stepping)


@dataclass(frozen=True)
class DemoConfig:
    out: Path = Path("demo_out")
    policy: str = "dp"
    episodes: int = 30                 # demonstrations recorded
    train_steps: int = 2000
    eval_episodes: int = 10
    workers: int = 2
    seed0: int = 0                     # demonstration seeds seed0.., evaluation seeds eval_seed0..
    eval_seed0: int = 1000
    max_steps: int = 300
    domain_base: int | None = None
    record_timeout_s: float = 600.0

    def __post_init__(self):
        for name in ("episodes", "train_steps", "eval_episodes", "workers", "max_steps"):
            if getattr(self, name) < 1:
                raise PolicyError(f"demo: {name} must be >= 1, got {getattr(self, name)}")

    def domains(self) -> tuple[int, int]:
        """(recording domain, first evaluation domain)."""
        base = self.domain_base if self.domain_base is not None else 101 + os.getpid() % 100
        return base, base + 1


def recorder_config(cfg: DemoConfig) -> dict[str, Any]:
    return {"dataset": str((cfg.out / "dataset").resolve()), "task": TASK_TEXT, "flush_period_s": 0.5,
            "min_free_mb": 200, "status_hz": 2.0, "events_topic": "episode_events",
            "streams": [
                {"topic": "/task/observation", "type": "sensor_msgs/msg/JointState", "key": "state", "fps": 10,
                 "reliability": "reliable"},
                {"topic": "/task/action", "type": "sensor_msgs/msg/JointState", "key": "action", "fps": 10,
                 "reliability": "reliable"},
                {"topic": f"/{CAMERA}/image_raw", "type": "sensor_msgs/msg/Image", "key": CAMERA,
                 "codec": "libx264", "fps": 10}]}


def record_launch(cfg: DemoConfig, recorder_yaml: Path) -> dict[str, Any]:
    sim = {"task": TASK, "realtime": False, "sync_period_s": 0.1, "sync_timeout_s": 5.0, "seed": 2**31 - 1,
           "cameras": [CAMERA], "camera_width": 96, "camera_height": 96, "camera_hz": 10.0,
           "task_status_hz": 10.0, "stop_periods": 5000}
    operator = {"task": TASK, "episodes": cfg.episodes, "seed0": cfg.seed0, "max_steps": cfg.max_steps}
    return {"transport": "dds", "processes": {
        "sim": {"nodes": [{"name": "sim", "class": "sim.node:SimNode", "parameters": sim}]},
        "operator": {"nodes": [{"name": "operator", "class": "sim.operator:ScriptedOperator",
                                "parameters": operator}]},
        "recorder": {"nodes": [{"name": "recorder", "class": "data.recorder:RecorderNode",
                                "parameters": {"config": str(recorder_yaml)}}]}}}


# --- 1. record ------------------------------------------------------------------------------------
def record(cfg: DemoConfig, console: Any, progress: Any) -> dict[str, Any]:
    """Run the teleop + recording launch until the operator has done every episode."""
    from robot_stack.context import Context
    from robot_stack.executor import Executor
    from robot_stack.launch.config import parse_launch
    from robot_stack.launch.supervisor import Supervisor
    from robot_stack.node import Node

    recorder_yaml = cfg.out / "recorder.yaml"
    recorder_yaml.write_text(yaml.safe_dump(recorder_config(cfg), sort_keys=False))
    domain, _ = cfg.domains()
    launch = parse_launch(record_launch(cfg, recorder_yaml), "robot-stack demo (record)")
    sup = Supervisor(launch, stats_dir=cfg.out / "stats", console=console, log_level="WARNING", stop_timeout=15.0)
    status: dict[str, dict[str, str]] = {}
    old = os.environ.get("ROS_DOMAIN_ID")
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    try:
        sup.start()
        with Context("dds", domain_id=domain) as ctx:
            node = Node("demo_monitor", context=ctx, publish_stats=False)
            for who in ("operator", "recorder"):
                node.create_subscription("diagnostic_msgs/msg/DiagnosticStatus", f"/{who}/status",
                                         lambda m, w=who: status.__setitem__(w, {kv.key: kv.value for kv in m.values}),
                                         10)
            executor = Executor()
            executor.add_node(node)
            _wait_for_operator(cfg, sup, executor, status, progress)
            node.destroy_node()
    finally:
        sup.stop()
        if old is None:
            os.environ.pop("ROS_DOMAIN_ID", None)
        else:
            os.environ["ROS_DOMAIN_ID"] = old
    return {"operator": status.get("operator", {}), "recorder": status.get("recorder", {})}


def _wait_for_operator(cfg: DemoConfig, sup: Any, executor: Any, status: dict, progress: Any) -> None:
    t0 = time.monotonic()
    while status.get("operator", {}).get("finished") != "True":
        executor.spin_once(0.1)
        dead = sup.exited()
        if dead:
            raise PolicyError(f"demo: process '{dead[0].name}' exited during the recording; see its output above")
        if time.monotonic() - t0 > cfg.record_timeout_s:
            raise PolicyError(f"demo: the recording did not finish in {cfg.record_timeout_s:g} s")
        op = status.get("operator", {})
        if op:
            progress(int(op["episode"]), f"seed {op['seed']} ({op['state']}), {op['successes']} expert successes")
    time.sleep(1.5)          # the recorder commits the last episode on its io thread


# --- 2. export + train --------------------------------------------------------------------------------
def export_lerobot(cfg: DemoConfig) -> Path:
    from data.features import Feature
    from data.formats import format_class
    from data.store import EpisodeStore

    store = EpisodeStore(cfg.out / "dataset")
    if not store.episodes():
        raise PolicyError(f"demo: no episode was recorded in {cfg.out / 'dataset'}")
    features = {"observation.state": Feature("state", "position", "state"),
                f"observation.images.{CAMERA}": Feature(CAMERA, "", "image"),
                "action": Feature("action", "position", "action")}
    return Path(format_class("lerobot")().export(store, cfg.out / "lerobot", features=features, fps=10.0))


def train(cfg: DemoConfig, dataset: Path, quiet: bool) -> Path:
    from policies.train import Trainer
    from policies.train_config import load_run_config

    run = load_run_config(Path(__file__).parent / "configs" / "demo_pusht.yaml", [f"train.steps={cfg.train_steps}"])
    trainer = Trainer(cfg.policy, str(dataset), run, out=cfg.out / "train", quiet=quiet)
    trainer.fit()
    return cfg.out / "train" / "checkpoints" / "last"


# --- 3. serve + evaluate ---------------------------------------------------------------------------------
def evaluate(cfg: DemoConfig, checkpoint: Path, console: Any, progress: Any) -> dict[str, Any]:
    from policies.eval_cli import report_info
    from policies.eval_report import write_report
    from policies.evaluate import EvalConfig
    from policies.evaluate import evaluate as run_evaluation

    _, base = cfg.domains()
    ecfg = EvalConfig(checkpoint=checkpoint, task=TASK, episodes=cfg.eval_episodes, workers=cfg.workers,
                      seed0=cfg.eval_seed0, out=cfg.out / "eval", max_steps=cfg.max_steps, domain_base=base)
    results = run_evaluation(ecfg, console=console, progress=progress)
    return write_report(results, ecfg.out, report_info(ecfg))


# --- 4. report -----------------------------------------------------------------------------------------
def loop_stats(stats_dir: Path) -> list[dict[str, Any]]:
    """Per node timer: target and achieved rate, jitter p50/p99 [ms], overruns (the launch's stats files)."""
    rows = []
    for path in sorted(Path(stats_dir).glob("*.json")):
        data = json.loads(path.read_text())
        secs = float(data.get("spin_seconds") or 0.0)
        for fqn, node in data.get("nodes", {}).items():
            for t in node.get("timers", []):
                rows.append({"process": data.get("process", path.stem), "node": fqn, "timer": t["name"],
                             "target_hz": t["target_hz"], "achieved_hz": t["ticks"] / secs if secs > 0 else 0.0,
                             "jitter_p50_ms": t["jitter_p50"] * 1e3, "jitter_p99_ms": t["jitter_p99"] * 1e3,
                             "overruns": t["overruns"], "ticks": t["ticks"]})
    return rows


def recording_counters(cfg: DemoConfig) -> dict[str, Any]:
    """Per stream over all committed episodes: messages and drops summed, mean rate, largest gap."""
    from data.store import EpisodeStore

    store = EpisodeStore(cfg.out / "dataset")
    per_stream: dict[str, list[dict[str, Any]]] = {}
    for ep in store:
        for key, stats in json.loads((ep.path / "meta.json").read_text()).get("stream_stats", {}).items():
            per_stream.setdefault(key, []).append(stats)
    totals = {}
    for key, rows in per_stream.items():
        out: dict[str, float] = {}
        for name in rows[0]:
            values = [r[name] for r in rows if isinstance(r.get(name), int | float) and not isinstance(r[name], bool)]
            if not values or name.endswith("_ns"):
                continue
            if name.startswith("max_"):
                out[name] = max(values)
            elif name.endswith("_hz"):
                out[f"mean_{name}"] = sum(values) / len(values)
            else:
                out[name] = sum(values)
        totals[key] = out
    return {"episodes": len(store), "open_episodes": len(store.open_episodes()), "streams": totals}


def write_demo_report(cfg: DemoConfig, parts: dict[str, Any]) -> Path:
    """OUT/report.json and OUT/report.md from the stages' results (`parts`)."""
    data = {"config": {k: str(v) for k, v in asdict(cfg).items()}, **parts}
    (cfg.out / "report.json").write_text(json.dumps(data, indent=1, default=str))
    ev = parts["eval"]["summary"]
    lo, hi = ev["wilson95"]
    videos = sorted((cfg.out / "eval" / "videos").glob("*.mp4"))
    lines = [f"# robot-stack demo: {cfg.policy} on {TASK}", "",
             f"**Success: {ev['successes']}/{ev['episodes']} = {ev['success_rate']:.0%}** "
             f"(Wilson 95% interval {lo:.0%}-{hi:.0%}); mean final coverage {ev['mean_final_progress']:.2f}. "
             f"Seeds {cfg.eval_seed0}..{cfg.eval_seed0 + cfg.eval_episodes - 1}, unseen in training.", "",
             "![success](eval/success.png)", ""]
    if videos:
        lines += [f"Rollout video: [{videos[0].name}](eval/videos/{videos[0].name}) (all in `eval/videos/`).", ""]
    rec, op = parts["recording"], parts["record_status"].get("operator", {})
    lines += ["## Pipeline", "",
              f"1. Teleop (scripted operator through `teleop_target`) -> recorder: {rec['episodes']} episodes "
              f"({op.get('successes', '?')} expert successes), {rec['open_episodes']} left open.",
              f"2. Exported to LeRobot v3 (`{parts['lerobot']}`); trained `{cfg.policy}` for {cfg.train_steps} steps "
              f"(`{parts['checkpoint']}`; loss curve `train/loss.png`).",
              f"3. Served and evaluated in {cfg.workers} workers (sim + policy server processes each): "
              "`eval/report.md`.",
              f"4. Wall time per stage [s]: {', '.join(f'{k} {v:.0f}' for k, v in parts['wall_s'].items())}.", "",
              "## Loop rates during the recording", "",
              "| process | node | timer | target Hz | achieved Hz | jitter p50 ms | jitter p99 ms | overruns |",
              "|---|---|---|---|---|---|---|---|"]
    for r in parts["loops"]:
        free = r["target_hz"] >= FREE_RUNNING_HZ        # the lockstep sim's step timer: as fast as it can
        target, overruns = ("free-running", "n/a") if free else (f"{r['target_hz']:g}", r["overruns"])
        lines.append(f"| {r['process']} | {r['node']} | {r['timer']} | {target} | {r['achieved_hz']:.1f} | "
                     f"{r['jitter_p50_ms']:.2f} | {r['jitter_p99_ms']:.2f} | {overruns} |")
    lines += ["", "## Recording counters (over all episodes)", "", "| stream | counter | value |", "|---|---|---|"]
    for key, counters in rec["streams"].items():
        lines += [f"| {key} | {name} | {value:g} |" for name, value in counters.items()]
    (cfg.out / "report.md").write_text("\n".join(lines) + "\n")
    return cfg.out / "report.md"
