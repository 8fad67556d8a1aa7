/**
 * Dawn (Chromium's WebGPU implementation) through the shared `dlopen` adapter, so that Deno can
 * use the same native WebGPU that Bun gets from the `bun-webgpu` package. Deno's own
 * `navigator.gpu` resolves every `mapAsync` and `onSubmittedWorkDone` about 10 ms late (it polls
 * on a 10 ms timer); this binding notices completion within microseconds by polling Dawn's event
 * queue from a `setImmediate` loop, or blocks in `wgpuInstanceWaitAny` when asked to.
 *
 * Only the compute subset is bound, as objects shaped like the standard `GPU*` interfaces that
 * the WebGPU runtime calls (adapter and device creation, buffers and mapping, WGSL modules with
 * compilation info, compute pipelines with `layout: "auto"`, bind groups, command encoders,
 * compute passes, buffer copies, queue writes and submissions, error scopes, device loss). Two
 * additions that the standard lacks: {@linkcode DawnBuffer.mapSync} and
 * {@linkcode DawnQueue.waitForSubmittedWork} block in `wgpuInstanceWaitAny`.
 *
 * Mapped ranges are copies: `getMappedRange` reads the mapped bytes into a fresh `ArrayBuffer`
 * (`wgpuBufferReadMappedRange`) and `unmap` writes ranges of a buffer mapped for writing back
 * (`wgpuBufferWriteMappedRange`) and then detaches them, so no JS view ever points into memory
 * that Dawn unmaps.
 *
 * The library is `libwebgpu_wrapper.so` of the `bun-webgpu-<platform>-<arch>` npm package
 * (found by {@linkcode findDawnLibrary}); `ffi/dawn_symbols.ts` holds its ABI.
 *
 * @example
 * ```ts
 * const gpu = openDawnGpu();
 * const adapter = await gpu.requestAdapter();
 * const device = await adapter?.requestDevice();
 * ```
 * @module
 */

import process from "node:process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { BackendUnavailableError, ErrorCode, ValidationError } from "../src/core/errors.ts";
import {
  addressOf,
  cString,
  type ForeignCallback,
  foreignCallback,
  type ForeignLibrary,
  openLibrary,
  type Pointer,
  pointerFromBigInt,
  pointerToBigInt,
  viewForeign,
} from "./dlopen.ts";
import {
  ADAPTER_TYPE_NAMES,
  AdapterInfo,
  BACKEND_NULL,
  BACKEND_TYPE_NAMES,
  BackendType,
  BindGroupDescriptor,
  BindGroupEntry,
  BindGroupLayoutDescriptor,
  BindGroupLayoutEntry,
  BufferBindingType,
  BufferDescriptor,
  CALLBACK_COMPILATION_INFO,
  CALLBACK_DEVICE_EVENT,
  CALLBACK_POP_ERROR_SCOPE,
  CALLBACK_STATUS_HANDLE_MESSAGE,
  CALLBACK_STATUS_MESSAGE,
  CallbackInfo,
  CallbackMode,
  COMPILATION_MESSAGE_TYPES,
  CompilationInfo,
  CompilationInfoRequestStatus,
  CompilationMessage,
  ComputePassDescriptor,
  ComputePipelineDescriptor,
  ComputeState,
  ConstantEntry,
  CreatePipelineAsyncStatus,
  DAWN_SYMBOLS,
  type DawnSymbols,
  DEVICE_LOST_REASONS,
  DeviceDescriptor,
  ERROR_TYPE_NAMES,
  ErrorFilter,
  FEATURE_NAMES,
  FeatureLevel,
  FutureWaitInfo,
  InstanceCapabilities,
  InstanceDescriptor,
  LabelOnlyDescriptor,
  Limits,
  MapAsyncStatus,
  PipelineLayoutDescriptor,
  PopErrorScopeStatus,
  PowerPreference,
  QueueDescriptor,
  QueueWorkDoneStatus,
  RequestAdapterOptions,
  RequestAdapterStatus,
  RequestDeviceStatus,
  ShaderModuleDescriptor,
  ShaderSourceWGSL,
  Status,
  StringView,
  SType,
  SupportedFeatures,
  UncapturedErrorCallbackInfo,
  WaitStatus,
  WHOLE_SIZE,
} from "./dawn_symbols.ts";

// ---------------------------------------------------------------------------------------------
// Finding and opening the library

/** The environment variable that pins the Dawn library's path. */
export const DAWN_LIBRARY_ENV = "RINGKERNEL_DAWN_LIB";

/** The npm package that ships Dawn for this platform, e.g. `bun-webgpu-linux-x64`. */
export const DAWN_PACKAGE = `bun-webgpu-${process.platform}-${process.arch}`;

const DAWN_FILE = process.platform === "darwin"
  ? "libwebgpu_wrapper.dylib"
  : process.platform === "win32"
  ? "libwebgpu_wrapper.dll"
  : "libwebgpu_wrapper.so";

/** Where {@linkcode openDawnGpu} looks for Dawn, and how it behaves. */
export interface DawnOptions {
  /** Path of `libwebgpu_wrapper.so`; pins the choice (default: {@linkcode findDawnLibrary}). */
  readonly library?: string;
  /**
   * How long, in microseconds, a pending operation is polled on every macrotask turn
   * (`setImmediate`) since the last progress before polling backs off to 1 ms timers; default
   * 5000. Longer keeps latency low for slower work at the cost of a busy core while waiting.
   */
  readonly spinMicros?: number;
}

function readEnv(name: string): string | undefined {
  try {
    const v = process.env[name];
    return v === undefined || v === "" ? undefined : v;
  } catch {
    return undefined;
  }
}

/**
 * The places Dawn is looked for, in order: the explicit path, `RINGKERNEL_DAWN_LIB`, then the
 * {@linkcode DAWN_PACKAGE} package in the `node_modules` next to this repository and in the
 * current directory's.
 */
export function dawnLibraryCandidates(explicit?: string): string[] {
  if (explicit !== undefined) return [explicit];
  const fromEnv = readEnv(DAWN_LIBRARY_ENV);
  if (fromEnv !== undefined) return [fromEnv];
  const repo = fileURLToPath(new URL("../", import.meta.url));
  const dirs = [repo, `${process.cwd()}/`];
  return [...new Set(dirs.map((d) => `${d}node_modules/${DAWN_PACKAGE}/${DAWN_FILE}`))];
}

/**
 * The first of {@linkcode dawnLibraryCandidates} that exists; throws
 * {@linkcode BackendUnavailableError} naming every place tried.
 */
export function findDawnLibrary(explicit?: string): string {
  const candidates = dawnLibraryCandidates(explicit);
  const found = candidates.find((p) => existsSync(p));
  if (found === undefined) {
    throw new BackendUnavailableError(
      "dawn",
      `no Dawn library (${DAWN_FILE}); tried ${candidates.join(", ")}. ` +
        `\`npm install\` fetches it (optional dependency bun-webgpu), or set ${DAWN_LIBRARY_ENV}`,
    );
  }
  return found;
}

/** An opened Dawn library: its functions and path. */
export type DawnLibrary = ForeignLibrary<DawnSymbols>;

const libraries = new Map<string, DawnLibrary>();

/** Opens (once per path) and binds the Dawn library at `path`. */
export function openDawnLibrary(path: string): DawnLibrary {
  let lib = libraries.get(path);
  if (lib === undefined) {
    lib = openLibrary(path, DAWN_SYMBOLS);
    libraries.set(path, lib);
  }
  return lib;
}

const instances = new Map<string, DawnGpu>();

/**
 * A `GPU`-shaped entry point backed by Dawn: one Dawn instance per library path for the whole
 * process (each instance starts its own device threads).
 */
export function openDawnGpu(options: DawnOptions = {}): DawnGpu {
  const path = findDawnLibrary(options.library);
  let gpu = instances.get(path);
  if (gpu === undefined) {
    gpu = new DawnGpu(openDawnLibrary(path), options.spinMicros ?? 5000);
    instances.set(path, gpu);
  }
  return gpu;
}

// ---------------------------------------------------------------------------------------------
// Small helpers for structs

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function struct(size: number): { bytes: Uint8Array<ArrayBuffer>; view: DataView } {
  const bytes = new Uint8Array(new ArrayBuffer(size));
  return { bytes, view: new DataView(bytes.buffer) };
}

function addr(bytes: Uint8Array): bigint {
  return addressOf(bytes);
}

function handleAddr(p: Pointer | null): bigint {
  return pointerToBigInt(p);
}

/** Writes a `WGPUStringView` for `s` at `at`; `keep` holds the bytes alive for the call. */
function putString(view: DataView, at: number, s: string | undefined, keep: unknown[]): void {
  if (s === undefined || s === "") {
    view.setBigUint64(at + StringView.data, 0n, true);
    view.setBigUint64(at + StringView.length, s === "" ? 0n : WHOLE_SIZE, true);
    return;
  }
  const bytes = encoder.encode(s);
  const copy = new Uint8Array(new ArrayBuffer(bytes.length));
  copy.set(bytes);
  keep.push(copy);
  view.setBigUint64(at + StringView.data, addr(copy), true);
  view.setBigUint64(at + StringView.length, BigInt(bytes.length), true);
}

