/**
 * The CPU backend's WebAssembly SIMD core: f32 batch kernels, CRC32C of message batches and a
 * 5-point stencil step, run by `wasm/ringkernel_core.wasm` over a shared `WebAssembly.Memory`
 * that every worker of a process can instantiate the same module over. docs/simd-core.md
 * describes the exports, the memory model and how to rebuild the module.
 *
 * Data must live inside the core's memory: allocate it with {@linkcode SimdCore.allocF32} (or
 * `allocBytes` / `allocU32`) and fill the returned views; the methods take those views and throw a
 * {@linkcode MemoryViewError} for a view of any other buffer rather than copying silently.
 *
 * @example
 * ```ts
 * import { SimdCore } from "./simd_core.ts";
 * const core = await SimdCore.create();
 * const x = core.allocF32(1024).view;
 * const y = core.allocF32(1024).view;
 * x.fill(1);
 * y.fill(2);
 * core.saxpy(y, x, 3); // y = 3·x + y
 * console.log(core.sum(y)); // 5120
 * ```
 * @module
 */

import { readFile } from "node:fs/promises";
import {
  ErrorCode,
  MemoryViewError,
  OutOfMemoryError,
  ValidationError,
  WasmUnsupportedError,
} from "../../core/errors.ts";

/** The raw exports of `ringkernel_core.wasm`: byte addresses, element or byte counts. */
export interface SimdCoreExports {
  /** `p[i] *= a` for `i < n` (f32, in place). */
  f32_scale(p: number, n: number, a: number): void;
  /** `dst[i] = a[i] + b[i]` for `i < n`. */
  f32_add(dst: number, a: number, b: number, n: number): void;
  /** `y[i] = a·x[i] + y[i]` for `i < n`. */
  f32_saxpy(y: number, x: number, a: number, n: number): void;
  /** Σ a[i]·b[i] for `i < n`, in f32. */
  f32_dot(a: number, b: number, n: number): number;
  /** Σ p[i] for `i < n`, in f32. */
  f32_sum(p: number, n: number): number;
  /** CRC32C of `len` bytes at `p` continuing from `seed`; returns a signed i32 (use `>>> 0`). */
  crc32c(p: number, len: number, seed: number): number;
  /** `out[i]` = CRC32C of `lens[i]` bytes at `base + i·stride`, for `i < count`. */
  crc32c_batch(base: number, stride: number, lens: number, count: number, out: number): void;
  /** One 5-point stencil step from `src` to `dst` on a `w × h` grid with coefficient `c`. */
  stencil5_f32(src: number, dst: number, w: number, h: number, c: number): void;
  /** First byte above the module's static data (a `WebAssembly.Global`). */
  __heap_base: WebAssembly.Global;
  /** End of the module's static data (a `WebAssembly.Global`). */
  __data_end: WebAssembly.Global;
}

/** A typed view over a region of the core's memory together with the region's byte address. */
export interface Allocation<T extends Uint8Array | Uint32Array | Float32Array> {
  /** Byte address of the first element in the shared memory (equals `view.byteOffset`). */
  ptr: number;
  /** The view; it stays valid when the memory grows (the bytes never move). */
  view: T;
}

/** What a worker needs to run a {@linkcode SimdCore} over the same memory; both fields survive
 * `postMessage` in Deno and Bun. */
export interface SimdCoreShare {
  /** The compiled module (compiling again in a worker would work too, only slower). */
  module: WebAssembly.Module;
  /** The shared memory. */
  memory: WebAssembly.Memory;
}

/** Options of {@linkcode SimdCore.create}. */
export interface SimdCoreOptions {
  /** A shared memory to run over (for example one received from another worker). Default: a new
   * one of `initialPages` / `maximumPages`. */
  memory?: WebAssembly.Memory;
  /** An already compiled module. Default: the process-wide compiled `ringkernel_core.wasm`. */
  module?: WebAssembly.Module;
  /** Initial size of a new memory in 64 KiB pages (default 16 = 1 MiB); the arena grows it. */
  initialPages?: number;
  /** Maximum size of a new memory in 64 KiB pages (default 16384 = 1 GiB, at most 65536). A
   * shared memory reserves its maximum address space up front, so keep it to what you need. */
  maximumPages?: number;
}

/** Size of a WebAssembly page in bytes. */
export const WASM_PAGE_BYTES = 65536;
/** Default alignment of arena allocations: one cache line, so allocations handed to different
 * workers never share a line. */
