import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { crc32c, crc32cRange, crc32cZeros } from "../../src/core/checksum.ts";
import {
  decodeEnvelope,
  decodeMessage,
  encodeEnvelope,
  encodeMessage,
  ENVELOPE_HEADER_BYTES,
  ENVELOPE_MAGIC,
  EnvelopeFlag,
  envelopeHeaderStruct,
  type EnvelopeInit,
  EnvelopeOffset,
  envelopeSize,
  MessageRegistry,
  Priority,
  writeEnvelope,
  writeMessage,
} from "../../src/core/envelope.ts";
import { DecodeError, ErrorCode, SchemaError, ValidationError } from "../../src/core/errors.ts";
import { HlcTimestamp } from "../../src/core/hlc.ts";
import { array, defineMessage, struct } from "../../src/core/schema.ts";

/** Bit-by-bit CRC32C: the reference the table-driven version must agree with. */
function crcReference(bytes: Uint8Array, seed = 0): number {
  let c = ~seed;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return ~c >>> 0;
}

describe("crc32c", () => {
  it("matches the standard check values", () => {
    const enc = new TextEncoder();
    assert.equal(crc32c(enc.encode("123456789")), 0xe3069283);
    assert.equal(crc32c(new Uint8Array(0)), 0);
    // RFC 3720 (iSCSI) B.4 vectors.
    assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa);
    assert.equal(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
    assert.equal(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i)), 0x46dd794e);
    assert.equal(crc32c(Uint8Array.from({ length: 32 }, (_, i) => 31 - i)), 0x113fdb5c);
  });

  it("property: agrees with the bitwise reference and chains over splits", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(), fc.nat(), (bytes, a, b) => {
        const whole = crc32c(bytes);
        assert.equal(whole, crcReference(bytes));
        const cut = a % (bytes.length + 1);
        assert.equal(crc32c(bytes.subarray(cut), crc32c(bytes.subarray(0, cut))), whole);
        const end = cut + (b % (bytes.length - cut + 1));
        assert.equal(crc32cRange(bytes, cut, end), crcReference(bytes.subarray(cut, end)));
      }),
      { seed: 3, numRuns: 500 },
    );
  });

  it("crc32cZeros continues over zero bytes", () => {
    const seed = crc32c(new Uint8Array([1, 2, 3]));
    for (const n of [0, 1, 4, 9]) {
      assert.equal(crc32cZeros(seed, n), crc32c(new Uint8Array(n), seed));
    }
  });
});

const Point = struct({ x: "f32", y: "f32" }, { name: "Point" });
const Move = defineMessage({
  typeId: 21,
  name: "Move",
  fields: { id: "u64", to: Point, path: array(Point, 2), fast: "bool", tag: "u8" },
});
const Ping = defineMessage({ typeId: 22, name: "Ping", fields: { seq: "u32" } });
const move = {
  id: 99n,
  to: { x: 1, y: 2 },
  path: [{ x: 3, y: 4 }, { x: 5, y: 6 }],
  fast: true,
  tag: 7,
};
const registry = new MessageRegistry([Move, Ping]);
const fullInit: EnvelopeInit = {
  typeId: 21,
  flags: EnvelopeFlag.Request,
  messageId: 0xfedc_ba98_7654_3210n,
  correlationId: 0x0123_4567_89ab_cdefn,
  sourceKernel: 0xdead_beef,
  destKernel: 17,
  timestamp: new HlcTimestamp(1_700_000_000_123, 0xfffe, 0xcafe_f00d),
  priority: Priority.Critical,
};

