"""Starting a detached child process: its own session (a Ctrl-C or the parent's exit does not
reach it), stdin from ``/dev/null``, stdout and stderr appended to one log file.

Used for the supervisor itself (``supervisor.lifecycle``); the process launcher starts members
the same way.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO


def spawn_detached(
    argv: Sequence[str],
    log_path: Path | None,
    env: Mapping[str, str],
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` detached; output goes to ``log_path`` (created) or nowhere."""
    out: contextlib.AbstractContextManager[IO[bytes] | int]
    if log_path is None:
        out = contextlib.nullcontext(subprocess.DEVNULL)
    else:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        out = open(log_path, "ab")  # noqa: SIM115 - closed below, the child keeps its copy
    with out as stdout:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(env),
            start_new_session=True,
            close_fds=True,
        )
