/**
 * Encoders and decoders of schema structs.
 *
 * Each struct type gets one encoder and one decoder, compiled once to straight-line JavaScript
 * (`new Function`): nested structs and short arrays are unrolled, every field read or written with
 * one DataView call at a constant offset, every decoded object built as one literal of a fixed
 * shape. That is several times faster than walking the layout per message, and the envelope sits
 * on the hot path of every message. The generated source contains only numbers and field names,
 * which {@linkcode checkIdentifier} restricts to `[A-Za-z][A-Za-z0-9_]*`, so nothing from outside
 * can inject code. Where `new Function` is forbidden (a Content-Security-Policy without
 * `unsafe-eval` throws EvalError), an interpreter of the same layout takes over with identical
 * results.
 *
 * @module
 */

import { DecodeError, ErrorCode, SchemaError, ValidationError } from "./errors.ts";
import type { ArrayType, ByteSource, FieldSpec, ScalarKind, StructType } from "./schema.ts";

/** Writes a value at an offset; throws {@linkcode ValueIssue} for a value that does not fit. */
export type Write = (dv: DataView, off: number, v: unknown) => void;
/** Reads a value at an offset; throws {@linkcode DecodeError} for bytes no value has. */
export type Read = (dv: DataView, off: number) => unknown;

/** The compiled codec of one struct type. */
export interface Codec {
  /** Zeroes the padding and writes `v`; throws {@linkcode SchemaError} naming the field path. */
  write(dv: DataView, off: number, v: unknown): void;
  /** Decodes the struct at `off`. */
  read(dv: DataView, off: number): unknown;
}

/** Thrown inside interpreted writers; collects the path as it unwinds. */
export class ValueIssue {
  /** Path segments, outermost first once unwound: `.pos`, `[2]`, `.x`. */
  readonly path: string[] = [];
  /** What was wrong. */
  readonly message: string;
  /** Creates an issue with its message. */
  constructor(message: string) {
    this.message = message;
  }
}

/** A short description of a JS value for error messages. */
export function show(v: unknown): string {
  if (typeof v === "bigint") return `${v}n`;
  if (typeof v === "string") return JSON.stringify(v.length > 40 ? v.slice(0, 40) + "…" : v);
  if (typeof v === "number" || typeof v === "boolean" || v == null) return String(v);
  return Array.isArray(v) ? `an array of length ${v.length}` : `a ${typeof v}`;
}

function describeIssue(expected: string, v: unknown): string {
  return v === undefined ? "missing field" : `expected ${expected}, got ${show(v)}`;
}

function bad(expected: string, v: unknown): never {
  throw new ValueIssue(describeIssue(expected, v));
}

/** The SchemaError of a value that does not fit `structName` at `path` (`.a[2].b`). */
export function valueError(structName: string, path: string, message: string): SchemaError {
  return new SchemaError(ErrorCode.InvalidValue, `${structName}${path}: ${message}`);
}

const F32_MAX = 3.4028234663852886e38;

/** What each scalar accepts, for error messages. */
const EXPECTED: Record<ScalarKind, string> = {
  u8: "an integer in [0, 255] (u8)",
  i8: "an integer in [-128, 127] (i8)",
  u16: "an integer in [0, 65535] (u16)",
  i16: "an integer in [-32768, 32767] (i16)",
  u32: "an integer in [0, 2^32-1] (u32)",
  i32: "an integer in [-2^31, 2^31-1] (i32)",
  f32: "a number within the f32 range",
  f64: "a number (f64)",
  u64: "a bigint in [0, 2^64-1] (u64)",
  i64: "a bigint in [-2^63, 2^63-1] (i64)",
  bool: "a boolean",
};

/** Per scalar: a JS condition on `x` that is true when x does NOT fit. Shared by both paths. */
const REJECT: Record<ScalarKind, string> = {
  u8: `typeof x !== "number" || (x & 255) !== x`,
  i8: `typeof x !== "number" || (x << 24 >> 24) !== x`,
  u16: `typeof x !== "number" || (x & 65535) !== x`,
  i16: `typeof x !== "number" || (x << 16 >> 16) !== x`,
  u32: `typeof x !== "number" || (x >>> 0) !== x`,
  i32: `typeof x !== "number" || (x | 0) !== x`,
  // Rounding to the nearest f32 is the type's nature; overflowing to infinity is not.
  f32: `typeof x !== "number" || (Math.abs(x) > ${F32_MAX} && Math.abs(x) !== Infinity)`,
  f64: `typeof x !== "number"`,
  u64: `typeof x !== "bigint" || BigInt.asUintN(64, x) !== x`,
  i64: `typeof x !== "bigint" || BigInt.asIntN(64, x) !== x`,
  bool: `typeof x !== "boolean"`,
};

