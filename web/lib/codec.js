// The peer wire protocol (docs/protocol.md): one msgpack array per data-channel message,
// [type, fields...]. Decoding validates the tag, the arity, every field's type and length and
// throws DecodeError for anything else, like node/codec.py. Request ids (rid, sid) are BigInt.

import { pack, unpack, MsgpackError } from "./msgpack.js";
import {
  concat, utf8, u64be, u32be, DOMAIN_RECORD, DOMAIN_PROVIDER, DOMAIN_HELLO, DOMAIN_MUTABLE,
  DOMAIN_ADDRESS, DOMAIN_IMMUTABLE,
} from "./crypto.js";

export const MsgType = Object.freeze({
  HELLO: 0, PING: 1, PONG: 2, FIND_NODE: 3, NODES: 4, FIND_VALUE: 5, VALUE: 6, STORE: 7,
  STORE_ACK: 8, HAS_VALUE: 9, HAS_VALUE_ACK: 10, SIGNAL: 11, ANNOUNCE: 12, ANNOUNCE_ACK: 13,
  GET_PEERS: 14, PEERS: 15, FIND_NODE_STORE: 16, NODES_ACK: 17, BYE: 20, PUT: 24, PUT_ACK: 25,
  RECORD: 27, REFUSED: 28, LISTEN: 30, LISTEN_ACK: 31, NOTIFY: 32,
});
// Record kinds (typed records of PUT and RECORD); open records travel as 5-field arrays.
export const RecordKind = Object.freeze({ OPEN: 0, MUTABLE: 1, IMMUTABLE: 2 });
export const NOT_CLOSEST = "not_closest";
export const TYPE_NAMES = Object.fromEntries(Object.entries(MsgType).map(([k, v]) => [v, k]));

export const MAX_MESSAGE_BYTES = 60 * 1024;
export const MAX_RECORD_DATA_BYTES = 32 * 1024;
export const MAX_PROVIDER_META_BYTES = 1024;
export const MAX_NODES_PER_MESSAGE = 64;
export const MAX_PROVIDERS_PER_MESSAGE = 64;
export const MAX_REASON_CHARS = 200;
export const MAX_CID_CHARS = 64;
export const MAX_SIGNAL_PAYLOAD_BYTES = 32 * 1024;
export const MAX_SALT_BYTES = 64;
export const MAX_LISTEN_TTL_S = 3600;
export const PROTOCOL_VERSION = [1, 0];
const U64_MAX = (1n << 64n) - 1n;

export class DecodeError extends Error {}

// -- signature payloads -----------------------------------------------------------------------

export function recordPayload(key, ts, data) {
  return concat(utf8(DOMAIN_RECORD), key, u64be(ts), data);
}

export function providerPayload(topic, ts, port, leave, meta) {
  return concat(utf8(DOMAIN_PROVIDER), topic, u64be(ts), u32be(port),
    new Uint8Array([leave ? 1 : 0]), meta);
}

export function helloPayload(receiver, cid) {
  return concat(utf8(DOMAIN_HELLO), receiver, utf8(cid));
}

export function mutablePayload(key, salt, seq, ts, data) {
  return concat(utf8(DOMAIN_MUTABLE), key, new Uint8Array([salt.length]), salt, u64be(seq),
    u64be(ts), data);
}

/** The preimage of a MUTABLE record's address (its key is SHA-256 of this). */
export function mutableAddressPreimage(publicKey, salt) {
  return concat(utf8(DOMAIN_ADDRESS), publicKey, salt);
}

/** The preimage of an IMMUTABLE record's address (its key is SHA-256 of this). */
export function immutableAddressPreimage(data) {
  return concat(utf8(DOMAIN_IMMUTABLE), data);
}

// -- encoding -----------------------------------------------------------------------------------

const rec = (r) => [r.key, r.data, r.ts, r.publicKey, r.sig];
const trec = (r) => [r.kind ?? RecordKind.OPEN, r.key, r.data, r.ts, r.seq ?? 0, r.salt ?? new Uint8Array(0),
  r.publicKey, r.sig];
const reason = (m) => m.reason.slice(0, MAX_REASON_CHARS);
const prov = (p) => [p.topic, p.ts, p.port, p.leave, p.meta, p.publicKey, p.sig];

