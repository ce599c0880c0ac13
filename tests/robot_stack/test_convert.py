import numpy as np
import pytest

from robot_stack import convert, messages
from robot_stack.clock import Time


def _round_trip(msg):
    return messages.deserialize(messages.serialize(msg), msg.__msgtype__)


def test_joint_state_arrays_round_trip_and_reorder():
    names = [f"joint{i}" for i in range(7)]
    msg = convert.joint_state(names, np.arange(7.0), velocity=np.ones(7), stamp=Time(1_500_000_000), frame_id="b")
    back = convert.joint_arrays(_round_trip(msg))
    assert back.names == names
    np.testing.assert_array_equal(back.position, np.arange(7.0))
    np.testing.assert_array_equal(back.velocity, np.ones(7))
    assert back.effort.size == 0
    assert msg.header.stamp.sec == 1 and msg.header.stamp.nanosec == 500_000_000
    sub = convert.joint_arrays(msg, order=["joint3", "joint0"])
    np.testing.assert_array_equal(sub.position, [3.0, 0.0])
    with pytest.raises(KeyError, match="joint9"):
        convert.joint_arrays(msg, order=["joint9"])
    with pytest.raises(ValueError, match="3 values for 7"):
        convert.joint_state(names, [1.0, 2.0, 3.0])


@pytest.mark.parametrize(
    ("encoding", "dtype", "shape"),
    [("rgb8", np.uint8, (480, 640, 3)), ("bgr8", np.uint8, (4, 5, 3)), ("mono8", np.uint8, (4, 5)),
     ("16UC1", np.uint16, (6, 7))],
)
def test_image_round_trip(encoding, dtype, shape):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype)
    msg = convert.image(arr, encoding, frame_id="cam")
    assert msg.height == shape[0] and msg.width == shape[1] and msg.encoding == encoding
    assert msg.step == shape[1] * (arr.shape[2] if arr.ndim == 3 else 1) * arr.itemsize
    out = convert.image_array(_round_trip(msg))
    np.testing.assert_array_equal(out.reshape(shape), arr)


def test_image_with_row_padding_and_big_endian():
    arr = np.arange(12, dtype=np.uint16).reshape(3, 4)
    rows = arr.astype(">u2").view(np.uint8).reshape(3, 8)
    padded = np.concatenate([rows, np.zeros((3, 4), np.uint8)], axis=1)
    msg = messages.make("sensor_msgs/msg/Image", height=3, width=4, encoding="16UC1", is_bigendian=1, step=12,
                        data=padded.reshape(-1))
    np.testing.assert_array_equal(convert.image_array(msg)[:, :, 0], arr)


def test_image_errors_are_clear():
    with pytest.raises(convert.ImageEncodingError, match="needs dtype uint8"):
        convert.image(np.zeros((2, 2, 3), np.float32), "rgb8")
    with pytest.raises(convert.ImageEncodingError, match="HxWx3"):
        convert.image(np.zeros((2, 2)), "rgb8")
    with pytest.raises(convert.ImageEncodingError, match="unsupported encoding 'yuv422'"):
        convert.image(np.zeros((2, 2, 3), np.uint8), "yuv422")
    bad = messages.make("sensor_msgs/msg/Image", height=10, width=10, encoding="rgb8", step=30, data=b"\x00" * 10)
    with pytest.raises(convert.ImageEncodingError, match="too small"):
        convert.image_array(bad)


def test_wrench_vector_round_trip():
    v = np.array([1.0, -2.0, 3.5, 0.1, 0.2, -0.3])
    msg = convert.wrench(v, frame_id="ft", stamp=Time(42))
    np.testing.assert_array_equal(convert.wrench_vector(_round_trip(msg)), v)
    assert msg.header.frame_id == "ft"
    with pytest.raises(ValueError, match="6 values"):
        convert.wrench([1, 2, 3])
