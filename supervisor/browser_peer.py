"""A browser peer as a cluster member: ``python -m supervisor.browser_peer --signaling WS ...``.

The supervisor runs browser peers exactly like Python peers — one member process each, with a
control endpoint, an event endpoint and a data directory — only the command differs. This
process is the bridge between the cluster and one headless Chromium tab:

1. it starts ``chromium`` (``supervisor.chromium``: headless, its own temporary profile, DevTools
   on 127.0.0.1) and opens ``peer.html?signal=<WS>`` served by the signaling server
   (``dht-signaling --web``), then waits for ``window.dhtPeer.ready()`` (the peer has joined);
2. it binds the same control (ROUTER) and event (PUB) sockets as a node and answers commands
   through ``supervisor.browser_api.BrowserNodeAPI`` (CDP ``Runtime.evaluate`` on the page);
3. every ``EVENT_POLL_S`` it drains the page's events (``drainEvents()``) onto PUB, and every
   ``--stats-interval`` it publishes ``node.stats``, so the supervisor fans them in like any
   node's (``dhtctl watch`` shows them, tagged with the member index).

Lifetime: SIGTERM/SIGINT or ``shutdown`` stop it; it then closes Chromium (quit, then its
process group). If the browser dies or the page stops answering, the process exits with status
1 and the supervisor restarts it (a fresh browser with a fresh identity). The browser's pid is
kept in ``<data-dir>/chromium.pid``: a browser left behind by a SIGKILLed bridge is stopped when
the member starts again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import zmq

from control.errors import CommandError, ErrorCode
from control.server import ControlServer
from supervisor.browser_api import BrowserNodeAPI, page_expression
from supervisor.chromium import BrowserError, Chromium, EvaluationError, Page

log = logging.getLogger("supervisor.browser_peer")

PAGE = "peer.html"
READY_TIMEOUT_S = 60.0
EVENT_POLL_S = 0.25
PAGE_FAILURES_FATAL = 5  # consecutive failed event polls before the member gives up
PID_FILE = "chromium.pid"
DEFAULT_STATS_INTERVAL_S = 5.0


def page_url(signaling: str, page: str = PAGE) -> str:
    """``http(s)://host:port/peer.html?signal=<signaling>`` for a ``ws(s)://host:port`` URL."""
    parts = urllib.parse.urlsplit(signaling)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise ValueError(f"not a WebSocket URL: {signaling!r}")
    scheme = "https" if parts.scheme == "wss" else "http"
    query = urllib.parse.urlencode({"signal": signaling})
    return urllib.parse.urlunsplit((scheme, parts.netloc, f"/{page}", query, ""))


def _stop_stale_browser(data_dir: Path) -> None:
    """Stop the browser a previous (SIGKILLed) run of this member left behind."""
    pid_file = data_dir / PID_FILE
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    pid_file.unlink(missing_ok=True)
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return
    if b"chromium" not in cmdline or b"--remote-debugging-port" not in cmdline:
        return  # the pid was reused by something else
    log.warning("stopping the browser (pid %d) left behind by a previous run", pid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


class BrowserMember:
    """One Chromium tab running the browser peer, exposed on the control plane."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.data_dir = Path(args.data_dir)
        self.browser = Chromium()
        self.page: Page | None = None
        self.server: ControlServer | None = None
        self.stop = asyncio.Event()
        self.failed = False

    async def call(self, method: str, *args: Any) -> Any:
        """``await window.dhtPeer.<method>(...args)`` in the page; errors as command errors."""
        if self.page is None:
            raise CommandError(ErrorCode.NODE_UNAVAILABLE, "the browser page is not open")
        try:
            return await self.page.evaluate(page_expression(method, *args))
        except EvaluationError as exc:
            raise CommandError(ErrorCode.INTERNAL, f"the page threw: {exc}") from exc
        except (BrowserError, TimeoutError) as exc:
            raise CommandError(ErrorCode.NODE_UNAVAILABLE, f"the browser: {exc}") from exc

    async def run(self) -> int:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        _stop_stale_browser(self.data_dir)
        try:
            await self.browser.start()
            if self.browser.pid is not None:
                (self.data_dir / PID_FILE).write_text(f"{self.browser.pid}\n")
            url = page_url(self.args.signaling)
            self.page = await self.browser.open(url, wait_load_s=READY_TIMEOUT_S)
            ready = await self.page.evaluate(page_expression("ready"), timeout_s=READY_TIMEOUT_S)
            node_id = str(ready["id"])
            log.info("browser peer %s ready on %s", node_id[:8], url)
            api = BrowserNodeAPI(self.call, node_id, on_shutdown=self.stop.set)
            self.server = ControlServer(api, self.args.control, self.args.events, node_id=node_id)
            await self.server.start()
            async with asyncio.TaskGroup() as tasks:
                pump = tasks.create_task(self._pump_events(api))
                await self.stop.wait()
                pump.cancel()
        except (
            BrowserError,
            EvaluationError,
            TimeoutError,
            OSError,
            KeyError,
            TypeError,
            zmq.ZMQError,
        ) as exc:
            log.error("browser peer failed: %s", exc)
            self.failed = True
        finally:
            await self.close()
        return 1 if self.failed else 0

    async def _pump_events(self, api: BrowserNodeAPI) -> None:
        assert self.server is not None
        assert self.page is not None
        loop = asyncio.get_running_loop()
        next_stats = loop.time()
        failures = 0
        while not self.stop.is_set():
            try:
                events = await self.page.evaluate(page_expression("drainEvents"), timeout_s=10.0)
                for event in events if isinstance(events, list) else ():
                    if isinstance(event, dict) and isinstance(event.get("topic"), str):
                        payload = {k: v for k, v in event.items() if k != "topic"}
                        self.server.publish(event["topic"], payload)
                if loop.time() >= next_stats:
                    next_stats = loop.time() + self.args.stats_interval
                    self.server.publish("node.stats", await api.stats())
                failures = 0
            except (BrowserError, EvaluationError, TimeoutError, CommandError) as exc:
                failures += 1
                log.warning("browser page did not answer (%d): %s", failures, exc)
                if failures >= PAGE_FAILURES_FATAL:
                    self.failed = True
                    self.stop.set()
                    return
            await asyncio.sleep(EVENT_POLL_S)

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()
        await self.browser.close()
        (self.data_dir / PID_FILE).unlink(missing_ok=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m supervisor.browser_peer",
        description="Run one headless-Chromium DHT peer as a cluster member.",
    )
    p.add_argument("--signaling", required=True, help="ws://host:port of the signaling server")
    p.add_argument("--control", required=True, help="control endpoint, e.g. tcp://127.0.0.1:7001")
    p.add_argument("--events", required=True, help="event endpoint, e.g. tcp://127.0.0.1:7002")
    p.add_argument("--data-dir", required=True, help="the member's directory")
    p.add_argument("--stats-interval", type=float, default=DEFAULT_STATS_INTERVAL_S)
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    try:
        page_url(args.signaling)
    except ValueError as exc:
        p.error(str(exc))
    if not args.stats_interval > 0:
        p.error("--stats-interval must be positive")
    return args


async def _main(args: argparse.Namespace) -> int:
    member = BrowserMember(args)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, member.stop.set)
    return await member.run()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return asyncio.run(_main(args))


if __name__ == "__main__":
    raise SystemExit(main())
