"""``python -m node.sim``: one JSON report; bad arguments exit 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from node.sim.__main__ import main, percentile, run


def test_report_fields(capsys: pytest.CaptureFixture[str], sim_seed: int) -> None:
    capsys.readouterr()  # the seed line printed by the fixture
    assert main(["--nodes", "40", "--lookups", "30", "--churn", "0.1", "--seed", str(sim_seed),
                 "--keys", "10", "--wire", "--loss", "0.0"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    report = json.loads(out)
    assert out.count("\n") == 1
    assert report["nodes"] == 40
    assert report["wire"] is True
    assert report["bootstrap"]["virtual_s"] > 0
    assert report["bootstrap"]["wall_s"] > 0
    assert report["churn"] == {"fraction": 0.1, "killed": 4, "alive": 36}
    stores = report["stores"]
    assert stores["count"] == 10
    assert stores["ok"] == 10
    assert sum(stores["acks"]["histogram"].values()) == 10
    assert stores["acks"]["min"] <= stores["acks"]["p50"] <= stores["acks"]["max"]
    lk = report["lookups"]
    assert lk["count"] == 30
    assert lk["get_success_rate"] == 1.0
    assert 1 <= lk["hops"]["p50"] <= lk["hops"]["p90"]
    assert lk["messages_per_lookup"]["mean"] >= lk["requests_per_lookup"]["mean"] >= 1


def test_same_seed_same_report() -> None:
    a, b = run(30, 10, seed=5, keys=5), run(30, 10, seed=5, keys=5)
    for r in (a, b):
        for section in ("bootstrap", "stores", "lookups"):
            r[section].pop("wall_s", None)
    assert a == b


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--nodes", "0"],
        ["--nodes", "x"],
        ["--nodes", "5", "--churn", "1.0"],
        ["--nodes", "5", "--loss", "-0.1"],
        ["--nodes", "5", "--lookups", "-1"],
        ["--nodes", "5", "--bogus"],
    ],
)
def test_bad_arguments_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m node.sim: error: ")
    assert err.count("\n") == 1


def test_module_entry_point() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "node.sim", "--nodes", "10", "--lookups", "5", "--keys", "2"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["lookups"]["count"] == 5
    bad = subprocess.run(
        [sys.executable, "-m", "node.sim", "--nodes", "-3"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert bad.returncode == 2
    assert "--nodes" in bad.stderr
    assert bad.stdout == ""


def test_percentile() -> None:
    assert percentile([], 50) == 0.0
    assert percentile([3, 1, 2], 50) == 2.0
    assert percentile(list(range(1, 11)), 90) == 9.0
    assert percentile([7], 0) == 7.0


def test_settle_runs_a_refresh_round_after_the_join() -> None:
    raw = run(80, 5, seed=3, keys=3)
    settled = run(80, 5, seed=3, keys=3, settle=True)
    assert raw["bootstrap"]["settled"] is False
    assert settled["bootstrap"]["settled"] is True
    # one refresh interval (15 min) and the refresh lookups on top of the join
    assert settled["bootstrap"]["virtual_s"] >= raw["bootstrap"]["virtual_s"] + 900.0
    assert settled["messages_sent"] > raw["messages_sent"]
