"""Generate the peer-protocol test vectors (docs/protocol.md, "Test vectors").

Run ``python -m tests.vectors.make_vectors`` from the repository root.

Everything is derived from fixed Ed25519 seeds and fixed field values, and Ed25519 signatures are
deterministic, so the output never changes unless the protocol does; ``tests/unit/test_vectors.py``
regenerates it and compares with the committed files. Values are written in a tagged JSON form that
loses nothing (64-bit integers as decimal strings): ``{"bin": hex}``, ``{"str": text}``,
``{"int": "decimal"}``, ``{"bool": b}``, ``{"nil": null}``, ``{"array": [...]}``,
``{"map": [[key, value], ...]}``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import msgpack

from node import codec
from node import messages as wire
from node.connections import SIGNAL_PAYLOAD_VERSION
from node.hello import hello_payload
from node.identity import DOMAIN_SIGNALING, Identity
from node.ids import NodeId
from node.messages import PROTOCOL_VERSION
from node.records import (
    DOMAIN_ADDRESS,
    DOMAIN_IMMUTABLE,
    _mutable_payload,
    _provider_payload,
    _record_payload,
    immutable_record,
    sign_mutable,
    sign_provider,
    sign_record,
)

HERE = Path(__file__).resolve().parent
FILES = ("identities.json", "messages.json", "signatures.json", "invalid.json")

SEED_A = bytes(range(32))
SEED_B = bytes(range(32, 64))
TS_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
BIG_RID = 0xFEDCBA9876543210  # above 2**53: a JavaScript Number cannot hold it
SMALL_RID = 7
CID = "0123456789abcdef"
NONCE = bytes([0xA5]) * 32
SALT = b"profile"
SEQ = 3
SDP = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


def tag(v: Any) -> Any:
    """The tagged JSON form of an unpacked msgpack value."""
    if v is None:
        return {"nil": None}
    if isinstance(v, bool):
        return {"bool": v}
    if isinstance(v, int):
        return {"int": str(v)}
    if isinstance(v, bytes):
        return {"bin": v.hex()}
    if isinstance(v, str):
        return {"str": v}
    if isinstance(v, list):
        return {"array": [tag(x) for x in v]}
    if isinstance(v, dict):
        return {"map": [[tag(k), tag(x)] for k, x in v.items()]}
    raise TypeError(f"no tagged form for {type(v).__name__}")


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def key_of(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def build() -> dict[str, Any]:
    """The content of every vector file, by file name."""
    a, b = Identity.from_seed(SEED_A), Identity.from_seed(SEED_B)
    key, topic = key_of("hello"), key_of("chat")
    record = sign_record(a, key, b"world", TS_MS)
    provider = sign_provider(a, topic, TS_MS, 8080, b'{"name":"a"}')
    leave = sign_provider(a, topic, TS_MS + 1, 0, b"", leave=True)
    mutable = sign_mutable(a, SALT, SEQ, TS_MS, b"v3")
    immutable = immutable_record(b"forever")
    signal_payload = msgpack.packb(
        {"v": SIGNAL_PAYLOAD_VERSION, "t": "offer", "cid": CID, "sdp": SDP}, use_bin_type=True
    )
    hello = wire.Hello(
        a.public_key, b.node_id, CID, a.sign(hello_payload(b.node_id, CID)), PROTOCOL_VERSION
    )
    msgs: list[tuple[str, wire.Message]] = [
        ("hello", hello),
        ("ping", wire.Ping(BIG_RID)),
        ("pong", wire.Pong(BIG_RID)),
        ("find_node", wire.FindNode(SMALL_RID, b.node_id)),
        ("nodes", wire.Nodes(SMALL_RID, (a.node_id, b.node_id))),
        ("nodes_empty", wire.Nodes(0, ())),
        ("find_value", wire.FindValue(BIG_RID, key)),
        ("value", wire.Value(BIG_RID, record, (b.node_id,))),
        ("store", wire.Store(300, record, False)),
        ("store_cached", wire.Store(70000, record, True)),
        ("store_ack", wire.StoreAck(300, True, "stored")),
        ("store_ack_refused", wire.StoreAck(70000, False, "bad signature")),
        ("has_value", wire.HasValue(2**32, key, TS_MS, a.node_id)),
        ("has_value_ack", wire.HasValueAck(2**32, True)),
        ("signal", wire.Signal(BIG_RID, a.node_id, b.node_id, 8, signal_payload)),
        ("announce", wire.Announce(SMALL_RID, provider)),
        ("announce_ack", wire.AnnounceAck(SMALL_RID, True, "stored")),
        ("get_peers", wire.GetPeers(SMALL_RID, topic)),
        ("peers", wire.Peers(SMALL_RID, (provider, leave), (b.node_id,))),
        ("find_node_store", wire.FindNodeStore(BIG_RID, NodeId(key), record)),
        ("nodes_ack", wire.NodesAck(BIG_RID, True, "stored", (b.node_id,))),
        ("nodes_ack_not_closest", wire.NodesAck(SMALL_RID, False, wire.NOT_CLOSEST, ())),
        ("bye", wire.Bye()),
        ("put_mutable", wire.Put(BIG_RID, mutable, SEQ - 1, False)),
        ("put_immutable", wire.Put(SMALL_RID, immutable, None, True)),
        ("put_ack", wire.PutAck(BIG_RID, True, "stored", SEQ)),
        ("put_ack_refused", wire.PutAck(SMALL_RID, False, "unsupported", 0)),
        ("record_mutable", wire.RecordValue(BIG_RID, mutable, (b.node_id,))),
        ("record_immutable", wire.RecordValue(SMALL_RID, immutable, ())),
        ("refused", wire.Refused(SMALL_RID, "rate_limited")),
        ("listen", wire.Listen(BIG_RID, key, 60)),
        ("listen_ack", wire.ListenAck(BIG_RID, True, 60)),
        ("listen_ack_refused", wire.ListenAck(SMALL_RID, False, 0)),
        ("notify", wire.Notify(record)),
    ]
    messages = []
    for name, m in msgs:
        data = codec.encode(m)
        messages.append(
            {"name": name, "type": int(m.type), "value": tag(unpack(data)), "hex": data.hex()}
        )
    identities = {
        "description": "Ed25519 seeds, raw public keys and node ids (SHA-256 of the public key); "
        "DHT keys of UTF-8 strings (SHA-256)",
        "identities": [
            {
                "name": name,
                "seed": seed.hex(),
                "public_key": ident.public_key.hex(),
                "node_id": ident.node_id.hex(),
            }
            for name, seed, ident in (("a", SEED_A, a), ("b", SEED_B, b))
        ],
        "keys": [{"text": t, "key": key_of(t).hex()} for t in ("hello", "chat", "", "héllo")],
        "addresses": [
            {
                "name": "mutable",
                "public_key": a.public_key.hex(),
                "salt": SALT.hex(),
                "preimage": (DOMAIN_ADDRESS + a.public_key + SALT).hex(),
                "key": mutable.key.hex(),
            },
            {
                "name": "immutable",
                "data": b"forever".hex(),
                "preimage": (DOMAIN_IMMUTABLE + b"forever").hex(),
                "key": immutable.key.hex(),
            },
        ],
        "distance": {
            "a": a.node_id.hex(),
            "b": b.node_id.hex(),
            "xor": bytes(x ^ y for x, y in zip(a.node_id, b.node_id, strict=True)).hex(),
        },
    }
    signatures = {
        "description": "payload = the exact bytes signed (domain string with its NUL included); "
        "sig = Ed25519(seed of signer, payload)",
        "signatures": [
            {
                "name": "record",
                "signer": "a",
                "fields": {"key": key.hex(), "ts": str(TS_MS), "data": b"world".hex()},
                "payload": _record_payload(key, TS_MS, b"world").hex(),
                "sig": record.sig.hex(),
            },
            {
                "name": "provider",
                "signer": "a",
                "fields": {
                    "topic": topic.hex(),
                    "ts": str(TS_MS),
                    "port": "8080",
                    "leave": False,
                    "meta": provider.meta.hex(),
                },
                "payload": _provider_payload(topic, TS_MS, 8080, False, provider.meta).hex(),
                "sig": provider.sig.hex(),
            },
            {
                "name": "provider_leave",
                "signer": "a",
                "fields": {
                    "topic": topic.hex(),
                    "ts": str(TS_MS + 1),
                    "port": "0",
                    "leave": True,
                    "meta": "",
                },
                "payload": _provider_payload(topic, TS_MS + 1, 0, True, b"").hex(),
                "sig": leave.sig.hex(),
            },
            {
                "name": "mutable_record",
                "signer": "a",
                "fields": {
                    "key": mutable.key.hex(),
                    "salt": SALT.hex(),
                    "seq": str(SEQ),
                    "ts": str(TS_MS),
                    "data": b"v3".hex(),
                },
                "payload": _mutable_payload(mutable.key, SALT, SEQ, TS_MS, b"v3").hex(),
                "sig": mutable.sig.hex(),
            },
            {
                "name": "hello",
                "signer": "a",
                "fields": {"receiver": b.node_id.hex(), "cid": CID},
                "payload": hello_payload(b.node_id, CID).hex(),
                "sig": hello.sig.hex(),
            },
            {
                "name": "signaling_register",
                "signer": "a",
                "fields": {"nonce": NONCE.hex()},
                "payload": (DOMAIN_SIGNALING + NONCE).hex(),
                "sig": a.sign(DOMAIN_SIGNALING + NONCE).hex(),
            },
        ],
    }

    def pk(obj: Any) -> str:
        return str(msgpack.packb(obj, use_bin_type=True).hex())

    pub, sig, rid = a.public_key, hello.sig, SMALL_RID
    invalid = {
        "description": "messages a decoder must reject (the whole message is dropped)",
        "invalid": [
            {"name": "unknown_type", "hex": pk([99, rid])},
            {"name": "not_an_array", "hex": pk({"t": 1})},
            {"name": "empty_array", "hex": pk([])},
            {"name": "ping_missing_rid", "hex": pk([1])},
            {"name": "ping_extra_field", "hex": pk([1, rid, 0])},
            {"name": "ping_negative_rid", "hex": pk([1, -1])},
            {"name": "ping_rid_is_str", "hex": pk([1, "7"])},
            {"name": "find_node_target_is_str", "hex": pk([3, rid, b.node_id.hex()])},
            {"name": "find_node_target_31_bytes", "hex": pk([3, rid, b.node_id[:31]])},
            {"name": "store_ack_reason_is_bin", "hex": pk([8, rid, True, b"stored"])},
            {"name": "store_cached_is_int", "hex": pk([7, rid, [key, b"", 1, pub, sig], 0])},
            {"name": "record_4_fields", "hex": pk([7, rid, [key, b"", 1, pub], False])},
            {"name": "signal_hops_65", "hex": pk([11, rid, a.node_id, b.node_id, 65, b""])},
            {"name": "hello_without_version", "hex": pk([0, pub, b.node_id, CID, sig])},
            {"name": "hello_version_is_str", "hex": pk([0, pub, b.node_id, CID, sig, "1.0"])},
            {"name": "hello_cid_is_bin", "hex": pk([0, pub, b.node_id, CID.encode(), sig, [1, 0]])},
            {
                "name": "provider_port_70000",
                "hex": pk([12, rid, [topic, 1, 70000, False, b"", pub, sig]]),
            },
            {"name": "bye_with_a_field", "hex": pk([20, rid])},
            {"name": "nodes_ack_ok_is_int", "hex": pk([17, rid, [], 1, "stored"])},
            {
                "name": "put_open_record_layout",
                "hex": pk([24, rid, [key, b"", 1, pub, sig], None, False]),
            },
            {
                "name": "put_kind_3",
                "hex": pk([24, rid, [3, key, b"", 0, 0, b"", b"", b""], None, False]),
            },
            {
                "name": "put_cas_is_str",
                "hex": pk([24, rid, [2, key, b"", 0, 0, b"", b"", b""], "1", False]),
            },
            {
                "name": "put_salt_65_bytes",
                "hex": pk([24, rid, [1, key, b"", 1, 1, bytes(65), pub, sig], None, False]),
            },
            {"name": "listen_ttl_3601", "hex": pk([30, rid, key, 3601])},
            {"name": "refused_reason_is_bin", "hex": pk([28, rid, b"rate_limited"])},
            {"name": "notify_with_rid", "hex": pk([32, rid, [key, b"", 1, pub, sig]])},
            {"name": "type_21_reserved", "hex": pk([21, rid])},
            {"name": "truncated", "hex": codec.encode(wire.Ping(BIG_RID))[:-1].hex()},
        ],
        "accepted": [
            {
                "name": "hello_from_a_later_minor_version_with_an_extra_field",
                "hex": pk([0, pub, b.node_id, CID, sig, [1, 9], "reserved"]),
                "version": [1, 9],
            },
            {
                "name": "hello_of_major_2_decodes_and_is_then_refused",
                "hex": pk([0, pub, b.node_id, CID, sig, [2, 0]]),
                "version": [2, 0],
            },
        ],
    }
    return {
        "identities.json": identities,
        "messages.json": {
            "description": "one of each message; hex = the encoding with the shortest msgpack "
            "forms; value = its decoded tree",
            "protocol_version": list(PROTOCOL_VERSION),
            "messages": messages,
        },
        "signatures.json": signatures,
        "invalid.json": invalid,
    }


def render(content: Any) -> str:
    return json.dumps(content, indent=1, ensure_ascii=False) + "\n"


def main() -> None:
    for name, content in build().items():
        (HERE / name).write_text(render(content), encoding="utf-8")
        print(f"wrote {HERE / name}")


if __name__ == "__main__":
    main()
