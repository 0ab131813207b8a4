"""``dht-signaling`` / ``python -m signaling``: run the signaling server.

Configuration, highest precedence first: flags, environment, defaults.

| flag | env | default |
|---|---|---|
| ``--host`` | ``SIGNALING_HOST`` (also the seed's ``SIGNALLING_HOST``) | ``127.0.0.1`` |
| ``--port`` | ``SIGNALING_PORT`` (also ``SIGNALLING_PORT``) | ``3000`` |
| ``--log-level`` | ``SIGNALING_LOG_LEVEL`` | ``INFO`` |
| ``--web`` | ``SIGNALING_WEB`` | none (no HTTP files) |

With ``--web DIR`` the same port also serves DIR's files over HTTP (the browser peer in ``web/``).
| | ``SIGNALING_REGISTER_RATE`` / ``_BURST`` | registrations/s and burst per address: 20 / 100 |
| | ``SIGNALING_REGISTER_RATE_GLOBAL`` / ``_BURST_GLOBAL`` | the whole server: 200 / 1000 |

Exit codes: 0 clean shutdown (SIGTERM/SIGINT), 1 cannot listen, 2 bad usage/configuration.
When ready it prints ``listening on ws://HOST:PORT`` (one line) to stderr.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, NamedTuple

import typer

from node import clikit
from signaling.admission import AdmissionSettings
from signaling.server import SignalingServer

PROG = "dht-signaling"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 3000
DEFAULT_LOG_LEVEL = "INFO"

EXIT_OK = clikit.EXIT_OK
EXIT_LISTEN_FAILED = clikit.EXIT_FAILED
EXIT_USAGE = clikit.EXIT_USAGE


class Settings(NamedTuple):
    """What the server runs with, once flags, environment and defaults are resolved."""

    host: str
    port: int
    log_level: str
    web: Path | None = None


def resolve(
    host: str | None,
    port: int | None,
    log_level: str | None,
    env: Mapping[str, str],
    web: Path | None = None,
) -> Settings:
    """Flags > env > defaults. A bad environment value is a usage error naming the variable."""
    if host is None:
        host = clikit.from_env(env, ("SIGNALING_HOST", "SIGNALLING_HOST"), lambda v: str(v).strip())
    if port is None:
        port = clikit.from_env(env, ("SIGNALING_PORT", "SIGNALLING_PORT"), clikit.port)
    if log_level is None:
        log_level = clikit.from_env(env, ("SIGNALING_LOG_LEVEL",), clikit.log_level)
    if web is None:
        web = clikit.from_env(env, ("SIGNALING_WEB",), _web_dir)
    return Settings(
        host or DEFAULT_HOST,
        DEFAULT_PORT if port is None else port,
        log_level or DEFAULT_LOG_LEVEL,
        web,
    )


def _web_dir(value: str) -> Path:
    path = Path(value)
    if not path.is_dir():
        raise typer.BadParameter(f"{value!r} is not a directory")
    return path


def make_app(
    action: Callable[[Settings], int], env: Mapping[str, str] | None = None
) -> typer.Typer:
    """The ``dht-signaling`` command; ``action`` runs on the resolved settings."""
    app = clikit.make_app(PROG, "WebSocket signaling server for webrtc-dht.")

    @app.command()
    def serve(
        host: Annotated[
            str | None, typer.Option("--host", help=f"bind address (default {DEFAULT_HOST}).")
        ] = None,
        port: Annotated[
            int | None,
            typer.Option(
                "--port", parser=clikit.port, help=f"TCP port, 0 = any (default {DEFAULT_PORT})."
            ),
        ] = None,
        log_level: Annotated[
            str | None,
            typer.Option("--log-level", parser=clikit.log_level, help="DEBUG..CRITICAL."),
        ] = None,
        web: Annotated[
            Path | None,
            typer.Option(
                "--web",
                parser=_web_dir,
                help="also serve this directory's files over HTTP (the browser peer: web/).",
            ),
        ] = None,
    ) -> int:
        """WebSocket signaling server for webrtc-dht."""
        return action(resolve(host, port, log_level, os.environ if env is None else env, web))

    return app


def parse_args(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """The settings ``argv`` and ``env`` give; a usage error prints one line on stderr and
    raises ``SystemExit(2)``."""
    found: list[Settings] = []

    def keep(settings: Settings) -> int:
        found.append(settings)
        return EXIT_OK

    code = clikit.run(make_app(keep, env), argv, prog=PROG)
    if not found:
        raise SystemExit(code)
    return found[0]


async def _run(host: str, port: int, web: Path | None = None) -> int:
    try:
        admission = AdmissionSettings.from_env(os.environ)
    except ValueError as exc:
        print(f"dht-signaling: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    server = SignalingServer(host, port, web_root=web, admission=admission)
    try:
        await server.start()
    except OSError as exc:
        print(f"dht-signaling: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return EXIT_LISTEN_FAILED
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"listening on ws://{host}:{server.port}", file=sys.stderr, flush=True)
    try:
        await stop.wait()
    finally:
        logging.getLogger("signaling").info("shutting down: %s", server.stats().as_dict())
        await server.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return EXIT_OK


def _serve(settings: Settings) -> int:
    logging.basicConfig(
        level=settings.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return asyncio.run(_run(settings.host, settings.port, settings.web))


def main(argv: Sequence[str] | None = None) -> int:
    return clikit.run(make_app(_serve), argv, prog=PROG)


if __name__ == "__main__":
    sys.exit(main())
