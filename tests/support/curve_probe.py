"""Probing a secured cluster from outside: a plain client must get nothing back."""

from __future__ import annotations

import zmq

from control.codec import pack

NO_REPLY_S = 1.0


def plain_request_answered(endpoint: str, timeout_s: float = NO_REPLY_S) -> bool:
    """Send ``id`` from a client without CURVE; True when anything at all comes back."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(endpoint)
        sock.send_multipart([b"", pack({"v": 1, "id": 1, "cmd": "id", "args": {}})])
        return bool(sock.poll(int(timeout_s * 1000)))
    finally:
        sock.close(linger=0)


def plain_subscriber_hears(endpoint: str, timeout_s: float = 2 * NO_REPLY_S) -> bool:
    """Subscribe to every event without CURVE; True when any event arrives."""
    sock = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    try:
        sock.connect(endpoint)
        return bool(sock.poll(int(timeout_s * 1000)))
    finally:
        sock.close(linger=0)
