import numpy as np
import pytest

from robot_stack import messages
from robot_stack.errors import MessageFieldError, UnknownMessageType

PROJECT_TYPES = ["TactileFrame", "ActionChunk", "EpisodeEvent", "TeleopTarget", "NodeStats", "TimerStats", "ShmImage"]


@pytest.mark.parametrize("name", PROJECT_TYPES)
def test_project_types_registered_with_rihs01_hash(name):
    full = f"robot_stack_msgs/msg/{name}"
    assert messages.resolve_type(f"robot_stack_msgs/{name}") == full
    h = messages.type_hash(full)
    assert h.startswith("RIHS01_") and len(h) == len("RIHS01_") + 64
    assert messages.dds_type_name(full) == f"robot_stack_msgs::msg::dds_::{name}_"


def test_standard_type_hash_matches_ros2_jazzy():
    # Value published by ROS 2 Jazzy for sensor_msgs/msg/JointState (rosidl-generated type description).
    assert messages.type_hash("sensor_msgs/msg/JointState") == (
        "RIHS01_a13ee3a330e346c9d87b5aa18d24e11690752bd33a0350f11c5882bc9179260e"
    )


def test_project_type_cdr_round_trip():
    chunk = messages.make(
        "robot_stack_msgs/msg/ActionChunk",
        names=["j1", "j2"], steps=3, actions=np.arange(6.0), policy_id="dp",
        dt={"sec": 0, "nanosec": 100_000_000},
    )
    back = messages.deserialize(messages.serialize(chunk), "robot_stack_msgs/msg/ActionChunk")
    assert back.names == ["j1", "j2"] and back.steps == 3 and back.policy_id == "dp"
    np.testing.assert_array_equal(back.actions, np.arange(6.0))
    assert back.dt.nanosec == 100_000_000


def test_cdr_bytes_have_ros2_encapsulation_header():
    data = messages.serialize(messages.make("std_msgs/msg/String", data="hi"))
    assert data[:4] == b"\x00\x01\x00\x00"  # CDR little endian


def test_unknown_type_names_closest():
    with pytest.raises(UnknownMessageType) as err:
        messages.resolve_type("sensor_msgs/JointStat")
    assert "sensor_msgs/msg/JointState" in str(err.value)
    with pytest.raises(UnknownMessageType) as err:
        messages.resolve_type("geometry_msgs/msg/WrenchStampd")
    assert "geometry_msgs/msg/WrenchStamped" in str(err.value)


def test_short_and_dds_names_resolve():
    assert messages.resolve_type("sensor_msgs/Image") == "sensor_msgs/msg/Image"
    assert messages.normalize_type_name("sensor_msgs::msg::dds_::Image_") == "sensor_msgs/msg/Image"


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"position": [1.0, "x"]}, "position[1]"),
        ({"name": "abc"}, "name"),
        ({"name": ["a", 3]}, "name[1]"),
        ({"header": {"stamp": {"sec": 1.5}}}, "header.stamp.sec"),
        ({"header": {"frame_id": 7}}, "header.frame_id"),
        ({"positon": [1.0]}, "positon"),
    ],
)
def test_wrong_field_types_name_the_field(values, field):
    with pytest.raises(MessageFieldError) as err:
        messages.from_dict("sensor_msgs/msg/JointState", values)
    assert err.value.field == field
    assert f"'{field}'" in str(err.value)


def test_integer_range_and_fixed_array_length_checked():
    with pytest.raises(MessageFieldError, match="out of range for uint32"):
        messages.from_dict("sensor_msgs/msg/Image", {"height": -1})
    with pytest.raises(MessageFieldError, match="exactly 9 elements"):
        messages.from_dict("sensor_msgs/msg/CameraInfo", {"k": [1.0, 2.0]})


def test_validate_normalizes_lists_and_rejects_bad_nested():
    js = messages.make("sensor_msgs/msg/JointState")
    js.position = [1, 2]
    messages.validate(js)
    assert js.position.dtype == np.float64
    w = messages.make("geometry_msgs/msg/WrenchStamped")
    w.wrench.force.x = "strong"
    with pytest.raises(MessageFieldError) as err:
        messages.validate(w)
    assert err.value.field == "wrench.force.x"


def test_to_dict_round_trips_through_from_dict():
    src = messages.make("geometry_msgs/msg/WrenchStamped", wrench={"force": {"x": 1.0, "y": 2.0}})
    again = messages.from_dict("geometry_msgs/msg/WrenchStamped", messages.to_dict(src))
    assert messages.to_dict(again) == messages.to_dict(src)


def test_definition_shows_nested_types():
    text = messages.definition("robot_stack_msgs/msg/NodeStats")
    assert "robot_stack_msgs/TimerStats[] timers" in text
    assert "float64 lateness_p99" in text
