"""Task topics of a sim node: the task's observation out, task-level actions in, through the robot node.

With a task, a `SimNode` also
- publishes `task/observation` (sensor_msgs/JointState: every low-dim observation key flattened,
  named `<key>.<dim name>`) at the task's control rate, stamped with sim time;
- accepts task-space actions: `task/action_chunk` (robot_stack_msgs/ActionChunk named like the
  task's action spec, e.g. ee_x, ee_y; step k due at stamp + k*dt, steps already past are
  skipped) and `teleop_target` (robot_stack_msgs/TeleopTarget: `ee_pose` -> ee_x/ee_y/ee_z/ee_yaw,
  `joint_positions` by name -> hand joints; only while `engaged`);
- applies an action when it arrives and, at every control tick, the newest due one, with the task's
  own mapping (IK etc.). The
  resulting joint command is not written to the simulated robot directly: it goes to the robot
  node as a `joint_commands` target due now, so clamping and the watchdog apply exactly as for a
  real robot;
- publishes each newly applied action once on `task/action` (JointState named like the action
  spec, stamped with the sim time it took effect; a held target re-applied at later ticks is not
  published again), which is what a recorder stores as the demonstration's action;
- remembers the stamp of the last observation it published (`last_obs_ns`) and the newest
  observation an accepted input answered (`answered_ns`: a chunk's `observation_stamp`, else its
  header stamp; a teleop target's header stamp), for the sim node's lockstep mode.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from robot_stack import convert
from robot_stack.clock import NS, Time
from sim.tasks import BadAction, Task

JOINT_STATE = "sensor_msgs/msg/JointState"
ACTION_CHUNK = "robot_stack_msgs/msg/ActionChunk"
TELEOP_TARGET = "robot_stack_msgs/msg/TeleopTarget"


def observation_names(task: Task) -> list[str]:
    names = []
    for key, spec in task.observation_spec().items():
        if spec.dtype == "uint8":      # images go out on the camera topics
            continue
        size = int(np.prod(spec.shape))
        dims = spec.names if len(spec.names) == size else [str(i) for i in range(size)]
        names += [f"{key}.{d}" for d in dims]
    return names


class TaskIO:
    def __init__(self, node: Any, task: Task, robot_joint_names: list[str]):
        self.node, self.task = node, task
        self.joint_names = robot_joint_names
        self.action_names = list(task.action_spec().names)
        self.obs_names = observation_names(task)
        self.period_ns = int(NS / task.config.control_hz)
        self._chunk: tuple[int, int, np.ndarray] | None = None    # (t0_ns, dt_ns, (S, D) actions)
        self._target: np.ndarray | None = None
        self.stale_steps = self.rejected = self.applied = 0
        self._last_k: int | None = None
        self._published: np.ndarray | None = None      # the action last put on task/action
        self.last_obs_ns = self.answered_ns = -1
        self.last_obs_msg: Any = None       # re-sent by a lockstep sim that waits long for its answer
        self.obs_pub = node.create_publisher(JOINT_STATE, "task/observation", 10)
        self.action_pub = node.create_publisher(JOINT_STATE, "task/action", 10)
        self.command_pub = node.create_publisher(JOINT_STATE, "joint_commands", 10)   # the robot node's input
        node.create_subscription(ACTION_CHUNK, "task/action_chunk", self._on_chunk, 10)
        node.create_subscription(TELEOP_TARGET, "teleop_target", self._on_teleop, 10)

    # --- inputs ---------------------------------------------------------------------------------
    def _on_chunk(self, msg: Any) -> None:
        names, steps = list(msg.names), int(msg.steps)
        actions = np.asarray(msg.actions, dtype=np.float64)
        if sorted(names) != sorted(self.action_names) or actions.size != steps * len(names) or steps == 0:
            self._reject(f"task/action_chunk: need names {self.action_names} and steps*len(names) actions, "
                         f"got names {names}, steps {steps}, {actions.size} values")
            return
        order = [names.index(n) for n in self.action_names]
        rows = actions.reshape(steps, len(names))[:, order]
        if not np.all(np.isfinite(rows)):
            self._reject("task/action_chunk: NaN/inf actions")
            return
        dt_ns = msg.dt.sec * NS + msg.dt.nanosec
        t0 = Time.from_msg(msg.header.stamp).nanoseconds or self.task.world.time_ns
        self._chunk, self._last_k = (t0, max(1, dt_ns), rows), None
        self.answered_ns = max(self.answered_ns, Time.from_msg(msg.observation_stamp).nanoseconds or t0)
        self._apply(self.task.world.time_ns)      # act on it now, not at the next tick

    def _on_teleop(self, msg: Any) -> None:
        if not msg.engaged:
            self._chunk, self._target = None, None
            return
        current = self._current_action()
        p, q = msg.ee_pose.position, msg.ee_pose.orientation
        yaw = math.atan2(2 * (q.w * q.z + q.x * q.y), 1 - 2 * (q.y * q.y + q.z * q.z))
        values = {"ee_x": p.x, "ee_y": p.y, "ee_z": p.z, "ee_yaw": yaw, **dict(zip(msg.joint_names,
                                                                                  msg.joint_positions, strict=False))}
        target = np.array([values.get(n, current[i]) for i, n in enumerate(self.action_names)], dtype=float)
        if not np.all(np.isfinite(target)):
            self._reject("teleop_target: NaN/inf target")
            return
        self._chunk, self._target = None, target
        self.answered_ns = max(self.answered_ns, Time.from_msg(msg.header.stamp).nanoseconds)
        self._apply(self.task.world.time_ns)

    def _reject(self, why: str) -> None:
        self.rejected += 1
        if self.rejected % 100 == 1:
            self.node.get_logger().warning(f"{why} (rejected {self.rejected} so far)")

    def _current_action(self) -> np.ndarray:
        if self._target is not None:
            return self._target
        spec = self.task.action_spec()
        return (np.asarray(spec.low) + np.asarray(spec.high)) / 2.0

    def clear(self) -> None:
        """Forget pending actions (a new episode)."""
        self._chunk, self._target, self._last_k = None, None, None
        self._published = None

    # --- the control tick -----------------------------------------------------------------------
    def tick(self) -> None:
        """Every task control period: apply the newest due action, publish observation and action."""
        now = self.task.world.time_ns
        self._apply(now)
        obs = self.task.observe_lowdim()
        values = np.concatenate([np.ravel(v) for v in obs.values()])
        self.last_obs_msg = convert.joint_state(self.obs_names, values, stamp=Time(now))
        self.obs_pub.publish(self.last_obs_msg)
        self.last_obs_ns = now

    def _apply(self, now: int) -> None:
        action = self._due_action(now)
        if action is None:
            return
        try:
            self.task._apply_action(self.task.check_action(action))
            self.applied += 1
            if action is not self._published:   # a held target re-applied at a tick is not a new action
                self._published = action
                self.action_pub.publish(convert.joint_state(self.action_names, action, stamp=Time(now)))
        except BadAction as exc:
            self._reject(str(exc))

    def _due_action(self, now: int) -> np.ndarray | None:
        if self._chunk is not None:
            t0, dt, rows = self._chunk
            k = (now - t0) // dt
            if k >= len(rows):
                self._target, self._chunk = rows[-1], None
            elif k >= 0:
                first = -1 if self._last_k is None else self._last_k
                self.stale_steps += int(max(0, k - first - 1))     # steps whose time passed unapplied
                self._last_k = k
                self._target = rows[k]
        return self._target

    def send(self, command: Any) -> None:
        """The task's command sink: the joint target goes to the robot node, due now (as `step()` applies it)."""
        due = Time(self.task.world.time_ns)
        self.command_pub.publish(convert.joint_state(self.joint_names, command.position, stamp=due))
