import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { DecodeError, ErrorCode, SchemaError, ValidationError } from "../../src/core/errors.ts";
import {
  array,
  ArrayType,
  defineMessage,
  type FieldSpec,
  type Infer,
  SCALAR_KINDS,
  SCALAR_SIZE,
  struct,
  StructType,
} from "../../src/core/schema.ts";
import { cStructs, wgslStructs } from "../../src/core/schema_codegen.ts";
import {
  buildMessage,
  fieldsArb,
  schemaAndValueArb,
  type Shape,
  valueArb,
} from "../fixtures/schema_gen.ts";

const Vec3 = struct({ x: "f32", y: "f32", z: "f32" }, { name: "Vec3" });
const Sample = defineMessage({
  typeId: 7,
  name: "Sample",
  fields: { id: "u64", pos: Vec3, hist: array("u32", 4), ok: "bool", level: "u8" },
});
type SampleT = Infer<typeof Sample>;
const sample: SampleT = {
  id: 0x1234_5678_9abc_def0n,
  pos: { x: 1.5, y: -2, z: 3.25 },
  hist: [1, 2, 3, 0xffff_ffff],
  ok: true,
  level: 200,
};

function offsets(s: StructType): Record<string, number> {
  return Object.fromEntries(s.fields.map((f) => [f.name, f.offset]));
}

function assertSchemaError(fn: () => unknown, code: string, includes: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof SchemaError, `expected SchemaError, got ${e}`);
    assert.equal(e.code, code);
    assert.ok(e.message.includes(includes), `"${e.message}" should mention "${includes}"`);
    return true;
  });
}

