"""``dht-signaling --web DIR``: static files beside the WebSocket, and nothing outside DIR."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from signaling.server import SignalingServer
from signaling.static import resolve


@pytest.fixture
def web(tmp_path: Path) -> Path:
    root = tmp_path / "web"
    (root / "lib").mkdir(parents=True)
    (root / "index.html").write_text("<p>demo</p>")
    (root / "lib" / "mod.js").write_text("export const x = 1;")
    (root / "data.bin").write_bytes(b"\x00\x01")
    (tmp_path / "secret.txt").write_text("secret")
    (root / "escape").symlink_to(tmp_path / "secret.txt")
    return root


def test_resolve_stays_inside_the_root(web: Path) -> None:
    assert resolve(web, "/lib/mod.js") == (web / "lib" / "mod.js").resolve()
    assert resolve(web, "/") == (web / "index.html").resolve()
    assert resolve(web, "/lib/mod.js?v=1#x") == (web / "lib" / "mod.js").resolve()
    for bad in (
        "/../secret.txt",
        "/lib/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/lib/%2E%2E/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/lib%5c..%5c..%5csecret.txt",
        "/escape",  # a symlink out of the root
        "/missing.js",
        "/lib/",  # a directory without index.html
        "/index.html%00.js",
        "//etc/passwd",
        "relative",
        "/%ff",
    ):
        assert resolve(web, bad) is None, bad


def _get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


async def test_server_serves_files_and_websocket_on_one_port(web: Path) -> None:
    async with SignalingServer(web_root=web) as server:
        base = f"http://127.0.0.1:{server.port}"
        status, kind, body = await asyncio.to_thread(_get, f"{base}/lib/mod.js")
        assert (status, kind) == (200, "text/javascript; charset=utf-8")
        assert body == b"export const x = 1;"
        status, kind, body = await asyncio.to_thread(_get, f"{base}/")
        assert (status, kind) == (200, "text/html; charset=utf-8")
        status, kind, _ = await asyncio.to_thread(_get, f"{base}/data.bin")
        assert (status, kind) == (200, "application/octet-stream")
        status, _, _ = await asyncio.to_thread(_get, f"{base}/%2e%2e/secret.txt")
        assert status == 404
        async with connect(server.url) as ws:
            assert json.loads(await ws.recv())["type"] == "challenge"


async def test_without_web_root_http_gets_no_files(web: Path) -> None:
    async with SignalingServer() as server:
        status, _, _ = await asyncio.to_thread(_get, f"http://127.0.0.1:{server.port}/index.html")
        assert status != 200
