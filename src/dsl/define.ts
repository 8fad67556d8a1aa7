/**
 * Declaring DSL kernels: data-parallel kernels (`bulkKernel`), stencils over 2D/3D grids
 * (`stencilKernel`) and device functions they call (`deviceFunction`). Handlers of
 * `defineKernel` are the third kind of DSL input and need nothing extra.
 *
 * Deno and Bun hand back a function's source with the TypeScript types stripped, so a kernel's
 * parameter types come from its declared signature: `params` lists them in order, and the
 * function's parameters get the matching TS types (`"f32[]"` → `Float32Array`, `"i32"` →
 * `number`).
 *
 * @example
 * ```ts
 * import { blockDim, blockIdx, bulkKernel, deviceFunction, threadIdx } from "@ringkernel/core";
 * export const lerp = deviceFunction(
 *   { name: "lerp", params: ["f32", "f32", "f32"], returns: "f32" },
 *   (a, b, t) => a + (b - a) * t,
 * );
 * export const blend = bulkKernel(
 *   { name: "blend", params: ["f32[]", "f32[]", "f32", "i32"], uses: [lerp] },
 *   (a, b, t, n) => {
 *     const i = blockIdx.x * blockDim.x + threadIdx.x;
 *     if (i < n) a[i] = lerp(a[i], b[i], t);
 *   },
 * );
 * ```
 * @module
 */

import { ErrorCode, ValidationError } from "../core/errors.ts";

/** Scalar parameter types (`f64` works on CUDA and JS only). */
export type ScalarParamType = "f32" | "i32" | "u32" | "bool" | "f64";

/** Array parameter types: a typed array on JS, a pointer on CUDA, a storage buffer on WGSL. */
export type ArrayParamType = "f32[]" | "i32[]" | "u32[]" | "f64[]";

/** A kernel or device-function parameter type. */
export type ParamType = ScalarParamType | ArrayParamType;

/** What a device function returns. */
export type ReturnType = ScalarParamType | "void";

/** The JS value of a parameter type. */
export type ParamValue<T> = T extends "f32[]" ? Float32Array
  : T extends "i32[]" ? Int32Array
  : T extends "u32[]" ? Uint32Array
  : T extends "f64[]" ? Float64Array
  : T extends "bool" ? boolean
  : T extends "void" ? void
  : number;

/** The JS parameter tuple of a parameter type list. */
export type ParamValues<P extends readonly ParamType[]> = {
  -readonly [K in keyof P]: ParamValue<P[K]>;
};

/** Marks DSL definitions. */
export const DSL_BRAND: unique symbol = Symbol.for("ringkernel.dsl") as never;

/** What every device function carries besides being callable. */
export interface DeviceFunctionInfo {
  /** Brand marking this as a DSL device function. */
  readonly [DSL_BRAND]: "function";
  /** Function name in the emitted code. */
  readonly dslName: string;
  /** Parameter types. */
  readonly params: readonly ParamType[];
  /** Return type. */
  readonly returns: ReturnType;
  /** Device functions this one calls. */
  readonly uses: readonly AnyDeviceFunction[];
}

/** A device function of any signature (what `uses` lists). */
export type AnyDeviceFunction = ((...args: never[]) => unknown) & DeviceFunctionInfo;

/** A device function: callable from JS and from kernels that list it in `uses`. */
export type DeviceFunction<
  P extends readonly ParamType[] = readonly ParamType[],
  R extends ReturnType = ReturnType,
> = ((...args: ParamValues<P>) => ParamValue<R>) & DeviceFunctionInfo & {
  readonly params: P;
  readonly returns: R;
};

/** What {@linkcode deviceFunction} takes. */
export interface DeviceFunctionSpec<P extends readonly ParamType[], R extends ReturnType> {
  /** Name in the emitted code (a C and WGSL identifier). */
  name: string;
  /** Parameter types, in order. */
  params: P;
  /** Return type. */
  returns: R;
  /** Device functions this one calls. */
  uses?: readonly AnyDeviceFunction[];
}

/** Workgroup (block) shape: a number is `[n, 1, 1]`. */
export type WorkgroupSize = number | readonly [number, number?, number?];

