"""The HELLO that authenticates a new link: what it signs and when the peer's one is refused.

Pure functions (no I/O): the connection manager (``node.connections``) sends ours and checks the
peer's with :func:`hello_problem` before anything else from the link is processed.
"""

from __future__ import annotations

from node.identity import DOMAIN_HELLO, verify
from node.ids import NodeId, node_id_from_public_key
from node.messages import Hello


def hello_payload(receiver: bytes, cid: str) -> bytes:
    """The bytes a HELLO signs: it binds the sender's key to this receiver and connection."""
    return DOMAIN_HELLO + receiver + cid.encode("utf-8")


def bad_version(msg: Hello, ours: int) -> bool:
    """The peer speaks another major protocol version than ``ours``."""
    return msg.version[0] != ours


def hello_problem(msg: Hello, peer: NodeId, cid: str, own_id: NodeId, ours: int) -> str | None:
    """Why the HELLO ``msg`` from ``peer`` on connection ``cid`` to ``own_id`` is refused, or
    None when it verifies (``ours``: the major protocol version this node speaks)."""
    if bad_version(msg, ours):
        major, minor = msg.version
        return f"protocol version {major}.{minor} is not supported (ours is {ours}.x)"
    if node_id_from_public_key(msg.public_key) != peer:
        return "the HELLO key does not hash to the expected node id"
    if msg.receiver != own_id:
        return "the HELLO names another receiver"
    if msg.cid != cid:
        return f"the HELLO is bound to another connection id ({msg.cid!r})"
    if not verify(msg.public_key, msg.sig, hello_payload(own_id, cid)):
        return "bad HELLO signature"
    return None
