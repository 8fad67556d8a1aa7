/**
 * The one place that knows Deno from Bun. Everything above this file sees a single
 * `dlopen`-shaped call, {@linkcode openLibrary}, that turns a table of C signatures written in
 * one type vocabulary ({@linkcode FfiType}) into typed JS functions, plus a handful of helpers
 * for the memory that crosses the boundary: foreign memory viewed as an `ArrayBuffer`
 * ({@linkcode viewForeign}), addresses as `bigint` ({@linkcode addressOf},
 * {@linkcode pointerToBigInt}, {@linkcode pointerFromBigInt}), NUL-terminated strings
 * ({@linkcode cString}, {@linkcode readCString}, {@linkcode cStringArray}) and out-parameters
 * ({@linkcode outU64} and friends).
 *
 * `bun:ffi` is imported dynamically through a non-literal specifier, so Deno never resolves it,
 * and the Bun branch never touches the `Deno` global.
 *
 * Conventions that hold under both runtimes:
 * - 64-bit integers (`u64`, `i64`, `usize`, `isize`) come back as `bigint`; both runtimes already
 *   return them that way, so the raw foreign functions are handed out without wrappers.
 * - `pointer` is an opaque {@linkcode Pointer} (a pointer object in Deno, a number in Bun) or
 *   `null`; convert with {@linkcode pointerToBigInt} when arithmetic is needed.
 * - `buffer` takes a typed array or DataView (never `null`: Bun rejects it, Deno would pass
 *   NULL) and passes the address of its first byte, including the view's byteOffset.
 *
 * @example
 * ```ts
 * import { cString, openLibrary } from "./dlopen.ts";
 * const libc = openLibrary("libc.so.6", {
 *   getpid: { parameters: [], result: "i32" },
 *   strlen: { parameters: ["buffer"], result: "usize" },
 * } as const);
 * console.log(libc.symbols.getpid(), libc.symbols.strlen(cString("hello"))); // 1234 5n
 * libc.close();
 * ```
 * @module
 */

import { BackendUnavailableError, ErrorCode, ValidationError } from "../src/core/errors.ts";

// ---------------------------------------------------------------------------------------------
// The type vocabulary

/** A C parameter type, in the one vocabulary both runtimes are mapped from. */
export type FfiParamType =
  | "bool"
  | "u8"
  | "i8"
  | "u16"
  | "i16"
  | "u32"
  | "i32"
  | "u64"
  | "i64"
  | "usize"
  | "isize"
  | "f32"
  | "f64"
  | "pointer"
  | "buffer";

/** A C result type: any parameter type except `buffer`, or `void`. */
export type FfiResultType = Exclude<FfiParamType, "buffer"> | "void";

/** Every type name of the vocabulary. */
export type FfiType = FfiParamType | FfiResultType;

/** One C function: its parameter types in order and its result type. */
export interface SymbolDef {
  /** Parameter types, in order. */
  readonly parameters: readonly FfiParamType[];
  /** Result type. */
  readonly result: FfiResultType;
  /**
   * When true a library without this symbol still opens, and the function is `null`; used for
   * entry points that only newer library versions export.
   */
  readonly optional?: boolean;
}

/** A table of C functions keyed by their exported symbol names. */
export type SymbolTable = Readonly<Record<string, SymbolDef>>;

/**
 * An opaque native pointer as the runtime represents it (a pointer object in Deno, a number in
 * Bun). Pass it back to foreign functions as is; use {@linkcode pointerToBigInt} to see the
 * address.
 */
export type Pointer = { readonly __ringkernelPointer: never };

/** The JS value a parameter of type `T` takes. */
export type FfiParamValue<T extends FfiParamType> = T extends "u64" | "i64" | "usize" | "isize"
  ? bigint | number
  : T extends "bool" ? boolean
  : T extends "pointer" ? Pointer | null
  : T extends "buffer" ? ArrayBufferView
  : number;

