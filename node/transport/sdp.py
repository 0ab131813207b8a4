"""Remote SDP clean-up before aiortc sees it: drop mDNS (``.local``) ICE candidates.

Browsers hide their host addresses behind mDNS names (``a=candidate:… 4f1e….local 54321 typ
host``) by default, and a web page cannot turn that off. aioice resolves each such name inside
``setRemoteDescription`` and waits up to its 1 s mDNS timeout per name, so every connection with
a browser would cost about a second before ICE even starts; on a host without multicast the names
never resolve at all.

Instead, the node drops those candidates and relies on peer-reflexive pairs (RFC 8445 §7.3.1.3):
the browser still sends its connectivity checks to our (plain IP) candidates, aioice learns the
browser's address from the first check and answers it with a triggered check. When a candidate
was dropped, ``a=end-of-candidates`` is dropped too: otherwise aioice, left with no remote
candidate after end-of-candidates, would declare ICE failed before the browser's first check
arrives. The dial timeout bounds the wait instead.
"""

from __future__ import annotations

CANDIDATE_PREFIX = "a=candidate:"
END_OF_CANDIDATES = "a=end-of-candidates"
MDNS_SUFFIX = ".local"
# a=candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type> ...
_ADDRESS_FIELD = 4


def is_mdns_candidate(line: str) -> bool:
    """True for an ``a=candidate:`` line whose connection address is an mDNS name."""
    if not line.startswith(CANDIDATE_PREFIX):
        return False
    fields = line[len(CANDIDATE_PREFIX) :].split()
    return len(fields) > _ADDRESS_FIELD and fields[_ADDRESS_FIELD].lower().endswith(MDNS_SUFFIX)


def strip_mdns_candidates(sdp: str) -> tuple[str, int]:
    """``sdp`` without its mDNS candidates (and without end-of-candidates when any was removed);
    also returns how many candidates were removed. Line endings are preserved."""
    lines = sdp.splitlines(keepends=True)
    kept = [line for line in lines if not is_mdns_candidate(line.rstrip("\r\n"))]
    removed = len(lines) - len(kept)
    if removed:
        kept = [line for line in kept if line.rstrip("\r\n") != END_OF_CANDIDATES]
    return "".join(kept), removed
