"""The command set is declared once (``NodeAPI``): the table, ``NodeHandle``, dhtctl and the fake
node all follow it."""

from __future__ import annotations

import inspect
from typing import Any

import typer

from control.cli import SERVED_BY, app
from control.commands import COMMAND_LIST, COMMANDS, ArgType, NodeAPI, command_name
from supervisor.cluster import NodeHandle
from tests.support.fake_node import FakeNode

SAMPLE = {
    ArgType.NODE_ID: "ab" * 32,
    ArgType.KEY: "k",
    ArgType.BYTES: b"v",
    ArgType.PORT: 4000,
    ArgType.MAP: {"a": 1},
    ArgType.UINT: 7,
}


class RecordingFront:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any], int | str | None]] = []

    def call(self, cmd: str, args: dict[str, Any], **routing: Any) -> dict[str, Any]:
        self.sent.append((cmd, dict(args), routing.get("node")))
        return {"id": "x", "peers": [], "topics": [], "value": b"v"}


class StubCluster:
    def __init__(self) -> None:
        self.front = RecordingFront()


def test_the_table_is_the_protocol_in_declaration_order() -> None:
    methods = [n for n, f in vars(NodeAPI).items() if inspect.iscoroutinefunction(f)]
    assert [c.name for c in COMMAND_LIST] == [*methods, "help"]
    announce = COMMANDS["announce"]
    assert [(a.name, a.type, a.required) for a in announce.args] == [
        ("topic", ArgType.KEY, True),
        ("port", ArgType.PORT, False),
        ("meta", ArgType.MAP, False),
    ]
    assert command_name(NodeAPI.get) == "get"


def test_node_handle_sends_every_command_with_its_arguments() -> None:
    stub = StubCluster()
    handle = NodeHandle(stub, 4)  # type: ignore[arg-type]
    for spec in COMMAND_LIST:
        if spec.name == "help":
            continue
        args = {a.name: SAMPLE[a.type] for a in spec.args}
        getattr(handle, spec.name)(**args)
        assert stub.front.sent[-1] == (spec.name, args, 4)


def test_dhtctl_has_a_command_per_table_entry() -> None:
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    for spec in COMMAND_LIST:
        if spec.name in SERVED_BY:  # offered through another command (put, get, store)
            assert SERVED_BY[spec.name] in commands
            continue
        command = commands[spec.name]
        assert (command.help or "").startswith(spec.help)
        names = {p.name for p in command.params}
        assert {a.name for a in spec.args} <= names


def test_fake_node_implements_the_protocol() -> None:
    api: NodeAPI = FakeNode()
    for spec in COMMAND_LIST:
        if spec.name == "help":
            continue
        params = inspect.signature(getattr(api, spec.name)).parameters
        assert [p for p in params] == [a.name for a in spec.args]