/** Per scalar: the DataView store of `x` at offset expression `o`. */
const STORE: Record<ScalarKind, (o: string) => string> = {
  u8: (o) => `dv.setUint8(${o}, x)`,
  i8: (o) => `dv.setInt8(${o}, x)`,
  u16: (o) => `dv.setUint16(${o}, x, true)`,
  i16: (o) => `dv.setInt16(${o}, x, true)`,
  u32: (o) => `dv.setUint32(${o}, x, true)`,
  i32: (o) => `dv.setInt32(${o}, x, true)`,
  f32: (o) => `dv.setFloat32(${o}, x, true)`,
  f64: (o) => `dv.setFloat64(${o}, x, true)`,
  u64: (o) => `dv.setBigUint64(${o}, x, true)`,
  i64: (o) => `dv.setBigInt64(${o}, x, true)`,
  bool: (o) => `dv.setUint8(${o}, x ? 1 : 0)`,
};

/** Per scalar: the DataView load at offset expression `o`. */
const LOAD: Record<ScalarKind, (o: string) => string> = {
  u8: (o) => `dv.getUint8(${o})`,
  i8: (o) => `dv.getInt8(${o})`,
  u16: (o) => `dv.getUint16(${o}, true)`,
  i16: (o) => `dv.getInt16(${o}, true)`,
  u32: (o) => `dv.getUint32(${o}, true)`,
  i32: (o) => `dv.getInt32(${o}, true)`,
  f32: (o) => `dv.getFloat32(${o}, true)`,
  f64: (o) => `dv.getFloat64(${o}, true)`,
  u64: (o) => `dv.getBigUint64(${o}, true)`,
  i64: (o) => `dv.getBigInt64(${o}, true)`,
  bool: (o) => `rb(dv, ${o})`,
};

/** Reads a bool byte; anything but 0/1 is a DecodeError at the byte's offset. */
export function readBool(dv: DataView, o: number): boolean {
  const b = dv.getUint8(o);
  if (b > 1) {
    // Any other reading would invent a value the sender never wrote.
    throw new DecodeError(ErrorCode.DecodeInvalidValue, o, `bool byte is ${b}, not 0 or 1`);
  }
  return b === 1;
}

function isArrayLike(v: unknown): v is ArrayLike<unknown> {
  return Array.isArray(v) || (ArrayBuffer.isView(v) && !(v instanceof DataView));
}

// ---------------------------------------------------------------------------------------------
// Interpreted scalar access (views use these too)

/** Range-checked scalar writers; throw {@linkcode ValueIssue}. */
export const WRITE: Record<ScalarKind, Write> = {
  u8: (dv, o, v) => {
    if (typeof v !== "number" || (v & 0xff) !== v) bad(EXPECTED.u8, v);
    dv.setUint8(o, v);
  },
  i8: (dv, o, v) => {
    if (typeof v !== "number" || (v << 24) >> 24 !== v) bad(EXPECTED.i8, v);
    dv.setInt8(o, v);
  },
  u16: (dv, o, v) => {
    if (typeof v !== "number" || (v & 0xffff) !== v) bad(EXPECTED.u16, v);
    dv.setUint16(o, v, true);
  },
  i16: (dv, o, v) => {
    if (typeof v !== "number" || (v << 16) >> 16 !== v) bad(EXPECTED.i16, v);
    dv.setInt16(o, v, true);
  },
  u32: (dv, o, v) => {
    if (typeof v !== "number" || v >>> 0 !== v) bad(EXPECTED.u32, v);
    dv.setUint32(o, v, true);
  },
  i32: (dv, o, v) => {
    if (typeof v !== "number" || (v | 0) !== v) bad(EXPECTED.i32, v);
    dv.setInt32(o, v, true);
  },
  f32: (dv, o, v) => {
    if (typeof v !== "number" || (Math.abs(v) > F32_MAX && Math.abs(v) !== Infinity)) {
      bad(EXPECTED.f32, v);
    }
    dv.setFloat32(o, v, true);
  },
  f64: (dv, o, v) => {
    if (typeof v !== "number") bad(EXPECTED.f64, v);
    dv.setFloat64(o, v, true);
  },
  u64: (dv, o, v) => {
    if (typeof v !== "bigint" || BigInt.asUintN(64, v) !== v) bad(EXPECTED.u64, v);
    dv.setBigUint64(o, v, true);
  },
  i64: (dv, o, v) => {
    if (typeof v !== "bigint" || BigInt.asIntN(64, v) !== v) bad(EXPECTED.i64, v);
    dv.setBigInt64(o, v, true);
  },
  bool: (dv, o, v) => {
    if (typeof v !== "boolean") bad(EXPECTED.bool, v);
    dv.setUint8(o, v ? 1 : 0);
  },
};

