"""The supervisor front endpoint: where a request goes — the cluster, node i, or all nodes.

The envelope, the ROUTER loop and the error replies are ``control.server.RouterServer`` (the one
implementation, shared with the node's control server); this module only routes:

- ``cluster.*`` commands go to the supervisor's own handlers;
- any other command goes to node ``node`` (default 1) and its reply comes back as it is;
- ``node: "all"`` fans the command out to every node at once and answers
  ``{"results": {"<index>": {"ok": true, "result"} | {"ok": false, "error"}}}`` — one node's
  failure is part of the result, not a failure of the request.

Every failure is a ``control.errors.CommandError``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, TypeVar

import zmq.asyncio

from control.curve import Guard
from control.errors import CommandError, ErrorCode
from control.schema import MAX_REQUEST_BYTES, Request
from control.server import Dispatch, RouterServer

M = TypeVar("M")

MAX_FRAME_BYTES: Final = 4 * MAX_REQUEST_BYTES
"""Oversized frames up to this get a ``too_large`` reply; beyond it ZeroMQ drops the connection
without reading the frame (memory safety)."""

Forward = Callable[[M, str, Mapping[str, Any]], Awaitable[Mapping[str, Any]]]
"""Send ``cmd(args)`` to one node; returns its result or raises ``CommandError``."""


def front_server(
    ctx: zmq.asyncio.Context, endpoint: str, dispatch: Dispatch, guard: Guard | None = None
) -> RouterServer:
    """The front endpoint's ROUTER server (a CURVE server when ``guard`` is given)."""
    return RouterServer(ctx, endpoint, dispatch, max_frame_bytes=MAX_FRAME_BYTES, guard=guard)


async def _outcome(forward: Forward[M], node: M, request: Request) -> dict[str, Any]:
    try:
        return {"ok": True, "result": await forward(node, request.cmd, request.args)}
    except CommandError as exc:
        return {"ok": False, "error": exc.error()}


async def route(
    request: Request,
    cluster_commands: Mapping[str, Dispatch],
    nodes: Mapping[int, M],
    forward: Forward[M],
) -> Mapping[str, Any]:
    """Answer ``request`` from the cluster handlers or the node(s) it names."""
    if request.cmd.startswith("cluster."):
        handler = cluster_commands.get(request.cmd)
        if handler is None:
            raise CommandError(
                ErrorCode.UNKNOWN_COMMAND, f"unknown supervisor command {request.cmd!r}"
            )
        return await handler(request)
    if request.node == "all":
        indexes = sorted(nodes)
        outcomes = await asyncio.gather(*(_outcome(forward, nodes[i], request) for i in indexes))
        return {"results": {str(i): o for i, o in zip(indexes, outcomes, strict=True)}}
    index = 1 if request.node is None else request.node
    target = nodes.get(index) if isinstance(index, int) else None
    if target is None:
        raise CommandError(
            ErrorCode.BAD_ARGS, f"no node {index!r}: this cluster has nodes 1..{len(nodes)}"
        )
    return await forward(target, request.cmd, request.args)
