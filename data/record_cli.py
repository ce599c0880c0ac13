"""`robot-stack record` (the recorder node with a live status line) and `robot-stack dataset recover`.

Registered by data/__main__.py. Recording is keyboard-free: episodes start and stop on
robot_stack_msgs/EpisodeEvent (`episode_events`), or on a schedule with `--duration S`
(episodes of S seconds, back to back) and `--episodes N` (exit after N). Ctrl-C (SIGINT) or
SIGTERM commits the open episode and exits.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import time
from pathlib import Path


def register_record(subparsers) -> None:
    rec = subparsers.add_parser("record", help="record episodes from topics into a dataset (recorder node)")
    rec.add_argument("--config", required=True, help="recorder YAML file (see data/configs/example_sim.yaml)")
    rec.add_argument("--task", default="", help="task text stored with every episode (default: the config's)")
    rec.add_argument("--dataset", default="", help="dataset directory (default: the config's)")
    rec.add_argument("--episodes", type=int, default=0, help="exit after N episodes (default: until Ctrl-C)")
    rec.add_argument("--duration", type=float, default=0.0,
                     help="record episodes of S seconds back to back, starting now (default: EpisodeEvents)")
    rec.add_argument("--transport", default=None, help="transport (default: $ROBOT_STACK_TRANSPORT or dds)")
    rec.set_defaults(func=record_command)


def register_recover(dataset_subparsers) -> None:
    rc = dataset_subparsers.add_parser("recover", help="commit episodes left open by a killed recorder")
    rc.add_argument("path", help="dataset directory")
    rc.add_argument("--episode", type=int, default=None, help="only this open episode (default: all)")
    rc.add_argument("--force", action="store_true", help="even if the recorder that opened it still runs")
    rc.set_defaults(func=recover_command)


def _status_line(node) -> str:
    st = node.status()
    head = (f"[bold]{st['state']}[/]" + (f"  episode {st['episode']}  {st['duration_s']:6.1f} s"
                                         if st["episode"] is not None else "")
            + f"  committed {st['committed']}  free {st['free_mb']:.0f} MB")
    streams = "  ".join(f"{k} {s['rate_hz']:.0f} Hz" + (f" [red]{s['dropped']} dropped[/]" if s["dropped"] else "")
                        for k, s in st["streams"].items())
    tail = f"\n[red]{st['error']}[/]" if st["error"] else ""
    return f"{head}\n{streams}{tail}"


def record_command(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.live import Live

    import robot_stack as rs
    from data.recorder import ERROR, RecorderNode
    from data.store import StoreError

    if args.episodes < 0 or args.duration < 0:
        raise StoreError("--episodes and --duration must be >= 0")
    params = {"config": args.config, "task": args.task, "dataset": args.dataset,
              "autostart": args.duration > 0, "episode_duration_s": float(args.duration),
              "max_episodes": args.episodes or (1 if args.duration > 0 else 0)}
    stop: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _f: stop.append(signum))
    console = Console(stderr=True)
    with rs.Context(args.transport) as context:
        node = RecorderNode("recorder", context=context, parameter_overrides=params)
        executor = rs.Executor()
        executor.add_node(node)
        try:
            with Live(_status_line(node), console=console, refresh_per_second=4, transient=False) as live:
                next_draw = 0.0
                while not stop and not node.finished:
                    executor.spin_once(0.05)
                    if time.monotonic() >= next_draw:
                        live.update(_status_line(node))
                        next_draw = time.monotonic() + 0.25
        finally:
            executor.remove_node(node)
            node.destroy_node()          # commits the open episode, waits for the commits
    times = ", ".join(f"{t:.2f}" for t in node.commit_times)
    if not console.is_terminal:
        console.print()
    console.print(f"recorded {len(node.committed)} episodes {node.committed} into {node.store.root}"
                  + (f" (commit s: {times})" if times else ""))
    if node.state == ERROR:
        console.print(f"[red]error:[/] {node.error}")
        return 1
    return 0


def _recorder_alive(meta: dict) -> bool:
    rec = meta.get("recorder") or {}
    pid, host = rec.get("pid"), rec.get("hostname")
    if not isinstance(pid, int) or host != socket.gethostname() or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_command(args: argparse.Namespace) -> int:
    from data.store import EpisodeStore, StoreError
    from data.writer import DISCARD_MARKER

    store = EpisodeStore(args.path)
    store.info  # noqa: B018  (a clear error when PATH is not a dataset)
    targets = [args.episode] if args.episode is not None else store.open_episodes()
    if not targets:
        print(f"{args.path}: no open episodes")
        return 0
    for index in targets:
        folder = store.episode_dir(index, open_=True)
        meta_path = folder / "meta.json"
        discarded = (folder / DISCARD_MARKER).exists()      # discarded, killed before the removal ran
        if folder.is_dir() and (discarded or not meta_path.exists()):   # meta.json is written before any data
            trash = folder.with_name(f".discarded-{folder.name}")
            os.rename(folder, trash)
            shutil.rmtree(trash, ignore_errors=True)
            why = "it was discarded before its recorder was killed" if discarded else \
                "its recorder was killed while starting it; nothing was recorded"
            print(f"episode {index}: removed ({why})")
            continue
        if meta_path.exists() and not args.force and _recorder_alive(json.loads(meta_path.read_text())):
            raise StoreError(f"episode {index} is still being recorded by pid "
                             f"{json.loads(meta_path.read_text())['recorder']['pid']}; use --force to recover anyway")
        store.recover(index)
        ep = store.episode(index)
        counts = ", ".join(f"{k}: {s['count']}" for k, s in ep.meta["stream_stats"].items())
        print(f"recovered episode {index}: {ep.duration_s:.2f} s ({counts}) -> {Path(ep.path)}")
    return 0
