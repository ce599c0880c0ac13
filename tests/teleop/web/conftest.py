"""Fixtures of the AR page tests: one headless Chromium per module, an AR page node spun in a thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

import robot_stack as rs
from teleop.web.errors import BrowserUnavailable
from teleop.web.headless import Chromium, find_chromium
from teleop.web.node import ARPageNode


@pytest.fixture(scope="module")
def browser() -> Iterator[Chromium]:
    if find_chromium() is None:
        pytest.skip("no chromium on PATH: `make test` installs the Debian package when run as root")
    try:
        chromium = Chromium().start()
    except BrowserUnavailable as exc:
        pytest.skip(f"headless Chromium cannot start here: {exc}")
    yield chromium
    chromium.close()


class Rig:
    """Nodes in one inproc context, spun by an executor thread; `listen` records a topic."""

    def __init__(self, ctx: rs.Context):
        self.ctx = ctx
        self.nodes: list[rs.Node] = []
        self.executor = rs.Executor()
        self.observer = self.add(rs.Node("observer", context=ctx, publish_stats=False))
        self._thread: threading.Thread | None = None

    def add(self, node: rs.Node) -> Any:
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    def page(self, **params: Any) -> ARPageNode:
        params.setdefault("port", 0)
        return self.add(ARPageNode(context=self.ctx, parameter_overrides=params, publish_stats=False))

    def listen(self, type_name: str, topic: str) -> list:
        got: list = []
        self.observer.create_subscription(type_name, topic, got.append, 10_000)
        return got

    def spin(self) -> None:
        self._thread = threading.Thread(target=self.executor.spin, name="test-executor", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.executor.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for node in reversed(self.nodes):
            node.destroy_node()


@pytest.fixture
def rig(ctx) -> Iterator[Rig]:
    r = Rig(ctx)
    yield r
    r.close()