export const ARENA_ALIGN = 64;

/** Marks an initialised arena header ("RKSA" in memory order). */
const ARENA_MAGIC = 0x41534b52;
/** Bytes reserved at `__heap_base` for the arena header: [magic, next free byte]. */
const ARENA_HEADER_BYTES = 64;
/** Highest arena end address: below 2^32 so the i32 header word never wraps to 0. */
const ARENA_LIMIT = 2 ** 32 - ARENA_ALIGN;

/** Where the module's bytes live, relative to this file. */
const WASM_URL = new URL("../../../wasm/ringkernel_core.wasm", import.meta.url);

/** The smallest module using a SIMD instruction: `(func (result v128) v128.const 0)`. */
const PROBE_SIMD = new Uint8Array([
  0x00,
  0x61,
  0x73,
  0x6d,
  0x01,
  0x00,
  0x00,
  0x00, // magic, version
  0x01,
  0x05,
  0x01,
  0x60,
  0x00,
  0x01,
  0x7b, // type: () -> v128
  0x03,
  0x02,
  0x01,
  0x00, // function 0 has type 0
  0x0a,
  0x16,
  0x01,
  0x14,
  0x00,
  0xfd,
  0x0c, // code: no locals, v128.const
  ...new Array<number>(16).fill(0),
  0x0b, // end
]);
/** The smallest module declaring a shared memory: `(memory 1 1 shared)`. */
const PROBE_SHARED = new Uint8Array([
  0x00,
  0x61,
  0x73,
  0x6d,
  0x01,
  0x00,
  0x00,
  0x00, // magic, version
  0x05,
  0x04,
  0x01,
  0x03,
  0x01,
  0x01, // memory: flags shared|max, min 1, max 1
]);

/** Which WebAssembly features the SIMD core needs are present in this runtime. */
export interface WasmFeatures {
  /** 128-bit SIMD (`simd128`). */
  simd: boolean;
  /** Shared memories and atomics (the threads proposal), plus `SharedArrayBuffer`. */
  threads: boolean;
}

/** Probes the runtime for the WebAssembly features the SIMD core needs, without throwing. */
export function detectWasmFeatures(): WasmFeatures {
  if (typeof WebAssembly !== "object") return { simd: false, threads: false };
  let threads = typeof SharedArrayBuffer === "function" && WebAssembly.validate(PROBE_SHARED);
  if (threads) {
    try {
      threads = new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true })
        .buffer instanceof SharedArrayBuffer;
    } catch {
      threads = false;
    }
  }
  return { simd: WebAssembly.validate(PROBE_SIMD), threads };
}

/** Reads the module's bytes: from disk for a file: URL, over fetch for a published copy. */
async function readWasmBytes(url: URL): Promise<Uint8Array<ArrayBuffer>> {
  if (url.protocol === "file:") return new Uint8Array(await readFile(url));
  const res = await fetch(url);
  if (!res.ok) {
    throw new ValidationError(ErrorCode.InvalidArgument, `cannot fetch ${url}: HTTP ${res.status}`);
  }
  return new Uint8Array(await res.arrayBuffer());
}

/**
 * Throws a {@linkcode WasmUnsupportedError} naming the missing feature when this runtime cannot
 * validate `bytes` (the SIMD core module) — distinguishing "no SIMD" and "no threads" from a
 * damaged file.
 */
export function assertWasmSupport(bytes: Uint8Array<ArrayBuffer>, what = "the SIMD core"): void {
  if (WebAssembly.validate(bytes)) return;
  const f = detectWasmFeatures();
  const missing = [!f.simd && "SIMD (simd128)", !f.threads && "threads/shared memory"]
    .filter(Boolean).join(" and ");
  throw new WasmUnsupportedError(
    ErrorCode.WasmUnsupported,
    missing
      ? `this runtime's WebAssembly lacks ${missing}, which ${what} needs`
      : `${what}'s module does not validate (a damaged or foreign file?)`,
  );
}

let compiled: Promise<WebAssembly.Module> | undefined;

/**
 * Compiles `wasm/ringkernel_core.wasm` once per process (later calls share the promise). Throws a
 * {@linkcode WasmUnsupportedError} naming the missing feature when the runtime cannot run it.
 */
