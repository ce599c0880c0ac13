"""The policy server node, the fast decoder node and `robot-stack serve`, on the inproc transport.

A tiny real `Policy` (below) is saved with `Policy.save` and served from its checkpoint; it records
the observation windows it receives, so the tests check the exact values the server built.
"""

import argparse
import logging
import time

import numpy as np
import pytest
import torch
import yaml

import robot_stack as rs
from data.loader import Normalizer
from policies.base import CheckpointError, FeatureSpec, Policy, PolicyConfig, PolicyError, register_policy
from policies.fast import FastDecoderNode
from policies.obs_buffer import ObsMapError, obs_map_parameters
from policies.serve_cli import register_serve, serve_launch
from policies.server import PolicyServerNode
from robot_stack import convert
from robot_stack.clock import NS, Time
from robot_stack.demo_nodes import HOME, JOINT_NAMES
from robot_stack.errors import ParameterError
from robot_stack.robot.kinematic import KinematicArm
from robot_stack.robot.node import RobotNode

WRENCH, IMAGE, STATE = "observation.wrench", "observation.images.fixed", "observation.state"
OBS_MAP = {STATE: "/joint_states", WRENCH: {"topic": "/wrench"}, IMAGE: "/fixed/image_raw"}
STATUS = "diagnostic_msgs/msg/DiagnosticStatus"


@register_policy("test_linear")
class LinearPolicy(Policy):
    """action[k] = gain * (newest state) + bias[k]; remembers every observation it was given."""

    def __init__(self, config, features, normalizer):
        super().__init__(config, features, normalizer)
        d = self.action_spec.shape[0]
        self.gain = torch.nn.Parameter(torch.ones(()))
        self.bias = torch.nn.Parameter(0.01 * torch.arange(1, config.horizon + 1)[:, None].repeat(1, d).float())
        self.received = []

    def reset(self):
        self.received.clear()

    def compute_loss(self, batch):
        return {"loss": (self.predict_action(batch) - batch["action"]).pow(2).mean()}

    def predict_action(self, obs):
        self.received.append({k: v.clone() for k, v in obs.items()})
        state = obs[f"obs.{STATE}"][:, -1]
        return self.gain * state[:, None, :] + self.bias[None]


def stats(kind, d):
    return {"kind": kind, "min": [-1.0] * d, "max": [1.0] * d, "mean": [0.0] * d, "std": [1.0] * d, "count": 1}


FEATURES = {
    STATE: FeatureSpec(STATE, "state", (7,), tuple(JOINT_NAMES)),
    WRENCH: FeatureSpec(WRENCH, "lowdim", (6,)),
    IMAGE: FeatureSpec(IMAGE, "image", (3, 8, 8)),
    "action": FeatureSpec("action", "action", (7,), tuple(JOINT_NAMES)),
}
NORMALIZER = {STATE: stats("state", 7), WRENCH: stats("lowdim", 6), IMAGE: stats("image", 3),
              "action": stats("action", 7)}


def save_linear(path, gain=1.0, bias=None):
    config = PolicyConfig(obs=(STATE, WRENCH, IMAGE), n_obs=3, horizon=8, n_action_steps=4, obs_rate=10.0,
                          action_rate=20.0, slow_hz=20.0)
    policy = LinearPolicy(config, FEATURES, Normalizer.from_stats(NORMALIZER))
    with torch.no_grad():
        policy.gain.fill_(gain)
        if bias is not None:
            policy.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
    return policy.save(path, steps=0)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return save_linear(tmp_path_factory.mktemp("ckpt") / "linear_v1")


