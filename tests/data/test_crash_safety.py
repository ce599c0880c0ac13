"""Crash safety of the recorder: SIGKILL at random moments, disk failures mid-episode.

A child process (this file run as a script) holds a source node (JointState at 1 kHz, 64x48 images
at 30 fps, TactileFrame at 24 fps, stamped with wall time) and a RecorderNode on the inproc
transport; a scheduler in it starts/stops/discards episodes with EpisodeEvents and logs what it did
on stdout. The test kills it with SIGKILL after a random (seeded) delay, many times, then checks
every committed episode and recovers the open ones with `robot-stack dataset recover`.

Failing writes without filling a disk (we run as root in CI, so chmod does not stop us):
- ENOSPC: the next segment's temporary file is a symlink to /dev/full, whose writes fail with
  ENOSPC in the kernel.
- EFBIG: the child lowers RLIMIT_FSIZE (SIGXFSZ ignored) mid-episode, so every write that grows a
  file past the limit fails, in the flush and in the video encoder threads alike.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

FLUSH_S = 0.5
CLI = [sys.executable, "-m", "robot_stack.cli.main"]
JS, IMAGE, TACTILE = "sensor_msgs/msg/JointState", "sensor_msgs/msg/Image", "robot_stack_msgs/msg/TactileFrame"
EVENT = "robot_stack_msgs/msg/EpisodeEvent"


def recorder_config(dataset: Path) -> dict:
    return {"dataset": str(dataset), "task": "crash test", "min_free_mb": 1, "flush_period_s": FLUSH_S,
            "streams": [{"topic": "/joint_states", "type": JS, "fps": 1000},
                        {"topic": "/cam/image_raw", "type": IMAGE, "key": "cam", "fps": 30},
                        {"topic": "/tactile", "type": TACTILE, "key": "tactile", "fps": 24}]}


def frame_value(seq: int) -> int:
    return (seq * 37) % 200 + 20


# --- the child process ----------------------------------------------------------------------------
def _emit(**values) -> None:
    print(json.dumps(values), flush=True)


def _source(ctx):
    import robot_stack as rs
    from robot_stack import convert, messages
    from robot_stack.clock import Time

    node = rs.Node("source", context=ctx, publish_stats=False)
    js, cam = node.create_publisher(JS, "/joint_states", 10), node.create_publisher(IMAGE, "/cam/image_raw", 10)
    tactile = node.create_publisher(TACTILE, "/tactile", 10)
    seq = {"js": 0, "cam": 0, "tactile": 0}

    def pub_js():
        seq["js"] += 1
        js.publish(convert.joint_state([f"j{i}" for i in range(7)], np.full(7, seq["js"] * 1e-3),
                                       stamp=Time(time.time_ns())))

    def pub_cam():
        seq["cam"] += 1
        img = np.full((48, 64, 3), frame_value(seq["cam"]), np.uint8)
        cam.publish(convert.image(img, "rgb8", stamp=Time(time.time_ns()), frame_id=f"cam{seq['cam']}"))

    def pub_tactile():
        seq["tactile"] += 1
        tactile.publish(messages.make(TACTILE, header=convert.header(Time(time.time_ns())), sensor_id="pad",
                                      rows=7, cols=9, displacement=np.full(189, seq["tactile"], np.float32)))

    node.create_timer(0.001, pub_js)
    node.create_timer(1 / 30, pub_cam)
    node.create_timer(1 / 24, pub_tactile)
    return node


def _scheduler(ctx, recorder, rng):
    """Episodes of 1-3 s with 0.05-0.3 s gaps; some discarded, some marked success."""
    import robot_stack as rs
    from robot_stack import messages

    node = rs.Node("scheduler", context=ctx, publish_stats=False)
    events = node.create_publisher(EVENT, "episode_events", 10)
    plan = {"next": time.monotonic() + 0.1, "logged_start": True}

    def send(kind: int) -> None:
        events.publish(messages.make(EVENT, event=kind, source="crash_test"))

    def tick():
        if not plan["logged_start"] and recorder.writer is not None:
            _emit(ev="start", episode=recorder.writer.index, t_ns=plan["t_ns"])
            plan["logged_start"] = True
        if time.monotonic() < plan["next"]:
            return
        if recorder.writer is None:
            plan.update(t_ns=time.time_ns(), logged_start=False, next=time.monotonic() + rng.uniform(1.0, 3.0))
            send(0)
        else:
            kind = 2 if rng.random() < 0.15 else 1
            if kind == 1 and rng.random() < 0.5:
                send(3)
            _emit(ev="discard" if kind == 2 else "stop", episode=recorder.writer.index, t_ns=time.time_ns())
            send(kind)
            plan["next"] = time.monotonic() + rng.uniform(0.05, 0.3)

    node.create_timer(0.01, tick)
    return node


def child_record(dataset: str, seed: int, fsize_after_s: float = 0.0) -> int:
    import robot_stack as rs
    from data.recorder import RecorderNode
    from data.recorder_config import parse_config

    with rs.Context("inproc") as ctx:
        rec = RecorderNode("recorder", config=parse_config(recorder_config(Path(dataset))), context=ctx,
                           publish_stats=False)
        nodes = [_source(ctx), rec]
        if not fsize_after_s:
            nodes.append(_scheduler(ctx, rec, np.random.default_rng(seed)))
        ex = rs.Executor()
        for n in nodes:
            ex.add_node(n)
        _emit(ev="ready", t_ns=time.time_ns())
        if not fsize_after_s:
            ex.spin()                                  # until SIGKILL
        return _child_file_size_limit(ex, rec, fsize_after_s)


def _child_file_size_limit(ex, rec, after_s: float) -> int:
    """Episode 0 whole; episode 1 hits RLIMIT_FSIZE after `after_s`; then the limit goes and episode 2 works."""
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)     # write() fails with EFBIG instead of killing us
    rec.start_episode()
    ex.spin_for(1.0)
    rec.stop_episode()
    rec.wait_idle()
    rec.start_episode()
    ex.spin_for(after_s)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024, hard))
    ex.spin_until(lambda: rec.state == "error", 5.0)
    ex.spin_for(0.5)                                   # keeps running, receiving, not recording
    _emit(ev="failed", state=rec.state, error=rec.error, failed=rec.failed_episodes, t_ns=time.time_ns())
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    rec.wait_idle()
    index = rec.start_episode()
    ex.spin_for(0.5)
    rec.stop_episode()
    rec.wait_idle()
    _emit(ev="after", episode=index, committed=rec.committed, state=rec.state)
    rec.destroy_node()
    return 0


# --- checks ---------------------------------------------------------------------------------------
def check_episode(ep, *, recovered: bool) -> None:
    """Meta valid, parquet readable, row counts = meta, frames decodable (= rows), stamps increasing."""
    from data.video import decode_frames

    assert ep.meta["episode_index"] == ep.index and bool(ep.meta.get("recovered")) == recovered
    for key, spec in ep.streams.items():
        table = ep.table(key)
        assert table.num_rows == ep.meta["stream_stats"][key]["count"], (ep.index, key)
        stamps = table.column("stamp_ns").to_numpy()
        assert np.all(np.diff(stamps) > 0), (ep.index, key)
        if spec.encoding != "video" or table.num_rows == 0:
            continue
        frames = list(decode_frames(ep.path / f"{key}.mp4", size=(48, 64)))
        assert len(frames) >= table.num_rows if recovered else len(frames) == table.num_rows, (ep.index, key)
        seqs = [int(f[3:]) for f in table.column("frame_id").to_pylist()]
        for i in range(0, table.num_rows, 7):           # each row's frame is the one published with it
            assert abs(frames[i].mean() - frame_value(seqs[i])) < 12, (ep.index, key, i)


def _run_child(dataset: Path, seed: int, lifetime_s: float) -> tuple[list[dict], int]:
    proc = subprocess.Popen([sys.executable, __file__, "record", str(dataset), str(seed)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    ready = proc.stdout.readline()
    assert '"ready"' in ready, proc.stderr.read()[-3000:] if proc.poll() is not None else ready
    time.sleep(lifetime_s)
    kill_ns = time.time_ns()
    proc.send_signal(signal.SIGKILL)
    out, _err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, _err[-3000:]
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")], kill_ns


def kill_many_times(tmp_path: Path, kills: int, seed: int) -> dict:
    from data.store import EpisodeStore

    dataset = tmp_path / "ds"
    rng = np.random.default_rng(seed)
    ended: dict[int, int] = {}          # open episode -> when its recording ended (stop or kill), ns
    last: dict[int, tuple[str, int]] = {}   # episode -> its last logged event and the kill that followed
    store = EpisodeStore(dataset)
    for k in range(kills):
        events, kill_ns = _run_child(dataset, seed * 1000 + k, float(rng.uniform(0.8, 3.5)))
        ends: dict[int, int] = {}
        for e in events:                # indices of discarded episodes are reused: the last event counts
            if e["ev"] in ("start", "stop", "discard"):
                ends[e["episode"]] = kill_ns if e["ev"] == "start" else e["t_ns"]
                last[e["episode"]] = (e["ev"], kill_ns - e["t_ns"])
        for index in store.open_episodes():
            ended.setdefault(index, ends.get(index, kill_ns))
    opened, committed = set(store.open_episodes()), set(store.episodes())
    out = subprocess.run([*CLI, "dataset", "recover", str(dataset)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert store.open_episodes() == []
    losses, video_losses = [], []
    for ep in store:
        recovered = ep.index in opened and ep.index not in committed
        check_episode(ep, recovered=recovered)
        event, before_kill_ns = last.get(ep.index, ("", 0))
        assert event != "discard" or before_kill_ns < 0.1e9, f"discarded episode {ep.index} came back"
        if recovered:
            stats = ep.meta["stream_stats"]
            end = ended[ep.index]
            losses.append((end - stats["joint_states"]["last_ns"]) / 1e9 if stats["joint_states"]["count"]
                          else None)
            video_losses.append((end - stats["cam"]["last_ns"]) / 1e9 if stats["cam"]["count"] else None)
    return {"kills": kills, "episodes": len(store), "recovered": len(opened), "low_dim_loss_s": losses,
            "video_loss_s": video_losses}


def _report(summary: dict) -> None:
    loss = [x for x in summary["low_dim_loss_s"] if x is not None]
    video = [x for x in summary["video_loss_s"] if x is not None]
    print(f"\ncrash test: {summary['kills']} kills, {summary['episodes']} episodes, {summary['recovered']} "
          f"recovered ({len(loss)} with low-dim data, {len(video)} with video); max data lost: low-dim "
          f"{max(loss, default=0):.3f} s, video {max(video, default=0):.3f} s")
    assert all(-0.05 <= x <= 2 * FLUSH_S + 0.2 for x in loss), loss    # flushed every 0.5 s: ~1 s lost at most
    assert all(-0.05 <= x <= 1.5 for x in video), video    # 1 s fragments (GOP = fps) + the encoder delay


# --- tests ----------------------------------------------------------------------------------------
def test_sigkill_a_few_times_then_recover(tmp_path):
    summary = kill_many_times(tmp_path, kills=3, seed=1)
    _report(summary)
    assert summary["episodes"] >= 3


@pytest.mark.slow
def test_sigkill_at_random_points_many_times(tmp_path):
    summary = kill_many_times(tmp_path, kills=10, seed=7)
    _report(summary)
    assert summary["episodes"] >= 10 and summary["recovered"] >= 5


def test_disk_full_mid_episode_stops_cleanly(ctx, tmp_path):
    """ENOSPC from the kernel (/dev/full) on a flush: the episode stops, the node lives, the data recovers."""
    import robot_stack as rs
    from data.recorder import RecorderNode
    from data.recorder_config import parse_config
    from data.store import EpisodeStore

    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    rec = RecorderNode("recorder", config=parse_config(recorder_config(tmp_path / "ds")), context=ctx,
                       publish_stats=False)
    src = _source(ctx)
    ex = rs.Executor()
    ex.add_node(src)
    ex.add_node(rec)
    try:
        rec.start_episode()
        rec.stop_episode()                       # episode 0: committed, must survive
        rec.wait_idle()
        index = rec.start_episode()
        ex.spin_for(0.7)                         # >= 1 flush on disk
        writer = rec.writer
        seg_dir = writer.dir / "joint_states"
        flushed = sum(pq.read_metadata(f).num_rows for f in seg_dir.glob("seg-*.parquet"))
        assert flushed >= 1
        for n in range(writer._segments["joint_states"], writer._segments["joint_states"] + 20):
            (seg_dir / f".seg-{n:06d}.parquet.tmp").symlink_to("/dev/full")
        assert ex.spin_until(lambda: rec.state == "error", 3.0)
        assert "No space left on device" in rec.error and f"recover {rec.store.root} --episode {index}" in rec.error
        assert rec.writer is None and rec.failed_episodes == [index]
        received = rec.counters["joint_states"].received
        ex.spin_for(0.3)                         # still alive and receiving
        assert rec.counters["joint_states"].received > received + 50
        for link in seg_dir.glob(".seg-*.tmp"):
            link.unlink()
        assert rec.start_episode() == index + 1 and rec.state == "recording"    # space is back: records again
        ex.spin_for(0.2)
        rec.stop_episode()
        rec.wait_idle()
    finally:
        rec.destroy_node()
        src.destroy_node()
    store = EpisodeStore(tmp_path / "ds")
    assert store.episodes() == [0, index + 1] and store.open_episodes() == [index]
    store.recover(index)
    check_episode(store.episode(index), recovered=True)
    assert store.episode(index).meta["stream_stats"]["joint_states"]["count"] == flushed   # all that was flushed


def test_file_size_limit_mid_episode_in_a_recorder_process(tmp_path):
    """EFBIG (RLIMIT_FSIZE) in the flush and the encoder threads: clean stop, process lives, data kept."""
    from data.store import EpisodeStore

    proc = subprocess.run([sys.executable, __file__, "fsize", str(tmp_path / "ds"), "0", "1.2"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = {e["ev"]: e for e in map(json.loads, filter(None, proc.stdout.splitlines()))}
    failed = events["failed"]
    assert failed["state"] == "error" and failed["failed"] == [1]
    assert "File too large" in failed["error"] and "dataset recover" in failed["error"]
    assert events["after"]["committed"] == [0, 2] and events["after"]["state"] == "recording" or \
        events["after"]["state"] == "idle"
    store = EpisodeStore(tmp_path / "ds")
    assert store.episodes() == [0, 2] and store.open_episodes() == [1]
    for i in (0, 2):
        check_episode(store.episode(i), recovered=False)
    store.recover(1)
    ep = store.episode(1)
    check_episode(ep, recovered=True)
    assert ep.duration_s >= 1.2 - 2 * FLUSH_S       # flushed until the limit: at most ~1 s of the 1.2 s lost


if __name__ == "__main__":
    mode, path, child_seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    sys.exit(child_record(path, child_seed, float(sys.argv[4]) if mode == "fsize" else 0.0))
