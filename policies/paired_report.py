"""Paired sim / real evaluation reports (`robot-stack eval-compare`, DESIGN.md "Policies").

`write_paired_report(sim_results, real_results, out, info)` is a pure function of two lists of
episode records; it writes three files under `out`:

`paired_report.json`:

    {"info": {...},                               # what the caller passed (checkpoint, sources, ...)
     "sides": {"sim": SIDE, "real": SIDE}}
    SIDE = {"summary": {
              "episodes": n, "successes": k, "success_rate": k/n, "wilson95": [lo, hi],
              "completion_time_s": {"n": m, "mean": s, "median": s} | null,   # successful episodes with a time
              "force_n": {"episodes": m, "mean": N, "max": N} | null,        # |F| from /wrench, when recorded
              "smoothness": {"episodes": m, "mean_squared_jerk": x, "mean_abs_delta": x} | null,
              "errors": e},
            "episodes": [ROW, ...]}
    ROW = {"episode", "success", "completion_time_s", "duration_s", "force_mean_n", "force_max_n",
           "mean_squared_jerk", "mean_abs_delta", "note", "error"}      # null where not measured

`paired_report.md`: one table with a row per metric and a column per side, then a per-episode table
(the k-th episode of each side on one row), and `paired.png`: success rate per side with its Wilson
95 % interval as error bars (left) and a box plot of the completion times of successful episodes
(right).

Episode records are dicts or objects (e.g. `policies.evaluate.EpisodeResult`, or `report.json`
rows) with `success` and any of the ROW fields; a sim result's `seed` and `time_to_success_s` stand
for `episode` and `completion_time_s`.

Metrics. Contact force: per episode the mean and max of |F| (the force part of each WrenchStamped);
a side's `force_n.mean` is the mean of the episodes' means, `max` the largest. Action smoothness of
the executed command trajectory x_k (resampled at a uniform step dt, `command_trajectory`):
mean squared jerk = mean over steps and joints of ((x_{k+3} - 3x_{k+2} + 3x_{k+1} - x_k) / dt^3)^2,
and mean |Δaction| = mean over steps and joints of |x_{k+1} - x_k| (units of the action per step).
A side's figure is the mean over its episodes. Both sides record them with `episode_metrics`:
`robot-stack eval-real` from the robot's `/wrench` and the commands the robot gets,
`robot-stack eval` (`policies.evaluate`) from the sim's `wrench` (the wrist F/T every sim arm has,
tared at the episode's first reading) and the policy's `task/action_chunk`, both in sim time.

`compare_dirs(sim_dir, real_dir, out)` pairs two evaluation output directories: their
`report.json` episodes, each row updated with the `metrics.json` row of the same `seed` when the
directory has one (`robot-stack eval-real` writes it; a sim eval's rows carry the metrics themselves).
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from policies.base import PolicyError
from policies.eval_report import wilson_interval
from robot_stack.clock import NS, Time

SIDES = ("sim", "real")
ROW_FIELDS = ("episode", "success", "completion_time_s", "duration_s", "force_mean_n", "force_max_n",
              "mean_squared_jerk", "mean_abs_delta", "note", "error")
ALIASES = {"episode": "seed", "completion_time_s": "time_to_success_s"}
METRICS_FILE = "metrics.json"


class PairedReportError(PolicyError):
    pass


# --- metrics -------------------------------------------------------------------------------------
def command_trajectory(commands: Sequence[tuple[int, int, int, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The executed trajectory of a command stream, as the robot node follows it: each command
    (recv_ns, first_ns, dt_ns, rows (S, D)) schedules step k at first_ns + k * dt_ns; steps due
    before it was received are skipped, and a later command replaces what is left of earlier ones.
    Returns (times in s from the first point, (N, D) values), sorted by time."""
    times: list[np.ndarray] = []
    values: list[np.ndarray] = []
    order = sorted(commands, key=lambda c: c[0])
    for k, (recv_ns, first_ns, dt_ns, rows) in enumerate(order):
        rows = np.atleast_2d(np.asarray(rows, dtype=np.float64))
        t = first_ns + dt_ns * np.arange(len(rows), dtype=np.int64)
        keep = t >= recv_ns
        if k + 1 < len(order):
            keep &= t < order[k + 1][0]
        times.append(t[keep])
        values.append(rows[keep])
    if not times or not sum(len(t) for t in times):
        return np.zeros(0), np.zeros((0, 0))
    t = np.concatenate(times)
    x = np.concatenate(values)
    idx = np.argsort(t, kind="stable")
    return (t[idx] - t[idx[0]]) / 1e9, x[idx]


