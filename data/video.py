"""Video streams of the episode store: a background encoder per stream and a decoder (PyAV).

`VideoEncoder` owns a worker thread and a bounded queue: `put(frame)` never blocks the caller (a
full queue drops the frame and counts it in `dropped`). Frames go into an MP4 written as
*fragmented* MP4 (`movflags=frag_keyframe+empty_moov+default_base_moof`): every keyframe starts a
fragment that is complete on disk once written, so a killed process leaves a file that decodes up
to its last complete fragment. With `gop` = the stream's nominal fps that is at most ~1 s of video
(plus the encoder's delay). `flush_packets=1` hands each fragment to the OS as it is muxed; without
it the 32 KB AVIO buffer held seconds of video that a kill lost.

Timestamps: each frame's PTS is its capture stamp relative to the stream's first frame, in
microseconds (time base 1/1_000_000), so the container carries the real, variable frame timing.
Codecs: `libsvtav1` (AV1, default) or `libx264` (H.264). `libaom-av1` does not work here.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from robot_stack.errors import RobotStackError

CODECS = ("libsvtav1", "libx264")
TIME_BASE = Fraction(1, 1_000_000)
_STOP = object()
os.environ.setdefault("SVT_LOG", "1")      # SVT-AV1: errors only on stderr, not its banner per file


class VideoError(RobotStackError):
    pass


def _codec_options(codec: str, crf: int) -> dict[str, str]:
    if codec == "libsvtav1":
        # pred-struct=1: low delay (no frame reordering), so a fragment reaches the disk ~1 GOP after its frames
        return {"preset": "11", "crf": str(crf), "svtav1-params": "lp=1:pred-struct=1"}
    return {"preset": "veryfast", "crf": str(crf), "tune": "zerolatency"}


class VideoEncoder:
    """Encode HxWx3 uint8 RGB frames to `path` in a background thread."""

    def __init__(self, path: Path, *, codec: str = "libsvtav1", fps: float = 30.0, crf: int = 30,
                 queue_size: int = 256):
        if codec not in CODECS:
            raise VideoError(f"unknown video codec '{codec}'; use one of {', '.join(CODECS)}")
        self.path, self.codec, self.fps, self.crf = Path(path), codec, float(fps), int(crf)
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self.dropped = 0
        self.encoded = 0
        self.error: BaseException | None = None
        self._t0: int | None = None
        self._last_pts = -1

    def put(self, frame: np.ndarray, stamp_ns: int) -> bool:
        """Queue a frame (HxWx3 uint8 RGB); False (and counted in `dropped`) if the queue is full."""
        if self.error is not None:
            raise VideoError(f"{self.path.name}: encoder failed: {self.error!r}") from self.error
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"encode-{self.path.stem}", daemon=True)
            self._thread.start()
        try:
            self._queue.put_nowait((frame, int(stamp_ns)))
            return True
        except queue.Full:
            self.dropped += 1
            return False

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def close(self) -> None:
        """Encode what is queued, write the trailer and stop the thread."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None
        if self.error is not None:
            raise VideoError(f"{self.path.name}: encoder failed: {self.error!r}") from self.error

    def _run(self) -> None:
        import av

        container = stream = None
        stopped = False
        try:
            while (item := self._queue.get()) is not _STOP:
                frame, stamp = item
                if container is None:
                    container, stream = self._open(av, frame.shape)
                self._encode(av, container, stream, frame, stamp)
            stopped = True
            if container is not None:
                for packet in stream.encode(None):
                    container.mux(packet)
        except BaseException as exc:  # reported to the writer on its next put()/close()
            self.error = exc
            while not stopped and self._queue.get() is not _STOP:   # keep draining so put()/close() never hang
                pass
        finally:
            if container is not None:
                try:
                    container.close()
                except Exception as exc:  # noqa: BLE001 - e.g. the disk filled up while writing the trailer
                    self.error = self.error or exc

    def _open(self, av, shape: tuple[int, ...]):
        h, w = shape[:2]
        container = av.open(str(self.path), "w", format="mp4",
                            options={"movflags": "frag_keyframe+empty_moov+default_base_moof",
                                     "flush_packets": "1"})
        stream = container.add_stream(self.codec, rate=Fraction(round(self.fps * 1000), 1000),
                                      options=_codec_options(self.codec, self.crf))
        stream.width, stream.height = w + (w % 2), h + (h % 2)
        stream.pix_fmt = "yuv420p"
        stream.time_base = TIME_BASE
        stream.codec_context.time_base = TIME_BASE
        stream.codec_context.gop_size = max(1, round(self.fps))
        return container, stream

    def _encode(self, av, container, stream, frame: np.ndarray, stamp: int) -> None:
        if self._t0 is None:
            self._t0 = stamp
        pts = max((stamp - self._t0) // 1000, self._last_pts + 1)       # us, strictly increasing
        self._last_pts = pts
        if frame.shape[0] != stream.height or frame.shape[1] != stream.width:   # odd sizes: pad to even
            padded = np.zeros((stream.height, stream.width, 3), np.uint8)
            padded[: frame.shape[0], : frame.shape[1]] = frame
            frame = padded
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        vf.pts, vf.time_base = pts, TIME_BASE
        for packet in stream.encode(vf):
            container.mux(packet)
        self.encoded += 1


def decode_frames(path: Path, *, size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
    """HxWx3 uint8 RGB frames of an MP4, in order (a truncated fragmented file: up to its last fragment).

    `size` = (height, width) crops the even-size padding the encoder may have added."""
    import av

    try:
        container = av.open(str(path))
    except (av.error.InvalidDataError, av.error.FileNotFoundError, OSError) as exc:
        raise VideoError(f"cannot open video {path}: {exc}") from exc
    with container:
        try:
            for frame in container.decode(video=0):
                rgb = frame.to_ndarray(format="rgb24")
                yield rgb if size is None else rgb[: size[0], : size[1]]
        except av.error.InvalidDataError:   # truncated tail of a killed recording: stop there
            return


def count_frames(path: Path) -> int:
    return sum(1 for _ in decode_frames(path))
