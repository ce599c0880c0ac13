"""rosbag2 (MCAP) export/import: original stamps as log times, identical CDR, schemas, round trip, foreign bags."""

from __future__ import annotations

import numpy as np
import pytest
from rosbags.rosbag2 import Reader, StoragePlugin, Writer

from data.formats import format_class
from data.store import EpisodeStore, StoreError, StreamSpec
from robot_stack import convert, messages
from robot_stack.clock import Time

T0 = 1_700_000_000_000_000_000
TACTILE = "robot_stack_msgs/msg/TactileFrame"
STREAMS = [
    StreamSpec("joint_states", "/joint_states", "sensor_msgs/msg/JointState"),
    StreamSpec("wrench", "/ft/wrench", "geometry_msgs/msg/WrenchStamped"),
    StreamSpec("tactile", "/tactile/left", TACTILE, "raw"),
    StreamSpec("cam", "/cam/image_raw", "sensor_msgs/msg/Image", "video", codec="libx264", fps=20.0),
]


def tactile(i, stamp):
    return messages.make(TACTILE, header={"stamp": {"sec": stamp.nanoseconds // 10**9,
                                                    "nanosec": stamp.nanoseconds % 10**9}, "frame_id": "pad"},
                         sensor_id="left", rows=2, cols=3, marker_rest=np.arange(12, dtype=np.float32),
                         displacement=np.full(18, i, np.float32), embedding=np.zeros(0, np.float32),
                         normal_force=float(i) / 10)


def picture(k):
    img = np.zeros((48, 64, 3), np.uint8)
    img[:, : 8 * (k % 8)] = (200, 40, 90)
    return img


