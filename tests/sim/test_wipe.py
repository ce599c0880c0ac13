"""wipe: force-controlled wiping under joint impedance: specs, bad actions, the force band, perturbation, expert."""

from __future__ import annotations

import time

import numpy as np
import pytest

from sim.tasks.base import BadAction, make_task, task_class
from sim.tasks.wipe import CLEAN, Wipe, WipeConfig
from sim.world import SimError, SimWorld, SimWorldConfig


@pytest.fixture(scope="module")
def task():
    t = Wipe()
    yield t
    t.close()


def _run_expert(task: Wipe, seed: int, steps: int | None = None) -> list[dict[str, np.ndarray]]:
    obs = task.reset(seed)
    expert = task.expert()
    trace = [obs]
    while not task.done() and (steps is None or task.step_count < steps):
        obs = task.step(expert.act(obs))
        trace.append(obs)
    return trace


def _area_point(task: Wipe, u: float, v: float, depth: float) -> np.ndarray:
    """End-effector target over area coordinates (u, v), `depth` m past where the sponge touches."""
    center, _ = task.surface_pose()
    rot = task.surface_rotation()
    return center + rot[:, 0] * u + rot[:, 1] * v + rot[:, 2] * (task.tool_length - depth)


def test_registered_and_bad_config_raises_clear_errors():
    assert task_class("wipe") is Wipe
    with pytest.raises(SimError, match="WipeConfig.physics_hz must be >= 500"):
        WipeConfig(physics_hz=240, control_hz=20)
    with pytest.raises(SimError, match="force_band"):
        WipeConfig(force_band=12.0)
    with pytest.raises(SimError, match="WipeConfig.grid"):
        WipeConfig(grid=(0, 6))
    with pytest.raises(SimError, match="WipeConfig.area_size"):
        WipeConfig(area_size=(0.5, 0.1))
    with pytest.raises(SimError, match="success_fraction"):
        WipeConfig(success_fraction=1.5)
    with pytest.raises(SimError, match="tilt_deg"):
        WipeConfig(perturb_tilt_deg=(2.0, 30.0))
    with pytest.raises(SimError, match="unknown config fields"):
        make_task("wipe", sponge="yes")


def test_reset_is_deterministic_and_matches_the_observation_spec(task):
    a = task.reset(seed=3)
    b = task.reset(seed=3)
    c = task.reset(seed=4)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.allclose(a["surface_pos"], c["surface_pos"])
    spec = task.observation_spec()
    assert set(spec) == set(a)
    for key, s in spec.items():
        assert a[key].shape == s.shape and a[key].dtype == np.dtype(s.dtype), key
    assert task.action_spec().names == ("ee_x", "ee_y", "ee_z")
    assert task.progress() == 0.0 and a["contact_force"][0] == 0.0
    assert np.abs(a["wrench"][:3]).max() < 0.5                 # tared with the arm free
    _, quat = task.world.client.getBasePositionAndOrientation(task.board)     # the board really is there
    rot = np.array(task.world.client.getMatrixFromQuaternion(quat)).reshape(3, 3)
    assert c["surface_normal"] == pytest.approx(rot[:, 2], abs=1e-6)


def test_same_seed_same_episode_under_the_expert(task):
    first = _run_expert(task, seed=5, steps=40)
    second = _run_expert(task, seed=5, steps=40)
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_nan_action_is_rejected_and_out_of_bounds_is_clipped(task):
    task.reset(seed=0)
    with pytest.raises(BadAction, match="NaN"):
        task.step([0.5, np.nan, 0.1])
    with pytest.raises(BadAction, match="shape"):
        task.step([0.5, 0.0])
    assert task.step_count == 0
    task.step([2.0, 0.0, -1.0])                            # x and z out of bounds
    assert task.clipped == 2
    assert task.step_count == 1


def test_in_band_pressure_wipes_and_pressing_too_hard_wipes_nothing():
    with Wipe(WipeConfig(tilt_deg=0.0)) as task:
        before, forces, obs = _press_across(task, depth=0.012)    # ~7-11 N along the row
        assert np.all((forces > 5.0) & (forces < 15.0))
        assert obs["wiped_fraction"][0] - before >= 5 / 36          # the row under the sweep
        colours = [task.world.client.getVisualShapeData(b)[0][7] for b in task._cells]
        assert [c == tuple(CLEAN) for c in colours] == task.wiped.reshape(-1).tolist()   # cameras see it
        before, forces, obs = _press_across(task, depth=0.045)    # ~40-60 N: far outside the band
        assert np.all(forces > 25.0)
        assert -obs["wrench"][2] > 25.0                            # the wrist F/T feels it too
        assert task.progress() == before                           # the sweep wiped nothing


