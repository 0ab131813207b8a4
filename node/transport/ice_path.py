"""What kind of network path a link took, and why a dial found none (pure; no aiortc here).

ICE pairs a local candidate with a remote one; the selected pair says how packets travel:

* ``relay`` -- either candidate is a TURN relay: every packet goes through the TURN server.
* ``srflx`` -- no relay, but a NAT translates at least one end: the remote candidate is
  server-reflexive (learned from STUN) or peer-reflexive (learned from a check), or our own host
  candidate is translated (we gathered a srflx candidate on it with another address). That is a
  hole-punched path.
* ``host`` -- neither end is translated: both hosts reach each other's own address.

aioice pairs remote candidates with its *host* and *relay* candidates only (a srflx candidate is
never a pair's local side), hence the translation test on the local host address.

``failure_reason`` turns what a failed dial knew (candidate types on both sides, the ICE servers
configured) into one sentence that says what is missing, e.g. that no side has a relay
candidate, which is what two peers behind symmetric NATs need.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


class LinkPath(enum.StrEnum):
    HOST = "host"
    SRFLX = "srflx"
    RELAY = "relay"


REFLEXIVE_TYPES = frozenset({"srflx", "prflx"})


@dataclass(frozen=True, slots=True)
class CandidateView:
    """The parts of an ICE candidate the classification needs."""

    type: str  # host, srflx, prflx, relay
    address: str
    related_address: str | None = None


def classify(
    local: CandidateView, remote: CandidateView, local_candidates: Iterable[CandidateView]
) -> LinkPath:
    """The path of a selected pair (see the module docstring)."""
    if local.type == "relay" or remote.type == "relay":
        return LinkPath.RELAY
    if remote.type in REFLEXIVE_TYPES or local.type in REFLEXIVE_TYPES:
        return LinkPath.SRFLX
    translated = any(
        c.type == "srflx" and c.related_address == local.address and c.address != local.address
        for c in local_candidates
    )
    return LinkPath.SRFLX if translated else LinkPath.HOST


def sdp_candidate_types(sdp: str) -> list[str]:
    """The candidate types an SDP offers, in order (``a=candidate:... typ TYPE ...``)."""
    types = []
    for line in sdp.splitlines():
        if not line.startswith("a=candidate:"):
            continue
        parts = line.split()
        if "typ" in parts[:-1]:
            types.append(parts[parts.index("typ") + 1])
    return types


def _kinds(types: Iterable[str]) -> str:
    unique = sorted(set(types))
    return ", ".join(unique) if unique else "none"


def failure_reason(
    local_types: Sequence[str], remote_types: Sequence[str], ice_servers: Sequence[str]
) -> str:
    """Why no candidate pair worked, as far as the candidates tell."""
    has_turn = any(url.lower().startswith(("turn:", "turns:")) for url in ice_servers)
    text = (
        f"ICE found no working path (local candidates: {_kinds(local_types)}; "
        f"remote: {_kinds(remote_types)})"
    )
    if "relay" in local_types or "relay" in remote_types:
        return text + "; even the TURN relay did not answer"
    if not has_turn:
        return text + (
            "; no TURN server is configured, and peers behind symmetric NATs connect only "
            "through a TURN relay"
        )
    return text + "; the TURN server gave no relay candidate (stopped or refused?)"
