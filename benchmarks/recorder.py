"""Recorder under load (issue 5): three 640x480 rgb8 cameras at 30 fps + JointState at 1 kHz +
TactileFrame at 24 fps, published from another process over the `dds` transport (images through
shared memory), recorded by a RecorderNode pinned to 2 cores, for BENCH_RECORDER_S seconds (60).

Goals: 0 dropped messages, recorder <= 1 core, episode commit < 1 s. Every message carries its
sequence number in `header.frame_id`, so drops are counted from gaps in what was stored (wherever
they happened: transport, receive queue or encoder queue), plus the recorder's own counters.
The recorder's CPU is measured with psutil over the episode, per thread (executor = callbacks and
flushes, encoder threads, DDS threads), which says where the time goes.

Writes benchmarks/results/recorder.json and prints a table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import yaml

from benchmarks.report import print_table, write_results

ROOT = Path(__file__).resolve().parent.parent
SECONDS = float(os.environ.get("BENCH_RECORDER_S", "60"))
CORES = 2
CAMERAS, SIZE, CAMERA_HZ, JOINT_HZ, TACTILE_HZ = 3, (480, 640), 30.0, 1000.0, 24.0
JS, IMAGE, TACTILE = "sensor_msgs/msg/JointState", "sensor_msgs/msg/Image", "robot_stack_msgs/msg/TactileFrame"


def _config(ns: str, dataset: Path) -> dict:
    streams = [{"topic": f"{ns}/joint_states", "type": JS, "key": "joint_states", "fps": JOINT_HZ,
                "reliability": "reliable"},
               {"topic": f"{ns}/tactile", "type": TACTILE, "key": "tactile", "fps": TACTILE_HZ,
                "reliability": "reliable"}]
    streams += [{"topic": f"{ns}/cam{i}/image_raw", "type": IMAGE, "key": f"cam{i}", "fps": CAMERA_HZ,
                 "reliability": "reliable"} for i in range(CAMERAS)]
    return {"dataset": str(dataset), "task": "benchmark", "robot": {"name": "bench"}, "min_free_mb": 100,
            "streams": streams}


# --- publisher process -----------------------------------------------------------------------------
def publish(ns: str, seconds: float) -> None:
    import robot_stack as rs
    from robot_stack import convert, messages
    from robot_stack.clock import Time

    ctx = rs.Context("dds")
    node = rs.Node("bench_source", context=ctx, publish_stats=False)
    js = node.create_publisher(JS, f"{ns}/joint_states", 200)
    tactile = node.create_publisher(TACTILE, f"{ns}/tactile", 50)
    cams = [node.create_publisher(IMAGE, f"{ns}/cam{i}/image_raw", 10) for i in range(CAMERAS)]
    yy, xx = np.mgrid[0 : SIZE[0], 0 : SIZE[1]]
    base = np.stack([(xx // 3) % 256, (yy // 2) % 256, ((xx + yy) // 4) % 256], -1).astype(np.uint8)
    seq = {"js": 0, "tactile": 0, "cam": 0}
    names = [f"joint{i}" for i in range(7)]

    def pub_js():
        seq["js"] += 1
        q = np.full(7, np.sin(seq["js"] * 1e-3))
        js.publish(convert.joint_state(names, q, q, q, stamp=Time(time.time_ns()), frame_id=str(seq["js"])))

    def pub_tactile():
        seq["tactile"] += 1
        tactile.publish(messages.make(TACTILE, header=convert.header(Time(time.time_ns()), str(seq["tactile"])),
                                      sensor_id="pad", rows=7, cols=9, marker_rest=np.zeros(126, np.float32),
                                      displacement=np.full(189, seq["tactile"] % 7, np.float32)))

    def pub_cams():
        seq["cam"] += 1
        stamp, shift = Time(time.time_ns()), (seq["cam"] * 4) % SIZE[1]
        for i, pub in enumerate(cams):
            frame = pub.loan_image(*SIZE, "rgb8")
            frame[:, : SIZE[1] - shift] = base[:, shift:]
            frame[:, SIZE[1] - shift :] = base[:, :shift]
            frame[100:200, 100 + 50 * i : 200 + 50 * i] = 255
            pub.publish(convert.image(frame, "rgb8", stamp=stamp, frame_id=str(seq["cam"])))

    node.create_timer(1 / JOINT_HZ, pub_js)
    node.create_timer(1 / TACTILE_HZ, pub_tactile)
    node.create_timer(1 / CAMERA_HZ, pub_cams)
    ex = rs.Executor()
    ex.add_node(node)
    t0 = time.monotonic()
    ex.spin_for(seconds)
    print(json.dumps({"published": seq, "seconds": time.monotonic() - t0}), flush=True)
    node.destroy_node()
    ctx.shutdown()


# --- recorder process ------------------------------------------------------------------------------
def _thread_cpu(proc) -> dict[str, float]:
    """CPU seconds per thread group: executor (main), encoders, commit, other (DDS, shm)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    for t in proc.threads():
        name = names.get(t.id, "")
        group = ("executor" if name == "MainThread" else "encoders" if name.startswith("encode-")
                 else "io (flush, commit)" if name == "recorder-io" else "native (dds, svt-av1 workers)" if not name
                 else name)
        out[group] = out.get(group, 0.0) + t.user_time + t.system_time
    return out


