"""`TeleopMonitor`: the operator's status line (rich), from the nodes' status topics.

It follows each device node's `~/status` (engaged, why not, episode), the robot node's
(`<robot>/status`, and `<robot>_robot/status` for a SimNode's inner robot node), the recorder's
`~/status` (state, episode, duration), `task/status` (task, seed, progress, success) and
`episode_events` (the last event and who sent it), and renders them as one line.
"""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text

from robot_stack.node import Node
from teleop.episode import EPISODE_EVENT, EVENT_NAMES

DIAGNOSTIC_STATUS = "diagnostic_msgs/msg/DiagnosticStatus"
LEVEL_STYLE = {0: "green", 1: "yellow", 2: "bold red"}


def _values(msg: Any) -> dict[str, str]:
    return {kv.key: kv.value for kv in msg.values}


class TeleopMonitor(Node):
    def __init__(self, devices: list[str], robots: list[str], recorder: str = "", node_name: str = "teleop_monitor",
                 **node_kwargs: Any):
        super().__init__(node_name, **node_kwargs)
        self.devices: dict[str, tuple[int, str, dict[str, str]]] = {}
        self.robots: dict[str, tuple[int, str]] = {}
        self.recorder: dict[str, str] = {}
        self.task: dict[str, str] = {}
        self.last_event: tuple[str, str, float] | None = None
        for name in devices:
            self.create_subscription(DIAGNOSTIC_STATUS, f"/{name}/status", self._device(name), 10)
        for name in robots:
            for topic in (f"/{name}/status", f"/{name}_robot/status"):
                self.create_subscription(DIAGNOSTIC_STATUS, topic, self._robot(name), 10)
        if recorder:
            self.create_subscription(DIAGNOSTIC_STATUS, f"/{recorder}/status",
                                     lambda m: setattr(self, "recorder", _values(m)), 10)
        self.create_subscription(DIAGNOSTIC_STATUS, "/task/status", lambda m: setattr(self, "task", _values(m)), 10)
        self.create_subscription(EPISODE_EVENT, "/episode_events", self._on_event, 10)

    def _device(self, name: str):
        def on(msg: Any) -> None:
            self.devices[name] = (int(msg.level), msg.message, _values(msg))
        return on

    def _robot(self, name: str):
        def on(msg: Any) -> None:
            self.robots[name] = (int(msg.level), msg.message)
        return on

    def _on_event(self, msg: Any) -> None:
        self.last_event = (EVENT_NAMES.get(int(msg.event), str(msg.event)), msg.source, time.monotonic())

    def line(self) -> Text:
        parts: list[tuple[str, str]] = []
        for name, (level, message, values) in sorted(self.devices.items()):
            ok = values.get("engaged") == "True"
            parts.append((f"{name}: {'engaged' if ok else message or 'idle'}", "green" if ok else LEVEL_STYLE[level]))
        for name, (level, message) in sorted(self.robots.items()):
            parts.append((f"{name}: {message}", LEVEL_STYLE.get(level, "")))
        if self.recorder:
            r = self.recorder
            state = r.get("state", "?")
            detail = f" #{r.get('episode')} {float(r.get('duration_s', 0)):.1f} s" if state == "recording" else ""
            parts.append((f"recorder: {state}{detail}", "bold magenta" if state == "recording" else ""))
        if self.task:
            t = self.task
            parts.append((f"{t.get('task', 'task')} seed {t.get('seed', '?')} progress "
                          f"{float(t.get('progress', 0)):.2f}{' SUCCESS' if t.get('success') == 'True' else ''}",
                          "bold green" if t.get("success") == "True" else ""))
        if self.last_event is not None:
            event, source, when = self.last_event
            parts.append((f"last: {event} from {source or '?'} {time.monotonic() - when:.0f} s ago", "cyan"))
        text = Text()
        for i, (part, style) in enumerate(parts or [("waiting for the nodes' status...", "dim")]):
            text.append(" | " if i else "")
            text.append(part, style=style)
        return text
