"""The node process's parts that need no network: the ``dht-node`` CLI and the control adapter."""

from __future__ import annotations

import inspect

import pytest

from control.commands import COMMAND_LIST, HELP
from control.errors import CommandError, ErrorCode
from node.errors import BadArgument, Failure, OperationError
from node.ids import IdError
from node.runtime import TooLarge
from peer import __main__ as dht_node
from peer.control_adapter import FAILURE_CODES, ControlAdapter, command_errors


def exit_code(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        dht_node.main(argv)
    return int(info.value.code or 0)


def test_help_exits_0_and_lists_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(["--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--signaling", "--data-dir", "--ice-address", "--control", "--k", "--alpha"):
        assert flag in out


@pytest.mark.parametrize(
    "argv",
    [["--k", "0"], ["--alpha", "x"], ["--control", "nonsense"], ["--log-level", "LOUD"], ["-z"]],
)
def test_bad_flags_are_usage_errors_on_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert exit_code(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("dht-node: error: ")
    assert err.count("\n") == 1


def test_a_bad_environment_value_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DHT_MAX_CONNECTIONS", "-3")
    assert exit_code([]) == 2
    assert "DHT_MAX_CONNECTIONS" in capsys.readouterr().err


def test_the_adapter_implements_every_command_with_its_arguments() -> None:
    for spec in COMMAND_LIST:
        if spec is HELP:
            continue
        assert spec.name in vars(ControlAdapter), f"{spec.name} falls back to the protocol stub"
        method = getattr(ControlAdapter, spec.name)
        params = inspect.signature(method).parameters
        assert [p for p in params if p != "self"] == [a.name for a in spec.args], spec.name
        for arg in spec.args:
            assert params[arg.name].kind is inspect.Parameter.KEYWORD_ONLY


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (TooLarge("value of 40000 bytes exceeds 32768"), ErrorCode.TOO_LARGE),
        (BadArgument("port must be in 1..65535"), ErrorCode.BAD_ARGS),
        (IdError("a node id is hexadecimal"), ErrorCode.BAD_ARGS),
        *((OperationError(f, "x"), FAILURE_CODES[f]) for f in Failure),
    ],
)
def test_node_errors_map_to_control_codes(error: Exception, code: ErrorCode) -> None:
    with pytest.raises(CommandError) as info, command_errors():
        raise error
    assert info.value.code == code
    assert info.value.message == str(error)


def test_other_errors_are_not_translated() -> None:
    with pytest.raises(RuntimeError), command_errors():
        raise RuntimeError("a bug stays a bug (the server answers internal)")
