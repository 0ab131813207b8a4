// A full DHT peer in the browser: joins through the signaling server, keeps a Kademlia routing
// table, answers every request a node may send (PING, FIND_NODE, FIND_VALUE, STORE, HAS_VALUE,
// ANNOUNCE, GET_PEERS, FIND_NODE_STORE; PUT and LISTEN with a refusal: it holds no owned records
// and pushes nothing), relays SIGNALs so nodes can dial it over the DHT, says BYE when stopped,
// and offers get, store, announce and lookup. Wire format and rules: docs/protocol.md; page API:
// docs/browser.md.

import {
  decode, encode, MsgType, TYPE_NAMES, DecodeError, recordPayload, providerPayload, NOT_CLOSEST,
  MAX_RECORD_DATA_BYTES, MAX_PROVIDERS_PER_MESSAGE,
} from "./codec.js";
import {
  Identity, compareBytes, equalBytes, hex, keyId, randomU64, unhex, utf8, xor,
} from "./crypto.js";
import { Connections } from "./connections.js";
import { RoutingTable } from "./routing.js";
import { SignalingClient } from "./signaling.js";
import { lookup } from "./lookup.js";
import { compareRecords } from "./records-order.js";
import { validateOwned, validateProvider, validateRecord } from "./validate.js";

export const DEFAULTS = Object.freeze({
  k: 20,
  alpha: 3,
  requestTimeoutMs: 2000,
  lookupDeadlineMs: 10000,
  dialTimeoutMs: 5000,
  requestDialMs: 2500,
  recordTtlMs: 3600_000,
  cacheTtlMs: 900_000,
  providerTtlMs: 1200_000,
  reannounceMs: 300_000,
  republishMs: 3000_000,
  pingIdleMs: 4000,
  maxRequestFailures: 2,
  maxFutureSkewMs: 5 * 60_000,
  signalHopLimit: 8,
  bootstrapPeers: 8,
  inband: false,
  helloVersion: null, // [major, minor] to announce; null: PROTOCOL_VERSION (tests change it)
  iceServers: [],
});
const MAX_EVENTS = 1000;
const SIGNAL_DEDUP_MAX = 4096;
const BYE_FLUSH_MS = 200; // time for the BYEs to leave before the links close
const R = MsgType.REFUSED; // any request may be refused (the sender is over its rate)
const RESPONSE_TYPES = {
  [MsgType.PING]: [MsgType.PONG, R],
  [MsgType.FIND_NODE]: [MsgType.NODES, R],
  [MsgType.FIND_VALUE]: [MsgType.VALUE, MsgType.NODES, MsgType.RECORD, R],
  [MsgType.STORE]: [MsgType.STORE_ACK, R],
  [MsgType.HAS_VALUE]: [MsgType.HAS_VALUE_ACK, R],
  [MsgType.ANNOUNCE]: [MsgType.ANNOUNCE_ACK, R],
  [MsgType.GET_PEERS]: [MsgType.PEERS, R],
  [MsgType.FIND_NODE_STORE]: [MsgType.NODES_ACK, R],
  [MsgType.PUT]: [MsgType.PUT_ACK, R],
  [MsgType.LISTEN]: [MsgType.LISTEN_ACK, R],
};

const utf8Decoder = new TextDecoder();
const better = (a, b) => !b || compareRecords(a, b) > 0;

export class DhtPeer {
  constructor(options = {}) {
    this.options = { ...DEFAULTS, ...options };
    this.identity = null;
    this.signaling = null;
    this.table = null;
    this.conns = null;
    this.records = new Map(); // key hex -> {record, expires}
    this.providers = new Map(); // topic hex -> Map(node hex -> {provider, expires})
    this.authored = new Map(); // key hex -> {key, data} republished by us
    this.announced = new Map(); // topic hex -> topic bytes
    this.pending = new Map(); // rid string -> {peerHex, types, resolve, timer}
    this.seenSignals = new Map();
    this.events = [];
    this.listeners = new Set();
    this.stats = {
      messages_in: {}, messages_out: {}, lookups: 0, requests_failed: 0,
      dropped_malformed: 0, dropped_unexpected: 0, records_rejected: 0, requests_refused: 0,
      byes_received: 0,
    };
    this.timers = [];
    this.started = Date.now();
  }

  get id() { return this.identity?.idHex; }

