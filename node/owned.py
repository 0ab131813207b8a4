"""Owned records: mutable records (BEP 44 / HyperDHT style) and immutable records. Sans-IO.

- MUTABLE: the address is ``SHA-256(DOMAIN_ADDRESS || public key || salt)``; the record carries
  the salt, a sequence number ``seq`` and a ``ts``, signed by that public key. Only the key holder
  can produce a record that validates at that address. Holders keep the highest ``seq``; a lower or
  equal ``seq`` with a different value is refused (``seq_not_newer``); a write may carry a CAS on
  the seq it expects the holder to have (``cas_mismatch`` when it does not).
- IMMUTABLE: the address is ``SHA-256(DOMAIN_IMMUTABLE || value)``; no signature, no publisher.
  Every holder (and every reader) recomputes the hash: a forged value cannot validate.
- The domains make the three namespaces disjoint: an open record can sit at an owned address
  (open keys are arbitrary), but an owned record always beats it (``records.record_order``) and a
  holder refuses an open record where it holds an owned one (``owned``).

A write is planned as a ``Draft`` and signed by ``finalize`` once the write's lookup has seen the
key's current best record: a MUTABLE draft without an explicit seq takes the next one, and an OPEN
draft takes ``ts = max(now, highest ts seen + 1)`` — so a far-future ``ts`` accepted by holders
(at most ``max_future_skew_ms`` ahead) never locks a later writer out.

The byte layouts are docs/protocol.md §7.1 and §8.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from node.identity import Identity
from node.ids import ID_BYTES
from node.records import (
    Record,
    RecordKind,
    _check_signature,
    _check_signed_fields,
    sign_record,
)

DOMAIN_MUTABLE = b"webrtc-dht/mutable/v1\x00"
DOMAIN_ADDRESS = b"webrtc-dht/address/v1\x00"
DOMAIN_IMMUTABLE = b"webrtc-dht/immutable/v1\x00"
MAX_SALT_BYTES = 64
_U64_MAX = (1 << 64) - 1


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


@dataclass(frozen=True, slots=True)
class Draft:
    """A record to sign once the current best record at ``key`` is known (see ``finalize``)."""

    kind: RecordKind
    key: bytes
    data: bytes
    salt: bytes = b""
    seq: int | None = None  # MUTABLE: None = one above the highest seq seen
    cas: int | None = None  # MUTABLE: the seq the holders must have (sent with the write)


def open_draft(key: bytes, data: bytes) -> Draft:
    return Draft(RecordKind.OPEN, key, data)


def mutable_draft(
    public_key: bytes, salt: bytes, data: bytes, seq: int | None, cas: int | None
) -> Draft:
    return Draft(RecordKind.MUTABLE, mutable_address(public_key, salt), data, salt, seq, cas)


def immutable_draft(data: bytes) -> Draft:
    return Draft(RecordKind.IMMUTABLE, immutable_address(data), data)


def finalize(draft: Draft, identity: Identity, best: Record | None, wall_ms: int) -> Record:
    """Sign ``draft`` now that ``best`` (the best record seen at its key, or None) is known."""
    seen = best if best is not None and best.key == draft.key else None
    ts = wall_ms if seen is None else max(wall_ms, seen.ts + 1)
    if draft.kind is RecordKind.IMMUTABLE:
        return immutable_record(draft.data)
    if draft.kind is RecordKind.MUTABLE:
        seq = draft.seq
        if seq is None:
            seq = seen.seq + 1 if seen is not None and seen.kind is RecordKind.MUTABLE else 1
        return sign_mutable(identity, draft.salt, seq, ts, draft.data)
    return sign_record(identity, draft.key, draft.data, ts)
