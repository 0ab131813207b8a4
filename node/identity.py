"""Ed25519 node identities.

A node owns an Ed25519 key pair; its ID is SHA-256 of the raw 32-byte public key, so an ID cannot be
claimed without the key. Every signature in the system is made over a domain-separated message
(``DOMAIN_* + payload``) so a signature for one purpose can never be replayed for another.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from node.ids import NodeId, node_id_from_public_key

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
KEY_FILE_NAME = "node.key"

DOMAIN_RECORD = b"webrtc-dht/record/v1\x00"
DOMAIN_PROVIDER = b"webrtc-dht/provider/v1\x00"
DOMAIN_HELLO = b"webrtc-dht/hello/v1\x00"
DOMAIN_SIGNALING = b"webrtc-dht/signaling-register/v1\x00"


class Identity:
    """A node's key pair. ``node_id`` = SHA-256(public key)."""

    __slots__ = ("_private", "node_id", "public_key")

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public_key: bytes = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.node_id: NodeId = node_id_from_public_key(self.public_key)

    @classmethod
    def generate(cls, rng: random.Random | None = None) -> Identity:
        """A new identity; from ``rng`` when given (simulations), else from the OS."""
        seed = rng.randbytes(32) if rng is not None else os.urandom(32)
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def load_or_create(cls, data_dir: str | os.PathLike[str]) -> Identity:
        """The identity stored in ``data_dir/node.key``, created (mode 0600) if missing."""
        path = Path(data_dir) / KEY_FILE_NAME
        if path.exists():
            seed = path.read_bytes()
            if len(seed) != 32:
                raise ValueError(f"{path} is not a 32-byte Ed25519 seed")
            return cls.from_seed(seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        seed = os.urandom(32)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, seed)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        return cls.from_seed(seed)

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)


def verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``message`` by ``public_key``."""
    if len(public_key) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True
