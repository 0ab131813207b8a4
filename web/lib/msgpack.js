// A small, strict MessagePack encoder/decoder: exactly the subset the DHT wire uses.
//
// Types: nil, boolean, integers (Number when safe, BigInt otherwise or when given a BigInt),
// str (JS string <-> UTF-8), bin (Uint8Array), array. Maps are encoded (for the SIGNAL payload, a
// str-keyed object) and decoded into plain objects. Floats and ext are refused on decode.
// Integers are encoded in the smallest format, as Python's msgpack does, so the bytes match the
// node's encoder byte for byte (tests/vectors).

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder("utf-8", { fatal: true });

export class MsgpackError extends Error {}

class Writer {
  constructor() {
    this.buf = new Uint8Array(256);
    this.view = new DataView(this.buf.buffer);
    this.len = 0;
  }
  ensure(n) {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  u8(v) { this.ensure(1); this.view.setUint8(this.len, v); this.len += 1; }
  u16(v) { this.ensure(2); this.view.setUint16(this.len, v); this.len += 2; }
  u32(v) { this.ensure(4); this.view.setUint32(this.len, v); this.len += 4; }
  u64(v) { this.ensure(8); this.view.setBigUint64(this.len, v); this.len += 8; }
  i64(v) { this.ensure(8); this.view.setBigInt64(this.len, v); this.len += 8; }
  bytes(b) { this.ensure(b.length); this.buf.set(b, this.len); this.len += b.length; }
  result() { return this.buf.slice(0, this.len); }
}

function encodeInt(w, v) {
  // v: BigInt
  if (v >= 0n) {
    if (v < 128n) w.u8(Number(v));
    else if (v < 256n) { w.u8(0xcc); w.u8(Number(v)); }
    else if (v < 65536n) { w.u8(0xcd); w.u16(Number(v)); }
    else if (v < 4294967296n) { w.u8(0xce); w.u32(Number(v)); }
    else if (v < 18446744073709551616n) { w.u8(0xcf); w.u64(v); }
    else throw new MsgpackError("integer too large");
  } else {
    if (v >= -32n) w.u8(Number(v) & 0xff);
    else if (v >= -128n) { w.u8(0xd0); w.u8(Number(v) & 0xff); }
    else if (v >= -32768n) { w.u8(0xd1); w.u16(Number(v) & 0xffff); }
    else if (v >= -2147483648n) { w.u8(0xd2); w.u32(Number(v) >>> 0); }
    else if (v >= -9223372036854775808n) { w.u8(0xd3); w.i64(v); }
    else throw new MsgpackError("integer too small");
  }
}

function encodeLen(w, n, fix, fixMax, c8, c16, c32) {
  if (fix !== null && n <= fixMax) w.u8(fix | n);
  else if (c8 !== null && n < 256) { w.u8(c8); w.u8(n); }
  else if (n < 65536) { w.u8(c16); w.u16(n); }
  else { w.u8(c32); w.u32(n); }
}

function encodeValue(w, v) {
  if (v === null || v === undefined) w.u8(0xc0);
  else if (v === false) w.u8(0xc2);
  else if (v === true) w.u8(0xc3);
  else if (typeof v === "bigint") encodeInt(w, v);
  else if (typeof v === "number") {
    if (!Number.isSafeInteger(v)) throw new MsgpackError("only integers are supported");
    encodeInt(w, BigInt(v));
  } else if (typeof v === "string") {
    const b = textEncoder.encode(v);
    encodeLen(w, b.length, 0xa0, 31, 0xd9, 0xda, 0xdb);
    w.bytes(b);
  } else if (v instanceof Uint8Array) {
    encodeLen(w, v.length, null, 0, 0xc4, 0xc5, 0xc6);
    w.bytes(v);
  } else if (Array.isArray(v)) {
    encodeLen(w, v.length, 0x90, 15, null, 0xdc, 0xdd);
    for (const x of v) encodeValue(w, x);
  } else if (typeof v === "object") {
    const keys = Object.keys(v);
    encodeLen(w, keys.length, 0x80, 15, null, 0xde, 0xdf);
    for (const k of keys) { encodeValue(w, k); encodeValue(w, v[k]); }
  } else {
    throw new MsgpackError(`cannot encode ${typeof v}`);
  }
}

export function pack(value) {
  const w = new Writer();
  encodeValue(w, value);
  return w.result();
}

class Reader {
  constructor(bytes, limits) {
    this.b = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = 0;
    this.limits = limits;
    this.depth = 0;
  }
  need(n) {
    if (this.pos + n > this.b.length) throw new MsgpackError("truncated");
  }
  u8() { this.need(1); return this.view.getUint8(this.pos++); }
  u16() { this.need(2); const v = this.view.getUint16(this.pos); this.pos += 2; return v; }
  u32() { this.need(4); const v = this.view.getUint32(this.pos); this.pos += 4; return v; }
  take(n) {
    this.need(n);
    const out = this.b.slice(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  str(n) {
    if (n > this.limits.maxStr) throw new MsgpackError("string too long");
    try { return textDecoder.decode(this.take(n)); } catch (e) {
      if (e instanceof MsgpackError) throw e;
      throw new MsgpackError("invalid UTF-8");
    }
  }
  bin(n) {
    if (n > this.limits.maxBin) throw new MsgpackError("bin too long");
    return this.take(n);
  }
  array(n) {
    if (n > this.limits.maxArray) throw new MsgpackError("array too long");
    if (++this.depth > 32) throw new MsgpackError("nested too deep");
    const out = new Array(n);
    for (let i = 0; i < n; i++) out[i] = this.value();
    this.depth--;
    return out;
  }
  map(n) {
    if (n > this.limits.maxMap) throw new MsgpackError("map too long");
    if (++this.depth > 32) throw new MsgpackError("nested too deep");
    const out = Object.create(null);
    for (let i = 0; i < n; i++) {
      const k = this.value();
      if (typeof k !== "string") throw new MsgpackError("map keys must be strings");
      out[k] = this.value();
    }
    this.depth--;
    return out;
  }
  uint64() {
    this.need(8);
    const v = this.view.getBigUint64(this.pos);
    this.pos += 8;
    return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }
  int64() {
    this.need(8);
    const v = this.view.getBigInt64(this.pos);
    this.pos += 8;
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  }
  value() {
    const t = this.u8();
    if (t <= 0x7f) return t;
    if (t >= 0xe0) return t - 0x100;
    if ((t & 0xe0) === 0xa0) return this.str(t & 0x1f);
    if ((t & 0xf0) === 0x90) return this.array(t & 0x0f);
    if ((t & 0xf0) === 0x80) return this.map(t & 0x0f);
    switch (t) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return this.bin(this.u8());
      case 0xc5: return this.bin(this.u16());
      case 0xc6: return this.bin(this.u32());
      case 0xcc: return this.u8();
      case 0xcd: return this.u16();
      case 0xce: return this.u32();
      case 0xcf: return this.uint64();
      case 0xd0: { const v = this.u8(); return v >= 0x80 ? v - 0x100 : v; }
      case 0xd1: { const v = this.u16(); return v >= 0x8000 ? v - 0x10000 : v; }
      case 0xd2: { const v = this.u32(); return v | 0; }
      case 0xd3: return this.int64();
      case 0xd9: return this.str(this.u8());
      case 0xda: return this.str(this.u16());
      case 0xdb: return this.str(this.u32());
      case 0xdc: return this.array(this.u16());
      case 0xdd: return this.array(this.u32());
      case 0xde: return this.map(this.u16());
      case 0xdf: return this.map(this.u32());
      default: throw new MsgpackError(`unsupported msgpack type 0x${t.toString(16)}`);
    }
  }
}

const DEFAULT_LIMITS = { maxStr: 1 << 20, maxBin: 1 << 20, maxArray: 1 << 16, maxMap: 1 << 10 };

/** Decode exactly one value; trailing bytes are an error. */
export function unpack(bytes, limits = {}) {
  if (!(bytes instanceof Uint8Array)) bytes = new Uint8Array(bytes);
  const r = new Reader(bytes, { ...DEFAULT_LIMITS, ...limits });
  const v = r.value();
  if (r.pos !== bytes.length) throw new MsgpackError("trailing bytes");
  return v;
}
