"""The SIGNAL relay (``node.relay``): greedy next hop, hop limit, dedup, delivery."""

from __future__ import annotations

import random

from node.events import SignalReceived
from node.ids import NodeId
from node.messages import Signal
from node.relay import SIGNAL_DEDUP_MAX, Forward, SignalRelay, next_hop


def nid(first: int) -> NodeId:
    return NodeId(bytes([first]) + bytes(31))


OWN, SRC, TARGET = nid(0x80), nid(0x01), nid(0x10)
NEAR, FAR = nid(0x11), nid(0xF0)


def relay() -> SignalRelay:
    return SignalRelay(OWN, hop_limit=8, rng=random.Random(1))


def test_a_signal_for_us_is_delivered_once() -> None:
    r = relay()
    sig = Signal(9, SRC, OWN, 3, b"offer")
    assert r.receive(SRC, sig, set()) == SignalReceived(SRC, b"offer")
    assert r.receive(NEAR, sig, {NEAR}) is None  # the same sid again: dropped


def test_forward_to_the_target_when_connected_else_to_the_closest_peer() -> None:
    r = relay()
    sig = Signal(1, SRC, TARGET, 3, b"x")
    assert r.receive(SRC, sig, {SRC, FAR, TARGET}) == Forward(
        TARGET, Signal(1, SRC, TARGET, 2, b"x")
    )
    got = r.receive(FAR, Signal(2, SRC, TARGET, 3, b"y"), {SRC, FAR, NEAR})
    assert got == Forward(NEAR, Signal(2, SRC, TARGET, 2, b"y"))


def test_never_back_to_the_sender_or_the_source_and_not_past_the_hop_limit() -> None:
    r = relay()
    # Only the sender and the source are connected: nowhere to go.
    assert r.receive(NEAR, Signal(3, SRC, TARGET, 3, b"z"), {NEAR, SRC}) is None
    # No hops left: not forwarded even though the target is connected.
    assert r.receive(SRC, Signal(4, SRC, TARGET, 0, b"z"), {TARGET}) is None


def test_originate_prefers_the_introducer_and_starts_at_the_hop_limit() -> None:
    r = relay()
    fwd = r.originate(TARGET, b"o", {NEAR, FAR}, via=FAR)
    assert fwd is not None
    assert fwd.peer == FAR
    assert (fwd.signal.source, fwd.signal.target, fwd.signal.hops_left) == (OWN, TARGET, 8)
    other = r.originate(TARGET, b"o", {NEAR, FAR}, via=SRC)  # via not connected: greedy
    assert other is not None
    assert other.peer == NEAR
    assert other.signal.sid != fwd.signal.sid
    assert r.originate(TARGET, b"o", set(), via=None) is None
    # Our own signal coming back round is not handled again.
    assert r.receive(NEAR, fwd.signal, {NEAR, TARGET}) is None


def test_dedup_forgets_the_oldest_ids_beyond_its_bound() -> None:
    r = relay()
    for sid in range(SIGNAL_DEDUP_MAX + 1):
        assert r.receive(SRC, Signal(sid, SRC, OWN, 1, b""), set()) is not None
    assert r.receive(SRC, Signal(SIGNAL_DEDUP_MAX, SRC, OWN, 1, b""), set()) is None
    assert r.receive(SRC, Signal(0, SRC, OWN, 1, b""), set()) is not None  # forgotten


def test_next_hop_is_the_xor_closest_connected_peer() -> None:
    assert next_hop(TARGET, {FAR, NEAR, SRC}, exclude=set()) == NEAR
    assert next_hop(TARGET, {FAR, NEAR}, exclude={NEAR}) == FAR
    assert next_hop(TARGET, set(), exclude=set()) is None
