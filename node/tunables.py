"""Which ``Config`` fields an operator may set on ``dht-node``, and how they are parsed.

Every name here is settable as ``--set NAME=VALUE`` (repeatable) or as the environment variable
``DHT_<NAME in upper case>`` (a flag wins over the environment). The values are numbers;
seconds for ``*_s`` names. Anything else is refused with a message (exit 2), never ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import fields
from typing import Final

from node.config import Config

TUNABLES: Final = (
    # periods (tests and users shorten them)
    "repair_interval_s",
    "republish_interval_s",
    "refresh_interval_s",
    "record_ttl_s",
    "cache_ttl_s",
    "provider_ttl_s",
    "reannounce_interval_s",
    # quotas and rate limits (node.quotas)
    "max_records",
    "max_store_bytes",
    "max_publisher_bytes",
    "max_publisher_records",
    "max_peer_bytes",
    "max_peer_records",
    "max_providers_per_topic",
    "max_topics_per_announcer",
    "request_rate_per_peer",
    "request_burst_per_peer",
    "request_bytes_per_peer_s",
    "request_bytes_burst_per_peer",
    "ban_s",  # 0: never ban a flooding peer (it is only dropped)
)
_TYPES: Final = {f.name: f.type for f in fields(Config)}


def env_name(name: str) -> str:
    return "DHT_" + name.upper()


def _number(name: str, text: str) -> int | float:
    kind = _TYPES[name]
    try:
        value: int | float = int(text) if kind in (int, "int") else float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {text!r}") from None
    if value < 0:
        raise ValueError(f"{name} must not be negative")
    return value


def parse(items: Iterable[str], env: Mapping[str, str]) -> dict[str, int | float]:
    """``--set NAME=VALUE`` items over ``DHT_NAME`` environment variables; ValueError if bad."""
    out: dict[str, int | float] = {}
    for name in TUNABLES:
        if env_name(name) in env:
            out[name] = _number(name, env[env_name(name)])
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in TUNABLES:
            raise ValueError(
                f"--set {item!r}: expected NAME=VALUE, NAME one of {', '.join(TUNABLES)}"
            )
        out[name] = _number(name, text.strip())
    return out


def node_args(items: Iterable[str] | Mapping[str, int | float]) -> tuple[str, ...]:
    """``dht-node`` flags for settings given as ``NAME=VALUE`` items or a mapping, checked here
    (ValueError names a bad one) so that a cluster refuses them before any node starts."""
    pairs = [f"{k}={v}" for k, v in items.items()] if isinstance(items, Mapping) else list(items)
    parsed = parse(pairs, {})
    return tuple(arg for name, value in parsed.items() for arg in ("--set", f"{name}={value}"))
