// Connections: one authenticated WebRTC data channel per peer (docs/protocol.md).
//
// - A dial creates an RTCPeerConnection and the channel labelled "dht" — pre-negotiated
//   (negotiated: true, id: 0), as every node supports, or in-band (DCEP) when `inband` is set
//   (nodes with the HELLO protocol version accept both). The complete offer (ICE gathering
//   finished; nodes do not trickle) goes over the signaling server and, through the `relay`
//   callback, as a SIGNAL over the DHT. The answer comes back either way, matched by `cid`.
// - An offer from a peer is answered the same way; the answering side creates the negotiated
//   channel too and also accepts an in-band one (ondatachannel).
// - Glare: when both sides dial each other, the offer from the lower node id wins.
// - HELLO: the first message each way, signed over DOMAIN_HELLO + receiver id + cid. Nothing
//   else from a link is processed before the peer's HELLO verifies; an id that is not
//   SHA-256(key), another receiver or another cid refuses the link.

import { decode, encode, helloPayload, MsgType, PROTOCOL_VERSION } from "./codec.js";
import { pack, unpack } from "./msgpack.js";
import { equalBytes, hex, randomHex, sha256, unhex, verify } from "./crypto.js";

export const HELLO_TIMEOUT_MS = 5000;
export const SIGNAL_PAYLOAD_VERSION = 1;
const GATHER_TIMEOUT_MS = 2000;
const SEEN_CIDS_MAX = 4096;
const MAX_QUEUED_PER_PEER = 64;
const MAX_EARLY_MESSAGES = 64;

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what} timed out`)), ms); }),
  ]).finally(() => clearTimeout(timer));
}

function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { clearTimeout(timer); resolve(); };
    const timer = setTimeout(done, GATHER_TIMEOUT_MS);
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") done();
    });
    pc.addEventListener("icecandidate", (ev) => { if (!ev.candidate) done(); });
  });
}

function channelOpen(dc) {
  if (dc.readyState === "open") return Promise.resolve(dc);
  return new Promise((resolve, reject) => {
    dc.addEventListener("open", () => resolve(dc), { once: true });
    dc.addEventListener("close", () => reject(new Error("channel closed")), { once: true });
  });
}

/** One authenticated connection. */
class Link {
  constructor(peerId, cid, pc, dc) {
    this.peerId = peerId;
    this.peerHex = hex(peerId);
    this.cid = cid;
    this.pc = pc;
    this.dc = dc;
    this.connectedAt = performance.now();
    this.lastUsed = this.connectedAt;
    this.lastHeard = this.connectedAt;
    this.closed = false;
  }
  send(bytes) {
    this.lastUsed = performance.now();
    this.dc.send(bytes);
  }
  close() {
    if (this.closed) return;
    this.closed = true;
    try { this.dc.close(); } catch { /* already closed */ }
    try { this.pc.close(); } catch { /* already closed */ }
  }
}

export class Connections {
  /**
   * hooks: linkUp(link), linkDown(link, reason), message(link, bytes), relay(targetId, payload,
   * viaHex) -> bool, log(text)
   */
  constructor(identity, signaling, hooks, options = {}) {
    this.identity = identity;
    this.signaling = signaling;
    this.hooks = hooks;
    this.inband = !!options.inband;
    this.iceServers = options.iceServers || [];
    this.dialTimeoutMs = options.dialTimeoutMs || 5000;
    this.helloVersion = options.helloVersion ?? null;
    this.links = new Map(); // hex -> Link
    this.dials = new Map(); // hex -> {promise, superseded, answer: {resolve}, cid}
    this.offers = new Map(); // cid -> dial
    this.seenCids = [];
    this.queued = new Map(); // hex -> [bytes]
    this.stats = { dials_started: 0, dials_failed: 0, links_opened: 0, links_closed: 0,
      hellos_rejected: 0, signals_relayed_out: 0, last_open_ms: null };
  }

  // -- sending ----------------------------------------------------------------------------------

  /** Send one encoded message, dialing first (through `viaHex`) when not connected. */
  send(peerId, bytes, viaHex = null) {
    const key = hex(peerId);
    const link = this.links.get(key);
    if (link) return this.sendOn(link, bytes);
    const q = this.queued.get(key) || [];
    if (q.length < MAX_QUEUED_PER_PEER) q.push(bytes);
    this.queued.set(key, q);
    this.dial(peerId, viaHex).then((ok) => { if (!ok) this.queued.delete(key); });
    return true;
  }

  sendOn(link, bytes) {
    try {
      link.send(bytes);
      return true;
    } catch (e) {
      this.drop(link, `send failed: ${e.message}`);
      return false;
    }
  }

  flush(link) {
    const q = this.queued.get(link.peerHex);
    this.queued.delete(link.peerHex);
    for (const b of q || []) this.sendOn(link, b);
  }

  // -- dialing ----------------------------------------------------------------------------------

  /** Connect to `peerId`; resolves true once an authenticated link is up, never rejects. */
  dial(peerId, viaHex = null) {
    const key = hex(peerId);
    if (this.links.has(key)) return Promise.resolve(true);
    if (key === this.identity.idHex) return Promise.resolve(false);
    const existing = this.dials.get(key);
    if (existing) return existing.promise;
    const dial = { peerId, key, superseded: false, answer: null, cid: null, done: null };
    dial.promise = new Promise((resolve) => { dial.done = resolve; });
    this.dials.set(key, dial);
    this.stats.dials_started += 1;
    const started = performance.now();
    withTimeout(this.dialInner(dial, viaHex), this.dialTimeoutMs + HELLO_TIMEOUT_MS, "dial")
      .catch((e) => { this.hooks.log?.(`dial ${key.slice(0, 8)} failed: ${e.message}`); return false; })
      .then((ok) => {
        if (dial.cid) this.offers.delete(dial.cid);
        if (this.dials.get(key) === dial) this.dials.delete(key);
        ok = ok || this.links.has(key);
        if (ok) this.stats.last_open_ms = performance.now() - started;
        else this.stats.dials_failed += 1;
        dial.done(ok);
      });
    return dial.promise;
  }

  /** A peer connection and its "dht" channel. Offering: in-band (DCEP) when `inband` is set,
   * else pre-negotiated id 0. Answering: the pre-negotiated one, while `ondatachannel` also
   * adopts an in-band channel the offerer opened (its DCEP stream id is odd when we take the
   * DTLS client role, as browsers do when answering, so the two never collide). */
  newPeerConnection(offering) {
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    const dc = offering && this.inband
      ? pc.createDataChannel("dht", { ordered: true })
      : pc.createDataChannel("dht", { ordered: true, negotiated: true, id: 0 });
    dc.binaryType = "arraybuffer";
    return { pc, dc };
  }

  async dialInner(dial, viaHex) {
    const { pc, dc } = this.newPeerConnection(true);
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc);
      if (dial.superseded) { pc.close(); return dial.promise; }
      const cid = randomHex(8);
      dial.cid = cid;
      const answer = new Promise((resolve) => { dial.answer = resolve; });
      this.offers.set(cid, dial);
      const route = this.sendSdp(dial.peerId, "offer", cid, pc.localDescription.sdp, viaHex);
      if (!route) throw new Error("no route for the offer (no peers, no signaling)");
      dial.relayed = route === "relay" || route === "both";
      const sdp = await withTimeout(answer, this.dialTimeoutMs, "answer");
      if (sdp === null) throw new Error("the signaling server does not know the peer");
      if (dial.superseded) { pc.close(); return dial.promise; }
      await pc.setRemoteDescription({ type: "answer", sdp });
      await withTimeout(channelOpen(dc), this.dialTimeoutMs, "channel open");
      return await this.handshake(pc, dc, dial.peerId, cid);
    } catch (e) {
      pc.close();
      throw e;
    }
  }

  /** Send over the DHT relay and the signaling server: "relay", "server", "both" or null. */
  sendSdp(peerId, kind, cid, sdp, viaHex) {
    const payload = pack({ v: SIGNAL_PAYLOAD_VERSION, t: kind, cid, sdp });
    const relayed = this.hooks.relay(peerId, payload, viaHex);
    if (relayed) this.stats.signals_relayed_out += 1;
    const served = !!this.signaling?.send(kind, hex(peerId), cid, sdp);
    if (relayed && served) return "both";
    return relayed ? "relay" : served ? "server" : null;
  }

  /** The signaling server could not deliver our offer `cid`: fail fast when it was the only route. */
  onUndeliverable(cid) {
    const dial = this.offers.get(cid);
    if (dial && !dial.relayed && dial.answer) {
      const resolve = dial.answer;
      dial.answer = null;
      resolve(null);
    }
  }

  // -- what arrives -----------------------------------------------------------------------------

  /** A connection-setup payload relayed over the DHT (untrusted). */
  onSignalPayload(sourceId, payload) {
    let obj;
    try {
      obj = unpack(payload);
      if (typeof obj.cid !== "string" || typeof obj.sdp !== "string" || obj.cid.length > 64) {
        throw new Error("bad fields");
      }
    } catch (e) {
      this.hooks.log?.(`bad relayed signal: ${e.message}`);
      return;
    }
    this.onRelay(obj.t, sourceId, obj.cid, obj.sdp);
  }

  /** An offer or answer (from the signaling server or the DHT relay). */
  onRelay(kind, sender, cid, sdp) {
    const senderId = typeof sender === "string" ? unhex(sender) : sender;
    if (kind === "answer") {
      const dial = this.offers.get(cid);
      if (dial && dial.key === hex(senderId) && dial.answer) {
        const resolve = dial.answer;
        dial.answer = null;
        resolve(sdp);
      }
    } else if (kind === "offer") {
      this.onOffer(senderId, cid, sdp).catch((e) => this.hooks.log?.(`answering failed: ${e.message}`));
    }
  }

  async onOffer(senderId, cid, sdp) {
    const key = hex(senderId);
    if (key === this.identity.idHex || this.seenCids.includes(cid)) return;
    this.seenCids.push(cid);
    if (this.seenCids.length > SEEN_CIDS_MAX) this.seenCids.shift();
    const ours = this.dials.get(key);
    if (ours && this.identity.idHex < key && !ours.superseded) return; // glare: ours wins
    if (ours) {
      ours.superseded = true;
      if (ours.answer) { const r = ours.answer; ours.answer = null; r(""); }
    }
    const { pc, dc } = this.newPeerConnection(false);
    let channel = dc;
    const inbandChannel = new Promise((resolve) => {
      pc.ondatachannel = (ev) => {
        if (ev.channel.label === "dht") { ev.channel.binaryType = "arraybuffer"; resolve(ev.channel); }
      };
    });
    try {
      await pc.setRemoteDescription({ type: "offer", sdp });
      await pc.setLocalDescription(await pc.createAnswer());
      await gathered(pc);
      if (!this.sendSdp(senderId, "answer", cid, pc.localDescription.sdp, null)) {
        throw new Error("no route for the answer");
      }
      const opened = [inbandChannel.then(channelOpen), channelOpen(channel)];
      const negotiated = channel;
      channel = await withTimeout(Promise.race(opened), this.dialTimeoutMs, "channel open");
      if (channel !== negotiated) negotiated.close();
      const ok = await this.handshake(pc, channel, senderId, cid);
      if (ours && ours.done) ours.done(ok);
    } catch (e) {
      pc.close();
      throw e;
    }
  }

  // -- HELLO ------------------------------------------------------------------------------------

  async handshake(pc, dc, peerId, cid) {
    const early = [];
    let verified = null;
    const link = new Link(peerId, cid, pc, dc);
    const result = new Promise((resolve) => { verified = resolve; });
    let state = "waiting";
    dc.onmessage = (ev) => {
      const bytes = new Uint8Array(ev.data);
      if (state === "up") { link.lastHeard = performance.now(); this.hooks.message(link, bytes); return; }
      if (state === "checking") {
        // The peer may send requests right after our HELLO verified on its side.
        if (early.length < MAX_EARLY_MESSAGES) early.push(bytes);
        return;
      }
      if (state !== "waiting") return;
      state = "checking";
      this.checkHello(bytes, peerId, cid).then(verified, () => verified(false));
    };
    dc.onclose = () => {
      if (state === "up") this.drop(link, "closed");
      else verified(false);
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "failed" || pc.connectionState === "closed") {
        if (state === "up") this.drop(link, `connection ${pc.connectionState}`);
        else verified(false);
      }
    };
    const sig = await this.identity.sign(helloPayload(peerId, cid));
    const hello = {
      type: MsgType.HELLO, publicKey: this.identity.publicKey, receiver: peerId, cid, sig,
      version: this.helloVersion || PROTOCOL_VERSION,
    };
    dc.send(encode(hello));
    const ok = await withTimeout(result, HELLO_TIMEOUT_MS, "HELLO").catch(() => false);
    if (!ok) {
      this.stats.hellos_rejected += 1;
      state = "refused";
      link.close();
      return false;
    }
    this.register(link);
    state = "up";
    for (const b of early) this.hooks.message(link, b);
    return true;
  }

  async checkHello(bytes, peerId, cid) {
    let msg;
    try { msg = decode(bytes); } catch { return false; }
    if (msg.type !== MsgType.HELLO) return false;
    if (msg.version[0] !== PROTOCOL_VERSION[0]) {
      this.hooks.log?.(`refusing protocol version ${msg.version.join(".")}`);
      return false;
    }
    return equalBytes(await sha256(msg.publicKey), peerId)
      && equalBytes(msg.receiver, this.identity.id)
      && msg.cid === cid
      && verify(msg.publicKey, msg.sig, helloPayload(this.identity.id, cid));
  }

  register(link) {
    const old = this.links.get(link.peerHex);
    this.links.set(link.peerHex, link);
    this.stats.links_opened += 1;
    if (old) old.close();
    this.hooks.linkUp(link, !!old);
    this.flush(link);
  }

  drop(link, reason) {
    link.close();
    if (this.links.get(link.peerHex) !== link) return;
    this.links.delete(link.peerHex);
    this.stats.links_closed += 1;
    this.hooks.linkDown(link, reason);
  }

  /** Close the link to a peer (hex); false when there was none. */
  close(peerHex, reason = "closed by request") {
    const link = this.links.get(peerHex);
    if (!link) return false;
    this.drop(link, reason);
    return true;
  }

  closeAll() {
    for (const link of [...this.links.values()]) this.drop(link, "shutdown");
  }
}
