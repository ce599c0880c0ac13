"""Shared-memory frame rings: one file under /dev/shm per publisher, `slots` seqlocked slots.

A slot's sequence number is odd while it is written and even (the descriptor's value) when done;
readers check it before and after copying and drop a torn frame. No explicit fence: it relies on
the x86/ARMv8 store order seen through CPython's memcpy. Only the writer unlinks (close, GC,
exit); it holds an `flock` on its file, so the next writer removes segments of crashed ones.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import mmap
import os
import re
import secrets
import struct
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from robot_stack.errors import RobotStackError

SHM_DIR_ENV = "ROBOT_STACK_SHM_DIR"
PREFIX = "robot_stack_"
DEFAULT_SLOTS = 6
_NAME_RE = re.compile(r"^robot_stack_[A-Za-z0-9_]{1,200}$")
_MAGIC = b"RSSHMv1\0"
_HEADER = struct.Struct("<8sIIQQ")  # magic, slots, reserved, slot size, writer pid
_SEQ = struct.Struct("<Q")
_ALIGN = 64  # segment header and slot header sizes; slots start on cache lines
_log = logging.getLogger("robot_stack.transport.shm")


class ShmError(RobotStackError):
    """A shared-memory segment or descriptor is not usable (wrong name, size, format)."""

def shm_dir() -> Path:
    return Path(os.environ.get(SHM_DIR_ENV, "/dev/shm"))


def _round_up(n: int) -> int:
    return max(_ALIGN, (n + _ALIGN - 1) // _ALIGN * _ALIGN)


# --- the ring ---------------------------------------------------------------------------------
class ShmRing:
    """Writer side: `slots` slots of `slot_size` bytes in one shared-memory file."""

    _swept: set[str] = set()

    def __init__(self, slot_size: int, slots: int = DEFAULT_SLOTS, *, label: str = "", directory: Path | None = None):
        if slots < 1 or slot_size < 1:
            raise ValueError(f"a ring needs at least one slot of at least one byte (got {slots} x {slot_size})")
        self.directory = Path(directory or shm_dir())
        if str(self.directory) not in ShmRing._swept:  # once per process and directory
            ShmRing._swept.add(str(self.directory))
            sweep_stale(self.directory)
        label = re.sub(r"[^A-Za-z0-9]+", "_", label).strip("_")[:48]
        self.name = f"{PREFIX}{os.getpid()}_{label + '_' if label else ''}{secrets.token_hex(4)}"
        self.path = self.directory / self.name
        self.slots, self.slot_size = slots, _round_up(slot_size)
        self._stride = _ALIGN + self.slot_size
        self._mm, fd = _create_locked(self.path, _ALIGN + slots * self._stride)
        _HEADER.pack_into(self._mm, 0, _MAGIC, slots, 0, self.slot_size, os.getpid())
        self._frames = 0
        self._finalizer = weakref.finalize(self, _release_writer, self._mm, fd, str(self.path), os.getpid())

    def write(self, data: Any) -> tuple[int, int]:
        """Copy bytes into the next slot; returns (slot, seq) for the descriptor."""
        view = memoryview(np.ascontiguousarray(data) if isinstance(data, np.ndarray) else data).cast("B")
        slot, seq, target = self.loan(view.nbytes)
        target[:] = view
        self.commit(slot, seq)
        return slot, seq

    def loan(self, nbytes: int) -> tuple[int, int, np.ndarray]:
        """The next slot, marked as being written (odd seq), as a writable uint8 array of `nbytes`.

        Fill it, then `commit(slot, seq)`. Readers skip the slot until then; a loan never
        committed is simply overwritten when the ring comes round again.
        """
        if nbytes > self.slot_size:
            raise ShmError(f"frame of {nbytes} bytes does not fit slots of {self.slot_size} in {self.name}")
        self._frames += 1
        slot, seq = (self._frames - 1) % self.slots, 2 * self._frames
        off = _ALIGN + slot * self._stride
        _SEQ.pack_into(self._mm, off, seq - 1)  # odd: being written
        return slot, seq, np.frombuffer(self._mm, dtype=np.uint8, count=nbytes, offset=off + _ALIGN)

    def commit(self, slot: int, seq: int) -> None:
        _SEQ.pack_into(self._mm, _ALIGN + slot * self._stride, seq)  # even: complete

    def close(self) -> None:
        """Unmap and unlink (idempotent). Readers that mapped it keep their mapping."""
        self._finalizer()


def _create_locked(path: Path, size: int) -> tuple[mmap.mmap, int]:
    """Create `path` under a temporary name, lock it, size and map it, then give it its name."""
    tmp = path.with_name(path.name + ".init")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held while we live: marks the segment in use
        os.ftruncate(fd, size)
        try:  # reserve the pages now: a full tmpfs fails here instead of SIGBUS on a later write
            os.posix_fallocate(fd, 0, size)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
        mm = mmap.mmap(fd, size)
        os.rename(tmp, path)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    return mm, fd


def _release_writer(mm: mmap.mmap, fd: int, path: str, owner_pid: int) -> None:
    if os.getpid() != owner_pid:  # a forked child inherited the finalizer: not its segment
        return
    Path(path).unlink(missing_ok=True)
    try:
        mm.close()
    except BufferError:  # someone still holds a view; the mapping goes with the process
        pass
    os.close(fd)


def sweep_stale(directory: Path | None = None, *, init_grace: float = 10.0) -> list[str]:
    """Unlink this user's segments whose publisher is gone (nobody holds the lock)."""
    directory = Path(directory or shm_dir())
    removed: list[str] = []
    for path in directory.glob(PREFIX + "*"):
        try:
            st = path.stat()
            if st.st_uid != os.getuid() or (path.suffix == ".init" and time.time() - st.st_mtime < init_grace):
                continue
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            path.unlink(missing_ok=True)
            removed.append(path.name)
            _log.info("removed stale shared-memory segment %s (its publisher is gone)", path.name)
        except OSError:  # locked: its publisher is alive
            pass
        finally:
            os.close(fd)
    return removed


