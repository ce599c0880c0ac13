"""hand_grasp_lift: the 16-DoF hand on the iiwa picks up a cube (specs, determinism, actions, expert)."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from sim.gym_env import TaskEnv
from sim.hands import HAND_JOINTS
from sim.tasks.base import BadAction, task_class
from sim.tasks.hand_grasp_lift import HandGraspLift, HandGraspLiftConfig
from sim.world import SimError


@pytest.fixture(scope="module")
def task():
    t = HandGraspLift()
    yield t
    t.close()


def run_expert(task: HandGraspLift, seed: int) -> bool:
    obs = task.reset(seed)
    expert = task.expert()
    while not task.done():
        obs = task.step(expert.act(obs))
    return task.success()


def test_registered_and_config_validated():
    assert task_class("hand_grasp_lift") is HandGraspLift
    with pytest.raises(SimError, match="sim_iiwa_leap"):
        HandGraspLiftConfig(robot="sim_panda")
    with pytest.raises(SimError, match="cube_size"):
        HandGraspLiftConfig(cube_size=0.0)


def test_action_spec_has_ee_target_and_16_hand_joints(task):
    spec = task.action_spec()
    assert spec.shape == (20,) and spec.names[:4] == ("ee_x", "ee_y", "ee_z", "ee_yaw")
    assert spec.names[4:] == HAND_JOINTS
    assert len(spec.low) == len(spec.high) == 20 and all(lo < hi for lo, hi in zip(spec.low, spec.high, strict=True))


def test_observation_spec_matches_observe(task):
    obs = task.reset(0)
    spec = task.observation_spec()
    assert set(obs) == set(spec)
    for key, s in spec.items():
        assert obs[key].shape == s.shape and obs[key].dtype == np.dtype(s.dtype), key
    assert obs["joint_pos"].shape == (23,)


def test_same_seed_same_episode(task):
    """A used task (episodes already run, cube lifted) replays a seed exactly like a fresh one."""
    run_expert(task, 4)
    first = [task.reset(5)]
    expert = task.expert()
    actions = []
    for _ in range(12):                                # through approach and descent into the grasp
        actions.append(expert.act(first[-1]))
        first.append(task.step(actions[-1]))
    other = HandGraspLift()
    try:
        again = [other.reset(5)] + [other.step(a) for a in actions]
    finally:
        other.close()
    for a, b in zip(first, again, strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert not np.allclose(task.reset(6)["object_pose"], first[0]["object_pose"])


def test_gymnasium_env_checker_passes():
    env = TaskEnv("hand_grasp_lift", render_mode="rgb_array", render_size=(64, 48))
    try:
        check_env(env, skip_render_check=False)
    finally:
        env.close()


def test_bad_actions_raise_or_are_clipped(task):
    obs = task.reset(1)
    action = task.expert().act(obs)
    bad = action.copy()
    bad[7] = np.nan
    with pytest.raises(BadAction, match="NaN"):
        task.step(bad)
    with pytest.raises(BadAction, match="shape"):
        task.step(action[:19])
    assert task.step_count == 0
    wild = action.copy()
    wild[2] = 5.0                       # ee z far above the workspace
    wild[5] = 10.0                      # index_mcp beyond its limit
    task.step(wild)
    assert task.clipped == 2 and task.step_count == 1


def test_progress_and_success_need_a_held_lift(task):
    task.reset(2)
    assert task.progress() < 0.01 and not task.success()
    c = task.world.client
    pose = task.object_pose()
    c.resetBasePositionAndOrientation(task.cube, [pose[0], pose[1], task.rest_z + 0.12], pose[3:].tolist())
    assert task.progress() == 1.0
    assert not task.success()           # up in the air but not held by the hand


def test_perturbation_kicks_the_cube_when_enabled():
    task = HandGraspLift(HandGraspLiftConfig(perturb=True))
    try:
        obs = task.reset(3)
        assert task._perturb_step is not None
        expert = task.expert()
        while task.perturbed_at is None and task.step_count < task.config.max_steps:
            obs = task.step(expert.act(obs))
        assert task.perturbed_at is not None
        assert 0.05 * task.config.max_steps <= task.perturbed_at <= 0.25 * task.config.max_steps + 1
    finally:
        task.close()
    plain = HandGraspLift()
    try:
        plain.reset(3)
        assert plain._perturb_step is None
    finally:
        plain.close()


def test_expert_grasps_and_lifts(task):
    assert run_expert(task, 0)
    assert task.held() and task.progress() == 1.0
    assert task.step_count < task.config.max_steps


@pytest.mark.slow
def test_expert_success_rate_over_50_seeds(task):
    rate = np.mean([run_expert(task, seed) for seed in range(50)])
    print(f"hand_grasp_lift expert success: {rate:.0%} over 50 seeds")
    assert rate >= 0.8


@pytest.mark.slow
def test_expert_mostly_succeeds_with_randomization_and_perturbation():
    task = HandGraspLift(HandGraspLiftConfig(randomize=True, perturb=True))
    try:
        rate = np.mean([run_expert(task, seed) for seed in range(20)])
    finally:
        task.close()
    print(f"hand_grasp_lift expert success (randomize, perturb): {rate:.0%} over 20 seeds")
    assert rate >= 0.7
