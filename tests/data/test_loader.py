"""Training loader: timestamp-aligned windows, padding, stats, Normalizer, workers, LeRobot v3 input."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from torch.utils.data import DataLoader

from data.loader import EpisodeBlockSampler, LoaderError, Normalizer, WindowDataset
from data.loader_video import ArraySource, FrameCache, LeRobotSource
from data.store import EpisodeStore, StreamSpec
from data.video import VideoEncoder
from robot_stack import convert
from robot_stack.clock import Time

T0 = 1_000_000_000
STREAMS = [
    StreamSpec("joint_states", "/joint_states", "sensor_msgs/msg/JointState"),
    StreamSpec("joint_commands", "/joint_commands", "sensor_msgs/msg/JointState"),
    StreamSpec("cam", "/cam/image_raw", "sensor_msgs/msg/Image", "video", codec="libx264", fps=15.0),
]


def state_of(t_ns, ep):        # linear signals: interpolation is exact
    s = (np.asarray(t_ns, np.float64) - T0) / 1e9
    return np.stack([2.0 * s + ep, 1.0 - 0.5 * s], axis=-1)


def action_of(t_ns, ep):
    s = (np.asarray(t_ns, np.float64) - T0) / 1e9
    return np.stack([3.0 * s - ep, s], axis=-1)


def intensity(k):
    return 10 + 8 * k


def _record(store, ep, rng, duration_s=2.0):
    """State at 200 Hz, commands at 10 Hz (from 1 ms late), camera at 15 fps with +-4 ms jitter."""
    w = store.new_episode({"task": "t"}, STREAMS)
    events = [(T0 + i * 5_000_000, "joint_states") for i in range(int(duration_s * 200) + 1)]
    events += [(T0 + 1_000_000 + i * 100_000_000, "joint_commands") for i in range(int(duration_s * 10) + 1)]
    cam = [T0 + 3_000_000 + round(k * 1e9 / 15) + int(rng.integers(-4_000_000, 4_000_000))
           for k in range(int(duration_s * 15))]
    events += [(t, "cam") for t in cam]
    for t, key in sorted(events):
        if key == "cam":
            k = cam.index(t)
            w.write_frame("cam", np.full((24, 32, 3), intensity(k), np.uint8), t)
        else:
            value = (state_of if key == "joint_states" else action_of)(t, ep)
            w.write(key, convert.joint_state(["a", "b"], value, stamp=Time(t)))
    w.commit()
    return np.asarray(cam, np.int64)


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    root = tmp_path_factory.mktemp("loader") / "ds"
    store = EpisodeStore.create(root)
    rng = np.random.default_rng(7)
    cams = [_record(store, ep, rng) for ep in range(2)]
    return root, cams


def _dataset(root, **kw):
    args = {"n_obs": 3, "obs_rate": 10.0, "horizon": 6, "action_rate": 10.0}
    return WindowDataset(root, **{**args, **kw})


def test_windows_equal_the_analytic_values(store_path):
    root, cams = store_path
    ds = _dataset(root, obs_rate=20.0, action_rate=5.0, sample_rate=10.0)
    assert ds.obs_keys == ["observation.state", "observation.images.cam"]
    start = max(T0 + 1_000_000, int(cams[0][0]))                         # latest first stamp
    stop = min(T0 + 2_000_000_000, T0 + 1_000_000 + 2_000_000_000, int(cams[0][-1]))
    times = ds.sample_times(0)
    assert times[0] == start and np.all(np.diff(times) == 100_000_000) and times[-1] <= stop < times[-1] + 10**8
    for i in range(0, len(times), 3):
        item, t = ds[i], int(times[i])
        assert item["t_ns"] == t and item["episode_index"] == 0
        obs_t = np.clip(t - np.array([100, 50, 0]) * 1_000_000, start, stop)
        act_t = np.clip(t + np.arange(6) * 200_000_000, start, stop)
        np.testing.assert_allclose(item["obs.observation.state"].numpy(), state_of(obs_t, 0), atol=1e-5)
        np.testing.assert_allclose(item["action"].numpy(), action_of(act_t, 0), atol=1e-5)
        images = item["obs.observation.images.cam"]
        assert images.shape == (3, 3, 24, 32) and images.dtype == torch.float32
        for step, q in enumerate(obs_t):
            k = max(j for j, s in enumerate(cams[0]) if s <= q)           # the latest frame at or before
            assert abs(float(images[step].mean()) * 255 - intensity(k)) < 3


def test_future_windows_sample_an_observation_at_the_action_times(store_path):
    """`future=[...]`: a low-dim feature at the action window's times (what a reactive decoder trains on)."""
    root, cams = store_path
    ds = _dataset(root, obs_rate=20.0, action_rate=5.0, sample_rate=10.0, future=["observation.state"])
    plain = _dataset(root, obs_rate=20.0, action_rate=5.0, sample_rate=10.0)
    start, stop = max(T0 + 1_000_000, int(cams[0][0])), min(T0 + 2_000_000_000, int(cams[0][-1]))
    for i in (0, 4, len(ds.sample_times(0)) - 1):                          # incl. one padded past the end
        item, t = ds[i], int(ds.sample_times(0)[i])
        act_t = np.clip(t + np.arange(6) * 200_000_000, start, stop)
        assert item["future.observation.state"].shape == (6, 2)
        np.testing.assert_allclose(item["future.observation.state"].numpy(), state_of(act_t, 0), atol=1e-5)
        assert set(item) - set(plain[i]) == {"future.observation.state"}
    with pytest.raises(LoaderError, match="low-dim"):
        _dataset(root, future=["observation.images.cam"])
    with pytest.raises(LoaderError, match="unknown feature 'observation.wrench'"):
        _dataset(root, future=["observation.wrench"])


