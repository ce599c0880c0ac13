"""`robot-stack teleop` / `python -m teleop`: config validation, process layout, status line, a run."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

import robot_stack as rs
from robot_stack import messages
from teleop.__main__ import main, register
from teleop.errors import TeleopConfigError
from teleop.launch import RECORDER_CLASS, TeleopConfig
from teleop.monitor import TeleopMonitor

CONFIGS = Path(__file__).resolve().parents[2] / "teleop" / "configs"


@pytest.mark.parametrize("name", ["sim_exo_push_t", "sim_glove_hand", "sim_keyboard"])
def test_bundled_configs_check(name, capsys):
    assert main(["--config", name, "--check"]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "teleop:" in out and RECORDER_CLASS in out and "sim.node:SimNode" in out


def test_layout_groups_processes_and_resolves_paths(tmp_path):
    (tmp_path / "map.yaml").write_text((CONFIGS / "exo_koch_to_so101.yaml").read_text())
    (tmp_path / "rec.yaml").write_text("dataset: x\nstreams: []\n")
    cfg = tmp_path / "t.yaml"
    cfg.write_text("transport: inproc\n"
                   "robot: {name: arm, class: drivers.servo.node:ServoRobotNode, parameters: {robot: so101}}\n"
                   "devices:\n  - {name: exo, class: teleop.exo:ExoNode, parameters: {mapping: map.yaml}}\n"
                   "recorder: {config: rec.yaml, parameters: {task: demo}}\n")
    config = TeleopConfig.load(cfg)
    layout = config.layout()
    assert list(layout["processes"]) == ["robot", "teleop", "recorder"]
    exo = layout["processes"]["teleop"]["nodes"][0]
    assert exo["parameters"]["mapping"] == str(tmp_path / "map.yaml")
    recorder = layout["processes"]["recorder"]["nodes"][0]
    assert recorder["parameters"] == {"task": "demo", "config": str(tmp_path / "rec.yaml")}
    assert "recorder" not in config.layout(recorder=False)["processes"]
    launch = config.launch(check_imports=False)
    assert [p.name for p in launch.processes] == ["robot", "teleop", "recorder"]


def test_config_errors_name_the_field(tmp_path, capsys):
    cfg = tmp_path / "t.yaml"
    cfg.write_text("robot: {name: sim, class: sim.node:SimNode}\ndevices: []\n")
    with pytest.raises(TeleopConfigError, match="devices"):
        TeleopConfig.load(cfg)
    cfg.write_text("robot: {name: sim, class: sim.node:SimNode}\ndevice: []\n")
    assert main(["--config", str(cfg), "--check"]) == 2
    assert "did you mean 'devices'" in capsys.readouterr().err
    cfg.write_text("robot: {name: sim, class: sim.node:SimNode}\ndevices: [{name: k, class: teleop.nope:Node}]\n")
    assert main(["--config", str(cfg), "--check"]) == 2
    assert "cannot import 'teleop.nope:Node'" in capsys.readouterr().err


def test_register_adds_the_subcommand():
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["teleop", "--config", "sim_keyboard", "--duration", "3", "--no-recorder"])
    assert args.config == "sim_keyboard" and args.duration == 3.0 and args.no_recorder and callable(args.func)


def test_status_line_shows_engagement_recorder_task_and_last_event(ctx):
    mon = TeleopMonitor(["exo"], ["sim"], "recorder", context=ctx, publish_stats=False)
    pub = rs.Node("pub", context=ctx, publish_stats=False)
    ex = rs.Executor()
    ex.add_node(mon)
    ex.add_node(pub)
    kv = messages.get_class("diagnostic_msgs/msg/KeyValue")

    def status(topic, level, message, **values):
        p = pub.create_publisher("diagnostic_msgs/msg/DiagnosticStatus", topic)
        p.publish(messages.make("diagnostic_msgs/msg/DiagnosticStatus", level=level, message=message,
                                values=[kv(key=k, value=str(v)) for k, v in values.items()]))

    try:
        assert "waiting" in mon.line().plain
        status("/exo/status", 1, "dead-man released", engaged=False)
        status("/sim_robot/status", 0, "ok")
        status("/recorder/status", 0, "recording", state="recording", episode=3, duration_s=4.25)
        status("/task/status", 0, "running", task="push_t", seed=2, progress=0.5, success=False)
        events = pub.create_publisher("robot_stack_msgs/msg/EpisodeEvent", "/episode_events")
        events.publish(messages.make("robot_stack_msgs/msg/EpisodeEvent", event=0, source="pedal"))
        ex.spin_for(0.05)
        line = mon.line().plain
        for part in ("exo: dead-man released", "sim: ok", "recorder: recording #3 4.2 s", "push_t seed 2 progress 0.50",
                     "last: START from pedal"):
            assert part in line, line
    finally:
        pub.destroy_node()
        mon.destroy_node()


@pytest.mark.slow
def test_teleop_run_with_emulated_leader_and_follower(tmp_path):
    cfg = tmp_path / "run.yaml"
    leader, follower = tmp_path / "leader", tmp_path / "follower"
    cfg.write_text(f"""
transport: dds
emulators:
  - {{name: leader, class: teleop.emulated:LeaderEmulatorNode, parameters: {{device: koch, link: {leader}}}}}
  - {{name: follower_bus, class: drivers.servo.node:ServoEmulatorNode, parameters: {{device: so101, link: {follower}}}}}
robot:
  - {{name: arm, class: drivers.servo.node:ServoRobotNode,
      parameters: {{robot: so101, port: {follower}, control_rate_hz: 100.0, state_rate_hz: 100.0}}}}
devices:
  - {{name: exo, class: teleop.exo:ExoNode,
      parameters: {{leader: koch, port: {leader}, mapping: {CONFIGS / "exo_koch_to_so101.yaml"}, rate_hz: 50.0}}}}
""")
    proc = subprocess.run([sys.executable, "-m", "teleop", "--config", str(cfg), "--duration", "6"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "exo: engaged" in proc.stdout and "all processes stopped cleanly" in proc.stdout
