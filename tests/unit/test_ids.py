"""XOR metric, bucket index and ID helpers (DESIGN §3)."""

from __future__ import annotations

import hashlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.ids import (
    ID_BITS,
    IdError,
    as_int,
    as_node_id,
    bucket_index,
    distance,
    key_id,
    parse_id,
    random_id_in_bucket,
)

ids = st.binary(min_size=32, max_size=32)
FAST = settings(deadline=None, max_examples=200)


def brute_bucket(a: bytes, b: bytes) -> int:
    bits_a = "".join(f"{x:08b}" for x in a)
    bits_b = "".join(f"{x:08b}" for x in b)
    for i, (x, y) in enumerate(zip(bits_a, bits_b, strict=True)):
        if x != y:
            return i
    raise AssertionError("equal ids")


@FAST
@given(ids, ids, ids)
def test_xor_distance_properties(a: bytes, b: bytes, c: bytes) -> None:
    assert distance(a, a) == 0
    assert distance(a, b) == distance(b, a)
    assert (distance(a, b) == 0) == (a == b)
    assert distance(a, b) ^ distance(b, c) == distance(a, c)
    # XOR is a metric: the triangle inequality holds as well.
    assert distance(a, c) <= distance(a, b) + distance(b, c)


@FAST
@given(ids, ids)
def test_bucket_index_matches_bit_scan(a: bytes, b: bytes) -> None:
    if a == b:
        with pytest.raises(IdError):
            bucket_index(a, b)
        return
    assert bucket_index(a, b) == brute_bucket(a, b)
    assert bucket_index(a, b) == bucket_index(b, a)


@FAST
@given(ids, st.integers(0, ID_BITS - 1))
def test_bucket_index_single_bit_flip(a: bytes, bit: int) -> None:
    other = (as_int(a) ^ (1 << (ID_BITS - 1 - bit))).to_bytes(32, "big")
    assert bucket_index(a, other) == bit


@FAST
@given(ids, st.integers(0, ID_BITS - 1), st.integers(0, 2**32))
def test_random_id_in_bucket_lands_in_bucket(own: bytes, index: int, seed: int) -> None:
    rid = random_id_in_bucket(own, index, random.Random(seed))
    assert len(rid) == 32
    assert bucket_index(own, rid) == index


def test_random_id_in_bucket_rejects_bad_index() -> None:
    rng = random.Random(1)
    for bad in (-1, ID_BITS):
        with pytest.raises(IdError):
            random_id_in_bucket(bytes(32), bad, rng)


def test_random_id_in_bucket_is_random_below_the_bucket_bit() -> None:
    rng = random.Random(7)
    seen = {random_id_in_bucket(bytes(32), 10, rng) for _ in range(50)}
    assert len(seen) == 50


@FAST
@given(st.text(max_size=100))
def test_key_id_is_sha256_of_utf8(key: str) -> None:
    assert key_id(key) == hashlib.sha256(key.encode("utf-8")).digest()


def test_key_id_known_vector() -> None:
    assert key_id("").hex() == ("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")


def test_parse_and_as_node_id() -> None:
    raw = bytes(range(32))
    assert parse_id(raw.hex().upper()) == raw
    assert as_node_id(bytearray(raw)) == raw
    with pytest.raises(IdError):
        parse_id("ab")
    with pytest.raises(IdError):
        parse_id("zz" * 32)
    with pytest.raises(IdError):
        as_node_id(b"\x00" * 31)
