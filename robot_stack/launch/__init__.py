"""Launch files: processes -> nodes (`module:Class`), parameters, remaps, transport.

`load_launch_file` reads and validates a YAML launch file into frozen dataclasses;
`Supervisor` starts one OS process per entry, watches them and stops them cleanly.
"""

from robot_stack.launch.config import (
    LaunchConfig,
    NodeSpec,
    ProcessSpec,
    RealtimeSpec,
    bundled_launch_files,
    load_launch_file,
    parse_launch,
    resolve_launch_path,
)

__all__ = [
    "LaunchConfig", "NodeSpec", "ProcessSpec", "RealtimeSpec",
    "bundled_launch_files", "load_launch_file", "parse_launch", "resolve_launch_path",
]
