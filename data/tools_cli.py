"""CLI for the episode tools: `dataset replay` and `dataset view` (registered by data/__main__.py)."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path


def register_tools(sub) -> None:
    rp = sub.add_parser("replay", help="republish an episode on its original topics with its original timing")
    rp.add_argument("path", help="dataset directory")
    rp.add_argument("--episode", type=int, required=True)
    rp.add_argument("--rate", type=float, default=1.0, help="playback speed (2 = twice as fast)")
    rp.add_argument("--keep-stamps", action="store_true", help="publish the recorded header stamps unchanged")
    rp.add_argument("--streams", default="", help="comma-separated stream keys (default: all)")
    rp.add_argument("--transport", default=None, help="transport (default: $ROBOT_STACK_TRANSPORT or dds)")
    rp.set_defaults(func=replay_command)
    vw = sub.add_parser("view", help="rerun recording (.rrd) and a PNG summary plot of an episode")
    vw.add_argument("path", help="dataset directory")
    vw.add_argument("--episode", type=int, required=True)
    vw.add_argument("--out", default="", help="output stem (default: PATH/views/ep-N)")
    vw.add_argument("--no-rerun", action="store_true", help="only the PNG summary")
    vw.set_defaults(func=view_command)


def replay_command(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    import robot_stack as rs
    from data.replay import replay
    from data.store import EpisodeStore

    ep = EpisodeStore(args.path).episode(args.episode)
    keys = [k for k in args.streams.split(",") if k] or None
    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(True))
    with rs.Context(args.transport) as context, Progress() as progress:
        node = rs.Node("dataset_replay", context=context)
        bar = progress.add_task(f"episode {ep.index}", total=max(ep.duration_s, 1e-3))
        counts = replay(ep, node, rate=args.rate, keep_stamps=args.keep_stamps, keys=keys,
                        on_message=lambda dt, _k: progress.update(bar, completed=dt / 1e9),
                        should_stop=lambda: bool(stop))
        node.destroy_node()
    print(", ".join(f"{k}: {n}" for k, n in counts.items()))
    return 0


def view_command(args: argparse.Namespace) -> int:
    from data.store import EpisodeStore
    from data.view import rerun_recording, summary_png

    ep = EpisodeStore(args.path).episode(args.episode)
    stem = Path(args.out) if args.out else Path(args.path) / "views" / f"ep-{ep.index:06d}"
    print(f"summary plot: {summary_png(ep, stem.with_suffix('.png'))}")
    if not args.no_rerun:
        print(f"rerun recording: {rerun_recording(ep, stem.with_suffix('.rrd'))} (open with `rerun FILE`)")
    return 0
