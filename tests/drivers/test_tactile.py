"""Vision-tactile: marker detection/tracking on synthetic gel images with known fields, PCA, node."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.sensor_common import SensorConfigError
from drivers.sensor_nodes import TactileNode
from drivers.tactile import (
    MarkerGridConfig,
    MarkerTracker,
    TactilePCA,
    TrackingError,
    detect_markers,
    match_nearest,
    reference_from_image,
)
from drivers.tactile_emulator import SyntheticGelCapture, field_at, render_gel
from robot_stack import messages
from robot_stack.clock import Time
from robot_stack.node import Node

CFG = MarkerGridConfig()


def test_static_field_subpixel_accuracy():
    rng = np.random.default_rng(0)
    field = rng.uniform(-4, 4, (CFG.rows * CFG.cols, 2))
    img = render_gel(CFG, field, rng=rng, noise_std=3.0, illumination=0.4)
    assert img.shape == (240, 320, 3) and img.dtype == np.uint8
    disp = MarkerTracker(CFG).track(img)
    err = np.linalg.norm(disp - field, axis=1)
    assert err.mean() < 0.5 and err.max() < 1.0


def test_temporal_tracking_follows_large_motion():
    rng = np.random.default_rng(1)
    tracker = MarkerTracker(CFG)
    errors = []
    for t in np.linspace(0, 2, 16):
        f = field_at(CFG, t, amplitude_px=14.0 * t / 2)   # ramps beyond max_match_px from rest
        errors.append(np.linalg.norm(tracker.track(render_gel(CFG, f, rng=rng)) - f, axis=1).mean())
    assert max(errors) < 0.5
    assert tracker.lost == 0


def test_lost_markers_keep_last_position():
    tracker = MarkerTracker(CFG)
    img = render_gel(CFG, np.zeros((63, 2)), rng=np.random.default_rng(2))
    img[:, :40] = img[0, 60]             # wipe the first column of markers
    disp = tracker.track(img)
    assert tracker.lost_last == CFG.rows and np.abs(disp).max() < 0.5


def test_reference_from_image_and_matching():
    ref = CFG.grid_px() + np.random.default_rng(3).uniform(-2, 2, (63, 2))
    img = render_gel(CFG, None, reference_px=ref, rng=np.random.default_rng(4))
    np.testing.assert_allclose(reference_from_image(img, CFG), ref, atol=0.3)
    with pytest.raises(TrackingError, match="found 0 markers"):
        reference_from_image(np.full((240, 320, 3), 200, np.uint8), CFG)
    idx = match_nearest(np.array([[0.0, 0.0], [10.0, 0.0], [50.0, 50.0]]), np.array([[1.0, 0.0], [9.0, 1.0]]), 5.0)
    assert idx.tolist() == [0, 1, -1]
    assert len(detect_markers(np.zeros((240, 320), np.uint8), CFG)) == 0


def test_frame_message_layout():
    tracker = MarkerTracker(CFG)
    disp = np.ones((63, 2))
    msg = tracker.frame_msg(disp, Time(5), "left", embedding=np.arange(3))
    assert msg.__msgtype__ == "robot_stack_msgs/msg/TactileFrame"
    assert (msg.rows, msg.cols, msg.sensor_id, msg.header.frame_id) == (7, 9, "left", "left_pad")
    assert msg.marker_rest.shape == (126,) and msg.displacement.shape == (189,)
    np.testing.assert_allclose(msg.displacement.reshape(63, 3)[0], [CFG.m_per_px, CFG.m_per_px, 0.0], rtol=1e-6)
    assert np.isnan(msg.normal_force)
    messages.serialize(msg)


def test_pca_fit_save_load(tmp_path):
    rng = np.random.default_rng(5)
    basis = rng.normal(size=(3, 126))
    data = rng.normal(size=(200, 3)) @ basis + 0.01 * rng.normal(size=(200, 126))
    pca = TactilePCA.fit(data, n_components=15)
    assert pca.components.shape == (15, 126)
    assert pca.explained_variance[:3].sum() / pca.explained_variance.sum() > 0.99
    path = tmp_path / "pca.json"
    pca.save(path)
    back = TactilePCA.load(path)
    np.testing.assert_allclose(back.transform(data[0]), pca.transform(data[0]), rtol=1e-5)
    assert back.transform(data[:4]).shape == (4, 15)
    np.testing.assert_allclose(back.inverse(back.transform(data[:1])), data[:1], atol=0.1)
    path.write_text("{}")
    with pytest.raises(SensorConfigError, match="not a tactile PCA"):
        TactilePCA.load(path)


def test_tactile_node_publishes_frames(ctx, tmp_path):
    pca_path = tmp_path / "pca.json"
    TactilePCA.fit(np.random.default_rng(6).normal(size=(20, 126)), 15).save(pca_path)
    capture = SyntheticGelCapture(CFG, fps=0)
    node = TactileNode("tactile", context=ctx, capture=capture,
                       parameter_overrides={"name": "left", "pca": str(pca_path), "max_age_s": 10.0})
    got = []
    listener = Node("listener", context=ctx)
    sub = listener.create_subscription("robot_stack_msgs/msg/TactileFrame", "/tactile/left", got.append, 10)
    try:
        node.tick()                               # connects
        assert node.status == "ok"
        node.camera.wait_frame(0, timeout=5.0)
        node.tick()
        msg = sub.take()
        assert msg is not None and msg.sensor_id == "left" and msg.embedding.shape == (15,)
        assert node.tracker.lost == 0
    finally:
        node.destroy_node()
        listener.destroy_node()
