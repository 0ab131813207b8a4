// The order of two records at one key (docs/protocol.md §7): higher wins. An owned record
// (mutable or immutable) beats an open one; then the higher seq, the newer ts, the higher pub.
// ts and seq may be Number or BigInt (above 2^53); pub is SHA-256(public key), set on validation.

import { compareBytes } from "./crypto.js";
import { RecordKind } from "./codec.js";

const orderKey = (r) => [
  (r.kind ?? RecordKind.OPEN) !== RecordKind.OPEN ? 1n : 0n, BigInt(r.seq ?? 0), BigInt(r.ts),
];

/** > 0 when `a` is better than `b`, < 0 when worse, 0 when the same record. */
export function compareRecords(a, b) {
  const ka = orderKey(a);
  const kb = orderKey(b);
  for (let i = 0; i < ka.length; i += 1) if (ka[i] !== kb[i]) return ka[i] > kb[i] ? 1 : -1;
  return compareBytes(a.pub, b.pub);
}
