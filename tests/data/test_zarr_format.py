"""zarr replay buffer (Diffusion Policy layout): shapes, dtypes, episode_ends, aligned values, chunking, import."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from data.align import interpolate, previous_index, uniform_times
from data.features import Feature, default_features, feature_values
from data.formats import format_class
from data.store import EpisodeStore, StoreError, StreamSpec
from robot_stack import convert
from robot_stack.clock import Time

T0 = 2_000_000_000
STREAMS = [
    StreamSpec("joint_states", "/joint_states", "sensor_msgs/msg/JointState"),
    StreamSpec("joint_commands", "/joint_commands", "sensor_msgs/msg/JointState"),
    StreamSpec("wrench", "/wrench", "geometry_msgs/msg/WrenchStamped"),
    StreamSpec("cam", "/cam/image_raw", "sensor_msgs/msg/Image", "video", codec="libx264", fps=15.0),
]


def shade(k):
    return 20 + 15 * k


def _record(store, ep, duration_s):
    """State 200 Hz, commands 50 Hz (from 2 ms late), wrench 100 Hz, camera 15 fps (32x24, flat shades)."""
    w = store.new_episode({"task": f"task {ep}"}, STREAMS)
    events = [(T0 + i * 5_000_000, "joint_states") for i in range(int(duration_s * 200) + 1)]
    events += [(T0 + 2_000_000 + i * 20_000_000, "joint_commands") for i in range(int(duration_s * 50))]
    events += [(T0 + i * 10_000_000, "wrench") for i in range(int(duration_s * 100) + 1)]
    cams = [T0 + 1_000_000 + round(k * 1e9 / 15) for k in range(int(duration_s * 15))]
    events += [(t, "cam") for t in cams]
    for t, key in sorted(events):
        s = (t - T0) / 1e9
        if key == "cam":
            w.write_frame("cam", np.full((24, 32, 3), shade(cams.index(t)), np.uint8), t)
        elif key == "wrench":
            w.write(key, convert.wrench([s, 0, ep, 0, 0, 1], stamp=Time(t)))
        else:
            sign = 1.0 if key == "joint_states" else -1.0
            w.write(key, convert.joint_state(["a", "b"], [sign * s + ep, 2 * s], stamp=Time(t)))
    return w.commit(success=True)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("zarr")
    store = EpisodeStore.create(root / "ds")
    _record(store, 0, 1.0)
    _record(store, 1, 0.6)
    out = format_class("zarr")().export(store, root / "buffer", fps=10.0)
    return store, out


def test_layout_shapes_dtypes_and_episode_ends(exported):
    store, out = exported
    assert out.name == "buffer.zarr" and (out / ".zgroup").exists()
    assert '"zarr_format": 2' in (out / "meta" / "episode_ends" / ".zarray").read_text()
    root = zarr.open_group(str(out), mode="r")
    feats = default_features(store.episode(0))
    assert set(root["data"].array_keys()) == {*feats, "timestamp"}
    ends = root["meta"]["episode_ends"][:]
    assert ends.dtype == np.int64
    lengths = [len(uniform_times(*_span(store.episode(i)), 10.0)) for i in (0, 1)]
    assert ends.tolist() == [lengths[0], lengths[0] + lengths[1]]
    n = int(ends[-1])
    assert root["data"]["observation.state"].shape == (n, 2) and root["data"]["observation.state"].dtype == np.float32
    assert root["data"]["action"].shape == (n, 2)
    assert root["data"]["observation.wrench"].shape == (n, 6)
    img = root["data"]["observation.images.cam"]
    assert img.shape == (n, 24, 32, 3) and img.dtype == np.uint8 and img.chunks == (1, 24, 32, 3)
    assert root["data"]["timestamp"].dtype == np.float64
    assert root.attrs["fps"] == 10.0 and root.attrs["tasks"] == ["task 0", "task 1"]
    assert root["meta"]["episode_index"][:].tolist() == [0, 1]


def _span(ep):
    keys = ["joint_states", "joint_commands", "wrench", "cam"]
    return max(ep.stamps(k)[0] for k in keys), min(ep.stamps(k)[-1] for k in keys)


def test_values_equal_the_timestamp_aligned_source(exported):
    store, out = exported
    root = zarr.open_group(str(out), mode="r")
    ends = root["meta"]["episode_ends"][:]
    for index, (begin, end) in enumerate(zip([0, *ends[:-1]], ends, strict=True)):
        ep = store.episode(index)
        times = uniform_times(*_span(ep), 10.0)
        ts = root["data"]["timestamp"][begin:end]
        np.testing.assert_allclose(ts, (times - times[0]) / 1e9)
        assert ts[1] == pytest.approx(0.1)
        for name, feature in default_features(ep).items():
            got = root["data"][name][begin:end]
            if feature.kind == "image":
                want = np.clip(previous_index(ep.stamps("cam"), times), 0, None)
                assert np.abs(got[:, 10, 10, 0].astype(int) - [shade(k) for k in want]).max() <= 4
                continue
            stamps, values = feature_values(ep, feature)
            np.testing.assert_allclose(got, interpolate(stamps, values, times), rtol=1e-6, atol=1e-6)
        s = (times - T0) / 1e9                               # analytic: linear signals interpolate exactly
        np.testing.assert_allclose(root["data"]["observation.state"][begin:end], np.stack([s + index, 2 * s], 1),
                                   atol=1e-5)
        np.testing.assert_allclose(root["data"]["action"][begin:end], np.stack([-s + index, 2 * s], 1), atol=1e-5)


def test_custom_features_fps_and_errors(exported, tmp_path):
    store, _ = exported
    fmt = format_class("zarr")()
    feats = {"state": Feature("joint_states", "position", "state"), "img": Feature("cam", "", "image")}
    out = fmt.export(store, tmp_path / "pusht.zarr", episodes=[1], features=feats, fps=20.0)
    root = zarr.open_group(str(out), mode="r")
    assert set(root["data"].array_keys()) == {"state", "img", "timestamp"}
    assert root["meta"]["episode_ends"][:].tolist() == [root["data"]["state"].shape[0]]
    assert root["data"]["timestamp"][1] == pytest.approx(0.05)
    with pytest.raises(StoreError, match="exists already"):
        fmt.export(store, tmp_path / "pusht.zarr", features=feats)
    with pytest.raises(StoreError, match="needs stream 'nope'"):
        fmt.export(store, tmp_path / "bad", features={"x": Feature("nope", "position")})
    with pytest.raises(StoreError, match="no numeric field"):
        fmt.export(store, tmp_path / "bad2", features={"x": Feature("joint_states", "bogus")})
    assert not (tmp_path / "bad2.zarr").exists()


def test_import_back_into_episodes(exported, tmp_path):
    store, out = exported
    dst = EpisodeStore.create(tmp_path / "back")
    assert format_class("zarr")().import_(out, dst) == [0, 1]
    ep = dst.episode(1)
    assert ep.meta["task"] == "task 1" and set(ep.streams) == {"joint_states", "action", "wrench", "cam"}
    assert set(default_features(ep)) == set(default_features(store.episode(1)))
    root = zarr.open_group(str(out), mode="r")
    begin = int(root["meta"]["episode_ends"][0])
    np.testing.assert_allclose(ep.column("joint_states", "position"), root["data"]["observation.state"][begin:])
    assert ep.stamps("cam")[0] == root.attrs["episode_start_ns"][1] and np.all(np.diff(ep.stamps("cam")) == 100_000_000)
    frames = list(ep.frames("cam"))
    assert len(frames) == root["data"]["timestamp"].shape[0] - begin
    with pytest.raises(StoreError, match="not a"):
        format_class("zarr")().import_(tmp_path, dst)


def test_import_a_pusht_style_buffer_written_elsewhere(tmp_path):
    """No timestamp, no attrs, float32 images 0..255 and a (T, 9, 2) keypoint array, as DP's PushT data."""
    root = zarr.open_group(str(tmp_path / "pusht.zarr"), mode="w", zarr_format=2)
    n = 12
    root.create_array("data/img", data=np.full((n, 16, 16, 3), 100.0, np.float32), chunks=(1, 16, 16, 3))
    root.create_array("data/state", data=np.arange(n * 5, dtype=np.float32).reshape(n, 5))
    root.create_array("data/keypoint", data=np.zeros((n, 9, 2), np.float32))
    root.create_array("data/action", data=np.ones((n, 2), np.float32))
    root.create_array("meta/episode_ends", data=np.array([5, n], np.int64))
    store = EpisodeStore.create(tmp_path / "ds")
    assert format_class("zarr")().import_(tmp_path / "pusht.zarr", store, task="push T") == [0, 1]
    ep = store.episode(1)
    assert set(ep.streams) == {"img", "state", "keypoint", "action"} and ep.meta["task"] == "push T"
    assert ep.column("keypoint", "position").shape == (7, 18)
    np.testing.assert_allclose(ep.column("state", "position")[0], np.arange(25, 30))
    assert np.all(np.diff(ep.stamps("state")) == 100_000_000)            # step / fps (10 Hz default)
    frames = list(ep.frames("img"))
    assert len(frames) == 7 and abs(int(frames[0][1].mean()) - 100) <= 3
