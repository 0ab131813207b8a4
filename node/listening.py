"""The listen feature wired to the node: holder and listener sides of ``node.listen``.

``Listening`` is driven by ``DhtProtocol``: ``on_listen`` answers a LISTEN, ``stored`` pushes a
record stored here to its key's listeners (and reports it when we listen to that key
ourselves), ``on_notify`` takes a pushed record, ``listen``/``unlisten`` are the commands, and
``handle_timer`` refreshes registrations (a FIND_NODE lookup of the key with
``Purpose.LISTEN``, then LISTEN to the closest it found: ``lookup_done``).
"""

from __future__ import annotations

from typing import Protocol

from node.config import Config
from node.events import Event, FindNodeResult, RecordUpdated
from node.ids import NodeId
from node.listen import ListenTable, Subscriptions
from node.messages import Listen, ListenAck, Message, Notify, Request
from node.operations import OpKind, Purpose
from node.records import Record, validate_record

PRUNE_INTERVAL_S = 30.0


class ListenHost(Protocol):
    def lookup(self, kind: OpKind, target: bytes, now: float, purpose: Purpose) -> int: ...

    def request(self, peer: NodeId, msg: Request, now: float) -> None: ...

    def send_message(self, peer: NodeId, msg: Message) -> None: ...

    def new_rid(self) -> int: ...

    def emit(self, event: Event) -> None: ...


class Listening:
    def __init__(self, own_id: NodeId, config: Config, host: ListenHost, now: float) -> None:
        self.id, self.config, self.host = own_id, config, host
        self.table = ListenTable(config.max_listen_ttl_s)
        self.subs = Subscriptions(config.listen_ttl_s)
        self._next_prune = now + PRUNE_INTERVAL_S
        self.pushed = 0

    # -- holder side -------------------------------------------------------------------------

    def on_listen(self, peer: NodeId, msg: Listen, now: float) -> ListenAck:
        granted = self.table.register(peer, msg.key, msg.ttl_s, now)
        return ListenAck(msg.rid, granted > 0 or msg.ttl_s == 0, granted)

    def stored(self, record: Record, source: NodeId | None, now: float) -> None:
        """``record`` was stored here (better than what we held)."""
        for peer in self.table.listeners(record.key, now):
            if peer != self.id:
                self.host.send_message(peer, Notify(record))
                self.pushed += 1
        self.report(record, source or self.id)

    # -- listener side -----------------------------------------------------------------------

    def listen(self, key: bytes, now: float, last: Record | None) -> bool:
        if not self.subs.add(key, now, last):
            return False
        self.handle_timer(now)
        return True

    def unlisten(self, key: bytes, now: float) -> bool:
        sub = self.subs.remove(key)
        if sub is None:
            return False
        for peer in sub.holders:
            self.host.request(peer, Listen(self.host.new_rid(), key, 0), now)
        return True

    def on_notify(self, peer: NodeId, record: Record, wall_ms: int) -> bool:
        """A pushed version: False (dropped) unless it is a valid record of a key we listen to."""
        if record.key not in self.subs.subs:
            return False
        cfg = self.config
        reason = validate_record(
            record, wall_ms, max_data_bytes=cfg.max_record_data_bytes,
            max_future_skew_ms=cfg.max_future_skew_ms,
        )  # fmt: skip
        if reason is not None:
            return False
        self.report(record, peer)
        return True

    def report(self, record: Record, source: NodeId) -> None:
        if self.subs.offer(record):
            self.host.emit(RecordUpdated(record, source))

    def lookup_done(self, result: FindNodeResult, now: float) -> None:
        sub = self.subs.subs.get(result.target)
        if sub is None:
            return
        sub.holders = tuple(p for p in result.closest if p != self.id)
        ttl = int(self.config.listen_ttl_s)
        for peer in sub.holders:
            self.host.request(peer, Listen(self.host.new_rid(), sub.key, ttl), now)

    # -- time --------------------------------------------------------------------------------

    def next_deadline(self) -> float:
        return min(self.subs.next_deadline(), self._next_prune)

    def handle_timer(self, now: float) -> None:
        for key in self.subs.due(now):
            self.host.lookup(OpKind.FIND_NODE, key, now, Purpose.LISTEN)
        if now >= self._next_prune:
            self._next_prune = now + PRUNE_INTERVAL_S
            self.table.expire(now)
