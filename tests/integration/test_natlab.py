"""A real NAT lab: a peer behind each NAT kind learns its server-reflexive address from the lab's
coturn through the real WebRTC transport, and teardown leaves nothing (namespaces, coturn, the
root namespace's nftables ruleset unchanged). Needs root, iproute2, nftables and coturn: skips
without them, fails under ``CI=true``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor import natlab
from tests.support.natlab import leftovers, require_lab, root_ruleset, run_in

GATHER = """
import asyncio, json, sys
from node.transport.webrtc import WebRTCTransport
async def main():
    async with WebRTCTransport([sys.argv[1]], json.loads(sys.argv[2])) as t:
        offer = await t.create_offer()
        print(offer.sdp)
        offer.cancel()
asyncio.run(main())
"""


def candidates(sdp: str) -> list[tuple[str, str, int]]:
    """(type, address, port) of every candidate line of an SDP."""
    found = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            parts = line.split()
            found.append((parts[parts.index("typ") + 1], parts[4], int(parts[5])))
    return found


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[natlab.Lab]:
    require_lab()
    kinds = [natlab.NatKind.EIM, natlab.NatKind.SYMMETRIC, natlab.NatKind.WAN]
    built = natlab.build(natlab.plan(natlab.lab_tag(tmp_path), kinds), tmp_path)
    try:
        yield built
    finally:
        natlab.teardown(tmp_path)


def gather(lab: natlab.Lab, index: int) -> list[tuple[str, str, int]]:
    host = lab.plan.host(index)
    code = f"{GATHER}\n"
    argv_code = f"import sys; sys.argv = ['x', {host.address!r}, {json.dumps(lab.ice_servers)!r}]\n"
    return candidates(run_in(host.netns, argv_code + code))


def test_each_nat_kind_gets_the_expected_candidates(lab: natlab.Lab) -> None:
    eim = gather(lab, 1)
    host = next(c for c in eim if c[0] == "host")
    srflx = next(c for c in eim if c[0] == "srflx")
    relay = next(c for c in eim if c[0] == "relay")
    assert host[1] == lab.plan.host(1).address
    assert srflx[1:] == (lab.plan.host(1).public, host[2])  # masquerade kept the port
    assert relay[1] == natlab.WAN_ADDRESS

    sym = gather(lab, 2)
    assert {c[0] for c in sym} == {"host", "srflx", "relay"}
    assert next(c for c in sym if c[0] == "srflx")[1] == lab.plan.host(2).public

    wan = gather(lab, 3)
    types = [c[0] for c in wan]
    assert "relay" in types
    assert all(c[1] in (lab.plan.host(3).address, natlab.WAN_ADDRESS) for c in wan)


def test_teardown_leaves_nothing(tmp_path: Path) -> None:
    require_lab()
    before = root_ruleset()
    tag = natlab.lab_tag(tmp_path)
    kinds = natlab.parse_kinds("mix", 3)
    natlab.build(natlab.plan(tag, kinds), tmp_path)
    try:
        assert len(leftovers(tag, tmp_path)) == 1 + 3 * 2 + 1  # namespaces and coturn
    finally:
        assert natlab.teardown(tmp_path) is True
    assert leftovers(tag, tmp_path) == []
    assert root_ruleset() == before
    assert natlab.teardown(tmp_path) is False  # idempotent


def test_a_failed_build_removes_what_it_made(tmp_path: Path) -> None:
    require_lab()
    tag = natlab.lab_tag(tmp_path)
    lab_plan = natlab.plan(tag, [natlab.NatKind.EIM])
    natlab.run_cmd(["ip", "netns", "add", lab_plan.host(1).netns])  # a clash on the way
    with pytest.raises(natlab.LaunchError):
        natlab.build(lab_plan, tmp_path)
    assert leftovers(tag, tmp_path) == []