/** Scalar readers; `bool` throws {@linkcode DecodeError} for bytes other than 0/1. */
export const READ: Record<ScalarKind, Read> = {
  u8: (dv, o) => dv.getUint8(o),
  i8: (dv, o) => dv.getInt8(o),
  u16: (dv, o) => dv.getUint16(o, true),
  i16: (dv, o) => dv.getInt16(o, true),
  u32: (dv, o) => dv.getUint32(o, true),
  i32: (dv, o) => dv.getInt32(o, true),
  f32: (dv, o) => dv.getFloat32(o, true),
  f64: (dv, o) => dv.getFloat64(o, true),
  u64: (dv, o) => dv.getBigUint64(o, true),
  i64: (dv, o) => dv.getBigInt64(o, true),
  bool: readBool,
};

// ---------------------------------------------------------------------------------------------
// Padding

const paddings = new WeakMap<object, number[]>();

/** Padding bytes of `s` (no scalar covers them) as flat (start, length) pairs. */
export function paddingOf(s: StructType): readonly number[] {
  let runs = paddings.get(s);
  if (runs === undefined) {
    const covered = new Uint8Array(s.size);
    for (const leaf of s.leaves) covered.fill(1, leaf.offset, leaf.offset + leaf.size);
    runs = [];
    for (let i = 0; i < s.size; i++) {
      if (covered[i]) continue;
      const start = i;
      while (i < s.size && !covered[i]) i++;
      runs.push(start, i - start);
    }
    paddings.set(s, runs);
  }
  return runs;
}

// ---------------------------------------------------------------------------------------------
// Interpreted codec (fallback where code generation is forbidden)

function isStruct(t: FieldSpec): t is StructType {
  return typeof t === "object" && t.kind === "struct";
}

function writerOf(t: FieldSpec): Write {
  if (typeof t === "string") return WRITE[t];
  return isStruct(t) ? structWriter(t) : arrayWriter(t);
}

function readerOf(t: FieldSpec): Read {
  if (typeof t === "string") return READ[t];
  return isStruct(t) ? structReader(t) : arrayReader(t);
}

function arrayWriter(t: ArrayType): Write {
  const { length: n, stride } = t;
  const ew = writerOf(t.element);
  return (dv, off, v) => {
    if (!isArrayLike(v) || v.length !== n) bad(`an array of length ${n}`, v);
    let i = 0;
    try {
      for (; i < n; i++) ew(dv, off + i * stride, v[i]);
    } catch (e) {
      if (e instanceof ValueIssue) e.path.unshift(`[${i}]`);
      throw e;
    }
  };
}

function arrayReader(t: ArrayType): Read {
  const { length: n, stride } = t;
  const er = readerOf(t.element);
  return (dv, off) => {
    const out: unknown[] = [];
    for (let i = 0; i < n; i++) out.push(er(dv, off + i * stride));
    return out;
  };
}

