/**
 * The generated CUDA C and WGSL structs against real compilers: nvcc must accept static_asserts
 * pinning every offset and size to the schema layout, and a WGSL compute shader on a real adapter
 * must read every scalar of JS-encoded bytes through the generated struct and accessors, and write
 * every scalar back through them, bit-exactly.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { envelopeHeaderStruct } from "../../src/core/envelope.ts";
import {
  array,
  ArrayType,
  defineMessage,
  type FieldSpec,
  type ScalarKind,
  struct,
  type StructType,
} from "../../src/core/schema.ts";
import { C_PRELUDE, cStructs, wgslStructs } from "../../src/core/schema_codegen.ts";
import { buildMessage, fieldsArb, valueArb } from "../fixtures/schema_gen.ts";
import { probeWebGpu } from "../webgpu_device.ts";

const Vec3 = struct({ x: "f32", y: "f32", z: "f32" }, { name: "Vec3" });
const Inner = struct({ tag: "u16", val: "f32", on: "bool" }, { name: "Inner" });

/** Hand-written schemas covering every field kind and layout corner. */
const handSchemas: StructType[] = [
  defineMessage({
    typeId: 1,
    name: "AllScalars",
    fields: {
      a: "u8",
      b: "i8",
      c: "u16",
      d: "i16",
      e: "u32",
      f: "i32",
      g: "f32",
      h: "f64",
      i: "u64",
      j: "i64",
      k: "bool",
    },
  }),
  defineMessage({
    typeId: 2,
    name: "Nested",
    fields: {
      head: "bool",
      pts: array(Vec3, 2),
      flags: array("bool", 5),
      grid: array(array("i8", 3), 3),
      wide: array("u64", 2),
      inner: Inner,
      inners: array(Inner, 2),
      m: array(array("f32", 2), 2),
      shorts: array("u16", 3),
      tail: "u8",
    },
  }),
  defineMessage({
    typeId: 7,
    name: "Sample",
    fields: { id: "u64", pos: Vec3, hist: array("u32", 4), ok: "bool", level: "u8" },
  }),
  struct({ lone: "u8" }, { name: "LoneByte" }),
  struct({ a: "u8", b: "f64", c: "i16" }, { name: "PadHeavy" }),
  envelopeHeaderStruct,
];

/** Random schemas from a fixed seed, named so they can share one translation unit. */
function randomSchemas(count: number, seed: number): StructType[] {
  return fc.sample(fieldsArb(3), { seed, numRuns: count }).map((f, i) =>
    buildMessage(f, 1000 + i, `Rnd${i}`)
  );
}

// ---------------------------------------------------------------------------------------------
// nvcc

const nvccProbe = spawnSync("nvcc", ["--version"], { encoding: "utf8" });
const nvccSkip: string | false = nvccProbe.error || nvccProbe.status !== 0
  ? "nvcc is not on PATH (no CUDA toolkit on this machine), so the C layout cannot be compiled"
  : false;
if (nvccSkip) console.log(`schema_gpu: skipping the nvcc tests: ${nvccSkip}`);

