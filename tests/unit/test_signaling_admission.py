"""``signaling.admission``: registration limits and the ranking that keeps fakes out."""

from __future__ import annotations

import random

import pytest

from node.ids import NodeId
from signaling.admission import Admission, AdmissionSettings


def ids(n: int, seed: int) -> list[NodeId]:
    rng = random.Random(seed)
    return [NodeId(rng.randbytes(32)) for _ in range(n)]


def setup(fakes: int, honest: int) -> tuple[Admission, list[NodeId], list[NodeId]]:
    adm = Admission(AdmissionSettings())
    fake, good = ids(fakes, 1), ids(honest, 2)
    for node_id in fake + good:
        adm.registered(node_id)
    for i, node_id in enumerate(good):  # earlier joiners dialed them: they answered
        adm.offer(node_id, f"c{i}", 0.0)
        adm.answer(node_id, f"c{i}", 0.5)
    return adm, fake, good


def test_proven_registrations_come_first_and_untested_get_a_share() -> None:
    adm, fake, good = setup(500, 6)
    newcomer = ids(1, 3)[0]
    picked = adm.pick(newcomer, [*fake, *good, newcomer], 16, 1.0)
    assert len(picked) == 16
    assert set(picked[:6]) == set(good)  # all the proven ones, first
    assert set(picked[6:]) <= set(fake)  # then untested ones fill the rest
    assert newcomer not in picked


def test_reserved_share_for_untested_when_many_are_proven() -> None:
    adm, fake, good = setup(100, 40)
    picked = adm.pick(ids(1, 3)[0], [*fake, *good], 16, 1.0)
    assert sum(p in good for p in picked) == 12
    assert sum(p in fake for p in picked) == 4  # new registrations still get tried


def test_asking_again_gives_different_untested_candidates() -> None:
    adm, fake, good = setup(500, 2)
    me = ids(1, 3)[0]
    first = adm.pick(me, [*fake, *good], 16, 1.0)
    second = adm.pick(me, [*fake, *good], 16, 2.0)
    assert set(first[:2]) == set(second[:2]) == set(good)  # proven ones are handed again
    assert not set(first[2:]) & set(second[2:])
    much_later = adm.pick(me, [*fake, *good], 16, 100.0)  # after rehand_s: the closest again
    assert much_later == first


def test_registrations_that_never_answer_become_suspects_and_are_handed_last() -> None:
    adm, fake, _ = setup(20, 0)
    for round_ in range(2):
        for i, node_id in enumerate(fake[:10]):
            adm.offer(node_id, f"r{round_}-{i}", float(round_))
    adm.answer(fake[0], "r1-0", 1.5)  # one of them answers after all: it is proven again
    adm.expire(100.0)
    assert [adm.suspect(f) for f in fake[:10]] == [False] + [True] * 9
    assert adm.stats.offers_unanswered == 19
    picked = adm.pick(ids(1, 3)[0], fake, 20, 100.0)
    assert set(picked[:11]) == {fake[0], *fake[10:]}
    assert set(picked[11:]) == set(fake[1:10])  # suspects only as the last resort
    assert adm.stats.handed_suspects == 9


def test_registration_rate_limits_per_address_and_global() -> None:
    adm = Admission(
        AdmissionSettings(
            register_rate_per_addr_s=1.0, register_burst_per_addr=5,
            register_rate_global_s=10.0, register_burst_global=8,
        )
    )  # fmt: skip
    assert [adm.may_register("a", 0.0) for _ in range(6)] == [True] * 5 + [False]
    assert [adm.may_register("b", 0.0) for _ in range(4)] == [True] * 3 + [False]  # global
    assert adm.may_register("a", 1.0)  # refilled
    assert adm.stats.registrations_refused == 2


def test_settings_from_env() -> None:
    s = AdmissionSettings.from_env({"SIGNALING_REGISTER_RATE": "3", "SIGNALING_REGISTER_BURST": ""})
    assert s.register_rate_per_addr_s == 3.0
    assert s.register_burst_per_addr == AdmissionSettings().register_burst_per_addr
    for bad in ("x", "0", "-1"):
        with pytest.raises(ValueError, match="SIGNALING_REGISTER_RATE_GLOBAL"):
            AdmissionSettings.from_env({"SIGNALING_REGISTER_RATE_GLOBAL": bad})
