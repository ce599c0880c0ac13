"""Recorder node: streams at their own rates with the published stamps, EpisodeEvent flow, bad input,
config errors, disk checks, status, the `record` and `dataset recover` CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import robot_stack as rs
from data.recorder import FAILURE, START, STOP, SUCCESS, RecorderNode
from data.recorder_config import DiskSpaceError, RecorderConfigError, load_config, parse_config
from data.store import EpisodeStore, StoreError
from robot_stack import convert, messages
from robot_stack.clock import Time
from robot_stack.errors import ParameterError

CLI = [sys.executable, "-m", "robot_stack.cli.main"]
JS, IMAGE, TACTILE = "sensor_msgs/msg/JointState", "sensor_msgs/msg/Image", "robot_stack_msgs/msg/TactileFrame"
EVENT = "robot_stack_msgs/msg/EpisodeEvent"
DISCARD = 2


def config_dict(dataset, **extra):
    return {"dataset": str(dataset), "task": "stack the cubes", "robot": {"name": "test_arm"},
            "min_free_mb": 1, "flush_period_s": 0.2,
            "streams": [{"topic": "/joint_states", "type": JS, "fps": 200},
                        {"topic": "/cam/image_raw", "type": IMAGE, "key": "cam", "codec": "libx264", "fps": 10},
                        {"topic": "/tactile/left", "type": TACTILE, "key": "tactile"}], **extra}


class Source:
    """A publisher node for the recorder's topics, stamps chosen by the test."""

    def __init__(self, ctx):
        self.node = rs.Node("source", context=ctx, publish_stats=False)
        self.js = self.node.create_publisher(JS, "/joint_states", 10)
        self.cam = self.node.create_publisher(IMAGE, "/cam/image_raw", 10)
        self.tactile = self.node.create_publisher(TACTILE, "/tactile/left", 10)
        self.events = self.node.create_publisher(EVENT, "episode_events", 10)

    def event(self, kind: int, episode_id: str = "") -> None:
        self.events.publish(messages.make(EVENT, event=kind, source="test", episode_id=episode_id))

    def publish(self, i: int, t_ns: int) -> None:
        self.js.publish(convert.joint_state(["a", "b"], [i, -i], stamp=Time(t_ns)))
        if i % 5 == 0:
            img = np.full((48, 64, 3), (i * 10) % 250, np.uint8)
            self.cam.publish(convert.image(img, "rgb8", stamp=Time(t_ns + 1), frame_id="cam"))
        if i % 3 == 0:
            self.tactile.publish(messages.make(TACTILE, header=convert.header(Time(t_ns + 2)), sensor_id="left",
                                               rows=2, cols=2, displacement=np.arange(12, dtype=np.float32) * i))


@pytest.fixture
def rig(ctx, tmp_path):
    made = []

    def make(**extra):
        cfg = parse_config(config_dict(tmp_path / "ds", **extra), source="test.yaml")
        rec = RecorderNode("recorder", config=cfg, context=ctx, publish_stats=False)
        src = Source(ctx)
        ex = rs.Executor()
        ex.add_node(rec)
        ex.add_node(src.node)
        made.append(rec)
        return rec, src, ex

    yield make
    for rec in made:
        rec.destroy_node()


def drain(ex, n: int = 20) -> None:
    for _ in range(n):
        ex.spin_once(0.0)


def test_streams_are_stored_with_the_published_stamps(rig):
    rec, src, ex = rig()
    src.event(START)
    drain(ex)
    t0 = 1_700_000_000_000_000_000
    for i in range(60):
        src.publish(i, t0 + i * 5_000_000)
        drain(ex, 3)
    src.event(STOP)
    drain(ex)
    assert rec.wait_idle() and rec.committed == [0]
    ep = EpisodeStore(rec.store.root).episode(0)
    assert np.array_equal(ep.stamps("joint_states"), t0 + np.arange(60) * 5_000_000)
    assert np.array_equal(ep.stamps("cam"), t0 + np.arange(0, 60, 5) * 5_000_000 + 1)
    assert np.array_equal(ep.stamps("tactile"), t0 + np.arange(0, 60, 3) * 5_000_000 + 2)
    frames = list(ep.frames("cam"))
    assert len(frames) == 12 and frames[3][1].shape == (48, 64, 3) and abs(int(frames[3][1].mean()) - 150) < 8
    np.testing.assert_array_equal(ep.column("tactile", "displacement")[2], np.arange(12) * 6)
    meta = ep.meta
    assert meta["task"] == "stack the cubes" and meta["robot"]["name"] == "test_arm"
    assert meta["topics"]["/cam/image_raw"] == IMAGE and meta["platform_version"] == rs.__version__
    assert meta["recorder"]["streams"][1]["codec"] == "libx264"
    assert meta["stream_stats"]["joint_states"]["rate_hz"] == pytest.approx(200.0)
    assert meta["recorder_drops"]["joint_states"]["total"] == 0


