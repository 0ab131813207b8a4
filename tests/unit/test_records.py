"""Signed records and provider records: validation and the one record order (DESIGN §4)."""

from __future__ import annotations

import dataclasses
import hashlib
import random
from functools import cmp_to_key

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.config import MAX_FUTURE_SKEW_MS, MAX_PROVIDER_META_BYTES, MAX_RECORD_DATA_BYTES
from node.identity import Identity
from node.ids import key_id
from node.records import (
    ProviderRecord,
    Record,
    better,
    record_order,
    sign_provider,
    sign_record,
    validate_provider,
    validate_record,
)

NOW_MS = 1_700_000_000_000
ALICE = Identity.generate(random.Random(1))
MALLORY = Identity.generate(random.Random(2))
KEY = key_id("k")
TOPIC = key_id("topic")


def test_sign_validate_round_trip() -> None:
    r = sign_record(ALICE, KEY, b"hello", NOW_MS)
    assert r.pub == ALICE.node_id
    assert validate_record(r, NOW_MS) is None


@pytest.mark.parametrize(
    "change",
    [
        {"data": b"hellO"},
        {"ts": NOW_MS - 1},
        {"key": key_id("other")},
        {"sig": bytes(64)},
    ],
)
def test_tampered_record_is_bad_signature(change: dict[str, object]) -> None:
    r = dataclasses.replace(sign_record(ALICE, KEY, b"hello", NOW_MS), **change)  # type: ignore[arg-type]
    assert validate_record(r, NOW_MS) == "bad signature"


def test_record_with_another_nodes_key_is_rejected() -> None:
    """Claiming Alice's record with Mallory's key: pub follows the key, the signature fails."""
    r = sign_record(ALICE, KEY, b"hello", NOW_MS)
    forged = dataclasses.replace(r, public_key=MALLORY.public_key)
    assert forged.pub == MALLORY.node_id
    assert validate_record(forged, NOW_MS) == "bad signature"


def test_future_timestamp_limit() -> None:
    ok = sign_record(ALICE, KEY, b"x", NOW_MS + MAX_FUTURE_SKEW_MS)
    assert validate_record(ok, NOW_MS) is None
    far = sign_record(ALICE, KEY, b"x", NOW_MS + MAX_FUTURE_SKEW_MS + 1)
    assert validate_record(far, NOW_MS) == "timestamp too far in the future"


def test_oversize_data() -> None:
    r = sign_record(ALICE, KEY, b"x" * (MAX_RECORD_DATA_BYTES + 1), NOW_MS)
    assert (reason := validate_record(r, NOW_MS)) is not None
    assert reason.startswith("data too large")
    small = sign_record(ALICE, KEY, b"x" * 11, NOW_MS)
    assert validate_record(small, NOW_MS, max_data_bytes=10) is not None
    assert validate_record(small, NOW_MS, max_data_bytes=11) is None


def test_malformed_fields() -> None:
    r = sign_record(ALICE, KEY, b"x", NOW_MS)
    assert validate_record(dataclasses.replace(r, key=b"short"), NOW_MS) == "malformed key"
    assert validate_record(dataclasses.replace(r, sig=b"s"), NOW_MS) == (
        "malformed signature fields"
    )
    assert validate_record(dataclasses.replace(r, ts=-1), NOW_MS) == "malformed timestamp"


def _fake(ts: int, pk: bytes) -> Record:
    return Record(KEY, b"", ts, pk, bytes(64))


records = st.builds(_fake, st.integers(0, 10), st.binary(min_size=32, max_size=32))


def _expected_cmp(a: Record, b: Record) -> int:
    if a.ts != b.ts:
        return -1 if a.ts < b.ts else 1
    pa, pb = int.from_bytes(a.pub, "big"), int.from_bytes(b.pub, "big")
    return (pa > pb) - (pa < pb)


@settings(deadline=None, max_examples=200)
@given(st.lists(records, min_size=1, max_size=12))
def test_record_order_is_total_and_matches_rule(rs: list[Record]) -> None:
    by_key = sorted(rs, key=record_order)
    by_rule = sorted(rs, key=cmp_to_key(_expected_cmp))
    assert [record_order(r) for r in by_key] == [record_order(r) for r in by_rule]
    for a in rs:
        for b in rs:
            # exactly one of <, ==, > (totality and antisymmetry)
            lt, eq, gt = (
                record_order(a) < record_order(b),
                record_order(a) == record_order(b),
                (record_order(a) > record_order(b)),
            )
            assert lt + eq + gt == 1
            assert (_expected_cmp(a, b) > 0) == better(a, b)
            if eq:
                assert a.ts == b.ts
                assert a.pub == b.pub
    best = max(rs, key=record_order)
    assert all(not better(r, best) for r in rs)
    assert better(rs[0], None)