def resample(times_s: np.ndarray, values: np.ndarray, dt_s: float) -> np.ndarray:
    """Linear interpolation of (N, D) `values` at a uniform step `dt_s` from the first time."""
    if len(times_s) < 2:
        return np.asarray(values, dtype=np.float64)
    grid = np.arange(times_s[0], times_s[-1] + dt_s * 1e-6, dt_s)
    return np.stack([np.interp(grid, times_s, values[:, j]) for j in range(values.shape[1])], axis=1)


def smoothness(values: np.ndarray, dt_s: float) -> dict[str, float | None]:
    """Mean squared jerk and mean |Δaction| of (N, D) values sampled every `dt_s` (module docstring)."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 2 or dt_s <= 0:
        raise PairedReportError(f"smoothness: need (N, D) values and dt > 0, got shape {x.shape}, dt {dt_s}")
    delta = float(np.mean(np.abs(np.diff(x, axis=0)))) if len(x) >= 2 else None
    jerk = float(np.mean((np.diff(x, n=3, axis=0) / dt_s**3) ** 2)) if len(x) >= 4 else None
    return {"mean_squared_jerk": jerk, "mean_abs_delta": delta}


def force_stats(forces: Sequence[Sequence[float]]) -> dict[str, float | None]:
    """Mean and max of |F| over (N, 3+) force (or wrench) samples; None without samples."""
    f = np.asarray(forces, dtype=np.float64)
    if f.size == 0:
        return {"force_mean_n": None, "force_max_n": None}
    norms = np.linalg.norm(f.reshape(len(f), -1)[:, :3], axis=1)
    return {"force_mean_n": float(norms.mean()), "force_max_n": float(norms.max())}


Command = tuple[int, int, int, tuple[str, ...], np.ndarray]   # (recv_ns, first_ns, dt_ns, names, (S, D) rows)


def chunk_command(msg: Any, recv_ns: int) -> Command:
    """The `Command` of a robot_stack_msgs/ActionChunk received at `recv_ns` (step k due at its
    header stamp + k * dt; an unstamped chunk's first step is due on receipt)."""
    first_ns = Time.from_msg(msg.header.stamp).nanoseconds
    dt_ns = int(msg.dt.sec) * NS + int(msg.dt.nanosec)
    rows = np.asarray(msg.actions, dtype=np.float64).reshape(int(msg.steps), len(msg.names))
    return recv_ns, first_ns or recv_ns, dt_ns, tuple(msg.names), rows


def episode_metrics(commands: Sequence[Command], forces: Sequence[Sequence[float]], dt_s: float) -> dict[str, Any]:
    """Force and smoothness figures of one episode's recording, the same for the sim and the real
    side: `commands`, `force_samples`, `force_stats(forces)` and `smoothness` of the executed
    `command_trajectory` resampled every `dt_s` (None with fewer than 2 points). Commands naming
    other joints than the first command does are left out of the trajectory."""
    out: dict[str, Any] = {"commands": len(commands), "force_samples": len(forces), **force_stats(forces),
                           "mean_squared_jerk": None, "mean_abs_delta": None}
    names = commands[0][3] if commands else ()
    same = [(recv, first, dt, rows) for recv, first, dt, n, rows in commands if n == names]
    times, values = command_trajectory(same)
    if len(times) >= 2:
        out.update(smoothness(resample(times, values, dt_s), dt_s))
    return out


# --- records and summaries -------------------------------------------------------------------------
def episode_record(result: Any, index: int = 0) -> dict[str, Any]:
    """A ROW from a dict or an object (see the module docstring); `index` when it has no episode."""
    raw = dataclasses.asdict(result) if dataclasses.is_dataclass(result) else dict(
        result if isinstance(result, dict) else vars(result))
    row = {name: raw.get(name, raw.get(ALIASES.get(name, ""))) for name in ROW_FIELDS}
    row["episode"] = index if row["episode"] is None else int(row["episode"])
    row["success"] = bool(row["success"])
    row["note"], row["error"] = str(row["note"] or ""), str(row["error"] or "")
    if not row["success"]:
        row["completion_time_s"] = None
    return row


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values))