/** Reads a string given as (data, length) as Dawn passes it to callbacks. */
function readStringView(data: Pointer | null, length: bigint): string {
  if (data === null || length === 0n) return "";
  if (length === WHOLE_SIZE) {
    // NUL-terminated: read until the terminator, bounded.
    const probe = new Uint8Array(viewForeign(data, 4096));
    const end = probe.indexOf(0);
    return decoder.decode(probe.slice(0, end < 0 ? probe.length : end));
  }
  return decoder.decode(new Uint8Array(viewForeign(data, Number(length))).slice());
}

function readStringViewAt(view: DataView, at: number): string {
  const data = view.getBigUint64(at + StringView.data, true);
  const length = view.getBigUint64(at + StringView.length, true);
  return readStringView(pointerFromBigInt(data), length);
}

function putCallbackInfo(
  view: DataView,
  at: number,
  mode: number,
  callback: ForeignCallback,
  userdata1: bigint,
): void {
  view.setUint32(at + CallbackInfo.mode, mode, true);
  view.setBigUint64(at + CallbackInfo.callback, pointerToBigInt(callback.pointer), true);
  view.setBigUint64(at + CallbackInfo.userdata1, userdata1, true);
}

function invalid(message: string): ValidationError {
  return new ValidationError(ErrorCode.InvalidArgument, `dawn: ${message}`);
}

/** Why an operation failed on Dawn's side (the WebGPU `OperationError`/`AbortError` cases). */
export class DawnOperationError extends Error {
  /** Creates the error; `name` is the DOMException name WebGPU would use. */
  constructor(message: string, name: "OperationError" | "AbortError" = "OperationError") {
    super(message);
    this.name = name;
  }
}

/** A WebGPU error as error scopes and the uncaptured-error event report it. */
export class DawnGpuError extends Error {
  /** `validation`, `out-of-memory`, `internal` or `unknown`. */
  readonly type: string;
  /** Creates the error of `type` with Dawn's message. */
  constructor(type: string, message: string) {
    super(message);
    this.type = type;
    this.name = type === "validation"
      ? "GPUValidationError"
      : type === "out-of-memory"
      ? "GPUOutOfMemoryError"
      : "GPUInternalError";
  }
}

/** The event a device dispatches (`uncapturederror`) for an error no scope caught. */
export class DawnUncapturedErrorEvent extends Event {
  /** The error. */
  readonly error: DawnGpuError;
  /** Creates the event for `error`. */
  constructor(error: DawnGpuError) {
    super("uncapturederror", { cancelable: true });
    this.error = error;
  }
}

/** A rejected `createComputePipelineAsync`, as WebGPU's `GPUPipelineError`. */
export class DawnPipelineError extends Error {
  /** `validation` or `internal`. */
  readonly reason: "validation" | "internal";
  /** Creates the error. */
  constructor(message: string, reason: "validation" | "internal") {
    super(message);
    this.name = "GPUPipelineError";
    this.reason = reason;
  }
}

// ---------------------------------------------------------------------------------------------
// Object lifetime: every wrapper releases its Dawn reference when collected

type Release = (p: Pointer) => void;
const releaser = new FinalizationRegistry<{ release: Release; handle: Pointer }>((held) => {
  held.release(held.handle);
});

/** Base of the wrappers: the Dawn handle and its release on collection. */
export class DawnObject {
  /** The Dawn handle (`WGPUBuffer`, `WGPUDevice`, ...). */
  readonly handle: Pointer;
  /** The label given at creation. */
  label: string;
  /** Wraps `handle`, releasing it with `release` once this wrapper is collected. */
  constructor(
    handle: Pointer | null,
    release: Release | null,
    label: string | undefined,
    what: string,
  ) {
    if (handle === null) throw new DawnOperationError(`Dawn returned no ${what}`);
    this.handle = handle;
    this.label = label ?? "";
    if (release !== null) releaser.register(this, { release, handle }, this);
  }
}

function handleOf<T extends DawnObject>(
  value: unknown,
  kind: abstract new (...args: never[]) => T,
  where: string,
): Pointer {
  if (value instanceof kind) return value.handle;
  throw invalid(`${where} must be a ${kind.name} from the same Dawn binding`);
}

// ---------------------------------------------------------------------------------------------
// The instance: pending operations, event processing, callbacks

/** Completes a registered operation with its callback's arguments (those before the userdata). */
export type DawnSettle = (args: readonly unknown[]) => void;

const globalTimers = globalThis as unknown as {
  setImmediate?: (fn: () => void) => unknown;
};

/** `navigator.gpu` for Dawn: adapter requests, and the event loop of every pending operation. */
export class DawnGpu {
  /** The bound library. */
  readonly lib: DawnLibrary;
  /** The `WGPUInstance`. */
  readonly instance: Pointer;
  /** Whether `wgpuInstanceWaitAny` may block (timed waits enabled at creation). */
  readonly timedWaitAny: boolean;
  readonly #spinMs: number;
  readonly #pending = new Map<bigint, DawnSettle>();
  #nextId = 1n;
  #polling = false;
  #lastProgress = 0;
  /** Callbacks, one per signature, dispatching on userdata1 (an operation id). */
  readonly callbacks: {
    readonly statusHandleMessage: ForeignCallback;
    readonly statusMessage: ForeignCallback;
    readonly compilationInfo: ForeignCallback;
    readonly popErrorScope: ForeignCallback;
    readonly deviceEvent: ForeignCallback;
  };
  /** Devices by handle address, for the device-lost and uncaptured-error callbacks. */
  readonly devices: Map<bigint, WeakRef<DawnDevice>> = new Map();

  /** Creates the Dawn instance (with timed waits enabled) on `lib`. */
  constructor(lib: DawnLibrary, spinMicros: number) {
    this.lib = lib;
    this.#spinMs = spinMicros / 1000;
    const caps = struct(InstanceCapabilities.size);
    const status = lib.symbols.wgpuGetInstanceCapabilities(caps.bytes);
    const maxCount = status === Status.Success
      ? caps.view.getBigUint64(InstanceCapabilities.timedWaitAnyMaxCount, true)
      : 0n;
    const canWait = status === Status.Success &&
      caps.view.getUint32(InstanceCapabilities.timedWaitAnyEnable, true) !== 0;
    const desc = struct(InstanceDescriptor.size);
    const f = InstanceDescriptor.features;
    desc.view.setUint32(f + InstanceCapabilities.timedWaitAnyEnable, canWait ? 1 : 0, true);
    desc.view.setBigUint64(f + InstanceCapabilities.timedWaitAnyMaxCount, maxCount, true);
    const instance = lib.symbols.zwgpuCreateInstance(desc.bytes);
    if (instance === null) throw new DawnOperationError("wgpuCreateInstance returned null");
    this.instance = instance;
    this.timedWaitAny = canWait;
    const settle = (ud: Pointer | null, args: readonly unknown[]) => this.#settle(ud, args);
    this.callbacks = {
      statusHandleMessage: foreignCallback(
        CALLBACK_STATUS_HANDLE_MESSAGE,
        (s, h, m, n, ud) => settle(ud, [s, h, m, n]),
      ),
      statusMessage: foreignCallback(
        CALLBACK_STATUS_MESSAGE,
        (s, m, n, ud) => settle(ud, [s, m, n]),
      ),
      compilationInfo: foreignCallback(
        CALLBACK_COMPILATION_INFO,
        (s, info, ud) => settle(ud, [s, info]),
      ),
      popErrorScope: foreignCallback(
        CALLBACK_POP_ERROR_SCOPE,
        (s, t, m, n, ud) => settle(ud, [s, t, m, n]),
      ),
      deviceEvent: foreignCallback(
        CALLBACK_DEVICE_EVENT,
        (dev, code, m, n, ud) => this.#deviceEvent(dev, code, m, n, ud),
      ),
    };
  }

  /** Pending operations (maps, work-done waits, requests) not yet completed. */
  get pendingCount(): number {
    return this.#pending.size;
  }

  /**
   * Registers a pending operation; `settle` runs with the callback's arguments (after the
   * userdata) when Dawn completes it. Returns the userdata1 value to pass.
   */
  register(settle: DawnSettle): bigint {
    const id = this.#nextId++;
    this.#pending.set(id, settle);
    this.#lastProgress = performance.now();
    return id;
  }

  /** Forgets a registered operation whose start failed. */
  unregister(id: bigint): void {
    this.#pending.delete(id);
  }

