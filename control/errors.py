"""Errors of the control plane.

Serving side — one coded error for nodes and the supervisor alike; the ROUTER server
(``control.server``) turns it into ``{"ok": false, "error": {"code", "message", "details"?}}``::

    CommandError(code, message, details)     a malformed request, bad arguments, or a command
                                             that failed (not found, no quorum, node down, ...)

Client side (raised by ``ControlClient`` / ``AsyncControlClient``)::

    ControlError
     ├── RemoteError      the server answered ok=false: .code, .message, .details
     ├── ProtocolError    the server answered something that is not a valid reply
     ├── Unreachable      nothing accepts connections at the endpoint      (dhtctl exit 3)
     └── Timeout          connected, but no reply within the timeout       (dhtctl exit 3)
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    BAD_REQUEST = "bad_request"
    UNSUPPORTED_VERSION = "unsupported_version"
    UNKNOWN_COMMAND = "unknown_command"
    BAD_ARGS = "bad_args"
    TOO_LARGE = "too_large"
    NOT_FOUND = "not_found"
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    QUORUM_NOT_MET = "quorum_not_met"
    CONFLICT = "conflict"  # a mutable write lost: cas_mismatch / seq_not_newer at the holders
    QUOTA = "quota"  # the holders refused the write for a quota
    RATE_LIMITED = "rate_limited"  # the holders refused the write: this node sends too fast
    NODE_UNAVAILABLE = "node_unavailable"
    INTERNAL = "internal"


def error_body(
    code: ErrorCode | str, message: str, details: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The ``error`` map of a reply (``details`` only when given)."""
    error: dict[str, Any] = {"code": str(code), "message": message}
    if details is not None:
        error["details"] = dict(details)
    return error


def as_code(code: ErrorCode | str) -> ErrorCode | str:
    """``code`` as an ``ErrorCode`` when it is one (a newer peer may send codes we do not know)."""
    try:
        return ErrorCode(code)
    except ValueError:
        return code


class _Coded(Exception):
    """An error reply's content: ``code``, ``message`` and optional ``details``."""

    def __init__(
        self, code: ErrorCode | str, message: str, details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = as_code(code)
        self.message = message
        self.details = dict(details) if details is not None else None

    def error(self) -> dict[str, Any]:
        """The ``error`` map of the reply."""
        return error_body(self.code, self.message, self.details)


class CommandError(_Coded):
    """A request or a command failed; becomes ``{"ok": false, "error": {...}}``."""


class ControlError(Exception):
    """Base of every client-side control-plane error."""


class RemoteError(_Coded, ControlError):
    """The server replied with an error."""

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class ProtocolError(ControlError):
    """The reply could not be understood."""


class Unreachable(ControlError):
    """No server accepts connections at the endpoint."""


class Timeout(ControlError):
    """No reply within the timeout."""