describe("schema layout", () => {
  const cases: {
    name: string;
    type: StructType;
    offsets: Record<string, number>;
    size: number;
    align: number;
  }[] = [
    {
      name: "u8 then u32",
      type: struct({ a: "u8", b: "u32" }),
      offsets: { a: 0, b: 4 },
      size: 8,
      align: 4,
    },
    {
      name: "u32 then u64",
      type: struct({ a: "u32", b: "u64" }),
      offsets: { a: 0, b: 8 },
      size: 16,
      align: 8,
    },
    {
      name: "a lone u8 rounds to 4",
      type: struct({ a: "u8" }),
      offsets: { a: 0 },
      size: 4,
      align: 4,
    },
    {
      name: "u16 u8 u16",
      type: struct({ a: "u16", b: "u8", c: "u16" }),
      offsets: { a: 0, b: 2, c: 4 },
      size: 8,
      align: 4,
    },
    {
      name: "bool, u8[5], u16",
      type: struct({ a: "bool", b: array("u8", 5), c: "u16" }),
      offsets: { a: 0, b: 1, c: 6 },
      size: 8,
      align: 4,
    },
    {
      name: "u64 then u8 pads the tail to 8",
      type: struct({ a: "u64", b: "u8" }),
      offsets: { a: 0, b: 8 },
      size: 16,
      align: 8,
    },
    {
      name: "f64 after i8",
      type: struct({ a: "i8", b: "f64" }),
      offsets: { a: 0, b: 8 },
      size: 16,
      align: 8,
    },
    {
      name: "nested struct aligns to 4",
      type: struct({ h: "u8", v: Vec3 }),
      offsets: { h: 0, v: 4 },
      size: 16,
      align: 4,
    },
    {
      name: "u16[3][2] has stride 6",
      type: struct({ m: array(array("u16", 3), 2), t: "u8" }),
      offsets: { m: 0, t: 12 },
      size: 16,
      align: 4,
    },
    {
      name: "struct of one u8 as an array element has stride 4",
      type: struct({ a: array(struct({ b: "u8" }), 3), c: "u8" }),
      offsets: { a: 0, c: 12 },
      size: 16,
      align: 4,
    },
    {
      name: "the issue's Sample",
      type: Sample,
      offsets: { id: 0, pos: 8, hist: 20, ok: 36, level: 37 },
      size: 40,
      align: 8,
    },
    {
      name: "u64 array inside a struct raises its alignment",
      type: struct({ a: "u8", b: array("i64", 2) }),
      offsets: { a: 0, b: 8 },
      size: 24,
      align: 8,
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      assert.deepEqual(offsets(c.type), c.offsets);
      assert.equal(c.type.size, c.size);
      assert.equal(c.type.align, c.align);
    });
  }

  it("array types: stride, size, align", () => {
    assert.deepEqual([array(Vec3, 2).stride, array(Vec3, 2).size, array(Vec3, 2).align], [
      12,
      24,
      4,
    ]);
    assert.deepEqual([array("u64", 3).stride, array("u64", 3).size, array("u64", 3).align], [
      8,
      24,
      8,
    ]);
    assert.deepEqual([array("bool", 3).stride, array("bool", 3).size], [1, 3]);
  });

  it("scalar sizes equal their alignments", () => {
    for (const k of SCALAR_KINDS) assert.equal(array(k, 1).align, SCALAR_SIZE[k]);
  });

  it("leaves flatten nested structs and arrays with paths", () => {
    const leaves = Sample.leaves.map((l) => `${l.path}@${l.offset}:${l.kind}`);
    assert.deepEqual(leaves, [
      "id@0:u64",
      "pos.x@8:f32",
      "pos.y@12:f32",
      "pos.z@16:f32",
      "hist[0]@20:u32",
      "hist[1]@24:u32",
      "hist[2]@28:u32",
      "hist[3]@32:u32",
      "ok@36:bool",
      "level@37:u8",
    ]);
    assert.equal(Sample.layout.size, 40);
    assert.equal(Sample.layout.leaves, Sample.leaves);
  });

  it("messages carry their typeId and default name", () => {
    const m = defineMessage({ typeId: 0xffff_ffff, fields: { a: "u32" } });
    assert.equal(m.typeId, 0xffff_ffff);
    assert.equal(m.name, "Msg4294967295");
    const msg = m.of({ a: 3 });
    assert.equal(msg.schema, m);
    assert.deepEqual(msg.value, { a: 3 });
  });

  it("unnamed structs get a name derived from their layout", () => {
    const a = struct({ p: "u32", q: "f32" });
    const b = struct({ p: "u32", q: "f32" });
    const c = struct({ p: "u32", q: "i32" });
    assert.match(a.name, /^S_[0-9a-f]{8}$/);
    assert.equal(a.name, b.name);
    assert.notEqual(a.name, c.name);
  });

  it("property: offsets are aligned, increasing, inside the struct; leaves never overlap", () => {
    fc.assert(
      fc.property(fieldsArb(), (shapes) => {
        const s = buildMessage(shapes);
        assert.equal(s.size % s.align, 0);
        assert.ok(s.align === 4 || s.align === 8);
        let end = 0;
        for (const f of s.fields) {
          assert.equal(f.offset % f.align, 0, `${f.name} misaligned`);
          assert.ok(f.offset >= end, `${f.name} overlaps the previous field`);
          end = f.offset + f.size;
        }
        assert.ok(end <= s.size);
        let leafEnd = 0;
        for (const l of s.leaves) {
          assert.equal(l.offset % l.size, 0, `${l.path} misaligned`);
          assert.ok(l.offset >= leafEnd, `${l.path} overlaps`);
          leafEnd = l.offset + l.size;
        }
        // A field of alignment >= 4 starts a word: no 4-byte word mixes it with sub-word fields.
        for (const f of s.fields) if (f.align >= 4) assert.equal(f.offset % 4, 0);
      }),
      { seed: 0x5eed, numRuns: 300 },
    );
  });
});

