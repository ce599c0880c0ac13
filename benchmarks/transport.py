"""Transport benchmarks (issue: core runtime). Every figure is a ratio against a baseline measured
in the same run: raw cyclonedds-python, rclpy (Fast DDS), or a plain sleep-then-spin loop.

Writes benchmarks/results/transport.json and prints a table.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console

from benchmarks.report import percentiles, print_table, write_results

ROOT = Path(__file__).resolve().parent.parent
ROUND_TRIPS = int(os.environ.get("BENCH_ROUND_TRIPS", "3000"))
FLOOD_S = float(os.environ.get("BENCH_FLOOD_S", "3"))
FRAMES = int(os.environ.get("BENCH_FRAMES", "200"))
TIMER_S = float(os.environ.get("BENCH_TIMER_S", "5"))
console = Console()


def _spawn(*args: str) -> subprocess.Popen:
    env = dict(os.environ)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    return subprocess.Popen([sys.executable, "-m", "benchmarks.peers", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _result(proc: subprocess.Popen, timeout: float) -> dict:
    out, err = proc.communicate(timeout=timeout)
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark peer {proc.args[3:]} failed (exit {proc.returncode}):\n{err[-2000:]}")
    return json.loads(lines[-1])


def _pair(driver: tuple[str, ...], peer: tuple[str, ...], timeout: float = 180.0) -> tuple[dict, None]:
    """Start `peer` (the side that answers), then `driver`; return the driver's JSON result."""
    p = _spawn(*peer)
    try:
        time.sleep(0.5)
        return _result(_spawn(*driver), timeout), None
    finally:
        _stop(p)


def _stop(proc: subprocess.Popen) -> None:
    """SIGINT first so rclpy/Fast DDS remove their shared-memory segments, then kill."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=5)
            return
        except subprocess.TimeoutExpired:
            proc.kill()
    proc.communicate()


ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


def round_trip() -> list[dict]:
    """Stacks measured in interleaved rounds, so drift in machine load hits them alike."""
    samples: dict[str, list[float]] = {"cy": [], "rs": [], "rclpy": []}
    for r in range(ROUNDS):
        for stack in samples:
            with console.status(f"round trip: {stack} (round {r + 1}/{ROUNDS})"):
                out, _ = _pair((f"{stack}_ping", str(ROUND_TRIPS // ROUNDS)), (f"{stack}_echo", "120"))
            samples[stack] += out["rtt_s"]
    return [{"stack": stack, **percentiles(rtts)} for stack, rtts in samples.items()]


def throughput() -> list[dict]:
    """Messages/s received, median over interleaved rounds."""
    rows = []
    for kind in ("int64", "joint_state"):
        rates: dict[str, list[float]] = {"rs": [], "rclpy": []}
        for r in range(ROUNDS):
            for stack in rates:
                with console.status(f"throughput: {stack} {kind} (round {r + 1}/{ROUNDS})"):
                    sink = _spawn(f"{stack}_sink", str(FLOOD_S + 4), kind)
                    time.sleep(0.5)
                    _result(_spawn(f"{stack}_flood", str(FLOOD_S), kind), 120)
                    got = _result(sink, 120)
                rates[stack].append(got["received"] / got["span_s"] if got["span_s"] else 0.0)
        for stack, values in rates.items():
            rows.append({"message": kind, "stack": stack, "msgs_per_s": float(np.median(values)),
                         "min": min(values), "max": max(values)})
    return rows


def image() -> list[dict]:
    """A 640x480 rgb8 frame across processes, two ways: round trip (frame out, the receiver
    acknowledges once it holds a usable HxWx3 array) with both processes busy, and one-way
    latency at a camera's 30 Hz (sensor-data QoS), where both processes idle between frames."""
    rows = []
    for stack in ("rs", "rclpy"):
        with console.status(f"640x480 rgb8 frame round trip: {stack}"):
            rt, _ = _pair((f"{stack}_image_ping", str(FRAMES)), (f"{stack}_image_echo", "120"))
        with console.status(f"640x480 rgb8 frames at 30 Hz: {stack}"):
            sink = _spawn(f"{stack}_image_sink", str(FRAMES / 30 + 10), "sensor")
            time.sleep(0.5)
            _result(_spawn(f"{stack}_image_pub", str(FRAMES), "30", "sensor"), 120)
            lat = _result(sink, 120)["latency_s"]
        trip, one_way = percentiles(rt["rtt_s"]), percentiles(lat)
        rows.append({"stack": stack, "rtt_p50_us": trip["p50_us"], "rtt_p99_us": trip["p99_us"],
                     "frames_30hz": len(lat), "lat30_p50_us": one_way["p50_us"], "lat30_p99_us": one_way["p99_us"]})
    return rows


