"""Shared helpers: percentiles, a printed table and JSON results under benchmarks/results/."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).parent / "results"


def percentiles(samples_s: list[float] | np.ndarray) -> dict[str, float]:
    """p50/p99/max in microseconds."""
    a = np.asarray(samples_s, dtype=float) * 1e6
    if a.size == 0:
        return {"p50_us": float("nan"), "p99_us": float("nan"), "max_us": float("nan"), "n": 0}
    return {
        "p50_us": float(np.percentile(a, 50)), "p99_us": float(np.percentile(a, 99)),
        "max_us": float(a.max()), "n": int(a.size),
    }


def write_results(name: str, rows: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"python": platform.python_version(), "cpu_count": __import__("os").cpu_count(),
                    "platform": platform.platform()},
        "rows": rows,
        **(extra or {}),
    }
    path.write_text(json.dumps(payload, indent=2))
    return path


def print_table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> None:
    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*(_fmt(row.get(c, "")) for c in columns))
    Console().print(table)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    return str(v)
