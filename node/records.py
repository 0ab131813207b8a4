"""Signed value records and signed topic-provider records.

A ``Record`` is the unit of storage: ``(key, data, ts, pub)`` signed by the publisher. It has a
``kind`` (``RecordKind``): OPEN records (the ``store KEY VALUE`` namespace, anyone may write any
key), MUTABLE records (owned: the key is derived from the publisher's key and a salt, ordered by
a sequence number) and IMMUTABLE records (the key is the hash of the value). The owned kinds'
formats and validation are below; writing them is ``node.owned``; docs/design-notes.md states
what each namespace guarantees. ``pub`` is
never sent: it is derived from ``public_key`` (pub = SHA-256(public key)), so a record cannot claim
someone else's ID. The total order of records for one key is ``record_order`` — higher ``ts`` wins,
ties broken by the higher ``pub`` — and it is the only ordering used anywhere (storage, lookups,
repair).

Validation rejects, with a reason: a bad signature, a ``ts`` more than ``max_future_skew_ms``
ahead of the receiver's wall clock (the far-future overwrite attack), data over the size
limit, and malformed fields. ``validate_*`` return ``None`` for a valid record, else the
reason string.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from node.config import MAX_FUTURE_SKEW_MS, MAX_PROVIDER_META_BYTES, MAX_RECORD_DATA_BYTES
from node.identity import (
    DOMAIN_PROVIDER,
    DOMAIN_RECORD,
    PUBLIC_KEY_BYTES,
    SIGNATURE_BYTES,
    Identity,
    verify,
)
from node.ids import ID_BYTES, NodeId

_U64_MAX = (1 << 64) - 1
VERIFIED_CACHE_ENTRIES = 4096


class _VerifiedCache:
    """Signatures already checked, keyed by everything they cover (an exact match means the
    same bytes were verified before). Bounded LRU; only successes are remembered. The same
    record arrives many times (every replica answering a lookup, repair, republish), and an
    Ed25519 verification costs ~0.1 ms."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[bytes, ...], None] = OrderedDict()

    def check(self, public_key: bytes, sig: bytes, payload: bytes) -> bool:
        entry = (public_key, sig, payload)
        if entry in self._entries:
            self._entries.move_to_end(entry)
            return True
        if not verify(public_key, sig, payload):
            return False
        self._entries[entry] = None
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return True


_verified = _VerifiedCache(VERIFIED_CACHE_ENTRIES)


def _record_payload(key: bytes, ts: int, data: bytes) -> bytes:
    return DOMAIN_RECORD + key + ts.to_bytes(8, "big") + data


class RecordKind(enum.IntEnum):
    """What a record's key means and who may write it (the wire value is the int)."""

    OPEN = 0  # any key, any publisher; last write wins (see design-notes "Open namespace")
    MUTABLE = 1  # key = H(publisher key, salt); only that key's holder writes; seq only grows
    IMMUTABLE = 2  # key = H(value); no signature; every holder checks the hash

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Record:
    key: bytes
    data: bytes
    ts: int
    public_key: bytes
    sig: bytes
    kind: RecordKind = RecordKind.OPEN
    seq: int = 0  # MUTABLE only
    salt: bytes = b""  # MUTABLE only: the name the address is derived from
    pub: NodeId = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pub", NodeId(hashlib.sha256(self.public_key).digest()))


def sign_record(identity: Identity, key: bytes, data: bytes, ts: int) -> Record:
    return Record(key, data, ts, identity.public_key, identity.sign(_record_payload(key, ts, data)))


def record_order(r: Record) -> tuple[int, int, int, bytes]:
    """Sort key: higher is better. An owned record (mutable or immutable: their addresses never
    collide) beats an open one at the same key; then the higher seq (mutable), then the newer
    ts, then the higher publisher ID."""
    return (0 if r.kind is RecordKind.OPEN else 1, r.seq, r.ts, r.pub)


def better(a: Record, b: Record | None) -> bool:
    """True when ``a`` should replace ``b``."""
    return b is None or record_order(a) > record_order(b)


def _check_signed_fields(
    ident: bytes, what: str, public_key: bytes, sig: bytes, ts: int
) -> str | None:
    """The checks every signed record shares before its own: lengths and the ts range."""
    if len(ident) != ID_BYTES:
        return f"malformed {what}"
    if len(public_key) != PUBLIC_KEY_BYTES or len(sig) != SIGNATURE_BYTES:
        return "malformed signature fields"
    if not 0 <= ts <= _U64_MAX:
        return "malformed timestamp"
    return None


def _check_signature(
    ts: int, now_ms: int, max_future_skew_ms: int, public_key: bytes, sig: bytes, payload: bytes
) -> str | None:
    """The checks every signed record ends with: not from the far future, a good signature."""
    if ts > now_ms + max_future_skew_ms:
        return "timestamp too far in the future"
    if not _verified.check(public_key, sig, payload):
        return "bad signature"
    return None


def validate_record(
    r: Record,
    now_ms: int,
    *,
    max_data_bytes: int = MAX_RECORD_DATA_BYTES,
    max_future_skew_ms: int = MAX_FUTURE_SKEW_MS,
) -> str | None:
    if r.kind is not RecordKind.OPEN:
        return validate_owned(r, now_ms, max_data_bytes, max_future_skew_ms)
    if r.seq or r.salt:
        return "malformed open record (seq or salt set)"
    reason = _check_signed_fields(r.key, "key", r.public_key, r.sig, r.ts)
    if reason is not None:
        return reason
    if len(r.data) > max_data_bytes:
        return f"data too large ({len(r.data)} > {max_data_bytes} bytes)"
    payload = _record_payload(r.key, r.ts, r.data)
    return _check_signature(r.ts, now_ms, max_future_skew_ms, r.public_key, r.sig, payload)


