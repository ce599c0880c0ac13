"""AR page benchmark (issue 9): pose -> wrench -> arrow round trip in a real headless Chromium.

The page (keyboard fallback, dead-man held) sends its pose; `ARPageNode` publishes a TeleopTarget;
a responder node answers each target with a WrenchStamped carrying the target's stamp; the node
forwards it, and the page, when it draws that wrench's arrow, records the time since it sent the
pose (`window.__arState.echoes`, a timestamp echo on the page's own clock). Also: the page's pose
send rate and arrow redraw rate. Baseline measured in the same run and browser: a bare WebSocket
ping-pong against an aiohttp echo endpoint (the transport floor), and the display's frame period
(an arrow can only appear at the next animation frame).
Writes benchmarks/results/ar_page.json and prints a table: `python -m benchmarks.ar_page`
(`python -m benchmarks ar_page` once "benchmarks.ar_page" is in `benchmarks.__main__.SUITES`).
Needs the `chromium` package (`make test` installs it as root). BENCH_AR_SECONDS sets the duration.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web

from benchmarks.report import percentiles, print_table, write_results

SECONDS = float(os.environ.get("BENCH_AR_SECONDS", "10"))
PINGS = int(os.environ.get("BENCH_AR_PINGS", "300"))

PING_JS = """(async (url, n) => {
  const ws = new WebSocket(url);
  await new Promise((ok) => { ws.onopen = ok; });
  const rtts = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await new Promise((ok) => { ws.onmessage = ok; ws.send('ping ' + i); });
    rtts.push(performance.now() - t0);
  }
  ws.close();
  return rtts;
})"""
FRAME_PERIOD_JS = """new Promise((ok) => { const t = []; const f = (now) => { t.push(now);
  if (t.length < 61) requestAnimationFrame(f); else ok((t[60] - t[0]) / 60); }; requestAnimationFrame(f); })"""


class EchoServer:
    """A bare aiohttp WebSocket echo on loopback, in its own thread (the transport baseline)."""

    def __init__(self):
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-echo", daemon=True)

    async def _echo(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await ws.send_str(msg.data)
        return ws

    def _run(self) -> None:
        app = web.Application()
        app.router.add_get("/echo", self._echo)
        runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = runner.addresses[0][1]
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())

    def __enter__(self) -> EchoServer:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


def _responder(node: Any) -> None:
    """Answer every engaged TeleopTarget with a wrench stamped like it (force follows the target)."""
    from robot_stack import convert

    pub = node.create_publisher("geometry_msgs/msg/WrenchStamped", "wrench", "sensor_data")

    def answer(target: Any) -> None:
        if target.engaged:
            p = target.ee_pose.position
            pub.publish(convert.wrench([10 * p.x, 10 * p.y, 0, 0, 0, 0], stamp=target.header.stamp))

    node.create_subscription("robot_stack_msgs/msg/TeleopTarget", "teleop_target", answer, 100)


def measure() -> dict[str, Any]:
    import robot_stack as rs
    from teleop.web.headless import Chromium
    from teleop.web.node import ARPageNode

    with rs.Context("inproc") as ctx, Chromium() as browser, EchoServer() as echo:
        node = ARPageNode(context=ctx, parameter_overrides={"port": 0}, publish_stats=False)
        responder = rs.Node("responder", context=ctx, publish_stats=False)
        _responder(responder)
        executor = rs.Executor()
        for n in (node, responder):
            executor.add_node(n)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        try:
            browser.navigate(f"http://127.0.0.1:{node.server.port}/")
            browser.wait_for("window.__arState.connected")
            pings = browser.evaluate(f"({PING_JS})('ws://127.0.0.1:{echo.port}/echo', {PINGS})")
            frame_ms = browser.evaluate(FRAME_PERIOD_JS)
            browser.evaluate("window.__ar.hold(true); window.__arState.echoes.length = 0; "
                             "window.__arState.sendTimes.length = 0; true")
            drawn0, t0 = browser.evaluate("window.__arState.drawn"), time.perf_counter()
            time.sleep(SECONDS)
            state = browser.evaluate("({echoes: __arState.echoes, sendTimes: __arState.sendTimes, "
                                     "drawn: __arState.drawn, sendHz: __arState.sendHz})")
            elapsed = time.perf_counter() - t0
            browser.evaluate("window.__ar.hold(false); true")
        finally:
            executor.shutdown()
            spinner.join(5)
            node.destroy_node()
            responder.destroy_node()
    return {"pings_ms": pings, "frame_ms": frame_ms, "echoes_ms": state["echoes"], "send_times_ms": state["sendTimes"],
            "draw_hz": (state["drawn"] - drawn0) / elapsed, "asked_hz": state["sendHz"],
            "rejected": sum(node.rejected.values())}


def run() -> dict:
    m = measure()
    rtt = percentiles(np.asarray(m["echoes_ms"]) / 1e3)
    ping = percentiles(np.asarray(m["pings_ms"]) / 1e3)
    sends = np.asarray(m["send_times_ms"])
    intervals = np.diff(sends) / 1e3
    send_hz = (len(sends) - 1) / (sends[-1] - sends[0]) * 1e3 if len(sends) > 1 else 0.0
    rows = [{"path": "page pose -> TeleopTarget -> wrench -> arrow drawn", **rtt},
            {"path": "baseline: bare WebSocket ping-pong (same browser)", **ping}]
    rates = [{"figure": "pose send rate (Hz)", "value": float(send_hz), "asked": m["asked_hz"],
              **{k: v for k, v in percentiles(intervals).items() if k != "n"}},
             {"figure": "arrow redraw rate (Hz)", "value": m["draw_hz"], "asked": ""},
             {"figure": "display frame period (ms)", "value": m["frame_ms"], "asked": ""}]
    goals_raw = {
        "pose_send_hz": (send_hz, ">=", 30.0),
        "arrow_redraw_hz": (m["draw_hz"], ">=", 30.0),
        "round_trip_p50_ms": (rtt["p50_us"] / 1e3, "<=", 50.0),
        "round_trip_p99_ms": (rtt["p99_us"] / 1e3, "<=", 100.0),
        "round_trip_p50_vs_ws_ping_p50": (rtt["p50_us"] / ping["p50_us"] if ping["p50_us"] else float("nan"), "", None),
        "round_trip_p50_in_frames": (rtt["p50_us"] / 1e3 / m["frame_ms"], "", None),
        "rejected_messages": (float(m["rejected"]), "<=", 0.0),
    }
    goals = [{"figure": k, "value": float(v), "goal": f"{op} {t}" if t is not None else "",
              "met": None if t is None else bool(v <= t if op == "<=" else v >= t)}
             for k, (v, op, t) in goals_raw.items()]
    print_table(f"AR page round trip in headless Chromium over {SECONDS:g} s (us)", rows,
                ["path", "p50_us", "p99_us", "max_us", "n"])
    print_table("AR page rates (send interval percentiles in us)", rates,
                ["figure", "value", "asked", "p50_us", "p99_us"])
    print_table("Goals (measured in this run)", goals, ["figure", "value", "goal", "met"])
    path = write_results("ar_page", [], {"round_trip": rows, "rates": rates, "goals": goals})
    print(f"wrote {path}")
    return {"goals": goals}


if __name__ == "__main__":
    run()
