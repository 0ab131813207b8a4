"""NAT lab helpers for tests: skip without root/tools (fail under CI), run code in a namespace,
and check that nothing of a lab is left."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor import natlab
from tests.support.procs import command_lines


def require_lab() -> None:
    """Skip when this machine cannot build a NAT lab; under ``CI=true`` fail instead."""
    reason = natlab.can_build()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def run_in(netns: str, code: str, timeout_s: float = 60.0) -> str:
    """Run Python ``code`` inside ``netns`` (this checkout on PYTHONPATH); its stdout."""
    repo = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": repo}
    done = subprocess.run(
        natlab.in_netns(netns, [sys.executable, "-c", code]),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def root_ruleset() -> str:
    """The root namespace's nftables ruleset (the lab must never change it)."""
    return subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout


def leftovers(tag: str, directory: Path) -> list[str]:
    """Namespaces of lab ``tag`` and coturn processes of the lab in ``directory`` still alive."""
    found = sorted(n for n in natlab.existing_namespaces() if n.startswith(f"dhtlab-{tag}-"))
    for pid, args in command_lines():
        if "turnserver" in args and str(directory) in args:
            found.append(f"coturn {pid}")
    return found
