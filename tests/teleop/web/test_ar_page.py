"""The AR page in a real headless Chromium: connect, keyboard-driven targets, arrows, frames, bad input, token."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
from ar_helpers import wait_until
from PIL import Image

from robot_stack import convert, messages
from teleop.web.headless import Chromium
from teleop.web.node import ARPageNode

TARGET = "robot_stack_msgs/msg/TeleopTarget"
FORCE_RED = (255, 45, 45)


@pytest.fixture
def page(browser: Chromium):
    """Open a node's page; afterwards release every key and leave the page (closing its socket)."""
    def open_page(node: ARPageNode, query: str = "", connected: bool = True) -> Chromium:
        browser.navigate(f"http://127.0.0.1:{node.server.port}/{query}")
        if connected:
            browser.wait_for("window.__arState.connected && window.__arState.sent >= 2")
        return browser

    yield open_page
    for code in ("Space", "KeyW", "KeyD"):
        browser.key(code, False)
    browser.navigate("about:blank")


def red_pixels(png: bytes) -> np.ndarray:
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return np.all(np.abs(rgb - FORCE_RED) < 40, axis=2)


def test_keyboard_moves_the_target_while_the_dead_man_is_held(rig, page):
    node = rig.page()
    targets = rig.listen(TARGET, "teleop_target")
    rig.spin()
    browser = page(node)
    assert browser.evaluate("window.__arState.schema") == 1 and node.poses > 0 and not targets  # idle: no target
    browser.key("Space", True)
    wait_until(lambda: any(t.engaged for t in targets))
    browser.key("KeyW", True)                                        # forward: WebXR -z -> robot +x
    wait_until(lambda: targets[-1].ee_pose.position.x > 0.53)
    browser.key("KeyW", False)
    browser.key("Space", False)
    wait_until(lambda: not targets[-1].engaged)
    first, last = targets[0], [t for t in targets if t.engaged][-1]
    assert first.ee_pose.position.x == pytest.approx(0.5) and first.header.frame_id == "base_link"
    assert last.ee_pose.position.y == pytest.approx(0.0) and last.ee_pose.position.z == pytest.approx(0.2)
    assert node.rejected == {} and browser.evaluate("window.__arState.errors") == []


def test_arrows_follow_wrench_and_tactile(rig, page):
    node = rig.page(tactile_topics=["tactile/left"])
    wrench = rig.observer.create_publisher("geometry_msgs/msg/WrenchStamped", "wrench", "sensor_data")
    tactile = rig.observer.create_publisher("robot_stack_msgs/msg/TactileFrame", "tactile/left", "sensor_data")
    rig.spin()
    browser = page(node)
    wrench.publish(convert.wrench([0, 0, 0, 0, 0, 0]))
    browser.wait_for("window.__arState.arrow !== null")
    before = red_pixels(browser.screenshot())
    wrench.publish(convert.wrench([15, 0, 0, 0, 0, 0]))               # +x: straight up the screen
    arrow = browser.wait_for("(a => a.y0 - a.y1 > 100 && a)(window.__arState.arrow)")
    after = red_pixels(browser.screenshot())
    assert arrow["x1"] == pytest.approx(arrow["x0"]) and after.sum() > before.sum() + 300
    rows = np.nonzero(after.any(axis=1))[0]
    assert rows.min() < arrow["y0"] - 100                             # the red is drawn above the centre
    wrench.publish(convert.wrench([0, -10, 0, 0, 0, 0]))              # -y: to the right
    browser.wait_for("(a => a.x1 - a.x0 > 50 && Math.abs(a.y1 - a.y0) < 1)(window.__arState.arrow)")
    disp = np.tile(np.array([0.001, -0.0005, -0.0002], np.float32), 12)
    tactile.publish(messages.make("robot_stack_msgs/msg/TactileFrame", sensor_id="left", rows=3, cols=4,
                                  displacement=disp, normal_force=1.5))
    pad = browser.wait_for("window.__arState.tactile.left")
    assert pad["shear"] == pytest.approx([0.001, -0.0005]) and pad["normal_force"] == 1.5


