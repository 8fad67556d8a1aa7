// The DSL's JS path (src/dsl/js.ts): index intrinsics, grid bounds, shared arrays, barrier
// kernels through the generator transform, stencils and handlers, and the corpus against
// independent plain-JS references.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { ErrorCode, InvalidStateError, ValidationError } from "../../src/core/errors.ts";
import { bulkKernel, deviceFunction, stencilKernel } from "../../src/dsl/define.ts";
import {
  atomicAdd,
  barrier,
  blockDim,
  blockIdx,
  gridDim,
  sharedArray,
  threadIdx,
} from "../../src/dsl/intrinsics.ts";
import {
  runHandlerJs,
  runJs,
  runStencilJs,
  stencilBufferLength,
  type StencilSize,
} from "../../src/dsl/js.ts";
import {
  type ArgValue,
  blockReduce,
  corpus,
  type CorpusCase,
  dslAccumulator,
  dslCounter,
  dslForwarder,
  dslSubword,
  heat2d,
  makeRand,
  mismatch,
  saxpy,
  Stamped,
} from "./corpus.ts";

function isCode(code: string, type: typeof ValidationError | typeof InvalidStateError) {
  return (e: unknown) => e instanceof type && e.code === code;
}

const invalidArgument = isCode(ErrorCode.InvalidArgument, ValidationError);

// ---------------------------------------------------------------------------------------------
// Bulk kernels

/** Records every index intrinsic of every thread into `out`, 8 words per global thread. */
const indices = bulkKernel(
  { name: "indices", params: ["i32[]"], workgroupSize: [4, 2, 2] },
  (out) => {
    const block = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
    const local = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
    const g = block * blockDim.x * blockDim.y * blockDim.z + local;
    out[g * 8] = threadIdx.x;
    out[g * 8 + 1] = threadIdx.y;
    out[g * 8 + 2] = threadIdx.z;
    out[g * 8 + 3] = blockIdx.x;
    out[g * 8 + 4] = blockIdx.y;
    out[g * 8 + 5] = blockIdx.z;
    out[g * 8 + 6] = blockDim.x * 100 + blockDim.y * 10 + blockDim.z;
    out[g * 8 + 7] = gridDim.x * 100 + gridDim.y * 10 + gridDim.z;
  },
);

/** Counts the threads of each block in shared memory; the block's last thread reports. */
const sharedCount = bulkKernel(
  { name: "shared_count", params: ["u32[]", "f32[]"], workgroupSize: 16 },
  (counts, marks) => {
    const count = sharedArray("u32", 1);
    const mark = sharedArray("f32", 4);
    atomicAdd(count, 0, 1);
    mark[threadIdx.x % 4] += 1;
    if (threadIdx.x === blockDim.x - 1) {
      counts[blockIdx.x] = count[0];
      marks[blockIdx.x] = mark[0] + mark[1] * 10;
    }
  },
);

/** Returns early before a barrier: a divergent barrier. */
const divergent = bulkKernel(
  { name: "divergent", params: ["f32[]", "i32"], workgroupSize: 8 },
  (x, n) => {
    const i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const tile = sharedArray("f32", 8);
    tile[threadIdx.x] = x[i];
    barrier();
    x[i] = tile[(threadIdx.x + 1) % 8];
  },
);

const twice = deviceFunction({ name: "twice", params: ["f32"], returns: "f32" }, (v) => v * 2);

/** A function-expression kernel with a barrier, a device function and a shared array. */
const rotate = bulkKernel(
  { name: "rotate", params: ["f32[]", "f32[]"], workgroupSize: 8, uses: [twice] },
  function (x, out) {
    const tile = sharedArray("f32", 8);
    const t = threadIdx.x;
    tile[t] = x[blockIdx.x * blockDim.x + t];
    barrier();
    out[blockIdx.x * blockDim.x + t] = twice(tile[(t + 1) % blockDim.x]);
  },
);