describe("envelope layout", () => {
  it("the header struct has exactly the documented offsets", () => {
    assert.equal(envelopeHeaderStruct.size, ENVELOPE_HEADER_BYTES);
    assert.equal(envelopeHeaderStruct.size, 64);
    assert.equal(envelopeHeaderStruct.align, 8);
    const at = Object.fromEntries(envelopeHeaderStruct.fields.map((f) => [f.name, f.offset]));
    assert.deepEqual(at, {
      magic: 0,
      version: 4,
      flags: 6,
      typeId: 8,
      payloadLength: 12,
      messageId: 16,
      correlationId: 24,
      sourceKernel: 32,
      destKernel: 36,
      timestampLo: 40,
      timestampHi: 44,
      timestampNode: 48,
      priority: 52,
      checksum: 56,
      reserved: 60,
    });
    const O = EnvelopeOffset;
    assert.deepEqual(
      [O.magic, O.version, O.flags, O.typeId, O.payloadLength, O.messageId, O.correlationId],
      [at.magic, at.version, at.flags, at.typeId, at.payloadLength, at.messageId, at.correlationId],
    );
    assert.deepEqual(
      [O.sourceKernel, O.destKernel, O.timestamp, O.priority, O.checksum, O.reserved, O.payload],
      [at.sourceKernel, at.destKernel, at.timestampLo, at.priority, at.checksum, at.reserved, 64],
    );
  });

  it("writes every header field at its documented offset", () => {
    const payload = Move.encode(move);
    const bytes = encodeEnvelope(fullInit, payload, { checksum: true });
    assert.equal(bytes.length, envelopeSize(payload.length));
    assert.equal(new TextDecoder().decode(bytes.subarray(0, 4)), "RKNL");
    const h = envelopeHeaderStruct.decode(bytes);
    const [lo, hi] = fullInit.timestamp!.toWords();
    assert.deepEqual(h, {
      magic: ENVELOPE_MAGIC,
      version: 1,
      flags: EnvelopeFlag.Request | EnvelopeFlag.HasChecksum,
      typeId: 21,
      payloadLength: payload.length,
      messageId: fullInit.messageId,
      correlationId: fullInit.correlationId,
      sourceKernel: 0xdead_beef,
      destKernel: 17,
      timestampLo: lo,
      timestampHi: hi,
      timestampNode: 0xcafe_f00d,
      priority: 3,
      checksum: h.checksum,
      reserved: 0,
    });
    // The checksum is CRC32C of the header with the checksum field zeroed, then the payload.
    const copy = bytes.slice();
    copy.fill(0, 56, 60);
    assert.equal(h.checksum, crcReference(copy));
    assert.deepEqual(bytes.subarray(64), payload);
  });
});

