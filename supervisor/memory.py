"""``MemoryLauncher``: the in-memory ``Launcher`` (the memory backend, and tests).

It runs nothing; it records members and lets tests decide their fate (``simulate_exit``). Two
test hooks are read from ``MemberSpec.env`` at start: ``MEMORY_EXIT_CODE`` (the member exits at
once with that code) and ``MEMORY_OUTPUT`` (lines of log output). ``on_start``/``on_stop``
callbacks let a test attach a fake node (``tests/support/fake_node.py``) to a "started" member.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from supervisor.errors import LaunchError
from supervisor.launcher import MemberHandle, MemberSpec, MemberState

EXIT_CODE_ENV = "MEMORY_EXIT_CODE"
OUTPUT_ENV = "MEMORY_OUTPUT"
KILLED_EXIT_CODE = -9


@dataclass(slots=True)
class _Member:
    spec: MemberSpec
    handle: MemberHandle
    state: MemberState = MemberState.RUNNING
    exit_code: int | None = None
    output: list[str] = field(default_factory=list)


@dataclass(slots=True)
class MemoryRegistry:
    """What several ``MemoryLauncher`` instances share (stands in for the OS / the engine)."""

    members: dict[str, _Member] = field(default_factory=dict)
    counter: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    lock: threading.Lock = field(default_factory=threading.Lock)


class MemoryLauncher:
    name = "memory"

    def __init__(
        self,
        registry: MemoryRegistry | None = None,
        on_start: Callable[[MemberSpec, MemberHandle], None] | None = None,
        on_stop: Callable[[MemberHandle], None] | None = None,
    ) -> None:
        self.registry = registry or MemoryRegistry()
        self.on_start = on_start
        self.on_stop = on_stop
        self.started: list[MemberSpec] = []

    def start(self, spec: MemberSpec) -> MemberHandle:
        if not spec.argv:
            raise LaunchError(f"{spec.role} {spec.index}: empty command")
        with self.registry.lock:
            ref = f"mem-{next(self.registry.counter)}"
            handle = MemberHandle(spec.cluster, spec.role, spec.index, ref)
            member = _Member(spec, handle)
            if spec.env.get(OUTPUT_ENV):
                member.output = [line + "\n" for line in spec.env[OUTPUT_ENV].splitlines()]
            if spec.env.get(EXIT_CODE_ENV):
                member.state = MemberState.EXITED
                member.exit_code = int(spec.env[EXIT_CODE_ENV])
            self.registry.members[ref] = member
            self.started.append(spec)
        if self.on_start is not None and member.state is MemberState.RUNNING:
            self.on_start(spec, handle)
        return handle

    def _member(self, handle: MemberHandle) -> _Member | None:
        return self.registry.members.get(handle.ref)

    def state(self, handle: MemberHandle) -> MemberState:
        member = self._member(handle)
        return member.state if member is not None else MemberState.MISSING

    def exit_code(self, handle: MemberHandle) -> int | None:
        member = self._member(handle)
        return member.exit_code if member is not None else None

    def simulate_exit(self, handle: MemberHandle, code: int) -> None:
        """The member exits on its own (a crash when ``code != 0``)."""
        self._end(handle, code)

    def _end(self, handle: MemberHandle, code: int) -> None:
        member = self._member(handle)
        if member is None or member.state is not MemberState.RUNNING:
            return
        member.state = MemberState.EXITED
        member.exit_code = code
        if self.on_stop is not None:
            self.on_stop(handle)

    def stop(self, handle: MemberHandle, timeout_s: float = 10.0) -> None:
        self._end(handle, 0)

    def kill(self, handle: MemberHandle) -> None:
        self._end(handle, KILLED_EXIT_CODE)

    def logs(
        self, handle: MemberHandle, follow: bool = False, tail: int | None = None
    ) -> Iterator[str]:
        member = self._member(handle)
        if member is None:
            raise LaunchError(f"no such member {handle.ref}")
        lines = list(member.output)
        if tail is not None:
            lines = lines[-tail:] if tail > 0 else []
        return iter(lines)

    def find(self, cluster: str) -> list[MemberHandle]:
        with self.registry.lock:
            return [m.handle for m in self.registry.members.values() if m.handle.cluster == cluster]

    def remove_cluster(self, cluster: str, purge: bool = True) -> None:
        for handle in self.find(cluster):
            self.stop(handle)
            self.registry.members.pop(handle.ref, None)
