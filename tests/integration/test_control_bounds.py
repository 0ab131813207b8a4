"""A node's control socket bounds what one client can make it buffer (``MAXMSGSIZE``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from control.client import ControlClient
from tests.support.procs import lone_node

FRAME_BYTES = 15 * 1024 * 1024
FRAMES = 8
MAX_GROWTH_BYTES = 20 * 1024 * 1024  # the 8 frames are 120 MiB: buffering them shows


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[int, str]]:
    with lone_node(tmp_path) as (proc, control, _):
        yield proc.pid, control


def test_an_oversized_multipart_request_neither_grows_the_node_nor_stops_it(
    node: tuple[int, str],
) -> None:
    pid, control = node
    before = rss_bytes(pid)
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 0)
    try:
        sock.connect(control)
        big = b"x" * FRAME_BYTES
        sock.send_multipart([b"", *([big] * FRAMES)])
        time.sleep(1.5)  # the node reads (or drops) what it was sent
        replies = sock.poll(500)
    finally:
        sock.close(linger=0)
    grown = rss_bytes(pid) - before
    assert grown < MAX_GROWTH_BYTES, f"the node grew by {grown / 2**20:.0f} MiB"
    assert replies == 0  # the connection was dropped: there is no one to answer
    with ControlClient(control, timeout_s=5.0) as client:
        assert len(client.call("id")["id"]) == 64