describe("envelope encode/decode", () => {
  it("round-trips every header field, with and without checksum", () => {
    for (const checksum of [true, false]) {
      const bytes = encodeMessage(Move.of(move), fullInit, { checksum });
      const d = decodeEnvelope(bytes, { registry });
      assert.equal(d.header.version, 1);
      assert.equal(
        d.header.flags,
        EnvelopeFlag.Request | (checksum ? EnvelopeFlag.HasChecksum : 0),
      );
      assert.equal(d.header.typeId, 21);
      assert.equal(d.header.messageId, fullInit.messageId);
      assert.equal(d.header.correlationId, fullInit.correlationId);
      assert.equal(d.header.sourceKernel, fullInit.sourceKernel);
      assert.equal(d.header.destKernel, fullInit.destKernel);
      assert.ok(d.header.timestamp.equals(fullInit.timestamp!));
      assert.equal(d.header.priority, 3);
      assert.equal(d.header.checksum === 0, !checksum);
      assert.equal(d.schema, Move);
      assert.deepEqual(d.message, move);
      assert.equal(d.byteLength, 64 + Move.size);
      // Payload is a subarray of the input, not a copy.
      assert.equal(d.payload.buffer, bytes.buffer);
      assert.equal(d.payload.byteOffset, bytes.byteOffset + 64);
    }
  });

  it("defaults: no flags, ids 0, node-0 zero timestamp, normal priority, no checksum", () => {
    const d = decodeEnvelope(encodeEnvelope({ typeId: 5 }, new Uint8Array([1, 2, 3])));
    assert.deepEqual(
      { ...d.header, timestamp: d.header.timestamp.toString() },
      {
        version: 1,
        flags: 0,
        typeId: 5,
        payloadLength: 3,
        messageId: 0n,
        correlationId: 0n,
        sourceKernel: 0,
        destKernel: 0,
        timestamp: "0.0@0",
        priority: Priority.Normal,
        checksum: 0,
      },
    );
    assert.deepEqual([...d.payload], [1, 2, 3]);
    assert.equal(d.message, undefined);
  });

  it("HasChecksum in flags turns the checksum on; checksum:false clears it", () => {
    const on = encodeEnvelope({ typeId: 5, flags: EnvelopeFlag.HasChecksum }, new Uint8Array(4));
    assert.notEqual(decodeEnvelope(on, { checksum: "required" }).header.checksum, 0);
    const off = encodeEnvelope({ typeId: 5, flags: EnvelopeFlag.HasChecksum }, new Uint8Array(4), {
      checksum: false,
    });
    assert.equal(decodeEnvelope(off).header.flags & EnvelopeFlag.HasChecksum, 0);
  });

  it("writes at an offset into a larger buffer; trailing bytes are ignored on decode", () => {
    const slot = new Uint8Array(512).fill(0xcc);
    const n = writeMessage(slot, 128, Move.of(move), { messageId: 3n }, { checksum: true });
    assert.equal(n, 64 + Move.size);
    assert.deepEqual([...slot.subarray(0, 128)], new Array(128).fill(0xcc));
    const d = decodeEnvelope(slot.subarray(128), { registry, checksum: "required" });
    assert.deepEqual(d.message, move);
    assert.equal(d.byteLength, n);
    const m = writeEnvelope(slot, 8, { typeId: 22 }, Ping.encode({ seq: 9 }));
    assert.equal(m, 68);
    assert.deepEqual(decodeMessage(slot.subarray(8), Ping).value, { seq: 9 });
  });

  it("decodes from a subarray at any byte offset; error offsets count from the subarray", () => {
    const host = new Uint8Array(300);
    const at = 37;
    const n = writeMessage(host, at, Move.of(move), fullInit, { checksum: true });
    const view = host.subarray(at, at + n);
    const d = decodeEnvelope(view, { registry, checksum: "required" });
    assert.deepEqual(d.message, move);
    assert.equal(d.payload.byteOffset, at + 64);
    const plainHost = new Uint8Array(300);
    writeMessage(plainHost, at, Move.of(move), fullInit);
    const boolAt = 64 + Move.fields.find((f) => f.name === "fast")!.offset;
    plainHost[at + boolAt] = 5;
    assert.throws(
      () => decodeEnvelope(plainHost.subarray(at), { registry }),
      (e: unknown) =>
        e instanceof DecodeError && e.offset === boolAt && !e.message.includes(`${at + boolAt}`),
    );
    plainHost[at + 4] = 9;
    assert.throws(
      () => decodeEnvelope(plainHost.subarray(at), { registry }),
      (e: unknown) =>
        e instanceof DecodeError && e.code === ErrorCode.DecodeBadVersion && e.offset === 4,
    );
  });

  it("writeMessage equals encodeEnvelope of the encoded payload", () => {
    const a = encodeMessage(Move.of(move), fullInit, { checksum: true });
    const b = encodeEnvelope(fullInit, Move.encode(move), { checksum: true });
    assert.deepEqual(a, b);
  });

  it("decodeMessage checks the type against a schema or registry", () => {
    const bytes = encodeMessage(Ping.of({ seq: 1 }), { priority: 0 });
    const viaSchema = decodeMessage(bytes, Ping);
    const seq: number = viaSchema.value.seq;
    assert.equal(seq, 1);
    assert.equal(decodeMessage(bytes, registry).schema, Ping);
    assert.throws(
      () => decodeMessage(bytes, Move),
      (e: unknown) =>
        e instanceof DecodeError && e.code === ErrorCode.DecodeUnknownType && e.offset === 8,
    );
  });

  it("property: any valid header round-trips and re-encodes to the same bytes", () => {
    const initArb = fc.record({
      typeId: fc.integer({ min: 1, max: 0xffff_ffff }),
      flags: fc.integer({ min: 0, max: 15 }),
      messageId: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
      correlationId: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
      sourceKernel: fc.integer({ min: 0, max: 0xffff_ffff }),
      destKernel: fc.integer({ min: 0, max: 0xffff_ffff }),
      timestamp: fc.tuple(
        fc.integer({ min: 0, max: 2 ** 48 - 1 }),
        fc.integer({ min: 0, max: 0xffff }),
        fc.integer({ min: 0, max: 0xffff_ffff }),
      ).map(([p, l, n]) => new HlcTimestamp(p, l, n)),
      priority: fc.integer({ min: 0, max: 255 }),
    });
    fc.assert(
      fc.property(
        initArb,
        fc.uint8Array({ maxLength: 100 }),
        fc.boolean(),
        (init, payload, sum) => {
          const bytes = encodeEnvelope(init, payload, { checksum: sum });
          const d = decodeEnvelope(bytes, { checksum: sum ? "required" : "if-present" });
          assert.deepEqual([...d.payload], [...payload]);
          const again = encodeEnvelope(d.header, d.payload, {
            checksum: (d.header.flags & EnvelopeFlag.HasChecksum) !== 0,
          });
          assert.deepEqual(again, bytes);
        },
      ),
      { seed: 11, numRuns: 300 },
    );
  });
});

