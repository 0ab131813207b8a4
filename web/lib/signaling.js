// The signaling client (docs/interfaces.md "Signaling server protocol"): JSON text frames over
// one WebSocket. The server opens with a challenge nonce; we register by signing
// DOMAIN_SIGNALING + nonce with the node key. Then `peers` asks for registered nodes closest to
// us, and offers/answers are relayed to a registered target (`from` is set by the server).

import { DOMAIN_SIGNALING, concat, hex, unhex, utf8 } from "./crypto.js";

const REQUEST_TIMEOUT_MS = 5000;

export class SignalingClient {
  /**
   * @param {string} url ws:// URL of the signaling server
   * @param {Identity} identity
   * @param {{onRelay: (kind, from, cid, sdp) => void, onError: (frame) => void,
   *          onClose: () => void}} handlers
   */
  constructor(url, identity, handlers) {
    this.url = url;
    this.identity = identity;
    this.handlers = handlers;
    this.ws = null;
    this.connected = false;
    this.nextRid = 1;
    this.waiting = new Map();
  }

  /** Connect and register; resolves once the server confirmed the registration. */
  connect() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url);
      this.ws = ws;
      const timer = setTimeout(() => { reject(new Error("signaling: no registration")); ws.close(); },
        REQUEST_TIMEOUT_MS * 2);
      ws.onmessage = async (ev) => {
        let frame;
        try { frame = JSON.parse(ev.data); } catch { return; }
        if (frame.type === "challenge") {
          const sig = await this.identity.sign(concat(utf8(DOMAIN_SIGNALING), unhex(frame.nonce)));
          ws.send(JSON.stringify({
            type: "register", id: this.identity.idHex,
            public_key: hex(this.identity.publicKey), sig: hex(sig), rid: 0,
          }));
        } else if (frame.type === "registered") {
          clearTimeout(timer);
          this.connected = true;
          resolve();
        } else {
          this.onFrame(frame);
        }
      };
      ws.onclose = () => {
        clearTimeout(timer);
        const was = this.connected;
        this.connected = false;
        for (const w of this.waiting.values()) w.reject(new Error("signaling closed"));
        this.waiting.clear();
        if (!was) reject(new Error("signaling connection closed before registration"));
        else this.handlers.onClose?.();
      };
      ws.onerror = () => {}; // onclose follows
    });
  }

  onFrame(frame) {
    if ((frame.type === "peers" || frame.type === "error") && this.waiting.has(frame.rid)) {
      const w = this.waiting.get(frame.rid);
      this.waiting.delete(frame.rid);
      if (frame.type === "peers") w.resolve(frame.peers);
      else w.reject(new Error(`signaling: ${frame.code}: ${frame.message}`));
      return;
    }
    if ((frame.type === "offer" || frame.type === "answer") && typeof frame.from === "string") {
      this.handlers.onRelay(frame.type, frame.from, frame.cid, frame.sdp);
    } else if (frame.type === "error") {
      this.handlers.onError?.(frame);
    }
  }

  request(frame) {
    const rid = this.nextRid++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(rid);
        reject(new Error("signaling request timed out"));
      }, REQUEST_TIMEOUT_MS);
      this.waiting.set(rid, {
        resolve: (v) => { clearTimeout(timer); resolve(v); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      });
      this.ws.send(JSON.stringify({ ...frame, rid }));
    });
  }

  /** Up to n registered node ids (hex) closest to ours. */
  async peers(n = 20) {
    const peers = await this.request({ type: "peers", n });
    return peers.filter((p) => p !== this.identity.idHex);
  }

  /** Relay an offer or answer to `toHex`; false when not connected. */
  send(kind, toHex, cid, sdp) {
    if (!this.connected) return false;
    this.ws.send(JSON.stringify({ type: kind, to: toHex, cid, sdp }));
    return true;
  }

  close() {
    this.connected = false;
    this.ws?.close();
  }
}
