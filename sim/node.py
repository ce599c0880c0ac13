"""`SimNode`: a pybullet world + simulated robot behind the usual robot-node topics, launchable as a node.

It owns a `SimWorld`, a robot (`robot` parameter, any `register_robot` kind from `sim.robots`), a
wrist F/T and cameras, and composes a `RobotNode` for that robot (`joint_states`,
`joint_commands`, `action_chunk`, watchdog, `~/status`) in the same process.

Time: the simulator is the process's time source. The context clock is switched to sim time (with
the simulator itself as the source, not a `/clock` subscription that would echo our own, possibly
stale, stamps back over an asynchronous transport) and `set_sim_time` is called after every physics
step; `rosgraph_msgs/Clock` goes out on `/clock` at `clock_hz` for other processes.

Why the RobotNode is driven in lockstep rather than by the executor: once the process clock follows
sim time the executor runs every timer of that clock on sim-time deadlines (`Executor._now`) and
coalesces missed ticks into one call. The stepping timer would then wait for sim time that only it
advances (deadlock), and a batch of N control periods stepped in one callback would run the control
loop once. So (1) the stepping timer gets its own wall `Clock` and stays on `perf_counter`
deadlines, and (2) the inner RobotNode is never added to an executor: after every physics step this
node runs each of its timers (state, control, status, stats) whose sim-time deadline has passed,
after draining the commands its subscriptions queued. Control therefore runs at exactly
`control_hz` of sim time, whatever the pacing, and a run is deterministic for the same commands.

Pacing: `realtime: true` steps as many physics steps as wall time says are due on a wall timer at
`control_hz` (at most `batch_steps` per callback; further lag is dropped and counted in
`fell_behind`); `realtime: false` steps `batch_steps` per callback as fast as possible, returning to
the executor between batches so subscriptions (and other nodes) are serviced.

Lockstep (`sync_period_s` > 0; fast mode with a task only): the sim does not step past a multiple
of `sync_period_s` of sim time until an accepted `task/action_chunk` (its `observation_stamp`) or
`teleop_target` (its header stamp) answers the newest `task/observation` published at or before that
boundary. While it waits the step callback returns at once (the step timer polls every
`HOLD_POLL_S` of wall time), so the executor keeps servicing subscriptions. After
`sync_timeout_s` of wall time without an answer it goes on and counts one `sync_timeouts`; every
`RESEND_S` of waiting it publishes its newest observation, camera frames and wrench again (the same
messages), so a policy that subscribed late or lost one still answers. A slow
policy then sees the same observations, at the same sim times, as a fast one. A RESET in lockstep
waits for the next task tick, so the observation published at that tick (`reset_ns` in
`task/status`) is the new episode's first, on the same sim-time grid as every other.

Sensors, stamped with the sim time of the step they were taken at: `<camera>/image_raw` +
`<camera>/camera_info` per entry of `cameras` ("fixed", "wrist") at `camera_hz`, `wrench`
(geometry_msgs/WrenchStamped) at `ft_hz` (robots with an `ft_joint`; the bare hand has none; a task
with its own wrist F/T, e.g. wipe or peg_insert, publishes that one, tared at each reset exactly as
its observation and demonstrations carry it; otherwise the reading is un-tared), and
with `tactile: true` one `tactile/<sensor_id>` (robot_stack_msgs/TactileFrame) per pad of the robot
at `tactile_hz`.

Tasks: with `task: push_t` (any `sim.tasks` name) the world, robot and objects are the task's
(robot and physics rate default to the task's; `randomize` and `perturb` pass through), episode
`seed` starts, and the task's per-step work and perturbations run as the physics steps. The
robot is still driven only through the robot node's topics. `episode_events`
(robot_stack_msgs/EpisodeEvent) RESET starts a new episode (seed = `episode_id` when it is a
number, else the next seed) and clears the robot node's trajectory; `sim.task_io` adds the task's
observation, action and teleop-target topics (task actions run through the robot node); `task/status`
(DiagnosticStatus: seed, progress, success, elapsed_steps, elapsed_s, perturbed_at, reset_ns,
sync_timeouts) goes out at `task_status_hz`, on every reset, whenever success changes and at the tick
the episode reaches `max_steps` (parameter; 0: the task's own), so a follower sees that exact step.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from robot_stack import messages
from robot_stack.clock import NS, Clock, Time
from robot_stack.errors import ParameterError
from robot_stack.node import Node, Timer
from robot_stack.qos import QoSProfile
from robot_stack.robot import robot_class
from robot_stack.robot.node import RobotNode
from sim import robots as _robots  # noqa: F401  (registers sim_panda / sim_iiwa)
from sim.camera import WRIST_LINKS, FixedCamera, FixedCameraConfig, SimCamera, WristCamera, WristCameraConfig
from sim.ft import WristFT
from sim.lockstep import Lockstep
from sim.tactile import pads_for
from sim.task_io import TaskIO
from sim.tasks import Task, make_task, task_class
from sim.world import SimWorld, SimWorldConfig

CLOCK_TYPE = "rosgraph_msgs/msg/Clock"
TACTILE_TYPE = "robot_stack_msgs/msg/TactileFrame"
DIAGNOSTIC_STATUS = "diagnostic_msgs/msg/DiagnosticStatus"
EPISODE_EVENT = "robot_stack_msgs/msg/EpisodeEvent"
EPISODE_RESET = 5
CAMERAS = ("fixed", "wrist")
FAST_POLL_S = 1e-6          # fast mode: step batches back to back
HOLD_POLL_S = 5e-4          # lockstep: how often a waiting sim looks for the answer (wall time)
RESEND_S = 0.5              # lockstep: a waiting sim re-sends its newest sensor messages this often (wall time)


class _SimulatorIsTheSource:
    """Stands in for a transport in `Clock.enable_sim_time`: nothing to subscribe to, we set it."""

    def create_subscription(self, *_args: Any) -> object:
        return self


class _Task:
    """A callback due every `period_ns` of sim time."""

    def __init__(self, period_ns: int, fn: Callable[[], Any], timer: Timer | None = None):
        self.period_ns, self.fn, self.timer = max(1, int(period_ns)), fn, timer
        self.next_ns = self.period_ns

    def run_if_due(self, now_ns: int) -> None:
        if now_ns < self.next_ns:
            return
        deadline = self.next_ns
        missed = (now_ns - deadline) // self.period_ns
        self.next_ns = deadline + (missed + 1) * self.period_ns
        self.fn()
        if self.timer is not None:
            self.timer.stats.record(deadline / NS, now_ns / NS, now_ns / NS, int(missed))


class SimNode(Node):
    def __init__(self, node_name: str = "sim", **node_kwargs: Any):
        super().__init__(node_name, **node_kwargs)
        p = self._param
        task_name = p("task", "")
        task_cls = task_class(task_name) if task_name else None   # unknown: the error lists the tasks
        kind = p("robot", "") or (task_cls.config_class.robot if task_cls else "sim_panda")
        robot_cls = robot_class(kind)  # unknown kind: the error lists the available robots
        physics_hz = p("physics_hz", 0)
        if not isinstance(physics_hz, int) or physics_hz < 0:
            raise ParameterError(f"node '{node_name}': parameter 'physics_hz' must be an int >= 0, got {physics_hz!r}")
        self.physics_hz = physics_hz or (task_cls.config_class.physics_hz if task_cls else 1000)
        self.control_hz = p("control_hz", float(min(500, self.physics_hz)), positive=True)
        state_hz = p("state_hz", self.control_hz, positive=True)
        self.realtime = p("realtime", True)
        sync_period_s = self._lockstep_period(p("sync_period_s", 0.0), task_cls is not None)
        # with a task, one batch = one task control period: in fast mode the executor then services the
        # subscriptions (an operator's or policy's reply) between two task ticks, never after several
        per_tick = round(self.physics_hz / task_cls.config_class.control_hz) if task_cls else 50
        self.batch_steps = p("batch_steps", per_tick, positive=True)
        clock_hz = p("clock_hz", 1000.0, positive=True)
        cameras = p("cameras", ["fixed"])
        width, height = p("camera_width", 128, positive=True), p("camera_height", 96, positive=True)
        camera_hz = p("camera_hz", 30.0, positive=True)
        ft_hz = p("ft_hz", 500.0, positive=True)
        tactile_hz = p("tactile_hz", 60.0, positive=True)
        gui = p("gui", False)
        unknown = [c for c in cameras if c not in CAMERAS]
        if unknown:
            raise ParameterError(f"node '{node_name}': parameter 'cameras': unknown {unknown}; use {list(CAMERAS)}")
        if "wrist" in cameras and kind not in WRIST_LINKS:
            raise ParameterError(f"node '{node_name}': no wrist camera link known for robot '{kind}'")

        self.task: Task | None = None
        if task_cls is not None:
            max_steps = int(p("max_steps", 0))                 # 0: the task's own
            self.task = make_task(task_name, robot=kind, physics_hz=self.physics_hz, gui=gui,
                                  randomize=p("randomize", False), perturb=p("perturb", False),
                                  **({"max_steps": max_steps} if max_steps > 0 else {}))
            self.world = self.task.world
        else:
            self.world = SimWorld(SimWorldConfig(physics_hz=self.physics_hz, gui=gui))
        try:
            self._make_devices(robot_cls, cameras, (width, height), p("tactile", False))
            robot_params = {
                "control_rate_hz": self.control_hz, "state_rate_hz": state_hz,
                "command_mode": self.task.command_mode if self.task is not None else "position",
                **{k: p(k, d, positive=True) for k, d in
                   (("watchdog_periods", 50), ("stop_periods", 500), ("max_bad_commands", 1))},
            }
            shared = ("namespace", "context", "remappings", "publish_stats")
            kwargs = {k: v for k, v in node_kwargs.items() if k in shared}
            self.robot_node = RobotNode(self.robot, node_name=f"{node_name}_robot", parameter_overrides=robot_params,
                                        **kwargs)
        except Exception:
            self._close_world()
            raise
        clock = self.context.clock
        clock.enable_sim_time(_SimulatorIsTheSource())  # no-op if a /clock subscription exists already
        clock.set_sim_time(self.world.now())

        self.clock_pub = self.create_publisher(CLOCK_TYPE, "/clock", QoSProfile(depth=1))
        self._last_frames: dict[str, tuple[Any, Any]] = {}      # newest (image, info) per camera
        self._last_wrench: Any = None
        self._resends = 0
        if self.ft is not None:
            self.wrench_pub = self.create_publisher("geometry_msgs/msg/WrenchStamped", "wrench", "sensor_data")
        self.camera_pubs = {
            name: (self.create_publisher("sensor_msgs/msg/Image", f"{name}/image_raw", "sensor_data"),
                   self.create_publisher("sensor_msgs/msg/CameraInfo", f"{name}/camera_info", "sensor_data"))
            for name in self.cameras
        }
        self.tactile_pubs = [(pad, self.create_publisher(TACTILE_TYPE, f"tactile/{pad.sensor_id}", "sensor_data"))
                             for pad in self.pads]
        self.robot_node.start()
        self._tasks = [_Task(NS / clock_hz, self._publish_clock)]
        self._tasks += [_Task(NS / ft_hz, self._publish_wrench)] if self.ft is not None else []
        self._tasks += [_Task(NS / camera_hz, self._publish_cameras)] if self.cameras else []
        self._tasks += [_Task(NS / tactile_hz, self._publish_tactile)] if self.pads else []
        self._tasks += [_Task(t.period * NS, self._robot_callback(t.callback), t) for t in self.robot_node.timers]
        if self.task is not None:
            self._start_task(p("seed", 0), p("task_status_hz", 2.0, positive=True))
        sync_timeout_s = p("sync_timeout_s", 5.0, positive=True)
        if sync_period_s:
            self.lockstep = Lockstep(sync_period_s, sync_timeout_s, self.world.time_ns, self.get_logger())
        self.fell_behind = 0
        self._wall0: float | None = None
        self._steps0 = 0
        # Wall clock for the stepping timer only: on the (sim-time) process clock it would wait forever.
        period = 1.0 / self.control_hz if self.realtime else FAST_POLL_S
        self.step_timer = self.create_timer(period, self._step, name="step")
        self.step_timer.clock = Clock()
        self._publish_clock()
        self.get_logger().info(
            f"sim: {kind} at {self.physics_hz} Hz physics, control {self.control_hz:g} Hz, "
            f"{'realtime' if self.realtime else 'as fast as possible'}, cameras {list(self.cameras) or 'none'}"
            + (f", task {task_name} (seed {self.task.seed})" if self.task else ""))

    def _make_devices(self, robot_cls: type, cameras: list[str], size: tuple[int, int], tactile: bool) -> None:
        """The robot (the task's, when there is one), wrist F/T, cameras and tactile pads."""
        if self.task is not None:
            self.robot = self.task.build().robot
        else:
            self.world.connect()
            self.robot = robot_cls(self.world)
            self.robot.connect()
        self.ft: WristFT | None = None      # a robot without an `ft_joint` (the bare hand) has no wrist F/T
        task_ft = getattr(self.task, "ft", None)
        if isinstance(task_ft, WristFT):    # the task's own, tared at each reset: what its demos recorded
            self.ft = task_ft
        elif getattr(self.robot.config, "ft_joint", ""):
            self.ft = WristFT(self.world, self.robot)
            self.ft.connect()
        width, height = size
        self.cameras: dict[str, SimCamera] = {}
        for name in cameras:
            if name == "fixed":
                base = self.task.config.fixed_camera if self.task else FixedCameraConfig()
                self.cameras[name] = FixedCamera(self.world, dataclasses.replace(base, width=width, height=height))
            else:
                cfg = WristCameraConfig(width=width, height=height, link=WRIST_LINKS[self.robot.kind])
                self.cameras[name] = WristCamera(self.world, self.robot, cfg)
        self.pads = pads_for(self.robot, self.world) if tactile else []
        for pad in self.pads:
            pad.connect()

    def _close_world(self) -> None:
        if self.task is not None:
            self.task.close()
        else:
            self.world.disconnect()

    # --- task ----------------------------------------------------------------------------------
    def _start_task(self, seed: int, status_hz: float) -> None:
        self.task_status_pub = self.create_publisher(DIAGNOSTIC_STATUS, "task/status", 10)
        self.create_subscription(EPISODE_EVENT, "episode_events", self._on_episode_event, 10)
        self._tasks.append(_Task(NS / status_hz, self.publish_task_status))
        self.task_io = TaskIO(self, self.task, self.robot_node.joint_names)
        self._pending_seed: int | None = None
        self._tasks.append(_Task(self.task_io.period_ns, self._task_tick))
        self.reset_task(seed)

    def reset_task(self, seed: int) -> None:
        """Start the task's episode `seed`; the robot node drops its old trajectory and faults."""
        self.task.command_sink = None          # the reset places the robot directly
        self.task.reset(seed)
        self.task.command_sink = self.task_io.send
        self._ended = (False, False)                      # (success, done) at the last task tick
        self._reset_ns = self.world.time_ns
        self.task_io.clear()
        self.robot_node.reset_fault()
        self.get_logger().info(f"task {self.task.name}: reset, seed {seed}")
        self.publish_task_status()

    def _task_tick(self) -> None:
        self._drain(self)          # the newest operator/policy input counts at this tick, not the next
        if self._pending_seed is not None:
            seed, self._pending_seed = self._pending_seed, None
            self.reset_task(seed)
        self.task_io.tick()
        ended = (self.task.success(), self.task.elapsed_steps >= self.task.config.max_steps)   # (step() is not used)
        if ended != self._ended:                          # success and the step limit go out at once
            self._ended = ended
            self.publish_task_status()

    def _on_episode_event(self, msg: Any) -> None:
        if msg.event != EPISODE_RESET:
            return
        seed = int(msg.episode_id) if msg.episode_id.strip().isdigit() else self.task.seed + 1
        if self.lockstep is not None:      # at the next task tick, whose observation is the episode's first
            self._pending_seed = seed
        else:
            self.reset_task(seed)

    def publish_task_status(self) -> None:
        t = self.task
        success = t.success()
        values = {"task": t.name, "seed": t.seed, "progress": f"{t.progress():.4f}", "success": success,
                  "elapsed_steps": t.elapsed_steps, "elapsed_s": (self.world.time_ns - self._reset_ns) / NS,
                  "perturbed_at": t.perturbed_at, "reset_ns": self._reset_ns,
                  "sync_timeouts": self.sync_timeouts}
        self.task_status_pub.publish(messages.make(
            DIAGNOSTIC_STATUS, level=0, name=f"{self.get_name()}/task",
            message="success" if success else "running", hardware_id=t.name,
            values=[messages.make("diagnostic_msgs/msg/KeyValue", key=k, value=str(v)) for k, v in values.items()]))

    def _param(self, name: str, default: Any, *, positive: bool = False) -> Any:
        value = self.declare_parameter(name, default).value
        if positive and not value > 0:
            raise ParameterError(f"node '{self.get_name()}': parameter '{name}' must be > 0, got {value!r}")
        return value

    # --- lockstep ----------------------------------------------------------------------------
    def _lockstep_period(self, period_s: Any, has_task: bool) -> float:
        """The checked `sync_period_s` (0: lockstep off)."""
        self.lockstep: Lockstep | None = None
        name = self.get_name()
        if isinstance(period_s, bool) or not isinstance(period_s, (int, float)) or period_s < 0:
            raise ParameterError(f"node '{name}': parameter 'sync_period_s' must be a number >= 0, got {period_s!r}")
        if period_s > 0 and (not has_task or self.realtime):
            raise ParameterError(f"node '{name}': parameter 'sync_period_s' (lockstep) needs a task and "
                                 "realtime: false")
        return float(period_s)

    @property
    def sync_timeouts(self) -> int:
        return self.lockstep.timeouts if self.lockstep is not None else 0

    @property
    def sync_waits(self) -> int:
        return self.lockstep.waits if self.lockstep is not None else 0

    # --- stepping ----------------------------------------------------------------------------
    @property
    def sim_time(self) -> Time:
        return self.world.now()

    def _step(self) -> None:
        """Stepping timer callback: advance the physics by the steps that are due now."""
        self._drain(self)          # inputs that arrived since the last batch act before it, not after
        if not self.realtime:
            limit = None
            if self.lockstep is not None:
                limit = self.lockstep.limit(self.world.time_ns, self.task_io.answered_ns, self.task_io.last_obs_ns)
                self.step_timer.period = HOLD_POLL_S if self.lockstep.holding else FAST_POLL_S
                self._resend_while_holding()
            if limit is None or limit > self.world.time_ns:
                self.advance(self.batch_steps, until_ns=limit)
            return
        now = time.perf_counter()
        if self._wall0 is None:
            self._wall0, self._steps0 = now, self.world.steps
        due = self._steps0 + int((now - self._wall0) * self.physics_hz) - self.world.steps
        if due > self.batch_steps:  # cannot keep up: drop the backlog instead of chasing it forever
            self.fell_behind += 1
            if self.fell_behind == 1 or self.fell_behind % 100 == 0:
                self.get_logger().warning(f"sim slower than real time ({self.fell_behind} times); dropping backlog")
            self._steps0 += due - self.batch_steps
            due = self.batch_steps
        self.advance(due)

    def _resend_while_holding(self) -> None:
        """Every `RESEND_S` of a lockstep hold, publish the newest observation, camera frames and wrench
        again, the same messages (same stamps): a policy that joined late or lost one still answers."""
        resends = int(self.lockstep.held_s / RESEND_S)
        if resends <= self._resends:
            self._resends = min(self._resends, resends)       # 0 again after the hold
            return
        self._resends = resends
        if self.task_io.last_obs_msg is not None:
            self.task_io.obs_pub.publish(self.task_io.last_obs_msg)
        for name, msgs in self._last_frames.items():
            for pub, msg in zip(self.camera_pubs[name], msgs, strict=True):
                pub.publish(msg)
        if self._last_wrench is not None:
            self.wrench_pub.publish(self._last_wrench)

    def advance(self, steps: int, until_ns: int | None = None) -> None:
        """Step the physics `steps` times (stopping once sim time reaches `until_ns`); after each step
        set the clock and run what is due."""
        clock, tasks = self.context.clock, self._tasks
        for _ in range(steps):
            now_ns = self.world.step(1)
            clock.set_sim_time(Time(now_ns))
            for task in tasks:
                task.run_if_due(now_ns)
            if until_ns is not None and now_ns >= until_ns:
                return

    def _robot_callback(self, callback: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            self._drain(self.robot_node)
            callback()
        return run

    @staticmethod
    def _drain(node: Node) -> None:
        """Run the callbacks of `node`'s subscriptions that have messages waiting."""
        while (sub := node.take_ready()) is not None:
            msg = sub.take()
            if msg is not None:
                sub.callback(msg)

    # --- publishing --------------------------------------------------------------------------
    def _publish_clock(self) -> None:
        self.clock_pub.publish(messages.make(CLOCK_TYPE, clock=self.world.now().to_msg()))

    def _publish_wrench(self) -> None:
        self._last_wrench = self.ft.wrench_msg()
        self.wrench_pub.publish(self._last_wrench)

    def _publish_tactile(self) -> None:
        stamp = self.world.now()
        for pad, pub in self.tactile_pubs:
            pub.publish(pad.frame_msg(stamp))

    def _publish_cameras(self) -> None:
        stamp = self.world.now()
        for name, camera in self.cameras.items():
            image_pub, info_pub = self.camera_pubs[name]
            self._last_frames[name] = (camera.image_msg(stamp), camera.camera_info(stamp))
            image_pub.publish(self._last_frames[name][0])
            info_pub.publish(self._last_frames[name][1])

    def destroy_node(self) -> None:
        self.step_timer.cancel()
        self.robot_node.destroy_node()
        if self.ft is not None:
            self.ft.disconnect()
        for pad in self.pads:
            pad.disconnect()
        self._close_world()
        super().destroy_node()
