"""Simulator bridge: protocol framing, a real server subprocess (pybullet backend), BridgeRobot, RobotNode.

The Isaac Gym backend is not run here (no Isaac Gym / NVIDIA GPU on the development machines):
only its import error and its Python 3.8 compatibility are checked.
"""

from __future__ import annotations

import ast
import importlib.util
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import robot_stack as rs
from robot_stack import convert
from robot_stack.clock import Time
from robot_stack.robot import ControlMode, JointCommand
from robot_stack.robot.node import RobotNode
from robot_stack.robot.watchdog import Health
from sim.bridge import BridgeConnectionError, BridgeRemoteError, BridgeRobot, BridgeRobotConfig
from sim.bridge import protocol as P

REPO = Path(__file__).resolve().parents[2]
BRIDGE = REPO / "sim" / "bridge"
PY38_FILES = ("protocol.py", "server.py", "isaacgym_backend.py")
JOINTS = [f"panda_joint{i}" for i in range(1, 8)] + ["panda_finger_joint1", "panda_finger_joint2"]


# --- helpers -------------------------------------------------------------------------------------------
def start_server(log: Path, *extra: str) -> tuple[subprocess.Popen, int]:
    cmd = [sys.executable, "-m", "sim.bridge.server", "--backend", "pybullet", "--robot", "sim_panda",
           "--port", "0", *extra]
    with open(log, "wb") as err:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=err, text=True)
    ready, _, _ = select.select([proc.stdout], [], [], 30.0)
    line = proc.stdout.readline() if ready else ""
    if not line.strip().isdigit():
        stop_server(proc)
        raise RuntimeError(f"server did not print its port (got {line!r}); log:\n{log.read_text()}")
    return proc, int(line)


def stop_server(proc: subprocess.Popen, sig: int = signal.SIGINT) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        raise
    finally:
        proc.stdout.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("bridge") / "server.log"
    proc, port = start_server(log, "--timeout", "5")
    yield port
    assert stop_server(proc) == 0, log.read_text()


@pytest.fixture
def robot_factory():
    made = []

    def make(port: int, **kw) -> BridgeRobot:
        robot = BridgeRobot(BridgeRobotConfig(port=port, **kw))
        made.append(robot)
        return robot

    yield make
    for robot in made:
        robot.disconnect()


def raw_connection(port: int, timeout: float = 3.0) -> P.Connection:
    return P.Connection(socket.create_connection(("127.0.0.1", port), timeout=timeout), timeout)


def hello(conn: P.Connection, request_id: int = 1) -> P.Message:
    return conn.request(P.Message(P.MsgType.HELLO, request_id, {"version": P.VERSION}))


# --- (1) protocol ---------------------------------------------------------------------------------------
def test_messages_round_trip():
    desc = P.RobotDescription("sim_panda", "pybullet", JOINTS, -np.ones(9), np.ones(9), np.full(9, 2.0),
                              np.full(9, 87.0), 1000.0)
    back = P.RobotDescription.from_message(P.decode(P.encode(desc.to_message(7, stats={"a": 1}))))
    assert back.joint_names == JOINTS and back.physics_hz == 1000.0 and np.array_equal(back.effort, desc.effort)
    state = P.State(123_456_789_012, np.linspace(-1, 1, 9), np.arange(9.0), np.full(9, -0.5))
    msg = P.decode(P.encode(state.to_message(42)))
    assert (msg.type, msg.request_id) == (P.MsgType.STATE, 42)
    got = P.State.from_message(msg, 9)
    assert got.stamp_ns == state.stamp_ns and np.array_equal(got.position, state.position)
    cmd = P.Command("impedance", position=np.zeros(9), stiffness=np.full(9, 100.0), damping=np.ones(9))
    got = P.Command.from_message(P.decode(P.encode(cmd.to_message(3))), 9)
    assert got.mode == "impedance" and got.velocity is None and np.array_equal(got.stiffness, cmd.stiffness)


def _frame(magic=P.MAGIC, version=P.VERSION, kind=int(P.MsgType.READ), length=None, payload=None):
    payload = P.encode(P.Message(P.MsgType.READ))[P.HEADER.size:] if payload is None else payload
    return P.HEADER.pack(magic, version, kind, 1, len(payload) if length is None else length) + payload


