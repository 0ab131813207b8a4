"""The browser peer and the protocol additions (FIND_NODE_STORE, BYE, PUT, RECORD, LISTEN):
real chromium beside Python nodes, each message seen on the wire and handled as the spec says.
A module of its own: its cluster (the module-scoped ``web_cluster``) loses a node."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from supervisor.chromium import Chromium, Page
from tests.browser.conftest import call, open_peer
from tests.support.procs import ProcCluster

pytestmark = [pytest.mark.browser, pytest.mark.slow]

GET_AT = """(async (addr) => {
  const c = await import('/lib/crypto.js');
  const r = await window.dhtPeer.peer.getAt(c.unhex(addr));
  return r.found ? {found: true, value: new TextDecoder().decode(r.value), kind: r.kind}
    : {found: false};
})"""


async def stats(page: Page) -> dict[str, Any]:
    s: dict[str, Any] = await page.evaluate("window.dhtPeer.stats()")
    return s


async def test_find_node_store_put_listen_and_record(
    browser: Chromium, web_cluster: ProcCluster
) -> None:
    page, _ = await open_peer(browser, web_cluster)
    # A node's store sends FIND_NODE_STORE; with 5 peers (< k) the browser is among the closest.
    stored = await call(web_cluster, 0, "store", key="fns", value=b"carried")
    assert stored["acks"] >= stored["quorum"] >= 1, stored
    s = await stats(page)
    assert s["messages_in"]["FIND_NODE_STORE"] >= 1
    assert s["messages_out"]["NODES_ACK"] >= 1
    assert s["store_size"] >= 1
    assert s["dropped_malformed"] == 0
    # PUT (owned records) is refused cleanly; the nodes still hold the record; the browser
    # reads it back as a RECORD answer, verified (immutable: hash; mutable: owner + signature).
    imm = await call(web_cluster, 1, "put_immutable", value=b"forever")
    mut = await call(web_cluster, 2, "put_mutable", name=b"profile", value=b"v1")
    s = await stats(page)
    assert s["messages_in"]["PUT"] >= 2
    assert s["messages_out"]["PUT_ACK"] >= 2
    assert await page.evaluate(f"{GET_AT}('{imm['address']}')") == {
        "found": True,
        "value": "forever",
        "kind": 2,
    }
    assert await page.evaluate(f"{GET_AT}('{mut['address']}')") == {
        "found": True,
        "value": "v1",
        "kind": 1,
    }
    assert (await stats(page))["messages_in"]["RECORD"] >= 1
    # LISTEN is answered (refused), not left to time out.
    await call(web_cluster, 3, "listen", key="fns")  # registers in the background
    deadline = time.monotonic() + 10.0
    s = await stats(page)
    while "LISTEN_ACK" not in s["messages_out"] and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        s = await stats(page)
    assert s["messages_in"]["LISTEN"] >= 1
    assert s["messages_out"]["LISTEN_ACK"] >= 1
    assert s["dropped_malformed"] == 0


async def test_bye_both_ways(browser: Chromium, web_cluster: ProcCluster) -> None:
    page, bid = await open_peer(browser, web_cluster)
    # A node that leaves (SIGTERM) says BYE: the browser drops it at once.
    leaving = web_cluster.nodes[3]
    leaving.expect_dead = True
    await asyncio.to_thread(leaving.stop)
    assert leaving.node_id not in await page.evaluate("window.dhtPeer.rt()")
    assert leaving.node_id not in await page.evaluate("window.dhtPeer.peers()")
    assert (await stats(page))["byes_received"] == 1
    # The browser's stop() says BYE: every node drops it well before liveness would (4 s + 3 s).
    await page.evaluate("window.dhtPeer.stop()")
    stopped = time.monotonic()
    holders = [0, 1, 2]
    while holders and time.monotonic() - stopped < 2.0:
        holders = []
        for i in range(3):
            peers = {p["id"] for p in (await call(web_cluster, i, "peers"))["peers"]}
            rt = await call(web_cluster, i, "dump")
            contacts = {c["id"] for b in rt["buckets"] for c in b["contacts"]}
            if bid in peers or bid in contacts:
                holders.append(i)
        await asyncio.sleep(0.1)
    assert holders == [], f"nodes {holders} still list the browser 2 s after its BYE"
