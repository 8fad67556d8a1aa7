/**
 * A small CUDA driver API layer over {@linkcode CUDA_SYMBOLS}: {@linkcode CudaDriver} loads
 * libcuda, initializes it and describes devices; {@linkcode CudaContext} owns the retained
 * primary context of one device and everything allocated through it (device memory, mapped
 * pinned host memory, streams, events, modules), which {@linkcode CudaContext.close} frees.
 *
 * Every CUresult is checked: a failure throws {@linkcode CudaError} carrying the call, the number
 * and the `cuGetErrorName` / `cuGetErrorString` texts. Errors after which the context is lost (a
 * kernel trapped: {@linkcode STICKY_CUDA_ERRORS}) also mark the context `faulted`; the backend
 * maps them to `KernelFaultError` (see {@linkcode kernelFaultFrom}), and closing a faulted
 * context resets the device's primary context, so the next one made is usable.
 *
 * The driver binds the current context per OS thread, and a runtime may run FFI calls on another
 * thread than the JS one (Deno's `nonblocking` symbols, workers), so every public entry of
 * {@linkcode CudaContext} first calls {@linkcode CudaContext.ensureCurrent} (one
 * `cuCtxSetCurrent`, tens of nanoseconds).
 *
 * Device pointers and handles are `bigint`.
 *
 * @example
 * ```ts
 * import { CudaDriver } from "./cuda.ts";
 * const driver = CudaDriver.open();
 * const ctx = driver.createContext(0);
 * const d = ctx.alloc(1024);
 * ctx.copyHtoD(d, new Float32Array(256).fill(1));
 * const back = new Float32Array(256);
 * ctx.copyDtoH(back, d);
 * ctx.close();
 * driver.close();
 * ```
 * @module
 */

import { appendFileSync } from "node:fs";
import process from "node:process";
import {
  BackendUnavailableError,
  CudaError,
  ErrorCode,
  InvalidStateError,
  KernelFaultError,
  ValidationError,
} from "../src/core/errors.ts";
import {
  addressOf,
  cString,
  ffiRuntime,
  type ForeignLibrary,
  type ForeignSymbols,
  openLibrary,
  outF32,
  outI32,
  outU64,
  readCString,
  viewForeign,
} from "./dlopen.ts";
import {
  CU_EVENT,
  CU_FUNC_ATTRIBUTE,
  CU_LIMIT,
  CU_MEMHOSTALLOC,
  CU_STREAM,
  CUDA_SYMBOLS,
  type CudaSymbols,
  CUdeviceAttribute,
  CUresult,
  STICKY_CUDA_ERRORS,
} from "./cuda_symbols.ts";
import { type DiscoveryOptions, envVar, findLibrary, type LibraryCandidate } from "./discovery.ts";

/** A device address (`CUdeviceptr`). */
export type DevicePtr = bigint;

/** What {@linkcode CudaDriver.deviceInfo} reports. */
export interface CudaDeviceInfo {
  /** The ordinal the device was opened by. */
  readonly ordinal: number;
  /** The `CUdevice` handle. */
  readonly handle: number;
  /** Marketing name, e.g. "NVIDIA H100 80GB HBM3". */
  readonly name: string;
  /** Compute capability. */
  readonly computeCapability: { readonly major: number; readonly minor: number };
  /** The real architecture NVRTC compiles CUBIN for, e.g. "sm_90". */
  readonly arch: string;
  /** Streaming multiprocessors. */
  readonly smCount: number;
  /** Global memory, bytes. */
  readonly totalMemory: number;
  /** Threads per warp. */
  readonly warpSize: number;
  /** Maximum threads per block. */
  readonly maxThreadsPerBlock: number;
  /** Maximum static shared memory per block, bytes. */
  readonly maxSharedMemoryPerBlock: number;
  /** Whether pinned host memory can be mapped into the device address space. */
  readonly canMapHostMemory: boolean;
  /** Whether host and device share one virtual address space. */
  readonly unifiedAddressing: boolean;
  /** Whether the device is integrated with host memory. */
  readonly integrated: boolean;
  /** Whether cooperative launches are supported. */
  readonly cooperativeLaunch: boolean;
}

/** Options of {@linkcode CudaDriver.open}. */
export interface CudaDriverOptions extends DiscoveryOptions {}

/** The CUresult a failed call returned, with the driver's names for it. */
function errorText(
  fn: ForeignSymbols<CudaSymbols>,
  result: number,
): { name: string; description: string } {
  const out = outU64();
  const name = fn.cuGetErrorName(result, out) === 0 ? readCString(out[0]) : `CUresult ${result}`;
  const description = fn.cuGetErrorString(result, out) === 0 ? readCString(out[0]) : "";
  return { name, description };
}

const MODULE_LOADING = "CUDA_MODULE_LOADING";

/**
 * Asks the driver for eager module loading unless the user chose (read at `cuInit`). Lazy
 * loading, the default since CUDA 12.2, loads a function's code at its first launch and may wait
 * for the device to go idle, which it never does while a persistent kernel runs: on the H100 a
 * second definition launched beside a running kernel hung there. Eagerly, `cuModuleLoadData`
 * loads everything, before any kernel of the module runs.
 */
