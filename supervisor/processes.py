"""``ProcessLauncher``: cluster members as local processes.

Each member runs detached (``supervisor.detached``): in its own session, so that signals reach
its whole process group and a Ctrl-C in the shell that ran ``orchestrate.py up`` does not reach
it; stdout and stderr go to the member's log file.

Recovery from another process: every start is recorded in
``<state_root>/<cluster>/members.json`` (role, index, pid, the process start time from
``/proc/<pid>/stat`` to detect PID reuse, log path, data dir). ``find`` and ``remove_cluster`` read
that file, so ``orchestrate.py down`` works from any shell even when the supervisor is gone.

Children of this launcher are inspected with ``Popen.poll`` (which also reaps them); other
processes with ``os.kill(pid, 0)`` and ``/proc``.

Peers whose command is the node (``python -m peer ...``) are forked from a preloaded zygote
(``supervisor.zygote_client``, ``peer.zygote``) instead of exec'd, so the ~50 MB of imports is
shared; they are the zygote's children, and ``ForkedChild.poll`` asks it for their exit status.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from supervisor.detached import spawn_detached
from supervisor.errors import LaunchError
from supervisor.launcher import MemberHandle, MemberSpec, MemberState, Role
from supervisor.state import proc_running, proc_stat_fields, write_json_atomic
from supervisor.zygote_client import ForkedChild, ZygoteClient, preload_wanted

log = logging.getLogger(__name__)

MEMBERS_FILE = "members.json"
POLL_INTERVAL_S = 0.05
FOLLOW_INTERVAL_S = 0.2
KILL_WAIT_S = 5.0


def _start_ticks(pid: int) -> int | None:
    """The process start time in clock ticks since boot (field 22 of /proc/<pid>/stat)."""
    fields = proc_stat_fields(pid)
    if fields is None:
        return None
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def _recorded_alive(member: dict[str, Any]) -> bool:
    """Whether the process a members-file entry names still runs (and is that process)."""
    pid = member.get("pid")
    if not isinstance(pid, int) or not proc_running(pid):
        return False
    return member.get("start_ticks") in (None, _start_ticks(pid))


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


class ProcessLauncher:
    name = "process"

    def __init__(self, state_root: Path) -> None:
        self._root = Path(state_root)
        self._children: dict[int, subprocess.Popen[bytes] | ForkedChild] = {}
        self._lock = threading.RLock()
        self._zygote: ZygoteClient | None = None
        self._zygote_failed = False

    # -- the members file ----------------------------------------------------------------------

    def _members_path(self, cluster: str) -> Path:
        return self._root / cluster / MEMBERS_FILE

    def _read_members(self, cluster: str) -> list[dict[str, Any]]:
        try:
            data = json.loads(self._members_path(cluster).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return []
        members = data.get("members", []) if isinstance(data, dict) else []
        return [m for m in members if isinstance(m, dict)]

    def _write_members(self, cluster: str, members: list[dict[str, Any]]) -> None:
        write_json_atomic(self._members_path(cluster), {"members": members})

    def _record(self, handle: MemberHandle) -> dict[str, Any] | None:
        for member in self._read_members(handle.cluster):
            if str(member.get("pid")) == handle.ref:
                return member
        return None

    # -- Launcher ------------------------------------------------------------------------------

    def start(self, spec: MemberSpec) -> MemberHandle:
        argv = list(spec.argv)
        if not argv:
            raise LaunchError(f"{spec.role} {spec.index}: empty command")
        if argv[0] in ("python", "python3"):
            argv[0] = sys.executable
        env = {**os.environ, **spec.env}
        try:
            if spec.data_dir:
                Path(spec.data_dir).mkdir(parents=True, exist_ok=True)
            proc: subprocess.Popen[bytes] | ForkedChild | None = None
            if spec.role is Role.PEER and preload_wanted(argv, env):
                proc = self._fork(spec, argv, env)
            if proc is None:
                proc = spawn_detached(argv, Path(spec.log_path) if spec.log_path else None, env)
        except OSError as exc:
            raise LaunchError(f"cannot start {spec.role} {spec.index} ({argv[0]}): {exc}") from exc
        entry = {
            "role": str(spec.role),
            "index": spec.index,
            "pid": proc.pid,
            "start_ticks": _start_ticks(proc.pid),
            "log_path": spec.log_path,
            "data_dir": spec.data_dir,
        }
        with self._lock:
            self._children[proc.pid] = proc
            # An earlier process of the same member stays on record while it runs, so that
            # remove_cluster (``down``) still stops it should its owner have lost it.
            members = [
                m
                for m in self._read_members(spec.cluster)
                if not (m.get("role") == str(spec.role) and m.get("index") == spec.index)
                or _recorded_alive(m)
            ]
            members.append(entry)
            self._write_members(spec.cluster, members)
        return MemberHandle(spec.cluster, spec.role, spec.index, str(proc.pid))

    def _fork(self, spec: MemberSpec, argv: list[str], env: dict[str, str]) -> ForkedChild | None:
        """Fork the peer from the zygote (started on first use); None: exec it instead."""
        with self._lock:
            if self._zygote_failed:
                return None
            try:
                if self._zygote is None or not self._zygote.alive():
                    self._zygote = ZygoteClient(self._root / spec.cluster / "zygote.log")
                pid = self._zygote.spawn(argv[3:], env, spec.log_path, None)
            except (LaunchError, OSError) as exc:
                log.warning("preloaded start failed (%s): starting peers by exec instead", exc)
                self._zygote_failed = True
                return None
            return ForkedChild(self._zygote, pid)

    def close(self) -> None:
        """Stop the zygote (its workers keep running: they are members, stopped by ``stop``)."""
        with self._lock:
            if self._zygote is not None:
                self._zygote.close()
                self._zygote = None

    def _pid(self, handle: MemberHandle) -> int | None:
        return int(handle.ref) if handle.ref.isdigit() else None

    def state(self, handle: MemberHandle) -> MemberState:
        pid = self._pid(handle)
        if pid is None:
            return MemberState.MISSING
        with self._lock:
            child = self._children.get(pid)
        if child is not None:
            return MemberState.RUNNING if child.poll() is None else MemberState.EXITED
        record = self._record(handle)
        alive = proc_running(pid)
        if (
            alive
            and record is not None
            and record.get("start_ticks") not in (None, _start_ticks(pid))
        ):
            alive = False  # the pid was reused by another process
        if alive:
            return MemberState.RUNNING
        return MemberState.EXITED if record is not None else MemberState.MISSING

    def exit_code(self, handle: MemberHandle) -> int | None:
        pid = self._pid(handle)
        with self._lock:
            child = self._children.get(pid) if pid is not None else None
        return child.poll() if child is not None else None

    def _wait_gone(self, pids: list[int], timeout_s: float) -> list[int]:
        """Wait until every pid has exited (reaping our children); returns the survivors."""
        deadline = time.monotonic() + timeout_s
        remaining = list(pids)
        while remaining:
            still: list[int] = []
            for pid in remaining:
                with self._lock:
                    child = self._children.get(pid)
                if child is not None:
                    if child.poll() is None:
                        still.append(pid)
                elif proc_running(pid):
                    still.append(pid)
            remaining = still
            if not remaining or time.monotonic() >= deadline:
                break
            time.sleep(POLL_INTERVAL_S)
        return remaining

    def _live_pids(self, handles: list[MemberHandle]) -> list[int]:
        pids = []
        for handle in handles:
            pid = self._pid(handle)
            if pid is not None and self.state(handle) is MemberState.RUNNING:
                pids.append(pid)
        return pids

    def _stop_many(self, handles: list[MemberHandle], timeout_s: float) -> None:
        pids = self._live_pids(handles)
        for pid in pids:
            _signal_group(pid, signal.SIGTERM)
        survivors = self._wait_gone(pids, timeout_s)
        for pid in survivors:
            _signal_group(pid, signal.SIGKILL)
        self._wait_gone(survivors, KILL_WAIT_S)

    def stop(self, handle: MemberHandle, timeout_s: float = 10.0) -> None:
        self._stop_many([handle], timeout_s)

    def kill(self, handle: MemberHandle) -> None:
        pids = self._live_pids([handle])
        for pid in pids:
            _signal_group(pid, signal.SIGKILL)
        self._wait_gone(pids, KILL_WAIT_S)

    def logs(
        self, handle: MemberHandle, follow: bool = False, tail: int | None = None
    ) -> Iterator[str]:
        record = self._record(handle)
        log_path = record.get("log_path") if record else None
        if not log_path:
            raise LaunchError(f"no log file recorded for {handle.role} {handle.index}")
        return self._read_log(handle, Path(log_path), follow, tail)

    def _read_log(
        self, handle: MemberHandle, path: Path, follow: bool, tail: int | None
    ) -> Iterator[str]:
        try:
            fh = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115 - generator-owned
        except OSError as exc:
            raise LaunchError(f"cannot read {path}: {exc}") from exc
        with fh:
            lines = fh.readlines()
            if tail is not None:
                lines = lines[-tail:] if tail > 0 else []
            yield from lines
            while follow:
                line = fh.readline()
                if line:
                    yield line
                    continue
                if self.state(handle) is not MemberState.RUNNING:
                    yield from fh.readlines()
                    return
                time.sleep(FOLLOW_INTERVAL_S)

    def find(self, cluster: str) -> list[MemberHandle]:
        handles = []
        for member in self._read_members(cluster):
            try:
                role = Role(member["role"])
                handles.append(
                    MemberHandle(cluster, role, int(member["index"]), str(member["pid"]))
                )
            except (KeyError, ValueError, TypeError):
                continue
        return handles

    def remove_cluster(self, cluster: str, purge: bool = True) -> None:
        members = self._read_members(cluster)
        self._stop_many(self.find(cluster), timeout_s=10.0)
        cluster_root = (self._root / cluster).resolve()
        for member in members if purge else ():
            data_dir = member.get("data_dir")
            if not data_dir:
                continue
            path = Path(data_dir).resolve()
            if path.is_relative_to(cluster_root) and path != cluster_root:
                shutil.rmtree(path, ignore_errors=True)
        with self._lock:
            try:
                self._members_path(cluster).unlink()
            except FileNotFoundError:
                pass
            for member in members:
                pid = member.get("pid")
                if isinstance(pid, int):
                    self._children.pop(pid, None)
