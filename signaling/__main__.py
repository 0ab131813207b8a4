"""``dht-signaling`` / ``python -m signaling``: run the signaling server.

Configuration, highest precedence first: flags, environment, defaults.

| flag | env | default |
|---|---|---|
| ``--host`` | ``SIGNALING_HOST`` (also the seed's ``SIGNALLING_HOST``) | ``127.0.0.1`` |
| ``--port`` | ``SIGNALING_PORT`` (also ``SIGNALLING_PORT``) | ``3000`` |
| ``--log-level`` | ``SIGNALING_LOG_LEVEL`` | ``INFO`` |

Exit codes: 0 clean shutdown (SIGTERM/SIGINT), 1 cannot listen, 2 bad usage/configuration.
When ready it prints ``listening on ws://HOST:PORT`` (one line) to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence

from signaling.server import SignalingServer

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 3000
DEFAULT_LOG_LEVEL = "INFO"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

EXIT_OK = 0
EXIT_LISTEN_FAILED = 1
EXIT_USAGE = 2


def _port(text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be an integer, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be in 0..65535, got {value}")
    return value


def _log_level(text: str) -> str:
    level = text.strip().upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(
            f"log level must be one of {', '.join(LOG_LEVELS)}, got {text!r}"
        )
    return level


def _env(env: Mapping[str, str], *names: str) -> tuple[str, str] | None:
    for name in names:
        value = env.get(name)
        if value is not None and value.strip():
            return name, value
    return None


def parse_args(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> argparse.Namespace:
    """Flags > env > defaults. Exits with status 2 and a clear message on bad values."""
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(
        prog="dht-signaling", description="WebSocket signaling server for webrtc-dht"
    )
    parser.add_argument("--host", default=None, help=f"bind address (default {DEFAULT_HOST})")
    parser.add_argument(
        "--port", type=_port, default=None, help=f"TCP port, 0 = any (default {DEFAULT_PORT})"
    )
    parser.add_argument("--log-level", type=_log_level, default=None, help="DEBUG..CRITICAL")
    args = parser.parse_args(argv)

    if args.host is None:
        found = _env(env, "SIGNALING_HOST", "SIGNALLING_HOST")
        args.host = found[1].strip() if found else DEFAULT_HOST
    if args.port is None:
        found = _env(env, "SIGNALING_PORT", "SIGNALLING_PORT")
        if found is None:
            args.port = DEFAULT_PORT
        else:
            try:
                args.port = _port(found[1])
            except argparse.ArgumentTypeError as exc:
                parser.error(f"{found[0]}: {exc}")
    if args.log_level is None:
        found = _env(env, "SIGNALING_LOG_LEVEL")
        try:
            args.log_level = _log_level(found[1]) if found else DEFAULT_LOG_LEVEL
        except argparse.ArgumentTypeError as exc:
            parser.error(f"SIGNALING_LOG_LEVEL: {exc}")
    return args


async def _run(host: str, port: int) -> int:
    server = SignalingServer(host, port)
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


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return asyncio.run(_run(args.host, args.port))


if __name__ == "__main__":
    sys.exit(main())
