"""Container HEALTHCHECK for both roles of the webrtc-dht image; needs no CLI, only the venv.

The role and endpoints come from the container's main process (PID 1, the command the supervisor
gave), so the check follows whatever flags or environment that command was started with:

- ``python -m peer`` (``dht-node``): send ``{"v": 1, "id": 1, "cmd": "id", "args": {}}`` on a
  REQ socket to the control endpoint (``--control``, else ``$DHT_CONTROL``, else
  ``tcp://127.0.0.1:7000``) and require an ``ok`` reply within ``TIMEOUT_S``.
- ``python -m signaling``: a TCP connect to ``--host``/``--port`` (else ``$SIGNALING_HOST`` /
  ``$SIGNALING_PORT``, else 127.0.0.1:3000).

Exit 0 = healthy, 1 = unhealthy (the reason goes to stdout, which Docker keeps in the health log).
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Mapping, Sequence

TIMEOUT_S = 2.0
MAX_REPLY_BYTES = 1024 * 1024  # an `id` reply is tiny: a bigger frame drops the connection
DEFAULT_CONTROL = "tcp://127.0.0.1:7000"
DEFAULT_SIGNALING_HOST = "127.0.0.1"
DEFAULT_SIGNALING_PORT = 3000
WILDCARD_HOSTS = {"0.0.0.0", "*", "::", ""}


def main_argv(pid: int = 1) -> list[str]:
    """The argv of ``pid`` (the container's main process)."""
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        raw = f.read()
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def flag(argv: Sequence[str], name: str) -> str | None:
    """The value of ``--name VALUE`` or ``--name=VALUE`` (last one wins), else None."""
    value: str | None = None
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(name + "="):
            value = arg[len(name) + 1 :]
    return value


SCRIPT_ROLES = {"dht-node": "peer", "dht-signaling": "signaling"}


def role_of(argv: Sequence[str]) -> str | None:
    """``peer`` or ``signaling`` (``python -m ROLE`` or the console script), else None."""
    for i, arg in enumerate(argv):
        if arg == "-m" and i + 1 < len(argv):
            return argv[i + 1]
        role = SCRIPT_ROLES.get(os.path.basename(arg))
        if role is not None:
            return role
    return None


def connectable(endpoint: str) -> str:
    """A ZeroMQ endpoint a client can connect to (a wildcard bind becomes loopback)."""
    if endpoint.startswith("tcp://"):
        host, _, port = endpoint[len("tcp://") :].rpartition(":")
        if host in WILDCARD_HOSTS:
            return f"tcp://127.0.0.1:{port}"
    return endpoint


def check_node(argv: Sequence[str], env: Mapping[str, str]) -> str | None:
    """None when the node answers ``id`` on its control socket, else the reason."""
    import msgpack
    import zmq

    endpoint = connectable(flag(argv, "--control") or env.get("DHT_CONTROL") or DEFAULT_CONTROL)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    timeout_ms = int(TIMEOUT_S * 1000)
    sock.setsockopt(zmq.RCVTIMEO, timeout_ms)
    sock.setsockopt(zmq.SNDTIMEO, timeout_ms)
    sock.setsockopt(zmq.MAXMSGSIZE, MAX_REPLY_BYTES)
    try:
        key_file = flag(argv, "--curve-key") or env.get("DHT_CURVE_KEY")
        if key_file:  # the cluster's key pair (control.curve): the node is a CURVE server
            with open(key_file, encoding="ascii") as fh:
                keys = json.load(fh)
            public, secret = keys["public"].encode(), keys["secret"].encode()
            sock.setsockopt(zmq.CURVE_SERVERKEY, public)
            sock.setsockopt(zmq.CURVE_PUBLICKEY, public)
            sock.setsockopt(zmq.CURVE_SECRETKEY, secret)
        sock.connect(endpoint)
        sock.send(msgpack.packb({"v": 1, "id": 1, "cmd": "id", "args": {}}))
        reply = msgpack.unpackb(sock.recv(), raw=False)
    except zmq.Again:
        return f"no reply from {endpoint} within {TIMEOUT_S} s"
    except (zmq.ZMQError, ValueError, OSError, KeyError, TypeError, AttributeError) as exc:
        return f"control socket {endpoint}: {exc}"
    finally:
        sock.close()
        ctx.term()
    if not isinstance(reply, dict) or reply.get("ok") is not True:
        return f"control socket {endpoint} answered {reply!r}"
    return None


def check_signaling(argv: Sequence[str], env: Mapping[str, str]) -> str | None:
    """None when the signaling server accepts a TCP connection, else the reason."""
    host = flag(argv, "--host") or env.get("SIGNALING_HOST") or DEFAULT_SIGNALING_HOST
    if host in WILDCARD_HOSTS:
        host = "127.0.0.1"
    port_text = flag(argv, "--port") or env.get("SIGNALING_PORT") or str(DEFAULT_SIGNALING_PORT)
    try:
        port = int(port_text)
    except ValueError:
        return f"bad signaling port {port_text!r}"
    try:
        with socket.create_connection((host, port), timeout=TIMEOUT_S):
            return None
    except OSError as exc:
        return f"signaling {host}:{port}: {exc}"


def main() -> int:
    try:
        argv = main_argv()
    except OSError as exc:
        print(f"cannot read the main process command line: {exc}")
        return 1
    role = role_of(argv)
    env = os.environ
    if role == "signaling":
        reason = check_signaling(argv, env)
    elif role == "peer":
        reason = check_node(argv, env)
    else:
        print(f"unknown role in {argv!r}; nothing to check")
        return 0
    if reason is not None:
        print(reason)
        return 1
    print("healthy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