describe("schema declaration errors", () => {
  const badNames = [
    "",
    "1a",
    "_x",
    "a__b",
    "a-b",
    "struct",
    "fn",
    "class",
    "then",
    "constructor",
    "uint32_t",
    "f32",
    "a".repeat(65),
    "é",
  ];
  for (const name of badNames) {
    it(`rejects field name ${JSON.stringify(name)}`, () => {
      assertSchemaError(() => struct({ [name]: "u32" }), ErrorCode.InvalidSchema, `"${name}"`);
    });
  }
  it("rejects bad struct names", () => {
    assertSchemaError(() => struct({ a: "u32" }, { name: "var" }), ErrorCode.InvalidSchema, "var");
    assertSchemaError(
      () => defineMessage({ typeId: 1, name: "9x", fields: { a: "u32" } }),
      ErrorCode.InvalidSchema,
      "9x",
    );
  });
  it("rejects unknown types, empty structs, bad lengths and typeIds", () => {
    assertSchemaError(() => struct({ a: "u128" as "u32" }), ErrorCode.InvalidSchema, "a");
    assertSchemaError(() => struct({}), ErrorCode.InvalidSchema, "at least one field");
    assertSchemaError(() => array("u8", 0), ErrorCode.InvalidSchema, "length");
    assertSchemaError(() => array("u8", 1.5), ErrorCode.InvalidSchema, "length");
    assertSchemaError(() => array("u8", 2 ** 31), ErrorCode.InvalidSchema, "length");
    assertSchemaError(() => array(array("f64", 2 ** 20), 2 ** 10), ErrorCode.InvalidSchema, "2^30");
    for (const typeId of [0, -1, 1.5, 2 ** 32, NaN]) {
      assertSchemaError(
        () => defineMessage({ typeId, fields: { a: "u8" } }),
        ErrorCode.InvalidSchema,
        "typeId",
      );
    }
  });
  it("codegen rejects two different structs with one name", () => {
    const a = struct({ x: "u32" }, { name: "Dup" });
    const b = struct({ x: "f32" }, { name: "Dup" });
    const holder = struct({ a, b }, { name: "Holder" });
    assertSchemaError(() => cStructs([holder]), ErrorCode.InvalidSchema, "Dup");
    assertSchemaError(() => wgslStructs([holder]), ErrorCode.InvalidSchema, "Dup");
    // The same layout under one name twice is one struct, emitted once.
    const c = struct({ x: "u32" }, { name: "Dup" });
    const text = cStructs([struct({ a, c }, { name: "Holder2" })]);
    assert.equal(text.split("struct alignas(4) Dup {").length, 2);
  });
});

