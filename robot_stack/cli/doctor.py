"""`robot-stack doctor`: what works on this machine (transports, optional packages, environment) and why not."""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import tempfile
from dataclasses import dataclass

from rich.table import Table
from rich.text import Text

from robot_stack.cli import common
from robot_stack.errors import TransportUnavailable
from robot_stack.transport import available_names, shm, shm_ring, transport_class

# import name -> what it is used for
OPTIONAL_PACKAGES = {
    "cyclonedds": "dds transport",
    "rclpy": "rclpy transport, ROS 2 interop",
    "rosbags": "message types, rosbag2 export",
    "numpy": "arrays",
    "torch": "policies, training",
    "pybullet": "simulation",
    "gymnasium": "simulation env API",
    "av": "video encoding (LeRobot export)",
    "cv2": "cameras, image codecs",
    "zenoh": "zenoh transport",
    "rerun": "visualisation",
    "diffusers": "diffusion schedulers",
    "safetensors": "checkpoints",
    "pyarrow": "parquet (LeRobot export)",
    "zarr": "zarr export",
    "playwright": "web AR page tests",
}


@dataclass(frozen=True)
class Check:
    group: str
    name: str
    ok: bool
    detail: str


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "doctor", parents=[common.transport_parent()], help="check transports, optional packages and environment"
    )
    p.set_defaults(func=run_doctor)


def check_transports(selected: str) -> list[Check]:
    out = []
    for name in available_names():
        label = f"{name} (selected)" if name == selected else name
        try:
            detail = transport_class(name).check_available()
            out.append(Check("transport", label, True, detail or "available"))
        except TransportUnavailable as exc:
            out.append(Check("transport", label, False, str(exc)))
        except Exception as exc:  # a broken backend must not break the doctor
            out.append(Check("transport", label, False, f"{type(exc).__name__}: {exc}"))
    return out


def check_package(module: str, purpose: str) -> Check:
    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # ImportError, or a native library failing to load
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return Check("package", module, False, f"{reason} (needed for: {purpose})")
    version = getattr(mod, "__version__", None) or _dist_version(module)
    return Check("package", module, True, f"{version or 'version unknown'} ({purpose})")


def _dist_version(module: str) -> str | None:
    from importlib import metadata

    for dist in metadata.packages_distributions().get(module, []):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def check_shm(path: str | None = None) -> Check:
    path = path or str(shm_ring.shm_dir())
    if shm.SHM_ENV in os.environ and os.environ[shm.SHM_ENV] == "0":
        return Check("system", path, False, f"shared-memory images switched off (${shm.SHM_ENV}=0)")
    if not os.path.isdir(path):
        return Check("system", path, False, "missing: shared-memory images fall back to normal messages")
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix="robot_stack_doctor_") as f:
            f.write(b"x")
            f.flush()
    except OSError as exc:
        return Check("system", path, False, f"not writable ({exc.strerror}): shared-memory images disabled")
    stat = os.statvfs(path)
    return Check("system", path, True, f"writable, {stat.f_bavail * stat.f_frsize / 2**30:.1f} GiB free")


def _dds_settings() -> str:
    try:
        from robot_stack.transport import dds_config

        return dds_config.resolve().describe() + f" (${dds_config.DISCOVERY_ENV})"
    except Exception as exc:  # missing module or a bad environment value: say which
        return f"{type(exc).__name__}: {exc}"


def check_environment() -> list[Check]:
    ros_range = os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE")
    domain = os.environ.get("ROS_DOMAIN_ID")
    checks = [
        Check("environment", "DDS discovery", True, _dds_settings()),
        Check("environment", "ROS_DOMAIN_ID", True, domain if domain else "0 (unset)"),
        Check("environment", "default transport", True,
              os.environ.get(common.DEFAULT_TRANSPORT_ENV, "dds") + f" (${common.DEFAULT_TRANSPORT_ENV})"),
        Check("environment", "python", True, f"{platform.python_version()} ({sys.executable})"),
        Check("environment", "platform", True, platform.platform()),
    ]
    if ros_range:
        checks.insert(1, Check("environment", "ROS_AUTOMATIC_DISCOVERY_RANGE", True, ros_range))
    for var in ("ROS_STATIC_PEERS", "CYCLONEDDS_URI", "RMW_IMPLEMENTATION"):
        if os.environ.get(var):
            checks.append(Check("environment", var, True, os.environ[var]))
    return checks


def run_doctor(args: argparse.Namespace) -> int:
    with common.progress("checking transports and optional packages"):
        checks = check_transports(common.transport_name(args))
        checks += [check_package(m, why) for m, why in OPTIONAL_PACKAGES.items()]
        checks += [check_shm()]
        checks += check_environment()
    table = Table(title="robot-stack doctor", title_justify="left")
    for col in ("", "check", "status", "detail"):
        table.add_column(col, no_wrap=col != "detail")
    for c in checks:
        status = "[green]ok[/]" if c.ok else "[red]unavailable[/]"
        if c.group == "environment":
            status = "[blue]info[/]"
        table.add_row(c.group, Text(c.name), status, Text(c.detail))
    common.console().print(table)
    return 0