def _press_across(task: Wipe, depth: float) -> tuple[float, np.ndarray, dict[str, np.ndarray]]:
    """Touch down beside the marked area, then sweep along a row at `depth`: (fraction before, forces, obs)."""
    task.reset(seed=1)
    u0, v = -0.1, 0.01
    for z in (0.03, 0.01):
        for _ in range(5):
            task.step(_area_point(task, u0, v, -z))
    for _ in range(10):
        task.step(_area_point(task, u0, v, depth))
    before = task.progress()
    assert before <= 1 / 36                     # at most where the arm's deflection took the touch-down
    forces = []
    for u in np.linspace(u0, 0.09, 30):
        obs = task.step(_area_point(task, u, v, depth))
        forces.append(obs["contact_force"][0])
    return before, np.array(forces), obs


def test_perturbation_moves_and_tilts_the_surface_progressively():
    with Wipe(WipeConfig(perturb=True)) as task:
        obs = task.reset(seed=2)
        expert = task.expert()
        before = (obs["surface_pos"].copy(), obs["surface_normal"].copy())
        heights = []
        while task.perturbed_at is None or task.step_count < task.perturbed_at + 12:
            obs = task.step(expert.act(obs))
            heights.append(obs["surface_pos"][2])
        lo, hi = task.config.perturb_window
        assert lo * task.config.max_steps <= task.perturbed_at <= hi * task.config.max_steps
        dz = obs["surface_pos"][2] - before[0][2]
        tilt = np.degrees(np.arccos(np.clip(obs["surface_normal"] @ before[1], -1.0, 1.0)))
        assert 0.0099 <= abs(dz) <= 0.0201
        assert 1.9 <= tilt <= 4.1
        np.testing.assert_allclose(obs["surface_pos"][:2], before[0][:2], atol=1e-6)   # about the area centre
        during = np.array(heights[task.perturbed_at:task.perturbed_at + 9]) - before[0][2]
        assert np.all(np.abs(during) < abs(dz))               # kinematic motion over several steps, no jump
        assert len(np.unique(np.round(during, 5))) >= 5
        pos, quat = task.world.client.getBasePositionAndOrientation(task._cells[7])   # the patches moved along
        u, v = task._cell_uv[7]
        assert pos == pytest.approx(obs["surface_pos"] + task.surface_rotation() @ [u, v, 0.0005], abs=1e-5)


def test_the_iiwa_wipes_too():
    with Wipe(WipeConfig(robot="sim_iiwa")) as task:
        _run_expert(task, seed=0)
        assert task.success(), task.progress()
    with pytest.raises(SimError, match="no sponge offset known for robot 'sim_ur5'"):
        _ = Wipe(WipeConfig(robot="sim_ur5")).sponge_offset       # (also raised by build)


@pytest.mark.slow
@pytest.mark.parametrize("overrides, seeds", [({}, 50), ({"perturb": True, "randomize": True}, 20)])
def test_expert_wipes_the_area(overrides, seeds):
    t0 = time.perf_counter()
    results, steps = [], 0
    with Wipe(WipeConfig(**overrides)) as task:
        for seed in range(seeds):
            _run_expert(task, seed)
            results.append(task.success())
            steps += task.step_count
            assert task.perturbed_at is not None or not overrides
    wall = time.perf_counter() - t0
    rate = float(np.mean(results))
    print(f"\nwipe expert {overrides or 'default'}: success {rate:.2f} over {seeds} seeds, "
          f"{steps / wall:.0f} control steps/s ({steps * task.physics_steps_per_step / wall:.0f} physics steps/s)")
    assert rate >= 0.7


def test_close_removes_the_task_bodies_from_an_injected_world():
    with SimWorld(SimWorldConfig(physics_hz=1000, ground_plane=False)) as world:
        task = Wipe(world=world)
        task.reset(seed=0)
        task.step([0.5, 0.0, 0.15])
        assert world.client.getNumBodies() == 4 + 36             # table, board, sponge, robot, cells
        task.close()
        assert world.client.getNumBodies() == 0 and world.connected
