"""Usage errors of the typer entry points (orchestrate.py, python -m supervisor, dht-signaling):
exit 2 with one line on stderr naming the problem, and nothing started."""

from __future__ import annotations

import pytest

import orchestrate
from signaling import __main__ as signaling_main
from supervisor import __main__ as supervisor_main

USAGE = 2


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["up", "--peers", "0"], ["--peers", "positive integer"]),
        (["up", "--peers", "1001"], ["--peers", "at most 1000"]),
        (["all", "--peers", "x"], ["--peers", "positive integer"]),
        (["up"], ["up needs --peers N"]),
        (["all", "--backend", "process"], ["all needs --peers N"]),
        (["scale"], ["scale needs --peers M"]),
        (["up", "--peers", "2", "--backend", "podman"], ["--backend", "swarm, auto"]),
        (["up", "--peers", "2", "--timeout", "0"], ["--timeout", "positive number"]),
        (["up", "--peers", "2", "--front-port", "70000"], ["--front-port", "0..65535"]),
        (["down", "--cluster", "../etc"], ["--cluster", "invalid cluster name"]),
        (["logs", "--node", "-1"], ["--node", "positive integer"]),
        (["status", "--bogus"], ["No such option: --bogus"]),
        (["launch"], ["No such command 'launch'"]),
        ([], ["Missing command"]),
    ],
)
def test_orchestrate_usage_errors(
    argv: list[str], needles: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert orchestrate.main(argv) == USAGE
    out = capsys.readouterr()
    assert out.out == ""
    lines = out.err.splitlines()
    assert len(lines) == 1, out.err
    assert lines[0].startswith("orchestrate.py: error: ")
    for needle in needles:
        assert needle in lines[0]


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["run"], ["Missing option '--peers'"]),
        (["run", "--peers", "0"], ["--peers", "positive integer"]),
        (["run", "--peers", "2", "--backend", "podman"], ["--backend", "swarm, memory"]),
        (["run", "--peers", "2", "--cluster", "a b"], ["--cluster", "invalid cluster name"]),
        (["run", "--peers", "2", "--log-level", "loud"], ["--log-level", "log level"]),
        (["run", "--peers", "2", "--events-port", "-5"], ["--events-port", "0..65535"]),
        (["serve"], ["No such command 'serve'"]),
    ],
)
def test_supervisor_usage_errors(
    argv: list[str], needles: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert supervisor_main.main(argv) == USAGE
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("python -m supervisor: error: ")
    for needle in needles:
        assert needle in lines[0]


def test_signaling_usage_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert signaling_main.main(["--port", "99999"]) == USAGE
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "dht-signaling: error: Invalid value for '--port': must be a port number "
        "(an integer in 0..65535), got 99999"
    ]


@pytest.mark.parametrize(
    ("main", "argv", "first"),
    [
        (orchestrate.main, ["--help"], "Usage: orchestrate.py [OPTIONS] COMMAND [ARGS]..."),
        (orchestrate.main, ["up", "-h"], "Usage: orchestrate.py up [OPTIONS]"),
        (supervisor_main.main, ["run", "--help"], "Usage: python -m supervisor run [OPTIONS]"),
        (signaling_main.main, ["-h"], "Usage: dht-signaling [OPTIONS]"),
    ],
)
def test_help_is_one_style(
    main: object, argv: list[str], first: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert callable(main)
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == first
    assert "-h, --help" in out
    assert "--install-completion" not in out


def test_auto_backend_is_process_for_browser_peers_and_the_lab(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With a Docker engine answering, auto still picks the process backend where only it runs
    (browser peers, --lab nat) — and asks no engine for it; otherwise auto asks the engine."""
    from supervisor import lifecycle
    from supervisor.spec import Backend

    asked: list[bool] = []

    def engine() -> bool:
        asked.append(True)
        return True

    monkeypatch.setattr(lifecycle, "docker_available", engine)
    assert orchestrate._backend_for("auto", process_only=True) is Backend.PROCESS
    assert asked == []
    assert orchestrate._backend_for("auto", process_only=False) is Backend.DOCKER
    assert asked == [True]
    assert orchestrate._backend_for("docker", process_only=True) is Backend.DOCKER
