/**
 * The kernel DSL's typed intermediate representation: what the checker (`check.ts`) produces from
 * acorn's AST and what the emitters (`cuda.ts`, `wgsl.ts`) read. Every expression carries its
 * resolved type, every node its source position, so an emitter never infers anything and can
 * still point a target-specific error ("f64 is not in WGSL") at the user's line.
 *
 * Locals are renamed to unique names by the checker (`x`, `x_1`, ...), so emitters can declare
 * them at their first use without worrying about shadowing rules that differ between C and WGSL.
 * @module
 */

import type { MessageSchema, ScalarKind, StructType } from "../core/schema.ts";

/** Scalar value types of the DSL. Sub-word schema fields (u8, i16, ...) read as i32/u32. */
export type ScalarType = "bool" | "i32" | "u32" | "f32" | "f64" | "u64" | "i64";

/** Where an array lives. */
export type ArraySpace =
  /** A kernel parameter: a typed array / storage buffer / device pointer. */
  | "global"
  /** A workgroup (CUDA: `__shared__`) array declared with `sharedArray`. */
  | "shared"
  /** An array field of a message or state struct (fixed length). */
  | "field";

/** A DSL type. */
export type DslType =
  | { readonly kind: "scalar"; readonly scalar: ScalarType }
  | {
    readonly kind: "array";
    readonly element: ScalarType;
    /** The element's storage kind (differs from `element` for sub-word schema arrays). */
    readonly storage: ScalarKind;
    readonly space: ArraySpace;
    /** Fixed length for shared and field arrays; undefined for global arrays. */
    readonly length: number | undefined;
  }
  | { readonly kind: "struct"; readonly struct: StructType; readonly role: StructRole }
  | { readonly kind: "void" }
  | { readonly kind: "gridpos"; readonly dims: 2 | 3 }
  | { readonly kind: "ctx" }
  /** What `ctx.now()` returns: an HLC word (u64: physical ms << 16 | logical). */
  | { readonly kind: "hlc" };

/** Which struct a struct-typed value is, so emitters know where it lives. */
export type StructRole = "message" | "state" | "nested";

/** A source position (1-based line and column within the function's source text). */
export interface Loc {
  /** Line number (1-based). */
  readonly line: number;
  /** Column number (1-based, in UTF-16 code units). */
  readonly column: number;
  /** Character offset where the node starts in the source text, for snippets. */
  readonly start: number;
  /** Character offset just past the node's end in the source text (exclusive). */
  readonly end: number;
}

/** Binary operators after normalisation (`===` → `==`, `!==` → `!=`). */
export type BinaryOp =
  | "+"
  | "-"
  | "*"
  | "/"
  | "%"
  | "<<"
  | ">>"
  | ">>>"
  | "&"
  | "|"
  | "^"
  | "=="
  | "!="
  | "<"
  | "<="
  | ">"
  | ">="
  | "&&"
  | "||";

/** Unary operators. */
export type UnaryOp = "-" | "!" | "~";

/** Compound assignment operators (`=` plus the arithmetic/bitwise ones). */
export type AssignOp =
  | "="
  | "+="
  | "-="
  | "*="
  | "/="
  | "%="
  | "<<="
  | ">>="
  | ">>>="
  | "&="
  | "|="
  | "^=";

/** Index-space intrinsics: CUDA names; each has `.x`, `.y`, `.z`; values are i32. */
export type IndexIntrinsic = "threadIdx" | "blockIdx" | "blockDim" | "gridDim";

/** Math functions (`Math.sqrt` ... and the DSL's `rsqrt`, `fma`, `clamp`). */
export type MathFn =
  | "sqrt"
  | "rsqrt"
  | "sin"
  | "cos"
  | "exp"
  | "log"
  | "pow"
  | "min"
  | "max"
  | "abs"
  | "floor"
  | "ceil"
  | "fma"
  | "clamp";

/** 32-bit atomic read-modify-write operations on i32/u32 arrays; each returns the old value. */
export type AtomicOp = "add" | "sub" | "min" | "max" | "exchange" | "compareExchange";

/** Neighbour directions of `GridPos`. */
export type GridDirection = "north" | "south" | "east" | "west" | "up" | "down";

