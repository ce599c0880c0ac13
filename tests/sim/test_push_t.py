"""push_t and the Task base: registry, determinism, specs, bad actions, coverage, expert success."""

from __future__ import annotations

import numpy as np
import pytest

from sim.tasks import BadAction, UnknownTask, available_tasks, make_task, task_class
from sim.tasks.push_t import PushT, PushTConfig, signed_distance, t_rectangles, to_local, to_world
from sim.world import SimError


@pytest.fixture(scope="module")
def task():
    t = make_task("push_t")
    yield t
    t.close()


def test_registry_lists_tasks_and_rejects_unknown_names():
    assert "push_t" in available_tasks()
    assert task_class("push_t") is PushT
    with pytest.raises(UnknownTask, match=r"unknown task 'push-t'.*available: .*push_t.*did you mean push_t"):
        task_class("push-t")
    with pytest.raises(SimError, match="unknown config fields \\['colour'\\]"):
        make_task("push_t", colour="red")
    with pytest.raises(SimError, match="control_hz"):
        PushTConfig(control_hz=0)
    with pytest.raises(SimError, match="cameras"):
        PushTConfig(cameras=("top",))


def test_t_geometry_has_its_centre_of_mass_at_the_origin():
    rects = t_rectangles(PushTConfig())
    r = 0.001
    xs = np.arange(-0.2, 0.2, r)
    grid = np.stack(np.meshgrid(xs, xs), -1).reshape(-1, 2)
    inside = grid[signed_distance(grid, rects) < 0]
    assert inside.mean(axis=0) == pytest.approx([0.0, 0.0], abs=2e-3)
    assert len(inside) * r * r == pytest.approx(0.20 * 0.05 + 0.05 * 0.15, rel=0.03)
    pose = np.array([0.5, -0.1, 0.7])
    assert to_local(to_world(inside[:5], pose), pose) == pytest.approx(inside[:5])


def test_reset_is_deterministic_and_matches_the_observation_spec(task):
    a = task.reset(seed=7)
    b = task.reset(seed=7)
    c = task.reset(seed=8)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.allclose(a["block_pose"], c["block_pose"])
    spec = task.observation_spec()
    assert set(spec) == set(a)
    for key, s in spec.items():
        assert a[key].shape == s.shape and a[key].dtype == np.dtype(s.dtype)
    assert task.progress() < 0.7          # starts far enough from the goal to need work
    assert task.action_spec().names == ("ee_x", "ee_y")


def test_same_seed_same_episode_under_the_expert(task):
    runs = []
    for _ in range(2):
        obs = task.reset(seed=3)
        for _ in range(20):
            obs = task.step(task.expert().act(obs))
        runs.append(obs["block_pose"])
    np.testing.assert_allclose(runs[0], runs[1], atol=1e-9)


def test_bad_actions_are_rejected_or_clipped(task):
    task.reset(seed=1)
    with pytest.raises(BadAction, match="NaN"):
        task.step([np.nan, 0.0])
    with pytest.raises(BadAction, match="shape"):
        task.step([0.5, 0.0, 0.1])
    assert task.step_count == 0                    # nothing was applied
    task.step([5.0, 0.0])                          # far outside the workspace
    assert task.clipped == 1
    hi = task.action_spec().high
    for _ in range(15):
        obs = task.step([5.0, 0.0])
    assert obs["agent_pos"][0] <= hi[0] + 0.01


def test_coverage_is_one_at_the_goal_and_falls_with_offset(task):
    task.reset(seed=0)
    goal = np.array(task.config.goal)
    task.set_block_pose(goal)
    assert task.progress() == pytest.approx(1.0)
    assert task.success()
    task.set_block_pose(goal + [0.01, 0.0, 0.0])
    assert 0.8 < task.progress() < 0.97
    task.set_block_pose(goal + [0.0, 0.0, np.pi])
    assert task.progress() < 0.6


def test_perturbation_shoves_the_block_once(task):
    t = PushT(PushTConfig(perturb=True, perturb_window=(0.1, 0.1), max_steps=50))
    try:
        t.reset(seed=2)
        for _ in range(4):
            t.step(t.observe()["agent_pos"])
        before = t.block_pose()
        t.step(t.observe()["agent_pos"])
        assert t.perturbed_at == 5
        assert 0.015 < np.linalg.norm(t.block_pose()[:2] - before[:2]) < 0.06
    finally:
        t.close()


def test_domain_randomization_changes_friction_mass_light_and_camera(task):
    t = PushT(PushTConfig(randomize=True, cameras=("fixed",), camera_size=(32, 24)))
    try:
        t.reset(seed=0)
        m0, f0 = t.world.client.getDynamicsInfo(t.block, -1)[:2]
        img0 = t.observe()["fixed_image"]
        t.reset(seed=1)
        m1, f1 = t.world.client.getDynamicsInfo(t.block, -1)[:2]
        assert (m0, f0) != (m1, f1)
        assert 0.8 * 0.3 <= m1 <= 1.25 * 0.3
        assert t.cameras["fixed"].jitter is not None and t.cameras["fixed"].light is not None
        assert img0.shape == (24, 32, 3) and img0.dtype == np.uint8
        t.reset(seed=0)
        np.testing.assert_array_equal(t.observe()["fixed_image"], img0)   # same seed, same rendering
    finally:
        t.close()


def test_render_gives_an_rgb_frame(task):
    task.reset(seed=0)
    frame = task.render(64, 48)
    assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8 and frame.std() > 5


@pytest.mark.slow
@pytest.mark.parametrize("overrides", [{}, {"randomize": True}, {"perturb": True}],
                         ids=["default", "random", "perturb"])
def test_expert_succeeds_on_most_seeds(overrides):
    t = make_task("push_t", **overrides)
    successes = []
    try:
        for seed in range(50):
            obs = t.reset(seed)
            expert = t.expert()
            while not t.done():
                obs = t.step(expert.act(obs))
            successes.append(t.success())
    finally:
        t.close()
    rate = float(np.mean(successes))
    print(f"push_t expert {overrides or 'default'}: {rate:.0%} over 50 seeds")
    assert rate >= 0.75