  /** Starts polling Dawn's events until nothing is pending (idempotent). */
  poll(): void {
    if (this.#polling) return;
    this.#polling = true;
    this.#schedule(true);
  }

  /** Runs Dawn's ready callbacks now (`wgpuInstanceProcessEvents`). */
  processEvents(): void {
    this.lib.symbols.zwgpuInstanceProcessEvents(this.instance);
  }

  /**
   * Blocks in `wgpuInstanceWaitAny` until `future` completes (its callback runs inside) or
   * `timeoutMs` passes; returns whether it completed.
   */
  waitAny(future: bigint, timeoutMs: number): boolean {
    if (future === 0n) throw new DawnOperationError("Dawn returned an invalid future");
    const info = struct(FutureWaitInfo.size);
    info.view.setBigUint64(FutureWaitInfo.future, future, true);
    const timeoutNs = this.timedWaitAny ? BigInt(Math.max(0, Math.round(timeoutMs * 1e6))) : 0n;
    const status = this.lib.symbols.zwgpuInstanceWaitAny(this.instance, 1n, info.bytes, timeoutNs);
    if (status === WaitStatus.Error) throw new DawnOperationError("wgpuInstanceWaitAny failed");
    return status === WaitStatus.Success;
  }

  /**
   * Requests an adapter, as `GPU.requestAdapter`; `null` when Dawn has none. Two Dawn options
   * beyond the standard ones: `backendType` picks a backend (`opengles` reaches Mesa's llvmpipe
   * through EGL where Dawn refuses lavapipe's Vulkan) and `featureLevel: "compatibility"`, which
   * the OpenGL backends need.
   */
  requestAdapter(options: DawnRequestAdapterOptions = {}): Promise<DawnAdapter | null> {
    const opts = struct(RequestAdapterOptions.size);
    const level = options.featureLevel ?? (isGl(options.backendType) ? "compatibility" : "core");
    opts.view.setUint32(RequestAdapterOptions.featureLevel, FeatureLevel[level], true);
    if (options.powerPreference !== undefined) {
      opts.view.setUint32(
        RequestAdapterOptions.powerPreference,
        PowerPreference[options.powerPreference],
        true,
      );
    }
    opts.view.setUint32(
      RequestAdapterOptions.forceFallbackAdapter,
      options.forceFallbackAdapter === true ? 1 : 0,
      true,
    );
    if (options.backendType !== undefined) {
      const value = BackendType[options.backendType];
      if (value === undefined) {
        return Promise.reject(
          invalid(`unknown backendType ${JSON.stringify(options.backendType)}`),
        );
      }
      if (isGl(options.backendType)) preferHeadlessEgl();
      opts.view.setUint32(RequestAdapterOptions.backendType, value, true);
    }
    return new Promise((resolve, reject) => {
      const id = this.register(([status, handle, m, n]) => {
        const message = readStringView(m as Pointer | null, n as bigint);
        if (status === RequestAdapterStatus.Success && handle !== null) {
          resolve(new DawnAdapter(this, handle as Pointer));
        } else if (status === RequestAdapterStatus.Unavailable) resolve(null);
        else reject(new DawnOperationError(`requestAdapter failed (status ${status}): ${message}`));
      });
      const cb = struct(CallbackInfo.size);
      putCallbackInfo(
        cb.view,
        0,
        CallbackMode.AllowProcessEvents,
        this.callbacks.statusHandleMessage,
        id,
      );
      this.lib.symbols.zwgpuInstanceRequestAdapter(this.instance, opts.bytes, cb.bytes);
      this.poll();
    });
  }

  /** The preferred canvas format (unused by compute; present for the `GPU` shape). */
  getPreferredCanvasFormat(): GPUTextureFormat {
    return "bgra8unorm";
  }

  /** WGSL language extensions; none are reported by this binding. */
  readonly wgslLanguageFeatures: ReadonlySet<string> = new Set<string>();

  #settle(ud: Pointer | null, args: readonly unknown[]): void {
    const id = pointerToBigInt(ud);
    const settle = this.#pending.get(id);
    if (settle === undefined) return;
    this.#pending.delete(id);
    this.#lastProgress = performance.now();
    settle(args);
  }

  #deviceEvent(
    device: Pointer | null,
    code: number,
    m: Pointer | null,
    n: bigint,
    ud: Pointer | null,
  ): void {
    // userdata1 tells lost (1) from uncaptured error (2); the device comes through userdata2's
    // registration, keyed by the address of its handle (the first argument points at it).
    const kind = pointerToBigInt(ud);
    const handleAddress = device === null
      ? 0n
      : new DataView(viewForeign(device, 8)).getBigUint64(0, true);
    const target = this.devices.get(handleAddress)?.deref();
    const message = readStringView(m, n);
    if (kind === 1n) target?._lost(DEVICE_LOST_REASONS[code] ?? "unknown", message);
    else if (target !== undefined) target._uncaptured(ERROR_TYPE_NAMES[code] ?? "unknown", message);
    else console.error(`dawn: uncaptured ${ERROR_TYPE_NAMES[code] ?? "unknown"} error: ${message}`);
  }

  #schedule(first: boolean): void {
    const tick = () => {
      this.processEvents();
      if (this.#pending.size === 0) {
        this.#polling = false;
        return;
      }
      this.#schedule(false);
    };
    const idle = performance.now() - this.#lastProgress;
    if ((first || idle < this.#spinMs) && globalTimers.setImmediate !== undefined) {
      globalTimers.setImmediate(tick);
    } else {
      setTimeout(tick, first ? 0 : 1);
    }
  }
}

/** `GPURequestAdapterOptions` plus Dawn's backend and feature level. */
export interface DawnRequestAdapterOptions extends GPURequestAdapterOptions {
  /** The backend to use; default: Dawn's choice (Vulkan on Linux, else its null backend). */
  readonly backendType?: DawnBackendName;
  /** `core` (default) or `compatibility` (default for the OpenGL backends). */
  readonly featureLevel?: "core" | "compatibility";
}

/** Backends a Dawn adapter can be requested on (`WGPUBackendType` by name). */
export type DawnBackendName =
  | "null"
  | "webgpu"
  | "d3d11"
  | "d3d12"
  | "metal"
  | "vulkan"
  | "opengl"
  | "opengles";

function isGl(backend: DawnBackendName | undefined): boolean {
  return backend === "opengles" || backend === "opengl";
}

/**
 * Sets `EGL_PLATFORM=surfaceless` unless set. Dawn's GL backends open the default EGL display; without a window system Mesa then fails
 * unless told to use its surfaceless platform. Set only when the user has not chosen one.
 */
export function preferHeadlessEgl(): void {
  if (readEnv("EGL_PLATFORM") !== undefined || process.platform !== "linux") return;
  try {
    // Through libc: Bun's process.env does not reach getenv(), which is what Mesa reads.
    const libc = openLibrary(
      "libc.so.6",
      {
        setenv: { parameters: ["buffer", "buffer", "i32"], result: "i32" },
      } as const,
    );
    libc.symbols.setenv(cString("EGL_PLATFORM"), cString("surfaceless"), 0);
    libc.close();
    process.env.EGL_PLATFORM = "surfaceless";
  } catch {
    // No libc.so.6 or no permission: Dawn reports the failed EGL display itself.
  }
}

// ---------------------------------------------------------------------------------------------
// Adapter

/** `GPUAdapterInfo` as Dawn reports it, plus the backend and adapter type. */
export interface DawnAdapterInfo {
  /** Vendor name. */
  readonly vendor: string;
  /** Architecture name. */
  readonly architecture: string;
  /** Device name. */
  readonly device: string;
  /** Driver description. */
  readonly description: string;
  /** `WGPUBackendType` value (1 is the null backend). */
  readonly backendType: number;
  /** The backend's name (`vulkan`, `null`, ...). */
  readonly backend: string;
  /** `discrete-gpu`, `integrated-gpu`, `cpu` or `unknown`. */
  readonly adapterType: string;
  /** PCI vendor id. */
  readonly vendorID: number;
  /** PCI device id. */
  readonly deviceID: number;
  /** Smallest subgroup size. */
  readonly subgroupMinSize: number;
  /** Largest subgroup size. */
  readonly subgroupMaxSize: number;
  /** Whether the adapter is a CPU (software) one. */
  readonly isFallbackAdapter: boolean;
}

function readAdapterInfo(
  lib: DawnLibrary,
  get: (out: Uint8Array<ArrayBuffer>) => number,
): DawnAdapterInfo {
  const out = struct(AdapterInfo.size);
  if (get(out.bytes) !== Status.Success) throw new DawnOperationError("GetAdapterInfo failed");
  const v = out.view;
  const backendType = v.getUint32(AdapterInfo.backendType, true);
  const adapterType = ADAPTER_TYPE_NAMES[v.getUint32(AdapterInfo.adapterType, true)] ?? "unknown";
  const info: DawnAdapterInfo = {
    vendor: readStringViewAt(v, AdapterInfo.vendor),
    architecture: readStringViewAt(v, AdapterInfo.architecture),
    device: readStringViewAt(v, AdapterInfo.device),
    description: readStringViewAt(v, AdapterInfo.description),
    backendType,
    backend: BACKEND_TYPE_NAMES[backendType] ?? `backend ${backendType}`,
    adapterType,
    vendorID: v.getUint32(AdapterInfo.vendorID, true),
    deviceID: v.getUint32(AdapterInfo.deviceID, true),
    subgroupMinSize: v.getUint32(AdapterInfo.subgroupMinSize, true),
    subgroupMaxSize: v.getUint32(AdapterInfo.subgroupMaxSize, true),
    isFallbackAdapter: adapterType === "cpu",
  };
  lib.symbols.zwgpuAdapterInfoFreeMembers(out.bytes);
  return Object.freeze(info);
}

