"""`robot-stack demo` end to end at toy size: teleop -> record -> LeRobot export -> train -> serve -> eval -> report."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_pipeline_writes_an_honest_report(tmp_path, domain_id):
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "robot_stack.cli.main", "--log-level", "WARNING", "demo", "--out", str(out),
           "--episodes", "2", "--train-steps", "5", "--eval-episodes", "1", "--workers", "1", "--max-steps", "15",
           "--domain-base", str(domain_id + 100)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["recording"]["episodes"] == 2 and report["recording"]["open_episodes"] == 0
    assert report["record_status"]["operator"]["finished"] == "True"
    assert {"state", "action", "fixed"} <= set(report["recording"]["streams"])
    assert (out / "lerobot" / "meta" / "info.json").exists()
    assert (out / "train" / "checkpoints" / "last" / "model.safetensors").exists()
    summary = report["eval"]["summary"]
    assert summary["episodes"] == 1 and summary["errors"] == 0
    assert any(r["node"].endswith("sim") for r in report["loops"])
    text = (out / "report.md").read_text()
    assert "Success:" in text and "Wilson 95% interval" in text and "eval/success.png" in text
    assert (out / "eval" / "success.png").exists() and list((out / "eval" / "videos").glob("*.mp4"))
