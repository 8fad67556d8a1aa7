/**
 * CUDA C to CUBIN (or PTX) through NVRTC, with a disk cache of compiled modules.
 *
 * A compile of a small module costs tens of milliseconds, so {@linkcode Nvrtc.compile} first
 * looks in a {@linkcode ModuleCache} keyed by the SHA-256 of everything that decides the output:
 * the source, the target architecture, the output kind, the options and the NVRTC version. The
 * cache folder is, first found: the `cacheDir` option, `$RINGKERNEL_CACHE_DIR`,
 * `$XDG_CACHE_HOME/ringkernel`, `~/.cache/ringkernel`; modules go in its `nvrtc/` subfolder.
 * A cache that cannot be written is skipped silently: it only saves time.
 *
 * @example
 * ```ts
 * import { Nvrtc } from "./nvrtc.ts";
 * const nvrtc = Nvrtc.open();
 * const { image } = nvrtc.compile(
 *   `extern "C" __global__ void k(float* x) { x[threadIdx.x] *= 2.0f; }`,
 *   { arch: "sm_90", context: "kernel k" },
 * );
 * nvrtc.close();
 * ```
 * @module
 */

import process from "node:process";
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { ErrorCode, NvrtcError, ValidationError } from "../src/core/errors.ts";
import {
  cString,
  cStringArray,
  type ForeignLibrary,
  type ForeignSymbols,
  outI32,
  outU64,
  readCString,
} from "./dlopen.ts";
import { NVRTC_SYMBOLS, type NvrtcSymbols } from "./cuda_symbols.ts";
import { type DiscoveryOptions, findLibrary, type LibraryCandidate } from "./discovery.ts";

/** What a compile produces: a CUBIN for one real architecture, or PTX for the driver to JIT. */
export type NvrtcOutput = "cubin" | "ptx";

/** A target: "sm_90", "compute_90", "90", or a compute capability. */
export type GpuArch = string | { readonly major: number; readonly minor: number };

/** Options of {@linkcode Nvrtc.open}. */
export interface NvrtcOpenOptions extends DiscoveryOptions {
  /** The cache folder (see the module documentation for the default). */
  readonly cacheDir?: string;
  /** `false` turns the disk cache off. */
  readonly cache?: boolean;
}

/** Options of {@linkcode Nvrtc.compile}. */
export interface CompileOptions {
  /** The target architecture, usually the device's compute capability. */
  readonly arch: GpuArch;
  /** "cubin" (the default) or "ptx". */
  readonly output?: NvrtcOutput;
  /** Further NVRTC options, e.g. `["--std=c++17", "-lineinfo"]`; `--gpu-architecture` is added. */
  readonly options?: readonly string[];
  /** The program's file name in diagnostics; "ringkernel.cu" by default. */
  readonly name?: string;
  /** Says what is being compiled in a failure's message (a kernel name, a source location). */
  readonly context?: string;
  /** `false` skips the disk cache for this compile. */
  readonly cache?: boolean;
}

/** A compiled module. */
export interface CompiledModule {
  /**
   * The image for `cuModuleLoadData`: ELF bytes for "cubin", NUL-terminated text for "ptx".
   */
  readonly image: Uint8Array;
  /** What `image` is. Can be "ptx" when "cubin" was asked for; see {@linkcode Nvrtc.compile}. */
  readonly output: NvrtcOutput;
  /** The `--gpu-architecture` value used, e.g. "sm_90". */
  readonly arch: string;
  /** NVRTC's program log (warnings); "" when it was empty or the module came from the cache. */
  readonly log: string;
  /** True when the image came from the disk cache. */
  readonly cached: boolean;
  /** The cache key (hex SHA-256). */
  readonly key: string;
}

/** Splits an architecture into its number (e.g. 90) and suffix (e.g. "a" of sm_90a). */
export function parseArch(arch: GpuArch): { readonly number: number; readonly suffix: string } {
  if (typeof arch !== "string") return { number: arch.major * 10 + arch.minor, suffix: "" };
  const m = /^(?:sm_|compute_)?(\d+)([a-z]?)$/.exec(arch.trim());
  if (m === null) {
    throw new ValidationError(
      ErrorCode.InvalidArgument,
      `not a GPU architecture: ${JSON.stringify(arch)} (expected e.g. "sm_90")`,
    );
  }
  return { number: Number(m[1]), suffix: m[2] };
}

/** The `--gpu-architecture` value for `arch` and `output`: "sm_90" for CUBIN, "compute_90" for PTX. */
export function archOption(arch: GpuArch, output: NvrtcOutput): string {
  const { number, suffix } = parseArch(arch);
  return `${output === "cubin" ? "sm" : "compute"}_${number}${suffix}`;
}

