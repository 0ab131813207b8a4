"""Owned records, the open-namespace write rule, quotas and the request rate limit (sans-IO)."""

from __future__ import annotations

from node.identity import Identity
from node.ids import key_id
from node.owned import finalize, immutable_draft, mutable_draft, open_draft
from node.quotas import RECORD_OVERHEAD_BYTES, RateLimiter, StoreLimits, Verdict
from node.records import (
    Record,
    RecordKind,
    immutable_record,
    mutable_address,
    sign_mutable,
    sign_provider,
    sign_record,
    validate_owned,
    validate_record,
)
from node.storage import ProviderStore, PutResult, RecordStore

A, B = Identity.generate(), Identity.generate()
NOW_MS = 1_700_000_000_000
SKEW = 5 * 60 * 1000


def store(limits: StoreLimits | None = None) -> RecordStore:
    if limits is None:
        return RecordStore(100.0, 10.0, 1000)
    return RecordStore(100.0, 10.0, 1000, limits)


def test_mutable_record_validates_only_at_its_owners_address() -> None:
    r = sign_mutable(A, b"name", 1, NOW_MS, b"v")
    assert r.key == mutable_address(A.public_key, b"name")
    assert validate_record(r, NOW_MS) is None
    mine = sign_mutable(B, b"name", 1, NOW_MS, b"v")
    stolen = Record(r.key, b"v", NOW_MS, mine.public_key, mine.sig, RecordKind.MUTABLE, 1, b"name")
    assert validate_owned(stolen, NOW_MS, 1 << 15, SKEW) == "not_owner"
    tampered = Record(r.key, b"w", r.ts, r.public_key, r.sig, RecordKind.MUTABLE, 1, b"name")
    assert validate_record(tampered, NOW_MS) == "bad signature"


def test_immutable_record_is_checked_by_hash() -> None:
    r = immutable_record(b"data")
    assert validate_record(r, NOW_MS) is None
    forged = Record(r.key, b"other", 0, b"", b"", RecordKind.IMMUTABLE)
    assert validate_record(forged, NOW_MS) == "hash_mismatch"


def test_holder_rules_seq_cas_and_owned() -> None:
    s = store()
    v1 = sign_mutable(A, b"n", 1, NOW_MS, b"1")
    v2 = sign_mutable(A, b"n", 2, NOW_MS + 1, b"2")
    other2 = sign_mutable(A, b"n", 2, NOW_MS + 2, b"x")
    assert s.put(v1, 0.0) is PutResult.STORED
    assert s.put(v2, 0.0, cas=0) is PutResult.CAS_MISMATCH
    assert s.put(v2, 0.0, cas=1) is PutResult.STORED
    assert s.put(v1, 0.0) is PutResult.SEQ_NOT_NEWER  # no rollback
    assert s.put(other2, 0.0) is PutResult.SEQ_NOT_NEWER  # equal seq, other value
    assert s.put(v2, 1.0) is PutResult.REFRESHED
    squat = sign_record(B, v2.key, b"open", NOW_MS + 10)
    assert s.put(squat, 1.0) is PutResult.OWNED
    # An owned record replaces an open one sitting at its address.
    s2 = store()
    assert s2.put(squat, 0.0) is PutResult.STORED
    assert s2.put(v1, 0.0) is PutResult.STORED
    assert s2.get(v1.key, 0.0) == v1


def test_finalize_outranks_what_the_lookup_saw() -> None:
    key = key_id("k")
    ahead = sign_record(B, key, b"rogue", NOW_MS + 240_000)
    mine = finalize(open_draft(key, b"mine"), A, ahead, NOW_MS)
    assert mine.ts == ahead.ts + 1
    assert finalize(open_draft(key, b"mine"), A, None, NOW_MS).ts == NOW_MS
    seen = sign_mutable(A, b"n", 7, NOW_MS, b"old")
    nxt = finalize(mutable_draft(A.public_key, b"n", b"new", None, 7), A, seen, NOW_MS)
    assert (nxt.seq, nxt.kind) == (8, RecordKind.MUTABLE)
    assert nxt.ts > seen.ts
    assert finalize(immutable_draft(b"x"), A, None, NOW_MS) == immutable_record(b"x")


