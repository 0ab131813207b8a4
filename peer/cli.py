"""The ``dht-node`` command line: typer options (``node.clikit``), validated, then served.

Configuration, highest precedence first: flags, environment (``DHT_*``), defaults — the table
is docs/interfaces.md. Exit codes (``node.clikit``): 0 clean shutdown, 1 the node could not
start (e.g. a control endpoint is taken), 2 bad usage or configuration.

After a successful parse the process re-executes its own command line with the validated
options in ``peer.serve.RESOLVED_ENV`` (see ``peer.serve`` for why); where that is impossible
it serves in-process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Annotated, Any

import typer

from node import clikit, tunables
from peer.serve import RESOLVED_ENV, Options, serve

PROG = "dht-node"

app = clikit.make_app(PROG, "Run one webrtc-dht node until SIGTERM/SIGINT.")
_parsed: list[Options] = []  # what the command parsed (typer keeps only an exit code)


def _env_list(name: str) -> list[str] | None:
    raw = os.environ.get(name)
    if raw is None:
        return None
    return [x.strip() for x in raw.split(",") if x.strip()] or None


def _opt(
    env: str | None, help: str, parser: Callable[[Any], Any] | None = None, metavar: str = ""
) -> Any:
    """A typer option read from ``env`` too, checked by a ``node.clikit`` parser."""
    return typer.Option(
        envvar=env, parser=parser, help=help, show_envvar=env is not None, metavar=metavar or None
    )


_ICE_ADDRESS_HELP = (
    "host address ICE gathers on, 'auto' for this host's non-loopback addresses "
    "(repeatable; env DHT_ICE_ADDRESSES, a comma list)"
)
_ICE_SERVER_HELP = "stun:/turn: URL (repeatable; env DHT_ICE_SERVERS, a comma list)"
_BOOTSTRAP_HELP = "how many peers from the signaling server to dial when joining"
_DISCOVERY_HELP = "seconds between re-lookups of a joined topic (continuous discovery)"
_URL = "DHT_SIGNALING_URL"
_SET_HELP = (
    "set a node parameter (repeatable): periods, quotas, rate limits; env DHT_NAME. "
    "Names: " + ", ".join(tunables.TUNABLES)
)
_CURVE_HELP = "CURVE key file of the cluster: authenticated, encrypted control and event sockets"
_PERSIST_HELP = "keep records, providers and contacts in SQLite in the data dir (env DHT_PERSIST)"
_MIN_LINKS_HELP = "links to the closest peers kept open however idle"
_LINK_IDLE_HELP = "seconds after which an unused link is closed (0: never; the contact stays)"


@app.command()
def main_command(
    signaling: Annotated[str, _opt(_URL, "signaling server URL; 'none': no server")] = (
        "ws://127.0.0.1:3000"
    ),
    data_dir: Annotated[str, _opt("DHT_DATA_DIR", "key directory")] = "./.dht-node",
    ice_address: Annotated[list[str] | None, _opt(None, _ICE_ADDRESS_HELP, metavar="ADDR")] = None,
    ice_server: Annotated[list[str] | None, _opt(None, _ICE_SERVER_HELP, metavar="URL")] = None,
    control: Annotated[str, _opt("DHT_CONTROL", "control endpoint", clikit.endpoint)] = (
        "tcp://127.0.0.1:7000"
    ),
    events: Annotated[str, _opt("DHT_EVENTS", "events endpoint", clikit.endpoint)] = (
        "tcp://127.0.0.1:7001"
    ),
    k: Annotated[int, _opt("DHT_K", "bucket size", clikit.positive_int)] = 20,
    alpha: Annotated[int, _opt("DHT_ALPHA", "lookup parallelism", clikit.positive_int)] = 3,
    max_connections: Annotated[
        int, _opt("DHT_MAX_CONNECTIONS", "connection cap", clikit.positive_int)
    ] = 64,
    bootstrap_peers: Annotated[
        int, _opt("DHT_BOOTSTRAP_PEERS", _BOOTSTRAP_HELP, clikit.positive_int)
    ] = 8,
    discovery_interval: Annotated[
        float, _opt("DHT_DISCOVERY_INTERVAL", _DISCOVERY_HELP, clikit.positive_float)
    ] = 15.0,
    stats_interval: Annotated[
        float, _opt("DHT_STATS_INTERVAL", "seconds between node.stats", clikit.positive_float)
    ] = 5.0,
    log_level: Annotated[str, _opt("DHT_LOG_LEVEL", "DEBUG..ERROR", clikit.log_level)] = "INFO",
    set_: Annotated[
        list[str] | None, typer.Option("--set", help=_SET_HELP, metavar="NAME=VALUE")
    ] = None,
    persist: Annotated[bool, typer.Option(envvar="DHT_PERSIST", help=_PERSIST_HELP)] = True,
    min_links: Annotated[int, _opt("DHT_MIN_LINKS", _MIN_LINKS_HELP, clikit.positive_int)] = 8,
    link_idle: Annotated[
        float, _opt("DHT_LINK_IDLE", _LINK_IDLE_HELP, clikit.non_negative_float)
    ] = 120.0,
    curve_key: Annotated[str | None, _opt("DHT_CURVE_KEY", _CURVE_HELP, metavar="PATH")] = None,
) -> int:
    addresses = ice_address or _env_list("DHT_ICE_ADDRESSES") or ["127.0.0.1"]
    servers = ice_server or _env_list("DHT_ICE_SERVERS") or []
    url = None if signaling.strip().lower() in ("", "none") else signaling
    options = Options(
        url, data_dir, addresses, servers, control, events, k, alpha, discovery_interval,
        max_connections, bootstrap_peers, stats_interval, log_level, min_links, link_idle,
        persist=persist, curve_key=curve_key or None,
    )  # fmt: skip
    try:
        overrides = tunables.parse(set_ or [], os.environ)
    except ValueError as exc:
        clikit.usage_error(str(exc))
    _parsed.append(dataclasses.replace(options, overrides=overrides))
    return clikit.EXIT_OK


@contextlib.contextmanager
def _environ_overlay(overlay: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in overlay}
    os.environ.update(overlay)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


def resolve(args: Sequence[str], env: Mapping[str, str]) -> Options | None:
    """The options ``dht-node ARGS`` would run with in this environment plus ``env``, printing
    nothing; None when they are not valid (the node then reports the error itself).

    A launcher that starts many nodes (the supervisor) resolves each command line once here and
    hands the node ``RESOLVED_ENV``: the node then skips its own parse and the re-exec, which
    cost each of 25 nodes starting together ~0.15 s of CPU on a 2-core machine.
    """
    quiet = io.StringIO()
    with (
        _environ_overlay(env),
        contextlib.redirect_stdout(quiet),
        contextlib.redirect_stderr(quiet),
    ):
        code = clikit.run(app, args, prog=PROG)
    if code != clikit.EXIT_OK or not _parsed:
        return None
    return _parsed.pop()


def reexec(options: Options) -> None:
    """Replace this process with its own command line, options resolved (returns on failure)."""
    if not sys.executable or not sys.argv:
        return
    os.environ[RESOLVED_ENV] = options.to_json()
    try:
        os.execv(sys.executable, [sys.executable, "-m", "peer", *sys.argv[1:]])
    except OSError as exc:
        del os.environ[RESOLVED_ENV]
        print(f"{PROG}: serving in-process ({exc})", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: this process's command line, which is then re-executed) and
    serve; the exit code."""
    code = clikit.run(app, argv, prog=PROG)
    if code != clikit.EXIT_OK or not _parsed:  # a usage error, or --help
        return code
    options = _parsed.pop()
    if argv is None:
        reexec(options)
    return serve(options)
