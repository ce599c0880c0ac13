"""A headless Chromium driven over the DevTools protocol (CDP), for checking and timing the AR page.

No browser download and no playwright: the system's `chromium` (Debian package) is started with
`--remote-debugging-port=0`; its one page target is driven over a WebSocket with aiohttp's
client on a private asyncio loop, behind a small synchronous API (`navigate`, `evaluate`,
`wait_for`, `key`, `screenshot`, `add_init_script`). Background networking (updates, metrics, sync) is switched
off so the browser talks to nothing but the page's server.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from teleop.web.errors import BrowserUnavailable

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
QUIET_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
    "--disable-extensions", "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-domain-reliability", "--no-pings", "--metrics-recording-only", "--disable-breakpad",
    "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows", "--disable-features=Translate,OptimizationHints,MediaRouter",
    "--disable-dev-shm-usage", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
)
# KeyboardEvent.code -> (key, Windows virtual key code) for the keys the page uses
KEYS = {"Space": (" ", 32), **{f"Key{c}": (c.lower(), ord(c)) for c in "ACDEFQRSW"},
        **{f"Digit{d}": (str(d), 48 + d) for d in range(10)}}


def find_chromium() -> str | None:
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass(frozen=True)
class BrowserConfig:
    executable: str | None = None          # None: the first of CANDIDATES on PATH
    width: int = 800
    height: int = 600
    start_timeout_s: float = 30.0
    call_timeout_s: float = 30.0          # generous: a loaded CI machine can stall the browser for seconds


class Chromium:
    """One headless browser with one page. `start()` launches it; use as a context manager."""

    def __init__(self, config: BrowserConfig = BrowserConfig()):
        self.config = config
        self._proc: subprocess.Popen | None = None
        self._profile: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future] = {}

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> Chromium:
        exe = self.config.executable or find_chromium()
        if exe is None:
            raise BrowserUnavailable(f"no Chromium on PATH (looked for {', '.join(CANDIDATES)}); "
                                     "install the Debian package: apt-get install chromium")
        self._profile = tempfile.mkdtemp(prefix="ar-chromium-")
        args = [exe, *QUIET_FLAGS, f"--user-data-dir={self._profile}",
                f"--window-size={self.config.width},{self.config.height}", "about:blank"]
        self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
        try:
            port = self._devtools_port()
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, name="cdp", daemon=True)
            self._thread.start()
            self._run(self._connect(port), self.config.start_timeout_s)
            self.call("Page.enable")
            self.call("Runtime.enable")
        except BaseException:
            self.close()
            raise
        return self

    def _devtools_port(self) -> int:
        marker = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + self.config.start_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrowserUnavailable(f"{self._proc.args[0]} exited with {self._proc.returncode} on start-up")
            text = marker.read_text() if marker.exists() else ""
            if "\n" in text:
                return int(text.split("\n", 1)[0])
            time.sleep(0.05)
        raise BrowserUnavailable(f"Chromium opened no DevTools port within {self.config.start_timeout_s} s")

    async def _connect(self, port: int) -> None:
        self._session = aiohttp.ClientSession()
        async with self._session.get(f"http://127.0.0.1:{port}/json/list") as resp:
            targets = await resp.json()
        page = next(t for t in targets if t.get("type") == "page")
        self._ws = await self._session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        self._loop.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self._ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            future = self._waiting.pop(data.get("id"), None)
            if future is not None and not future.done():
                future.set_result(data)

    def close(self) -> None:
        if self._loop is not None:
            if self._session is not None:
                self._run(self._session.close(), 5.0)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5.0)
            self._loop.close()
            self._loop = None
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._profile is not None:
            shutil.rmtree(self._profile, ignore_errors=True)
            self._profile = None

    def __enter__(self) -> Chromium:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- protocol --------------------------------------------------------------------------------
    def _run(self, coro: Any, timeout_s: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    async def _call(self, method: str, params: dict) -> dict:
        call_id = next(self._ids)
        future = self._loop.create_future()
        self._waiting[call_id] = future
        await self._ws.send_str(json.dumps({"id": call_id, "method": method, "params": params}))
        return await future

    def call(self, method: str, **params: Any) -> dict:
        """One CDP command; its `result` (BrowserUnavailable naming the method on a protocol error)."""
        reply = self._run(self._call(method, params), self.config.call_timeout_s)
        if "error" in reply:
            raise BrowserUnavailable(f"CDP {method} failed: {reply['error']}")
        return reply.get("result", {})

    # --- page ------------------------------------------------------------------------------------
    def navigate(self, url: str, timeout_s: float = 30.0) -> None:
        self.call("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'", timeout_s)

    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression (promises are awaited)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise BrowserUnavailable(f"page script failed: {result['exceptionDetails'].get('text')} "
                                     f"{result['exceptionDetails'].get('exception', {}).get('description', '')}")
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout_s: float = 20.0, poll_s: float = 0.02) -> Any:
        """Poll until the expression is truthy; returns its value (TimeoutError naming it)."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"page: `{expression}` still {value!r} after {timeout_s} s")
            time.sleep(poll_s)

    def add_init_script(self, source: str) -> str:
        """Run `source` in every document this page loads from now on, before its own scripts."""
        return self.call("Page.addScriptToEvaluateOnNewDocument", source=source)["identifier"]

    def remove_init_script(self, identifier: str) -> None:
        self.call("Page.removeScriptToEvaluateOnNewDocument", identifier=identifier)

    def key(self, code: str, down: bool) -> None:
        """Press or release a key (by KeyboardEvent.code, e.g. "Space", "KeyW")."""
        key, vk = KEYS[code]
        self.call("Input.dispatchKeyEvent", type="keyDown" if down else "keyUp", code=code, key=key,
                  windowsVirtualKeyCode=vk, nativeVirtualKeyCode=vk)

    def screenshot(self) -> bytes:
        """The page as PNG."""
        return base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
