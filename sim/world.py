"""`SimWorld`: one pybullet physics client with gravity, a ground plane and a fixed physics rate.

Every world owns its own client (`pybullet_utils.bullet_client.BulletClient`), never pybullet's
global default connection, so several worlds coexist in one process. Sim time is an integer count
of physics steps converted to nanoseconds; nothing reads the wall clock, so a world is
deterministic given the same commands. Robots and sensors register pre-/post-step hooks: a robot
applies its latest command before every physics step (so its control rate is independent of the
physics rate), an F/T sensor filters its reading after every step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from robot_stack.clock import NS, Time
from robot_stack.errors import RobotStackError

StepHook = Callable[[], None]


class SimError(RobotStackError):
    """A simulation object used wrongly (not connected, unknown joint, bad config)."""


@dataclass(frozen=True)
class SimWorldConfig:
    physics_hz: int = 1000                    # 1000 Hz for control work, 240 Hz is pybullet's default
    gravity: tuple[float, float, float] = (0.0, 0.0, -9.81)
    ground_plane: bool = True
    gui: bool = False                         # p.GUI instead of p.DIRECT (one GUI per process)
    solver_iterations: int = 50

    def __post_init__(self):
        if self.physics_hz <= 0:
            raise SimError(f"SimWorldConfig.physics_hz must be > 0, got {self.physics_hz}")
        if len(self.gravity) != 3:
            raise SimError(f"SimWorldConfig.gravity must be 3 values, got {self.gravity}")


class SimWorld:
    """A pybullet world. `connect()` creates the client; `step(n)` advances n physics steps."""

    def __init__(self, config: SimWorldConfig | None = None):
        self.config = config or SimWorldConfig()
        self._client = None
        self._steps = 0
        self._pre: list[StepHook] = []
        self._post: list[StepHook] = []
        self.plane_id: int | None = None

    # --- lifecycle ----------------------------------------------------------------------------
    def connect(self) -> SimWorld:
        if self._client is not None:
            return self
        import pybullet
        import pybullet_data
        from pybullet_utils.bullet_client import BulletClient

        client = BulletClient(connection_mode=pybullet.GUI if self.config.gui else pybullet.DIRECT)
        client.setAdditionalSearchPath(pybullet_data.getDataPath())
        client.setGravity(*self.config.gravity)
        client.setPhysicsEngineParameter(
            fixedTimeStep=self.dt, numSubSteps=0, numSolverIterations=self.config.solver_iterations,
            deterministicOverlappingPairs=1,
        )
        self._client = client
        self._steps = 0
        if self.config.ground_plane:
            self.plane_id = client.loadURDF("plane.urdf")
        return self

    def disconnect(self) -> None:
        client, self._client = self._client, None
        self._pre.clear()
        self._post.clear()
        self.plane_id = None
        if client is not None:
            client.disconnect()

    @property
    def connected(self) -> bool:
        return self._client is not None

    @property
    def client(self):
        """The BulletClient (pybullet API with this world's client id injected)."""
        if self._client is None:
            raise SimError("SimWorld is not connected; call connect() first")
        return self._client

    @property
    def client_id(self) -> int:
        return self.client._client

    def __enter__(self) -> SimWorld:
        return self.connect()

    def __exit__(self, *exc) -> None:
        self.disconnect()

    # --- time ---------------------------------------------------------------------------------
    @property
    def dt(self) -> float:
        return 1.0 / self.config.physics_hz

    @property
    def steps(self) -> int:
        return self._steps

    @property
    def time_ns(self) -> int:
        """Sim time since connect(), exact for any rate (rounded down to the nanosecond)."""
        return self._steps * NS // self.config.physics_hz

    def now(self) -> Time:
        return Time(self.time_ns)

    def steps_for(self, seconds: float) -> int:
        """Physics steps covering `seconds` of sim time (at least one)."""
        return max(1, round(seconds * self.config.physics_hz))

    # --- stepping -----------------------------------------------------------------------------
    def add_pre_step(self, hook: StepHook) -> None:
        """Run `hook` before every physics step (robots apply their latest command here)."""
        self._pre.append(hook)

    def add_post_step(self, hook: StepHook) -> None:
        """Run `hook` after every physics step (sensors that filter at the physics rate)."""
        self._post.append(hook)

    def remove_hook(self, hook: StepHook) -> None:
        for hooks in (self._pre, self._post):
            while hook in hooks:
                hooks.remove(hook)

    def step(self, n: int = 1) -> int:
        """Advance `n` physics steps; returns the sim time in ns afterwards."""
        client = self.client
        for _ in range(n):
            for hook in self._pre:
                hook()
            client.stepSimulation()
            self._steps += 1
            for hook in self._post:
                hook()
        return self.time_ns

    # --- scene helpers ------------------------------------------------------------------------
    def add_box(
        self,
        half_extents: Sequence[float],
        position: Sequence[float],
        *,
        mass: float = 0.1,
        rgba: Sequence[float] = (0.8, 0.2, 0.2, 1.0),
        orientation: Sequence[float] = (0.0, 0.0, 0.0, 1.0),
    ) -> int:
        """A box body (mass 0 makes it static); returns its body id."""
        c = self.client
        col = c.createCollisionShape(c.GEOM_BOX, halfExtents=list(half_extents))
        vis = c.createVisualShape(c.GEOM_BOX, halfExtents=list(half_extents), rgbaColor=list(rgba))
        return c.createMultiBody(
            baseMass=mass, baseCollisionShapeIndex=col, baseVisualShapeIndex=vis,
            basePosition=list(position), baseOrientation=list(orientation),
        )

    def load_urdf(self, path: str, position: Sequence[float] = (0, 0, 0), **kwargs) -> int:
        """Load a URDF (paths relative to pybullet_data work); returns its body id."""
        return self.client.loadURDF(path, basePosition=list(position), **kwargs)
