"""Oracle bootstrap: fill every routing table from the global view, as the join would converge.

The standard trick of large DHT simulators: instead of running N joins (hundreds of messages
each), every node's table is built directly from the sorted list of all IDs. Relative to a node,
bucket ``i`` holds exactly the IDs that share its first ``i`` bits and differ at bit ``i`` — one
contiguous slice of the sorted list, found with two bisections. A bucket gets ``k`` members drawn
at random from its slice (a real join keeps whichever nodes it heard from first and, with
ping-before-evict, keeps them: a random sample of the slice), and up to ``k`` more as its
replacement cache; a slice of at most ``k`` goes in whole. Buckets are walked from 0 until the
node's own prefix holds nobody else, so a table costs O(log N) bisections plus its contacts:
O(N log N) for the network.

What it models is the settled network (one bucket-refresh round after the joins; right after
its join a node's far buckets are still short, since the join refreshes only empty buckets).
Not reproduced: the last-seen and last-heard times (all ``now``), per-contact RTTs. Reports
label a network built this way (``bootstrap.method == "oracle"``); tests compare it with a
settled real join (``tests/sim/test_sim_oracle.py``).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence

from node.ids import ID_BITS, NodeId
from node.sim.cluster import SimCluster, SimNode
from node.sim.scheduler import no_gc


def oracle_bootstrap(cluster: SimCluster, n: int, replacements: bool = True) -> list[SimNode]:
    """Add ``n`` nodes to ``cluster`` with tables filled from the global view (existing members
    included in the view; their own tables are left as they are). Returns the new nodes."""
    with no_gc():
        return _build(cluster, n, replacements)


def _build(cluster: SimCluster, n: int, replacements: bool) -> list[SimNode]:
    new = [cluster.new_node() for _ in range(n)]
    everyone = sorted(
        (int.from_bytes(i, "big"), i) for i in cluster.order if cluster.nodes[i].alive
    )
    ints = [x for x, _ in everyone]
    ids = [i for _, i in everyone]
    k = cluster.config.k
    rng = cluster.rng
    now = cluster.sched.now
    for node in new:
        fill_table(node, ints, ids, k, rng.sample, replacements, now)
        cluster._pump(node)  # arm its maintenance timer
    return new


def fill_table(
    node: SimNode,
    ints: list[int],
    ids: list[NodeId],
    k: int,
    sample: Callable[[Sequence[int], int], list[int]],
    replacements: bool,
    now: float,
) -> None:
    """Fill ``node``'s empty table from the sorted ``ints`` / ``ids`` of every member."""
    table = node.proto.table
    heard = node.proto.last_heard
    own = int.from_bytes(node.id, "big")
    for i in range(ID_BITS):
        shift = ID_BITS - 1 - i
        lo_val = ((own >> shift) ^ 1) << shift  # own's first i bits, then the other bit i
        a = bisect_left(ints, lo_val)
        b = bisect_left(ints, lo_val + (1 << shift), a)
        if b > a:
            count = b - a
            if count <= k:
                chosen, spare = list(range(a, b)), []
            else:
                # ``sample`` is random.Random.sample: one seeded RNG drives the whole build
                picked = sample(range(a, b), min(count, 2 * k) if replacements else k)
                chosen, spare = picked[:k], picked[k:]
            table.seed_bucket(i, [(ids[j], ints[j]) for j in chosen], [ids[j] for j in spare], now)
            # heard from now, as a join's contacts are: a contact never heard from is pinged as
            # soon as a newcomer knocks on its full bucket, and at 100k nodes those pings chain
            # from node to node (a pinged node rarely knows the pinger) into a storm
            heard.update(dict.fromkeys([ids[j] for j in chosen], now))
        # Nobody else shares the first i + 1 bits with us: every deeper bucket is empty.
        mine = (own >> shift) << shift
        if bisect_left(ints, mine + (1 << shift)) - bisect_left(ints, mine) <= 1:
            break
