"""Episode store: layout, streams at their own rates with capture stamps, video, commit, discard, recover."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from data.align import interpolate, previous_index, uniform_times
from data.features import Feature, default_features, feature_values
from data.store import EpisodeStore, StoreError, StreamSpec
from robot_stack import convert
from robot_stack.clock import Time

STREAMS = [
    StreamSpec("joint_states", "/joint_states", "sensor_msgs/msg/JointState"),
    StreamSpec("wrench", "/wrench", "geometry_msgs/msg/WrenchStamped"),
    StreamSpec("cam", "/cam/image_raw", "sensor_msgs/msg/Image", "video", fps=20.0),
]


def _record(store, n=60, commit=True):
    w = store.new_episode({"task": "push the T"}, STREAMS)
    for i in range(n):
        t = Time(1_000_000_000 + i * 5_000_000)                       # joint states at 200 Hz
        w.write("joint_states", convert.joint_state(["a", "b"], [i, -i], stamp=t), recv_ns=t.nanoseconds + 7)
        if i % 2 == 0:
            w.write("wrench", convert.wrench([i, 0, 0, 0, 0, 1], stamp=t))
        if i % 10 == 0:
            img = np.zeros((30, 40, 3), np.uint8)
            img[:, : i % 40] = 255
            w.write("cam", convert.image(img, "rgb8", stamp=t, frame_id="cam_optical"))
        if i == n // 2:
            w.flush()
    return w.commit(success=True) if commit else w


def test_streams_keep_their_own_rates_and_capture_stamps(tmp_path):
    store = EpisodeStore.create(tmp_path / "ds")
    ep = store.episode(_record(store))
    assert ep.meta["task"] == "push the T" and ep.meta["success"] is True
    stats = ep.meta["stream_stats"]
    assert (stats["joint_states"]["count"], stats["wrench"]["count"], stats["cam"]["count"]) == (60, 30, 6)
    assert stats["joint_states"]["rate_hz"] == pytest.approx(200.0)
    assert stats["wrench"]["rate_hz"] == pytest.approx(100.0)
    js = ep.stamps("joint_states")
    assert js[0] == 1_000_000_000 and np.all(np.diff(js) == 5_000_000)          # the header stamps, exactly
    assert ep.table("joint_states").column("recv_ns").to_numpy()[0] == 1_000_000_007
    np.testing.assert_array_equal(ep.column("joint_states", "position")[3], [3, -3])
    stamps, wrench = feature_values(ep, Feature("wrench", "wrench"))
    assert wrench.shape == (30, 6) and wrench[2, 0] == 4 and stamps[1] == 1_010_000_000
    first = next(ep.messages("joint_states"))[1]
    assert list(first.name) == ["a", "b"] and first.header.stamp.sec == 1


def test_video_frames_decode_with_their_stamps(tmp_path):
    store = EpisodeStore.create(tmp_path / "ds")
    ep = store.episode(_record(store))
    frames = list(ep.frames("cam"))
    assert len(frames) == 6
    assert [s for s, _ in frames] == list(1_000_000_000 + np.arange(6) * 50_000_000)
    stamp, rgb = frames[2]
    assert rgb.shape == (30, 40, 3) and abs(int(rgb[:, :15].mean()) - 255) < 30 and rgb[:, 25:].mean() < 30
    msgs = list(ep.messages("cam"))
    assert msgs[0][1].encoding == "rgb8" and msgs[0][1].header.frame_id == "cam_optical"


def test_commit_is_atomic_and_discard_leaves_nothing(tmp_path):
    store = EpisodeStore.create(tmp_path / "ds")
    w = _record(store, commit=False)
    assert store.open_episodes() == [0] and store.episodes() == []
    w.commit()
    assert store.open_episodes() == [] and store.episodes() == [0]
    w2 = store.new_episode({}, STREAMS)
    assert w2.index == 1
    w2.write("joint_states", convert.joint_state(["a"], [0.0], stamp=Time(1)))
    w2.discard()
    assert store.open_episodes() == [] and store.episodes() == [0]
    with pytest.raises(StoreError, match="closed"):
        w2.write("joint_states", convert.joint_state(["a"], [0.0], stamp=Time(1)))


def test_recover_keeps_everything_flushed(tmp_path):
    store = EpisodeStore.create(tmp_path / "ds")
    w = _record(store, n=40, commit=False)        # flushed at i == 20, the rest only in memory
    for enc in w.encoders.values():               # the encoder thread is gone with a killed process;
        enc.close()                               # here: its file is complete up to what it wrote
    del w
    assert store.recover(0) == 0
    ep = store.episode(0)
    assert ep.meta["recovered"] is True
    assert ep.meta["stream_stats"]["joint_states"]["count"] == 21
    assert len(list(ep.frames("cam"))) == len(ep.stamps("cam")) == 3


def test_unwritable_directory_and_bad_specs_are_clear_errors(tmp_path):
    if os.geteuid() == 0:
        target = "/proc/robot_stack_dataset"      # not writable even for root
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        target = ro / "ds"
    with pytest.raises(StoreError, match="not writable"):
        EpisodeStore.create(target)
    with pytest.raises(StoreError, match="encoding"):
        StreamSpec("x", "/x", "std_msgs/msg/Int64", "jpeg")
    with pytest.raises(StoreError, match="duplicate"):
        EpisodeStore.create(tmp_path / "d2").new_episode({}, [STREAMS[0], STREAMS[0]])
    with pytest.raises(StoreError, match="no episode 4"):
        EpisodeStore.create(tmp_path / "d2").episode(4)
    assert json.loads((tmp_path / "d2" / "dataset.json").read_text())["format"] == "robot_stack.episodes"


def test_default_features_and_alignment(tmp_path):
    store = EpisodeStore.create(tmp_path / "ds")
    ep = store.episode(_record(store))
    feats = default_features(ep)
    assert feats["observation.state"] == Feature("joint_states", "position", "state")
    assert feats["observation.images.cam"].kind == "image"
    stamps, values = feature_values(ep, feats["observation.state"])
    times = uniform_times(stamps[0], stamps[-1], 100.0)
    aligned = interpolate(stamps, values, times + 2_500_000)
    assert aligned[0] == pytest.approx([0.5, -0.5])
    assert list(previous_index(ep.stamps("cam"), [999_999_999, 1_000_000_000, 1_049_999_999])) == [-1, 0, 0]
