"""Simulated dexterous hands: `sim_leap_hand` (the 16-DoF hand on a fixed base) and `sim_iiwa_leap`
(the same hand on the KUKA iiwa's flange).

The hand (`sim/assets/leap_hand.urdf`, primitive shapes, LEAP-hand-like kinematics) has index,
middle, ring and thumb digits with four revolute joints each, `<digit>_mcp_side` (abduction about the
palm normal), `<digit>_mcp`, `<digit>_pip`, `<digit>_dip` (flexion), so the joint vector is 16 long
in `HAND_JOINTS` order. `<digit>_tip` links are fixed frames at the pad centres (z = pad normal) for
tactile pads; `grasp_site` is a fixed frame 9 cm below the palm face, where the fingertips of a pinch
grasp meet. Palm frame: origin at the wrist mount, +z = palm normal, +x = finger direction; the thumb
sits on the palm's back edge, opposing the three fingers.

Both robots are plain `SimArm`s. The hand joints are `gripper_joints`: always position-controlled
(like the Panda's fingers), so the light finger links are stable at any physics rate and in every
control mode. The iiwa's impedance gains are `sim_iiwa`'s with less damping on joint 3, which makes them
stable at 240 Hz as well as 1000 Hz.

`sim_iiwa_leap` loads a merged URDF (iiwa + fixed `leap_mount` joint + hand) generated once into a
cache file under `tempfile.gettempdir()`, with absolute mesh paths; `leap_mount` is its `ft_joint`,
so `sim.ft.WristFT` measures the wrench between flange and hand. Joint vector: the 7 iiwa joints,
then the 16 hand joints.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from xml.etree import ElementTree

import numpy as np

from robot_stack.robot import register_robot
from sim.camera import WRIST_LINKS
from sim.robots import SimArm, SimArmConfig
from sim.tactile import TactilePadConfig, register_pads
from sim.world import SimError

HAND_URDF = Path(__file__).resolve().parent / "assets" / "leap_hand.urdf"
DIGITS = ("index", "middle", "ring", "thumb")
HAND_JOINTS = tuple(f"{d}_{j}" for d in DIGITS for j in ("mcp_side", "mcp", "pip", "dip"))
TIP_LINKS = tuple(f"{d}_tip" for d in DIGITS)
IIWA_JOINTS = tuple(f"lbr_iiwa_joint_{i}" for i in range(1, 8))
MOUNT_JOINT = "leap_mount"
FLANGE_OFFSET_M = 0.046          # lbr_iiwa_link_7 frame -> flange face along its z
# the hand is turned pi about the flange axis: at joint 7 = 0 in the default pose its fingers point away from the base


@dataclass(frozen=True)
class SimLeapHandConfig(SimArmConfig):
    urdf: str = str(HAND_URDF)
    base_position: tuple[float, float, float] = (0.5, 0.0, 0.25)
    base_orientation: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)   # palm down (pi about x)
    controlled_joints: tuple[str, ...] = HAND_JOINTS
    initial_positions: tuple[float, ...] = (0.0,) * 16
    gripper_joints: tuple[str, ...] = HAND_JOINTS
    stiffness: tuple[float, ...] = (0.0,) * 16        # unused: hand joints are always position-controlled
    damping: tuple[float, ...] = (0.0,) * 16
    position_gain: float = 0.3                        # stiffer position motors than SimArmConfig's 0.1


@dataclass(frozen=True)
class SimIiwaLeapConfig(SimArmConfig):
    urdf: str = ""                                    # "" = the generated iiwa + hand URDF
    controlled_joints: tuple[str, ...] = IIWA_JOINTS + HAND_JOINTS
    # flange pointing down in front of the base, fingers pointing away from it (grasp site near (0.58, 0, 0.3))
    initial_positions: tuple[float, ...] = (0.0, 0.55, 0.0, -1.45, 0.0, 1.14, 0.0) + (0.0,) * 16
    gripper_joints: tuple[str, ...] = HAND_JOINTS
    ft_joint: str = MOUNT_JOINT
    stiffness: tuple[float, ...] = (800.0, 800.0, 600.0, 600.0, 50.0, 30.0, 5.0) + (0.0,) * 16
    # sim_iiwa's gains except joint 3's damping (30 -> 5): its explicit damping term is unstable at 240 Hz
    damping: tuple[float, ...] = (60.0, 60.0, 5.0, 30.0, 0.5, 0.3, 0.03) + (0.0,) * 16
    position_gain: float = 0.3                        # stiffer position motors than SimArmConfig's 0.1


def hand_limits() -> tuple[np.ndarray, np.ndarray]:
    """(16,) lower and upper limits of `HAND_JOINTS`, read from the URDF (no simulator needed)."""
    root = ElementTree.parse(HAND_URDF).getroot()
    limits = {j.get("name"): j.find("limit") for j in root.iter("joint") if j.get("type") == "revolute"}
    missing = [n for n in HAND_JOINTS if n not in limits]
    if missing:
        raise SimError(f"{HAND_URDF} lacks the revolute joints {missing}")
    lower = np.array([float(limits[n].get("lower")) for n in HAND_JOINTS])
    upper = np.array([float(limits[n].get("upper")) for n in HAND_JOINTS])
    return lower, upper


def iiwa_leap_urdf(visual_meshes: str = "full") -> str:
    """Path of the cached merged URDF (iiwa + `leap_mount` + hand); `"collision"` draws the iiwa's
    collision meshes (STL) instead of its textured OBJ meshes."""
    import pybullet_data

    if visual_meshes not in ("full", "collision"):
        raise SimError(f"visual_meshes must be 'full' or 'collision', got {visual_meshes!r}")
    arm = Path(pybullet_data.getDataPath()) / "kuka_iiwa" / "model.urdf"
    if not arm.exists() or not HAND_URDF.exists():
        raise SimError(f"sim_iiwa_leap needs {arm} (pybullet_data) and {HAND_URDF}")
    merged = _merge(arm.read_text(), HAND_URDF.read_text(), arm.parent, lowpoly=visual_meshes == "collision")
    digest = hashlib.sha1(merged.encode()).hexdigest()[:12]
    out = Path(tempfile.gettempdir()) / "robot_stack_urdf" / f"iiwa_leap-{visual_meshes}-{digest}.urdf"
    if out.exists():
        return str(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(merged)
    os.replace(tmp, out)
    return str(out)


def _merge(arm_text: str, hand_text: str, arm_dir: Path, *, lowpoly: bool) -> str:
    """The iiwa URDF with absolute mesh paths, the hand's links/joints and the mount joint appended."""

    def absolute(match: re.Match) -> str:
        path = match.group(1)
        if lowpoly:
            path = re.sub(r"\.obj$", ".stl", path)
        return f'filename="{(arm_dir / path).resolve()}"'

    arm_text = re.sub(r'filename="([^"]+)"', absolute, arm_text)
    body = re.search(r"<robot[^>]*>(.*)</robot>", hand_text, flags=re.S)
    end = arm_text.rfind("</robot>")
    if body is None or end < 0:
        raise SimError("cannot merge the iiwa and hand URDFs: <robot> element not found")
    mount = (f'  <joint name="{MOUNT_JOINT}" type="fixed">\n    <parent link="lbr_iiwa_link_7"/>\n'
             f'    <child link="palm"/>\n    <origin xyz="0 0 {FLANGE_OFFSET_M}" rpy="0 0 {np.pi:.9f}"/>\n  </joint>\n')
    return arm_text[:end] + body.group(1) + mount + arm_text[end:]