function preferEagerModuleLoading(): void {
  if (envVar(MODULE_LOADING) !== undefined) return;
  // The driver reads the C environment; Bun's process.env does not write to it (measured on the
  // H100: the hang above came back under Bun), so setenv(3) it is. Without overwriting: a value
  // this process may not read (Deno without env permission) is still the user's choice.
  let viaLibc = false;
  try {
    const libc = openLibrary(
      "libc.so.6",
      {
        setenv: { parameters: ["buffer", "buffer", "i32"], result: "i32" },
      } as const,
    );
    try {
      viaLibc = libc.symbols.setenv(cString(MODULE_LOADING), cString("EAGER"), 0) === 0;
    } finally {
      libc.close();
    }
  } catch {
    // No libc.so.6 (not glibc Linux): the runtime's own setter below is all there is.
  }
  // Deno's environment is the C one (set above); Bun's process.env is a copy: keep it equal.
  if (viaLibc && ffiRuntime === "deno") return;
  try {
    process.env[MODULE_LOADING] = "EAGER";
  } catch {
    // No permission to write the environment: lazy loading it is (see the note above).
  }
}

/**
 * The symbols, or with `RINGKERNEL_CUDA_TRACE` in the environment a copy whose every call first
 * writes its name, synchronously, to stderr (`=1`) or appended to the file it names (test runners
 * hold a test's stderr until it ends, and a hung one never does): a call that hangs in the driver
 * is then the last line written, the one thing a blocked event loop cannot report otherwise.
 */
function traced(fn: ForeignSymbols<CudaSymbols>): ForeignSymbols<CudaSymbols> {
  const on = envVar("RINGKERNEL_CUDA_TRACE");
  if (on === undefined || on === "0") return fn;
  const encoder = new TextEncoder();
  const file = on === "1" ? undefined : on;
  const write = (line: string): void => {
    if (file !== undefined) return appendFileSync(file, line);
    const bytes = encoder.encode(line);
    const d = globalThis as {
      Deno?: { stderr: { writeSync(b: Uint8Array): number } };
      Bun?: { stderr: unknown };
    };
    if (d.Deno !== undefined) d.Deno.stderr.writeSync(bytes);
    else console.error(line.trimEnd());
  };
  const out: Record<string, unknown> = {};
  for (const [name, f] of Object.entries(fn)) {
    out[name] = typeof f !== "function" ? f : (...args: unknown[]) => {
      write(`[cuda] ${name}\n`);
      return (f as (...a: unknown[]) => unknown)(...args);
    };
  }
  return out as ForeignSymbols<CudaSymbols>;
}

/**
 * The loaded driver library. One per process is enough; contexts made from it share it.
 */
export class CudaDriver {
  /** The library handle. */
  readonly library: ForeignLibrary<CudaSymbols>;
  /** The raw typed functions, for calls this class does not wrap. */
  readonly fn: ForeignSymbols<CudaSymbols>;
  /** Where the library was found. */
  readonly source: LibraryCandidate;
  /**
   * How the driver loads modules (`cuModuleGetLoadingMode`): "eager" unless the user chose lazy;
   * undefined on drivers without the call.
   */
  get moduleLoading(): "eager" | "lazy" | undefined {
    const get = this.fn.cuModuleGetLoadingMode;
    if (get === null) return undefined;
    const mode = outI32();
    this.check("cuModuleGetLoadingMode", get(mode));
    return mode[0] === 1 ? "eager" : "lazy";
  }

  /** `cuDriverGetVersion`, e.g. 13000 for CUDA 13.0. */
  readonly version: number;
  #contexts = new Set<CudaContext>();
  #closed = false;

  private constructor(library: ForeignLibrary<CudaSymbols>, source: LibraryCandidate) {
    this.library = library;
    this.fn = traced(library.symbols);
    this.source = source;
    const v = outI32();
    this.check("cuDriverGetVersion", this.fn.cuDriverGetVersion(v));
    this.version = v[0];
  }

  /**
   * Finds and loads libcuda (see `discovery.ts`), and calls `cuInit(0)`. Throws
   * `NoCudaError` when no library loads, and {@linkcode CudaError} when `cuInit` fails (for
   * example `CUDA_ERROR_NO_DEVICE` on a machine with a driver but no GPU).
   */
  static open(options: CudaDriverOptions = {}): CudaDriver {
    preferEagerModuleLoading();
    let initResult = 0;
    const found = findLibrary("libcuda", CUDA_SYMBOLS, {
      ...options,
      accept: (lib) => {
        initResult = lib.symbols.cuInit(0);
        return initResult === CUresult.STUB_LIBRARY
          ? "a link-time stub (cuInit: CUDA_ERROR_STUB_LIBRARY), not the driver"
          : undefined;
      },
    });
    if (initResult !== CUresult.SUCCESS) {
      const { name, description } = errorText(found.library.symbols, initResult);
      found.library.close();
      throw new CudaError("cuInit", initResult, name, description);
    }
    return new CudaDriver(found.library, found.candidate);
  }

  /** Throws {@linkcode CudaError} for `call` when `result` is not CUDA_SUCCESS. */
  check(call: string, result: number): void {
    if (result === 0) return;
    const { name, description } = errorText(this.fn, result);
    throw new CudaError(call, result, name, description);
  }

  /** `cuGetErrorName` of `result` (e.g. "CUDA_ERROR_OUT_OF_MEMORY"). */
  errorName(result: number): string {
    return errorText(this.fn, result).name;
  }

  /** The number of CUDA devices. */
  deviceCount(): number {
    const n = outI32();
    this.check("cuDeviceGetCount", this.fn.cuDeviceGetCount(n));
    return n[0];
  }

