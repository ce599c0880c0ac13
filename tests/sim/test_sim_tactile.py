"""Simulated GelSight-like pads on the Panda fingers: contact location, grasp, shear direction, message."""

from __future__ import annotations

import numpy as np
import pytest

from robot_stack import messages
from robot_stack.clock import Time
from robot_stack.robot import ControlMode, JointCommand
from sim import SimError, SimIiwa, SimPanda, SimWorld, SimWorldConfig
from sim.tactile import DEFAULT_PADS, TACTILE_FRAME, TactilePad, TactilePadConfig, pads_for, register_pads


@pytest.fixture
def rig():
    """(world, panda, [left pad, right pad]) at the home pose, gripper open, one step taken."""
    with SimWorld(SimWorldConfig(physics_hz=240)) as world:
        robot = SimPanda(world)
        robot.connect()
        pads = pads_for(robot)
        for pad in pads:
            pad.connect()
        world.step(1)
        yield world, robot, pads


def _close_gripper(world, robot, steps: int = 60) -> None:
    target = robot.initial_positions.copy()
    target[7:] = 0.0
    robot.write(JointCommand(ControlMode.POSITION, position=target))
    world.step(steps)


def _grasp_box(world, robot) -> int:
    """A 4 cm, 100 g box at the grasp target, squeezed by the gripper (20 N per finger)."""
    c = world.client
    state = c.getLinkState(robot.body_id, robot.link_index("panda_grasptarget"))
    box = world.add_box([0.02] * 3, state[4], mass=0.1, orientation=state[5])
    _close_gripper(world, robot)
    return box


def _mean_shear(pad: TactilePad) -> np.ndarray:
    return pad.read()[..., :2].mean(axis=(0, 1)).astype(float)        # (2,) pad frame


def test_no_contact_reads_zero(rig):
    _, _, pads = rig
    assert [p.sensor_id for p in pads] == ["left_finger", "right_finger"]
    for pad in pads:
        field = pad.read()
        assert field.shape == (7, 9, 3) and field.dtype == np.float32
        assert not field.any() and pad.normal_force() == 0.0


@pytest.mark.parametrize("target", [(-0.006, 0.004), (0.007, -0.005)])
def test_press_shows_indentation_where_the_contact_is(rig, target):
    world, robot, (left, right) = rig
    origin, rot = left.pad_pose()
    centre = origin + rot @ [target[0], target[1], 0.0]
    # a static 3 x 3 mm rod between the open fingers: only the closing left finger reaches it
    world.add_box([0.0015, 0.01, 0.0015], [centre[0], -0.02, centre[2]], mass=0.0)
    _close_gripper(world, robot)
    normal = left.read()[..., 2]                                       # (7, 9)
    assert left.normal_force() == pytest.approx(20.0, rel=0.05)        # the finger's effort limit
    assert 0.3e-3 < normal.max() <= left.config.gel_thickness
    peak = left.marker_rest[np.argmax(normal)]
    assert np.linalg.norm(peak - target) < 4e-3
    far = np.linalg.norm(left.marker_rest - target, axis=1) > 10e-3   # (63,) markers 1 cm away or more
    assert normal.ravel()[far].max() < 0.02 * normal.max()
    assert right.normal_force() == 0.0 and not right.read().any()


def test_grasp_registers_on_both_pads(rig):
    world, robot, pads = rig
    _grasp_box(world, robot)
    for pad in pads:
        normal = pad.read()[..., 2]
        assert pad.normal_force() == pytest.approx(20.0, rel=0.05)
        assert 0.3e-3 < normal.max() <= pad.config.gel_thickness and normal.min() >= 0.0
    origins = [pad.pad_pose()[0] for pad in pads]
    normals = [pad.pad_pose()[1][:, 2] for pad in pads]
    assert np.dot(normals[0], origins[1] - origins[0]) > 0                # the pads face each other
    assert np.dot(normals[1], origins[0] - origins[1]) > 0


@pytest.mark.parametrize("pull_z, sign", [(-10.0, 1.0), (10.0, -1.0)])
def test_shear_follows_a_vertical_pull(rig, pull_z, sign):
    world, robot, pads = rig
    box = _grasp_box(world, robot)
    before = [_mean_shear(p) for p in pads]
    c = world.client
    hook = lambda: c.applyExternalForce(box, -1, [0, 0, pull_z], c.getBasePositionAndOrientation(box)[0], c.WORLD_FRAME)
    world.add_pre_step(hook)
    world.step(24)
    for pad, b in zip(pads, before, strict=True):
        delta = _mean_shear(pad) - b
        # the pad x axis runs along the finger towards its tip, i.e. down at the home pose
        assert sign * delta[0] > 2e-5
        assert pad.pad_pose()[1][2, 0] < -0.99


