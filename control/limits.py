"""Protocol version and size limits of the control plane (no imports: the bottom of ``control``)."""

from __future__ import annotations

from typing import Final

PROTOCOL_VERSION: Final = 1

MAX_REQUEST_BYTES: Final = 1024 * 1024
"""A request frame above this gets ``too_large``."""
MAX_VALUE_BYTES: Final = 32 * 1024
"""A stored value (and an encoded ``meta`` map) above this gets ``too_large``."""
MAX_STRING_BYTES: Final = 1024
"""Keys and topics above this (UTF-8 bytes) get ``bad_args``."""
NODE_ID_HEX_CHARS: Final = 64
MAX_PORT: Final = 65535
