"""Robot feedback -> what the page draws: wrench and tactile summaries (JSON), camera frames (JPEG)."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from robot_stack import convert
from robot_stack.clock import Time
from teleop.web.protocol import encode

# encoding -> OpenCV conversion to BGR (what imencode takes); None: already BGR or mono
_TO_BGR = {"rgb8": cv2.COLOR_RGB2BGR, "rgba8": cv2.COLOR_RGBA2BGR, "bgra8": cv2.COLOR_BGRA2BGR,
           "bgr8": None, "mono8": None}


def wrench_message(msg: Any, answers: dict | None = None) -> str:
    """`wrench` for the page; `answers` ({client, seq}) names the pose this wrench responded to."""
    v = convert.wrench_vector(msg)
    extra = {"answers": answers} if answers else {}
    return encode("wrench", stamp_ns=Time.from_msg(msg.header.stamp).nanoseconds, frame_id=msg.header.frame_id,
                  force=[float(x) for x in v[:3]], torque=[float(x) for x in v[3:]], **extra)


def tactile_pad(msg: Any) -> dict:
    """Mean shear (x, y) and mean normal displacement [m] of one TactileFrame, plus its normal force."""
    disp = np.asarray(msg.displacement, dtype=np.float64)
    n = int(msg.rows) * int(msg.cols)
    if n == 0 or disp.size != 3 * n:
        shear, normal = [0.0, 0.0], 0.0
    else:
        grid = disp.reshape(n, 3)
        finite = grid[np.all(np.isfinite(grid), axis=1)]
        mean = finite.mean(axis=0) if len(finite) else np.zeros(3)
        shear, normal = [float(mean[0]), float(mean[1])], float(mean[2])
    return {"id": msg.sensor_id, "shear": shear, "normal": normal, "normal_force": float(msg.normal_force),
            "stamp_ns": Time.from_msg(msg.header.stamp).nanoseconds}


def tactile_message(msg: Any) -> str:
    return encode("tactile", pad=tactile_pad(msg))


def jpeg_bytes(msg: Any, quality: int) -> bytes | None:
    """A sensor_msgs/Image as JPEG, or None for encodings a browser cannot be shown (depth...)."""
    if msg.encoding not in _TO_BGR:
        return None
    pixels = convert.image_array(msg)
    code = _TO_BGR[msg.encoding]
    if code is not None:
        pixels = cv2.cvtColor(pixels, code)
    ok, buf = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return buf.tobytes() if ok else None
