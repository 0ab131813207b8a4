"""A node dials a browser peer over the DHT's SIGNAL relay (the signaling server is gone)."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.chromium import Chromium
from tests.browser.conftest import WEB_ROOT, call, open_peer
from tests.support.procs import proc_cluster

pytestmark = [pytest.mark.browser, pytest.mark.slow]


async def test_node_dials_browser_over_the_relay(browser: Chromium, tmp_path: Path) -> None:
    with proc_cluster(tmp_path, 3, signaling_args=("--web", str(WEB_ROOT))) as cluster:
        cluster.wait_formed(2)
        page, bid = await open_peer(browser, cluster)
        assert len(await page.evaluate("window.dhtPeer.peers()")) == 3
        cluster.signaling.stop()  # from now on, offers and answers can only travel the DHT
        await page.wait_for("!window.dhtPeer.stats().signaling_connected", 10.0)
        before = await page.evaluate("window.dhtPeer.stats()")

        assert (await call(cluster, 0, "disconnect", node_id=bid))["disconnected"] is True
        await page.wait_for(f"!window.dhtPeer.peers().includes('{cluster.nodes[0].node_id}')", 10.0)
        connected = await call(cluster, 0, "connect", node_id=bid)
        assert connected["id"] == bid
        assert bid in {p["id"] for p in (await call(cluster, 0, "peers"))["peers"]}

        after = await page.evaluate("window.dhtPeer.stats()")
        assert cluster.nodes[0].node_id in await page.evaluate("window.dhtPeer.peers()")
        # The offer reached the browser as a SIGNAL, its answer left as one.
        assert after["messages_in"]["SIGNAL"] > before["messages_in"].get("SIGNAL", 0)
        assert after["signals_relayed_out"] > before["signals_relayed_out"]
        # And the new link carries DHT traffic: the node reads a value the browser stored.
        assert (await page.evaluate("window.dhtPeer.store('relayed', 'yes')"))["ok"] is True
        assert (await call(cluster, 0, "get", key="relayed"))["value"] == b"yes"

        # The signaling server comes back: the browser registers again by itself.
        cluster.signaling.start()
        await page.wait_for("window.dhtPeer.stats().signaling_connected", 15.0)
