"""What maintenance takes on, and how often: periodic bucket refresh runs every bucket up to the
deepest once per ``refresh_interval_s`` (empty ones included, no more often than the others);
repair runs only on a replica holder — a node among the k closest to the key by its own table."""

from __future__ import annotations

import random

import pytest

from node.config import Config
from node.events import Event
from node.identity import Identity
from node.ids import NodeId, bucket_index, random_id_in_bucket
from node.maintenance import Maintenance
from node.messages import HasValue, Request
from node.operations import OpKind, Purpose
from node.records import Record, sign_record
from node.routing import RoutingTable
from node.storage import RecordStore


class Host:
    """Records the lookups maintenance starts; they touch their bucket and end at once, as
    ``DhtProtocol``'s lookups do (``touch_bucket``, then ``refresh_done``)."""

    def __init__(self, table: RoutingTable) -> None:
        self.table = table
        self.lookups: list[tuple[bytes, Purpose]] = []
        self.widths: list[int | None] = []
        self.finds: random.Random | None = None  # set: every lookup meets a new node near it
        self.requests: list[tuple[NodeId, Request]] = []
        self.m: Maintenance | None = None

    def wall_ms(self, now: float) -> int:
        return int(now * 1000)

    def lookup(
        self, kind: OpKind, target: bytes, now: float, purpose: Purpose, width: int | None = None
    ) -> int:
        self.lookups.append((target, purpose))
        self.widths.append(width)
        if self.finds is not None:
            index = bucket_index(self.table.own_id, target)
            self.table.update(random_id_in_bucket(self.table.own_id, index, self.finds), now)
        self.table.touch_bucket(target, now)
        assert self.m is not None
        self.m.refresh_done(now)
        return len(self.lookups)

    def write(self, payload: Record, now: float, purpose: Purpose) -> int:
        return 0

    def request(self, peer: NodeId, msg: Request, now: float) -> None:
        self.requests.append((peer, msg))

    def new_rid(self) -> int:
        return 0

    def emit(self, event: Event) -> None:
        pass


def test_an_empty_bucket_is_refreshed_once_per_interval_not_at_every_check() -> None:
    rng = random.Random(7)
    own = NodeId(rng.randbytes(32))
    config = Config(refresh_interval_s=900.0)
    table = RoutingTable(own, config.k)
    for index in (0, 2):  # bucket 1 is a hole below the deepest bucket
        table.update(random_id_in_bucket(own, index, rng), 0.0)
    host = Host(table)
    m = host.m = Maintenance(own, config, rng, table, RecordStore(3600.0, 60.0, 100), host, 0.0)
    now = 0.0
    while now < 3 * 3600.0:
        now = max(now, m.next_deadline())
        m.handle_timer(now)
    per_bucket = [0, 0, 0]
    for target, purpose in host.lookups:
        assert purpose is Purpose.REFRESH
        per_bucket[bucket_index(own, target)] += 1
    # 3 h / 15 min: about 11 rounds for each bucket (the first after 15 min), the hole too
    for count in per_bucket:
        assert 10 <= count <= 12, per_bucket


def test_a_joins_bucket_refreshes_are_narrow_and_later_refreshes_full_width() -> None:
    rng = random.Random(8)
    own = NodeId(rng.randbytes(32))
    config = Config(refresh_interval_s=900.0, join_refresh_width=4)
    table = RoutingTable(own, config.k)
    for _ in range(3):  # the self-lookup found neighbours in bucket 5 only: 0-4 are empty
        table.update(random_id_in_bucket(own, 5, rng), 0.0)
    host = Host(table)
    host.finds = random.Random(9)
    m = host.m = Maintenance(own, config, rng, table, RecordStore(3600.0, 60.0, 100), host, 0.0)
    m.join_done()
    now = 0.0
    while now < 1000.0:
        now = max(now, m.next_deadline())
        m.handle_timer(now)
    join_refreshes = [w for (t, _), w in zip(host.lookups, host.widths, strict=True)][:5]
    assert join_refreshes == [4] * 5  # one per empty bucket, each reaching 4 peers, not k
    assert host.widths[5:]  # the periodic round after 15 min …
    assert set(host.widths[5:]) == {None}  # … runs full-width lookups


@pytest.mark.parametrize("closer", [0, 5, 19, 20, 25])
def test_only_a_replica_holder_repairs(closer: int) -> None:
    """A primary copy of a key whose bucket in our table holds ``closer`` contacts (all of them
    closer to the key than we are): with fewer than k we are among the k closest we know and
    check our k closest contacts; with k or more (the writer's own far copy, a holder newer nodes
    overtook) we leave the key alone instead of spreading it to k far nodes."""
    rng = random.Random(3)
    identity = Identity.generate(rng)
    own = identity.node_id
    config = Config(repair_interval_s=600.0)
    k = config.k
    key = random_id_in_bucket(own, 3, rng)
    table = RoutingTable(own, k)
    for _ in range(closer):
        table.update(random_id_in_bucket(own, 3, rng), 0.0)  # shares the key's prefix: closer
    for index in (4, 5, 6):  # farther from the key than we are
        for _ in range(k):
            table.update(random_id_in_bucket(own, index, rng), 0.0)
    records = RecordStore(3600.0, 60.0, 100)
    records.put(sign_record(identity, key, b"v", 1), 0.0)
    host = Host(table)
    m = host.m = Maintenance(own, config, rng, table, records, host, 0.0)
    now = 0.0
    while now < 700.0:
        now = max(now, m.next_deadline())
        m.handle_timer(now)
    asked = [peer for peer, msg in host.requests if isinstance(msg, HasValue)]
    if table.bucket_count(3) < k:
        assert sorted(asked) == sorted(table.closest(key, k))
    else:
        assert asked == []