@settings(deadline=None, max_examples=100)
@given(records, records, records)
def test_record_order_is_transitive(a: Record, b: Record, c: Record) -> None:
    if record_order(a) <= record_order(b) <= record_order(c):
        assert record_order(a) <= record_order(c)


def test_ties_broken_by_higher_pub() -> None:
    a = sign_record(ALICE, KEY, b"a", NOW_MS)
    m = sign_record(MALLORY, KEY, b"m", NOW_MS)
    hi, lo = (a, m) if a.pub > m.pub else (m, a)
    assert better(hi, lo)
    assert not better(lo, hi)
    newer = sign_record(ALICE if lo is a else MALLORY, KEY, b"n", NOW_MS + 1)
    assert better(newer, hi)


def test_pub_is_sha256_of_public_key() -> None:
    r = sign_record(ALICE, KEY, b"", NOW_MS)
    assert r.pub == hashlib.sha256(ALICE.public_key).digest()


# -- provider records ------------------------------------------------------------------------------


def test_provider_round_trip_and_meta() -> None:
    p = sign_provider(ALICE, TOPIC, NOW_MS, 8080, b'{"v": 1}')
    assert p.node == ALICE.node_id
    assert validate_provider(p, NOW_MS) is None
    assert p.meta_value() == {"v": 1}
    leave = sign_provider(ALICE, TOPIC, NOW_MS, 8080, b"", leave=True)
    assert validate_provider(leave, NOW_MS) is None
    assert leave.meta_value() is None


@pytest.mark.parametrize(
    "change",
    [{"port": 8081}, {"leave": True}, {"ts": NOW_MS + 1}, {"meta": b'{"v": 2}'}, {"topic": KEY}],
)
def test_tampered_provider_is_bad_signature(change: dict[str, object]) -> None:
    p = sign_provider(ALICE, TOPIC, NOW_MS, 8080, b'{"v": 1}')
    t = dataclasses.replace(p, **change)  # type: ignore[arg-type]
    assert validate_provider(t, NOW_MS) == "bad signature"


def test_forged_provider_for_another_node() -> None:
    p = sign_provider(ALICE, TOPIC, NOW_MS, 8080, b"")
    forged = dataclasses.replace(p, public_key=MALLORY.public_key)
    assert forged.node == MALLORY.node_id
    assert validate_provider(forged, NOW_MS) == "bad signature"
    # Mallory signing a record with Alice's public key cannot produce a valid signature either.
    sig = MALLORY.sign(b"anything")
    assert validate_provider(dataclasses.replace(p, sig=sig), NOW_MS) == "bad signature"


def test_provider_bad_meta_and_limits() -> None:
    bad_json = sign_provider(ALICE, TOPIC, NOW_MS, 1, b"{not json")
    assert validate_provider(bad_json, NOW_MS) == "metadata is not JSON"
    assert bad_json.meta_value() is None
    bad_utf8 = sign_provider(ALICE, TOPIC, NOW_MS, 1, b"\xff\xfe")
    assert validate_provider(bad_utf8, NOW_MS) == "metadata is not JSON"
    big = sign_provider(ALICE, TOPIC, NOW_MS, 1, b'"' + b"a" * MAX_PROVIDER_META_BYTES + b'"')
    assert (reason := validate_provider(big, NOW_MS)) is not None
    assert reason.startswith("metadata too large")
    ok = sign_provider(ALICE, TOPIC, NOW_MS, 65535, b"")
    assert validate_provider(ok, NOW_MS) is None
    for port in (-1, 65536):
        p = ProviderRecord(TOPIC, NOW_MS, port, False, b"", ALICE.public_key, bytes(64))
        assert validate_provider(p, NOW_MS) == "port out of range"
    far = sign_provider(ALICE, TOPIC, NOW_MS + MAX_FUTURE_SKEW_MS + 1, 1, b"")
    assert validate_provider(far, NOW_MS) == "timestamp too far in the future"
    short = dataclasses.replace(ok, topic=b"x")
    assert validate_provider(short, NOW_MS) == "malformed topic"


def test_signature_cache_never_accepts_a_tampered_copy_of_a_verified_record() -> None:
    import dataclasses

    from node.identity import Identity
    from node.records import sign_record, validate_record

    ident = Identity.generate()
    good = sign_record(ident, b"\x01" * 32, b"honest", 1_000)
    assert validate_record(good, 2_000) is None
    assert validate_record(good, 2_000) is None  # now answered from the cache
    for tampered in (
        dataclasses.replace(good, data=b"forged"),
        dataclasses.replace(good, ts=good.ts + 1),
        dataclasses.replace(good, key=b"\x02" * 32),
        dataclasses.replace(good, public_key=Identity.generate().public_key),
    ):
        assert validate_record(tampered, 2_000) == "bad signature"
    # The cache does not bypass the other checks either.
    assert validate_record(good, good.ts - 10 * 60 * 1000) == "timestamp too far in the future"
