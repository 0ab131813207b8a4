"""``dhtctl shell`` driven through a pseudo-terminal against a FakeNode control server."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from control.server import ThreadedControlServer
from tests.support.fake_node import FakeNode

ROOT = Path(__file__).resolve().parents[2]
NODE_ID = FakeNode().node_id
PROMPT = f"dht[{NODE_ID[:8]}]> ".encode()
READ_TIMEOUT_S = 10.0


@pytest.fixture
def node() -> Iterator[ThreadedControlServer]:
    with ThreadedControlServer(FakeNode(), node_id=NODE_ID) as srv:
        yield srv


class Pty:
    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            args, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=ROOT, close_fds=True
        )
        os.close(slave)
        self.buffer = b""

    def read_until(self, marker: bytes) -> bytes:
        """Everything up to and including ``marker``."""
        while marker not in self.buffer:
            ready, _, _ = select.select([self.master], [], [], READ_TIMEOUT_S)
            if not ready:
                pytest.fail(f"timed out waiting for {marker!r}; got {self.buffer!r}")
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # EIO: the child closed the terminal
                chunk = b""
            if not chunk:
                pytest.fail(f"terminal closed before {marker!r}; got {self.buffer!r}")
            self.buffer += chunk
        end = self.buffer.index(marker) + len(marker)
        out, self.buffer = self.buffer[:end], self.buffer[end:]
        return out

    def command(self, line: str) -> str:
        """Type a line and return its output (without the echoed line and the next prompt)."""
        os.write(self.master, line.encode() + b"\n")
        out = self.read_until(PROMPT)[: -len(PROMPT)]
        text = out.decode().replace("\r\n", "\n")
        echoed, _, rest = text.partition("\n")
        assert echoed.endswith(line)
        return rest

    def wait(self) -> int:
        try:
            return self.proc.wait(timeout=READ_TIMEOUT_S)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            os.close(self.master)


def start_shell(node: ThreadedControlServer, tmp_path: Path) -> Pty:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HOME": str(tmp_path),
        "DHT_STATE_DIR": str(tmp_path / "state"),
        "TERM": "dumb",
    }
    shell = Pty(
        [sys.executable, "-m", "control", "shell", "--endpoint", node.control_endpoint], env
    )
    shell.read_until(PROMPT)
    return shell


def test_scripted_session(node: ThreadedControlServer, tmp_path: Path) -> None:
    shell = start_shell(node, tmp_path)
    try:
        ident = shell.command("id")
        assert f"id          {NODE_ID}" in ident
        assert "public_key" in ident

        stored = shell.command("store k hello there")
        assert stored.startswith("stored k (")
        assert "3 acks" in stored

        assert shell.command("get k") == "hello there\n"

        helped = shell.command("help")
        assert helped.startswith("commands:\n")
        assert "store KEY VALUE" in helped
        assert "quit | exit" in helped

        assert shell.command("get missing") == "error: key not found: missing\n"
        assert shell.command("ping abc") == "error: bad node id 'abc': expected 64 hex digits\n"
        assert shell.command("fly") == "error: unknown command 'fly' (try 'help')\n"
        assert shell.command("shutdown") == "error: unknown command 'shutdown' (try 'help')\n"
        assert "SIZE" not in shell.command("rt")  # key/value output, the shell still works

        os.write(shell.master, b"quit\n")
    finally:
        code = shell.wait()
    assert code == 0
    api = node.server.api
    assert isinstance(api, FakeNode)
    assert api.records == {"k": b"hello there"}
    history = (tmp_path / "state" / "dhtctl_history").read_text()
    assert "store k hello there" in history


def test_eof_exits_0(node: ThreadedControlServer, tmp_path: Path) -> None:
    shell = start_shell(node, tmp_path)
    try:
        os.write(shell.master, b"\x04")  # Ctrl-D on an empty line
    finally:
        code = shell.wait()
    assert code == 0


def test_unreachable_node_exits_3(tmp_path: Path) -> None:
    from tests.support.procs import free_port

    port = free_port()
    result = subprocess.run(
        [sys.executable, "-m", "control", "shell", "--endpoint", f"tcp://127.0.0.1:{port}"],
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "DHT_STATE_DIR": str(tmp_path)},
        cwd=ROOT,
        timeout=READ_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == 3
    assert result.stderr.decode().startswith("dhtctl: no control server at")
