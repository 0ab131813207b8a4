"""The control plane's authentication and encryption: ZeroMQ CURVE with one cluster key pair.

Security model (docs/multi-host.md):
- ``up`` makes one CURVE key pair per cluster (``CurveKeys.generate``) and keeps it in the
  cluster's state dir (``curve.key``, mode 0600); containers get it as a secret file (a Swarm
  secret, or a bind-mounted file for plain Docker) and nodes read it with ``--curve-key``.
- Every server socket (a node's control ROUTER and event PUB, the supervisor's front ROUTER and
  event PUB) is a CURVE server with the cluster secret key: traffic is encrypted and the server
  is authenticated by its public key. A client is *authorised* when it proves it holds the
  cluster key pair too (its CURVE public key is the cluster's): ``Guard`` answers the ZAP
  requests of its ZeroMQ context and refuses every other key. Whoever can read ``curve.key``
  (the operator's account, the cluster's containers) can drive the cluster; no one else can.
- A client without CURVE (or with another key) never completes the handshake: it gets no reply,
  and the server logs the refusal (ZAP for a wrong key, the socket monitor for a client that
  does not speak CURVE at all).
- Loopback-only clusters of the process and Docker backends may run without it (the default);
  a control or event socket bound beyond loopback refuses to start without a key
  (``check_exposure``), and the Swarm backend always uses one.

Standard library + pyzmq only (``dhtctl`` imports it).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import zmq
import zmq.asyncio
from zmq.utils import z85
from zmq.utils.monitor import parse_monitor_message

log = logging.getLogger(__name__)

KEY_FILE: Final = "curve.key"
"""The key pair's file name in a cluster's state dir."""
KEY_ENV: Final = "DHT_CURVE_KEY"
"""Environment variable naming the key file (nodes, ``dhtctl``)."""
ZAP_ENDPOINT: Final = "inproc://zeromq.zap.01"
ZAP_DOMAIN: Final = b"webrtc-dht"
ZAP_VERSION: Final = b"1.0"
_FAILED_EVENTS: Final = (
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)
LOOPBACK_NAMES: Final = frozenset({"localhost"})


class KeyFileError(Exception):
    """The key file is missing, unreadable or malformed."""


@dataclass(frozen=True, slots=True)
class CurveKeys:
    """A CURVE key pair, Z85-encoded (40 ASCII bytes each)."""

    public: bytes
    secret: bytes

    @classmethod
    def generate(cls) -> CurveKeys:
        public, secret = zmq.curve_keypair()
        return cls(public, secret)

    def to_json(self) -> str:
        return json.dumps({"public": self.public.decode(), "secret": self.secret.decode()})

    @classmethod
    def from_json(cls, text: str) -> CurveKeys:
        try:
            data = json.loads(text)
            public, secret = data["public"].encode("ascii"), data["secret"].encode("ascii")
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeEncodeError) as exc:
            raise KeyFileError(f"not a CURVE key file: {exc}") from exc
        if len(public) != 40 or len(secret) != 40:
            raise KeyFileError("not a CURVE key file: keys must be 40 Z85 characters")
        try:
            derived = zmq.curve_public(secret)
        except (zmq.ZMQError, ValueError) as exc:
            raise KeyFileError(f"not a CURVE key file: {exc}") from exc
        if derived != public:
            raise KeyFileError("not a CURVE key file: the public key does not match the secret")
        return cls(public, secret)

    def save(self, path: Path) -> None:
        """Write the pair to ``path``, readable by the owner only."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(self.to_json() + "\n")
        os.chmod(path, 0o600)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CurveKeys:
        try:
            text = Path(path).read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyFileError(f"cannot read the CURVE key file {path}: {exc}") from exc
        return cls.from_json(text)

    @classmethod
    def load_or_create(cls, path: Path) -> CurveKeys:
        if path.exists():
            return cls.load(path)
        keys = cls.generate()
        keys.save(path)
        return keys


def curve_client(sock: zmq.Socket[bytes] | zmq.asyncio.Socket, keys: CurveKeys) -> None:
    """Make ``sock`` (before it connects) a CURVE client holding the cluster key pair."""
    sock.setsockopt(zmq.CURVE_SERVERKEY, keys.public)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, keys.secret)


def curve_server(sock: zmq.Socket[bytes] | zmq.asyncio.Socket, keys: CurveKeys) -> None:
    """Make ``sock`` (before it binds) a CURVE server whose clients ``Guard`` checks."""
    sock.setsockopt(zmq.CURVE_SERVER, 1)
    sock.setsockopt(zmq.CURVE_SECRETKEY, keys.secret)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.public)
    sock.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN)