function structWriter(s: StructType): Write {
  const names = s.fields.map((f) => f.name);
  const offsets = s.fields.map((f) => f.offset);
  const writers = s.fields.map((f) => writerOf(f.type));
  const n = names.length;
  return (dv, off, v) => {
    if (typeof v !== "object" || v === null) bad(`an object with the fields of ${s.name}`, v);
    const obj = v as Record<string, unknown>;
    let k = 0;
    try {
      for (; k < n; k++) writers[k](dv, off + offsets[k], obj[names[k]]);
    } catch (e) {
      if (e instanceof ValueIssue) e.path.unshift(`.${names[k]}`);
      throw e;
    }
  };
}

function structReader(s: StructType): Read {
  const names = s.fields.map((f) => f.name);
  const offsets = s.fields.map((f) => f.offset);
  const readers = s.fields.map((f) => readerOf(f.type));
  const n = names.length;
  return (dv, off) => {
    const out: Record<string, unknown> = {};
    for (let k = 0; k < n; k++) out[names[k]] = readers[k](dv, off + offsets[k]);
    return out;
  };
}

/** The interpreted codec of `s`: walks the layout per call. */
export function interpretedCodec(s: StructType): Codec {
  const write = structWriter(s);
  const pad = paddingOf(s);
  return {
    write(dv, off, v) {
      for (let i = 0; i < pad.length; i += 2) {
        for (let b = off + pad[i], end = b + pad[i + 1]; b < end; b++) dv.setUint8(b, 0);
      }
      try {
        write(dv, off, v);
      } catch (e) {
        if (!(e instanceof ValueIssue)) throw e;
        throw valueError(s.name, e.path.join(""), e.message);
      }
    },
    read: structReader(s),
  };
}

// ---------------------------------------------------------------------------------------------
// Generated codec

/** Arrays up to this length are unrolled; longer ones loop. */
const UNROLL = 16;

/** An offset expression: a runtime part (`o`, `o + i3 * 12`) plus a constant. */
interface Off {
  v: string;
  k: number;
}

function at(off: Off, add = 0): string {
  const k = off.k + add;
  return k === 0 ? off.v : `${off.v} + ${k}`;
}

class Gen {
  helpers: string[] = [];
  #n = 0;
  id(prefix: string): string {
    return `${prefix}${this.#n++}`;
  }
}

function readExpr(g: Gen, t: FieldSpec, off: Off): string {
  if (typeof t === "string") return LOAD[t](at(off));
  if (isStruct(t)) {
    return `{ ${
      t.fields.map((f) => `${f.name}: ${readExpr(g, f.type, { v: off.v, k: off.k + f.offset })}`)
        .join(", ")
    } }`;
  }
  if (t.length <= UNROLL) {
    const items = [];
    for (let i = 0; i < t.length; i++) {
      items.push(readExpr(g, t.element, { v: off.v, k: off.k + i * t.stride }));
    }
    return `[${items.join(", ")}]`;
  }
  const h = g.id("r");
  const el = readExpr(g, t.element, { v: `o + i * ${t.stride}`, k: 0 });
  g.helpers.push(
    `function ${h}(dv, o) { const a = []; for (let i = 0; i < ${t.length}; i++) a.push(${el}); return a; }`,
  );
  return `${h}(dv, ${at(off)})`;
}

/** Path expressions are only evaluated when a value is rejected, so plain concatenation. */
function pathAdd(path: string, segment: string): string {
  return `${path} + ${JSON.stringify(segment)}`;
}

function writeStmts(
  g: Gen,
  t: FieldSpec,
  src: string,
  off: Off,
  path: string,
  out: string[],
): void {
  if (typeof t === "string") {
    out.push(
      `x = ${src};`,
      `if (${REJECT[t]}) fail(${path}, ${JSON.stringify(EXPECTED[t])}, x);`,
      `${STORE[t](at(off))};`,
    );
    return;
  }
  if (isStruct(t)) {
    const v = g.id("s");
    out.push(
      `const ${v} = ${src};`,
      `if (typeof ${v} !== "object" || ${v} === null) ` +
        `fail(${path}, ${JSON.stringify(`an object with the fields of ${t.name}`)}, ${v});`,
    );
    for (const f of t.fields) {
      writeStmts(
        g,
        f.type,
        `${v}.${f.name}`,
        { v: off.v, k: off.k + f.offset },
        pathAdd(path, `.${f.name}`),
        out,
      );
    }
    return;
  }
  const a = g.id("a");
  out.push(
    `const ${a} = ${src};`,
    `if (!isArr(${a}) || ${a}.length !== ${t.length}) ` +
      `fail(${path}, ${JSON.stringify(`an array of length ${t.length}`)}, ${a});`,
  );
  if (t.length <= UNROLL) {
    for (let i = 0; i < t.length; i++) {
      writeStmts(
        g,
        t.element,
        `${a}[${i}]`,
        { v: off.v, k: off.k + i * t.stride },
        pathAdd(path, `[${i}]`),
        out,
      );
    }
    return;
  }
  const i = g.id("i");
  const body: string[] = [];
  writeStmts(
    g,
    t.element,
    `${a}[${i}]`,
    { v: `${at(off)} + ${i} * ${t.stride}`, k: 0 },
    `${path} + "[" + ${i} + "]"`,
    body,
  );
  out.push(`for (let ${i} = 0; ${i} < ${t.length}; ${i}++) {`, ...body, `}`);
}

