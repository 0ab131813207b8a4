"""What the node needs of a signaling client, and what it offers one: the injection seam.

``node/`` never imports ``signaling/``. The composition root (``peer/``) builds the real
``signaling.client.SignalingClient``, which satisfies :class:`SignalingPort` structurally, from
the :class:`SignalingHandlers` the runtime hands to its :data:`SignalingFactory`::

    def factory(handlers: SignalingHandlers) -> SignalingPort:
        return SignalingClient(url, identity, handlers.on_offer, handlers.on_answer,
                               on_registered=handlers.on_registered, on_error=handlers.on_error)

    runtime = NodeRuntime(identity, transport, signaling=factory)

The runtime starts the client in ``start()`` and closes it in ``stop()``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from node.ids import NodeId


class SignalingPort(Protocol):
    """The signaling client as the runtime uses it (outbound calls only)."""

    @property
    def connected(self) -> bool:
        """True while registered with the server."""
        ...

    async def start(self) -> None:
        """Start connecting (and reconnecting) in the background."""
        ...

    async def close(self) -> None:
        """Stop for good; idempotent."""
        ...

    async def peers(self, n: int) -> list[NodeId]:
        """Up to ``n`` registered node IDs close to ours; raises when the server is gone."""
        ...

    async def send_offer(self, to: NodeId, cid: str, sdp: str) -> None: ...

    async def send_answer(self, to: NodeId, cid: str, sdp: str) -> None: ...


@dataclass(frozen=True, slots=True)
class SignalingHandlers:
    """The runtime's callbacks for what the signaling server delivers."""

    on_offer: Callable[[NodeId, str, str], Awaitable[None]]
    """``(sender, cid, sdp)``: a relayed offer; answering it takes a while (ICE gathering)."""
    on_answer: Callable[[NodeId, str, str], None]
    """``(sender, cid, sdp)``: the answer to one of our offers."""
    on_registered: Callable[[], None]
    """(Re-)registered with the server: a chance to bootstrap."""
    on_error: Callable[[str, str, str | None], None]
    """``(code, message, cid)``: an error frame from the server."""


SignalingFactory = Callable[[SignalingHandlers], SignalingPort]
"""Builds the signaling client around the runtime's handlers (called once, in ``start()``)."""