def test_camera_frames_are_drawn(rig, page):
    node = rig.page(camera_topic="cam/image_raw")
    images = rig.observer.create_publisher("sensor_msgs/msg/Image", "cam/image_raw", "sensor_data")
    rig.spin()
    browser = page(node)
    green = np.zeros((48, 64, 3), np.uint8)
    green[..., 1] = 200
    deadline = time.monotonic() + 20
    while browser.evaluate("window.__arState.frames") < 3 and time.monotonic() < deadline:
        images.publish(convert.image(green, "rgb8"))
        time.sleep(0.05)
    assert browser.evaluate("window.__arState.frameSize") == [64, 48]
    rgb = np.asarray(Image.open(io.BytesIO(browser.screenshot())).convert("RGB")).astype(int)
    assert np.abs(rgb[rgb.shape[0] // 3, 40] - (0, 200, 0)).max() < 30     # the frame fills the view
    assert node.server.frames_sent >= 3


BAD_FROM_PAGE = """(async () => {
  const ws = new WebSocket(`ws://${location.host}/ws`);
  await new Promise((ok) => { ws.onopen = ok; });
  const pose = {v: 1, type: 'pose', seq: 1, t: 0, pos: [0, 0, 0], quat: [0, 0, 0, 1], engaged: true, source: 'mouse'};
  for (const bad of ['{"v":1,', JSON.stringify(pose).replace('"t":0', '"t":NaN'), JSON.stringify({...pose, v: 99}),
                     JSON.stringify({...pose, pos: [0, 0]}), JSON.stringify({...pose, pad: 'x'.repeat(20000)}),
                     JSON.stringify({...pose, type: 'launch_missiles'})]) ws.send(bad);
  ws.send(new Uint8Array([1, 2, 3]));
  await new Promise((ok) => setTimeout(ok, 200));
  ws.close();
  return true;
})()"""


def test_malformed_messages_from_a_page_are_rejected_and_counted(rig, page):
    node = rig.page()
    rig.spin()
    browser = page(node)
    assert browser.evaluate(BAD_FROM_PAGE)
    wait_until(lambda: sum(node.rejected.values()) == 7)
    assert node.rejected == {"json": 1, "nonfinite": 1, "version": 1, "schema": 2, "oversize": 1, "binary": 1}
    sent = browser.evaluate("window.__arState.sent")
    browser.wait_for(f"window.__arState.connected && window.__arState.sent > {sent + 3}")   # the page carries on
    assert node.targets == 0                    # nothing bad became a target


def test_buttons_publish_episode_events(rig, page):
    node = rig.page()
    events = rig.listen("robot_stack_msgs/msg/EpisodeEvent", "episode_events")
    rig.spin()
    browser = page(node)
    browser.key("Digit1", True)
    browser.key("Digit1", False)
    browser.evaluate("document.querySelector('button[data-event=success]').click()")
    wait_until(lambda: len(events) == 2)
    assert [e.event for e in events] == [0, 3] and {e.source for e in events} == {"ar_page"}
    assert node.events == 2


def test_token_required_on_every_interface(rig, page):
    node = rig.page(host="0.0.0.0", token="tok-123")
    rig.spin()
    browser = page(node, connected=False)
    wait_until(lambda: node.rejected.get("unauthorized", 0) >= 1)
    assert browser.wait_for("window.__arState.unauthorized") and node.server.accepted == 0
    page(node, "?token=tok-123")
    assert node.server.accepted > 0


def agent_xy(observation) -> np.ndarray:
    names = list(observation.name)
    return np.array([observation.position[i] for i, n in enumerate(names) if n.startswith("agent_pos.")])


def test_page_drives_the_simulated_push_t_robot(rig, page):
    from sim.node import SimNode

    rig.add(SimNode(node_name="sim", context=rig.ctx, publish_stats=False, parameter_overrides={
        "task": "push_t", "realtime": True, "cameras": ["fixed"], "camera_hz": 10.0, "stop_periods": 5000}))
    node = rig.page(home=[0.35, -0.2, 0.2])           # seed 0 starts the tool at (0.35, 0.16); the T is further out
    targets = rig.listen(TARGET, "teleop_target")
    observations = rig.listen("sensor_msgs/msg/JointState", "task/observation")
    rig.spin()
    browser = page(node)
    browser.wait_for("window.__arState.frames > 0")    # the sim's camera, on the page
    wait_until(lambda: observations)
    start = agent_xy(observations[-1])
    browser.key("Space", True)
    browser.key("KeyD", True)                          # WebXR +x (right) -> robot -y
    wait_until(lambda: targets and targets[-1].ee_pose.position.y < -0.25)
    browser.key("KeyD", False)
    goal = targets[-1].ee_pose.position
    wait_until(lambda: np.allclose(agent_xy(observations[-1]), [goal.x, goal.y], atol=0.02), 30.0)
    assert np.hypot(goal.x - start[0], goal.y - start[1]) > 0.05      # it really moved there
    browser.key("Space", False)
    wait_until(lambda: not targets[-1].engaged)


@pytest.fixture
def fake_webxr(browser: Chromium):
    script = browser.add_init_script((Path(__file__).parent / "fake_webxr.js").read_text())
    yield
    browser.remove_init_script(script)


def test_webxr_controller_pose_and_buttons(rig, page, fake_webxr):
    node = rig.page()
    targets = rig.listen(TARGET, "teleop_target")
    events = rig.listen("robot_stack_msgs/msg/EpisodeEvent", "episode_events")
    rig.spin()
    browser = page(node)
    assert browser.wait_for("!document.getElementById('xr-ar').hidden && document.getElementById('xr-vr').hidden")
    browser.evaluate("document.getElementById('xr-ar').click()")
    browser.wait_for("window.__arState.xr === 'immersive-ar' && window.__arState.source === 'xr'")
    browser.evaluate("window.__fakeXR.fire('squeezestart')")            # grip button: the dead-man
    wait_until(lambda: targets and targets[-1].engaged)
    browser.evaluate("window.__fakeXR.pose.position.z = -0.1; window.__fakeXR.pose.position.y = 1.05")
    wait_until(lambda: targets[-1].ee_pose.position.x > 0.59)
    position = targets[-1].ee_pose.position
    assert position.x == pytest.approx(0.6) and position.z == pytest.approx(0.25)      # forward and up
    browser.evaluate("window.__fakeXR.gamepad.buttons[4].pressed = true")   # A: start recording
    wait_until(lambda: events)
    browser.evaluate("window.__fakeXR.fire('squeezeend')")
    wait_until(lambda: not targets[-1].engaged)
    assert events[0].event == 0 and browser.evaluate("window.__arState.errors") == []
