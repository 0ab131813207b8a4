"""Unit tests of the sans-IO signaling router: no sockets, no sleeps, time passed by hand."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.identity import DOMAIN_SIGNALING, Identity
from node.ids import NodeId, distance
from signaling.admission import AdmissionSettings
from signaling.messages import (
    MAX_FRAME_BYTES,
    NONCE_BYTES,
    RATE_LIMIT_BURST_FRAMES,
    ErrorCode,
)
from signaling.router import Outgoing, SignalingRouter

RNG_SEED = 1234


def make_identity(i: int) -> Identity:
    return Identity.generate(random.Random(i))


def frames(out: list[Outgoing], conn: int) -> list[dict[str, Any]]:
    return [json.loads(text) for c, text in out if c == conn]


def only(out: list[Outgoing], conn: int) -> dict[str, Any]:
    assert [c for c, _ in out] == [conn], out
    return frames(out, conn)[0]


def assert_error(out: list[Outgoing], conn: int, code: ErrorCode) -> dict[str, Any]:
    frame = only(out, conn)
    assert frame["type"] == "error"
    assert frame["code"] == code.value
    assert isinstance(frame["message"], str)
    assert frame["message"]
    return frame


def register_text(identity: Identity, nonce_hex: str, **override: Any) -> str:
    body: dict[str, Any] = {
        "type": "register",
        "id": identity.node_id.hex(),
        "public_key": identity.public_key.hex(),
        "sig": identity.sign(DOMAIN_SIGNALING + bytes.fromhex(nonce_hex)).hex(),
    }
    body.update(override)
    return json.dumps(body)


class Harness:
    def __init__(self, **kwargs: Any) -> None:
        self.router = SignalingRouter(random.Random(RNG_SEED), **kwargs)
        self.nonces: dict[int, str] = {}
        self.now = 0.0

    def connect(self, conn: int) -> str:
        challenge = only(self.router.connect(conn, self.now), conn)
        assert challenge["type"] == "challenge"
        assert len(bytes.fromhex(challenge["nonce"])) == NONCE_BYTES
        nonce = str(challenge["nonce"])
        self.nonces[conn] = nonce
        return nonce

    def send(self, conn: int, data: str | bytes | dict[str, Any]) -> list[Outgoing]:
        self.now += 0.05  # well under the rate limit
        text = json.dumps(data) if isinstance(data, dict) else data
        return self.router.receive(conn, text, self.now)

    def register(self, conn: int, identity: Identity) -> None:
        nonce = self.connect(conn)
        reply = only(self.send(conn, register_text(identity, nonce)), conn)
        assert reply == {"type": "registered", "id": identity.node_id.hex()}


@pytest.fixture
def h() -> Harness:
    return Harness()


# -- register --------------------------------------------------------------------------------


def test_register_happy_path(h: Harness) -> None:
    alice = make_identity(1)
    h.register(1, alice)
    assert h.router.registered_ids() == [alice.node_id]
    assert h.router.node_id_of(1) == alice.node_id
    stats = h.router.stats()
    assert (stats.connections, stats.registered, stats.frames_in, stats.frames_out) == (1, 1, 1, 2)


def test_nonces_differ_per_connection(h: Harness) -> None:
    assert h.connect(1) != h.connect(2)


def test_register_bad_signature(h: Harness) -> None:
    alice = make_identity(1)
    nonce = h.connect(1)
    wrong_nonce = bytes(NONCE_BYTES).hex()
    out = h.send(1, register_text(alice, nonce, sig=alice.sign(bytes.fromhex(wrong_nonce)).hex()))
    assert_error(out, 1, ErrorCode.BAD_SIGNATURE)
    assert h.router.registered_ids() == []


def test_register_replayed_from_another_connection_fails(h: Harness) -> None:
    alice = make_identity(1)
    nonce1 = h.connect(1)
    h.connect(2)
    # A register frame signed for connection 1's nonce is worthless on connection 2.
    assert_error(h.send(2, register_text(alice, nonce1)), 2, ErrorCode.BAD_SIGNATURE)
    assert h.router.registered_ids() == []


def test_register_id_public_key_mismatch(h: Harness) -> None:
    alice, bob = make_identity(1), make_identity(2)
    nonce = h.connect(1)
    out = h.send(1, register_text(alice, nonce, id=bob.node_id.hex()))
    frame = assert_error(out, 1, ErrorCode.BAD_SIGNATURE)
    assert "SHA-256" in frame["message"]
    assert h.router.registered_ids() == []


def test_takeover_without_key_refused(h: Harness) -> None:
    alice, mallory = make_identity(1), make_identity(66)
    h.register(1, alice)
    nonce = h.connect(2)
    # Mallory claims alice's id with her own key (id mismatch) ...
    forged = register_text(mallory, nonce, id=alice.node_id.hex())
    assert_error(h.send(2, forged), 2, ErrorCode.BAD_SIGNATURE)
    # ... or with alice's public key and her own signature.
    forged = register_text(
        mallory, nonce, id=alice.node_id.hex(), public_key=alice.public_key.hex()
    )
    assert_error(h.send(2, forged), 2, ErrorCode.BAD_SIGNATURE)
    assert h.router.node_id_of(1) == alice.node_id
    assert h.router.node_id_of(2) is None
    assert h.router.connections_to_close() == []


def test_takeover_with_key_replaces_old_connection(h: Harness) -> None:
    alice = make_identity(1)
    h.register(1, alice)
    nonce = h.connect(2)
    out = h.send(2, register_text(alice, nonce))
    assert frames(out, 1) == [
        {
            "type": "error",
            "code": "already_registered",
            "message": frames(out, 1)[0]["message"],
        }
    ]
    assert frames(out, 2) == [{"type": "registered", "id": alice.node_id.hex()}]
    assert h.router.connections_to_close() == [1]
    assert h.router.connections_to_close() == []
    assert h.router.node_id_of(2) == alice.node_id
    assert h.router.node_id_of(1) is None
    # The old connection going away does not unregister the new one.
    h.router.disconnect(1)
    assert h.router.registered_ids() == [alice.node_id]
    assert h.router.stats().takeovers == 1


def test_reregister_same_connection(h: Harness) -> None:
    alice, bob = make_identity(1), make_identity(2)
    h.register(1, alice)
    again = only(h.send(1, register_text(alice, h.nonces[1])), 1)
    assert again == {"type": "registered", "id": alice.node_id.hex()}
    assert_error(h.send(1, register_text(bob, h.nonces[1])), 1, ErrorCode.ALREADY_REGISTERED)
    assert h.router.registered_ids() == [alice.node_id]


# -- peers -----------------------------------------------------------------------------------


def test_peers_ordering_matches_bruteforce() -> None:
    # All untested, and none remembered as handed out (rehand_s=0): pure XOR order.
    h = Harness(admission=AdmissionSettings(rehand_s=0.0))
    identities = [make_identity(i) for i in range(40)]
    for conn, ident in enumerate(identities, start=1):
        h.register(conn, ident)
    me = identities[7].node_id
    others = [i.node_id for i in identities if i.node_id != me]
    expected = sorted(others, key=lambda other: distance(me, other))
    for n, want in [(5, 5), (39, 39), (1000, 39), (0, 1), (-3, 1)]:
        reply = only(h.send(8, {"type": "peers", "n": n, "rid": [n, "x"]}), 8)
        assert reply == {
            "type": "peers",
            "rid": [n, "x"],
            "peers": [p.hex() for p in expected[:want]],
        }
    default = only(h.send(8, {"type": "peers"}), 8)
    assert default == {"type": "peers", "peers": [p.hex() for p in expected[:20]]}


def test_peers_clamped_to_64() -> None:
    h = Harness()
    for conn in range(1, 71):
        h.register(conn, make_identity(conn))
    reply = only(h.send(1, {"type": "peers", "n": 10_000, "rid": None}), 1)
    assert len(reply["peers"]) == 64
    assert reply["rid"] is None
    assert make_identity(1).node_id.hex() not in reply["peers"]


def test_peers_alone_is_empty(h: Harness) -> None:
    h.register(1, make_identity(1))
    assert only(h.send(1, {"type": "peers", "rid": 9}), 1) == {
        "type": "peers",
        "rid": 9,
        "peers": [],
    }


# -- relay -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["offer", "answer"])
def test_relay_sets_from(h: Harness, kind: str) -> None:
    alice, bob = make_identity(1), make_identity(2)
    h.register(1, alice)
    h.register(2, bob)
    msg = {"type": kind, "to": bob.node_id.hex(), "cid": "c-1", "sdp": "v=0\r\n..."}
    delivered = only(h.send(1, msg), 2)
    assert delivered == {**msg, "from": alice.node_id.hex()}
    assert h.router.stats().relayed == 1


def test_relay_spoofed_from(h: Harness) -> None:
    alice, bob = make_identity(1), make_identity(2)
    h.register(1, alice)
    h.register(2, bob)
    msg = {
        "type": "offer",
        "to": bob.node_id.hex(),
        "cid": "c-1",
        "sdp": "x",
        "from": bob.node_id.hex(),
    }
    frame = assert_error(h.send(1, msg), 1, ErrorCode.SPOOFED_FROM)
    assert frame["cid"] == "c-1"


def test_relay_unknown_target(h: Harness) -> None:
    h.register(1, make_identity(1))
    ghost = make_identity(99).node_id.hex()
    msg = {"type": "offer", "to": ghost, "cid": "c-9", "sdp": "x", "rid": 5}
    frame = assert_error(h.send(1, msg), 1, ErrorCode.UNKNOWN_TARGET)
    assert (frame["cid"], frame["rid"]) == ("c-9", 5)


def test_not_registered(h: Harness) -> None:
    bob = make_identity(2)
    h.register(2, bob)
    h.connect(1)
    assert_error(h.send(1, {"type": "peers", "rid": 1}), 1, ErrorCode.NOT_REGISTERED)
    msg = {"type": "offer", "to": bob.node_id.hex(), "cid": "c", "sdp": "x"}
    assert_error(h.send(1, msg), 1, ErrorCode.NOT_REGISTERED)


def test_relay_cid_too_long(h: Harness) -> None:
    alice, bob = make_identity(1), make_identity(2)
    h.register(1, alice)
    h.register(2, bob)
    msg = {"type": "answer", "to": bob.node_id.hex(), "cid": "c" * 65, "sdp": "x"}
    assert_error(h.send(1, msg), 1, ErrorCode.BAD_REQUEST)


# -- malformed input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ("not json", ErrorCode.BAD_JSON),
        ('{"type": "peers"', ErrorCode.BAD_JSON),
        ("", ErrorCode.BAD_JSON),
        ("[" * 100_000, ErrorCode.TOO_LARGE),
        ("[" * 60_000, ErrorCode.BAD_JSON),  # nesting too deep for the decoder
        ("1" * 5000, ErrorCode.BAD_JSON),  # int beyond Python's digit limit
        (b'{"type": "peers"}', ErrorCode.BAD_JSON),
        (b"\x00\xff", ErrorCode.BAD_JSON),
        ("[]", ErrorCode.BAD_REQUEST),
        ('"peers"', ErrorCode.BAD_REQUEST),
        ("null", ErrorCode.BAD_REQUEST),
        ("{}", ErrorCode.BAD_REQUEST),
        ('{"type": 7}', ErrorCode.BAD_REQUEST),
        ('{"type": "peers", "n": "5"}', ErrorCode.BAD_REQUEST),
        ('{"type": "peers", "n": true}', ErrorCode.BAD_REQUEST),
        ('{"type": "peers", "n": 2.5}', ErrorCode.BAD_REQUEST),
        ('{"type": "register", "id": 5}', ErrorCode.BAD_REQUEST),
        (
            '{"type": "register", "id": "zz", "public_key": "00", "sig": "00"}',
            ErrorCode.BAD_REQUEST,
        ),
        ('{"type": "offer", "to": "ab", "cid": "c", "sdp": "x"}', ErrorCode.BAD_REQUEST),
        (
            '{"type": "offer", "to": "' + "a" * 64 + '", "cid": 1, "sdp": "x"}',
            ErrorCode.BAD_REQUEST,
        ),
        ('{"type": "offer", "to": "' + "a" * 64 + '", "cid": "c"}', ErrorCode.BAD_REQUEST),
        ('{"type": "hello"}', ErrorCode.UNKNOWN_TYPE),
        ('{"type": "challenge", "nonce": "00"}', ErrorCode.UNKNOWN_TYPE),
        ('{"type": "error", "code": "x"}', ErrorCode.UNKNOWN_TYPE),
    ],
)
def test_malformed_frames(h: Harness, data: str | bytes, code: ErrorCode) -> None:
    h.register(1, make_identity(1))
    h.register(2, make_identity(2))
    assert_error(h.send(1, data), 1, code)
    # The connection still works afterwards.
    assert only(h.send(1, {"type": "peers", "rid": 1}), 1)["type"] == "peers"
    assert h.router.stats().errors == {code.value: 1}


def test_rid_echoed_on_errors(h: Harness) -> None:
    h.connect(1)
    frame = assert_error(h.send(1, {"type": "nope", "rid": {"a": 1}}), 1, ErrorCode.UNKNOWN_TYPE)
    assert frame["rid"] == {"a": 1}
    frame = assert_error(
        h.send(1, {"type": "peers", "n": "x", "rid": "r"}), 1, ErrorCode.BAD_REQUEST
    )
    assert frame["rid"] == "r"


def test_too_large_binary_and_text(h: Harness) -> None:
    h.connect(1)
    assert_error(h.send(1, b"x" * (MAX_FRAME_BYTES + 1)), 1, ErrorCode.TOO_LARGE)
    # Multi-byte characters count in UTF-8 bytes, not code points.
    text = json.dumps({"type": "peers", "pad": "é" * (MAX_FRAME_BYTES // 2)}, ensure_ascii=False)
    assert len(text) < MAX_FRAME_BYTES < len(text.encode())
    assert_error(h.send(1, text), 1, ErrorCode.TOO_LARGE)
    exactly = '{"type":"hello","pad":"' + "x" * (MAX_FRAME_BYTES - 25) + '"}'
    assert len(exactly) == MAX_FRAME_BYTES
    assert_error(h.send(1, exactly), 1, ErrorCode.UNKNOWN_TYPE)


def test_rate_limit(h: Harness) -> None:
    h.register(1, make_identity(1))
    h.register(2, make_identity(2))
    peers = '{"type": "peers"}'
    now = 100.0
    replies = [only(h.router.receive(1, peers, now), 1)["type"] for _ in range(150)]
    assert replies[:RATE_LIMIT_BURST_FRAMES] == ["peers"] * RATE_LIMIT_BURST_FRAMES
    assert_error(h.router.receive(1, peers, now), 1, ErrorCode.RATE_LIMITED)
    assert set(replies[RATE_LIMIT_BURST_FRAMES:]) == {"error"}
    # Another connection is not affected.
    assert only(h.router.receive(2, peers, now), 2)["type"] == "peers"
    # 50 frames/s: after 0.125 s there are 6.25 new tokens.
    later = [only(h.router.receive(1, peers, now + 0.125), 1)["type"] for _ in range(7)]
    assert later == ["peers"] * 6 + ["error"]
    # A clock going backwards grants nothing.
    assert_error(h.router.receive(1, peers, now - 50), 1, ErrorCode.RATE_LIMITED)


def test_disconnect_cleanup(h: Harness) -> None:
    alice, bob = make_identity(1), make_identity(2)
    h.register(1, alice)
    h.register(2, bob)
    h.router.disconnect(2)
    h.router.disconnect(2)  # idempotent
    assert h.router.registered_ids() == [alice.node_id]
    assert only(h.send(1, {"type": "peers"}), 1)["peers"] == []
    msg = {"type": "offer", "to": bob.node_id.hex(), "cid": "c", "sdp": "x"}
    assert_error(h.send(1, msg), 1, ErrorCode.UNKNOWN_TARGET)
    assert h.send(2, {"type": "peers"}) == []  # frames from a forgotten connection are ignored
    assert h.router.stats().connections == 1
    # bob can come back on a new connection.
    h.register(3, bob)
    assert only(h.send(1, msg), 3)["from"] == alice.node_id.hex()


def test_stats_view(h: Harness) -> None:
    h.register(1, make_identity(1))
    h.send(1, "garbage")
    h.send(1, "garbage")
    h.send(1, {"type": "x"})
    view = h.router.stats().as_dict()
    assert view["errors"] == {"bad_json": 2, "unknown_type": 1}
    assert view["frames_in"] == 4
    assert view["frames_out"] == 5


# -- property: any input yields exactly one well-formed answer --------------------------------

KEYS = ["type", "id", "public_key", "sig", "n", "rid", "to", "cid", "sdp", "from", "nonce"]
TYPES = ["register", "peers", "offer", "answer", "challenge", "error", "registered", "x", ""]
json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=70)
json_values = st.recursive(
    json_scalars | st.sampled_from(TYPES) | st.just("ab" * 32),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=10,
)
json_objects = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=6)


def _check_single_answer(out: list[Outgoing], sender: int, other: int) -> None:
    assert len(out) == 1
    conn, text = out[0]
    frame = json.loads(text)
    assert isinstance(frame, dict)
    if conn == other:  # a successful relay goes to the target only
        assert frame["type"] in ("offer", "answer")
        return
    assert conn == sender
    assert frame["type"] in ("error", "peers", "registered")
    if frame["type"] == "error":
        assert frame["code"] in {c.value for c in ErrorCode}
        assert isinstance(frame["message"], str)


def _fresh(register: bool) -> Harness:
    h = Harness()
    h.register(2, make_identity(2))
    if register:
        h.register(1, make_identity(1))
    else:
        h.connect(1)
    return h


@settings(max_examples=150, deadline=None)
@given(data=st.text(max_size=300) | st.binary(max_size=300), registered=st.booleans())
def test_random_input_never_raises(data: str | bytes, registered: bool) -> None:
    h = _fresh(registered)
    _check_single_answer(h.send(1, data), 1, 2)


@settings(max_examples=300, deadline=None)
@given(obj=json_objects, registered=st.booleans())
def test_random_objects_never_raise(obj: dict[str, Any], registered: bool) -> None:
    h = _fresh(registered)
    _check_single_answer(h.send(1, json.dumps(obj)), 1, 2)


@settings(max_examples=100, deadline=None)
@given(
    cid=st.text(max_size=64), sdp=st.text(max_size=200), kind=st.sampled_from(["offer", "answer"])
)
def test_random_valid_relays_delivered(cid: str, sdp: str, kind: str) -> None:
    h = _fresh(True)
    to = make_identity(2).node_id
    out = h.send(1, {"type": kind, "to": to.hex(), "cid": cid, "sdp": sdp})
    delivered = only(out, 2)
    assert delivered == {
        "type": kind,
        "to": to.hex(),
        "cid": cid,
        "sdp": sdp,
        "from": NodeId(make_identity(1).node_id).hex(),
    }


# -- admission (signaling.admission through the router) ----------------------------------------


def test_registrations_over_the_address_limit_are_refused_and_closed() -> None:
    h = Harness(admission=AdmissionSettings(register_burst_per_addr=2, register_rate_per_addr_s=1))
    addrs = {1: "198.51.100.7", 2: "198.51.100.7", 3: "198.51.100.7", 4: "198.51.100.8"}
    nonces = {
        c: json.loads(h.router.connect(c, h.now, a)[0].text)["nonce"] for c, a in addrs.items()
    }

    def register(conn: int) -> list[Outgoing]:
        return h.send(conn, register_text(make_identity(conn), nonces[conn]))

    assert [only(register(c), c)["type"] for c in (1, 2)] == ["registered"] * 2
    assert_error(register(3), 3, ErrorCode.RATE_LIMITED)
    assert h.router.connections_to_close() == [3]
    assert only(register(4), 4)["type"] == "registered"  # another address
    assert h.router.stats().admission["registrations_refused"] == 1


def test_an_answered_offer_proves_the_target_and_it_is_handed_out_first() -> None:
    h = Harness()
    ids = [make_identity(i) for i in range(30)]
    for conn, ident in enumerate(ids, start=1):
        h.register(conn, ident)
    target = ids[29].node_id
    offer = {"type": "offer", "to": target.hex(), "cid": "c-1", "sdp": "o"}
    assert frames(h.send(1, offer), 30)
    answer = {"type": "answer", "to": ids[0].node_id.hex(), "cid": "c-1", "sdp": "a"}
    assert frames(h.send(30, answer), 1)
    assert h.router.stats().admission["offers_answered"] == 1
    reply = only(h.send(5, {"type": "peers", "n": 4}), 5)
    assert reply["peers"][0] == target.hex()
