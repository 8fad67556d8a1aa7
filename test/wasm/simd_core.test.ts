// The WebAssembly SIMD core against its plain-JS oracle (src/backends/cpu/simd_js.ts).
//
// Element-wise kernels (scale, add, saxpy, stencil5) and CRC32C must match the oracle bit for bit
// on any input, NaN payloads aside. The reductions (sum, dot) accumulate in f32 over 32 lanes
// while the oracle sums in f64 in index order, so they are held to the rounding-error bound of
// that order instead:
//   |wasm − ref| ≤ (n/32 + 18) · 2⁻²⁴ · Σ|terms| · 1.01 + n · 2⁻¹⁴⁹
// (first-order bound for a sum whose every term passes through at most n/32 + 17 f32 roundings,
// widened by 1% for the higher-order terms; the last part covers products that underflow).
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  assertWasmSupport,
  createSharedMemory,
  detectWasmFeatures,
  loadSimdModule,
  SimdCore,
} from "../../src/backends/cpu/simd_core.ts";
import {
  addJs,
  crc32cBatchJs,
  crc32cJs,
  dotJs,
  saxpyJs,
  scaleJs,
  stencil5Js,
  sumJs,
} from "../../src/backends/cpu/simd_js.ts";
import { crc32c as crc32cCore } from "../../src/core/checksum.ts";
import {
  ErrorCode,
  MemoryViewError,
  OutOfMemoryError,
  RingKernelError,
  ValidationError,
  WasmUnsupportedError,
} from "../../src/core/errors.ts";
import { fillSeeded, SCALES } from "../fixtures/simd_data.ts";
import type { SimdWorkerJob, SimdWorkerReport } from "../fixtures/simd_worker.ts";

const RUNS = 150;
/** Longest random array: long enough for every loop of every kernel (blocks of 32, then 4, then 1). */
const MAX_LEN = 700;
/** Offsets up to 63 elements put views at every alignment modulo 16 and 64 bytes. */
const MAX_OFF = 63;
/** Largest stencil grid side. */
const MAX_SIDE = 40;
const POOL = Math.max(MAX_LEN, MAX_SIDE * MAX_SIDE) + MAX_OFF + 1;

const core = await SimdCore.create({ initialPages: 64, maximumPages: 4096 });
const pools = Array.from({ length: 4 }, () => core.allocF32(POOL).view);

/** Copies `data` into pool `k` at element offset `off` and returns that view. */
function place(k: number, off: number, data: Float32Array): Float32Array {
  const v = pools[k].subarray(off, off + data.length);
  v.set(data);
  return v;
}

const f32bits = new Uint32Array(1);
const f32view = new Float32Array(f32bits.buffer);
function bits(x: number): number {
  f32view[0] = x;
  return f32bits[0];
}

/** Asserts equal f32 bit patterns element by element, any NaN matching any NaN. */
function assertSameF32(actual: Float32Array, expected: Float32Array, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i], e = expected[i];
    if (Number.isNaN(a) && Number.isNaN(e)) continue;
    if (bits(a) !== bits(e)) {
      assert.fail(`${what}[${i}]: wasm ${a} (0x${bits(a).toString(16)}) ≠ JS ${e}`);
    }
  }
}

/** Asserts |actual − ref| within the reduction bound of the file header. */
function assertWithinBound(actual: number, ref: number, n: number, absSum: number, what: string) {
  const bound = (n / 32 + 18) * 2 ** -24 * absSum * 1.01 + n * 2 ** -149;
  assert.ok(
    Math.abs(actual - ref) <= bound,
    `${what}: wasm ${actual} vs f64 ${ref}, |Δ| ${
      Math.abs(actual - ref)
    } > bound ${bound} (n ${n})`,
  );
}