function nvcc(source: string): { status: number | null; stderr: string } {
  const dir = mkdtempSync(join(tmpdir(), "rk-schema-"));
  try {
    const file = join(dir, "layout.cu");
    writeFileSync(file, source);
    const r = spawnSync(
      "nvcc",
      ["-std=c++17", "-c", "-x", "cu", "-arch=sm_90", "-o", "/dev/null", file],
      { encoding: "utf8", timeout: 120_000 },
    );
    return { status: r.status, stderr: `${r.stderr ?? ""}${r.error ?? ""}` };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("CUDA C structs under nvcc", () => {
  const corpus = [...handSchemas, ...randomSchemas(60, 0xc0de)];
  const source = C_PRELUDE + cStructs(corpus);

  it("the emitted text asserts sizeof and every offsetof", () => {
    for (const s of corpus) {
      assert.ok(source.includes(`static_assert(sizeof(${s.name}) == ${s.size},`), s.name);
      for (const f of s.fields) {
        assert.ok(
          source.includes(`static_assert(offsetof(${s.name}, ${f.name}) == ${f.offset},`),
          `${s.name}.${f.name}`,
        );
      }
    }
  });

  it(`compiles ${corpus.length} schemas (6 hand-written, 60 random) in one nvcc run`, {
    skip: nvccSkip,
  }, () => {
    const r = nvcc(source);
    assert.equal(r.status, 0, `nvcc rejected the layout:\n${r.stderr}`);
  });

  it("fails on a wrong offset (the asserts really bite)", { skip: nvccSkip }, () => {
    const wrong = source.replace(
      "static_assert(offsetof(Sample, level) == 37,",
      "static_assert(offsetof(Sample, level) == 38,",
    );
    assert.notEqual(wrong, source);
    const r = nvcc(wrong);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /Sample\.level: offset/);
  });
});

// ---------------------------------------------------------------------------------------------
// WGSL

const { device, skip: gpuSkip } = await probeWebGpu();
if (gpuSkip) console.log(`schema_gpu: skipping the WGSL tests: ${gpuSkip}`);

// WebGPU's GPUBufferUsage / GPUMapMode bit values (spec constants; the globals are not typed here).
const MAP_READ = 0x1;
const COPY_SRC = 0x4;
const COPY_DST = 0x8;
const STORAGE = 0x80;
const MAP_MODE_READ = 0x1;

const SUB_WORD = new Set<ScalarKind>(["u8", "i8", "u16", "i16", "bool"]);

/** WGSL u32 expressions of a full-width scalar's bits (two for 64-bit types). */
function bitsOf(kind: ScalarKind, e: string): string[] {
  if (kind === "u32") return [e];
  if (kind === "i32" || kind === "f32") return [`bitcast<u32>(${e})`];
  return [`${e}.x`, `${e}.y`];
}

function bitsOfSub(kind: ScalarKind, call: string): string {
  if (kind === "bool") return `select(0u, 1u, ${call})`;
  if (kind === "i8" || kind === "i16") return `bitcast<u32>(${call})`;
  return call;
}

function indexTuples(dims: number[]): number[][] {
  let out: number[][] = [[]];
  for (const d of dims) out = out.flatMap((t) => Array.from({ length: d }, (_, i) => [...t, i]));
  return out;
}

/**
 * Shader statements that read every scalar of `a` (into `reads`) and copy every scalar of `b`
 * into `o` through the generated members and accessors (into `writes`), in leaf order.
 */
function walkStruct(
  s: StructType,
  a: string,
  b: string,
  o: string,
  reads: string[],
  writes: string[],
) {
  for (const f of s.fields) {
    if (f.align >= 4) {
      walkValue(f.type, `${a}.${f.name}`, `${b}.${f.name}`, `${o}.${f.name}`, reads, writes);
      continue;
    }
    const get = `${s.name}_get_${f.name}`;
    const set = `${s.name}_with_${f.name}`;
    let kind: FieldSpec = f.type;
    const dims: number[] = [];
    while (kind instanceof ArrayType) {
      dims.push(kind.length);
      kind = kind.element;
    }
    for (const idx of indexTuples(dims)) {
      const args = idx.map((i) => `, ${i}u`).join("");
      reads.push(bitsOfSub(kind as ScalarKind, `${get}(${a}${args})`));
      writes.push(`${o} = ${set}(${o}${args}, ${get}(${b}${args}));`);
    }
  }
}

function walkValue(
  t: FieldSpec,
  a: string,
  b: string,
  o: string,
  reads: string[],
  writes: string[],
) {
  if (typeof t === "string") {
    reads.push(...bitsOf(t, a));
    writes.push(`${o} = ${b};`);
  } else if (t instanceof ArrayType) {
    for (let i = 0; i < t.length; i++) {
      walkValue(t.element, `${a}[${i}]`, `${b}[${i}]`, `${o}[${i}]`, reads, writes);
    }
  } else {
    walkStruct(t, a, b, o, reads, writes);
  }
}

/** The words the shader should report for `value`, from the JS value (not from the bytes). */
function expectedWords(t: FieldSpec, value: unknown, out: number[]): void {
  if (typeof t === "string") {
    const dv = new DataView(new ArrayBuffer(8));
    switch (t) {
      case "bool":
        out.push(value ? 1 : 0);
        return;
      case "f32":
        dv.setFloat32(0, value as number, true);
        out.push(dv.getUint32(0, true));
        return;
      case "f64":
        dv.setFloat64(0, value as number, true);
        out.push(dv.getUint32(0, true), dv.getUint32(4, true));
        return;
      case "u64":
      case "i64": {
        const u = BigInt.asUintN(64, value as bigint);
        out.push(Number(u & 0xffff_ffffn), Number(u >> 32n));
        return;
      }
      default:
        out.push((value as number) >>> 0);
        return;
    }
  }
  if (t instanceof ArrayType) {
    (value as unknown[]).forEach((v) => expectedWords(t.element, v, out));
    return;
  }
  const rec = value as Record<string, unknown>;
  for (const f of t.fields) expectedWords(f.type, rec[f.name], out);
}

async function readBack(d: GPUDevice, src: GPUBuffer, size: number): Promise<Uint8Array> {
  const staging = d.createBuffer({
    size,
    usage: MAP_READ | COPY_DST,
  });
  const enc = d.createCommandEncoder();
  enc.copyBufferToBuffer(src, 0, staging, 0, size);
  d.queue.submit([enc.finish()]);
  await staging.mapAsync(MAP_MODE_READ);
  const out = new Uint8Array(staging.getMappedRange()).slice();
  staging.unmap();
  staging.destroy();
  return out;
}

async function runOnGpu(d: GPUDevice, s: StructType, seed: number): Promise<void> {
  const [va, vb] = fc.sample(valueArb(s), { seed, numRuns: 2 });
  const input = new Uint8Array(2 * s.size);
  s.encodeInto(va as never, input, 0);
  s.encodeInto(vb as never, input, s.size);

  const reads: string[] = [];
  const writes: string[] = [];
  walkStruct(s, "a", "b", "o", reads, writes);
  const expected: number[] = [];
  expectedWords(s, va, expected);
  assert.equal(reads.length, expected.length, "walker and expectation disagree on leaf count");
  for (const leaf of s.leaves) assert.ok(SUB_WORD.has(leaf.kind) || leaf.size >= 4);

  const code = `${wgslStructs([s])}
@group(0) @binding(0) var<storage, read> inp: array<${s.name}, 2>;
@group(0) @binding(1) var<storage, read_write> bits: array<u32, ${reads.length}>;
@group(0) @binding(2) var<storage, read_write> outs: array<${s.name}, 1>;

@compute @workgroup_size(1)
fn main() {
  let a = inp[0];
  let b = inp[1];
${reads.map((r, i) => `  bits[${i}] = ${r};`).join("\n")}
  var o = a;
${writes.map((w) => `  ${w}`).join("\n")}
  outs[0] = o;
}
`;
  d.pushErrorScope("validation");
  const module = d.createShaderModule({ code });
  const info = await module.getCompilationInfo();
  const errors = info.messages.filter((m) => m.type === "error");
  assert.deepEqual(errors.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`), [], code);
  const pipeline = d.createComputePipeline({
    layout: "auto",
    compute: { module, entryPoint: "main" },
  });
  const inBuf = d.createBuffer({
    size: input.length,
    usage: STORAGE | COPY_DST,
  });
  d.queue.writeBuffer(inBuf, 0, input);
  const bitsBuf = d.createBuffer({
    size: 4 * reads.length,
    usage: STORAGE | COPY_SRC,
  });
  const outBuf = d.createBuffer({
    size: s.size,
    usage: STORAGE | COPY_SRC,
  });
  const bind = d.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [
      { binding: 0, resource: { buffer: inBuf } },
      { binding: 1, resource: { buffer: bitsBuf } },
      { binding: 2, resource: { buffer: outBuf } },
    ],
  });
  const enc = d.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bind);
  pass.dispatchWorkgroups(1);
  pass.end();
  d.queue.submit([enc.finish()]);
  const validation = await d.popErrorScope();
  assert.equal(validation, null, `WebGPU validation error: ${validation?.message}\n${code}`);

  const bitsBytes = await readBack(d, bitsBuf, 4 * reads.length);
  const got = Array.from(new Uint32Array(bitsBytes.buffer));
  const paths = s.leaves.flatMap((l) => l.size === 8 ? [`${l.path}.lo`, `${l.path}.hi`] : [l.path]);
  for (let i = 0; i < expected.length; i++) {
    assert.equal(got[i], expected[i], `${s.name} ${paths[i]}: GPU read 0x${got[i].toString(16)}`);
  }
  // Every scalar of b written over a copy of a through the generated members and accessors.
  const outBytes = await readBack(d, outBuf, s.size);
  assert.deepEqual(outBytes, input.subarray(s.size), `${s.name}: write-back differs from b`);
  inBuf.destroy();
  bitsBuf.destroy();
  outBuf.destroy();
}

describe("WGSL structs on a WebGPU adapter", () => {
  const corpus = [...handSchemas, ...randomSchemas(8, 0x3a9e)];
  corpus.forEach((s, i) => {
    it(`${s.name}: reads and writes every scalar bit-exactly`, { skip: gpuSkip }, async () => {
      await runOnGpu(device!, s, 100 + i);
    });
  });
  it("releases the device", { skip: gpuSkip }, () => {
    device?.destroy();
  });
});
