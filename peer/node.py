"""One node process assembled: runtime + signaling client + control server.

``PeerNode`` is the composition root that ``dht-node`` runs and that tests use to get a node
as the process has it. It builds the ``NodeRuntime`` with a factory for the real
``SignalingClient`` (which satisfies ``node.signaling_port.SignalingPort``), and, when endpoints
are given, a ``ControlServer`` serving a ``ControlAdapter`` whose events are the runtime's
notices. Ownership: the runtime starts and closes the signaling client; ``PeerNode`` starts and
closes the control server (last, with a short linger so a ``shutdown`` reply gets out).
"""

from __future__ import annotations

import random

from control.curve import CurveKeys
from control.server import ControlServer
from node.config import Config
from node.events import Notice
from node.identity import Identity
from node.ids import id_hex
from node.persist import Persister
from node.runtime import NodeRuntime, NodeSettings
from node.signaling_port import SignalingHandlers, SignalingPort
from node.transport.base import Transport
from peer.control_adapter import ControlAdapter
from signaling.client import SignalingClient

SHUTDOWN_LINGER_MS = 200


class PeerNode:
    """See the module docstring. ``await start()``, ``await stop()``."""

    def __init__(
        self,
        identity: Identity,
        transport: Transport,
        *,
        signaling_url: str | None = None,
        control_endpoint: str | None = None,
        events_endpoint: str | None = None,
        config: Config | None = None,
        settings: NodeSettings | None = None,
        rng: random.Random | None = None,
        persister: Persister | None = None,
        curve: CurveKeys | None = None,
    ) -> None:
        self.identity = identity
        self.signaling_url = signaling_url
        self.signaling: SignalingClient | None = None
        """The signaling client, once the runtime has started (None without a URL)."""
        self.runtime = NodeRuntime(
            identity,
            transport,
            config,
            settings,
            rng,
            signaling=self._make_signaling if signaling_url else None,
            persister=persister,
        )
        self.api = ControlAdapter(self.runtime)
        self.control: ControlServer | None = None
        if control_endpoint and events_endpoint:
            self.control = ControlServer(
                self.api,
                control_endpoint,
                events_endpoint,
                node_id=id_hex(identity.node_id),
                curve=curve,
            )
            self.runtime.subscribe(self._publish)

    def _make_signaling(self, handlers: SignalingHandlers) -> SignalingPort:
        assert self.signaling_url is not None
        self.signaling = SignalingClient(
            self.signaling_url,
            self.identity,
            handlers.on_offer,
            handlers.on_answer,
            on_registered=handlers.on_registered,
            on_error=handlers.on_error,
        )
        return self.signaling

    def _publish(self, notice: Notice) -> None:
        if self.control is not None:
            self.control.publish(*self.api.event(notice))

    async def start(self) -> None:
        """Bind the control sockets (raises ``zmq.ZMQError`` when taken), then start the node."""
        if self.control is not None:
            await self.control.start()
        await self.runtime.start()

    async def stop(self) -> None:
        await self.runtime.stop()
        if self.control is not None:
            await self.control.close(linger_ms=SHUTDOWN_LINGER_MS)

    async def wait_stopped(self) -> None:
        await self.runtime.wait_stopped()
