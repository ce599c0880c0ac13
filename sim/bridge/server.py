"""`BridgeServer`: the simulator side of the bridge, one client at a time, over `protocol`.

Python 3.8 compatible and free of robot_stack, so it runs under Isaac Gym's Python next to
`protocol.py` and `isaacgym_backend.py` (``python server.py --backend isaacgym ...``); inside this
project it is ``python -m sim.bridge.server``. The first line on stdout is the bound port; logs go
to stderr. SIGINT/SIGTERM stop it cleanly (the backend is closed).

Session: the client's first request must be HELLO (protocol version, token when one is set); the
reply describes the robot. Then RESET/READ/WRITE/STEP/SAFE_STOP, each answered once, until CLOSE,
a disconnect or `timeout` seconds of silence. A frame that cannot be trusted is counted in
`stats["protocol_errors"]`, answered with ERROR when possible and the connection closed; the
server then serves the next client. Whenever a client leaves, the backend is safe-stopped.
"""

from __future__ import annotations

import argparse
import hmac
import ipaddress
import os
import signal
import socket
import sys
import time

if __package__:
    from . import protocol as P
    from .protocol import Backend  # noqa: F401  (the backend interface, re-exported)
else:  # a plain script next to protocol.py (Isaac Gym's Python 3.8, no robot_stack there)
    import protocol as P
    from protocol import Backend  # noqa: F401

POLL_S = 0.2   # how often the accept/idle loops look at the stop flag


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class BridgeServer:
    def __init__(self, backend: P.Backend, host: str = "127.0.0.1", port: int = 0, *, token: str = "",
                 timeout: float = 10.0, max_payload: int = P.MAX_PAYLOAD, log=None):
        if not is_loopback(host) and not token:
            raise ValueError(f"binding {host} makes the simulator reachable beyond this machine: give a token")
        self.backend = backend
        self.host, self.port = host, int(port)
        self.token = token
        self.timeout = float(timeout)
        self.max_payload = max_payload
        self.log = log or (lambda text: print(f"[bridge] {text}", file=sys.stderr, flush=True))
        self.stats = {"connections": 0, "requests": 0, "protocol_errors": 0, "request_errors": 0,
                      "timeouts": 0, "auth_failures": 0}
        self._description = backend.describe()
        self._listener = None
        self._stop = False

    # --- lifecycle ----------------------------------------------------------------------------
    def bind(self) -> int:
        """Open the listening socket; returns the bound port."""
        if self._listener is None:
            listener = socket.create_server((self.host, self.port), backlog=4)
            listener.settimeout(POLL_S)
            self._listener = listener
            self.port = listener.getsockname()[1]
        return self.port

    def serve_forever(self) -> None:
        """Serve clients one after another until `stop()`."""
        self.bind()
        while not self._stop:
            try:
                sock, addr = self._listener.accept()
            except socket.timeout:  # noqa: UP041  (Python 3.8: socket.timeout is not TimeoutError)
                continue
            except OSError:
                if self._stop:
                    break
                raise
            self.handle(sock, addr)

    def stop(self) -> None:
        """Ask `serve_forever` to return (within POLL_S); safe from a signal handler or thread."""
        self._stop = True

    def close(self) -> None:
        self.stop()
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        self.backend.close()

    # --- one client ---------------------------------------------------------------------------
    def handle(self, sock: socket.socket, addr) -> None:
        self.stats["connections"] += 1
        conn = P.Connection(sock, self.timeout, self.max_payload)
        self.log(f"client {addr[0]}:{addr[1]} connected")
        why, drain = "closed", 0.0
        try:
            why = self._session(conn)
        except P.FrameError as exc:
            self.stats["protocol_errors"] += 1
            why, drain = f"protocol error: {exc}", 0.2
            self._try_send(conn, P.error_message("protocol", str(exc)))
        except P.PeerTimeout as exc:
            self.stats["timeouts"] += 1
            why = f"timeout: {exc}"
        except P.PeerGone as exc:
            why = str(exc)
        finally:
            conn.close(drain)
            self._safe_stop()
        self.log(f"client {addr[0]}:{addr[1]} left ({why})")

    def _session(self, conn: P.Connection) -> str:
        greeted = False
        while not self._stop:
            if not self._wait_for_request(conn):
                continue
            msg = conn.recv()
            self.stats["requests"] += 1
            if msg.type == P.MsgType.CLOSE:
                conn.send(P.Message(P.MsgType.OK, msg.request_id))
                return "client said CLOSE"
            if not greeted and msg.type != P.MsgType.HELLO:
                conn.send(P.error_message("protocol", f"{msg.type.name} before HELLO", msg.request_id))
                return f"{msg.type.name} before HELLO"
            reply = self._answer(msg)
            conn.send(reply)
            if msg.type == P.MsgType.HELLO:
                greeted = reply.type == P.MsgType.HELLO
                if not greeted:
                    return f"HELLO refused: {reply.fields.get('message')}"
        return "server stopping"

    def _wait_for_request(self, conn: P.Connection) -> bool:
        idle_since = time.monotonic()
        while not self._stop:
            if conn.wait_readable(POLL_S):
                return True
            if time.monotonic() - idle_since > self.timeout:
                raise P.PeerTimeout(f"no request for {self.timeout:.1f} s")
        return False

    def _answer(self, msg: P.Message) -> P.Message:
        """The reply to one request; bad content or a backend failure becomes ERROR."""
        try:
            return self._dispatch(msg)
        except P.RequestError as exc:
            self.stats["request_errors"] += 1
            return P.error_message("bad_request", str(exc), msg.request_id)
        except P.BackendError as exc:
            return P.error_message("backend", str(exc), msg.request_id)
        except Exception as exc:  # a simulator failure must not kill the server: report it
            return P.error_message("backend", f"{type(exc).__name__}: {exc}", msg.request_id)

    def _dispatch(self, msg: P.Message) -> P.Message:
        kind, rid, n = msg.type, msg.request_id, len(self._description.joint_names)
        if kind == P.MsgType.HELLO:
            return self._hello(msg)
        if kind == P.MsgType.RESET:
            seed = msg.fields.get("seed")
            if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
                raise P.RequestError(f"RESET: 'seed' must be an integer or null, got {seed!r}")
            return self.backend.reset(seed).to_message(rid)
        if kind == P.MsgType.READ:
            return self.backend.read().to_message(rid)
        if kind == P.MsgType.WRITE:
            self.backend.write(P.Command.from_message(msg, n))
            return P.Message(P.MsgType.OK, rid)
        if kind == P.MsgType.STEP:
            steps = msg.fields.get("n")
            if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= P.MAX_STEPS:
                raise P.RequestError(f"STEP: 'n' must be an integer in 1..{P.MAX_STEPS}, got {steps!r}")
            return P.Message(P.MsgType.OK, rid, {"stamp_ns": int(self.backend.step(steps))})
        if kind == P.MsgType.SAFE_STOP:
            self.backend.safe_stop()
            return P.Message(P.MsgType.OK, rid)
        raise P.RequestError(f"{kind.name} is a reply, not a request")

    def _hello(self, msg: P.Message) -> P.Message:
        version = msg.fields.get("version")
        if version != P.VERSION:
            return P.error_message("version", f"client speaks version {version!r}, server {P.VERSION}",
                                   msg.request_id)
        if self.token and not hmac.compare_digest(str(msg.fields.get("token", "")).encode(), self.token.encode()):
            self.stats["auth_failures"] += 1
            return P.error_message("auth", "wrong or missing token", msg.request_id)
        return self._description.to_message(msg.request_id, stats=dict(self.stats))

    def _try_send(self, conn: P.Connection, msg: P.Message) -> None:
        try:
            conn.send(msg)
        except P.ProtocolError:
            pass

    def _safe_stop(self) -> None:
        try:
            self.backend.safe_stop()
        except Exception as exc:  # report it; the next client can still try
            self.log(f"safe_stop() failed: {type(exc).__name__}: {exc}")


