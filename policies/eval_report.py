"""Evaluation reports: success rate with a Wilson score interval, JSON + markdown + a progress plot.

`write_report(results, out, info)` writes `out/report.json`, `out/report.md` and `out/success.png`
from a list of per-episode results (`policies.evaluate.EpisodeResult` or anything with the same
attributes); it is a pure function of its inputs, so reports can be rebuilt or merged offline.
Rows carry each episode's contact force and command smoothness when recorded; the summary's
`force_n` and `smoothness` are `policies.paired_report.side_summary`'s (null when none was).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

Z95 = 1.959963984540054      # two-sided 95 % normal quantile


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (Wilson 1927); (0, 1) when n == 0."""
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"wilson_interval: need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def _row(result: Any) -> dict[str, Any]:
    row = dataclasses.asdict(result) if dataclasses.is_dataclass(result) else dict(vars(result))
    row["curve"] = [[int(s), float(p)] for s, p in row.get("curve", [])]
    return row


def summary(results: list[Any]) -> dict[str, Any]:
    n = len(results)
    wins = sum(bool(r.success) for r in results)
    lo, hi = wilson_interval(wins, n)
    times = [r.time_to_success_s for r in results if r.success and r.time_to_success_s is not None]
    from policies.paired_report import episode_record, side_summary  # it imports this module

    paired = side_summary([episode_record(r, k) for k, r in enumerate(results)])
    return {"episodes": n, "successes": wins, "success_rate": wins / n if n else 0.0,
            "wilson95": [lo, hi], "mean_final_progress": sum(r.final_progress for r in results) / n if n else 0.0,
            "mean_time_to_success_s": sum(times) / len(times) if times else None,
            "errors": sum(bool(getattr(r, "error", "")) for r in results),
            "sync_timeouts": sum(int(getattr(r, "sync_timeouts", 0)) for r in results),
            "force_n": paired["force_n"], "smoothness": paired["smoothness"]}


def write_report(results: list[Any], out: Path, info: dict[str, Any]) -> dict[str, Any]:
    """Write report.json, report.md and success.png under `out`; returns the JSON data."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = {**info, "summary": summary(results), "episodes": [_row(r) for r in results]}
    (out / "report.json").write_text(json.dumps(data, indent=1, default=str))
    (out / "report.md").write_text(markdown(data, out))
    plot(results, out / "success.png", title=f"{info.get('policy', '')} on {info.get('task', '')}")
    return data


def markdown(data: dict[str, Any], out: Path) -> str:
    s = data["summary"]
    lo, hi = s["wilson95"]
    lines = [f"# Evaluation: {data.get('policy', '?')} on {data.get('task', '?')}", "",
             f"- checkpoint: `{data.get('checkpoint', '')}`",
             f"- episodes: {s['episodes']} (seeds {data.get('seeds', '')}), workers: {data.get('workers', '')}",
             f"- perturb: {data.get('perturb', False)}, randomize: {data.get('randomize', False)}, "
             f"max steps: {data.get('max_steps', '')}",
             f"- **success rate: {s['success_rate']:.1%} ({s['successes']}/{s['episodes']}), "
             f"Wilson 95% interval [{lo:.1%}, {hi:.1%}]**",
             f"- mean final progress: {s['mean_final_progress']:.3f}; lockstep timeouts: {s['sync_timeouts']}",
             f"- contact force |F| (N): {_group(s.get('force_n'), 'mean', 'max', '.2f')}; command smoothness: "
             f"{_group(s.get('smoothness'), 'mean_squared_jerk', 'mean_abs_delta', '.4g')}", ""]
    lines += ["| seed | success | steps | time to success (s) | final progress | wall (s) | max force (N) "
              "| sq. jerk | video |", "|---:|:---:|---:|---:|---:|---:|---:|---:|---|"]
    for e in data["episodes"]:
        tts = "" if e["time_to_success_s"] is None else f"{e['time_to_success_s']:.2f}"
        video = f"[mp4]({Path(e['video']).relative_to(out)})" if e["video"] and _inside(e["video"], out) else ""
        ok = "yes" if e["success"] else ("error: " + e["error"] if e.get("error") else "no")
        lines.append(f"| {e['seed']} | {ok} | {e['steps']} | {tts} | {e['final_progress']:.3f} | "
                     f"{e['wall_s']:.1f} | {_num(e.get('force_max_n'), '.2f')} | "
                     f"{_num(e.get('mean_squared_jerk'), '.4g')} | {video} |")
    return "\n".join(lines) + "\n\n![progress](success.png)\n"


def _num(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def _group(part: dict[str, Any] | None, a: str, b: str, fmt: str) -> str:
    """'a x, b y (n episodes)' of a summary group, or 'n/a' when nothing was recorded."""
    if part is None:
        return "n/a"
    return f"{a.replace('_', ' ')} {_num(part[a], fmt)}, {b.replace('_', ' ')} {_num(part[b], fmt)} " \
           f"({part['episodes']} episodes)"


def _inside(path: str, root: Path) -> bool:
    try:
        Path(path).relative_to(root)
        return True
    except ValueError:
        return False


def plot(results: list[Any], path: Path, title: str = "") -> None:
    """Per-episode progress curves (left) and final progress bars coloured by success (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    try:
        for r in results:
            if r.curve:
                steps, progress = zip(*r.curve, strict=True)
                left.plot(steps, progress, color="tab:green" if r.success else "tab:red", alpha=0.7, lw=1)
        left.set(xlabel="task step", ylabel="progress", title="progress per episode", ylim=(0, 1.05))
        seeds = [str(r.seed) for r in results]
        right.bar(seeds, [r.final_progress for r in results],
                  color=["tab:green" if r.success else "tab:red" for r in results])
        s = summary(results)
        lo, hi = s["wilson95"]
        right.set(xlabel="seed", ylabel="final progress", ylim=(0, 1.05),
                  title=f"success {s['successes']}/{s['episodes']} (95% CI {lo:.2f}-{hi:.2f})")
        right.tick_params(axis="x", labelrotation=90 if len(seeds) > 20 else 0)
        fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