function fields(m) {
  switch (m.type) {
    case MsgType.HELLO: return [m.publicKey, m.receiver, m.cid, m.sig, m.version || PROTOCOL_VERSION];
    case MsgType.PING: case MsgType.PONG: return [m.rid];
    case MsgType.FIND_NODE: return [m.rid, m.target];
    case MsgType.NODES: return [m.rid, m.nodes];
    case MsgType.FIND_VALUE: return [m.rid, m.key];
    case MsgType.VALUE: return [m.rid, rec(m.record), m.nodes];
    case MsgType.STORE: return [m.rid, rec(m.record), m.cached];
    case MsgType.STORE_ACK: case MsgType.ANNOUNCE_ACK: return [m.rid, m.ok, reason(m)];
    case MsgType.HAS_VALUE: return [m.rid, m.key, m.ts, m.pub];
    case MsgType.HAS_VALUE_ACK: return [m.rid, m.has];
    case MsgType.SIGNAL: return [m.sid, m.source, m.target, m.hopsLeft, m.payload];
    case MsgType.ANNOUNCE: return [m.rid, prov(m.provider)];
    case MsgType.GET_PEERS: return [m.rid, m.topic];
    case MsgType.PEERS: return [m.rid, m.providers.map(prov), m.nodes];
    case MsgType.FIND_NODE_STORE: return [m.rid, m.target, rec(m.record)];
    case MsgType.NODES_ACK: return [m.rid, m.nodes, m.ok, reason(m)];
    case MsgType.BYE: return [];
    case MsgType.PUT: return [m.rid, trec(m.record), m.cas ?? null, m.cached];
    case MsgType.PUT_ACK: return [m.rid, m.ok, reason(m), m.seq];
    case MsgType.RECORD: return [m.rid, trec(m.record), m.nodes];
    case MsgType.REFUSED: return [m.rid, reason(m)];
    case MsgType.LISTEN: return [m.rid, m.key, m.ttlS];
    case MsgType.LISTEN_ACK: return [m.rid, m.ok, m.ttlS];
    case MsgType.NOTIFY: return [rec(m.record)];
    default: throw new Error(`not a message type: ${m.type}`);
  }
}

export function encode(m) {
  const data = pack([m.type, ...fields(m)]);
  if (data.length > MAX_MESSAGE_BYTES) throw new Error(`message of ${data.length} bytes is too large`);
  return data;
}

// -- decoding -----------------------------------------------------------------------------------

function u64(v, what) {
  if (typeof v === "number" && Number.isInteger(v) && v >= 0) return BigInt(v);
  if (typeof v === "bigint" && v >= 0n && v <= U64_MAX) return v;
  throw new DecodeError(`${what}: expected an unsigned 64-bit integer`);
}

function tsValue(v, what) {
  const b = u64(v, what);
  return b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b;
}

function int(v, what, lo, hi) {
  if (typeof v !== "number" || !Number.isInteger(v) || v < lo || v > hi) {
    throw new DecodeError(`${what}: expected an integer in [${lo}, ${hi}]`);
  }
  return v;
}

function bool(v, what) {
  if (typeof v !== "boolean") throw new DecodeError(`${what}: expected a boolean`);
  return v;
}

function bin(v, what, maxLen, exact = false) {
  if (!(v instanceof Uint8Array) || v.length > maxLen || (exact && v.length !== maxLen)) {
    throw new DecodeError(`${what}: expected ${exact ? "exactly" : "at most"} ${maxLen} bytes`);
  }
  return v;
}

function str(v, what, maxLen) {
  // Python counts code points; so does [...v].length.
  if (typeof v !== "string" || [...v].length > maxLen) {
    throw new DecodeError(`${what}: expected a string of at most ${maxLen} characters`);
  }
  return v;
}

const id = (v, what = "node id") => bin(v, what, 32, true);

function ids(v) {
  if (!Array.isArray(v) || v.length > MAX_NODES_PER_MESSAGE) {
    throw new DecodeError(`nodes: expected a list of at most ${MAX_NODES_PER_MESSAGE} ids`);
  }
  return v.map((x) => id(x));
}

function record(v) {
  if (!Array.isArray(v) || v.length !== 5) {
    throw new DecodeError("record: expected [key, data, ts, public_key, sig]");
  }
  return {
    key: bin(v[0], "record key", 32, true),
    data: bin(v[1], "record data", MAX_RECORD_DATA_BYTES),
    ts: tsValue(v[2], "record ts"),
    publicKey: bin(v[3], "record public key", 32, true),
    sig: bin(v[4], "record sig", 64, true),
  };
}

