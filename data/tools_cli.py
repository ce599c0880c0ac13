"""CLI for the episode tools: `dataset replay` and `dataset view` (registered by data/__main__.py)."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path


def register_tools(sub) -> None:
    ex = sub.add_parser("export", help="export episodes to LeRobot v3, rosbag2 (MCAP) or a zarr replay buffer")
    ex.add_argument("path", help="dataset directory (episode store)")
    ex.add_argument("--format", required=True, help="lerobot | rosbag2 | zarr")
    ex.add_argument("--out", required=True, help="output directory (or .zarr path)")
    ex.add_argument("--episodes", default="", help="comma-separated episode indices (default: all)")
    ex.add_argument("--fps", type=float, default=None, help="fixed-rate formats: resampling rate")
    ex.add_argument("--features", default="", help="YAML file mapping feature names to streams (data.features)")
    ex.set_defaults(func=export_command)
    im = sub.add_parser("import", help="import a LeRobot v3 dataset, rosbag2 bag(s) or zarr buffer into a store")
    im.add_argument("src", help="what to import")
    im.add_argument("--format", required=True, help="lerobot | rosbag2 | zarr")
    im.add_argument("--into", required=True, help="episode store directory (created if missing)")
    im.set_defaults(func=import_command)
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


def _progress_callback(progress, label: str):
    bar = progress.add_task(label, total=None)
    return lambda done, total: progress.update(bar, completed=done, total=total)


def export_command(args: argparse.Namespace) -> int:
    import yaml
    from rich.progress import Progress

    from data.features import parse_features
    from data.formats import format_class
    from data.store import EpisodeStore

    fmt = format_class(args.format)()
    store = EpisodeStore(args.path)
    episodes = [int(e) for e in args.episodes.split(",") if e.strip()] or None
    features = parse_features(yaml.safe_load(Path(args.features).read_text())) if args.features else None
    with Progress() as progress:
        out = fmt.export(store, args.out, episodes=episodes, features=features, fps=args.fps,
                         progress=_progress_callback(progress, f"export {args.format}"))
    print(f"exported {len(episodes or store.episodes())} episodes to {out}")
    return 0


def import_command(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from data.formats import format_class
    from data.store import EpisodeStore

    fmt = format_class(args.format)()
    store = EpisodeStore.create(args.into)
    with Progress() as progress:
        added = fmt.import_(args.src, store, progress=_progress_callback(progress, f"import {args.format}"))
    print(f"imported {len(added)} episodes into {args.into}: {added}")
    return 0
