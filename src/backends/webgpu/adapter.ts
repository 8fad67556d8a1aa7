/**
 * Finds a WebGPU device in whichever runtime this is. The Deno/Bun split for WebGPU lives here
 * (and in `ffi/`) only; the WebGPU runtime above sees one `GPUDevice`.
 *
 * Implementations, in the order `"auto"` tries them:
 * - `"navigator"`: the runtime's own `navigator.gpu` (Deno 2.x ships it, backed by wgpu).
 * - `"bun-webgpu"`: the `bun-webgpu` npm package (Dawn over `bun:ffi`); Bun only, tried by
 *   `"auto"` when Bun has no `navigator.gpu`.
 * - `"dawn"`: our own binding of the same Dawn library (`ffi/dawn.ts`, compute subset) through the
 *   shared `dlopen` adapter, so it runs under Deno too. Opt-in only (option or
 *   `RINGKERNEL_WEBGPU=dawn`): it exists because Deno's `mapAsync` and `onSubmittedWorkDone`
 *   resolve ~10 ms late (docs/webgpu-adapters.md has the measurements).
 *
 * Dawn's null backend (an adapter that accepts work but never runs it) is refused: a device on it
 * would make every GPU test pass without a GPU.
 *
 * @module
 */

import { NoWebGpuError } from "../../core/errors.ts";
import { openDawnGpu, preferHeadlessEgl } from "../../../ffi/dawn.ts";

/** A WebGPU implementation that can provide a device. */
export type WebGpuImplementation = "navigator" | "bun-webgpu" | "dawn";

/** What {@linkcode requestWebGpuDevice} may use. */
export interface WebGpuAdapterOptions {
  /**
   * Which implementation to use; `"auto"` (the default, unless `RINGKERNEL_WEBGPU` names one)
   * tries `navigator.gpu`, then, under Bun, the `bun-webgpu` package. `"dawn"` is never tried
   * implicitly.
   */
  readonly implementation?: "auto" | WebGpuImplementation;
  /** Passed to `requestAdapter`. */
  readonly powerPreference?: GPUPowerPreference;
  /**
   * Path of the Dawn shared library (`libwebgpu_wrapper.so`) for the `"dawn"` implementation;
   * default: `RINGKERNEL_DAWN_LIB`, then the `bun-webgpu-<platform>-<arch>` package.
   */
  readonly dawnLibrary?: string;
  /**
   * The backend of the Dawn-based implementations (`bun-webgpu`, `dawn`); default:
   * `RINGKERNEL_DAWN_BACKEND`, else Dawn's choice (Vulkan on Linux). `opengles` runs on Mesa's
   * llvmpipe through headless EGL where Dawn refuses lavapipe's Vulkan (and implies the
   * compatibility feature level).
   */
  readonly dawnBackend?: DawnBackend;
  /**
   * Accept Dawn's null backend (an adapter that validates work but never executes it). Only for
   * tests of the bindings themselves on machines without a GPU Dawn accepts; never for results.
   */
  readonly allowNullBackend?: boolean;
}

/** Backends the Dawn-based implementations can be asked for. */
export type DawnBackend = "vulkan" | "opengles" | "opengl";

/** The environment variable that picks the Dawn backend when the option is absent. */
export const DAWN_BACKEND_ENV = "RINGKERNEL_DAWN_BACKEND";

/** The adapter's identity, the same fields whichever implementation found it. */
export interface WebGpuAdapterInfo {
  /** Vendor name (may be empty: implementations report it inconsistently). */
  readonly vendor: string;
  /** Architecture name (may be empty). */
  readonly architecture: string;
  /** Device name, for example `NVIDIA H100 80GB HBM3` or `llvmpipe (LLVM 19.1.7, 256 bits)`. */
  readonly device: string;
  /** Driver description (may be empty). */
  readonly description: string;
  /** Whether this is a fallback (software) adapter, as the implementation reports it. */
  readonly isFallback: boolean;
  /**
   * A human-readable name: `device`, or `description` where `device` is empty or a numeric PCI
   * id (Deno reports `vendor` and `device` as numbers and the name in `description`).
   */
  readonly name: string;
}

