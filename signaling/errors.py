"""Errors raised by the signaling client to its caller.

::

    SignalingError                 base class; every client failure is one of these
    ├── SignalingUnavailable       not connected/registered right now (or the link dropped mid-call)
    ├── SignalingTimeout           no reply in time
    └── SignalingRemoteError       the server answered with an error frame (``.code``, ``.message``)

Protocol violations by the server are never raised: the client logs and ignores the frame.
"""

from __future__ import annotations


class SignalingError(Exception):
    """Base class of the signaling client's errors."""


class SignalingUnavailable(SignalingError):
    """The client has no registered connection to the signaling server."""


class SignalingTimeout(SignalingError):
    """The server did not answer in time."""


class SignalingRemoteError(SignalingError):
    """The server answered a request with an error frame."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"signaling server error {code}: {message}")
        self.code = code
        self.message = message
