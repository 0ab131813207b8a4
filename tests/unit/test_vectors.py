"""The committed test vectors (tests/vectors/*.json) are what the code produces and accepts.

The JavaScript peer checks the same files (web/); both sides therefore agree byte for byte.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from typing import Any

import msgpack
import pytest

from node import codec
from node.identity import Identity, verify
from node.ids import node_id_from_public_key
from node.messages import PROTOCOL_VERSION, Hello, MsgType, RecordValue
from node.records import RecordKind, validate_owned, validate_provider, validate_record
from tests.vectors import make_vectors as mv


def load(name: str) -> Any:
    return json.loads((mv.HERE / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", mv.FILES)
def test_the_committed_files_are_what_the_generator_makes(name: str) -> None:
    assert (mv.HERE / name).read_text(encoding="utf-8") == mv.render(mv.build()[name]), (
        "regenerate with: python -m tests.vectors.make_vectors (and tell the JS side)"
    )


def test_every_message_type_has_a_vector() -> None:
    types = {m["type"] for m in load("messages.json")["messages"]}
    assert types == {int(t) for t in MsgType}
    assert load("messages.json")["protocol_version"] == list(PROTOCOL_VERSION)


@pytest.mark.parametrize("vector", load("messages.json")["messages"], ids=lambda v: v["name"])
def test_each_message_decodes_reencodes_and_matches_its_tree(vector: dict[str, Any]) -> None:
    data = bytes.fromhex(vector["hex"])
    msg = codec.decode(data)
    assert int(msg.type) == vector["type"]
    assert codec.encode(msg) == data
    assert mv.tag(mv.unpack(data)) == vector["value"]


def test_signatures_verify_and_match_the_records_in_the_messages() -> None:
    idents = {i["name"]: i for i in load("identities.json")["identities"]}
    for i in idents.values():
        ident = Identity.from_seed(bytes.fromhex(i["seed"]))
        assert ident.public_key.hex() == i["public_key"]
        assert node_id_from_public_key(ident.public_key).hex() == i["node_id"]
    for s in load("signatures.json")["signatures"]:
        pub = bytes.fromhex(idents[s["signer"]]["public_key"])
        payload, sig = bytes.fromhex(s["payload"]), bytes.fromhex(s["sig"])
        assert verify(pub, sig, payload), s["name"]
        assert not verify(pub, sig, payload + b"\x00"), s["name"]
        assert b"\x00" in payload[: payload.index(b"/v1") + 4], "domain string ends with NUL"
    by_name = {
        m["name"]: codec.decode(bytes.fromhex(m["hex"])) for m in load("messages.json")["messages"]
    }
    now_ms = mv.TS_MS
    value, announce, hello = by_name["value"], by_name["announce"], by_name["hello"]
    assert validate_record(value.record, now_ms) is None  # type: ignore[union-attr]
    assert validate_provider(announce.provider, now_ms) is None  # type: ignore[union-attr]
    sigs = {s["name"]: s["sig"] for s in load("signatures.json")["signatures"]}
    assert value.record.sig.hex() == sigs["record"]  # type: ignore[union-attr]
    assert isinstance(hello, Hello)
    assert hello.sig.hex() == sigs["hello"]


def test_owned_records_validate_and_match_their_addresses() -> None:
    by_name = {
        m["name"]: codec.decode(bytes.fromhex(m["hex"])) for m in load("messages.json")["messages"]
    }
    sigs = {s["name"]: s for s in load("signatures.json")["signatures"]}
    addresses = {x["name"]: x for x in load("identities.json")["addresses"]}
    for name, kind in (("mutable", RecordKind.MUTABLE), ("immutable", RecordKind.IMMUTABLE)):
        msg = by_name[f"record_{name}"]
        assert isinstance(msg, RecordValue)
        rec = msg.record
        assert rec.kind is kind
        assert validate_owned(rec, mv.TS_MS, 32768, 300_000) is None, name
        assert rec.key.hex() == addresses[name]["key"]
        assert hashlib.sha256(bytes.fromhex(addresses[name]["preimage"])).digest() == rec.key
    mutable = by_name["record_mutable"].record  # type: ignore[union-attr]
    assert mutable.sig.hex() == sigs["mutable_record"]["sig"]
    assert validate_owned(replace(mutable, seq=mutable.seq + 1), mv.TS_MS, 32768, 300_000) == (
        "bad signature"
    )


@pytest.mark.parametrize("vector", load("invalid.json")["invalid"], ids=lambda v: v["name"])
def test_invalid_messages_are_rejected(vector: dict[str, Any]) -> None:
    with pytest.raises(codec.DecodeError):
        codec.decode(bytes.fromhex(vector["hex"]))


@pytest.mark.parametrize("vector", load("invalid.json")["accepted"], ids=lambda v: v["name"])
def test_hellos_of_other_versions_decode(vector: dict[str, Any]) -> None:
    msg = codec.decode(bytes.fromhex(vector["hex"]))
    assert isinstance(msg, Hello)
    assert list(msg.version) == vector["version"]


def test_ids_are_32_byte_bins_and_rids_use_all_64_bits() -> None:
    ping = next(m for m in load("messages.json")["messages"] if m["name"] == "ping")
    assert msgpack.unpackb(bytes.fromhex(ping["hex"]))[1] == mv.BIG_RID > 2**53
