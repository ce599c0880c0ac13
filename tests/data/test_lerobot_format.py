"""LeRobotDataset v3.0 export/import: layout and fields checked against LeRobot's definitions, round trip."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data.formats import format_class
from data.formats.lerobot import LeRobotFormat
from data.formats.lerobot_import import decode_range
from data.store import EpisodeStore, StoreError, StreamSpec
from robot_stack import convert
from robot_stack.clock import Time

JOINTS = ["shoulder", "elbow", "wrist"]
STREAMS = [
    StreamSpec("joint_states", "/joint_states", "sensor_msgs/msg/JointState"),
    StreamSpec("joint_commands", "/joint_commands", "sensor_msgs/msg/JointState"),
    StreamSpec("cam", "/cam/image_raw", "sensor_msgs/msg/Image", "video", fps=15.0),
]
TASKS = ["pick the cube", "pick the cube", "open the drawer"]
T0 = [1_000_000_000, 50_000_000_000, 90_000_000_000]
CAM_DELAY_NS = 20_000_000          # the camera starts 20 ms after the joint states
DURATION_S = 2.0


def state_at(t_s: np.ndarray, ep: int) -> np.ndarray:
    return np.stack([np.sin(t_s), 0.5 * t_s + ep, np.cos(2 * t_s)], axis=1)


def command_at(t_s: np.ndarray, ep: int) -> np.ndarray:
    return np.stack([t_s, -t_s, np.full_like(t_s, ep)], axis=1)


def frame_value(i: int) -> int:
    return 12 + 8 * i          # distinct, well separated intensities (i < 30 per episode)


def _record_episode(store: EpisodeStore, ep: int) -> None:
    w = store.new_episode({"task": TASKS[ep], "robot": "so100"}, STREAMS)
    t0 = T0[ep]
    for i in range(int(DURATION_S * 200) + 1):                      # joint states at 200 Hz
        t = i * 5_000_000
        w.write("joint_states", convert.joint_state(JOINTS, state_at(np.array([t / 1e9]), ep)[0],
                                                    stamp=Time(t0 + t)))
    for i in range(int(DURATION_S * 10)):                           # commands at 10 Hz, 5 ms late
        t = 5_000_000 + i * 100_000_000
        w.write("joint_commands", convert.joint_state(JOINTS, command_at(np.array([t / 1e9]), ep)[0],
                                                      stamp=Time(t0 + t)))
    for i in range(int(DURATION_S * 15)):                           # a 64x48 camera at 15 fps
        t = CAM_DELAY_NS + round(i * 1e9 / 15)
        img = np.full((48, 64, 3), frame_value(i), np.uint8)
        w.write("cam", convert.image(img, "rgb8", stamp=Time(t0 + t), frame_id="cam"))
    w.commit(success=ep != 1)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = EpisodeStore.create(tmp_path_factory.mktemp("lerobot") / "src")
    for ep in range(3):
        _record_episode(store, ep)
    return store


@pytest.fixture(scope="module")
def export(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("lerobot") / "export"
    calls = []
    format_class("lerobot")().export(store, out, fps=10, progress=lambda d, n: calls.append((d, n)))
    assert calls == [(1, 3), (2, 3), (3, 3)]
    return out


def expected_grid(ep: int) -> np.ndarray:
    """Grid times (s, relative to the episode's first joint state): latest first stamp to earliest last."""
    start = CAM_DELAY_NS / 1e9
    stop = min(DURATION_S, 0.005 + 1.9, CAM_DELAY_NS / 1e9 + 29 / 15)
    return start + np.arange(int(np.floor((stop - start) * 10 + 1e-9)) + 1) / 10


def expected_frames(ep: int) -> list[int]:
    """The camera frame each tick shows: the latest at or before it."""
    cam_t = CAM_DELAY_NS / 1e9 + np.arange(30) / 15
    return list(np.searchsorted(cam_t, expected_grid(ep) + 1e-9, side="right") - 1)


def episodes_table(root) -> list[dict]:
    rows = [r for p in sorted((root / "meta" / "episodes").glob("*/*.parquet")) for r in pq.read_table(p).to_pylist()]
    return sorted(rows, key=lambda r: r["episode_index"])


def data_table(root):
    return pa.concat_tables([pq.read_table(p) for p in sorted((root / "data").glob("*/*.parquet"))])


def test_info_json_fields(export):
    info = json.loads((export / "meta" / "info.json").read_text())
    n = len(expected_grid(0))
    assert info["codebase_version"] == "v3.0" and info["robot_type"] == "so100"
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (3, 3 * n, 2)
    assert info["fps"] == 10 and isinstance(info["fps"], int)
    assert (info["chunks_size"], info["data_files_size_in_mb"], info["video_files_size_in_mb"]) == (1000, 100, 200)
    assert info["splits"] == {"train": "0:3"}
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    feats = info["features"]
    assert list(feats) == ["observation.state", "action", "observation.images.cam", "timestamp", "frame_index",
                           "episode_index", "index", "task_index"]
    assert feats["observation.state"] == {"dtype": "float32", "shape": [3], "names": JOINTS}
    assert feats["action"] == {"dtype": "float32", "shape": [3], "names": JOINTS}
    cam = feats["observation.images.cam"]
    assert cam["dtype"] == "video" and cam["shape"] == [48, 64, 3] and cam["names"] == ["height", "width", "channels"]
    assert cam["info"] == {"video.height": 48, "video.width": 64, "video.codec": "av1", "video.pix_fmt": "yuv420p",
                           "video.is_depth_map": False, "video.fps": 10, "video.channels": 3, "has_audio": False}
    assert feats["timestamp"] == {"dtype": "float32", "shape": [1], "names": None}
    for key in ("frame_index", "episode_index", "index", "task_index"):
        assert feats[key] == {"dtype": "int64", "shape": [1], "names": None}


def test_tasks_and_episodes_tables(export):
    tasks = pq.read_table(export / "meta" / "tasks.parquet")
    assert tasks.column("task_index").to_pylist() == [0, 1]
    assert tasks.column("__index_level_0__").to_pylist() == ["pick the cube", "open the drawer"]
    pandas = pytest.importorskip("pandas")
    frame = pandas.read_parquet(export / "meta" / "tasks.parquet")
    assert int(frame.loc["open the drawer"].task_index) == 1          # LeRobot's get_task_index lookup
    rows = episodes_table(export)
    n = len(expected_grid(0))
    assert [r["episode_index"] for r in rows] == [0, 1, 2]
    assert [r["tasks"] for r in rows] == [[t] for t in TASKS]
    assert [(r["dataset_from_index"], r["dataset_to_index"], r["length"]) for r in rows] == [
        (0, n, n), (n, 2 * n, n), (2 * n, 3 * n, n)]
    assert all((r["data/chunk_index"], r["data/file_index"]) == (0, 0) for r in rows)
    assert all((r["meta/episodes/chunk_index"], r["meta/episodes/file_index"]) == (0, 0) for r in rows)
    for k, r in enumerate(rows):          # episodes concatenated in one mp4: from/to = frame offsets / fps
        assert r["videos/observation.images.cam/chunk_index"] == r["videos/observation.images.cam/file_index"] == 0
        assert r["videos/observation.images.cam/from_timestamp"] == pytest.approx(k * n / 10)
        assert r["videos/observation.images.cam/to_timestamp"] == pytest.approx((k + 1) * n / 10)
    stat_cols = {c for c in rows[0] if c.startswith("stats/")}
    for feat in ("observation.state", "action", "observation.images.cam", "timestamp", "frame_index", "index"):
        assert {f"stats/{feat}/{s}" for s in ("min", "max", "mean", "std", "count", "q01", "q50", "q99")} <= stat_cols
    assert rows[0]["stats/observation.state/count"] == [n]
    assert np.array(rows[0]["stats/observation.images.cam/mean"]).shape == (3, 1, 1)


def test_data_rows_are_the_streams_resampled(export):
    table = data_table(export)
    grid = expected_grid(0)
    n = len(grid)
    assert table.column_names == ["observation.state", "action", "timestamp", "frame_index", "episode_index",
                                  "index", "task_index"]
    state_type = table.schema.field("observation.state").type       # datasets' Sequence(length=3, float32)
    assert pa.types.is_fixed_size_list(state_type) and state_type.list_size == 3
    assert state_type.value_type == pa.float32()
    assert table.schema.field("timestamp").type == "float" and table.schema.field("index").type == "int64"
    np.testing.assert_array_equal(table.column("index").to_numpy(), np.arange(3 * n))
    np.testing.assert_array_equal(table.column("episode_index").to_numpy(), np.repeat([0, 1, 2], n))
    np.testing.assert_array_equal(table.column("task_index").to_numpy(), np.repeat([0, 0, 1], n))
    np.testing.assert_array_equal(table.column("frame_index").to_numpy(), np.tile(np.arange(n), 3))
    timestamps = np.tile(np.arange(n) / 10, 3).astype(np.float32)                  # exactly k / fps
    np.testing.assert_array_equal(table.column("timestamp").to_numpy(), timestamps)
    state = np.array(table.column("observation.state").to_pylist())
    action = np.array(table.column("action").to_pylist())
    for ep in range(3):
        src_t = np.arange(401) * 0.005
        want = np.stack([np.interp(grid, src_t, state_at(src_t, ep)[:, j]) for j in range(3)], axis=1)
        np.testing.assert_allclose(state[ep * n:(ep + 1) * n], want, atol=1e-5)
        cmd_t = 0.005 + np.arange(20) * 0.1
        want = np.stack([np.interp(grid, cmd_t, command_at(cmd_t, ep)[:, j]) for j in range(3)], axis=1)
        np.testing.assert_allclose(action[ep * n:(ep + 1) * n], want, atol=1e-5)


def test_video_frames_are_the_latest_camera_frame_per_tick(export):
    rows = episodes_table(export)
    grid = expected_grid(0)
    want = [frame_value(i) for i in expected_frames(0)]
    assert len(set(want)) > len(want) // 2            # mostly distinct frames: a shift by one tick shows
    path = export / "videos" / "observation.images.cam" / "chunk-000" / "file-000.mp4"
    for r in rows:
        t0, t1 = r["videos/observation.images.cam/from_timestamp"], r["videos/observation.images.cam/to_timestamp"]
        frames = list(decode_range(path, t0, t1))
        assert [round((t - t0) * 10) for t, _ in frames] == list(range(len(grid)))
        assert frames[0][1].shape == (48, 64, 3)
        got = [int(rgb.mean().round()) for _, rgb in frames]
        assert np.abs(np.array(got) - want).max() <= 3, (got, want)


def test_stats_json(export):
    stats = json.loads((export / "meta" / "stats.json").read_text())
    table = data_table(export)
    state = np.array(table.column("observation.state").to_pylist())
    s = stats["observation.state"]
    np.testing.assert_allclose(s["min"], state.min(0), rtol=1e-6)
    np.testing.assert_allclose(s["max"], state.max(0), rtol=1e-6)
    np.testing.assert_allclose(s["mean"], state.mean(0), rtol=1e-5)
    np.testing.assert_allclose(s["std"], state.std(0), rtol=1e-4)
    assert s["count"] == [len(state)]
    cam = stats["observation.images.cam"]
    assert np.array(cam["mean"]).shape == (3, 1, 1) and 0.0 <= np.min(cam["min"]) <= np.max(cam["max"]) <= 1.0
    assert cam["count"] == [len(state)]                  # every frame sampled (fewer than 100 per episode)
    assert np.array(cam["max"]).max() == pytest.approx(frame_value(max(expected_frames(0))) / 255, abs=4 / 255)
    assert stats["index"]["max"] == [len(state) - 1] and stats["timestamp"]["min"] == [0.0]


def test_import_round_trip(store, export, tmp_path):
    dst = EpisodeStore.create(tmp_path / "back")
    assert LeRobotFormat().import_(export, dst) == [0, 1, 2]
    table = data_table(export)
    n = len(expected_grid(0))
    for ep in range(3):
        back = dst.episode(ep)
        assert back.meta["task"] == TASKS[ep] and back.meta["success"] is (ep != 1)
        assert back.streams["joint_states"].type == "sensor_msgs/msg/JointState"
        assert back.streams["joint_states"].topic == "/joint_states"
        stamps = back.stamps("joint_states")
        want = T0[ep] + CAM_DELAY_NS + np.arange(n) * 100_000_000        # the capture times of the grid
        np.testing.assert_array_equal(stamps, want)
        np.testing.assert_array_equal(back.stamps("joint_commands"), want)
        msg = next(back.messages("joint_states"))[1]
        assert list(msg.name) == JOINTS
        np.testing.assert_allclose(back.column("joint_states", "position"),
                                   table.column("observation.state").to_pylist()[ep * n:(ep + 1) * n], atol=1e-6)
        frames = list(back.frames("cam"))
        assert [s for s, _ in frames] == want.tolist()
        src = [int(rgb.mean().round()) for _, rgb in
               decode_range(export / "videos/observation.images.cam/chunk-000/file-000.mp4", ep * n / 10,
                            (ep + 1) * n / 10)]
        assert np.abs(np.array([int(rgb.mean().round()) for _, rgb in frames]) - src).max() <= 3


def test_small_limits_make_several_files_and_chunks(store, tmp_path):
    out = tmp_path / "sharded"
    fmt = LeRobotFormat(chunks_size=2, data_files_size_in_mb=1e-6, video_files_size_in_mb=1e-6)
    fmt.export(store, out, fps=10)
    names = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    for kind in ("data", "meta/episodes"):
        assert [p for p in names if p.startswith(kind + "/")] == [
            f"{kind}/chunk-000/file-000.parquet", f"{kind}/chunk-000/file-001.parquet",
            f"{kind}/chunk-001/file-000.parquet"]
    videos = [p for p in names if p.startswith("videos/")]
    assert videos == [f"videos/observation.images.cam/chunk-00{c}/file-00{f}.mp4" for c, f in ((0, 0), (0, 1), (1, 0))]
    rows = episodes_table(out)
    assert [(r["data/chunk_index"], r["data/file_index"]) for r in rows] == [(0, 0), (0, 1), (1, 0)]
    assert all(r["videos/observation.images.cam/from_timestamp"] == 0.0 for r in rows)
    back = EpisodeStore.create(tmp_path / "back")
    assert fmt.import_(out, back) == [0, 1, 2]
    assert [len(back.episode(i).stamps("cam")) for i in range(3)] == [len(expected_grid(0))] * 3


def test_episode_and_feature_selection_and_errors(store, tmp_path):
    from data.features import Feature

    out = LeRobotFormat().export(store, tmp_path / "one", episodes=[2],
                                 features={"observation.state": {"stream": "joint_states", "field": "position"}})
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["fps"] == 200 and info["video_path"] is None and info["total_tasks"] == 1    # the state rate
    assert list(info["features"])[:1] == ["observation.state"]
    extras = json.loads((out / "meta" / "robot_stack.json").read_text())
    assert extras["episodes"][0]["source_episode"] == 2 and extras["episodes"][0]["start_ns"] == T0[2]
    with pytest.raises(StoreError, match="not empty"):
        LeRobotFormat().export(store, out)
    with pytest.raises(StoreError, match="whole, positive fps"):
        LeRobotFormat().export(store, tmp_path / "bad", fps=7.5)
    with pytest.raises(StoreError, match="no stream 'nope'"):
        LeRobotFormat().export(store, tmp_path / "bad", fps=10, features={"observation.x": Feature("nope", "data")})
    assert not (tmp_path / "bad").exists()                     # a failed export leaves nothing behind
    with pytest.raises(StoreError, match="not a LeRobot v3.0 dataset"):
        LeRobotFormat().import_(tmp_path / "nothing", store)
    (tmp_path / "old" / "meta").mkdir(parents=True)
    (tmp_path / "old" / "meta" / "info.json").write_text(json.dumps({"codebase_version": "v2.1"}))
    with pytest.raises(StoreError, match="convert_dataset_v21_to_v30"):
        LeRobotFormat().import_(tmp_path / "old", store)


# LeRobot itself reading the export, in a child process (so its imports and any stand-in stay out of this one).
# lerobot.datasets imports torchvision at module level, but only uses it for PIL-image features and for its
# torchvision video backend; PyPI's torchvision wheels are CUDA builds that fail to load next to a CPU torch,
# so where `import torchvision` fails a stand-in module is put in its place and videos are decoded with
# torchcodec (which LeRobot prefers anyway). Anything else missing -> the test is skipped, saying what.
LEROBOT_PRELUDE = r'''
import importlib.machinery, json, sys, types
try:
    import torchvision  # noqa: F401
except Exception as exc:
    stand_in = {}
    for name in ("torchvision", "torchvision.transforms", "torchvision.transforms.v2"):
        stand_in[name] = types.ModuleType(name)
        stand_in[name].__spec__ = importlib.machinery.ModuleSpec(name, None)
    stand_in["torchvision"].transforms = stand_in["torchvision.transforms"]
    stand_in["torchvision.transforms"].v2 = stand_in["torchvision.transforms.v2"]
    stand_in["torchvision.transforms"].ToTensor = None
    sys.modules.update(stand_in)
    print(f"note: torchvision unusable ({type(exc).__name__}: {str(exc)[:80]}); stand-in module", file=sys.stderr)
try:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from torchcodec.decoders import VideoDecoder  # noqa: F401
except Exception as exc:
    print(json.dumps({"skip": f"{type(exc).__name__}: {exc}"}))
    sys.exit(0)
'''
LEROBOT_LOAD = LEROBOT_PRELUDE + r'''
ds = LeRobotDataset("local/robot_stack_export", root=sys.argv[1], video_backend="torchcodec",
                    delta_timestamps={"action": [0.0, 0.1], "observation.images.cam": [-0.1, 0.0]})
items = []
for i in range(len(ds)):
    item = ds[i]
    items.append({"state": item["observation.state"].tolist(), "action": item["action"].tolist(),
                  "action_is_pad": item["action_is_pad"].tolist(), "timestamp": item["timestamp"].item(),
                  "frame_index": item["frame_index"].item(), "episode_index": item["episode_index"].item(),
                  "index": item["index"].item(), "task": item["task"],
                  "cam": item["observation.images.cam"].mean(dim=(1, 2, 3)).tolist(),
                  "cam_shape": list(item["observation.images.cam"].shape)})
meta = ds.meta
print(json.dumps({"version": meta.info["codebase_version"], "fps": meta.fps, "episodes": meta.total_episodes,
                  "frames": meta.total_frames, "len": len(ds), "video_keys": meta.video_keys,
                  "stats_keys": sorted(meta.stats), "items": items}))
'''


def run_lerobot(script: str, root, tmp_path) -> dict:
    """Run a LeRobot script in a child process, offline; its last stdout line is JSON (or {"skip": why})."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "HF_LEROBOT_HOME": str(tmp_path / "lerobot"), "SVT_LOG": "1"}
    proc = subprocess.run([sys.executable, "-c", script, str(root)], capture_output=True, text=True, env=env,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if "skip" in result:
        pytest.skip(f"LeRobot cannot be imported here: {result['skip']}")
    return result


@pytest.mark.slow
def test_lerobot_loads_the_export(export, tmp_path):
    result = run_lerobot(LEROBOT_LOAD, export, tmp_path)
    n = len(expected_grid(0))
    assert (result["version"], result["fps"], result["episodes"], result["frames"], result["len"]) == (
        "v3.0", 10, 3, 3 * n, 3 * n)
    assert result["video_keys"] == ["observation.images.cam"] and "observation.state" in result["stats_keys"]
    table = data_table(export)
    state = np.array(table.column("observation.state").to_pylist())
    action = np.array(table.column("action").to_pylist())
    frames = [frame_value(i) for i in expected_frames(0)]
    for item in result["items"]:
        ep, k = item["episode_index"], item["frame_index"]
        assert item["index"] == ep * n + k and item["timestamp"] == pytest.approx(k / 10)
        assert item["task"] == TASKS[ep]
        np.testing.assert_allclose(item["state"], state[ep * n + k], atol=1e-6)
        np.testing.assert_allclose(item["action"][0], action[ep * n + k], atol=1e-6)
        assert item["action_is_pad"] == [False, k == n - 1]          # the episode boundary, as LeRobot pads it
        assert item["cam_shape"] == [2, 3, 48, 64]
        want = [frames[max(k - 1, 0)], frames[k]]                    # frame k-1 (clamped at the start) and k
        assert np.abs(np.array(item["cam"]) * 255 - want).max() <= 3, (ep, k, item["cam"], want)


LEROBOT_WRITE = LEROBOT_PRELUDE + r'''
import numpy as np
features = {"observation.state": {"dtype": "float32", "shape": (2,), "names": ["a", "b"]},
            "action": {"dtype": "float32", "shape": (2,), "names": ["a", "b"]},
            "observation.gripper": {"dtype": "float32", "shape": (2,), "names": {"motors": ["left", "right"]}},
            "observation.images.top": {"dtype": "video", "shape": (48, 64, 3),
                                       "names": ["height", "width", "channels"]}}
ds = LeRobotDataset.create("local/made_by_lerobot", fps=5, root=sys.argv[1], features=features, robot_type="toy",
                           use_videos=True)
for ep in range(2):
    for k in range(6 + ep):
        ds.add_frame({"observation.state": np.array([k, ep], np.float32), "action": np.array([-k, ep], np.float32),
                      "observation.gripper": np.array([0.5 * k, 1], np.float32),
                      "observation.images.top": np.full((48, 64, 3), 20 + 30 * k, np.uint8), "task": f"task {ep}"})
    ds.save_episode()
ds.finalize()
print(json.dumps({"ok": True}))
'''


@pytest.mark.slow
def test_import_a_dataset_written_by_lerobot(tmp_path):
    root = tmp_path / "made_by_lerobot"
    run_lerobot(LEROBOT_WRITE, root, tmp_path)
    store = EpisodeStore.create(tmp_path / "store")
    assert LeRobotFormat().import_(root, store) == [0, 1]
    for ep in range(2):
        back = store.episode(ep)
        n = 6 + ep
        assert back.meta["task"] == f"task {ep}" and back.meta["robot"] == "toy" and back.meta["success"] is None
        assert sorted(back.streams) == ["gripper", "joint_commands", "joint_states", "top"]
        np.testing.assert_array_equal(back.stamps("joint_states"), np.arange(n) * 200_000_000)    # k / 5 s
        msg = next(back.messages("joint_states"))[1]
        assert list(msg.name) == ["a", "b"]
        np.testing.assert_array_equal(back.column("joint_states", "position"), [[k, ep] for k in range(n)])
        np.testing.assert_array_equal(back.column("joint_commands", "position"), [[-k, ep] for k in range(n)])
        assert back.streams["gripper"].type == "std_msgs/msg/Float64MultiArray"
        np.testing.assert_array_equal(back.column("gripper", "data"), [[0.5 * k, 1] for k in range(n)])
        layout = next(back.messages("gripper"))[1].layout.dim[0]
        assert (layout.label, layout.size) == ("observation.gripper", 2)
        frames = list(back.frames("top"))
        assert [s for s, _ in frames] == (np.arange(n) * 200_000_000).tolist()
        assert np.abs(np.array([rgb.mean() for _, rgb in frames]) - (20 + 30 * np.arange(n))).max() <= 3


def test_import_without_robot_stack_extras(export, tmp_path):
    """A v3.0 dataset with no meta/robot_stack.json (as LeRobot lays one out): default stream keys, stamps from 0."""
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(export, bare)
    (bare / "meta" / "robot_stack.json").unlink()
    store = EpisodeStore.create(tmp_path / "store")
    assert LeRobotFormat().import_(bare, store) == [0, 1, 2]
    back = store.episode(2)
    n = len(expected_grid(0))
    assert sorted(back.streams) == ["cam", "joint_commands", "joint_states"]
    assert back.streams["cam"].topic == "/cam" and back.meta["success"] is None
    np.testing.assert_array_equal(back.stamps("joint_states"), np.arange(n) * 100_000_000)
    assert len(list(back.frames("cam"))) == n