function typedRecord(v) {
  if (!Array.isArray(v) || v.length !== 8) {
    throw new DecodeError("record: expected [kind, key, data, ts, seq, salt, public_key, sig]");
  }
  return {
    kind: int(v[0], "record kind", 0, RecordKind.IMMUTABLE),
    key: bin(v[1], "record key", 32, true),
    data: bin(v[2], "record data", MAX_RECORD_DATA_BYTES),
    ts: tsValue(v[3], "record ts"),
    seq: tsValue(v[4], "record seq"),
    salt: bin(v[5], "record salt", MAX_SALT_BYTES),
    publicKey: bin(v[6], "record public key", 32),
    sig: bin(v[7], "record sig", 64),
  };
}

function optU64(v, what) { return v === null ? null : u64(v, what); }

function provider(v) {
  if (!Array.isArray(v) || v.length !== 7) {
    throw new DecodeError("provider: expected [topic, ts, port, leave, meta, public_key, sig]");
  }
  return {
    topic: bin(v[0], "provider topic", 32, true),
    ts: tsValue(v[1], "provider ts"),
    port: int(v[2], "provider port", 0, 65535),
    leave: bool(v[3], "provider leave"),
    meta: bin(v[4], "provider meta", MAX_PROVIDER_META_BYTES),
    publicKey: bin(v[5], "provider public key", 32, true),
    sig: bin(v[6], "provider sig", 64, true),
  };
}

function providers(v) {
  if (!Array.isArray(v) || v.length > MAX_PROVIDERS_PER_MESSAGE) {
    throw new DecodeError("providers: expected a list");
  }
  return v.map(provider);
}

function version(v) {
  if (!Array.isArray(v) || v.length !== 2) {
    throw new DecodeError("hello version: expected [major, minor]");
  }
  return [int(v[0], "hello version major", 0, 65535), int(v[1], "hello version minor", 0, 65535)];
}

