/**
 * Fuzz of envelope decoding: more than 100,000 random and mutated buffers.
 *
 * Oracles:
 * - With checksum "required" and a registry, decoding either throws a DecodeError (any other
 *   exception fails) or returns exactly the original message: header fields, payload bytes and
 *   decoded value all equal the envelope the mutation started from. A mutation that changes the
 *   covered bytes yet decodes would need a CRC32C collision (probability 2^-32 per case, and the
 *   seeds are fixed), so any other successful result is a decoder bug. Mutations that leave the
 *   envelope intact (a flip undone, a byte set to its own value, bytes appended past the end)
 *   must decode to the original.
 * - With checksum "if-present", a successful decode of a random buffer must re-encode to the same
 *   bytes (value-equal payload: padding ignored, NaNs equal whatever their payload bits), so the
 *   decoder never reports a value the bytes do not hold.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  decodeEnvelope,
  encodeEnvelope,
  encodeMessage,
  ENVELOPE_MAGIC,
  EnvelopeFlag,
  type EnvelopeHeader,
  MessageRegistry,
} from "../../src/core/envelope.ts";
import { DecodeError, ErrorCode } from "../../src/core/errors.ts";
import { HlcTimestamp } from "../../src/core/hlc.ts";
import { array, defineMessage, type MessageSchema, struct } from "../../src/core/schema.ts";
import { hex, prng, sameEncodedValue, valueArb } from "../fixtures/schema_gen.ts";

const SEED = 0x5eed_f00d;

const Point = struct({ x: "f32", y: "f32" }, { name: "FzPoint" });
const schemas: MessageSchema[] = [
  defineMessage({
    typeId: 101,
    name: "FzMove",
    fields: { id: "u64", to: Point, path: array(Point, 2), fast: "bool", tag: "u8" },
  }),
  defineMessage({ typeId: 102, name: "FzPing", fields: { seq: "u32" } }),
  defineMessage({
    typeId: 103,
    name: "FzMixed",
    fields: {
      a: "i8",
      b: "u16",
      c: "f64",
      d: array("bool", 5),
      e: "i64",
      f: array(struct({ q: "u8", r: "f32" }, { name: "FzQR" }), 2),
    },
  }),
  defineMessage({ typeId: 104, name: "FzBig", fields: { data: array("u32", 64), flag: "bool" } }),
];
const registry = new MessageRegistry(schemas);

interface Base {
  schema: MessageSchema;
  value: unknown;
  bytes: Uint8Array;
  header: EnvelopeHeader;
}

function makeBases(perSchema: number, checksum: boolean): Base[] {
  const rnd = prng(SEED);
  const u32 = () => Math.floor(rnd() * 2 ** 32);
  const out: Base[] = [];
  schemas.forEach((schema, si) => {
    const values = fc.sample(valueArb(schema), { seed: SEED + si, numRuns: perSchema });
    for (const value of values) {
      const bytes = encodeMessage(schema.of(value as never), {
        flags: Math.floor(rnd() * 8) << 1,
        messageId: (BigInt(u32()) << 32n) | BigInt(u32()),
        correlationId: rnd() < 0.5 ? 0n : BigInt(u32()),
        sourceKernel: u32(),
        destKernel: u32(),
        timestamp: new HlcTimestamp(Math.floor(rnd() * 2 ** 48), u32() & 0xffff, u32()),
        priority: Math.floor(rnd() * 4),
      }, { checksum });
      out.push({ schema, value, bytes, header: decodeEnvelope(bytes).header });
    }
  });
  return out;
}

const HEADER_FIELDS: [offset: number, size: number][] = [
  [0, 4],
  [4, 2],
  [6, 2],
  [8, 4],
  [12, 4],
  [16, 8],
  [24, 8],
  [32, 4],
  [36, 4],
  [40, 12],
  [52, 4],
  [56, 4],
  [60, 4],
];

/** Applies 1 to 3 random mutations; the kinds are the brief's list. */
function mutate(src: Uint8Array, others: Base[], rnd: () => number): Uint8Array {
  let b = src.slice();
  const n = 1 + Math.floor(rnd() * 3);
  for (let k = 0; k < n; k++) {
    const pick = Math.floor(rnd() * 8);
    const pos = Math.floor(rnd() * Math.max(1, b.length));
    switch (pick) {
      case 0: // bit flip
      case 1:
        if (b.length) b[pos] ^= 1 << Math.floor(rnd() * 8);
        break;
      case 2: // byte set
        if (b.length) b[pos] = Math.floor(rnd() * 256);
        break;
      case 3: // truncation
        b = b.slice(0, Math.floor(rnd() * b.length));
        break;
      case 4: { // extension
        const ext = new Uint8Array(b.length + 1 + Math.floor(rnd() * 32));
        ext.set(b);
        for (let i = b.length; i < ext.length; i++) ext[i] = Math.floor(rnd() * 256);
        b = ext;
        break;
      }
      case 5: { // header-field splice from another valid envelope
        const [off, size] = HEADER_FIELDS[Math.floor(rnd() * HEADER_FIELDS.length)];
        const other = others[Math.floor(rnd() * others.length)].bytes;
        if (b.length >= off + size) b.set(other.subarray(off, off + size), off);
        break;
      }
      case 6: { // header field set to a boundary value
        const [off, size] = HEADER_FIELDS[Math.floor(rnd() * HEADER_FIELDS.length)];
        const fill = [0, 0xff, 1][Math.floor(rnd() * 3)];
        if (b.length >= off + size) {
          b.fill(fill === 1 ? 0 : fill, off, off + size);
          if (fill === 1) b[off] = 1;
        }
        break;
      }
      case 7: { // payload splice: a range of another envelope at the same place
        const other = others[Math.floor(rnd() * others.length)].bytes;
        const start = 64 + Math.floor(rnd() * Math.max(1, Math.min(b.length, other.length) - 64));
        const len = 1 + Math.floor(rnd() * 16);
        if (start + len <= Math.min(b.length, other.length)) {
          b.set(other.subarray(start, start + len), start);
        }
        break;
      }
    }
  }
  return b;
}

