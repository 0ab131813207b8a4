"""The zygote: one preloaded parent that forks node workers (``python -m peer.zygote``).

Each node process imports the node, aiortc, cryptography, zmq and the control and signaling
code: ~50 MB of Python heap per process that is identical everywhere. The zygote imports all of
it once, freezes it out of the garbage collector's reach (``gc.freeze()``: the collector never
writes to those objects, so their pages stay shared) and then forks one worker per node, the way
application servers preload. A worker is a real OS process: its own PID, its own session (a
signal to its process group reaches it alone), stdout/stderr in its own log file, killable with
SIGKILL; after the fork it runs exactly what ``python -m peer ARGS`` runs.

Fork safety: the zygote never starts an event loop or a thread, and never opens a socket other
than its own listening one, so a worker starts from a clean single-threaded state.

Protocol (a Unix stream socket, one JSON object per line each way; the launcher is the client):

- ``{"op": "spawn", "argv": [ARGS...], "env": {...}, "log": PATH|null, "cwd": PATH|null}``
  → ``{"pid": N}`` or ``{"error": "..."}``. ``argv`` are the arguments of ``python -m peer``.
- ``{"op": "status", "pid": N}`` → ``{"running": true}`` or ``{"running": false, "code": C}``
  with ``C`` as ``subprocess.Popen.returncode`` (``-9`` after SIGKILL), or ``null`` for a PID
  this zygote never started.

The zygote reaps its workers and remembers the last ``MAX_EXITS_KEPT`` exit codes. It leaves
when its parent (the supervisor) is gone; the workers it forked keep running (like processes a
supervisor started directly), and ``down`` stops them from the members file.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import json
import os
import selectors
import signal
import socket
import sys
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

PRELOAD_MODULES = (
    "peer.serve",
    "peer.cli",
    "peer.node",
    "peer.control_adapter",
    "node.runtime",
    "node.transport.webrtc",
    "control.server",
    "signaling.client",
    "aiortc",
    "aioice",
    "cryptography.hazmat.primitives.asymmetric.ed25519",
    "zmq.asyncio",
    "msgpack",
    "websockets",
)
MAX_EXITS_KEPT = 4096
MAX_REQUEST_BYTES = 1 << 20
PARENT_CHECK_S = 0.5


def preload() -> None:
    """Import everything a node imports, then move it out of the collector's reach."""
    for name in PRELOAD_MODULES:
        importlib.import_module(name)
    _warm_up_parser()
    gc.collect()
    gc.freeze()


def _warm_up_parser() -> None:
    """Parse a command line once: what typer and pydantic import and build lazily on the first
    parse is then shared too (the workers parse their own command line)."""
    from node import clikit
    from peer import cli

    with contextlib.redirect_stdout(None), contextlib.redirect_stderr(None):
        clikit.run(cli.app, ["--signaling", "none"], prog=cli.PROG)
    cli._parsed.clear()


def _child(argv: Sequence[str], env: dict[str, str], log: str | None, cwd: str | None) -> int:
    """In the forked worker: become an ordinary ``python -m peer`` process; the exit code."""
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    if log is not None:
        out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(out)
    if cwd is not None:
        os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = [sys.executable, "-m", "peer", *argv]
    from peer.cli import main
    from peer.serve import RESOLVED_ENV, serve_resolved

    try:
        resolved = os.environ.pop(RESOLVED_ENV, None)
        if resolved is not None:  # the supervisor parsed this command line already
            return serve_resolved(resolved)
        return main(list(argv))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1


class Zygote:
    """The fork server loop (see the module docstring)."""

    def __init__(self, address: str) -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(address)
        self.listener.listen(16)
        self.parent = os.getppid()
        self.running: set[int] = set()
        self.exits: OrderedDict[int, int] = OrderedDict()
        self.buffers: dict[socket.socket, bytes] = {}
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ)

    def serve(self) -> None:
        while os.getppid() == self.parent:
            for key, _ in self.selector.select(PARENT_CHECK_S):
                if key.fileobj is self.listener:
                    conn, _ = self.listener.accept()
                    self.buffers[conn] = b""
                    self.selector.register(conn, selectors.EVENT_READ)
                else:
                    assert isinstance(key.fileobj, socket.socket)
                    self._readable(key.fileobj)
            self.reap()

    def reap(self) -> None:
        while self.running:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.running.clear()
                return
            if pid == 0:
                return
            self.running.discard(pid)
            self.exits[pid] = os.waitstatus_to_exitcode(status)
            while len(self.exits) > MAX_EXITS_KEPT:
                self.exits.popitem(last=False)

    def _drop(self, conn: socket.socket) -> None:
        self.selector.unregister(conn)
        self.buffers.pop(conn, None)
        conn.close()

    def _readable(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._drop(conn)
            return
        buf = self.buffers[conn] + data
        if len(buf) > MAX_REQUEST_BYTES:
            self._drop(conn)
            return
        *lines, self.buffers[conn] = buf.split(b"\n")
        for line in lines:
            reply = self.handle(line)
            try:
                conn.sendall(json.dumps(reply).encode() + b"\n")
            except OSError:
                self._drop(conn)
                return

    def handle(self, line: bytes) -> dict[str, Any]:
        try:
            req = json.loads(line)
            op = req["op"]
            if op == "status":
                return self.status(int(req["pid"]))
            if op == "spawn":
                argv = [str(a) for a in req["argv"]]
                env = {str(k): str(v) for k, v in dict(req["env"]).items()}
                log, cwd = req.get("log"), req.get("cwd")
                return {"pid": self.spawn(argv, env, log, cwd)}
            return {"error": f"unknown op {op!r}"}
        except (ValueError, KeyError, TypeError, OSError) as exc:
            return {"error": f"{type(exc).__name__}: {exc}"}

    def status(self, pid: int) -> dict[str, Any]:
        self.reap()
        if pid in self.running:
            return {"running": True}
        return {"running": False, "code": self.exits.get(pid)}

    def spawn(self, argv: list[str], env: dict[str, str], log: str | None, cwd: str | None) -> int:
        pid = os.fork()
        if pid:
            self.running.add(pid)
            return pid
        code = 1
        try:  # the worker: never return into the zygote's loop
            self.selector.close()
            for conn in self.buffers:
                conn.close()
            self.listener.close()
            code = _child(argv, env, log, cwd)
        except BaseException:
            with contextlib.suppress(BaseException):
                import traceback

                traceback.print_exc()
        finally:
            with contextlib.suppress(BaseException):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m peer.zygote", description=__doc__)
    parser.add_argument("--socket", required=True, help="Unix socket address ('@name': abstract)")
    ns = parser.parse_args(argv)
    address = "\0" + ns.socket[1:] if ns.socket.startswith("@") else ns.socket
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C in the supervisor's shell
    preload()
    Zygote(address).serve()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
