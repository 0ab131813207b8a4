"""The browser peer's control facade over a fake page: same result maps and codes as a node."""

from __future__ import annotations

from typing import Any

import pytest

from control.errors import CommandError, ErrorCode
from node.ids import bucket_index, key_id
from supervisor.browser_api import BrowserNodeAPI, page_expression
from supervisor.browser_peer import page_url

ME = "80" + "00" * 31
NEAR = "80" + "00" * 30 + "01"  # bucket 255
FAR = "00" * 32  # bucket 0


class FakePage:
    """``window.dhtPeer`` in miniature: canned answers, every call recorded."""

    def __init__(self, **answers: Any) -> None:
        self.answers = answers
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    async def __call__(self, method: str, *args: Any) -> Any:
        self.calls.append((method, args))
        return self.answers[method]


def api(**answers: Any) -> tuple[BrowserNodeAPI, FakePage]:
    page = FakePage(**answers)
    return BrowserNodeAPI(page, ME), page


def test_page_expressions_pass_arguments_as_json_literals() -> None:
    assert page_expression("ready") == "window.dhtPeer.ready()"
    assert page_expression("store", 'k"); evil(', "v\n") == (
        'window.dhtPeer.store("k\\"); evil(", "v\\n")'
    )
    with pytest.raises(ValueError, match="method"):
        page_expression("x; evil()")


def test_the_page_url_is_served_by_the_signaling_server() -> None:
    assert page_url("ws://127.0.0.1:3000") == (
        "http://127.0.0.1:3000/peer.html?signal=ws%3A%2F%2F127.0.0.1%3A3000"
    )
    assert page_url("wss://example.org").startswith("https://example.org/peer.html?")
    with pytest.raises(ValueError, match="WebSocket"):
        page_url("http://127.0.0.1:3000")


async def test_store_and_get_map_to_the_node_result_shapes() -> None:
    a, page = api(
        store={"ok": True, "stored": 3, "attempts": 4, "quorum": 2},
        get={"found": True, "value": "wörld", "publisher": ME, "ts": 5},
    )
    stored = await a.store(key="hello", value="wörld".encode())
    assert page.calls[0] == ("store", ("hello", "wörld"))
    assert stored["acks"] == 3
    assert stored["quorum"] == 2
    assert stored["key_id"] == key_id("hello").hex()
    got = await a.get(key="hello")
    assert got["value"] == "wörld".encode()
    assert got["publisher"] == ME
    with pytest.raises(CommandError) as bad:
        await a.store(key="k", value=b"\xff\xfe")
    assert bad.value.code is ErrorCode.BAD_ARGS


async def test_failures_become_the_node_error_codes() -> None:
    a, _ = api(
        store={"ok": False, "stored": 0, "attempts": 2, "quorum": 1},
        get={"found": False},
    )
    with pytest.raises(CommandError) as quorum:
        await a.store(key="k", value=b"v")
    assert quorum.value.code is ErrorCode.QUORUM_NOT_MET
    with pytest.raises(CommandError) as missing:
        await a.get(key="k")
    assert missing.value.code is ErrorCode.NOT_FOUND
    with pytest.raises(CommandError) as unsupported:
        await a.ping(node_id=FAR)
    assert unsupported.value.code is ErrorCode.UNKNOWN_COMMAND


async def test_tables_and_lookups() -> None:
    a, _ = api(peers=[NEAR], rt=[NEAR, FAR], lookup={"peers": [NEAR, FAR]}, announce={"ok": True})
    assert await a.rt() == {"size": 2, "buckets_used": 2}
    peers = (await a.peers())["peers"]
    assert [(p["id"], p["in_routing_table"]) for p in peers] == [(NEAR, True)]
    dump = await a.dump()
    assert [b["index"] for b in dump["buckets"]] == sorted(
        [bucket_index(bytes.fromhex(ME), bytes.fromhex(FAR)), 255]
    )
    found = await a.lookup(topic="chat")
    assert [p["id"] for p in found["peers"]] == sorted([NEAR, FAR])
    assert (await a.announce(topic="chat"))["ok"] is True
    with pytest.raises(CommandError):
        await a.announce(topic="chat", port=80)


async def test_shutdown_calls_back() -> None:
    stopped: list[bool] = []
    a = BrowserNodeAPI(FakePage(), ME, on_shutdown=lambda: stopped.append(True))
    assert await a.shutdown() == {"shutting_down": True}
    assert stopped == [True]
    assert (await a.id())["kind"] == "browser"
