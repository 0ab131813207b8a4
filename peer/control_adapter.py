"""The node's control facade: ``control.api.NodeAPI`` on top of the runtime's typed operations.

This is the one place where node results become control-plane result maps and node errors
become ``CommandError`` codes (docs/interfaces.md has the maps):

- ``TooLarge`` (a value, provider metadata), ``MessageTooLarge``  →  ``too_large``
- any other ``LocalError`` (``BadArgument``, ``IdError`` for a bad node id)  →  ``bad_args``
- ``OperationError(Failure.X)``  →  ``FAILURE_CODES[X]`` (``timeout``, ``unreachable``, ...)

A failed store (``StoreResult.ok`` false) and a missing key are results of the runtime, not
errors; they become ``quorum_not_met`` / ``not_found`` here, with the numbers in ``details``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final, TypeVar

from control.api import NodeAPI, Result
from control.errors import CommandError, ErrorCode
from node.errors import BadArgument, Failure, LocalError, OperationError
from node.events import GetResult, Notice, StoreResult
from node.ids import NodeId, id_hex, key_id, parse_id
from node.records import Record, RecordKind
from node.runtime import NodeRuntime, TooLarge
from node.transport.base import MessageTooLarge

FAILURE_CODES: Final[Mapping[Failure, ErrorCode]] = {
    Failure.NOT_FOUND: ErrorCode.NOT_FOUND,
    Failure.TIMEOUT: ErrorCode.TIMEOUT,
    Failure.UNREACHABLE: ErrorCode.UNREACHABLE,
    Failure.QUORUM_NOT_MET: ErrorCode.QUORUM_NOT_MET,
    Failure.REFUSED: ErrorCode.BAD_ARGS,
    Failure.UNAVAILABLE: ErrorCode.NODE_UNAVAILABLE,
}

F = TypeVar("F", bound=Callable[..., Awaitable[Result]])


@contextmanager
def command_errors() -> Iterator[None]:
    """Translate node errors raised inside the block to ``CommandError`` (table above)."""
    try:
        yield
    except (TooLarge, MessageTooLarge) as exc:
        raise CommandError(ErrorCode.TOO_LARGE, str(exc)) from exc
    except LocalError as exc:  # BadArgument, IdError (a bad node id), ...
        raise CommandError(ErrorCode.BAD_ARGS, str(exc)) from exc
    except OperationError as exc:
        raise CommandError(FAILURE_CODES[exc.code], exc.message) from exc


def _translated(method: F) -> F:
    @functools.wraps(method)
    async def wrapper(*args: Any, **kwargs: Any) -> Result:
        with command_errors():
            return await method(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _node(node_id: str) -> NodeId:
    return parse_id(node_id)  # IdError → bad_args


def _address(address: str) -> bytes:
    return bytes(parse_id(address))


# The refusal reasons that decide a failed write's error code, most telling first.
_WRITE_FAILURES: Final = (
    (("cas_mismatch", "seq_not_newer"), ErrorCode.CONFLICT),
    (("quota",), ErrorCode.QUOTA),
    (("rate_limited",), ErrorCode.RATE_LIMITED),
)


def _record_fields(r: Record) -> dict[str, Any]:
    out: dict[str, Any] = {"key_id": r.key.hex(), "address": r.key.hex(), "kind": r.kind.label}
    if r.kind is RecordKind.MUTABLE:
        out.update(seq=r.seq, name=r.salt)
    return out


def _write_result(named: dict[str, Any], r: StoreResult) -> Result:
    """A store/put result map, or the ``CommandError`` of a failed write."""
    result: dict[str, Any] = {**named, "key_id": r.key.hex()}
    result.update(_record_fields(r.record))
    result.update(acks=r.acks, attempts=r.attempts, quorum=r.quorum)
    result["duration_ms"] = _ms(r.duration_s)
    if r.ok:
        return result
    reasons = sorted(set(r.reasons))
    code = ErrorCode.QUORUM_NOT_MET
    for prefixes, failure in _WRITE_FAILURES:
        if any(x.startswith(prefixes) for x in reasons):
            code = failure
            break
    raise CommandError(
        code,
        f"{r.acks} of {r.attempts} replicas acknowledged, quorum is {r.quorum}"
        + (f" ({', '.join(reasons)})" if reasons else ""),
        {**result, "reasons": reasons},
    )


def _get_result(named: dict[str, Any], r: GetResult) -> Result:
    if r.record is None:
        what = named.get("key", r.key.hex())
        raise CommandError(
            ErrorCode.NOT_FOUND,
            f"key not found: {what}",
            {**named, "hops": r.hops, "contacted": r.contacted},
        )
    rec = r.record
    out = {**named, **_record_fields(rec), "value": rec.data}
    out["publisher"] = rec.pub.hex() if rec.kind is not RecordKind.IMMUTABLE else None
    out.update(ts=rec.ts, hops=r.hops, duration_ms=_ms(r.duration_s))
    return out


def _meta_bytes(meta: Any) -> bytes:
    if meta is None:
        return b""
    try:
        return json.dumps(meta, separators=(",", ":"), sort_keys=True).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise BadArgument(f"metadata is not JSON: {exc}") from None


class ControlAdapter(NodeAPI):
    """``NodeAPI`` for one ``NodeRuntime`` (method names and keyword arguments are the commands)."""

    def __init__(self, runtime: NodeRuntime) -> None:
        self.runtime = runtime

    def event(self, notice: Notice) -> tuple[str, dict[str, Any]]:
        """A runtime notice as the control plane publishes it: ``(topic, payload)``."""
        return notice.TOPIC, notice.payload(self.runtime)

    # -- views -----------------------------------------------------------------------------------

    async def id(self) -> Result:
        rt = self.runtime
        return {"id": id_hex(rt.node_id), "public_key": rt.identity.public_key.hex()}

    async def peers(self) -> Result:
        return {
            "peers": [
                {
                    "id": p.id.hex(),
                    "rtt_ms": _ms(p.rtt_s) if p.rtt_s is not None else None,
                    "connected_for_s": round(p.connected_for_s, 3),
                    "in_routing_table": p.in_routing_table,
                    "path": p.path,
                }
                for p in self.runtime.peers()
            ]
        }

    async def rt(self) -> Result:
        snap = self.runtime.routing()
        return {"size": snap.size, "buckets_used": snap.buckets_used}

    async def dump(self) -> Result:
        snap = self.runtime.routing()
        return {
            "id": id_hex(self.runtime.node_id),
            "buckets": [
                {
                    "index": b.index,
                    "contacts": [
                        {"id": c.id.hex(), "last_seen_s_ago": round(c.last_seen_s_ago, 3)}
                        for c in b.contacts
                    ],
                    "replacements": [r.hex() for r in b.replacements],
                }
                for b in snap.buckets
            ],
        }

    async def stats(self) -> Result:
        return self.event(self.runtime.stats())[1]

    async def topics(self) -> Result:
        return {
            "topics": [
                {
                    "topic": t.name,
                    "topic_id": t.topic_id.hex(),
                    "announcing": t.announcing,
                    "port": t.port,
                    "peers_known": t.peers_known,
                }
                for t in self.runtime.topics()
            ]
        }

    # -- connections -----------------------------------------------------------------------------

    @_translated
    async def ping(self, *, node_id: str) -> Result:
        r = await self.runtime.ping(_node(node_id))
        return {"id": r.peer.hex(), "rtt_ms": _ms(r.rtt_s), "total_ms": _ms(r.total_s)}

    @_translated
    async def find(self, *, node_id: str) -> Result:
        target = _node(node_id)
        r = await self.runtime.find_node(target)
        return {
            "target": target.hex(),
            "closest": [c.hex() for c in r.closest],
            "hops": r.hops,
            "duration_ms": _ms(r.duration_s),
        }

    @_translated
    async def connect(self, *, node_id: str) -> Result:
        peer = _node(node_id)
        took_s = await self.runtime.connect(peer)
        return {"id": peer.hex(), "connected": True, "duration_ms": _ms(took_s)}

    @_translated
    async def disconnect(self, *, node_id: str) -> Result:
        peer = _node(node_id)
        return {"id": peer.hex(), "disconnected": self.runtime.disconnect(peer)}

    # -- records ---------------------------------------------------------------------------------

    @_translated
    async def store(self, *, key: str, value: bytes) -> Result:
        return _write_result({"key": key}, await self.runtime.store_value(key, value))

    @_translated
    async def store_at(self, *, address: str, value: bytes) -> Result:
        return _write_result({}, await self.runtime.store_at(_address(address), value))

    @_translated
    async def put_mutable(
        self, *, name: bytes, value: bytes, seq: int | None = None, cas: int | None = None
    ) -> Result:
        return _write_result({}, await self.runtime.put_mutable(name, value, seq, cas))

    @_translated
    async def put_immutable(self, *, value: bytes) -> Result:
        return _write_result({}, await self.runtime.put_immutable(value))

    @_translated
    async def get(self, *, key: str) -> Result:
        return _get_result({"key": key}, await self.runtime.get_value(key))

    @_translated
    async def get_address(self, *, address: str) -> Result:
        return _get_result({}, await self.runtime.get_address(_address(address)))

    # -- topics ----------------------------------------------------------------------------------

    @_translated
    async def announce(
        self, *, topic: str, port: int | None = None, meta: dict[str, Any] | None = None
    ) -> Result:
        r = await self.runtime.announce(topic, port, _meta_bytes(meta))
        return {
            "topic": topic,
            "topic_id": r.topic.hex(),
            "acks": r.acks,
            "attempts": r.attempts,
            "quorum": r.quorum,
            "ok": r.ok,
        }

    @_translated
    async def unannounce(self, *, topic: str) -> Result:
        left = await self.runtime.unannounce(topic)
        return {"topic": topic, "topic_id": key_id(topic).hex(), "left": left}

    @_translated
    async def lookup(self, *, topic: str) -> Result:
        r = await self.runtime.lookup_topic(topic)
        return {
            "topic": topic,
            "topic_id": r.topic.hex(),
            "peers": [
                {"id": p.node.hex(), "port": p.port or None, "meta": p.meta_value(), "ts": p.ts}
                for p in sorted(r.providers, key=lambda p: p.node)
            ],
            "hops": r.hops,
            "duration_ms": _ms(r.duration_s),
        }

    @_translated
    async def join(
        self, *, topic: str, port: int | None = None, meta: dict[str, Any] | None = None
    ) -> Result:
        self.runtime.join_topic(topic, port, _meta_bytes(meta))
        return {"topic": topic, "topic_id": key_id(topic).hex(), "announcing": port is not None}

    async def listen(self, *, key: str) -> Result:
        return {"key": key, "key_id": key_id(key).hex(), "new": self.runtime.listen(key)}

    async def unlisten(self, *, key: str) -> Result:
        return {
            "key": key,
            "key_id": key_id(key).hex(),
            "was_listening": self.runtime.unlisten(key),
        }

    async def shutdown(self) -> Result:
        self.runtime.request_stop()
        return {"shutting_down": True}
