"""The AR page node over a plain WebSocket client (no browser): token, bad input, silence, events, launch."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from pathlib import Path

import aiohttp
import pytest
from ar_helpers import wait_until

import teleop.web
from robot_stack.errors import ParameterError
from robot_stack.launch.config import load_launch_file
from robot_stack.launch.process import ProcessRunner
from teleop.web.errors import TokenRequired
from teleop.web.node import ARPageNode
from teleop.web.server import CLOSE_UNAUTHORIZED

TARGET = "robot_stack_msgs/msg/TeleopTarget"


def pose(seq: int, z: float = 0.0, engaged: bool = True) -> str:
    return json.dumps({"v": 1, "type": "pose", "seq": seq, "t": time.time() * 1e3, "pos": [0.0, 1.0, z],
                       "quat": [0, 0, 0, 1], "engaged": engaged, "grip": None, "source": "mouse"})


async def session(url: str, *sends: str | bytes, pause_s: float = 0.05) -> tuple[int | None, list]:
    """Connect, send each message, collect what comes back for `pause_s`; (close code, messages)."""
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        for data in sends:
            await (ws.send_bytes(data) if isinstance(data, bytes) else ws.send_str(data))
        got, deadline = [], time.monotonic() + pause_s
        while not ws.closed and (left := deadline - time.monotonic()) > 0:
            try:
                msg = await ws.receive(timeout=left)
            except TimeoutError:
                break
            if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                got.append(msg)
        await ws.close()
        return ws.close_code, got


def ws_url(node: ARPageNode, query: str = "") -> str:
    return f"ws://127.0.0.1:{node.server.port}/ws{query}"


def test_pose_to_target_bad_messages_counted_and_silence_disengages(rig):
    node = rig.page(silence_timeout_s=0.3)
    targets = rig.listen(TARGET, "teleop_target")
    rig.spin()
    bad = ["{oops", '{"v":1,"type":"pose","seq":1,"t":NaN}', pose(2).replace('"v": 1', '"v": 7'),
           json.dumps({"v": 1, "type": "pose", "seq": 3, "t": 0}), "x" * 10_000, b"\x00" * 8]
    asyncio.run(session(ws_url(node), pose(0), *bad, pose(4, z=-0.1), pause_s=1.0))   # silent > 0.3 s
    wait_until(lambda: node.server.accepted == 2)
    assert node.rejected == {"json": 1, "nonfinite": 1, "version": 1, "schema": 1, "oversize": 1, "binary": 1}
    wait_until(lambda: len(targets) >= 3)
    engaged = [t for t in targets if t.engaged]
    assert len(engaged) == 2 and engaged[0].mode == 1 and engaged[0].device == "ar_page"
    assert engaged[0].ee_pose.position.x == pytest.approx(0.5)            # home on the first engagement
    assert engaged[1].ee_pose.position.x == pytest.approx(0.6)            # 10 cm forward (-z in WebXR)
    assert not targets[2].engaged and node.silences == 1                   # no pose for 0.3 s: released
    assert targets[2].ee_pose.position.x == pytest.approx(0.6)


def test_dead_man_release_and_page_buttons(rig):
    node = rig.page()
    targets = rig.listen(TARGET, "teleop_target")
    events = rig.listen("robot_stack_msgs/msg/EpisodeEvent", "episode_events")
    rig.spin()
    event = json.dumps({"v": 1, "type": "event", "seq": 9, "t": 0, "event": "discard"})
    asyncio.run(session(ws_url(node), pose(0), pose(1, engaged=False), event, pause_s=0.2))
    wait_until(lambda: len(targets) >= 2 and events)
    assert [t.engaged for t in targets] == [True, False] and node.silences == 0
    assert events[0].event == 2 and events[0].source == "ar_page"


def test_token_is_required_beyond_localhost(rig):
    with pytest.raises(TokenRequired, match="token"):
        rig.page(host="0.0.0.0")
    node = rig.page(host="0.0.0.0", token="s3cret")     # every interface; we connect via loopback only
    assert node.server.url.startswith("http://127.0.0.1:") and node.server.url.endswith("?token=s3cret")
    code, got = asyncio.run(session(ws_url(node), pose(0), pause_s=3))
    assert code == CLOSE_UNAUTHORIZED and node.server.accepted == 0
    code, got = asyncio.run(session(ws_url(node, "?token=wrong"), pose(0), pause_s=3))
    assert code == CLOSE_UNAUTHORIZED
    hello = json.dumps({"v": 1, "type": "hello", "seq": 0, "t": 0, "token": "s3cret"})
    code, got = asyncio.run(session(ws_url(node), hello, pose(1), pause_s=0.1))
    assert json.loads(got[0].data)["type"] == "hello"
    wait_until(lambda: node.server.accepted == 1)
    code, got = asyncio.run(session(ws_url(node, "?token=s3cret"), pose(0), pause_s=0.1))
    wait_until(lambda: node.server.accepted == 2)
    assert node.rejected == {"unauthorized": 2}


def test_bad_parameters_are_named(ctx):
    with pytest.raises(ParameterError, match="silence_timeout_s"):
        ARPageNode(context=ctx, parameter_overrides={"silence_timeout_s": 0.0, "port": 0}, publish_stats=False)


def test_shipped_launch_file_builds_the_node():
    cfg = load_launch_file(Path(teleop.web.__file__).parent / "configs" / "ar_push_t.yaml")
    proc = cfg.process("teleop")
    spec = dataclasses.replace(proc.nodes[0], parameters={**proc.nodes[0].parameters, "port": 0})
    runner = ProcessRunner(dataclasses.replace(proc, transport="inproc", nodes=(spec,)))
    try:
        runner.build()
        (_spec, node), = runner.nodes
        assert isinstance(node, ARPageNode) and node.frame_map.home == (0.4, 0.0, 0.2) and node.server.port > 0
    finally:
        runner.close()


def test_huge_message_closes_only_that_connection(rig):
    node = rig.page()
    rig.spin()
    code, _ = asyncio.run(session(ws_url(node), "x" * 200_000, pause_s=2))
    assert code == 1009                                      # beyond aiohttp's frame limit: closed
    wait_until(lambda: node.rejected == {"oversize": 1})
    _, got = asyncio.run(session(ws_url(node), pose(0, engaged=False), pause_s=0.1))
    assert json.loads(got[0].data)["type"] == "hello"
    wait_until(lambda: node.server.accepted == 1)


def test_cross_origin_browser_sockets_are_refused(rig):
    node = rig.page(allowed_origins=["https://proxy.lab:8443"])
    rig.spin()

    async def status(origin: str) -> int:
        async with aiohttp.ClientSession() as http:
            try:
                async with http.ws_connect(ws_url(node), headers={"Origin": origin}):
                    return 101
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status

    assert asyncio.run(status("http://evil.example")) == 403
    assert asyncio.run(status(f"http://127.0.0.1:{node.server.port}")) == 101          # the page's own
    assert asyncio.run(status("https://proxy.lab:8443")) == 101
    assert node.rejected == {"origin": 1}
