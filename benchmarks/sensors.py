"""Sensor driver benchmarks (issue 8): glove line parser throughput, Net F/T one-shot round trip
over the UDP emulator, vision-tactile marker tracking per 320x240 frame.

Baselines measured in the same run: the F/T round trip against a bare UDP echo on the same loopback
(so the figure is the driver + emulator overhead, not the kernel's), glove throughput against the
1 kHz line rate a glove sends, tracking time against a 30 fps frame period.
Writes benchmarks/results/sensors.json and prints a table. `python -m benchmarks sensors`.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import numpy as np

from benchmarks.report import percentiles, print_table, write_results

GLOVE_LINES = int(os.environ.get("BENCH_GLOVE_LINES", "200000"))
FT_ROUND_TRIPS = int(os.environ.get("BENCH_FT_ROUND_TRIPS", "3000"))
TACTILE_FRAMES = int(os.environ.get("BENCH_TACTILE_FRAMES", "300"))


def glove_parser() -> list[dict]:
    from drivers.glove import GloveLineParser, format_line
    from robot_stack.clock import Time

    rng = np.random.default_rng(0)
    lines = [format_line(v) for v in rng.integers(0, 4096, (1000, 16))]
    stream = b"".join(lines[i % 1000] for i in range(GLOVE_LINES))
    rows = []
    for label, size in (("4 KiB reads", 4096), ("64 B reads", 64)):
        chunks = [stream[i:i + size] for i in range(0, len(stream), size)]
        parser, stamp = GloveLineParser(16), Time(0)
        t0 = time.perf_counter()
        for chunk in chunks:
            parser.feed(chunk, stamp)
        dt = time.perf_counter() - t0
        rate = parser.lines_ok / dt
        rows.append({"chunking": label, "lines": parser.lines_ok, "lines_per_s": rate,
                     "x_realtime_1khz": rate / 1000.0, "bad": parser.lines_bad})
    return rows


def _udp_echo_rtts(n: int) -> list[float]:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(0.5)
    stop = threading.Event()

    def echo() -> None:
        while not stop.is_set():
            try:
                data, addr = server.recvfrom(64)
            except TimeoutError:
                continue
            server.sendto(b"\x00" * 36 if len(data) == 8 else data, addr)

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.connect(server.getsockname())
    client.settimeout(1.0)
    rtts = []
    for _ in range(n):
        t0 = time.perf_counter()
        client.send(b"\x12\x34\x00\x02\x00\x00\x00\x01")
        client.recv(64)
        rtts.append(time.perf_counter() - t0)
    stop.set()
    thread.join()
    client.close()
    server.close()
    return rtts


def _ft_rtts(n: int) -> list[float]:
    from drivers.ft import NetFT, NetFTConfig
    from drivers.ft_emulator import FTEmulator

    emu = FTEmulator()
    host, port = emu.start()
    ft = NetFT(NetFTConfig(host=host, port=port))
    try:
        rtts = []
        for _ in range(n):
            t0 = time.perf_counter()
            ft.read_once(timeout=1.0)
            rtts.append(time.perf_counter() - t0)
        return rtts
    finally:
        ft.disconnect()
        emu.stop()


def ft_round_trip() -> list[dict]:
    return [{"stack": "bare UDP echo (baseline)", **percentiles(_udp_echo_rtts(FT_ROUND_TRIPS))},
            {"stack": "NetFT.read_once <-> FTEmulator", **percentiles(_ft_rtts(FT_ROUND_TRIPS))}]


def tactile_tracking() -> list[dict]:
    from drivers.tactile import MarkerGridConfig, MarkerTracker, detect_markers
    from drivers.tactile_emulator import field_at, render_gel

    cfg = MarkerGridConfig()
    rng = np.random.default_rng(0)
    frames, fields = [], []
    for t in np.linspace(0, 6, 60):
        fields.append(field_at(cfg, t))
        frames.append(render_gel(cfg, fields[-1], rng=rng))
    tracker, track_s, detect_s, errors = MarkerTracker(cfg), [], [], []
    for i in range(TACTILE_FRAMES):
        img = frames[i % len(frames)]
        t0 = time.perf_counter()
        detect_markers(img, cfg)
        detect_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        disp = tracker.track(img)
        track_s.append(time.perf_counter() - t0)
        errors.append(float(np.linalg.norm(disp - fields[i % len(fields)], axis=1).mean()))
    rows = []
    for stage, samples in (("detect", detect_s), ("track (detect + match)", track_s)):
        p = percentiles(samples)
        rows.append({"stage": stage, "p50_ms": p["p50_us"] / 1e3, "p99_ms": p["p99_us"] / 1e3,
                     "p99_vs_30fps_budget": p["p99_us"] / 1e3 / (1000 / 30), "n": p["n"]})
    rows[-1]["mean_error_px"] = float(np.mean(errors))
    return rows


def run() -> dict:
    glove, ft, tactile = glove_parser(), ft_round_trip(), tactile_tracking()
    ratio = ft[1]["p50_us"] / ft[0]["p50_us"] if ft[0]["p50_us"] > 0 else float("nan")
    goals = [
        {"figure": "glove parser x 1 kHz line rate (64 B reads)", "value": glove[1]["x_realtime_1khz"],
         "goal": ">= 10", "met": glove[1]["x_realtime_1khz"] >= 10},
        {"figure": "F/T round trip p50 vs bare UDP echo", "value": ratio, "goal": "", "met": None},
        {"figure": "F/T round trip p99 (us)", "value": ft[1]["p99_us"], "goal": "<= 1000",
         "met": ft[1]["p99_us"] <= 1000},
        {"figure": "tactile track p99 (ms, 320x240)", "value": tactile[1]["p99_ms"], "goal": "<= 33",
         "met": tactile[1]["p99_ms"] <= 33},
        {"figure": "tactile mean error (px)", "value": tactile[1]["mean_error_px"], "goal": "< 0.5",
         "met": tactile[1]["mean_error_px"] < 0.5},
    ]
    print_table("Glove line parser (16 sensors)", glove, ["chunking", "lines", "lines_per_s", "x_realtime_1khz", "bad"])
    print_table("Net F/T one-shot round trip over loopback (us)", ft, ["stack", "p50_us", "p99_us", "max_us", "n"])
    print_table("Tactile marker tracking, 320x240, 7x9 markers (ms/frame)", tactile,
                ["stage", "p50_ms", "p99_ms", "p99_vs_30fps_budget", "mean_error_px", "n"])
    print_table("Goals (measured in this run)", goals, ["figure", "value", "goal", "met"])
    path = write_results("sensors", [], {"glove": glove, "ft": ft, "tactile": tactile, "goals": goals})
    print(f"wrote {path}")
    return {"goals": goals}


if __name__ == "__main__":
    run()
