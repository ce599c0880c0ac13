"""Teleop latency benchmarks (issue 9): from a device sample to the robot command published, per device.

Each trial changes what the device reports (the stimulus, at t0) and spins the executor until a
subscriber sees the first command that reflects it; the figure is that arrival time minus t0:
- exo: the emulated leader's joint is moved (pty servo emulator) -> ExoNode (bus read, mapping)
  -> `joint_commands`;
- glove: a glove line is written into the emulator's pty -> GloveNode (line parser) -> `/glove/joints`
  -> GloveHandNode (filter, linear map, fingertip retargeting) -> `joint_commands`;
- keyboard: a KEY_W press (evdev bytes) is written into a pipe -> VelocityTeleopNode -> `teleop_target`;
- spacemouse: a translation HID report is written into a pipe -> VelocityTeleopNode -> `teleop_target`.
Every teleop node polls at `BENCH_TELEOP_RATE_HZ` (200 Hz), so about half a period of waiting is
expected; the table gives p50 against that half period, and the baseline measured in the same run
is the bare inproc publish -> subscription callback through the same executor. All in one
process on the inproc transport. Writes benchmarks/results/teleop.json. `python -m benchmarks teleop`.
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import robot_stack as rs
from benchmarks.report import percentiles, print_table, write_results

TRIALS = int(os.environ.get("BENCH_TELEOP_TRIALS", "200"))
RATE_HZ = float(os.environ.get("BENCH_TELEOP_RATE_HZ", "200"))
ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "teleop" / "configs"


class Probe:
    """Arrival times and a key value of every message on a topic."""

    def __init__(self, node: rs.Node, type_name: str, topic: str, key: Callable[[Any], float]):
        self.seen: list[tuple[int, float]] = []
        node.create_subscription(type_name, topic, lambda m: self.seen.append((time.monotonic_ns(), key(m))), 10000)


def trials(ex: rs.Executor, probe: Probe, stimulus: Callable[[int], None], n: int = TRIALS) -> list[float]:
    """Latency of each of `n` stimuli: first message whose key differs from the last one before it."""
    out = []
    for k in range(n):
        ex.spin_for(random.uniform(1.0, 3.0) / RATE_HZ)            # a random phase against the poll timer
        start = len(probe.seen)
        last = probe.seen[-1][1] if probe.seen else None
        t0 = time.monotonic_ns()
        stimulus(k)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            ex.spin_once(0.0005)
            hit = next((t for t, v in probe.seen[start:] if last is None or abs(v - last) > 1e-9), None)
            if hit is not None:
                out.append((hit - t0) / 1e9)
                break
    return out


def _rig(ctx: rs.Context, *nodes: rs.Node) -> tuple[rs.Executor, rs.Node]:
    obs = rs.Node("bench_probe", context=ctx, publish_stats=False)
    ex = rs.Executor()
    for n in (*nodes, obs):
        ex.add_node(n)
    return ex, obs


def bench_exo(ctx: rs.Context, tmp: Path) -> list[float]:
    from drivers.servo_emulator import emulator_for
    from teleop.exo import ExoNode

    mapping = tmp / "exo.yaml"
    text = (CONFIGS / "exo_koch_to_so101.yaml").read_text()
    mapping.write_text(text.replace("max_velocity: 2.0", "max_velocity: 1000000.0"))     # no rate limit here
    with emulator_for("koch", tau_s=0.005) as emu:
        exo = ExoNode("exo", context=ctx, publish_stats=False, parameter_overrides={
            "leader": "koch", "port": emu.port, "mapping": str(mapping), "rate_hz": RATE_HZ, "wait_for_state": False})
        ex, obs = _rig(ctx, exo)
        probe = Probe(obs, "sensor_msgs/msg/JointState", "joint_commands", lambda m: float(m.position[0]))
        ex.spin_for(0.2)

        def move(k: int) -> None:
            with emu.lock:
                emu.motors[1].move_to(2048 + (100 if k % 2 else -100))

        try:
            return trials(ex, probe, move)
        finally:
            obs.destroy_node()
            exo.destroy_node()


def bench_glove(ctx: rs.Context) -> list[float]:
    from drivers.glove import format_line
    from drivers.glove_emulator import GloveEmulator
    from drivers.sensor_nodes import GloveNode
    from teleop.glove_hand import GloveHandNode

    emu = GloveEmulator()
    emu.silent = True
    port = emu.start()
    glove = GloveNode("glove", context=ctx, publish_stats=False, parameter_overrides={
        "port": port, "rate_hz": RATE_HZ, "watchdog_periods": 10**9, "startup_s": 1e6, "retry_s": 0.01})
    hand = GloveHandNode("glove_hand", context=ctx, publish_stats=False, parameter_overrides={
        "mapping": str(CONFIGS / "glove_leap_hand.yaml"), "rate_hz": RATE_HZ, "stream_timeout_s": 1e6})
    ex, obs = _rig(ctx, glove, hand)
    probe = Probe(obs, "sensor_msgs/msg/JointState", "joint_commands", lambda m: float(m.position[1]))
    raw = np.array([2048, 2000, 1900, 1800] * 4)

    def line(k: int) -> None:
        raw[1] = 2000 + (20 if k % 2 else -20)
        emu.inject(format_line(raw))

    try:
        for _ in range(10):                  # the resting pose (the driver skips the first, partial line)
            emu.inject(format_line(raw))
            ex.spin_for(0.03)
        return trials(ex, probe, line)
    finally:
        for n in (obs, hand, glove):
            n.destroy_node()
        emu.stop()


def bench_velocity(ctx: rs.Context, config: str) -> list[float]:
    from teleop import evdev, spacemouse
    from teleop.velocity import VelocityTeleopNode

    r, w = os.pipe()
    node = VelocityTeleopNode("velocity", context=ctx, source=r, publish_stats=False, parameter_overrides={
        "config": config, "rate_hz": RATE_HZ, "stream_timeout_s": 1e6})
    ex, obs = _rig(ctx, node)
    axis = "x" if config == "keyboard" else "y"
    probe = Probe(obs, "robot_stack_msgs/msg/TeleopTarget", "teleop_target",
                  lambda m: getattr(m.ee_pose.position, axis))
    now = time.time_ns
    if config == "keyboard":             # W and S in turn (forward, back), so the workspace never clamps

        def press(k: int) -> None:
            os.write(w, evdev.pack_frame([(evdev.EV_KEY, evdev.KEYS["KEY_S" if k % 2 else "KEY_W"], 1)], now()))

        def release() -> None:
            os.write(w, evdev.pack_frame([(evdev.EV_KEY, evdev.KEYS[k], 0) for k in ("KEY_W", "KEY_S")], now()))

        os.write(w, evdev.pack_frame([(evdev.EV_KEY, evdev.KEYS["KEY_SPACE"], 1)], now()))
    else:

        def press(k: int) -> None:
            os.write(w, spacemouse.pack_translation(350 if k % 2 else -350, 0, 0))

        def release() -> None:
            os.write(w, spacemouse.pack_translation(0, 0, 0))

        os.write(w, spacemouse.pack_buttons(1))
    try:
        out = []
        ex.spin_for(0.1)
        for k in range(TRIALS):
            out += trials(ex, probe, lambda _, k=k: press(k), 1)
            release()
            ex.spin_for(3.0 / RATE_HZ)
        return out
    finally:
        obs.destroy_node()
        node.destroy_node()
        os.close(r)
        os.close(w)


def bench_baseline(ctx: rs.Context) -> list[float]:
    """inproc publish -> subscription callback through the same executor (the transport's floor)."""
    src = rs.Node("bench_source", context=ctx, publish_stats=False)
    pub = src.create_publisher("sensor_msgs/msg/JointState", "bench_floor")
    ex, obs = _rig(ctx, src)
    probe = Probe(obs, "sensor_msgs/msg/JointState", "bench_floor", lambda m: float(m.position[0]))
    from robot_stack import convert

    try:
        return trials(ex, probe, lambda k: pub.publish(convert.joint_state(["a"], [float(k % 2)])))
    finally:
        obs.destroy_node()
        src.destroy_node()


def _row(device: str, path: str, samples: list[float]) -> dict:
    p = percentiles(samples)
    half_period_us = 0.5e6 / RATE_HZ
    return {"device": device, "path": path, "p50_ms": p["p50_us"] / 1e3, "p99_ms": p["p99_us"] / 1e3,
            "max_ms": p["max_us"] / 1e3, "p50_vs_half_period": p["p50_us"] / half_period_us, "n": p["n"],
            "missed": TRIALS - p["n"]}


def run() -> dict:
    random.seed(0)
    with rs.Context("inproc") as ctx, tempfile.TemporaryDirectory() as tmp:
        base = bench_baseline(ctx)
        rows = [_row("baseline", "inproc publish -> callback, same executor", base),
                _row("exo", "leader pty -> ExoNode -> joint_commands", bench_exo(ctx, Path(tmp))),
                _row("glove", "glove pty -> GloveNode -> GloveHandNode -> joint_commands", bench_glove(ctx)),
                _row("keyboard", "evdev bytes -> VelocityTeleopNode -> teleop_target", bench_velocity(ctx, "keyboard")),
                _row("spacemouse", "HID report -> VelocityTeleopNode -> teleop_target",
                     bench_velocity(ctx, "spacemouse"))]
    budget_ms = 1e3 / RATE_HZ * 2           # two poll stages (the glove) plus work
    goals = [{"figure": f"{r['device']} p99 (ms)", "value": r["p99_ms"], "goal": f"<= {budget_ms + 5:g}",
              "met": r["p99_ms"] <= budget_ms + 5} for r in rows[1:]]
    print_table(f"Teleop latency, device sample -> command published (ms), nodes polling at {RATE_HZ:g} Hz", rows,
                ["device", "path", "p50_ms", "p99_ms", "max_ms", "p50_vs_half_period", "n", "missed"])
    print_table("Goals (measured in this run)", goals, ["figure", "value", "goal", "met"])
    path = write_results("teleop", rows, {"rate_hz": RATE_HZ, "trials": TRIALS, "goals": goals})
    print(f"wrote {path}")
    return {"goals": goals}


if __name__ == "__main__":
    run()