def _payload(head: bytes, tail: bytes = b"") -> bytes:
    return P.JSON_LEN.pack(len(head)) + head + tail


@pytest.mark.parametrize("frame, error, text", [
    (b"GET / HTTP/1.1\r\n\r\n", P.FrameError, "bad magic"),
    (_frame(magic=b"XXXX"), P.FrameError, "bad magic"),
    (_frame(version=99), P.VersionMismatch, "version 99"),
    (_frame(kind=250), P.FrameError, "unknown message type 250"),
    (_frame(length=P.MAX_PAYLOAD + 1), P.FrameError, "limit"),
    (_frame(payload=b"\x01"), P.FrameError, "no JSON length"),
    (_frame(payload=_payload(b"{not json")), P.FrameError, "not valid"),
    (_frame(payload=_payload(b"[1, 2]")), P.FrameError, "must be an object"),
    (_frame(payload=_payload(b'{"arrays": [["position", 3]]}', b"\0" * 16)), P.FrameError, "runs past"),
    (_frame(payload=_payload(b'{"arrays": [["position", -1]]}')), P.FrameError, "bad array entry"),
    (_frame(payload=_payload(b"{}", b"junk")), P.FrameError, "unexplained bytes"),
    (_frame(payload=P.JSON_LEN.pack(999) + b"{}"), P.FrameError, "does not fit"),
])
def test_decode_rejects_bad_frames(frame, error, text):
    with pytest.raises(error, match=text):
        P.decode(frame)


def test_connection_reports_garbage_and_truncation():
    a, b = socket.socketpair()
    ca, cb = P.Connection(a, 0.3), P.Connection(b, 0.3)
    try:
        a.sendall(b"\x00" * P.HEADER.size)
        with pytest.raises(P.FrameError, match="bad magic"):
            cb.recv()
        a.sendall(P.encode(P.Message(P.MsgType.READ, 5))[:20])
        with pytest.raises(P.PeerTimeout):
            cb.recv()      # header fine, payload never completes
        ca.close()
        with pytest.raises(P.PeerGone):
            cb.recv()
    finally:
        ca.close()
        cb.close()


@pytest.mark.parametrize("fields, arrays, text", [
    ({"mode": "fly"}, {"position": np.zeros(9)}, "unknown mode"),
    ({"mode": "position"}, {"effort": np.zeros(9)}, "needs 'position'"),
    ({"mode": "torque"}, {"position": np.zeros(9)}, "needs 'effort'"),
    ({"mode": "position"}, {"position": np.zeros(8)}, "8 values for 9 joints"),
    ({"mode": "position"}, {"position": np.full(9, np.nan)}, "non-finite"),
    ({"mode": "position"}, {"position": np.zeros(9), "bogus": np.zeros(9)}, "unknown arrays"),
])
def test_bad_commands_are_request_errors(fields, arrays, text):
    with pytest.raises(P.RequestError, match=text):
        P.Command.from_message(P.Message(P.MsgType.WRITE, 1, fields, arrays), 9)


def test_simulator_side_files_stay_python38_compatible():
    for name in PY38_FILES:
        source = (BRIDGE / name).read_text()
        tree = ast.parse(source, feature_version=(3, 8))   # no match, no 3.9+ syntax
        assert "from __future__ import annotations" in source, name  # X | Y annotations stay strings
        for banned in ("removeprefix", "removesuffix", "strict=", "BooleanOptionalAction", "functools.cache("):
            assert banned not in source, f"{name} uses {banned} (not in Python 3.8)"
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        modules = [a.name for n in top if isinstance(n, ast.Import) for a in n.names]
        modules += [n.module for n in top if isinstance(n, ast.ImportFrom) and n.module]
        assert not [m for m in modules if m.split(".")[0] in ("robot_stack", "sim", "torch")], (name, modules)


