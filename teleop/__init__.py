"""Teleoperation: devices that publish targets the robot node follows (DESIGN.md "Teleoperation").

- `exo`: isomorphic exoskeleton / leader arm (GELLO, Koch, SO-100 leaders) on a servo bus ->
  follower joints (offsets, signs, scales from a YAML map; a trigger joint -> gripper).
- `glove_hand`: data glove (`/glove/joints`) -> 16-DoF hand joints, linear per joint, optionally
  refined by fingertip-vector retargeting (`retarget`).
- `evdev`, `spacemouse`: byte-level parsers of Linux input events and 3Dconnexion HID reports;
  `velocity` (+ `velocity_config`): keyboard / gamepad / SpaceMouse end-effector velocity teleop
  (`TeleopTarget` MODE_POSE).
- `pedal`: foot pedal (evdev keys or ASCII serial lines) -> `EpisodeEvent`s.
- `base`: what every teleop node shares (dead-man, stream watchdog, episode buttons, status);
  `safety`: limits and watchdogs; `episode`: episode control from buttons; `reader`: non-blocking
  byte sources (device nodes, pipes, ptys); `config`: frozen dataclasses from YAML.
- `launch`, `monitor`, `__main__`: `robot-stack teleop --config FILE`, the operator flow;
  `emulated`: scripted operators for hardware-free setups; `configs/`: bundled configs and maps.

Only `robot_stack` and `drivers` are imported here (never sim, data or policies: those are
named by class path strings in launch layouts).
"""