export function loadSimdModule(): Promise<WebAssembly.Module> {
  if (!compiled) {
    compiled = (async () => {
      const bytes = await readWasmBytes(WASM_URL);
      assertWasmSupport(bytes, `the SIMD core (${WASM_URL.pathname})`);
      return await WebAssembly.compile(bytes);
    })();
    // A failed load is not cached, so a later call may retry (the caller still sees the error).
    compiled.catch(() => (compiled = undefined));
  }
  return compiled;
}

/** Creates a shared memory suitable for {@linkcode SimdCore.create}. */
export function createSharedMemory(initialPages = 16, maximumPages = 16384): WebAssembly.Memory {
  if (
    !Number.isInteger(initialPages) || !Number.isInteger(maximumPages) || initialPages < 1 ||
    maximumPages < initialPages || maximumPages > 65536
  ) {
    throw new ValidationError(
      ErrorCode.InvalidArgument,
      `memory pages must satisfy 1 ≤ initial (${initialPages}) ≤ maximum (${maximumPages}) ≤ 65536`,
    );
  }
  if (!detectWasmFeatures().threads) {
    throw new WasmUnsupportedError(
      ErrorCode.WasmUnsupported,
      "this runtime cannot create a shared WebAssembly.Memory (threads proposal / SharedArrayBuffer)",
    );
  }
  return new WebAssembly.Memory({ initial: initialPages, maximum: maximumPages, shared: true });
}

type View = Uint8Array | Uint32Array | Float32Array;

/**
 * The WebAssembly SIMD core instantiated over one shared memory, with a bump arena in that
 * memory and typed, checked wrappers around every export.
 *
 * The arena's header lives in the memory itself (at `__heap_base`) and advances with an atomic
 * compare-and-swap, so cores in several workers over one memory allocate from one arena without
 * handing out a byte twice. Allocations are never freed: the arena is for long-lived buffers
 * (grids, queue regions, scratch vectors), not per-message temporaries.
 */
export class SimdCore {
  /** The shared memory the core runs over. */
  readonly memory: WebAssembly.Memory;
  /** The compiled module (post it with `memory` to let a worker run a core over the same bytes). */
  readonly module: WebAssembly.Module;
  /** The raw exports, for callers that manage pointers themselves. No checks: a bad pointer
   * traps or, worse, scribbles over another allocation. */
  readonly raw: SimdCoreExports;
  /** First byte above the module's static data (CRC tables, init flag). */
  readonly heapBase: number;
  /** First byte the arena hands out; views below it would alias the module's statics. */
  readonly arenaStart: number;

  readonly #header: Int32Array;
  /** Every `SharedArrayBuffer` object this memory has shown us: growing a shared memory makes
   * `memory.buffer` a new object over the same bytes, and views made before keep the old one. */
  readonly #buffers = new WeakSet<ArrayBufferLike>();
  #buffer: ArrayBufferLike;