def record(config_path: str, seconds: float) -> None:
    import psutil

    import robot_stack as rs
    from data.recorder import RecorderNode

    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:CORES]))
    ctx = rs.Context("dds")
    rec = RecorderNode("recorder", context=ctx, parameter_overrides={"config": config_path}, publish_stats=False)
    ex = rs.Executor()
    ex.add_node(rec)
    ex.spin_until(lambda: all(c.received > 0 for c in rec.counters.values()), 20.0)
    ex.spin_for(1.0)                                   # warm: discovery done, every stream flowing
    proc, depths, stop = psutil.Process(), [], threading.Event()

    def sample():
        while not stop.wait(0.02):
            w = rec.writer
            if w is not None:
                depths.append(max((e.pending for e in w.encoders.values()), default=0))

    rec.start_episode()
    threading.Thread(target=sample, daemon=True).start()
    cpu0, threads0, t0 = proc.cpu_times(), _thread_cpu(proc), time.monotonic()
    ex.spin_for(seconds)
    writer = rec.writer
    cpu1, threads1, wall = proc.cpu_times(), _thread_cpu(proc), time.monotonic() - t0
    stop.set()
    drops = rec._drops(writer)
    rec.stop_episode()
    rec.wait_idle(120)
    ex.remove_node(rec)
    rec.destroy_node()
    cpu = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / wall
    per_thread = {k: (v - threads0.get(k, 0.0)) / wall for k, v in threads1.items()}
    print(json.dumps({"dataset": str(rec.store.root), "episode": rec.committed[0] if rec.committed else None,
                      "cpu_cores": cpu, "cpu_by_thread": per_thread, "commit_s": rec.commit_times[-1],
                      "queue_depths": depths, "recorder_drops": drops, "seconds": wall}), flush=True)


# --- the benchmark ---------------------------------------------------------------------------------
def _gaps(ep, key: str) -> tuple[int, int]:
    """(rows, missing sequence numbers between the first and last stored message)."""
    table = ep.table(key)
    col = "frame_id" if "frame_id" in table.column_names else "header.frame_id"
    seqs = np.array([int(s) for s in table.column(col).to_pylist()])
    return len(seqs), int(seqs[-1] - seqs[0] + 1 - len(np.unique(seqs))) if len(seqs) else 0


