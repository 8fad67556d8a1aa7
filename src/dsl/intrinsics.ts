/**
 * The DSL's built-in functions and values, as real JavaScript: what a kernel calls when it runs as
 * JS, and what the checker recognises by name when it compiles the same function to CUDA C or
 * WGSL. Import them by these names (the checker matches identifiers, not bindings).
 *
 * The index-space values (`threadIdx`, `blockIdx`, `blockDim`, `gridDim`) are objects whose
 * fields the JS runner sets before calling the kernel for each thread; they read as i32.
 *
 * @example
 * ```ts
 * import { blockDim, blockIdx, bulkKernel, threadIdx } from "@ringkernel/core";
 * export const double = bulkKernel(
 *   { name: "double_it", params: ["f32[]", "i32"] },
 *   (data, n) => {
 *     const idx = blockIdx.x * blockDim.x + threadIdx.x;
 *     if (idx >= n) return;
 *     data[idx] = data[idx] * 2;
 *   },
 * );
 * ```
 * @module
 */

import { ErrorCode, InvalidStateError } from "../core/errors.ts";

/** An index-space triple. */
export interface Dim3 {
  /** x component. */
  x: number;
  /** y component. */
  y: number;
  /** z component. */
  z: number;
}

/** Index of the thread within its block (WGSL `local_invocation_id`). */
export const threadIdx: Dim3 = { x: 0, y: 0, z: 0 };
/** Index of the block within the grid (WGSL `workgroup_id`). */
export const blockIdx: Dim3 = { x: 0, y: 0, z: 0 };
/** Threads per block (the kernel's workgroup size). */
export const blockDim: Dim3 = { x: 1, y: 1, z: 1 };
/** Blocks in the grid (WGSL `num_workgroups`). */
export const gridDim: Dim3 = { x: 1, y: 1, z: 1 };

/** Converts to f32 (rounds to the nearest float). */
export function f32(x: number | bigint | boolean): number {
  return Math.fround(Number(x));
}

/** Converts to f64 (CUDA only; a DslError on WGSL). */
export function f64(x: number | bigint | boolean): number {
  return Number(x);
}

/** Converts to i32: floats truncate toward zero, integers wrap to 32 bits. */
export function i32(x: number | bigint | boolean): number {
  if (typeof x === "bigint") return Number(BigInt.asIntN(32, x));
  return Number(x) | 0;
}

/** Converts to u32: floats truncate toward zero, integers wrap to 32 bits. */
export function u32(x: number | bigint | boolean): number {
  if (typeof x === "bigint") return Number(BigInt.asUintN(32, x));
  return Number(x) >>> 0;
}

/** Converts to u64 (a bigint): numbers truncate toward zero; wraps to 64 bits. CUDA only. */
export function u64(x: number | bigint | boolean): bigint {
  return BigInt.asUintN(64, typeof x === "bigint" ? x : BigInt(Math.trunc(Number(x))));
}

/** Converts to i64 (a bigint): numbers truncate toward zero; wraps to 64 bits. CUDA only. */
export function i64(x: number | bigint | boolean): bigint {
  return BigInt.asIntN(64, typeof x === "bigint" ? x : BigInt(Math.trunc(Number(x))));
}

/** `1 / sqrt(x)`. */
export function rsqrt(x: number): number {
  return 1 / Math.sqrt(x);
}

/** `a * b + c` (fused on the GPU: one rounding). */
export function fma(a: number, b: number, c: number): number {
  return a * b + c;
}

/** `min(max(x, lo), hi)`. */
export function clamp(x: number, lo: number, hi: number): number {
  return Math.min(Math.max(x, lo), hi);
}

/** An i32 or u32 array an atomic can work on. */
export type AtomicArray = Int32Array | Uint32Array;

/** Atomically adds `v` to `a[i]`; returns the old value. */
export function atomicAdd(a: AtomicArray, i: number, v: number): number {
  const old = a[i];
  a[i] = old + v;
  return old;
}