function throwsCode(fn: () => unknown, cls: typeof RingKernelError, code: ErrorCode): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${e}`);
    assert.equal((e as RingKernelError).code, code);
    return true;
  });
}

const lengthArb = fc.oneof(
  fc.constantFrom(0, 1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 129),
  fc.nat(MAX_LEN),
);
const offArb = fc.nat(MAX_OFF);
/** Arrays of any f32 (NaN, ±Infinity, −0, subnormals included) of `n` elements. */
const anyF32s = (n: number) => fc.float32Array({ minLength: n, maxLength: n });
/** Moderate finite values, so f32 reductions cannot overflow where the f64 oracle does not. */
const modestF32s = (n: number) =>
  fc.float32Array({ minLength: n, maxLength: n, min: -1e4, max: 1e4, noNaN: true });

describe("SIMD core: element-wise kernels equal the JS loop bit for bit", () => {
  it("scale", () => {
    fc.assert(
      fc.property(lengthArb.chain(anyF32s), offArb, fc.float(), (xs, off, a) => {
        const x = place(0, off, xs);
        const expected = xs.slice();
        scaleJs(expected, a);
        core.scale(x, a);
        assertSameF32(x, expected, "scale");
      }),
      { numRuns: RUNS },
    );
  });

  it("add, including dst === a and dst === b", () => {
    const arb = lengthArb.chain((n) => fc.tuple(anyF32s(n), anyF32s(n)));
    fc.assert(
      fc.property(
        arb,
        fc.tuple(offArb, offArb, offArb),
        fc.constantFrom("fresh", "a", "b"),
        ([as, bs], [oa, ob, od], alias) => {
          const a = place(0, oa, as);
          const b = place(1, ob, bs);
          const dst = alias === "a" ? a : alias === "b" ? b : pools[2].subarray(od, od + as.length);
          const expected = new Float32Array(as.length);
          addJs(expected, as, bs);
          core.add(dst, a, b);
          assertSameF32(dst, expected, `add (${alias})`);
        },
      ),
      { numRuns: RUNS },
    );
  });

  it("saxpy, including y === x", () => {
    const arb = lengthArb.chain((n) => fc.tuple(anyF32s(n), anyF32s(n)));
    fc.assert(
      fc.property(arb, offArb, offArb, fc.float(), fc.boolean(), ([ys, xs], oy, ox, a, same) => {
        const y = place(0, oy, ys);
        const x = same ? y : place(1, ox, xs);
        const expected = ys.slice();
        saxpyJs(expected, same ? ys : xs, a);
        core.saxpy(y, x, a);
        assertSameF32(y, expected, "saxpy");
      }),
      { numRuns: RUNS },
    );
  });

  it(`stencil5 on grids from 0×0 to ${MAX_SIDE}×${MAX_SIDE}, borders copied`, () => {
    const arb = fc.tuple(fc.nat(MAX_SIDE), fc.nat(MAX_SIDE)).chain(([w, h]) =>
      fc.tuple(fc.constant(w), fc.constant(h), anyF32s(w * h))
    );
    fc.assert(
      fc.property(arb, offArb, offArb, fc.float(), ([w, h, cells], os, od, c) => {
        const src = place(0, os, cells);
        const dst = pools[1].subarray(od, od + cells.length);
        const expected = new Float32Array(cells.length);
        stencil5Js(cells, expected, w, h, c);
        core.stencil5(src, dst, w, h, c);
        assertSameF32(dst, expected, `stencil5 ${w}×${h}`);
      }),
      { numRuns: RUNS },
    );
  });
});

describe("SIMD core: reductions within the stated rounding bound", () => {
  it("sum", () => {
    fc.assert(
      fc.property(lengthArb.chain(modestF32s), offArb, (xs, off) => {
        const x = place(0, off, xs);
        const abs = xs.reduce((s, v) => s + Math.abs(v), 0);
        assertWithinBound(core.sum(x), sumJs(xs), xs.length, abs, "sum");
      }),
      { numRuns: RUNS },
    );
  });

  it("dot", () => {
    const arb = lengthArb.chain((n) => fc.tuple(modestF32s(n), modestF32s(n)));
    fc.assert(
      fc.property(arb, offArb, offArb, ([as, bs], oa, ob) => {
        const a = place(0, oa, as);
        const b = place(1, ob, bs);
        let abs = 0;
        for (let i = 0; i < as.length; i++) abs += Math.abs(as[i] * bs[i]);
        assertWithinBound(core.dot(a, b), dotJs(as, bs), as.length, abs, "dot");
      }),
      { numRuns: RUNS },
    );
  });

  it("sums of small integers are exact, and empty reductions are 0", () => {
    for (const n of [0, 1, 3, 31, 32, 33, 100, 4097]) {
      const x = core.allocF32(n).view;
      for (let i = 0; i < n; i++) x[i] = i + 1;
      assert.equal(core.sum(x), (n * (n + 1)) / 2, `sum 1..${n}`);
      // Exact while every partial sum stays below 2^24.
      if (n <= 100) assert.equal(core.dot(x, x), (n * (n + 1) * (2 * n + 1)) / 6, `dot 1..${n}`);
    }
  });

  it("stays within the bound at n = 1,000,003", () => {
    const n = 1_000_003;
    const a = core.allocF32(n).view;
    const b = core.allocF32(n).view;
    fillSeeded(a, 7);
    fillSeeded(b, 8);
    let absA = 0, absAB = 0;
    for (let i = 0; i < n; i++) {
      absA += Math.abs(a[i]);
      absAB += Math.abs(a[i] * b[i]);
    }
    assertWithinBound(core.sum(a), sumJs(a), n, absA, "sum 1M");
    assertWithinBound(core.dot(a, b), dotJs(a, b), n, absAB, "dot 1M");
  });
});

describe("SIMD core: CRC32C", () => {
  const ascii = (s: string) => new TextEncoder().encode(s);
  it("matches the standard check values (RFC 3720 B.4 and '123456789')", () => {
    const vectors: Array<[Uint8Array, number]> = [
      [ascii("123456789"), 0xe3069283],
      [new Uint8Array(0), 0],
      [new Uint8Array(32), 0x8a9136aa],
      [new Uint8Array(32).fill(0xff), 0x62a8ab43],
      [Uint8Array.from({ length: 32 }, (_, i) => i), 0x46dd794e],
      [Uint8Array.from({ length: 32 }, (_, i) => 31 - i), 0x113fdb5c],
    ];
    for (const [data, want] of vectors) {
      const v = core.allocBytes(data.length).view;
      v.set(data);
      assert.equal(core.crc32c(v), want, `crc32c of ${data.length} bytes`);
      assert.equal(crc32cJs(data), want, "oracle");
    }
  });

  it("equals the byte-wise oracle and core/checksum.ts at any offset, length and seed", () => {
    const region = core.allocBytes(4 * 1024 + 64).view;
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 4 * 1024 }),
        fc.nat(63),
        fc.nat(0xffff_ffff),
        (data, off, seed) => {
          const v = region.subarray(off, off + data.length);
          v.set(data);
          const want = crc32cJs(data, seed);
          assert.equal(core.crc32c(v, seed), want);
          assert.equal(crc32cCore(data, seed), want);
        },
      ),
      { numRuns: RUNS },
    );
  });

  it("equals the oracle across the three-stream block boundaries (768 and 24576 bytes)", () => {
    const big = core.allocBytes(100_064).view;
    let s = 12345;
    for (let i = 0; i < big.length; i++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      big[i] = s >>> 24;
    }
    for (const len of [767, 768, 769, 1543, 24575, 24576, 24577, 49152 + 768 + 5, 100_000]) {
      for (const off of [0, 3, 61]) {
        const v = big.subarray(off, off + len);
        assert.equal(core.crc32c(v, 0x1234), crc32cJs(v, 0x1234), `len ${len} at +${off}`);
      }
    }
    const stride = 2000, lens = core.allocU32(7).view, out = core.allocU32(7).view;
    lens.set([2000, 1999, 768, 5, 1600, 0, 777]);
    const data = big.subarray(1, 1 + 7 * stride);
    core.crc32cBatch(data, stride, lens, out);
    assert.deepEqual(Array.from(out), Array.from(crc32cBatchJs(data, stride, lens)));
  });

  it("chains: crc(b, crc(a)) === crc(a ++ b)", () => {
    const region = core.allocBytes(2048).view;
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2048 }), fc.nat(2048), (data, cut) => {
        const v = region.subarray(0, data.length);
        v.set(data);
        const k = Math.min(cut, data.length);
        assert.equal(core.crc32c(v.subarray(k), core.crc32c(v.subarray(0, k))), core.crc32c(v));
      }),
      { numRuns: RUNS },
    );
  });

  it("batch: one checksum per slot at a fixed stride, equal to the oracle", () => {
    const dataRegion = core.allocBytes(40 * 300).view;
    const lensRegion = core.allocU32(40).view;
    const outRegion = core.allocU32(40).view;
    const arb = fc.tuple(fc.nat(40), fc.nat(300)).chain(([count, stride]) =>
      fc.tuple(
        fc.constant(stride),
        fc.uint8Array({ minLength: count * stride, maxLength: count * stride }),
        fc.array(fc.nat(stride), { minLength: count, maxLength: count }),
      )
    );
    fc.assert(
      fc.property(arb, ([stride, bytes, lengths]) => {
        const count = lengths.length;
        const data = dataRegion.subarray(0, bytes.length);
        data.set(bytes);
        const lens = lensRegion.subarray(0, count);
        lens.set(lengths);
        const out = outRegion.subarray(0, count);
        out.fill(0xdead);
        core.crc32cBatch(data, stride, lens, out);
        assert.deepEqual(Array.from(out), Array.from(crc32cBatchJs(bytes, stride, lens)));
      }),
      { numRuns: RUNS },
    );
  });

  it("batch: refuses long lengths, short data, mismatched or overlapping out", () => {
    const data = core.allocBytes(4 * 64).view;
    const lens = core.allocU32(4).view;
    const out = core.allocU32(4).view;
    lens.set([10, 64, 0, 65]);
    throwsCode(
      () => core.crc32cBatch(data, 64, lens, out),
      ValidationError,
      ErrorCode.InvalidArgument,
    );
    lens[3] = 1;
    throwsCode(
      () => core.crc32cBatch(data.subarray(1), 64, lens, out),
      ValidationError,
      ErrorCode.LengthMismatch,
    );
    throwsCode(
      () => core.crc32cBatch(data, 64, lens, out.subarray(1)),
      ValidationError,
      ErrorCode.LengthMismatch,
    );
    const inside = new Uint32Array(data.buffer, data.byteOffset, 4);
    throwsCode(() => core.crc32cBatch(data, 64, lens, inside), MemoryViewError, ErrorCode.Overlap);
    assert.deepEqual(
      Array.from(core.crc32cBatch(data, 64, lens, out)),
      Array.from(crc32cBatchJs(data, 64, lens)),
    );
  });
});

describe("SIMD core: typed errors", () => {
  it("refuses views outside its memory or inside the module's static data", async () => {
    const other = await SimdCore.create({ initialPages: 1, maximumPages: 1 });
    const cases: Array<[string, Float32Array]> = [
      ["plain array", new Float32Array(8)],
      ["SharedArrayBuffer", new Float32Array(new SharedArrayBuffer(64))],
      ["another core's memory", other.allocF32(8).view],
      ["static data", new Float32Array(core.memory.buffer, 0, 8)],
    ];
    for (const [, view] of cases) {
      throwsCode(() => core.scale(view, 2), MemoryViewError, ErrorCode.ForeignMemory);
      throwsCode(() => core.sum(view), MemoryViewError, ErrorCode.ForeignMemory);
    }
    throwsCode(() => core.viewF32(0, 4), MemoryViewError, ErrorCode.ForeignMemory);
    throwsCode(
      () => core.viewU8(core.memory.buffer.byteLength - 2, 4),
      MemoryViewError,
      ErrorCode.ForeignMemory,
    );
  });

  it("refuses misaligned addresses and alignments", () => {
    const { ptr } = core.allocF32(8);
    throwsCode(() => core.viewF32(ptr + 2, 4), MemoryViewError, ErrorCode.Misaligned);
    throwsCode(() => core.viewU32(ptr + 1, 4), MemoryViewError, ErrorCode.Misaligned);
    throwsCode(() => core.alloc(16, 24), ValidationError, ErrorCode.Misaligned);
    assert.equal(core.alloc(16, 4096) % 4096, 0);
  });

  it("refuses mismatched lengths", () => {
    const a = core.allocF32(16).view;
    const b = core.allocF32(17).view;
    const grid = core.allocF32(12).view;
    const out = core.allocF32(12).view;
    throwsCode(() => core.add(a, a, b), ValidationError, ErrorCode.LengthMismatch);
    throwsCode(() => core.add(b, a, a), ValidationError, ErrorCode.LengthMismatch);
    throwsCode(() => core.saxpy(a, b, 1), ValidationError, ErrorCode.LengthMismatch);
    throwsCode(() => core.dot(a, b), ValidationError, ErrorCode.LengthMismatch);
    throwsCode(
      () => core.stencil5(grid, out, 4, 4, 0.1),
      ValidationError,
      ErrorCode.LengthMismatch,
    );
  });

  it("refuses partly overlapping views where they must be identical or disjoint", () => {
    const buf = core.allocF32(64).view;
    const a = buf.subarray(0, 32), shifted = buf.subarray(1, 33), b = buf.subarray(32, 64);
    const other = core.allocF32(32).view;
    throwsCode(() => core.add(shifted, a, b), MemoryViewError, ErrorCode.Overlap);
    throwsCode(() => core.saxpy(shifted, a, 1), MemoryViewError, ErrorCode.Overlap);
    throwsCode(() => core.stencil5(a, a, 8, 4, 0.1), MemoryViewError, ErrorCode.Overlap);
    throwsCode(() => core.add(a, a, shifted), MemoryViewError, ErrorCode.Overlap);
    core.add(other, a, shifted); // inputs may overlap each other: only dst matters
    core.saxpy(a, a, 2); // identical is fine
  });

  it("reports an exhausted arena with OutOfMemoryError and leaves the arena usable", async () => {
    const small = await SimdCore.create({ initialPages: 1, maximumPages: 2 });
    const used = small.arenaUsed;
    throwsCode(() => small.alloc(3 * 65536), OutOfMemoryError, ErrorCode.OutOfMemory);
    assert.equal(small.arenaUsed, used);
    const v = small.allocF32(1000).view;
    v.fill(2);
    assert.equal(small.sum(v), 2000);
  });

  it("refuses a memory that is not shared", async () => {
    await assert.rejects(
      SimdCore.create({ memory: new WebAssembly.Memory({ initial: 1, maximum: 2 }) }),
      (e: unknown) => e instanceof ValidationError && e.code === ErrorCode.InvalidArgument,
    );
  });

  it("names the missing feature when the runtime lacks SIMD", () => {
    assert.deepEqual(detectWasmFeatures(), { simd: true, threads: true });
    const bytes = new Uint8Array(
      readFileSync(new URL("../../wasm/ringkernel_core.wasm", import.meta.url)),
    );
    assertWasmSupport(bytes);
    const wasm = WebAssembly as unknown as { validate: (b: BufferSource) => boolean };
    const real = wasm.validate;
    // Pretend to be an engine without SIMD: any module containing the 0xfd prefix fails.
    wasm.validate = (b) => !new Uint8Array(b as ArrayBuffer).includes(0xfd) && real(b);
    try {
      assert.deepEqual(detectWasmFeatures(), { simd: false, threads: true });
      assert.throws(
        () => assertWasmSupport(bytes),
        (e: unknown) =>
          e instanceof WasmUnsupportedError && e.code === ErrorCode.WasmUnsupported &&
          /SIMD/.test(e.message) && !/threads/.test(e.message),
      );
    } finally {
      wasm.validate = real;
    }
  });
});

describe("SIMD core: shared memory", () => {
  it("views made before the memory grew stay usable", async () => {
    const c = await SimdCore.create({ initialPages: 1, maximumPages: 64 });
    const before = c.allocF32(100).view;
    before.fill(1);
    const pages = c.memory.buffer.byteLength / 65536;
    const after = c.allocF32(300_000).view; // forces a grow
    after.fill(2);
    assert.ok(c.memory.buffer.byteLength / 65536 > pages);
    assert.notEqual(before.buffer, c.memory.buffer);
    c.scale(before, 3);
    assert.equal(c.sum(before), 300);
    assert.equal(c.sum(after), 600_000);
  });

  it("two workers instantiate the module over one memory and run kernels concurrently", async () => {
    const module = await loadSimdModule();
    // A fresh memory nobody has instantiated yet: the workers race for the module's one-time
    // data initialisation and for the arena header as well as for arena allocations.
    const memory = createSharedMemory(16, 1024);
    const control = new SharedArrayBuffer(8);
    const ctl = new Int32Array(control);
    const n = 50_003, iterations = 40, scratch = 200;
    const jobs: SimdWorkerJob[] = [11, 23].map((seed) => ({
      share: { module, memory },
      control,
      seed,
      n,
      iterations,
      scratch,
    }));
    const workers: Worker[] = [];
    try {
      const replies = jobs.map((job) => {
        const w = new Worker(new URL("../fixtures/simd_worker.ts", import.meta.url), {
          type: "module",
        });
        workers.push(w);
        return new Promise<SimdWorkerReport>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error("SIMD worker timed out")), 60_000);
          w.onmessage = (e: MessageEvent<SimdWorkerReport>) => {
            clearTimeout(timer);
            resolve(e.data);
          };
          w.onerror = (e: ErrorEvent) => {
            clearTimeout(timer);
            e.preventDefault();
            reject(new Error(`SIMD worker failed: ${e.message}`));
          };
          w.postMessage(job);
        });
      });
      while (Atomics.load(ctl, 1) < jobs.length) await new Promise((r) => setTimeout(r, 5));
      Atomics.store(ctl, 0, 1);
      Atomics.notify(ctl, 0);
      const reports = await Promise.all(replies);
      for (const r of reports) assert.equal(r.error, undefined, r.error);

      const main = await SimdCore.create({ module, memory });
      // Every allocation of both workers lies in the arena and no two overlap.
      const spans = reports.flatMap((r) => r.allocations).sort((a, b) => a[0] - b[0]);
      assert.equal(spans.length, 2 * (scratch + 2));
      assert.ok(spans[0][0] >= main.arenaStart);
      for (let i = 1; i < spans.length; i++) {
        assert.ok(spans[i - 1][0] + spans[i - 1][1] <= spans[i][0], `allocations ${i - 1}, ${i}`);
      }
      assert.ok(main.arenaUsed >= spans.reduce((s, [, len]) => s + len, 0));

      // Replay each worker's kernel sequence with the JS oracle and compare the memory exactly.
      reports.forEach((r, w) => {
        const x = new Float32Array(n), y = new Float32Array(n);
        fillSeeded(x, jobs[w].seed);
        fillSeeded(y, jobs[w].seed + 1);
        for (let k = 0; k < iterations; k++) {
          saxpyJs(y, x, 0.5);
          scaleJs(x, SCALES[k & 1]);
          addJs(y, y, x);
        }
        const wx = main.viewF32(r.xPtr, n), wy = main.viewF32(r.yPtr, n);
        assertSameF32(wx, x, `worker ${w} x`);
        assertSameF32(wy, y, `worker ${w} y`);
        assert.equal(r.dot, main.dot(wx, wy));
        assert.equal(r.sum, main.sum(wy));
        assert.equal(r.crc, crc32cJs(new Uint8Array(y.buffer)));
      });
      // The CRC tables were initialised once, correctly, whoever won the race.
      const check = main.allocBytes(9).view;
      check.set(new TextEncoder().encode("123456789"));
      assert.equal(main.crc32c(check), 0xe3069283);
    } finally {
      for (const w of workers) w.terminate();
    }
  });
});

describe("SIMD core: the committed module", () => {
  const root = fileURLToPath(new URL("../../", import.meta.url));
  const committed = join(root, "wasm", "ringkernel_core.wasm");

  it("imports only a shared env.memory and exports the raw kernels", () => {
    const m = new WebAssembly.Module(readFileSync(committed));
    assert.deepEqual(WebAssembly.Module.imports(m), [
      { module: "env", name: "memory", kind: "memory" },
    ]);
    const names = WebAssembly.Module.exports(m).map((e) => e.name).sort();
    for (
      const f of [
        "crc32c",
        "crc32c_batch",
        "f32_add",
        "f32_dot",
        "f32_saxpy",
        "f32_scale",
        "f32_sum",
        "stencil5_f32",
      ]
    ) assert.ok(names.includes(f), f);
  });

  /** Why a rebuild cannot run here, or "" when it can. */
  function rebuildSkipReason(): string {
    const rustc = "/usr/bin/rustc";
    if (!existsSync(rustc)) return `${rustc} not installed (Debian: rustc libstd-rust-dev-wasm32)`;
    const sysroot = spawnSync(rustc, ["--print", "sysroot"], { encoding: "utf8" });
    const lib = join(sysroot.stdout.trim(), "lib/rustlib/wasm32-unknown-unknown/lib");
    if (sysroot.status !== 0 || !existsSync(lib)) {
      return `${rustc} has no wasm32-unknown-unknown target (Debian: libstd-rust-dev-wasm32)`;
    }
    return "";
  }
  const skip = rebuildSkipReason();

  it(
    "equals a fresh build from wasm/src byte for byte (CI fails here if it was not rebuilt)",
    { skip: skip || false },
    () => {
      const dir = mkdtempSync(join(tmpdir(), "rk-wasm-"));
      try {
        const out = join(dir, "ringkernel_core.wasm");
        const r = spawnSync("bash", [join(root, "wasm", "build.sh"), out], { encoding: "utf8" });
        assert.equal(r.status, 0, `wasm/build.sh failed:\n${r.stdout}${r.stderr}`);
        const fresh = readFileSync(out);
        assert.ok(
          Buffer.compare(fresh, readFileSync(committed)) === 0,
          "wasm/ringkernel_core.wasm differs from a fresh build of wasm/src: run wasm/build.sh " +
            `and commit the result (${r.stdout.trim()})`,
        );
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );
});
