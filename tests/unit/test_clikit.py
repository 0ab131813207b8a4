"""node.clikit: the shared parsers and the one way a CLI fails (exit 2, one line)."""

from __future__ import annotations

from typing import Annotated

import pytest
import typer

from node import clikit

# parser -> [(input, parsed)]
ACCEPTS: list[tuple[clikit.Parser[object], list[tuple[object, object]]]] = [
    (clikit.positive_int, [("7", 7), (3, 3)]),
    (clikit.port, [("0", 0), (" 65535 ", 65535)]),
    (clikit.optional_port, [("", None), ("80", 80)]),
    (clikit.positive_float, [("0.5", 0.5)]),
    (clikit.fraction, [("0", 0.0)]),
    (clikit.log_level, [("debug", "DEBUG")]),
    (clikit.cluster_name, [("a.b_c-1", "a.b_c-1")]),
    (clikit.one_of(("docker", "auto")), [("AUTO", "auto")]),
    (clikit.peer_count(5), [("5", 5)]),
]
ENDPOINTS = ["tcp://127.0.0.1:5555", "tcp://*:0", "tcp://[::1]:7", "ipc:///tmp/x"]
# parser -> (what the message says, [inputs])
REJECTS: list[tuple[clikit.Parser[object], str, list[object]]] = [
    (clikit.positive_int, "positive integer", ["0", "1.5", "abc", True]),
    (clikit.port, "0..65535", ["70000", "-1", "x"]),
    (clikit.positive_float, "positive number", ["0", "nan"]),
    (clikit.fraction, "[0, 1)", ["1"]),
    (clikit.log_level, "log level", ["loud"]),
    (clikit.cluster_name, "invalid cluster name", ["../x", ""]),
    (clikit.endpoint, "endpoint", ["127.0.0.1:5555"]),
    (clikit.endpoint, "out of range", ["tcp://h:99999"]),
    (clikit.one_of(("docker", "auto")), "docker, auto", ["podman"]),
    (clikit.peer_count(5), "at most 5", ["6"]),
]


@pytest.mark.parametrize(
    ("parse", "good", "expected"),
    [(parse, good, want) for parse, rows in ACCEPTS for good, want in rows]
    + [(clikit.endpoint, e, e) for e in ENDPOINTS],
)
def test_parsers_accept(parse: clikit.Parser[object], good: object, expected: object) -> None:
    assert parse(good) == expected


@pytest.mark.parametrize(
    ("parse", "bad", "needle"),
    [(parse, bad, needle) for parse, needle, bads in REJECTS for bad in bads],
)
def test_parsers_reject(parse: clikit.Parser[object], bad: object, needle: str) -> None:
    with pytest.raises(typer.BadParameter) as info:
        parse(bad)
    assert needle in info.value.format_message()


def test_from_env_names_the_variable() -> None:
    env = {"A": " ", "B": "4000", "C": "x"}
    assert clikit.from_env(env, ["A", "B"], clikit.port) == 4000
    assert clikit.from_env(env, ["A", "Z"], clikit.port) is None
    with pytest.raises(clikit.UsageFailure) as info:
        clikit.from_env(env, ["C", "B"], clikit.port)
    assert info.value.format_message().startswith("C: ")


def _app() -> typer.Typer:
    app = clikit.make_app("demo", "A demo.")

    @app.command()
    def up(
        peers: Annotated[int | None, typer.Option(parser=clikit.positive_int)] = None,
    ) -> int:
        if peers is None:
            clikit.usage_error("up needs --peers N")
        return 0 if peers < 10 else 1

    @app.command()
    def stop() -> None:
        raise typer.Exit(3)

    return app


@pytest.mark.parametrize(
    ("argv", "code", "needle"),
    [
        (["up", "--peers", "0"], 2, "demo: error: Invalid value for '--peers'"),
        (["up"], 2, "demo: error: up needs --peers N"),
        (["up", "--bogus"], 2, "No such option: --bogus"),
        (["nope"], 2, "No such command"),
        ([], 2, "Missing command"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    argv: list[str], code: int, needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert clikit.run(_app(), argv, prog="demo") == code
    out = capsys.readouterr()
    assert out.out == ""
    lines = out.err.splitlines()
    assert len(lines) == 1
    assert needle in lines[0]


def test_exit_codes_of_commands(capsys: pytest.CaptureFixture[str]) -> None:
    app = _app()
    assert clikit.run(app, ["up", "--peers", "3"], prog="demo") == 0
    assert clikit.run(app, ["up", "--peers", "30"], prog="demo") == 1
    assert clikit.run(app, ["stop"], prog="demo") == 3
    assert capsys.readouterr().err == ""


def test_help_style(capsys: pytest.CaptureFixture[str]) -> None:
    assert clikit.run(_app(), ["-h"], prog="demo") == 0
    out = capsys.readouterr().out
    assert out.startswith("Usage: demo [OPTIONS] COMMAND")
    assert "-h, --help" in out
    assert "--install-completion" not in out
