"""The control plane of a browser peer: ``NodeAPI`` answered by the page's ``window.dhtPeer``.

A browser peer (web/, docs/browser.md) runs in a headless Chromium tab; its page exposes the
agreed contract ``window.dhtPeer`` with async methods ``ready() → {id}``, ``store(key, value) →
{ok, stored, attempts, quorum}``, ``get(key) → {found, value, publisher, ts}``,
``announce(topic)``, ``lookup(topic) → {peers: [hex]}``, ``peers() → [hex]``, ``rt() → [hex]``,
``stats() → {…}``, ``disconnect(hex)`` and ``drainEvents() → [{topic, …}]``; keys, values and
topics are UTF-8 strings. This module turns those into the same result maps and error codes as
a Python node's ``ControlAdapter`` (docs/interfaces.md), so the supervisor, ``dhtctl`` and the
``Cluster`` API drive both kinds alike. Commands the page does not offer (``ping``, ``find``,
``connect``, ``join``, ...) answer ``unknown_command`` with a reason.

``PageCall`` is the seam: the real one evaluates on the page through CDP
(``supervisor.browser_peer``); tests pass a fake.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from control.api import NodeAPI, Result
from control.errors import CommandError, ErrorCode
from node.ids import ID_BYTES, bucket_index, key_id, parse_id


class PageCall(Protocol):
    def __call__(self, method: str, *args: Any) -> Awaitable[Any]:
        """The JSON value of ``await window.dhtPeer.<method>(...args)`` in the page."""
        ...


def page_expression(method: str, *args: Any) -> str:
    """The JavaScript expression for one call (arguments as JSON literals, never spliced text)."""
    if not method.isidentifier():
        raise ValueError(f"not a method name: {method!r}")
    rendered = ", ".join(json.dumps(a) for a in args)
    return f"window.dhtPeer.{method}({rendered})"


def _text(value: bytes, what: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandError(
            ErrorCode.BAD_ARGS, f"a browser peer takes UTF-8 text as the {what}"
        ) from None


def _ids(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise CommandError(ErrorCode.INTERNAL, f"the page returned a bad {what} list")
    return value


def _unsupported(cmd: str) -> CommandError:
    return CommandError(ErrorCode.UNKNOWN_COMMAND, f"a browser peer does not offer {cmd!r}")


def _refused(cmd: str) -> Callable[..., Coroutine[Any, Any, Result]]:
    """A command of ``NodeAPI`` that a browser peer does not offer: it always answers
    ``unknown_command``."""

    async def refuse(self: object, **_: Any) -> Result:
        raise _unsupported(cmd)

    refuse.__name__ = cmd
    return refuse


def _replicas(r: dict[str, Any]) -> Result:
    """The replica counts of the page's answer to a write, as a Python node reports them."""
    return {"acks": r.get("stored"), "attempts": r.get("attempts"), "quorum": r.get("quorum")}


def _ms_since(start: float) -> float:
    return round((time.monotonic() - start) * 1000, 3)