def _record(store, *, n=120, task="stack the cups", success=True):
    """JointState 200 Hz, wrench 100 Hz, tactile 25 Hz, camera 20 fps (64x48) over 0.6 s."""
    w = store.new_episode({"task": task}, STREAMS)
    for i in range(n):
        t = Time(T0 + i * 5_000_000 + (i % 3) * 1000)        # slightly irregular stamps
        js = convert.joint_state(["a", "b", "c"], [i, -i, 0.5 * i], stamp=t)
        w.write("joint_states", js, recv_ns=t.nanoseconds + 9)
        if i % 2 == 0:
            w.write("wrench", convert.wrench([i, 1, 2, 3, 4, 5], stamp=t, frame_id="ft"))
        if i % 8 == 0:
            w.write("tactile", tactile(i, t))
        if i % 10 == 0:
            w.write("cam", convert.image(picture(i // 10), "rgb8", stamp=t, frame_id="cam_optical"))
    return w.commit(success=success)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("rosbag")
    store = EpisodeStore.create(root / "ds")
    _record(store)
    _record(store, n=40, task="second", success=False)
    out = format_class("rosbag2")().export(store, root / "bags")
    return store, out


def _read(bag):
    with Reader(bag) as reader:
        topics = {c.topic: c.msgtype for c in reader.connections}
        rows = [(c.topic, t, bytes(raw)) for c, t, raw in reader.messages()]
        custom = reader.storage.metadata.custom
    return topics, rows, custom


def test_export_writes_every_message_with_its_original_stamp(exported):
    store, out = exported
    assert sorted(p.name for p in out.iterdir()) == ["ep-000000", "ep-000001"]
    bag = out / "ep-000000"
    assert (bag / "metadata.yaml").exists() and list(bag.glob("*.mcap"))
    topics, rows, custom = _read(bag)
    ep = store.episode(0)
    assert topics == {s.topic: s.type for s in STREAMS}
    assert [t for _, t, _ in rows] == sorted(t for _, t, _ in rows)        # log time order
    for spec in STREAMS:
        got = [(t, raw) for topic, t, raw in rows if topic == spec.topic]
        assert [t for t, _ in got] == ep.stamps(spec.key).tolist()          # log time == capture stamp
        if spec.encoding != "video":
            assert [raw for _, raw in got] == ep.table(spec.key).column("cdr").to_pylist()   # identical CDR
    assert custom["robot_stack.task"] == "stack the cups" and custom["robot_stack.success"] == "true"
    assert custom["robot_stack.lossy_topics"] == "/cam/image_raw"


def test_decoded_content_matches_and_images_are_close(exported):
    store, out = exported
    _, rows, _ = _read(out / "ep-000000")
    ep = store.episode(0)
    js = [messages.deserialize(raw, "sensor_msgs/msg/JointState") for topic, _, raw in rows if topic == "/joint_states"]
    np.testing.assert_array_equal(js[7].position, [7, -7, 3.5])
    assert js[7].header.stamp.nanosec == (T0 + 7 * 5_000_000 + 1000) % 10**9
    tf = [messages.deserialize(raw, TACTILE) for topic, _, raw in rows if topic == "/tactile/left"]
    assert tf[2].rows == 2 and tf[2].displacement[0] == 16 and tf[2].normal_force == pytest.approx(1.6)
    images = [(t, messages.deserialize(raw, "sensor_msgs/msg/Image")) for topic, t, raw in rows
              if topic == "/cam/image_raw"]
    assert len(images) == 12
    for k, (t, img) in enumerate(images):
        assert (img.encoding, img.height, img.width, img.header.frame_id) == ("rgb8", 48, 64, "cam_optical")
        assert t == img.header.stamp.sec * 10**9 + img.header.stamp.nanosec == ep.stamps("cam")[k]
        assert np.abs(convert.image_array(img).astype(int) - picture(k)).mean() < 8      # lossy video


def test_mcap_opens_with_the_mcap_reader_and_carries_ros2msg_schemas(exported):
    from mcap.reader import make_reader

    _, out = exported
    path = next((out / "ep-000000").glob("*.mcap"))
    with open(path, "rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        schemas = {s.name: s for s in summary.schemas.values()}
        channels = {c.topic: c for c in summary.channels.values()}
        count = sum(1 for _ in reader.iter_messages())
    assert {c.compression for c in summary.chunk_indexes} == {"zstd"}
    assert set(schemas) >= {"sensor_msgs/msg/JointState", TACTILE, "sensor_msgs/msg/Image"}
    assert all(s.encoding == "ros2msg" for s in schemas.values())
    assert b"float32[] displacement" in schemas[TACTILE].data
    assert schemas[TACTILE].data.decode() == messages.definition(TACTILE)
    assert channels["/tactile/left"].message_encoding == "cdr"
    assert count == 120 + 60 + 15 + 12


def test_import_of_the_export_round_trips(exported, tmp_path):
    store, out = exported
    dst = EpisodeStore.create(tmp_path / "back")
    fmt = format_class("rosbag2")()
    assert fmt.import_(out, dst) == [0, 1]
    a, b = store.episode(0), dst.episode(0)
    assert b.meta["task"] == "stack the cups" and b.meta["success"] is True
    assert dst.episode(1).meta["success"] is False
    by_topic = {s.topic: s for s in b.streams.values()}
    assert by_topic["/tactile/left"].encoding == "raw" and by_topic["/cam/image_raw"].encoding == "video"
    for spec in STREAMS:
        key = by_topic[spec.topic].key
        np.testing.assert_array_equal(b.stamps(key), a.stamps(spec.key))
        np.testing.assert_array_equal(b.table(key).column("recv_ns").to_numpy(), a.stamps(spec.key))
        if spec.encoding != "video":
            assert b.table(key).column("cdr").to_pylist() == a.table(spec.key).column("cdr").to_pylist()
    frames = list(b.frames(by_topic["/cam/image_raw"].key))
    assert len(frames) == 12 and np.abs(frames[3][1].astype(int) - picture(3)).mean() < 12
    only = fmt.import_(next((out / "ep-000001").glob("*.mcap")), dst, topics=["/joint_states"])   # a lone .mcap
    assert list(dst.episode(only[0]).streams) == ["joint_states"] and dst.episode(only[0]).meta["task"] == "second"


def test_a_bag_written_by_rosbags_directly_imports(tmp_path):
    bag = tmp_path / "foreign"
    ts = messages.typestore()
    with Writer(bag, version=9, storage_plugin=StoragePlugin.SQLITE3) as writer:
        js = writer.add_connection("/robot/joints", "sensor_msgs/msg/JointState", typestore=ts)
        cam = writer.add_connection("/depth", "sensor_msgs/msg/Image", typestore=ts)
        chat = writer.add_connection("/chatter", "std_msgs/msg/String", typestore=ts)
        bare = writer.add_connection("/unstamped", "sensor_msgs/msg/JointState", typestore=ts)
        png = writer.add_connection("/cam/compressed", "sensor_msgs/msg/CompressedImage", typestore=ts)
        other = writer.add_connection("/custom", "other_msgs/msg/Thing", msgdef="string data",
                                      rihs01="RIHS01_" + "0" * 64)
        for i in range(30):
            stamp = Time(T0 + i * 10_000_000)
            msg = convert.joint_state(["j"], [float(i)], stamp=stamp)
            writer.write(js, stamp.nanoseconds + 500, messages.serialize(msg))
            if i < 3:                                                # a publisher that leaves header.stamp at 0
                raw = convert.joint_state(["j"], [float(i)], stamp=Time(0))
                writer.write(bare, stamp.nanoseconds + 600, messages.serialize(raw))
            if i % 10 == 0:
                depth = convert.image(np.full((4, 5), i, np.uint16), "16UC1", stamp=stamp)
                writer.write(cam, stamp.nanoseconds + 700, messages.serialize(depth))
                writer.write(chat, stamp.nanoseconds + 900, messages.serialize(messages.make("std_msgs/msg/String",
                                                                                              data=f"hi {i}")))
                writer.write(png, stamp.nanoseconds + 800, messages.serialize(_png(picture(i // 10), stamp)))
                writer.write(other, stamp.nanoseconds, messages.serialize(messages.make("std_msgs/msg/String")))
    store = EpisodeStore.create(tmp_path / "ds")
    [index] = format_class("rosbag2")().import_(bag, store, task="foreign")
    ep = store.episode(index)
    assert ep.meta["task"] == "foreign" and ep.meta["source"]["format"] == "rosbag2"
    assert {k: s.encoding for k, s in ep.streams.items()} == {"robot.joints": "columnar", "depth": "raw",
                                                              "chatter": "columnar", "cam.compressed": "video",
                                                              "unstamped": "columnar"}
    assert ep.meta["source"]["skipped_topics"] == ["/custom"]          # a type the typestore does not know
    assert ep.stamps("robot.joints")[3] == T0 + 30_000_000                      # header stamp
    assert ep.table("robot.joints").column("recv_ns").to_numpy()[3] == T0 + 30_000_500    # log time
    np.testing.assert_array_equal(ep.column("robot.joints", "position")[:, 0], np.arange(30))
    assert ep.stamps("chatter").tolist() == [T0 + 900, T0 + 100_000_900, T0 + 200_000_900]   # no header: log time
    assert ep.table("chatter").column("data").to_pylist()[1] == "hi 10"
    assert ep.stamps("unstamped").tolist() == [T0 + 600, T0 + 10_000_600, T0 + 20_000_600]    # zero stamp: log time
    assert ep.meta["source"]["unstamped_messages"] == {"/unstamped": 3}
    depth = [m for _, m in ep.messages("depth")]
    assert convert.image_array(depth[2])[0, 0, 0] == 20
    frames = list(ep.frames("cam.compressed"))
    assert [t for t, _ in frames] == [T0, T0 + 100_000_000, T0 + 200_000_000]
    assert np.abs(frames[1][1].astype(int) - picture(1)).mean() < 8
    with pytest.raises(StoreError, match="does not know"):
        format_class("rosbag2")().import_(bag, store, topics=["/custom"])


def _png(rgb, stamp):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return messages.make("sensor_msgs/msg/CompressedImage", header=convert.header(stamp, "cam"), format="png",
                         data=np.frombuffer(buf.getvalue(), np.uint8))


def test_bad_input_is_a_clear_store_error(exported, tmp_path):
    _, out = exported
    store = EpisodeStore.create(tmp_path / "ds")
    fmt = format_class("rosbag2")()
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("hello")
    with pytest.raises(StoreError, match="not a rosbag2 bag"):
        fmt.import_(tmp_path / "junk", store)
    with pytest.raises(StoreError, match="not a rosbag2 bag"):
        fmt.import_(tmp_path / "junk" / "notes.txt", store)
    (tmp_path / "bad.mcap").write_bytes(b"this is not mcap")
    with pytest.raises(StoreError, match="not a readable rosbag2 bag"):
        fmt.import_(tmp_path / "bad.mcap", store)
    with pytest.raises(StoreError, match="no topic /nope"):
        fmt.import_(out / "ep-000000", store, topics=["/nope"])
    with pytest.raises(StoreError, match="does not exist"):
        fmt.import_(tmp_path / "missing", store)
    with pytest.raises(StoreError, match="exists already"):
        fmt.export(exported[0], out)
    assert store.episodes() == []
