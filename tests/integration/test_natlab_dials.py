"""WebRTC dials between NAT lab namespaces: the path each NAT pairing takes, and what a dial
says when no path exists (no TURN configured, or the TURN server stopped). Each side runs in its
own namespace (``bench.nat_dial``). Needs root, iproute2, nftables and coturn: skips without
them, fails under ``CI=true``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.nat_dial import dial_pair
from supervisor import natlab
from tests.support.natlab import leftovers, require_lab

pytestmark = pytest.mark.timeout(120)

EIM, SYM, WAN = natlab.NatKind.EIM, natlab.NatKind.SYMMETRIC, natlab.NatKind.WAN


def build(directory: Path, kinds: list[natlab.NatKind], turn: bool = True) -> natlab.Lab:
    require_lab()
    return natlab.build(natlab.plan(natlab.lab_tag(directory), kinds, turn), directory)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[natlab.Lab]:
    directory = tmp_path_factory.mktemp("lab")
    built = build(directory, [EIM, SYM, WAN, EIM, SYM, WAN])
    try:
        yield built
    finally:
        natlab.teardown(directory)
        assert leftovers(built.plan.tag, directory) == []


def dial(lab: natlab.Lab, a: int, b: int, tmp: Path, timeout_s: float = 8.0) -> tuple[dict, dict]:
    ha, hb = lab.plan.host(a), lab.plan.host(b)
    offers, answers = dial_pair(
        ha.netns, ha.address, hb.netns, hb.address, tmp, lab.ice_servers, timeout_s
    )
    assert len(offers) == len(answers) == 1, (offers, answers)
    return offers[0], answers[0]


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (1, 4, "srflx"),  # EIM - EIM: hole punched
        (2, 5, "relay"),  # symmetric - symmetric: only the relay
        (4, 2, "relay"),  # EIM - symmetric: the EIM side cannot guess the symmetric mapping
        (3, 2, "srflx"),  # wan - symmetric: the wan host answers whatever port arrives
        (1, 3, "srflx"),  # EIM - wan
        (3, 6, "host"),  # wan - wan: nothing translated
    ],
)
def test_each_pairing_takes_the_expected_path(
    lab: natlab.Lab, a: int, b: int, expected: str, tmp_path: Path
) -> None:
    offer, answer = dial(lab, a, b, tmp_path)
    assert offer["ok"], offer
    assert answer["ok"], answer
    assert (offer["path"], answer["path"]) == (expected, expected)


def test_symmetric_nats_without_turn_fail_and_say_why(tmp_path: Path) -> None:
    lab = build(tmp_path / "lab", [SYM, SYM], turn=False)
    try:
        assert lab.ice_servers == [lab.stun_url]
        offer, answer = dial(lab, 1, 2, tmp_path / "dial", timeout_s=4.0)
    finally:
        natlab.teardown(tmp_path / "lab")
    for side in (offer, answer):
        assert not side["ok"]
        assert "local candidates: host, srflx" in side["error"], side
        assert "no TURN server is configured" in side["error"], side


def test_a_stopped_turn_server_is_named_in_the_failure(tmp_path: Path) -> None:
    lab = build(tmp_path / "lab", [SYM, SYM])
    try:
        lab.stop_turn()
        offer, answer = dial(lab, 1, 2, tmp_path / "dial", timeout_s=4.0)
    finally:
        natlab.teardown(tmp_path / "lab")
    for side in (offer, answer):
        assert not side["ok"]
        assert "local candidates: host;" in side["error"], side  # no srflx, no relay gathered
        assert "the TURN server gave no relay candidate" in side["error"], side
