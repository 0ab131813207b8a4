// The iterative Kademlia lookup: α requests in flight, a new one as soon as any returns (no
// lock-step rounds), ends when the k closest seen have all answered or failed, or at the
// deadline. Contacts learned from answers are candidates only (dialled through the peer that
// named them), never routing-table entries. FIND_VALUE ends shortly after a valid record.

import { MsgType } from "./codec.js";
import { compareBytes, hex, xor } from "./crypto.js";
import { compareRecords } from "./records-order.js";

const VALUE_GRACE_MS = 50;

/**
 * @param peer the DhtPeer (request(), table, identity, options)
 * @param target 32-byte key
 * @param type MsgType.FIND_NODE | FIND_VALUE | GET_PEERS
 * @param opts {accept(record) -> Promise<bool> (VALUE), acceptOwned(record) -> Promise<bool>
 *   (RECORD), acceptProvider(p) -> Promise<bool>}
 * @returns {closest: [id bytes], record, providers: [provider]}
 */
export function lookup(peer, target, type, opts) {
  const { k, alpha, lookupDeadlineMs } = peer.options;
  const own = peer.identity.idHex;
  const seen = new Map(); // hex -> {id, via, state: new|wait|ok|fail, dist}
  const add = (id, via) => {
    const h = hex(id);
    if (h === own || seen.has(h)) return;
    seen.set(h, { id, h, via, state: "new", dist: xor(id, target) });
  };
  for (const id of peer.table.closest(target, k)) add(id, null);
  for (const link of peer.conns.links.values()) add(link.peerId, null);

  let record = null;
  const providers = [];
  let inFlight = 0;
  let finished = false;
  return new Promise((resolve) => {
    const sorted = () => [...seen.values()].sort((a, b) => compareBytes(a.dist, b.dist));
    const finish = () => {
      if (finished) return;
      finished = true;
      clearTimeout(deadline);
      const closest = sorted().filter((c) => c.state === "ok").slice(0, k).map((c) => c.id);
      resolve({ closest, record, providers });
    };
    const deadline = setTimeout(finish, lookupDeadlineMs);
    const step = () => {
      if (finished) return;
      const live = sorted().filter((c) => c.state !== "fail").slice(0, k);
      if (record && type === MsgType.FIND_VALUE) {
        setTimeout(finish, VALUE_GRACE_MS);
        return;
      }
      for (const c of live) {
        if (inFlight >= alpha) break;
        if (c.state === "new") query(c);
      }
      if (inFlight === 0 && live.every((c) => c.state === "ok")) finish();
    };
    const query = async (c) => {
      c.state = "wait";
      inFlight += 1;
      const msg = type === MsgType.FIND_NODE ? { type, target }
        : type === MsgType.FIND_VALUE ? { type, key: target } : { type, topic: target };
      const r = await peer.request(c.id, msg, c.via);
      inFlight -= 1;
      if (!r) {
        c.state = "fail";
      } else {
        c.state = "ok";
        for (const id of r.nodes) add(id, c.h);
        const valid = r.type === MsgType.VALUE ? await opts.accept(r.record)
          : r.type === MsgType.RECORD ? await opts.acceptOwned(r.record) : false;
        if (valid && (!record || compareRecords(r.record, record) > 0)) record = r.record;
        if (r.type === MsgType.PEERS) {
          for (const p of r.providers) if (await opts.acceptProvider(p)) providers.push(p);
        }
      }
      step();
    };
    step();
  });
}
