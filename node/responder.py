"""The serving side: the answer to every request, from the routing table and the stores.

Rules:
- Every request gets exactly one response, echoing its ``rid``; none raises.
- Node lists hold the k closest contacts to the target, never the asker itself.
- A STORE or ANNOUNCE is validated (signature, size, far-future ``ts``) before it touches
  storage; a refusal carries the reason and is counted (``Reply.rejected``).
- GET_PEERS returns leave tombstones too, so lookups learn who withdrew.
"""

from __future__ import annotations

from dataclasses import dataclass

from node import messages as wire
from node.codec import MAX_PROVIDERS_PER_MESSAGE
from node.config import Config
from node.events import RecordStored
from node.ids import NodeId
from node.records import validate_provider, validate_record
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
                return Reply(wire.Value(msg.rid, rec, nodes))
            case wire.Store():
                return self._store(peer, msg, now, wall_ms)
            case wire.HasValue():
                has = self.records.has_same_or_better(msg.key, msg.ts, msg.pub, now)
                return Reply(wire.HasValueAck(msg.rid, has))
            case wire.Announce():
                reason = validate_provider(
                    msg.provider, wall_ms, max_future_skew_ms=self.config.max_future_skew_ms
                )
                if reason is not None:
                    return Reply(wire.AnnounceAck(msg.rid, False, reason), rejected=True)
                result = self.providers.put(msg.provider, now)
                return Reply(wire.AnnounceAck(msg.rid, result.ok, result.value))
            case wire.Listen():  # answered by node.listening before it gets here
                return Reply(wire.ListenAck(msg.rid, False, 0))
            case wire.GetPeers():
                provs = tuple(self.providers.get(msg.topic, now, include_leaves=True))
                provs = provs[:MAX_PROVIDERS_PER_MESSAGE]
                return Reply(wire.Peers(msg.rid, provs, self._closest(msg.topic, peer)))

    def _store(self, peer: NodeId, msg: wire.Store, now: float, wall_ms: int) -> Reply:
        reason = validate_record(
            msg.record,
            wall_ms,
            max_data_bytes=self.config.max_record_data_bytes,
            max_future_skew_ms=self.config.max_future_skew_ms,
        )
        if reason is not None:
            return Reply(wire.StoreAck(msg.rid, False, reason), rejected=True)
        result = self.records.put(msg.record, now, cached=msg.cached)
        stored = None
        if result is PutResult.STORED:
            stored = RecordStored(msg.record, msg.cached, False, peer)
        return Reply(wire.StoreAck(msg.rid, result.ok, result.value), stored)
