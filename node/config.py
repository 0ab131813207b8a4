"""Protocol parameters. Every duration is in seconds of the monotonic ``now`` the core is fed."""

from __future__ import annotations

from dataclasses import dataclass

MAX_MESSAGE_BYTES = 60 * 1024
MAX_RECORD_DATA_BYTES = 32 * 1024
MAX_PROVIDER_META_BYTES = 1024
MAX_TOPIC_BYTES = 1024
MAX_FUTURE_SKEW_MS = 5 * 60 * 1000


@dataclass(frozen=True, slots=True)
class Config:
    k: int = 20
    alpha: int = 3
    write_quorum: int | None = None  # None → ceil(k / 2)

    request_timeout_s: float = 2.0
    lookup_deadline_s: float = 10.0

    record_ttl_s: float = 3600.0
    cache_ttl_s: float = 900.0
    # Below the TTL so a holder's copy is refreshed before it can expire (DESIGN §4 says "every
    # 1 h" with a 1 h TTL, which would leave a gap of a network round trip at every period).
    republish_interval_s: float = 3000.0
    repair_interval_s: float = 600.0
    refresh_interval_s: float = 900.0
    refresh_stagger_s: float = 2.0
    # After the join's self-lookup, refresh only the buckets holding fewer contacts than this
    # (1: only empty ones). The bootstrap dials and the self-lookup's answers already populate
    # most buckets; refreshing those too made a joining node dial ~k more peers per bucket, the
    # dial storm that made 100 peers starting together take minutes. k: every non-full bucket.
    join_refresh_below: int = 1
    join_refresh_width: int = 4  # closest peers a join's bucket refresh must reach (not k)

    # Liveness of connected peers: ping one that was silent for this long; evict on failure.
    ping_idle_s: float = 4.0
    ping_timeout_s: float = 3.0
    liveness_tick_s: float = 1.0
    # True when the transport probes idle links itself and reports a dead peer (``peer_lost``):
    # the core then sends no liveness PINGs (set by the runtime from ``provides_liveness``).
    transport_liveness: bool = False
    max_request_failures: int = 2
    # A full bucket pings its oldest contact before letting a newcomer in, unless that contact
    # was heard from within this many seconds.
    bucket_ping_after_s: float = 120.0

    max_records: int = 100_000
    max_record_data_bytes: int = MAX_RECORD_DATA_BYTES
    max_future_skew_ms: int = MAX_FUTURE_SKEW_MS

    # Quotas (node.quotas): bytes are record costs (data + salt + a fixed per-record overhead).
    # The defaults keep a node's store under ~64 MiB on a small machine. 0 disables a rate limit.
    max_store_bytes: int = 64 * 1024 * 1024
    max_publisher_bytes: int = 16 * 1024 * 1024
    max_publisher_records: int = 20_000
    max_peer_bytes: int = 32 * 1024 * 1024
    max_peer_records: int = 40_000
    max_topics_per_announcer: int = 256
    request_rate_per_peer: float = 400.0  # inbound requests a second, per sending peer
    request_burst_per_peer: float = 800.0
    request_bytes_per_peer_s: float = 2 * 1024 * 1024  # inbound request bytes a second, per peer
    request_bytes_burst_per_peer: float = 8 * 1024 * 1024
    ban_s: float = 60.0  # a peer far over its rate for too long: disconnected, refused (doubling)

    provider_ttl_s: float = 1200.0
    reannounce_interval_s: float = 300.0
    discovery_interval_s: float = 15.0
    max_providers_per_topic: int = 64

    # Listen (node.listen): a listener asks holders for this lifetime and refreshes at half of
    # it; holders grant at most max_listen_ttl_s.
    listen_ttl_s: float = 60.0
    max_listen_ttl_s: float = 600.0

    signal_hop_limit: int = 8
    malformed_disconnect_threshold: int = 20

    @property
    def quorum_w(self) -> int:
        return self.write_quorum if self.write_quorum is not None else -(-self.k // 2)
