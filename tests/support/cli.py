"""Running the project's command-line entry points from tests (in the repository, captured)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from supervisor.containers import engine_available

REPO = Path(__file__).resolve().parents[2]


def run_cli(
    env: Mapping[str, str], *argv: str, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """``python ARGV...`` in the repository root (``orchestrate.py …``, ``-m control …``)."""
    return subprocess.run(
        [sys.executable, *argv],
        cwd=REPO,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def require_engine() -> None:
    """Skip without a Docker engine; under CI=true, fail instead (CI must have one)."""
    if engine_available():
        return
    reason = "no Docker engine answers (start one with images/ci-docker.sh)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


# The supervisor's own ports as "any free port" (orchestrate.py reads these when no flag is given).
FREE_PORTS_ENV = {
    "DHT_FRONT_PORT": "0",
    "DHT_EVENTS_PORT": "0",
    "DHT_METRICS_PORT": "0",
    "DHT_SIGNALING_PORT": "0",
}