class Rig:
    """A server (built on demand), a feeder node publishing observations and recording outputs, one executor."""

    def __init__(self, ctx):
        self.ctx, self.nodes, self.chunks, self.status = ctx, [], [], []
        self.feeder = self.add(rs.Node("feeder", context=ctx, publish_stats=False))
        self.pubs = {STATE: self.feeder.create_publisher("sensor_msgs/msg/JointState", "/joint_states", 100),
                     WRENCH: self.feeder.create_publisher("geometry_msgs/msg/WrenchStamped", "/wrench", 100),
                     IMAGE: self.feeder.create_publisher("sensor_msgs/msg/Image", "/fixed/image_raw", 100)}
        self.feeder.create_subscription("robot_stack_msgs/msg/ActionChunk", "/action_chunk", self.chunks.append, 100)
        self.executor = rs.Executor()
        self.executor.add_node(self.feeder)

    def add(self, node):
        self.nodes.append(node)
        if hasattr(self, "executor"):
            self.executor.add_node(node)
        return node

    def server(self, checkpoint, cls=PolicyServerNode, obs_map=OBS_MAP, **params):
        params.setdefault("max_obs_age_s", 2.0)        # generous: a loaded test machine must not look stale
        overrides = {"checkpoint": str(checkpoint), **obs_map_parameters(obs_map), **params}
        node = self.add(cls(context=self.ctx, publish_stats=False, parameter_overrides=overrides))
        self.feeder.create_subscription(STATUS, f"/{node.get_name()}/status", self.status.append, 100)
        return node

    def publish(self, feature, stamp_ns, value):
        if feature == STATE:
            msg = convert.joint_state(JOINT_NAMES, value, stamp=Time(stamp_ns))
        elif feature == WRENCH:
            msg = convert.wrench(value, stamp=Time(stamp_ns))
        else:
            msg = convert.image(np.full((12, 16, 3), value, np.uint8), "rgb8", stamp=Time(stamp_ns))
        self.pubs[feature].publish(msg)

    def spin_until(self, predicate, timeout=3.0):
        return self.executor.spin_until(predicate, timeout)

    def close(self):
        for node in reversed(self.nodes):
            node.destroy_node()


@pytest.fixture
def rig(ctx):
    r = Rig(ctx)
    yield r
    r.close()


def now_ns():
    return time.time_ns()


STATE_SLOPE = np.arange(1, 8) * 0.1          # per second
WRENCH_SLOPE = np.array([1.0, -2.0, 0.5, 0.0, 0.1, -0.1])


def publish_history(rig, base, skip=()):
    """Linear signals at their own rates from `base`: state 50 Hz, wrench 40 Hz (offset 3 ms), camera
    every 70 ms (offset 7 ms, pixel value 10 * frame). Newest stamps: state +540 ms, wrench +528 ms,
    camera +497 ms -> the newest common stamp is the camera's."""
    for k in range(28):
        t = 0.02 * k
        if STATE not in skip:
            rig.publish(STATE, base + int(round(t * NS)), np.asarray(HOME) + STATE_SLOPE * t)
    for k in range(22):
        t = 0.003 + 0.025 * k
        if WRENCH not in skip:
            rig.publish(WRENCH, base + int(round(t * NS)), WRENCH_SLOPE * t)
    for k in range(8):
        if IMAGE not in skip:
            rig.publish(IMAGE, base + int(round((0.007 + 0.07 * k) * NS)), 10 * k)


