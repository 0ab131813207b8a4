"""A minimal Chrome DevTools Protocol driver for headless Debian ``chromium``.

Theory of operation:
- ``Chromium.start()`` launches ``chromium --headless`` in its own session (so the whole process
  tree can be signalled as one group) with a fresh temporary profile and
  ``--remote-debugging-port=0`` bound to 127.0.0.1. Chromium writes the port it picked and the
  browser target's WebSocket path to ``<profile>/DevToolsActivePort``; we read that file rather
  than parse stderr.
- One WebSocket to the browser target carries everything: ``Target.createTarget`` opens a page,
  ``Target.attachToTarget(flatten=True)`` gives a session id, and page commands travel on the
  same socket tagged with that session id. A reader task matches replies to requests by id and
  routes events to their page (console messages, uncaught exceptions).
- ``close()`` asks the browser to quit (``Browser.close``), waits briefly, then kills the process
  group it started (SIGTERM, then SIGKILL) and removes the temporary profile. It is idempotent
  and never leaves a process behind; only the group this driver created is signalled.

Errors: a failed launch or a dead browser raise ``BrowserError``; an exception thrown by an
evaluated expression raises ``EvaluationError`` with the page's message.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from supervisor.state import GONE_STATES, proc_stat_fields

log = logging.getLogger(__name__)

CHROMIUM_BINARY = "chromium"
LAUNCH_TIMEOUT_S = 30.0  # a cold start on a loaded 2-core machine can take > 20 s
COMMAND_TIMEOUT_S = 30.0
QUIT_WAIT_S = 3.0
KILL_WAIT_S = 3.0
MAX_CDP_MESSAGE_BYTES = 64 * 1024 * 1024
CONSOLE_HISTORY = 2000
LOAD_POLL_S = 0.5

# Flags for a quiet, self-contained headless browser. WebRTC: loopback ICE candidates are allowed
# (the cluster lives on 127.0.0.1); mDNS host-candidate obfuscation stays at the browser default.
BASE_FLAGS = (
    "--headless=new",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-gpu",
    "--disable-extensions",
    "--disable-sync",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-breakpad",
    "--disable-crash-reporter",
    "--disable-dev-shm-usage",
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
    "--metrics-recording-only",
    "--mute-audio",
    "--password-store=basic",
    "--use-mock-keychain",
    "--allow-loopback-in-peer-connection",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)


def group_alive(pgid: int) -> bool:
    """True while a process of group ``pgid`` is still running (zombies do not count)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = proc_stat_fields(int(entry.name)) or []
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in GONE_STATES:
            return True
    return False


