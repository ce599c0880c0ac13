"""`Task`: a scene, an action space, observations, a success check and a scripted expert.

A task owns a `SimWorld` (or gets one injected), a robot from the registry (`config.robot`), the
cameras named in `config.cameras` and its own objects. It is the one object behind the gymnasium
env, the sim node's `task` parameter, the benchmarks and the demo's demonstrator:

    task = task_class("push_t")()              # no I/O here
    obs = task.reset(seed=3)                  # builds the scene on first use, then places it
    while not task.done():
        obs = task.step(task.expert().act(obs))   # one control step = physics_hz / control_hz steps
    task.success(), task.progress()

Randomness comes only from the `rng` that `reset(seed)` makes and hands to the hooks (dm_control
style): the same seed gives the same episode. Time is the world's sim time.

Subclasses implement the hooks `_build_scene()`, `_reset_scene(rng)`, `_apply_action(action)`,
`_observe_state()`, `success()`, `progress()`, `expert()` and, optionally, `_perturb(rng)` (run once
per episode at a control step drawn at reset when `config.perturb` is on) and `_on_step()` (after
every physics step). Both run from a world post-step hook, so they also happen when a sim node
steps the physics and the robot is driven through topics instead of `step()`.

Bad actions: NaN/inf raise `BadAction` (nothing is applied); values outside the action bounds are
clipped and counted in `clipped`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from robot_stack.clock import NS
from robot_stack.errors import RobotStackError
from robot_stack.registry import Registry
from robot_stack.robot import robot_class
from sim import robots as _robots  # noqa: F401  (registers the simulated robots)
from sim.camera import WRIST_LINKS, FixedCamera, FixedCameraConfig, SimCamera, WristCamera, WristCameraConfig
from sim.world import SimError, SimWorld, SimWorldConfig


class UnknownTask(RobotStackError, KeyError):
    def __str__(self) -> str:
        return self.args[0]


class BadAction(RobotStackError, ValueError):
    """An action with NaN/inf or the wrong shape: rejected, nothing applied."""


@dataclass(frozen=True)
class Spec:
    """Shape/dtype (and bounds, names for vectors) of one observation key or of the action."""

    shape: tuple[int, ...]
    dtype: str = "float32"
    low: tuple[float, ...] | None = None
    high: tuple[float, ...] | None = None
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Randomization:
    """Domain randomization ranges, applied at reset when `TaskConfig.randomize` is on."""

    friction: tuple[float, float] = (0.7, 1.3)        # scale on the task objects' lateral friction
    mass: tuple[float, float] = (0.8, 1.25)           # scale on the task objects' masses
    light: bool = True                                # random light direction, colour and intensity
    camera_position_m: float = 0.01                   # eye/target jitter per axis (uniform +-)


@dataclass(frozen=True)
class TaskConfig:
    robot: str = "sim_panda"
    physics_hz: int = 240
    solver_iterations: int = 50                       # contact solver iterations per physics step
    control_hz: float = 10.0                          # task steps per second of sim time
    max_steps: int = 300
    cameras: tuple[str, ...] = ()                     # "fixed", "wrist"
    camera_size: tuple[int, int] = (96, 96)           # width, height
    fixed_camera: FixedCameraConfig = field(default_factory=FixedCameraConfig)
    randomize: bool = False
    randomization: Randomization = field(default_factory=Randomization)
    perturb: bool = False
    perturb_window: tuple[float, float] = (0.2, 0.5)  # perturbation step, as a fraction of max_steps
    gui: bool = False

    def __post_init__(self):
        if self.control_hz <= 0 or self.control_hz > self.physics_hz:
            raise SimError(f"TaskConfig.control_hz must be in (0, physics_hz={self.physics_hz}], got {self.control_hz}")
        if self.max_steps <= 0:
            raise SimError(f"TaskConfig.max_steps must be > 0, got {self.max_steps}")
        unknown = [c for c in self.cameras if c not in ("fixed", "wrist")]
        if unknown:
            raise SimError(f"TaskConfig.cameras: unknown {unknown}; use 'fixed' and/or 'wrist'")


class Expert(ABC):
    """A scripted demonstrator: `act(obs)` returns the task action (privileged state allowed)."""

    def __init__(self, task: Task):
        self.task = task

    def reset(self) -> None:
        """Forget per-episode state (called by `Task.reset`)."""

    @abstractmethod
    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray: ...


class Task(ABC):
    name: ClassVar[str]
    config_class: ClassVar[type[TaskConfig]] = TaskConfig
    expert_class: ClassVar[type[Expert]]
    command_mode: ClassVar[str] = "position"      # how a robot node should execute this task's joint targets

    def __init__(self, config: TaskConfig | None = None, *, world: SimWorld | None = None):
        self.config = config or self.config_class()
        self._own_world = world is None
        self.world = world or SimWorld(SimWorldConfig(
            physics_hz=self.config.physics_hz, gui=self.config.gui, ground_plane=False,
            solver_iterations=self.config.solver_iterations))
        self.robot: Any = None
        self.cameras: dict[str, SimCamera] = {}
        self.objects: list[int] = []                  # bodies whose friction/mass are randomized
        self.rng = np.random.default_rng(0)
        self.seed: int | None = None
        self.step_count = 0
        self.clipped = 0
        self._reset_ns = 0
        self.perturbed_at: int | None = None
        self._perturb_step: int | None = None
        self._expert: Expert | None = None
        self.command_sink: Any = None                 # set by a sim node; None = write to the robot directly
        self._nominal: dict[int, tuple[float, float]] = {}

    # --- lifecycle ----------------------------------------------------------------------------
    @property
    def built(self) -> bool:
        return self.robot is not None

    def build(self) -> Task:
        """Connect the world, load the robot, cameras and scene (once; `reset` calls it)."""
        if self.built:
            return self
        self.world.connect()
        robot = robot_class(self.config.robot)(self.world, self._robot_config(robot_class(self.config.robot)))
        robot.connect()
        self.robot = robot
        self._make_cameras()
        self._build_scene()
        self._nominal = {b: self._dynamics(b) for b in self.objects}
        self.world.add_post_step(self._post_step)
        return self

    def close(self) -> None:
        if self.world.connected:
            self.world.remove_hook(self._post_step)
        if self.robot is not None:
            self.robot.disconnect()
            self.robot = None
        self.cameras.clear()
        self.objects.clear()
        if self._own_world:
            self.world.disconnect()

    def __enter__(self) -> Task:
        return self.build()

    def __exit__(self, *exc) -> None:
        self.close()

    def reset(self, seed: int) -> dict[str, np.ndarray]:
        """Start the episode for `seed`: same seed, same episode."""
        self.build()
        self.seed = int(seed)
        self.rng = rng = np.random.default_rng(self.seed)
        self.step_count = 0
        self.clipped = 0
        self.perturbed_at = None
        self._perturb_step = None          # a reset that steps the physics must not fire the old perturbation
        self._randomize_domain(rng)
        self._reset_scene(rng)
        lo, hi = self.config.perturb_window
        self._perturb_step = int(rng.uniform(lo, hi) * self.config.max_steps) if self.config.perturb else None
        self._reset_ns = self.world.time_ns
        if self._expert is not None:
            self._expert.reset()
        return self.observe()

    # --- stepping -----------------------------------------------------------------------------
    @property
    def physics_steps_per_step(self) -> int:
        return max(1, round(self.config.physics_hz / self.config.control_hz))

    def step(self, action: Any) -> dict[str, np.ndarray]:
        """Apply one action for one control period; returns the observation after it."""
        if self.seed is None:
            raise SimError(f"{self.name}: call reset(seed) before step()")
        self._apply_action(self.check_action(action))
        self.world.step(self.physics_steps_per_step)
        self.step_count += 1
        return self.observe()

    @property
    def elapsed_steps(self) -> int:
        """Control periods of sim time since the reset (= `step_count` when driven through `step`)."""
        return (self.world.time_ns - self._reset_ns) * self.config.physics_hz // (
            NS * self.physics_steps_per_step)

    def _post_step(self) -> None:
        """World post-step hook: the task's per-physics-step work, then the perturbation when due.

        Run by the world, so it works the same when a sim node steps the physics instead of `step()`."""
        if self.seed is None:
            return
        self._on_step()
        if self._perturb_step is not None and self.perturbed_at is None and self.elapsed_steps >= self._perturb_step:
            self.perturbed_at = self.elapsed_steps
            self._perturb(self.rng)

    def check_action(self, action: Any) -> np.ndarray:
        spec = self.action_spec()
        a = np.asarray(action, dtype=float).reshape(-1)
        if a.shape != spec.shape:
            raise BadAction(f"{self.name}: action has shape {a.shape}, expected {spec.shape} ({', '.join(spec.names)})")
        if not np.all(np.isfinite(a)):
            raise BadAction(f"{self.name}: action has NaN/inf: {a.tolist()}")
        if spec.low is not None:
            clipped = np.clip(a, spec.low, spec.high)
            self.clipped += int(np.count_nonzero(clipped != a))
            a = clipped
        return a

    def send(self, command: Any) -> None:
        """Hand a JointCommand to the robot (tasks' `_apply_action` use this). A sim node running the task
        installs `command_sink` so commands go through its robot node's topics instead."""
        (self.command_sink or self.robot.write)(command)

    def done(self) -> bool:
        return self.success() or self.step_count >= self.config.max_steps

    def reward(self) -> float:
        return float(self.progress())

    # --- observations -------------------------------------------------------------------------
    def observation_spec(self) -> dict[str, Spec]:
        w, h = self.config.camera_size
        spec = dict(self._state_spec())
        spec.update({f"{name}_image": Spec((h, w, 3), "uint8") for name in self.config.cameras})
        return spec

    def observe_lowdim(self) -> dict[str, np.ndarray]:
        """The observation without camera images (in observation-spec order)."""
        state = self._observe_state()
        return {k: np.asarray(state[k], dtype=np.float32) for k in self._state_spec()}

    def observe(self) -> dict[str, np.ndarray]:
        obs = self.observe_lowdim()
        for name, camera in self.cameras.items():
            obs[f"{name}_image"] = camera.rgb()
        return obs

    def render(self, width: int = 256, height: int = 256) -> np.ndarray:
        """An HxWx3 RGB frame from the fixed viewpoint (for videos and `env.render()`)."""
        cfg = FixedCameraConfig(**{**self._fixed_camera_kwargs(), "width": width, "height": height})
        return FixedCamera(self.world, cfg).rgb()

    def expert(self) -> Expert:
        """The task's scripted demonstrator (one per task; reset with the task)."""
        if self._expert is None:
            self._expert = self.expert_class(self)
        return self._expert

    # --- hooks --------------------------------------------------------------------------------
    @abstractmethod
    def action_spec(self) -> Spec: ...

    @abstractmethod
    def _state_spec(self) -> dict[str, Spec]: ...

    @abstractmethod
    def _build_scene(self) -> None: ...

    @abstractmethod
    def _reset_scene(self, rng: np.random.Generator) -> None: ...

    @abstractmethod
    def _apply_action(self, action: np.ndarray) -> None: ...

    @abstractmethod
    def _observe_state(self) -> dict[str, np.ndarray]: ...

    @abstractmethod
    def success(self) -> bool: ...

    @abstractmethod
    def progress(self) -> float:
        """Task score in [0, 1] (coverage, inserted fraction, wiped fraction, lift fraction)."""

    def _perturb(self, rng: np.random.Generator) -> None:
        """The task's mid-episode perturbation (push the object, move the surface, ...)."""

    def _on_step(self) -> None:
        """After every physics step."""

    def _robot_config(self, cls: type) -> Any:
        """The robot's config for this task (default: the robot's defaults with low-poly visuals)."""
        return cls.config_class(visual_meshes="collision")

    # --- helpers ------------------------------------------------------------------------------
    def _fixed_camera_kwargs(self) -> dict[str, Any]:
        c = self.config.fixed_camera
        return {f: getattr(c, f) for f in c.__dataclass_fields__}

    def _make_cameras(self) -> None:
        w, h = self.config.camera_size
        for name in self.config.cameras:
            if name == "fixed":
                cfg = FixedCameraConfig(**{**self._fixed_camera_kwargs(), "width": w, "height": h})
                self.cameras[name] = FixedCamera(self.world, cfg)
            else:
                link = WRIST_LINKS.get(self.config.robot)
                if link is None:
                    raise SimError(f"{self.name}: no wrist camera link known for robot '{self.config.robot}'")
                cfg = WristCameraConfig(width=w, height=h, link=link)
                self.cameras[name] = WristCamera(self.world, self.robot, cfg)

    def _dynamics(self, body: int) -> tuple[float, float]:
        info = self.world.client.getDynamicsInfo(body, -1)
        return float(info[0]), float(info[1])          # mass, lateral friction

    def _randomize_domain(self, rng: np.random.Generator) -> None:
        r, c = self.config.randomization, self.world.client
        on = self.config.randomize
        for body, (mass, friction) in self._nominal.items():
            m = mass * (rng.uniform(*r.mass) if on else 1.0)
            f = friction * (rng.uniform(*r.friction) if on else 1.0)
            c.changeDynamics(body, -1, mass=m, lateralFriction=f)
        for camera in self.cameras.values():
            if on and r.camera_position_m > 0:
                camera.jitter = rng.uniform(-r.camera_position_m, r.camera_position_m, size=(2, 3))
            else:
                camera.jitter = None
            camera.light = _random_light(rng) if on and r.light else None


def _random_light(rng: np.random.Generator) -> dict[str, Any]:
    azimuth, elevation = rng.uniform(0, 2 * np.pi), rng.uniform(0.4, 1.4)
    direction = [np.cos(azimuth) * np.cos(elevation), np.sin(azimuth) * np.cos(elevation), np.sin(elevation)]
    return {
        "lightDirection": [float(v) for v in direction],
        "lightColor": [float(v) for v in rng.uniform(0.8, 1.0, size=3)],
        "lightAmbientCoeff": float(rng.uniform(0.4, 0.8)),
        "lightDiffuseCoeff": float(rng.uniform(0.3, 0.7)),
    }


# --- registry ---------------------------------------------------------------------------------
TASKS: Registry[Task] = Registry("task", UnknownTask)
register_task = TASKS.register
available_tasks = TASKS.names
task_class = TASKS.get


def make_task(name: str, **overrides: Any) -> Task:
    """`task_class(name)` with its config built from the defaults plus `overrides`."""
    cls = task_class(name)
    fields = cls.config_class.__dataclass_fields__
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise SimError(f"task '{name}': unknown config fields {unknown}; fields: {', '.join(sorted(fields))}")
    return cls(cls.config_class(**overrides))
