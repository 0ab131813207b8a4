"""The control-plane protocol, defined once.

Everything that describes the wire protocol lives here: the version, the envelope, the error
codes, the limits and the command table. The server validates requests against the table,
answers ``help`` from it, and the CLI builds its usage from it. Nothing here does I/O.

Rules:
- A request is one msgpack map ``{"v": 1, "id": int|str|None, "cmd": str, "args": map}``; the
  supervisor front endpoint also reads ``"node": int >= 1 | "all"``. ``args`` may be absent.
- A reply is ``{"v", "id", "ok": True, "result": map}`` or
  ``{"v", "id", "ok": False, "error": {"code", "message", "details"?}}``.
- Validation raises ``SchemaError(code, message)``; the server turns it into an error reply.
- Unknown argument names are refused (``bad_args``): a typo must not silently drop an argument.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

PROTOCOL_VERSION: Final = 1

MAX_REQUEST_BYTES: Final = 1024 * 1024
"""A request frame above this gets ``too_large``."""
MAX_VALUE_BYTES: Final = 32 * 1024
"""A stored value (and an encoded ``meta`` map) above this gets ``too_large``."""
MAX_STRING_BYTES: Final = 1024
"""Keys and topics above this (UTF-8 bytes) get ``bad_args``."""
NODE_ID_HEX_CHARS: Final = 64
MAX_PORT: Final = 65535


class ErrorCode(StrEnum):
    BAD_REQUEST = "bad_request"
    UNSUPPORTED_VERSION = "unsupported_version"
    UNKNOWN_COMMAND = "unknown_command"
    BAD_ARGS = "bad_args"
    TOO_LARGE = "too_large"
    NOT_FOUND = "not_found"
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    QUORUM_NOT_MET = "quorum_not_met"
    NODE_UNAVAILABLE = "node_unavailable"
    INTERNAL = "internal"


class ArgType(StrEnum):
    """Wire types of command arguments."""

    NODE_ID = "node_id"  # str, 64 hex digits
    KEY = "key"  # str, <= MAX_STRING_BYTES UTF-8 bytes
    BYTES = "bytes"  # msgpack bin, <= MAX_VALUE_BYTES
    PORT = "port"  # int 0..65535 or nil
    MAP = "map"  # map with str keys, or nil; encoded size <= MAX_VALUE_BYTES


class SchemaError(Exception):
    """A request broke the protocol; carries the error code for the reply."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class ArgSpec:
    name: str
    type: ArgType
    help: str
    required: bool = True

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": str(self.type),
            "required": self.required,
            "help": self.help,
        }


@dataclass(frozen=True, slots=True)
class CommandSpec:
    name: str
    help: str
    args: tuple[ArgSpec, ...] = ()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "args": [a.describe() for a in self.args], "help": self.help}


_NODE_ID = ArgSpec("node_id", ArgType.NODE_ID, "node id, 64 hex digits")
_KEY = ArgSpec("key", ArgType.KEY, "key string (hashed with SHA-256)")
_TOPIC = ArgSpec("topic", ArgType.KEY, "topic name (hashed with SHA-256)")
_PORT = ArgSpec("port", ArgType.PORT, "service port to advertise", required=False)
_META = ArgSpec("meta", ArgType.MAP, "metadata map to advertise", required=False)

COMMAND_LIST: Final[tuple[CommandSpec, ...]] = (
    CommandSpec("id", "this node's id and public key"),
    CommandSpec("peers", "open connections with RTT and age"),
    CommandSpec("rt", "routing table size and buckets used"),
    CommandSpec("dump", "the whole routing table, bucket by bucket"),
    CommandSpec("ping", "ping a node (connecting to it if needed)", (_NODE_ID,)),
    CommandSpec("find", "iterative FIND_NODE lookup of a node id", (_NODE_ID,)),
    CommandSpec("connect", "open a connection to a node (DHT relay or signaling)", (_NODE_ID,)),
    CommandSpec("disconnect", "close the connection to a node", (_NODE_ID,)),
    CommandSpec(
        "store",
        "store a value under a key on the k closest nodes",
        (_KEY, ArgSpec("value", ArgType.BYTES, "value bytes (<= 32 KiB)")),
    ),
    CommandSpec("get", "fetch the value of a key", (_KEY,)),
    CommandSpec("stats", "counters, latencies and sizes"),
    CommandSpec("announce", "announce this node under a topic", (_TOPIC, _PORT, _META)),
    CommandSpec("unannounce", "stop announcing / leave a topic", (_TOPIC,)),
    CommandSpec("lookup", "find the peers announced under a topic", (_TOPIC,)),
    CommandSpec("join", "join a topic for continuous discovery", (_TOPIC, _PORT, _META)),
    CommandSpec("topics", "topics joined or announced by this node"),
    CommandSpec("shutdown", "stop the node cleanly"),
    CommandSpec("help", "list the commands"),
)

