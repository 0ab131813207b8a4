"""The JS peer's handling of the 1.0 additions, driven in a page without a network: FIND_NODE_STORE
stores exactly when the `_among_closest` rule of node/responder.py says so; PUT and LISTEN are
refused; NOTIFY is dropped; REFUSED fails a request without counting against the peer; BYE
removes the peer and fails what was pending at it at once."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from supervisor.chromium import Page

pytestmark = pytest.mark.browser

VECTORS = Path(__file__).resolve().parents[1] / "vectors"

DRIVE = """
(async (v) => {
  const {DhtPeer} = await import('/lib/peer.js');
  const codec = await import('/lib/codec.js');
  const c = await import('/lib/crypto.js');
  const {RoutingTable} = await import('/lib/routing.js');
  const T = codec.MsgType;
  const tick = () => new Promise((r) => { setTimeout(r, 50); });
  const p = new DhtPeer({k: v.k});
  const own = c.unhex(v.own);
  p.identity = {id: own, idHex: v.own};
  p.table = new RoutingTable(own, v.k);
  const sent = [];
  const peerId = c.unhex(v.peer);
  const link = {peerId, peerHex: v.peer, lastHeard: 0};
  p.conns = {
    links: new Map([[v.peer, link]]),
    send: (id, bytes) => { sent.push(codec.decode(bytes)); },
    drop: (l, reason) => { p.conns.links.delete(l.peerHex); p.linkDown(l, reason); },
  };
  p.heard(peerId); // first, so a full bucket cannot keep it out
  for (const h of v.contacts) p.table.update(c.unhex(h), 1);
  const out = {table: p.table.ids(), answers: []};
  for (const m of v.requests) {
    p.receive(link, c.unhex(m));
    await tick();
    const a = sent.pop();
    out.answers.push(a ? {type: a.type, rid: a.rid.toString(), ok: a.ok ?? null,
                          reason: a.reason ?? null, nodes: (a.nodes || []).map(c.hex)} : null);
  }
  out.stored = p.records.size;
  p.receive(link, c.unhex(v.notify));
  out.dropped_unexpected = p.stats.dropped_unexpected;
  // REFUSED: this request fails (null), the peer is not charged with a failure.
  const refused = p.request(peerId, {type: T.FIND_NODE, target: own});
  p.receive(link, codec.encode({type: T.REFUSED, rid: sent.pop().rid, reason: 'rate_limited'}));
  out.refused = await refused;
  out.requests_refused = p.stats.requests_refused;
  out.failures = p.table.index.get(v.peer).failures;
  // BYE: out of the table, link dropped, the pending request fails at once.
  const t0 = performance.now();
  const pending = p.request(peerId, {type: T.PING});
  p.receive(link, codec.encode({type: T.BYE}));
  out.pending_after_bye = await pending;
  out.bye_ms = performance.now() - t0;
  out.in_table_after_bye = p.table.has(v.peer);
  out.linked_after_bye = p.conns.links.has(v.peer);
  return out;
})
"""


def vectors() -> dict[str, str]:
    msgs = json.loads((VECTORS / "messages.json").read_text())["messages"]
    return {m["name"]: m["hex"] for m in msgs}


def ids(n: int) -> list[str]:
    return [hashlib.sha256(f"contact {i}".encode()).hexdigest() for i in range(n)]


def among_closest(own: str, table: list[str], key: str, k: int) -> bool:
    """node/responder.py ``_among_closest``, restated on hex ids."""
    t = int(key, 16)
    closest = sorted(table, key=lambda h: int(h, 16) ^ t)[:k]
    return len(closest) < k or int(own, 16) ^ t < int(closest[-1], 16) ^ t


@pytest.mark.parametrize("n_contacts", [1, 12, 40])
async def test_js_peer_handles_the_additions(lib_page: Page, n_contacts: int) -> None:
    v = vectors()
    identities = json.loads((VECTORS / "identities.json").read_text())["identities"]
    key = json.loads((VECTORS / "identities.json").read_text())["keys"][0]["key"]  # "hello"
    peer = next(i["node_id"] for i in identities if i["name"] == "b")
    # An own id close to the key or far from it, depending on the contacts around it.
    own = hashlib.sha256(b"own").hexdigest()
    k = 4
    args: dict[str, Any] = {
        "k": k,
        "own": own,
        "peer": peer,
        "contacts": ids(n_contacts),
        "requests": [v["find_node_store"], v["put_mutable"], v["listen"]],
        "notify": v["notify"],
    }
    out = await lib_page.evaluate(f"{DRIVE}({json.dumps(args)})")
    fns, put, listen = out["answers"]
    expect = among_closest(own, out["table"], key, k)
    assert fns["type"] == 17
    assert fns["rid"] == str(0xFEDCBA9876543210)
    assert (fns["ok"], fns["reason"]) == ((True, "stored") if expect else (False, "not_closest"))
    assert out["stored"] == (1 if expect else 0)
    t = int(key, 16)
    want_nodes = sorted((h for h in out["table"] if h != peer), key=lambda h: int(h, 16) ^ t)[:k]
    assert fns["nodes"] == want_nodes
    assert (put["type"], put["ok"], put["reason"]) == (25, False, "unsupported")
    assert (listen["type"], listen["ok"]) == (31, False)
    assert out["dropped_unexpected"] == 1  # the NOTIFY
    assert out["refused"] is None
    assert out["requests_refused"] == 1
    assert out["failures"] == 0
    assert out["pending_after_bye"] is None
    assert out["bye_ms"] < 500
    assert not out["in_table_after_bye"]
    assert not out["linked_after_bye"]