def _provider_payload(topic: bytes, ts: int, port: int, leave: bool, meta: bytes) -> bytes:
    return (
        DOMAIN_PROVIDER
        + topic
        + ts.to_bytes(8, "big")
        + port.to_bytes(4, "big")
        + (b"\x01" if leave else b"\x00")
        + meta
    )


@dataclass(frozen=True, slots=True)
class ProviderRecord:
    """Node ``node`` serves ``topic`` on application ``port`` (0 = none); ``leave``: withdrawn."""

    topic: bytes
    ts: int
    port: int
    leave: bool
    meta: bytes  # JSON text, UTF-8, at most MAX_PROVIDER_META_BYTES
    public_key: bytes
    sig: bytes
    node: NodeId = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "node", NodeId(hashlib.sha256(self.public_key).digest()))

    def meta_value(self) -> Any:
        if not self.meta:
            return None
        try:
            return json.loads(self.meta.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None


def sign_provider(
    identity: Identity, topic: bytes, ts: int, port: int, meta: bytes, leave: bool = False
) -> ProviderRecord:
    sig = identity.sign(_provider_payload(topic, ts, port, leave, meta))
    return ProviderRecord(topic, ts, port, leave, meta, identity.public_key, sig)


def validate_provider(
    p: ProviderRecord, now_ms: int, *, max_future_skew_ms: int = MAX_FUTURE_SKEW_MS
) -> str | None:
    reason = _check_signed_fields(p.topic, "topic", p.public_key, p.sig, p.ts)
    if reason is not None:
        return reason
    if not 0 <= p.port <= 65535:
        return "port out of range"
    if len(p.meta) > MAX_PROVIDER_META_BYTES:
        return f"metadata too large ({len(p.meta)} > {MAX_PROVIDER_META_BYTES} bytes)"
    if p.meta:
        try:
            json.loads(p.meta.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return "metadata is not JSON"
    payload = _provider_payload(p.topic, p.ts, p.port, p.leave, p.meta)
    return _check_signature(p.ts, now_ms, max_future_skew_ms, p.public_key, p.sig, payload)


# -- owned kinds: MUTABLE and IMMUTABLE (writing them: node.owned) ----------------------------

DOMAIN_MUTABLE = b"webrtc-dht/mutable/v1\x00"
DOMAIN_ADDRESS = b"webrtc-dht/address/v1\x00"
DOMAIN_IMMUTABLE = b"webrtc-dht/immutable/v1\x00"
MAX_SALT_BYTES = 64


def mutable_address(public_key: bytes, salt: bytes) -> bytes:
    return hashlib.sha256(DOMAIN_ADDRESS + public_key + salt).digest()


def immutable_address(data: bytes) -> bytes:
    return hashlib.sha256(DOMAIN_IMMUTABLE + data).digest()


def _mutable_payload(key: bytes, salt: bytes, seq: int, ts: int, data: bytes) -> bytes:
    return (
        DOMAIN_MUTABLE
        + key
        + len(salt).to_bytes(1, "big")
        + salt
        + seq.to_bytes(8, "big")
        + ts.to_bytes(8, "big")
        + data
    )


def sign_mutable(identity: Identity, salt: bytes, seq: int, ts: int, data: bytes) -> Record:
    key = mutable_address(identity.public_key, salt)
    sig = identity.sign(_mutable_payload(key, salt, seq, ts, data))
    return Record(key, data, ts, identity.public_key, sig, RecordKind.MUTABLE, seq, salt)


def immutable_record(data: bytes) -> Record:
    return Record(immutable_address(data), data, 0, b"", b"", RecordKind.IMMUTABLE)


def validate_owned(
    r: Record, now_ms: int, max_data_bytes: int, max_future_skew_ms: int
) -> str | None:
    """``None`` for a valid MUTABLE or IMMUTABLE record, else the reason."""
    if len(r.key) != ID_BYTES:
        return "malformed key"
    if len(r.data) > max_data_bytes:
        return f"data too large ({len(r.data)} > {max_data_bytes} bytes)"
    if r.kind is RecordKind.IMMUTABLE:
        if r.public_key or r.sig or r.ts or r.seq or r.salt:
            return "malformed immutable record"
        if immutable_address(r.data) != r.key:
            return "hash_mismatch"
        return None
    reason = _check_signed_fields(r.key, "key", r.public_key, r.sig, r.ts)
    if reason is not None:
        return reason
    if len(r.salt) > MAX_SALT_BYTES:
        return f"salt too long ({len(r.salt)} > {MAX_SALT_BYTES} bytes)"
    if not 0 <= r.seq <= _U64_MAX:
        return "malformed seq"
    if mutable_address(r.public_key, r.salt) != r.key:
        return "not_owner"  # signed by a key that does not own this address
    payload = _mutable_payload(r.key, r.salt, r.seq, r.ts, r.data)
    return _check_signature(r.ts, now_ms, max_future_skew_ms, r.public_key, r.sig, payload)