/** Method shorthand, as `toString()` gives it for `{ swap(x) { ... } }.swap`: a barrier kernel. */
const methods = {
  swap(x: Int32Array) {
    const tile = sharedArray("i32", 4);
    tile[threadIdx.x] = x[blockIdx.x * 4 + threadIdx.x];
    barrier();
    x[blockIdx.x * 4 + threadIdx.x] = tile[3 - threadIdx.x];
  },
};
const swap = bulkKernel({ name: "swap", params: ["i32[]"], workgroupSize: 4 }, methods.swap);

/** Writes its f32 scalar into an f64 array (shows the scalar's f32 rounding). */
const echo = bulkKernel(
  { name: "echo", params: ["f64[]", "f32", "f64", "u32", "bool"], workgroupSize: 1 },
  (out, a, b, c, flag) => {
    out[0] = a;
    out[1] = b;
    out[2] = c;
    out[3] = flag ? 1 : 0;
  },
);

describe("runJs", () => {
  it("sets threadIdx/blockIdx/blockDim/gridDim for every thread of a 3D grid", () => {
    const grid = [3, 2, 2] as const;
    const threads = 3 * 2 * 2 * 16;
    const out = new Int32Array(threads * 8).fill(-1);
    runJs(indices, { grid }, out);
    for (let g = 0; g < threads; g++) {
      const local = g % 16;
      const block = Math.floor(g / 16);
      assert.deepEqual([...out.subarray(g * 8, g * 8 + 8)], [
        local % 4,
        Math.floor(local / 4) % 2,
        Math.floor(local / 8),
        block % 3,
        Math.floor(block / 3) % 2,
        Math.floor(block / 6),
        422,
        322,
      ]);
    }
    // Reset afterwards, so a stray call outside the runner sees defaults and throws for shared.
    assert.deepEqual({ ...threadIdx }, { x: 0, y: 0, z: 0 });
    assert.deepEqual({ ...blockDim }, { x: 1, y: 1, z: 1 });
    assert.throws(() => sharedArray("f32", 4), InvalidStateError);
    assert.throws(() => barrier(), InvalidStateError);
  });

  it("leaves elements past n alone (grid bounds by the kernel's own check)", () => {
    const x = new Float32Array(200).fill(1);
    const y = new Float32Array(200).fill(5);
    runJs(saxpy, { grid: 3 }, 2, x, y, 130); // 192 threads, 130 in bounds
    assert.ok(y.subarray(0, 130).every((v) => v === 7));
    assert.ok(y.subarray(130).every((v) => v === 5));
  });

  it("hands each block fresh zeroed shared arrays, one per declaration", () => {
    const counts = new Uint32Array(5);
    const marks = new Float32Array(5);
    runJs(sharedCount, { grid: 5 }, counts, marks);
    assert.deepEqual([...counts], [16, 16, 16, 16, 16]);
    assert.deepEqual([...marks], [44, 44, 44, 44, 44]);
  });

  it("the barrier reduction matches a plain per-block sum", () => {
    fc.assert(
      fc.property(
        fc.array(fc.float({ min: -100, max: 100, noNaN: true }), { minLength: 1, maxLength: 500 }),
        (values) => {
          const x = Float32Array.from(values);
          const blocks = Math.ceil(x.length / 64);
          const partial = new Float32Array(blocks);
          runJs(blockReduce, { grid: blocks }, x, partial, x.length);
          for (let b = 0; b < blocks; b++) {
            let s = 0;
            for (let i = b * 64; i < Math.min(x.length, b * 64 + 64); i++) s += x[i];
            const m = mismatch(partial[b], s, { abs: 1e-3, rel: 1e-5, why: "" });
            assert.equal(m, undefined, `block ${b}: ${m}`);
          }
        },
      ),
      { numRuns: 50, seed: 42 },
    );
  });

  it("runs function-expression kernels with barriers, shared arrays and device functions", () => {
    const x = Float32Array.from({ length: 24 }, (_, i) => i);
    const out = new Float32Array(24);
    runJs(rotate, { grid: 3 }, x, out);
    for (let i = 0; i < 24; i++) {
      const b = Math.floor(i / 8);
      assert.equal(out[i], 2 * (b * 8 + ((i % 8) + 1) % 8));
    }
  });

  it("runs method-shorthand barrier kernels", () => {
    const x = Int32Array.from({ length: 8 }, (_, i) => i);
    runJs(swap, { grid: 2 }, x);
    assert.deepEqual([...x], [3, 2, 1, 0, 7, 6, 5, 4]);
  });

  it("throws a divergent-barrier error when some threads return before a barrier", () => {
    const x = new Float32Array(16);
    runJs(divergent, { grid: 2 }, x, 16); // every thread reaches the barrier: fine
    assert.throws(
      () => runJs(divergent, { grid: 2 }, x, 12),
      (e: unknown) =>
        e instanceof InvalidStateError && e.code === ErrorCode.InvalidState &&
        /divergent barrier in block \(1,0,0\)/.test(e.message) && /\(4,0,0\)/.test(e.message),
    );
  });

  it("rounds f32 scalars to f32 and passes the others unchanged", () => {
    const out = new Float64Array(4);
    runJs(echo, { grid: 1 }, out, 0.1, 0.1, 4_000_000_000, true);
    assert.deepEqual([...out], [Math.fround(0.1), 0.1, 4_000_000_000, 1]);
  });

  it("rejects bad launches and arguments with ValidationError", () => {
    const x = new Float32Array(4);
    const y = new Float32Array(4);
    for (const grid of [0, 1.5, -1, [2, 0], [1, 1, 1.5], Number.NaN]) {
      assert.throws(
        () => runJs(saxpy, { grid: grid as number }, 1, x, y, 4),
        invalidArgument,
        String(grid),
      );
    }
    const call = (...args: unknown[]) => () =>
      runJs(saxpy, { grid: 1 }, ...(args as [number, Float32Array, Float32Array, number]));
    assert.throws(call(1, x, y), invalidArgument); // too few
    assert.throws(call(1, x, y, 4, 5), invalidArgument); // too many
    assert.throws(call(1, new Int32Array(4), y, 4), invalidArgument);
    assert.throws(call(1, x, y, 4.5), invalidArgument);
    assert.throws(call(1, x, y, 2 ** 31), invalidArgument);
    assert.throws(call("1", x, y, 4), invalidArgument);
    assert.throws(
      () => runJs(echo, { grid: 1 }, new Float64Array(4), 1, 1, -1, true),
      invalidArgument,
    );
    assert.throws(
      () => runJs(echo, { grid: 1 }, new Float64Array(4), 1, 1, 1, 1 as unknown as boolean),
      invalidArgument,
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Stencils

/** Records the thread and block of each interior cell. */
const whoRuns = stencilKernel(
  { name: "who_runs", grid: "2d", tile: [4, 2], params: ["i32[]"] },
  (pos, out) => {
    out[pos.idx] = 1000 + blockIdx.x * 100 + blockIdx.y * 10 + threadIdx.x + threadIdx.y * 4;
  },
);

/** Reads its own cell of a 3D grid (the index must include the halo plane even at depth 1). */
const copy3d = stencilKernel(
  { name: "copy_3d", grid: "3d", tile: [2, 2, 2], params: ["f32[]", "f32[]"] },
  (pos, src, dst) => {
    dst[pos.idx] = src[pos.idx] + pos.z * 100;
  },
);

describe("runStencilJs", () => {
  it("computes a 5-point heat step on a 3×2 grid, halo untouched", () => {
    const size = { width: 3, height: 2 };
    const len = stencilBufferLength(heat2d, size); // 5 × 4
    assert.equal(len, 20);
    const u = Float32Array.from({ length: len }, (_, i) => i);
    const out = new Float32Array(len).fill(-1);
    runStencilJs(heat2d, size, u, out, 0.5);
    const expected = new Float32Array(len).fill(-1);
    for (let y = 0; y < 2; y++) {
      for (let x = 0; x < 3; x++) {
        const i = (y + 1) * 5 + x + 1;
        // Linear data: the Laplacian of i is zero, so the step keeps the value.
        expected[i] = u[i] + 0.5 * (u[i - 5] + u[i + 5] + u[i - 1] + u[i + 1] - 4 * u[i]);
      }
    }
    assert.deepEqual([...out], [...expected]);
  });

  it("runs each interior cell once, as thread (x % tile, y % tile) of its tile", () => {
    const size = { width: 6, height: 3 };
    const out = new Int32Array(stencilBufferLength(whoRuns, size));
    runStencilJs(whoRuns, size, out);
    for (let y = -1; y <= 3; y++) {
      for (let x = -1; x <= 6; x++) {
        const v = out[(y + 1) * 8 + x + 1];
        const interior = x >= 0 && x < 6 && y >= 0 && y < 3;
        const want = interior
          ? 1000 + Math.floor(x / 4) * 100 + Math.floor(y / 2) * 10 + (x % 4) + (y % 2) * 4
          : 0;
        assert.equal(v, want, `(${x}, ${y})`);
      }
    }
  });

  it("indexes 3D grids with halo planes, depth 1 included", () => {
    for (const depth of [1, 3]) {
      const size = { width: 3, height: 2, depth };
      const len = stencilBufferLength(copy3d, size);
      assert.equal(len, 5 * 4 * (depth + 2));
      const src = Float32Array.from({ length: len }, (_, i) => i);
      const dst = new Float32Array(len);
      runStencilJs(copy3d, size, src, dst);
      for (let z = 0; z < depth; z++) {
        for (let y = 0; y < 2; y++) {
          for (let x = 0; x < 3; x++) {
            const i = (z + 1) * 20 + (y + 1) * 5 + x + 1;
            assert.equal(dst[i], i + z * 100);
          }
        }
      }
      const touched = dst.reduce((n, v) => n + (v !== 0 ? 1 : 0), 0);
      assert.equal(touched, 3 * 2 * depth);
    }
  });

  it("rejects bad sizes and arguments", () => {
    const u = new Float32Array(100);
    const sizes: StencilSize[] = [
      { width: 0, height: 2 },
      { width: 2.5, height: 2 },
      { width: 2, height: 2, depth: 2 }, // depth on a 2D stencil
    ];
    for (const size of sizes) {
      assert.throws(() => runStencilJs(heat2d, size, u, u, 0.1), invalidArgument);
    }
    assert.throws(
      () => runStencilJs(heat2d, { width: 2, height: 2 }, u, 0.1 as unknown as Float32Array, 0.1),
      invalidArgument,
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Handlers

describe("runHandlerJs", () => {
  it("keeps state between messages and decodes replies (f32-rounded)", () => {
    const r = runHandlerJs(dslAccumulator, [{ value: 0.1 }, { value: 2 }, { value: -1 }]);
    const t1 = Math.fround(0.1);
    const t2 = Math.fround(t1 + 2);
    const t3 = Math.fround(t2 - 1);
    assert.deepEqual(r.replies, [
      { total: t1, count: 1 },
      { total: t2, count: 2 },
      { total: t3, count: 3 },
    ]);
    assert.deepEqual(r.state, { total: t3, count: 3 });
    assert.deepEqual(r.sends, []);
    assert.equal(r.sendCount, 0);
  });

  it("starts from initialState and gives undefined for messages without a reply", () => {
    const r = runHandlerJs(dslCounter, [
      { op: 0, amount: 5 },
      { op: 9, amount: 1 },
      { op: 1, amount: 2 },
      { op: 3, amount: 0 },
    ], { initialState: { value: 10, resets: 4 } });
    assert.deepEqual(r.replies, [
      { value: 15, resets: 4 },
      undefined,
      { value: 13, resets: 4 },
      { value: 0, resets: 5 },
    ]);
    assert.deepEqual(r.state, { value: 0, resets: 5 });
  });

  it("reads and writes sub-word and array fields through real views", () => {
    const r = runHandlerJs(dslSubword, [
      { kind: 200, level: 60000, urgent: false, vals: [1, 2, 3, 4] },
      { kind: 7, level: 3, urgent: true, vals: [0.5, 0, 0, -4] },
    ]);
    assert.deepEqual(r.replies, [
      { kind: 200, urgent: true, total: 10, level: 60000 },
      { kind: 7, urgent: false, total: -3.5, level: 3 },
    ]);
    assert.deepEqual(r.state, {
      seen: 2,
      maxLevel: 60000,
      anyUrgent: true,
      lastKind: 7,
      sums: [1.5, 2, 3, 0],
    });
  });

  it("ticks the HLC word per now() (logical carries into physical) and records sends", () => {
    const start = (5n << 16n) | 0xfffen;
    const r = runHandlerJs(
      dslForwarder,
      [{ value: 1 }, { value: -1 }, { value: 2 }, { value: 3 }, { value: 4 }],
      { hlcStart: start, nodeId: 9, sendCapacity: 2 },
    );
    // Words start+1 .. start+5: logical 0xffff, then 0, 1, 2, 3 after the carry.
    assert.deepEqual(r.replies.map((x) => x && (x as { logical: number }).logical), [
      0xffff,
      0,
      1,
      2,
      3,
    ]);
    assert.equal(r.hlc, start + 5n);
    assert.equal(r.sendCount, 4); // the negative job sends nothing
    assert.deepEqual(r.sends, [
      { target: "sink", index: 0, message: { value: 2, logical: 0xffff, node: 9 } },
      { target: "sink", index: 2, message: { value: 4, logical: 1, node: 9 } },
    ]);
    assert.deepEqual(r.state, { sent: 4, lastLogical: 3 });
  });

  it("rejects bad options, and sends to undeclared destinations", () => {
    assert.throws(() => runHandlerJs(dslForwarder, [], { sendCapacity: -1 }), invalidArgument);
    assert.throws(() => runHandlerJs(dslForwarder, [], { nodeId: 2 ** 32 }), invalidArgument);
    assert.throws(() => runHandlerJs(dslForwarder, [], { hlcStart: -1n }), invalidArgument);
    const cheat = { ...dslForwarder, sends: { elsewhere: Stamped } };
    assert.throws(
      () => runHandlerJs(cheat, [{ value: 1 }]),
      isCode(ErrorCode.WrongMessageType, ValidationError),
    );
  });
});

// ---------------------------------------------------------------------------------------------
// The corpus against plain-JS references

type Reference = (args: ArgValue[]) => void;

function f32s(a: ArgValue): Float32Array {
  assert.ok(a instanceof Float32Array);
  return a;
}
function i32s(a: ArgValue): Int32Array {
  assert.ok(a instanceof Int32Array);
  return a;
}
function u32s(a: ArgValue): Uint32Array {
  assert.ok(a instanceof Uint32Array);
  return a;
}
function num(a: ArgValue): number {
  assert.equal(typeof a, "number");
  return a as number;
}

/** Padded index of interior cell (x, y[, z]) for halo h. */
function padded(size: StencilSize, h: number, x: number, y: number, z = -1): number {
  const row = size.width + 2 * h;
  const plane = row * (size.height + 2 * h);
  return (z < 0 ? 0 : (z + h) * plane) + (y + h) * row + x + h;
}

const bulkRefs: Record<string, Reference> = {
  "saxpy": ([a, x, y, n]) => {
    for (let i = 0; i < num(n); i++) f32s(y)[i] = num(a) * f32s(x)[i] + f32s(y)[i];
  },
  "u32 bit ops and >>>": ([a, b, out, n]) => {
    for (let i = 0; i < num(n); i++) {
      const x = u32s(a)[i];
      const y = u32s(b)[i];
      const shifted = Number((BigInt(x) << BigInt(y & 15)) & 0xffffffffn) >>> 4;
      u32s(out)[i] = ((x & y) ^ (x | 255)) ^ shifted ^ ((~y >>> 0) >>> 28);
    }
  },
  "integer division and remainder": ([a, b, ua, ub, out, uout, n]) => {
    for (let i = 0; i < num(n); i++) {
      const q = Math.trunc(i32s(a)[i] / i32s(b)[i]);
      const r = i32s(a)[i] - q * i32s(b)[i];
      i32s(out)[i] = q * 100 + r;
      const uq = Math.floor(u32s(ua)[i] / u32s(ub)[i]);
      u32s(uout)[i] = uq + (u32s(ua)[i] - uq * u32s(ub)[i]);
    }
  },
  "histogram": ([values, hist, n]) => {
    for (let i = 0; i < num(n); i++) {
      const v = u32s(values)[i];
      u32s(hist)[v & 15]++;
      u32s(hist)[16 + Math.floor(v / 2 ** 28)]++;
    }
  },
  "compareExchange max and a ticket counter": ([data, best, tickets, n]) => {
    for (let i = 0; i < num(n); i++) {
      i32s(best)[0] = Math.max(i32s(best)[0], i32s(data)[i]);
      if (i32s(data)[i] % 3 === 0) u32s(tickets)[0]++;
    }
  },
  "while: Collatz steps": ([seeds, steps, n]) => {
    for (let i = 0; i < num(n); i++) {
      let v = i32s(seeds)[i];
      let c = 0;
      for (; v !== 1 && c < 1000; c++) v = v % 2 === 0 ? v / 2 : 3 * v + 1;
      i32s(steps)[i] = c;
    }
  },
  "prefix sum over a row": ([m, out, cols, rows]) => {
    for (let r = 0; r < num(rows); r++) {
      let run = 0;
      for (let c = 0; c < num(cols); c++) {
        run += i32s(m)[r * num(cols) + c];
        i32s(out)[r * num(cols) + c] = run;
      }
    }
  },
  "switch with grouped labels and default": ([ops, a, b, out, n]) => {
    const fns: ((x: number, y: number) => number)[] = [
      (x, y) => x + y,
      (x, y) => x - y,
      (x, y) => x - y,
      (x, y) => x * y,
    ];
    for (let i = 0; i < num(n); i++) {
      const f = fns[i32s(ops)[i]];
      f32s(out)[i] = f === undefined ? -f32s(a)[i] : f(f32s(a)[i], f32s(b)[i]);
    }
  },
  "match() and ternaries": ([ops, a, b, out, negate, n]) => {
    for (let i = 0; i < num(n); i++) {
      const x = f32s(a)[i];
      const y = f32s(b)[i];
      const op = i32s(ops)[i];
      const m = [x * 2, x + y, Math.abs(y)][op] ?? 0;
      f32s(out)[i] = (negate ? -m : m) + Math.max(x, y) + (op > 1 && x < 0 ? 1 : 0);
    }
  },
  "shared-memory block reduction with barrier()": ([x, partial, n]) => {
    for (let i = 0; i < num(n); i++) f32s(partial)[Math.floor(i / 64)] += f32s(x)[i];
  },
};

const stencilRefs: Record<string, (size: StencilSize, args: ArgValue[]) => void> = {
  "2D heat step (5-point)": (size, [u, out, alpha]) => {
    for (let y = 0; y < size.height; y++) {
      for (let x = 0; x < size.width; x++) {
        const at = (dx: number, dy: number) => f32s(u)[padded(size, 1, x + dx, y + dy)];
        const lap = at(0, -1) + at(0, 1) + at(1, 0) + at(-1, 0) - 4 * at(0, 0);
        f32s(out)[padded(size, 1, x, y)] = at(0, 0) + num(alpha) * lap;
      }
    }
  },
  "2D 4th-order Laplacian (halo 2)": (size, [u, out]) => {
    for (let y = 0; y < size.height; y++) {
      for (let x = 0; x < size.width; x++) {
        const at = (dx: number, dy: number) => f32s(u)[padded(size, 2, x + dx, y + dy)];
        let s = -60 * at(0, 0);
        for (const [d, w] of [[1, 16], [2, -1]]) {
          s += w * (at(d, 0) + at(-d, 0) + at(0, d) + at(0, -d));
        }
        f32s(out)[padded(size, 2, x, y)] = s / 12;
      }
    }
  },
  "3D heat step (7-point, up/down)": (size, [u, out, alpha]) => {
    for (let z = 0; z < (size.depth ?? 1); z++) {
      for (let y = 0; y < size.height; y++) {
        for (let x = 0; x < size.width; x++) {
          const at = (dx: number, dy: number, dz: number) =>
            f32s(u)[padded(size, 1, x + dx, y + dy, z + dz)];
          const lap = at(1, 0, 0) + at(-1, 0, 0) + at(0, 1, 0) + at(0, -1, 0) + at(0, 0, 1) +
            at(0, 0, -1) - 6 * at(0, 0, 0);
          f32s(out)[padded(size, 1, x, y, z)] = at(0, 0, 0) + num(alpha) * lap;
        }
      }
    }
  },
};

interface HandlerRef {
  replies: (object | undefined)[];
  state: object;
}

const handlerRefs: Record<string, (messages: object[], initial?: object) => HandlerRef> = {
  "accumulator handler (state + reply)": (messages) => {
    let total = 0;
    let count = 0;
    const replies = (messages as { value: number }[]).map((m) => {
      total = Math.fround(total + Math.fround(m.value));
      count++;
      return { total, count };
    });
    return { replies, state: { total, count } };
  },
  "counter handler (switch on op, no reply for unknown ops)": (messages, initial) => {
    let { value, resets } = initial as { value: number; resets: number };
    const replies = (messages as { op: number; amount: number }[]).map((m) => {
      if (m.op > 3) return undefined;
      if (m.op === 0) value += m.amount;
      else if (m.op === 1) value -= m.amount;
      else [value, resets] = [0, resets + 1];
      return { value, resets };
    });
    return { replies, state: { value, resets } };
  },
};

/** Where a reference sums in another order than the kernel, the agreement it can expect. */
const refTolerance: Record<string, { abs: number; rel: number; why: string }> = {
  "shared-memory block reduction with barrier()": {
    abs: 1e-4,
    rel: 1e-5,
    why: "a tree sum of 64 f32 values against a sequential one: log2(64) roundings of partials",
  },
};

function runCaseJs(c: CorpusCase, seed: number): { actual: unknown; expected: unknown } {
  const rand = makeRand(seed);
  if (c.kind === "bulk") {
    const { grid, args } = c.make(rand);
    const { args: refArgs } = c.make(makeRand(seed));
    runJs(c.kernel, { grid }, ...args);
    bulkRefs[c.name](refArgs);
    return { actual: c.outputs.map((i) => args[i]), expected: c.outputs.map((i) => refArgs[i]) };
  }
  if (c.kind === "stencil") {
    const { size, args } = c.make(rand);
    const { args: refArgs } = c.make(makeRand(seed));
    runStencilJs(c.kernel, size, ...args);
    stencilRefs[c.name](size, refArgs);
    return { actual: c.outputs.map((i) => args[i]), expected: c.outputs.map((i) => refArgs[i]) };
  }
  const { messages, options } = c.make(rand);
  const r = runHandlerJs(c.kernel, messages, options);
  const ref = handlerRefs[c.name](messages, options?.initialState);
  return { actual: { replies: r.replies, state: r.state }, expected: ref };
}

describe("the corpus", () => {
  it("has at least 24 cases with unique names and stated tolerances", () => {
    assert.ok(corpus.length >= 24, `${corpus.length} cases`);
    assert.equal(new Set(corpus.map((c) => c.name)).size, corpus.length);
    for (const c of corpus) assert.ok(c.tolerance.why.length > 0, c.name);
  });

  for (const c of corpus) {
    it(`${c.name}: runs in JS, deterministically per seed`, () => {
      const once = (seed: number) => {
        const rand = makeRand(seed);
        if (c.kind === "bulk") {
          const { grid, args } = c.make(rand);
          runJs(c.kernel, { grid }, ...args);
          return c.outputs.map((i) => args[i]);
        }
        if (c.kind === "stencil") {
          const { size, args } = c.make(rand);
          runStencilJs(c.kernel, size, ...args);
          return c.outputs.map((i) => args[i]);
        }
        const { messages, options } = c.make(rand);
        return runHandlerJs(c.kernel, messages, options);
      };
      assert.deepEqual(once(7), once(7));
      assert.notDeepEqual(once(7), once(8));
    });
  }

  const referenced = corpus.filter((c) =>
    c.name in bulkRefs || c.name in stencilRefs || c.name in handlerRefs
  );

  it("has plain-JS references for at least 12 cases", () => {
    assert.ok(referenced.length >= 12, `${referenced.length} references`);
  });

  for (const c of referenced) {
    it(`${c.name}: JS run matches the plain-JS reference on 3 seeds`, () => {
      for (const seed of [1, 2, 3]) {
        const { actual, expected } = runCaseJs(c, seed);
        const m = mismatch(actual, expected, refTolerance[c.name] ?? c.tolerance);
        assert.equal(m, undefined, `seed ${seed}: ${m}`);
      }
    });
  }
});