/** A typed expression. */
export type Expr =
  & { readonly type: DslType; readonly loc: Loc }
  & (
    /** 64-bit integer literals (`3n`) are bigints. */
    | { readonly op: "literal"; readonly value: number | boolean | bigint }
    /** A local variable or a function parameter (by its unique name). */
    | { readonly op: "local"; readonly name: string }
    | {
      readonly op: "binary";
      readonly operator: BinaryOp;
      readonly left: Expr;
      readonly right: Expr;
    }
    | { readonly op: "unary"; readonly operator: UnaryOp; readonly operand: Expr }
    /** `f32(x)`, `i32(x)`, `u32(x)`, `f64(x)`: value conversion (float → int truncates). */
    | { readonly op: "cast"; readonly to: ScalarType; readonly value: Expr }
    /** `arr[i]`: a global, shared or field array element. */
    | { readonly op: "index"; readonly array: Expr; readonly index: Expr }
    /**
     * `base.name` on a message, state or nested struct. `storage` is the field's schema kind
     * (`u8` for a field that reads as u32), `offset` its byte offset within `base`.
     */
    | {
      readonly op: "field";
      readonly base: Expr;
      readonly name: string;
      readonly storage: ScalarKind | "array" | "struct";
      readonly offset: number;
    }
    /** A call of a device function declared in `uses`. */
    | { readonly op: "call"; readonly callee: string; readonly args: readonly Expr[] }
    | {
      readonly op: "index_intrinsic";
      readonly which: IndexIntrinsic;
      readonly axis: "x" | "y" | "z";
    }
    | { readonly op: "math"; readonly fn: MathFn; readonly args: readonly Expr[] }
    /**
     * An atomic on `array[index]` (array is a global or shared i32/u32 array). `args` is
     * `[value]`, or `[expected, desired]` for compareExchange.
     */
    | {
      readonly op: "atomic";
      readonly atomic: AtomicOp;
      readonly array: Expr;
      readonly index: Expr;
      readonly args: readonly Expr[];
    }
    /** `cond ? a : b` (both sides are side-effect free, checked; WGSL emits `select`). */
    | { readonly op: "select"; readonly cond: Expr; readonly then: Expr; readonly else: Expr }
    /**
     * `match(value, { 1: a, 2: b, _: c })`: the first case whose label equals `value`, else
     * `fallback`. Case expressions are side-effect free.
     */
    | {
      readonly op: "match";
      readonly value: Expr;
      readonly cases: readonly { readonly label: number; readonly expr: Expr }[];
      readonly fallback: Expr;
    }
    /** `pos.idx`, `pos.x`, `pos.y`, `pos.z`, `pos.width`, `pos.height`, `pos.depth` (i32). */
    | {
      readonly op: "gridpos";
      readonly member: "idx" | "x" | "y" | "z" | "width" | "height" | "depth";
    }
    /**
     * `pos.north(buf)` ... and `pos.at(buf, dx, dy[, dz])`: the element of the global array
     * `buf` at the neighbour's index. Offsets are compile-time integers within the halo.
     */
    | {
      readonly op: "neighbor";
      readonly array: Expr;
      readonly dx: number;
      readonly dy: number;
      readonly dz: number;
    }
    /** `ctx.now()`: ticks the kernel's HLC and yields the word (type `hlc`). */
    | { readonly op: "now" }
    /** `ctx.now().physical` (u64 ms), `.logical` (u32) or `.nodeId` (u32). */
    | {
      readonly op: "hlc_part";
      readonly value: Expr;
      readonly part: "physical" | "logical" | "nodeId";
    }
  );

/** An assignable expression. */
export type LValue = Expr & { readonly op: "local" | "index" | "field" };

/** A statement. */
export type Stmt =
  & { readonly loc: Loc }
  & (
    /** `let`/`const` (and `for` initialisers). `init` is undefined only for `let x;`. */
    | {
      readonly kind: "let";
      readonly name: string;
      readonly type: DslType;
      readonly mutable: boolean;
      readonly init: Expr | undefined;
    }
    /** A workgroup array declared at the top of a kernel: `const tile = sharedArray("f32", 256)`. */
    | {
      readonly kind: "shared";
      readonly name: string;
      readonly element: ScalarType;
      readonly length: number;
    }
    | {
      readonly kind: "assign";
      readonly target: LValue;
      readonly operator: AssignOp;
      readonly value: Expr;
    }
    /** `i++`, `i--` as a statement (checker turns them into assign `+= 1` / `-= 1`). */
    | { readonly kind: "expr"; readonly expr: Expr }
    | {
      readonly kind: "if";
      readonly cond: Expr;
      readonly then: readonly Stmt[];
      readonly else: readonly Stmt[];
    }
    | {
      readonly kind: "for";
      readonly init: readonly Stmt[];
      readonly cond: Expr | undefined;
      readonly update: readonly Stmt[];
      readonly body: readonly Stmt[];
    }
    | { readonly kind: "while"; readonly cond: Expr; readonly body: readonly Stmt[] }
    | { readonly kind: "break" }
    | { readonly kind: "continue" }
    /**
     * `switch`: labels grouped per case (`case 1: case 2: ...`); every non-empty case body
     * ends in break, return or continue (no fall-through, which WGSL lacks). `break`s that end a
     * case are removed from `body` by the checker.
     */
    | {
      readonly kind: "switch";
      readonly value: Expr;
      readonly cases: readonly {
        readonly labels: readonly number[];
        readonly body: readonly Stmt[];
      }[];
      readonly fallback: readonly Stmt[] | undefined;
    }
    /** `return` from a kernel or device function (value for non-void device functions). */
    | { readonly kind: "return"; readonly value: Expr | undefined }
    /** A handler's `return { ...fields }`: writes the reply and ends the handler. */
    | { readonly kind: "reply"; readonly fields: readonly FieldInit[] }
    /** `barrier()`: CUDA `__syncthreads()`, WGSL `workgroupBarrier()`. */
    | { readonly kind: "barrier" }
    /**
     * `ctx.send("dest", Schema.of({ ... }))`: a K2K send to the handler's `target`-th send
     * target (index into `HandlerInfo.sendTargets`).
     */
    | { readonly kind: "send"; readonly target: number; readonly fields: readonly FieldInit[] }
  );

