"""What the connection manager (``node.connections``) reports to the node: ``CoreHooks``.

The runtime implements it over the DHT core; a unit test fakes it.
"""

from __future__ import annotations

from typing import Protocol

from node.events import Notice
from node.ids import NodeId


class CoreHooks(Protocol):
    """What the connection manager reports to the node (the runtime implements it)."""

    def link_up(self, peer: NodeId) -> None:
        """An authenticated link to ``peer`` is registered (call ``pump`` later)."""
        ...

    def link_down(self, peer: NodeId) -> None:
        """The link to ``peer`` is gone (the manager no longer lists it)."""
        ...

    def link_lost(self, peer: NodeId) -> None:
        """Like ``link_down``, but the transport heard nothing from ``peer``: it is gone."""
        ...

    def unreachable(self, peer: NodeId) -> None:
        """Messages for ``peer`` could not be delivered (no link and the dial failed)."""
        ...

    def received(self, peer: NodeId, data: bytes) -> None:
        """A message from an authenticated peer."""
        ...

    def relay_signal(self, peer: NodeId, payload: bytes, via: NodeId | None) -> bool:
        """Send a connection-setup payload to ``peer`` over the DHT; False: no route."""
        ...

    def needed(self, peer: NodeId) -> bool:
        """True when the core needs the connection now, e.g. a request is in flight (the link
        budget must not close it)."""
        ...

    def notify(self, notice: Notice) -> None:
        """Publish a notice (peer connected / disconnected)."""
        ...

    def pump(self) -> None:
        """Let the core act on what was just reported."""
        ...