/** A device and where it came from. */
export interface WebGpuDeviceHandle {
  /** The device. */
  readonly device: GPUDevice;
  /** The adapter it was requested from. */
  readonly adapter: GPUAdapter;
  /** The adapter's identity. */
  readonly adapterInfo: WebGpuAdapterInfo;
  /** The implementation that provided it. */
  readonly implementation: WebGpuImplementation;
}

/** The environment variable that picks the implementation when the option is absent or auto. */
export const WEBGPU_IMPLEMENTATION_ENV = "RINGKERNEL_WEBGPU";

const IMPLEMENTATIONS: readonly WebGpuImplementation[] = ["navigator", "bun-webgpu", "dawn"];

type Globals = {
  Bun?: unknown;
  Deno?: { env: { get(name: string): string | undefined } };
  process?: { env: Record<string, string | undefined> };
  navigator?: { gpu?: GPU };
};
const globals = globalThis as unknown as Globals;

/** The runtime this process is, for messages and bench reports. */
export const jsRuntime: "deno" | "bun" | "other" = globals.Bun !== undefined
  ? "bun"
  : globals.Deno !== undefined
  ? "deno"
  : "other";

function envVar(name: string): string | undefined {
  try {
    return globals.Deno?.env.get(name) ?? globals.process?.env[name];
  } catch {
    // Deno without --allow-env: the variable counts as unset.
    return undefined;
  }
}

/**
 * The implementations `"auto"` tries in this runtime, in order, after applying
 * `RINGKERNEL_WEBGPU`. Throws {@linkcode NoWebGpuError} for an unknown name in the variable.
 */
export function implementationsToTry(
  requested: "auto" | WebGpuImplementation = "auto",
): WebGpuImplementation[] {
  let choice: string = requested;
  if (choice === "auto") {
    const fromEnv = envVar(WEBGPU_IMPLEMENTATION_ENV);
    if (fromEnv !== undefined && fromEnv !== "" && fromEnv !== "auto") choice = fromEnv;
  }
  if (choice === "auto") return jsRuntime === "bun" ? ["navigator", "bun-webgpu"] : ["navigator"];
  if (!(IMPLEMENTATIONS as readonly string[]).includes(choice)) {
    throw new NoWebGpuError(
      `unknown implementation ${JSON.stringify(choice)} (from ${WEBGPU_IMPLEMENTATION_ENV}); ` +
        `expected one of auto, ${IMPLEMENTATIONS.join(", ")}`,
    );
  }
  return [choice as WebGpuImplementation];
}

/**
 * Requests a WebGPU adapter and device. Tries the implementations {@linkcode implementationsToTry}
 * names; throws {@linkcode NoWebGpuError} listing each one tried and why it failed when none
 * gives a usable (non-null-backend) adapter.
 *
 * @example
 * ```ts
 * const { device, adapterInfo, implementation } = await requestWebGpuDevice();
 * console.log(implementation, adapterInfo.device);
 * device.destroy();
 * ```
 */
