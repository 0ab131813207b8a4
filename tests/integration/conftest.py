"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from signaling.server import SignalingServer


@pytest.fixture
async def signaling_server() -> AsyncIterator[SignalingServer]:
    """A real signaling server on 127.0.0.1, on a port the OS picks."""
    srv = SignalingServer("127.0.0.1", 0)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.close()