const codesSeen = new Map<string, number>();
let total = 0;

/** Decodes; returns the result or undefined after a DecodeError; fails on anything else. */
function tryDecode(
  bytes: Uint8Array,
  opts: Parameters<typeof decodeEnvelope>[1],
  context: string,
): ReturnType<typeof decodeEnvelope> | undefined {
  total++;
  try {
    return decodeEnvelope(bytes, opts);
  } catch (e) {
    if (!(e instanceof DecodeError)) {
      assert.fail(`${context}: non-DecodeError ${e} for bytes ${hex(bytes)}`);
    }
    assert.ok(
      e.offset >= 0 && e.offset <= bytes.length,
      `${context}: offset ${e.offset} out of range`,
    );
    codesSeen.set(e.code, (codesSeen.get(e.code) ?? 0) + 1);
    return undefined;
  }
}

function outcome(bytes: Uint8Array, opts: Parameters<typeof decodeEnvelope>[1]): string {
  try {
    const d = decodeEnvelope(bytes, opts);
    return `ok ${d.byteLength} ${hex(d.payload)} ${
      JSON.stringify(d.message, (_, v) => typeof v === "bigint" ? `${v}n` : v)
    }`;
  } catch (e) {
    return e instanceof DecodeError ? `${e.code}@${e.offset}` : `other ${e}`;
  }
}

/** The same bytes inside a larger buffer at `shift` must decode exactly alike (offsets too). */
function sameAtOffset(
  bytes: Uint8Array,
  opts: Parameters<typeof decodeEnvelope>[1],
  shift: number,
): void {
  const host = new Uint8Array(bytes.length + shift + 5).fill(0xa5);
  host.set(bytes, shift);
  const moved = host.subarray(shift, shift + bytes.length);
  total++;
  assert.equal(outcome(moved, opts), outcome(bytes, opts), `shifted by ${shift}: ${hex(bytes)}`);
}

function headerEqual(a: EnvelopeHeader, b: EnvelopeHeader): boolean {
  return a.version === b.version && a.flags === b.flags && a.typeId === b.typeId &&
    a.payloadLength === b.payloadLength && a.messageId === b.messageId &&
    a.correlationId === b.correlationId && a.sourceKernel === b.sourceKernel &&
    a.destKernel === b.destKernel && a.timestamp.equals(b.timestamp) &&
    a.priority === b.priority && a.checksum === b.checksum;
}

