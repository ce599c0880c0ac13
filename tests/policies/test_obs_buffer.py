"""Observation plumbing of the serving nodes (`policies.obs_buffer`): message -> feature values,
the per-stream buffer, and the default topic/type of each feature."""

import numpy as np
import pytest

from policies.base import FeatureSpec
from policies.obs_buffer import ObsMapError
from robot_stack import convert
from robot_stack.demo_nodes import JOINT_NAMES

WRENCH, IMAGE, STATE = "observation.wrench", "observation.images.fixed", "observation.state"
FEATURES = {
    STATE: FeatureSpec(STATE, "state", (7,), tuple(JOINT_NAMES)),
    WRENCH: FeatureSpec(WRENCH, "lowdim", (6,)),
    IMAGE: FeatureSpec(IMAGE, "image", (3, 8, 8)),
    "action": FeatureSpec("action", "action", (7,), tuple(JOINT_NAMES)),
}


def test_message_conversion_reorders_joints_reads_nested_fields_and_converts_images():
    from policies.obs_buffer import ObsSource, image_value, lowdim_value

    spec = FeatureSpec(STATE, "state", (2,), ("b", "a"))
    src = ObsSource(STATE, "/joint_states", "sensor_msgs/msg/JointState", "position")
    assert lowdim_value(convert.joint_state(["a", "b", "c"], [1.0, 2.0, 3.0]), src, spec).tolist() == [2.0, 1.0]
    with pytest.raises(KeyError, match="lacks joints"):
        lowdim_value(convert.joint_state(["a"], [1.0]), src, spec)
    with pytest.raises(ValueError, match="finite"):
        lowdim_value(convert.joint_state(["a", "b"], [1.0, np.nan]), src, spec)
    w = convert.wrench([1, 2, 3, 4, 5, 6])
    force = FeatureSpec("observation.force", "lowdim", (3,))
    full = lowdim_value(w, ObsSource(WRENCH, "/w", "geometry_msgs/msg/WrenchStamped", "wrench"), FEATURES[WRENCH])
    assert full.tolist() == [1, 2, 3, 4, 5, 6]
    nested = ObsSource("f", "/w", "geometry_msgs/msg/WrenchStamped", "wrench.force")
    assert lowdim_value(w, nested, force).tolist() == [1, 2, 3]
    bgr = np.zeros((4, 4, 3), np.uint8)
    bgr[..., 0] = 255                                                      # blue in BGR order
    img = image_value(convert.image(bgr, "bgr8"), FeatureSpec(IMAGE, "image", (3, 2, 2)))
    assert img.shape == (3, 2, 2) and np.allclose(img[2], 1.0) and np.allclose(img[:2], 0.0)
    mono = image_value(convert.image(np.full((2, 2), 51, np.uint8), "mono8"), FeatureSpec(IMAGE, "image", (3, 2, 2)))
    assert np.allclose(mono, 0.2)


def test_stream_buffer_drops_out_of_order_wraps_and_flags_padding():
    from policies.obs_buffer import StreamBuffer

    buf = StreamBuffer((1,), capacity=4)
    for t in (10, 20, 15, 30, 40, 50):
        buf.add(t, np.array([t / 10]))
    assert buf.out_of_order == 1 and buf.newest_ns == 50
    stamps, _ = buf.ordered()
    assert stamps.tolist() == [20, 30, 40, 50]                              # capacity 4: the oldest went
    values, pad = buf.at(np.array([10, 25, 50, 60]), image=False)
    assert values[:, 0].tolist() == [2.0, 2.5, 5.0, 5.0] and pad.tolist() == [True, False, False, False]
    frames, _ = buf.at(np.array([29, 30, 31]), image=True)
    assert frames[:, 0].tolist() == [2.0, 3.0, 3.0]                         # latest at or before


def test_default_sources_follow_feature_names():
    from policies.obs_buffer import parse_obs_map

    specs = {**FEATURES, "observation.tactile": FeatureSpec("observation.tactile", "lowdim", (4,))}
    needed = [STATE, WRENCH, IMAGE, "observation.tactile"]
    got = parse_obs_map({STATE: {"topic": "/arm/joint_states", "field": "velocity"}}, specs, needed, needed)
    assert (got[STATE].topic, got[STATE].field) == ("/arm/joint_states", "velocity")
    assert (got[WRENCH].topic, got[WRENCH].type, got[WRENCH].field) == (
        "/wrench", "geometry_msgs/msg/WrenchStamped", "wrench")
    assert (got[IMAGE].topic, got[IMAGE].type) == ("/fixed/image_raw", "sensor_msgs/msg/Image")
    assert got["observation.tactile"].type == "robot_stack_msgs/msg/TactileFrame"
    with pytest.raises(ObsMapError, match="image feature"):
        parse_obs_map({IMAGE: {"type": "sensor_msgs/msg/JointState"}}, specs, needed, needed)
