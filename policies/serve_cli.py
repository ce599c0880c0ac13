"""`robot-stack serve --checkpoint CKPT [--slow-hz 10 --fast-hz 100] [--obs-map FILE] [--transport T]`.

Builds a launch configuration and runs it with the launch supervisor (`robot_stack.launch`): one
process with `policies.server:PolicyServerNode`, and for a policy with a fast decoder (RDP) a second
one with `policies.fast:FastDecoderNode`, so the fast loop never shares a GIL with the slow model.
`--print-launch` prints the equivalent launch file instead (to copy into a robot's launch file).

The observation map file (YAML) maps policy features to topics, see `policies.obs_buffer`:

    observation.state: {topic: /joint_states, type: sensor_msgs/msg/JointState, field: position}
    observation.images.fixed: /fixed/image_raw
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Any

import yaml

from robot_stack.cli.common import transport_name, transport_parent
from robot_stack.errors import ConfigError

SERVER_CLASS = "policies.server:PolicyServerNode"
FAST_CLASS = "policies.fast:FastDecoderNode"


def register_serve(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve", parents=[transport_parent()],
        help="serve a policy checkpoint on live topics (slow part, and the fast decoder in its own process)",
        description="Run a policy checkpoint as a node: observations from topics (aligned by timestamp), "
        "ActionChunks on action_chunk for the robot node. RDP checkpoints also start the fast decoder in "
        "a second process. Ctrl-C stops everything.",
    )
    p.add_argument("--checkpoint", required=True, type=Path, help="checkpoint directory (policy.json + weights)")
    p.add_argument("--slow-hz", type=float, metavar="HZ", help="predictions per second (default: the checkpoint's)")
    p.add_argument("--trigger", choices=("observation", "timer"),
                   help="start a prediction when a new slow period's observation arrives (default) or on a timer")
    p.add_argument("--fast-hz", type=float, metavar="HZ", help="fast decoder rate (default: the checkpoint's)")
    p.add_argument("--obs-map", type=Path, metavar="FILE", help="YAML: policy feature -> {topic, type, field}")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1)")
    p.add_argument("--max-obs-age", type=float, metavar="S", help="refuse to act on observations older than S")
    p.add_argument("--chunk-steps", type=int, metavar="N",
                   help="actions per chunk (default: the policy's n_action_steps; its horizon at most)")
    p.add_argument("--import", dest="policy_modules", action="append", default=[], metavar="MODULE",
                   help="import MODULE first (a policy registered outside the policies package); repeatable")
    p.add_argument("--namespace", default="", help="namespace of the serving nodes")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    p.add_argument("--print-launch", action="store_true", help="print the launch file and exit")
    p.set_defaults(func=run_serve)


def read_obs_map(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(str(path), "file", f"cannot read the observation map: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(v, (str, dict)) for v in data.values()):
        raise ConfigError(str(path), "top level", "expected a mapping feature -> topic or {topic, type, field}")
    return data


def serve_launch(args: argparse.Namespace) -> dict[str, Any]:
    """The launch-file data (`robot_stack.launch.parse_launch` input) for `args`."""
    from policies.base import policy_class, read_checkpoint_meta
    from policies.server import has_fast_decoder

    for module in args.policy_modules:
        importlib.import_module(module)
    meta = read_checkpoint_meta(args.checkpoint)
    fast = has_fast_decoder(policy_class(meta["policy"]))
    common: dict[str, Any] = {"checkpoint": str(Path(args.checkpoint).resolve()), "device": args.device}
    for key, value in (("max_obs_age_s", args.max_obs_age), ("chunk_steps", args.chunk_steps),
                       ("policy_modules", args.policy_modules or None)):
        if value is not None:
            common[key] = value
    obs_map = read_obs_map(args.obs_map)
    if obs_map:
        common["observations"] = obs_map        # nested: the launch parser flattens it to observations.<f>.<attr>
    slow = {**common, **({"slow_hz": args.slow_hz} if args.slow_hz else {}),
            **({"trigger": args.trigger} if args.trigger else {})}
    processes = {"policy_slow": {"nodes": [_node("policy_server", SERVER_CLASS, args.namespace, slow)]}}
    if fast:
        params = {**common, **({"fast_hz": args.fast_hz} if args.fast_hz else {})}
        processes["policy_fast"] = {"nodes": [_node("policy_fast", FAST_CLASS, args.namespace, params)]}
    return {"transport": transport_name(args), "processes": processes}


def _node(name: str, class_path: str, namespace: str, params: dict[str, Any]) -> dict[str, Any]:
    node = {"name": name, "class": class_path, "parameters": params}
    if namespace:
        node["namespace"] = namespace
    return node


def run_serve(args: argparse.Namespace) -> int:
    from robot_stack.launch.config import parse_launch

    data = serve_launch(args)
    if args.print_launch:
        print(yaml.safe_dump(data, sort_keys=False), end="")
        return 0
    config = parse_launch(data, f"robot-stack serve --checkpoint {args.checkpoint}")
    from robot_stack.launch.supervisor import Supervisor

    return Supervisor(config, log_level=getattr(args, "log_level", "INFO")).run(args.duration)