  private constructor(
    memory: WebAssembly.Memory,
    module: WebAssembly.Module,
    raw: SimdCoreExports,
  ) {
    this.memory = memory;
    this.module = module;
    this.raw = raw;
    this.heapBase = raw.__heap_base.value as number;
    this.arenaStart = alignUp(this.heapBase + ARENA_HEADER_BYTES, ARENA_ALIGN);
    this.#buffer = memory.buffer;
    this.#buffers.add(this.#buffer);
    this.#ensureBytes(this.arenaStart);
    this.#header = new Int32Array(this.memory.buffer, this.heapBase, 2);
    // Whoever gets here first initialises the arena; a zero "next free" word means untouched.
    Atomics.compareExchange(this.#header, 1, 0, this.arenaStart);
    Atomics.compareExchange(this.#header, 0, 0, ARENA_MAGIC);
    if (Atomics.load(this.#header, 0) !== ARENA_MAGIC) {
      throw new ValidationError(
        ErrorCode.InvalidLayout,
        `the memory's bytes at ${this.heapBase} are not a SIMD core arena header; ` +
          "give the core a memory of its own",
      );
    }
  }

  /**
   * Instantiates the SIMD core over `options.memory` (or a new shared memory). Instances in
   * different workers over one memory share its data and its arena.
   */
  static async create(options: SimdCoreOptions = {}): Promise<SimdCore> {
    const module = options.module ?? await loadSimdModule();
    const memory = options.memory ??
      createSharedMemory(options.initialPages ?? 16, options.maximumPages ?? 16384);
    if (!(memory.buffer instanceof SharedArrayBuffer)) {
      throw new ValidationError(
        ErrorCode.InvalidArgument,
        "the SIMD core needs a shared WebAssembly.Memory ({ shared: true, maximum })",
      );
    }
    const instance = await WebAssembly.instantiate(module, { env: { memory } });
    return new SimdCore(memory, module, instance.exports as unknown as SimdCoreExports);
  }

  /** The module and memory to post to a worker, which passes them to `SimdCore.create`. */
  share(): SimdCoreShare {
    return { module: this.module, memory: this.memory };
  }

  /** Bytes of the arena handed out so far, across all cores over this memory. */
  get arenaUsed(): number {
    return (Atomics.load(this.#header, 1) >>> 0) - this.arenaStart;
  }

  /**
   * Reserves `byteLength` bytes aligned to `align` (a power of two, default 64) in the shared
   * arena, growing the memory when needed, and returns the address. The bytes are zero unless
   * a previous user of the memory wrote there.
   */
  alloc(byteLength: number, align = ARENA_ALIGN): number {
    if (!Number.isInteger(byteLength) || byteLength < 0) {
      throw new ValidationError(ErrorCode.InvalidArgument, `bad allocation size ${byteLength}`);
    }
    if (!Number.isInteger(align) || align < 1 || align > WASM_PAGE_BYTES || (align & (align - 1))) {
      throw new ValidationError(
        ErrorCode.Misaligned,
        `alignment must be a power of two up to ${WASM_PAGE_BYTES}, got ${align}`,
      );
    }
    for (;;) {
      const cur = Atomics.load(this.#header, 1) >>> 0;
      const start = alignUp(cur, align);
      const end = start + byteLength;
      // The header word is an i32: keep `end` below 2^32 so it never wraps to 0 ("untouched").
      if (end > ARENA_LIMIT) throw this.#outOfMemory(byteLength, cur);
      if ((Atomics.compareExchange(this.#header, 1, cur | 0, end | 0) >>> 0) !== cur) continue;
      try {
        this.#ensureBytes(end);
      } catch (err) {
        // Hand the reservation back if nobody allocated after it, so a failed request leaves
        // the arena as it was.
        Atomics.compareExchange(this.#header, 1, end | 0, cur | 0);
        throw this.#outOfMemory(byteLength, cur, err);
      }
      return start;
    }
  }

  /** Allocates `n` f32 in the arena (64-byte aligned) and returns a view and its address. */
  allocF32(n: number): Allocation<Float32Array> {
    const ptr = this.alloc(checkCount(n) * 4);
    return { ptr, view: this.viewF32(ptr, n) };
  }

  /** Allocates `n` u32 in the arena (64-byte aligned) and returns a view and its address. */
  allocU32(n: number): Allocation<Uint32Array> {
    const ptr = this.alloc(checkCount(n) * 4);
    return { ptr, view: this.viewU32(ptr, n) };
  }

  /** Allocates `n` bytes in the arena (aligned to `align`) and returns a view and its address. */
  allocBytes(n: number, align = ARENA_ALIGN): Allocation<Uint8Array> {
    const ptr = this.alloc(checkCount(n), align);
    return { ptr, view: this.viewU8(ptr, n) };
  }

  /** A Float32Array over `n` floats at byte address `ptr` (for example one a worker was sent). */
  viewF32(ptr: number, n: number): Float32Array {
    this.#checkRange(ptr, checkCount(n) * 4, 4);
    return new Float32Array(this.#current(), ptr, n);
  }

  /** A Uint32Array over `n` words at byte address `ptr`. */
  viewU32(ptr: number, n: number): Uint32Array {
    this.#checkRange(ptr, checkCount(n) * 4, 4);
    return new Uint32Array(this.#current(), ptr, n);
  }

  /** A Uint8Array over `n` bytes at byte address `ptr`. */
  viewU8(ptr: number, n: number): Uint8Array {
    this.#checkRange(ptr, checkCount(n), 1);
    return new Uint8Array(this.#current(), ptr, n);
  }

  /** `x[i] *= a` in place (`a` is rounded to f32). */
  scale(x: Float32Array, a: number): void {
    this.raw.f32_scale(this.#ptr(x, "x"), x.length, a);
  }

  /** `dst[i] = a[i] + b[i]`. `dst` may be `a` or `b` itself but must not partly overlap them. */
  add(dst: Float32Array, a: Float32Array, b: Float32Array): void {
    const d = this.#ptr(dst, "dst"), pa = this.#ptr(a, "a"), pb = this.#ptr(b, "b");
    sameLength(dst, a, "dst", "a");
    sameLength(dst, b, "dst", "b");
    identicalOrDisjoint(dst, a, "dst", "a");
    identicalOrDisjoint(dst, b, "dst", "b");
    this.raw.f32_add(d, pa, pb, dst.length);
  }

  /** `y[i] = a·x[i] + y[i]` (f32 multiply, then f32 add). `y` may be `x` but not partly overlap it. */
  saxpy(y: Float32Array, x: Float32Array, a: number): void {
    const py = this.#ptr(y, "y"), px = this.#ptr(x, "x");
    sameLength(y, x, "y", "x");
    identicalOrDisjoint(y, x, "y", "x");
    this.raw.f32_saxpy(py, px, a, y.length);
  }

  /**
   * Σ a[i]·b[i] accumulated in f32 over 32 lanes: differs from an index-order JS loop by
   * rounding, bounded by `(n/32 + 18)·2⁻²⁴·Σ|a[i]·b[i]|`.
   */
  dot(a: Float32Array, b: Float32Array): number {
    const pa = this.#ptr(a, "a"), pb = this.#ptr(b, "b");
    sameLength(a, b, "a", "b");
    return this.raw.f32_dot(pa, pb, a.length);
  }

  /** Σ x[i] accumulated in f32 over 32 lanes (error bound `(n/32 + 17)·2⁻²⁴·Σ|x[i]|`). */
  sum(x: Float32Array): number {
    return this.raw.f32_sum(this.#ptr(x, "x"), x.length);
  }

  /** CRC32C of `bytes`, continuing from `seed` (same contract as `crc32c` in core/checksum.ts). */
  crc32c(bytes: Uint8Array, seed = 0): number {
    return this.raw.crc32c(this.#ptr(bytes, "bytes"), bytes.length, seed | 0) >>> 0;
  }

  /**
   * One CRC32C per message of a batch laid out like a queue's slots: message `i` is `lens[i]`
   * bytes at `data[i·stride]`; its checksum goes to `out[i]`. `data` must hold
   * `lens.length · stride` bytes, every length must be at most `stride`, and `out` (as long as
   * `lens`) must not overlap `data` or `lens`. Returns `out`.
   */
  crc32cBatch(data: Uint8Array, stride: number, lens: Uint32Array, out: Uint32Array): Uint32Array {
    const pd = this.#ptr(data, "data"), pl = this.#ptr(lens, "lens"), po = this.#ptr(out, "out");
    const count = lens.length;
    if (!Number.isInteger(stride) || stride < 0) {
      throw new ValidationError(ErrorCode.InvalidArgument, `bad stride ${stride}`);
    }
    sameLength(out, lens, "out", "lens");
    if (count * stride > data.length) {
      throw new ValidationError(
        ErrorCode.LengthMismatch,
        `data holds ${data.length} bytes, ${count} messages at stride ${stride} need ${
          count * stride
        }`,
      );
    }
    for (let i = 0; i < count; i++) {
      if (lens[i] > stride) {
        throw new ValidationError(
          ErrorCode.InvalidArgument,
          `message ${i} is ${lens[i]} bytes, longer than the stride ${stride}`,
        );
      }
    }
    disjoint(out, data, "out", "data");
    disjoint(out, lens, "out", "lens");
    this.raw.crc32c_batch(pd, stride, pl, count, po);
    return out;
  }

  /**
   * One 5-point stencil step from `src` to `dst` on a `w × h` row-major grid: interior cells get
   * `m + c·((up + down) + (left + right) − 4m)` in f32, border cells are copied. `src` and `dst`
   * must each hold exactly `w·h` floats and must not overlap.
   */
  stencil5(src: Float32Array, dst: Float32Array, w: number, h: number, c: number): void {
    const ps = this.#ptr(src, "src"), pd = this.#ptr(dst, "dst");
    if (!Number.isInteger(w) || !Number.isInteger(h) || w < 0 || h < 0) {
      throw new ValidationError(ErrorCode.InvalidArgument, `bad grid size ${w}×${h}`);
    }
    if (src.length !== w * h || dst.length !== w * h) {
      throw new ValidationError(
        ErrorCode.LengthMismatch,
        `a ${w}×${h} grid has ${w * h} cells; src has ${src.length}, dst ${dst.length}`,
      );
    }
    disjoint(src, dst, "src", "dst");
    this.raw.stencil5_f32(ps, pd, w, h, c);
  }

  /** The current buffer; remembers it so views made from it pass `#ptr` after a later grow. */
  #current(): ArrayBufferLike {
    const b = this.memory.buffer;
    if (b !== this.#buffer) {
      this.#buffer = b;
      this.#buffers.add(b);
    }
    return b;
  }

  /** The address of `view`, after checking that it lies in the arena part of this memory. */
  #ptr(view: View, name: string): number {
    if (view.buffer !== this.#buffer && !this.#buffers.has(view.buffer)) {
      this.#current();
      if (!this.#buffers.has(view.buffer)) {
        throw new MemoryViewError(
          ErrorCode.ForeignMemory,
          `${name} is not a view of the SIMD core's memory; allocate it with allocF32/allocBytes`,
        );
      }
    }
    if (view.byteOffset < this.arenaStart) {
      throw new MemoryViewError(
        ErrorCode.ForeignMemory,
        `${name} starts at byte ${view.byteOffset}, inside the module's static data ` +
          `(below ${this.arenaStart})`,
      );
    }
    return view.byteOffset;
  }

  #checkRange(ptr: number, byteLength: number, align: number): void {
    if (!Number.isInteger(ptr) || ptr < 0) {
      throw new ValidationError(ErrorCode.InvalidArgument, `bad address ${ptr}`);
    }
    if (ptr % align !== 0) {
      throw new MemoryViewError(
        ErrorCode.Misaligned,
        `address ${ptr} is not ${align}-byte aligned`,
      );
    }
    if (ptr < this.arenaStart || ptr + byteLength > this.memory.buffer.byteLength) {
      throw new MemoryViewError(
        ErrorCode.ForeignMemory,
        `bytes [${ptr}, ${ptr + byteLength}) are outside the arena ` +
          `[${this.arenaStart}, ${this.memory.buffer.byteLength})`,
      );
    }
  }

  #outOfMemory(byteLength: number, cur: number, cause?: unknown): OutOfMemoryError {
    return new OutOfMemoryError(
      ErrorCode.OutOfMemory,
      `SIMD core arena: ${byteLength} more bytes do not fit (${cur - this.arenaStart} used, ` +
        `memory at ${this.memory.buffer.byteLength} bytes cannot grow that far)`,
      cause === undefined ? undefined : { cause },
    );
  }

  /** Grows the memory until it holds `end` bytes; racing growers at worst over-grow a little. */
  #ensureBytes(end: number): void {
    while (this.memory.buffer.byteLength < end) {
      const pages = Math.ceil((end - this.memory.buffer.byteLength) / WASM_PAGE_BYTES);
      try {
        this.memory.grow(pages);
      } catch (err) {
        // Another worker may have grown it meanwhile; only a memory still too small is a failure.
        if (this.memory.buffer.byteLength < end) throw err;
      }
    }
    this.#current();
  }
}

function alignUp(x: number, align: number): number {
  return Math.ceil(x / align) * align;
}

function checkCount(n: number): number {
  if (!Number.isInteger(n) || n < 0 || n > 2 ** 32) {
    throw new ValidationError(ErrorCode.InvalidArgument, `bad element count ${n}`);
  }
  return n;
}

function sameLength(x: View, y: View, nx: string, ny: string): void {
  if (x.length !== y.length) {
    throw new ValidationError(
      ErrorCode.LengthMismatch,
      `${nx} has ${x.length} elements but ${ny} has ${y.length}`,
    );
  }
}

function overlaps(x: View, y: View): boolean {
  return x.byteOffset < y.byteOffset + y.byteLength && y.byteOffset < x.byteOffset + x.byteLength;
}

function disjoint(x: View, y: View, nx: string, ny: string): void {
  if (overlaps(x, y)) {
    throw new MemoryViewError(ErrorCode.Overlap, `${nx} and ${ny} overlap`);
  }
}

function identicalOrDisjoint(x: View, y: View, nx: string, ny: string): void {
  if (x.byteOffset !== y.byteOffset && overlaps(x, y)) {
    throw new MemoryViewError(
      ErrorCode.Overlap,
      `${nx} and ${ny} overlap without being the same array`,
    );
  }
}
