"""The node's error tree (``node.errors``): one root, a local/remote split, ValueError kept."""

from __future__ import annotations

import pytest

from node.codec import DecodeError, EncodeError, decode, encode
from node.errors import BadArgument, DhtError, LocalError, RemoteError
from node.ids import IdError, parse_id
from node.transport.base import (
    DialFailed,
    DialTimeout,
    LinkBusy,
    LinkClosed,
    MessageTooLarge,
    TransportError,
    check_message_size,
)


@pytest.mark.parametrize(
    ("cls", "branch"),
    [
        (IdError, LocalError),
        (EncodeError, LocalError),
        (MessageTooLarge, LocalError),
        (BadArgument, LocalError),
        (DecodeError, RemoteError),
        (TransportError, DhtError),
        (LinkClosed, TransportError),
        (LinkBusy, TransportError),
        (DialTimeout, TransportError),
        (DialFailed, TransportError),
    ],
)
def test_every_error_hangs_off_the_one_root(cls: type[Exception], branch: type) -> None:
    assert issubclass(cls, branch)
    assert issubclass(cls, DhtError)


def test_value_error_bases_are_kept_for_existing_callers() -> None:
    for cls in (IdError, EncodeError, DecodeError, MessageTooLarge, BadArgument):
        assert issubclass(cls, ValueError)
    assert not issubclass(TransportError, ValueError)
    assert not issubclass(LocalError, RemoteError)
    assert not issubclass(RemoteError, LocalError)


def test_raised_errors_are_caught_by_their_branch() -> None:
    with pytest.raises(LocalError):
        parse_id("xyz")
    with pytest.raises(RemoteError):
        decode(b"\xc1")
    with pytest.raises(LocalError):
        encode(object())  # type: ignore[arg-type]
    with pytest.raises(LocalError):
        check_message_size(b"x" * (64 * 1024))