/** What {@linkcode bulkKernel} takes. */
export interface BulkKernelSpec<P extends readonly ParamType[]> {
  /** Kernel name in the emitted code (a C and WGSL identifier). */
  name: string;
  /** Parameter types, in order. */
  params: P;
  /** Threads per block; default 256. */
  workgroupSize?: WorkgroupSize;
  /** Device functions the kernel calls. */
  uses?: readonly AnyDeviceFunction[];
}

/** A data-parallel kernel: one call per thread over a grid of blocks. */
export interface BulkKernel<P extends readonly ParamType[] = readonly ParamType[]> {
  /** Brand marking this as a DSL bulk kernel. */
  readonly [DSL_BRAND]: "bulk";
  /** Kernel name in the emitted code. */
  readonly name: string;
  /** Parameter types, in order. */
  readonly params: P;
  /** Threads per block as `[x, y, z]` (default `[256, 1, 1]`). */
  readonly workgroupSize: readonly [number, number, number];
  /** Device functions the kernel calls. */
  readonly uses: readonly AnyDeviceFunction[];
  /** The kernel function itself (what the JS path runs). A method, so kernels of any
   * signature are assignable to `BulkKernel` (method parameters are bivariant). */
  fn(...args: ParamValues<P>): void;
}

/**
 * The position of a stencil thread in its grid, with neighbour access. Buffers are row-major
 * and padded by `halo` cells on every side: a `width × height` grid with halo 1 is a
 * `(width + 2) × (height + 2)` buffer, and the kernel runs for the interior cells only.
 * North is y − 1, south y + 1, west x − 1, east x + 1, down z − 1, up z + 1.
 */
export class GridPos {
  /** Interior x of this cell (0-based). */
  x = 0;
  /** Interior y of this cell. */
  y = 0;
  /** Interior z of this cell (0 in 2D). */
  z = 0;
  /** Index of this cell in a padded buffer. */
  idx = 0;
  /** Interior width of the grid. */
  readonly width: number;
  /** Interior height of the grid. */
  readonly height: number;
  /** Interior depth of the grid (1 in 2D). */
  readonly depth: number;
  /** Halo width. */
  readonly halo: number;
  readonly #row: number;
  readonly #plane: number;
  readonly #threeD: boolean;

  /**
   * Creates a position cursor for a `width × height × depth` grid padded by `halo`. `dims` says
   * whether the buffer has halo planes (3D, even when `depth` is 1); default: 3D when depth > 1.
   */
  constructor(width: number, height: number, depth: number, halo: number, dims?: 2 | 3) {
    this.#threeD = dims === undefined ? depth > 1 : dims === 3;
    this.width = width;
    this.height = height;
    this.depth = depth;
    this.halo = halo;
    this.#row = width + 2 * halo;
    this.#plane = this.#row * (height + 2 * halo);
  }