export async function requestWebGpuDevice(
  options: WebGpuAdapterOptions = {},
): Promise<WebGpuDeviceHandle> {
  const order = implementationsToTry(options.implementation ?? "auto");
  const failures: string[] = [];
  for (const implementation of order) {
    try {
      const gpu = await gpuFor(implementation, options);
      const adapter = await gpu.requestAdapter(adapterOptions(implementation, options));
      if (adapter === null) {
        failures.push(`${implementation}: requestAdapter() returned null`);
        continue;
      }
      const adapterInfo = infoOf(adapter);
      if (options.allowNullBackend !== true && isNullBackend(adapter, adapterInfo)) {
        failures.push(
          `${implementation}: the only adapter is Dawn's null backend (no Vulkan driver Dawn ` +
            `accepts; it refuses lavapipe), which never executes work`,
        );
        continue;
      }
      const device = await requestDevice(adapter, implementation);
      if (implementation === "bun-webgpu") addCompilationInfo(device);
      return { device, adapter, adapterInfo, implementation };
    } catch (err) {
      failures.push(`${implementation}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  throw new NoWebGpuError(`tried ${order.join(", ")} under ${jsRuntime}: ${failures.join("; ")}`);
}

function adapterOptions(
  implementation: WebGpuImplementation,
  options: WebGpuAdapterOptions,
): GPURequestAdapterOptions | undefined {
  const base: GPURequestAdapterOptions = options.powerPreference === undefined
    ? {}
    : { powerPreference: options.powerPreference };
  if (implementation === "navigator") return base;
  const backend = options.dawnBackend ?? envVar(DAWN_BACKEND_ENV);
  if (backend === undefined || backend === "") return base;
  if (!["vulkan", "opengles", "opengl"].includes(backend)) {
    throw new Error(`unknown Dawn backend ${JSON.stringify(backend)} (vulkan, opengles, opengl)`);
  }
  const gl = backend !== "vulkan";
  // Dawn's GL backends need a headless EGL platform on a machine without a display; set
  // through libc, since Bun's process.env does not reach getenv().
  if (gl) preferHeadlessEgl();
  // bun-webgpu spells WGPUBackendType by its C names; ffi/dawn.ts by the lower-case ones.
  const names: Record<string, string> = {
    vulkan: "Vulkan",
    opengles: "OpenGLES",
    opengl: "OpenGL",
  };
  return {
    ...base,
    backendType: implementation === "bun-webgpu" ? names[backend] : backend,
    featureLevel: gl ? "compatibility" : "core",
  } as GPURequestAdapterOptions;
}

async function gpuFor(
  implementation: WebGpuImplementation,
  options: WebGpuAdapterOptions,
): Promise<GPU> {
  switch (implementation) {
    case "navigator": {
      const gpu = globals.navigator?.gpu;
      if (gpu === undefined) {
        throw new Error(
          jsRuntime === "bun"
            ? "navigator.gpu is absent (Bun ships no WebGPU; the bun-webgpu package provides it)"
            : "navigator.gpu is absent in this runtime",
        );
      }
      return gpu;
    }
    case "bun-webgpu":
      return await bunWebGpu();
    case "dawn": {
      // DawnGpu implements the compute subset of the GPU interfaces the runtime uses; the cast
      // is where that subset is presented under the standard type.
      const library = options.dawnLibrary ?? envVar("RINGKERNEL_DAWN_LIB");
      return openDawnGpu({ library }) as unknown as GPU;
    }
  }
}

/** The part of the bun-webgpu package used here (it ships typings, but they need bun-types). */
interface BunWebGpuModule {
  createGPUInstance(libPath?: string): GPU;
  globalConstructors: Record<string, unknown>;
}

let bunWebGpuInstance: GPU | undefined;

async function bunWebGpu(): Promise<GPU> {
  if (jsRuntime !== "bun") {
    throw new Error("bun-webgpu runs under Bun only (it is built on bun:ffi)");
  }
  if (bunWebGpuInstance !== undefined) return bunWebGpuInstance;
  // A variable specifier: Deno never resolves the package, and its absence (an optional
  // dependency) surfaces as this implementation's failure, not as a load error of this module.
  const specifier = "bun-webgpu";
  let mod: BunWebGpuModule;
  try {
    mod = (await import(specifier)) as BunWebGpuModule;
  } catch (err) {
    throw new Error(
      `the bun-webgpu package did not load (npm install it; it is an optional dependency): ${
        err instanceof Error ? err.message : String(err)
      }`,
    );
  }
  // Bun has no GPUBufferUsage, GPUMapMode, ... globals; install the package's for the names that
  // are missing only, so code written against the standard constants runs unchanged.
  for (const [name, value] of Object.entries(mod.globalConstructors)) {
    if (!(name in globalThis)) {
      Object.defineProperty(globalThis, name, { value, writable: true, configurable: true });
    }
  }
  // One instance per process: each one starts its own event ticker.
  bunWebGpuInstance = mod.createGPUInstance();
  return bunWebGpuInstance;
}

/**
 * Limits raised to what the adapter offers: the defaults cap buffers at 256 MiB and, in Dawn's
 * compatibility mode (OpenGL ES), workgroups at 128 invocations.
 */
export const RAISED_LIMITS = [
  "maxBufferSize",
  "maxStorageBufferBindingSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupSizeZ",
  "maxComputeWorkgroupStorageSize",
  "maxStorageBuffersPerShaderStage",
] as const;

async function requestDevice(
  adapter: GPUAdapter,
  implementation: WebGpuImplementation,
): Promise<GPUDevice> {
  if (implementation === "bun-webgpu") {
    // Workaround for bun-webgpu 0.1.7: it checks requiredLimits against adapter limits it reads
    // as 0 for limits newer than its struct layout (maxImmediateSize, ...), so any descriptor
    // with requiredLimits fails validation. Without a descriptor Dawn grants its default limits
    // (storage bindings up to 128 MiB, 256 invocations per workgroup; 128 in compatibility mode).
    return await adapter.requestDevice();
  }
  const offered = adapter.limits as unknown as Record<string, number | undefined>;
  const requiredLimits: Record<string, number> = {};
  for (const name of RAISED_LIMITS) {
    const value = offered[name];
    if (typeof value === "number" && value > 0) requiredLimits[name] = value;
  }
  return await adapter.requestDevice({ requiredLimits });
}

/**
 * Dawn's WGSL diagnostics (`:line:col error: text`) as compilation messages; Dawn puts them in
 * the validation error of `createShaderModule`.
 */
export function parseWgslDiagnostics(text: string): GPUCompilationMessage[] {
  const out: GPUCompilationMessage[] = [];
  for (const m of text.matchAll(/:(\d+):(\d+) (error|warning|note|info): ([^\n]*)/g)) {
    out.push({
      message: m[4],
      type: m[3] === "error" ? "error" : m[3] === "warning" ? "warning" : "info",
      lineNum: Number(m[1]),
      linePos: Number(m[2]),
      offset: 0,
      length: 0,
    } as GPUCompilationMessage);
  }
  if (out.length === 0 && text !== "") {
    out.push(
      {
        message: text,
        type: "error",
        lineNum: 0,
        linePos: 0,
        offset: 0,
        length: 0,
      } as GPUCompilationMessage,
    );
  }
  return out;
}

/**
 * bun-webgpu 0.1.7 throws "not implemented" from `GPUShaderModule.getCompilationInfo`. Its
 * device's `createShaderModule` is wrapped so the method works: the module is created inside a
 * validation error scope, the scope's error becomes the module's messages, and the error is
 * injected again so that the caller's own scopes and `uncapturederror` still see it.
 */
function addCompilationInfo(device: GPUDevice): void {
  const inject = (device as GPUDevice & { injectError?: (t: string, m: string) => void })
    .injectError;
  const create = device.createShaderModule.bind(device);
  device.createShaderModule = (descriptor: GPUShaderModuleDescriptor): GPUShaderModule => {
    device.pushErrorScope("validation");
    const module = create(descriptor);
    const caught = device.popErrorScope().then((error) => {
      if (error !== null) inject?.call(device, "validation", error.message);
      return error;
    });
    Object.defineProperty(module, "getCompilationInfo", {
      configurable: true,
      value: async () => {
        const error = await caught;
        return { messages: error === null ? [] : parseWgslDiagnostics(error.message) };
      },
    });
    return module;
  };
}

function infoOf(adapter: GPUAdapter): WebGpuAdapterInfo {
  const info = adapter.info as Partial<GPUAdapterInfo> | undefined;
  const legacy = adapter as GPUAdapter & { isFallbackAdapter?: boolean };
  const withFallback = info as { isFallbackAdapter?: boolean } | undefined;
  const device = info?.device ?? "";
  const description = info?.description ?? "";
  return {
    vendor: info?.vendor ?? "",
    architecture: info?.architecture ?? "",
    device,
    description,
    isFallback: withFallback?.isFallbackAdapter ?? legacy.isFallbackAdapter ?? false,
    name: (device === "" || /^\d+$/.test(device)) && description !== "" ? description : device,
  };
}

/** WGPUBackendType_Null in Dawn's webgpu.h; bun-webgpu and ffi/dawn.ts expose it on the info. */
const DAWN_BACKEND_NULL = 1;

function isNullBackend(adapter: GPUAdapter, info: WebGpuAdapterInfo): boolean {
  const raw = adapter.info as { backendType?: unknown } | undefined;
  return raw?.backendType === DAWN_BACKEND_NULL || info.device === "null-backend";
}
