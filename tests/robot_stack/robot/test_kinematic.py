import math

import numpy as np
import pytest

from robot_stack.errors import ConfigError
from robot_stack.robot import ControlMode, JointCommand, robot_class
from robot_stack.robot.kinematic import DeviceNotConnected, KinematicArm, KinematicArmConfig, UnsupportedCommand


class StepClock:
    def __init__(self):
        self.ns = 1_000_000_000

    def __call__(self) -> int:
        return self.ns

    def advance(self, seconds: float) -> None:
        self.ns += int(round(seconds * 1e9))


def two_joint(**kw):
    base = dict(joint_names=("a", "b"), lower=(-1.0, -1.0), upper=(1.0, 1.0), velocity=(1.0, 10.0),
                effort=(1.0, 1.0), initial=(0.0, 0.0), time_constant=0.1)
    return KinematicArmConfig(**{**base, **kw})


def test_registered_and_default_config_is_a_7dof_arm():
    assert robot_class("kinematic_arm") is KinematicArm
    arm = KinematicArm()
    assert len(arm.joint_names) == 7 and arm.limits.lower.shape == (7,)


def test_first_order_lag_with_velocity_limit():
    clock = StepClock()
    arm = KinematicArm(two_joint(), clock=clock)
    arm.connect()
    arm.write(JointCommand(ControlMode.POSITION, position=np.array([0.5, 0.5])))
    clock.advance(0.01)
    state = arm.read()
    assert state.stamp_ns == clock.ns
    assert state.position[0] == pytest.approx(0.01)  # 1 rad/s cap: lag alone would move 0.0476
    assert state.position[1] == pytest.approx(0.5 * (1 - math.exp(-0.1)))
    assert state.velocity[0] == pytest.approx(1.0)
    for _ in range(200):
        clock.advance(0.01)
        arm.read()
    assert np.allclose(arm.position, [0.5, 0.5], atol=1e-6)
    assert len(arm.written) == 1 and np.allclose(arm.written[0][1], [0.5, 0.5])


def test_targets_clamped_and_bad_commands_raise():
    clock = StepClock()
    arm = KinematicArm(two_joint(), clock=clock)
    with pytest.raises(DeviceNotConnected):
        arm.read()
    arm.connect()
    arm.write(JointCommand(ControlMode.POSITION, position=np.array([5.0, -5.0])))
    assert np.allclose(arm.target, [1.0, -1.0])
    with pytest.raises(UnsupportedCommand):
        arm.write(JointCommand(ControlMode.TORQUE, effort=np.zeros(2)))
    with pytest.raises(UnsupportedCommand):
        arm.write(JointCommand(ControlMode.POSITION, position=np.array([np.nan, 0.0])))


def test_safe_stop_holds_where_it_is():
    clock = StepClock()
    arm = KinematicArm(two_joint(), clock=clock)
    arm.connect()
    arm.write(JointCommand(ControlMode.POSITION, position=np.array([0.9, 0.9])))
    clock.advance(0.05)
    arm.safe_stop()
    held = arm.position.copy()
    clock.advance(1.0)
    assert np.allclose(arm.read().position, held) and arm.stopped and arm.safe_stops == 1


@pytest.mark.parametrize("kw, field", [
    (dict(lower=(0.0,)), "lower"), (dict(lower=(2.0, 2.0)), "lower"), (dict(velocity=(0.0, 1.0)), "velocity"),
    (dict(time_constant=0.0), "time_constant"), (dict(joint_names=("a", "a")), "joint_names"),
])
def test_config_errors_name_the_field(kw, field):
    with pytest.raises(ConfigError, match=field):
        two_joint(**kw)
