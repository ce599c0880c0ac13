"""`IsaacGymBackend`: one fixed-base robot in an Isaac Gym (PhysX) sim behind the bridge server.

UNTESTED: there is no Isaac Gym / NVIDIA GPU on the development machines. It is written against
Isaac Gym Preview 4's documented `isaacgym.gymapi` API; the protocol and the server around it are
tested end to end with the pybullet backend. Runs under Isaac Gym's Python (3.6-3.8) next to
`protocol.py` and `server.py`: Python 3.8 compatible, numpy only, no robot_stack.

One env, one actor, CPU pipeline (`use_gpu_pipeline = False`, PhysX itself may run on the GPU) so
the per-actor numpy API applies; `isaacgym` is imported in the constructor with an install hint.

Control modes (all DOFs of the actor together, grippers included):
- position: PhysX position drives (DOF_MODE_POS) with the configured stiffness/damping,
  `set_actor_dof_position_targets` (+ velocity targets when given).
- impedance: the same drives with the command's stiffness/damping (implicit PD in PhysX, no
  explicit gravity compensation, unlike the pybullet backend).
- torque: DOF_MODE_EFFORT, zero drive gains, `apply_actor_dof_efforts` before every physics step.
Effort readback uses the DOF force sensors (`enable_actor_dof_force_sensors`/`get_actor_dof_forces`).
Sim time is the physics step count at `physics_hz`, exact in ns.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

if __package__:
    from . import protocol as P
else:  # a plain script next to protocol.py
    import protocol as P

INSTALL_HINT = (
    "the isaacgym backend needs NVIDIA Isaac Gym (Preview 4: Python 3.6-3.8, an NVIDIA GPU and driver). "
    "Download it from https://developer.nvidia.com/isaac-gym, `pip install -e isaacgym/python` into that "
    "Python, and start this server with it (see sim/bridge/README.md)"
)


@dataclass(frozen=True)
class RobotAsset:
    asset_file: str                  # URDF under Isaac Gym's assets folder
    home: tuple                      # initial DOF positions
    stiffness: tuple                 # position drive gains per DOF
    damping: tuple


ROBOTS = {
    "sim_panda": RobotAsset(
        "urdf/franka_description/robots/franka_panda.urdf",
        home=(0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785, 0.04, 0.04),
        stiffness=(400.0,) * 7 + (800.0, 800.0),
        damping=(40.0,) * 7 + (40.0, 40.0),
    ),
}


@dataclass(frozen=True)
class IsaacGymConfig:
    robot: str = "sim_panda"
    asset_root: str = ""             # "" = the assets folder shipped with Isaac Gym
    asset_file: str = ""             # "" = ROBOTS[robot].asset_file
    physics_hz: int = 1000
    substeps: int = 1
    compute_device: int = 0          # CUDA device for PhysX
    use_gpu: bool = True             # PhysX on the GPU (the pipeline stays on the CPU)
    stiffness: tuple = ()            # position drive gains per DOF; () = robot defaults (or 400)
    damping: tuple = ()              # () = robot defaults (or 40)
    home: tuple = ()                 # () = robot defaults (or zeros clipped into the limits)


def import_gymapi():
    try:
        from isaacgym import gymapi
    except ImportError as exc:
        raise P.BackendError(f"{INSTALL_HINT} (import failed: {exc})") from None
    return gymapi


class IsaacGymBackend(P.Backend):
    def __init__(self, config: IsaacGymConfig | None = None):
        self.config = config or IsaacGymConfig()
        if self.config.physics_hz <= 0:
            raise P.BackendError(f"physics_hz must be > 0, got {self.config.physics_hz}")
        self.g = import_gymapi()
        self.gym = self.g.acquire_gym()
        self.sim = self._create_sim()
        try:
            self._create_actor()
        except Exception:
            self.gym.destroy_sim(self.sim)
            raise
        self.steps = 0
        self.seed = None
        self._drive = None               # (mode, stiffness, damping) last set on the actor
        self._effort = None              # float32 efforts re-applied before every step (torque mode)
        self.reset(None)

    # --- set-up -------------------------------------------------------------------------------
    def _create_sim(self):
        g, c = self.g, self.config
        params = g.SimParams()
        params.dt = 1.0 / c.physics_hz
        params.substeps = c.substeps
        params.up_axis = g.UP_AXIS_Z
        params.gravity = g.Vec3(0.0, 0.0, -9.81)
        params.use_gpu_pipeline = False
        params.physx.solver_type = 1
        params.physx.num_position_iterations = 8
        params.physx.num_velocity_iterations = 1
        params.physx.use_gpu = bool(c.use_gpu)
        sim = self.gym.create_sim(c.compute_device, -1, g.SIM_PHYSX, params)  # graphics device -1: headless
        if sim is None:
            raise P.BackendError(f"gym.create_sim failed (PhysX on CUDA device {c.compute_device}, GPU {c.use_gpu})")
        plane = g.PlaneParams()
        plane.normal = g.Vec3(0.0, 0.0, 1.0)
        self.gym.add_ground(sim, plane)
        return sim

    def _create_actor(self) -> None:
        g, gym = self.g, self.gym
        root, file = self._asset_path()
        options = g.AssetOptions()
        options.fix_base_link = True
        options.armature = 0.01
        options.default_dof_drive_mode = g.DOF_MODE_POS
        asset = gym.load_asset(self.sim, root, file, options)
        if asset is None:
            raise P.BackendError(f"gym.load_asset could not load {os.path.join(root, file)}")
        self.env = gym.create_env(self.sim, g.Vec3(-1.0, -1.0, 0.0), g.Vec3(1.0, 1.0, 2.0), 1)
        pose = g.Transform()
        pose.p = g.Vec3(0.0, 0.0, 0.0)
        self.actor = gym.create_actor(self.env, asset, pose, self.config.robot, 0, 0)
        self.names = list(gym.get_actor_dof_names(self.env, self.actor))
        self._props = gym.get_actor_dof_properties(self.env, self.actor)
        props, n = self._props, len(self.names)
        self.lower = np.asarray(props["lower"], dtype=np.float64)
        self.upper = np.asarray(props["upper"], dtype=np.float64)
        self.velocity_limit = np.asarray(props["velocity"], dtype=np.float64)
        self.effort_limit = np.asarray(props["effort"], dtype=np.float64)
        spec = ROBOTS.get(self.config.robot)
        self.kp = self._per_dof("stiffness", self.config.stiffness or (spec.stiffness if spec else (400.0,) * n))
        self.kd = self._per_dof("damping", self.config.damping or (spec.damping if spec else (40.0,) * n))
        home = self.config.home or (spec.home if spec else np.clip(np.zeros(n), self.lower, self.upper))
        self.home = self._per_dof("home", home)
        if not gym.enable_actor_dof_force_sensors(self.env, self.actor):
            raise P.BackendError("Isaac Gym refused DOF force sensors for this actor")

    def _asset_path(self):
        c = self.config
        spec = ROBOTS.get(c.robot)
        file = c.asset_file or (spec.asset_file if spec else "")
        if not file:
            raise P.BackendError(f"no Isaac Gym asset known for robot '{c.robot}' (known: {', '.join(ROBOTS)}); "
                                 "give --asset-file (a URDF under --asset-root)")
        root = c.asset_root or os.path.normpath(os.path.join(os.path.dirname(self.g.__file__), "..", "..", "assets"))
        if not os.path.isfile(os.path.join(root, file)):
            raise P.BackendError(f"URDF not found: {os.path.join(root, file)} (set --asset-root/--asset-file)")
        return root, file

    def _per_dof(self, what: str, values) -> np.ndarray:
        out = np.asarray(values, dtype=np.float64).reshape(-1)
        if out.size != len(self.names):
            raise P.BackendError(f"{what}: {out.size} values for {len(self.names)} DOFs {self.names}")
        return out

    # --- Backend ------------------------------------------------------------------------------
    def describe(self) -> P.RobotDescription:
        return P.RobotDescription(self.config.robot, "isaacgym", list(self.names), self.lower, self.upper,
                                  self.velocity_limit, self.effort_limit, float(self.config.physics_hz))

    def reset(self, seed: int | None) -> P.State:
        self.seed = seed
        states = np.zeros(len(self.names), dtype=self.g.DofState.dtype)
        states["pos"] = self.home
        self.gym.set_actor_dof_states(self.env, self.actor, states, self.g.STATE_ALL)
        self.write(P.Command("position", position=self.home.copy()))
        return self.read()

    def read(self) -> P.State:
        states = self.gym.get_actor_dof_states(self.env, self.actor, self.g.STATE_ALL)
        forces = self.gym.get_actor_dof_forces(self.env, self.actor)
        return P.State(P.sim_time_ns(self.steps, self.config.physics_hz),
                       np.asarray(states["pos"], dtype=np.float64), np.asarray(states["vel"], dtype=np.float64),
                       np.asarray(forces, dtype=np.float64))

    def write(self, command: P.Command) -> None:
        gym, env, actor = self.gym, self.env, self.actor
        if command.mode == "torque":
            self._set_drive("torque", np.zeros_like(self.kp), np.zeros_like(self.kd))
            self._effort = np.clip(command.effort, -self.effort_limit, self.effort_limit).astype(np.float32)
            return
        impedance = command.mode == "impedance"
        kp = command.stiffness if impedance and command.stiffness is not None else self.kp
        kd = command.damping if impedance and command.damping is not None else self.kd
        self._set_drive(command.mode, kp, kd)
        self._effort = None
        gym.set_actor_dof_position_targets(env, actor, np.asarray(command.position, dtype=np.float32))
        velocity = command.velocity if command.velocity is not None else np.zeros(len(self.names))
        gym.set_actor_dof_velocity_targets(env, actor, np.asarray(velocity, dtype=np.float32))

    def step(self, n: int) -> int:
        gym, sim = self.gym, self.sim
        for _ in range(n):
            if self._effort is not None:  # efforts act for one simulate() call
                gym.apply_actor_dof_efforts(self.env, self.actor, self._effort)
            gym.simulate(sim)
            gym.fetch_results(sim, True)
            self.steps += 1
        return P.sim_time_ns(self.steps, self.config.physics_hz)

    def safe_stop(self) -> None:
        position = self.read().position
        self.write(P.Command("position", position=position, velocity=np.zeros_like(position)))

    def close(self) -> None:
        sim, self.sim = self.sim, None
        if sim is not None:
            self.gym.destroy_sim(sim)

    def _set_drive(self, mode: str, kp, kd) -> None:
        key = (mode == "torque", tuple(np.asarray(kp, dtype=float)), tuple(np.asarray(kd, dtype=float)))
        if key == self._drive:
            return
        props = self._props
        props["driveMode"][:] = self.g.DOF_MODE_EFFORT if mode == "torque" else self.g.DOF_MODE_POS
        props["stiffness"][:] = kp
        props["damping"][:] = kd
        self.gym.set_actor_dof_properties(self.env, self.actor, props)
        self._drive = key