def test_grasp_shear_in_world_follows_a_sideways_pull(rig):
    world, robot, pads = rig
    box = _grasp_box(world, robot)
    c = world.client

    def world_shear() -> np.ndarray:                                  # (3,) summed over the pads
        return sum(p.pad_pose()[1][:, :2] @ _mean_shear(p) for p in pads)

    before = world_shear()
    hook = lambda: c.applyExternalForce(box, -1, [10.0, 0, 0], c.getBasePositionAndOrientation(box)[0], c.WORLD_FRAME)
    world.add_pre_step(hook)
    world.step(24)
    delta = world_shear() - before
    assert delta[0] > 5e-5 and delta[0] / np.linalg.norm(delta) > 0.9


def test_frame_msg_round_trips(rig):
    world, robot, (left, _) = rig
    _grasp_box(world, robot)
    msg = left.frame_msg()
    assert Time.from_msg(msg.header.stamp).nanoseconds == world.time_ns
    assert msg.header.frame_id == "panda_leftfinger_pad" and msg.sensor_id == "left_finger"
    back = messages.deserialize(messages.serialize(msg), TACTILE_FRAME)
    assert (back.rows, back.cols) == (7, 9) and back.embedding.size == 0
    np.testing.assert_array_equal(back.marker_rest.reshape(63, 2), left.marker_rest)
    np.testing.assert_array_equal(back.displacement.reshape(7, 9, 3), left.read())
    assert back.normal_force == pytest.approx(left.normal_force(), rel=1e-6)
    assert messages.to_dict(back)["sensor_id"] == "left_finger"
    assert Time.from_msg(left.frame_msg(Time(42)).header.stamp) == Time(42)


def test_marker_grid_is_row_major_over_the_pad():
    cfg = TactilePadConfig(link="l", rows=3, cols=4, size=(0.02, 0.01))
    rest = cfg.marker_rest                                             # (12, 2)
    assert rest.shape == (12, 2)
    np.testing.assert_allclose(rest[1] - rest[0], [0.005, 0.0])        # next column: along x
    np.testing.assert_allclose(rest[4] - rest[0], [0.0, 0.01 / 3])     # next row: along y
    np.testing.assert_allclose(rest.mean(axis=0), 0.0, atol=1e-12)
    assert np.all(np.abs(rest) < [0.01, 0.005])
    rot = TactilePadConfig(link="l", normal=(0, -2, 0), x_axis=(0, 0, 1)).rotation
    np.testing.assert_allclose(rot, [[0, -1, 0], [0, 0, -1], [1, 0, 0]], atol=1e-12)   # right-handed


@pytest.mark.parametrize("kwargs, field", [
    ({"link": ""}, "link"),
    ({"rows": 0}, "rows"),
    ({"size": (0.02, -0.01)}, "size"),
    ({"gel_thickness": 0.0}, "gel_thickness"),
    ({"normal_spread": -1.0}, "normal_spread"),
    ({"normal": (0, 0, 1), "x_axis": (0, 1, 1)}, "orthogonal"),
    ({"normal": (0, 0, 0)}, "non-zero"),
    ({"offset": (0, 0)}, "offset"),
])
def test_config_validation(kwargs, field):
    with pytest.raises(SimError, match=field):
        TactilePadConfig(**{"link": "l", **kwargs})


def test_pads_for_lookup_and_errors(rig, monkeypatch):
    world, robot, _ = rig
    iiwa = SimIiwa(world)
    with pytest.raises(SimError, match="sim_panda"):
        pads_for(iiwa)
    monkeypatch.setitem(DEFAULT_PADS, "sim_iiwa", ())
    register_pads("sim_iiwa", [TactilePadConfig(link="lbr_iiwa_link_7", sensor_id="flange")])
    pad = pads_for(iiwa)[0]
    with pytest.raises(SimError, match="connect"):
        pad.connect()                                                  # the robot is not connected
    iiwa.connect()
    pad.connect()
    world.step(1)
    assert pad.frame_id == "flange_pad" and pad.normal_force() == 0.0
    with pytest.raises(SimError, match="not connected"):
        TactilePad(world, robot, DEFAULT_PADS["sim_panda"][0]).read()
    with pytest.raises(SimError, match="no link"):
        TactilePad(world, robot, TactilePadConfig(link="nope")).connect()
    with pytest.raises(SimError, match="TactilePadConfig"):
        register_pads("x", [])