/** The limits this binding reports, by their WebGPU names. */
export type DawnLimitName =
  | "maxTextureDimension1D"
  | "maxTextureDimension2D"
  | "maxTextureDimension3D"
  | "maxTextureArrayLayers"
  | "maxBindGroups"
  | "maxBindGroupsPlusVertexBuffers"
  | "maxBindingsPerBindGroup"
  | "maxDynamicUniformBuffersPerPipelineLayout"
  | "maxDynamicStorageBuffersPerPipelineLayout"
  | "maxSampledTexturesPerShaderStage"
  | "maxSamplersPerShaderStage"
  | "maxStorageBuffersPerShaderStage"
  | "maxStorageTexturesPerShaderStage"
  | "maxUniformBuffersPerShaderStage"
  | "minUniformBufferOffsetAlignment"
  | "minStorageBufferOffsetAlignment"
  | "maxVertexBuffers"
  | "maxVertexAttributes"
  | "maxVertexBufferArrayStride"
  | "maxInterStageShaderVariables"
  | "maxColorAttachments"
  | "maxColorAttachmentBytesPerSample"
  | "maxComputeWorkgroupStorageSize"
  | "maxComputeInvocationsPerWorkgroup"
  | "maxComputeWorkgroupSizeX"
  | "maxComputeWorkgroupSizeY"
  | "maxComputeWorkgroupSizeZ"
  | "maxComputeWorkgroupsPerDimension"
  | "maxUniformBufferBindingSize"
  | "maxStorageBufferBindingSize"
  | "maxBufferSize";

/** The limits this binding reports, by their WebGPU names. */
export type DawnLimits = Readonly<Record<DawnLimitName, number>>;

function readLimits(get: (out: Uint8Array<ArrayBuffer>) => number): DawnLimits {
  // Room beyond the known size: a newer Dawn may append limits.
  const out = struct(Limits.size + 256);
  if (get(out.bytes) !== Status.Success) throw new DawnOperationError("GetLimits failed");
  const limits: Record<string, number> = {};
  for (const [name, at] of Object.entries(Limits.u32)) limits[name] = out.view.getUint32(at, true);
  for (const [name, at] of Object.entries(Limits.u64)) {
    limits[name] = Number(out.view.getBigUint64(at, true));
  }
  return Object.freeze(limits) as DawnLimits;
}

function readFeatures(lib: DawnLibrary, get: (out: Uint8Array<ArrayBuffer>) => void): Set<string> {
  const out = struct(SupportedFeatures.size);
  get(out.bytes);
  const count = Number(out.view.getBigUint64(SupportedFeatures.featureCount, true));
  const at = out.view.getBigUint64(SupportedFeatures.features, true);
  const names = new Set<string>();
  if (count > 0 && at !== 0n) {
    const values = new Uint32Array(viewForeign(at, count * 4).slice(0));
    for (const v of values) {
      const name = FEATURE_NAMES[v];
      if (name !== undefined) names.add(name);
    }
  }
  lib.symbols.zwgpuSupportedFeaturesFreeMembers(out.bytes);
  return names;
}

/**
 * A `WGPULimits` with every limit "undefined" (all ones, for both u32 and u64 limits) except the
 * ones named; `null` when none are. Extra room past the known size keeps a newer Dawn that
 * appends limits reading "undefined".
 */
function requiredLimits(
  wanted: Record<string, number | undefined> | undefined,
): Uint8Array<ArrayBuffer> | null {
  const entries = Object.entries(wanted ?? {}).filter(([, v]) => v !== undefined);
  if (entries.length === 0) return null;
  const out = struct(Limits.size + 256);
  out.bytes.fill(0xff);
  out.view.setBigUint64(0, 0n, true); // nextInChain
  const u32 = Limits.u32 as Record<string, number>, u64 = Limits.u64 as Record<string, number>;
  for (const [name, value] of entries) {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0) throw invalid(`requiredLimits.${name} = ${value}`);
    if (name in u32) out.view.setUint32(u32[name], n, true);
    else if (name in u64) out.view.setBigUint64(u64[name], BigInt(n), true);
    else throw invalid(`requiredLimits.${name} is not a limit this binding knows`);
  }
  return out.bytes;
}

/** `GPUAdapter` for Dawn. */
export class DawnAdapter extends DawnObject {
  /** The instance it came from. */
  readonly gpu: DawnGpu;
  /** The adapter's identity. */
  readonly info: DawnAdapterInfo;
  /** Its limits. */
  readonly limits: DawnLimits;
  /** Its standard features. */
  readonly features: ReadonlySet<string>;

  /** Wraps the adapter `handle` of `gpu`. */
  constructor(gpu: DawnGpu, handle: Pointer) {
    const s = gpu.lib.symbols;
    super(handle, (p) => s.zwgpuAdapterRelease(p), undefined, "adapter");
    this.gpu = gpu;
    this.info = readAdapterInfo(gpu.lib, (out) => s.zwgpuAdapterGetInfo(handle, out));
    this.limits = readLimits((out) => s.zwgpuAdapterGetLimits(handle, out));
    this.features = readFeatures(gpu.lib, (out) => s.wgpuAdapterGetFeatures(handle, out));
  }

  /** Whether this is a software adapter. */
  get isFallbackAdapter(): boolean {
    return this.info.isFallbackAdapter;
  }

  /** Whether this is Dawn's null backend (validates work, never executes it). */
  get isNullBackend(): boolean {
    return this.info.backendType === BACKEND_NULL;
  }