def timers() -> list[dict]:
    rows = []
    for hz in ("500", "1000"):
        for mode in ("sleep_spin", "executor"):
            with console.status(f"timer {hz} Hz ({mode}) with a busy neighbour"):
                neighbour = _spawn("busy", str(TIMER_S + 5))
                try:
                    out = _result(_spawn("timer", hz, str(TIMER_S), mode), 120)
                finally:
                    _stop(neighbour)
            rows.append({"rate_hz": int(hz), "loop": mode, "cpu_fraction": out["cpu_fraction"],
                         **percentiles(out["lateness_s"])})
    return rows


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def run() -> dict:
    rt, tp, img, tm = round_trip(), throughput(), image(), timers()
    by = {r["stack"]: r for r in rt}
    goals = {
        "rtt_p50_vs_raw_cyclonedds": _ratio(by["rs"]["p50_us"], by["cy"]["p50_us"]),
        "rtt_p99_vs_raw_cyclonedds": _ratio(by["rs"]["p99_us"], by["cy"]["p99_us"]),
        "rtt_p50_vs_rclpy": _ratio(by["rs"]["p50_us"], by["rclpy"]["p50_us"]),
        "throughput_int64_vs_rclpy": _ratio(tp[0]["msgs_per_s"], tp[1]["msgs_per_s"]),
        "throughput_joint_state_vs_rclpy": _ratio(tp[2]["msgs_per_s"], tp[3]["msgs_per_s"]),
        "image_rtt_p50_speedup_vs_rclpy": _ratio(img[1]["rtt_p50_us"], img[0]["rtt_p50_us"]),
        "image_rtt_p99_speedup_vs_rclpy": _ratio(img[1]["rtt_p99_us"], img[0]["rtt_p99_us"]),
        "image_30hz_p50_latency_speedup_vs_rclpy": _ratio(img[1]["lat30_p50_us"], img[0]["lat30_p50_us"]),
    }
    ex = [r for r in tm if r["loop"] == "executor"]
    base = {r["rate_hz"]: r for r in tm if r["loop"] == "sleep_spin"}
    for r in ex:
        goals[f"timer_{r['rate_hz']}hz_p99_lateness_us"] = r["p99_us"]
        goals[f"timer_{r['rate_hz']}hz_p99_vs_sleep_spin"] = _ratio(r["p99_us"], base[r["rate_hz"]]["p99_us"])
    targets = {
        "rtt_p50_vs_raw_cyclonedds": ("<=", 1.0), "rtt_p99_vs_raw_cyclonedds": ("<=", 1.2),
        "throughput_int64_vs_rclpy": (">=", 10.0), "image_rtt_p50_speedup_vs_rclpy": (">=", 10.0),
        "timer_500hz_p99_lateness_us": ("<=", 100.0), "timer_1000hz_p99_lateness_us": ("<=", 100.0),
    }
    summary = []
    for key, value in goals.items():
        op, target = targets.get(key, ("", None))
        met = None if target is None else (value <= target if op == "<=" else value >= target)
        summary.append({"figure": key, "value": value, "goal": f"{op} {target}" if target else "", "met": met})
    print_table("7-DOF JointState round trip across processes (us)", rt, ["stack", "p50_us", "p99_us", "max_us", "n"])
    print_table("Small-message throughput, 1 publisher -> 1 subscriber across processes (median of rounds)", tp,
                ["message", "stack", "msgs_per_s", "min", "max"])
    print_table("640x480 rgb8 frame across processes (us): round trip busy, one way at 30 Hz", img,
                ["stack", "rtt_p50_us", "rtt_p99_us", "frames_30hz", "lat30_p50_us", "lat30_p99_us"])
    print_table("Timer lateness with a busy neighbour process (us)", tm,
                ["rate_hz", "loop", "p50_us", "p99_us", "max_us", "cpu_fraction"])
    print_table("Goals (ratios measured in this run)", summary, ["figure", "value", "goal", "met"])
    path = write_results("transport", [], {"round_trip": rt, "throughput": tp, "image": img, "timers": tm,
                                           "goals": summary})
    console.print(f"wrote {path.relative_to(ROOT)}")
    return {"goals": summary}