describe("encode and decode", () => {
  it("round-trips the issue's Sample with the documented bytes", () => {
    const bytes = Sample.encode(sample);
    assert.equal(bytes.length, 40);
    const dv = new DataView(bytes.buffer);
    assert.equal(dv.getBigUint64(0, true), sample.id);
    assert.equal(dv.getFloat32(8, true), 1.5);
    assert.equal(dv.getUint32(32, true), 0xffff_ffff);
    assert.equal(bytes[36], 1);
    assert.equal(bytes[37], 200);
    assert.deepEqual([...bytes.subarray(38)], [0, 0]);
    assert.deepEqual(Sample.decode(bytes), sample);
  });

  it("decodes at an offset and from every byte source", () => {
    const buf = new Uint8Array(48);
    assert.equal(Sample.encodeInto(sample, buf, 8), 40);
    assert.deepEqual(Sample.decode(buf, 8), sample);
    assert.deepEqual(Sample.decode(buf.buffer, 8), sample);
    assert.deepEqual(Sample.decode(new DataView(buf.buffer, 8)), sample);
    const sab = new SharedArrayBuffer(40);
    Sample.encodeInto(sample, sab);
    assert.deepEqual(Sample.decode(sab), sample);
  });

  it("encodeInto zeroes padding that held other bytes", () => {
    const S = struct({ a: "u8", b: "u64", c: array(struct({ d: "u8", e: "u32" }), 2) });
    const v = { a: 1, b: 2n, c: [{ d: 3, e: 4 }, { d: 5, e: 6 }] };
    const target = new Uint8Array(S.size + 3).fill(0xee);
    S.encodeInto(v, target, 3);
    assert.deepEqual(target.subarray(3), S.encode(v));
    assert.deepEqual([...target.subarray(0, 3)], [0xee, 0xee, 0xee]);
  });

  it("encode is re-entrant (a getter of the value encodes another value)", () => {
    const A = struct({ a: "u32", b: "u32" });
    const v = {
      a: 1,
      get b() {
        A.encode({ a: 5, b: 6 });
        return 2;
      },
    };
    assert.deepEqual(A.decode(A.encode(v)), { a: 1, b: 2 });
  });

  it("rejects a target that is too small without writing", () => {
    const target = new Uint8Array(40).fill(7);
    assert.throws(
      () => Sample.encodeInto(sample, target, 1),
      (e: unknown) => e instanceof ValidationError && e.code === ErrorCode.InvalidLayout,
    );
    assert.ok(target.every((b) => b === 7));
  });

  const badValues: [string, FieldSpec, unknown, string][] = [
    ["300 into u8", "u8", 300, "u8"],
    ["-1 into u8", "u8", -1, "u8"],
    ["1.5 into u32", "u32", 1.5, "u32"],
    ["-1 into u32", "u32", -1, "u32"],
    ["2^32 into u32", "u32", 2 ** 32, "u32"],
    ["2^31 into i32", "i32", 2 ** 31, "i32"],
    ["-129 into i8", "i8", -129, "i8"],
    ["65536 into u16", "u16", 65536, "u16"],
    ["-32769 into i16", "i16", -32769, "i16"],
    ["a number into u64", "u64", 1, "bigint"],
    ["2^64 into u64", "u64", 1n << 64n, "u64"],
    ["-1n into u64", "u64", -1n, "u64"],
    ["2^63 into i64", "i64", 1n << 63n, "i64"],
    ["a bigint into u32", "u32", 1n, "u32"],
    ["NaN into u32", "u32", NaN, "u32"],
    ["1e39 into f32", "f32", 1e39, "f32"],
    ["a string into f64", "f64", "1", "f64"],
    ["1 into bool", "bool", 1, "boolean"],
    ["a short array", array("u8", 3), [1, 2], "length 3"],
    ["a non-array", array("u8", 3), 5, "length 3"],
    ["a DataView as an array", array("u8", 3), new DataView(new ArrayBuffer(3)), "length 3"],
  ];
  for (const [name, type, value, mention] of badValues) {
    it(`rejects ${name} naming the field`, () => {
      const S = struct({ outer: struct({ inner: type }, { name: "In" }) }, { name: "Out" });
      assertSchemaError(
        () => S.encode({ outer: { inner: value } } as never),
        ErrorCode.InvalidValue,
        "Out.outer.inner",
      );
      assertSchemaError(
        () => S.encode({ outer: { inner: value } } as never),
        ErrorCode.InvalidValue,
        mention,
      );
    });
  }

  it("accepts the edges of every range", () => {
    const S = struct({
      a: "u8",
      b: "i8",
      c: "u16",
      d: "i16",
      e: "u32",
      f: "i32",
      g: "u64",
      h: "i64",
      i: "f32",
      j: "f64",
      k: array("u8", 2),
    });
    const lo = {
      a: 0,
      b: -128,
      c: 0,
      d: -32768,
      e: 0,
      f: -(2 ** 31),
      g: 0n,
      h: -(1n << 63n),
      i: -3.4028234663852886e38,
      j: -Infinity,
      k: new Uint8Array([0, 255]) as unknown as number[],
    };
    const hi = {
      a: 255,
      b: 127,
      c: 65535,
      d: 32767,
      e: 2 ** 32 - 1,
      f: 2 ** 31 - 1,
      g: (1n << 64n) - 1n,
      h: (1n << 63n) - 1n,
      i: Infinity,
      j: NaN,
      k: [255, 0],
    };
    assert.deepEqual(S.decode(S.encode(lo)), { ...lo, k: [0, 255] });
    assert.deepEqual(S.decode(S.encode(hi)), hi);
    assert.ok(Object.is(S.decode(S.encode({ ...lo, i: -0 })).i, -0));
  });

  it("names paths through arrays and reports missing fields", () => {
    const S = struct({ items: array(struct({ flag: "bool", n: "u16" }, { name: "It" }), 3) }, {
      name: "Box",
    });
    const items = [{ flag: true, n: 1 }, { flag: false, n: 2 }, { flag: true, n: 70000 }];
    assertSchemaError(() => S.encode({ items }), ErrorCode.InvalidValue, "Box.items[2].n");
    assertSchemaError(
      () => S.encode({ items: [items[0], { n: 1 }, items[1]] } as never),
      ErrorCode.InvalidValue,
      "Box.items[1].flag: missing field",
    );
    assertSchemaError(
      () => S.encode(null as never),
      ErrorCode.InvalidValue,
      "Box: expected an object",
    );
  });

  it("rejects a truncated buffer with its length as the offset", () => {
    for (const [len, off] of [[39, 0], [0, 0], [44, 5]]) {
      assert.throws(() => Sample.decode(new Uint8Array(len), off), (e: unknown) => {
        assert.ok(e instanceof DecodeError);
        assert.equal(e.code, ErrorCode.DecodeTruncated);
        assert.equal(e.offset, len);
        return true;
      });
    }
  });

  it("rejects bool bytes other than 0/1 at the byte's offset", () => {
    const S = struct({ a: "u32", inner: array(struct({ x: "u8", b: "bool" }), 2) });
    const bytes = new Uint8Array(4 + S.size);
    S.encodeInto({ a: 1, inner: [{ x: 1, b: true }, { x: 2, b: false }] }, bytes, 4);
    for (const bad of [2, 0x80, 0xff]) {
      bytes[4 + 4 + 4 + 1] = bad; // inner[1].b
      assert.throws(() => S.decode(bytes, 4), (e: unknown) => {
        assert.ok(e instanceof DecodeError);
        assert.equal(e.code, ErrorCode.DecodeInvalidValue);
        assert.equal(e.offset, 13);
        return true;
      });
    }
  });

  it("property: decode(encode(v)) equals v and encodeInto agrees with encode", () => {
    fc.assert(
      fc.property(schemaAndValueArb(), fc.integer({ min: 0, max: 4 }), ([s, v], slot) => {
        const bytes = s.encode(v as never);
        assert.equal(bytes.length, s.size);
        assert.deepEqual(s.decode(bytes), v);
        const big = new Uint8Array(s.size + 32).fill(0xa5);
        s.encodeInto(v as never, big, slot * 8);
        assert.deepEqual(big.subarray(slot * 8, slot * 8 + s.size), bytes);
      }),
      { seed: 42, numRuns: 400 },
    );
  });
});