/** The JS value a result of type `T` comes back as. */
export type FfiResultValue<T extends FfiResultType> = T extends "void" ? void
  : T extends "u64" | "i64" | "usize" | "isize" ? bigint
  : T extends "bool" ? boolean
  : T extends "pointer" ? Pointer | null
  : number;

/** The parameter tuple of a symbol definition. */
export type FfiParams<P extends readonly FfiParamType[]> = {
  -readonly [K in keyof P]: P[K] extends FfiParamType ? FfiParamValue<P[K]> : never;
};

/** The typed JS function for one symbol definition. */
export type ForeignFunction<D extends SymbolDef> = (
  ...args: FfiParams<D["parameters"]>
) => FfiResultValue<D["result"]>;

/** The typed functions of a table; optional symbols the library lacks are `null`. */
export type ForeignSymbols<S extends SymbolTable> = {
  readonly [K in keyof S]: S[K]["optional"] extends true ? ForeignFunction<S[K]> | null
    : ForeignFunction<S[K]>;
};

/** An opened shared library. */
export interface ForeignLibrary<S extends SymbolTable> {
  /** The path or soname it was opened by. */
  readonly path: string;
  /** The typed functions. */
  readonly symbols: ForeignSymbols<S>;
  /** Unloads the library (once the runtime drops its last reference); functions must not be
   * called afterwards. */
  close(): void;
}

/** Which FFI the current runtime offers. */
export type FfiRuntime = "deno" | "bun" | "none";

// ---------------------------------------------------------------------------------------------
// Runtime detection and the Bun module
//
// Only the parts of bun:ffi used here are described; there is no dependency on bun-types.

type BunFfiType =
  | "bool"
  | "u8"
  | "i8"
  | "u16"
  | "i16"
  | "u32"
  | "i32"
  | "u64"
  | "i64"
  | "usize"
  | "isize"
  | "f32"
  | "f64"
  | "ptr"
  | "buffer"
  | "void";

interface BunLibrary {
  symbols: Record<string, (...args: unknown[]) => unknown>;
  close(): void;
}

interface BunFfi {
  dlopen(
    path: string,
    symbols: Record<string, { args: BunFfiType[]; returns: BunFfiType }>,
  ): BunLibrary;
  ptr(view: ArrayBufferView, byteOffset?: number): number;
  toArrayBuffer(ptr: number, byteOffset: number, byteLength: number): ArrayBuffer;
  CString: new (ptr: number) => { toString(): string };
  JSCallback: new (
    fn: (...args: unknown[]) => unknown,
    def: { args: BunFfiType[]; returns: BunFfiType },
  ) => { readonly ptr: number | null; close(): void };
}

const globals = globalThis as { Bun?: unknown; Deno?: { dlopen?: unknown } };

/** The FFI this process runs under. */
export const ffiRuntime: FfiRuntime = globals.Bun !== undefined
  ? "bun"
  : typeof globals.Deno?.dlopen === "function"
  ? "deno"
  : "none";

// A variable specifier keeps Deno's module graph (and `deno check`) from resolving bun:ffi.
const BUN_FFI = "bun:ffi";
const bunFfi: BunFfi | undefined = ffiRuntime === "bun"
  ? (await import(BUN_FFI)) as BunFfi
  : undefined;

function bun(): BunFfi {
  if (bunFfi === undefined) throw noFfi();
  return bunFfi;
}

function noFfi(): BackendUnavailableError {
  return new BackendUnavailableError(
    "ffi",
    "this runtime has no foreign function interface (Deno with --allow-ffi, or Bun, is needed)",
  );
}

// ---------------------------------------------------------------------------------------------
// openLibrary

const BUN_TYPE: Readonly<Record<FfiType, BunFfiType>> = {
  bool: "bool",
  u8: "u8",
  i8: "i8",
  u16: "u16",
  i16: "i16",
  u32: "u32",
  i32: "i32",
  u64: "u64",
  i64: "i64",
  usize: "usize",
  isize: "isize",
  f32: "f32",
  f64: "f64",
  pointer: "ptr",
  buffer: "buffer",
  void: "void",
};

