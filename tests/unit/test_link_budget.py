"""The link budget: which links close (pure; times are passed in)."""

from __future__ import annotations

from node.codec import encode
from node.connections import is_keepalive
from node.ids import NodeId
from node.link_budget import Budget, LinkUse, links_to_close
from node.messages import FindNode, Ping, Pong

OWN = NodeId(bytes(32))


def nid(first: int) -> NodeId:
    """An id whose XOR distance to OWN grows with ``first``."""
    return NodeId(bytes([first]) + bytes(31))


def test_idle_links_close_beyond_the_closest_and_the_busy() -> None:
    links = [LinkUse(nid(i), last_used=0.0) for i in range(1, 11)]  # all idle since t=0
    links[9] = LinkUse(nid(10), last_used=95.0)  # the farthest, used 5 s ago
    busy = {nid(9)}
    close = links_to_close(links, OWN, 100.0, Budget(64, 3, 30.0), lambda p: p in busy)
    # kept: the 3 closest (1, 2, 3), the busy one (9), the recently used one (10)
    assert sorted(close) == [nid(i) for i in (4, 5, 6, 7, 8)]


def test_nothing_closes_for_idleness_when_idle_is_off() -> None:
    links = [LinkUse(nid(i), last_used=0.0) for i in range(1, 11)]
    assert links_to_close(links, OWN, 1e6, Budget(64, 1, 0.0), lambda p: False) == []


def test_the_cap_closes_least_recently_used_but_never_a_busy_link() -> None:
    links = [LinkUse(nid(i), last_used=float(i)) for i in range(1, 7)]
    close = links_to_close(links, OWN, 10.0, Budget(3, 8, 0.0), lambda p: p == nid(1))
    assert close == [nid(2), nid(3), nid(4)]  # nid(1) is the oldest but busy


def test_idle_and_cap_together_never_close_more_than_needed() -> None:
    links = [LinkUse(nid(i), last_used=100.0 if i > 2 else 0.0) for i in range(1, 7)]
    close = links_to_close(links, OWN, 100.0, Budget(3, 0, 30.0), lambda p: False)
    assert close[:2] == [nid(1), nid(2)]  # idle first
    assert len(close) == 3  # then one more for the cap of 3


def test_keepalive_is_recognised_on_the_wire_bytes() -> None:
    assert is_keepalive(encode(Ping(7)))
    assert is_keepalive(encode(Pong(2**63)))
    assert not is_keepalive(encode(FindNode(1, nid(3))))
    assert not is_keepalive(b"")
