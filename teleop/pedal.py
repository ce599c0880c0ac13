"""Foot pedal -> robot_stack_msgs/EpisodeEvent (and an optional dead-man), from HID or serial.

- `source: evdev`: a USB pedal that is a keyboard (PCsensor FS2007/FS2020 and the like send KEY_A,
  KEY_B, KEY_C by default): Linux input events from /dev/input/event* (`teleop.evdev`).
- `source: serial`: a microcontroller pedal printing one ASCII line per press ("A\\n"), e.g. on
  /dev/ttyACM0. Lines are printable ASCII, at most 32 bytes; others are counted (`bad_lines`).

`keys`: a list of "INPUT=action" (evdev key names or serial line texts; actions
`teleop.episode.ACTIONS`). `deadman` (evdev only: press = held) publishes std_msgs/Bool on
`deadman_topic` at every change and every 0.1 s (followers time it out: `deadman_timeout_s`).
Episode actions publish EpisodeEvents on `events_topic`, with `auto_reset` sending RESET after
STOP/DISCARD. Parameters: `source`, `device`, `keys`, and `TeleopNode`'s.
"""

from __future__ import annotations

from typing import Any

from robot_stack import messages
from robot_stack.errors import ParameterError
from teleop import evdev
from teleop.base import BOOL, Target, TeleopNode
from teleop.episode import ACTIONS
from teleop.reader import ByteSource

SOURCES = ("evdev", "serial")
DEFAULT_KEYS = {"evdev": ["KEY_A=toggle", "KEY_B=discard", "KEY_C=success"],
                "serial": ["A=toggle", "B=discard", "C=success"]}
MAX_LINE = 32


class LineParser:
    """ASCII lines; a line that is too long or not printable is counted and dropped."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.lines = self.bad_lines = 0

    def feed(self, chunk: bytes) -> list[str]:
        self._buf += chunk
        *lines, rest = self._buf.split(b"\n")
        self._buf = bytearray(rest[-(MAX_LINE + 1):]) if len(rest) > MAX_LINE else bytearray(rest)
        out = []
        for raw in lines:
            line = raw.rstrip(b"\r")
            if not line or len(line) > MAX_LINE or not all(0x20 <= b < 0x7F for b in line):
                self.bad_lines += 1
                continue
            self.lines += 1
            out.append(line.decode("ascii").strip())
        return out


def parse_keys(entries: list[str], source: str, node: str) -> dict[Any, str]:
    out: dict[Any, str] = {}
    for entry in entries:
        name, sep, action = str(entry).partition("=")
        if not sep or action not in ACTIONS:
            raise ParameterError(f"node '{node}': parameter 'keys': {entry!r} is not INPUT=action with an "
                                 f"action of {list(ACTIONS)}")
        if source == "serial":
            if action == "deadman":
                raise ParameterError(f"node '{node}': parameter 'keys': a serial pedal cannot be a dead-man")
            out[name] = action
            continue
        try:
            out[evdev.key_code(name)] = action
        except KeyError as exc:
            raise ParameterError(f"node '{node}': parameter 'keys': {exc.args[0]}") from None
    return out


class PedalNode(TeleopNode):
    publishes_targets = False
    device_label = "pedal"
    default_rate_hz = 100.0

    def __init__(self, node_name: str = "pedal", *, source: Any = None, **node_kwargs: Any):
        super().__init__(node_name, **node_kwargs)
        self.kind = self.choice("source", "evdev", SOURCES)
        entries = self.declare_parameter("keys", DEFAULT_KEYS[self.kind]).value
        self.keys = parse_keys(entries, self.kind, node_name)
        self.source = ByteSource(source if source is not None else self.declare_parameter("device", "").value)
        self.parser = evdev.EvdevParser() if self.kind == "evdev" else LineParser()
        self.state = evdev.InputState()
        name = "deadman_topic"            # declared by TeleopNode already when its `deadman` is "topic"
        param = self.get_parameter(name) if self.has_parameter(name) else self.declare_parameter(name, "teleop/deadman")
        topic = param.value
        self.deadman_pub = self.create_publisher(BOOL, topic, 10) if "deadman" in self.keys.values() else None
        self.presses = 0
        self._held = False
        if self.deadman_pub is not None:     # repeated, so a follower sees a pedal that went away as released
            self.create_timer(0.1, lambda: self._deadman(self._held), name="deadman")
        self.start_loop()

    def open_device(self) -> None:
        self.source.open()

    def close_device(self) -> None:
        self.source.close()
        self._deadman(False)

    def poll(self) -> int:
        data = self.source.read_available()
        if not data:
            return 0
        if self.kind == "serial":
            lines = self.parser.feed(data)
            for line in lines:
                self._press(self.keys.get(line), True)
            return len(lines)
        frames = self.parser.feed(data)
        for frame in frames:
            for code, pressed in self.state.apply(frame):
                self._press(self.keys.get(code), pressed)
        return len(frames)

    def _press(self, action: str | None, pressed: bool) -> None:
        if action is None:
            return
        if action == "deadman":
            self._deadman(pressed)
        elif pressed:
            self.presses += 1
            self.episode_action(action)

    def _deadman(self, held: bool) -> None:
        self._held = held
        if self.deadman_pub is not None:
            self.deadman_pub.publish(messages.make(BOOL, data=held))

    def stream_expected(self) -> bool:
        return False                       # a pedal at rest sends nothing

    def step(self, dt: float, engaged: bool) -> Target | None:
        return None

    def counters(self) -> dict[str, Any]:
        counts = self.parser.counters() if self.kind == "evdev" else {"lines": self.parser.lines,
                                                                      "bad_lines": self.parser.bad_lines}
        return {"presses": self.presses, **counts}
