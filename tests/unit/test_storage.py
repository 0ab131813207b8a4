"""Record and provider storage: TTLs, ordering, expiry (``now`` passed in)."""

from __future__ import annotations

import random

from node.identity import Identity
from node.ids import key_id
from node.records import sign_provider, sign_record
from node.storage import ProviderStore, PutResult, RecordStore

A = Identity.generate(random.Random(11))
B = Identity.generate(random.Random(12))
KEY = key_id("k")
TOPIC = key_id("t")
TS = 1_700_000_000_000


def store() -> RecordStore:
    return RecordStore(record_ttl_s=100.0, cache_ttl_s=10.0, max_records=3)


def test_ttl_and_expired_never_returned() -> None:
    s = store()
    r = sign_record(A, KEY, b"v", TS)
    assert s.put(r, 0.0) is PutResult.STORED
    assert s.get(KEY, 99.9) == r
    assert s.get(KEY, 100.0) is None  # invisible at the deadline, before expire() runs
    assert s.entry(KEY, 100.0) is None
    assert s.entries(100.0) == []
    assert s.primary_entries(100.0) == []
    assert not s.has_same_or_better(KEY, r.ts, r.pub, 100.0)
    assert s.next_expiry() == 100.0


def test_cached_ttl_and_cached_never_downgrades_primary() -> None:
    s = store()
    r = sign_record(A, KEY, b"v", TS)
    assert s.put(r, 0.0, cached=True) is PutResult.STORED
    e = s.entry(KEY, 0.0)
    assert e is not None
    assert e.cached
    assert e.expires_at == 10.0
    assert s.put(r, 5.0) is PutResult.REFRESHED  # a primary store upgrades the cached copy
    e = s.entry(KEY, 5.0)
    assert e is not None
    assert not e.cached
    assert e.expires_at == 105.0
    assert s.put(r, 6.0, cached=True) is PutResult.IGNORED
    e = s.entry(KEY, 6.0)
    assert e is not None
    assert not e.cached
    assert e.expires_at == 105.0


def test_identical_restore_refreshes_and_acks() -> None:
    s = store()
    r = sign_record(A, KEY, b"v", TS)
    s.put(r, 0.0)
    res = s.put(r, 50.0)
    assert res is PutResult.REFRESHED
    assert res.ok
    assert s.get(KEY, 149.0) == r
    assert s.expire(120.0) == []  # the old deadline is gone from the heap
    assert s.get(KEY, 149.0) == r


def test_stale_refused_and_better_replaces() -> None:
    s = store()
    old = sign_record(A, KEY, b"old", TS)
    new = sign_record(A, KEY, b"new", TS + 1)
    assert s.put(new, 0.0) is PutResult.STORED
    res = s.put(old, 1.0)
    assert res is PutResult.STALE
    assert not res.ok
    assert s.get(KEY, 1.0) == new
    newer = sign_record(B, KEY, b"newer", TS + 2)
    assert s.put(newer, 2.0) is PutResult.STORED
    assert s.get(KEY, 2.0) == newer
    assert s.has_same_or_better(KEY, new.ts, new.pub, 2.0)
    assert not s.has_same_or_better(KEY, TS + 3, new.pub, 2.0)
    # after expiry, an older record may be stored again
    assert s.put(old, 500.0) is PutResult.STORED


def test_newer_cached_record_replaces_older_primary_as_primary() -> None:
    s = store()
    s.put(sign_record(A, KEY, b"old", TS), 0.0)
    new = sign_record(A, KEY, b"new", TS + 1)
    assert s.put(new, 1.0, cached=True) is PutResult.STORED
    e = s.entry(KEY, 1.0)
    assert e is not None
    assert e.record == new
    assert not e.cached
    assert e.expires_at == 101.0


def test_expire_reports_each_once() -> None:
    s = store()
    r1 = sign_record(A, key_id("1"), b"", TS)
    r2 = sign_record(A, key_id("2"), b"", TS)
    s.put(r1, 0.0)
    s.put(r2, 0.0, cached=True)
    s.put(r1, 20.0)  # refresh: new deadline 120
    assert [e.record for e in s.expire(10.0)] == [r2]
    assert s.expire(10.0) == []
    assert s.expire(119.0) == []
    assert [e.record for e in s.expire(200.0)] == [r1]
    assert s.expire(300.0) == []
    assert len(s) == 0
    assert s.next_expiry() is None


def test_full_store() -> None:
    s = store()
    for i in range(3):
        assert s.put(sign_record(A, key_id(str(i)), b"", TS), 0.0) is PutResult.STORED
    assert s.put(sign_record(A, key_id("x"), b"", TS), 0.0) is PutResult.FULL
    # an existing key can still be updated
    assert s.put(sign_record(A, key_id("0"), b"n", TS + 1), 0.0) is PutResult.STORED


# -- providers -------------------------------------------------------------------------------------


def test_provider_store_ttl_refresh_and_stale() -> None:
    ps = ProviderStore(ttl_s=20.0, max_per_topic=5)
    p = sign_provider(A, TOPIC, TS, 1, b"")
    assert ps.put(p, 0.0) is PutResult.STORED
    assert ps.put(p, 10.0) is PutResult.REFRESHED
    assert ps.get(TOPIC, 29.0) == [p]
    assert ps.get(TOPIC, 30.0) == []
    newer = sign_provider(A, TOPIC, TS + 5, 2, b"")
    assert ps.put(newer, 11.0) is PutResult.STORED
    assert ps.put(p, 12.0) is PutResult.STALE
    assert ps.get(TOPIC, 12.0) == [newer]
    assert ps.expire(100.0) == [newer]
    assert ps.topics() == []
    assert ps.count() == 0


def test_provider_cap_evicts_oldest() -> None:
    ps = ProviderStore(ttl_s=100.0, max_per_topic=3)
    ids = [Identity.generate(random.Random(100 + i)) for i in range(4)]
    provs = [sign_provider(ids[i], TOPIC, TS + [5, 1, 7, 9][i], 1, b"") for i in range(4)]
    for p in provs:
        assert ps.put(p, 0.0) is PutResult.STORED
    kept = ps.get(TOPIC, 0.0)
    assert len(kept) == 3
    assert provs[1] not in kept  # ts TS+1 was the oldest announcement
    assert set(kept) == {provs[0], provs[2], provs[3]}


def test_tombstone_blocks_older_announce() -> None:
    ps = ProviderStore(ttl_s=100.0, max_per_topic=5)
    ann = sign_provider(A, TOPIC, TS, 1, b"")
    leave = sign_provider(A, TOPIC, TS + 10, 1, b"", leave=True)
    ps.put(ann, 0.0)
    assert ps.put(leave, 1.0) is PutResult.STORED
    assert ps.get(TOPIC, 1.0) == []
    assert ps.get(TOPIC, 1.0, include_leaves=True) == [leave]
    assert ps.put(ann, 2.0) is PutResult.STALE  # replayed older announcement
    same_ts = sign_provider(A, TOPIC, TS + 10, 1, b"")
    assert ps.put(same_ts, 3.0) is PutResult.STALE  # a tie: the leave wins
    again = sign_provider(A, TOPIC, TS + 20, 1, b"")
    assert ps.put(again, 4.0) is PutResult.STORED  # a newer re-join is fine
    assert ps.get(TOPIC, 4.0) == [again]
    # after the tombstone expires, nothing blocks
    ps2 = ProviderStore(ttl_s=10.0, max_per_topic=5)
    ps2.put(leave, 0.0)
    assert ps2.put(ann, 10.0) is PutResult.STORED
