"""Human and JSON output of ``dhtctl``: pure functions from result maps to text."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

ID_HEX_CHARS = 64
SHORT_ID_CHARS = 8


def short(node_id: object) -> str:
    text = str(node_id)
    return text[:SHORT_ID_CHARS] if _is_id(text) else text


def _is_id(text: object) -> bool:
    if not isinstance(text, str) or len(text) != ID_HEX_CHARS:
        return False
    return all(c in "0123456789abcdef" for c in text)


def _json_default(obj: object) -> object:
    if isinstance(obj, bytes | bytearray):
        raw = bytes(obj)
        try:
            utf8: str | None = raw.decode("utf-8")
        except UnicodeDecodeError:
            utf8 = None
        return {"base64": base64.b64encode(raw).decode("ascii"), "utf8": utf8}
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def to_json(obj: object, *, indent: int | None = 2) -> str:
    """JSON text; bytes become ``{"base64": ..., "utf8": <str or null>}``."""
    return json.dumps(obj, default=_json_default, indent=indent, ensure_ascii=False)


def value_text(value: object) -> str:
    """A stored value for a terminal: its UTF-8 text, else ``base64:...``."""
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return "base64:" + base64.b64encode(bytes(value)).decode("ascii")
    return str(value)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, bytes | bytearray):
        return value_text(value)
    if isinstance(value, Mapping | list):
        return to_json(value, indent=None)
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, text in enumerate(row):
            widths[i] = max(widths[i], len(text))
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in cells:
        lines.append("  ".join(t.ljust(w) for t, w in zip(row, widths, strict=True)).rstrip())
    if not rows:
        lines.append("(none)")
    return "\n".join(lines)


def key_values(result: Mapping[str, Any]) -> str:
    width = max((len(k) for k in result), default=0)
    return "\n".join(f"{k.ljust(width)}  {_cell(v)}" for k, v in result.items())


def field_table(items: Sequence[Mapping[str, Any]], columns: Mapping[str, str]) -> str:
    """A table of ``items``, a row each: ``columns`` maps a header to the field it shows."""
    return table(list(columns), [[item.get(f) for f in columns.values()] for item in items])


_PEER_COLUMNS = {
    "id": "id",
    "rtt ms": "rtt_ms",
    "connected s": "connected_for_s",
    "in rt": "in_routing_table",
    "path": "path",
}
_TOPIC_COLUMNS = {
    "topic": "topic",
    "topic id": "topic_id",
    "announcing": "announcing",
    "port": "port",
    "peers": "peers_known",
}
_LOOKUP_COLUMNS = {name: name for name in ("id", "port", "meta", "ts")}
_NODE_COLUMNS = {
    name: name for name in ("index", "id", "control", "peers", "rt", "restarts", "health")
}


def _peers(r: Mapping[str, Any]) -> str:
    return field_table(r.get("peers", []), _PEER_COLUMNS)


def _dump(r: Mapping[str, Any]) -> str:
    lines = [f"id  {r.get('id')}"]
    for bucket in r.get("buckets", []):
        contacts = bucket.get("contacts", [])
        replacements = bucket.get("replacements", [])
        lines.append(
            f"bucket {bucket.get('index')}: {len(contacts)} contacts, "
            f"{len(replacements)} replacements"
        )
        for c in contacts:
            lines.append(f"  {c.get('id')}  seen {_cell(c.get('last_seen_s_ago'))} s ago")
        for rep in replacements:
            lines.append(f"  {rep}  (replacement)")
    return "\n".join(lines)


def _find(r: Mapping[str, Any]) -> str:
    lines = [
        f"target {r.get('target')}",
        f"{r.get('hops')} hops in {_cell(r.get('duration_ms'))} ms, closest:",
    ]
    lines += [f"  {c}" for c in r.get("closest", [])]
    return "\n".join(lines)


def _store(r: Mapping[str, Any]) -> str:
    return (
        f"stored {r.get('key')} ({short(r.get('key_id'))}): {r.get('acks')} acks, "
        f"quorum {r.get('quorum')}, {r.get('attempts')} attempts, "
        f"{_cell(r.get('duration_ms'))} ms"
    )


def _announce(r: Mapping[str, Any]) -> str:
    return (
        f"announced {r.get('topic')} ({short(r.get('topic_id'))}): {r.get('acks')} acks, "
        f"quorum {r.get('quorum')}, {r.get('attempts')} attempts"
    )


def _lookup(r: Mapping[str, Any]) -> str:
    head = f"topic {r.get('topic')} ({short(r.get('topic_id'))})\n"
    return head + field_table(r.get("peers", []), _LOOKUP_COLUMNS)


def _topics(r: Mapping[str, Any]) -> str:
    topics = [{**t, "topic_id": short(t.get("topic_id"))} for t in r.get("topics", [])]
    return field_table(topics, _TOPIC_COLUMNS)


def _help(r: Mapping[str, Any]) -> str:
    rows = []
    for c in r.get("commands", []):
        args = " ".join(
            a["name"].upper() if a.get("required") else f"[{a['name']}]" for a in c.get("args", [])
        )
        rows.append([c.get("name"), args, c.get("help")])
    return table(["command", "args", "help"], rows)


def _cluster_status(r: Mapping[str, Any]) -> str:
    head = f"cluster {r['name']}\n" if "name" in r else ""
    return head + field_table(r.get("nodes", []), _NODE_COLUMNS)


_RENDERERS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "peers": _peers,
    "dump": _dump,
    "ping": lambda r: f"pong from {r.get('id')} in {_cell(r.get('rtt_ms'))} ms",
    "find": _find,
    "connect": lambda r: f"connected to {r.get('id')} in {_cell(r.get('duration_ms'))} ms",
    "disconnect": lambda r: (
        f"disconnected from {r.get('id')}"
        if r.get("disconnected")
        else f"not connected to {r.get('id')}"
    ),
    "store": _store,
    "store_at": _store,
    "put_mutable": lambda r: str(r.get("address")),
    "put_immutable": lambda r: str(r.get("address")),
    "get": lambda r: value_text(r.get("value", b"")),
    "get_address": lambda r: value_text(r.get("value", b"")),
    "announce": _announce,
    "unannounce": lambda r: f"{'left' if r.get('left') else 'was not in'} {r.get('topic')}",
    "lookup": _lookup,
    "join": lambda r: (
        f"joined {r.get('topic')} ({short(r.get('topic_id'))})"
        + (", announcing" if r.get("announcing") else "")
    ),
    "topics": _topics,
    "shutdown": lambda r: "node is shutting down",
    "help": _help,
    "cluster.status": _cluster_status,
}


def render_result(cmd: str, result: Mapping[str, Any]) -> str:
    renderer = _RENDERERS.get(cmd, key_values)
    return renderer(result)


def format_event(topic: str, payload: Mapping[str, Any]) -> str:
    """One line: ``HH:MM:SS.mmm [index] node topic k=v ...``."""
    ts = payload.get("ts")
    if isinstance(ts, int | float) and not isinstance(ts, bool):
        stamp = time.strftime("%H:%M:%S", time.localtime(ts / 1000)) + f".{int(ts) % 1000:03d}"
    else:
        stamp = "--:--:--.---"
    parts = [stamp]
    if "index" in payload:
        parts.append(f"[{payload['index']}]")
    if "node" in payload:
        parts.append(short(payload["node"]))
    parts.append(topic)
    for k, v in payload.items():
        if k in ("ts", "index", "node"):
            continue
        parts.append(f"{k}={short(v) if _is_id(v) else _cell(v)}")
    return " ".join(parts)
