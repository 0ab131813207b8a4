"""Count (and optionally drop) the UDP datagrams one WebRTC link sends, at the socket.

Tests and benchmarks count packets rather than infer them from timing::

    tap = Wiretap.install(link)           # every ICE socket of the link's connection
    ...                                   # exchange messages
    tap.sent, tap.by_kind[DatagramKind.DTLS], tap.dropped
    tap.remove()

``loss`` (0..1; 1 = this end goes dark) drops that share of outgoing datagrams before they reach
the socket, with the given ``random.Random`` so a test is reproducible: the peer sees a lossy UDP
path. Install a
tap on both ends for loss in both directions. Dropped datagrams are counted in ``dropped`` and
not in ``sent``.

The tap replaces the ``transport`` attribute of each aioice ``StunProtocol`` of the connection
with a proxy whose ``sendto`` counts; everything else is forwarded. It is test/diagnostic
equipment: the node never installs it.
"""

from __future__ import annotations

import enum
import random
from collections import Counter
from typing import Any, cast

from node.transport.webrtc import WebRTCLink


class DatagramKind(enum.StrEnum):
    """What a datagram carries, from its first byte (RFC 7983 demultiplexing)."""

    STUN = "stun"  # 0..3: ICE connectivity and consent checks
    DTLS = "dtls"  # 20..63: handshake and application data (SCTP)
    OTHER = "other"


def datagram_kind(data: bytes) -> DatagramKind:
    first = data[0] if data else 255
    if first <= 3:
        return DatagramKind.STUN
    if 20 <= first <= 63:
        return DatagramKind.DTLS
    return DatagramKind.OTHER


class _TappedTransport:
    """A datagram transport whose ``sendto`` reports to a :class:`Wiretap` first."""

    def __init__(self, inner: Any, tap: Wiretap) -> None:
        self._inner = inner
        self._tap = tap

    def sendto(self, data: bytes, addr: Any = None) -> None:
        if self._tap._admit(data):
            self._inner.sendto(data, addr)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class Wiretap:
    """Counts the datagrams a link sends; drops a share of them when ``loss`` > 0."""

    def __init__(self, loss: float = 0.0, rng: random.Random | None = None) -> None:
        if not 0.0 <= loss <= 1.0:
            raise ValueError(f"loss must be in [0, 1], not {loss}")
        self.loss = loss
        self.rng = rng if rng is not None else random.Random(0)
        self.sent = 0
        self.sent_bytes = 0
        self.dropped = 0
        self.by_kind: Counter[DatagramKind] = Counter()
        self._protocols: list[Any] = []

    @classmethod
    def install(
        cls, link: WebRTCLink, loss: float = 0.0, rng: random.Random | None = None
    ) -> Wiretap:
        """Tap every ICE socket of ``link``'s connection (the link must be open)."""
        tap = cls(loss, rng)
        sctp = link._pc.sctp
        if sctp is None:
            raise ValueError("the link has no SCTP transport")
        connection = sctp.transport.transport.iceGatherer._connection
        for protocol in connection._protocols:
            if isinstance(protocol.transport, _TappedTransport):
                raise ValueError("this link is already tapped")
            protocol.transport = cast(Any, _TappedTransport(protocol.transport, tap))
            tap._protocols.append(protocol)
        return tap

    def remove(self) -> None:
        """Put the original transports back."""
        for protocol in self._protocols:
            if isinstance(protocol.transport, _TappedTransport):
                protocol.transport = protocol.transport._inner
        self._protocols.clear()

    def reset(self) -> None:
        """Zero the counters (e.g. after a warm-up)."""
        self.sent = self.sent_bytes = self.dropped = 0
        self.by_kind.clear()

    def _admit(self, data: bytes) -> bool:
        if self.loss and self.rng.random() < self.loss:
            self.dropped += 1
            return False
        self.sent += 1
        self.sent_bytes += len(data)
        self.by_kind[datagram_kind(data)] += 1
        return True