/** The default cache folder (without the `nvrtc/` subfolder). */
export function defaultCacheDir(
  env: Readonly<Record<string, string | undefined>> = process.env,
): string {
  const get = (name: string) => {
    try {
      const v = env[name];
      return v === undefined || v === "" ? undefined : v;
    } catch {
      return undefined; // Deno without --allow-env
    }
  };
  const explicit = get("RINGKERNEL_CACHE_DIR");
  if (explicit !== undefined) return explicit;
  const xdg = get("XDG_CACHE_HOME");
  if (xdg !== undefined) return join(xdg, "ringkernel");
  return join(homedir(), ".cache", "ringkernel");
}

/** The inputs that decide a compiled module, hashed into its cache key. */
export interface ModuleKeyParts {
  /** The CUDA C source. */
  readonly source: string;
  /** The `--gpu-architecture` value. */
  readonly arch: string;
  /** The output kind. */
  readonly output: NvrtcOutput;
  /** The other options, in order. */
  readonly options: readonly string[];
  /** The compiler version, e.g. "13.0". */
  readonly compilerVersion: string;
}

/** The hex SHA-256 cache key of a module. */
export function moduleKey(parts: ModuleKeyParts): string {
  const text = JSON.stringify([
    "ringkernel-nvrtc-1",
    parts.source,
    parts.arch,
    parts.output,
    parts.options,
    parts.compilerVersion,
  ]);
  return createHash("sha256").update(text).digest("hex");
}

const ELF = [0x7f, 0x45, 0x4c, 0x46];

/** Compiled modules on disk, one file per key: `<dir>/nvrtc/<key>.cubin` or `.ptx`. */
export class ModuleCache {
  /** The folder holding the files. */
  readonly dir: string;

  /** A cache in `<root>/nvrtc` (`root` defaults to {@linkcode defaultCacheDir}). */
  constructor(root: string = defaultCacheDir()) {
    this.dir = join(root, "nvrtc");
  }

  /** The file a module with `key` and `output` is kept in. */
  path(key: string, output: NvrtcOutput): string {
    return join(this.dir, `${key}.${output}`);
  }

  /** The cached image, or undefined when absent or not plausibly an image of that kind. */
  get(key: string, output: NvrtcOutput): Uint8Array | undefined {
    let bytes: Uint8Array;
    try {
      bytes = new Uint8Array(readFileSync(this.path(key, output)));
    } catch {
      return undefined;
    }
    const ok = output === "cubin"
      ? bytes.length > 4 && ELF.every((b, i) => bytes[i] === b)
      : bytes.length > 1 && bytes[bytes.length - 1] === 0;
    return ok ? bytes : undefined;
  }