  /** Name, compute capability, SM count and limits of device `ordinal`. */
  deviceInfo(ordinal = 0): CudaDeviceInfo {
    const out = outI32();
    this.check("cuDeviceGet", this.fn.cuDeviceGet(out, ordinal));
    const dev = out[0];
    const attr = (a: number) => {
      this.check("cuDeviceGetAttribute", this.fn.cuDeviceGetAttribute(out, a, dev));
      return out[0];
    };
    const nameBytes = new Uint8Array(new ArrayBuffer(256));
    this.check("cuDeviceGetName", this.fn.cuDeviceGetName(nameBytes, nameBytes.length, dev));
    const end = nameBytes.indexOf(0);
    const mem = outU64();
    this.check("cuDeviceTotalMem_v2", this.fn.cuDeviceTotalMem_v2(mem, dev));
    const major = attr(CUdeviceAttribute.COMPUTE_CAPABILITY_MAJOR);
    const minor = attr(CUdeviceAttribute.COMPUTE_CAPABILITY_MINOR);
    return {
      ordinal,
      handle: dev,
      name: new TextDecoder().decode(nameBytes.subarray(0, end < 0 ? nameBytes.length : end)),
      computeCapability: { major, minor },
      arch: `sm_${major}${minor}`,
      smCount: attr(CUdeviceAttribute.MULTIPROCESSOR_COUNT),
      totalMemory: Number(mem[0]),
      warpSize: attr(CUdeviceAttribute.WARP_SIZE),
      maxThreadsPerBlock: attr(CUdeviceAttribute.MAX_THREADS_PER_BLOCK),
      maxSharedMemoryPerBlock: attr(CUdeviceAttribute.MAX_SHARED_MEMORY_PER_BLOCK),
      canMapHostMemory: attr(CUdeviceAttribute.CAN_MAP_HOST_MEMORY) !== 0,
      unifiedAddressing: attr(CUdeviceAttribute.UNIFIED_ADDRESSING) !== 0,
      integrated: attr(CUdeviceAttribute.INTEGRATED) !== 0,
      cooperativeLaunch: attr(CUdeviceAttribute.COOPERATIVE_LAUNCH) !== 0,
    };
  }

