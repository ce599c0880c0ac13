"""dataset replay (original topics, order and spacing) and dataset view (PNG summary, rerun recording)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import robot_stack as rs
from data.replay import replay
from data.store import EpisodeStore, StoreError, StreamSpec
from data.view import rerun_recording, summary_png
from robot_stack import convert, messages
from robot_stack.clock import Time

T0 = 1_700_000_000_000_000_000


@pytest.fixture(scope="module")
def episode(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    store = EpisodeStore.create(root)
    w = store.new_episode({"task": "wipe"}, [
        StreamSpec("joint_states", "/joint_states", "sensor_msgs/msg/JointState"),
        StreamSpec("wrench", "/wrench", "geometry_msgs/msg/WrenchStamped"),
        StreamSpec("cam", "/cam/image_raw", "sensor_msgs/msg/Image", "video"),
        StreamSpec("tactile", "/tactile/left", "robot_stack_msgs/msg/TactileFrame", "raw"),
    ])
    for i in range(100):
        t = Time(T0 + i * 5_000_000)
        w.write("joint_states", convert.joint_state(["j1", "j2"], [np.sin(i / 20), i], stamp=t))
        if i % 2 == 0:
            w.write("wrench", convert.wrench([i, 0, 5, 0, 0, 0], stamp=t))
        if i % 7 == 0:
            w.write("cam", convert.image(np.full((24, 32, 3), 2 * i, np.uint8), "rgb8", stamp=t))
        if i % 8 == 0:
            w.write("tactile", messages.make(
                "robot_stack_msgs/msg/TactileFrame", header=convert.header(t), sensor_id="left", rows=2, cols=2,
                marker_rest=np.zeros(8, np.float32), displacement=np.full(12, i * 1e-5, np.float32),
                embedding=np.zeros(0, np.float32), normal_force=float(i)))
    return store.episode(w.commit(success=True)), root


def _subscribe(node, got):
    for topic, typ in (("/joint_states", "sensor_msgs/msg/JointState"), ("/wrench", "geometry_msgs/msg/WrenchStamped"),
                       ("/cam/image_raw", "sensor_msgs/msg/Image"),
                       ("/tactile/left", "robot_stack_msgs/msg/TactileFrame")):
        node.create_subscription(typ, topic, lambda m, t=topic: got.append((t, m)), 1000)


def test_replay_republishes_every_message_in_stamp_order_with_scaled_spacing(ctx, episode):
    ep, _ = episode
    got = []
    listener = rs.Node("listener", context=ctx, publish_stats=False)
    _subscribe(listener, got)
    player = rs.Node("player", context=ctx, publish_stats=False)
    counts = replay(ep, player, rate=10.0)
    ex = rs.Executor()
    ex.add_node(listener)
    ex.spin_until(lambda: len(got) >= 100 + 50 + 15 + 13, 5.0)
    assert counts == {"joint_states": 100, "wrench": 50, "cam": 15, "tactile": 13}
    stamps = [Time.from_msg(m.header.stamp).nanoseconds for t, m in got if t == "/joint_states"]
    assert np.all(np.diff(stamps) == 500_000)               # 5 ms recorded, replayed 10x faster, restamped
    assert abs(stamps[0] - player.get_clock().now().nanoseconds) < 10 * 1e9
    positions = [m.position[1] for t, m in got if t == "/joint_states"]
    assert positions == list(range(100))
    frames = [convert.image_array(m) for t, m in got if t == "/cam/image_raw"]
    assert [int(round(f.mean())) for f in frames[:3]] == pytest.approx([0, 14, 28], abs=3)


def test_replay_can_keep_the_recorded_stamps_and_select_streams(ctx, episode):
    ep, _ = episode
    got = []
    listener = rs.Node("listener", context=ctx, publish_stats=False)
    _subscribe(listener, got)
    counts = replay(ep, rs.Node("player", context=ctx, publish_stats=False), rate=50.0, keep_stamps=True,
                    keys=["wrench"])
    ex = rs.Executor()
    ex.add_node(listener)
    ex.spin_until(lambda: len(got) >= 50, 5.0)
    assert counts == {"wrench": 50} and {t for t, _ in got} == {"/wrench"}
    assert Time.from_msg(got[0][1].header.stamp).nanoseconds == T0
    with pytest.raises(StoreError, match="no streams \\['nope'\\]"):
        replay(ep, rs.Node("p2", context=ctx, publish_stats=False), keys=["nope"])


def test_view_writes_a_png_summary_and_a_rerun_recording(episode, tmp_path):
    ep, _ = episode
    png = summary_png(ep, tmp_path / "ep.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    rrd = rerun_recording(ep, tmp_path / "ep.rrd")
    from rerun.chunk import RrdReader

    chunks = list(RrdReader(rrd).stream())
    paths = {c.entity_path for c in chunks}
    assert {"/joint_states", "/wrench", "/cam/image", "/tactile/markers", "/tactile/normal_force"} <= paths
    rows = sum(c.num_rows for c in chunks if c.entity_path == "/joint_states" and not c.is_static)
    assert rows == 100


def test_dataset_view_and_info_cli(episode, tmp_path):
    _, root = episode
    cli = [sys.executable, "-m", "robot_stack.cli.main", "dataset"]
    out = subprocess.run([*cli, "view", str(root), "--episode", "0", "--out", str(tmp_path / "v"), "--no-rerun"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "v.png").exists()
    out = subprocess.run([*cli, "info", str(root)], capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "COLUMNS": "200"})
    assert out.returncode == 0 and "joint_states" in out.stdout and "200.0" in out.stdout


@pytest.mark.parametrize("fmt", ["lerobot", "rosbag2", "zarr"])
def test_dataset_export_and_import_cli_round_trip(episode, tmp_path, fmt):
    _, root = episode
    cli = [sys.executable, "-m", "robot_stack.cli.main", "dataset"]
    out = tmp_path / ("export.zarr" if fmt == "zarr" else "export")
    run = subprocess.run([*cli, "export", str(root), "--format", fmt, "--out", str(out), "--fps", "20"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "exported 1 episodes" in run.stdout
    run = subprocess.run([*cli, "import", str(out), "--format", fmt, "--into", str(tmp_path / "back")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    back = EpisodeStore(tmp_path / "back")
    assert len(back) == 1
    ep = back.episode(back.episodes()[0])
    assert len(ep.streams) >= 2 and ep.duration_s > 0.3
    assert any(s.encoding == "video" for s in ep.streams.values())


def test_unknown_export_format_lists_the_known_ones(episode, tmp_path):
    _, root = episode
    run = subprocess.run([sys.executable, "-m", "robot_stack.cli.main", "dataset", "export", str(root), "--format",
                          "hdf5", "--out", str(tmp_path / "x")], capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "unknown dataset format 'hdf5'" in run.stderr and "lerobot" in run.stderr