/** Reads every field through a view, recursively, into a plain value. */
function readView(t: FieldSpec, view: unknown): unknown {
  if (t instanceof StructType) {
    const v = view as Record<string, unknown>;
    const out: Record<string, unknown> = {};
    for (const f of t.fields) {
      out[f.name] = typeof f.type === "string" ? v[f.name] : readView(f.type, v[f.name]);
    }
    return out;
  }
  const a = t as ArrayType;
  const items = view as ArrayLike<unknown>;
  assert.equal(items.length, a.length);
  const out: unknown[] = [];
  for (let i = 0; i < a.length; i++) {
    out.push(typeof a.element === "string" ? items[i] : readView(a.element, items[i]));
  }
  return out;
}

/** Writes every scalar of `value` through a view's setters. */
function writeView(t: FieldSpec, view: unknown, value: unknown): void {
  if (t instanceof StructType) {
    const v = view as Record<string, unknown>;
    const val = value as Record<string, unknown>;
    for (const f of t.fields) {
      if (typeof f.type === "string") v[f.name] = val[f.name];
      else writeView(f.type, v[f.name], val[f.name]);
    }
    return;
  }
  const a = t as ArrayType;
  const items = view as Record<number, unknown>;
  const vals = value as unknown[];
  for (let i = 0; i < a.length; i++) {
    if (typeof a.element === "string") items[i] = vals[i];
    else writeView(a.element, items[i], vals[i]);
  }
}