  log(text) { if (this.options.debug) console.log(`[dht ${this.id?.slice(0, 8)}] ${text}`); }

  emit(topic, payload = {}) {
    const ev = { topic, ...payload, ts: Date.now() };
    this.events.push(ev);
    if (this.events.length > MAX_EVENTS) this.events.shift();
    for (const fn of this.listeners) { try { fn(ev); } catch { /* a listener's bug */ } }
  }

  onEvent(fn) { this.listeners.add(fn); return () => this.listeners.delete(fn); }

  drainEvents() { const out = this.events; this.events = []; return out; }

  // == lifecycle =================================================================================

  /** Create the identity, register with the signaling server, connect and join the DHT. */
  async start(signalingUrl) {
    this.identity = this.options.identity || await Identity.generate();
    this.table = new RoutingTable(this.identity.id, this.options.k);
    this.signaling = new SignalingClient(signalingUrl, this.identity, {
      onRelay: (kind, from, cid, sdp) => this.conns.onRelay(kind, from, cid, sdp),
      onError: (frame) => {
        this.log(`signaling error ${frame.code}: ${frame.message}`);
        if (frame.code === "unknown_target" && typeof frame.cid === "string") this.conns.onUndeliverable(frame.cid);
      },
      onClose: () => { this.emit("signaling.disconnected"); this.reconnectSignaling(); },
    });
    this.conns = new Connections(this.identity, this.signaling, {
      linkUp: (link, replaced) => this.linkUp(link, replaced),
      linkDown: (link, reason) => this.linkDown(link, reason),
      message: (link, bytes) => this.receive(link, bytes),
      relay: (targetId, payload, viaHex) => this.relaySignal(targetId, payload, viaHex),
      log: (t) => this.log(t),
    }, this.options);
    await this.signaling.connect();
    this.timers.push(setInterval(() => this.tick(), 1000));
    const quietly = (p) => p.catch((e) => this.log(`maintenance failed: ${e.message}`));
    this.timers.push(setInterval(() => quietly(this.reannounce()), this.options.reannounceMs));
    this.timers.push(setInterval(() => quietly(this.republish()), this.options.republishMs));
    await this.bootstrap();
    return { id: this.id };
  }

  /** Reconnect to the signaling server with exponential backoff (1 s .. 10 s) until stopped. */
  reconnectSignaling(delayMs = 1000) {
    if (this.stopped) return;
    setTimeout(() => {
      if (this.stopped) return;
      this.signaling.connect().then(
        () => this.emit("signaling.connected"),
        () => this.reconnectSignaling(Math.min(delayMs * 2, 10_000)),
      );
    }, delayMs);
  }

  async bootstrap() {
    const ids = await this.signaling.peers(this.options.k);
    const first = ids.slice(0, this.options.bootstrapPeers).map((h) => this.conns.dial(unhex(h)));
    await Promise.all(first);
    if (this.conns.links.size) await this.findNode(this.identity.id);
    this.emit("node.joined", { peers: this.conns.links.size, routing_table_size: this.table.size });
  }

  /** Leave: say BYE on every open link, give it `BYE_FLUSH_MS` to leave, then close. */
  async stop() {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.signaling?.close();
    if (this.sayBye()) await new Promise((resolve) => { setTimeout(resolve, BYE_FLUSH_MS); });
    this.conns?.closeAll();
  }

  /** The page is going away (`pagehide`): say BYE on every open link at once, without waiting
   * (a closing page gets no time to wait); the links close with the page. */
  leaveNow() {
    if (!this.stopped) this.sayBye();
  }

  /** BYE on every open link; how many links it went to. */
  sayBye() {
    const links = this.conns ? [...this.conns.links.values()] : [];
    for (const link of links) this.conns.sendOn(link, encode({ type: MsgType.BYE }));
    return links.length;
  }

  // == links =====================================================================================

  linkUp(link, replaced) {
    this.heard(link.peerId);
    if (!replaced) this.emit("peer.connected", { peer: link.peerHex });
  }

  linkDown(link, reason) {
    this.emit("peer.disconnected", { peer: link.peerHex, reason });
    for (const [rid, p] of this.pending) {
      if (p.peerHex === link.peerHex) this.settle(rid, null);
    }
  }

  heard(peerId) {
    const had = this.table.has(hex(peerId));
    this.table.update(peerId, Date.now());
    if (!had && this.table.has(hex(peerId))) this.emit("contact.added", { peer: hex(peerId) });
  }