# wrist cameras ride on the palm (WristCameraConfig's default offset puts them 1 cm below the palm face)
WRIST_LINKS.update({"sim_leap_hand": "palm", "sim_iiwa_leap": "palm"})


def _fingertip_pad(digit: str) -> TactilePadConfig:
    """A fingertip gel on the distal link, centred on the `<digit>_tip` frame (z = pad normal, x along the
    finger): contacts happen on the distal link's collision shape, the tip frame has none."""
    return TactilePadConfig(link=f"{digit}_distal", offset=(0.0192, 0.0, 0.009), normal=(0.0, 0.0, 1.0),
                            x_axis=(1.0, 0.0, 0.0), size=(0.016, 0.012), sensor_id=f"{digit}_tip",
                            frame_id=f"{digit}_tip")


for _kind in ("sim_leap_hand", "sim_iiwa_leap"):
    register_pads(_kind, [_fingertip_pad(d) for d in ("index", "middle", "ring", "thumb")])


@register_robot("sim_leap_hand")
class SimLeapHand(SimArm):
    """The 16-DoF hand on a fixed base (palm down above the table by default)."""

    config_class = SimLeapHandConfig


@register_robot("sim_iiwa_leap")
class SimIiwaLeap(SimArm):
    """KUKA LBR iiwa 14 (7 joints) with the 16-DoF hand on its flange (23 joints)."""

    config_class = SimIiwaLeapConfig

    def connect(self) -> None:
        if self.body_id is None and not self.config.urdf:
            # SimArm loads `config.urdf` (through `urdf_path`, which copies an absolute-path URDF as is)
            self.config = replace(self.config, urdf=iiwa_leap_urdf(self.config.visual_meshes))
        super().connect()