def test_chunk_stamped_with_the_aligned_observation_and_windows_at_obs_rate(rig, ckpt):
    server = rig.server(ckpt)
    base = now_ns() - 600_000_000
    publish_history(rig, base)
    assert rig.spin_until(lambda: rig.chunks)
    obs_ns = base + 497_000_000
    msg = rig.chunks[0]
    assert Time.from_msg(msg.observation_stamp).nanoseconds == obs_ns
    assert Time.from_msg(msg.header.stamp).nanoseconds == obs_ns           # start_step 0: step 0 at the obs time
    assert list(msg.names) == JOINT_NAMES and msg.steps == 4 and msg.policy_id == "linear_v1"
    assert msg.dt.sec == 0 and msg.dt.nanosec == 50_000_000               # 1 / action_rate
    (got,) = server.policy.received
    rel = np.array([0.297, 0.397, 0.497])                                   # window at 10 Hz ending at the obs time
    assert np.allclose(got[f"obs.{STATE}"][0].numpy(), np.asarray(HOME) + rel[:, None] * STATE_SLOPE, atol=1e-5)
    assert np.allclose(got[f"obs.{WRENCH}"][0].numpy(), rel[:, None] * WRENCH_SLOPE, atol=1e-5)
    images = got[f"obs.{IMAGE}"][0]
    assert images.shape == (3, 3, 8, 8) and images.dtype == torch.float32   # resized to the policy's 8x8, CHW
    assert np.allclose(images.mean(dim=(1, 2, 3)).numpy(), np.array([40, 50, 70]) / 255.0, atol=1e-6)  # latest-before
    assert not got["obs_is_pad"].any()
    state = np.asarray(HOME) + 0.497 * STATE_SLOPE
    expected = state[None] + 0.01 * np.arange(1, 5)[:, None]
    assert np.allclose(np.asarray(msg.actions).reshape(4, 7), expected, atol=1e-5)
    assert server.latency()["predict"]["count"] == 1 and server.latency()["obs_to_publish"]["p50_ms"] > 100
    rig.executor.spin_for(0.15)
    assert len(rig.chunks) == 1                     # no new observation: no second prediction on the same window


def test_full_horizon_and_start_step_are_configurable(rig, ckpt):
    rig.server(ckpt, chunk_steps=6, start_step=2)
    base = now_ns() - 600_000_000
    publish_history(rig, base)
    assert rig.spin_until(lambda: rig.chunks)
    msg = rig.chunks[0]
    assert msg.steps == 6 and Time.from_msg(msg.header.stamp).nanoseconds == base + 497_000_000 + 100_000_000
    state = np.asarray(HOME) + 0.497 * STATE_SLOPE
    assert np.allclose(np.asarray(msg.actions).reshape(6, 7), state[None] + 0.01 * np.arange(3, 9)[:, None], atol=1e-5)


def test_missing_observation_refuses_and_names_the_key(rig, ckpt, caplog):
    server = rig.server(ckpt)
    with caplog.at_level(logging.WARNING):
        publish_history(rig, now_ns() - 600_000_000, skip=(WRENCH,))
        assert rig.spin_until(lambda: server.refusals >= 2)
        rig.spin_until(lambda: any(s.level == 1 for s in rig.status), 1.0)
    assert rig.chunks == [] and server.policy.received == []
    refusal = [s for s in rig.status if s.level == 1][-1]
    assert "observation.wrench" in refusal.message and "missing" in refusal.message and "/wrench" in refusal.message
    assert {kv.key: kv.value for kv in refusal.values}["refused_keys"] == WRENCH
    assert sum("refusing to act" in r.message and WRENCH in r.message for r in caplog.records) == 1   # once


def test_stale_observation_refuses_then_acts_when_fresh(rig, ckpt):
    server = rig.server(ckpt, max_obs_age_s=1.5)
    base = now_ns() - 600_000_000
    publish_history(rig, base, skip=(IMAGE,))
    rig.publish(IMAGE, base - 3 * NS, 0)                                    # one frame, 3.6 s old
    assert rig.spin_until(lambda: server.refusals >= 1)
    assert rig.chunks == [] and server.refused == [IMAGE] and "stale" in server.reason
    rig.executor.spin_for(0.3)
    assert server.refusals <= 10         # re-checked once per slow period (50 ms), not at every 2 ms poll
    fresh = now_ns()
    rig.publish(IMAGE, fresh, 0)
    for k in range(3):
        rig.publish(STATE, fresh + k, HOME)
        rig.publish(WRENCH, fresh + k, np.zeros(6))
    assert rig.spin_until(lambda: rig.chunks)
    assert server.refused == [] and Time.from_msg(rig.chunks[0].observation_stamp).nanoseconds == fresh


