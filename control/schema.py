"""The control-plane envelope: parsing requests, validating arguments, building replies.

The command table is ``control.commands`` (declared once, as ``NodeAPI``); the limits are
``control.limits``; this module holds the rules of the envelope. Nothing here does I/O.

Rules:
- A request is one msgpack map ``{"v": 1, "id": int|str|None, "cmd": str, "args": map}``; the
  supervisor front endpoint also reads ``"node": int >= 1 | "all"``. ``args`` may be absent.
- A reply is ``{"v", "id", "ok": True, "result": map}`` or
  ``{"v", "id", "ok": False, "error": {"code", "message", "details"?}}``.
- Validation raises ``CommandError(code, message)``; the server turns it into an error reply.
- Unknown argument names are refused (``bad_args``): a typo must not silently drop an argument.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from control.codec import encoded_size
from control.commands import COMMANDS, ArgSpec, ArgType, CommandSpec, help_result
from control.errors import CommandError, ErrorCode, error_body
from control.limits import (
    MAX_PORT,
    MAX_REQUEST_BYTES,
    MAX_STRING_BYTES,
    MAX_VALUE_BYTES,
    NODE_ID_HEX_CHARS,
    PROTOCOL_VERSION,
)

__all__ = [
    "COMMANDS",
    "MAX_REQUEST_BYTES",
    "MAX_STRING_BYTES",
    "MAX_VALUE_BYTES",
    "PROTOCOL_VERSION",
    "ArgSpec",
    "ArgType",
    "CommandSpec",
    "ErrorCode",
    "Request",
    "error_reply",
    "help_result",
    "is_node_id_hex",
    "ok_reply",
    "parse_request",
    "request_id_of",
    "validate_args",
]


@dataclass(frozen=True, slots=True)
class Request:
    """A request envelope that passed the envelope checks (args not yet validated)."""

    id: int | str | None
    cmd: str
    args: Mapping[str, Any]
    node: int | str | None = None


def request_id_of(obj: object) -> int | str | None:
    """The id to echo in a reply, even for a malformed request (``None`` when unusable)."""
    if isinstance(obj, Mapping):
        rid = obj.get("id")
        if isinstance(rid, int | str) and not isinstance(rid, bool):
            return rid
    return None


def parse_request(obj: object) -> Request:
    """Check the envelope of a decoded request. Raises ``CommandError``."""
    if not isinstance(obj, Mapping):
        raise CommandError(
            ErrorCode.BAD_REQUEST, f"request must be a map, got {type(obj).__name__}"
        )
    if "v" not in obj:
        raise CommandError(ErrorCode.BAD_REQUEST, "request has no 'v' (protocol version)")
    v = obj["v"]
    if not isinstance(v, int) or isinstance(v, bool):
        raise CommandError(ErrorCode.BAD_REQUEST, "'v' must be an integer")
    if v != PROTOCOL_VERSION:
        raise CommandError(
            ErrorCode.UNSUPPORTED_VERSION,
            f"protocol version {v} is not supported (this side speaks {PROTOCOL_VERSION})",
        )
    rid = obj.get("id")
    if rid is not None and (not isinstance(rid, int | str) or isinstance(rid, bool)):
        raise CommandError(ErrorCode.BAD_REQUEST, "'id' must be an integer, a string or nil")
    cmd = obj.get("cmd")
    if not isinstance(cmd, str) or not cmd:
        raise CommandError(ErrorCode.BAD_REQUEST, "request has no 'cmd' string")
    if len(cmd) > MAX_STRING_BYTES:
        raise CommandError(ErrorCode.BAD_REQUEST, "'cmd' is too long")
    args = obj.get("args")
    if args is None:
        args = {}
    if not isinstance(args, Mapping):
        raise CommandError(ErrorCode.BAD_REQUEST, "'args' must be a map")
    node = obj.get("node")
    if node is not None and not (
        (isinstance(node, int) and not isinstance(node, bool) and node >= 1) or node == "all"
    ):
        raise CommandError(ErrorCode.BAD_REQUEST, "'node' must be an integer >= 1 or \"all\"")
    return Request(id=rid, cmd=cmd, args=args, node=node)


def is_node_id_hex(text: object) -> bool:
    if not isinstance(text, str) or len(text) != NODE_ID_HEX_CHARS:
        return False
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True


def _check_arg(spec: ArgSpec, value: object, cmd: str) -> object:
    where = f"{cmd}: '{spec.name}'"
    if spec.type is ArgType.NODE_ID:
        if not is_node_id_hex(value):
            raise CommandError(ErrorCode.BAD_ARGS, f"{where} must be a node id of 64 hex digits")
        assert isinstance(value, str)
        return value.lower()
    if spec.type is ArgType.KEY:
        if not isinstance(value, str):
            raise CommandError(ErrorCode.BAD_ARGS, f"{where} must be a string")
        if not value:
            raise CommandError(ErrorCode.BAD_ARGS, f"{where} must not be empty")
        if len(value.encode("utf-8", "surrogatepass")) > MAX_STRING_BYTES:
            raise CommandError(
                ErrorCode.BAD_ARGS, f"{where} is longer than {MAX_STRING_BYTES} bytes"
            )
        return value
    if spec.type is ArgType.BYTES:
        if not isinstance(value, bytes | bytearray):
            raise CommandError(ErrorCode.BAD_ARGS, f"{where} must be bytes (msgpack bin)")
        if len(value) > MAX_VALUE_BYTES:
            raise CommandError(
                ErrorCode.TOO_LARGE,
                f"{where} is {len(value)} bytes, the limit is {MAX_VALUE_BYTES}",
            )
        return bytes(value)
    if spec.type is ArgType.PORT:
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_PORT:
            raise CommandError(ErrorCode.BAD_ARGS, f"{where} must be a port number 0..{MAX_PORT}")
        return value
    if spec.type is ArgType.UINT:
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 64:
            raise CommandError(ErrorCode.BAD_ARGS, f"{where} must be an integer 0..2^64-1")
        return value
    # ArgType.MAP
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise CommandError(ErrorCode.BAD_ARGS, f"{where} must be a map with string keys")
    if encoded_size(value) > MAX_VALUE_BYTES:
        raise CommandError(ErrorCode.TOO_LARGE, f"{where} is larger than {MAX_VALUE_BYTES} bytes")
    return dict(value)


def validate_args(cmd: CommandSpec, args: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``args`` against ``cmd``; return the keyword arguments for the API call."""
    known = {a.name for a in cmd.args}
    for name in args:
        if name not in known:
            expected = ", ".join(sorted(known)) or "none"
            raise CommandError(
                ErrorCode.BAD_ARGS, f"{cmd.name}: unknown argument {name!r} (expected: {expected})"
            )
    out: dict[str, Any] = {}
    for spec in cmd.args:
        if spec.name not in args:
            if spec.required:
                raise CommandError(
                    ErrorCode.BAD_ARGS, f"{cmd.name}: missing argument '{spec.name}'"
                )
            out[spec.name] = None
            continue
        out[spec.name] = _check_arg(spec, args[spec.name], cmd.name)
    return out


def ok_reply(rid: int | str | None, result: Mapping[str, Any]) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "id": rid, "ok": True, "result": result}


def error_reply(
    rid: int | str | None,
    code: ErrorCode | str,
    message: str,
    details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "v": PROTOCOL_VERSION,
        "id": rid,
        "ok": False,
        "error": error_body(code, message, details),
    }
