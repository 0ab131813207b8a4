"""Simulation tests: one seed per run, printed so that any failure can be replayed.

Set ``SIM_SEED`` to replay a run; otherwise the default seed is used (deterministic CI).
"""

from __future__ import annotations

import os

import pytest

DEFAULT_SEED = 20240611


def _seed() -> int:
    return int(os.environ.get("SIM_SEED", DEFAULT_SEED))


def pytest_report_header() -> str:
    return f"simulation seed: SIM_SEED={_seed()}"


@pytest.fixture
def sim_seed(request: pytest.FixtureRequest) -> int:
    seed = _seed()
    print(f"\n[{request.node.name}] SIM_SEED={seed}")
    return seed