describe("views", () => {
  it("read and write the underlying bytes, no copy", () => {
    const bytes = Sample.encode(sample);
    const v = Sample.view(bytes);
    assert.equal(v.id, sample.id);
    assert.equal(v.pos.y, -2);
    assert.equal(v.pos, v.pos, "nested views are cached");
    assert.ok(v.hist instanceof Uint32Array);
    assert.equal(v.hist.buffer, bytes.buffer);
    v.pos.z = 8;
    v.hist[1] = 99;
    v.ok = false;
    v.level = 7;
    v.id = 5n;
    assert.deepEqual(Sample.decode(bytes), {
      id: 5n,
      pos: { x: 1.5, y: -2, z: 8 },
      hist: [1, 99, 3, 0xffff_ffff],
      ok: false,
      level: 7,
    });
    assert.deepEqual(v.$get(), Sample.decode(bytes));
    assert.equal(v.$schema, Sample);
  });

  it("setters range-check like encode", () => {
    const v = Sample.view(new Uint8Array(40));
    assertSchemaError(
      () => {
        v.level = 256;
      },
      ErrorCode.InvalidValue,
      "Sample.level",
    );
    assertSchemaError(
      () => {
        v.id = 1 as unknown as bigint;
      },
      ErrorCode.InvalidValue,
      "Sample.id",
    );
    assertSchemaError(
      () => {
        v.pos.x = "x" as unknown as number;
      },
      ErrorCode.InvalidValue,
      "Vec3.x",
    );
  });

  it("$set writes a whole value; a value that does not fit leaves the bytes alone", () => {
    const bytes = new Uint8Array(40);
    const v = Sample.view(bytes);
    v.$set(sample);
    assert.deepEqual(Sample.decode(bytes), sample);
    const before = bytes.slice();
    assert.throws(() => v.$set({ ...sample, level: 999 }), SchemaError);
    assert.deepEqual(bytes, before);
  });

  it("bool reads reject bytes other than 0/1", () => {
    const bytes = Sample.encode(sample);
    bytes[36] = 3;
    const v = Sample.view(bytes);
    assert.throws(
      () => v.ok,
      (e: unknown) =>
        e instanceof DecodeError && e.code === ErrorCode.DecodeInvalidValue && e.offset === 36,
    );
  });

  it("bool, struct and nested arrays are indexable views", () => {
    const S = struct({
      flags: array("bool", 3),
      pts: array(Vec3, 2),
      grid: array(array("u16", 3), 2),
      deep: array(array(Vec3, 2), 2),
    });
    const bytes = new Uint8Array(S.size);
    const v = S.view(bytes);
    v.flags[1] = true;
    v.flags.set(2, true);
    assert.deepEqual([...v.flags], [false, true, true]);
    assert.equal(v.flags.get(1), true);
    assert.equal(v.flags.length, 3);
    v.pts[1].y = 4;
    v.grid[1][2] = 65535;
    v.deep[1][0].z = -1;
    assert.equal(v.pts.get(1), v.pts[1]);
    assert.deepEqual([...v.pts].map((p) => p.y), [0, 4]);
    const d = S.decode(bytes);
    assert.deepEqual(d.flags, [false, true, true]);
    assert.equal(d.pts[1].y, 4);
    assert.deepEqual(d.grid, [[0, 0, 0], [0, 0, 65535]]);
    assert.equal(d.deep[1][0].z, -1);
    assert.throws(() => v.flags.get(3), ValidationError);
    assert.throws(() => v.pts.get(-1), ValidationError);
    assertSchemaError(() => v.flags.set(0, 1 as unknown as boolean), ErrorCode.InvalidValue, "[0]");
  });

  it("check bounds and alignment", () => {
    const buf = new ArrayBuffer(96);
    Sample.view(buf, 8);
    Sample.view(new Uint8Array(buf, 16), 40);
    for (
      const [region, off] of [[new Uint8Array(buf), 4], [new Uint8Array(buf, 4), 0], [
        new Uint8Array(buf),
        60,
      ], [new Uint8Array(buf), -8]] as const
    ) {
      assert.throws(
        () => Sample.view(region, off),
        (e: unknown) => e instanceof ValidationError && e.code === ErrorCode.InvalidLayout,
      );
    }
  });

  it("work over a SharedArrayBuffer", () => {
    const sab = new SharedArrayBuffer(80);
    const v = Sample.view(sab, 40);
    v.$set(sample);
    assert.deepEqual(Sample.decode(sab, 40), sample);
    assert.ok(v.hist.buffer instanceof SharedArrayBuffer);
  });

  it("property: reading through a view equals decode; writing through setters equals encode", () => {
    fc.assert(
      fc.property(
        schemaAndValueArb().chain(([s, v]) => valueArb(s).map((w) => [s, v, w] as const)),
        ([s, v, w]) => {
          const bytes = s.encode(v as never);
          const view = s.view(bytes);
          assert.deepEqual(readView(s, view), v);
          // Write every scalar of w over v through the setters: the bytes become encode(w).
          writeView(s, view, w);
          assert.deepEqual(bytes, s.encode(w as never));
        },
      ),
      { seed: 7, numRuns: 300 },
    );
  });
});

