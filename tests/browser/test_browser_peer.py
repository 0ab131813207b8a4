"""A browser peer (web/, real headless chromium) in a cluster of Python nodes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.chromium import Chromium
from tests.browser.conftest import WEB_ROOT, call, open_peer
from tests.support.procs import ProcCluster, proc_cluster

pytestmark = [pytest.mark.browser, pytest.mark.slow]


async def test_browser_joins_with_a_routing_table(
    browser: Chromium, web_cluster: ProcCluster
) -> None:
    page, bid = await open_peer(browser, web_cluster)
    node_ids = {n.node_id for n in web_cluster.nodes}
    assert set(await page.evaluate("window.dhtPeer.peers()")) == node_ids
    assert set(await page.evaluate("window.dhtPeer.rt()")) == node_ids
    stats = await page.evaluate("window.dhtPeer.stats()")
    assert stats["id"] == bid
    assert stats["connections"] == len(node_ids)
    assert stats["hellos_rejected"] == 0
    events = await page.evaluate("window.dhtPeer.drainEvents()")
    connected = {e["peer"] for e in events if e["topic"] == "peer.connected"}
    assert connected == node_ids
    assert await page.evaluate("window.dhtPeer.drainEvents()") == []
    # Every node lists the browser as a connected peer.
    for i in range(len(web_cluster.nodes)):
        peers = (await call(web_cluster, i, "peers"))["peers"]
        assert bid in {p["id"] for p in peers}


async def test_browser_store_python_get(browser: Chromium, web_cluster: ProcCluster) -> None:
    page, bid = await open_peer(browser, web_cluster)
    r = await page.evaluate("window.dhtPeer.store('from-browser', 'héllo wörld')")
    assert r["ok"] is True
    assert r["stored"] >= r["quorum"] >= 1
    for i in range(len(web_cluster.nodes)):
        got = await call(web_cluster, i, "get", key="from-browser")
        assert got["value"] == "héllo wörld".encode()
        assert got["publisher"] == bid


async def test_python_store_browser_get(browser: Chromium, web_cluster: ProcCluster) -> None:
    page, _ = await open_peer(browser, web_cluster)
    stored = await call(web_cluster, 2, "store", key="from-python", value="ünïcode ✓".encode())
    assert stored["acks"] >= stored["quorum"] >= 1, stored
    r = await page.evaluate("window.dhtPeer.get('from-python')")
    assert r["found"] is True
    assert r["value"] == "ünïcode ✓"
    assert r["publisher"] == web_cluster.nodes[2].node_id
    assert await page.evaluate("window.dhtPeer.get('never-stored')") == {"found": False}


async def test_browser_announce_python_lookup(browser: Chromium, web_cluster: ProcCluster) -> None:
    page, bid = await open_peer(browser, web_cluster)
    r = await page.evaluate("window.dhtPeer.announce('browser-room')")
    assert r["ok"] is True
    found = await call(web_cluster, 1, "lookup", topic="browser-room")
    assert [p["id"] for p in found["peers"]] == [bid]
    # And the other way: a node announces, the browser looks it up.
    await call(web_cluster, 3, "announce", topic="node-room", port=4000)
    seen = await page.evaluate("window.dhtPeer.lookup('node-room')")
    assert seen["peers"] == [web_cluster.nodes[3].node_id]


@pytest.fixture
def sparse_cluster(tmp_path: Path) -> Iterator[ProcCluster]:
    """Nodes that probe only their one closest link when idle (``--min-links 1``): a departure
    must be seen without liveness probes on the other links."""
    web = ("--web", str(WEB_ROOT))
    with proc_cluster(tmp_path, 4, "--min-links", "1", signaling_args=web) as c:
        c.wait_formed(3)
        yield c


async def test_closed_browser_leaves_every_table(
    browser: Chromium, sparse_cluster: ProcCluster
) -> None:
    page, bid = await open_peer(browser, sparse_cluster)
    for i in range(len(sparse_cluster.nodes)):
        assert bid in {p["id"] for p in (await call(sparse_cluster, i, "peers"))["peers"]}
    await page.close()
    closed_at = time.monotonic()

    async def anywhere() -> list[int]:
        holders = []
        for i in range(len(sparse_cluster.nodes)):
            peers = {p["id"] for p in (await call(sparse_cluster, i, "peers"))["peers"]}
            rt = await call(sparse_cluster, i, "dump")
            contacts = {c["id"] for b in rt["buckets"] for c in b["contacts"]}
            if bid in peers or bid in contacts:
                holders.append(i)
        return holders

    holders = await anywhere()
    while holders and time.monotonic() - closed_at < 15.0:
        await asyncio.sleep(0.25)
        holders = await anywhere()
    assert holders == [], f"nodes {holders} still list the closed browser after 15 s"


async def test_in_band_channel_connects(browser: Chromium, web_cluster: ProcCluster) -> None:
    """A browser's default createDataChannel('dht') (DCEP, not pre-negotiated) works too."""
    page, _ = await open_peer(browser, web_cluster, "?inband=1")
    node_ids = {n.node_id for n in web_cluster.nodes}
    assert set(await page.evaluate("window.dhtPeer.peers()")) == node_ids
    channels = await page.evaluate(
        "[...window.dhtPeer.peer.conns.links.values()].map(l => [l.dc.label, l.dc.negotiated])"
    )
    assert channels == [["dht", False]] * len(node_ids)
    r = await page.evaluate("window.dhtPeer.store('in-band', 'dcep')")
    assert r["ok"] is True
    assert (await call(web_cluster, 0, "get", key="in-band"))["value"] == b"dcep"