def side_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(rows)
    wins = sum(r["success"] for r in rows)
    lo, hi = wilson_interval(wins, n)
    times = [r["completion_time_s"] for r in rows if r["success"] and r["completion_time_s"] is not None]
    forced = [r for r in rows if r["force_max_n"] is not None]
    smooth = [r for r in rows if r["mean_squared_jerk"] is not None]
    return {"episodes": n, "successes": wins, "success_rate": wins / n if n else 0.0, "wilson95": [lo, hi],
            "completion_time_s": {"n": len(times), "mean": _mean(times), "median": float(statistics.median(times))}
            if times else None,
            "force_n": {"episodes": len(forced), "mean": _mean([r["force_mean_n"] for r in forced]),
                        "max": max(r["force_max_n"] for r in forced)} if forced else None,
            "smoothness": {"episodes": len(smooth),
                           "mean_squared_jerk": _mean([r["mean_squared_jerk"] for r in smooth]),
                           "mean_abs_delta": _mean([r["mean_abs_delta"] for r in smooth])} if smooth else None,
            "errors": sum(bool(r["error"]) for r in rows)}


def write_paired_report(sim_results: list[Any], real_results: list[Any], out: Path,
                        info: dict[str, Any]) -> dict[str, Any]:
    """Write paired_report.json, paired_report.md and paired.png under `out`; returns the JSON data."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sides = {}
    for side, results in zip(SIDES, (sim_results, real_results), strict=True):
        rows = [episode_record(r, k) for k, r in enumerate(results)]
        sides[side] = {"summary": side_summary(rows), "episodes": rows}
    data = {"info": dict(info), "sides": sides}
    (out / "paired_report.json").write_text(json.dumps(data, indent=1, default=str))
    (out / "paired_report.md").write_text(markdown(data))
    plot(data, out / "paired.png")
    return data


# --- rendering -------------------------------------------------------------------------------------
def _num(value: float | None, fmt: str = ".2f") -> str:
    return "n/a" if value is None else format(value, fmt)


def _field(summary: dict[str, Any], group: str, key: str, fmt: str = ".2f") -> str:
    part = summary[group]
    return "n/a" if part is None else _num(part[key], fmt)


def metric_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """(metric, rendered value) of one side's summary, in table order."""
    lo, hi = summary["wilson95"]
    t = summary["completion_time_s"]
    return [("episodes", str(summary["episodes"])),
            ("success rate (Wilson 95%)", f"{summary['success_rate']:.1%} ({summary['successes']}/"
                                          f"{summary['episodes']}) [{lo:.1%}, {hi:.1%}]"),
            ("completion time mean (s)", _field(summary, "completion_time_s", "mean")),
            ("completion time median (s)", _field(summary, "completion_time_s", "median")),
            ("timed successes", str(t["n"]) if t else "0"),
            ("contact force mean (N)", _field(summary, "force_n", "mean")),
            ("contact force max (N)", _field(summary, "force_n", "max")),
            ("mean squared jerk", _field(summary, "smoothness", "mean_squared_jerk", ".4g")),
            ("mean abs Δaction per step", _field(summary, "smoothness", "mean_abs_delta", ".4g")),
            ("errors", str(summary["errors"]))]


def _episode_cells(row: dict[str, Any] | None) -> list[str]:
    if row is None:
        return [""] * 6
    ok = "yes" if row["success"] else ("error" if row["error"] else "no")
    return [str(row["episode"]), ok, _num(row["completion_time_s"]), _num(row["force_max_n"]),
            _num(row["mean_squared_jerk"], ".4g"), (row["note"] or row["error"]).replace("|", "/")]


