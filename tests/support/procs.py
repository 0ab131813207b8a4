"""Real node and signaling processes on 127.0.0.1 for integration tests."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from control.client import ControlClient


async def reap(proc: asyncio.subprocess.Process) -> None:
    """Kill ``proc`` if it is still running and wait for it (test clean-up)."""
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


@contextmanager
def lone_node(
    data_dir: Path, *extra: str
) -> Iterator[tuple[subprocess.Popen[bytes], str, list[str]]]:
    """One ``python -m peer`` without signaling, answering on its control socket: (process,
    control endpoint, argv); killed at the end."""
    control = f"tcp://127.0.0.1:{free_port()}"
    argv = [
        sys.executable, "-m", "peer", "--signaling", "none", "--data-dir", str(data_dir),
        "--control", control, "--events", f"tcp://127.0.0.1:{free_port()}", *extra,
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
        yield proc, control, argv
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def reachable(tables: dict[str, set[str]], start: str) -> set[str]:
    """The node IDs reachable from ``start`` along routing-table edges (``start`` included)."""
    seen, todo = {start}, [start]
    while todo:
        for nxt in tables.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(cond: Callable[[], bool], timeout_s: float, what: str, step_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(step_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@dataclass
class NodeProc:
    index: int
    data_dir: Path
    control: str
    events: str
    log_path: Path
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None
    client: ControlClient | None = None
    node_id: str = ""
    expect_dead: bool = False

    def start(self, signaling_url: str) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "peer",
                "--signaling", signaling_url,
                "--data-dir", str(self.data_dir),
                "--control", self.control,
                "--events", self.events,
                "--ice-address", "127.0.0.1",
                "--stats-interval", "1",
                *self.args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        if self.client is None:
            self.client = ControlClient(self.control, timeout_s=10.0)

    def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        assert self.client is not None
        return self.client.call(cmd, **args)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        self.expect_dead = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.client is not None:
            self.client.close()
            self.client = None


@dataclass
class SignalingProc:
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    args: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = self.log_path.open("ab")
        argv = [sys.executable, "-m", "signaling", "--host", "127.0.0.1", "--port", str(self.port)]
        self.proc = subprocess.Popen(
            [*argv, *self.args],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

        def listening() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0

        wait_for(listening, 10, "the signaling server to listen")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@dataclass
class ProcCluster:
    root: Path
    signaling: SignalingProc
    nodes: list[NodeProc] = field(default_factory=list)

    def add_node(self, *args: str) -> NodeProc:
        i = len(self.nodes) + 1
        node = NodeProc(
            i,
            self.root / f"node{i}",
            f"tcp://127.0.0.1:{free_port()}",
            f"tcp://127.0.0.1:{free_port()}",
            self.root / f"node{i}.log",
            list(args),
        )
        node.start(self.signaling.url)
        self.nodes.append(node)
        return node

    def wait_formed(self, min_rt: int, timeout_s: float = 60.0) -> None:
        """Every live node holds ``min_rt`` contacts and the routing tables form one network:
        each node reaches every other along routing-table edges (a size alone is met by two
        islands that never heard of each other, and a lookup cannot cross between them)."""

        def formed() -> bool:
            tables: dict[str, set[str]] = {}
            for n in [n for n in self.nodes if not n.expect_dead]:
                if not n.alive():
                    raise AssertionError(f"node {n.index} exited:\n{self.logs()}")
                try:
                    dump = n.call("dump")
                except Exception:
                    return False
                contacts = {c["id"] for b in dump["buckets"] for c in b["contacts"]}
                if len(contacts) < min_rt:
                    return False
                tables[dump["id"]] = contacts
            return all(reachable(tables, start) >= tables.keys() for start in tables)

        wait_for(formed, timeout_s, f"every node to hold >= {min_rt} contacts, one network", 0.25)
        for n in self.nodes:
            if not n.expect_dead and not n.node_id:
                n.node_id = n.call("id")["id"]

    def logs(self) -> str:
        out = []
        for p in sorted(self.root.glob("*.log")):
            out.append(
                f"==> {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-15:])
            )
        return "\n".join(out)


@contextmanager
def proc_cluster(
    root: Path, n: int, *node_args: str, signaling_args: tuple[str, ...] = ()
) -> Iterator[ProcCluster]:
    sig = SignalingProc(free_port(), root / "signaling.log", args=signaling_args)
    sig.start()
    cluster = ProcCluster(root, sig)
    try:
        for _ in range(n):
            cluster.add_node(*node_args)
        yield cluster
    finally:
        for node in cluster.nodes:
            node.stop()
        sig.stop()
        if os.environ.get("DHT_TEST_SHOW_LOGS"):
            print(cluster.logs())


def command_lines() -> Iterator[tuple[str, str]]:
    """(pid, command line with spaces) of every running process whose command line is readable."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            yield proc.name, (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
