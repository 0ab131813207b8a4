"""A swarm for tests: join the engine of ``DOCKER_HOST`` to a one-node swarm when it is not in
one, and leave it afterwards (an engine that already was a manager is left as it was)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.support.cli import require_engine

PORT_BLOCK_TRIES = 200


@contextmanager
def one_node_swarm() -> Iterator[Any]:
    """The engine's Docker SDK client, the engine a swarm manager for the duration."""
    require_engine()
    import docker

    client = docker.from_env(timeout=60)
    swarm = client.info().get("Swarm") or {}
    state = swarm.get("LocalNodeState")
    joined = False
    if state == "inactive":
        client.swarm.init(advertise_addr="127.0.0.1", listen_addr="127.0.0.1:2377")
        joined = True
    elif state != "active" or not swarm.get("ControlAvailable"):
        client.close()
        message = f"the engine is in swarm state {state!r} and not a manager"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield client
    finally:
        if joined:
            client.swarm.leave(force=True)
        client.close()


def free_port_block(ports: int) -> int:
    """A base ``b`` such that ``b + 1 .. b + ports`` are all free on 127.0.0.1 right now."""
    for attempt in range(PORT_BLOCK_TRIES):
        base = 20000 + (os.getpid() * 7 + attempt * 97) % 30000
        if all(_free(base + i) for i in range(1, ports + 1)):
            return base
    raise RuntimeError(f"no block of {ports} free ports")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
