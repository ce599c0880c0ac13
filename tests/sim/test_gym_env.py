"""gymnasium envs over the tasks: registration, spaces, the env checker, seeding, rendering."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import sim  # noqa: F401  (registers the envs)
from sim.gym_env import ENV_IDS
from sim.tasks import BadAction


@pytest.fixture
def env():
    e = gymnasium.make("robot_stack/PushT-v0", render_mode="rgb_array", render_size=(64, 48),
                       cameras=["fixed", "wrist"], camera_size=(32, 32))
    yield e
    e.close()


def test_every_task_has_an_env_id():
    for env_id in ENV_IDS.values():
        assert env_id in gymnasium.registry


def test_env_passes_gymnasiums_checker(env):
    check_env(env.unwrapped, skip_render_check=False)


def test_spaces_match_observations_and_steps(env):
    obs, info = env.reset(seed=4)
    assert env.observation_space.contains(obs)
    assert obs["fixed_image"].shape == (32, 32, 3)
    assert info["seed"] == 4 and 0.0 <= info["progress"] <= 1.0
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs)
    assert reward == pytest.approx(info["progress"]) and not truncated
    assert env.render().shape == (48, 64, 3)


def test_seeded_resets_replay_the_same_episode(env):
    a, _ = env.reset(seed=11)
    b, _ = env.reset(seed=11)
    np.testing.assert_array_equal(a["block_pose"], b["block_pose"])
    env.reset(seed=5)
    c, _ = env.reset()                                   # unseeded: drawn from np_random
    d, _ = env.reset()
    assert not np.allclose(c["block_pose"], d["block_pose"])


def test_truncation_and_bad_actions():
    env = gymnasium.make("robot_stack/PushT-v0", max_steps=3)
    try:
        obs, _ = env.reset(seed=0)
        with pytest.raises(BadAction):
            env.step(np.array([np.inf, 0.0], np.float32))
        for _ in range(3):
            obs, _, terminated, truncated, info = env.step(obs["agent_pos"])
        assert truncated and not terminated
    finally:
        env.close()


def test_module_prefixed_id_needs_no_prior_import():
    env = gymnasium.make("sim:robot_stack/PushT-v0")
    env.close()