describe("envelope encode errors", () => {
  const payload = new Uint8Array(4);
  const bad: [string, EnvelopeInit][] = [
    ["typeId 0", { typeId: 0 }],
    ["typeId 2^32", { typeId: 2 ** 32 }],
    ["reserved flag bit", { typeId: 1, flags: 0x10 }],
    ["fractional flags", { typeId: 1, flags: 1.5 }],
    ["priority 256", { typeId: 1, priority: 256 }],
    ["negative priority", { typeId: 1, priority: -1 }],
    ["messageId -1n", { typeId: 1, messageId: -1n }],
    ["messageId 2^64", { typeId: 1, messageId: 1n << 64n }],
    ["correlationId as number", { typeId: 1, correlationId: 1 as unknown as bigint }],
    ["sourceKernel 1.5", { typeId: 1, sourceKernel: 1.5 }],
    ["destKernel -1", { typeId: 1, destKernel: -1 }],
    ["timestamp not an HlcTimestamp", { typeId: 1, timestamp: {} as HlcTimestamp }],
  ];
  for (const [name, init] of bad) {
    it(`rejects ${name} without writing`, () => {
      const target = new Uint8Array(68).fill(9);
      assert.throws(
        () => writeEnvelope(target, 0, init, payload),
        (e: unknown) => e instanceof ValidationError && e.code === ErrorCode.InvalidArgument,
      );
      assert.ok(target.every((b) => b === 9));
    });
  }

  it("rejects a target too small as MessageTooLarge", () => {
    assert.throws(
      () => writeEnvelope(new Uint8Array(67), 0, { typeId: 1 }, payload),
      (e: unknown) => e instanceof ValidationError && e.code === ErrorCode.MessageTooLarge,
    );
    assert.throws(
      () => writeMessage(new Uint8Array(100), 40, Move.of(move)),
      (e: unknown) => e instanceof ValidationError && e.code === ErrorCode.MessageTooLarge,
    );
  });

  it("rejects a payload value that does not fit its schema", () => {
    assert.throws(
      () => encodeMessage(Ping.of({ seq: -1 })),
      (e: unknown) => e instanceof SchemaError && e.code === ErrorCode.InvalidValue,
    );
  });
});