def _spawn(argv: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start the browser in a new session (its own process group), output to ``log_path``."""
    with log_path.open("wb") as out:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


class BrowserError(RuntimeError):
    """The browser could not be started, died, or did not answer."""


class EvaluationError(RuntimeError):
    """An expression evaluated in a page threw (``message`` is the page's description)."""


@dataclass(frozen=True, slots=True)
class ConsoleMessage:
    """One console call or uncaught exception of a page (``level``: log, warning, error…)."""

    level: str
    text: str


def _console_text(args: list[dict[str, Any]]) -> str:
    parts = []
    for a in args:
        if "value" in a:
            v = a["value"]
            parts.append(v if isinstance(v, str) else json.dumps(v))
        else:
            parts.append(str(a.get("description", a.get("type", "?"))))
    return " ".join(parts)


class Page:
    """One tab, attached through a flat CDP session of its browser's socket."""

    def __init__(self, browser: Chromium, target_id: str, session_id: str) -> None:
        self._browser = browser
        self.target_id = target_id
        self.session_id = session_id
        self.console: deque[ConsoleMessage] = deque(maxlen=CONSOLE_HISTORY)
        self._console_changed = asyncio.Event()
        self._loaded = asyncio.Event()
        self.closed = False

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """A raw CDP command on this page's session."""
        return await self._browser.send(method, params, session_id=self.session_id)

    async def evaluate(
        self, expression: str, *, await_promise: bool = True, timeout_s: float = COMMAND_TIMEOUT_S
    ) -> Any:
        """The JSON value of ``expression`` in the page (awaited when it is a promise)."""
        reply = await self._browser.send(
            "Runtime.evaluate",
            {
                "expression": expression,
                "awaitPromise": await_promise,
                "returnByValue": True,
                "userGesture": True,
            },
            session_id=self.session_id,
            timeout_s=timeout_s,
        )
        exc = reply.get("exceptionDetails")
        if exc is not None:
            detail = exc.get("exception", {}).get("description") or exc.get("text", "exception")
            raise EvaluationError(str(detail))
        return reply.get("result", {}).get("value")

    async def goto(self, url: str, timeout_s: float = COMMAND_TIMEOUT_S) -> None:
        """Navigate and wait until the page has loaded (the load event, or a completed
        document at the new address should the event be missed)."""
        self._loaded.clear()
        reply = await self.send("Page.navigate", {"url": url})
        if reply.get("errorText"):
            raise BrowserError(f"cannot open {url}: {reply['errorText']}")
        loaded = "document.readyState === 'complete' && location.href !== 'about:blank'"
        async with asyncio.timeout(timeout_s):
            while not self._loaded.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(LOAD_POLL_S):
                        await self._loaded.wait()
                with contextlib.suppress(EvaluationError):
                    if await self.evaluate(loaded, await_promise=False):
                        return

    async def wait_for(self, expression: str, timeout_s: float, step_s: float = 0.05) -> Any:
        """Poll ``expression`` until it is truthy; its value. Raises ``TimeoutError``."""
        async with asyncio.timeout(timeout_s):
            while True:
                with contextlib.suppress(EvaluationError):
                    value = await self.evaluate(expression)
                    if value:
                        return value
                await asyncio.sleep(step_s)

    async def wait_console(self, needle: str, timeout_s: float) -> ConsoleMessage:
        """The first console message containing ``needle`` (past or future)."""
        async with asyncio.timeout(timeout_s):
            while True:
                for m in self.console:
                    if needle in m.text:
                        return m
                self._console_changed.clear()
                await self._console_changed.wait()

    def _on_event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Page.loadEventFired":
            self._loaded.set()
            return
        if method == "Runtime.consoleAPICalled":
            text = _console_text(params.get("args", []))
            self.console.append(ConsoleMessage(str(params.get("type", "log")), text))
        elif method == "Runtime.exceptionThrown":
            d = params.get("exceptionDetails", {})
            text = d.get("exception", {}).get("description") or d.get("text", "exception")
            self.console.append(ConsoleMessage("exception", str(text)))
        elif method == "Log.entryAdded":
            e = params.get("entry", {})
            self.console.append(ConsoleMessage(str(e.get("level", "log")), str(e.get("text", ""))))
        else:
            return
        self._console_changed.set()

    async def close(self) -> None:
        """Close the tab (a no-op when the browser is already gone)."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(BrowserError, TimeoutError):
            await self._browser.send(
                "Target.closeTarget", {"targetId": self.target_id}, timeout_s=5.0
            )
        self._browser._pages.pop(self.session_id, None)


class Chromium:
    """A headless chromium process and its DevTools socket; ``async with Chromium() as b``."""

    def __init__(self, binary: str = CHROMIUM_BINARY, extra_flags: tuple[str, ...] = ()) -> None:
        self.binary = binary
        self.extra_flags = extra_flags
        self.proc: subprocess.Popen[bytes] | None = None
        self.profile: Path | None = None
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._pages: dict[str, Page] = {}
        self._closed = False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    async def __aenter__(self) -> Chromium:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.proc is not None:
            raise BrowserError("already started")
        binary = shutil.which(self.binary)
        if binary is None:
            raise BrowserError(f"{self.binary!r} not found on PATH (apt-get install chromium)")
        self.profile = Path(tempfile.mkdtemp(prefix="dht-chromium-"))
        argv = [binary, *BASE_FLAGS, *self.extra_flags, f"--user-data-dir={self.profile}"]
        if os.geteuid() == 0:
            argv.append("--no-sandbox")  # chromium refuses to run as root with its sandbox
        argv.append("about:blank")
        self.proc = await asyncio.to_thread(_spawn, argv, self.profile / "chromium.log")
        try:
            url = await self._devtools_url()
            self._ws = await connect(
                url,
                max_size=MAX_CDP_MESSAGE_BYTES,
                ping_interval=None,
                open_timeout=LAUNCH_TIMEOUT_S,
            )
        except BaseException:
            await self.close()
            raise
        self._reader = asyncio.create_task(self._read(), name="chromium-cdp-reader")

    async def _devtools_url(self) -> str:
        assert self.profile is not None
        assert self.proc is not None
        port_file = self.profile / "DevToolsActivePort"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LAUNCH_TIMEOUT_S
        while loop.time() < deadline:
            if self.proc.poll() is not None:
                raise BrowserError(
                    f"chromium exited with {self.proc.returncode}: {self._log_tail()}"
                )
            with contextlib.suppress(OSError):
                lines = port_file.read_text().split()
                if len(lines) >= 2:
                    return f"ws://127.0.0.1:{int(lines[0])}{lines[1]}"
            await asyncio.sleep(0.05)
        raise BrowserError(f"chromium did not open its DevTools port in {LAUNCH_TIMEOUT_S} s")

    def _log_tail(self) -> str:
        if self.profile is None:
            return ""
        try:
            return (self.profile / "chromium.log").read_text(errors="replace")[-800:]
        except OSError:
            return ""

    async def close(self) -> None:
        """Quit the browser, kill what remains of its process group, remove the profile."""
        if self._closed:
            return
        self._closed = True
        if self._ws is not None:
            with contextlib.suppress(BrowserError, TimeoutError, ConnectionClosed):
                await self.send("Browser.close", timeout_s=QUIT_WAIT_S)
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self._fail_waiting(BrowserError("browser closed"))
        proc = self.proc
        if proc is not None:
            await asyncio.to_thread(self._reap, proc)
        if self.profile is not None:
            shutil.rmtree(self.profile, ignore_errors=True)

    @staticmethod
    def _reap(proc: subprocess.Popen[bytes]) -> None:
        """Wait for the browser to quit, then make sure its whole process group is gone
        (chromium's zygote and renderers share the group created at launch)."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(QUIT_WAIT_S)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if not group_alive(proc.pid):
                break
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
            deadline = time.monotonic() + KILL_WAIT_S
            while group_alive(proc.pid) and time.monotonic() < deadline:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(0.05)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(0.1)

    # -- the DevTools socket ---------------------------------------------------------------------

    async def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session_id: str | None = None,
        timeout_s: float = COMMAND_TIMEOUT_S,
    ) -> dict[str, Any]:
        """Send one CDP command; its result (raises ``BrowserError`` on a protocol error)."""
        ws = self._ws
        if ws is None or (self._reader is not None and self._reader.done()):
            raise BrowserError("not connected to chromium")
        cmd_id = next(self._ids)
        msg: dict[str, Any] = {"id": cmd_id, "method": method, "params": params or {}}
        if session_id is not None:
            msg["sessionId"] = session_id
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[cmd_id] = fut
        try:
            await ws.send(json.dumps(msg))
            async with asyncio.timeout(timeout_s):
                reply = await fut
        except ConnectionClosed as exc:
            raise BrowserError("chromium closed the DevTools socket") from exc
        finally:
            self._waiting.pop(cmd_id, None)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error'].get('message', reply['error'])}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for raw in self._ws:
                try:
                    msg = json.loads(raw)
                except ValueError:
                    continue
                if "id" in msg:
                    fut = self._waiting.get(msg["id"])
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
                    continue
                page = self._pages.get(msg.get("sessionId", ""))
                if page is not None:
                    page._on_event(str(msg.get("method", "")), msg.get("params", {}))
        except ConnectionClosed:
            pass
        finally:
            self._fail_waiting(BrowserError("chromium closed the DevTools socket"))

    def _fail_waiting(self, exc: BrowserError) -> None:
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(exc)
        self._waiting.clear()

    # -- pages -----------------------------------------------------------------------------------

    async def open(self, url: str, *, wait_load_s: float = COMMAND_TIMEOUT_S) -> Page:
        """A new tab showing ``url`` (loaded when this returns), with console capture on."""
        created = await self.send("Target.createTarget", {"url": "about:blank"})
        target_id = str(created["targetId"])
        attached = await self.send(
            "Target.attachToTarget", {"targetId": target_id, "flatten": True}
        )
        page = Page(self, target_id, str(attached["sessionId"]))
        self._pages[page.session_id] = page
        await page.send("Runtime.enable")
        await page.send("Log.enable")
        await page.send("Page.enable")
        await page.goto(url, wait_load_s)
        return page

    @property
    def pages(self) -> tuple[Page, ...]:
        return tuple(self._pages.values())
