"""Shared policy-test data: scripted-expert push_t episodes written to an episode store.

Recorded with `policies.rollout.record_expert` and the push_t layout plus the fixed camera: streams
(at the task's 10 Hz control rate, stamped with sim time) `state` (JointState agent_x, agent_y,
block_x, block_y, block_sin, block_cos), `action` (JointState ee_x, ee_y) and `fixed` (a video).
`PUSHT_FEATURES` maps them to policy features.
"""

from __future__ import annotations

import pytest

from data.store import EpisodeStore
from policies.rollout import layout_for

PUSHT_LAYOUT = layout_for("push_t").with_cameras("fixed")
PUSHT_FEATURES = PUSHT_LAYOUT.features()


def record_pusht(root, episodes: int = 6, image_size: int = 48, max_steps: int = 120) -> EpisodeStore:
    from policies.rollout import record_expert
    from sim.tasks import make_task

    store = EpisodeStore.create(root)
    task = make_task("push_t", cameras=("fixed",), camera_size=(image_size, image_size), max_steps=max_steps)
    try:
        record_expert(task, store, PUSHT_LAYOUT, range(episodes))
    finally:
        task.close()
    return store


@pytest.fixture(scope="session")
def pusht_store(tmp_path_factory):
    """Six scripted push_t episodes (<= 120 steps each) with a 48x48 fixed camera."""
    return record_pusht(tmp_path_factory.mktemp("pusht"))


@pytest.fixture(scope="session")
def mlp_checkpoint(pusht_store, tmp_path_factory):
    """The test MLP (behaviour cloning, `test_train.MlpBC`) trained for 300 steps on the push_t demos:
    the tiny checkpoint of the eval tests. Their policy processes need `--import test_train`."""
    import torch
    from test_train import _run  # importing test_train registers test_mlp_bc

    from policies.train import Trainer

    out = tmp_path_factory.mktemp("eval_train")
    torch.set_num_threads(2)
    run = _run(steps=300, checkpoint_every=1000, log_every=100, val_fraction=0.2)
    trainer = Trainer("test_mlp_bc", pusht_store, run, out=out, quiet=True)
    try:
        trainer.fit()
    finally:
        trainer.close()
    return out / "checkpoints" / "last"
