"""The NAT lab's pure part: which namespace and address each peer gets, and the NAT rules."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from supervisor.natlab import (
    MAX_IPC_DIR_CHARS,
    NatKind,
    ipc_directory,
    lab_tag,
    nat_ruleset,
    parse_kinds,
    plan,
)

DOC_RANGES = [ipaddress.ip_network(n) for n in ("198.51.100.0/24", "203.0.113.0/24")]


def test_parse_kinds_modes_and_lists() -> None:
    assert parse_kinds("eim", 3) == [NatKind.EIM] * 3
    assert parse_kinds("Symmetric", 2) == [NatKind.SYMMETRIC] * 2
    assert parse_kinds("mix", 3) == [NatKind.EIM, NatKind.SYMMETRIC, NatKind.EIM]
    assert parse_kinds("eim, wan ,symmetric", 3) == [NatKind.EIM, NatKind.WAN, NatKind.SYMMETRIC]
    with pytest.raises(ValueError, match="comma list"):
        parse_kinds("cone", 2)
    with pytest.raises(ValueError, match="2 kinds for 3 peers"):
        parse_kinds("eim,wan", 3)


def test_plan_gives_distinct_documentation_addresses() -> None:
    lab = plan("abcd1234", [NatKind.EIM, NatKind.WAN, NatKind.SYMMETRIC, NatKind.WAN])
    assert [h.index for h in lab.hosts] == [1, 2, 3, 4]
    addresses = [h.address for h in lab.hosts] + [h.public for h in lab.hosts if h.nat_netns]
    assert len(set(addresses)) == len(addresses)
    for address in addresses:
        assert any(ipaddress.ip_address(address) in net for net in DOC_RANGES), address
    wan = [h for h in lab.hosts if h.kind is NatKind.WAN]
    assert all(h.nat_netns is None and h.public == h.address for h in wan)
    assert lab.host(3).nat_netns == "dhtlab-abcd1234-n3"
    assert len(set(lab.namespaces)) == len(lab.namespaces) == 1 + 4 + 2
    assert all(n.startswith("dhtlab-abcd1234-") for n in lab.namespaces)


def test_plan_refuses_more_homes_than_the_subnet_holds() -> None:
    with pytest.raises(ValueError, match="at most 63"):
        plan("t", [NatKind.EIM] * 64)


def test_nat_rules_differ_only_in_port_randomisation() -> None:
    eim, sym = nat_ruleset(NatKind.EIM), nat_ruleset(NatKind.SYMMETRIC)
    assert 'oifname "wan0" masquerade\n' in eim
    assert 'oifname "wan0" masquerade fully-random\n' in sym


def test_lab_tag_is_stable_per_directory(tmp_path: object) -> None:
    assert lab_tag("/tmp/a") == lab_tag("/tmp/a") != lab_tag("/tmp/b")  # type: ignore[arg-type]


def test_ipc_sockets_move_to_a_short_directory_when_the_path_would_be_too_long() -> None:
    assert ipc_directory(Path("/tmp/state/c/lab"), "t1") == Path("/tmp/state/c/lab/ipc")
    deep = Path("/tmp") / ("x" * MAX_IPC_DIR_CHARS) / "lab"
    short = ipc_directory(deep, "t1")
    assert short.name == "dhtlab-t1"
    assert len(str(short / "63.ctl")) < 107