async def test_connection_with_mdns_candidates_opens_fast(
    browser: Chromium, web_cluster: ProcCluster
) -> None:
    """Chromium hides host addresses behind mDNS names (its default, kept here); a connection
    between a node and the browser must still open in < 400 ms, both directions. The stall
    this guards against (a 1 s .local resolution per candidate) hits every attempt, so the
    best of three attempts is compared: one attempt slowed by a busy machine is not it."""
    page, bid = await open_peer(browser, web_cluster)
    target = web_cluster.nodes[1].node_id
    browser_ms, node_ms = [], []
    for _ in range(3):
        assert await page.evaluate(f"window.dhtPeer.disconnect('{target}')") is True
        dial = await page.evaluate(f"window.dhtPeer.connect('{target}')")
        assert dial["ok"] is True
        browser_ms.append(round(dial["ms"]))
        # A node dialling the browser.
        assert (await call(web_cluster, 2, "disconnect", node_id=bid))["disconnected"] is True
        connected = await call(web_cluster, 2, "connect", node_id=bid)
        node_ms.append(round(connected["duration_ms"]))
    print(f"browser → node {browser_ms} ms, node → browser {node_ms} ms")
    assert min(browser_ms) < 400, f"browser → node took {browser_ms} ms"
    assert min(node_ms) < 400, f"node → browser took {node_ms} ms"


async def test_demo_page_store_get_and_peers(browser: Chromium, web_cluster: ProcCluster) -> None:
    """What a person does on the demo page: fill the forms, read the answers and the peers."""
    page = await browser.open(f"http://127.0.0.1:{web_cluster.signaling.port}/")
    await page.wait_for("document.getElementById('id').textContent.length === 64", 30.0)
    await page.evaluate(
        """(() => {
          document.getElementById('store-key').value = 'demo-key';
          document.getElementById('store-value').value = 'demo value';
          document.querySelector('#store-form button').click();
        })()"""
    )
    stored = await page.wait_for("document.getElementById('store-result').textContent", 20.0)
    assert stored.startswith("stored on"), stored
    assert (await call(web_cluster, 1, "get", key="demo-key"))["value"] == b"demo value"
    await page.evaluate(
        """(() => {
          document.getElementById('get-key').value = 'demo-key';
          document.querySelector('#get-form button').click();
        })()"""
    )
    got = await page.wait_for("document.getElementById('get-result').textContent", 20.0)
    assert got.startswith("demo value"), got
    want = {n.node_id for n in web_cluster.nodes}
    listed = await page.wait_for(  # the list fills in as the page's links open
        "(() => { const l = [...document.querySelectorAll('#peers li')].map(li => li.textContent);"
        f" return l.length >= {len(want)} ? l : null; }})()",
        15.0,
    )
    assert set(listed) == want
