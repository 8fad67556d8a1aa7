// The DSL equivalence corpus: kernels written the way a user writes them, each with reproducible
// random inputs, the arguments whose contents are the kernel's result, and how closely two
// targets must agree on them. The same case runs as JS (the reference), as WGSL and as CUDA C.
// Handlers live here too, exported with `module: import.meta.url`, because a CPU kernel's worker
// imports its defining module.
import { array, defineMessage, type FieldsSpec, type InferFields } from "../../src/core/schema.ts";
import { defineKernel, type KernelDefinition } from "../../src/runtime/kernel.ts";
import {
  type BulkKernel,
  bulkKernel,
  deviceFunction,
  type ParamType,
  type ParamValue,
  type ParamValues,
  type StencilKernel,
  stencilKernel,
} from "../../src/dsl/define.ts";
import {
  atomicAdd,
  atomicCompareExchange,
  atomicMax,
  atomicMin,
  atomicSub,
  barrier,
  blockDim,
  blockIdx,
  clamp,
  f32,
  fma,
  gridDim,
  i32,
  match,
  rsqrt,
  sharedArray,
  threadIdx,
  u32,
  u64,
} from "../../src/dsl/intrinsics.ts";
import {
  type GridSize,
  type HandlerRunOptions,
  stencilBufferLength,
  type StencilSize,
} from "../../src/dsl/js.ts";

// ---------------------------------------------------------------------------------------------
// Case shapes

/** How closely two targets must agree: `|a - b| <= abs + rel * |b|`, and why this loose. */
export interface Tolerance {
  readonly abs: number;
  readonly rel: number;
  readonly why: string;
}

/** Any kernel argument value. */
export type ArgValue = ParamValue<ParamType>;

/** What a bulk case's `make` returns. */
export interface BulkInputs {
  readonly grid: GridSize;
  readonly args: ArgValue[];
}

/** What a stencil case's `make` returns. */
export interface StencilInputs {
  readonly size: StencilSize;
  readonly args: ArgValue[];
}

/** What a handler case's `make` returns. */
export interface HandlerInputs {
  readonly messages: InferFields<FieldsSpec>[];
  readonly options?: HandlerRunOptions;
}

/** A bulk kernel case: `outputs` are indexes into `args`. */
export interface BulkCase {
  readonly kind: "bulk";
  readonly name: string;
  readonly kernel: BulkKernel;
  make(rand: () => number): BulkInputs;
  readonly outputs: readonly number[];
  readonly tolerance: Tolerance;
}

/** A stencil case: `outputs` are indexes into `args`. */
export interface StencilCase {
  readonly kind: "stencil";
  readonly name: string;
  readonly kernel: StencilKernel;
  make(rand: () => number): StencilInputs;
  readonly outputs: readonly number[];
  readonly tolerance: Tolerance;
}

/** A handler case: `outputs` names the parts of the run's result to compare. */
export interface HandlerCase {
  readonly kind: "handler";
  readonly name: string;
  readonly kernel: KernelDefinition;
  make(rand: () => number): HandlerInputs;
  readonly outputs: readonly ("replies" | "state" | "sends" | "sendCount" | "hlc")[];
  readonly tolerance: Tolerance;
  /** GPU targets the case runs on (default both); others must refuse it with E_DSL_TARGET. */
  readonly targets?: readonly ("cuda" | "wgsl")[];
}

/** One corpus case. */
export type CorpusCase = BulkCase | StencilCase | HandlerCase;

// The generic builders type-check each case's arguments against its kernel's params, then erase
// the parameter types so that cases of different kernels fit one list.
function bulk<const P extends readonly ParamType[]>(c: {
  name: string;
  kernel: BulkKernel<P>;
  make(rand: () => number): { grid: GridSize; args: ParamValues<P> };
  outputs: readonly number[];
  tolerance: Tolerance;
}): BulkCase {
  return {
    kind: "bulk",
    name: c.name,
    kernel: c.kernel as unknown as BulkKernel,
    make: (rand) => {
      const { grid, args } = c.make(rand);
      return { grid, args: [...args] as ArgValue[] };
    },
    outputs: c.outputs,
    tolerance: c.tolerance,
  };
}

function stencil<const P extends readonly ParamType[]>(c: {
  name: string;
  kernel: StencilKernel<P>;
  make(rand: () => number): { size: StencilSize; args: ParamValues<P> };
  outputs: readonly number[];
  tolerance: Tolerance;
}): StencilCase {
  return {
    kind: "stencil",
    name: c.name,
    kernel: c.kernel as unknown as StencilKernel,
    make: (rand) => {
      const { size, args } = c.make(rand);
      return { size, args: [...args] as ArgValue[] };
    },
    outputs: c.outputs,
    tolerance: c.tolerance,
  };
}

function handler<I extends FieldsSpec, O extends FieldsSpec, S extends FieldsSpec>(c: {
  name: string;
  kernel: KernelDefinition<I, O, S>;
  make(rand: () => number): { messages: InferFields<I>[]; options?: HandlerRunOptions<S> };
  outputs: HandlerCase["outputs"];
  tolerance: Tolerance;
  targets?: HandlerCase["targets"];
}): HandlerCase {
  return {
    kind: "handler",
    name: c.name,
    kernel: c.kernel as unknown as KernelDefinition,
    make: (rand) => c.make(rand) as unknown as HandlerInputs,
    outputs: c.outputs,
    tolerance: c.tolerance,
    targets: c.targets,
  };
}