def test_padding_repeats_edges_and_is_masked(store_path):
    root, cams = store_path
    ds = _dataset(root)
    times = ds.sample_times(1)
    first = ds[len(ds) - len(times)]
    assert first["episode_index"] == 1
    assert first["obs_is_pad"].tolist() == [True, True, False]
    state = first["obs.observation.state"].numpy()
    np.testing.assert_allclose(state[0], state[2], atol=1e-6)
    np.testing.assert_allclose(state[2], state_of(times[0], 1), atol=1e-5)
    img = first["obs.observation.images.cam"]
    assert torch.equal(img[0], img[2])
    last = ds[len(ds) - 1]
    stop = min(T0 + 2_001_000_000, int(cams[1][-1]))
    expected_pad = [int(last["t_ns"]) + k * 100_000_000 > stop for k in range(6)]
    assert last["action_is_pad"].tolist() == expected_pad and expected_pad[-1] and not expected_pad[0]
    np.testing.assert_allclose(last["action"].numpy()[-1], action_of(stop, 1), atol=1e-5)
    middle = ds[5]
    assert not middle["obs_is_pad"].any() and not middle["action_is_pad"].any()


def test_stats_and_normalizer_json_round_trip(store_path, tmp_path):
    root, _ = store_path
    ds = _dataset(root)
    raw = np.concatenate([state_of(T0 + np.arange(401) * 5_000_000, ep) for ep in range(2)])
    s = ds.stats["observation.state"]
    np.testing.assert_allclose(s["min"], raw.min(0))
    np.testing.assert_allclose(s["max"], raw.max(0))
    np.testing.assert_allclose(s["mean"], raw.mean(0))
    np.testing.assert_allclose(s["std"], raw.std(0))
    assert s["count"] == 802 and ds.stats["observation.images.cam"]["min"] == [0.0] * 3
    norm = ds.normalizer("limits")
    x = torch.tensor(np.stack([raw.min(0), raw.max(0)]), dtype=torch.float32)
    np.testing.assert_allclose(norm.normalize("observation.state", x).numpy(), [[-1, -1], [1, 1]], atol=1e-6)
    path = norm.save(tmp_path / "norm.json")
    assert json.loads(path.read_text())["format"] == "robot_stack.normalizer"
    for mode in ("limits", "gaussian"):
        n1 = ds.normalizer(mode)
        n2 = Normalizer.load(n1.save(tmp_path / f"{mode}.json"))
        item = ds[3]
        a, b = n1(item), n2(item)
        for key in ("obs.observation.state", "action", "obs.observation.images.cam"):
            assert torch.allclose(a[key], b[key])
        back = n2.unnormalize("action", a["action"])
        assert torch.allclose(back, item["action"], atol=1e-5)
    assert torch.equal(a["obs.observation.images.cam"], item["obs.observation.images.cam"])   # images: identity
    on_meta = n2.normalize("action", item["action"].to("meta"))     # tables follow the input's device
    assert on_meta.device.type == "meta" and on_meta.shape == item["action"].shape
    tables = n2._params("action", item["action"].to("meta"))
    assert all(t is u for t, u in zip(tables, n2._params("action", torch.zeros(2, device="meta")), strict=True))
    assert n2._scale["action"].device.type == "cpu"                  # copied once per device, kept there
    assert torch.equal(n2(item)["action"], b["action"])
    with pytest.raises(LoaderError, match="normalizer"):
        Normalizer.from_dict({"format": "pickle"})


