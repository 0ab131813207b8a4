"""node.clikit: the shared parsers and the one way a CLI fails (exit 2, one line)."""

from __future__ import annotations

from typing import Annotated

import pytest
import typer

from node import clikit


@pytest.mark.parametrize(
    ("parse", "good", "expected"),
    [
        (clikit.positive_int, "7", 7),
        (clikit.positive_int, 3, 3),
        (clikit.port, "0", 0),
        (clikit.port, " 65535 ", 65535),
        (clikit.optional_port, "", None),
        (clikit.optional_port, "80", 80),
        (clikit.positive_float, "0.5", 0.5),
        (clikit.fraction, "0", 0.0),
        (clikit.log_level, "debug", "DEBUG"),
        (clikit.cluster_name, "a.b_c-1", "a.b_c-1"),
        (clikit.endpoint, "tcp://127.0.0.1:5555", "tcp://127.0.0.1:5555"),
        (clikit.endpoint, "tcp://*:0", "tcp://*:0"),
        (clikit.endpoint, "tcp://[::1]:7", "tcp://[::1]:7"),
        (clikit.endpoint, "ipc:///tmp/x", "ipc:///tmp/x"),
        (clikit.peer_count(5), "5", 5),
    ],
)
def test_parsers_accept(parse: clikit.Parser[object], good: object, expected: object) -> None:
    assert parse(good) == expected


@pytest.mark.parametrize(
    ("parse", "bad", "needle"),
    [
        (clikit.positive_int, "0", "positive integer"),
        (clikit.positive_int, "1.5", "positive integer"),
        (clikit.positive_int, "abc", "positive integer"),
        (clikit.positive_int, True, "positive integer"),
        (clikit.port, "70000", "0..65535"),
        (clikit.port, "-1", "0..65535"),
        (clikit.port, "x", "0..65535"),
        (clikit.positive_float, "0", "positive number"),
        (clikit.positive_float, "nan", "positive number"),
        (clikit.fraction, "1", "[0, 1)"),
        (clikit.log_level, "loud", "log level"),
        (clikit.cluster_name, "../x", "invalid cluster name"),
        (clikit.cluster_name, "", "invalid cluster name"),
        (clikit.endpoint, "127.0.0.1:5555", "endpoint"),
        (clikit.endpoint, "tcp://h:99999", "out of range"),
        (clikit.peer_count(5), "6", "at most 5"),
    ],
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
