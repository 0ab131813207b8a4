"""Link path classification and dial failure reasons (node.transport.ice_path)."""

from __future__ import annotations

from node.transport.ice_path import (
    CandidateView,
    LinkPath,
    classify,
    failure_reason,
    sdp_candidate_types,
)

HOST = CandidateView("host", "198.51.100.6")
SRFLX = CandidateView("srflx", "203.0.113.11", "198.51.100.6")
RELAY = CandidateView("relay", "203.0.113.1", "203.0.113.11")
WAN_HOST = CandidateView("host", "203.0.113.101")
WAN_SRFLX = CandidateView("srflx", "203.0.113.101", "203.0.113.101")


def test_relay_on_either_side_is_relay() -> None:
    assert classify(RELAY, CandidateView("srflx", "203.0.113.12"), [HOST, SRFLX]) is LinkPath.RELAY
    assert classify(HOST, CandidateView("relay", "203.0.113.1"), [HOST]) is LinkPath.RELAY


def test_reflexive_remote_is_srflx() -> None:
    for kind in ("srflx", "prflx"):
        remote = CandidateView(kind, "203.0.113.12")
        assert classify(WAN_HOST, remote, [WAN_HOST]) is LinkPath.SRFLX


def test_a_translated_local_host_is_srflx_even_towards_a_host_candidate() -> None:
    assert classify(HOST, WAN_HOST, [HOST, SRFLX, RELAY]) is LinkPath.SRFLX


def test_host_to_host_untranslated_is_host() -> None:
    assert classify(WAN_HOST, CandidateView("host", "203.0.113.102"), [WAN_HOST]) is LinkPath.HOST
    # STUN on a public address returns the host address itself: not a translation.
    assert classify(WAN_HOST, WAN_HOST, [WAN_HOST, WAN_SRFLX]) is LinkPath.HOST


def test_sdp_candidate_types() -> None:
    sdp = (
        "v=0\r\na=candidate:1 1 udp 1 198.51.100.6 5000 typ host\r\n"
        "a=candidate:2 1 udp 1 203.0.113.11 5000 typ srflx raddr 198.51.100.6 rport 5000\r\n"
        "a=candidate:broken\r\n"
    )
    assert sdp_candidate_types(sdp) == ["host", "srflx"]


def test_failure_reason_names_what_is_missing() -> None:
    no_turn = failure_reason(["host", "srflx"], ["host", "srflx"], ["stun:203.0.113.1:3478"])
    assert "local candidates: host, srflx; remote: host, srflx" in no_turn
    assert "no TURN server is configured" in no_turn
    assert "symmetric" in no_turn
    gone = failure_reason(["host"], ["host"], ["stun:x", "turn:x:3478"])
    assert "gave no relay candidate" in gone
    relayed = failure_reason(["host", "relay"], ["host"], ["turn:x:3478"])
    assert "even the TURN relay did not answer" in relayed