def test_episode_events_start_stop_discard_success_failure(rig):
    rec, src, ex = rig()
    src.event(STOP)                       # nothing open: ignored
    for kind, episode_id in ((START, ""), (SUCCESS, ""), (STOP, ""), (START, ""), (DISCARD, ""),
                             (START, ""), (STOP, ""), (FAILURE, ""), (SUCCESS, "0")):
        src.event(kind, episode_id)
        if kind == START:
            drain(ex)
            src.publish(1, time.time_ns())
        drain(ex)
    store = EpisodeStore(rec.store.root)
    # events that arrive while a commit runs are handled after it: keep spinning until all are done
    assert ex.spin_until(lambda: rec.wait_idle(0.0) and store.episodes() == [0, 2]
                         and store.episode(0).meta["success"] is True, 30.0)
    assert rec.wait_idle()
    assert store.episodes() == [0, 2] and store.open_episodes() == []        # 1 was discarded
    assert store.episode(0).meta["success"] is True                          # marked while open, then by id
    assert store.episode(2).meta["success"] is False                         # marked after its commit
    assert store.episode(2).meta["stream_stats"]["joint_states"]["count"] == 1


def test_status_reports_state_counts_and_drops(rig):
    rec, src, ex = rig()
    got = []
    rec_status = rs.Node("watcher", context=rec.context, publish_stats=False)
    rec_status.create_subscription("diagnostic_msgs/msg/DiagnosticStatus", "/recorder/status", got.append, 10)
    ex.add_node(rec_status)
    rec.start_episode()
    for i in range(10):
        src.publish(i, time.time_ns())
        drain(ex, 3)
    src.cam.publish(convert.image(np.zeros((4, 4), np.uint16), "mono16", stamp=Time(5)))  # not 8-bit: bad input
    drain(ex)
    assert ex.spin_until(lambda: len(got) >= 1, 3.0)
    values = {kv.key: kv.value for kv in got[-1].values}
    assert values["state"] == "recording" and values["episode"] == "0"
    assert values["joint_states.count"] == "10" and values["cam.dropped"] == "1" and got[-1].level == 1
    assert rec.counters["cam"].bad == 1
    ex.remove_node(rec_status)
    rec_status.destroy_node()


def test_config_errors_name_the_field(tmp_path):
    def bad(match, **change):
        data = config_dict(tmp_path / "ds")
        data.update(change)
        with pytest.raises(RecorderConfigError, match=match):
            parse_config(data, source="rec.yaml")

    bad(r"rec.yaml: field 'taks': unknown field; did you mean 'task'", taks="x")
    bad(r"field 'dataset': is required", dataset=None)
    bad(r"field 'streams\[0\].type': unknown message type 'sensor_msgs/msg/JointStat'.*JointState",
        streams=[{"topic": "/j", "type": "sensor_msgs/msg/JointStat"}])
    bad(r"field 'streams\[0\].encoding': video needs type", streams=[{"topic": "/j", "type": JS, "encoding": "video"}])
    bad(r"field 'streams\[0\].codec': 'h265' unknown", streams=[{"topic": "/c", "type": IMAGE, "codec": "h265"}])
    bad(r"field 'streams\[0\].fpss'.*did you mean 'fps'", streams=[{"topic": "/j", "type": JS, "fpss": 3}])
    bad(r"field 'streams\[1\].key': 'j' is used by two streams",
        streams=[{"topic": "/j", "type": JS}, {"topic": "/k", "type": JS, "key": "j"}])
    bad(r"field 'flush_period_s': must be <= 1 s", flush_period_s=2)
    bad(r"field 'robot.calibration': file .*nope.yaml does not exist", robot={"calibration": "nope.yaml"})
    bad(r"field 'streams': must be a non-empty list", streams=[])
    with pytest.raises(StoreError, match="cannot read"):            # RecorderConfigError is a StoreError
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ParameterError, match="parameter 'config'"):
        with rs.Context("inproc") as c:
            RecorderNode("recorder", context=c)


def test_example_config_loads_with_calibration_and_defaults():
    cfg = load_config("data/configs/example_sim.yaml")
    by_key = {s.key: s for s in cfg.streams}
    assert by_key["cam_fixed"].encoding == "video" and by_key["tactile_left"].encoding == "raw"
    assert by_key["wrench"].encoding == "columnar" and by_key["joint_states"].depth == 1000
    assert cfg.calibration.endswith("sim_panda.calibration.yaml") and cfg.flush_period_s <= 1.0


def test_disk_checks_before_recording_starts(ctx, tmp_path):
    cfg = parse_config(config_dict(tmp_path / "ds", min_free_mb=1e12), source="t.yaml")
    with pytest.raises(DiskSpaceError, match="min_free_mb"):
        RecorderNode("recorder", config=cfg, context=ctx, publish_stats=False)
    if os.geteuid() == 0:
        target = "/proc/robot_stack_dataset"          # not writable even for root
    else:
        (tmp_path / "ro").mkdir(mode=0o500)
        target = str(tmp_path / "ro" / "ds")
    cfg = parse_config(config_dict(target), source="t.yaml")
    with pytest.raises(StoreError, match="not writable"):
        RecorderNode("recorder", config=cfg, context=ctx, publish_stats=False)


