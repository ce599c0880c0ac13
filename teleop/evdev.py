"""Linux input events (`/dev/input/event*`), parsed from their bytes: no evdev package needed.

`struct input_event` on 64-bit Linux is 24 bytes: `struct timeval` (tv_sec, tv_usec: two native
longs), `__u16 type`, `__u16 code`, `__s32 value`. The kernel groups events into frames ended by
EV_SYN/SYN_REPORT; `EvdevParser.feed(chunk)` returns complete frames and keeps partial events.
SYN_DROPPED (the kernel's buffer overran) drops the frame in progress (returned as None) and
`InputState.apply(None)` releases everything (held keys may have been released meanwhile: the safe state is "released").

Validation (a record failing any check is garbage): 0 <= tv_usec < 1e6, tv_sec >= 0, a known
event type, code <= KEY_MAX for keys, EV_KEY value 0/1/2, EV_SYN code 0..3. Garbage is counted
(`bad_records`), and the parser slides one byte at a time until records check out again
(`bytes_skipped`), so a misaligned or noisy stream resynchronizes instead of stalling.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

EVENT = struct.Struct("=qqHHi")            # 24 bytes, native byte order (x86-64, aarch64: little endian)
EV_SYN, EV_KEY, EV_REL, EV_ABS, EV_MSC = 0, 1, 2, 3, 4
SYN_REPORT, SYN_DROPPED = 0, 3
KNOWN_TYPES = frozenset({0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x11, 0x12, 0x14, 0x15, 0x16, 0x17})
KEY_MAX, ABS_MAX = 0x2FF, 0x3F

_LETTERS = {c: code for c, code in zip("QWERTYUIOP", range(16, 26), strict=True)}
_LETTERS |= {c: code for c, code in zip("ASDFGHJKL", range(30, 39), strict=True)}
_LETTERS |= {c: code for c, code in zip("ZXCVBNM", range(44, 51), strict=True)}
KEYS: dict[str, int] = {
    **{f"KEY_{c}": code for c, code in _LETTERS.items()},
    **{f"KEY_{d}": 2 + (int(d) - 1) % 10 for d in "1234567890"},
    "KEY_ESC": 1, "KEY_MINUS": 12, "KEY_EQUAL": 13, "KEY_BACKSPACE": 14, "KEY_TAB": 15, "KEY_ENTER": 28,
    "KEY_LEFTCTRL": 29, "KEY_LEFTSHIFT": 42, "KEY_RIGHTSHIFT": 54, "KEY_LEFTALT": 56, "KEY_SPACE": 57,
    "KEY_F1": 59, "KEY_F2": 60, "KEY_F3": 61, "KEY_F4": 62, "KEY_F5": 63, "KEY_HOME": 102, "KEY_UP": 103,
    "KEY_PAGEUP": 104, "KEY_LEFT": 105, "KEY_RIGHT": 106, "KEY_END": 107, "KEY_DOWN": 108,
    "KEY_PAGEDOWN": 109, "KEY_DELETE": 111,
    "BTN_LEFT": 0x110, "BTN_RIGHT": 0x111, "BTN_MIDDLE": 0x112,
    "BTN_SOUTH": 0x130, "BTN_EAST": 0x131, "BTN_NORTH": 0x133, "BTN_WEST": 0x134, "BTN_TL": 0x136,
    "BTN_TR": 0x137, "BTN_TL2": 0x138, "BTN_TR2": 0x139, "BTN_SELECT": 0x13A, "BTN_START": 0x13B,
    "BTN_MODE": 0x13C, "BTN_THUMBL": 0x13D, "BTN_THUMBR": 0x13E,
}
AXES: dict[str, int] = {"ABS_X": 0x00, "ABS_Y": 0x01, "ABS_Z": 0x02, "ABS_RX": 0x03, "ABS_RY": 0x04,
                        "ABS_RZ": 0x05, "ABS_HAT0X": 0x10, "ABS_HAT0Y": 0x11}
KEY_NAMES = {code: name for name, code in KEYS.items()}
AXIS_NAMES = {code: name for name, code in AXES.items()}


@dataclass(frozen=True)
class InputEvent:
    sec: int
    usec: int
    type: int
    code: int
    value: int

    @property
    def time_ns(self) -> int:
        """The kernel's timestamp of the event (CLOCK_REALTIME unless the reader chose another)."""
        return self.sec * 1_000_000_000 + self.usec * 1000