  /** Retains the primary context of device `ordinal` and returns a {@linkcode CudaContext}. */
  createContext(ordinal = 0): CudaContext {
    if (this.#closed) throw new InvalidStateError(ErrorCode.Closed, "the CUDA driver is closed");
    const info = this.deviceInfo(ordinal);
    const ctx = new CudaContext(this, info, () => this.#contexts.delete(ctx));
    this.#contexts.add(ctx);
    return ctx;
  }

  /** Closes every context still open, then the library. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    let first: unknown;
    for (const ctx of [...this.#contexts]) {
      try {
        ctx.close();
      } catch (err) {
        first ??= err;
      }
    }
    this.library.close();
    if (first !== undefined) throw first;
  }
}

/** Grid or block dimensions: x, or [x, y?, z?]. */
export type LaunchDims = number | readonly [number, number?, number?];

/**
 * One kernel argument, by its C type. `bool` parameters of the DSL ABI are `unsigned int`:
 * pass `{ u32: 0 | 1 }`.
 */
export type KernelArg =
  | { readonly ptr: DevicePtr }
  | { readonly i32: number }
  | { readonly u32: number }
  | { readonly f32: number }
  | { readonly f64: number }
  | { readonly i64: bigint }
  | { readonly u64: bigint };

/** Pinned host memory mapped into the device address space. */
export interface HostAllocation {
  /** The host address. */
  readonly host: bigint;
  /** The device address of the same memory (`cuMemHostGetDevicePointer`). */
  readonly device: DevicePtr;
  /** Size in bytes. */
  readonly bytes: number;
  /**
   * The memory as an ArrayBuffer, without copying. It dangles once the allocation is freed: drop
   * every view before {@linkcode CudaContext.freeHost} / {@linkcode CudaContext.close}.
   */
  readonly buffer: ArrayBuffer;
}

/** Options of {@linkcode CudaContext.allocHost}. */
export interface HostAllocOptions {
  /** Write-combined memory: fast for the device to read, very slow for the host to read. */
  readonly writeCombined?: boolean;
}

/** Live objects of a context, for leak checks. */
export interface CudaContextStats {
  /** Device allocations not yet freed. */
  readonly deviceAllocations: number;
  /** Their total size in bytes. */
  readonly deviceBytes: number;
  /** Pinned host allocations not yet freed. */
  readonly hostAllocations: number;
  /** Their total size in bytes. */
  readonly hostBytes: number;
  /** Loaded modules. */
  readonly modules: number;
  /** Streams not yet destroyed. */
  readonly streams: number;
  /** Events not yet destroyed. */
  readonly events: number;
}

/** A CUDA stream of a {@linkcode CudaContext}. */
export class CudaStream {
  /** The `CUstream` handle. */
  readonly handle: bigint;
  readonly #ctx: CudaContext;

  /** Made by {@linkcode CudaContext.createStream}. */
  constructor(ctx: CudaContext, handle: bigint) {
    this.#ctx = ctx;
    this.handle = handle;
  }

  /** Waits until all work queued on the stream has completed. */
  synchronize(): void {
    this.#ctx.synchronizeStream(this);
  }

  /** True when all work queued on the stream has completed. */
  query(): boolean {
    return this.#ctx.queryStream(this);
  }

  /** Destroys the stream (queued work still completes). */
  destroy(): void {
    this.#ctx.destroyStream(this);
  }
}

/** A CUDA event of a {@linkcode CudaContext}. */
export class CudaEvent {
  /** The `CUevent` handle. */
  readonly handle: bigint;
  readonly #ctx: CudaContext;

  /** Made by {@linkcode CudaContext.createEvent}. */
  constructor(ctx: CudaContext, handle: bigint) {
    this.#ctx = ctx;
    this.handle = handle;
  }

  /** Records the event on `stream` (the legacy default stream when omitted). */
  record(stream?: CudaStream | null): void {
    this.#ctx.recordEvent(this, stream);
  }

  /** Waits until the recorded work has completed. */
  synchronize(): void {
    this.#ctx.synchronizeEvent(this);
  }

  /** Milliseconds from `start` to this event; both recorded and completed. */
  elapsedSince(start: CudaEvent): number {
    return this.#ctx.elapsedMs(start, this);
  }

  /** Destroys the event. */
  destroy(): void {
    this.#ctx.destroyEvent(this);
  }
}

/** A kernel entry point of a loaded module. */
export interface CudaFunction {
  /** The `CUfunction` handle. */
  readonly handle: bigint;
  /** The entry point's name. */
  readonly name: string;
  /** The module it belongs to. */
  readonly module: CudaModule;
}

/** A loaded module (CUBIN or PTX). */
export class CudaModule {
  /** The `CUmodule` handle. */
  readonly handle: bigint;
  readonly #ctx: CudaContext;
  readonly #functions = new Map<string, CudaFunction>();

  /** Made by {@linkcode CudaContext.loadModule}. */
  constructor(ctx: CudaContext, handle: bigint) {
    this.#ctx = ctx;
    this.handle = handle;
  }

  /** The `extern "C"` entry point `name` (looked up once, then cached). */
  getFunction(name: string): CudaFunction {
    let f = this.#functions.get(name);
    if (f === undefined) {
      f = { handle: this.#ctx.moduleFunction(this, name), name, module: this };
      this.#functions.set(name, f);
    }
    return f;
  }

  /** Address and size of the `__device__` / `__constant__` variable `name`. */
  getGlobal(name: string): { readonly ptr: DevicePtr; readonly bytes: number } {
    return this.#ctx.moduleGlobal(this, name);
  }

  /** Unloads the module; its functions must not be launched afterwards. */
  unload(): void {
    this.#ctx.unloadModule(this);
  }
}

const ELF_MAGIC = 0x464c457f; // "\x7fELF" little-endian
const FATBIN_MAGIC = 0xba55ed50;

function dims(d: LaunchDims, what: string): [number, number, number] {
  const [x, y = 1, z = 1] = typeof d === "number" ? [d] : d;
  for (const v of [x, y, z]) {
    if (!Number.isInteger(v) || v < 1 || v > 0x7fffffff) {
      throw new ValidationError(
        ErrorCode.InvalidArgument,
        `${what} dimensions must be positive integers, got ${JSON.stringify(d)}`,
      );
    }
  }
  return [x, y, z];
}

function byteCount(bytes: number, what: string): number {
  if (!Number.isSafeInteger(bytes) || bytes < 0) {
    throw new ValidationError(
      ErrorCode.InvalidArgument,
      `${what}: size must be a non-negative integer, got ${bytes}`,
    );
  }
  return bytes;
}

/**
 * The retained primary context of one device and everything allocated through it. Not shared
 * between workers: each worker opens its own driver and context (they retain the same primary
 * context underneath).
 */
export class CudaContext {
  /** The driver it belongs to. */
  readonly driver: CudaDriver;
  /** The device. */
  readonly device: CudaDeviceInfo;
  /** The `CUcontext` handle. */
  readonly handle: bigint;
  readonly #fn: ForeignSymbols<CudaSymbols>;
  readonly #onClose: () => void;
  readonly #device = new Map<bigint, number>();
  readonly #host = new Map<bigint, HostAllocation>();
  readonly #streams = new Set<CudaStream>();
  readonly #events = new Set<CudaEvent>();
  readonly #modules = new Set<CudaModule>();
  readonly #out = outU64();
  readonly #out2 = outU64();
  #faulted: string | undefined;
  #closed = false;
  // Kernel arguments: 8-byte value slots, and the void* table pointing at them. Both live in one
  // ArrayBuffer of their own (it never moves), so the table is written once per growth.
  #argBuffer = new ArrayBuffer(0);
  #argView = new DataView(this.#argBuffer);
  #argTable = new BigUint64Array(0);
  #argCapacity = 0;

  /** Made by {@linkcode CudaDriver.createContext}. */
  constructor(driver: CudaDriver, device: CudaDeviceInfo, onClose: () => void) {
    this.driver = driver;
    this.device = device;
    this.#fn = driver.fn;
    this.#onClose = onClose;
    const retained = this.#fn.cuDevicePrimaryCtxRetain(this.#out, device.handle);
    if (STICKY_CUDA_ERRORS.has(retained)) {
      // Measured on the H100: after a kernel trapped, neither releasing every retain nor
      // cuDevicePrimaryCtxReset gives a working context again; the driver documents these errors
      // as leaving the process inconsistent until it is restarted.
      const { name } = errorText(this.#fn, retained);
      throw new BackendUnavailableError(
        "cuda",
        `this process's CUDA state was lost to ${name} (a kernel trapped earlier); the driver ` +
          `cannot be used again in this process: start a new process`,
      );
    }
    this.#check("cuDevicePrimaryCtxRetain", retained);
    this.handle = this.#out[0];
    try {
      this.ensureCurrent();
    } catch (err) {
      this.#fn.cuDevicePrimaryCtxRelease_v2(device.handle);
      throw err;
    }
    this.#growArgs(16);
  }

  /** The sticky error that made this context unusable, or undefined. */
  get faulted(): string | undefined {
    return this.#faulted;
  }

  /** True once {@linkcode close} ran. */
  get isClosed(): boolean {
    return this.#closed;
  }

  #check(call: string, result: number): void {
    if (result === 0) return;
    const { name, description } = errorText(this.#fn, result);
    if (STICKY_CUDA_ERRORS.has(result)) this.#faulted ??= name;
    throw new CudaError(call, result, name, description);
  }

  #open(): void {
    if (this.#closed) throw new InvalidStateError(ErrorCode.Closed, "the CUDA context is closed");
    this.ensureCurrent();
  }

  /**
   * Makes this context current on the calling OS thread. Every public method calls it first;
   * call it yourself before using {@linkcode CudaDriver.fn} directly.
   */
  ensureCurrent(): void {
    this.#check("cuCtxSetCurrent", this.#fn.cuCtxSetCurrent(this.handle));
  }

  /** Waits for all work in the context. */
  synchronize(): void {
    this.#open();
    this.#check("cuCtxSynchronize", this.#fn.cuCtxSynchronize());
  }

  /** The stack bytes of each GPU thread (`CU_LIMIT_STACK_SIZE`). */
  stackLimit(): number {
    this.#open();
    this.#check("cuCtxGetLimit", this.#fn.cuCtxGetLimit(this.#out, CU_LIMIT.STACK_SIZE));
    return Number(this.#out[0]);
  }

  /**
   * Sets the stack bytes of each GPU thread. The driver resizes the context's local memory, which
   * waits for the device to go idle: a persistent kernel must not be running (a quiet section).
   */
  setStackLimit(bytes: number): void {
    this.#open();
    byteCount(bytes, "setStackLimit");
    this.#check("cuCtxSetLimit", this.#fn.cuCtxSetLimit(CU_LIMIT.STACK_SIZE, bytes));
  }

  /** Local memory (its stack frame included) each thread of `fn` uses, bytes. */
  localBytes(fn: CudaFunction): number {
    this.#open();
    const out = outI32();
    this.#check(
      `cuFuncGetAttribute(${fn.name}, LOCAL_SIZE_BYTES)`,
      this.#fn.cuFuncGetAttribute(out, CU_FUNC_ATTRIBUTE.LOCAL_SIZE_BYTES, fn.handle),
    );
    return out[0];
  }

  /** Free and total device memory, bytes. */
  memInfo(): { readonly free: number; readonly total: number } {
    this.#open();
    this.#check("cuMemGetInfo_v2", this.#fn.cuMemGetInfo_v2(this.#out, this.#out2));
    return { free: Number(this.#out[0]), total: Number(this.#out2[0]) };
  }

  // -------------------------------------------------------------------------------------------
  // Memory

  /** Allocates `bytes` of device memory (uninitialized). */
  alloc(bytes: number): DevicePtr {
    this.#open();
    byteCount(bytes, "alloc");
    this.#check("cuMemAlloc_v2", this.#fn.cuMemAlloc_v2(this.#out, Math.max(1, bytes)));
    const ptr = this.#out[0];
    this.#device.set(ptr, bytes);
    return ptr;
  }

  /** Frees device memory from {@linkcode alloc}. */
  free(ptr: DevicePtr): void {
    this.#open();
    if (!this.#device.has(ptr)) {
      throw new ValidationError(
        ErrorCode.InvalidArgument,
        `free: 0x${ptr.toString(16)} is not a live allocation of this context`,
      );
    }
    this.#device.delete(ptr);
    this.#check("cuMemFree_v2", this.#fn.cuMemFree_v2(ptr));
  }

  /** Sets `bytes` bytes at `ptr` to `value` (synchronous with respect to the host). */
  memset(ptr: DevicePtr, value: number, bytes: number): void {
    this.#open();
    if (byteCount(bytes, "memset") === 0) return;
    this.#check("cuMemsetD8_v2", this.#fn.cuMemsetD8_v2(ptr, value & 0xff, bytes));
  }

  /**
   * Queues a store of the 32-bit `value` into `count` words at `ptr` on `stream`: after a copy on
   * the same stream it marks that copy complete for a kernel that watches the word.
   */
  memsetD32Async(ptr: DevicePtr, value: number, count: number, stream: CudaStream | null): void {
    this.#open();
    if (byteCount(count, "memsetD32Async") === 0) return;
    this.#check(
      "cuMemsetD32Async",
      this.#fn.cuMemsetD32Async(ptr, value >>> 0, count, stream?.handle ?? 0n),
    );
  }

  /**
   * Allocates `bytes` of pinned host memory, portable across contexts and mapped into the device
   * address space. Kernels read and write it through `device`; the host through `buffer`.
   */
  allocHost(bytes: number, options: HostAllocOptions = {}): HostAllocation {
    this.#open();
    byteCount(bytes, "allocHost");
    const size = Math.max(1, bytes);
    const flags = CU_MEMHOSTALLOC.PORTABLE | CU_MEMHOSTALLOC.DEVICEMAP |
      (options.writeCombined === true ? CU_MEMHOSTALLOC.WRITECOMBINED : 0);
    this.#check("cuMemHostAlloc", this.#fn.cuMemHostAlloc(this.#out, size, flags));
    const host = this.#out[0];
    try {
      this.#check(
        "cuMemHostGetDevicePointer_v2",
        this.#fn.cuMemHostGetDevicePointer_v2(this.#out, host, 0),
      );
    } catch (err) {
      this.#fn.cuMemFreeHost(host);
      throw err;
    }
    const allocation: HostAllocation = {
      host,
      device: this.#out[0],
      bytes,
      buffer: viewForeign(host, bytes),
    };
    this.#host.set(host, allocation);
    return allocation;
  }

  /** Frees pinned memory from {@linkcode allocHost}; its `buffer` must no longer be used. */
  freeHost(allocation: HostAllocation): void {
    this.#open();
    if (this.#host.get(allocation.host) !== allocation) {
      throw new ValidationError(
        ErrorCode.InvalidArgument,
        "freeHost: not a live host allocation of this context",
      );
    }
    this.#host.delete(allocation.host);
    this.#check("cuMemFreeHost", this.#fn.cuMemFreeHost(allocation.host));
  }

  /** Copies `src` (all of its bytes) to device address `dst`; returns when done. */
  copyHtoD(dst: DevicePtr, src: ArrayBufferView): void {
    this.#open();
    if (src.byteLength === 0) return;
    this.#check("cuMemcpyHtoD_v2", this.#fn.cuMemcpyHtoD_v2(dst, src, src.byteLength));
  }

  /** Copies `dst.byteLength` bytes from device address `src` into `dst`; returns when done. */
  copyDtoH(dst: ArrayBufferView, src: DevicePtr): void {
    this.#open();
    if (dst.byteLength === 0) return;
    this.#check("cuMemcpyDtoH_v2", this.#fn.cuMemcpyDtoH_v2(dst, src, dst.byteLength));
  }

  /** Copies `bytes` between device addresses (ordered on the legacy default stream). */
  copyDtoD(dst: DevicePtr, src: DevicePtr, bytes: number): void {
    this.#open();
    if (byteCount(bytes, "copyDtoD") === 0) return;
    this.#check("cuMemcpyDtoD_v2", this.#fn.cuMemcpyDtoD_v2(dst, src, bytes));
  }

  /**
   * Queues a copy of `src` to `dst` on `stream`. Truly asynchronous only when `src` views pinned
   * memory ({@linkcode HostAllocation.buffer}); from ordinary JS memory the driver stages the
   * bytes before returning, so `src` may be reused at once either way.
   */
  copyHtoDAsync(dst: DevicePtr, src: ArrayBufferView, stream: CudaStream | null): void {
    this.#open();
    if (src.byteLength === 0) return;
    this.#check(
      "cuMemcpyHtoDAsync_v2",
      this.#fn.cuMemcpyHtoDAsync_v2(dst, src, src.byteLength, stream?.handle ?? 0n),
    );
  }

  /**
   * Queues a copy from `src` into `dst` on `stream`. Asynchronous only when `dst` views pinned
   * memory (then read it after the stream is synchronized); into ordinary JS memory the driver
   * completes the copy before returning.
   */
  copyDtoHAsync(dst: ArrayBufferView, src: DevicePtr, stream: CudaStream | null): void {
    this.#open();
    if (dst.byteLength === 0) return;
    this.#check(
      "cuMemcpyDtoHAsync_v2",
      this.#fn.cuMemcpyDtoHAsync_v2(dst, src, dst.byteLength, stream?.handle ?? 0n),
    );
  }

  // -------------------------------------------------------------------------------------------
  // Streams and events

  /** Creates a stream; `nonBlocking` streams do not synchronize with the legacy default stream. */
  createStream(options: { readonly nonBlocking?: boolean } = {}): CudaStream {
    this.#open();
    const flags = options.nonBlocking === true ? CU_STREAM.NON_BLOCKING : CU_STREAM.DEFAULT;
    this.#check("cuStreamCreate", this.#fn.cuStreamCreate(this.#out, flags));
    const s = new CudaStream(this, this.#out[0]);
    this.#streams.add(s);
    return s;
  }

  /** Waits for `stream`. */
  synchronizeStream(stream: CudaStream): void {
    this.#open();
    this.#check("cuStreamSynchronize", this.#fn.cuStreamSynchronize(stream.handle));
  }

  /** True when `stream` has no pending work. */
  queryStream(stream: CudaStream): boolean {
    this.#open();
    const r = this.#fn.cuStreamQuery(stream.handle);
    if (r === CUresult.NOT_READY) return false;
    this.#check("cuStreamQuery", r);
    return true;
  }

  /** Destroys `stream`. */
  destroyStream(stream: CudaStream): void {
    this.#open();
    if (!this.#streams.delete(stream)) return;
    this.#check("cuStreamDestroy_v2", this.#fn.cuStreamDestroy_v2(stream.handle));
  }

  /**
   * Creates an event; `timing: false` makes a cheaper one that cannot measure time,
   * `blockingSync` makes `synchronize` yield the CPU instead of spinning.
   */
  createEvent(
    options: { readonly timing?: boolean; readonly blockingSync?: boolean } = {},
  ): CudaEvent {
    this.#open();
    const flags = (options.timing === false ? CU_EVENT.DISABLE_TIMING : 0) |
      (options.blockingSync === true ? CU_EVENT.BLOCKING_SYNC : 0);
    this.#check("cuEventCreate", this.#fn.cuEventCreate(this.#out, flags));
    const e = new CudaEvent(this, this.#out[0]);
    this.#events.add(e);
    return e;
  }

  /** Records `event` on `stream` (the legacy default stream when omitted). */
  recordEvent(event: CudaEvent, stream?: CudaStream | null): void {
    this.#open();
    this.#check("cuEventRecord", this.#fn.cuEventRecord(event.handle, stream?.handle ?? 0n));
  }

  /** Waits for `event`. */
  synchronizeEvent(event: CudaEvent): void {
    this.#open();
    this.#check("cuEventSynchronize", this.#fn.cuEventSynchronize(event.handle));
  }

  /** Milliseconds between two completed timing events. */
  elapsedMs(start: CudaEvent, end: CudaEvent): number {
    this.#open();
    const ms = outF32();
    const v2 = this.#fn.cuEventElapsedTime_v2;
    if (v2 !== null) {
      this.#check("cuEventElapsedTime_v2", v2(ms, start.handle, end.handle));
    } else {
      const v1 = this.#fn.cuEventElapsedTime;
      if (v1 === null) {
        throw new CudaError("cuEventElapsedTime", 500, "CUDA_ERROR_NOT_FOUND", "not exported");
      }
      this.#check("cuEventElapsedTime", v1(ms, start.handle, end.handle));
    }
    return ms[0];
  }

  /** Destroys `event`. */
  destroyEvent(event: CudaEvent): void {
    this.#open();
    if (!this.#events.delete(event)) return;
    this.#check("cuEventDestroy_v2", this.#fn.cuEventDestroy_v2(event.handle));
  }

  // -------------------------------------------------------------------------------------------
  // Modules and launch

  /**
   * Loads a module image: CUBIN or fatbin bytes, or PTX text (a string, or bytes; a NUL is
   * appended where missing).
   */
  loadModule(image: Uint8Array | string): CudaModule {
    this.#open();
    let bytes: Uint8Array;
    if (typeof image === "string") bytes = cString(image);
    else {
      const magic = image.byteLength >= 4
        ? new DataView(image.buffer, image.byteOffset, 4).getUint32(0, true)
        : 0;
      const binary = magic === ELF_MAGIC || magic === FATBIN_MAGIC;
      if (binary || image[image.length - 1] === 0) bytes = image;
      else {
        bytes = new Uint8Array(new ArrayBuffer(image.length + 1));
        bytes.set(image);
      }
    }
    if (bytes.byteLength === 0) {
      throw new ValidationError(ErrorCode.InvalidArgument, "loadModule: empty image");
    }
    this.#check("cuModuleLoadData", this.#fn.cuModuleLoadData(this.#out, bytes));
    const m = new CudaModule(this, this.#out[0]);
    this.#modules.add(m);
    return m;
  }

  /** `cuModuleGetFunction`; prefer {@linkcode CudaModule.getFunction}, which caches. */
  moduleFunction(module: CudaModule, name: string): bigint {
    this.#open();
    this.#check(
      `cuModuleGetFunction(${name})`,
      this.#fn.cuModuleGetFunction(this.#out, module.handle, cString(name)),
    );
    return this.#out[0];
  }

  /** `cuModuleGetGlobal_v2`; prefer {@linkcode CudaModule.getGlobal}. */
  moduleGlobal(
    module: CudaModule,
    name: string,
  ): { readonly ptr: DevicePtr; readonly bytes: number } {
    this.#open();
    this.#check(
      `cuModuleGetGlobal_v2(${name})`,
      this.#fn.cuModuleGetGlobal_v2(this.#out, this.#out2, module.handle, cString(name)),
    );
    return { ptr: this.#out[0], bytes: Number(this.#out2[0]) };
  }

  /** Unloads `module`. */
  unloadModule(module: CudaModule): void {
    this.#open();
    if (!this.#modules.delete(module)) return;
    this.#check("cuModuleUnload", this.#fn.cuModuleUnload(module.handle));
  }

  #growArgs(n: number): void {
    const cap = Math.max(n, this.#argCapacity * 2);
    this.#argBuffer = new ArrayBuffer(16 * cap);
    this.#argView = new DataView(this.#argBuffer, 0, 8 * cap);
    this.#argTable = new BigUint64Array(this.#argBuffer, 8 * cap, cap);
    const base = addressOf(new Uint8Array(this.#argBuffer, 0, 8));
    for (let i = 0; i < cap; i++) this.#argTable[i] = base + BigInt(8 * i);
    this.#argCapacity = cap;
  }

  /**
   * Launches `fn` on a `grid` of `block`s with `sharedBytes` of dynamic shared memory on `stream`
   * (the legacy default stream when null). `args` are the kernel's parameters in order; the
   * driver copies them during the call, so nothing has to stay alive afterwards. The launch is
   * asynchronous: errors inside the kernel surface at the next synchronizing call.
   */
  launch(
    fn: CudaFunction,
    grid: LaunchDims,
    block: LaunchDims,
    sharedBytes: number,
    stream: CudaStream | null,
    args: readonly KernelArg[],
  ): void {
    this.#open();
    const [gx, gy, gz] = dims(grid, "grid");
    const [bx, by, bz] = dims(block, "block");
    byteCount(sharedBytes, "launch sharedBytes");
    if (args.length > this.#argCapacity) this.#growArgs(args.length);
    const v = this.#argView;
    for (let i = 0; i < args.length; i++) {
      const a = args[i];
      const at = 8 * i;
      if ("ptr" in a) v.setBigUint64(at, a.ptr, true);
      else if ("f32" in a) v.setFloat32(at, a.f32, true);
      else if ("i32" in a) v.setInt32(at, a.i32, true);
      else if ("u32" in a) v.setUint32(at, a.u32, true);
      else if ("f64" in a) v.setFloat64(at, a.f64, true);
      else if ("u64" in a) v.setBigUint64(at, a.u64, true);
      else v.setBigInt64(at, a.i64, true);
    }
    this.#check(
      `cuLaunchKernel(${fn.name})`,
      this.#fn.cuLaunchKernel(
        fn.handle,
        gx,
        gy,
        gz,
        bx,
        by,
        bz,
        sharedBytes,
        stream?.handle ?? 0n,
        this.#argTable,
        null,
      ),
    );
  }

  // -------------------------------------------------------------------------------------------
  // Lifetime

  /** Live objects of this context; a leak check asserts these return to their starting values. */
  stats(): CudaContextStats {
    let deviceBytes = 0;
    for (const b of this.#device.values()) deviceBytes += b;
    let hostBytes = 0;
    for (const h of this.#host.values()) hostBytes += h.bytes;
    return {
      deviceAllocations: this.#device.size,
      deviceBytes,
      hostAllocations: this.#host.size,
      hostBytes,
      modules: this.#modules.size,
      streams: this.#streams.size,
      events: this.#events.size,
    };
  }

  /**
   * Waits for the work queued on this context's streams (not for other users of the primary
   * context), then frees everything this context allocated (events, streams, modules, host and
   * device memory) and releases the primary context. Goes on past failures and throws the first
   * one at the end. A faulted context skips the individual frees and resets the primary context
   * instead (which destroys them; see `#resetFaulted`). Idempotent.
   */
  close(): void {
    if (this.#closed) return;
    let first: unknown;
    const attempt = (f: () => void) => {
      try {
        f();
      } catch (err) {
        first ??= err;
      }
    };
    attempt(() => this.ensureCurrent());
    if (this.#faulted === undefined) {
      // Its own work only (its streams, then the legacy stream its synchronous calls use):
      // cuCtxSynchronize would wait for every user of the shared primary context too, and the
      // persistent kernels of another runtime in this process never finish.
      for (const st of this.#streams) {
        attempt(() => this.#check("cuStreamSynchronize", this.#fn.cuStreamSynchronize(st.handle)));
      }
      attempt(() => this.#check("cuStreamSynchronize", this.#fn.cuStreamSynchronize(0n)));
      for (const e of this.#events) {
        attempt(() => this.#check("cuEventDestroy_v2", this.#fn.cuEventDestroy_v2(e.handle)));
      }
      for (const s of this.#streams) {
        attempt(() => this.#check("cuStreamDestroy_v2", this.#fn.cuStreamDestroy_v2(s.handle)));
      }
      for (const m of this.#modules) {
        attempt(() => this.#check("cuModuleUnload", this.#fn.cuModuleUnload(m.handle)));
      }
      for (const h of this.#host.keys()) {
        attempt(() => this.#check("cuMemFreeHost", this.#fn.cuMemFreeHost(h)));
      }
      for (const p of this.#device.keys()) {
        attempt(() => this.#check("cuMemFree_v2", this.#fn.cuMemFree_v2(p)));
      }
    }
    this.#events.clear();
    this.#streams.clear();
    this.#modules.clear();
    this.#host.clear();
    this.#device.clear();
    this.#closed = true;
    if (this.#faulted !== undefined) attempt(() => this.#resetFaulted());
    attempt(() =>
      this.#check(
        "cuDevicePrimaryCtxRelease_v2",
        this.#fn.cuDevicePrimaryCtxRelease_v2(this.device.handle),
      )
    );
    this.#onClose();
    if (first !== undefined) throw first;
  }

  /**
   * Resets the device's primary context after a sticky error. Every retainer in the process
   * shares it and it is lost for all of them, but releasing destroys it only when the last
   * retainer lets go, so without a reset the next `createContext` would get the dead one back.
   * Reset only while the current primary context is still faulted: another retainer may have
   * reset it already, and a new runtime be working on its successor.
   */
  #resetFaulted(): void {
    const reset = this.#fn.cuDevicePrimaryCtxReset_v2;
    if (reset === null) return;
    const set = this.#fn.cuCtxSetCurrent(this.handle);
    // A query of the legacy stream never blocks; it returns the context's sticky error, if any.
    const probe = set === CUresult.SUCCESS ? this.#fn.cuStreamQuery(0n) : set;
    if (!STICKY_CUDA_ERRORS.has(probe)) return;
    this.#check("cuDevicePrimaryCtxReset_v2", reset(this.device.handle));
  }
}

/**
 * The {@linkcode KernelFaultError} for `err` when it is a sticky CUDA error (a kernel trapped and
 * the context is lost), else undefined. `kernelId` names the kernel that was running.
 */
export function kernelFaultFrom(err: unknown, kernelId: string): KernelFaultError | undefined {
  if (err instanceof CudaError && STICKY_CUDA_ERRORS.has(err.result)) {
    return new KernelFaultError(kernelId, err.resultName);
  }
  return undefined;
}
