// Identity and hashing on WebCrypto: Ed25519 keys (node id = SHA-256(raw public key)),
// domain-separated signatures (docs/protocol.md), hex helpers, XOR distance.

export const DOMAIN_RECORD = "webrtc-dht/record/v1\0";
export const DOMAIN_PROVIDER = "webrtc-dht/provider/v1\0";
export const DOMAIN_HELLO = "webrtc-dht/hello/v1\0";
export const DOMAIN_SIGNALING = "webrtc-dht/signaling-register/v1\0";
export const DOMAIN_MUTABLE = "webrtc-dht/mutable/v1\0";
export const DOMAIN_ADDRESS = "webrtc-dht/address/v1\0";
export const DOMAIN_IMMUTABLE = "webrtc-dht/immutable/v1\0";

const enc = new TextEncoder();
const subtle = () => {
  if (!globalThis.crypto || !crypto.subtle) {
    throw new Error("WebCrypto is unavailable: serve the page over https or http://127.0.0.1");
  }
  return crypto.subtle;
};

export function utf8(s) { return enc.encode(s); }

export function concat(...parts) {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

export function hex(bytes) {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

export function unhex(text) {
  if (typeof text !== "string" || text.length % 2 || /[^0-9a-fA-F]/.test(text)) {
    throw new Error("not hex");
  }
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.substr(2 * i, 2), 16);
  return out;
}

export function u64be(n) {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(n));
  return b;
}

export function u32be(n) {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
}

export async function sha256(bytes) {
  return new Uint8Array(await subtle().digest("SHA-256", bytes));
}

export async function keyId(text) { return sha256(utf8(text)); }

export function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** -1, 0, 1 comparing two equal-length byte strings as big-endian numbers. */
export function compareBytes(a, b) {
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1;
  }
  return a.length - b.length;
}

export function xor(a, b) {
  const out = new Uint8Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] ^ b[i];
  return out;
}

/** Index of the first differing bit (0 = most significant), or -1 when equal. */
export function bucketIndex(own, other) {
  for (let i = 0; i < own.length; i++) {
    const d = own[i] ^ other[i];
    if (d) return i * 8 + Math.clz32(d) - 24;
  }
  return -1;
}

export function idFromPublicKey(publicKey) { return sha256(publicKey); }

/** Ed25519 verification of `signature` over `message` by a raw 32-byte `publicKey`. */
export async function verify(publicKey, signature, message) {
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  try {
    const key = await subtle().importKey("raw", publicKey, { name: "Ed25519" }, false, ["verify"]);
    return await subtle().verify({ name: "Ed25519" }, key, signature, message);
  } catch {
    return false;
  }
}

/** A node identity: an Ed25519 key pair held by WebCrypto (the private key never leaves it). */
export class Identity {
  constructor(privateKey, publicKey, id) {
    this.privateKey = privateKey;
    this.publicKey = publicKey; // raw 32 bytes
    this.id = id; // SHA-256(publicKey)
    this.idHex = hex(id);
  }

  static async generate() {
    const pair = await subtle().generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
    return Identity.fromKeyPair(pair);
  }

  /** From a 32-byte seed (tests, test vectors): wraps it in PKCS#8 for WebCrypto. */
  static async fromSeed(seed) {
    const prefix = unhex("302e020100300506032b657004220420");
    const privateKey = await subtle().importKey(
      "pkcs8", concat(prefix, seed), { name: "Ed25519" }, true, ["sign"]);
    const jwk = await subtle().exportKey("jwk", privateKey);
    const pubB64 = jwk.x.replace(/-/g, "+").replace(/_/g, "/");
    const raw = Uint8Array.from(atob(pubB64 + "=".repeat((4 - (pubB64.length % 4)) % 4)),
      (c) => c.charCodeAt(0));
    return new Identity(privateKey, raw, await sha256(raw));
  }

  static async fromKeyPair(pair) {
    const raw = new Uint8Array(await subtle().exportKey("raw", pair.publicKey));
    return new Identity(pair.privateKey, raw, await sha256(raw));
  }

  async sign(message) {
    return new Uint8Array(await subtle().sign({ name: "Ed25519" }, this.privateKey, message));
  }
}

export function randomHex(nBytes) {
  return hex(crypto.getRandomValues(new Uint8Array(nBytes)));
}

export function randomU64() {
  const b = crypto.getRandomValues(new Uint8Array(8));
  return new DataView(b.buffer).getBigUint64(0);
}
