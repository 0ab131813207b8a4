// A Kademlia routing table: 256 k-buckets by the first bit that differs from our id, each an
// LRU list (least recently seen first) with a small replacement cache. Contacts enter only when
// they themselves sent us a valid message (as in node/routing.py); failures evict them.

import { bucketIndex, compareBytes, hex, xor } from "./crypto.js";

export class RoutingTable {
  constructor(ownId, k = 20) {
    this.ownId = ownId;
    this.k = k;
    this.buckets = Array.from({ length: 256 }, () => ({ contacts: [], replacements: [] }));
    this.index = new Map(); // hex -> contact
  }

  get size() { return this.index.size; }
  has(idHex) { return this.index.has(idHex); }
  ids() { return [...this.index.keys()].sort(); }

  /** A contact was heard from. Returns the oldest contact of a full bucket (a ping candidate). */
  update(id, now) {
    const b = bucketIndex(this.ownId, id);
    if (b < 0) return null;
    const key = hex(id);
    const bucket = this.buckets[b];
    const known = this.index.get(key);
    if (known) {
      known.lastSeen = now;
      known.failures = 0;
      bucket.contacts.splice(bucket.contacts.indexOf(known), 1);
      bucket.contacts.push(known);
      return null;
    }
    const contact = { id, idHex: key, lastSeen: now, failures: 0 };
    if (bucket.contacts.length < this.k) {
      bucket.contacts.push(contact);
      this.index.set(key, contact);
      return null;
    }
    bucket.replacements = bucket.replacements.filter((c) => c.idHex !== key);
    bucket.replacements.push(contact);
    if (bucket.replacements.length > this.k) bucket.replacements.shift();
    return bucket.contacts[0];
  }

  /** Remove a contact; a replacement (most recently seen first) takes its place. */
  remove(idHex) {
    const c = this.index.get(idHex);
    if (!c) return false;
    const bucket = this.buckets[bucketIndex(this.ownId, c.id)];
    bucket.contacts.splice(bucket.contacts.indexOf(c), 1);
    this.index.delete(idHex);
    const repl = bucket.replacements.pop();
    if (repl) {
      bucket.contacts.push(repl);
      this.index.set(repl.idHex, repl);
    }
    return true;
  }

  /** A request to this contact failed; true when it was evicted. */
  recordFailure(idHex, maxFailures) {
    const c = this.index.get(idHex);
    if (!c) return false;
    c.failures += 1;
    return c.failures >= maxFailures ? this.remove(idHex) : false;
  }

  /** The n contacts closest to `target` (bytes), never `excludeHex`. */
  closest(target, n, excludeHex = null) {
    const all = [];
    for (const c of this.index.values()) if (c.idHex !== excludeHex) all.push(c);
    all.sort((a, b) => compareBytes(xor(a.id, target), xor(b.id, target)));
    return all.slice(0, n).map((c) => c.id);
  }

  buckets_snapshot() {
    const out = [];
    this.buckets.forEach((b, i) => {
      if (b.contacts.length) out.push({ index: i, contacts: b.contacts.map((c) => c.idHex) });
    });
    return out;
  }
}
