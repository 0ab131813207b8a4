// The page contract (docs/browser.md): `window.dhtPeer` for scripts, tests and the supervisor.
// Keys, values and topics are UTF-8 strings; ids are lowercase hex.

import { DhtPeer } from "./peer.js";
import { unhex, utf8 } from "./crypto.js";

const decoder = new TextDecoder();

/** Options from the page URL: ?signal=ws://…&inband=1&debug=1. */
export function optionsFromUrl(href) {
  const url = new URL(href);
  const q = url.searchParams;
  const wsScheme = url.protocol === "https:" ? "wss:" : "ws:";
  return {
    signal: q.get("signal") || `${wsScheme}//${url.host}`,
    inband: q.get("inband") === "1",
    debug: q.get("debug") === "1",
  };
}

/** Start a peer and wrap it in the page API; `ready()` resolves once it has joined. */
export function createPageApi(options) {
  const { signal, ...peerOptions } = options;
  for (const k of Object.keys(peerOptions)) if (peerOptions[k] === undefined) delete peerOptions[k];
  const peer = new DhtPeer(peerOptions);
  const started = peer.start(signal);
  started.catch((e) => console.error(`dht peer failed to start: ${e.message}`));
  // A closed tab leaves on purpose: its peers drop it at once, probed or not.
  globalThis.addEventListener?.("pagehide", () => peer.leaveNow());
  return {
    peer,
    ready: async () => { await started; return { id: peer.id }; },
    store: async (key, value) => {
      await started;
      const r = await peer.store(String(key), utf8(String(value)));
      return { ok: r.ok, stored: r.stored, quorum: r.quorum, attempts: r.attempts };
    },
    get: async (key) => {
      await started;
      const r = await peer.get(String(key));
      return r.found ? { found: true, value: decoder.decode(r.value), publisher: r.publisher, ts: r.ts }
        : { found: false };
    },
    announce: async (topic) => { await started; return peer.announce(String(topic)); },
    lookup: async (topic) => { await started; return peer.lookup(String(topic)); },
    peers: () => (peer.conns ? peer.peers() : []),
    rt: () => (peer.table ? peer.rt() : []),
    stats: () => (peer.conns ? peer.snapshot() : { id: peer.id ?? null }),
    drainEvents: () => peer.drainEvents(),
    disconnect: (idHex) => peer.conns.close(String(idHex)),
    connect: async (idHex) => {
      await started;
      const t = performance.now();
      const ok = await peer.conns.dial(unhex(String(idHex)));
      return { ok, ms: performance.now() - t };
    },
    stop: () => peer.stop(),
  };
}
