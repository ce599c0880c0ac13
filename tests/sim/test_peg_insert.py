"""peg_insert: config checks, determinism, specs, bad actions, the grasp, the clearance, the expert."""

from __future__ import annotations

import time

import numpy as np
import pytest

from robot_stack.robot import ControlMode
from sim.tasks.base import BadAction, task_class
from sim.tasks.peg_insert import PegInsert, PegInsertConfig, tip_of
from sim.world import SimError


@pytest.fixture(scope="module")
def task():
    t = PegInsert()
    yield t
    t.close()


def run_expert(task: PegInsert, seed: int) -> dict[str, np.ndarray]:
    expert = task.expert()
    obs = task.reset(seed)
    while not task.done():
        obs = task.step(expert.act(obs))
    return obs


@pytest.mark.parametrize("field, value", [
    ("clearance", 0.0), ("clearance", 0.05), ("physics_hz", 240), ("success_depth", 0.0), ("hole_depth", 0.07),
    ("peg_mass", -1.0), ("block_size", (0.03, 0.01)), ("perturb_shift", (0.006, 0.002)), ("max_steps", 0),
    ("arm_damping", (30.0, 50.0)),
])
def test_bad_config_raises_sim_error_naming_the_field(field, value):
    with pytest.raises(SimError, match=field.split("_")[0]):
        PegInsertConfig(**{field: value})


def test_wrong_robot_is_rejected():
    with pytest.raises(SimError, match="sim_panda"):
        PegInsertConfig(robot="sim_iiwa")


def test_registered():
    assert task_class("peg_insert") is PegInsert


def test_reset_is_deterministic(task):
    expert = task.expert()

    def episode(seed: int) -> list[dict[str, np.ndarray]]:
        obs = [task.reset(seed)]
        for _ in range(12):
            obs.append(task.step(expert.act(obs[-1])))
        return obs

    a = episode(3)
    other = episode(4)
    b = episode(3)
    for oa, ob in zip(a, b, strict=True):
        for k in oa:
            np.testing.assert_array_equal(oa[k], ob[k], err_msg=k)
    assert not np.array_equal(a[0]["hole_pos"], other[0]["hole_pos"])


def test_observation_spec_matches_observe(task):
    obs = task.reset(0)
    spec = task.observation_spec()
    assert set(obs) == set(spec)
    for k, s in spec.items():
        assert obs[k].shape == s.shape, k
        assert obs[k].dtype == np.dtype(s.dtype), k
        assert not s.names or len(s.names) == s.shape[0], k
    action = task.action_spec()
    assert action.shape == (4,) and action.names == ("ee_x", "ee_y", "ee_z", "ee_yaw")
    assert np.all(np.array(action.low) < np.array(action.high))


def test_reset_state(task):
    obs = task.reset(1)
    cfg = task.config
    assert not task.success() and task.progress() == 0.0 and obs["inserted"][0] == 0.0
    lo, hi = np.array(cfg.hole_low), np.array(cfg.hole_high)
    assert np.all(obs["hole_pos"][:2] >= lo) and np.all(obs["hole_pos"][:2] <= hi)
    assert obs["hole_pos"][2] == pytest.approx(cfg.block_size[1] + cfg.hole_depth)
    assert np.abs(obs["wrench"]).max() < 1.0                    # tared with the peg in the hand
    tip = task.peg_tip()
    assert tip[2] > obs["hole_pos"][2] + 0.02                   # the peg starts well above the block


def test_nan_action_raises_bad_action(task):
    obs = task.reset(0)
    before = task.robot.command.position.copy()
    with pytest.raises(BadAction, match="NaN"):
        task.step(np.array([0.5, 0.0, np.nan, 0.0]))
    with pytest.raises(BadAction, match="shape"):
        task.step(np.zeros(3))
    np.testing.assert_array_equal(task.robot.command.position, before)
    assert task.step_count == 0 and obs is not None


def test_out_of_bounds_action_is_clipped_and_counted(task):
    obs = task.reset(0)
    high = np.array(task.action_spec().high)
    task.step(np.array([5.0, -5.0, obs["ee_pos"][2], 0.0]))
    assert task.clipped == 2
    task.step(np.array([*obs["ee_pos"], 9.0]))
    assert task.clipped == 3
    assert high[3] < 9.0