describe("generated text", () => {
  it("C text pads explicitly and asserts every offset", () => {
    const c = Sample.cStruct();
    assert.match(c, /struct alignas\(8\) Sample \{/);
    assert.match(c, /uint8_t _pad38\[2\];/);
    assert.match(c, /static_assert\(offsetof\(Sample, level\) == 37/);
    assert.match(c, /static_assert\(sizeof\(Sample\) == 40/);
    assert.ok(
      c.indexOf("struct alignas(4) Vec3") < c.indexOf("struct alignas(8) Sample"),
      "dependencies first",
    );
  });

  it("WGSL text packs sub-word fields into words with accessors", () => {
    const w = Sample.wgslStruct();
    assert.match(w, /id: vec2<u32>/);
    assert.match(w, /_w36: u32,/);
    assert.match(
      w,
      /fn Sample_get_ok\(v: Sample\) -> bool \{ return extractBits\(v\._w36, 0u, 8u\) != 0u; \}/,
    );
    assert.match(
      w,
      /fn Sample_get_level\(v: Sample\) -> u32 \{ return extractBits\(v\._w36, 8u, 8u\); \}/,
    );
    assert.match(w, /fn Sample_with_level\(v: Sample, x: u32\) -> Sample/);
  });
});

/**
 * Runs `fn` with `new Function` throwing EvalError, as under a Content-Security-Policy without
 * unsafe-eval; returns how often code generation was attempted.
 */
function withoutEval(fn: () => void): number {
  const original = globalThis.Function;
  let calls = 0;
  globalThis.Function = function blocked(): never {
    calls++;
    throw new EvalError("code generation blocked by the test");
  } as unknown as FunctionConstructor;
  try {
    fn();
  } finally {
    globalThis.Function = original;
  }
  return calls;
}

function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return `${(e as Error).name}: ${(e as Error).message}`;
  }
  return "no error";
}

describe("generated and interpreted codecs", () => {
  const Item = struct({ flag: "bool", n: "u16", w: "f64" }, { name: "Item" });
  const bigFields = {
    items: array(Item, 20),
    words: array("u32", 100),
    grid: array(array("i8", 17), 18),
    tail: "bool",
  } as const;
  const bigValue = {
    items: Array.from({ length: 20 }, (_, i) => ({ flag: i % 3 === 0, n: i * 1000, w: i / 7 })),
    words: Array.from({ length: 100 }, (_, i) => i * 0x01010101),
    grid: Array.from(
      { length: 18 },
      (_, i) => Array.from({ length: 17 }, (_, j) => (i * j) % 256 - 128),
    ),
    tail: true,
  };

  it("long arrays (loops, not unrolled) round-trip and name indexed paths", () => {
    const Big = struct(bigFields, { name: "Big" });
    const bytes = Big.encode(bigValue);
    assert.deepEqual(Big.decode(bytes), bigValue);
    const items = bigValue.items.map((it, i) => i === 17 ? { ...it, n: 70000 } : it);
    assertSchemaError(
      () => Big.encode({ ...bigValue, items }),
      ErrorCode.InvalidValue,
      "Big.items[17].n: expected",
    );
    const grid = bigValue.grid.map((row, i) =>
      i === 12 ? row.map((v, j) => j === 16 ? 128 : v) : row
    );
    assertSchemaError(
      () => Big.encode({ ...bigValue, grid }),
      ErrorCode.InvalidValue,
      "Big.grid[12][16]",
    );
    const bad = bytes.slice();
    bad[Item.size * 13] = 7; // items[13].flag
    assert.throws(
      () => Big.decode(bad),
      (e: unknown) => e instanceof DecodeError && e.offset === Item.size * 13,
    );
  });

  it("the interpreter gives identical bytes, values and errors", () => {
    const Gen = struct(bigFields, { name: "Big" });
    const Int = struct(bigFields, { name: "Big" });
    const calls = withoutEval(() => Int.encode(bigValue));
    assert.ok(calls > 0, "code generation was never attempted");
    assert.deepEqual(Int.encode(bigValue), Gen.encode(bigValue));
    const bytes = Gen.encode(bigValue);
    assert.deepEqual(Int.decode(bytes), Gen.decode(bytes));
    const target = new Uint8Array(Gen.size + 8).fill(0xff);
    const target2 = target.slice();
    Gen.encodeInto(bigValue, target, 8);
    Int.encodeInto(bigValue, target2, 8);
    assert.deepEqual(target2, target, "padding zeroed alike");
    const badValues: unknown[] = [
      null,
      { ...bigValue, tail: 1 },
      { ...bigValue, words: bigValue.words.slice(1) },
      { ...bigValue, items: bigValue.items.map((it, i) => i === 19 ? { n: 1, w: 0 } : it) },
      { ...bigValue, grid: bigValue.grid.map((r, i) => i === 3 ? r.map(() => -129) : r) },
      { ...bigValue, words: bigValue.words.map((w, i) => i === 99 ? 2 ** 32 : w) },
    ];
    for (const v of badValues) {
      const e = errorOf(() => Gen.encode(v as never));
      assert.match(e, /^SchemaError: Big/);
      assert.equal(errorOf(() => Int.encode(v as never)), e);
    }
    const corrupt = bytes.slice();
    corrupt[Gen.size - 4] = 9; // tail
    assert.equal(errorOf(() => Int.decode(corrupt)), errorOf(() => Gen.decode(corrupt)));
  });

  it("property: interpreter and generated code agree on random schemas", () => {
    const arb = fieldsArb().chain((shapes: Shape[]) =>
      valueArb(buildMessage(shapes)).map((v) => [shapes, v] as const)
    );
    fc.assert(
      fc.property(arb, ([shapes, v]) => {
        const gen = buildMessage(shapes);
        const int = buildMessage(shapes);
        assert.ok(withoutEval(() => int.decode(new Uint8Array(int.size))) > 0);
        const bytes = gen.encode(v as never);
        assert.deepEqual(int.encode(v as never), bytes);
        assert.deepEqual(int.decode(bytes), gen.decode(bytes));
        assert.deepEqual(int.decode(bytes), v);
      }),
      { seed: 99, numRuns: 200 },
    );
  });
});
