"""The AR page's HTTP + WebSocket server: aiohttp on its own asyncio loop in a daemon thread.

`/` serves the page, `/static/` its assets (shipped in the package, no CDN), `/ws` the protocol
of `teleop.web.protocol`. Every client gets, per kind of feedback, only the newest message (a
slow browser skips updates instead of queueing them). Other threads hand feedback over with
`post_text` / `post_frame`, which never block. Bad client messages are counted in `rejected`
by reason and dropped; a client beyond localhost must present the token first, and a browser
WebSocket from another origin is refused (403).
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web

from teleop.web.config import ServerConfig
from teleop.web.errors import ARPageError, BadClientMessage
from teleop.web.feedback import jpeg_bytes
from teleop.web.protocol import ClientMessage, Hello, encode, parse_client

STATIC = Path(__file__).parent / "static"
CLOSE_UNAUTHORIZED = 4401
FEEDBACK_MIN_INTERVAL_S = 1 / 240       # per client: at most this often a batch of feedback
log = logging.getLogger("teleop.web.server")


@dataclass(eq=False)
class Client:
    id: int
    ws: web.WebSocketResponse
    pending: dict[str, str | bytes] = field(default_factory=dict)    # kind -> newest payload
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    received: int = 0


MessageHandler = Callable[[ClientMessage, Client], None]


class ARServer:
    """Serve the page; call `on_message` / `on_disconnect` / `on_tick` on the server's loop thread."""

    def __init__(self, config: ServerConfig, on_message: MessageHandler,
                 on_disconnect: Callable[[Client], None] = lambda c: None,
                 on_tick: Callable[[], None] = lambda: None, tick_s: float = 0.05):
        self.config = config
        self._on_message, self._on_disconnect, self._on_tick, self._tick_s = on_message, on_disconnect, on_tick, tick_s
        self.rejected: Counter[str] = Counter()
        self.accepted = 0
        self.frames_sent = 0
        self.clients: dict[int, Client] = {}
        self.port: int | None = None
        self._ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._encoding = False
        self._next_frame_at = 0.0

    # --- lifecycle (any thread) -----------------------------------------------------------------
    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.config.host in ("0.0.0.0", "::", "localhost") else self.config.host
        host = f"[{host}]" if ":" in host else host
        query = f"?token={self.config.token}" if self.config.token else ""
        return f"http://{host}:{self.port}/{query}"

    def start(self, timeout_s: float = 10.0) -> None:
        """Bind and serve; returns once listening (ARPageError if the port cannot be bound)."""
        started, failure = threading.Event(), []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._bind())
            except Exception as exc:  # noqa: BLE001 - handed to start()'s caller
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            ticker = loop.create_task(self._ticker())
            loop.run_forever()
            ticker.cancel()
            loop.run_until_complete(self._unbind())
            loop.close()

        self._thread = threading.Thread(target=run, name="ar-page-server", daemon=True)
        self._thread.start()
        if not started.wait(timeout_s):
            raise ARPageError(f"AR page server did not start within {timeout_s} s")
        if failure:
            raise ARPageError(f"AR page server cannot listen on {self.config.host}:{self.config.port}: "
                              f"{failure[0]}") from failure[0]

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5.0)
        self._thread, self._loop = None, None

    # --- feedback (any thread) ------------------------------------------------------------------
    def post_text(self, kind: str, text: str) -> None:
        """Send `text` to every client; a newer message of the same kind replaces an unsent one."""
        if self.clients and self._loop is not None:
            self._loop.call_soon_threadsafe(self._post, kind, text)

    def post_frame(self, image_msg: Any) -> None:
        """Encode (off the caller's thread) and send a camera frame, at most `camera_max_hz`."""
        now = time.monotonic()
        if not self.clients or self._loop is None or self._encoding or now < self._next_frame_at:
            return
        self._encoding, self._next_frame_at = True, now + 1.0 / self.config.camera_max_hz
        self._loop.call_soon_threadsafe(self._encode_frame, image_msg)

    def _encode_frame(self, msg: Any) -> None:
        future = self._loop.run_in_executor(None, jpeg_bytes, msg, self.config.jpeg_quality)
        future.add_done_callback(self._frame_encoded)

    def _frame_encoded(self, future: asyncio.Future) -> None:
        self._encoding = False
        if future.cancelled() or future.exception() is not None:
            log.warning(f"camera frame not encoded: {future.exception() if not future.cancelled() else 'cancelled'}")
            return
        data = future.result()
        if data is not None:
            self._post("frame", data)

    def _post(self, kind: str, payload: str | bytes) -> None:
        for client in self.clients.values():
            client.pending[kind] = payload
            client.wake.set()

    # --- aiohttp --------------------------------------------------------------------------------
    async def _bind(self) -> None:
        app = web.Application()
        app.router.add_get("/", self._index)
        app.router.add_get("/ws", self._websocket)
        app.router.add_static("/static/", STATIC)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _unbind(self) -> None:
        for client in list(self.clients.values()):
            await client.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self._tick_s)
            try:
                self._on_tick()
            except Exception:  # noqa: BLE001 - a failing tick must not end the server
                log.exception("AR page tick failed")

    async def _index(self, _request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    def _token_ok(self, token: str | None) -> bool:
        if self.config.loopback:
            return True
        return token is not None and hmac.compare_digest(token.encode(), self.config.token.encode())

    def _origin_ok(self, request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        if origin is None or origin in self.config.allowed_origins:
            return True
        return urlsplit(origin).netloc == request.host

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        if not self._origin_ok(request):
            self.rejected["origin"] += 1
            raise web.HTTPForbidden(text="cross-origin WebSocket refused (see ServerConfig.allowed_origins)")
        ws = web.WebSocketResponse(max_msg_size=max(65536, 16 * self.config.max_message_bytes))
        await ws.prepare(request)
        client = Client(next(self._ids), ws)
        if not self._token_ok(request.query.get("token")) and not await self._authenticate(client):
            self.rejected["unauthorized"] += 1
            await ws.close(code=CLOSE_UNAUTHORIZED, message=b"token required")
            return ws
        self.clients[client.id] = client
        sender = asyncio.get_running_loop().create_task(self._sender(client))
        client.pending["hello"] = encode("hello", client=client.id, send_hz=self.config.send_hz)
        client.wake.set()
        try:
            await self._receive(client)
        finally:
            del self.clients[client.id]
            sender.cancel()
            self._call(self._on_disconnect, client)
        return ws

    async def _authenticate(self, client: Client) -> bool:
        """The first message must be a `hello` with the token, within `hello_timeout_s`."""
        try:
            msg = await client.ws.receive(timeout=self.config.hello_timeout_s)
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                hello = parse_client(msg.data, self.config.max_message_bytes)
                return isinstance(hello, Hello) and self._token_ok(hello.token)
        except (TimeoutError, BadClientMessage):
            pass
        return False

    async def _receive(self, client: Client) -> None:
        async for msg in client.ws:
            if msg.type == WSMsgType.ERROR:         # e.g. beyond aiohttp's own size limit: it closes
                self.rejected["oversize" if "size" in str(msg.data).lower() else "protocol"] += 1
                break
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                continue
            try:
                parsed = parse_client(msg.data, self.config.max_message_bytes)
            except BadClientMessage as exc:
                self.rejected[exc.reason] += 1
                if sum(self.rejected.values()) % 100 == 1:
                    log.warning(f"client {client.id}: dropped a bad message ({exc}); {dict(self.rejected)} so far")
                continue
            client.received += 1
            self.accepted += 1
            self._call(self._on_message, parsed, client)

    @staticmethod
    def _call(fn: Callable, *args: Any) -> None:
        try:
            fn(*args)
        except Exception:  # noqa: BLE001 - a handler bug must not drop the connection or the server
            log.exception(f"AR page handler {getattr(fn, '__name__', fn)} failed")

    async def _sender(self, client: Client) -> None:
        ws = client.ws
        try:
            while not ws.closed:
                await client.wake.wait()
                client.wake.clear()
                batch, client.pending = client.pending, {}
                for kind, payload in batch.items():
                    if isinstance(payload, bytes):
                        await ws.send_bytes(payload)
                        self.frames_sent += kind == "frame"
                    else:
                        await ws.send_str(payload)
                await asyncio.sleep(FEEDBACK_MIN_INTERVAL_S)
        except (ConnectionError, RuntimeError):    # the client went away mid-send
            pass