  /** Liveness: ping peers silent for `pingIdleMs`; drop the link when the ping fails. */
  tick() {
    const now = performance.now();
    for (const link of this.conns.links.values()) {
      if (now - link.lastHeard < this.options.pingIdleMs || link.pinging) continue;
      link.pinging = true;
      this.request(link.peerId, { type: MsgType.PING }).then((r) => {
        link.pinging = false;
        if (!r) this.conns.drop(link, "ping timeout");
      });
    }
    this.expire();
    // With no link left, the signaling server is the only way back in.
    const nowMs = Date.now();
    if (!this.conns.links.size && this.signaling.connected && !this.rejoining
        && nowMs - (this.lastRejoin || 0) > 5000) {
      this.rejoining = true;
      this.lastRejoin = nowMs;
      this.bootstrap().catch((e) => this.log(`rejoin failed: ${e.message}`))
        .finally(() => { this.rejoining = false; });
    }
  }

  expire() {
    const now = Date.now();
    for (const [k, v] of this.records) if (v.expires <= now) this.records.delete(k);
    for (const [t, m] of this.providers) {
      for (const [n, v] of m) if (v.expires <= now) m.delete(n);
      if (!m.size) this.providers.delete(t);
    }
  }

  // == messages ==================================================================================

  send(peerId, msg, viaHex = null) {
    const name = TYPE_NAMES[msg.type];
    this.stats.messages_out[name] = (this.stats.messages_out[name] || 0) + 1;
    this.conns.send(peerId, encode(msg), viaHex);
  }

  /** One request; resolves with the response, or null on timeout / lost link (never rejects).
   * Dialing an unconnected peer may take at most `requestDialMs` of the request's time (the
   * dial itself goes on in the background and may still succeed). */
  async request(peerId, msg, viaHex = null) {
    const peerHex = hex(peerId);
    if (!this.conns.links.has(peerHex)) {
      let timer;
      const late = new Promise((resolve) => { timer = setTimeout(() => resolve(false), this.options.requestDialMs); });
      const ok = await Promise.race([this.conns.dial(peerId, viaHex), late]);
      clearTimeout(timer);
      if (!ok) { this.requestFailed(peerHex); return null; }
    }
    const rid = randomU64();
    const key = rid.toString();
    const reply = new Promise((resolve) => {
      const timer = setTimeout(() => this.settle(key, null), this.options.requestTimeoutMs);
      this.pending.set(key, { peerHex, types: RESPONSE_TYPES[msg.type], resolve, timer });
    });
    this.send(peerId, { ...msg, rid });
    const r = await reply;
    if (!r) this.requestFailed(peerHex);
    if (r && r.type === MsgType.REFUSED) {
      // Over the peer's rate: this request failed, the peer is alive (no failure counted).
      this.stats.requests_refused += 1;
      this.log(`${TYPE_NAMES[msg.type]} refused by ${peerHex.slice(0, 8)}: ${r.reason}`);
      return null;
    }
    return r;
  }

  requestFailed(peerHex) {
    this.stats.requests_failed += 1;
    if (this.table.recordFailure(peerHex, this.options.maxRequestFailures)) {
      this.emit("contact.removed", { peer: peerHex, reason: "unresponsive" });
    }
  }

  settle(key, value) {
    const p = this.pending.get(key);
    if (!p) return;
    this.pending.delete(key);
    clearTimeout(p.timer);
    p.resolve(value);
  }

  receive(link, bytes) {
    let msg;
    try {
      msg = decode(bytes);
    } catch (e) {
      // Whatever the bytes, a bad message is counted and dropped, never thrown.
      this.stats.dropped_malformed += 1;
      this.log(`malformed message from ${link.peerHex.slice(0, 8)}: ${e.message}`);
      return;
    }
    const name = TYPE_NAMES[msg.type];
    this.stats.messages_in[name] = (this.stats.messages_in[name] || 0) + 1;
    if (msg.type !== MsgType.BYE) this.heard(link.peerId);
    if (RESPONSE_TYPES[msg.type]) {
      this.answer(link, msg).catch((e) => this.log(`answering ${name} failed: ${e.message}`));
    } else if (msg.type === MsgType.SIGNAL) {
      this.onSignal(link, msg);
    } else if (msg.type === MsgType.BYE) {
      this.onBye(link);
    } else if (msg.type === MsgType.HELLO || msg.type === MsgType.NOTIFY) {
      this.stats.dropped_unexpected += 1; // a second HELLO; a push for a key we never listened to
    } else {
      const key = msg.rid.toString();
      const p = this.pending.get(key);
      if (!p || p.peerHex !== link.peerHex || !p.types.includes(msg.type)) {
        this.stats.dropped_unexpected += 1;
        return;
      }
      this.settle(key, msg);
    }
  }

