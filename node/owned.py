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

The byte layouts are docs/protocol.md §7.1 and §8; the formats, addresses and validation of
every kind are ``node.records`` (this module plans and signs writes).
"""

from __future__ import annotations

from dataclasses import dataclass

from node.identity import Identity
from node.records import (
    Record,
    RecordKind,
    immutable_address,
    immutable_record,
    mutable_address,
    sign_mutable,
    sign_record,
)


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