  /**
   * Requests a device, as `GPUAdapter.requestDevice`. `requiredLimits` may name the limits this
   * binding reports ({@linkcode DawnLimits}); `requiredFeatures` are refused with a
   * ValidationError rather than ignored, since this binding does not pass them to Dawn.
   */
  requestDevice(descriptor: GPUDeviceDescriptor = {}): Promise<DawnDevice> {
    const features = [...(descriptor.requiredFeatures ?? [])];
    if (features.length > 0) {
      return Promise.reject(invalid(`requiredFeatures are not supported (${features.join(", ")})`));
    }
    let limits: Uint8Array<ArrayBuffer> | null = null;
    try {
      limits = requiredLimits(descriptor.requiredLimits);
    } catch (err) {
      return Promise.reject(err);
    }
    const gpu = this.gpu;
    const keep: unknown[] = [];
    const desc = struct(DeviceDescriptor.size);
    const v = desc.view;
    putString(v, DeviceDescriptor.label, descriptor.label, keep);
    // defaultQueue is in dom's GPUDeviceDescriptor but not in Deno's own WebGPU types.
    const queue = (descriptor as { defaultQueue?: { label?: string } }).defaultQueue;
    putString(v, DeviceDescriptor.defaultQueue + QueueDescriptor.label, queue?.label, keep);
    if (limits !== null) {
      keep.push(limits);
      v.setBigUint64(DeviceDescriptor.requiredLimits, addr(limits), true);
    }
    putCallbackInfo(
      v,
      DeviceDescriptor.deviceLostCallbackInfo,
      CallbackMode.AllowProcessEvents,
      gpu.callbacks.deviceEvent,
      1n,
    );
    const ue = DeviceDescriptor.uncapturedErrorCallbackInfo;
    v.setBigUint64(
      ue + UncapturedErrorCallbackInfo.callback,
      pointerToBigInt(gpu.callbacks.deviceEvent.pointer),
      true,
    );
    v.setBigUint64(ue + UncapturedErrorCallbackInfo.userdata1, 2n, true);
    return new Promise((resolve, reject) => {
      const id = gpu.register(([status, handle, m, n]) => {
        const message = readStringView(m as Pointer | null, n as bigint);
        if (status === RequestDeviceStatus.Success && handle !== null) {
          resolve(new DawnDevice(this, handle as Pointer, descriptor.label));
        } else {reject(
            new DawnOperationError(`requestDevice failed (status ${status}): ${message}`),
          );}
      });
      const cb = struct(CallbackInfo.size);
      putCallbackInfo(
        cb.view,
        0,
        CallbackMode.AllowProcessEvents,
        gpu.callbacks.statusHandleMessage,
        id,
      );
      gpu.lib.symbols.zwgpuAdapterRequestDevice(this.handle, desc.bytes, cb.bytes);
      keep.length = 0;
      gpu.poll();
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Device

/** `GPUDeviceLostInfo`. */
export interface DawnDeviceLostInfo {
  /** `destroyed` or `unknown`. */
  readonly reason: string;
  /** Dawn's message. */
  readonly message: string;
}

/** `GPUDevice` for Dawn (compute subset). */
export class DawnDevice extends EventTarget {
  /** The Dawn handle. */
  readonly handle: Pointer;
  /** The label. */
  label: string;
  /** The adapter it came from. */
  readonly adapter: DawnAdapter;
  /** The instance. */
  readonly gpu: DawnGpu;
  /** The default queue. */
  readonly queue: DawnQueue;
  /** Resolves when the device is lost or destroyed. */
  readonly lost: Promise<DawnDeviceLostInfo>;
  /** The device's limits. */
  readonly limits: DawnLimits;
  /** The device's standard features. */
  readonly features: ReadonlySet<string>;
  /** The adapter's identity. */
  readonly adapterInfo: DawnAdapterInfo;
  /** The `uncapturederror` handler property. */
  onuncapturederror: ((event: DawnUncapturedErrorEvent) => void) | null = null;
  #resolveLost: (info: DawnDeviceLostInfo) => void = () => {};
  #destroyed = false;

  /** Wraps the device `handle` of `adapter`. */
  constructor(adapter: DawnAdapter, handle: Pointer, label: string | undefined) {
    super();
    const gpu = adapter.gpu;
    const s = gpu.lib.symbols;
    this.handle = handle;
    this.label = label ?? "";
    this.adapter = adapter;
    this.gpu = gpu;
    this.lost = new Promise((resolve) => {
      this.#resolveLost = resolve;
    });
    gpu.devices.set(pointerToBigInt(handle), new WeakRef(this));
    this.queue = new DawnQueue(this, s.zwgpuDeviceGetQueue(handle));
    this.limits = readLimits((out) => s.zwgpuDeviceGetLimits(handle, out));
    this.features = readFeatures(gpu.lib, (out) => s.wgpuDeviceGetFeatures(handle, out));
    this.adapterInfo = adapter.info;
    releaser.register(this, { release: (p) => s.zwgpuDeviceRelease(p), handle }, this);
  }

  /** @internal Called by the instance when Dawn reports the device lost. */
  _lost(reason: string, message: string): void {
    this.gpu.devices.delete(pointerToBigInt(this.handle));
    this.#resolveLost({ reason, message });
  }

  /** @internal Called by the instance for an error no error scope caught. */
  _uncaptured(type: string, message: string): void {
    const event = new DawnUncapturedErrorEvent(new DawnGpuError(type, message));
    const listened = this.#listeners > 0 || this.onuncapturederror !== null;
    this.onuncapturederror?.(event);
    this.dispatchEvent(event);
    // Never silently dropped: without a listener it goes to the console, as browsers do.
    if (!listened) console.error(`dawn: uncaptured ${type} error: ${message}`);
  }

  #listeners = 0;

  /** EventTarget's, counting `uncapturederror` listeners (errors nobody hears are logged). */
  override addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void {
    if (type === "uncapturederror" && listener !== null) this.#listeners++;
    super.addEventListener(type, listener, options);
  }

  /** EventTarget's, counting `uncapturederror` listeners. */
  override removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions,
  ): void {
    if (type === "uncapturederror" && listener !== null) this.#listeners--;
    super.removeEventListener(type, listener, options);
  }

  /** Creates a buffer, as `GPUDevice.createBuffer`. */
  createBuffer(descriptor: GPUBufferDescriptor): DawnBuffer {
    const keep: unknown[] = [];
    const d = struct(BufferDescriptor.size);
    putString(d.view, BufferDescriptor.label, descriptor.label, keep);
    d.view.setBigUint64(BufferDescriptor.usage, BigInt(descriptor.usage), true);
    d.view.setBigUint64(BufferDescriptor.bufferSize, BigInt(descriptor.size), true);
    d.view.setUint32(BufferDescriptor.mappedAtCreation, descriptor.mappedAtCreation ? 1 : 0, true);
    const handle = this.gpu.lib.symbols.zwgpuDeviceCreateBuffer(this.handle, d.bytes);
    return new DawnBuffer(this, handle, descriptor);
  }

  /** Creates a WGSL shader module, as `GPUDevice.createShaderModule`. */
  createShaderModule(descriptor: GPUShaderModuleDescriptor): DawnShaderModule {
    const keep: unknown[] = [];
    const src = struct(ShaderSourceWGSL.size);
    src.view.setUint32(ShaderSourceWGSL.chain + 8, SType.ShaderSourceWGSL, true);
    putString(src.view, ShaderSourceWGSL.code, descriptor.code, keep);
    const d = struct(ShaderModuleDescriptor.size);
    d.view.setBigUint64(ShaderModuleDescriptor.nextInChain, addr(src.bytes), true);
    putString(d.view, ShaderModuleDescriptor.label, descriptor.label, keep);
    const handle = this.gpu.lib.symbols.zwgpuDeviceCreateShaderModule(this.handle, d.bytes);
    keep.push(src);
    return new DawnShaderModule(this, handle, descriptor.label);
  }

  #pipelineDescriptor(descriptor: GPUComputePipelineDescriptor, keep: unknown[]): Uint8Array<
    ArrayBuffer
  > {
    const d = struct(ComputePipelineDescriptor.size);
    putString(d.view, ComputePipelineDescriptor.label, descriptor.label, keep);
    if (descriptor.layout !== "auto") {
      const layout = handleOf(descriptor.layout, DawnPipelineLayout, "layout");
      d.view.setBigUint64(ComputePipelineDescriptor.layout, handleAddr(layout), true);
    }
    const c = ComputePipelineDescriptor.compute;
    const module = handleOf(descriptor.compute.module, DawnShaderModule, "compute.module");
    d.view.setBigUint64(c + ComputeState.module, handleAddr(module), true);
    putString(d.view, c + ComputeState.entryPoint, descriptor.compute.entryPoint, keep);
    const constants = Object.entries(descriptor.compute.constants ?? {});
    if (constants.length > 0) {
      const arr = struct(ConstantEntry.size * constants.length);
      constants.forEach(([key, value], i) => {
        const at = i * ConstantEntry.size;
        putString(arr.view, at + ConstantEntry.key, key, keep);
        arr.view.setFloat64(at + ConstantEntry.value, value, true);
      });
      keep.push(arr);
      d.view.setBigUint64(c + ComputeState.constantCount, BigInt(constants.length), true);
      d.view.setBigUint64(c + ComputeState.constants, addr(arr.bytes), true);
    }
    return d.bytes;
  }

  /** Creates a compute pipeline (`layout: "auto"`), as `GPUDevice.createComputePipeline`. */
  createComputePipeline(descriptor: GPUComputePipelineDescriptor): DawnComputePipeline {
    const keep: unknown[] = [];
    const d = this.#pipelineDescriptor(descriptor, keep);
    const handle = this.gpu.lib.symbols.zwgpuDeviceCreateComputePipeline(this.handle, d);
    return new DawnComputePipeline(this, handle, descriptor.label);
  }

  /** As `GPUDevice.createComputePipelineAsync`; rejects with {@linkcode DawnPipelineError}. */
  createComputePipelineAsync(
    descriptor: GPUComputePipelineDescriptor,
  ): Promise<DawnComputePipeline> {
    const keep: unknown[] = [];
    let d: Uint8Array<ArrayBuffer>;
    try {
      d = this.#pipelineDescriptor(descriptor, keep);
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise((resolve, reject) => {
      const id = this.gpu.register(([status, handle, m, n]) => {
        if (status === CreatePipelineAsyncStatus.Success && handle !== null) {
          resolve(new DawnComputePipeline(this, handle as Pointer, descriptor.label));
          return;
        }
        const message = readStringView(m as Pointer | null, n as bigint);
        const reason = status === CreatePipelineAsyncStatus.InternalError
          ? "internal"
          : "validation";
        reject(new DawnPipelineError(message, reason));
      });
      const cb = struct(CallbackInfo.size);
      putCallbackInfo(
        cb.view,
        0,
        CallbackMode.AllowProcessEvents,
        this.gpu.callbacks.statusHandleMessage,
        id,
      );
      this.gpu.lib.symbols.zwgpuDeviceCreateComputePipelineAsync(this.handle, d, cb.bytes);
      keep.length = 0;
      this.gpu.poll();
    });
  }

  /** Creates a bind group of buffer bindings, as `GPUDevice.createBindGroup`. */
  createBindGroup(descriptor: GPUBindGroupDescriptor): DawnBindGroup {
    const keep: unknown[] = [];
    const entries = [...descriptor.entries];
    const arr = struct(Math.max(1, entries.length) * BindGroupEntry.size);
    entries.forEach((entry, i) => {
      const at = i * BindGroupEntry.size;
      const resource = entry.resource as unknown;
      const binding = resource instanceof DawnBuffer
        ? { buffer: resource, offset: 0, size: undefined }
        : (resource as { buffer?: unknown; offset?: number; size?: number });
      if (!(binding.buffer instanceof DawnBuffer)) {
        throw invalid(`bind group entry ${entry.binding}: only buffer bindings are supported`);
      }
      arr.view.setUint32(at + BindGroupEntry.binding, entry.binding, true);
      arr.view.setBigUint64(at + BindGroupEntry.buffer, handleAddr(binding.buffer.handle), true);
      arr.view.setBigUint64(at + BindGroupEntry.offset, BigInt(binding.offset ?? 0), true);
      arr.view.setBigUint64(
        at + BindGroupEntry.bufferSize,
        binding.size === undefined ? WHOLE_SIZE : BigInt(binding.size),
        true,
      );
    });
    const d = struct(BindGroupDescriptor.size);
    putString(d.view, BindGroupDescriptor.label, descriptor.label, keep);
    const layout = handleOf(descriptor.layout, DawnBindGroupLayout, "layout");
    d.view.setBigUint64(BindGroupDescriptor.layout, handleAddr(layout), true);
    d.view.setBigUint64(BindGroupDescriptor.entryCount, BigInt(entries.length), true);
    d.view.setBigUint64(BindGroupDescriptor.entries, addr(arr.bytes), true);
    const handle = this.gpu.lib.symbols.zwgpuDeviceCreateBindGroup(this.handle, d.bytes);
    return new DawnBindGroup(this, handle, descriptor.label);
  }

  /** Creates a bind group layout of buffer bindings, as `GPUDevice.createBindGroupLayout`. */
  createBindGroupLayout(descriptor: GPUBindGroupLayoutDescriptor): DawnBindGroupLayout {
    const keep: unknown[] = [];
    const entries = [...descriptor.entries];
    const arr = struct(Math.max(1, entries.length) * BindGroupLayoutEntry.size);
    entries.forEach((entry, i) => {
      const at = i * BindGroupLayoutEntry.size;
      if (entry.buffer === undefined) {
        throw invalid(
          `bind group layout entry ${entry.binding}: only buffer bindings are supported`,
        );
      }
      const type = BufferBindingType[entry.buffer.type ?? "uniform"];
      if (type === undefined) throw invalid(`unknown buffer binding type ${entry.buffer.type}`);
      arr.view.setUint32(at + BindGroupLayoutEntry.binding, entry.binding, true);
      arr.view.setBigUint64(at + BindGroupLayoutEntry.visibility, BigInt(entry.visibility), true);
      arr.view.setUint32(at + BindGroupLayoutEntry.bufferType, type, true);
      arr.view.setUint32(
        at + BindGroupLayoutEntry.hasDynamicOffset,
        entry.buffer.hasDynamicOffset ? 1 : 0,
        true,
      );
      arr.view.setBigUint64(
        at + BindGroupLayoutEntry.minBindingSize,
        BigInt(entry.buffer.minBindingSize ?? 0),
        true,
      );
    });
    const d = struct(BindGroupLayoutDescriptor.size);
    putString(d.view, BindGroupLayoutDescriptor.label, descriptor.label, keep);
    d.view.setBigUint64(BindGroupLayoutDescriptor.entryCount, BigInt(entries.length), true);
    d.view.setBigUint64(BindGroupLayoutDescriptor.entries, addr(arr.bytes), true);
    const s = this.gpu.lib.symbols;
    const handle = s.zwgpuDeviceCreateBindGroupLayout(this.handle, d.bytes);
    return new DawnBindGroupLayout(
      handle,
      (p) => s.zwgpuBindGroupLayoutRelease(p),
      descriptor.label,
      "bind group layout",
    );
  }

  /** Creates a pipeline layout, as `GPUDevice.createPipelineLayout`. */
  createPipelineLayout(descriptor: GPUPipelineLayoutDescriptor): DawnPipelineLayout {
    const keep: unknown[] = [];
    const layouts = [...descriptor.bindGroupLayouts];
    const handles = new BigUint64Array(new ArrayBuffer(8 * Math.max(1, layouts.length)));
    layouts.forEach((l, i) => {
      handles[i] = handleAddr(handleOf(l, DawnBindGroupLayout, `bindGroupLayouts[${i}]`));
    });
    const d = struct(PipelineLayoutDescriptor.size);
    putString(d.view, PipelineLayoutDescriptor.label, descriptor.label, keep);
    d.view.setBigUint64(
      PipelineLayoutDescriptor.bindGroupLayoutCount,
      BigInt(layouts.length),
      true,
    );
    d.view.setBigUint64(
      PipelineLayoutDescriptor.bindGroupLayouts,
      addr(new Uint8Array(handles.buffer)),
      true,
    );
    const s = this.gpu.lib.symbols;
    const handle = s.zwgpuDeviceCreatePipelineLayout(this.handle, d.bytes);
    return new DawnPipelineLayout(
      handle,
      (p) => s.zwgpuPipelineLayoutRelease(p),
      descriptor.label,
      "pipeline layout",
    );
  }

  /** Creates a command encoder, as `GPUDevice.createCommandEncoder`. */
  createCommandEncoder(descriptor: GPUCommandEncoderDescriptor = {}): DawnCommandEncoder {
    const keep: unknown[] = [];
    const d = struct(LabelOnlyDescriptor.size);
    putString(d.view, LabelOnlyDescriptor.label, descriptor.label, keep);
    const handle = this.gpu.lib.symbols.zwgpuDeviceCreateCommandEncoder(this.handle, d.bytes);
    return new DawnCommandEncoder(this, handle, descriptor.label);
  }

  /** As `GPUDevice.pushErrorScope`. */
  pushErrorScope(filter: GPUErrorFilter): void {
    const value = ErrorFilter[filter];
    if (value === undefined) throw invalid(`unknown error filter ${JSON.stringify(filter)}`);
    this.gpu.lib.symbols.zwgpuDevicePushErrorScope(this.handle, value);
  }

  /** As `GPUDevice.popErrorScope`: the first error the scope caught, or `null`. */
  popErrorScope(): Promise<DawnGpuError | null> {
    return new Promise((resolve, reject) => {
      const id = this.gpu.register(([status, type, m, n]) => {
        const message = readStringView(m as Pointer | null, n as bigint);
        if (status !== PopErrorScopeStatus.Success) {
          reject(new DawnOperationError(`popErrorScope failed (status ${status}): ${message}`));
        } else if (type === 1) resolve(null);
        else resolve(new DawnGpuError(ERROR_TYPE_NAMES[type as number] ?? "unknown", message));
      });
      const cb = struct(CallbackInfo.size);
      putCallbackInfo(
        cb.view,
        0,
        CallbackMode.AllowProcessEvents,
        this.gpu.callbacks.popErrorScope,
        id,
      );
      this.gpu.lib.symbols.zwgpuDevicePopErrorScope(this.handle, cb.bytes);
      this.gpu.poll();
    });
  }

  /** Destroys the device; `lost` resolves with reason `destroyed`. */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.gpu.lib.symbols.zwgpuDeviceDestroy(this.handle);
    // The lost callback runs on event processing, which nothing else may trigger now.
    this.gpu.processEvents();
  }
}

// ---------------------------------------------------------------------------------------------
// Queue

/** `GPUQueue` for Dawn. */
export class DawnQueue extends DawnObject {
  /** The device. */
  readonly device: DawnDevice;

  /** Wraps the default queue `handle` of `device`. */
  constructor(device: DawnDevice, handle: Pointer | null) {
    const s = device.gpu.lib.symbols;
    super(handle, (p) => s.zwgpuQueueRelease(p), undefined, "queue");
    this.device = device;
  }

  /** Submits command buffers, as `GPUQueue.submit`. */
  submit(commandBuffers: Iterable<DawnCommandBuffer>): void {
    const list = [...commandBuffers];
    if (list.length === 0) return;
    const handles = new BigUint64Array(new ArrayBuffer(8 * list.length));
    list.forEach((cb, i) => {
      handles[i] = handleAddr(handleOf(cb, DawnCommandBuffer, `commandBuffers[${i}]`));
    });
    this.device.gpu.lib.symbols.zwgpuQueueSubmit(
      this.handle,
      BigInt(list.length),
      new Uint8Array(handles.buffer),
    );
  }

  /**
   * As `GPUQueue.writeBuffer`: `dataOffset` and `size` count elements for a typed array and
   * bytes for an `ArrayBuffer`.
   */
  writeBuffer(
    buffer: DawnBuffer,
    bufferOffset: number,
    data: BufferSource | SharedArrayBuffer,
    dataOffset = 0,
    size?: number,
  ): void {
    const target = handleOf(buffer, DawnBuffer, "buffer");
    let bytes: Uint8Array;
    if (ArrayBuffer.isView(data)) {
      const element = "BYTES_PER_ELEMENT" in data
        ? (data as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT
        : 1;
      const total = data.byteLength / element;
      const count = size ?? total - dataOffset;
      if (dataOffset < 0 || count < 0 || dataOffset + count > total) {
        throw invalid(`writeBuffer: data range ${dataOffset}+${count} exceeds ${total} elements`);
      }
      bytes = new Uint8Array(
        data.buffer,
        data.byteOffset + dataOffset * element,
        count * element,
      );
    } else {
      const count = size ?? data.byteLength - dataOffset;
      if (dataOffset < 0 || count < 0 || dataOffset + count > data.byteLength) {
        throw invalid(`writeBuffer: data range ${dataOffset}+${count} exceeds ${data.byteLength}`);
      }
      bytes = new Uint8Array(data, dataOffset, count);
    }
    if (bytes.byteLength === 0) return;
    this.device.gpu.lib.symbols.zwgpuQueueWriteBuffer(
      this.handle,
      target,
      BigInt(bufferOffset),
      bytes,
      BigInt(bytes.byteLength),
    );
  }

  #workDone(): { promise: Promise<undefined>; future: bigint } {
    const gpu = this.device.gpu;
    let future = 0n;
    const promise = new Promise<undefined>((resolve, reject) => {
      const id = gpu.register(([status, m, n]) => {
        if (status === QueueWorkDoneStatus.Success) resolve(undefined);
        else {
          const message = readStringView(m as Pointer | null, n as bigint);
          reject(
            new DawnOperationError(`onSubmittedWorkDone failed (status ${status}): ${message}`),
          );
        }
      });
      const cb = struct(CallbackInfo.size);
      putCallbackInfo(cb.view, 0, CallbackMode.AllowProcessEvents, gpu.callbacks.statusMessage, id);
      future = gpu.lib.symbols.zwgpuQueueOnSubmittedWorkDone(this.handle, cb.bytes);
    });
    return { promise, future };
  }

  /** As `GPUQueue.onSubmittedWorkDone`. */
  onSubmittedWorkDone(): Promise<undefined> {
    const { promise } = this.#workDone();
    this.device.gpu.poll();
    return promise;
  }

  /**
   * Blocks the thread in `wgpuInstanceWaitAny` until the work submitted so far is done (an
   * extension: WebGPU has no blocking wait). Throws {@linkcode DawnOperationError} on timeout.
   */
  waitForSubmittedWork(timeoutMs = 10_000): void {
    const { promise, future } = this.#workDone();
    promise.catch(() => {});
    if (!this.device.gpu.waitAny(future, timeoutMs)) {
      this.device.gpu.poll();
      throw new DawnOperationError(`submitted work not done after ${timeoutMs} ms`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Buffer

/** `GPUBuffer` for Dawn. */
export class DawnBuffer extends DawnObject {
  /** The device. */
  readonly device: DawnDevice;
  /** Size in bytes. */
  readonly size: number;
  /** `GPUBufferUsage` flags. */
  readonly usage: number;
  #mapState: GPUBufferMapState;
  #mapWritable: boolean;
  #mapped: { offset: number; size: number } | null;
  #ranges: { offset: number; data: ArrayBuffer }[] = [];
  #pendingId: bigint | null = null;
  #destroyed = false;

  /** Wraps the buffer `handle` created from `descriptor`. */
  constructor(device: DawnDevice, handle: Pointer | null, descriptor: GPUBufferDescriptor) {
    const s = device.gpu.lib.symbols;
    super(handle, (p) => s.zwgpuBufferRelease(p), descriptor.label, "buffer");
    this.device = device;
    this.size = descriptor.size;
    this.usage = descriptor.usage;
    const atCreation = descriptor.mappedAtCreation === true;
    this.#mapState = atCreation ? "mapped" : "unmapped";
    this.#mapWritable = atCreation;
    this.#mapped = atCreation ? { offset: 0, size: descriptor.size } : null;
  }

  /** `unmapped`, `pending` or `mapped`. */
  get mapState(): GPUBufferMapState {
    return this.#mapState;
  }

  #startMap(
    mode: number,
    offset: number,
    size: number | undefined,
  ): { promise: Promise<undefined>; future: bigint } {
    if (this.#mapState !== "unmapped") {
      return {
        promise: Promise.reject(new DawnOperationError(`mapAsync: buffer is ${this.#mapState}`)),
        future: 0n,
      };
    }
    const length = size ?? Math.max(0, this.size - offset);
    const gpu = this.device.gpu;
    this.#mapState = "pending";
    let future = 0n;
    const promise = new Promise<undefined>((resolve, reject) => {
      const id = gpu.register(([status, m, n]) => {
        this.#pendingId = null;
        if (status === MapAsyncStatus.Success) {
          this.#mapState = "mapped";
          this.#mapWritable = (mode & 2) !== 0;
          this.#mapped = { offset, size: length };
          resolve(undefined);
        } else {
          this.#mapState = "unmapped";
          const message = readStringView(m as Pointer | null, n as bigint);
          reject(
            new DawnOperationError(
              `mapAsync failed (status ${status}): ${message}`,
              status === MapAsyncStatus.Error ? "OperationError" : "AbortError",
            ),
          );
        }
      });
      this.#pendingId = id;
      const cb = struct(CallbackInfo.size);
      putCallbackInfo(cb.view, 0, CallbackMode.AllowProcessEvents, gpu.callbacks.statusMessage, id);
      future = gpu.lib.symbols.zwgpuBufferMapAsync(
        this.handle,
        BigInt(mode),
        BigInt(offset),
        BigInt(length),
        cb.bytes,
      );
    });
    return { promise, future };
  }

  /** As `GPUBuffer.mapAsync`. */
  mapAsync(mode: number, offset = 0, size?: number): Promise<undefined> {
    const { promise } = this.#startMap(mode, offset, size);
    this.device.gpu.poll();
    return promise;
  }

  /**
   * Maps the buffer, blocking the thread in `wgpuInstanceWaitAny` until Dawn has (an extension:
   * the lowest-latency completion, at the price of a blocked event loop). Throws what
   * `mapAsync` would reject with, or {@linkcode DawnOperationError} on timeout.
   */
  mapSync(mode: number, offset = 0, size?: number, timeoutMs = 10_000): void {
    const { promise, future } = this.#startMap(mode, offset, size);
    let failure: unknown = undefined;
    promise.catch((err) => {
      failure = err;
    });
    if (future === 0n) throw new DawnOperationError(`mapSync: buffer is ${this.#mapState}`);
    if (!this.device.gpu.waitAny(future, timeoutMs)) {
      this.device.gpu.poll();
      throw new DawnOperationError(`mapSync: not mapped after ${timeoutMs} ms`);
    }
    if (this.#mapState !== "mapped") {
      throw failure ?? new DawnOperationError("mapSync: the map did not complete");
    }
  }

  /**
   * As `GPUBuffer.getMappedRange`, returning a copy of the mapped bytes; for a buffer mapped for
   * writing (or at creation) the copy is written back on {@linkcode unmap}.
   */
  getMappedRange(offset = 0, size?: number): ArrayBuffer {
    const mapped = this.#mapped;
    if (this.#mapState !== "mapped" || mapped === null) {
      throw new DawnOperationError(`getMappedRange: buffer is ${this.#mapState}`);
    }
    const length = size ?? Math.max(0, mapped.offset + mapped.size - offset);
    if (offset % 8 !== 0 || length % 4 !== 0) {
      throw new DawnOperationError(
        `getMappedRange: offset ${offset} must be a multiple of 8, size ${length} of 4`,
      );
    }
    if (offset < mapped.offset || offset + length > mapped.offset + mapped.size) {
      throw new DawnOperationError(
        `getMappedRange: ${offset}+${length} is outside the mapped ${mapped.offset}+${mapped.size}`,
      );
    }
    for (const r of this.#ranges) {
      if (offset < r.offset + r.data.byteLength && r.offset < offset + length) {
        throw new DawnOperationError(`getMappedRange: ${offset}+${length} overlaps a range`);
      }
    }
    const data = new ArrayBuffer(length);
    if (length > 0) {
      const status = this.device.gpu.lib.symbols.wgpuBufferReadMappedRange(
        this.handle,
        BigInt(offset),
        new Uint8Array(data),
        BigInt(length),
      );
      if (status !== Status.Success) {
        throw new DawnOperationError(`getMappedRange: Dawn could not read ${offset}+${length}`);
      }
    }
    this.#ranges.push({ offset, data });
    return data;
  }

  /** As `GPUBuffer.unmap`: writes back written ranges, detaches them, aborts a pending map. */
  unmap(): void {
    const s = this.device.gpu.lib.symbols;
    if (this.#mapState === "mapped" && this.#mapWritable) {
      for (const r of this.#ranges) {
        if (r.data.byteLength === 0) continue;
        const status = s.wgpuBufferWriteMappedRange(
          this.handle,
          BigInt(r.offset),
          new Uint8Array(r.data),
          BigInt(r.data.byteLength),
        );
        if (status !== Status.Success) {
          throw new DawnOperationError(`unmap: Dawn could not write back ${r.offset}`);
        }
      }
    }
    for (const r of this.#ranges) detach(r.data);
    this.#ranges = [];
    this.#mapped = null;
    if (this.#mapState !== "unmapped") s.zwgpuBufferUnmap(this.handle);
    // A pending map is aborted by Dawn; its callback rejects the promise on the next events.
    if (this.#mapState === "pending") this.device.gpu.processEvents();
    this.#mapState = "unmapped";
  }

  /** As `GPUBuffer.destroy`. */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    if (this.#mapState !== "unmapped") this.unmap();
    this.device.gpu.lib.symbols.zwgpuBufferDestroy(this.handle);
  }
}

function detach(buffer: ArrayBuffer): void {
  const transferable = buffer as ArrayBuffer & { transfer?: (n?: number) => ArrayBuffer };
  if (typeof transferable.transfer === "function" && !buffer.detached) transferable.transfer(0);
}

// ---------------------------------------------------------------------------------------------
// Shader modules, pipelines, bind groups

/** `GPUShaderModule` for Dawn. */
export class DawnShaderModule extends DawnObject {
  /** The device. */
  readonly device: DawnDevice;

  /** Wraps the module `handle`. */
  constructor(device: DawnDevice, handle: Pointer | null, label: string | undefined) {
    const s = device.gpu.lib.symbols;
    super(handle, (p) => s.zwgpuShaderModuleRelease(p), label, "shader module");
    this.device = device;
  }

  /** As `GPUShaderModule.getCompilationInfo`. */
  getCompilationInfo(): Promise<{ messages: readonly GPUCompilationMessage[] }> {
    const gpu = this.device.gpu;
    return new Promise((resolve, reject) => {
      const id = gpu.register(([status, info]) => {
        if (status !== CompilationInfoRequestStatus.Success || info === null) {
          reject(new DawnOperationError(`getCompilationInfo failed (status ${status})`));
          return;
        }
        resolve({ messages: readCompilationMessages(info as Pointer) });
      });
      const cb = struct(CallbackInfo.size);
      putCallbackInfo(
        cb.view,
        0,
        CallbackMode.AllowProcessEvents,
        gpu.callbacks.compilationInfo,
        id,
      );
      gpu.lib.symbols.zwgpuShaderModuleGetCompilationInfo(this.handle, cb.bytes);
      gpu.poll();
    });
  }
}

function readCompilationMessages(info: Pointer): GPUCompilationMessage[] {
  const head = new DataView(viewForeign(info, CompilationInfo.size).slice(0));
  const count = Number(head.getBigUint64(CompilationInfo.messageCount, true));
  const at = head.getBigUint64(CompilationInfo.messages, true);
  if (count === 0 || at === 0n) return [];
  const v = new DataView(viewForeign(at, count * CompilationMessage.size).slice(0));
  const out: GPUCompilationMessage[] = [];
  for (let i = 0; i < count; i++) {
    const base = i * CompilationMessage.size;
    const num = (field: number) => Number(v.getBigUint64(base + field, true));
    out.push({
      message: readStringViewAt(v, base + CompilationMessage.message),
      type: COMPILATION_MESSAGE_TYPES[v.getUint32(base + CompilationMessage.type, true)] ??
        "info",
      lineNum: num(CompilationMessage.lineNum),
      linePos: num(CompilationMessage.linePos),
      offset: num(CompilationMessage.offset),
      length: num(CompilationMessage.length),
    } as GPUCompilationMessage);
  }
  return out;
}

/** `GPUBindGroupLayout` for Dawn. */
export class DawnBindGroupLayout extends DawnObject {}

/** `GPUPipelineLayout` for Dawn. */
export class DawnPipelineLayout extends DawnObject {}

/** `GPUBindGroup` for Dawn. */
export class DawnBindGroup extends DawnObject {
  /** Wraps the bind group `handle`. */
  constructor(device: DawnDevice, handle: Pointer | null, label: string | undefined) {
    const s = device.gpu.lib.symbols;
    super(handle, (p) => s.zwgpuBindGroupRelease(p), label, "bind group");
  }
}

/** `GPUComputePipeline` for Dawn. */
export class DawnComputePipeline extends DawnObject {
  /** The device. */
  readonly device: DawnDevice;

  /** Wraps the pipeline `handle`. */
  constructor(device: DawnDevice, handle: Pointer | null, label: string | undefined) {
    const s = device.gpu.lib.symbols;
    super(handle, (p) => s.zwgpuComputePipelineRelease(p), label, "compute pipeline");
    this.device = device;
  }

  /** As `GPUComputePipeline.getBindGroupLayout`. */
  getBindGroupLayout(index: number): DawnBindGroupLayout {
    const s = this.device.gpu.lib.symbols;
    const handle = s.zwgpuComputePipelineGetBindGroupLayout(this.handle, index);
    return new DawnBindGroupLayout(
      handle,
      (p) => s.zwgpuBindGroupLayoutRelease(p),
      undefined,
      `bind group layout ${index}`,
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Encoding

/** `GPUCommandBuffer` for Dawn. */
export class DawnCommandBuffer extends DawnObject {}

/** `GPUComputePassEncoder` for Dawn. */
export class DawnComputePassEncoder extends DawnObject {
  readonly #lib: DawnLibrary;
  #ended = false;

  /** Wraps the pass `handle`. */
  constructor(device: DawnDevice, handle: Pointer | null, label: string | undefined) {
    const s = device.gpu.lib.symbols;
    super(handle, (p) => s.zwgpuComputePassEncoderRelease(p), label, "compute pass");
    this.#lib = device.gpu.lib;
  }

  /** As `GPUComputePassEncoder.setPipeline`. */
  setPipeline(pipeline: DawnComputePipeline): void {
    const p = handleOf(pipeline, DawnComputePipeline, "pipeline");
    this.#lib.symbols.zwgpuComputePassEncoderSetPipeline(this.handle, p);
  }

  /** As `GPUComputePassEncoder.setBindGroup` (dynamic offsets as an array). */
  setBindGroup(index: number, group: DawnBindGroup | null, dynamicOffsets: number[] = []): void {
    const g = group === null ? null : handleOf(group, DawnBindGroup, "bindGroup");
    const offsets = new Uint32Array(new ArrayBuffer(4 * Math.max(1, dynamicOffsets.length)));
    offsets.set(dynamicOffsets);
    this.#lib.symbols.zwgpuComputePassEncoderSetBindGroup(
      this.handle,
      index,
      g,
      BigInt(dynamicOffsets.length),
      new Uint8Array(offsets.buffer),
    );
  }

  /** As `GPUComputePassEncoder.dispatchWorkgroups`. */
  dispatchWorkgroups(x: number, y = 1, z = 1): void {
    this.#lib.symbols.zwgpuComputePassEncoderDispatchWorkgroups(this.handle, x, y, z);
  }

  /** As `GPUComputePassEncoder.end`. */
  end(): void {
    if (this.#ended) throw new DawnOperationError("compute pass already ended");
    this.#ended = true;
    this.#lib.symbols.zwgpuComputePassEncoderEnd(this.handle);
  }
}

/** `GPUCommandEncoder` for Dawn (compute passes and buffer copies). */
export class DawnCommandEncoder extends DawnObject {
  /** The device. */
  readonly device: DawnDevice;

  /** Wraps the encoder `handle`. */
  constructor(device: DawnDevice, handle: Pointer | null, label: string | undefined) {
    const s = device.gpu.lib.symbols;
    super(handle, (p) => s.zwgpuCommandEncoderRelease(p), label, "command encoder");
    this.device = device;
  }

  /** As `GPUCommandEncoder.beginComputePass` (no timestamp writes). */
  beginComputePass(descriptor: GPUComputePassDescriptor = {}): DawnComputePassEncoder {
    if (descriptor.timestampWrites !== undefined) throw invalid("timestampWrites unsupported");
    const keep: unknown[] = [];
    const d = struct(ComputePassDescriptor.size);
    putString(d.view, ComputePassDescriptor.label, descriptor.label, keep);
    const handle = this.device.gpu.lib.symbols.zwgpuCommandEncoderBeginComputePass(
      this.handle,
      d.bytes,
    );
    return new DawnComputePassEncoder(this.device, handle, descriptor.label);
  }

  /** As `GPUCommandEncoder.copyBufferToBuffer`, both the 5- and the 3-argument form. */
  copyBufferToBuffer(
    source: DawnBuffer,
    a: number | DawnBuffer,
    b?: DawnBuffer | number,
    c?: number,
    d?: number,
  ): void {
    let srcOffset = 0, dst: unknown, dstOffset = 0, size: number | undefined;
    if (typeof a === "number") [srcOffset, dst, dstOffset, size] = [a, b, c ?? 0, d];
    else [dst, size] = [a, b as number | undefined];
    const src = handleOf(source, DawnBuffer, "source");
    const target = handleOf(dst, DawnBuffer, "destination");
    const bytes = size ?? source.size - srcOffset;
    this.device.gpu.lib.symbols.zwgpuCommandEncoderCopyBufferToBuffer(
      this.handle,
      src,
      BigInt(srcOffset),
      target,
      BigInt(dstOffset),
      BigInt(bytes),
    );
  }

  /** As `GPUCommandEncoder.clearBuffer`. */
  clearBuffer(buffer: DawnBuffer, offset = 0, size?: number): void {
    const target = handleOf(buffer, DawnBuffer, "buffer");
    this.device.gpu.lib.symbols.zwgpuCommandEncoderClearBuffer(
      this.handle,
      target,
      BigInt(offset),
      size === undefined ? WHOLE_SIZE : BigInt(size),
    );
  }

  /** As `GPUCommandEncoder.finish`. */
  finish(descriptor: GPUCommandBufferDescriptor = {}): DawnCommandBuffer {
    const keep: unknown[] = [];
    const d = struct(LabelOnlyDescriptor.size);
    putString(d.view, LabelOnlyDescriptor.label, descriptor.label, keep);
    const s = this.device.gpu.lib.symbols;
    const handle = s.zwgpuCommandEncoderFinish(this.handle, d.bytes);
    return new DawnCommandBuffer(
      handle,
      (p) => s.zwgpuCommandBufferRelease(p),
      descriptor.label,
      "command buffer",
    );
  }
}