def pack_event(type_: int, code: int, value: int, time_ns: int = 0) -> bytes:
    """The 24 bytes the kernel writes for one event (for emulators and tests)."""
    sec, ns = divmod(time_ns, 1_000_000_000)
    return EVENT.pack(sec, ns // 1000, type_, code, value)


def pack_frame(events: list[tuple[int, int, int]], time_ns: int = 0) -> bytes:
    """`(type, code, value)` events followed by SYN_REPORT, one kernel frame."""
    return b"".join(pack_event(t, c, v, time_ns) for t, c, v in [*events, (EV_SYN, SYN_REPORT, 0)])


def key_code(name: str) -> int:
    """KEY_*/BTN_* name (or a decimal code) -> code; KeyError names the known ones."""
    if name in KEYS:
        return KEYS[name]
    if name.isdigit() and int(name) <= KEY_MAX:
        return int(name)
    raise KeyError(f"unknown key {name!r}; known: {', '.join(sorted(KEYS))} or a decimal code")


def axis_code(name: str) -> int:
    if name in AXES:
        return AXES[name]
    raise KeyError(f"unknown axis {name!r}; known: {', '.join(sorted(AXES))}")


def valid(event: InputEvent) -> bool:
    if event.sec < 0 or not 0 <= event.usec < 1_000_000 or event.type not in KNOWN_TYPES:
        return False
    if event.type == EV_KEY:
        return event.code <= KEY_MAX and event.value in (0, 1, 2)
    if event.type == EV_SYN:
        return event.code <= 3
    if event.type == EV_ABS:
        return event.code <= ABS_MAX
    return True


@dataclass
class EvdevParser:
    events: int = 0
    frames: int = 0
    bad_records: int = 0
    bytes_skipped: int = 0
    dropped_frames: int = 0
    _buf: bytearray = field(default_factory=bytearray)
    _frame: list[InputEvent] = field(default_factory=list)
    _in_garbage: bool = False
    _dropping: bool = False

    def counters(self) -> dict[str, int]:
        return {"events": self.events, "frames": self.frames, "bad_records": self.bad_records,
                "bytes_skipped": self.bytes_skipped, "dropped_frames": self.dropped_frames}

    def feed(self, chunk: bytes) -> list[list[InputEvent] | None]:
        """Complete frames (events without their SYN_REPORT); None for a frame lost to SYN_DROPPED."""
        self._buf += chunk
        out: list[list[InputEvent] | None] = []
        pos, size, buf = 0, EVENT.size, self._buf
        while len(buf) - pos >= size:
            event = InputEvent(*EVENT.unpack_from(buf, pos))
            if not valid(event):
                self.bad_records += not self._in_garbage
                self._in_garbage = True
                self.bytes_skipped += 1
                pos += 1
                continue
            self._in_garbage = False
            pos += size
            self.events += 1
            self._accept(event, out)
        del buf[:pos]
        return out

    def _accept(self, event: InputEvent, out: list[list[InputEvent] | None]) -> None:
        if event.type != EV_SYN:
            if not self._dropping:
                self._frame.append(event)
            return
        if event.code == SYN_DROPPED:
            self.dropped_frames += 1
            self._frame.clear()
            self._dropping = True
        elif event.code == SYN_REPORT:
            out.append(None if self._dropping else self._frame)
            self._frame, self._dropping = [], False
            self.frames += 1


@dataclass
class InputState:
    """Held keys/buttons and absolute axis values, updated one frame at a time."""

    keys: set[int] = field(default_factory=set)
    axes: dict[int, int] = field(default_factory=dict)

    def apply(self, frame: list[InputEvent] | None) -> list[tuple[int, bool]]:
        """Apply a frame; the key transitions (code, pressed) in it. None (state lost) releases everything."""
        if frame is None:
            return self.release_all()
        changes = []
        for e in frame:
            if e.type == EV_KEY and e.value in (0, 1):
                pressed = e.value == 1
                if pressed != (e.code in self.keys):
                    changes.append((e.code, pressed))
                (self.keys.add if pressed else self.keys.discard)(e.code)
            elif e.type == EV_ABS:
                self.axes[e.code] = e.value
        return changes

    def release_all(self) -> list[tuple[int, bool]]:
        released = [(code, False) for code in sorted(self.keys)]
        self.keys.clear()
        self.axes.clear()
        return released