  /** The peer leaves on purpose: out of the table now, its pending requests fail, link closed. */
  onBye(link) {
    this.stats.byes_received += 1;
    if (this.table.remove(link.peerHex)) this.emit("contact.removed", { peer: link.peerHex, reason: "left" });
    this.conns.drop(link, "left"); // linkDown settles the requests pending at it
  }

  // == serving ===================================================================================

  closestTo(target, askerHex) { return this.table.closest(target, this.options.k, askerHex); }

  async answer(link, msg) {
    const { rid } = msg;
    const asker = link.peerHex;
    switch (msg.type) {
      case MsgType.PING:
        return this.send(link.peerId, { type: MsgType.PONG, rid });
      case MsgType.FIND_NODE:
        return this.send(link.peerId, { type: MsgType.NODES, rid, nodes: this.closestTo(msg.target, asker) });
      case MsgType.FIND_VALUE: {
        const nodes = this.closestTo(msg.key, asker);
        const held = this.localRecord(msg.key);
        if (!held) return this.send(link.peerId, { type: MsgType.NODES, rid, nodes });
        return this.send(link.peerId, { type: MsgType.VALUE, rid, record: held, nodes });
      }
      case MsgType.STORE:
        return this.send(link.peerId, { type: MsgType.STORE_ACK, rid, ...(await this.storeRecord(msg.record, msg.cached, asker)) });
      case MsgType.FIND_NODE_STORE: {
        const nodes = this.closestTo(msg.target, asker);
        let ack;
        if (!equalBytes(msg.record.key, msg.target)) {
          this.stats.records_rejected += 1;
          ack = { ok: false, reason: "record for another key" };
        } else if (!this.amongClosest(msg.target)) {
          ack = { ok: false, reason: NOT_CLOSEST };
        } else {
          ack = await this.storeRecord(msg.record, false, asker);
        }
        return this.send(link.peerId, { type: MsgType.NODES_ACK, rid, nodes, ...ack });
      }
      case MsgType.PUT: // owned records are not held here (docs/browser.md)
        return this.send(link.peerId, { type: MsgType.PUT_ACK, rid, ok: false, reason: "unsupported", seq: 0 });
      case MsgType.LISTEN: // no pushes from a browser peer: refused (LISTEN_ACK has no reason)
        return this.send(link.peerId, { type: MsgType.LISTEN_ACK, rid, ok: false, ttlS: 0 });
      case MsgType.HAS_VALUE: {
        const held = this.localRecord(msg.key);
        const has = !!held && (held.ts > msg.ts || (held.ts === msg.ts && compareBytes(held.pub, msg.pub) >= 0));
        return this.send(link.peerId, { type: MsgType.HAS_VALUE_ACK, rid, has });
      }
      case MsgType.ANNOUNCE: {
        const reason = await validateProvider(this.options.maxFutureSkewMs, msg.provider);
        if (reason) {
          this.stats.records_rejected += 1;
          return this.send(link.peerId, { type: MsgType.ANNOUNCE_ACK, rid, ok: false, reason });
        }
        const result = this.putProvider(msg.provider);
        return this.send(link.peerId, { type: MsgType.ANNOUNCE_ACK, rid, ok: result !== "older", reason: result });
      }
      case MsgType.GET_PEERS: {
        const provs = this.localProviders(msg.topic, true).slice(0, MAX_PROVIDERS_PER_MESSAGE);
        return this.send(link.peerId, { type: MsgType.PEERS, rid, providers: provs, nodes: this.closestTo(msg.topic, asker) });
      }
      default:
        return undefined;
    }
  }

  /** Fewer than k contacts of ours are closer to `key` than we are (node/responder.py). */
  amongClosest(key) {
    const closest = this.table.closest(key, this.options.k);
    if (closest.length < this.options.k) return true;
    return compareBytes(xor(this.identity.id, key), xor(closest[closest.length - 1], key)) < 0;
  }

