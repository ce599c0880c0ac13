"""Time alignment of streams recorded at their own rates (used by the loader and fixed-rate exports).

Nothing is resampled at record time; alignment happens here, by timestamp:
- `interpolate`: low-dim values linearly interpolated at the query times (held constant outside
  the recorded span).
- `previous`: the index of the latest sample at or before each query time (images, discrete
  values); -1 where the query precedes the first sample (callers pad with the first).
"""

from __future__ import annotations

import numpy as np


def previous_index(stamps: np.ndarray, times: np.ndarray) -> np.ndarray:
    """(T,) index of the latest stamp <= each time (stamps sorted ascending); -1 before the first."""
    return np.searchsorted(np.asarray(stamps), np.asarray(times), side="right") - 1


def interpolate(stamps: np.ndarray, values: np.ndarray, times: np.ndarray) -> np.ndarray:
    """(T, D) values at `times` from (N,) stamps and (N, D) values (N >= 1), linear, clamped at the ends."""
    stamps = np.asarray(stamps, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    if len(stamps) == 0:
        raise ValueError("cannot interpolate a stream with no samples")
    if len(stamps) == 1:
        return np.repeat(values, len(times), axis=0)
    t = (np.asarray(times, dtype=np.int64) - stamps[0]).astype(np.float64)
    s = (stamps - stamps[0]).astype(np.float64)
    i = np.clip(np.searchsorted(s, t, side="right") - 1, 0, len(s) - 2)
    w = np.clip((t - s[i]) / np.maximum(s[i + 1] - s[i], 1e-9), 0.0, 1.0)[:, None]
    return values[i] * (1.0 - w) + values[i + 1] * w


def uniform_times(start_ns: int, stop_ns: int, fps: float) -> np.ndarray:
    """(T,) int64 times start, start + 1/fps, ... <= stop."""
    period = 1e9 / fps
    n = int(np.floor((stop_ns - start_ns) / period + 1e-9)) + 1
    return start_ns + np.round(np.arange(max(n, 0)) * period).astype(np.int64)
