"""dhtctl input: values from argv/stdin/--file, keys as UTF-8 or --key-hex; bad input exits 2."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from control.cli import app
from control.cli_input import hex_key_address, read_value, text_key
from control.cli_options import UsageFailure


def test_values_from_argument_stdin_and_file(tmp_path: Path) -> None:
    assert read_value("abc", None) == b"abc"
    assert read_value(os.fsdecode(b"\xff\xfe"), None) == b"\xff\xfe"  # byte for byte
    assert read_value("-", None, io.BytesIO(b"\x00bin")) == b"\x00bin"
    f = tmp_path / "v"
    f.write_bytes(b"\x01\x02")
    assert read_value(None, str(f)) == b"\x01\x02"
    for bad in [(None, None), ("x", str(f)), (None, str(tmp_path / "missing"))]:
        with pytest.raises(UsageFailure):
            read_value(*bad)


def test_keys_text_or_hex() -> None:
    assert text_key("ok") == "ok"
    with pytest.raises(UsageFailure, match="--key-hex"):
        text_key(os.fsdecode(b"\xff"))
    assert hex_key_address("00ff") == hashlib.sha256(b"\x00\xff").hexdigest()
    with pytest.raises(UsageFailure):
        hex_key_address("zz")


@pytest.mark.parametrize(
    "argv",
    [
        ["store", os.fsdecode(b"k\xff"), "v"],
        ["store", "k"],
        ["store", "--key-hex", "nothex", "v"],
        ["put", "v"],
        ["put", "--mutable", "--immutable", "n", "v"],
        ["put", "--immutable", "a", "b"],
        ["put", "--immutable", "--seq", "3", "v"],
        ["put", "--mutable", "n", "v", "--seq", "-1"],
        ["get"],
    ],
)
def test_usage_errors_exit_2_without_a_traceback(argv: list[str]) -> None:
    r = CliRunner().invoke(app, [*argv, "--endpoint", "tcp://127.0.0.1:1"])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    assert "CodecError" not in r.output