describe("message registry", () => {
  it("looks schemas up by typeId", () => {
    assert.equal(registry.get(21), Move);
    assert.equal(registry.get(23), undefined);
    assert.ok(registry.has(22));
    assert.equal(registry.size, 2);
    assert.deepEqual([...registry], [Move, Ping]);
  });

  it("rejects a different schema under a taken typeId, accepts the same one again", () => {
    const r = new MessageRegistry([Ping]);
    r.register(Ping);
    const Other = defineMessage({ typeId: 22, name: "Other", fields: { seq: "u32" } });
    assert.throws(() => r.register(Other), (e: unknown) => {
      assert.ok(e instanceof SchemaError);
      assert.equal(e.code, ErrorCode.DuplicateType);
      assert.match(e.message, /typeId 22.*Ping.*Other/);
      return true;
    });
    assert.throws(() => new MessageRegistry([Ping, Other]), SchemaError);
  });
});

/** Recomputes the checksum of an envelope (if it has one), independently of the library. */
function reseal(bytes: Uint8Array): Uint8Array {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dv.getUint16(6, true) & 1) {
    const len = Math.min(dv.getUint32(12, true), bytes.length - 64);
    const copy = bytes.slice(0, 64 + len);
    copy.fill(0, 56, 60);
    dv.setUint32(56, crcReference(copy), true);
  }
  return bytes;
}

