"""The JavaScript codec (web/lib) against the Python one: the same bytes both ways, the same
signatures from the same keys (Ed25519 is deterministic), and the same refusals."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from node import codec
from node.connections import hello_payload
from node.identity import DOMAIN_SIGNALING, Identity
from node.ids import NodeId, key_id
from node.messages import (
    Announce,
    AnnounceAck,
    FindNode,
    FindValue,
    GetPeers,
    HasValue,
    HasValueAck,
    Hello,
    Message,
    Nodes,
    Peers,
    Ping,
    Pong,
    Signal,
    Store,
    StoreAck,
    Value,
)
from node.records import sign_provider, sign_record
from signaling.server import SignalingServer
from supervisor.chromium import Chromium, Page
from tests.browser.conftest import WEB_ROOT

pytestmark = pytest.mark.browser

SEED_A = bytes(range(32))
SEED_B = bytes(range(100, 132))
TS = 1_700_000_000_123
RID = 0xFEDC_BA98_7654_3210  # above 2^53: must survive as a BigInt


def python_vectors() -> list[dict[str, Any]]:
    a, b = Identity.from_seed(SEED_A), Identity.from_seed(SEED_B)
    key = key_id("vector-key")
    topic = key_id("vector-topic")
    rec = sign_record(a, key, "välue ✓".encode(), TS)
    prov = sign_provider(a, topic, TS, 8080, b'{"room":"x"}')
    leave = sign_provider(b, topic, TS + 1, 0, b"", leave=True)
    cid = "0123456789abcdef"
    hello = Hello(a.public_key, b.node_id, cid, a.sign(hello_payload(b.node_id, cid)))
    ids = (a.node_id, b.node_id)
    messages: list[tuple[str, Message]] = [
        ("hello", hello),
        ("ping", Ping(RID)),
        ("pong", Pong(1)),
        ("find_node", FindNode(RID, NodeId(key))),
        ("nodes", Nodes(RID, ids)),
        ("nodes_empty", Nodes(0, ())),
        ("find_value", FindValue(RID, key)),
        ("value", Value(RID, rec, ids)),
        ("store", Store(RID, rec, False)),
        ("store_cached", Store(RID, rec, True)),
        ("store_ack", StoreAck(RID, False, "bad signature")),
        ("has_value", HasValue(RID, key, TS, a.node_id)),
        ("has_value_ack", HasValueAck(RID, True)),
        ("signal", Signal(RID, a.node_id, b.node_id, 8, b"\x81\xa1t\xa5offer")),
        ("announce", Announce(RID, prov)),
        ("announce_ack", AnnounceAck(RID, True, "stored")),
        ("get_peers", GetPeers(RID, topic)),
        ("peers", Peers(RID, (prov, leave), ids)),
    ]
    return [
        {
            "name": name,
            "hex": codec.encode(m).hex(),
            "public_key": a.public_key.hex(),
        }
        for name, m in messages
    ] + [
        {
            "name": "signaling_register",
            "nonce": (nonce := bytes(range(32, 64))).hex(),
            "sig": a.sign(DOMAIN_SIGNALING + nonce).hex(),
            "public_key": a.public_key.hex(),
        },
    ]


JS_CHECK = """
(async (vectors, seedA, seedB, bad) => {
  const codec = await import('/lib/codec.js');
  const c = await import('/lib/crypto.js');
  const out = {};
  const a = await c.Identity.fromSeed(c.unhex(seedA));
  const b = await c.Identity.fromSeed(c.unhex(seedB));
  out.ids = [a.idHex, b.idHex];
  for (const v of vectors) {
    const r = {};
    if (v.hex) {
      const m = codec.decode(c.unhex(v.hex));
      r.type = m.type;
      r.reencoded = c.hex(codec.encode(m));
      if (m.rid !== undefined) r.rid = m.rid.toString();
      if (m.type === codec.MsgType.HELLO) {
        r.version = m.version;
        r.valid = await c.verify(m.publicKey, m.sig, codec.helloPayload(m.receiver, m.cid));
        const sig = await a.sign(codec.helloPayload(m.receiver, m.cid));
        r.same_sig = c.hex(sig) === c.hex(m.sig);
      }
      const rec = m.record;
      if (rec) {
        const payload = codec.recordPayload(rec.key, rec.ts, rec.data);
        r.valid = await c.verify(rec.publicKey, rec.sig, payload);
        r.data = new TextDecoder().decode(rec.data);
        r.same_sig = c.hex(await a.sign(payload)) === c.hex(rec.sig);
        r.key_ok = c.hex(rec.key) === c.hex(await c.keyId('vector-key'));
      }
      const provs = m.provider ? [m.provider] : (m.providers || []);
      if (provs.length) {
        r.providers_valid = [];
        for (const p of provs) {
          r.providers_valid.push(await c.verify(p.publicKey, p.sig,
            codec.providerPayload(p.topic, p.ts, p.port, p.leave, p.meta)));
        }
      }
    } else {
      const payload = c.concat(c.utf8(c.DOMAIN_SIGNALING), c.unhex(v.nonce));
      r.same_sig = c.hex(await a.sign(payload)) === v.sig;
      r.valid = await c.verify(c.unhex(v.public_key), c.unhex(v.sig), payload);
    }
    out[v.name] = r;
  }
  // Refusals: what node/codec.py refuses, the JS decoder refuses too.
  out.refused = {};
  for (const [name, h] of Object.entries(bad)) {
    try { codec.decode(c.unhex(h)); out.refused[name] = false; }
    catch (e) { out.refused[name] = e instanceof codec.DecodeError; }
  }
  return out;
})
"""

BAD_HEX = {
    "empty": "",
    "not_array": "01",
    "unknown_type": "9110",
    "ping_arity": "93010203",
    "str_for_bin": "930bd920" + "61" * 32 + "00",
    "trailing": "910100",
    "short_id": "9203" + "01" + "c41f" + "00" * 31,
    "negative_rid": "9201ff",
    "float_rid": "9201cb3ff0000000000000",
    "map": "81a17401",
}


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    async with SignalingServer(web_root=WEB_ROOT) as server, Chromium() as browser:
        yield await browser.open(f"http://127.0.0.1:{server.port}/lib/codec.js")


async def test_js_decodes_reencodes_and_verifies_python_vectors(page: Page) -> None:
    vectors = python_vectors()
    args = f"{json.dumps(vectors)}, '{SEED_A.hex()}', '{SEED_B.hex()}', {json.dumps(BAD_HEX)}"
    expr = f"{JS_CHECK}({args})"
    out = await page.evaluate(expr)
    a, b = Identity.from_seed(SEED_A), Identity.from_seed(SEED_B)
    assert out["ids"] == [a.node_id.hex(), b.node_id.hex()]
    for v in vectors:
        r = out[v["name"]]
        if "hex" in v:
            assert r["reencoded"] == v["hex"], v["name"]
            assert r["type"] == codec.decode(bytes.fromhex(v["hex"])).type, v["name"]
        assert r.get("valid", True) is True, v["name"]
        assert r.get("same_sig", True) is True, v["name"]
        assert all(r.get("providers_valid", [True])), v["name"]
    assert out["ping"]["rid"] == str(RID)
    assert out["hello"]["version"] == [1, 0]
    assert out["value"]["data"] == "välue ✓"
    assert out["value"]["key_ok"] is True
    assert out["peers"]["providers_valid"] == [True, True]
    # The refusals agree with the Python decoder.
    for h in BAD_HEX.values():
        with pytest.raises(codec.DecodeError):
            codec.decode(bytes.fromhex(h))
    assert out["refused"] == dict.fromkeys(BAD_HEX, True)


async def test_js_encodes_what_python_decodes(page: Page) -> None:
    """Messages built and signed in JS decode in Python with valid signatures."""
    expr = """(async (seed) => {
      const codec = await import('/lib/codec.js');
      const c = await import('/lib/crypto.js');
      const a = await c.Identity.fromSeed(c.unhex(seed));
      const key = await c.keyId('js-key');
      const data = c.utf8('from js');
      const ts = 1700000000999;
      const sig = await a.sign(codec.recordPayload(key, ts, data));
      const record = {key, data, ts, publicKey: a.publicKey, sig};
      const store = codec.encode({type: codec.MsgType.STORE, rid: 18446744073709551615n,
                                  record, cached: false});
      const cid = 'abc';
      const hello = codec.encode({type: codec.MsgType.HELLO, publicKey: a.publicKey,
        receiver: a.id, cid, sig: await a.sign(codec.helloPayload(a.id, cid))});
      return [c.hex(store), c.hex(hello)];
    })"""
    store_hex, hello_hex = await page.evaluate(f"{expr}('{SEED_A.hex()}')")
    store = codec.decode(bytes.fromhex(store_hex))
    assert isinstance(store, Store)
    assert store.rid == (1 << 64) - 1
    a = Identity.from_seed(SEED_A)
    assert store.record == sign_record(a, key_id("js-key"), b"from js", 1_700_000_000_999)
    hello = codec.decode(bytes.fromhex(hello_hex))
    assert isinstance(hello, Hello)
    assert hello.version == (1, 0)
    assert hello.sig == a.sign(hello_payload(a.node_id, "abc"))
