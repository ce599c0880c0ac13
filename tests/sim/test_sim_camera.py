"""Simulated cameras: image shape/content, depth, CameraInfo intrinsics, Image messages."""

from __future__ import annotations

import math

import numpy as np
import pytest

from robot_stack import convert
from robot_stack.clock import Time
from sim import FixedCamera, FixedCameraConfig, SimError, SimPanda, SimWorld, WristCamera, WristCameraConfig


@pytest.fixture
def world():
    with SimWorld() as w:
        yield w


def test_fixed_camera_image_and_depth(world):
    cam = FixedCamera(world, FixedCameraConfig(width=64, height=48, eye=(1.0, 0.0, 1.0), target=(0.0, 0.0, 0.0)))
    rgb_empty, _ = cam.render()
    assert rgb_empty.shape == (48, 64, 3) and rgb_empty.dtype == np.uint8
    world.add_box([0.15] * 3, [0.0, 0.0, 0.15], mass=0.0, rgba=(1.0, 0.0, 0.0, 1.0))
    rgb, depth = cam.render()
    assert depth.shape == (48, 64) and depth.dtype == np.float32
    assert rgb.std() > 5.0
    assert np.any(rgb != rgb_empty)
    centre = rgb[20:28, 28:36].reshape(-1, 3).mean(axis=0)
    assert centre[0] > 2 * centre[1]                             # the red box fills the centre
    box_top_distance = np.linalg.norm(np.array([1.0, 0.0, 1.0]) - np.array([0.0, 0.0, 0.3]))
    assert depth[24, 32] == pytest.approx(box_top_distance, abs=0.15)


def test_camera_info_intrinsics(world):
    cfg = FixedCameraConfig(width=640, height=480, fov_deg=60.0)
    info = FixedCamera(world, cfg).camera_info(Time(123))
    f = 480 / (2 * math.tan(math.radians(30.0)))
    np.testing.assert_allclose(info.k, [f, 0, 320, 0, f, 240, 0, 0, 1])
    np.testing.assert_allclose(info.p, [f, 0, 320, 0, 0, f, 240, 0, 0, 0, 1, 0])
    assert info.distortion_model == "plumb_bob" and not np.any(info.d)
    assert (info.width, info.height) == (640, 480)
    assert Time.from_msg(info.header.stamp) == Time(123)


def test_image_msg_stamped_with_sim_time(world):
    cam = FixedCamera(world, FixedCameraConfig(width=32, height=24))
    world.step(7)
    msg = cam.image_msg()
    assert (msg.encoding, msg.width, msg.height) == ("rgb8", 32, 24)
    assert Time.from_msg(msg.header.stamp).nanoseconds == world.time_ns
    assert convert.image_array(msg).shape == (24, 32, 3)


def test_wrist_camera_follows_link(world):
    robot = SimPanda(world)
    robot.connect()
    world.add_box([0.1, 0.1, 0.01], [0.3, 0.0, 0.01], mass=0.0, rgba=(0.0, 0.0, 1.0, 1.0))
    cam = WristCamera(world, robot, WristCameraConfig(width=48, height=36))
    eye, target, _ = cam.view()
    assert eye[2] > 0.2 and target[2] < eye[2]                 # home pose: the hand looks down
    rgb, depth = cam.render()
    assert rgb.shape == (36, 48, 3) and rgb.std() > 1.0
    assert float(depth.min()) < 1.0


def test_camera_config_validation():
    with pytest.raises(SimError, match="near"):
        FixedCameraConfig(near=2.0, far=1.0)
    with pytest.raises(SimError, match="fov"):
        FixedCameraConfig(fov_deg=0.0)