def test_peg_is_held_firmly(task):
    """Lifting, moving and turning the tool carries the peg with it (friction grasp, coupled fingers)."""
    obs = task.reset(2)
    offset = obs["peg_pos"] - obs["ee_pos"]
    target = obs["ee_pos"] + np.array([0.05, -0.05, 0.06])
    for _ in range(20):
        obs = task.step(np.array([*target, 0.5]))
    assert np.linalg.norm(obs["ee_pos"] - target) < 0.03              # the arm is a spring (impedance)
    rot = np.array(task.world.client.getMatrixFromQuaternion(obs["peg_quat"].tolist())).reshape(3, 3)
    assert rot[2, 2] < -0.99                                      # still pointing down
    assert abs(np.linalg.norm(obs["peg_pos"] - obs["ee_pos"]) - np.linalg.norm(offset)) < 0.002


@pytest.mark.parametrize("position", [(0.40, 0.0, 0.12), (0.47, -0.25, 0.24), (0.33, 0.1, 0.06)])
def test_arm_holds_still_with_the_elbow_folded(task, position):
    """Poses with joint 2 near 0, where the Panda's default impedance damping oscillates at the physics rate."""
    task.reset(0)
    task.place_ee(position, 0.0, gripper=0.0)
    task.move_ee(position, 0.0, gripper=0.0, mode=ControlMode.IMPEDANCE)
    task.world.step(300)
    state = task.robot.read()
    assert abs(state.position[1]) < 0.25
    assert np.abs(state.velocity[:7]).max() < 0.05
    assert np.linalg.norm(task.ee_pose()[0] - position) < 0.01


def test_misaligned_peg_is_blocked_by_the_tight_clearance(task):
    """A tip 1.5 mm off the hole's centre (3x the per-side clearance) lands on the rim: no insertion, a force."""
    obs = task.reset(0)
    length = task.config.peg_size[1]
    hole, yaw = obs["hole_pos"].astype(float), float(obs["hole_yaw"][0])
    goal = hole + 0.0015 * np.array([np.cos(yaw), np.sin(yaw), 0.0])
    bias = np.zeros(3)
    for k in range(50):
        tip = tip_of(obs["peg_pos"], obs["peg_quat"], length)
        err = goal + np.array([0.0, 0.0, max(0.02 - 0.002 * k, -0.012)]) - tip
        bias[:2] += 0.3 * err[:2]                                 # integral on xy: the arm is a spring
        ee_yaw = float(obs["ee_yaw"][0]) + (yaw - task.expert()._peg_yaw(obs))
        obs = task.step(np.array([*(obs["ee_pos"] + err + bias), ee_yaw]))
        assert task.progress() < 0.03                             # at most contact penetration
    tip = task.peg_tip()
    assert tip[2] > hole[2] - 0.001                               # resting on the rim
    assert 0.001 < np.linalg.norm(tip[:2] - hole[:2]) < 0.0025
    assert -obs["wrench"][2] > 5.0                                # pressing on the block's top face


def test_perturbation_fires(task):
    cfg = PegInsertConfig(perturb=True)
    t = PegInsert(cfg)
    try:
        fired = 0
        for seed in range(4):
            obs = t.reset(seed)
            hole0 = obs["hole_pos"].copy()
            run_expert(t, seed)
            if t.perturbed_at is not None:
                fired += 1
                lo, hi = cfg.perturb_window
                assert int(lo * cfg.max_steps) <= t.perturbed_at <= int(hi * cfg.max_steps) + 1
                moved = np.linalg.norm(t.hole_pose()[0][:2] - hole0[:2])
                assert moved == 0.0 or cfg.perturb_shift[0] - 1e-9 <= moved <= cfg.perturb_shift[1] + 1e-9
            assert t.success()
        assert fired >= 3
    finally:
        t.close()


@pytest.mark.slow
def test_expert_success_rate():
    t = PegInsert()
    try:
        start = time.perf_counter()
        results, steps = [], 0
        for seed in range(50):
            run_expert(t, seed)
            results.append(t.success())
            steps += t.step_count
        elapsed = time.perf_counter() - start
    finally:
        t.close()
    rate = float(np.mean(results))
    print(f"peg_insert expert: success {rate:.2f} over 50 seeds, {steps / 50:.1f} steps/episode, "
          f"{steps / elapsed:.0f} steps/s, {elapsed:.1f} s")
    assert rate >= 0.8


@pytest.mark.slow
def test_expert_copes_with_randomization_and_perturbation():
    t = PegInsert(PegInsertConfig(randomize=True, perturb=True))
    try:
        results, perturbed = [], 0
        for seed in range(20):
            run_expert(t, 100 + seed)
            results.append(t.success())
            perturbed += t.perturbed_at is not None
    finally:
        t.close()
    rate = float(np.mean(results))
    print(f"peg_insert expert (randomized, perturbed): success {rate:.2f} over 20 seeds, {perturbed} perturbed")
    assert rate >= 0.7
    assert perturbed >= 10
