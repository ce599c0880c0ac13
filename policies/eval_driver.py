"""`EvalDriver`: the in-process node that runs a sim evaluation's episodes on one worker
(`policies.evaluate`), and the `EpisodeResult` it fills.

Per episode it sends `episode_events` RESET with `episode_id` = seed (resent after `RESEND_RESET_S`
while the sim has not started it), follows `task/status` until success or `max_steps` task steps,
keeps the progress curve, encodes `fixed/image_raw` frames to `videos/ep_<seed>.mp4`, and records
force and smoothness as `robot-stack eval-real` measures them (`policies.paired_report`
`episode_metrics`), from the episode's start to its last status, in sim time: the `wrench_topic`
samples (the sim's wrist F/T; every sim arm has one, so the force is that of the tool on the wrist,
tared at the episode's first reading like a real F/T biased before a run) and every
`task/action_chunk` the policy server sends, taken to act from its observation stamp (in lockstep
the sim waits at that stamp for the chunk).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from policies.paired_report import Command, chunk_command, episode_metrics
from robot_stack import convert, messages
from robot_stack.clock import NS, Time
from robot_stack.node import Node

STATUS = "diagnostic_msgs/msg/DiagnosticStatus"
EPISODE_EVENT = "robot_stack_msgs/msg/EpisodeEvent"
ACTION_CHUNK = "robot_stack_msgs/msg/ActionChunk"
WRENCH = "geometry_msgs/msg/WrenchStamped"
EPISODE_RESET = 5
VIDEO_CAMERA = "fixed"
RESEND_RESET_S = 2.0


@dataclass
class EpisodeResult:
    seed: int
    worker: int
    success: bool = False
    steps: int = 0                         # task steps run (to success, or the limit)
    time_to_success_s: float | None = None  # sim time
    final_progress: float = 0.0
    curve: list[tuple[int, float]] = field(default_factory=list)   # (elapsed_steps, progress)
    wall_s: float = 0.0
    video: str = ""
    frames: int = 0
    sync_timeouts: int = 0                 # lockstep waits the sim gave up on during the episode
    error: str = ""
    commands: int = 0                      # action chunks (commands) of the episode
    force_samples: int = 0                 # wrench samples of the episode
    force_mean_n: float | None = None      # |F| (N), None without samples
    force_max_n: float | None = None
    mean_squared_jerk: float | None = None  # of the executed commands (`policies.paired_report`)
    mean_abs_delta: float | None = None


def status_values(msg: Any) -> dict[str, str]:
    return {kv.key: kv.value for kv in msg.values}


class EvalDriver(Node):
    """Runs episodes on one worker's sim: RESET, follow `task/status`, record frames, commands, wrench
    and the result."""

    def __init__(self, worker: int, *, max_steps: int, control_hz: float, video_dir: Path | None,
                 action_dt_s: float = 0.1, wrench_topic: str = "wrench", **kwargs: Any):
        super().__init__(f"eval_driver_{worker}", publish_stats=False, **kwargs)
        self.worker, self.max_steps, self.control_hz, self.video_dir = worker, max_steps, control_hz, video_dir
        self.action_dt_s = action_dt_s
        self.recording = False               # chunks and wrench samples go into the lists below
        self.commands: list[Command] = []    # sim time; received = the chunk's observation stamp
        self.forces: list[tuple[int, np.ndarray]] = []    # (stamp_ns, (3,) force)
        self._end_ns: int | None = None      # sim time of the episode's last status
        self.server_state = "starting"
        self.ready = False                   # the server has acted once (it is up and has observations)
        self.episode: EpisodeResult | None = None
        self.started = False
        self._reset_sent = self._t0 = 0.0
        self._start_ns = self._sync0 = 0     # sim time of the episode's start, sim sync_timeouts then
        self._encoder: Any = None
        self.reset_pub = self.create_publisher(EPISODE_EVENT, "episode_events", 10)
        self.create_subscription(STATUS, "task/status", self._on_status, 100)
        self.create_subscription(STATUS, "/policy_server/status", self._on_server_status, 10)
        self.create_subscription(ACTION_CHUNK, "task/action_chunk", self._on_chunk, 10)
        if wrench_topic:
            self.create_subscription(WRENCH, wrench_topic, self._on_wrench, "sensor_data")
        if video_dir is not None:
            self.create_subscription("sensor_msgs/msg/Image", f"{VIDEO_CAMERA}/image_raw", self._on_frame,
                                     "sensor_data")

    @property
    def busy(self) -> bool:
        return self.episode is not None

    def _on_server_status(self, msg: Any) -> None:
        self.server_state = msg.message
        self.ready = self.ready or msg.message == "acting"

    def start(self, seed: int) -> None:
        self.episode, self.started = EpisodeResult(seed, self.worker), False
        self._t0 = time.perf_counter()
        self.commands, self.forces, self.recording, self._end_ns = [], [], True, None
        self._send_reset()

    def _send_reset(self) -> None:
        self._reset_sent = time.perf_counter()
        self.reset_pub.publish(messages.make(EPISODE_EVENT, header=convert.header(self.get_clock().now()),
                                             event=EPISODE_RESET, source="eval", episode_id=str(self.episode.seed)))

    def poll(self, episode_timeout_s: float) -> EpisodeResult | None:
        """Resend a lost RESET, enforce the wall-time limit; the finished result, once."""
        ep = self.episode
        if ep is None:
            return None
        now = time.perf_counter()
        if not self.started and now - self._reset_sent > RESEND_RESET_S:
            self._send_reset()
        if not ep.error and now - self._t0 > episode_timeout_s:
            ep.error = f"no result within {episode_timeout_s:g} s of wall time"
            self._finish()
        if ep.error or ep.success or ep.steps >= self.max_steps:
            self.episode = None
            return ep
        return None

    def _on_status(self, msg: Any) -> None:
        ep = self.episode
        values = status_values(msg)
        if ep is None or values.get("seed") != str(ep.seed) or ep.error:
            return
        if not self.started:
            self.started, self._start_ns = True, int(values.get("reset_ns", 0))
            self._sync0 = int(values.get("sync_timeouts", 0))
            self._open_video(ep)
        if ep.success or ep.steps >= self.max_steps:
            return                                      # finished; waiting for poll() to hand it over
        steps, progress = int(values["elapsed_steps"]), float(values["progress"])
        ep.curve.append((steps, progress))
        ep.steps, ep.final_progress = steps, progress
        ep.sync_timeouts = int(values.get("sync_timeouts", 0)) - self._sync0
        if values["success"] == "True":
            ep.success, ep.time_to_success_s = True, float(values.get("elapsed_s", "nan"))
        if ep.success or steps >= self.max_steps:
            if "elapsed_s" in values:
                self._end_ns = self._start_ns + round(float(values["elapsed_s"]) * NS)
            self._finish()

    def _on_chunk(self, msg: Any) -> None:
        if self.recording:
            self.commands.append(chunk_command(msg, Time.from_msg(msg.observation_stamp).nanoseconds))

    def _on_wrench(self, msg: Any) -> None:
        if self.recording:
            self.forces.append((Time.from_msg(msg.header.stamp).nanoseconds, convert.wrench_vector(msg)[:3]))

    def _metrics(self) -> dict[str, Any]:
        """`episode_metrics` of what was recorded between the episode's start and its end (sim time)."""
        end = self._end_ns if self._end_ns is not None else 2**63 - 1
        commands = [c for c in self.commands if self._start_ns <= c[0] <= end]
        forces = np.array([f for stamp, f in sorted(self.forces, key=lambda sf: sf[0])
                           if self._start_ns <= stamp <= end]).reshape(-1, 3)   # (N, 3)
        return episode_metrics(commands, forces - forces[:1], self.action_dt_s)  # tared at the first reading

    def _open_video(self, ep: EpisodeResult) -> None:
        if self.video_dir is None:
            return
        from data.video import VideoEncoder

        path = self.video_dir / f"ep_{ep.seed}.mp4"
        self._encoder, ep.video = VideoEncoder(path, codec="libx264", fps=self.control_hz), str(path)

    def _on_frame(self, msg: Any) -> None:
        stamp = Time.from_msg(msg.header.stamp).nanoseconds
        if self._encoder is None or self.episode is None or stamp < self._start_ns:     # the previous episode's
            return
        self._encoder.put(np.ascontiguousarray(convert.image_array(msg)[:, :, :3]), stamp)
        self.episode.frames += 1

    def _finish(self) -> None:
        ep = self.episode
        ep.wall_s = time.perf_counter() - self._t0
        self.recording = False
        if self.started:
            for name, value in self._metrics().items():
                setattr(ep, name, value)
        if self._encoder is not None:
            encoder, self._encoder = self._encoder, None
            try:
                encoder.close()
            except Exception as exc:  # noqa: BLE001 - a broken video must not lose the episode's result
                ep.video, ep.error = "", ep.error or f"video: {exc}"
            if not ep.frames:
                ep.video = ""