def markdown(data: dict[str, Any]) -> str:
    info, sides = data["info"], data["sides"]
    lines = ["# Paired evaluation: sim vs real", ""]
    lines += [f"- {k}: `{v}`" for k, v in info.items()] + [""]
    lines += ["## Metrics", "", "| metric | sim | real |", "|---|---:|---:|"]
    sim_rows, real_rows = (metric_rows(sides[s]["summary"]) for s in SIDES)
    lines += [f"| {name} | {a} | {b} |" for (name, a), (_, b) in zip(sim_rows, real_rows, strict=True)]
    head = ["episode", "success", "time (s)", "max force (N)", "sq. jerk", "note"]
    lines += ["", "## Episodes", "", "| # | " + " | ".join(f"sim {h}" for h in head) + " | "
              + " | ".join(f"real {h}" for h in head) + " |", "|---:" * (1 + 2 * len(head)) + "|"]
    sim_eps, real_eps = sides["sim"]["episodes"], sides["real"]["episodes"]
    for k in range(max(len(sim_eps), len(real_eps))):
        cells = [_episode_cells(eps[k] if k < len(eps) else None) for eps in (sim_eps, real_eps)]
        lines.append(f"| {k} | " + " | ".join(cells[0] + cells[1]) + " |")
    return "\n".join(lines) + "\n\n![success and completion time](paired.png)\n"


def plot(data: dict[str, Any], path: Path) -> None:
    """Success rate with Wilson 95% error bars (left), completion-time box plot (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summaries = [data["sides"][s]["summary"] for s in SIDES]
    rates = [s["success_rate"] for s in summaries]
    errs = np.array([[r - s["wilson95"][0], s["wilson95"][1] - r] for r, s in zip(rates, summaries, strict=True)]).T
    times = [[r["completion_time_s"] for r in data["sides"][s]["episodes"]
              if r["success"] and r["completion_time_s"] is not None] for s in SIDES]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4))
    try:
        left.bar(SIDES, rates, yerr=errs, capsize=8, color=["tab:blue", "tab:orange"])
        left.set(ylabel="success rate", ylim=(0, 1.05), title="success (Wilson 95% interval)")
        if any(times):
            right.boxplot([t or [float("nan")] for t in times], tick_labels=list(SIDES))
        else:
            right.set_xticks([1, 2], labels=list(SIDES))
            right.text(0.5, 0.5, "no timed successes", ha="center", va="center", transform=right.transAxes)
        right.set(ylabel="completion time (s)", title="completion time (successes)")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)


# --- evaluation directories --------------------------------------------------------------------------
def load_eval_dir(folder: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(report info, episode rows) of an eval output directory, rows merged with its metrics.json."""
    folder = Path(folder)
    try:
        report = json.loads((folder / "report.json").read_text())
        metrics = json.loads((folder / METRICS_FILE).read_text()) if (folder / METRICS_FILE).exists() else {}
    except (OSError, json.JSONDecodeError) as exc:
        raise PairedReportError(f"{folder}: cannot read the evaluation report: {exc}") from None
    if not isinstance(report.get("episodes"), list):
        raise PairedReportError(f"{folder}/report.json has no 'episodes' list")
    extra = {m.get("seed"): m for m in metrics.get("episodes", [])}
    rows = [{**row, **extra.get(row.get("seed"), {})} for row in report["episodes"]]
    info = {k: v for k, v in report.items() if k not in ("summary", "episodes")}
    return info, rows


def compare_dirs(sim_dir: Path, real_dir: Path, out: Path) -> dict[str, Any]:
    """`write_paired_report` of two evaluation output directories (see the module docstring)."""
    sim_info, sim_rows = load_eval_dir(sim_dir)
    real_info, real_rows = load_eval_dir(real_dir)
    info = {"sim": str(Path(sim_dir).resolve()), "real": str(Path(real_dir).resolve()),
            "sim policy": sim_info.get("policy", "?"), "real policy": real_info.get("policy", "?"),
            "sim checkpoint": sim_info.get("checkpoint", "?"), "real checkpoint": real_info.get("checkpoint", "?"),
            "sim task": sim_info.get("task", "?"), "real launch": real_info.get("task", "?")}
    return write_paired_report(sim_rows, real_rows, out, info)
