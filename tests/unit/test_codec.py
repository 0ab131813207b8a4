"""Strict msgpack codec: every message round-trips; any bad input is a DecodeError, nothing else."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node import codec
from node import messages as wire
from node.codec import DecodeError, EncodeError, decode, encode
from node.config import MAX_MESSAGE_BYTES
from node.ids import NodeId
from node.messages import Message, MsgType
from node.records import ProviderRecord, Record, RecordKind

u64 = st.integers(0, 2**64 - 1)
b32 = st.binary(min_size=32, max_size=32)
b64 = st.binary(min_size=64, max_size=64)
node_ids = b32.map(NodeId)
id_lists = st.lists(node_ids, max_size=20).map(tuple)
reasons = st.text(max_size=codec.MAX_REASON_CHARS)

records = st.builds(Record, b32, st.binary(max_size=256), u64, b32, b64)
typed_records = st.builds(
    Record,
    b32,
    st.binary(max_size=256),
    u64,
    st.binary(max_size=32),
    st.binary(max_size=64),
    st.sampled_from(RecordKind),
    u64,
    st.binary(max_size=64),
)
providers = st.builds(
    ProviderRecord, b32, u64, st.integers(0, 65535), st.booleans(), st.binary(max_size=64), b32, b64
)

messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(
        wire.Hello,
        b32,
        node_ids,
        st.text(max_size=codec.MAX_CID_CHARS),
        b64,
        st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)),
    ),
    st.builds(wire.Ping, u64),
    st.builds(wire.Pong, u64),
    st.builds(wire.FindNode, u64, node_ids),
    st.builds(wire.Nodes, u64, id_lists),
    st.builds(wire.FindValue, u64, b32),
    st.builds(wire.Value, u64, records, id_lists),
    st.builds(wire.Store, u64, records, st.booleans()),
    st.builds(wire.StoreAck, u64, st.booleans(), reasons),
    st.builds(wire.HasValue, u64, b32, u64, node_ids),
    st.builds(wire.HasValueAck, u64, st.booleans()),
    st.builds(wire.Signal, u64, node_ids, node_ids, st.integers(0, 64), st.binary(max_size=256)),
    st.builds(wire.Announce, u64, providers),
    st.builds(wire.AnnounceAck, u64, st.booleans(), reasons),
    st.builds(wire.GetPeers, u64, b32),
    st.builds(wire.Peers, u64, st.lists(providers, max_size=5).map(tuple), id_lists),
    st.builds(wire.FindNodeStore, u64, node_ids, records),
    st.builds(wire.NodesAck, u64, st.booleans(), reasons, id_lists),
    st.builds(wire.Put, u64, typed_records, st.none() | u64, st.booleans()),
    st.builds(wire.PutAck, u64, st.booleans(), reasons, u64),
    st.builds(wire.RecordValue, u64, typed_records, id_lists),
    st.builds(wire.Refused, u64, reasons),
    st.builds(wire.Listen, u64, b32, st.integers(0, codec.MAX_LISTEN_TTL_S)),
    st.builds(wire.ListenAck, u64, st.booleans(), st.integers(0, codec.MAX_LISTEN_TTL_S)),
    st.builds(wire.Notify, records),
    st.builds(wire.Bye),
)


@given(typed_records)
def test_record_bytes_round_trip(r: Record) -> None:
    assert codec.decode_record(codec.encode_record(r)) == r


@settings(deadline=None, max_examples=400)
@given(messages)
def test_round_trip(m: Message) -> None:
    data = encode(m)
    assert len(data) <= MAX_MESSAGE_BYTES
    assert decode(data) == m


def test_every_message_type_is_covered() -> None:
    seen: set[MsgType] = set()

    @settings(deadline=None, max_examples=1000)
    @given(messages)
    def collect(m: Message) -> None:
        seen.add(m.type)

    collect()
    assert seen == set(MsgType)


def _must_fail(data: bytes) -> None:
    try:
        decode(data)
    except DecodeError:
        return
    # Valid by chance (possible for arbitrary msgpack): it must then re-encode identically-typed.
    decode(encode(decode(data)))


@settings(deadline=None, max_examples=500)
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_decode_error(data: bytes) -> None:
    _must_fail(data)


@settings(deadline=None, max_examples=200)
@given(messages, st.data())
def test_truncated_encodings_raise_decode_error(m: Message, data: st.DataObject) -> None:
    enc = encode(m)
    cut = data.draw(st.integers(0, len(enc) - 1))
    with pytest.raises(DecodeError):
        decode(enc[:cut])


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.binary(max_size=70),
    lambda inner: (
        st.lists(inner, max_size=8) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=20,
)


@settings(deadline=None, max_examples=500)
@given(st.integers(-2, 20), st.lists(msgpack_values, max_size=8))
def test_wrong_shapes_raise_decode_error(tag: int, fields: list[object]) -> None:
    _must_fail(msgpack.packb([tag, *fields], use_bin_type=True))


@settings(deadline=None, max_examples=300)
@given(msgpack_values)
def test_arbitrary_msgpack_raises_decode_error(value: object) -> None:
    _must_fail(msgpack.packb(value, use_bin_type=True))


@settings(deadline=None, max_examples=300)
@given(messages.filter(lambda m: not isinstance(m, wire.Bye)), st.data())
def test_one_field_replaced_by_wrong_type(m: Message, data: st.DataObject) -> None:
    """Each field swapped for a value of another type (or bad length) is rejected."""
    obj = msgpack.unpackb(encode(m), raw=False)
    i = data.draw(st.integers(1, len(obj) - 1))
    original = obj[i]
    optional = isinstance(m, wire.Put) and i == 3  # cas: an integer or nil, both valid
    bad = data.draw(
        msgpack_values.filter(
            lambda v: (
                type(v) is not type(original) and not (optional and (v is None or type(v) is int))
            )
        )
    )
    obj[i] = bad
    with pytest.raises(DecodeError):
        decode(msgpack.packb(obj, use_bin_type=True))


@pytest.mark.parametrize(
    "obj",
    [
        [int(MsgType.BYE), 0],  # BYE has no fields
        [int(MsgType.PING), -1],
        [int(MsgType.PING), -(2**63)],
        [int(MsgType.PING), 1.0],
        [int(MsgType.PING), True],
        [int(MsgType.PING), 1, 2],
        [int(MsgType.FIND_NODE), 1, b"\x00" * 31],
        [int(MsgType.NODES), 1, [b"\x00" * 32] * (codec.MAX_NODES_PER_MESSAGE + 1)],
        [int(MsgType.SIGNAL), 1, b"\x00" * 32, b"\x00" * 32, 65, b""],
        [
            int(MsgType.ANNOUNCE),
            1,
            [b"\x00" * 32, 1, 70000, False, b"", b"\x00" * 32, b"\x00" * 64],
        ],
        [int(MsgType.STORE), 1, [b"\x00" * 32, b"", 1, b"\x00" * 32], False],
        [99, 1],
        [],
        {"a": 1},
    ],
)
def test_specific_invalid_messages(obj: object) -> None:
    with pytest.raises(DecodeError):
        decode(msgpack.packb(obj, use_bin_type=True))


def test_oversize_input_and_non_bytes() -> None:
    with pytest.raises(DecodeError):
        decode(b"\x91" + b"\x00" * MAX_MESSAGE_BYTES)
    with pytest.raises(DecodeError):
        decode("not bytes")  # type: ignore[arg-type]
    with pytest.raises(DecodeError):
        decode(msgpack.packb([1, 1], use_bin_type=True) + b"\x00")  # trailing data


def test_oversize_message_is_an_encode_error() -> None:
    big = wire.Signal(1, NodeId(bytes(32)), NodeId(bytes(32)), 1, b"x" * (MAX_MESSAGE_BYTES + 10))
    with pytest.raises(EncodeError):
        encode(big)


def test_hello_carries_the_version_and_ignores_fields_of_later_minor_versions() -> None:
    pk, receiver, sig = b"k" * 32, NodeId(b"r" * 32), b"s" * 64
    plain = msgpack.packb([0, pk, receiver, "c1", sig, [1, 0]], use_bin_type=True)
    assert decode(plain) == wire.Hello(pk, receiver, "c1", sig, (1, 0))
    assert encode(wire.Hello(pk, receiver, "c1", sig)) == plain
    longer = msgpack.packb([0, pk, receiver, "c1", sig, [1, 3], "later", 7], use_bin_type=True)
    assert decode(longer) == wire.Hello(pk, receiver, "c1", sig, (1, 3))
    for bad in ([0, pk, receiver, "c1", sig], [0, pk, receiver, "c1", sig, [1]],
                [0, pk, receiver, "c1", sig, [1, -1]], [0, pk, receiver, "c1", sig, "1.0"],
                [0, pk, receiver, "c1", sig, [1, 0], *range(12)]):  # fmt: skip
        with pytest.raises(DecodeError):
            decode(msgpack.packb(bad, use_bin_type=True))
