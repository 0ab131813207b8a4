"""Background upkeep of the routing table and the stored records: join, refresh, republish, repair.

Theory of operation: ``Maintenance`` keeps its own deadlines (``deadlines()``) and runs what is
due in ``handle_timer(now)``; it starts lookups and writes through the node (``OpHost``) with a
``Purpose`` that routes their end back here (``join_done``, ``refresh_done``).

- Join: after ``join()``'s self-lookup, every bucket farther than the closest neighbour that
  holds fewer than ``join_refresh_below`` contacts is queued for a refresh. The join refreshes
  stop early once one of them meets nobody new (a small network is already known), and one
  whose bucket filled up meanwhile is skipped. A join refresh only has to put *some* contacts
  into an empty bucket, not find the k closest to a random ID: it is a lookup of width
  ``join_refresh_width`` (4), so it contacts (and, over WebRTC, connects to) a handful of nodes
  instead of k — most of what a join cost at 100 peers. The bucket fills further as its nodes
  contact us, and the periodic refresh of a stale bucket is a full-width lookup.
- Refresh: every ``REFRESH_CHECK_S`` the buckets untouched for ``refresh_interval_s`` are
  queued; queued refreshes run one lookup at a time, ``refresh_stagger_s`` apart (no bursts).
  An empty bucket has no touch time of its own in the table, so the time its refresh started
  counts (else a hole below the deepest bucket would be refreshed every check, forever).
- Republish: the originator re-stores each of its records every ``republish_interval_s`` (which
  refreshes its expiry everywhere, its own copy included) until a better record supersedes it.
- Repair: every ``repair_interval_s`` the primary records are walked in random order, in batches
  of ``REPAIR_BATCH`` per ``REPAIR_TICK_S``: HAS_VALUE to the k closest; a holder that lacks the
  record gets a STORE; one that does not answer is replaced by the next-closest contact.
  Only a replica holder repairs: a node that knows k contacts closer to the key than itself
  (the key's bucket in its table is full) is not among the k closest — the writer's own copy,
  a holder that newer nodes have overtaken. Were it to repair, it would push the record to its
  k closest *known* nodes, which for a far node are random members of the key's half of the
  ID space; they would repair in turn, and the record would spread epidemically (about a fifth
  of a 1,000-node network within half an hour, with HAS_VALUE traffic to match). Its copy
  lives on until its TTL; republish and the real holders keep the k closest complete.
  Expired records are gone from storage, so they are never repaired or republished.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass, field

from node.config import Config
from node.events import MaintenanceRefresh, MaintenanceRepair, MaintenanceRepublish
from node.ids import ID_BITS, NodeId, bucket_index, random_id_in_bucket
from node.messages import HasValue
from node.operations import OpHost, OpKind, Purpose, record_request
from node.records import Record, better
from node.routing import RoutingTable
from node.storage import RecordStore

REPAIR_BATCH = 64  # records checked per repair tick
REPAIR_TICK_S = 1.0
REFRESH_CHECK_S = 30.0


@dataclass(slots=True)
class RepairRound:
    keys: list[bytes]
    checked: int = 0
    restored: int = 0
    outstanding: int = 0
    # Per key: the next-closest contacts, asked in turn when a closer one does not answer, so
    # each key is checked on k *live* nodes even when some of the k closest contacts died.
    spare: dict[bytes, list[NodeId]] = field(default_factory=dict)


class Maintenance:
    def __init__(
        self,
        own_id: NodeId,
        config: Config,
        rng: random.Random,
        table: RoutingTable,
        records: RecordStore,
        host: OpHost,
        now: float,
    ) -> None:
        self.id, self.config, self.rng, self.host = own_id, config, rng, host
        self.table, self.records = table, records
        self.authored: dict[bytes, tuple[Record, float]] = {}  # key → (record, next republish)
        self._next_republish = math.inf  # the earliest republish time in `authored`
        self.authored_changed: set[bytes] | None = None  # keys changed since taken (durability)
        self._refresh_queue: deque[int] = deque()
        self._join_refresh: set[int] = set()  # bucket indices queued by join, not yet started
        self._refresh_running = False
        self._refresh_table_size = 0  # routing-table size when the running refresh started
        self._refreshed_at: dict[int, float] = {}  # bucket index → when its last refresh started
        self._next_refresh_start = now
        self._next_refresh_check = now + REFRESH_CHECK_S
        self._repair: RepairRound | None = None
        self._next_repair = now + config.repair_interval_s
        self._next_repair_tick = now

    @property
    def queued_refreshes(self) -> int:
        return len(self._refresh_queue)

    # == time =====================================================================================

    def next_deadline(self) -> float:
        t = min(self._next_refresh_check, self._next_repair, self._next_republish)
        if self._refresh_queue and not self._refresh_running:
            t = min(t, self._next_refresh_start)
        if self._repair is not None:
            t = min(t, self._next_repair_tick)
        return t

    def handle_timer(self, now: float) -> None:
        if now >= self._next_refresh_check:
            self._next_refresh_check = now + REFRESH_CHECK_S
            self._queue_stale_buckets(now)
        if self._refresh_queue and not self._refresh_running and now >= self._next_refresh_start:
            self._start_refresh(now)
        if now >= self._next_repair:
            self._next_repair = now + self.config.repair_interval_s
            self._start_repair(now)
        if self._repair is not None and now >= self._next_repair_tick:
            self._repair_tick(now)
        self._republish_due(now)

    # == join and refresh =========================================================================

    def join_done(self) -> None:
        """The self-lookup filled the near buckets: now refresh every bucket farther than the
        closest neighbour (they are known only once the lookup is done)."""
        deepest = self.table.deepest_bucket()
        below = min(self.config.join_refresh_below, self.config.k)
        queued = [
            i
            for i in range(deepest)
            if i not in self._refresh_queue and self.table.bucket_count(i) < below
        ]
        self._refresh_queue.extend(queued)
        self._join_refresh.update(queued)

    def refresh_done(self, now: float) -> None:
        self._refresh_running = False
        self._next_refresh_start = now + self.config.refresh_stagger_s
        if len(self.table) <= self._refresh_table_size and self._join_refresh:
            # This refresh met nobody new: the network is small enough that we know it
            # already, and the remaining join refreshes would only repeat known answers.
            self._refresh_queue = deque(
                i for i in self._refresh_queue if i not in self._join_refresh
            )
            self._join_refresh.clear()

    def _queue_stale_buckets(self, now: float) -> None:
        stale_before = now - self.config.refresh_interval_s
        deepest = self.table.deepest_bucket()
        if deepest < 0:
            return
        queued = 0
        for i in range(min(deepest + 1, ID_BITS)):
            touched = max(self.table.bucket_last_touched(i), self._refreshed_at.get(i, -math.inf))
            if i not in self._refresh_queue and touched <= stale_before:
                self._refresh_queue.append(i)
                queued += 1
        if queued:
            self.host.emit(MaintenanceRefresh(queued))

    def _start_refresh(self, now: float) -> None:
        index = self._refresh_queue.popleft()
        joining = index in self._join_refresh
        if joining:
            self._join_refresh.discard(index)
            if self.table.bucket_full(index):
                # Filled meanwhile by nodes that contacted us: the join refresh has nothing
                # left to find there (periodic refreshes of stale buckets still run).
                self._next_refresh_start = now
                return
        target = random_id_in_bucket(self.id, index, self.rng)
        self._refreshed_at[index] = now
        self._refresh_running = True
        self._refresh_table_size = len(self.table)
        width = self.config.join_refresh_width if joining else None
        self.host.lookup(OpKind.FIND_NODE, target, now, Purpose.REFRESH, width)

    # == republish ================================================================================

    def authored_record(self, record: Record, now: float) -> None:
        """We wrote ``record``: republish it every ``republish_interval_s`` from now on."""
        republish_at = now + self.config.republish_interval_s
        if (
            self.authored_changed is not None
            and self.authored.get(record.key, (None,))[0] != record
        ):
            self.authored_changed.add(record.key)
        self.authored[record.key] = (record, republish_at)
        self._next_republish = min(self._next_republish, republish_at)

    def _republish_due(self, now: float) -> None:
        if now < self._next_republish:
            return  # (a superseded key can leave it early: then we merely look once more)
        due = [key for key, (_, at) in self.authored.items() if at <= now]
        count = 0
        for key in due:
            record, _ = self.authored[key]
            held = self.records.get(key, now)
            if held is not None and held != record and better(held, record):
                del self.authored[key]  # superseded by a newer write: stop republishing ours
                if self.authored_changed is not None:
                    self.authored_changed.add(key)
                continue
            self.host.write(record, now, Purpose.REPUBLISH)
            count += 1
        self._next_republish = min((at for _, at in self.authored.values()), default=math.inf)
        if count:
            self.host.emit(MaintenanceRepublish(count))

    # == repair ===================================================================================

    def _start_repair(self, now: float) -> None:
        if self._repair is not None:
            return
        keys = [e.record.key for e in self.records.primary_entries(now)]
        self.rng.shuffle(keys)
        self._repair = RepairRound(keys)
        self._next_repair_tick = now

    def _repair_tick(self, now: float) -> None:
        rnd = self._repair
        assert rnd is not None
        self._next_repair_tick = now + REPAIR_TICK_S
        batch, rnd.keys = rnd.keys[:REPAIR_BATCH], rnd.keys[REPAIR_BATCH:]
        for key in batch:
            entry = self.records.entry(key, now)
            if entry is None or entry.cached:
                continue
            k = self.config.k
            # The contacts closer to the key than we are are exactly those of the key's bucket
            # (they share our prefix up to the bit where the key differs, and that bit with it).
            if self.table.bucket_count(bucket_index(self.id, key)) >= k:
                continue  # k known nodes are closer: we are no replica holder
            rnd.checked += 1
            candidates = self.table.closest(key, 2 * k, exclude=self.id)
            rnd.spare[key] = candidates[k:]
            for peer in candidates[:k]:
                self._ask(rnd, peer, entry.record, now)
        self._outstanding_done(0)

    def _ask(self, rnd: RepairRound, peer: NodeId, r: Record, now: float) -> None:
        rnd.outstanding += 1
        self.host.request(peer, HasValue(self.host.new_rid(), r.key, r.ts, r.pub), now)

    def repair_failed(self, request: HasValue, now: float) -> None:
        """A replica holder did not answer: ask the next-closest contact instead."""
        rnd = self._repair
        entry = self.records.entry(request.key, now)
        if rnd is not None and entry is not None and not entry.cached:
            spare = rnd.spare.get(request.key)
            if spare:
                self._ask(rnd, spare.pop(0), entry.record, now)
        self._outstanding_done()

    def repair_answered(self, peer: NodeId, request: HasValue, has: bool, now: float) -> None:
        entry = self.records.entry(request.key, now)
        if not has and entry is not None and not entry.cached:
            # (an expired entry is gone from storage: it is never re-replicated)
            if self._repair is not None:
                self._repair.restored += 1
            self.host.request(peer, record_request(self.host.new_rid(), entry.record, False), now)
        self._outstanding_done()

    def _outstanding_done(self, answered: int = 1) -> None:
        rnd = self._repair
        if rnd is None:
            return
        rnd.outstanding -= answered
        if not rnd.keys and rnd.outstanding <= 0:
            self.host.emit(MaintenanceRepair(rnd.checked, rnd.restored))
            self._repair = None
