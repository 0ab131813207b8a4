"""dhtctl input: values from the command line, a file or stdin; keys as text or hex.

A command line is not always text: Python hands undecodable argv bytes over as lone surrogates
(PEP 383), which msgpack cannot encode. Here every input becomes exact bytes or a
``UsageFailure`` (exit 2) that says what to do instead:

- a VALUE argument is taken byte for byte (``os.fsencode``), ``-`` reads stdin, ``--file PATH``
  reads a file; exactly one of them;
- a KEY is UTF-8 text (hashed with SHA-256 by the node), or with ``--key-hex`` the hex of
  arbitrary bytes (hashed here, then addressed as a raw DHT key).
"""

from __future__ import annotations

import hashlib
import os
import sys
from typing import BinaryIO

from control.cli_options import UsageFailure
from control.limits import MAX_VALUE_BYTES

STDIN = "-"


def read_value(value: str | None, file: str | None, stdin: BinaryIO | None = None) -> bytes:
    """The value bytes from exactly one of: the VALUE argument, ``-`` (stdin), ``--file``."""
    if (value is None) == (file is None):
        raise UsageFailure("give the value as VALUE, as - (stdin) or with --file PATH (one)")
    if file is not None:
        try:
            with open(file, "rb") as f:
                data = f.read(MAX_VALUE_BYTES + 1)
        except OSError as exc:
            raise UsageFailure(f"cannot read {file}: {exc.strerror or exc}") from None
    elif value == STDIN:
        data = (stdin or sys.stdin.buffer).read(MAX_VALUE_BYTES + 1)
    else:
        assert value is not None
        data = os.fsencode(value)
    if len(data) > MAX_VALUE_BYTES:
        raise UsageFailure(f"the value is larger than {MAX_VALUE_BYTES} bytes")
    return data


def text_key(key: str) -> str:
    """A key given as text: it must be valid UTF-8 (else say how to give binary keys)."""
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageFailure(
            f"key {os.fsencode(key)!r} is not valid UTF-8: give binary keys in hex with --key-hex"
        ) from None
    if not key:
        raise UsageFailure("the key must not be empty")
    return key


def hex_bytes(text: str, what: str = "key") -> bytes:
    try:
        data = bytes.fromhex(text.strip())
    except ValueError:
        raise UsageFailure(f"--key-hex: {what} {text!r} is not hexadecimal") from None
    if not data:
        raise UsageFailure(f"the {what} must not be empty")
    return data


def hex_key_address(text: str) -> str:
    """The DHT address of a key given in hex: SHA-256 of its bytes, as 64 hex digits."""
    return hashlib.sha256(hex_bytes(text)).hexdigest()