  /** Validate and keep an open record as a STORE does: the ack's {ok, reason}. */
  async storeRecord(record, cached, asker) {
    const reason = await validateRecord(this.options.maxFutureSkewMs, record);
    if (reason) {
      this.stats.records_rejected += 1;
      return { ok: false, reason };
    }
    const result = this.putRecord(record, cached);
    if (result === "stored") this.emit("record.stored", { key: hex(record.key), from: asker, cached });
    return { ok: result !== "older", reason: result };
  }

  // == records ===================================================================================

  localRecord(key) {
    const held = this.records.get(hex(key));
    return held && held.expires > Date.now() ? held.record : null;
  }

  /** "stored" (new or better), "refreshed" (the same record again), or "older". */
  putRecord(record, cached) {
    const key = hex(record.key);
    const held = this.localRecord(record.key);
    const ttl = cached ? this.options.cacheTtlMs : this.options.recordTtlMs;
    if (held && !better(record, held)) {
      const same = held.ts === record.ts && equalBytes(held.pub, record.pub);
      if (!same) return "older";
      const entry = this.records.get(key);
      entry.expires = Math.max(entry.expires, Date.now() + ttl);
      return "refreshed";
    }
    this.records.set(key, { record, expires: Date.now() + ttl });
    return "stored";
  }

  localProviders(topic, includeLeaves = false) {
    const m = this.providers.get(hex(topic));
    if (!m) return [];
    const now = Date.now();
    return [...m.values()].filter((v) => v.expires > now && (includeLeaves || !v.provider.leave))
      .map((v) => v.provider);
  }

  putProvider(p) {
    const t = hex(p.topic);
    const m = this.providers.get(t) || new Map();
    this.providers.set(t, m);
    const n = hex(p.node);
    const held = m.get(n);
    if (held && held.provider.ts > p.ts) return "older";
    const result = held && held.provider.ts === p.ts ? "refreshed" : "stored";
    m.set(n, { provider: p, expires: Date.now() + this.options.providerTtlMs });
    return result;
  }

  // == the SIGNAL relay ==========================================================================

  firstTime(sid) {
    const key = sid.toString();
    if (this.seenSignals.has(key)) return false;
    this.seenSignals.set(key, true);
    if (this.seenSignals.size > SIGNAL_DEDUP_MAX) this.seenSignals.delete(this.seenSignals.keys().next().value);
    return true;
  }

  /** The connected peer closest to `target` (the target itself when connected), not excluded. */
  nextHop(target, exclude) {
    const t = hex(target);
    if (this.conns.links.has(t)) return this.conns.links.get(t).peerId;
    let best = null;
    let bestD = null;
    for (const link of this.conns.links.values()) {
      if (exclude.has(link.peerHex)) continue;
      const d = xor(link.peerId, target);
      if (!best || compareBytes(d, bestD) < 0) { best = link.peerId; bestD = d; }
    }
    return best;
  }

  relaySignal(targetId, payload, viaHex) {
    const sid = randomU64();
    this.firstTime(sid);
    const via = viaHex && this.conns.links.has(viaHex) ? this.conns.links.get(viaHex).peerId : null;
    const hop = via || this.nextHop(targetId, new Set());
    if (!hop || equalBytes(hop, targetId)) return false; // no route, or a direct link exists
    this.send(hop, {
      type: MsgType.SIGNAL, sid, source: this.identity.id, target: targetId,
      hopsLeft: this.options.signalHopLimit, payload,
    });
    return true;
  }

  onSignal(link, msg) {
    if (!this.firstTime(msg.sid)) return;
    if (equalBytes(msg.target, this.identity.id)) {
      this.conns.onSignalPayload(msg.source, msg.payload);
      return;
    }
    if (msg.hopsLeft <= 0) return;
    const next = this.nextHop(msg.target, new Set([link.peerHex, hex(msg.source)]));
    if (next) this.send(next, { ...msg, hopsLeft: msg.hopsLeft - 1 });
  }

  // == operations ================================================================================

  async findNode(target) {
    this.stats.lookups += 1;
    const r = await lookup(this, target, MsgType.FIND_NODE, {});
    return r.closest;
  }

