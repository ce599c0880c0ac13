"""Test-wide set-up: an isolated DDS domain per pytest run, discovery on loopback only."""

from __future__ import annotations

import os
import random

import pytest

# One DDS domain per test session so parallel runs on one machine never see each other's topics.
# Chosen before any test module creates a participant; subprocesses inherit it.
os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 100)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")


@pytest.fixture
def ctx():
    """A per-test `inproc` context (tests that need another transport define their own `ctx`)."""
    import robot_stack as rs

    with rs.Context("inproc") as c:
        yield c


@pytest.fixture
def domain_id() -> int:
    return int(os.environ["ROS_DOMAIN_ID"])