/** Zeroes padding with the widest stores the alignment allows. */
function padStmts(s: StructType): string[] {
  const out: string[] = [];
  const pad = paddingOf(s);
  for (let p = 0; p < pad.length; p += 2) {
    let b = pad[p];
    const end = b + pad[p + 1];
    while (b < end) {
      if (b % 4 === 0 && end - b >= 4) {
        out.push(`dv.setUint32(o + ${b}, 0);`);
        b += 4;
      } else if (b % 2 === 0 && end - b >= 2) {
        out.push(`dv.setUint16(o + ${b}, 0);`);
        b += 2;
      } else {
        out.push(`dv.setUint8(o + ${b}, 0);`);
        b += 1;
      }
    }
  }
  // Large padded arrays would make a huge function; the interpreted loop is fine for those.
  return out.length <= 64 ? out : [`zeroPad(dv, o);`];
}

/** The generated codec of `s`, or undefined where `new Function` is forbidden. */
export function generatedCodec(s: StructType): Codec | undefined {
  const g = new Gen();
  const read = readExpr(g, s, { v: "o", k: 0 });
  const body: string[] = [];
  writeStmts(g, s, "v", { v: "o", k: 0 }, `""`, body);
  const source = `"use strict";
${g.helpers.join("\n")}
function read(dv, o) { return ${read}; }
function write(dv, o, v) {
  let x;
  ${padStmts(s).join("\n  ")}
  ${body.join("\n  ")}
}
return { read, write };`;
  let factory: (...args: unknown[]) => Codec;
  try {
    factory = new Function("rb", "fail", "isArr", "zeroPad", source) as typeof factory;
  } catch (e) {
    // Only a forbidden eval falls back; a SyntaxError here would be a generator bug to surface.
    if (!(e instanceof EvalError)) throw e;
    return undefined;
  }
  const pad = paddingOf(s);
  const zeroPad = (dv: DataView, o: number): void => {
    for (let i = 0; i < pad.length; i += 2) {
      for (let b = o + pad[i], end = b + pad[i + 1]; b < end; b++) dv.setUint8(b, 0);
    }
  };
  const fail = (path: string, expected: string, got: unknown): never => {
    throw valueError(s.name, path, describeIssue(expected, got));
  };
  return factory(readBool, fail, isArrayLike, zeroPad);
}

const codecs = new WeakMap<object, Codec>();

/** The codec of `s`, compiled on first use. */
export function codecOf(s: StructType): Codec {
  let c = codecs.get(s);
  if (c === undefined) {
    c = generatedCodec(s) ?? interpretedCodec(s);
    codecs.set(s, c);
  }
  return c;
}

/** A DataView spanning exactly the given bytes (offsets count from their start). */
export function toDataView(b: ByteSource): DataView {
  if (b instanceof DataView) return b;
  if (ArrayBuffer.isView(b)) return new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (
    b instanceof ArrayBuffer ||
    (typeof SharedArrayBuffer !== "undefined" && b instanceof SharedArrayBuffer)
  ) {
    return new DataView(b);
  }
  throw new ValidationError(
    ErrorCode.InvalidArgument,
    `expected a Uint8Array, DataView, ArrayBuffer or SharedArrayBuffer, got ${show(b)}`,
  );
}
