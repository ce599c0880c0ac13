"""`RecorderNode`: configured topics -> episodes in an `EpisodeStore` (DESIGN.md "Data").

Launch it like any node (`class: data.recorder:RecorderNode`), or with `robot-stack record`.
Parameters: `config` (a recorder YAML file, see `data.recorder_config`), `dataset` and `task`
(override the file's), `autostart` (record without EpisodeEvents: the first episode starts with the
first message), `episode_duration_s` (stop, commit and start the next episode every S seconds),
`max_episodes` (then `finished` turns true).

- Every stream is written from its subscription callback with `EpisodeWriter.write(key, msg,
  recv_ns)`: its own rate, its capture stamps, no resampling. Video frames go to the store's
  encoder threads; the callbacks never block on encoding. A message that fails to encode is
  counted (`bad`) and dropped.
- A timer hands the buffered rows over every `flush_period_s` (<= 1 s); the segment writes
  (parquet + fsync), commits, discards and late success marks run in order on one background
  thread (`recorder-io`), so the executor keeps taking messages off the transport meanwhile (an
  fsync in the executor delayed shared-memory image descriptors until their ring slots were reused).
- `robot_stack_msgs/EpisodeEvent` on `events_topic`: START opens an episode, STOP commits it,
  DISCARD drops it, SUCCESS / FAILURE mark the open episode (or, when none is open, the last one
  committed, or the one named by a numeric `episode_id`) and are stored in meta.json.
- Disk: the dataset is checked for writability and `min_free_mb` before anything is recorded
  (a `StoreError`). Below `min_free_mb` while recording, the episode is stopped and committed.
  An OSError while writing (ENOSPC, EFBIG, EIO...) stops the episode where it is: finished
  episodes stay, the open one stays recoverable (`robot-stack dataset recover`), the node lives on
  in state `error` until the next START succeeds.
- `diagnostic_msgs/DiagnosticStatus` on `~/status` at `status_hz`: state, episode, duration,
  per-stream counts, rates, drops and encoder queue depth.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import robot_stack
from data.recorder_config import RecorderConfig, RecordStream, check_disk, load_config, read_calibration
from data.store import EpisodeStore, StoreError, write_json
from data.video import VideoError
from data.writer import EpisodeWriter
from robot_stack import messages
from robot_stack.errors import ParameterError
from robot_stack.node import Node
from robot_stack.qos import QoSProfile, Reliability

EPISODE_EVENT = "robot_stack_msgs/msg/EpisodeEvent"
DIAGNOSTIC_STATUS = "diagnostic_msgs/msg/DiagnosticStatus"
START, STOP, DISCARD, SUCCESS, FAILURE = range(5)
IDLE, RECORDING, ERROR = "idle", "recording", "error"
AUTOSTART_WAIT_S = 5.0     # `autostart`: the first episode starts with the first message, or after this


@dataclass
class StreamCounters:
    received: int = 0
    bad: int = 0          # failed to encode: counted and dropped
    last_received: int = 0
    rate_hz: float = 0.0


class _Jobs:
    """One background thread running episode jobs (segment writes, commit, discard, mark) in order."""

    def __init__(self, log):
        self._queue: queue.Queue = queue.Queue()
        self._log = log
        self._thread = threading.Thread(target=self._run, name="recorder-io", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], Any]) -> None:
        self._queue.put(fn)

    def idle(self) -> bool:
        return self._queue.unfinished_tasks == 0

    def _run(self) -> None:
        while (fn := self._queue.get()) is not None:
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - a failed job is logged; the recorder goes on
                self._log.error(f"episode job failed: {type(exc).__name__}: {exc}")
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def close(self, timeout: float = 60.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)


class RecorderNode(Node):
    def __init__(self, node_name: str = "recorder", *, config: RecorderConfig | None = None, **node_kwargs: Any):
        super().__init__(node_name, **node_kwargs)
        path = self.declare_parameter("config", "", description="recorder YAML file").value
        overrides = {k: self.declare_parameter(k, "").value for k in ("dataset", "task")}
        self.autostart = self.declare_parameter("autostart", False).value
        self.episode_duration_s = self.declare_parameter("episode_duration_s", 0.0).value
        self.max_episodes = self.declare_parameter("max_episodes", 0).value
        if config is None:
            if not path:
                raise ParameterError(f"node '{node_name}': parameter 'config' (a recorder YAML file) is required")
            config = load_config(path)
        self.config = config.with_overrides(**overrides)
        self.store = EpisodeStore.create(Path(self.config.dataset).expanduser(), robot=self.config.robot_name)
        self.free_mb = check_disk(self.store.root, self.config.min_free_mb)
        self.calibration = read_calibration(self.config.calibration)
        if any(s.encoding == "video" for s in self.config.streams):
            import av  # noqa: F401  (here, not in an encoder thread at the first frame of the first episode)
        self.state, self.error = IDLE, ""
        self.writer: EpisodeWriter | None = None
        self.episode_index: int | None = None
        self.committed: list[int] = []
        self.commit_times: list[float] = []
        self.failed_episodes: list[int] = []
        self.episodes_stopped = 0             # STOPs handed to the commit thread
        self._overflow0: dict[str, tuple[int, int]] = {}    # receive-queue overflows, transport drops at START
        self._started_at = 0.0
        self._success: bool | None = None
        self._last_status = time.monotonic()
        self._jobs = _Jobs(self.get_logger())
        self._lock = threading.Lock()           # self.writer is swapped by the executor and the job thread
        self.counters = {s.key: StreamCounters() for s in self.config.streams}
        self.subs = {s.key: self._subscribe(s) for s in self.config.streams}
        self.create_subscription(EPISODE_EVENT, self.config.events_topic, self.on_event, 50)
        self.status_pub = self.create_publisher(DIAGNOSTIC_STATUS, "~/status", 10)
        self.create_timer(self.config.flush_period_s, self._on_flush, name="flush")
        self.create_timer(1.0 / self.config.status_hz, self.publish_status, name="status")
        self.get_logger().info(f"recording {len(self.subs)} streams into {self.store.root} "
                               f"({self.free_mb:.0f} MB free)")
        self._autostart_at = time.monotonic() + AUTOSTART_WAIT_S if self.autostart else None

    def _subscribe(self, stream: RecordStream):
        reliability = Reliability.RELIABLE if stream.reliability == "reliable" else Reliability.BEST_EFFORT
        qos = QoSProfile(depth=stream.depth, reliability=reliability)
        return self.create_subscription(stream.type, stream.topic, lambda msg, k=stream.key: self.on_message(k, msg),
                                        qos)

    # --- messages -------------------------------------------------------------------------------
    def on_message(self, key: str, msg: Any) -> None:
        counters = self.counters[key]
        counters.received += 1
        if self._autostart_at is not None:        # the first message: publishers are discovered
            self._autostart_at = None
            self.start_episode()
        writer = self.writer
        if writer is None:
            return
        try:
            writer.write(key, msg, self.get_clock().now().nanoseconds)
        except (OSError, VideoError) as exc:      # the disk or an encoder failed: stop the episode
            self._fail(writer, exc)
        except Exception as exc:  # noqa: BLE001 - bad input is counted and dropped, never crashes the node
            counters.bad += 1
            if counters.bad == 1 or counters.bad % 1000 == 0:
                self.get_logger().warning(f"stream '{key}': dropped a message that failed to encode "
                                          f"({type(exc).__name__}: {exc}); {counters.bad} so far")

    def on_event(self, msg: Any) -> None:
        event = int(msg.event)
        if event == START:
            self.start_episode(note=msg.note)
        elif event == STOP:
            self.stop_episode()
        elif event == DISCARD:
            self.discard_episode()
        elif event in (SUCCESS, FAILURE):
            target = int(msg.episode_id) if msg.episode_id.strip().isdigit() else None
            self.mark(event == SUCCESS, episode=target)

    # --- episodes -------------------------------------------------------------------------------
    def start_episode(self, *, task: str = "", note: str = "") -> int | None:
        """Open an episode; None (and state `error`, logged) when the disk refuses."""
        if self.writer is not None:
            self.get_logger().warning(f"START ignored: episode {self.episode_index} is still recording")
            return None
        try:
            self.store = EpisodeStore.create(self.store.root)
            self.free_mb = check_disk(self.store.root, self.config.min_free_mb)
            self.writer = self.store.new_episode(self._meta(task, note), [s.spec() for s in self.config.streams])
        except (StoreError, OSError) as exc:
            self.state, self.error = ERROR, f"cannot start an episode: {exc}"
            self.get_logger().error(self.error)
            return None
        self.episode_index, self.state, self.error = self.writer.index, RECORDING, ""
        self._started_at, self._success = time.monotonic(), None
        for c in self.counters.values():
            c.bad = 0
        self._overflow0 = {k: (s.overflowed, s.dropped) for k, s in self.subs.items()}
        self.get_logger().info(f"episode {self.episode_index} started ({self.writer.dir})")
        return self.episode_index

    def _meta(self, task: str, note: str) -> dict[str, Any]:
        return {
            "task": task or self.config.task, "note": note,
            "robot": {"name": self.config.robot_name, "calibration_file": self.config.calibration,
                      "calibration": self.calibration},
            "topics": {s.topic: s.type for s in self.config.streams},
            "recorder": {**self.config.as_meta(), "node": self.get_fully_qualified_name(),
                         "transport": self.context.transport_name, "pid": os.getpid(),
                         "hostname": socket.gethostname()},
            "platform_version": robot_stack.__version__,
        }

    def stop_episode(self) -> int | None:
        """Commit the open episode (in the background); returns its index."""
        writer = self._take_writer("STOP")
        if writer is None:
            return None
        success, extra = self._success, {"recorder_drops": self._drops(writer)}

        def commit() -> None:
            if writer.index in self.failed_episodes:       # a flush failed after STOP: leave it recoverable
                return
            t0 = time.perf_counter()
            try:
                writer.commit(success=success, **extra)
            except (OSError, StoreError) as exc:
                self.failed_episodes = [*self.failed_episodes, writer.index]
                self._report_failure(writer.index, exc)
                return
            self.commit_times.append(time.perf_counter() - t0)
            self.committed.append(writer.index)
            self.get_logger().info(f"episode {writer.index} committed in {self.commit_times[-1]:.3f} s "
                                   f"({writer.duration_s:.1f} s, {sum(writer.counts.values())} messages)")

        self.episodes_stopped += 1
        self._jobs.submit(commit)
        self._after_stop()
        return writer.index

    def discard_episode(self) -> int | None:
        writer = self._take_writer("DISCARD")
        if writer is not None:
            writer.mark_discarded()
            self._jobs.submit(writer.discard)
            self.get_logger().info(f"episode {writer.index} discarded")
            self._after_stop()
        return None if writer is None else writer.index

    def mark(self, success: bool, *, episode: int | None = None) -> None:
        """Success flag of the open episode, else of `episode` or the last committed one."""
        if self.writer is not None and episode in (None, self.writer.index):
            self._success = success
            return
        self._jobs.submit(lambda: self._mark_committed(success, episode))

    def _mark_committed(self, success: bool, episode: int | None) -> None:
        index = episode if episode is not None else (self.committed[-1] if self.committed else None)
        if index is None or index not in self.store.episodes():
            self.get_logger().warning(f"success mark ignored: no committed episode {'' if index is None else index}")
            return
        path = self.store.episode_dir(index) / "meta.json"
        meta = json.loads(path.read_text())
        meta["success"] = success
        write_json(path, meta)                 # tmp file + fsync + rename: atomic
        self.get_logger().info(f"episode {index} marked {'success' if success else 'failure'}")

    def _take_writer(self, what: str) -> EpisodeWriter | None:
        with self._lock:
            writer, self.writer = self.writer, None
        if writer is None:
            self.get_logger().warning(f"{what} ignored: no episode is recording")
        return writer

    def _after_stop(self) -> None:
        self.state = IDLE if self.state == RECORDING else self.state
        more = self.max_episodes <= 0 or self.episodes_stopped < self.max_episodes
        if self.autostart and self.episode_duration_s > 0 and more and self.state != ERROR:
            self.start_episode()

    @property
    def finished(self) -> bool:
        """`max_episodes` committed (and nothing left to do), or a storage failure in auto mode."""
        if self.writer is not None or self._autostart_at is not None or not self._jobs.idle():
            return False
        done = self.max_episodes > 0 and self.episodes_stopped >= self.max_episodes
        return done or (self.autostart and self.state == ERROR)

    # --- durability -----------------------------------------------------------------------------
    def _on_flush(self) -> None:
        if self._autostart_at is not None and time.monotonic() >= self._autostart_at:
            self._autostart_at = None             # nothing arrived yet: start anyway
            self.start_episode()
        writer = self.writer
        if writer is None:
            return
        failed = next((e.error for e in writer.encoders.values() if e.error is not None), None)
        if failed is not None:
            self._fail(writer, failed)
            return
        taken = writer.take_rows()                                  # cheap; the disk work runs in the
        self._jobs.submit(lambda: self._write_segments(writer, taken))   # background, so receiving goes on
        try:
            self.free_mb = shutil.disk_usage(self.store.root).free / 2**20
        except OSError as exc:
            self._fail(writer, exc)
            return
        if self.free_mb < self.config.min_free_mb:
            self.error = (f"episode {writer.index} stopped: {self.free_mb:.0f} MB free < min_free_mb "
                          f"{self.config.min_free_mb:g}")
            self.get_logger().error(self.error)
            self.state = ERROR
            self.stop_episode()
        elif self.episode_duration_s > 0 and time.monotonic() - self._started_at >= self.episode_duration_s:
            self.stop_episode()

    def _write_segments(self, writer: EpisodeWriter, taken: dict) -> None:
        if writer.index in self.failed_episodes:
            return
        try:
            writer.write_segments(taken)
        except OSError as exc:
            self._fail(writer, exc)

    def _fail(self, writer: EpisodeWriter, exc: BaseException) -> None:
        """A write failed mid-episode: stop it where it is (recoverable), keep the node alive."""
        with self._lock:
            if writer.index in self.failed_episodes:
                return
            if self.writer is writer:
                self.writer = None
            self.failed_episodes = [*self.failed_episodes, writer.index]   # a pending commit leaves it open
        self._report_failure(writer.index, exc)

        def abandon() -> None:
            writer.closed = True
            for enc in writer.encoders.values():
                try:
                    enc.close()
                except VideoError:
                    pass

        self._jobs.submit(abandon)

    def _report_failure(self, index: int, exc: BaseException) -> None:
        cause = exc if isinstance(exc, OSError) else (exc.__cause__ or exc)
        reason = f"{type(cause).__name__}: {getattr(cause, 'strerror', None) or cause}"
        if self.writer is None:                 # (a later episode may be recording fine meanwhile)
            self.state = ERROR
        self.error = (f"episode {index} stopped: writing to {self.store.root} failed ({reason}); finished episodes "
                      f"are kept; after freeing space run `robot-stack dataset recover {self.store.root} "
                      f"--episode {index}` to keep what was flushed")
        self.get_logger().error(self.error)

    # --- status ---------------------------------------------------------------------------------
    def _drops(self, writer: EpisodeWriter | None) -> dict[str, dict[str, int]]:
        out = {}
        for key, c in self.counters.items():
            sub = self.subs[key]
            late0, lost0 = self._overflow0.get(key, (0, 0))
            late, lost = sub.overflowed - late0, sub.dropped - lost0
            queue_full = writer.dropped[key] if writer is not None else 0
            out[key] = {"bad": c.bad, "queue_overflow": late, "transport": lost, "encoder_queue_full": queue_full,
                        "total": c.bad + late + lost + queue_full}
        return out

    def status(self) -> dict[str, Any]:
        """State, episode, duration and per-stream counts/rates/drops (what ~/status carries)."""
        now = time.monotonic()
        dt, self._last_status = max(now - self._last_status, 1e-6), now
        writer = self.writer
        drops = self._drops(writer)
        streams = {}
        for key, c in self.counters.items():
            c.rate_hz, c.last_received = (c.received - c.last_received) / dt, c.received
            enc = writer.encoders.get(key) if writer is not None else None
            streams[key] = {"count": writer.counts[key] if writer is not None else 0, "received": c.received,
                            "rate_hz": c.rate_hz, "dropped": drops[key]["total"],
                            "queue": enc.pending if enc is not None else 0}
        return {"state": self.state, "episode": self.episode_index if writer is not None else None,
                "duration_s": now - self._started_at if writer is not None else 0.0,
                "committed": len(self.committed), "free_mb": self.free_mb, "error": self.error, "streams": streams}

    def publish_status(self) -> dict[str, Any]:
        st = self.status()
        level = 2 if st["state"] == ERROR else 1 if any(s["dropped"] for s in st["streams"].values()) else 0
        values = {"state": st["state"], "episode": st["episode"], "duration_s": f"{st['duration_s']:.2f}",
                  "committed": st["committed"], "free_mb": f"{st['free_mb']:.0f}"}
        for key, s in st["streams"].items():
            values.update({f"{key}.count": s["count"], f"{key}.rate_hz": f"{s['rate_hz']:.1f}",
                           f"{key}.dropped": s["dropped"], f"{key}.queue": s["queue"]})
        kv = messages.get_class("diagnostic_msgs/msg/KeyValue")
        message = st["error"] or (f"recording episode {st['episode']}" if st["state"] == RECORDING else st["state"])
        self.status_pub.publish(messages.make(
            DIAGNOSTIC_STATUS, level=level, name=self.get_fully_qualified_name(), message=message,
            hardware_id=self.config.robot_name, values=[kv(key=k, value=str(v)) for k, v in values.items()]))
        return st

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Block until queued commits/discards/marks are done (tests, CLI)."""
        end = time.monotonic() + timeout
        while not self._jobs.idle():
            if time.monotonic() > end:
                return False
            time.sleep(0.01)
        return True

    def destroy_node(self) -> None:
        """Commit the open episode, finish the background jobs, then destroy the node."""
        if self.writer is not None:
            self.stop_episode()
        self._jobs.close()
        super().destroy_node()
