"""Run every benchmark suite: `python -m benchmarks [suite ...]` (what `make bench` runs)."""

from __future__ import annotations

import importlib
import sys

SUITES = ("benchmarks.transport", "benchmarks.sim", "benchmarks.loader", "benchmarks.recorder", "benchmarks.policies",
          "benchmarks.servo", "benchmarks.sensors", "benchmarks.ar_page",
          "benchmarks.teleop", "benchmarks.policy_server")


def main(argv: list[str]) -> int:
    chosen = [s for s in SUITES if not argv or s.rsplit(".", 1)[-1] in argv]
    for name in chosen:
        importlib.import_module(name).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