// ---------------------------------------------------------------------------------------------
// Inputs

/** A seeded PRNG (mulberry32): uniform in [0, 1), the same sequence on every runtime. */
export function makeRand(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `n` f32 values uniform in [lo, hi). */
export function floats(rand: () => number, n: number, lo: number, hi: number): Float32Array {
  return Float32Array.from({ length: n }, () => lo + (hi - lo) * rand());
}

/** `n` i32 values uniform in [lo, hi]. */
export function ints(rand: () => number, n: number, lo: number, hi: number): Int32Array {
  return Int32Array.from({ length: n }, () => lo + Math.floor((hi - lo + 1) * rand()));
}

/** `n` u32 values uniform over all 32 bits. */
export function uints(rand: () => number, n: number): Uint32Array {
  return Uint32Array.from({ length: n }, () => Math.floor(rand() * 4294967296));
}

/** Exact agreement: integer results. */
export const EXACT: Tolerance = {
  abs: 0,
  rel: 0,
  why: "integer arithmetic is exact on every target",
};
/** Plain f32 arithmetic. */
export const F32: Tolerance = {
  abs: 1e-6,
  rel: 1e-5,
  why: "JS keeps f32 locals in f64 and rounds at the store; a GPU rounds every operation",
};

// ---------------------------------------------------------------------------------------------
// Vector ops

/** y = a·x + y. */
export const saxpy = bulkKernel(
  { name: "saxpy", params: ["f32", "f32[]", "f32[]", "i32"], workgroupSize: 64 },
  (a, x, y, n) => {
    const i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a * x[i] + y[i];
  },
);

/** data *= s, with a compound assignment. */
export const scale = bulkKernel(
  { name: "scale", params: ["f32[]", "f32", "i32"] },
  (data, s, n) => {
    const i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    data[i] *= s;
  },
);

/** out = a + b over a 2D grid of blocks. */
export const vecAdd = bulkKernel(
  { name: "vec_add", params: ["f32[]", "f32[]", "f32[]", "i32"], workgroupSize: 32 },
  (a, b, out, n) => {
    const block = blockIdx.y * gridDim.x + blockIdx.x;
    const i = block * blockDim.x + threadIdx.x;
    if (i < n) out[i] = a[i] + b[i];
  },
);

/** clamp/abs/min/max. */
export const clampMinMax = bulkKernel(
  { name: "clamp_min_max", params: ["f32[]", "f32[]", "f32[]", "i32"], workgroupSize: 64 },
  (a, b, out, n) => {
    const i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const lo = Math.min(a[i], b[i]);
    const hi = Math.max(a[i], b[i]);
    out[i] = clamp(Math.abs(a[i]) - 0.5, 0, 1) + lo * hi - Math.abs(b[i]);
  },
);

/** sqrt/rsqrt/fma/floor/ceil. */
export const sqrtFma = bulkKernel(
  { name: "sqrt_fma", params: ["f32[]", "f32[]", "f32[]", "f32[]", "i32"], workgroupSize: 64 },
  (a, b, c, out, n) => {
    const i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const r = Math.sqrt(a[i]) + rsqrt(a[i]);
    out[i] = r + fma(a[i], b[i], c[i]) + Math.floor(b[i]) * 2 - Math.ceil(c[i]);
  },
);

/** exp/log/pow/sin/cos. */
export const transcendental = bulkKernel(
  { name: "transcendental", params: ["f32[]", "f32[]", "f32[]", "i32"], workgroupSize: 64 },
  (x, y, out, n) => {
    const i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const e = Math.exp(x[i]) + Math.log(y[i]);
    out[i] = e + Math.pow(y[i], x[i]) + Math.sin(x[i]) * Math.cos(y[i]);
  },
);

// ---------------------------------------------------------------------------------------------
// Casts and integer ops

/** Bit operations and shifts on u32, `>>>` included. */
export const bitsU32 = bulkKernel(
  { name: "bits_u32", params: ["u32[]", "u32[]", "u32[]", "i32"], workgroupSize: 64 },
  (a, b, out, n) => {
    const i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const x = a[i];
    const y = b[i];
    const s = y & 15;
    out[i] = ((x & y) ^ (x | 255)) ^ ((x << s) >>> 4) ^ (~y >>> 28);
  },
);

/** Arithmetic shifts on i32 and a u32 view of the bits. */
export const shiftsI32 = bulkKernel(
  { name: "shifts_i32", params: ["i32[]", "i32[]", "i32"], workgroupSize: 64 },
  (a, out, n) => {
    const i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const v = a[i];
    const hi = i32(u32(v) >>> 28);
    out[i] = (v >> 3) + (v << 2) - (v >> (i & 7)) + hi;
  },
);

/** Integer division and remainder, signed and unsigned. */
export const divMod = bulkKernel(
  {
    name: "div_mod",
    params: ["i32[]", "i32[]", "u32[]", "u32[]", "i32[]", "u32[]", "i32"],
    workgroupSize: 64,
  },
  (a, b, ua, ub, out, uout, n) => {
    const i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const q = i32(a[i] / b[i]);
    const r = a[i] % b[i];
    out[i] = q * 100 + r;
    uout[i] = u32(ua[i] / ub[i]) + (ua[i] % ub[i]);
  },
);

/** Conversions: f32 → i32 truncates toward zero, i32 → f32, u32 bits of a negative i32. */
export const casts = bulkKernel(
  { name: "casts", params: ["f32[]", "i32[]", "i32[]", "f32[]", "i32"], workgroupSize: 64 },
  (x, k, iout, fout, n) => {
    const i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    iout[i] = i32(x[i]) + i32(x[i] * 8) - i32(f32(k[i]) * 0.25);
    fout[i] = f32(k[i]) * 0.5 + f32(u32(k[i]) >>> 28) + f32(i32(x[i]));
  },
);

// ---------------------------------------------------------------------------------------------
// Atomics

/** Sum of ints with atomicAdd (and a count of negatives with atomicSub). */
export const atomicSum = bulkKernel(
  { name: "atomic_sum", params: ["i32[]", "i32[]", "i32"] },
  (data, total, n) => {
    const i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    atomicAdd(total, 0, data[i]);
    if (data[i] < 0) atomicSub(total, 1, 1);
  },
);

/** atomicMax / atomicMin on i32 and u32. */
export const atomicMinMax = bulkKernel(
  {
    name: "atomic_min_max",
    params: ["i32[]", "u32[]", "i32[]", "u32[]", "i32"],
    workgroupSize: 64,
  },
  (data, udata, result, uresult, n) => {
    const i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    atomicMax(result, 0, data[i]);
    atomicMin(result, 1, data[i]);
    atomicMax(uresult, 0, udata[i]);
    atomicMin(uresult, 1, udata[i]);
  },
);

/** A 32-bin histogram: low 4 bits and top 4 bits of each value. */
export const histogram = bulkKernel(
  { name: "histogram", params: ["u32[]", "u32[]", "i32"], workgroupSize: 128 },
  (values, hist, n) => {
    const i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const v = values[i];
    atomicAdd(hist, v % 16, 1);
    atomicAdd(hist, 16 + (v >>> 28), 1);
  },
);

/** A lock-free maximum with a compare-exchange loop, and a ticket counter. */
export const casMax = bulkKernel(
  { name: "cas_max", params: ["i32[]", "i32[]", "u32[]", "i32"], workgroupSize: 64 },
  (data, best, tickets, n) => {
    const i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const v = data[i];
    let cur = best[0];
    while (v > cur) {
      const old = atomicCompareExchange(best, 0, cur, v);
      if (old === cur) break;
      cur = old;
    }
    if (v % 3 === 0) atomicAdd(tickets, 0, 1);
  },
);

// ---------------------------------------------------------------------------------------------
// Loops

/** A per-thread polynomial by Horner's rule (counting down). */
export const horner = bulkKernel(
  { name: "horner", params: ["f32[]", "f32[]", "f32[]", "i32", "i32"], workgroupSize: 64 },
  (xs, coef, out, degree, n) => {
    const i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const x = xs[i];
    let acc = 0;
    for (let k = degree; k >= 0; k--) {
      acc = acc * x + coef[k];
    }
    out[i] = acc;
  },
);

/** A row scan that skips negatives (continue) and stops at the first value above 0.9 (break). */
export const breakContinue = bulkKernel(
  { name: "break_continue", params: ["f32[]", "f32[]", "i32[]", "i32", "i32"], workgroupSize: 32 },
  (m, sums, stops, cols, rows) => {
    const r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    let acc = 0;
    let stop = -1;
    for (let c = 0; c < cols; c++) {
      const v = m[r * cols + c];
      if (v < 0) continue;
      if (v > 0.9) {
        stop = c;
        break;
      }
      acc += v;
    }
    sums[r] = acc;
    stops[r] = stop;
  },
);

/** Collatz step counts with a while loop and integer division. */
export const collatz = bulkKernel(
  { name: "collatz", params: ["i32[]", "i32[]", "i32"], workgroupSize: 64 },
  (seeds, steps, n) => {
    const i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    let v = seeds[i];
    let count = 0;
    while (v !== 1 && count < 1000) {
      if (v % 2 === 0) {
        v = i32(v / 2);
      } else {
        v = 3 * v + 1;
      }
      count++;
    }
    steps[i] = count;
  },
);

/** Nested loops: pairs p < q of a row whose sum is positive, skipping zeros. */
export const pairCount = bulkKernel(
  { name: "pair_count", params: ["i32[]", "i32[]", "i32", "i32"], workgroupSize: 32 },
  (m, out, cols, rows) => {
    const r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    let count = 0;
    for (let p = 0; p < cols; p++) {
      const a = m[r * cols + p];
      if (a === 0) continue;
      for (let q = p + 1; q < cols; q++) {
        if (a + m[r * cols + q] > 0) count += 1;
      }
    }
    out[r] = count;
  },
);

/** An inclusive prefix sum over each row (one thread per row). */
export const prefixRow = bulkKernel(
  { name: "prefix_row", params: ["i32[]", "i32[]", "i32", "i32"], workgroupSize: 16 },
  (m, out, cols, rows) => {
    const r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    let run = 0;
    let c = 0;
    while (c < cols) {
      run += m[r * cols + c];
      out[r * cols + c] = run;
      c++;
    }
  },
);

// ---------------------------------------------------------------------------------------------
// Switch, match, ternaries

/** A switch with grouped labels and a default. */
export const switchOps = bulkKernel(
  { name: "switch_ops", params: ["i32[]", "f32[]", "f32[]", "f32[]", "i32"], workgroupSize: 64 },
  (ops, a, b, out, n) => {
    const i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    let r = 0;
    switch (ops[i]) {
      case 0:
        r = a[i] + b[i];
        break;
      case 1:
      case 2:
        r = a[i] - b[i];
        break;
      case 3:
        r = a[i] * b[i];
        break;
      default:
        r = -a[i];
        break;
    }
    out[i] = r;
  },
);

/** match() and ternaries, with a bool parameter. */
export const matchTernary = bulkKernel(
  { name: "match_ternary", params: ["i32[]", "f32[]", "f32[]", "f32[]", "bool", "i32"] },
  (ops, a, b, out, negate, n) => {
    const i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const x = a[i];
    const y = b[i];
    const m = match(ops[i], { 0: x * 2, 1: x + y, 2: Math.abs(y), _: 0 });
    const big = x > y ? x : y;
    out[i] = (negate ? -m : m) + big + (ops[i] > 1 && x < 0 ? 1 : 0);
  },
);

// ---------------------------------------------------------------------------------------------
// Device functions

/** x². */
export const sq = deviceFunction({ name: "sq", params: ["f32"], returns: "f32" }, (x) => x * x);

/** sqrt(a² + b²), through another device function. */
export const hypot2 = deviceFunction(
  { name: "hypot2", params: ["f32", "f32"], returns: "f32", uses: [sq] },
  (a, b) => Math.sqrt(sq(a) + sq(b)),
);

/** The sign of an i32, with early returns. */
export const signOf = deviceFunction(
  { name: "signOf", params: ["i32"], returns: "i32" },
  (x) => {
    if (x > 0) return 1;
    if (x < 0) return -1;
    return 0;
  },
);

/** A kernel calling device functions. */
export const deviceFns = bulkKernel(
  {
    name: "device_fns",
    params: ["f32[]", "f32[]", "i32[]", "f32[]", "i32[]", "i32"],
    workgroupSize: 64,
    uses: [hypot2, signOf],
  },
  (a, b, k, out, signs, n) => {
    const i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    out[i] = hypot2(a[i], b[i]);
    signs[i] = signOf(k[i]) * 10 + signOf(k[i] - 5);
  },
);

// ---------------------------------------------------------------------------------------------
// Shared memory

/** A block tree reduction through shared memory: one partial sum per block. */
export const blockReduce = bulkKernel(
  { name: "block_reduce", params: ["f32[]", "f32[]", "i32"], workgroupSize: 64 },
  (x, partial, n) => {
    const tile = sharedArray("f32", 64);
    const t = threadIdx.x;
    const i = blockIdx.x * blockDim.x + t;
    tile[t] = i < n ? x[i] : 0;
    barrier();
    if (t < 32) tile[t] += tile[t + 32];
    barrier();
    if (t < 16) tile[t] += tile[t + 16];
    barrier();
    if (t < 8) tile[t] += tile[t + 8];
    barrier();
    if (t < 4) tile[t] += tile[t + 4];
    barrier();
    if (t < 2) tile[t] += tile[t + 2];
    barrier();
    if (t === 0) partial[blockIdx.x] = tile[0] + tile[1];
  },
);

/** Reverses each block's chunk through shared memory; counts the block's threads atomically. */
export const sharedReverse = bulkKernel(
  { name: "shared_reverse", params: ["i32[]", "i32[]", "i32"], workgroupSize: 32 },
  (x, out, n) => {
    const buf = sharedArray("i32", 32);
    const seen = sharedArray("u32", 1);
    const t = threadIdx.x;
    const i = blockIdx.x * blockDim.x + t;
    // CUDA does not zero __shared__ memory: clear the counter before anyone counts.
    if (t === 0) seen[0] = 0;
    buf[t] = i < n ? x[i] : -1;
    barrier();
    atomicAdd(seen, 0, 1);
    barrier();
    const j = blockIdx.x * blockDim.x + (blockDim.x - 1 - t);
    if (j < n) out[j] = buf[t] + i32(seen[0]) * 1000;
  },
);

// ---------------------------------------------------------------------------------------------
// Stencils

/** One explicit heat step: the 5-point Laplacian. */
export const heat2d = stencilKernel(
  { name: "heat_2d", grid: "2d", tile: [8, 8], params: ["f32[]", "f32[]", "f32"] },
  (pos, u, out, alpha) => {
    const c = u[pos.idx];
    const lap = pos.north(u) + pos.south(u) + pos.east(u) + pos.west(u) - 4 * c;
    out[pos.idx] = c + alpha * lap;
  },
);

/** A 9-point box blur through pos.at, with a border flag from pos.x/pos.y. */
export const blur9 = stencilKernel(
  { name: "blur_9", grid: "2d", tile: [16, 4], halo: 1, params: ["f32[]", "f32[]"] },
  (pos, src, dst) => {
    const top = pos.at(src, -1, -1) + pos.at(src, 0, -1) + pos.at(src, 1, -1);
    const mid = pos.at(src, -1, 0) + pos.at(src, 0, 0) + pos.at(src, 1, 0);
    const bottom = pos.at(src, -1, 1) + pos.at(src, 0, 1) + pos.at(src, 1, 1);
    const s = top + mid + bottom;
    const edge = pos.x === 0 || pos.y === pos.height - 1 ? 1 : 0;
    dst[pos.idx] = s / 9 + edge;
  },
);

/** A 4th-order Laplacian: halo 2. */
export const laplace4 = stencilKernel(
  { name: "laplace_4", grid: "2d", tile: [8, 8], halo: 2, params: ["f32[]", "f32[]"] },
  (pos, u, out) => {
    const c = u[pos.idx];
    const xs = -pos.at(u, -2, 0) + 16 * pos.at(u, -1, 0) + 16 * pos.at(u, 1, 0) - pos.at(u, 2, 0);
    const ys = -pos.at(u, 0, -2) + 16 * pos.at(u, 0, -1) + 16 * pos.at(u, 0, 1) - pos.at(u, 0, 2);
    out[pos.idx] = (xs + ys - 60 * c) / 12;
  },
);

/** One 3D heat step: the 7-point Laplacian with up/down. */
export const heat3d = stencilKernel(
  { name: "heat_3d", grid: "3d", tile: [4, 4, 4], params: ["f32[]", "f32[]", "f32"] },
  (pos, u, out, alpha) => {
    const c = u[pos.idx];
    const lap = pos.north(u) + pos.south(u) + pos.east(u) + pos.west(u) + pos.up(u) +
      pos.down(u) - 6 * c;
    out[pos.idx] = c + alpha * lap;
  },
);

// ---------------------------------------------------------------------------------------------
// Handlers

/** Add a value. */
export const AddValue = defineMessage({ typeId: 4001, name: "AddValue", fields: { value: "f32" } });
/** Running total. */
export const Total = defineMessage({
  typeId: 4002,
  name: "Total",
  fields: { total: "f32", count: "u32" },
});

/** Sums what it is sent and replies with the total. */
export const dslAccumulator = defineKernel({
  id: "dsl_accumulator",
  module: import.meta.url,
  input: AddValue,
  output: Total,
  state: { total: "f32", count: "u32" },
  handler: (msg, state) => {
    state.total += msg.value;
    state.count += 1;
    return { total: state.total, count: state.count };
  },
});

/** A tick with a 64-bit stamp. */
export const Tick = defineMessage({
  typeId: 4010,
  name: "Tick",
  fields: { amount: "u32", stamp: "u64" },
});
/** 64-bit totals. */
export const TickTotal = defineMessage({
  typeId: 4011,
  name: "TickTotal",
  fields: { total: "u64", last: "u64", mixed: "u32" },
});
/** u64 arithmetic (bigint in JS, unsigned long long in CUDA; WGSL has none). */
export const dslWide = defineKernel({
  id: "dsl_wide",
  module: import.meta.url,
  input: Tick,
  output: TickTotal,
  state: { total: "u64", count: "u64" },
  handler: (msg, state) => {
    state.total += u64(msg.amount) * 3n;
    state.count++;
    const hi = (msg.stamp >> 32n) & 0xffffn;
    return {
      total: state.total,
      last: msg.stamp ^ hi,
      mixed: u32(state.total % 1000n) + u32(state.count),
    };
  },
});

/** A counter command. */
export const CounterOp = defineMessage({
  typeId: 4003,
  name: "CounterOp",
  fields: { op: "u32", amount: "i32" },
});
/** The counter after a command. */
export const CounterValue = defineMessage({
  typeId: 4004,
  name: "CounterValue",
  fields: { value: "i32", resets: "u32" },
});

/** A counter driven by a switch on the message's op; unknown ops get no reply. */
export const dslCounter = defineKernel({
  id: "dsl_counter",
  module: import.meta.url,
  input: CounterOp,
  output: CounterValue,
  state: { value: "i32", resets: "u32" },
  handler: (msg, state) => {
    switch (msg.op) {
      case 0:
        state.value += msg.amount;
        break;
      case 1:
        state.value -= msg.amount;
        break;
      case 2:
      case 3:
        state.value = 0;
        state.resets += 1;
        break;
      default:
        return;
    }
    return { value: state.value, resets: state.resets };
  },
});

/** Sub-word fields and an array field. */
export const Reading = defineMessage({
  typeId: 4005,
  name: "Reading",
  fields: { kind: "u8", level: "u16", urgent: "bool", vals: array("f32", 4) },
});
/** What the sub-word handler answers. */
export const ReadingAck = defineMessage({
  typeId: 4006,
  name: "ReadingAck",
  fields: { kind: "u8", urgent: "bool", total: "f32", level: "u16" },
});

/** Folds readings into per-slot sums; u8/u16/bool fields on message, state and reply. */
export const dslSubword = defineKernel({
  id: "dsl_subword",
  module: import.meta.url,
  input: Reading,
  output: ReadingAck,
  state: {
    seen: "u16",
    maxLevel: "u16",
    anyUrgent: "bool",
    lastKind: "u8",
    sums: array("f32", 4),
  },
  handler: (msg, state) => {
    let total = 0;
    for (let k = 0; k < 4; k++) {
      state.sums[k] += msg.vals[k];
      total += msg.vals[k];
    }
    if (msg.level > state.maxLevel) state.maxLevel = msg.level;
    if (msg.urgent) state.anyUrgent = true;
    state.seen += 1;
    state.lastKind = msg.kind;
    return { kind: msg.kind, urgent: !msg.urgent, total, level: msg.level };
  },
});

/** A job to forward. */
export const Job = defineMessage({ typeId: 4007, name: "Job", fields: { value: "f32" } });
/** What the forwarder sends to the sink. */
export const Stamped = defineMessage({
  typeId: 4008,
  name: "Stamped",
  fields: { value: "f32", logical: "u32", node: "u32" },
});
/** The forwarder's reply. */
export const JobAck = defineMessage({ typeId: 4009, name: "JobAck", fields: { logical: "u32" } });

/** Stamps positive jobs with its clock and sends them on to "sink". */
export const dslForwarder = defineKernel({
  id: "dsl_forwarder",
  module: import.meta.url,
  input: Job,
  output: JobAck,
  state: { sent: "u32", lastLogical: "u32" },
  sends: { sink: Stamped },
  handler: (msg, state, ctx) => {
    const t = ctx.now();
    if (msg.value > 0) {
      ctx.send("sink", Stamped.of({ value: msg.value * 2, logical: t.logical, node: t.nodeId }));
      state.sent += 1;
    }
    state.lastLogical = t.logical;
    return { logical: t.logical };
  },
});

// ---------------------------------------------------------------------------------------------
// The corpus

const TRANSCENDENTAL: Tolerance = {
  abs: 1e-3,
  rel: 1e-3,
  why: "WGSL only bounds sin/cos to 2^-11 absolute on [-π, π] and exp/log/pow to a few ULP of " +
    "exp2/log2 scaled by the argument; CUDA's fast paths are similar",
};

function stencilArgs(
  k: Pick<StencilKernel, "grid" | "halo">,
  size: StencilSize,
  rand: () => number,
): Float32Array[] {
  const len = stencilBufferLength(k, size);
  return [floats(rand, len, 0, 1), new Float32Array(len)];
}

/** Every case, in a stable order. */
export const corpus: readonly CorpusCase[] = [
  bulk({
    name: "saxpy",
    kernel: saxpy,
    make: (r) => {
      const n = 1000;
      return { grid: 16, args: [1.5 + r(), floats(r, n, -1, 1), floats(r, n, -1, 1), n] };
    },
    outputs: [2],
    tolerance: F32,
  }),
  bulk({
    name: "scale",
    kernel: scale,
    make: (r) => ({ grid: 2, args: [floats(r, 300, -10, 10), 0.75, 300] }),
    outputs: [0],
    tolerance: F32,
  }),
  bulk({
    name: "vec_add (2D grid of blocks)",
    kernel: vecAdd,
    make: (r) => {
      const n = 500;
      return {
        grid: [4, 4],
        args: [floats(r, n, -5, 5), floats(r, n, -5, 5), new Float32Array(n), n],
      };
    },
    outputs: [2],
    tolerance: F32,
  }),
  bulk({
    name: "clamp/abs/min/max",
    kernel: clampMinMax,
    make: (r) => {
      const n = 256;
      return {
        grid: 4,
        args: [floats(r, n, -2, 2), floats(r, n, -2, 2), new Float32Array(n), n],
      };
    },
    outputs: [2],
    tolerance: F32,
  }),
  bulk({
    name: "sqrt/rsqrt/fma/floor/ceil",
    kernel: sqrtFma,
    make: (r) => {
      const n = 256;
      return {
        grid: 4,
        args: [
          floats(r, n, 0.1, 9),
          floats(r, n, -3, 3),
          floats(r, n, -3, 3),
          new Float32Array(n),
          n,
        ],
      };
    },
    outputs: [3],
    tolerance: {
      abs: 1e-5,
      rel: 1e-5,
      why: "fma may be fused on a GPU (one rounding) where JS rounds the f64 result once at the " +
        "store: at most an f32 ULP apart; sqrt/rsqrt are within 2-3 ULP on WGSL",
    },
  }),
  bulk({
    name: "exp/log/pow/sin/cos",
    kernel: transcendental,
    make: (r) => {
      const n = 256;
      return {
        grid: 4,
        args: [floats(r, n, -2, 2), floats(r, n, 0.5, 3), new Float32Array(n), n],
      };
    },
    outputs: [2],
    tolerance: TRANSCENDENTAL,
  }),
  bulk({
    name: "u32 bit ops and >>>",
    kernel: bitsU32,
    make: (r) => {
      const n = 256;
      return { grid: 4, args: [uints(r, n), uints(r, n), new Uint32Array(n), n] };
    },
    outputs: [2],
    tolerance: EXACT,
  }),
  bulk({
    name: "i32 shifts",
    kernel: shiftsI32,
    make: (r) => {
      const n = 256;
      return { grid: 4, args: [ints(r, n, -(2 ** 20), 2 ** 20), new Int32Array(n), n] };
    },
    outputs: [1],
    tolerance: EXACT,
  }),
  bulk({
    name: "integer division and remainder",
    kernel: divMod,
    make: (r) => {
      const n = 256;
      const b = ints(r, n, 1, 97).map((v, i) => (i % 2 === 0 ? v : -v));
      const ub = Uint32Array.from(ints(r, n, 1, 1000));
      return {
        grid: 4,
        args: [
          ints(r, n, -1_000_000, 1_000_000),
          b,
          uints(r, n),
          ub,
          new Int32Array(n),
          new Uint32Array(n),
          n,
        ],
      };
    },
    outputs: [4, 5],
    tolerance: EXACT,
  }),
  bulk({
    name: "casts",
    kernel: casts,
    make: (r) => {
      const n = 256;
      return {
        grid: 4,
        args: [
          floats(r, n, -100, 100),
          ints(r, n, -100_000, 100_000),
          new Int32Array(n),
          new Float32Array(n),
          n,
        ],
      };
    },
    outputs: [2, 3],
    tolerance: F32,
  }),
  bulk({
    name: "atomicAdd sum",
    kernel: atomicSum,
    make: (r) => {
      const n = 3000;
      return { grid: 12, args: [ints(r, n, -1000, 1000), new Int32Array(2), n] };
    },
    outputs: [1],
    tolerance: EXACT,
  }),
  bulk({
    name: "atomicMax/atomicMin",
    kernel: atomicMinMax,
    make: (r) => {
      const n = 1000;
      return {
        grid: 16,
        args: [
          ints(r, n, -(2 ** 30), 2 ** 30),
          uints(r, n),
          new Int32Array([-(2 ** 31), 2 ** 31 - 1]),
          new Uint32Array([0, 0xffff_ffff]),
          n,
        ],
      };
    },
    outputs: [2, 3],
    tolerance: EXACT,
  }),
  bulk({
    name: "histogram",
    kernel: histogram,
    make: (r) => {
      const n = 2000;
      return { grid: 16, args: [uints(r, n), new Uint32Array(32), n] };
    },
    outputs: [1],
    tolerance: EXACT,
  }),
  bulk({
    name: "compareExchange max and a ticket counter",
    kernel: casMax,
    make: (r) => {
      const n = 1000;
      return {
        grid: 16,
        args: [
          ints(r, n, -1_000_000, 1_000_000),
          new Int32Array([-(2 ** 31)]),
          new Uint32Array(1),
          n,
        ],
      };
    },
    outputs: [1, 2],
    tolerance: EXACT,
  }),
  bulk({
    name: "Horner polynomial (for counting down)",
    kernel: horner,
    make: (r) => {
      const n = 200;
      const degree = 6;
      return {
        grid: 4,
        args: [floats(r, n, -1, 1), floats(r, degree + 1, -1, 1), new Float32Array(n), degree, n],
      };
    },
    outputs: [2],
    tolerance: F32,
  }),
  bulk({
    name: "for with break and continue",
    kernel: breakContinue,
    make: (r) => {
      const rows = 50;
      const cols = 40;
      return {
        grid: 2,
        args: [
          floats(r, rows * cols, -0.5, 0.95),
          new Float32Array(rows),
          new Int32Array(rows),
          cols,
          rows,
        ],
      };
    },
    outputs: [1, 2],
    tolerance: F32,
  }),
  bulk({
    name: "while: Collatz steps",
    kernel: collatz,
    make: (r) => {
      const n = 256;
      return { grid: 4, args: [ints(r, n, 1, 9999), new Int32Array(n), n] };
    },
    outputs: [1],
    tolerance: EXACT,
  }),
  bulk({
    name: "nested loops: pair count",
    kernel: pairCount,
    make: (r) => {
      const rows = 40;
      const cols = 24;
      return { grid: 2, args: [ints(r, rows * cols, -5, 5), new Int32Array(rows), cols, rows] };
    },
    outputs: [1],
    tolerance: EXACT,
  }),
  bulk({
    name: "prefix sum over a row",
    kernel: prefixRow,
    make: (r) => {
      const rows = 30;
      const cols = 33;
      return {
        grid: 2,
        args: [ints(r, rows * cols, -1000, 1000), new Int32Array(rows * cols), cols, rows],
      };
    },
    outputs: [1],
    tolerance: EXACT,
  }),
  bulk({
    name: "switch with grouped labels and default",
    kernel: switchOps,
    make: (r) => {
      const n = 256;
      return {
        grid: 4,
        args: [
          ints(r, n, -1, 5),
          floats(r, n, -4, 4),
          floats(r, n, -4, 4),
          new Float32Array(n),
          n,
        ],
      };
    },
    outputs: [3],
    tolerance: F32,
  }),
  bulk({
    name: "match() and ternaries",
    kernel: matchTernary,
    make: (r) => {
      const n = 300;
      return {
        grid: 2,
        args: [
          ints(r, n, 0, 4),
          floats(r, n, -4, 4),
          floats(r, n, -4, 4),
          new Float32Array(n),
          r() < 0.5,
          n,
        ],
      };
    },
    outputs: [3],
    tolerance: F32,
  }),
  bulk({
    name: "device functions (one calling another)",
    kernel: deviceFns,
    make: (r) => {
      const n = 256;
      return {
        grid: 4,
        args: [
          floats(r, n, -3, 3),
          floats(r, n, -3, 3),
          ints(r, n, -10, 10),
          new Float32Array(n),
          new Int32Array(n),
          n,
        ],
      };
    },
    outputs: [3, 4],
    tolerance: F32,
  }),
  bulk({
    name: "shared-memory block reduction with barrier()",
    kernel: blockReduce,
    make: (r) => {
      const n = 1000;
      return { grid: 16, args: [floats(r, n, -1, 1), new Float32Array(16), n] };
    },
    outputs: [1],
    tolerance: F32,
  }),
  bulk({
    name: "shared-memory reverse with an atomic on a shared array",
    kernel: sharedReverse,
    make: (r) => {
      const n = 100;
      return { grid: 4, args: [ints(r, n, -500, 500), new Int32Array(n), n] };
    },
    outputs: [1],
    tolerance: EXACT,
  }),
  stencil({
    name: "2D heat step (5-point)",
    kernel: heat2d,
    make: (r) => {
      const size = { width: 20, height: 13 };
      const [u, out] = stencilArgs(heat2d, size, r);
      return { size, args: [u, out, 0.2] };
    },
    outputs: [1],
    tolerance: F32,
  }),
  stencil({
    name: "2D 9-point blur via pos.at (halo 1)",
    kernel: blur9,
    make: (r) => {
      const size = { width: 37, height: 9 };
      const [u, out] = stencilArgs(blur9, size, r);
      return { size, args: [u, out] };
    },
    outputs: [1],
    tolerance: F32,
  }),
  stencil({
    name: "2D 4th-order Laplacian (halo 2)",
    kernel: laplace4,
    make: (r) => {
      const size = { width: 16, height: 11 };
      const [u, out] = stencilArgs(laplace4, size, r);
      return { size, args: [u, out] };
    },
    outputs: [1],
    tolerance: { abs: 1e-5, rel: 1e-5, why: "sums of 9 terms with weights up to 60" },
  }),
  stencil({
    name: "3D heat step (7-point, up/down)",
    kernel: heat3d,
    make: (r) => {
      const size = { width: 9, height: 6, depth: 5 };
      const [u, out] = stencilArgs(heat3d, size, r);
      return { size, args: [u, out, 0.1] };
    },
    outputs: [1],
    tolerance: F32,
  }),
  handler({
    name: "accumulator handler (state + reply)",
    kernel: dslAccumulator,
    make: (r) => ({ messages: Array.from({ length: 20 }, () => ({ value: r() * 10 - 5 })) }),
    outputs: ["replies", "state"],
    tolerance: F32,
  }),
  handler({
    name: "u64 arithmetic in a handler (CUDA only)",
    kernel: dslWide,
    make: (r) => ({
      messages: Array.from({ length: 16 }, () => ({
        amount: Math.floor(r() * 4e9),
        stamp: (BigInt(Math.floor(r() * 2 ** 32)) << 32n) | BigInt(Math.floor(r() * 2 ** 32)),
      })),
    }),
    outputs: ["replies", "state"],
    tolerance: EXACT,
    targets: ["cuda"],
  }),
  handler({
    name: "counter handler (switch on op, no reply for unknown ops)",
    kernel: dslCounter,
    make: (r) => ({
      messages: Array.from({ length: 30 }, () => ({
        op: Math.floor(r() * 5),
        amount: Math.floor(r() * 200) - 100,
      })),
      options: { initialState: { value: 7, resets: 0 } },
    }),
    outputs: ["replies", "state"],
    tolerance: EXACT,
  }),
  handler({
    name: "sub-word fields (u8/u16/bool) and an array field",
    kernel: dslSubword,
    make: (r) => ({
      messages: Array.from({ length: 12 }, () => ({
        kind: Math.floor(r() * 256),
        level: Math.floor(r() * 65536),
        urgent: r() < 0.3,
        vals: [r(), r() - 0.5, r() * 4, -r()],
      })),
    }),
    outputs: ["replies", "state"],
    tolerance: F32,
  }),
  handler({
    name: "ctx.send to a target and ctx.now()",
    kernel: dslForwarder,
    make: (r) => ({
      messages: Array.from({ length: 10 }, () => ({ value: r() * 2 - 0.5 })),
      // The clock starts 3 ticks short of a logical carry into the physical part.
      options: { hlcStart: (5n << 16n) | 0xfffcn, nodeId: 9, sendCapacity: 4 },
    }),
    outputs: ["replies", "state", "sends", "sendCount", "hlc"],
    tolerance: F32,
  }),
];

// ---------------------------------------------------------------------------------------------
// Comparing results

/**
 * The first place where `actual` and `expected` differ beyond `tol` (numbers), or differ at all
 * (booleans, bigints, strings, shapes), as a message; undefined when they agree.
 */
export function mismatch(
  actual: unknown,
  expected: unknown,
  tol: Tolerance,
  path = "",
): string | undefined {
  if (typeof expected === "bigint" || typeof actual === "bigint") {
    return actual === expected ? undefined : `${path || "value"}: ${actual} vs ${expected}`;
  }
  if (typeof expected === "number" && typeof actual === "number") {
    if (Number.isNaN(expected) && Number.isNaN(actual)) return undefined;
    const diff = Math.abs(actual - expected);
    return diff <= tol.abs + tol.rel * Math.abs(expected)
      ? undefined
      : `${
        path || "value"
      }: ${actual} vs ${expected} (|diff| ${diff}; abs ${tol.abs}, rel ${tol.rel})`;
  }
  if (ArrayBuffer.isView(expected) || Array.isArray(expected)) {
    if (!(ArrayBuffer.isView(actual) || Array.isArray(actual))) {
      return `${path}: expected a list, got ${typeof actual}`;
    }
    const a = actual as ArrayLike<unknown>;
    const e = expected as ArrayLike<unknown>;
    if (a.length !== e.length) return `${path}: length ${a.length} vs ${e.length}`;
    for (let i = 0; i < e.length; i++) {
      const m = mismatch(a[i], e[i], tol, `${path}[${i}]`);
      if (m !== undefined) return m;
    }
    return undefined;
  }
  if (typeof expected === "object" && expected !== null) {
    if (typeof actual !== "object" || actual === null) {
      return `${path}: expected an object, got ${String(actual)}`;
    }
    const keys = new Set([...Object.keys(expected), ...Object.keys(actual)]);
    for (const k of keys) {
      const m = mismatch(
        (actual as Record<string, unknown>)[k],
        (expected as Record<string, unknown>)[k],
        tol,
        `${path}.${k}`,
      );
      if (m !== undefined) return m;
    }
    return undefined;
  }
  return Object.is(actual, expected) || (actual === expected)
    ? undefined
    : `${path || "value"}: ${String(actual)} vs ${String(expected)}`;
}