describe("envelope fuzz", () => {
  it("mutated valid envelopes (checksum required): DecodeError or exactly the original", () => {
    const bases = makeBases(25, true);
    const rnd = prng(SEED ^ 0x1234);
    let accepted = 0;
    const perBase = 800;
    for (let bi = 0; bi < bases.length; bi++) {
      const base = bases[bi];
      for (let k = 0; k < perBase; k++) {
        const m = mutate(base.bytes, bases, rnd);
        const d = tryDecode(m, { registry, checksum: "required" }, `base ${bi} mutation ${k}`);
        if (k % 8 === 0) sameAtOffset(m, { registry, checksum: "required" }, 1 + (k % 13));
        if (d === undefined) continue;
        accepted++;
        const ctx = `base ${bi} mutation ${k} (${hex(m)})`;
        assert.ok(headerEqual(d.header, base.header), `${ctx}: header changed silently`);
        assert.equal(d.schema, base.schema, ctx);
        assert.deepEqual(d.payload, base.bytes.subarray(64), ctx);
        assert.deepEqual(d.message, base.value, ctx);
      }
    }
    // Some mutations keep the envelope intact (extensions, undone flips): the success path ran.
    assert.ok(accepted > 100, `only ${accepted} intact mutations decoded`);
  });

  it("random buffers (checksum required): only DecodeErrors", () => {
    const rnd = prng(SEED ^ 0x5678);
    for (let k = 0; k < 10_000; k++) {
      const b = new Uint8Array(Math.floor(rnd() * 200));
      for (let i = 0; i < b.length; i++) b[i] = Math.floor(rnd() * 256);
      // Half of them get a valid magic and version so decoding reaches the later checks.
      if (k % 2 === 0 && b.length >= 8) {
        new DataView(b.buffer).setUint32(0, ENVELOPE_MAGIC, true);
        b[4] = 1;
        b[5] = 0;
      }
      const d = tryDecode(b, { registry, checksum: "required" }, `random ${k}`);
      assert.equal(d, undefined, `random buffer ${hex(b)} decoded`);
    }
  });

  it("plausible random envelopes (checksum if-present): successes re-encode to the same bytes", () => {
    const rnd = prng(SEED ^ 0x9abc);
    let accepted = 0;
    let acceptedTyped = 0;
    for (let k = 0; k < 20_000; k++) {
      const schema = schemas[k % schemas.length];
      const len = rnd() < 0.9 ? schema.size : Math.floor(rnd() * 300);
      const b = new Uint8Array(64 + Math.max(0, len) + (rnd() < 0.2 ? 8 : 0));
      for (let i = 0; i < b.length; i++) {
        // Bias payload bytes to 0/1 so bool fields often hold valid values.
        b[i] = rnd() < 0.5 ? Math.floor(rnd() * 2) : Math.floor(rnd() * 256);
      }
      const dv = new DataView(b.buffer);
      dv.setUint32(0, rnd() < 0.95 ? ENVELOPE_MAGIC : Math.floor(rnd() * 2 ** 32), true);
      dv.setUint16(4, rnd() < 0.95 ? 1 : 2, true);
      dv.setUint16(6, rnd() < 0.9 ? Math.floor(rnd() * 16) & ~1 : Math.floor(rnd() * 65536), true);
      dv.setUint32(8, rnd() < 0.9 ? schema.typeId : Math.floor(rnd() * 200), true);
      dv.setUint32(12, len, true);
      dv.setUint32(52, rnd() < 0.9 ? Math.floor(rnd() * 256) : Math.floor(rnd() * 1000), true);
      dv.setUint32(56, rnd() < 0.95 ? 0 : Math.floor(rnd() * 2 ** 32), true);
      dv.setUint32(60, rnd() < 0.95 ? 0 : 1, true);

      const raw = tryDecode(b, { checksum: "if-present" }, `plausible ${k}`);
      if (k % 4 === 0) sameAtOffset(b, { registry, checksum: "if-present" }, 1 + (k % 7));
      if (raw !== undefined) {
        accepted++;
        const again = encodeEnvelope(raw.header, raw.payload, {
          checksum: (raw.header.flags & EnvelopeFlag.HasChecksum) !== 0,
        });
        assert.deepEqual(again, b.subarray(0, raw.byteLength), `plausible ${k}: ${hex(b)}`);
      }
      const typed = tryDecode(b, { registry, checksum: "if-present" }, `plausible typed ${k}`);
      if (typed !== undefined) {
        acceptedTyped++;
        const s = typed.schema!;
        const again = encodeEnvelope(typed.header, s.encode(typed.message as never), {
          checksum: (typed.header.flags & EnvelopeFlag.HasChecksum) !== 0,
        });
        assert.deepEqual(again.subarray(0, 64), b.subarray(0, 64), `plausible ${k}: header`);
        const diff = sameEncodedValue(s, again, 64, b, 64);
        assert.equal(diff, undefined, `plausible ${k}: ${s.name}.${diff} differs: ${hex(b)}`);
      }
    }
    assert.ok(accepted > 1000, `only ${accepted} plausible envelopes decoded`);
    assert.ok(acceptedTyped > 500, `only ${acceptedTyped} plausible envelopes decoded typed`);
  });

  it("ran at least 100,000 cases and reached every header check", () => {
    assert.ok(total >= 100_000, `only ${total} cases`);
    for (
      const code of [
        ErrorCode.DecodeTruncated,
        ErrorCode.DecodeBadMagic,
        ErrorCode.DecodeBadVersion,
        ErrorCode.DecodeReserved,
        ErrorCode.DecodePayloadLength,
        ErrorCode.DecodeChecksum,
        ErrorCode.DecodeChecksumMissing,
        ErrorCode.DecodeUnknownType,
        ErrorCode.DecodeInvalidValue,
      ]
    ) {
      assert.ok((codesSeen.get(code) ?? 0) > 0, `fuzz never produced ${code}`);
    }
  });
});
