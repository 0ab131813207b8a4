"""The CDP driver: launch, evaluate, console capture, errors, and a clean shutdown."""

from __future__ import annotations

import os
import signal

import pytest

from supervisor.chromium import BrowserError, Chromium, EvaluationError, group_alive

pytestmark = pytest.mark.browser


async def test_evaluate_console_and_cleanup() -> None:
    browser = Chromium()
    await browser.start()
    pid = browser.pid
    profile = browser.profile
    assert pid is not None
    assert profile is not None
    assert group_alive(pid)
    try:
        page = await browser.open("data:text/html,<script>console.log('hello', 42)</script>")
        assert await page.evaluate("1 + 2") == 3
        value = await page.evaluate("new Promise(r => setTimeout(() => r({a: [1, 'x']}), 50))")
        assert value == {"a": [1, "x"]}
        message = await page.wait_console("hello", 5.0)
        assert message.text == "hello 42"
        assert message.level == "log"
        with pytest.raises(EvaluationError, match="boom"):
            await page.evaluate("Promise.reject(new Error('boom'))")
        await page.close()
    finally:
        await browser.close()
    assert not group_alive(pid)
    assert not profile.exists()
    await browser.close()  # idempotent


async def test_a_dead_browser_is_an_error_and_close_still_cleans_up() -> None:
    browser = Chromium()
    await browser.start()
    pid = browser.pid
    assert pid is not None
    try:
        page = await browser.open("about:blank")
        os.killpg(pid, signal.SIGKILL)  # the browser crashes
        with pytest.raises(BrowserError):
            await page.evaluate("1", timeout_s=10.0)
    finally:
        await browser.close()
    assert not group_alive(pid)


async def test_a_missing_binary_is_a_clear_error() -> None:
    with pytest.raises(BrowserError, match="not found"):
        await Chromium(binary="no-such-chromium-binary").start()