class BrowserNodeAPI(NodeAPI):
    """``NodeAPI`` for one browser peer, through ``call`` (see the module docstring)."""

    kind = "browser"

    def __init__(
        self, call: PageCall, node_id: str, on_shutdown: Callable[[], None] | None = None
    ) -> None:
        self.call = call
        self.node_id = node_id
        self.on_shutdown = on_shutdown

    # -- views -----------------------------------------------------------------------------------

    async def id(self) -> Result:
        return {"id": self.node_id, "public_key": None, "kind": self.kind}

    async def peers(self) -> Result:
        connected = _ids(await self.call("peers"), "peers")
        table = set(_ids(await self.call("rt"), "routing table"))
        return {
            "peers": [
                {"id": p, "rtt_ms": None, "connected_for_s": None, "in_routing_table": p in table}
                for p in connected
            ]
        }

    async def _buckets(self) -> dict[int, list[str]]:
        own = parse_id(self.node_id)
        buckets: dict[int, list[str]] = {}
        for contact in _ids(await self.call("rt"), "routing table"):
            try:
                other = parse_id(contact)
            except ValueError:
                continue
            if other != own:
                buckets.setdefault(bucket_index(own, other), []).append(contact)
        return buckets

    async def rt(self) -> Result:
        buckets = await self._buckets()
        return {"size": sum(len(b) for b in buckets.values()), "buckets_used": len(buckets)}

    async def dump(self) -> Result:
        buckets = await self._buckets()
        return {
            "id": self.node_id,
            "buckets": [
                {
                    "index": i,
                    "contacts": [{"id": c, "last_seen_s_ago": None} for c in sorted(buckets[i])],
                    "replacements": [],
                }
                for i in sorted(buckets)
            ],
        }

    async def stats(self) -> Result:
        stats = await self.call("stats")
        if not isinstance(stats, dict):
            raise CommandError(ErrorCode.INTERNAL, "the page returned bad stats")
        return {**stats, "id": self.node_id, "kind": self.kind}

    topics = _refused("topics")

    # -- connections -----------------------------------------------------------------------------

    ping = _refused("ping")
    find = _refused("find")
    connect = _refused("connect")

    async def disconnect(self, *, node_id: str) -> Result:
        try:
            peer = parse_id(node_id).hex()
        except ValueError as exc:
            raise CommandError(ErrorCode.BAD_ARGS, str(exc)) from exc
        connected = peer in _ids(await self.call("peers"), "peers")
        await self.call("disconnect", peer)
        return {"id": peer, "disconnected": connected}

    # -- records ---------------------------------------------------------------------------------

    async def store(self, *, key: str, value: bytes) -> Result:
        start = time.monotonic()
        r = await self.call("store", key, _text(value, "value"))
        if not isinstance(r, dict):
            raise CommandError(ErrorCode.INTERNAL, "the page returned a bad store result")
        result = {
            "key": key,
            "key_id": key_id(key).hex(),
            **_replicas(r),
            "duration_ms": _ms_since(start),
        }
        if not r.get("ok"):
            raise CommandError(
                ErrorCode.QUORUM_NOT_MET,
                f"{r.get('stored')} of {r.get('attempts')} replicas acknowledged, "
                f"quorum is {r.get('quorum')}",
                result,
            )
        return result

    async def get(self, *, key: str) -> Result:
        start = time.monotonic()
        r = await self.call("get", key)
        if not isinstance(r, dict):
            raise CommandError(ErrorCode.INTERNAL, "the page returned a bad get result")
        if not r.get("found"):
            raise CommandError(ErrorCode.NOT_FOUND, f"key not found: {key}", {"key": key})
        value = r.get("value")
        if not isinstance(value, str):
            raise CommandError(ErrorCode.INTERNAL, "the page returned a value that is not text")
        return {
            "key": key,
            "key_id": key_id(key).hex(),
            "value": value.encode("utf-8"),
            "publisher": r.get("publisher"),
            "ts": r.get("ts"),
            "duration_ms": _ms_since(start),
        }

    # -- topics ----------------------------------------------------------------------------------

    async def announce(
        self, *, topic: str, port: int | None = None, meta: dict[str, Any] | None = None
    ) -> Result:
        if port is not None or meta is not None:
            raise CommandError(
                ErrorCode.BAD_ARGS, "a browser peer announces without a port or metadata"
            )
        r = await self.call("announce", topic)
        r = r if isinstance(r, dict) else {}
        return {
            "topic": topic,
            "topic_id": key_id(topic).hex(),
            **_replicas(r),
            "ok": bool(r.get("ok")),
        }

    unannounce = _refused("unannounce")

    async def lookup(self, *, topic: str) -> Result:
        start = time.monotonic()
        r = await self.call("lookup", topic)
        peers = _ids(r.get("peers") if isinstance(r, dict) else None, "lookup")
        return {
            "topic": topic,
            "topic_id": key_id(topic).hex(),
            "peers": [
                {"id": p, "port": None, "meta": None, "ts": None}
                for p in sorted(peers)
                if len(p) == 2 * ID_BYTES
            ],
            "duration_ms": _ms_since(start),
        }

    join = _refused("join")

    # Owned/immutable records and listen are not in the JavaScript peer yet (docs/browser.md).
    store_at = _refused("store_at")
    put_mutable = _refused("put_mutable")
    put_immutable = _refused("put_immutable")
    get_address = _refused("get_address")
    listen = _refused("listen")
    unlisten = _refused("unlisten")

    async def shutdown(self) -> Result:
        if self.on_shutdown is None:
            raise _unsupported("shutdown")
        self.on_shutdown()
        return {"shutting_down": True}