def is_loopback_endpoint(endpoint: str) -> bool:
    """True for ``tcp://127.x.y.z:port``, ``tcp://localhost:port``, ``tcp://[::1]:port`` and
    the ``ipc://`` / ``inproc://`` transports (not reachable from another host)."""
    if not endpoint.startswith("tcp://"):
        return endpoint.startswith(("ipc://", "inproc://"))
    host = endpoint[len("tcp://") :].rpartition(":")[0].strip("[]")
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a wildcard (*, 0.0.0.0) or an interface name: beyond loopback


def check_exposure(endpoints: list[str], keys: CurveKeys | None) -> None:
    """Raise ``ValueError`` when a socket would be bound beyond loopback without CURVE."""
    exposed = [e for e in endpoints if not is_loopback_endpoint(e)]
    if exposed and keys is None:
        raise ValueError(
            f"{', '.join(exposed)} is reachable beyond loopback: give a CURVE key file "
            f"(--curve-key or ${KEY_ENV}) so that the control plane is authenticated"
        )


class Guard:
    """The ZAP handler of one ZeroMQ context, and the monitor of its CURVE server sockets.

    ``start`` binds the context's ZAP endpoint (before any CURVE server socket binds);
    ``protect(sock, name)`` makes ``sock`` a CURVE server and logs every failed handshake on it.
    A ZAP request is allowed only for the CURVE mechanism with the cluster's public key.
    ``refused`` counts refusals (ZAP denials and failed handshakes)."""

    def __init__(self, ctx: zmq.asyncio.Context, keys: CurveKeys) -> None:
        self.keys = keys
        self.refused = 0
        self._ctx = ctx
        self._client_key = z85.decode(keys.public)
        self._zap: zmq.asyncio.Socket | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._monitors: list[zmq.asyncio.Socket] = []

    def start(self) -> None:
        zap = self._ctx.socket(zmq.REP)
        zap.setsockopt(zmq.LINGER, 0)
        zap.bind(ZAP_ENDPOINT)
        self._zap = zap
        self._tasks.append(asyncio.create_task(self._serve_zap(zap), name="zap"))

    def protect(self, sock: zmq.Socket[bytes] | zmq.asyncio.Socket, name: str) -> None:
        """CURVE-serve ``sock`` (call before it binds) and watch its handshakes."""
        curve_server(sock, self.keys)
        address = f"inproc://curve-monitor-{id(self)}-{len(self._monitors)}"
        sock.monitor(address, _FAILED_EVENTS)
        monitor = self._ctx.socket(zmq.PAIR)
        monitor.setsockopt(zmq.LINGER, 0)
        monitor.connect(address)
        self._monitors.append(monitor)
        self._tasks.append(asyncio.create_task(self._watch(monitor, name), name=f"curve {name}"))

    def allowed(self, mechanism: bytes, credentials: list[bytes]) -> bool:
        return mechanism == b"CURVE" and credentials[:1] == [self._client_key]

    async def _serve_zap(self, zap: zmq.asyncio.Socket) -> None:
        while True:
            frames = await zap.recv_multipart()
            if len(frames) < 6:  # not a ZAP request: answer nothing useful, stay up
                await zap.send_multipart([ZAP_VERSION, b"", b"500", b"malformed", b"", b""])
                continue
            request_id, address, mechanism = frames[1], frames[3], frames[5]
            if self.allowed(mechanism, frames[6:]):
                await zap.send_multipart([ZAP_VERSION, request_id, b"200", b"OK", b"cluster", b""])
                continue
            self.refused += 1
            log.warning(
                "control plane: refused a %s client from %s (not the cluster key)",
                mechanism.decode(errors="replace") or "?",
                address.decode(errors="replace") or "?",
            )
            await zap.send_multipart([ZAP_VERSION, request_id, b"400", b"denied", b"", b""])

    async def _watch(self, monitor: zmq.asyncio.Socket, name: str) -> None:
        while True:
            event = parse_monitor_message(await monitor.recv_multipart())
            if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                continue  # already counted and logged by the ZAP handler
            self.refused += 1
            log.warning(
                "control plane: %s refused a client that does not speak CURVE with the "
                "cluster key (%s, code %s)",
                name,
                getattr(event["event"], "name", event["event"]),
                event["value"],
            )

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for monitor in self._monitors:
            monitor.close(linger=0)
        self._monitors.clear()
        if self._zap is not None:
            self._zap.close(linger=0)
            self._zap = None
