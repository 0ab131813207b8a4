"""The node's command set, declared once: ``NodeAPI``.

Each method of ``NodeAPI`` is one control command: its name is the command name, its keyword
arguments (annotated with an ``Arg``: wire type and help) are the command's arguments, its
``@command`` decorator gives the help line, and it returns the result map of docs/interfaces.md
(failures raise ``control.errors.CommandError``). Everything else is derived from this class:

- ``COMMAND_LIST`` / ``COMMANDS`` — the table the server validates requests against, answers
  ``help`` from, and the CLI and the shell build their usage from;
- the node runtime implements ``NodeAPI``; the test fake node implements it;
- ``supervisor.cluster.NodeHandle`` and ``dhtctl`` name commands through its methods
  (``NodeAPI.ping``), so mypy checks names and keyword arguments at every call site.

An argument whose type admits ``None`` is optional on the wire. ``help`` is answered by the
server itself, so it is a command without a method. Nothing here does I/O.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Final, Protocol, TypeVar


class ArgType(StrEnum):
    """Wire types of command arguments."""

    NODE_ID = "node_id"  # str, 64 hex digits
    KEY = "key"  # str, <= MAX_STRING_BYTES UTF-8 bytes
    BYTES = "bytes"  # msgpack bin, <= MAX_VALUE_BYTES
    PORT = "port"  # int 0..65535 or nil
    MAP = "map"  # map with str keys, or nil; encoded size <= MAX_VALUE_BYTES
    UINT = "uint"  # int 0..2^64-1, or nil


@dataclass(frozen=True, slots=True)
class Arg:
    """Annotation metadata of a command argument."""

    type: ArgType
    help: str


Result = dict[str, Any]
"""The result map of a command."""

NodeIdArg = Annotated[str, Arg(ArgType.NODE_ID, "node id, 64 hex digits")]
KeyArg = Annotated[str, Arg(ArgType.KEY, "key string (hashed with SHA-256)")]
TopicArg = Annotated[str, Arg(ArgType.KEY, "topic name (hashed with SHA-256)")]
ValueArg = Annotated[bytes, Arg(ArgType.BYTES, "value bytes (<= 32 KiB)")]
PortArg = Annotated[int | None, Arg(ArgType.PORT, "service port to advertise")]
MetaArg = Annotated[dict[str, Any] | None, Arg(ArgType.MAP, "metadata map to advertise")]
AddressArg = Annotated[str, Arg(ArgType.NODE_ID, "DHT address (raw key), 64 hex digits")]
NameArg = Annotated[bytes, Arg(ArgType.BYTES, "record name (salt), <= 64 bytes")]
SeqArg = Annotated[int | None, Arg(ArgType.UINT, "sequence number (default: next)")]
CasArg = Annotated[int | None, Arg(ArgType.UINT, "only if the holders have this seq")]

F = TypeVar("F", bound=Callable[..., Awaitable[Result]])
HELP_ATTR: Final = "__command_help__"


def command(help_text: str) -> Callable[[F], F]:
    """Mark a ``NodeAPI`` method as a control command with this help line."""

    def mark(fn: F) -> F:
        setattr(fn, HELP_ATTR, help_text)
        return fn

    return mark


class NodeAPI(Protocol):
    """What a node offers the control plane (the runtime implements it)."""

    @command("this node's id and public key")
    async def id(self) -> Result: ...

    @command("open connections with RTT and age")
    async def peers(self) -> Result: ...

    @command("routing table size and buckets used")
    async def rt(self) -> Result: ...

    @command("the whole routing table, bucket by bucket")
    async def dump(self) -> Result: ...

    @command("ping a node (connecting to it if needed)")
    async def ping(self, *, node_id: NodeIdArg) -> Result: ...

    @command("iterative FIND_NODE lookup of a node id")
    async def find(self, *, node_id: NodeIdArg) -> Result: ...

    @command("open a connection to a node (DHT relay or signaling)")
    async def connect(self, *, node_id: NodeIdArg) -> Result: ...

    @command("close the connection to a node")
    async def disconnect(self, *, node_id: NodeIdArg) -> Result: ...

    @command("store a value under a key on the k closest nodes")
    async def store(self, *, key: KeyArg, value: ValueArg) -> Result: ...

    @command("fetch the value of a key")
    async def get(self, *, key: KeyArg) -> Result: ...

    @command("store a value under a raw DHT key (open namespace)")
    async def store_at(self, *, address: AddressArg, value: ValueArg) -> Result: ...

    @command("write this node's mutable record NAME (result: its address and seq)")
    async def put_mutable(
        self, *, name: NameArg, value: ValueArg, seq: SeqArg, cas: CasArg
    ) -> Result: ...

    @command("store a value under its hash (result: the address)")
    async def put_immutable(self, *, value: ValueArg) -> Result: ...

    @command("fetch the record at an address, any kind, verified")
    async def get_address(self, *, address: AddressArg) -> Result: ...

    @command("counters, latencies and sizes")
    async def stats(self) -> Result: ...

    @command("announce this node under a topic")
    async def announce(self, *, topic: TopicArg, port: PortArg, meta: MetaArg) -> Result: ...

    @command("stop announcing / leave a topic")
    async def unannounce(self, *, topic: TopicArg) -> Result: ...

    @command("find the peers announced under a topic")
    async def lookup(self, *, topic: TopicArg) -> Result: ...

    @command("join a topic for continuous discovery")
    async def join(self, *, topic: TopicArg, port: PortArg, meta: MetaArg) -> Result: ...

    @command("topics joined or announced by this node")
    async def topics(self) -> Result: ...

    @command("stream every new version of a key (record.updated events) until unlisten")
    async def listen(self, *, key: KeyArg) -> Result: ...

    @command("stop listening to a key")
    async def unlisten(self, *, key: KeyArg) -> Result: ...

    @command("stop the node cleanly")
    async def shutdown(self) -> Result: ...


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


def _arg_spec(name: str, hint: object) -> ArgSpec:
    meta = [m for m in getattr(hint, "__metadata__", ()) if isinstance(m, Arg)]
    if len(meta) != 1:
        raise TypeError(f"argument {name!r} needs exactly one Arg(...) annotation")
    base = typing.get_args(hint)[0]
    optional = isinstance(base, types.UnionType) and type(None) in typing.get_args(base)
    return ArgSpec(name, meta[0].type, meta[0].help, required=not optional)


def commands_of(protocol: type) -> tuple[CommandSpec, ...]:
    """The commands declared by the ``@command`` methods of ``protocol``, in order."""
    specs = []
    for name, fn in vars(protocol).items():
        help_text = getattr(fn, HELP_ATTR, None)
        if help_text is None:
            continue
        hints = typing.get_type_hints(fn, include_extras=True)
        args = tuple(_arg_spec(a, hints[a]) for a in hints if a != "return")
        specs.append(CommandSpec(name, help_text, args))
    return tuple(specs)


HELP = CommandSpec("help", "list the commands")

COMMAND_LIST: Final[tuple[CommandSpec, ...]] = (*commands_of(NodeAPI), HELP)
COMMANDS: Final[Mapping[str, CommandSpec]] = {c.name: c for c in COMMAND_LIST}


def command_name(method: Callable[..., object]) -> str:
    """The command a ``NodeAPI`` method stands for (``NodeAPI.ping`` -> ``"ping"``)."""
    name = getattr(method, "__name__", "")
    if name not in COMMANDS:
        raise ValueError(f"{method!r} is not a NodeAPI command")
    return name


def help_result() -> dict[str, Any]:
    """The result of the ``help`` command."""
    return {"commands": [c.describe() for c in COMMAND_LIST]}