  /** Store `value` (bytes) under the user key `keyText` at the k closest nodes. */
  async store(keyText, value) {
    const key = await keyId(keyText);
    if (value.length > MAX_RECORD_DATA_BYTES) throw new Error(`value of ${value.length} bytes is too large`);
    const ts = Date.now();
    const sig = await this.identity.sign(recordPayload(key, ts, value));
    const record = { key, data: value, ts, publicKey: this.identity.publicKey, sig, pub: this.identity.id };
    this.authored.set(hex(key), { keyText, value });
    return this.write(key, (rid) => ({ type: MsgType.STORE, rid, record, cached: false }));
  }

  async write(key, makeMsg) {
    const closest = await this.findNode(key);
    const acks = await Promise.all(closest.map(async (id) => {
      const r = await this.request(id, makeMsg());
      return !!r && r.ok;
    }));
    const stored = acks.filter(Boolean).length;
    const w = Math.ceil(this.options.k / 2);
    const quorum = Math.min(w, Math.ceil(closest.length / 2));
    return { ok: closest.length > 0 && stored >= quorum, stored, attempts: closest.length, quorum };
  }

  /** The best record under `keyText`: {found, value (bytes), ts, publisher}. */
  async get(keyText) { return this.getAt(await keyId(keyText)); }

  /** The best record at a raw 32-byte address: open (VALUE) or owned (RECORD, verified). */
  async getAt(key) {
    this.stats.lookups += 1;
    const r = await lookup(this, key, MsgType.FIND_VALUE, {
      accept: async (record) => equalBytes(record.key, key) && !(await validateRecord(this.options.maxFutureSkewMs, record)),
      acceptOwned: async (record) => equalBytes(record.key, key) && !(await validateOwned(this.options.maxFutureSkewMs, record)),
    });
    let best = r.record;
    const local = this.localRecord(key);
    if (local && better(local, best)) best = local;
    if (!best) return { found: false };
    return { found: true, value: best.data, ts: best.ts, publisher: hex(best.pub), kind: best.kind ?? 0 };
  }

  /** Announce ourselves under `topicText` (and keep re-announcing). */
  async announce(topicText, port = 0, meta = new Uint8Array(0)) {
    const topic = await keyId(topicText);
    this.announced.set(hex(topic), { topicText, port, meta });
    const ts = Date.now();
    const sig = await this.identity.sign(providerPayload(topic, ts, port, false, meta));
    const provider = { topic, ts, port, leave: false, meta, publicKey: this.identity.publicKey, sig, node: this.identity.id };
    this.putProvider(provider);
    return this.write(topic, (rid) => ({ type: MsgType.ANNOUNCE, rid, provider }));
  }

  /** The peers announced under `topicText` (hex ids, deduplicated, leaves excluded). */
  async lookup(topicText) {
    const topic = await keyId(topicText);
    this.stats.lookups += 1;
    const r = await lookup(this, topic, MsgType.GET_PEERS, {
      acceptProvider: async (p) => equalBytes(p.topic, topic) && !(await validateProvider(this.options.maxFutureSkewMs, p)),
    });
    const best = new Map();
    for (const p of [...r.providers, ...this.localProviders(topic, true)]) {
      const n = hex(p.node);
      if (!best.has(n) || best.get(n).ts < p.ts) best.set(n, p);
    }
    const peers = [...best.entries()].filter(([, p]) => !p.leave).map(([n]) => n).sort();
    return { peers, providers: peers.length };
  }

  /** Re-announce our topics before their provider records expire (every `reannounceMs`). */
  async reannounce() {
    for (const { topicText, port, meta } of this.announced.values()) await this.announce(topicText, port, meta);
  }

  /** Republish what we authored before holders' copies expire (every `republishMs`). */
  async republish() {
    for (const { keyText, value } of this.authored.values()) await this.store(keyText, value);
  }

  // == views =====================================================================================

  peers() { return [...this.conns.links.keys()].sort(); }

  rt() { return this.table.ids(); }

  snapshot() {
    return {
      id: this.id,
      uptime_s: (Date.now() - this.started) / 1000,
      connections: this.conns.links.size,
      routing_table_size: this.table.size,
      store_size: this.records.size,
      providers_held: [...this.providers.values()].reduce((n, m) => n + m.size, 0),
      signaling_connected: this.signaling.connected,
      pending_requests: this.pending.size,
      dials_in_progress: this.conns.dials.size,
      ...this.stats,
      ...this.conns.stats,
    };
  }
}

export { utf8, utf8Decoder };