# --- command line -------------------------------------------------------------------------------------
def make_backend(args: argparse.Namespace) -> P.Backend:
    if args.backend == "pybullet":
        from sim.bridge.pybullet_backend import PybulletBackend

        return PybulletBackend(args.robot, physics_hz=args.physics_hz)
    if __package__:
        from .isaacgym_backend import IsaacGymBackend, IsaacGymConfig
    else:
        from isaacgym_backend import IsaacGymBackend, IsaacGymConfig
    config = IsaacGymConfig(robot=args.robot, physics_hz=args.physics_hz, asset_root=args.asset_root,
                            asset_file=args.asset_file, compute_device=args.device, use_gpu=not args.cpu_physx)
    return IsaacGymBackend(config)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sim.bridge.server", description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=("pybullet", "isaacgym"), default="pybullet")
    parser.add_argument("--robot", default="sim_panda", help="robot name (pybullet: a registered sim robot)")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (beyond localhost a token is required)")
    parser.add_argument("--port", type=int, default=P.DEFAULT_PORT, help="0 picks a free port")
    parser.add_argument("--physics-hz", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=10.0, help="drop a client silent for this long (s)")
    parser.add_argument("--token", default=os.environ.get("ROBOT_STACK_BRIDGE_TOKEN", ""),
                        help="shared secret clients send in HELLO (default: $ROBOT_STACK_BRIDGE_TOKEN)")
    isaac = parser.add_argument_group("isaacgym backend")
    isaac.add_argument("--asset-root", default="", help="URDF root (default: Isaac Gym's assets folder)")
    isaac.add_argument("--asset-file", default="", help="URDF path under --asset-root (default: per --robot)")
    isaac.add_argument("--device", type=int, default=0, help="CUDA device for PhysX")
    isaac.add_argument("--cpu-physx", action="store_true", help="run PhysX on the CPU")
    return parser.parse_args(argv)


class _StdoutToStderr:
    """Send fd 1 to stderr for a while: simulators print banners (pybullet: "argv[0]=") from C, and
    the first line on stdout must be the port."""

    def __enter__(self):
        sys.stdout.flush()
        self._saved = os.dup(1)
        os.dup2(2, 1)

    def __exit__(self, *exc):
        sys.stdout.flush()
        os.dup2(self._saved, 1)
        os.close(self._saved)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        with _StdoutToStderr():
            backend = make_backend(args)
    except (P.BackendError, ValueError) as exc:
        print(f"sim.bridge.server: {exc}", file=sys.stderr)
        return 2
    try:
        server = BridgeServer(backend, args.host, args.port, token=args.token, timeout=args.timeout)
        port = server.bind()
    except (OSError, ValueError) as exc:
        backend.close()
        print(f"sim.bridge.server: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: server.stop())
    print(port, flush=True)
    desc = backend.describe()
    server.log(f"{desc.backend} {desc.robot} ({len(desc.joint_names)} joints, {desc.physics_hz:g} Hz) "
               f"on {args.host}:{port}")
    try:
        server.serve_forever()
    finally:
        server.close()
        server.log(f"stopped; {server.stats}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
