"""Fixtures for the browser tests: a small Python cluster whose signaling server also serves
``web/``, and a fresh headless chromium per test (starting one takes ~0.4 s)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from signaling.server import SignalingServer
from supervisor.chromium import BrowserError, Chromium, EvaluationError, Page
from tests.support.procs import ProcCluster, proc_cluster, wait_for

WEB_ROOT = Path(__file__).resolve().parents[2] / "web"
READY_TIMEOUT_S = 30.0


def page_url(cluster: ProcCluster, query: str = "") -> str:
    return f"http://127.0.0.1:{cluster.signaling.port}/peer.html{query}"


async def open_peer(browser: Chromium, cluster: ProcCluster, query: str = "") -> tuple[Page, str]:
    """A page running a browser peer that has joined the cluster; (page, its id)."""
    page = await browser.open(page_url(cluster, query))
    try:
        ready = await page.evaluate("window.dhtPeer.ready()", timeout_s=READY_TIMEOUT_S)
    except Exception:
        print("\n".join(f"{m.level}: {m.text}" for m in page.console))
        raise
    return page, str(ready["id"])


async def call(cluster: ProcCluster, index: int, cmd: str, **args: Any) -> dict[str, Any]:
    """A control command to node ``index`` (0-based) without blocking the event loop."""
    return await asyncio.to_thread(cluster.nodes[index].call, cmd, **args)


@pytest.fixture(scope="module")
def web_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcCluster]:
    root = tmp_path_factory.mktemp("webcluster")
    with proc_cluster(root, 4, signaling_args=("--web", str(WEB_ROOT))) as cluster:
        cluster.wait_formed(3)
        yield cluster


@pytest.fixture
async def browser() -> AsyncIterator[Chromium]:
    async with Chromium() as b:
        yield b
        # Leave cleanly so the module's nodes do not keep dialling this test's peers (a test
        # that wants an abrupt departure closes its page itself).
        for page in b.pages:
            with contextlib.suppress(BrowserError, EvaluationError, TimeoutError):
                await page.evaluate("window.dhtPeer && window.dhtPeer.stop()", timeout_s=5.0)


@pytest.fixture
async def lib_page() -> AsyncIterator[Page]:
    """A page of ``web/lib`` served by a bare signaling server: for in-page module tests."""
    async with SignalingServer(web_root=WEB_ROOT) as server, Chromium() as browser:
        yield await browser.open(f"http://127.0.0.1:{server.port}/lib/codec.js")


__all__ = ["call", "open_peer", "page_url", "wait_for"]
