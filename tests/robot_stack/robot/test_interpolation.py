import numpy as np
import pytest

from robot_stack.robot.interpolation import TrajectoryBuffer


def test_linear_in_time_between_waypoints_then_holds_last():
    buf = TrajectoryBuffer()
    assert buf.empty and buf.sample(0) is None
    buf.replace(100, np.array([0.0, 1.0]), [200, 300], [np.array([1.0, 1.0]), np.array([3.0, -1.0])])
    assert buf.end_ns == 300
    assert np.allclose(buf.sample(150), [0.5, 1.0])
    assert np.allclose(buf.sample(250), [2.0, 0.0])
    assert np.allclose(buf.sample(300), [3.0, -1.0])
    assert np.allclose(buf.sample(10_000), [3.0, -1.0])
    assert len(buf) == 1  # finished segments are dropped


def test_waypoints_due_now_or_earlier_become_the_start():
    buf = TrajectoryBuffer()
    buf.replace(100, np.zeros(1), [50, 100], [np.array([5.0]), np.array([7.0])])
    assert np.allclose(buf.sample(100), [7.0]) and buf.end_ns == 100


def test_replace_restarts_from_given_start_and_checks_times():
    buf = TrajectoryBuffer()
    buf.replace(0, np.zeros(1), [100], [np.ones(1)])
    buf.replace(50, buf.sample(50), [150], [np.zeros(1)])
    assert np.allclose(buf.sample(50), [0.5]) and np.allclose(buf.sample(100), [0.25])
    with pytest.raises(ValueError, match="increase"):
        buf.replace(0, np.zeros(1), [10, 10], [np.ones(1), np.ones(1)])
    with pytest.raises(ValueError, match="times for"):
        buf.replace(0, np.zeros(1), [10], [])