def test_observation_trigger_predicts_once_per_period_when_its_observation_arrives(rig, ckpt):
    """`trigger: observation`: no timer tick to wait for; one prediction per slow period (20 Hz here) of
    observation stamps, started when the window's newest common stamp crosses into a new period."""
    server = rig.server(ckpt, trigger="observation", slow_hz=20.0)
    base = (now_ns() // 50_000_000 - 20) * 50_000_000                      # on the 50 ms grid, 1 s ago
    for k in range(3):
        for feature, value in ((STATE, HOME), (WRENCH, np.zeros(6)), (IMAGE, 0)):
            rig.publish(feature, base + k, value)
    assert rig.spin_until(lambda: rig.chunks)
    assert Time.from_msg(rig.chunks[0].observation_stamp).nanoseconds == base + 2
    for stamp in (base + 30_000_000, base + 49_000_000):                    # the same 50 ms period: no prediction
        for feature, value in ((STATE, HOME), (WRENCH, np.zeros(6)), (IMAGE, 0)):
            rig.publish(feature, stamp, value)
    rig.executor.spin_for(0.1)
    assert len(rig.chunks) == 1
    for feature, value in ((STATE, HOME), (WRENCH, np.zeros(6)), (IMAGE, 0)):
        rig.publish(feature, base + 50_000_000, value)                      # the next period
    assert rig.spin_until(lambda: len(rig.chunks) == 2)
    assert Time.from_msg(rig.chunks[1].observation_stamp).nanoseconds == base + 50_000_000
    rig.executor.spin_for(0.1)
    assert len(rig.chunks) == 2 and server.latency()["predict"]["count"] == 2
    with pytest.raises(ParameterError, match="trigger"):
        rig.server(ckpt, trigger="sometimes")


def test_bad_configuration_is_explicit(rig, ckpt, tmp_path):
    with pytest.raises(ObsMapError, match="observation.nope"):
        rig.server(ckpt, **{"observations.observation.nope.topic": "/x"})
    with pytest.raises(PolicyError, match="no fast decoder"):
        rig.server(ckpt, cls=FastDecoderNode)
    with pytest.raises(PolicyError, match="mode 'latent'"):
        rig.server(ckpt, mode="latent")
    with pytest.raises(CheckpointError, match="not a policy checkpoint"):
        rig.server(tmp_path)


def test_end_to_end_server_drives_a_robot_node(rig, tmp_path):
    target = np.asarray(HOME) + np.array([0.3, -0.2, 0.1, 0.0, 0.0, 0.0, 0.0])
    ckpt = save_linear(tmp_path / "goto", gain=0.0, bias=np.tile(target, (8, 1)))
    arm = KinematicArm()
    robot = rig.add(RobotNode(arm, context=rig.ctx, publish_stats=False,
                              parameter_overrides={"state_rate_hz": 100.0, "control_rate_hz": 100.0}))
    robot.start()
    server = rig.server(ckpt, slow_hz=10.0)
    rig.pubs.pop(STATE)                                      # the robot node publishes /joint_states
    sensors = rig.feeder
    sensors.create_timer(0.02, lambda: rig.publish(WRENCH, now_ns(), np.zeros(6)))
    sensors.create_timer(0.05, lambda: rig.publish(IMAGE, now_ns(), 128))
    assert rig.spin_until(lambda: np.abs(arm.position - target).max() < 0.02, timeout=6.0)
    assert server.chunks >= 2 and robot.rejected == 0 and robot.clamped == 0
    lat = server.latency()
    assert 0 < lat["predict"]["p50_ms"] <= lat["predict"]["p99_ms"] < 1000
    assert 0 < lat["obs_to_publish"]["p50_ms"] < 1000


def test_serves_a_real_diffusion_policy_checkpoint(rig, tmp_path):
    from policies.diffusion import DiffusionConfig, DiffusionPolicy

    config = DiffusionConfig(obs=(STATE, WRENCH), n_obs=2, horizon=8, n_action_steps=4, down_dims=(16, 32),
                             step_embed_dim=16, train_steps=10, inference_steps=2)
    features = {k: FEATURES[k] for k in (STATE, WRENCH, "action")}
    policy = DiffusionPolicy(config, features, Normalizer.from_stats({k: NORMALIZER[k] for k in features}))
    ckpt = policy.save(tmp_path / "dp_v1")
    server = rig.server(ckpt, obs_map={STATE: "/joint_states", WRENCH: "/wrench"}, seed=3)
    publish_history(rig, now_ns() - 600_000_000, skip=(IMAGE,))
    assert rig.spin_until(lambda: rig.chunks)
    msg = rig.chunks[0]
    assert msg.policy_id == "dp_v1" and msg.steps == 4 and list(msg.names) == JOINT_NAMES
    assert np.all(np.isfinite(msg.actions)) and len(msg.actions) == 28 and server.predict_errors == 0


# --- slow-fast (RDP): latent from the server, fast decoder re-decodes with fresh wrench ----------
def _rdp_ckpt(root, **overrides):
    from policies.rdp import RdpConfig, ReactiveDiffusionPolicy

    config = RdpConfig(**overrides, obs=(STATE, WRENCH), fast_obs=(WRENCH,), n_obs=2, horizon=8, n_action_steps=8,
                       action_rate=5.0, slow_hz=5.0, fast_hz=50.0, latent_dim=4, downsample=4, encoder_width=16,
                       decoder_width=16, fast_embed=8, denoiser_width=32, denoiser_depth=1, train_timesteps=10,
                       inference_steps=2)
    features = {k: FEATURES[k] for k in (STATE, WRENCH, "action")}
    policy = ReactiveDiffusionPolicy(config, features, Normalizer.from_stats({k: NORMALIZER[k] for k in features}))
    return policy.save(root / "rdp_v1")


@pytest.fixture(scope="module")
def rdp_ckpt(tmp_path_factory):
    return _rdp_ckpt(tmp_path_factory.mktemp("rdp"))


@pytest.mark.parametrize("per_step", [True, False], ids=["per-step", "held"])
def test_rdp_latent_and_fast_decoder_follow_fresh_force(rig, tmp_path, per_step):
    rdp_ckpt = _rdp_ckpt(tmp_path, fast_per_step=per_step)
    latents = []
    rig.feeder.create_subscription("robot_stack_msgs/msg/LatentChunk", "/latent_chunk", latents.append, 100)
    obs_map = {STATE: "/joint_states", WRENCH: "/wrench"}
    slow = rig.server(rdp_ckpt, obs_map=obs_map)
    fast = rig.server(rdp_ckpt, cls=FastDecoderNode, obs_map=obs_map)
    assert slow.latent_mode and fast.fast_hz == 50.0 and list(fast.inputs.sources) == [WRENCH]
    force = np.zeros(6)
    rig.feeder.create_timer(0.01, lambda: rig.publish(STATE, now_ns(), HOME))
    rig.feeder.create_timer(0.01, lambda: rig.publish(WRENCH, now_ns(), force))
    assert rig.spin_until(lambda: latents)
    slow.timer.cancel()                                  # one latent from now on: its chunk lasts 8 x 0.2 s
    lat = latents[-1]
    latent = torch.from_numpy(np.asarray(lat.data, np.float32).reshape(tuple(lat.shape)))
    step0 = Time.from_msg(lat.header.stamp).nanoseconds
    assert step0 == Time.from_msg(lat.observation_stamp).nanoseconds and lat.policy_id == "rdp_v1"

    def expected(msg, wrench):
        first = round((Time.from_msg(msg.header.stamp).nanoseconds - step0) / 200e6)
        assert 0 <= first < 8 and msg.steps == 8 - first                    # only the steps still ahead
        assert Time.from_msg(msg.header.stamp).nanoseconds == step0 + first * 200_000_000
        readings = torch.tensor(wrench, dtype=torch.float32)[None]           # 1, D: the newest, held
        if per_step:        # the readings at the chunk steps already passed (from the history), then the newest
            passed = (fast.inputs.newest(WRENCH)[0] - step0) // 200_000_000
            times = step0 + np.arange(min(passed, 7)) * 200_000_000
            readings = torch.cat([torch.from_numpy(fast.inputs.lowdim_at(WRENCH, times)), readings])[None]
        return fast.policy.decode(latent, {WRENCH: readings})[0, first:]

    n = len(rig.chunks)
    assert rig.spin_until(lambda: len(rig.chunks) >= n + 2)
    msg = rig.chunks[-1]
    assert np.allclose(np.asarray(msg.actions).reshape(-1, 7), expected(msg, force).numpy(), atol=1e-5)
    calm = expected(msg, force).numpy()
    force[:] = [0.9, -0.9, 0.5, 0.1, 0.0, 0.2]                                  # a contact: the decoder reacts
    n = len(rig.chunks)
    assert rig.spin_until(lambda: len(rig.chunks) >= n + 3)
    msg = rig.chunks[-1]
    pushed = expected(msg, force).numpy()
    assert np.allclose(np.asarray(msg.actions).reshape(-1, 7), pushed, atol=1e-5)
    assert not np.allclose(pushed, calm[len(calm) - len(pushed):], atol=1e-4)
    if per_step:        # once step 1 has passed, step 0 keeps the calm reading of its time; the newest is the contact
        switched = now_ns()
        assert rig.spin_until(lambda: fast.inputs.newest(WRENCH)[0] > max(switched, step0 + 250_000_000)
                              and rig.chunks[-1] is not msg)
        msg = rig.chunks[-1]
        times = step0 + np.arange(2) * 200_000_000
        seq = torch.from_numpy(fast.inputs.lowdim_at(WRENCH, times))
        assert torch.equal(seq[0], torch.zeros(6)) and (np.diff(times) > 0).all()
        stepped = expected(msg, force).numpy()
        assert np.allclose(np.asarray(msg.actions).reshape(-1, 7), stepped, atol=1e-5)
        held = fast.policy.decode(latent, {WRENCH: torch.tensor(force, dtype=torch.float32)[None]})[0, -len(stepped):]
        assert not np.allclose(stepped, held.numpy(), atol=1e-4)            # the history matters
    assert fast.latency()["predict"]["count"] >= 5 and fast.latents >= 1


def test_fast_decoder_reading_trigger_decodes_each_new_period_once_and_stops_with_the_readings(rig, rdp_ckpt):
    """`trigger: reading` (default): one decode per 1/fast_hz period of reading time, right after the
    reading that opens it, and nothing while no new reading arrives (a timer would re-decode the held one)."""
    latents = []
    rig.feeder.create_subscription("robot_stack_msgs/msg/LatentChunk", "/latent_chunk", latents.append, 100)
    obs_map = {STATE: "/joint_states", WRENCH: "/wrench"}
    slow = rig.server(rdp_ckpt, obs_map=obs_map)
    fast = rig.server(rdp_ckpt, cls=FastDecoderNode, obs_map=obs_map)
    feeding = [True]
    rig.feeder.create_timer(0.01, lambda: rig.publish(STATE, now_ns(), HOME))
    rig.feeder.create_timer(0.005, lambda: feeding[0] and rig.publish(WRENCH, now_ns(), np.zeros(6)))
    assert rig.spin_until(lambda: latents and len(rig.chunks) >= 8)
    slow.timer.cancel()
    n = len(rig.chunks)
    assert rig.spin_until(lambda: len(rig.chunks) >= n + 6)
    stamps = [Time.from_msg(m.observation_stamp).nanoseconds for m in rig.chunks[n:]]
    periods = [s // fast.period_ns for s in stamps]
    assert periods == sorted(set(periods))                   # one decode per 20 ms period, in order
    feeding[0] = False
    rig.executor.spin_until(lambda: False, 0.05)             # the last readings in flight arrive
    n = len(rig.chunks)
    rig.executor.spin_until(lambda: False, 0.3)
    assert len(rig.chunks) == n                               # no new reading: nothing decoded
    with pytest.raises(ParameterError, match="trigger"):
        rig.server(rdp_ckpt, cls=FastDecoderNode, obs_map=obs_map, trigger="often")


# --- CLI ------------------------------------------------------------------------------------------
def cli_args(*argv):
    parser = argparse.ArgumentParser()
    register_serve(parser.add_subparsers(dest="command"))
    return parser.parse_args(["serve", *argv])


def test_cli_builds_one_process_for_dp_and_two_for_rdp(ckpt, rdp_ckpt, tmp_path, capsys):
    from robot_stack.launch.config import parse_launch

    obs_map = tmp_path / "obs.yaml"
    obs_map.write_text(yaml.safe_dump({STATE: {"topic": "/arm/joint_states"}, WRENCH: "/ft/wrench"}))
    data = serve_launch(cli_args("--checkpoint", str(ckpt), "--slow-hz", "7", "--obs-map", str(obs_map),
                                 "--transport", "inproc", "--trigger", "timer"))
    config = parse_launch(data, "test", check_imports=True)
    (proc,) = config.processes
    (node,) = proc.nodes
    assert proc.transport == "inproc" and node.class_path == "policies.server:PolicyServerNode"
    assert node.parameters["slow_hz"] == 7.0 and node.parameters["trigger"] == "timer"
    assert node.parameters[f"observations.{STATE}.topic"] == "/arm/joint_states"
    assert node.parameters[f"observations.{WRENCH}"] == "/ft/wrench"
    config = parse_launch(serve_launch(cli_args("--checkpoint", str(rdp_ckpt), "--fast-hz", "200")), "test")
    assert [p.name for p in config.processes] == ["policy_slow", "policy_fast"]
    assert config.processes[1].nodes[0].class_path == "policies.fast:FastDecoderNode"
    assert config.processes[1].nodes[0].parameters["fast_hz"] == 200.0
    args = cli_args("--checkpoint", str(rdp_ckpt), "--print-launch")
    assert args.func(args) == 0
    assert "FastDecoderNode" in capsys.readouterr().out


@pytest.mark.slow
def test_serve_runs_slow_and_fast_processes_that_drive_a_robot_over_dds(rdp_ckpt):
    """`robot-stack serve` on an RDP checkpoint: two launched processes; a robot node here executes."""
    from robot_stack.launch.config import parse_launch
    from robot_stack.launch.supervisor import Supervisor

    args = cli_args("--checkpoint", str(rdp_ckpt), "--transport", "dds", "--import", "policies.rdp",
                    "--max-obs-age", "2.0")
    config = parse_launch(serve_launch(args), "test")
    chunks = []
    with rs.Context("dds") as ctx:
        arm = KinematicArm()
        robot = RobotNode(arm, context=ctx, publish_stats=False,
                          parameter_overrides={"state_rate_hz": 100.0, "control_rate_hz": 100.0})
        feeder = rs.Node("feeder", context=ctx, publish_stats=False)
        wrench = feeder.create_publisher("geometry_msgs/msg/WrenchStamped", "/wrench", 10)
        feeder.create_timer(0.01, lambda: wrench.publish(convert.wrench(np.zeros(6), stamp=Time(now_ns()))))
        feeder.create_subscription("robot_stack_msgs/msg/ActionChunk", "/action_chunk", chunks.append, 100)
        ex = rs.Executor()
        for node in (robot, feeder):
            ex.add_node(node)
        robot.start()
        try:
            with Supervisor(config, stop_timeout=10.0) as sup:
                ex.spin_until(lambda: len(chunks) >= 20 or sup.exited(), 90.0)
                codes = sup.stop()
        finally:
            robot.destroy_node()
            feeder.destroy_node()
    assert len(chunks) >= 20 and {c.policy_id for c in chunks} == {"rdp_v1"}
    assert codes == {"policy_slow": 0, "policy_fast": 0}
    assert len(arm.written) > 0 and robot.rejected == 0
