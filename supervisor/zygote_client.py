"""The process launcher's side of the zygote (``peer.zygote``): start it, ask it to fork.

``ProcessLauncher`` starts peers whose command is the node (``python -m peer ...``) through one
zygote per launcher, started on first use: each peer is then forked from a parent that already
imported the node, so the import heap is shared copy-on-write instead of paid per process.
Everything else about a member is unchanged: a real process with its own PID and session, in the
members file, stopped and killed through its process group; ``ForkedChild.poll`` answers like
``subprocess.Popen.poll`` (the zygote reaps its workers and reports their exit codes).

``DHT_PRELOAD=0`` turns the zygote off (every peer is exec'd as before). When the zygote cannot
start, peers are exec'd too (logged once).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from supervisor.errors import LaunchError

log = logging.getLogger(__name__)

PRELOAD_ENV = "DHT_PRELOAD"
NODE_MODULE_ARGV = ("-m", "peer")
READY_TIMEOUT_S = 120.0  # the zygote imports aiortc & co. first: slow on a busy machine
REQUEST_TIMEOUT_S = 30.0
CONNECT_RETRY_S = 0.05


def preload_wanted(argv: Sequence[str], env: Mapping[str, str]) -> bool:
    """Whether a member's command is the node itself (``python -m peer ...``) and preloading is
    not turned off."""
    if env.get(PRELOAD_ENV, os.environ.get(PRELOAD_ENV, "1")).strip() in ("0", "no", "false"):
        return False
    return (
        len(argv) >= 3
        and argv[0] in ("python", "python3", sys.executable)
        and tuple(argv[1:3]) == NODE_MODULE_ARGV
    )


class ZygoteClient:
    """One zygote process and a connection to it (thread-safe)."""

    def __init__(self, log_path: Path | None = None) -> None:
        self.address = f"@webrtc-dht-zygote-{os.getpid()}-{secrets.token_hex(6)}"
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._buf = b""
        out: Any = subprocess.DEVNULL
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            out = open(log_path, "ab")  # noqa: SIM115 - closed below, the child keeps its copy
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "peer.zygote", "--socket", self.address],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        finally:
            if out is not subprocess.DEVNULL:
                out.close()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _connect(self) -> socket.socket:
        if self._sock is not None:
            return self._sock
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect("\0" + self.address[1:])
            except OSError as exc:
                sock.close()
                if not self.alive():
                    raise LaunchError(f"the zygote exited ({self.proc.returncode})") from exc
                if time.monotonic() >= deadline:
                    raise LaunchError("the zygote did not come up") from exc
                time.sleep(CONNECT_RETRY_S)
                continue
            sock.settimeout(REQUEST_TIMEOUT_S)
            self._sock, self._buf = sock, b""
            return sock

    def _request(self, req: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            try:
                sock = self._connect()
                sock.sendall(json.dumps(req).encode() + b"\n")
                while b"\n" not in self._buf:
                    data = sock.recv(65536)
                    if not data:
                        raise OSError("the zygote closed the connection")
                    self._buf += data
                line, _, self._buf = self._buf.partition(b"\n")
                reply = json.loads(line)
            except (OSError, ValueError) as exc:
                if self._sock is not None:
                    self._sock.close()
                    self._sock = None
                raise LaunchError(f"zygote: {exc}") from exc
        if not isinstance(reply, dict) or "error" in reply:
            raise LaunchError(f"zygote: {reply.get('error') if isinstance(reply, dict) else reply}")
        return reply

    def spawn(
        self, args: Sequence[str], env: Mapping[str, str], log_path: str | None, cwd: str | None
    ) -> int:
        """Fork a worker running ``python -m peer ARGS``; its PID."""
        reply = self._request(
            {"op": "spawn", "argv": list(args), "env": dict(env), "log": log_path, "cwd": cwd}
        )
        return int(reply["pid"])

    def status(self, pid: int) -> tuple[bool, int | None]:
        """(running, exit code) of a worker this zygote forked."""
        reply = self._request({"op": "status", "pid": pid})
        return bool(reply["running"]), reply.get("code")

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class ForkedChild:
    """A worker the zygote forked, seen like a ``subprocess.Popen`` (``pid``, ``poll()``)."""

    def __init__(self, zygote: ZygoteClient, pid: int) -> None:
        self.zygote = zygote
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is not None:
            return self.returncode
        try:
            running, code = self.zygote.status(self.pid)
        except LaunchError:
            # The zygote is gone: the worker is not our child any more; read /proc instead.
            running, code = Path(f"/proc/{self.pid}").exists(), None
        if running:
            return None
        self.returncode = code if code is not None else -1
        return self.returncode
