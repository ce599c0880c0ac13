"""3Dconnexion SpaceMouse HID reports (from /dev/hidraw*), parsed from their bytes: no hidapi needed.

Reports (little endian):
- id 1: translation x, y, z as int16 (6 bytes after the id); on devices that send everything in
  one report (`combined`, e.g. SpaceMouse Wireless/Compact) 12 bytes: translation then rotation;
- id 2: rotation rx, ry, rz as int16;
- id 3: buttons, a bit mask of `button_bytes` bytes (bit i = button i).
Deflections are about +-350 at full travel. A hidraw read returns one report; through a pipe they
may arrive merged or split, so `SpaceMouseParser` frames by report id and length and keeps
partial reports. Garbage (an unknown id, an axis value beyond `max_abs`) is counted
(`bad_reports`) and skipped one byte at a time until reports check out again (`bytes_skipped`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

TRANSLATION, ROTATION, BUTTONS = 1, 2, 3
AXES = struct.Struct("<3h")
INPUTS = ("tx", "ty", "tz", "rx", "ry", "rz")


@dataclass(frozen=True)
class Report:
    id: int
    values: tuple[int, ...]        # 3 or 6 axis values, or (button mask,)


def pack_translation(x: int, y: int, z: int) -> bytes:
    return bytes([TRANSLATION]) + AXES.pack(x, y, z)


def pack_rotation(rx: int, ry: int, rz: int) -> bytes:
    return bytes([ROTATION]) + AXES.pack(rx, ry, rz)


def pack_buttons(mask: int, button_bytes: int = 2) -> bytes:
    return bytes([BUTTONS]) + mask.to_bytes(button_bytes, "little")


@dataclass
class SpaceMouseParser:
    combined: bool = False
    button_bytes: int = 2
    max_abs: int = 1000
    reports: int = 0
    bad_reports: int = 0
    bytes_skipped: int = 0
    _buf: bytearray = field(default_factory=bytearray)
    _in_garbage: bool = False

    def counters(self) -> dict[str, int]:
        return {"reports": self.reports, "bad_reports": self.bad_reports, "bytes_skipped": self.bytes_skipped}

    def _size(self, report_id: int) -> int | None:
        return {TRANSLATION: 12 if self.combined else 6, ROTATION: 6, BUTTONS: self.button_bytes}.get(report_id)

    def feed(self, chunk: bytes) -> list[Report]:
        self._buf += chunk
        buf, pos, out = self._buf, 0, []
        while pos < len(buf):
            size = self._size(buf[pos])
            if size is not None and len(buf) - pos - 1 < size:
                break                                  # a partial report: wait for the rest
            report = self._decode(buf[pos], bytes(buf[pos + 1:pos + 1 + size])) if size is not None else None
            if report is None:
                self.bad_reports += not self._in_garbage
                self._in_garbage = True
                self.bytes_skipped += 1
                pos += 1
                continue
            self._in_garbage = False
            self.reports += 1
            out.append(report)
            pos += 1 + size
        del buf[:pos]
        return out

    def _decode(self, report_id: int, payload: bytes) -> Report | None:
        if report_id == BUTTONS:
            return Report(BUTTONS, (int.from_bytes(payload, "little"),))
        values = struct.unpack(f"<{len(payload) // 2}h", payload)
        if any(abs(v) > self.max_abs for v in values):
            return None
        return Report(report_id, values)


@dataclass
class SpaceMouseState:
    """The latest deflection (tx ty tz rx ry rz, raw counts) and button mask."""

    axes: np.ndarray = field(default_factory=lambda: np.zeros(6))
    buttons: int = 0

    def apply(self, report: Report) -> list[tuple[int, bool]]:
        """Apply one report; the button transitions (bit index, pressed) it caused."""
        if report.id == TRANSLATION:
            self.axes[:len(report.values)] = report.values
        elif report.id == ROTATION:
            self.axes[3:] = report.values
        else:
            before, self.buttons = self.buttons, report.values[0]
            changed = before ^ self.buttons
            return [(bit, bool(self.buttons >> bit & 1)) for bit in range(changed.bit_length()) if changed >> bit & 1]
        return []

    def release_all(self) -> list[tuple[int, bool]]:
        released = [(bit, False) for bit in range(self.buttons.bit_length()) if self.buttons >> bit & 1]
        self.axes[:] = 0.0
        self.buttons = 0
        return released