const T = MsgType;
// A HELLO may carry fields a later minor version appends (ignored), up to this many.
export const MAX_HELLO_FIELDS = 16;
// tag -> [allowed arities, builder]
const DECODERS = {
  [T.HELLO]: [[5], (f) => ({
    publicKey: bin(f[0], "hello public key", 32, true),
    receiver: id(f[1], "hello receiver"),
    cid: str(f[2], "hello cid", MAX_CID_CHARS),
    sig: bin(f[3], "hello sig", 64, true),
    version: version(f[4]),
  })],
  [T.PING]: [[1], (f) => ({ rid: u64(f[0], "rid") })],
  [T.PONG]: [[1], (f) => ({ rid: u64(f[0], "rid") })],
  [T.FIND_NODE]: [[2], (f) => ({ rid: u64(f[0], "rid"), target: id(f[1], "target") })],
  [T.NODES]: [[2], (f) => ({ rid: u64(f[0], "rid"), nodes: ids(f[1]) })],
  [T.FIND_VALUE]: [[2], (f) => ({ rid: u64(f[0], "rid"), key: bin(f[1], "key", 32, true) })],
  [T.VALUE]: [[3], (f) => ({ rid: u64(f[0], "rid"), record: record(f[1]), nodes: ids(f[2]) })],
  [T.STORE]: [[3], (f) => ({ rid: u64(f[0], "rid"), record: record(f[1]), cached: bool(f[2], "cached") })],
  [T.STORE_ACK]: [[3], (f) => ({
    rid: u64(f[0], "rid"), ok: bool(f[1], "ok"), reason: str(f[2], "reason", MAX_REASON_CHARS),
  })],
  [T.HAS_VALUE]: [[4], (f) => ({
    rid: u64(f[0], "rid"), key: bin(f[1], "key", 32, true), ts: tsValue(f[2], "ts"), pub: id(f[3], "pub"),
  })],
  [T.HAS_VALUE_ACK]: [[2], (f) => ({ rid: u64(f[0], "rid"), has: bool(f[1], "has") })],
  [T.SIGNAL]: [[5], (f) => ({
    sid: u64(f[0], "sid"),
    source: id(f[1], "signal source"),
    target: id(f[2], "signal target"),
    hopsLeft: int(f[3], "hops left", 0, 64),
    payload: bin(f[4], "signal payload", MAX_SIGNAL_PAYLOAD_BYTES),
  })],
  [T.ANNOUNCE]: [[2], (f) => ({ rid: u64(f[0], "rid"), provider: provider(f[1]) })],
  [T.ANNOUNCE_ACK]: [[3], (f) => ({
    rid: u64(f[0], "rid"), ok: bool(f[1], "ok"), reason: str(f[2], "reason", MAX_REASON_CHARS),
  })],
  [T.GET_PEERS]: [[2], (f) => ({ rid: u64(f[0], "rid"), topic: bin(f[1], "topic", 32, true) })],
  [T.PEERS]: [[3], (f) => ({ rid: u64(f[0], "rid"), providers: providers(f[1]), nodes: ids(f[2]) })],
  [T.FIND_NODE_STORE]: [[3], (f) => ({ rid: u64(f[0], "rid"), target: id(f[1], "target"), record: record(f[2]) })],
  [T.NODES_ACK]: [[4], (f) => ({
    rid: u64(f[0], "rid"), nodes: ids(f[1]), ok: bool(f[2], "ok"), reason: str(f[3], "reason", MAX_REASON_CHARS),
  })],
  [T.BYE]: [[0], () => ({})],
  [T.PUT]: [[4], (f) => ({
    rid: u64(f[0], "rid"), record: typedRecord(f[1]), cas: optU64(f[2], "cas"), cached: bool(f[3], "cached"),
  })],
  [T.PUT_ACK]: [[4], (f) => ({
    rid: u64(f[0], "rid"), ok: bool(f[1], "ok"), reason: str(f[2], "reason", MAX_REASON_CHARS),
    seq: tsValue(f[3], "seq"),
  })],
  [T.RECORD]: [[3], (f) => ({ rid: u64(f[0], "rid"), record: typedRecord(f[1]), nodes: ids(f[2]) })],
  [T.REFUSED]: [[2], (f) => ({ rid: u64(f[0], "rid"), reason: str(f[1], "reason", MAX_REASON_CHARS) })],
  [T.LISTEN]: [[3], (f) => ({
    rid: u64(f[0], "rid"), key: bin(f[1], "key", 32, true), ttlS: int(f[2], "ttl_s", 0, MAX_LISTEN_TTL_S),
  })],
  [T.LISTEN_ACK]: [[3], (f) => ({
    rid: u64(f[0], "rid"), ok: bool(f[1], "ok"), ttlS: int(f[2], "ttl_s", 0, MAX_LISTEN_TTL_S),
  })],
  [T.NOTIFY]: [[1], (f) => ({ record: record(f[0]) })],
};

/** Decode one wire message or throw DecodeError. */
export function decode(data) {
  if (data instanceof ArrayBuffer) data = new Uint8Array(data);
  if (!(data instanceof Uint8Array)) throw new DecodeError("expected binary data");
  if (data.length > MAX_MESSAGE_BYTES) {
    throw new DecodeError(`message of ${data.length} bytes exceeds ${MAX_MESSAGE_BYTES}`);
  }
  let obj;
  try {
    obj = unpack(data, {
      maxStr: MAX_MESSAGE_BYTES, maxBin: MAX_MESSAGE_BYTES,
      maxArray: 4 * MAX_NODES_PER_MESSAGE, maxMap: 0,
    });
  } catch (e) {
    if (e instanceof MsgpackError) throw new DecodeError(`not msgpack: ${e.message}`);
    throw e;
  }
  if (!Array.isArray(obj) || obj.length === 0) throw new DecodeError("expected a non-empty array");
  const tag = obj[0];
  const entry = typeof tag === "number" ? DECODERS[tag] : undefined;
  if (entry === undefined) {
    throw new DecodeError(`unknown message type ${typeof tag === "number" ? tag : typeof tag}`);
  }
  const [arities, build] = entry;
  let f = obj.slice(1);
  if (tag === T.HELLO && f.length > 5 && f.length <= MAX_HELLO_FIELDS) f = f.slice(0, 5);
  if (!arities.includes(f.length)) {
    throw new DecodeError(`${TYPE_NAMES[tag]}: expected ${arities.join(" or ")} fields, got ${f.length}`);
  }
  return { type: tag, ...build(f) };
}