  /**
   * Stores an image (written to a temporary file and renamed, so a reader never sees half of
   * one). Returns false when the folder cannot be written.
   */
  put(key: string, output: NvrtcOutput, image: Uint8Array): boolean {
    const target = this.path(key, output);
    const tmp = `${target}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
    try {
      mkdirSync(this.dir, { recursive: true });
      writeFileSync(tmp, image);
      renameSync(tmp, target);
      return true;
    } catch {
      try {
        rmSync(tmp, { force: true });
      } catch {
        // nothing to clean up
      }
      return false;
    }
  }
}

/** The loaded NVRTC library. */
export class Nvrtc {
  /** The library handle. */
  readonly library: ForeignLibrary<NvrtcSymbols>;
  /** Where the library was found. */
  readonly source: LibraryCandidate;
  /** `nvrtcVersion`. */
  readonly version: { readonly major: number; readonly minor: number };
  /** The disk cache, or null when turned off. */
  readonly cache: ModuleCache | null;
  readonly #fn: ForeignSymbols<NvrtcSymbols>;
  #archs: readonly number[] | undefined;

  private constructor(
    library: ForeignLibrary<NvrtcSymbols>,
    source: LibraryCandidate,
    cache: ModuleCache | null,
  ) {
    this.library = library;
    this.source = source;
    this.cache = cache;
    this.#fn = library.symbols;
    const major = outI32();
    const minor = outI32();
    this.#check(this.#fn.nvrtcVersion(major, minor), "nvrtcVersion");
    this.version = { major: major[0], minor: minor[0] };
  }

  /** Finds and loads libnvrtc (see `discovery.ts`); throws `NoCudaError` when none loads. */
  static open(options: NvrtcOpenOptions = {}): Nvrtc {
    const found = findLibrary("libnvrtc", NVRTC_SYMBOLS, options);
    const cache = options.cache === false
      ? null
      : new ModuleCache(options.cacheDir ?? defaultCacheDir(options.env ?? process.env));
    return new Nvrtc(found.library, found.candidate, cache);
  }

  /** `nvrtcGetErrorString` of `result`, e.g. "NVRTC_ERROR_COMPILATION". */
  errorName(result: number): string {
    return readCString(this.#fn.nvrtcGetErrorString(result)) || `nvrtcResult ${result}`;
  }

  #check(result: number, context: string, log = ""): void {
    if (result !== 0) throw new NvrtcError(this.errorName(result), log, context);
  }

  /**
   * The real architectures this NVRTC can compile CUBIN for (e.g. [75, 80, ..., 120]), or []
   * when the library is too old to say.
   */
  supportedArchs(): readonly number[] {
    if (this.#archs !== undefined) return this.#archs;
    const count = this.#fn.nvrtcGetNumSupportedArchs;
    const list = this.#fn.nvrtcGetSupportedArchs;
    if (count === null || list === null) return (this.#archs = []);
    const n = outI32();
    this.#check(count(n), "nvrtcGetNumSupportedArchs");
    const archs = new Int32Array(new ArrayBuffer(4 * Math.max(1, n[0])));
    this.#check(list(archs), "nvrtcGetSupportedArchs");
    return (this.#archs = [...archs.subarray(0, n[0])]);
  }

  /**
   * Compiles `source` for `options.arch`. When CUBIN is asked for an architecture newer than
   * this NVRTC knows, it compiles PTX for the newest one it does know instead (the driver
   * JIT-compiles PTX for newer devices) and says so in `output`. A failed compile throws
   * `NvrtcError` carrying the program log, its message naming `options.context`.
   */
  compile(source: string, options: CompileOptions): CompiledModule {
    let output: NvrtcOutput = options.output ?? "cubin";
    let arch = archOption(options.arch, output);
    const known = this.supportedArchs();
    if (output === "cubin" && known.length > 0) {
      const newest = Math.max(...known);
      if (parseArch(arch).number > newest) {
        output = "ptx";
        arch = `compute_${newest}`;
      }
    }
    const extra = options.options ?? [];
    const context = options.context ?? options.name ?? "CUDA program";
    const key = moduleKey({
      source,
      arch,
      output,
      options: extra,
      compilerVersion: `${this.version.major}.${this.version.minor}`,
    });
    const useCache = this.cache !== null && options.cache !== false;
    if (useCache) {
      const hit = this.cache?.get(key, output);
      if (hit !== undefined) return { image: hit, output, arch, log: "", cached: true, key };
    }

    const prog = outU64();
    this.#check(
      this.#fn.nvrtcCreateProgram(
        prog,
        cString(source),
        cString(options.name ?? "ringkernel.cu"),
        0,
        null,
        null,
      ),
      `${context} (nvrtcCreateProgram)`,
    );
    try {
      const argv = cStringArray([`--gpu-architecture=${arch}`, ...extra]);
      const result = this.#fn.nvrtcCompileProgram(prog[0], extra.length + 1, argv.pointers);
      const log = this.#log(prog[0]);
      this.#check(result, context, log);
      const image = output === "cubin"
        ? this.#read(prog[0], "nvrtcGetCUBINSize", "nvrtcGetCUBIN", context)
        : this.#read(prog[0], "nvrtcGetPTXSize", "nvrtcGetPTX", context);
      if (useCache) this.cache?.put(key, output, image);
      return { image, output, arch, log, cached: false, key };
    } finally {
      this.#fn.nvrtcDestroyProgram(prog);
    }
  }

  #log(prog: bigint): string {
    const size = outU64();
    if (this.#fn.nvrtcGetProgramLogSize(prog, size) !== 0 || size[0] <= 1n) return "";
    const bytes = new Uint8Array(new ArrayBuffer(Number(size[0])));
    if (this.#fn.nvrtcGetProgramLog(prog, bytes) !== 0) return "";
    const end = bytes.indexOf(0);
    return new TextDecoder().decode(bytes.subarray(0, end < 0 ? bytes.length : end)).trimEnd();
  }

  #read(
    prog: bigint,
    sizeCall: "nvrtcGetCUBINSize" | "nvrtcGetPTXSize",
    getCall: "nvrtcGetCUBIN" | "nvrtcGetPTX",
    context: string,
  ): Uint8Array {
    const size = outU64();
    this.#check(this.#fn[sizeCall](prog, size), `${context} (${sizeCall})`);
    const bytes = new Uint8Array(new ArrayBuffer(Math.max(1, Number(size[0]))));
    this.#check(this.#fn[getCall](prog, bytes), `${context} (${getCall})`);
    return bytes;
  }

  /** Unloads the library. */
  close(): void {
    this.library.close();
  }
}
