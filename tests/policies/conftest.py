"""Shared policy-test data: scripted-expert push_t episodes written to an episode store.

Streams (all at the task's 10 Hz control rate, stamped with sim time): `state` (JointState named
agent_x, agent_y, block_x, block_y, block_sin, block_cos), `action` (JointState ee_x, ee_y) and,
with images, `fixed` (a 48x48 video). `PUSHT_FEATURES` maps them to policy features.
"""

from __future__ import annotations

import numpy as np
import pytest

from data.features import Feature
from data.store import EpisodeStore, StreamSpec
from robot_stack import convert
from robot_stack.clock import Time

PUSHT_FEATURES = {
    "observation.state": Feature("state", "position", "state"),
    "observation.images.fixed": Feature("fixed", "", "image"),
    "action": Feature("action", "position", "action"),
}
STATE_NAMES = ["agent_x", "agent_y", "block_x", "block_y", "block_sin", "block_cos"]


def record_pusht(root, episodes: int = 6, image_size: int = 48, max_steps: int = 120) -> EpisodeStore:
    from sim.tasks import make_task

    store = EpisodeStore.create(root)
    task = make_task("push_t", cameras=("fixed",), camera_size=(image_size, image_size), max_steps=max_steps)
    streams = [StreamSpec("state", "/task/state", "sensor_msgs/msg/JointState"),
               StreamSpec("action", "/task/action", "sensor_msgs/msg/JointState"),
               StreamSpec("fixed", "/fixed/image_raw", "sensor_msgs/msg/Image", "video", codec="libx264", fps=10.0)]
    try:
        for seed in range(episodes):
            obs = task.reset(seed)
            expert = task.expert()
            writer = store.new_episode({"task": "push the T onto the goal", "seed": seed}, streams)
            while not task.done():
                stamp = Time(task.world.time_ns)
                b = obs["block_pose"]
                state = [*obs["agent_pos"], b[0], b[1], np.sin(b[2]), np.cos(b[2])]
                action = expert.act(obs)
                writer.write("state", convert.joint_state(STATE_NAMES, state, stamp=stamp))
                writer.write("action", convert.joint_state(["ee_x", "ee_y"], action, stamp=stamp))
                writer.write("fixed", convert.image(obs["fixed_image"], "rgb8", stamp=stamp))
                obs = task.step(action)
            writer.commit(success=task.success())
    finally:
        task.close()
    return store


@pytest.fixture(scope="session")
def pusht_store(tmp_path_factory):
    """Six scripted push_t episodes (<= 120 steps each) with a 48x48 fixed camera."""
    return record_pusht(tmp_path_factory.mktemp("pusht"))