def test_quotas_per_publisher_per_peer_and_total_are_released_on_expiry() -> None:
    cost = 1000 + RECORD_OVERHEAD_BYTES
    s = store(StoreLimits(10 * cost, 3 * cost, 100, 5 * cost, 100))
    peer_a, peer_b = B.node_id, A.node_id
    recs = [sign_record(B, key_id(f"k{i}"), b"x" * 1000, NOW_MS) for i in range(5)]
    for r in recs[:3]:
        assert s.put(r, 0.0, peer=peer_a) is PutResult.STORED
    assert s.put(recs[3], 0.0, peer=peer_a) is PutResult.QUOTA
    assert "publisher" in s.last_reason
    # Replacing one's own record does not need more room.
    newer = sign_record(B, recs[0].key, b"y" * 1000, NOW_MS + 1)
    assert s.put(newer, 0.0, peer=peer_a) is PutResult.STORED
    # Our own writes are never refused.
    assert s.put(recs[3], 0.0) is PutResult.STORED
    assert s.bytes_used == 4 * cost
    s.expire(1000.0)
    assert s.bytes_used == 0
    assert s.put(recs[4], 1000.0, peer=peer_b) is PutResult.STORED


def test_providers_per_announcer_are_capped() -> None:
    ps = ProviderStore(100.0, 10, max_per_announcer=2)
    for i in range(2):
        p = sign_provider(A, key_id(f"t{i}"), NOW_MS, 1, b"")
        assert ps.put(p, 0.0) is PutResult.STORED
    assert ps.put(sign_provider(A, key_id("t9"), NOW_MS, 1, b""), 0.0) is PutResult.QUOTA
    assert ps.put(sign_provider(B, key_id("t9"), NOW_MS, 1, b""), 0.0) is PutResult.STORED
    ps.expire(200.0)
    assert ps.put(sign_provider(A, key_id("t9"), NOW_MS, 1, b""), 200.0) is PutResult.STORED


def test_rate_limiter_allows_the_rate_then_refuses_then_drops_then_bans() -> None:
    rl = RateLimiter(10.0, 5.0)
    peer = b"p" * 32
    verdicts = [rl.check(peer, 0.0) for _ in range(12)]
    # The burst served, one refusal answered, then drops; a burst's worth of excess: the ban.
    assert verdicts == [Verdict.ALLOW] * 5 + [Verdict.REFUSE] + [Verdict.DROP] * 4 + [
        Verdict.BAN
    ] + [Verdict.DROP]
    assert rl.check(peer, 0.1) is Verdict.ALLOW  # one token back after 0.1 s
    assert rl.check(b"q" * 32, 0.1) is Verdict.ALLOW  # other peers are unaffected
    assert RateLimiter(0.0, 1.0).check(peer, 0.0) is Verdict.ALLOW  # 0 disables


def test_rate_limiter_bans_a_peer_that_keeps_flooding_but_not_one_a_little_over() -> None:
    rl = RateLimiter(100.0, 50.0)
    flooder, eager = b"f" * 32, b"e" * 32
    # 1,000 requests/s for 2 s (10x the rate): the drop bucket (50, +25/s) empties within ~0.1 s.
    verdicts = [rl.check(flooder, i / 1000) for i in range(2000)]
    bans = [i for i, v in enumerate(verdicts) if v is Verdict.BAN]
    assert bans
    assert bans[0] < 200  # banned in the first 0.2 s
    assert verdicts.count(Verdict.ALLOW) <= 50 + 100 * 2 + 1  # never more than the rate served
    # 120 requests/s for 20 s (1.2x the rate): refused and dropped now and then, never banned.
    verdicts = [rl.check(eager, i / 120) for i in range(2400)]
    assert Verdict.DROP in verdicts
    assert Verdict.BAN not in verdicts


def test_rate_limiter_counts_bytes_too() -> None:
    rl = RateLimiter(1000.0, 1000.0, bytes_per_s=100_000, bytes_burst=200_000)
    peer = b"p" * 32
    # 32 KiB requests, 100 a second (3.2 MB/s against 100 kB/s): a few served, then a ban.
    verdicts = [rl.check(peer, i / 100, 32 * 1024) for i in range(500)]
    served = verdicts.count(Verdict.ALLOW)
    assert 5 <= served <= 6 + 5 * 3  # the byte burst, then ~3 a second
    assert Verdict.BAN in verdicts
    # Small requests are not held back by the byte bucket.
    assert all(rl.check(b"q" * 32, i / 100, 100) is Verdict.ALLOW for i in range(500))