def _run_processes(ns: str, cfg: Path) -> tuple[dict, dict]:
    env = {**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE",
                                                                         "LOCALHOST")}
    cmd = [sys.executable, "-m", "benchmarks.recorder"]
    pub = subprocess.Popen([*cmd, "publish", ns, str(SECONDS + 12)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        rec = subprocess.run([*cmd, "record", str(cfg), str(SECONDS)], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=SECONDS + 180)
        pub_out, pub_err = pub.communicate(timeout=SECONDS + 60)
    finally:
        if pub.poll() is None:
            pub.kill()
    lines = [ln for ln in rec.stdout.splitlines() if ln.startswith("{")]
    if rec.returncode != 0 or not lines:
        raise RuntimeError(f"recorder process failed (exit {rec.returncode}):\n{rec.stderr[-3000:]}")
    published = [ln for ln in pub_out.splitlines() if ln.startswith("{")]
    return json.loads(lines[-1]), (json.loads(published[-1]) if published else {"error": pub_err[-2000:]})


def run() -> dict:
    from data.store import EpisodeStore

    with tempfile.TemporaryDirectory(prefix="bench_recorder_") as tmp:
        ns, cfg = f"/bench_rec_{os.getpid()}", Path(tmp) / "recorder.yaml"
        cfg.write_text(yaml.safe_dump(_config(ns, Path(tmp) / "ds")))
        result, publisher = _run_processes(ns, cfg)
        ep = EpisodeStore(result["dataset"]).episode(result["episode"])
        rows = []
        for key, stats in ep.meta["stream_stats"].items():
            n, missing = _gaps(ep, key)
            drops = result["recorder_drops"][key]
            rows.append({"stream": key, "messages": n, "rate_hz": stats["rate_hz"], "seq_gaps": missing,
                         "recorder_drops": drops["total"], "transport": drops["transport"],
                         "queue_overflow": drops["queue_overflow"], "encoder_queue_full": drops["encoder_queue_full"],
                         "bad": drops["bad"], "max_gap_ms": stats["max_gap_s"] * 1e3})
    depths = np.asarray(result["queue_depths"] or [0])
    dropped = sum(max(r["seq_gaps"], r["recorder_drops"]) for r in rows)    # the recorder's drops leave gaps too
    goals = [
        {"figure": "dropped messages", "value": dropped, "goal": "== 0", "met": dropped == 0},
        {"figure": "recorder CPU (cores)", "value": result["cpu_cores"], "goal": "<= 1.0",
         "met": result["cpu_cores"] <= 1.0},
        {"figure": "episode commit (s)", "value": result["commit_s"], "goal": "< 1.0", "met": result["commit_s"] < 1.0},
        {"figure": "encoder queue depth p99 (frames)", "value": float(np.percentile(depths, 99)), "goal": "",
         "met": None},
    ]
    cpu_rows = [{"thread": k, "cores": v} for k, v in sorted(result["cpu_by_thread"].items(), key=lambda kv: -kv[1])]
    print_table(f"Recorder streams ({result['seconds']:.0f} s episode, recorder on {CORES} cores, "
                f"{os.cpu_count()} CPUs in the machine)", rows,
                ["stream", "messages", "rate_hz", "seq_gaps", "recorder_drops", "transport", "queue_overflow",
                 "encoder_queue_full", "max_gap_ms"])
    print_table("Recorder CPU by thread (cores)", cpu_rows, ["thread", "cores"])
    print_table("Goals", goals, ["figure", "value", "goal", "met"])
    path = write_results("recorder", rows, {"goals": goals, "cpu_by_thread": result["cpu_by_thread"],
                                            "publisher": publisher, "seconds": result["seconds"],
                                            "queue_depth_p99": float(np.percentile(depths, 99)),
                                            "queue_depth_max": int(depths.max())})
    print(f"wrote {path.relative_to(ROOT)}")
    return {"goals": goals}


if __name__ == "__main__":
    role = sys.argv[1] if len(sys.argv) > 1 else "run"
    if role == "publish":
        publish(sys.argv[2], float(sys.argv[3]))
    elif role == "record":
        record(sys.argv[2], float(sys.argv[3]))
    else:
        run()
