"""An in-test node over real WebRTC: the process's assembly (``PeerNode``) without its sockets.

Attack tests use it to talk to real node processes and then misbehave through the public seam
``runtime.connections.link(peer)`` (raw bytes on an authenticated link).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from node.identity import Identity
from node.transport.webrtc import WebRTCTransport
from peer.node import PeerNode

REGISTER_TIMEOUT_S = 10.0


@asynccontextmanager
async def webrtc_peer(signaling_url: str) -> AsyncIterator[PeerNode]:
    """A started node on 127.0.0.1, registered with the signaling server; stopped on exit."""
    node = PeerNode(
        Identity.generate(), WebRTCTransport(["127.0.0.1"]), signaling_url=signaling_url
    )
    await node.start()
    try:
        assert node.signaling is not None
        await node.signaling.wait_registered(REGISTER_TIMEOUT_S)
        yield node
    finally:
        await node.stop()
