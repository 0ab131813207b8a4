"""``python -m peer`` as a process: validated options are served after a re-exec that keeps the
PID and the command line, and the serving process does not carry typer (nor its pydantic)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from control.client import ControlClient
from peer.serve import Options
from tests.support.procs import free_port, wait_for


def test_options_survive_the_json_round_trip() -> None:
    options = Options(
        None, "/d", ["127.0.0.1"], [], "tcp://127.0.0.1:1", "tcp://127.0.0.1:2",
        20, 3, 15.0, 64, 8, 5.0, "INFO",
    )  # fmt: skip
    assert Options.from_json(options.to_json()) == options


def test_the_served_process_keeps_pid_and_argv_and_leaves_typer_behind(tmp_path: Path) -> None:
    control = f"tcp://127.0.0.1:{free_port()}"
    argv = [
        sys.executable, "-m", "peer", "--signaling", "none", "--data-dir", str(tmp_path),
        "--control", control, "--events", f"tcp://127.0.0.1:{free_port()}", "--k", "7",
    ]  # fmt: skip
    proc = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
    try:
        with ControlClient(control, timeout_s=2.0) as client:

            def answers() -> bool:
                try:
                    return bool(client.call("id")["id"])
                except Exception:
                    return False

            wait_for(answers, 30, "the node to answer on its control socket")
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")[:-1]
        assert [a.decode() for a in cmdline[1:]] == argv[1:]
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        assert "pydantic" not in maps
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