def test_recorder_from_a_launch_process_spec(tmp_path):
    from robot_stack.launch.config import NodeSpec, ProcessSpec
    from robot_stack.launch.process import ProcessRunner

    cfg = tmp_path / "rec.yaml"
    cfg.write_text(json.dumps(config_dict(tmp_path / "ds")))
    spec = ProcessSpec("rec", "inproc", (NodeSpec("recorder", "data.recorder:RecorderNode",
                                                  parameters={"config": str(cfg), "task": "from launch"}),))
    runner = ProcessRunner(spec)
    runner.build()
    node = runner.nodes[0][1]
    assert node.start_episode() == 0 and node.writer.meta["task"] == "from launch"
    runner.close()                                  # destroy_node commits the open episode
    assert EpisodeStore(tmp_path / "ds").episodes() == [0]


def test_records_a_sim_node(ctx, tmp_path):
    from sim.node import SimNode

    sim = SimNode(node_name="sim", context=ctx, publish_stats=False,
                  parameter_overrides={"realtime": False, "camera_width": 64, "camera_height": 48, "camera_hz": 20.0,
                                       "state_hz": 100.0, "ft_hz": 100.0})
    data = config_dict(tmp_path / "ds")
    data["streams"] = [{"topic": "/joint_states", "type": JS, "reliability": "reliable", "fps": 100},
                       {"topic": "/wrench", "type": "geometry_msgs/msg/WrenchStamped", "fps": 100},
                       {"topic": "/fixed/image_raw", "type": IMAGE, "key": "cam", "fps": 20}]
    rec = RecorderNode("recorder", config=parse_config(data), context=ctx, publish_stats=False)
    ex = rs.Executor()
    ex.add_node(sim)
    ex.add_node(rec)
    try:
        rec.start_episode()
        assert ex.spin_until(lambda: sim.sim_time.seconds >= 0.5, 30.0)
        rec.stop_episode()
        assert rec.wait_idle()
    finally:
        rec.destroy_node()
        sim.destroy_node()
    ep = EpisodeStore(tmp_path / "ds").episode(0)
    js, cam = ep.stamps("joint_states"), ep.stamps("cam")
    assert len(js) >= 40 and np.all(np.diff(js) > 0) and js[-1] <= 0.6e9      # sim-time capture stamps
    assert np.allclose(np.diff(js), 10_000_000, atol=1_000_000)
    assert len(cam) >= 8 and len(list(ep.frames("cam"))) == len(cam)


# --- CLI --------------------------------------------------------------------------------------------
def test_cli_records_from_another_process_and_recovers(tmp_path):
    cfg = tmp_path / "rec.yaml"
    ns = f"/rec_test_{os.getpid()}"
    data = config_dict(tmp_path / "ds", events_topic=f"{ns}/episode_events")
    data["streams"] = [{"topic": f"{ns}/joint_states", "type": JS, "fps": 100, "key": "joint_states"}]
    cfg.write_text(json.dumps(data))
    stop = threading.Event()

    def publish():
        with rs.Context("dds") as c:
            node = rs.Node("cli_source", context=c, publish_stats=False)
            pub = node.create_publisher(JS, f"{ns}/joint_states", 10)
            while not stop.is_set():
                pub.publish(convert.joint_state(["a"], [1.0], stamp=Time(time.time_ns())))
                time.sleep(0.01)

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    try:
        out = subprocess.run([*CLI, "record", "--config", str(cfg), "--task", "cli task", "--episodes", "2",
                              "--duration", "1.5", "--transport", "dds"],
                             capture_output=True, text=True, timeout=120)
    finally:
        stop.set()
        thread.join(10)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "recorded 2 episodes [0, 1]" in out.stderr
    store = EpisodeStore(tmp_path / "ds")
    assert store.episodes() == [0, 1]
    ep = store.episode(1)
    assert ep.meta["task"] == "cli task" and ep.meta["stream_stats"]["joint_states"]["count"] > 50

    w = store.new_episode({"task": "left open"}, [s.spec() for s in parse_config(data).streams])
    w.write("joint_states", convert.joint_state(["a"], [0.0], stamp=Time(5)))
    w.flush()                                      # a recorder killed here leaves open/ep-000002
    store.episode_dir(3, open_=True).mkdir()       # ... and one killed while creating episode 3
    out = subprocess.run([*CLI, "dataset", "recover", str(tmp_path / "ds")], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "recovered episode 2" in out.stdout and store.open_episodes() == []
    assert "episode 3: removed" in out.stdout and store.episodes() == [0, 1, 2]
    assert store.episode(2).meta["recovered"] is True
    out = subprocess.run([*CLI, "dataset", "recover", str(tmp_path / "ds"), "--episode", "7"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and "no open episode 7" in out.stderr


def test_cli_bad_config_is_a_clear_error(tmp_path):
    cfg = tmp_path / "rec.yaml"
    cfg.write_text("dataset: x\nstreams: [{topic: /j, type: sensor_msgs/msg/JointState, encodng: raw}]\n")
    out = subprocess.run([*CLI, "record", "--config", str(cfg), "--transport", "inproc"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2
    assert "field 'streams[0].encodng': unknown field; did you mean 'encoding'" in out.stderr