  /** Moves to interior cell (x, y, z) (JS runner). */
  moveTo(x: number, y: number, z: number): void {
    const h = this.halo;
    this.x = x;
    this.y = y;
    this.z = z;
    this.idx = (this.#threeD || z > 0 ? (z + h) * this.#plane : 0) + (y + h) * this.#row + x + h;
  }

  /** `buf` at (x + dx, y + dy, z + dz); offsets are literals within the halo. */
  at<T extends ArrayLike<number>>(buf: T, dx: number, dy: number, dz = 0): number {
    return buf[this.idx + dz * this.#plane + dy * this.#row + dx];
  }

  /** `buf` at y − 1. */
  north(buf: ArrayLike<number>): number {
    return buf[this.idx - this.#row];
  }

  /** `buf` at y + 1. */
  south(buf: ArrayLike<number>): number {
    return buf[this.idx + this.#row];
  }

  /** `buf` at x + 1. */
  east(buf: ArrayLike<number>): number {
    return buf[this.idx + 1];
  }

  /** `buf` at x − 1. */
  west(buf: ArrayLike<number>): number {
    return buf[this.idx - 1];
  }

  /** `buf` at z + 1 (3D). */
  up(buf: ArrayLike<number>): number {
    return buf[this.idx + this.#plane];
  }

  /** `buf` at z − 1 (3D). */
  down(buf: ArrayLike<number>): number {
    return buf[this.idx - this.#plane];
  }
}

/** What {@linkcode stencilKernel} takes. */
export interface StencilKernelSpec<P extends readonly ParamType[]> {
  /** Kernel name in the emitted code. */
  name: string;
  /** Grid dimensionality. */
  grid: "2d" | "3d";
  /** Tile (= block) shape: `[x, y]` in 2D, `[x, y, z]` in 3D. */
  tile: readonly [number, number] | readonly [number, number, number];
  /** Halo width in cells; default 1. Neighbour offsets must stay within it. */
  halo?: number;
  /** Parameter types after `pos`, in order. */
  params: P;
  /** Device functions the kernel calls. */
  uses?: readonly AnyDeviceFunction[];
}

/** A stencil kernel: one call per interior grid cell, with a {@linkcode GridPos}. */
export interface StencilKernel<P extends readonly ParamType[] = readonly ParamType[]> {
  /** Brand marking this as a DSL stencil kernel. */
  readonly [DSL_BRAND]: "stencil";
  /** Kernel name in the emitted code. */
  readonly name: string;
  /** Grid dimensionality. */
  readonly grid: "2d" | "3d";
  /** Tile (= block) shape in cells as `[x, y, z]` (z is 1 for 2D grids). */
  readonly tile: readonly [number, number, number];
  /** Halo width in cells on each side (1..8). */
  readonly halo: number;
  /** Parameter types after `pos`, in order. */
  readonly params: P;
  /** Threads per block as `[x, y, z]`; the same as `tile`. */
  readonly workgroupSize: readonly [number, number, number];
  /** Device functions the kernel calls. */
  readonly uses: readonly AnyDeviceFunction[];
  /** The kernel function itself (a method, for the same reason as `BulkKernel.fn`). */
  fn(pos: GridPos, ...args: ParamValues<P>): void;
}

/** Any DSL definition made here. */
export type DslDefinition = BulkKernel | StencilKernel | AnyDeviceFunction;

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;
const PARAM_TYPES: ReadonlySet<string> = new Set([
  "f32",
  "i32",
  "u32",
  "bool",
  "f64",
  "f32[]",
  "i32[]",
  "u32[]",
  "f64[]",
]);

function invalid(what: string, message: string): never {
  throw new ValidationError(ErrorCode.InvalidArgument, `${what}: ${message}`);
}

function checkName(name: unknown, what: string): asserts name is string {
  if (typeof name !== "string" || !IDENT.test(name) || name.startsWith("rk_")) {
    invalid(what, `name must be an identifier not starting with rk_, got ${JSON.stringify(name)}`);
  }
}

function checkParams(params: unknown, what: string): void {
  if (!Array.isArray(params)) invalid(what, "params must be an array of type names");
  params.forEach((p, i) => {
    if (!PARAM_TYPES.has(p)) {
      invalid(
        what,
        `params[${i}] is ${JSON.stringify(p)}; use one of ${[...PARAM_TYPES].join(", ")}`,
      );
    }
  });
}

function checkUses(uses: unknown, what: string): readonly AnyDeviceFunction[] {
  if (uses === undefined) return [];
  if (!Array.isArray(uses) || uses.some((u) => !isDslDefinition(u, "function"))) {
    invalid(what, "uses must list device functions made by deviceFunction()");
  }
  return Object.freeze([...uses]);
}

function checkFn(fn: unknown, what: string): void {
  if (typeof fn !== "function") invalid(what, "the kernel body must be a function");
}

function dims(size: WorkgroupSize | undefined, what: string): readonly [number, number, number] {
  const raw = size === undefined ? [256] : typeof size === "number" ? [size] : size;
  const d: [number, number, number] = [raw[0] ?? 1, raw[1] ?? 1, raw[2] ?? 1];
  if (d.some((n) => !Number.isInteger(n) || n < 1) || d[0] * d[1] * d[2] > 1024) {
    invalid(what, `workgroup size must be positive integers with a product ≤ 1024, got [${d}]`);
  }
  return Object.freeze(d);
}

/** True for a DSL definition of the given kind. */
export function isDslDefinition(value: unknown, kind?: "bulk" | "stencil" | "function"): boolean {
  if ((typeof value !== "object" && typeof value !== "function") || value === null) return false;
  const brand = (value as { [DSL_BRAND]?: unknown })[DSL_BRAND];
  return kind === undefined ? brand !== undefined : brand === kind;
}

/** Declares a device function: a plain JS function that kernels may also call on the GPU. */
export function deviceFunction<const P extends readonly ParamType[], const R extends ReturnType>(
  spec: DeviceFunctionSpec<P, R>,
  fn: (...args: ParamValues<P>) => ParamValue<R>,
): DeviceFunction<P, R> {
  const what = `device function ${String(spec?.name)}`;
  checkName(spec?.name, what);
  checkParams(spec.params, what);
  if (spec.returns !== "void" && !PARAM_TYPES.has(spec.returns)) {
    invalid(what, `returns must be a scalar type or "void", got ${JSON.stringify(spec.returns)}`);
  }
  if (String(spec.returns).endsWith("[]")) invalid(what, "a device function returns a scalar");
  checkFn(fn, what);
  const uses = checkUses(spec.uses, what);
  const wrapped = ((...args: ParamValues<P>) => fn(...args)) as DeviceFunction<P, R>;
  Object.defineProperties(wrapped, {
    [DSL_BRAND]: { value: "function" },
    dslName: { value: spec.name },
    params: { value: Object.freeze([...spec.params]) },
    returns: { value: spec.returns },
    uses: { value: uses },
    source: { value: fn },
  });
  return wrapped;
}

/** The user's function behind a device function (what the checker parses). */
export function deviceFunctionSource(f: AnyDeviceFunction): (...args: never[]) => unknown {
  return (f as unknown as { source: (...args: never[]) => unknown }).source;
}

/** Declares a data-parallel kernel; `fn` runs once per thread. */
export function bulkKernel<const P extends readonly ParamType[]>(
  spec: BulkKernelSpec<P>,
  fn: (...args: ParamValues<P>) => void,
): BulkKernel<P> {
  const what = `kernel ${String(spec?.name)}`;
  checkName(spec?.name, what);
  checkParams(spec.params, what);
  checkFn(fn, what);
  return Object.freeze({
    [DSL_BRAND]: "bulk" as const,
    name: spec.name,
    params: Object.freeze([...spec.params]) as unknown as P,
    workgroupSize: dims(spec.workgroupSize, what),
    uses: checkUses(spec.uses, what),
    fn,
  });
}

/** Declares a stencil kernel; `fn` runs once per interior cell with its {@linkcode GridPos}. */
export function stencilKernel<const P extends readonly ParamType[]>(
  spec: StencilKernelSpec<P>,
  fn: (pos: GridPos, ...args: ParamValues<P>) => void,
): StencilKernel<P> {
  const what = `stencil ${String(spec?.name)}`;
  checkName(spec?.name, what);
  checkParams(spec.params, what);
  checkFn(fn, what);
  if (spec.grid !== "2d" && spec.grid !== "3d") invalid(what, `grid must be "2d" or "3d"`);
  const want = spec.grid === "2d" ? 2 : 3;
  if (!Array.isArray(spec.tile) || spec.tile.length !== want) {
    invalid(what, `tile must have ${want} sizes for a ${spec.grid} grid`);
  }
  const tile = dims(spec.tile as WorkgroupSize, what);
  const halo = spec.halo ?? 1;
  if (!Number.isInteger(halo) || halo < 1 || halo > 8) invalid(what, "halo must be 1..8");
  if (spec.params.every((p) => !p.endsWith("[]"))) {
    invalid(what, "a stencil needs an array parameter");
  }
  return Object.freeze({
    [DSL_BRAND]: "stencil" as const,
    name: spec.name,
    grid: spec.grid,
    tile,
    halo,
    params: Object.freeze([...spec.params]) as unknown as P,
    workgroupSize: tile,
    uses: checkUses(spec.uses, what),
    fn,
  });
}