describe("envelope decode errors", () => {
  const sealed = (): Uint8Array => encodeMessage(Move.of(move), fullInit, { checksum: true });
  const plain = (): Uint8Array => encodeMessage(Move.of(move), fullInit, { checksum: false });
  const set32 = (b: Uint8Array, off: number, v: number): Uint8Array => {
    new DataView(b.buffer, b.byteOffset).setUint32(off, v, true);
    return b;
  };
  const set16 = (b: Uint8Array, off: number, v: number): Uint8Array => {
    new DataView(b.buffer, b.byteOffset).setUint16(off, v, true);
    return b;
  };
  const boolAt = 64 + Move.fields.find((f) => f.name === "fast")!.offset;
  const rows: {
    name: string;
    bytes: () => Uint8Array;
    code: ErrorCode;
    offset: number;
    opts?: Parameters<typeof decodeEnvelope>[1];
  }[] = [
    {
      name: "empty buffer",
      bytes: () => new Uint8Array(0),
      code: ErrorCode.DecodeTruncated,
      offset: 0,
    },
    {
      name: "63-byte header",
      bytes: () => sealed().subarray(0, 63),
      code: ErrorCode.DecodeTruncated,
      offset: 63,
    },
    {
      name: "bad magic",
      bytes: () => reseal(set32(sealed(), 0, 0x4c4e4b53)),
      code: ErrorCode.DecodeBadMagic,
      offset: 0,
    },
    {
      name: "version 2",
      bytes: () => reseal(set16(sealed(), 4, 2)),
      code: ErrorCode.DecodeBadVersion,
      offset: 4,
    },
    {
      name: "version 0",
      bytes: () => reseal(set16(plain(), 4, 0)),
      code: ErrorCode.DecodeBadVersion,
      offset: 4,
    },
    {
      name: "reserved flag bit 4",
      bytes: () => reseal(set16(sealed(), 6, 0x13)),
      code: ErrorCode.DecodeReserved,
      offset: 6,
    },
    {
      name: "reserved flag bit 15",
      bytes: () => reseal(set16(plain(), 6, 0x8002)),
      code: ErrorCode.DecodeReserved,
      offset: 6,
    },
    {
      name: "reserved word",
      bytes: () => reseal(set32(sealed(), 60, 1)),
      code: ErrorCode.DecodeReserved,
      offset: 60,
    },
    {
      name: "checksum field set without HasChecksum",
      bytes: () => set32(plain(), 56, 1),
      code: ErrorCode.DecodeReserved,
      offset: 56,
    },
    {
      name: "payload length past the end",
      bytes: () => reseal(set32(sealed(), 12, Move.size + 1)),
      code: ErrorCode.DecodePayloadLength,
      offset: 12,
    },
    {
      name: "payload length 2^32-1",
      bytes: () => set32(plain(), 12, 0xffff_ffff),
      code: ErrorCode.DecodePayloadLength,
      offset: 12,
    },
    {
      name: "payload length not the schema's size",
      bytes: () => encodeEnvelope(fullInit, new Uint8Array(Move.size - 4), { checksum: true }),
      code: ErrorCode.DecodePayloadLength,
      offset: 12,
      opts: { registry },
    },
    {
      name: "payload shorter than declared, in a longer buffer",
      bytes: () => {
        const b = new Uint8Array(200);
        writeEnvelope(b, 0, fullInit, new Uint8Array(Move.size + 8), { checksum: true });
        return b;
      },
      code: ErrorCode.DecodePayloadLength,
      offset: 12,
      opts: { registry },
    },
    {
      name: "checksum mismatch in the payload",
      bytes: () => {
        const b = sealed();
        b[70] ^= 1;
        return b;
      },
      code: ErrorCode.DecodeChecksum,
      offset: 56,
    },
    {
      name: "checksum mismatch in the header",
      bytes: () => {
        const b = sealed();
        b[33] ^= 0x80;
        return b;
      },
      code: ErrorCode.DecodeChecksum,
      offset: 56,
    },
    {
      name: "checksum mismatch in the checksum",
      bytes: () => {
        const b = sealed();
        b[57] ^= 4;
        return b;
      },
      code: ErrorCode.DecodeChecksum,
      offset: 56,
    },
    {
      name: "checksum missing when required",
      bytes: plain,
      code: ErrorCode.DecodeChecksumMissing,
      offset: 6,
      opts: { checksum: "required" },
    },
    {
      name: "unknown typeId",
      bytes: () => reseal(set32(sealed(), 8, 23)),
      code: ErrorCode.DecodeUnknownType,
      offset: 8,
      opts: { registry },
    },
    {
      name: "typeId 0",
      bytes: () => reseal(set32(sealed(), 8, 0)),
      code: ErrorCode.DecodeUnknownType,
      offset: 8,
    },
    {
      name: "priority 256",
      bytes: () => reseal(set32(sealed(), 52, 256)),
      code: ErrorCode.DecodeInvalidValue,
      offset: 52,
    },
    {
      name: "bool byte 2 in the payload",
      bytes: () => {
        const b = plain();
        b[boolAt] = 2;
        return b;
      },
      code: ErrorCode.DecodeInvalidValue,
      offset: boolAt,
      opts: { registry },
    },
  ];
  for (const row of rows) {
    it(`${row.name} → ${row.code} @${row.offset}`, () => {
      const bytes = row.bytes();
      assert.throws(() => decodeEnvelope(bytes, row.opts), (e: unknown) => {
        assert.ok(e instanceof DecodeError, `expected DecodeError, got ${e}`);
        assert.equal(e.code, row.code);
        assert.equal(e.offset, row.offset);
        return true;
      });
    });
  }

  it("every DecodeError code of the envelope appears in the table", () => {
    const codes = new Set(rows.map((r) => r.code));
    for (const code of Object.values(ErrorCode).filter((c) => c.startsWith("E_DECODE_"))) {
      assert.ok(codes.has(code), `${code} untested`);
    }
  });

  it("checksum policy: ignore skips verification, if-present verifies", () => {
    const b = sealed();
    b[70] ^= 1;
    assert.equal(decodeEnvelope(b, { checksum: "ignore" }).header.typeId, 21);
    assert.throws(() => decodeEnvelope(b), DecodeError);
    assert.equal(decodeEnvelope(plain(), { checksum: "if-present" }).header.typeId, 21);
    assert.equal(decodeEnvelope(plain(), { checksum: "ignore" }).header.typeId, 21);
  });

  it("rejects non-bytes and unknown policies as ValidationError", () => {
    assert.throws(() => decodeEnvelope([1, 2] as unknown as Uint8Array), ValidationError);
    assert.throws(
      () => decodeEnvelope(sealed(), { checksum: "maybe" as "ignore" }),
      ValidationError,
    );
  });
});
