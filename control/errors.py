"""Errors of the control plane.

Node side (raised by ``NodeAPI`` implementations, turned into error replies by the server)::

    CommandError(code, message, details)

Client side (raised by ``ControlClient`` / ``AsyncControlClient``)::

    ControlError
     ├── RemoteError      the server answered ok=false: .code, .message, .details
     ├── ProtocolError    the server answered something that is not a valid reply
     ├── Unreachable      nothing accepts connections at the endpoint      (dhtctl exit 3)
     └── Timeout          connected, but no reply within the timeout       (dhtctl exit 3)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from control.schema import ErrorCode


class CommandError(Exception):
    """A command failed on the node; becomes ``{"ok": false, "error": {...}}``."""

    def __init__(
        self, code: ErrorCode | str, message: str, details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = str(code)
        self.message = message
        self.details = dict(details) if details is not None else None


class ControlError(Exception):
    """Base of every client-side control-plane error."""


class RemoteError(ControlError):
    """The server replied with an error."""

    def __init__(self, code: str, message: str, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = dict(details) if details is not None else None


class ProtocolError(ControlError):
    """The reply could not be understood."""


class Unreachable(ControlError):
    """No server accepts connections at the endpoint."""


class Timeout(ControlError):
    """No reply within the timeout."""