class ShmRingReader:
    """Reader side of one segment: maps it read-only, never unlinks it."""

    def __init__(self, name: str, directory: Path | None = None):
        if not _NAME_RE.match(name):
            raise ShmError(f"not a robot_stack shared-memory segment name: {name!r}")
        self.name = name
        fd = os.open(Path(directory or shm_dir()) / name, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            if size < _ALIGN:
                raise ShmError(f"segment {name} is too small ({size} bytes)")
            self._mm = mmap.mmap(fd, size, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        magic, self.slots, _, self.slot_size, self.writer_pid = _HEADER.unpack_from(self._mm, 0)
        self._stride = _ALIGN + self.slot_size
        if magic != _MAGIC or _ALIGN + self.slots * self._stride > size:
            self._mm.close()
            raise ShmError(f"segment {name} has an unknown layout")

    def read(self, slot: int, seq: int, size: int) -> np.ndarray | None:
        """A copy of the frame, or None when the slot no longer (or not yet fully) holds `seq`."""
        if slot >= self.slots or size > self.slot_size or seq % 2:
            raise ShmError(f"descriptor slot {slot} / size {size} / seq {seq} does not fit segment {self.name}")
        off = _ALIGN + slot * self._stride
        if _SEQ.unpack_from(self._mm, off)[0] != seq:
            return None
        data = self._copy(off + _ALIGN, size)
        if _SEQ.unpack_from(self._mm, off)[0] != seq:  # overwritten while we copied
            return None
        return data

    def _copy(self, offset: int, size: int) -> np.ndarray:
        return np.frombuffer(self._mm, dtype=np.uint8, count=size, offset=offset).copy()

    def close(self) -> None:
        try:
            self._mm.close()
        except BufferError:
            pass
