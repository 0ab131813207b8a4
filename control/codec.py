"""msgpack for the control plane; the only module of ``control`` that imports msgpack.

Decoding is strict: strings are ``str`` (``raw=False``), map keys must be str/bytes, ext types
(including the msgpack timestamp) are refused, and every length is capped by the frame size so a
small frame cannot announce a huge container. Any decoding failure becomes ``CodecError``.
"""

from __future__ import annotations

from typing import Any

import msgpack

from control.limits import MAX_REQUEST_BYTES


class CodecError(ValueError):
    """Not exactly one well-formed msgpack object within the limits, or an unpackable value."""


def pack(obj: Any) -> bytes:
    try:
        data: bytes = msgpack.packb(obj, use_bin_type=True, datetime=False)
    except (TypeError, ValueError, OverflowError) as exc:
        raise CodecError(f"cannot encode: {exc}") from exc
    return data


def _refuse_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"ext type {code} is not allowed")


def unpack(data: bytes, max_bytes: int = MAX_REQUEST_BYTES) -> Any:
    """Decode exactly one msgpack object from ``data`` (at most ``max_bytes`` long)."""
    if len(data) > max_bytes:
        raise CodecError(f"message is {len(data)} bytes, the limit is {max_bytes}")
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_str_len=max_bytes,
            max_bin_len=max_bytes,
            max_array_len=max_bytes,
            max_map_len=max_bytes // 2,
            max_ext_len=0,
            ext_hook=_refuse_ext,
        )
    except Exception as exc:  # msgpack raises a zoo: ValueError, ExtraData, StackError, ...
        raise CodecError(f"not a valid msgpack message: {type(exc).__name__}: {exc}") from exc


def encoded_size(obj: Any) -> int:
    """Size of ``obj`` once packed (``MAX_REQUEST_BYTES + 1`` when it cannot be packed)."""
    try:
        return len(pack(obj))
    except CodecError:
        return MAX_REQUEST_BYTES + 1
