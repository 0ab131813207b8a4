"""Pure tests of the control protocol: envelope, argument validation, codec, replies, rendering."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from control.client import parse_reply
from control.codec import CodecError, pack, unpack
from control.errors import CommandError, ProtocolError, RemoteError
from control.render import format_event, table, to_json
from control.schema import (
    COMMANDS,
    MAX_STRING_BYTES,
    MAX_VALUE_BYTES,
    ErrorCode,
    error_reply,
    help_result,
    ok_reply,
    parse_request,
    request_id_of,
    validate_args,
)

NODE_ID = "ab" * 32


def schema_error(fn: Any, *args: Any) -> ErrorCode:
    with pytest.raises(CommandError) as err:
        fn(*args)
    return err.value.code


def test_parse_request_accepts_a_full_envelope() -> None:
    req = parse_request({"v": 1, "id": "x", "cmd": "get", "args": {"key": "k"}, "node": "all"})
    assert (req.id, req.cmd, dict(req.args), req.node) == ("x", "get", {"key": "k"}, "all")
    bare = parse_request({"v": 1, "cmd": "id"})
    assert (bare.id, dict(bare.args), bare.node) == (None, {}, None)


@pytest.mark.parametrize(
    ("obj", "code"),
    [
        ([1], ErrorCode.BAD_REQUEST),
        ({"cmd": "id"}, ErrorCode.BAD_REQUEST),
        ({"v": True, "cmd": "id"}, ErrorCode.BAD_REQUEST),
        ({"v": 2, "cmd": "id"}, ErrorCode.UNSUPPORTED_VERSION),
        ({"v": 1}, ErrorCode.BAD_REQUEST),
        ({"v": 1, "cmd": ""}, ErrorCode.BAD_REQUEST),
        ({"v": 1, "cmd": "id", "id": 1.5}, ErrorCode.BAD_REQUEST),
        ({"v": 1, "cmd": "id", "id": False}, ErrorCode.BAD_REQUEST),
        ({"v": 1, "cmd": "id", "args": "x"}, ErrorCode.BAD_REQUEST),
        ({"v": 1, "cmd": "id", "node": 0}, ErrorCode.BAD_REQUEST),
        ({"v": 1, "cmd": "id", "node": "some"}, ErrorCode.BAD_REQUEST),
    ],
)
def test_parse_request_rejects(obj: object, code: ErrorCode) -> None:
    assert schema_error(parse_request, obj) is code


def test_request_id_is_echoed_only_when_usable() -> None:
    assert request_id_of({"id": 7}) == 7
    assert request_id_of({"id": "a"}) == "a"
    assert request_id_of({"id": [1]}) is None
    assert request_id_of({"id": True}) is None
    assert request_id_of([1]) is None


def test_validate_args_normalises_and_fills_optional() -> None:
    assert validate_args(COMMANDS["ping"], {"node_id": NODE_ID.upper()}) == {"node_id": NODE_ID}
    assert validate_args(COMMANDS["announce"], {"topic": "t"}) == {
        "topic": "t",
        "port": None,
        "meta": None,
    }
    assert validate_args(COMMANDS["store"], {"key": "k", "value": bytearray(b"v")}) == {
        "key": "k",
        "value": b"v",
    }
    assert validate_args(COMMANDS["store"], {"key": "k" * MAX_STRING_BYTES, "value": b""})


@pytest.mark.parametrize(
    ("cmd", "args", "code"),
    [
        ("get", {}, ErrorCode.BAD_ARGS),
        ("get", {"key": b"k"}, ErrorCode.BAD_ARGS),
        ("get", {"key": "é" * 513}, ErrorCode.BAD_ARGS),  # 1026 UTF-8 bytes
        ("id", {"extra": 1}, ErrorCode.BAD_ARGS),
        ("ping", {"node_id": NODE_ID[:-1]}, ErrorCode.BAD_ARGS),
        ("ping", {"node_id": 5}, ErrorCode.BAD_ARGS),
        ("store", {"key": "k", "value": b"x" * (MAX_VALUE_BYTES + 1)}, ErrorCode.TOO_LARGE),
        ("announce", {"topic": "t", "port": -1}, ErrorCode.BAD_ARGS),
        ("announce", {"topic": "t", "port": "80"}, ErrorCode.BAD_ARGS),
        ("announce", {"topic": "t", "meta": {1: 2}}, ErrorCode.BAD_ARGS),
        ("join", {"topic": "t", "meta": {"big": b"x" * MAX_VALUE_BYTES}}, ErrorCode.TOO_LARGE),
        ("put_mutable", {"name": b"n", "value": b"v", "seq": -1}, ErrorCode.BAD_ARGS),
        ("put_mutable", {"name": b"n", "value": b"v", "cas": 1 << 64}, ErrorCode.BAD_ARGS),
        ("put_mutable", {"name": b"n", "value": b"v", "cas": True}, ErrorCode.BAD_ARGS),
        ("get_address", {"address": "k"}, ErrorCode.BAD_ARGS),
    ],
)
def test_validate_args_rejects(cmd: str, args: dict[str, Any], code: ErrorCode) -> None:
    assert schema_error(validate_args, COMMANDS[cmd], args) is code


def test_command_table_matches_the_contract() -> None:
    assert list(COMMANDS) == [
        "id", "peers", "rt", "dump", "ping", "find", "connect", "disconnect", "store", "get",
        "store_at", "put_mutable", "put_immutable", "get_address", "stats",
        "announce", "unannounce", "lookup", "join", "topics", "listen", "unlisten",
        "shutdown", "help",
    ]  # fmt: skip
    described = help_result()["commands"]
    assert [c["name"] for c in described] == list(COMMANDS)
    assert all(isinstance(c["help"], str) and c["help"] for c in described)


def test_codec_is_strict() -> None:
    assert unpack(pack({"a": b"\x00", "s": "é"})) == {"a": b"\x00", "s": "é"}
    for bad in (
        b"",
        b"\xc1",
        pack(1) + b"\x00",
        msgpack.packb({1: 2}),
        msgpack.packb(msgpack.ExtType(1, b"")),
    ):
        with pytest.raises(CodecError):
            unpack(bad)
    with pytest.raises(CodecError):
        unpack(pack("x" * 100), max_bytes=50)
    with pytest.raises(CodecError):
        pack(object())


@given(
    st.recursive(
        st.none() | st.integers(-(2**63), 2**64 - 1) | st.text() | st.binary(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
        max_leaves=20,
    )
)
def test_codec_roundtrip(obj: object) -> None:
    assert unpack(pack(obj)) == obj


def test_parse_reply() -> None:
    assert parse_reply(pack(ok_reply(3, {"x": 1})), 3) == {"x": 1}
    with pytest.raises(RemoteError) as err:
        parse_reply(pack(error_reply(3, ErrorCode.NOT_FOUND, "nope", {"k": 1})), 3)
    assert (err.value.code, err.value.message, err.value.details) == ("not_found", "nope", {"k": 1})
    for bad in (b"\xc1", pack([1]), pack({"ok": 1}), pack({"ok": True}), pack({"ok": False})):
        with pytest.raises(ProtocolError):
            parse_reply(bad)
    with pytest.raises(ProtocolError):
        parse_reply(pack(ok_reply(4, {})), 3)


def test_render_helpers() -> None:
    assert table(["a", "bb"], [[1, None], [True, 2.25]]) == "A    BB\n1    -\nyes  2.2"
    assert table(["x"], []) == "X\n(none)"
    assert to_json({"v": b"\xff"}, indent=None) == '{"v": {"base64": "/w==", "utf8": null}}'
    line = format_event("peer.connected", {"ts": 0, "index": 2, "node": NODE_ID, "peer": NODE_ID})
    assert line.endswith("[2] abababab peer.connected peer=abababab")