def test_dataloader_workers_give_the_same_items(store_path):
    root, _ = store_path
    ds = _dataset(root, cache_bytes=64 * 2**20)

    def items(workers):
        loader = DataLoader(ds, batch_size=5, shuffle=False, num_workers=workers)
        return [b for b in loader]

    serial, parallel = items(0), items(2)
    assert len(serial) == len(parallel) > 2
    for a, b in zip(serial, parallel, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key
    assert ds.cache is not None and ds.cache.worker_id is None     # main process decoded (num_workers=0)
    copy = pickle.loads(pickle.dumps(ds))                             # what a spawned worker gets
    key = "obs.observation.images.cam"
    assert copy.cache is None and torch.equal(copy[4][key], ds[4][key])


def test_video_is_decoded_lazily_and_cache_is_bounded(store_path):
    root, _ = store_path
    ds = _dataset(root, cache_bytes=30 * 24 * 32 * 3 + 1)            # room for one episode's frames
    assert ds.cache is None                                           # nothing decoded in __init__
    ds[0]
    ds[len(ds) - 1]
    assert len(ds.cache) == 1 and ds.cache.evictions == 1 and ds.cache.nbytes <= ds.cache_bytes
    cache = FrameCache(10)
    big = cache.get("x", lambda: np.zeros(100, np.uint8))
    assert len(big) == 100 and len(cache) == 0


def test_block_sampler_keeps_episodes_together(store_path):
    root, _ = store_path
    ds = _dataset(root, cache_bytes=30 * 24 * 32 * 3 + 1)            # one episode's frames
    sampler = EpisodeBlockSampler(ds, episodes_per_block=1, seed=3)
    order = list(sampler)
    assert sorted(order) == list(range(len(ds))) and order != list(range(len(ds)))
    eps = ds.item_episodes[order]
    assert np.count_nonzero(np.diff(eps)) == 1                        # one switch between the two episodes
    assert list(sampler) != order                                     # the next epoch is shuffled anew
    sampler.set_epoch(0)
    assert list(sampler) == order
    for i in order:
        ds[i]
    assert ds.cache.misses == 2                                       # each episode decoded once
    with pytest.raises(LoaderError, match="episodes_per_block"):
        EpisodeBlockSampler(ds, 0)


def test_bad_config_is_a_clear_error(store_path):
    root, _ = store_path
    with pytest.raises(LoaderError, match="unknown feature 'observation.stat'.*did you mean observation.state"):
        _dataset(root, obs=["observation.stat"])
    with pytest.raises(LoaderError, match="n_obs must be > 0"):
        _dataset(root, n_obs=0)
    with pytest.raises(LoaderError, match="horizon"):
        _dataset(root, horizon=0)
    with pytest.raises(LoaderError, match="action_rate"):
        _dataset(root, action_rate=-1.0)
    with pytest.raises(LoaderError, match="episodes \\[9\\]"):
        _dataset(root, episodes=[0, 9])
    with pytest.raises(LoaderError, match="neither an episode store"):
        WindowDataset(root.parent)
    with pytest.raises(LoaderError, match="must be low-dim, got image"):
        _dataset(root, action="observation.images.cam", obs=["observation.state"])


def test_array_source_matches_the_video_source(store_path):
    root, _ = store_path
    ds = _dataset(root)
    arrays = WindowDataset(ArraySource.from_source(ds.source), n_obs=3, horizon=6)
    assert len(arrays) == len(ds)
    for i in (0, 7, len(ds) - 1):
        a, b = ds[i], arrays[i]
        for key in a:
            assert torch.equal(a[key], b[key]), key


# --- LeRobot v3.0 ------------------------------------------------------------------------------------
FPS = 10
LENGTHS = (25, 20)


def _write_lerobot_v3(root):
    """A LeRobot v3.0 layout with two episodes packed in one data file and one video file."""
    (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True)
    (root / "data" / "chunk-000").mkdir(parents=True)
    video = root / "videos" / "observation.images.cam" / "chunk-000" / "file-000.mp4"
    video.parent.mkdir(parents=True)
    enc = VideoEncoder(video, codec="libx264", fps=FPS)
    rows, episodes, index, offset = [], [], 0, 0.0
    for ep, n in enumerate(LENGTHS):
        for k in range(n):
            rows.append({"observation.state": [float(k), float(ep)], "action": [k + 0.5, -1.0],
                         "timestamp": k / FPS, "frame_index": k, "episode_index": ep, "index": index + k,
                         "task_index": 0})
            enc.put(np.full((16, 16, 3), intensity(k + 2 * ep), np.uint8), round((offset + k / FPS) * 1e9))
        episodes.append({"episode_index": ep, "tasks": ["t"], "length": n, "data/chunk_index": 0,
                         "data/file_index": 0, "dataset_from_index": index, "dataset_to_index": index + n,
                         "videos/observation.images.cam/chunk_index": 0, "videos/observation.images.cam/file_index": 0,
                         "videos/observation.images.cam/from_timestamp": offset,
                         "videos/observation.images.cam/to_timestamp": offset + n / FPS,
                         "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
        index, offset = index + n, offset + n / FPS
    enc.close()
    vec = pa.list_(pa.float32(), 2)
    schema = pa.schema([("observation.state", vec), ("action", vec), ("timestamp", pa.float32()),
                        ("frame_index", pa.int64()), ("episode_index", pa.int64()), ("index", pa.int64()),
                        ("task_index", pa.int64())])
    pq.write_table(pa.Table.from_pylist(rows, schema), root / "data" / "chunk-000" / "file-000.parquet")
    pq.write_table(pa.Table.from_pylist(episodes), root / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    feature = {"dtype": "float32", "shape": [2], "names": None}
    info = {"codebase_version": "v3.0", "fps": FPS, "total_episodes": 2, "total_frames": sum(LENGTHS),
            "chunks_size": 1000, "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
            "features": {"observation.state": feature, "action": feature,
                         "observation.images.cam": {"dtype": "video", "shape": [16, 16, 3],
                                                    "names": ["height", "width", "channels"]},
                         "timestamp": {"dtype": "float32", "shape": [1], "names": None}}}
    (root / "meta" / "info.json").write_text(json.dumps(info))


def test_lerobot_v3_layout_loads_with_the_same_dataset(tmp_path):
    root = tmp_path / "lerobot"
    _write_lerobot_v3(root)
    ds = WindowDataset(root, n_obs=2, obs_rate=FPS, horizon=4, action_rate=FPS)
    assert isinstance(ds.source, LeRobotSource) and ds.obs_keys == ["observation.state", "observation.images.cam"]
    assert len(ds) == sum(LENGTHS)
    for i in (0, 3, 24, 25, 30, 44):
        ep, k = (0, i) if i < LENGTHS[0] else (1, i - LENGTHS[0])
        item = ds[i]
        assert item["episode_index"] == ep and item["t_ns"] == round(k * 1e9 / FPS)
        prev = max(k - 1, 0)
        np.testing.assert_allclose(item["obs.observation.state"].numpy(), [[prev, ep], [k, ep]])
        last = LENGTHS[ep] - 1
        np.testing.assert_allclose(item["action"].numpy()[:, 0], [min(k + j, last) + 0.5 for j in range(4)])
        assert item["action_is_pad"].tolist() == [k + j > last for j in range(4)]
        means = item["obs.observation.images.cam"].mean(dim=(1, 2, 3)).numpy() * 255
        np.testing.assert_allclose(means, [intensity(prev + 2 * ep), intensity(k + 2 * ep)], atol=3)
    assert ds.stats["observation.state"]["max"] == [24.0, 1.0]


def test_lerobot_export_of_a_store_loads(store_path, tmp_path):
    from data.formats import format_class
    from data.store import StoreError

    try:
        fmt = format_class("lerobot")
    except StoreError:
        pytest.skip("data/formats/lerobot.py not available")
    root, _ = store_path
    out = fmt().export(EpisodeStore(root), tmp_path / "lr", fps=10.0)
    exported = WindowDataset(out, n_obs=2, horizon=4)
    stored = WindowDataset(root, n_obs=2, horizon=4)                  # the same windows on the source store
    assert isinstance(exported.source, LeRobotSource) and exported.obs_keys == stored.obs_keys
    assert len(exported) == len(stored)
    for i in (3, 8, 25):                                              # items without padding
        a, b = exported[i], stored[i]
        assert a["episode_index"] == b["episode_index"] and not b["action_is_pad"].any()
        assert a["t_ns"] == b["t_ns"] - stored.sample_times(int(b["episode_index"]))[0]   # LeRobot: from 0
        for key in ("obs.observation.state", "action"):
            np.testing.assert_allclose(a[key].numpy(), b[key].numpy(), atol=1e-4)
        img_a, img_b = a["obs.observation.images.cam"], b["obs.observation.images.cam"]
        assert img_a.shape == img_b.shape == (2, 3, 24, 32)
        assert float((img_a - img_b).abs().mean()) * 255 < 3          # same frames, re-encoded