/** Atomically subtracts `v` from `a[i]`; returns the old value. */
export function atomicSub(a: AtomicArray, i: number, v: number): number {
  const old = a[i];
  a[i] = old - v;
  return old;
}

/** Atomically sets `a[i]` to `min(a[i], v)`; returns the old value. */
export function atomicMin(a: AtomicArray, i: number, v: number): number {
  const old = a[i];
  a[i] = Math.min(old, a instanceof Uint32Array ? v >>> 0 : v | 0);
  return old;
}

/** Atomically sets `a[i]` to `max(a[i], v)`; returns the old value. */
export function atomicMax(a: AtomicArray, i: number, v: number): number {
  const old = a[i];
  a[i] = Math.max(old, a instanceof Uint32Array ? v >>> 0 : v | 0);
  return old;
}

/** Atomically stores `v` in `a[i]`; returns the old value. */
export function atomicExchange(a: AtomicArray, i: number, v: number): number {
  const old = a[i];
  a[i] = v;
  return old;
}

/**
 * Atomically stores `desired` in `a[i]` if it holds `expected`; returns the old value either way
 * (compare it with `expected` to learn whether the exchange happened). Use it as a statement or
 * as the initialiser of a `const`/`let`.
 */
export function atomicCompareExchange(
  a: AtomicArray,
  i: number,
  expected: number,
  desired: number,
): number {
  const old = a[i];
  if (old === (a instanceof Uint32Array ? expected >>> 0 : expected | 0)) a[i] = desired;
  return old;
}

/**
 * Waits until every thread of the block reached this point (CUDA `__syncthreads()`, WGSL
 * `workgroupBarrier()`). Call it as a statement at the top level of a kernel body, where every
 * thread reaches it. The JS runner suspends each thread here; called outside it, it throws.
 */
export function barrier(): void {
  throw new InvalidStateError(
    ErrorCode.InvalidState,
    "barrier() was called outside the DSL's JS runner: run the kernel with runJs()",
  );
}

/** Element kinds of a workgroup array. */
export type SharedKind = "f32" | "i32" | "u32";

/** The typed array `sharedArray` gives for each kind. */
export type SharedArrayOf<K extends SharedKind> = K extends "f32" ? Float32Array
  : K extends "i32" ? Int32Array
  : Uint32Array;

/** Hands out a block's workgroup arrays while the JS runner runs it. */
export interface SharedArrayProvider {
  /** The `ordinal`-th array of the current block (created on first use). */
  get(ordinal: number, kind: SharedKind, length: number): Float32Array | Int32Array | Uint32Array;
}

let sharedProvider: SharedArrayProvider | undefined;
let sharedOrdinal = 0;

/**
 * Installs the provider of workgroup arrays and resets the per-thread ordinal (JS runner only).
 * @internal
 */
export function enterThread(provider: SharedArrayProvider | undefined): void {
  sharedProvider = provider;
  sharedOrdinal = 0;
}

/**
 * Declares a workgroup (CUDA `__shared__`) array of `length` elements, shared by the threads of
 * a block. Write it as `const tile = sharedArray("f32", 256);` at the top level of a kernel body;
 * the length must be a literal.
 */
export function sharedArray<K extends SharedKind>(kind: K, length: number): SharedArrayOf<K> {
  if (sharedProvider === undefined) {
    throw new InvalidStateError(
      ErrorCode.InvalidState,
      "sharedArray() was called outside the DSL's JS runner: run the kernel with runJs()",
    );
  }
  return sharedProvider.get(sharedOrdinal++, kind, length) as SharedArrayOf<K>;
}

/** Cases of {@linkcode match}: integer labels and `_` for everything else. */
export type MatchCases<T> = { readonly [label: number]: T; readonly _: T };

/**
 * A switch expression: the case whose integer label equals `value`, else `_`.
 * `match(op, { 0: a + b, 1: a - b, _: 0 })`. Case values must be free of side effects (every
 * case is evaluated in JS and by WGSL's `select`).
 */
export function match<T>(value: number, cases: MatchCases<T>): T {
  return Object.hasOwn(cases, value) ? cases[value] : cases._;
}
