"""Node IDs, keys and the XOR metric.

Rules of this module:
- A node ID is 32 raw bytes (256 bits), ``NodeId`` is a distinct type for it.
- A node ID is SHA-256 of the node's raw Ed25519 public key; a DHT key for a user string is
  SHA-256 of its UTF-8 bytes. Both live in the same 256-bit space.
- Distance is XOR read as a big-endian unsigned integer.
- The bucket index of ``other`` relative to ``own`` is the position of the first bit where they
  differ, counted from the most significant bit: 0 means the other half of the ID space (the
  farthest bucket), 255 means only the last bit differs. ``own`` itself has no bucket.
"""

from __future__ import annotations

import hashlib
import random
from typing import NewType

from node.errors import LocalError

ID_BYTES = 32
ID_BITS = 256

NodeId = NewType("NodeId", bytes)


class IdError(LocalError, ValueError):
    """A value that should be a node ID or key is not one."""


def as_node_id(raw: bytes) -> NodeId:
    """Check that ``raw`` is 32 bytes and type it as a ``NodeId``."""
    if not isinstance(raw, bytes | bytearray) or len(raw) != ID_BYTES:
        raise IdError(f"a node id is {ID_BYTES} bytes")
    return NodeId(bytes(raw))


def parse_id(text: str) -> NodeId:
    """Parse a 64-digit hex string into a ``NodeId``."""
    text = text.strip().lower()
    if len(text) != 2 * ID_BYTES:
        raise IdError(f"a node id is {2 * ID_BYTES} hex digits, got {len(text)}")
    try:
        return NodeId(bytes.fromhex(text))
    except ValueError as exc:
        raise IdError("a node id is hexadecimal") from exc


def id_hex(node_id: bytes) -> str:
    return node_id.hex()


def short_id(node_id: bytes) -> str:
    """The first 8 hex digits, for logs and tables."""
    return node_id.hex()[:8]


def key_id(key: str) -> NodeId:
    """DHT key of a user key string: SHA-256 of its UTF-8 bytes."""
    return NodeId(hashlib.sha256(key.encode("utf-8")).digest())


def node_id_from_public_key(public_key: bytes) -> NodeId:
    return NodeId(hashlib.sha256(public_key).digest())


def as_int(node_id: bytes) -> int:
    return int.from_bytes(node_id, "big")


def distance(a: bytes, b: bytes) -> int:
    """XOR distance as an integer."""
    return int.from_bytes(a, "big") ^ int.from_bytes(b, "big")


def bucket_index(own: bytes, other: bytes) -> int:
    """Index of the first differing bit (0 = most significant). Raises for ``own == other``."""
    d = distance(own, other)
    if d == 0:
        raise IdError("a node has no bucket for its own id")
    return ID_BITS - d.bit_length()


def random_id_in_bucket(own: bytes, index: int, rng: random.Random) -> NodeId:
    """A uniformly random ID whose bucket index relative to ``own`` is ``index``.

    It shares the first ``index`` bits with ``own``, differs at bit ``index`` and is random after.
    """
    if not 0 <= index < ID_BITS:
        raise IdError("bucket index out of range")
    own_int = as_int(own)
    flip = 1 << (ID_BITS - 1 - index)
    low_mask = flip - 1
    value = ((own_int ^ flip) & ~low_mask) | (rng.getrandbits(ID_BITS) & low_mask)
    return NodeId(value.to_bytes(ID_BYTES, "big"))


def random_id(rng: random.Random) -> NodeId:
    return NodeId(rng.getrandbits(ID_BITS).to_bytes(ID_BYTES, "big"))
