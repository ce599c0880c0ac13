"""numpy <-> ROS message helpers: JointState arrays, Image HxWxC arrays, WrenchStamped 6-vectors."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from robot_stack import messages
from robot_stack.clock import Time

# encoding -> (dtype, channels)
IMAGE_ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "16UC1": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
}


class ImageEncodingError(ValueError):
    pass


def header(stamp: Time | Any | None = None, frame_id: str = "") -> Any:
    """A std_msgs/Header; `stamp` is a Time, a builtin_interfaces/Time message or None (zero)."""
    if stamp is None:
        stamp_msg = messages.make("builtin_interfaces/msg/Time")
    elif isinstance(stamp, Time):
        stamp_msg = stamp.to_msg()
    else:
        stamp_msg = stamp
    return messages.get_class("std_msgs/msg/Header")(stamp=stamp_msg, frame_id=frame_id)


# --- JointState ------------------------------------------------------------------------------
@dataclass(frozen=True)
class JointArrays:
    names: list[str]
    position: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray


def joint_state(
    names: Sequence[str],
    position: Sequence[float] | np.ndarray,
    velocity: Sequence[float] | np.ndarray | None = None,
    effort: Sequence[float] | np.ndarray | None = None,
    *,
    stamp: Time | Any | None = None,
    frame_id: str = "",
) -> Any:
    """JointState from arrays; velocity/effort may be omitted (empty, as ROS allows)."""
    names = list(names)
    cols = {}
    for field, values in (("position", position), ("velocity", velocity), ("effort", effort)):
        arr = np.zeros(0) if values is None else np.ascontiguousarray(values, dtype=np.float64).reshape(-1)
        if arr.size not in (0, len(names)):
            raise ValueError(f"JointState.{field} has {arr.size} values for {len(names)} joint names")
        cols[field] = arr
    return messages.get_class("sensor_msgs/msg/JointState")(header=header(stamp, frame_id), name=names, **cols)


def joint_arrays(msg: Any, order: Sequence[str] | None = None) -> JointArrays:
    """Arrays from a JointState, optionally reordered to `order` (KeyError names missing joints)."""
    names = list(msg.name)
    pos, vel, eff = (np.asarray(a, dtype=np.float64) for a in (msg.position, msg.velocity, msg.effort))
    if order is None:
        return JointArrays(names, pos, vel, eff)
    index = {n: i for i, n in enumerate(names)}
    missing = [n for n in order if n not in index]
    if missing:
        raise KeyError(f"JointState lacks joints {missing}; it has {names}")
    idx = np.array([index[n] for n in order], dtype=np.intp)

    def pick(a: np.ndarray) -> np.ndarray:
        return a[idx] if a.size else a

    return JointArrays(list(order), pick(pos), pick(vel), pick(eff))


# --- Image -----------------------------------------------------------------------------------
def image(
    array: np.ndarray, encoding: str = "rgb8", *, stamp: Time | Any | None = None, frame_id: str = ""
) -> Any:
    """sensor_msgs/Image from an HxW or HxWxC array whose dtype/channels match `encoding`."""
    if encoding not in IMAGE_ENCODINGS:
        raise ImageEncodingError(f"unsupported encoding '{encoding}'; supported: {', '.join(IMAGE_ENCODINGS)}")
    dtype, channels = IMAGE_ENCODINGS[encoding]
    arr = np.asarray(array)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] != channels:
        raise ImageEncodingError(f"{encoding} needs HxWx{channels} (or HxW for 1 channel), got shape {array.shape}")
    if arr.dtype != dtype:
        raise ImageEncodingError(f"{encoding} needs dtype {dtype}, got {arr.dtype}")
    arr = np.ascontiguousarray(arr)
    h, w = arr.shape[:2]
    data = arr.reshape(-1).view(np.uint8)
    big = int(dtype.byteorder == ">" or (dtype.byteorder == "=" and sys.byteorder == "big"))
    return messages.get_class("sensor_msgs/msg/Image")(
        header=header(stamp, frame_id), height=h, width=w, encoding=encoding,
        is_bigendian=big if dtype.itemsize > 1 else 0, step=w * channels * dtype.itemsize, data=data,
    )


def image_array(msg: Any) -> np.ndarray:
    """HxWxC view of an Image's pixels (no copy when rows are unpadded and byte order is native)."""
    if msg.encoding not in IMAGE_ENCODINGS:
        raise ImageEncodingError(f"unsupported encoding '{msg.encoding}'; supported: {', '.join(IMAGE_ENCODINGS)}")
    dtype, channels = IMAGE_ENCODINGS[msg.encoding]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    row_bytes = w * channels * dtype.itemsize
    data = np.asarray(msg.data, dtype=np.uint8)
    if step < row_bytes or data.size < step * h:
        raise ImageEncodingError(
            f"Image {w}x{h} {msg.encoding}: step {step} / data {data.size} bytes too small (row needs {row_bytes})"
        )
    rows = data[: step * h].reshape(h, step)[:, :row_bytes]
    if dtype.itemsize > 1:
        dtype = dtype.newbyteorder(">" if msg.is_bigendian else "<")
    out = np.ascontiguousarray(rows).view(dtype).reshape(h, w, channels)
    return out if out.dtype.isnative else out.astype(out.dtype.newbyteorder("="))


# --- WrenchStamped ---------------------------------------------------------------------------
def wrench(vector: Sequence[float] | np.ndarray, *, stamp: Time | Any | None = None, frame_id: str = "") -> Any:
    """WrenchStamped from [fx, fy, fz, tx, ty, tz]."""
    v = np.asarray(vector, dtype=np.float64).reshape(-1)
    if v.size != 6:
        raise ValueError(f"a wrench is 6 values [fx, fy, fz, tx, ty, tz], got {v.size}")
    vec3 = messages.get_class("geometry_msgs/msg/Vector3")
    w = messages.get_class("geometry_msgs/msg/Wrench")(
        force=vec3(x=float(v[0]), y=float(v[1]), z=float(v[2])),
        torque=vec3(x=float(v[3]), y=float(v[4]), z=float(v[5])),
    )
    return messages.get_class("geometry_msgs/msg/WrenchStamped")(header=header(stamp, frame_id), wrench=w)


def wrench_vector(msg: Any) -> np.ndarray:
    """[fx, fy, fz, tx, ty, tz] from a WrenchStamped or Wrench."""
    w = getattr(msg, "wrench", msg)
    f, t = w.force, w.torque
    return np.array([f.x, f.y, f.z, t.x, t.y, t.z], dtype=np.float64)
