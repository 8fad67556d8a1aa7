/**
 * Type inference for the kernel DSL. Numeric literals carry no type of their own (Bun prints
 * `2.0` as `2`, so the spelling cannot be trusted): each literal, and each local initialised from
 * one, is a type variable with the set of scalar types it may still take. Using it narrows the
 * set — `acc += data[i]` makes `let acc = 0` an f32 — and whatever is left at the end of the
 * function takes its default (i32 for integer literals, f32 for fractional ones).
 * @module
 */

import type { DslType, ScalarType } from "./ir.ts";

/** Default order when a variable is still open at the end. */
const DEFAULT_ORDER: readonly ScalarType[] = ["i32", "f32", "u32", "f64", "i64", "u64", "bool"];

/** Types an integer-valued literal may become. */
export const INT_LITERAL: ReadonlySet<ScalarType> = new Set(["i32", "u32", "f32", "f64"]);
/** Types a fractional literal may become. */
export const FLOAT_LITERAL: ReadonlySet<ScalarType> = new Set(["f32", "f64"]);
/** Integer types usable as indices and in bit operations. */
export const INT32: ReadonlySet<ScalarType> = new Set(["i32", "u32"]);
/** Float types. */
export const FLOATS: ReadonlySet<ScalarType> = new Set(["f32", "f64"]);
/**
 * Types with arithmetic. 64-bit integers are `bigint` in JS (u64/i64 schema fields, `3n`
 * literals, `u64()`/`i64()` casts): CUDA computes with them, WGSL has none.
 */
export const NUMERIC: ReadonlySet<ScalarType> = new Set(["i32", "u32", "f32", "f64", "u64", "i64"]);
/** Integer types with bit operations. */
export const INTS: ReadonlySet<ScalarType> = new Set(["i32", "u32", "u64", "i64"]);
/** The 64-bit integer types (bigint in JS). */
export const WIDE: ReadonlySet<ScalarType> = new Set(["u64", "i64"]);
/** Types a bigint literal (`3n`) may become. */
export const WIDE_LITERAL: ReadonlySet<ScalarType> = WIDE;

/**
 * A scalar type not decided yet. It reads as an ordinary `{ kind: "scalar", scalar }` type, so IR
 * nodes can hold it while checking goes on; `check.ts` replaces it by plain objects at the end.
 */
export class TypeVar {
  /** Reads as a scalar type. */
  readonly kind = "scalar" as const;
  #allowed: Set<ScalarType>;
  #parent: TypeVar | undefined;

  /** A variable that may become any type in `allowed`. */
  constructor(allowed: ReadonlySet<ScalarType>) {
    this.#allowed = new Set(allowed);
  }

  /** The representative of this variable's equivalence class. */
  root(): TypeVar {
    return this.#parent === undefined ? this : this.#parent.root();
  }

  /** Types still possible. */
  get allowed(): ReadonlySet<ScalarType> {
    return this.root().#allowed;
  }

  /** The type it stands for now: the only one left, or the default among those left. */
  get scalar(): ScalarType {
    const allowed = this.allowed;
    for (const t of DEFAULT_ORDER) if (allowed.has(t)) return t;
    return "i32";
  }

  /** Narrows to `allowed ∩ set`; returns false (and changes nothing) when that is empty. */
  narrow(set: ReadonlySet<ScalarType>): boolean {
    const root = this.root();
    const next = new Set([...root.#allowed].filter((t) => set.has(t)));
    if (next.size === 0) return false;
    root.#allowed = next;
    return true;
  }

  /** Joins `other`'s class to this one; returns false when no common type remains. */
  join(other: TypeVar): boolean {
    const a = this.root();
    const b = other.root();
    if (a === b) return true;
    if (!a.narrow(b.#allowed)) return false;
    b.#parent = a;
    return true;
  }
}

/** The scalar type `t` names, when it is scalar (variables resolve to their current choice). */
export function scalarOf(t: DslType): ScalarType | undefined {
  return t.kind === "scalar" ? t.scalar : undefined;
}

/** A fixed scalar type. */
export function scalar(s: ScalarType): DslType {
  return { kind: "scalar", scalar: s };
}

/** A readable name of a type for error messages. */
export function describe(t: DslType): string {
  if (t instanceof TypeVar) {
    const allowed = [...t.allowed];
    if (allowed.length === 1) return allowed[0];
    if (allowed.every((s) => FLOATS.has(s))) return "a fractional literal";
    if (allowed.every((s) => WIDE.has(s))) return "a bigint literal";
    return "an integer literal";
  }
  switch (t.kind) {
    case "scalar":
      return t.scalar;
    case "array":
      return `${t.element}[] (${t.space} array)`;
    case "struct":
      return `struct ${t.struct.name}`;
    case "gridpos":
      return "GridPos";
    case "ctx":
      return "the kernel context";
    case "hlc":
      return "an HLC timestamp";
    case "void":
      return "void";
  }
}

/** Whether `t` is a scalar that may be one of `set` (a variable is narrowed to it). */
export function constrain(t: DslType, set: ReadonlySet<ScalarType>): boolean {
  if (t instanceof TypeVar) return t.narrow(set);
  return t.kind === "scalar" && set.has(t.scalar);
}

/**
 * Makes `a` and `b` the same type: returns it, or undefined when they cannot be (two different
 * fixed types, or variables with no type in common).
 */
export function unify(a: DslType, b: DslType): DslType | undefined {
  if (a instanceof TypeVar && b instanceof TypeVar) return a.join(b) ? a : undefined;
  if (a instanceof TypeVar) {
    return b.kind === "scalar" && a.narrow(new Set([b.scalar])) ? b : undefined;
  }
  if (b instanceof TypeVar) return unify(b, a);
  if (a.kind === "scalar" && b.kind === "scalar") return a.scalar === b.scalar ? a : undefined;
  return undefined;
}
