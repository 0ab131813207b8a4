"""``python -m peer`` as a process: validated options are served after a re-exec that keeps the
PID and the command line, and the serving process does not carry typer (nor its pydantic)."""

from __future__ import annotations

import signal
from pathlib import Path

from peer.serve import Options
from tests.support.procs import lone_node


def test_options_survive_the_json_round_trip() -> None:
    options = Options(
        None, "/d", ["127.0.0.1"], [], "tcp://127.0.0.1:1", "tcp://127.0.0.1:2",
        20, 3, 15.0, 64, 8, 5.0, "INFO",
    )  # fmt: skip
    assert Options.from_json(options.to_json()) == options


def test_the_served_process_keeps_pid_and_argv_and_leaves_typer_behind(tmp_path: Path) -> None:
    with lone_node(tmp_path, "--k", "7") as (proc, _, argv):
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")[:-1]
        assert [a.decode() for a in cmdline[1:]] == argv[1:]
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        assert "pydantic" not in maps
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
