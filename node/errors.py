"""Every error the node raises on purpose, in one tree (the websockets/h11 split).

::

    DhtError                  root: ``except DhtError`` catches anything the node means to raise
     ├── LocalError           this process misused the API (a caller's bug or bad argument)
     │    ├── IdError         not a node ID / key                 (node.ids, also ValueError)
     │    ├── EncodeError     a message this node must not send   (node.codec, also ValueError)
     │    ├── MessageTooLarge a payload above the wire limit  (node.transport, also ValueError)
     │    └── BadArgument     an operation was given an invalid argument    (also ValueError)
     ├── RemoteError          a peer broke the protocol
     │    └── DecodeError     bytes that are not a valid message  (node.codec, also ValueError)
     ├── OperationError       a DHT operation could not complete: ``.code`` says why
     └── TransportError       the link layer (node.transport.base)
          ├── LinkClosed, LinkBusy
          └── DialTimeout, DialFailed

The classes live where they are raised and are importable from there; their bases are here.

Rules: the sans-IO core never raises on peer input (a bad peer is counted and dropped); it raises
``LocalError`` subclasses only for a caller's misuse. ``RemoteError`` exists so that the decoder can
say *who* is at fault. The control plane (``control/``) maps these to its wire error codes in one
place; nothing in ``node/`` knows those codes.
"""

from __future__ import annotations

from enum import StrEnum


class DhtError(Exception):
    """Root of every error the node raises on purpose."""


class LocalError(DhtError):
    """This process misused the API: a bug in the caller or an invalid argument."""


class RemoteError(DhtError):
    """A remote peer broke the protocol."""


class BadArgument(LocalError, ValueError):
    """An operation was given an argument it cannot accept (the message says which and why)."""


class Failure(StrEnum):
    """Why an operation failed; stable strings, mapped 1:1 to control-plane error codes."""

    NOT_FOUND = "not_found"
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    QUORUM_NOT_MET = "quorum_not_met"
    REFUSED = "refused"
    UNAVAILABLE = "unavailable"


class OperationError(DhtError):
    """A DHT operation could not complete; ``code`` is a :class:`Failure`."""

    def __init__(self, code: Failure, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