/**
 * Opens the shared library `path` (an absolute path, or a bare soname searched by the dynamic
 * loader) and binds every symbol of `symbols`. Throws the runtime's error (its message says why
 * the loader or the symbol lookup failed) when the library or a required symbol is missing, and
 * {@linkcode BackendUnavailableError} when the runtime has no FFI.
 *
 * Declare tables `as const` so that the functions get precise parameter and result types.
 */
export function openLibrary<const S extends SymbolTable>(
  path: string,
  symbols: S,
): ForeignLibrary<S> {
  if (ffiRuntime === "deno") return openDeno(path, symbols);
  if (ffiRuntime === "bun") return openBun(path, symbols);
  throw noFfi();
}

function openDeno<S extends SymbolTable>(path: string, symbols: S): ForeignLibrary<S> {
  const defs: Record<string, Deno.ForeignFunction> = {};
  for (const [name, def] of Object.entries(symbols)) {
    defs[name] = {
      parameters: [...def.parameters],
      result: def.result,
      optional: def.optional === true,
    };
  }
  const lib = Deno.dlopen(path, defs);
  return {
    path,
    symbols: lib.symbols as unknown as ForeignSymbols<S>,
    close: () => lib.close(),
  };
}

function openBun<S extends SymbolTable>(path: string, symbols: S): ForeignLibrary<S> {
  const ffi = bun();
  const toBun = (def: SymbolDef) => ({
    args: def.parameters.map((t) => BUN_TYPE[t]),
    returns: BUN_TYPE[def.result],
  });
  const required: Record<string, { args: BunFfiType[]; returns: BunFfiType }> = {};
  const optional: [string, SymbolDef][] = [];
  for (const [name, def] of Object.entries(symbols)) {
    if (def.optional === true) optional.push([name, def]);
    else required[name] = toBun(def);
  }
  // bun:ffi fails the whole dlopen on one missing symbol, so each optional symbol gets a handle
  // of its own (the loader reference-counts handles; the library is mapped once).
  const handles = [ffi.dlopen(path, required)];
  const out: Record<string, ((...args: unknown[]) => unknown) | null> = {
    ...handles[0].symbols,
  };
  for (const [name, def] of optional) {
    try {
      const h = ffi.dlopen(path, { [name]: toBun(def) });
      handles.push(h);
      out[name] = h.symbols[name];
    } catch {
      out[name] = null;
    }
  }
  return {
    path,
    symbols: out as unknown as ForeignSymbols<S>,
    close: () => {
      for (const h of handles) h.close();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Pointers and foreign memory

/** The address a {@linkcode Pointer} holds (`0n` for `null`). */
export function pointerToBigInt(p: Pointer | null): bigint {
  if (p === null) return 0n;
  if (ffiRuntime === "bun") return BigInt(p as unknown as number);
  return Deno.UnsafePointer.value(p as unknown as Deno.PointerObject);
}

/** A {@linkcode Pointer} for the address `address` (`null` for `0n`). */
export function pointerFromBigInt(address: bigint): Pointer | null {
  if (address === 0n) return null;
  if (ffiRuntime === "bun") return Number(address) as unknown as Pointer;
  if (ffiRuntime === "deno") return Deno.UnsafePointer.create(address) as unknown as Pointer;
  throw noFfi();
}

/**
 * The address of the first byte of `view` (its byteOffset included). The address is valid while
 * the view's buffer is alive; views over buffers made by `new ArrayBuffer(n)` or over foreign
 * memory never move.
 */
export function addressOf(view: ArrayBufferView): bigint {
  if (view.byteLength === 0) {
    throw new ValidationError(ErrorCode.InvalidArgument, "addressOf: the view is empty");
  }
  if (ffiRuntime === "bun") return BigInt(bun().ptr(view));
  if (ffiRuntime === "deno") {
    return Deno.UnsafePointer.value(Deno.UnsafePointer.of(view as Uint8Array<ArrayBuffer>));
  }
  throw noFfi();
}

/**
 * An `ArrayBuffer` over `byteLength` bytes of foreign memory at `address`, without copying.
 * The memory is not owned by the buffer: it must outlive every view, and freeing it (for example
 * `cuMemFreeHost`) while a view is still used is a use-after-free.
 */
export function viewForeign(address: Pointer | bigint, byteLength: number): ArrayBuffer {
  if (!Number.isInteger(byteLength) || byteLength < 0) {
    throw new ValidationError(
      ErrorCode.InvalidArgument,
      `viewForeign: byteLength must be a non-negative integer, got ${byteLength}`,
    );
  }
  const addr = typeof address === "bigint" ? address : pointerToBigInt(address);
  if (addr === 0n) {
    throw new ValidationError(ErrorCode.InvalidArgument, "viewForeign: null pointer");
  }
  // Neither runtime makes an empty view of foreign memory (Bun throws on length 0).
  if (byteLength === 0) return new ArrayBuffer(0);
  if (ffiRuntime === "bun") return bun().toArrayBuffer(Number(addr), 0, byteLength);
  if (ffiRuntime === "deno") {
    const p = Deno.UnsafePointer.create(addr);
    if (p === null) throw new ValidationError(ErrorCode.InvalidArgument, "null pointer");
    return Deno.UnsafePointerView.getArrayBuffer(p, byteLength);
  }
  throw noFfi();
}

/** Reads the NUL-terminated UTF-8 string at `address` (`""` for a null pointer). */
export function readCString(address: Pointer | bigint | null): string {
  const addr = address === null
    ? 0n
    : typeof address === "bigint"
    ? address
    : pointerToBigInt(address);
  if (addr === 0n) return "";
  if (ffiRuntime === "bun") return new (bun().CString)(Number(addr)).toString();
  if (ffiRuntime === "deno") {
    const p = Deno.UnsafePointer.create(addr);
    return p === null ? "" : Deno.UnsafePointerView.getCString(p);
  }
  throw noFfi();
}

const encoder = new TextEncoder();

/**
 * `s` as NUL-terminated UTF-8 bytes, for a `buffer` parameter of type `const char*`. The bytes
 * live in an `ArrayBuffer` of their own, so their address is stable.
 */
export function cString(s: string): Uint8Array<ArrayBuffer> {
  const bytes = encoder.encode(s);
  const out = new Uint8Array(new ArrayBuffer(bytes.length + 1));
  out.set(bytes);
  return out;
}

/** A `const char* const*` array: the pointer table and the bytes it points into. */
export interface CStringArray {
  /**
   * One address per string, for a `buffer` parameter of type `const char**`. Never empty (an
   * empty list gets one null entry), because neither runtime passes an empty view.
   */
  readonly pointers: BigUint64Array<ArrayBuffer>;
  /** The NUL-terminated strings; keep this alive as long as the pointers are used. */
  readonly bytes: Uint8Array<ArrayBuffer>;
}

/** Packs `strings` into one buffer of NUL-terminated strings and a table of their addresses. */
export function cStringArray(strings: readonly string[]): CStringArray {
  const encoded = strings.map((s) => encoder.encode(s));
  const total = encoded.reduce((n, b) => n + b.length + 1, 0);
  const bytes = new Uint8Array(new ArrayBuffer(Math.max(1, total)));
  const pointers = new BigUint64Array(new ArrayBuffer(Math.max(8, 8 * strings.length)));
  if (strings.length === 0) return { pointers, bytes };
  const base = addressOf(bytes);
  let at = 0;
  encoded.forEach((b, i) => {
    bytes.set(b, at);
    pointers[i] = base + BigInt(at);
    at += b.length + 1;
  });
  return { pointers, bytes };
}

// ---------------------------------------------------------------------------------------------
// Out-parameters: one element each, backed by an ArrayBuffer of their own so the address the
// callee writes through is stable.

/** An out-parameter for a 64-bit value or a pointer (`CUdeviceptr*`, `void**`, `size_t*`). */
export function outU64(): BigUint64Array<ArrayBuffer> {
  return new BigUint64Array(new ArrayBuffer(8));
}

/** An out-parameter for a signed 32-bit value (`int*`). */
export function outI32(): Int32Array<ArrayBuffer> {
  return new Int32Array(new ArrayBuffer(4));
}

/** An out-parameter for an unsigned 32-bit value (`unsigned int*`). */
export function outU32(): Uint32Array<ArrayBuffer> {
  return new Uint32Array(new ArrayBuffer(4));
}

/** An out-parameter for a `float*`. */
export function outF32(): Float32Array<ArrayBuffer> {
  return new Float32Array(new ArrayBuffer(4));
}

// ---------------------------------------------------------------------------------------------
// Callbacks: JS functions handed to C as function pointers

/** A C callback's signature; parameters are any parameter type except `buffer`. */
export interface CallbackDef {
  /** Parameter types, in order. */
  readonly parameters: readonly Exclude<FfiParamType, "buffer">[];
  /** Result type. */
  readonly result: FfiResultType;
}

/** The JS value a callback parameter of type `T` arrives as (64-bit integers as `bigint`). */
export type CallbackArgValue<T extends FfiParamType> = FfiResultValue<Exclude<T, "buffer">>;

/** The argument tuple a callback of definition `D` receives. */
export type CallbackArgs<P extends readonly FfiParamType[]> = {
  -readonly [K in keyof P]: P[K] extends FfiParamType ? CallbackArgValue<P[K]> : never;
};

/** A JS function callable from C through {@linkcode ForeignCallback.pointer}. */
export interface ForeignCallback {
  /** The C function pointer; valid until {@linkcode ForeignCallback.close}. */
  readonly pointer: Pointer;
  /** Frees the trampoline; C must not call the pointer afterwards. */
  close(): void;
}

const WIDE_INTEGER: ReadonlySet<FfiType> = new Set(["u64", "i64", "usize", "isize"]);

/**
 * Wraps `fn` as a C function pointer of signature `def`. The callback must be invoked on the JS
 * thread, synchronously inside a foreign call made from JS (neither runtime here is asked for a
 * thread-safe trampoline). Arguments are normalized across runtimes: 64-bit integers arrive as
 * `bigint`, pointers as {@linkcode Pointer} or `null`.
 *
 * Structs passed by value are not in the vocabulary; on x86-64 System V and AArch64 a 16-byte
 * struct of two integer or pointer members (such as `{ const char* data; size_t length; }`)
 * arrives in two consecutive integer registers, so declaring it as two parameters matches.
 */
export function foreignCallback<const D extends CallbackDef>(
  def: D,
  fn: (...args: CallbackArgs<D["parameters"]>) => FfiResultValue<D["result"]>,
): ForeignCallback {
  const wide = def.parameters.map((t) => WIDE_INTEGER.has(t));
  const isPointer = def.parameters.map((t) => t === "pointer");
  const normalize = (args: unknown[]): CallbackArgs<D["parameters"]> =>
    args.map((a, i) => {
      if (wide[i]) return typeof a === "bigint" ? a : BigInt(a as number);
      if (isPointer[i]) {
        if (a === null || a === undefined || a === 0 || a === 0n) return null;
        return ffiRuntime === "bun" && typeof a === "bigint" ? Number(a) : a;
      }
      return a;
    }) as CallbackArgs<D["parameters"]>;
  if (ffiRuntime === "deno") {
    const cb = new Deno.UnsafeCallback(
      { parameters: [...def.parameters], result: def.result } as Deno.UnsafeCallbackDefinition,
      (...args: unknown[]) => fn(...normalize(args)) as never,
    );
    return { pointer: cb.pointer as unknown as Pointer, close: () => cb.close() };
  }
  if (ffiRuntime === "bun") {
    const cb = new (bun().JSCallback)((...args: unknown[]) => fn(...normalize(args)), {
      args: def.parameters.map((t) => BUN_TYPE[t]),
      returns: BUN_TYPE[def.result],
    });
    if (cb.ptr === null) throw new BackendUnavailableError("ffi", "bun:ffi made no JSCallback");
    return { pointer: cb.ptr as unknown as Pointer, close: () => cb.close() };
  }
  throw noFfi();
}
