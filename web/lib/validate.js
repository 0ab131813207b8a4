// Record validation on receipt (docs/protocol.md §7-8): open records, owned (mutable/immutable)
// records and provider records. Each returns null when valid (and sets `pub`/`node`, the SHA-256
// of the public key), else the refusal reason, with the reasons the Python node uses.

import {
  recordPayload, providerPayload, mutablePayload, mutableAddressPreimage, immutableAddressPreimage,
  RecordKind, MAX_RECORD_DATA_BYTES,
} from "./codec.js";
import { equalBytes, sha256, verify } from "./crypto.js";

export async function validateRecord(maxFutureSkewMs, r) {
  if (r.data.length > MAX_RECORD_DATA_BYTES) return "data too large";
  if (r.ts > Date.now() + maxFutureSkewMs) return "timestamp too far in the future";
  if (!(await verify(r.publicKey, r.sig, recordPayload(r.key, r.ts, r.data)))) return "bad signature";
  r.pub = await sha256(r.publicKey);
  return null;
}

/** An owned record (a RECORD answer): null when valid per docs/protocol.md, else the reason. */
export async function validateOwned(maxFutureSkewMs, r) {
  if (r.data.length > MAX_RECORD_DATA_BYTES) return "data too large";
  if (r.kind === RecordKind.IMMUTABLE) {
    if (r.publicKey.length || r.sig.length || BigInt(r.ts) || BigInt(r.seq) || r.salt.length) {
      return "malformed immutable record";
    }
    if (!equalBytes(await sha256(immutableAddressPreimage(r.data)), r.key)) return "hash_mismatch";
  } else if (r.kind === RecordKind.MUTABLE) {
    if (r.publicKey.length !== 32 || r.sig.length !== 64) return "malformed key or signature";
    if (!equalBytes(await sha256(mutableAddressPreimage(r.publicKey, r.salt)), r.key)) return "not_owner";
    if (BigInt(r.ts) > BigInt(Date.now() + maxFutureSkewMs)) return "timestamp too far in the future";
    const payload = mutablePayload(r.key, r.salt, r.seq, r.ts, r.data);
    if (!(await verify(r.publicKey, r.sig, payload))) return "bad signature";
  } else {
    return "an open record in a RECORD answer";
  }
  r.pub = await sha256(r.publicKey);
  return null;
}

export async function validateProvider(maxFutureSkewMs, p) {
  if (p.ts > Date.now() + maxFutureSkewMs) return "timestamp too far in the future";
  if (p.meta.length) {
    try { JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(p.meta)); } catch {
      return "metadata is not JSON";
    }
  }
  const payload = providerPayload(p.topic, p.ts, p.port, p.leave, p.meta);
  if (!(await verify(p.publicKey, p.sig, payload))) return "bad signature";
  p.node = await sha256(p.publicKey);
  return null;
}
