"""Static files beside the WebSocket endpoint (``dht-signaling --web DIR``): the browser peer.

The signaling server answers plain HTTP GET/HEAD requests (no ``Upgrade: websocket``) from one
directory, so a browser loads the page and the ES modules from the same origin as the signaling
WebSocket (http://127.0.0.1 is a secure context: WebCrypto works). Rules:

- Only files under the root are served: the URL path is percent-decoded, split on ``/``, and any
  empty, ``.``, ``..`` or backslash-bearing segment, NUL byte, or a resolved path outside the
  root (symlinks included) is a 404. Directories serve their ``index.html``.
- Content types come from a fixed table (``.js``/``.mjs`` are ``text/javascript``, which module
  scripts require); anything else is ``application/octet-stream``.
- Files are read whole (the web directory is small; ``MAX_STATIC_FILE_BYTES`` caps it).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from typing import Final

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

MAX_STATIC_FILE_BYTES: Final = 8 * 1024 * 1024

CONTENT_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
}

ProcessRequest = Callable[[ServerConnection, Request], Response | None]


def resolve(root: Path, url_path: str) -> Path | None:
    """The file under ``root`` that ``url_path`` names, or None (missing or not allowed)."""
    path = urllib.parse.urlsplit(url_path).path
    try:
        decoded = urllib.parse.unquote(path, errors="strict")
    except UnicodeDecodeError:
        return None
    if "\x00" in decoded or "\\" in decoded:
        return None
    parts = decoded.split("/")[1:] if decoded.startswith("/") else None
    if parts is None:
        return None
    if parts and parts[-1] == "":
        parts[-1] = "index.html"
    if any(p in ("", ".", "..") for p in parts):
        return None
    root = root.resolve()
    candidate = root.joinpath(*parts) if parts else root / "index.html"
    try:
        real = candidate.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if real.is_dir():
        real = real / "index.html"
        if not real.is_file():
            return None
    if not real.is_file() or not real.is_relative_to(root):
        return None
    return real


def _response(status: HTTPStatus, body: bytes, content_type: str) -> Response:
    headers = Headers()
    headers["Content-Type"] = content_type
    headers["Content-Length"] = str(len(body))
    headers["Cache-Control"] = "no-cache"
    headers["X-Content-Type-Options"] = "nosniff"
    # websockets answers one HTTP request per connection and then closes it: say so, so a
    # browser does not try to reuse the connection for its next file.
    headers["Connection"] = "close"
    return Response(status.value, status.phrase, headers, body)


def static_handler(root: Path) -> ProcessRequest:
    """A websockets ``process_request`` hook serving ``root``; WebSocket upgrades pass through."""

    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        if "websocket" in request.headers.get("Upgrade", "").lower():
            return None
        found = resolve(root, request.path)
        if found is None:
            return _response(HTTPStatus.NOT_FOUND, b"not found\n", CONTENT_TYPES[".txt"])
        try:
            if found.stat().st_size > MAX_STATIC_FILE_BYTES:
                return _response(HTTPStatus.FORBIDDEN, b"too large\n", CONTENT_TYPES[".txt"])
            body = found.read_bytes()
        except OSError:
            return _response(HTTPStatus.NOT_FOUND, b"not found\n", CONTENT_TYPES[".txt"])
        kind = CONTENT_TYPES.get(found.suffix.lower(), "application/octet-stream")
        return _response(HTTPStatus.OK, body, kind)

    return process_request