/** One field of a reply or sent message (nested structs/arrays as nested inits or values). */
export interface FieldInit {
  /** Field name in the schema. */
  readonly name: string;
  /** Schema kind of the field (`u8`, `f32`, ...) or "array"/"struct". */
  readonly storage: ScalarKind | "array" | "struct";
  /** Byte offset within the message. */
  readonly offset: number;
  /** The value, typed as the field reads (sub-word fields as i32/u32). */
  readonly value: Expr;
}

/** A function parameter. */
export interface IrParam {
  /** Unique name (as in the source unless it collides with a target keyword). */
  readonly name: string;
  /** The parameter's resolved DSL type. */
  readonly type: DslType;
  /** Arrays: whether the function writes through it (decides `const` / `read` access). */
  readonly written: boolean;
  /** Arrays: whether an atomic touches it (WGSL then declares `array<atomic<T>>`). */
  readonly atomic: boolean;
}

/** A device function (`deviceFunction(...)`), emitted before the kernels that call it. */
export interface IrFunction {
  /** Function name in the emitted code. */
  readonly name: string;
  /** Parameters, in order. */
  readonly params: readonly IrParam[];
  /** Return type (`void` when it returns nothing). */
  readonly returns: DslType;
  /** Checked statements of the function body. */
  readonly body: readonly Stmt[];
  /** The function's source text (what `loc` positions in its body refer to). */
  readonly source: string;
}

/** Stencil configuration. */
export interface StencilInfo {
  /** Grid dimensionality (2 or 3). */
  readonly dims: 2 | 3;
  /** Halo width in cells on each side (buffers are padded by it). */
  readonly halo: number;
  /** Tile = workgroup shape. */
  readonly tile: readonly [number, number, number];
}

/** What a handler kernel needs beyond its body. */
export interface HandlerInfo {
  /** Schema of the message the handler receives. */
  readonly input: MessageSchema;
  /** Schema of the handler's reply; undefined when it declares none. */
  readonly output: MessageSchema | undefined;
  /** Layout of the kernel's persistent state struct; undefined when it has no state. */
  readonly state: StructType | undefined;
  /** Destinations of `ctx.send`, in first-use order, with the schema each takes. */
  readonly sendTargets: readonly { readonly dest: string; readonly schema: MessageSchema }[];
  /** Whether the body calls `ctx.now()`. */
  readonly usesNow: boolean;
}

/** A checked kernel: the unit every emitter takes. */
export interface IrKernel {
  /** Which kind of DSL input this kernel came from. */
  readonly kind: "bulk" | "stencil" | "handler";
  /** The kernel's name (a C/WGSL identifier). */
  readonly name: string;
  /**
   * Parameters in order. Handlers have `msg` (message struct), `state` (state struct, when
   * declared) and `ctx`; stencils have `pos` first.
   */
  readonly params: readonly IrParam[];
  /** Checked statements of the kernel body. */
  readonly body: readonly Stmt[];
  /** Device functions reachable from the body, callees before callers. */
  readonly functions: readonly IrFunction[];
  /** Workgroup (block) size. */
  readonly workgroupSize: readonly [number, number, number];
  /** Whether the kernel synchronises its workgroup with `barrier()`. */
  readonly usesBarrier: boolean;
  /** Whether the body (or a device function it calls) uses atomics. */
  readonly usesAtomics: boolean;
  /** Stencil configuration; undefined unless `kind` is "stencil". */
  readonly stencil: StencilInfo | undefined;
  /** Handler configuration; undefined unless `kind` is "handler". */
  readonly handler: HandlerInfo | undefined;
  /** The function source the checker read (what `loc` positions refer to). */
  readonly source: string;
}
