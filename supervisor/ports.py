"""Port allocation on 127.0.0.1.

The supervisor prefers the documented defaults (front 5555, events 5556, metrics 9464, signaling
3000) and falls back to a free port when one is taken, e.g. by a second cluster. There is an
unavoidable window between probing a port and the member binding it; callers keep a ``taken`` set so
one allocation round never hands out the same port twice.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable

HOST = "127.0.0.1"


def port_is_free(port: int, host: str = HOST) -> bool:
    """True when nobody listens on ``host:port`` and we could bind it."""
    if not 0 < port < 65536:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = HOST, exclude: Iterable[int] = ()) -> int:
    """A port the kernel considers free right now (and not in ``exclude``)."""
    excluded = set(exclude)
    for _ in range(64):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in excluded:
            return port
    raise OSError("could not find a free port")


def pick_port(preferred: int, taken: set[int], host: str = HOST) -> int:
    """``preferred`` when it is free and not yet handed out, else a free port; records the result
    in ``taken``. ``preferred == 0`` always means "any free port"."""
    if preferred and preferred not in taken and port_is_free(preferred, host):
        port = preferred
    else:
        port = free_port(host, taken)
    taken.add(port)
    return port


def tcp_endpoint(port: int, host: str = HOST) -> str:
    return f"tcp://{host}:{port}"


def endpoint_port(endpoint: str) -> int:
    """The port of ``tcp://host:port`` (raises ``ValueError`` otherwise)."""
    _, _, port = endpoint.rpartition(":")
    return int(port)