COMMANDS: Final[Mapping[str, CommandSpec]] = {c.name: c for c in COMMAND_LIST}


def help_result() -> dict[str, Any]:
    """The result of the ``help`` command."""
    return {"commands": [c.describe() for c in COMMAND_LIST]}


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
    """Check the envelope of a decoded request. Raises ``SchemaError``."""
    if not isinstance(obj, Mapping):
        raise SchemaError(ErrorCode.BAD_REQUEST, f"request must be a map, got {type(obj).__name__}")
    if "v" not in obj:
        raise SchemaError(ErrorCode.BAD_REQUEST, "request has no 'v' (protocol version)")
    v = obj["v"]
    if not isinstance(v, int) or isinstance(v, bool):
        raise SchemaError(ErrorCode.BAD_REQUEST, "'v' must be an integer")
    if v != PROTOCOL_VERSION:
        raise SchemaError(
            ErrorCode.UNSUPPORTED_VERSION,
            f"protocol version {v} is not supported (this side speaks {PROTOCOL_VERSION})",
        )
    rid = obj.get("id")
    if rid is not None and (not isinstance(rid, int | str) or isinstance(rid, bool)):
        raise SchemaError(ErrorCode.BAD_REQUEST, "'id' must be an integer, a string or nil")
    cmd = obj.get("cmd")
    if not isinstance(cmd, str) or not cmd:
        raise SchemaError(ErrorCode.BAD_REQUEST, "request has no 'cmd' string")
    if len(cmd) > MAX_STRING_BYTES:
        raise SchemaError(ErrorCode.BAD_REQUEST, "'cmd' is too long")
    args = obj.get("args")
    if args is None:
        args = {}
    if not isinstance(args, Mapping):
        raise SchemaError(ErrorCode.BAD_REQUEST, "'args' must be a map")
    node = obj.get("node")
    if node is not None and not (
        (isinstance(node, int) and not isinstance(node, bool) and node >= 1) or node == "all"
    ):
        raise SchemaError(ErrorCode.BAD_REQUEST, "'node' must be an integer >= 1 or \"all\"")
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
            raise SchemaError(ErrorCode.BAD_ARGS, f"{where} must be a node id of 64 hex digits")
        assert isinstance(value, str)
        return value.lower()
    if spec.type is ArgType.KEY:
        if not isinstance(value, str):
            raise SchemaError(ErrorCode.BAD_ARGS, f"{where} must be a string")
        if not value:
            raise SchemaError(ErrorCode.BAD_ARGS, f"{where} must not be empty")
        if len(value.encode("utf-8", "surrogatepass")) > MAX_STRING_BYTES:
            raise SchemaError(
                ErrorCode.BAD_ARGS, f"{where} is longer than {MAX_STRING_BYTES} bytes"
            )
        return value
    if spec.type is ArgType.BYTES:
        if not isinstance(value, bytes | bytearray):
            raise SchemaError(ErrorCode.BAD_ARGS, f"{where} must be bytes (msgpack bin)")
        if len(value) > MAX_VALUE_BYTES:
            raise SchemaError(
                ErrorCode.TOO_LARGE,
                f"{where} is {len(value)} bytes, the limit is {MAX_VALUE_BYTES}",
            )
        return bytes(value)
    if spec.type is ArgType.PORT:
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_PORT:
            raise SchemaError(ErrorCode.BAD_ARGS, f"{where} must be a port number 0..{MAX_PORT}")
        return value
    # ArgType.MAP
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise SchemaError(ErrorCode.BAD_ARGS, f"{where} must be a map with string keys")
    from control.codec import encoded_size

    if encoded_size(value) > MAX_VALUE_BYTES:
        raise SchemaError(ErrorCode.TOO_LARGE, f"{where} is larger than {MAX_VALUE_BYTES} bytes")
    return dict(value)


def validate_args(cmd: CommandSpec, args: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``args`` against ``cmd``; return the keyword arguments for the API call."""
    known = {a.name for a in cmd.args}
    for name in args:
        if name not in known:
            expected = ", ".join(sorted(known)) or "none"
            raise SchemaError(
                ErrorCode.BAD_ARGS, f"{cmd.name}: unknown argument {name!r} (expected: {expected})"
            )
    out: dict[str, Any] = {}
    for spec in cmd.args:
        if spec.name not in args:
            if spec.required:
                raise SchemaError(ErrorCode.BAD_ARGS, f"{cmd.name}: missing argument '{spec.name}'")
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
    error: dict[str, Any] = {"code": str(code), "message": message}
    if details is not None:
        error["details"] = details
    return {"v": PROTOCOL_VERSION, "id": rid, "ok": False, "error": error}
