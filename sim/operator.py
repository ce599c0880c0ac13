"""`ScriptedOperator`: the task's scripted expert standing in for a human teleoperator, over topics only.

It does exactly what a person with a teleop device and a pedal does, so a recording made with it
goes through the same path as a human one:
- per episode it sends `episode_events` RESET (episode_id = the seed) and waits for the sim's
  `task/status` to report that seed from a new `reset_ns`, then START (the recorder opens an episode);
- it answers every `task/observation` (JointState `<key>.<dim>`, see `sim.task_io`) with a
  `teleop_target` (robot_stack_msgs/TeleopTarget, MODE_POSE, engaged) from the expert, header.stamp =
  the observation's stamp, which is also what the sim's lockstep waits for;
- when `task/status` reports success, or after `max_steps` task steps, it marks SUCCESS / FAILURE and
  sends STOP (the recorder commits), then goes on with the next seed;
- a RESET the sim has not answered is sent again after 2 s; if the sim resets the episode being
  recorded once more (a late duplicate RESET), the recording is DISCARDed and STARTed over.

The expert needs the task's geometry, not its physics state: the node builds its own copy of the
task (`task` parameter, default config) and feeds it only the observations it receives.
Parameters: task, episodes, seed0, max_steps, events_topic. `~/status` (DiagnosticStatus) reports
state (`resetting` / `recording` / `done`), the episode index, successes; `finished` turns true after
the last episode.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from robot_stack import messages
from robot_stack.clock import Time
from robot_stack.node import Node
from sim.tasks import make_task

EPISODE_EVENT = "robot_stack_msgs/msg/EpisodeEvent"
TELEOP_TARGET = "robot_stack_msgs/msg/TeleopTarget"
STATUS = "diagnostic_msgs/msg/DiagnosticStatus"
START, STOP, DISCARD, SUCCESS, FAILURE, RESET = 0, 1, 2, 3, 4, 5
RESEND_RESET_S = 2.0
MODE_POSE = 1


def observation_dict(msg: Any) -> dict[str, np.ndarray]:
    """task/observation (names `<key>.<dim>`) -> {key: array}."""
    out: dict[str, list[float]] = {}
    for name, value in zip(msg.name, msg.position, strict=True):
        out.setdefault(name.rsplit(".", 1)[0], []).append(value)
    return {k: np.array(v) for k, v in out.items()}


class ScriptedOperator(Node):
    default_name = "operator"

    def __init__(self, node_name: str | None = None, **node_kwargs: Any):
        super().__init__(node_name or self.default_name, **node_kwargs)
        self.task_name = self.declare_parameter("task", "push_t").value
        self.episodes = int(self.declare_parameter("episodes", 5).value)
        self.seed0 = int(self.declare_parameter("seed0", 0).value)
        self.max_steps = int(self.declare_parameter("max_steps", 300).value)
        events = self.declare_parameter("events_topic", "episode_events").value
        self.task = make_task(self.task_name)
        self.expert = None
        self.index, self.successes = 0, 0
        self.state = "resetting"
        self.finished = False
        self._last_reset_ns: int | None = None
        self._reset_sent = -1e9
        self._steps = 0
        self.events = self.create_publisher(EPISODE_EVENT, events, 10)
        self.teleop = self.create_publisher(TELEOP_TARGET, "teleop_target", 10)
        self.status_pub = self.create_publisher(STATUS, "~/status", 10)
        self.create_subscription("sensor_msgs/msg/JointState", "task/observation", self._on_observation, 10)
        self.create_subscription(STATUS, "task/status", self._on_status, 10)
        self.create_timer(0.5, self._tick, name="operator")

    # --- episode control -----------------------------------------------------------------------
    @property
    def seed(self) -> int:
        return self.seed0 + self.index

    def _event(self, event: int, episode_id: str = "") -> None:
        self.events.publish(messages.make(EPISODE_EVENT, header=messages.make(
            "std_msgs/msg/Header", stamp=self.get_clock().now().to_msg()), event=event, source="scripted_operator",
            episode_id=episode_id))

    def _tick(self) -> None:
        """Re-send RESET when the sim has not reported the new episode for a while (a lost message)."""
        now = time.monotonic()
        if self.state == "resetting" and not self.finished and now - self._reset_sent > RESEND_RESET_S:
            self._send_reset()
        self._publish_status()

    def _send_reset(self) -> None:
        self._reset_sent = time.monotonic()
        self._event(RESET, str(self.seed))

    def _on_status(self, msg: Any) -> None:
        values = {kv.key: kv.value for kv in msg.values}
        if self.finished or "reset_ns" not in values:
            return
        reset_ns, seed = int(values["reset_ns"]), int(values["seed"])
        if self.state == "resetting" and seed == self.seed and reset_ns != self._last_reset_ns:
            self._last_reset_ns = reset_ns
            self._expert().reset()
            self._steps, self.state = 0, "recording"
            self._event(START, str(self.seed))
        elif self.state == "recording" and seed == self.seed and reset_ns != self._last_reset_ns:
            self._last_reset_ns = reset_ns          # the sim reset this episode again (a re-sent RESET):
            self._event(DISCARD, str(self.seed))    # drop the recording and start it over
            self._expert().reset()
            self._steps = 0
            self._event(START, str(self.seed))
        elif self.state == "recording" and reset_ns == self._last_reset_ns:
            if values["success"] == "True":
                self._end(True)
            elif int(values["elapsed_steps"]) >= self.max_steps:
                self._end(False)

    def _end(self, success: bool) -> None:
        self._event(SUCCESS if success else FAILURE, str(self.seed))
        self._event(STOP, str(self.seed))
        self.successes += success
        self.index += 1
        self.finished = self.index >= self.episodes
        self.state = "done" if self.finished else "resetting"
        if not self.finished:
            self._send_reset()
        self._publish_status()

    # --- teleoperation --------------------------------------------------------------------------
    def _expert(self) -> Any:
        """The task's expert; it reads the task's geometry, so the task is built once, on first use."""
        if self.expert is None:
            if not self.task.built:
                self.task.build()
            self.expert = self.task.expert()
        return self.expert

    def _on_observation(self, msg: Any) -> None:
        """Answer every observation, also between episodes: a lockstep sim waits for the answer."""
        obs = observation_dict(msg)
        target = np.asarray(self._expert().act(obs), dtype=float)
        self._steps += 1
        pose = {"position": {"x": float(target[0]), "y": float(target[1]),
                             "z": float(target[2]) if target.size > 2 else 0.0}, "orientation": {"w": 1.0}}
        self.teleop.publish(messages.from_dict(TELEOP_TARGET, {
            "header": {"stamp": Time.from_msg(msg.header.stamp).to_msg()}, "mode": MODE_POSE, "ee_pose": pose,
            "gripper": float("nan"), "engaged": True, "device": "scripted_operator"}))

    def _publish_status(self) -> None:
        values = {"state": self.state, "episode": self.index, "seed": self.seed, "episodes": self.episodes,
                  "successes": self.successes, "finished": self.finished}
        self.status_pub.publish(messages.make(
            STATUS, level=0, name=self.get_name(), message=self.state, hardware_id="scripted_operator",
            values=[messages.make("diagnostic_msgs/msg/KeyValue", key=k, value=str(v)) for k, v in values.items()]))

    def destroy_node(self) -> None:
        self.task.close()
        super().destroy_node()
