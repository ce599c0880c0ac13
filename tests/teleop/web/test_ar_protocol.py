"""AR page parts without a browser: message validation, config checks, the clutch/frame map, feedback."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from robot_stack import convert, messages
from teleop.web.config import FrameMapConfig, ServerConfig, is_loopback
from teleop.web.errors import ARPageConfigError, BadClientMessage, TokenRequired
from teleop.web.feedback import jpeg_bytes, tactile_pad, wrench_message
from teleop.web.mapping import Clutch, axis_matrix, matrix_to_quat, quat_to_matrix
from teleop.web.protocol import Event, Hello, Pose, encode, parse_client
from teleop.web.server import STATIC


def pose_msg(**over) -> str:
    msg = {"v": 1, "type": "pose", "seq": 3, "t": 1.5, "pos": [0.1, 1.2, -0.3], "quat": [0, 0, 0, 1],
           "engaged": True, "grip": 0.5, "source": "mouse", **over}
    return json.dumps(msg)


def test_valid_messages_parse():
    pose = parse_client(pose_msg(), 4096)
    assert isinstance(pose, Pose) and pose.seq == 3 and pose.pos == (0.1, 1.2, -0.3) and pose.engaged
    assert math.isnan(parse_client(pose_msg(grip=None), 4096).grip)
    event = parse_client('{"v":1,"type":"event","seq":0,"t":0,"event":"success"}', 4096)
    assert isinstance(event, Event) and event.code == 3
    assert isinstance(parse_client('{"v":1,"type":"hello","seq":0,"t":0,"token":"x"}', 4096), Hello)


@pytest.mark.parametrize(("data", "reason"), [
    ("{not json", "json"),
    ('{"v":1,"type":"pose","seq":1,"t":NaN}', "nonfinite"),
    (pose_msg(pos=[0, 1e400, 0]).replace("1e400", "Infinity"), "nonfinite"),
    (pose_msg(v=2), "version"),
    (pose_msg(type="teleport"), "schema"),
    (pose_msg(pos=[0, 1]), "schema"),
    (pose_msg(pos=[0, "1", 2]), "schema"),
    (pose_msg(quat=[0, 0, 0, 0]), "schema"),
    (pose_msg(engaged="yes"), "schema"),
    (pose_msg(seq=-1), "schema"),
    (pose_msg(grip=3), "schema"),
    ("[1, 2]", "schema"),
    ('{"v":1,"type":"event","seq":0,"t":0,"event":"explode"}', "schema"),
    (pose_msg(pad="x" * 5000), "oversize"),
    (b"\x00\x01", "binary"),
    ("[" * 100_000, "oversize"),
])
def test_malformed_messages_are_rejected_with_a_reason(data, reason):
    with pytest.raises(BadClientMessage) as info:
        parse_client(data, 4096)
    assert info.value.reason == reason


def test_deep_nesting_is_a_json_error_not_a_crash():
    with pytest.raises(BadClientMessage, match="json"):
        parse_client("[" * 100_000, 1_000_000)


def test_encode_sends_no_nan():
    text = encode("wrench", force=[1.0, math.nan, math.inf])
    assert json.loads(text) == {"v": 1, "type": "wrench", "force": [1.0, None, None]}


def test_config_refuses_non_loopback_without_token():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.org")
    ServerConfig()
    with pytest.raises(TokenRequired, match="token"):
        ServerConfig(host="0.0.0.0")
    assert not ServerConfig(host="0.0.0.0", token="s3cret").loopback
    with pytest.raises(ARPageConfigError, match="port"):
        ServerConfig(port=70000)
    with pytest.raises(ARPageConfigError, match="axes"):
        FrameMapConfig(axes=("x", "x", "z"))
    with pytest.raises(ARPageConfigError, match="scale"):
        FrameMapConfig(scale=0.0)


def test_quaternion_round_trip():
    rng = np.random.default_rng(0)
    for q in rng.normal(size=(20, 4)):
        q /= np.linalg.norm(q)
        q = -q if q[3] < 0 else q
        np.testing.assert_allclose(matrix_to_quat(quat_to_matrix(q)), q, atol=1e-9)


def test_clutch_maps_relative_motion_through_the_axis_remap():
    cfg = FrameMapConfig(scale=2.0, home=(0.5, 0.0, 0.2))
    np.testing.assert_array_equal(axis_matrix(cfg.axes) @ [0, 0, -1], [1, 0, 0])    # WebXR forward = robot +x
    clutch = Clutch(cfg)
    clutch.engage((1.0, 1.0, 1.0), (0, 0, 0, 1))
    pos, quat = clutch.target((1.0, 1.1, 0.9), (0, 0, 0, 1))          # 10 cm up and 10 cm forward
    np.testing.assert_allclose(pos, [0.7, 0.0, 0.4], atol=1e-12)
    np.testing.assert_allclose(quat, [0, 0, 0, 1], atol=1e-12)
    yaw = np.array([0, math.sin(0.25), 0, math.cos(0.25)])             # 0.5 rad about WebXR up
    _, quat = clutch.target((1.0, 1.1, 0.9), yaw)
    np.testing.assert_allclose(quat, [0, 0, math.sin(0.25), math.cos(0.25)], atol=1e-12)   # about robot z
    clutch.release()
    clutch.engage((5.0, 5.0, 5.0), (0, 0, 0, 1))                       # re-clutch elsewhere: no jump
    pos, quat = clutch.target((5.0, 5.0, 5.0), (0, 0, 0, 1))
    np.testing.assert_allclose(pos, [0.7, 0.0, 0.4], atol=1e-12)
    np.testing.assert_allclose(quat, [0, 0, math.sin(0.25), math.cos(0.25)], atol=1e-12)


def test_feedback_payloads():
    text = wrench_message(convert.wrench([1, 2, 3, 0, 0, math.nan]), {"client": 1, "seq": 9})
    msg = json.loads(text)
    assert msg["force"] == [1.0, 2.0, 3.0] and msg["torque"][2] is None and msg["answers"]["seq"] == 9
    disp = np.zeros((6, 3), np.float32)
    disp[:, 0], disp[:, 2] = 0.002, -0.001
    frame = messages.make("robot_stack_msgs/msg/TactileFrame", sensor_id="left", rows=2, cols=3,
                          displacement=disp.ravel(), normal_force=2.0)
    pad = tactile_pad(frame)
    assert pad["id"] == "left" and pad["shear"] == pytest.approx([0.002, 0.0])
    assert pad["normal"] == pytest.approx(-0.001)
    img = np.zeros((48, 64, 3), np.uint8)
    img[:, :32] = (255, 0, 0)
    data = jpeg_bytes(convert.image(img, "rgb8"), 80)
    assert data[:2] == b"\xff\xd8"
    assert jpeg_bytes(convert.image(np.zeros((4, 4), np.float32), "32FC1"), 80) is None


def test_page_assets_are_local():
    names = {p.name for p in STATIC.iterdir()}
    assert {"index.html", "ar.js", "ar.css"} <= names
    for path in STATIC.iterdir():
        assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", path.read_text()), path.name
        assert "import(" not in path.read_text()
