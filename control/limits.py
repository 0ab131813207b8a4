"""Protocol version and size limits of the control plane (no imports: the bottom of ``control``)."""

from __future__ import annotations

from typing import Final

PROTOCOL_VERSION: Final = 1

MAX_REQUEST_BYTES: Final = 1024 * 1024
"""A request frame above this gets ``too_large``."""
NODE_MAX_FRAME_BYTES: Final = 2 * MAX_REQUEST_BYTES
"""ZeroMQ's ``MAXMSGSIZE`` on a node's control socket: a frame above this makes ZeroMQ drop the
connection before buffering it (frames between ``MAX_REQUEST_BYTES`` and this get ``too_large``).
One 15 MiB frame used to be read whole, and 8 of them grew a node from 80 to 203 MB for good."""
SUBSCRIPTION_MAX_BYTES: Final = 4096
"""``MAXMSGSIZE`` on PUB sockets: all they receive is subscription messages (topic prefixes)."""
MAX_VALUE_BYTES: Final = 32 * 1024
"""A stored value (and an encoded ``meta`` map) above this gets ``too_large``."""
MAX_STRING_BYTES: Final = 1024
"""Keys and topics above this (UTF-8 bytes) get ``bad_args``."""
NODE_ID_HEX_CHARS: Final = 64
MAX_PORT: Final = 65535