def test_simulator_side_files_import_as_plain_scripts_without_robot_stack():
    """What runs under Isaac Gym's Python: the three files in a folder, robot_stack not importable."""
    code = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('robot_stack', 'sim', 'pybullet'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        f"sys.path.insert(0, {str(BRIDGE)!r})\n"
        "import server, isaacgym_backend, protocol\n"
        "assert server.P is protocol and isaacgym_backend.P is protocol\n"
        "print(server.parse_args(['--backend', 'isaacgym']).backend)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.strip() == "isaacgym", out.stderr


@pytest.mark.skipif(importlib.util.find_spec("isaacgym") is not None, reason="isaacgym is installed here")
def test_isaacgym_backend_says_what_to_install():
    from sim.bridge.isaacgym_backend import IsaacGymBackend

    with pytest.raises(P.BackendError, match="Isaac Gym.*pip install"):
        IsaacGymBackend()


def test_server_refuses_to_listen_beyond_localhost_without_token():
    from sim.bridge.server import BridgeServer

    with pytest.raises(ValueError, match="token"):
        BridgeServer(backend=None, host="0.0.0.0")


# --- (2) end to end with a real server subprocess -------------------------------------------------------
def test_client_reads_writes_and_steps_the_remote_sim(server, robot_factory):
    robot = robot_factory(server, lockstep=False, robot="sim_panda")
    with pytest.raises(BridgeConnectionError, match="connect"):
        robot.joint_names  # noqa: B018  (no description before connect)
    robot.connect()
    assert robot.joint_names == JOINTS and robot.limits.lower.shape == (9,)
    start = robot.reset(seed=3)
    target = start.position.copy()
    target[:4] += [0.3, -0.2, 0.2, 0.3]
    robot.write(JointCommand(ControlMode.POSITION, position=target))
    assert np.allclose(robot.read().position, start.position)      # nothing moves until STEP
    t0 = robot.sim_time_ns
    assert robot.step(500) == t0 + 500_000_000                      # 1 kHz physics
    moved = robot.read()
    assert moved.stamp_ns == t0 + 500_000_000
    assert np.all(np.abs(moved.position - target)[:4] < 0.5 * np.abs(start.position - target)[:4])
    with pytest.raises(BridgeRemoteError, match="non-finite"):
        robot.write(JointCommand(ControlMode.POSITION, position=np.full(9, np.nan)))
    assert robot.read().stamp_ns == moved.stamp_ns                  # the link survives a refused request


def test_robot_node_drives_the_remote_sim_in_lockstep(server, robot_factory, ctx):
    robot = robot_factory(server, steps_per_write=10)               # 100 Hz control x 10 steps = 1 kHz
    robot.connect()
    home = robot.reset().position
    node = RobotNode(robot, context=ctx, publish_stats=False, parameter_overrides={
        "control_rate_hz": 100.0, "state_rate_hz": 100.0})
    obs = rs.Node("observer", context=ctx, publish_stats=False)
    states = []
    obs.create_subscription("sensor_msgs/msg/JointState", "joint_states", states.append, 1000)
    pub = obs.create_publisher("sensor_msgs/msg/JointState", "joint_commands")
    ex = rs.Executor()
    ex.add_node(node)
    ex.add_node(obs)
    try:
        node.start()
        assert ex.spin_until(lambda: len(states) > 0, 5.0)
        target = home.copy()
        target[[0, 3]] += [0.25, 0.25]
        pub.publish(convert.joint_state(JOINTS, target, stamp=node.get_clock().now() + 0.2))
        close = lambda: bool(states) and np.allclose(states[-1].position[:7], target[:7], atol=0.03)  # noqa: E731
        assert ex.spin_until(close, 8.0), (states[-1].position, target)
        assert node.health is not Health.FAULT and node.read_errors == 0 == node.write_errors
        stamps = [Time.from_msg(m.header.stamp).nanoseconds for m in states]
        assert stamps == sorted(stamps) and stamps[0] < stamps[-1] <= robot.sim_time_ns   # remote sim time
    finally:
        node.destroy_node()
        obs.destroy_node()


# --- (3) a dead server ----------------------------------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_killed_server_trips_the_watchdog_instead_of_hanging(tmp_path, robot_factory, ctx, sig):
    proc, port = start_server(tmp_path / "server.log")
    try:
        robot = robot_factory(port, steps_per_write=10, timeout=1.0)
        robot.connect()
        node = RobotNode(robot, context=ctx, publish_stats=False, parameter_overrides={
            "control_rate_hz": 100.0, "state_rate_hz": 100.0})
        ex = rs.Executor()
        ex.add_node(node)
        node.start()
        ex.spin_for(0.1)
        assert node.health is Health.OK
        assert stop_server(proc, sig) == (0 if sig == signal.SIGTERM else -signal.SIGKILL)
        t0 = time.monotonic()
        assert ex.spin_until(lambda: node.health is Health.FAULT, 3.0)
        assert time.monotonic() - t0 < 2.0
        assert "read failed" in node.watchdog.reason and "BridgeConnectionError" in node.watchdog.reason
        with pytest.raises(BridgeConnectionError, match="link is down"):
            robot.read()
        node.destroy_node()
    finally:
        stop_server(proc)


def test_unreachable_or_silent_server_fails_fast(robot_factory):
    listener = socket.create_server(("127.0.0.1", 0))   # accepts (backlog) but never answers
    port = listener.getsockname()[1]
    try:
        robot = robot_factory(port, timeout=0.3)
        t0 = time.monotonic()
        with pytest.raises(BridgeConnectionError, match="no data from the peer"):
            robot.connect()
        assert time.monotonic() - t0 < 2.0
    finally:
        listener.close()
    with pytest.raises(BridgeConnectionError, match="cannot reach the bridge server"):
        robot.connect()                                   # a retry: now nobody listens at all


# --- (4) bad clients ------------------------------------------------------------------------------------
def test_server_drops_garbage_and_keeps_serving(server, robot_factory):
    before = hello(conn := raw_connection(server)).fields["stats"]
    conn.close()
    bad_frames = [
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        P.HEADER.pack(P.MAGIC, P.VERSION, int(P.MsgType.WRITE), 1, 1 << 30),      # oversized
        P.HEADER.pack(P.MAGIC, P.VERSION + 1, int(P.MsgType.HELLO), 1, 0),         # other version
    ]
    for frame in bad_frames:
        conn = raw_connection(server)
        conn.sock.sendall(frame)
        reply = conn.recv()
        assert reply.type is P.MsgType.ERROR and reply.fields["code"] == "protocol"
        with pytest.raises(P.PeerGone):
            conn.recv()                                                            # and closed
        conn.close()
    conn = raw_connection(server)                                                  # well-formed, but no HELLO
    with pytest.raises(P.RemoteError, match="before HELLO"):
        conn.request(P.Message(P.MsgType.READ, 9))
    conn.close()
    robot = robot_factory(server)
    robot.connect()
    assert robot.read().position.shape == (9,)
    stats = robot.server_info["stats"]
    assert stats["protocol_errors"] == before["protocol_errors"] + len(bad_frames)


def test_server_times_out_a_silent_client(tmp_path, robot_factory):
    proc, port = start_server(tmp_path / "server.log", "--timeout", "0.3")
    try:
        conn = raw_connection(port)
        conn.sock.sendall(P.encode(P.Message(P.MsgType.HELLO, 1, {"version": P.VERSION}))[:10])  # half a header
        t0 = time.monotonic()
        with pytest.raises(P.PeerGone):
            conn.recv()
        assert time.monotonic() - t0 < 2.0
        conn.close()
        robot = robot_factory(port)
        robot.connect()
        assert robot.server_info["stats"]["timeouts"] == 1
    finally:
        assert stop_server(proc) == 0


def test_token_is_checked(robot_factory):
    from sim.bridge.pybullet_backend import PybulletBackend
    from sim.bridge.server import BridgeServer

    srv = BridgeServer(PybulletBackend("sim_panda"), token="s3cret", timeout=2.0, log=lambda _text: None)
    port = srv.bind()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(BridgeRemoteError, match="token") as info:
            robot_factory(port).connect()
        assert info.value.code == "auth"
        robot = robot_factory(port, token="s3cret")
        robot.connect()
        assert robot.read().position.shape == (9,)
        robot.disconnect()
    finally:
        srv.stop()
        thread.join(5)
        srv.close()
    assert srv.stats["auth_failures"] == 1
