"""The JavaScript codec (web/lib) against the protocol test vectors (tests/vectors, generated
from the Python code) and against the Python decoder: the same bytes both ways, the same
signatures from the same keys (Ed25519 is deterministic), the same refusals."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import pytest

from node import codec
from node.hello import hello_payload
from node.identity import Identity
from node.ids import key_id
from node.messages import Hello, Store
from node.records import sign_record
from supervisor.chromium import Page

pytestmark = pytest.mark.browser

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
SEED_A = bytes(range(32))


def vector_files() -> dict[str, Any]:
    return {
        name: json.loads((VECTORS / f"{name}.json").read_text())
        for name in ("identities", "messages", "signatures", "invalid")
    }


JS_CHECK = """
(async (v) => {
  const codec = await import('/lib/codec.js');
  const c = await import('/lib/crypto.js');
  const mp = await import('/lib/msgpack.js');
  const tree = (x) => {
    if (x === null) return {nil: null};
    if (typeof x === 'boolean') return {bool: x};
    if (typeof x === 'number' || typeof x === 'bigint') return {int: x.toString()};
    if (typeof x === 'string') return {str: x};
    if (x instanceof Uint8Array) return {bin: c.hex(x)};
    if (Array.isArray(x)) return {array: x.map(tree)};
    return {map: Object.entries(x).map(([k, y]) => [tree(k), tree(y)])};
  };
  const out = {identities: [], keys: [], messages: [], signatures: [], invalid: [], accepted: [],
               addresses: []};
  const ids = {};
  for (const i of v.identities.identities) {
    const id = await c.Identity.fromSeed(c.unhex(i.seed));
    ids[i.name] = id;
    out.identities.push([i.name, c.hex(id.publicKey), id.idHex]);
  }
  for (const k of v.identities.keys) out.keys.push([k.text, c.hex(await c.keyId(k.text))]);
  for (const a of v.identities.addresses) {
    const pre = a.name === 'mutable'
      ? codec.mutableAddressPreimage(c.unhex(a.public_key), c.unhex(a.salt))
      : codec.immutableAddressPreimage(c.unhex(a.data));
    out.addresses.push([a.name, c.hex(pre), c.hex(await c.sha256(pre))]);
  }
  const d = v.identities.distance;
  out.xor = c.hex(c.xor(c.unhex(d.a), c.unhex(d.b)));
  for (const m of v.messages.messages) {
    const bytes = c.unhex(m.hex);
    const msg = codec.decode(bytes);
    out.messages.push({name: m.name, type: msg.type, tree: tree(mp.unpack(bytes)),
                       reencoded: c.hex(codec.encode(msg)), version: msg.version || null});
  }
  for (const sv of v.signatures.signatures) {
    const f = sv.fields;
    let payload;
    if (sv.name === 'record') {
      payload = codec.recordPayload(c.unhex(f.key), BigInt(f.ts), c.unhex(f.data));
    } else if (sv.name.startsWith('provider')) {
      payload = codec.providerPayload(c.unhex(f.topic), BigInt(f.ts), Number(f.port),
                                      f.leave === true || f.leave === 'true', c.unhex(f.meta));
    } else if (sv.name === 'mutable_record') {
      payload = codec.mutablePayload(c.unhex(f.key), c.unhex(f.salt), BigInt(f.seq), BigInt(f.ts),
                                     c.unhex(f.data));
    } else if (sv.name === 'hello') {
      payload = codec.helloPayload(c.unhex(f.receiver), f.cid);
    } else {
      payload = c.concat(c.utf8(c.DOMAIN_SIGNALING), c.unhex(f.nonce));
    }
    const signer = ids[sv.signer];
    out.signatures.push({name: sv.name, payload: c.hex(payload),
                         sig: c.hex(await signer.sign(payload)),
                         valid: await c.verify(signer.publicKey, c.unhex(sv.sig), payload)});
  }
  const refused = (h) => {
    try { codec.decode(c.unhex(h)); return false; }
    catch (e) { return e instanceof codec.DecodeError; }
  };
  for (const x of v.invalid.invalid) out.invalid.push([x.name, refused(x.hex)]);
  for (const x of v.invalid.accepted) {
    out.accepted.push([x.name, codec.decode(c.unhex(x.hex)).version]);
  }
  return out;
})
"""


async def test_js_matches_the_protocol_test_vectors(lib_page: Page) -> None:
    """Identities, DHT keys, owned-record addresses, every message (all 26 types) byte for byte
    (and its decoded tree), every signature payload and signature (mutable records included),
    every refusal and every tolerated HELLO."""
    v = vector_files()
    out = await lib_page.evaluate(f"{JS_CHECK}({json.dumps(v)})")
    assert out["identities"] == [
        [i["name"], i["public_key"], i["node_id"]] for i in v["identities"]["identities"]
    ]
    assert out["keys"] == [[k["text"], k["key"]] for k in v["identities"]["keys"]]
    assert out["xor"] == v["identities"]["distance"]["xor"]
    assert out["addresses"] == [
        [a["name"], a["preimage"], a["key"]] for a in v["identities"]["addresses"]
    ]
    expected = v["messages"]["messages"]
    assert [m["name"] for m in out["messages"]] == [m["name"] for m in expected]
    for got, want in zip(out["messages"], expected, strict=True):
        assert got["type"] == want["type"], want["name"]
        assert got["tree"] == want["value"], want["name"]
        assert got["reencoded"] == want["hex"], want["name"]
    assert out["messages"][0]["version"] == v["messages"]["protocol_version"]
    for got, want in zip(out["signatures"], v["signatures"]["signatures"], strict=True):
        assert got["payload"] == want["payload"], want["name"]
        assert got["sig"] == want["sig"], want["name"]
        assert got["valid"] is True, want["name"]
    assert out["invalid"] == [[x["name"], True] for x in v["invalid"]["invalid"]]
    assert out["accepted"] == [[x["name"], x["version"]] for x in v["invalid"]["accepted"]]


async def test_js_encodes_what_python_decodes(lib_page: Page) -> None:
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
    store_hex, hello_hex = await lib_page.evaluate(f"{expr}('{SEED_A.hex()}')")
    store = codec.decode(bytes.fromhex(store_hex))
    assert isinstance(store, Store)
    assert store.rid == (1 << 64) - 1
    a = Identity.from_seed(SEED_A)
    assert store.record == sign_record(a, key_id("js-key"), b"from js", 1_700_000_000_999)
    hello = codec.decode(bytes.fromhex(hello_hex))
    assert isinstance(hello, Hello)
    assert hello.version == (1, 0)
    assert hello.sig == a.sign(hello_payload(a.node_id, "abc"))


def mutations(seed: int, per_message: int) -> list[str]:
    """Damaged copies of every vector message: flipped bytes, truncations, insertions."""
    rng = random.Random(seed)
    out = []
    for m in vector_files()["messages"]["messages"]:
        data = bytes.fromhex(m["hex"])
        for _ in range(per_message):
            b = bytearray(data)
            match rng.randrange(3):
                case 0:
                    i = rng.randrange(len(b))
                    b[i] = rng.randrange(256)
                case 1:
                    b = b[: rng.randrange(len(b))]
                case _:
                    b.insert(rng.randrange(len(b) + 1), rng.randrange(256))
            out.append(bytes(b).hex())
    return out


async def test_js_and_python_agree_on_damaged_messages(lib_page: Page) -> None:
    """Accept/refuse decisions match on random damage, and JS throws nothing but DecodeError."""
    seed = int(os.environ.get("DHT_TEST_SEED", random.randrange(1 << 32)))
    print(f"seed {seed}")
    damaged = mutations(seed, 400)
    expr = """(async (items) => {
      const codec = await import('/lib/codec.js');
      const c = await import('/lib/crypto.js');
      return items.map((h) => {
        try { return c.hex(codec.encode(codec.decode(c.unhex(h)))); }
        catch (e) { return e instanceof codec.DecodeError ? null : `${e.name}: ${e.message}`; }
      });
    })"""
    results = await lib_page.evaluate(f"{expr}({json.dumps(damaged)})")
    for h, js in zip(damaged, results, strict=True):
        try:
            py: str | None = codec.encode(codec.decode(bytes.fromhex(h))).hex()
        except codec.DecodeError:
            py = None
        assert js == py, f"seed {seed}: {h}: JS {js!r}, Python {py!r}"
