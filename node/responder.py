"""The serving side: the answer to every request, from the routing table and the stores.

Rules:
- Every request gets exactly one response, echoing its ``rid``; none raises.
- Node lists hold the k closest contacts to the target, never the asker itself.
- A STORE or ANNOUNCE is validated (signature, size, far-future ``ts``) before it touches
  storage; a refusal carries the reason and is counted (``Reply.rejected``).
- GET_PEERS returns leave tombstones too, so lookups learn who withdrew.
- FIND_NODE_STORE is answered like FIND_NODE and, when this node counts itself among the ``k``
  closest to the key (its table holds fewer than ``k`` contacts closer than itself), the record
  is stored exactly as a STORE would store it; otherwise the answer says ``NOT_CLOSEST``.
- PUT carries an owned record (``node.owned``) and an optional CAS; its ack reports the seq held
  afterwards. FIND_VALUE answers VALUE for an open record and RECORD for an owned one.
- Every refusal reason is counted in ``refusals`` (``quota``, ``seq_not_newer``, ...).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from node import messages as wire
from node.codec import MAX_PROVIDERS_PER_MESSAGE
from node.config import Config
from node.events import RecordStored
from node.ids import NodeId, as_int
from node.records import Record, RecordKind, validate_provider, validate_record
from node.routing import RoutingTable
from node.storage import ProviderStore, PutResult, RecordStore


@dataclass(frozen=True, slots=True)
class Reply:
    response: wire.Response
    stored: RecordStored | None = None  # a STORE that changed what we hold
    rejected: bool = False  # an invalid record or provider was refused


class Responder:
    def __init__(
        self,
        config: Config,
        table: RoutingTable,
        records: RecordStore,
        providers: ProviderStore,
    ) -> None:
        self.config, self.table = config, table
        self.records, self.providers = records, providers
        self.refusals: Counter[str] = Counter()

    def _closest(self, target: bytes, asker: NodeId) -> tuple[NodeId, ...]:
        return tuple(self.table.closest(target, self.config.k, exclude=asker))

    def answer(self, peer: NodeId, msg: wire.Request, now: float, wall_ms: int) -> Reply:
        match msg:
            case wire.Ping():
                return Reply(wire.Pong(msg.rid))
            case wire.FindNode():
                return Reply(wire.Nodes(msg.rid, self._closest(msg.target, peer)))
            case wire.FindValue():
                rec = self.records.get(msg.key, now)
                nodes = self._closest(msg.key, peer)
                if rec is None:
                    return Reply(wire.Nodes(msg.rid, nodes))
                if rec.kind is not RecordKind.OPEN:
                    return Reply(wire.RecordValue(msg.rid, rec, nodes))
                return Reply(wire.Value(msg.rid, rec, nodes))
            case wire.Store():
                ok, why, stored, bad = self._put(peer, msg.record, msg.cached, None, now, wall_ms)
                return Reply(wire.StoreAck(msg.rid, ok, why), stored, bad)
            case wire.FindNodeStore():
                nodes = self._closest(msg.target, peer)
                if msg.record.key != msg.target:
                    reply = wire.NodesAck(msg.rid, False, "record for another key", nodes)
                    return Reply(reply, rejected=True)
                if not self._among_closest(msg.target):
                    return Reply(wire.NodesAck(msg.rid, False, wire.NOT_CLOSEST, nodes))
                ok, why, stored, bad = self._put(peer, msg.record, False, None, now, wall_ms)
                return Reply(wire.NodesAck(msg.rid, ok, why, nodes), stored, bad)
            case wire.Put():
                rec = msg.record
                ok, why, stored, bad = self._put(peer, rec, msg.cached, msg.cas, now, wall_ms)
                held = self.records.get(rec.key, now)
                seq = held.seq if held is not None else 0
                return Reply(wire.PutAck(msg.rid, ok, why, seq), stored, bad)
            case wire.HasValue():
                has = self.records.has_same_or_better(msg.key, msg.ts, msg.pub, now)
                return Reply(wire.HasValueAck(msg.rid, has))
            case wire.Announce():
                reason = validate_provider(
                    msg.provider, wall_ms, max_future_skew_ms=self.config.max_future_skew_ms
                )
                if reason is not None:
                    self.refusals["invalid"] += 1
                    return Reply(wire.AnnounceAck(msg.rid, False, reason), rejected=True)
                result = self.providers.put(msg.provider, now)
                if not result.ok:
                    self.refusals[result.value] += 1
                return Reply(wire.AnnounceAck(msg.rid, result.ok, result.value))
            case wire.Listen():  # answered by node.listening before it gets here
                return Reply(wire.ListenAck(msg.rid, False, 0))
            case wire.GetPeers():
                provs = tuple(self.providers.get(msg.topic, now, include_leaves=True))
                provs = provs[:MAX_PROVIDERS_PER_MESSAGE]
                return Reply(wire.Peers(msg.rid, provs, self._closest(msg.topic, peer)))

    def _among_closest(self, key: bytes) -> bool:
        """Fewer than ``k`` contacts of ours are closer to ``key`` than we are."""
        k = self.config.k
        closest = self.table.closest(key, k)
        if len(closest) < k:
            return True
        t = as_int(key)
        return as_int(self.table.own_id) ^ t < as_int(closest[-1]) ^ t

    def _put(
        self, peer: NodeId, record: Record, cached: bool, cas: int | None, now: float, wall_ms: int
    ) -> tuple[bool, str, RecordStored | None, bool]:
        """Validate and store one record: (ok, reason, what changed, invalid)."""
        reason = validate_record(
            record,
            wall_ms,
            max_data_bytes=self.config.max_record_data_bytes,
            max_future_skew_ms=self.config.max_future_skew_ms,
        )
        if reason is None and cas is not None and record.kind is not RecordKind.MUTABLE:
            reason = "CAS applies to mutable records only"
        if reason is not None:
            self.refusals["invalid"] += 1
            return False, reason, None, True
        result = self.records.put(record, now, cached=cached, peer=peer, cas=cas)
        if not result.ok:
            self.refusals[result.value] += 1
            detail = self.records.last_reason if result is PutResult.QUOTA else result.value
            return False, detail, None, False
        stored = None
        if result is PutResult.STORED:
            stored = RecordStored(record, cached, False, peer)
        return True, result.value, stored, False
