/**
 * The CUDA C emitter of the kernel DSL: turns a checked {@linkcode IrKernel} into one
 * self-contained translation unit for NVRTC (or `nvcc -x cu`), following the CUDA ABI of the DSL
 * contract:
 *
 * - bulk: `extern "C" __global__ void __launch_bounds__(X*Y*Z) <name>(<params in order>)`;
 *   arrays are `T*` (`const T* __restrict__` when never written), bool scalars travel as
 *   `unsigned int` 0/1.
 * - stencil: the same plus trailing `int rk_width, int rk_height, int rk_depth`; each thread
 *   handles one interior cell of a buffer padded by the halo.
 * - handler: a `__device__` function for the body (`rk_<name>_handle(const In& msg, State& state,
 *   rk_<name>_ctx& ctx)`) that a persistent loop can reuse with its own ctx, plus the batch entry
 *   `<name>_batch(msgs, state, replies, replied, outbox, control)` launched 1×1.
 *
 * The emitter trusts the checker (every expression typed, operands of equal types, locals
 * unique); where a node cannot be expressed it throws a {@linkcode DslError} pointing at the
 * user's source. Numeric semantics follow the JS runner where C would otherwise be undefined:
 * float → int conversions wrap like `x | 0`, shift counts are taken modulo the width like JS,
 * float `%` is `fmodf`, workgroup arrays start zeroed like WGSL's and the JS runner's.
 *
 * @example
 * ```ts
 * import { emitCuda } from "./cuda.ts";
 * import { checkKernel } from "./check.ts";
 * const src = emitCuda(checkKernel(myKernel));
 * // src.code → NVRTC, then launch src.entry with src.params packed in order
 * ```
 * @module
 */

import { DslError, ErrorCode } from "../core/errors.ts";
import type { ScalarKind, StructType } from "../core/schema.ts";
import { C_PRELUDE, cStructs } from "../core/schema_codegen.ts";
import { locate } from "./parse.ts";
import type {
  BinaryOp,
  DslType,
  Expr,
  FieldInit,
  IrFunction,
  IrKernel,
  IrParam,
  Loc,
  LValue,
  ScalarType,
  Stmt,
} from "./ir.ts";

// ---------------------------------------------------------------------------------------------
// Public shape

/** The pieces of {@linkcode CudaSource.code}, in the order they appear in it. */
export interface CudaParts {
  /** `C_PRELUDE` plus the small `rk_*` device helpers the kernel needs (include-guarded). */
  readonly prelude: string;
  /** The message / state / send-target structs (handlers only; "" otherwise). */
  readonly structs: string;
  /** The handler's context struct `rk_<name>_ctx` (handlers only; "" otherwise). */
  readonly ctx: string;
  /** The `__device__` functions the kernel calls, callees first. */
  readonly functions: string;
  /** The handler body as `__device__ void rk_<name>_handle(...)` (handlers only; "" otherwise). */
  readonly handlerFunction: string;
  /** The `extern "C" __global__` entry. */
  readonly harness: string;
}

/** One parameter of the entry point, in ABI order: what a launcher packs for `cuLaunchKernel`. */
export type CudaParam =
  /** A user array: a device pointer (8 bytes). */
  | {
    readonly kind: "array";
    /** The C parameter name. */
    readonly name: string;
    /** Index of the argument among the user's arguments (stencils: not counting `pos`). */
    readonly arg: number;
    readonly element: ScalarType;
    /** Declared C type, e.g. `const float* __restrict__`. */
    readonly cType: string;
    readonly written: boolean;
    readonly bytes: 8;
  }
  /** A user scalar by value; `bool` travels as `unsigned int` 0/1. */
  | {
    readonly kind: "scalar";
    readonly name: string;
    readonly arg: number;
    readonly scalar: ScalarType;
    readonly cType: string;
    readonly bytes: 4 | 8;
  }
  /** The stencil grid's interior size (`rk_width`, `rk_height`, `rk_depth`; depth 1 in 2D). */
  | {
    readonly kind: "grid";
    readonly name: string;
    readonly axis: "width" | "height" | "depth";
    readonly cType: "int";
    readonly bytes: 4;
  }
  /** A buffer of the handler batch entry (device pointer). */
  | {
    readonly kind: "handler";
    readonly name: string;
    readonly role: "msgs" | "state" | "replies" | "replied" | "outbox" | "control";
    readonly cType: string;
    readonly bytes: 8;
  };

/** The handler-specific part of the ABI. */
export interface CudaHandlerAbi {
  /** Name of the `__device__` handler function. */
  readonly function: string;
  /** Name of its context struct. */
  readonly ctxStruct: string;
  /** Bytes per input message (`msgs` stride). */
  readonly inputSize: number;
  /** Bytes of the state struct (0 when none: the `state` parameter is then unused). */
  readonly stateSize: number;
  /** Bytes per reply (0 when none: the `replies` parameter is then unused). */
  readonly outputSize: number;
  /** Outbox record stride in u32 words: 2 + ceil(largest send payload / 4). */
  readonly outboxStride: number;
  /** Send targets by record word 0, with the payload each record carries. */
  readonly sendTargets: readonly {
    readonly dest: string;
    readonly typeId: number;
    /** The C struct of the payload. */
    readonly struct: string;
    readonly payloadBytes: number;
  }[];
  /** Whether the handler ticks the HLC (control words 3 and 4). */
  readonly usesNow: boolean;
}

/** What {@linkcode emitCuda} returns. */
export interface CudaSource {
  /** The complete translation unit (no includes needed under NVRTC). */
  readonly code: string;
  /** The `extern "C"` entry: the kernel name, or `<name>_batch` for handlers. */
  readonly entry: string;
  /** Which kind of DSL input it came from. */
  readonly kind: IrKernel["kind"];
  /** The code split into reusable pieces (`code` is their concatenation). */
  readonly parts: CudaParts;
  /** Entry parameters in ABI order. */
  readonly params: readonly CudaParam[];
  /** Block shape to launch with (`[1, 1, 1]` for handlers). */
  readonly workgroupSize: readonly [number, number, number];
  /** Handler layout details; undefined for bulk and stencil kernels. */
  readonly handler: CudaHandlerAbi | undefined;
}

// ---------------------------------------------------------------------------------------------
// Types and literals

const C_SCALAR: Readonly<Record<ScalarType, string>> = {
  bool: "bool",
  i32: "int",
  u32: "unsigned int",
  f32: "float",
  f64: "double",
  u64: "unsigned long long",
  i64: "long long",
};

/** C storage types of the sub-word schema kinds, for narrowing writes. */
const NARROW: Readonly<Partial<Record<ScalarKind, string>>> = {
  u8: "uint8_t",
  i8: "int8_t",
  u16: "uint16_t",
  i16: "int16_t",
  bool: "uint8_t",
};

function scalarOf(t: DslType): ScalarType | undefined {
  return t.kind === "scalar" ? t.scalar : undefined;
}

function isFloat(t: ScalarType | undefined): boolean {
  return t === "f32" || t === "f64";
}

/** The C type of a value of type `t` (scalars, HLC words, structs). */
function cValueType(t: DslType): string | undefined {
  switch (t.kind) {
    case "scalar":
      return C_SCALAR[t.scalar];
    case "hlc":
      return "unsigned long long";
    case "struct":
      return t.struct.name;
    default:
      return undefined;
  }
}

function floatText(digits: string): string {
  return /[.eE]/.test(digits) ? digits : `${digits}.0`;
}

/** Shortest decimal that reads back as the same f32 (at most 9 significant digits). */
function f32Literal(value: number): string {
  const f = Math.fround(value);
  // NVRTC has no math_constants.h, so non-finite values are spelled by their bits.
  if (Number.isNaN(f)) return "__int_as_float(0x7fc00000)";
  if (f === Infinity) return "__int_as_float(0x7f800000)";
  if (f === -Infinity) return "(-__int_as_float(0x7f800000))";
  if (Object.is(f, -0)) return "(-0.0f)";
  let text = f.toPrecision(9);
  for (let p = 1; p <= 9; p++) {
    const s = f.toPrecision(p);
    if (Math.fround(Number(s)) === f) {
      // toPrecision writes 100 as "1e+2"; JS's own shortest form is plainer.
      text = String(Number(s));
      break;
    }
  }
  const lit = `${floatText(text)}f`;
  return f < 0 ? `(${lit})` : lit;
}

function f64Literal(value: number): string {
  if (Number.isNaN(value)) return "__longlong_as_double(0x7ff8000000000000ll)";
  if (value === Infinity) return "__longlong_as_double(0x7ff0000000000000ll)";
  if (value === -Infinity) return "(-__longlong_as_double(0x7ff0000000000000ll))";
  if (Object.is(value, -0)) return "(-0.0)";
  const lit = floatText(String(value));
  return value < 0 ? `(${lit})` : lit;
}

/** A literal of scalar type `t` in C. */
function literalOf(value: number | boolean | bigint, t: ScalarType): string {
  if (t === "bool") return value ? "true" : "false";
  if (typeof value === "bigint") {
    if (t === "u64") return `${BigInt.asUintN(64, value)}ull`;
    if (t === "i64") {
      const v = BigInt.asIntN(64, value);
      if (v === -(2n ** 63n)) return "(-9223372036854775807ll - 1)";
      return v < 0n ? `(${v}ll)` : `${v}ll`;
    }
  }
  const n = Number(value);
  switch (t) {
    case "f32":
      return f32Literal(n);
    case "f64":
      return f64Literal(n);
    case "i32": {
      const v = n | 0;
      // -2147483648 is `-(2147483648)` in C, and 2147483648 is no int.
      if (v === -0x8000_0000) return "(-2147483647 - 1)";
      return v < 0 ? `(${v})` : `${v}`;
    }
    case "u32":
      return `${n >>> 0}u`;
    case "u64":
      return `${BigInt.asUintN(64, BigInt(Math.trunc(n)))}ull`;
    case "i64": {
      const v = BigInt.asIntN(64, BigInt(Math.trunc(n)));
      if (v === -(2n ** 63n)) return "(-9223372036854775807ll - 1)";
      return v < 0n ? `(${v}ll)` : `${v}ll`;
    }
  }
}

/**
 * Removes one pair of parentheses that encloses all of `text`, for a value that stands alone
 * (an argument, a right-hand side, a condition). A comma expression keeps them: bare, its comma
 * would split an argument list or a declaration.
 */
function bare(text: string): string {
  if (!text.startsWith("(") || !text.endsWith(")")) return text;
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "(" || c === "[") depth++;
    else if (c === ")" || c === "]") depth--;
    else if (c === "," && depth === 1) return text;
    if (depth === 0 && i < text.length - 1) return text;
  }
  return text.slice(1, -1);
}

// ---------------------------------------------------------------------------------------------
// Helpers emitted into the prelude on demand

type Helper = "f2i" | "hlc" | "copy";

const HELPERS: Readonly<Record<Helper, string>> = {
  f2i: `#ifndef RK_DSL_F2I
#define RK_DSL_F2I
// JS float -> integer conversion truncates toward zero and wraps modulo 2^32 (NaN -> 0). A direct
// C cast is undefined out of range (the GPU saturates), so convert through 64 bits, which wraps.
__device__ __forceinline__ int rk_f2i(float x) { return (int)(long long)x; }
__device__ __forceinline__ int rk_f2i(double x) { return (int)(long long)x; }
__device__ __forceinline__ unsigned int rk_f2u(float x) { return (unsigned int)(long long)x; }
__device__ __forceinline__ unsigned int rk_f2u(double x) { return (unsigned int)(long long)x; }
#endif
`,
  hlc: `#ifndef RK_DSL_HLC
#define RK_DSL_HLC
// ctx.now(): the HLC word is 64 bits over control[3] (low) and control[4] (high). The GPU has no
// wall clock, so a tick only advances the word; the host folds in physical time between batches.
__device__ __forceinline__ unsigned long long rk_hlc_tick(unsigned int* control) {
  const unsigned long long w = (((unsigned long long)control[4] << 32) | control[3]) + 1ull;
  control[3] = (unsigned int)w;
  control[4] = (unsigned int)(w >> 32);
  return w;
}
#endif
`,
  copy: `#ifndef RK_DSL_COPY
#define RK_DSL_COPY
// Outbox records are u32 words: a payload struct aligned to 8 may sit at a 4-byte boundary
// there, so it is copied word by word rather than stored as a struct.
__device__ __forceinline__ void rk_copy_words(unsigned int* dst, const void* src,
                                                     unsigned int words) {
  const unsigned int* s = (const unsigned int*)src;
  for (unsigned int k = 0; k < words; ++k) dst[k] = s[k];
}
// C arrays cannot be assigned; array fields are copied as bytes (NVRTC has no <string.h>).
__device__ __forceinline__ void rk_copy_bytes(void* dst, const void* src,
                                                     unsigned int bytes) {
  unsigned char* d = (unsigned char*)dst;
  const unsigned char* s = (const unsigned char*)src;
  for (unsigned int k = 0; k < bytes; ++k) d[k] = s[k];
}
#endif
`,
};

// ---------------------------------------------------------------------------------------------
// Indentation writer

class Writer {
  readonly #lines: string[] = [];
  #depth: number;

  constructor(depth = 0) {
    this.#depth = depth;
  }

  line(text: string): void {
    this.#lines.push(text === "" ? "" : "  ".repeat(this.#depth) + text);
  }

  indent(body: () => void): void {
    this.#depth++;
    try {
      body();
    } finally {
      this.#depth--;
    }
  }

  block(head: string, body: () => void, tail = "}"): void {
    this.line(head === "" ? "{" : `${head} {`);
    this.indent(body);
    this.line(tail);
  }

  text(): string {
    return this.#lines.length === 0 ? "" : this.#lines.join("\n") + "\n";
  }
}

// ---------------------------------------------------------------------------------------------
// The emitter

type ExprOf<K extends Expr["op"]> = Extract<Expr, { readonly op: K }>;
type StmtOf<K extends Stmt["kind"]> = Extract<Stmt, { readonly kind: K }>;

type DslCode = ConstructorParameters<typeof DslError>[0];

/** What the statement being emitted sits in. */
interface Scope {
  readonly where: "kernel" | "device" | "handler";
  /** Name of the handler's ctx parameter. */
  readonly ctx: string;
  /** Source text that `loc` positions refer to (the kernel's or the device function's). */
  readonly source: string;
}

const ATOMIC_FN: Readonly<Record<ExprOf<"atomic">["atomic"], string>> = {
  add: "atomicAdd",
  sub: "atomicSub",
  min: "atomicMin",
  max: "atomicMax",
  exchange: "atomicExch",
  compareExchange: "atomicCAS",
};

class CudaEmitter {
  readonly #ir: IrKernel;
  readonly #helpers = new Set<Helper>();
  /** Stencil values the body used (`idx`, `row`, `plane`, `x`, `y`, `z`). */
  readonly #grid = new Set<string>();
  #scope: Scope;

  constructor(ir: IrKernel) {
    this.#ir = ir;
    this.#scope = { where: "kernel", ctx: "rk_ctx", source: ir.source };
  }

  // --- errors -------------------------------------------------------------------------------

  #fail(code: DslCode, reason: string, loc?: Loc): never {
    const where = loc === undefined ? undefined : locate(this.#scope.source, loc.start);
    throw new DslError(code, this.#ir.name, reason, where);
  }

  // --- expressions --------------------------------------------------------------------------

  expr(e: Expr): string {
    switch (e.op) {
      case "literal":
        return this.#literal(e);
      case "local":
        return e.name;
      case "binary":
        return this.#binary(e);
      case "unary":
        return `(${e.operator}${this.expr(e.operand)})`;
      case "cast":
        return this.#cast(e);
      case "index":
        return this.#index(e);
      case "field":
        return this.#field(e);
      case "call":
        return `${e.callee}(${e.args.map((a) => bare(this.expr(a))).join(", ")})`;
      case "index_intrinsic":
        return `((int)${e.which}.${e.axis})`;
      case "math":
        return this.#math(e);
      case "atomic":
        return this.#atomic(e);
      case "select":
        return `(${this.expr(e.cond)} ? ${this.expr(e.then)} : ${this.expr(e.else)})`;
      case "match":
        return this.#match(e);
      case "gridpos":
        return this.#gridpos(e);
      case "neighbor":
        return this.#neighbor(e);
      case "now":
        return this.#now(e);
      case "hlc_part":
        return this.#hlcPart(e);
    }
  }

  #literal(e: ExprOf<"literal">): string {
    const t = scalarOf(e.type);
    if (t === undefined) this.#fail(ErrorCode.DslType, "a literal must have a scalar type", e.loc);
    return literalOf(e.value, t);
  }

  /** `left op right` with JS semantics for `%` on floats and for shift counts. */
  #binaryText(op: BinaryOp, left: string, right: Expr, leftType: ScalarType | undefined): string {
    if (op === "%" && isFloat(leftType)) {
      return `${leftType === "f64" ? "fmod" : "fmodf"}(${bare(left)}, ${bare(this.expr(right))})`;
    }
    if (op === "<<" || op === ">>" || op === ">>>") {
      // JS takes the shift count modulo 32; C leaves counts ≥ 32 undefined (PTX clamps them).
      // `>>>` only appears on u32, whose C `>>` is already the logical shift.
      return `(${left} ${op === ">>>" ? ">>" : op} ${this.#shiftCount(right, leftType)})`;
    }
    return `(${left} ${op} ${this.expr(right)})`;
  }

  #shiftCount(count: Expr, leftType: ScalarType | undefined): string {
    const bits = leftType === "u64" || leftType === "i64" ? 64 : 32;
    if (count.op === "literal") return `${(Number(count.value) & (bits - 1)) >>> 0}`;
    return `(${this.expr(count)} & ${bits - 1})`;
  }

  #binary(e: ExprOf<"binary">): string {
    return this.#binaryText(e.operator, this.expr(e.left), e.right, scalarOf(e.left.type));
  }

  #cast(e: ExprOf<"cast">): string {
    const from = scalarOf(e.value.type);
    const v = this.expr(e.value);
    if (from === e.to) return v;
    if (isFloat(from) && (e.to === "i32" || e.to === "u32")) {
      this.#helpers.add("f2i");
      return `${e.to === "i32" ? "rk_f2i" : "rk_f2u"}(${bare(v)})`;
    }
    if (e.to === "bool") return `(${v} != 0)`;
    return `((${C_SCALAR[e.to]})${v})`;
  }

  /** The C lvalue of a place (`name`, `base.field`, `array[i]`): no widening applied. */
  #place(e: Expr): string {
    switch (e.op) {
      case "local":
        return e.name;
      case "field":
        return `${this.#place(e.base)}.${e.name}`;
      case "index":
        return `${this.#place(e.array)}[${bare(this.expr(e.index))}]`;
      default:
        this.#fail(ErrorCode.DslUnsupported, `a ${e.op} expression is not a place`, e.loc);
    }
  }

  /** Reads a stored value: sub-word storage widens to the type the DSL reads it as. */
  #widen(storage: ScalarKind | "array" | "struct", place: string): string {
    switch (storage) {
      case "u8":
      case "u16":
        return `((unsigned int)${place})`;
      case "i8":
      case "i16":
        return `((int)${place})`;
      case "bool":
        return `(${place} != 0)`;
      default:
        return place;
    }
  }

  #index(e: ExprOf<"index">): string {
    const t = e.array.type;
    return this.#widen(t.kind === "array" ? t.storage : "struct", this.#place(e));
  }

  #field(e: ExprOf<"field">): string {
    return this.#widen(e.storage, this.#place(e));
  }

  #math(e: ExprOf<"math">): string {
    const t = scalarOf(e.type);
    const args = e.args.map((a) => bare(this.expr(a)));
    const float = isFloat(t);
    // f32 uses the `f`-suffixed functions (a plain `sqrt` would promote to double).
    const fn = (name: string): string => (t === "f64" ? name : `${name}f`);
    const call = (name: string, xs: readonly string[]): string => `${name}(${xs.join(", ")})`;
    const fold = (name: string): string => {
      if (args.length === 0) this.#fail(ErrorCode.DslType, `${e.fn} needs arguments`, e.loc);
      return args.slice(1).reduce((acc, x) => call(name, [acc, x]), args[0]);
    };
    switch (e.fn) {
      case "sqrt":
      case "rsqrt":
      case "sin":
      case "cos":
      case "exp":
      case "log":
      case "pow":
      case "floor":
      case "ceil":
      case "fma":
        if (!float) this.#fail(ErrorCode.DslType, `${e.fn} takes f32 or f64`, e.loc);
        return call(fn(e.fn), args);
      case "abs":
        if (float) return call(fn("fabs"), args);
        if (t === "u32" || t === "u64") return args[0];
        return call(t === "i64" ? "llabs" : "abs", args);
      case "min":
        return fold(float ? fn("fmin") : "min");
      case "max":
        return fold(float ? fn("fmax") : "max");
      case "clamp": {
        const [x, lo, hi] = args;
        const [mn, mx] = float ? [fn("fmin"), fn("fmax")] : ["min", "max"];
        return call(mn, [call(mx, [x, lo]), hi]);
      }
    }
  }

  #atomic(e: ExprOf<"atomic">): string {
    const element = e.array.type.kind === "array" ? e.array.type.element : undefined;
    if (element !== "i32" && element !== "u32") {
      this.#fail(ErrorCode.DslType, "atomics work on i32 and u32 arrays", e.loc);
    }
    const args = e.args.map((a) => {
      const v = bare(this.expr(a));
      // CUDA's atomics are overloaded on int/unsigned: make the argument match the element.
      return scalarOf(a.type) === element ? v : `(${C_SCALAR[element]})(${v})`;
    });
    const ptr = `&${this.#place(e.array)}[${bare(this.expr(e.index))}]`;
    return `${ATOMIC_FN[e.atomic]}(${[ptr, ...args].join(", ")})`;
  }

  #match(e: ExprOf<"match">): string {
    const t = scalarOf(e.value.type) ?? "i32";
    const v = this.expr(e.value);
    let out = this.expr(e.fallback);
    for (let i = e.cases.length - 1; i >= 0; i--) {
      const c = e.cases[i];
      out = `(${v} == ${literalOf(c.label, t)} ? ${this.expr(c.expr)} : ${out})`;
    }
    return out;
  }

  #gridpos(e: ExprOf<"gridpos">): string {
    this.#requireStencil(e.loc);
    switch (e.member) {
      case "width":
      case "height":
      case "depth":
        return `rk_${e.member}`;
      default:
        this.#grid.add(e.member);
        return `rk_${e.member}`;
    }
  }

  #neighbor(e: ExprOf<"neighbor">): string {
    this.#requireStencil(e.loc);
    const h = this.#ir.stencil?.halo ?? 1;
    if (Math.max(Math.abs(e.dx), Math.abs(e.dy), Math.abs(e.dz)) > h) {
      this.#fail(ErrorCode.DslType, `neighbour offset beyond the halo of ${h}`, e.loc);
    }
    this.#grid.add("idx");
    let index = "rk_idx";
    const term = (n: number, unit: string | undefined): void => {
      if (n === 0) return;
      const mag = Math.abs(n);
      const scaled = unit === undefined ? `${mag}` : mag === 1 ? unit : `${mag} * ${unit}`;
      index += ` ${n < 0 ? "-" : "+"} ${scaled}`;
    };
    if (e.dz !== 0) this.#grid.add("plane");
    if (e.dy !== 0) this.#grid.add("row");
    term(e.dz, "rk_plane");
    term(e.dy, "rk_row");
    term(e.dx, undefined);
    const t = e.array.type;
    return this.#widen(
      t.kind === "array" ? t.storage : "struct",
      `${this.#place(e.array)}[${index}]`,
    );
  }

  #requireStencil(loc: Loc): void {
    if (this.#ir.kind !== "stencil" || this.#scope.where !== "kernel") {
      this.#fail(ErrorCode.DslUnsupported, "grid positions exist only in a stencil body", loc);
    }
  }

  #requireHandler(what: string, loc: Loc): void {
    if (this.#scope.where !== "handler") {
      this.#fail(ErrorCode.DslUnsupported, `${what} is only available in a handler body`, loc);
    }
  }

  #now(e: ExprOf<"now">): string {
    this.#requireHandler("ctx.now()", e.loc);
    this.#helpers.add("hlc");
    return `rk_hlc_tick(${this.#scope.ctx}.control)`;
  }

  #hlcPart(e: ExprOf<"hlc_part">): string {
    this.#requireHandler("an HLC timestamp", e.loc);
    const w = this.expr(e.value);
    switch (e.part) {
      case "physical":
        return `(${w} >> 16)`;
      case "logical":
        return `((unsigned int)(${w} & 0xffffull))`;
      case "nodeId": {
        const id = `${this.#scope.ctx}.control[5]`;
        // `ctx.now().nodeId` still ticks the clock in JS, so keep the tick.
        return e.value.op === "local" ? id : `((void)${w}, ${id})`;
      }
    }
  }

  // --- statements ---------------------------------------------------------------------------

  stmts(w: Writer, list: readonly Stmt[]): void {
    for (const s of list) this.stmt(w, s);
  }

  stmt(w: Writer, s: Stmt): void {
    switch (s.kind) {
      case "let":
        return this.#let(w, s);
      case "shared":
        return this.#shared(w, s);
      case "assign":
        return this.#assign(w, s);
      case "expr":
        return w.line(`${bare(this.expr(s.expr))};`);
      case "if":
        return this.#if(w, s, "if");
      case "for":
        return this.#for(w, s);
      case "while":
        return w.block(`while (${bare(this.expr(s.cond))})`, () => this.stmts(w, s.body));
      case "break":
        return w.line("break;");
      case "continue":
        return w.line("continue;");
      case "switch":
        return this.#switch(w, s);
      case "return":
        return this.#return(w, s);
      case "reply":
        return this.#reply(w, s);
      case "barrier":
        return w.line("__syncthreads();");
      case "send":
        return this.#send(w, s);
    }
  }

  #let(w: Writer, s: StmtOf<"let">): void {
    if (s.type.kind === "struct" || s.type.kind === "array") {
      // Struct and array locals alias what they were initialised from (a message/state field,
      // a kernel array), as the JS view or typed array would.
      if (s.init === undefined) {
        this.#fail(ErrorCode.DslType, `${s.name} needs an initial value`, s.loc);
      }
      w.line(`auto& ${s.name} = ${this.#place(s.init)};`);
      return;
    }
    w.line(`${this.#declaration(s)};`);
  }

  /** `[const] T name = init` (no semicolon), also used inside a `for` header. */
  #declaration(s: StmtOf<"let">): string {
    const t = cValueType(s.type);
    if (t === undefined) this.#fail(ErrorCode.DslType, `${s.name} has no storable type`, s.loc);
    const init = s.init === undefined
      ? (s.type.kind === "scalar" && s.type.scalar === "bool" ? "false" : "0")
      : bare(this.expr(s.init));
    return `${s.mutable ? "" : "const "}${t} ${s.name} = ${init}`;
  }

  #shared(_w: Writer, s: StmtOf<"shared">): void {
    // Emitted up front by sharedPrologue(); here it only has to be where it is allowed.
    if (this.#scope.where !== "kernel") {
      this.#fail(ErrorCode.DslUnsupported, "sharedArray belongs at the top of a kernel", s.loc);
    }
  }

  /**
   * Declarations of the kernel's workgroup arrays, zeroed, then one barrier. WGSL zeroes
   * workgroup memory and the JS runner hands out fresh typed arrays, while CUDA's shared memory
   * starts with garbage. Declarations are top-level with literal lengths, so hoisting them above
   * everything (the stencil's interior guard included) changes nothing but lets every thread of
   * the block take part in the zeroing and reach the barrier.
   */
  sharedPrologue(body: readonly Stmt[]): string[] {
    const shared = body.filter((s): s is StmtOf<"shared"> => s.kind === "shared");
    if (shared.length === 0) return [];
    const [x, y, z] = this.#ir.workgroupSize;
    const lines = [
      "const int rk_tid = (int)(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z));",
    ];
    for (const s of shared) {
      lines.push(`__shared__ ${C_SCALAR[s.element]} ${s.name}[${s.length}];`);
      lines.push(
        `for (int rk_k = rk_tid; rk_k < ${s.length}; rk_k += ${x * y * z}) ${s.name}[rk_k] = 0;`,
      );
    }
    lines.push("__syncthreads();");
    return lines;
  }

  /** The sub-word storage kind a place writes to, if any (writes then narrow). */
  #narrowStorage(target: Expr): ScalarKind | undefined {
    let storage: ScalarKind | "array" | "struct" | undefined;
    if (target.op === "field") storage = target.storage;
    else if (target.op === "index" && target.array.type.kind === "array") {
      storage = target.array.type.storage;
    }
    return storage !== undefined && storage in NARROW ? storage as ScalarKind : undefined;
  }

  /** An assignment as a C expression (no semicolon), also used in `for` updates. */
  #assignExpr(target: LValue, op: StmtOf<"assign">["operator"], value: Expr): string {
    const place = this.#place(target);
    const t = scalarOf(target.type);
    const narrow = this.#narrowStorage(target);
    const binop = op === "=" ? undefined : op.slice(0, -1) as BinaryOp;
    if (narrow !== undefined) {
      // Sub-word and bool fields: compute at the read type, then narrow back to the storage.
      const v = binop === undefined
        ? this.expr(value)
        : this.#binaryText(binop, this.expr(target), value, t);
      return `${place} = (${NARROW[narrow]})(${bare(v)})`;
    }
    if (binop === undefined) return `${place} = ${bare(this.expr(value))}`;
    if (binop === "<<" || binop === ">>" || binop === ">>>") {
      return `${place} ${binop === ">>>" ? ">>" : binop}= ${this.#shiftCount(value, t)}`;
    }
    if (binop === "%" && isFloat(t)) {
      return `${place} = ${bare(this.#binaryText("%", place, value, t))}`;
    }
    return `${place} ${op} ${bare(this.expr(value))}`;
  }

  #assign(w: Writer, s: StmtOf<"assign">): void {
    if (s.target.type.kind === "array") {
      if (s.operator !== "=") this.#fail(ErrorCode.DslType, "arrays only copy with =", s.loc);
      this.#helpers.add("copy");
      const dst = this.#place(s.target);
      w.line(`rk_copy_bytes(&${dst}, &${this.#place(s.value)}, sizeof(${dst}));`);
      return;
    }
    w.line(`${this.#assignExpr(s.target, s.operator, s.value)};`);
  }

  #if(w: Writer, s: StmtOf<"if">, head: string): void {
    w.line(`${head} (${bare(this.expr(s.cond))}) {`);
    w.indent(() => this.stmts(w, s.then));
    const [only] = s.else;
    if (s.else.length === 0) w.line("}");
    else if (s.else.length === 1 && only.kind === "if") this.#if(w, only, "} else if");
    else {
      w.line("} else {");
      w.indent(() => this.stmts(w, s.else));
      w.line("}");
    }
  }

  /** A `for` update or single initialiser as a C expression. */
  #clause(s: Stmt): string {
    if (s.kind === "assign" && s.target.type.kind !== "array") {
      return this.#assignExpr(s.target, s.operator, s.value);
    }
    if (s.kind === "expr") return bare(this.expr(s.expr));
    this.#fail(ErrorCode.DslUnsupported, `a ${s.kind} statement cannot be a for clause`, s.loc);
  }

  #for(w: Writer, s: StmtOf<"for">): void {
    const cond = s.cond === undefined ? "" : ` ${bare(this.expr(s.cond))}`;
    // Updates stay in the header (joined by commas) so `continue` still runs them.
    const update = s.update.map((u) => this.#clause(u)).join(", ");
    const tail = `;${cond};${update === "" ? "" : ` ${update}`})`;
    const [first] = s.init;
    if (s.init.length === 0) {
      w.block(`for (${tail}`, () => this.stmts(w, s.body));
    } else if (
      s.init.length === 1 && first.kind === "let" && first.type.kind === "scalar"
    ) {
      w.block(`for (${this.#declaration(first)}${tail}`, () => this.stmts(w, s.body));
    } else if (s.init.length === 1 && (first.kind === "assign" || first.kind === "expr")) {
      w.block(`for (${this.#clause(first)}${tail}`, () => this.stmts(w, s.body));
    } else {
      // C allows one declaration in a for header: hoist the initialisers into a block.
      w.block("", () => {
        this.stmts(w, s.init);
        w.block(`for (${tail}`, () => this.stmts(w, s.body));
      });
    }
  }

  #switch(w: Writer, s: StmtOf<"switch">): void {
    const t = scalarOf(s.value.type) ?? "i32";
    const endsInJump = (body: readonly Stmt[]): boolean => {
      const last = body[body.length - 1]?.kind;
      return last === "return" || last === "continue" || last === "break" || last === "reply";
    };
    // Braces around each body: C++ forbids jumping past a declaration into its scope.
    const body = (list: readonly Stmt[]): void => {
      this.stmts(w, list);
      if (!endsInJump(list)) w.line("break;");
    };
    w.block(`switch (${bare(this.expr(s.value))})`, () => {
      for (const c of s.cases) {
        c.labels.slice(0, -1).forEach((l) => w.line(`case ${literalOf(l, t)}:`));
        const last = c.labels[c.labels.length - 1];
        if (last === undefined) continue;
        w.block(`case ${literalOf(last, t)}:`, () => body(c.body));
      }
      if (s.fallback !== undefined) {
        const fallback = s.fallback;
        w.block("default:", () => body(fallback));
      }
    });
  }

  #return(w: Writer, s: StmtOf<"return">): void {
    if (s.value === undefined) return w.line("return;");
    if (this.#scope.where !== "device") {
      this.#fail(ErrorCode.DslType, "a kernel returns no value", s.loc);
    }
    w.line(`return ${bare(this.expr(s.value))};`);
  }

  /** Fills the local struct `into` from field initialisers (schema order as given). */
  #fill(w: Writer, into: string, fields: readonly FieldInit[]): void {
    for (const f of fields) {
      // Names may be leaf paths (`pos.x`, `hist[2]`), which C accepts verbatim.
      const place = `${into}.${f.name}`;
      if (f.storage === "array") {
        this.#helpers.add("copy");
        w.line(`rk_copy_bytes(&${place}, &${this.#place(f.value)}, sizeof(${place}));`);
      } else if (f.storage === "struct") {
        w.line(`${place} = ${this.#place(f.value)};`);
      } else {
        const v = bare(this.expr(f.value));
        const narrow = NARROW[f.storage];
        w.line(`${place} = ${narrow === undefined ? v : `(${narrow})(${v})`};`);
      }
    }
  }

  #reply(w: Writer, s: StmtOf<"reply">): void {
    this.#requireHandler("a reply", s.loc);
    const out = this.#ir.handler?.output;
    if (out === undefined) {
      this.#fail(ErrorCode.DslType, "the kernel has no output schema to reply with", s.loc);
    }
    const ctx = this.#scope.ctx;
    // Built in a zeroed local and stored whole, so padding and unset fields are zero.
    w.block("", () => {
      w.line(`${out.name} rk_reply = {};`);
      this.#fill(w, "rk_reply", s.fields);
      w.line(`*${ctx}.reply = rk_reply;`);
      w.line(`*${ctx}.replied = 1u;`);
      w.line("return;");
    });
  }

  #send(w: Writer, s: StmtOf<"send">): void {
    this.#requireHandler("ctx.send", s.loc);
    const target = this.#ir.handler?.sendTargets[s.target];
    if (target === undefined) {
      this.#fail(ErrorCode.DslType, `send target ${s.target} is not declared`, s.loc);
    }
    this.#helpers.add("copy");
    const ctx = this.#scope.ctx;
    const stride = outboxStride(this.#ir);
    w.block("", () => {
      w.line(`${target.schema.name} rk_msg = {};`);
      this.#fill(w, "rk_msg", s.fields);
      // Counted even when the outbox is full, so the host sees how many sends were dropped.
      w.line(`const unsigned int rk_slot = atomicAdd(&${ctx}.control[2], 1u);`);
      w.block(`if (rk_slot < ${ctx}.control[1])`, () => {
        w.line(`unsigned int* const rk_rec = ${ctx}.outbox + rk_slot * ${stride}u;`);
        w.line(`rk_rec[0] = ${s.target}u; // ${JSON.stringify(target.dest)}`);
        w.line(`rk_rec[1] = ${ctx}.msg_index;`);
        w.line(`rk_copy_words(rk_rec + 2, &rk_msg, ${target.schema.size / 4}u);`);
      });
    });
  }

  // --- functions and kernels ----------------------------------------------------------------

  /** Body text of a function at one indent, under `scope`. */
  body(scope: Scope, list: readonly Stmt[]): string {
    const saved = this.#scope;
    this.#scope = scope;
    try {
      const w = new Writer(1);
      this.stmts(w, list);
      return w.text();
    } finally {
      this.#scope = saved;
    }
  }

  deviceFunction(f: IrFunction): string {
    const ret = f.returns.kind === "void" ? "void" : cValueType(f.returns);
    if (ret === undefined) this.#fail(ErrorCode.DslType, `${f.name} returns no scalar`);
    const params = f.params.map((p) => {
      if (p.type.kind === "array") {
        const c = C_SCALAR[p.type.element];
        return `${p.written || p.atomic ? c : `const ${c}`}* ${p.name}`;
      }
      const c = cValueType(p.type);
      if (c === undefined) this.#fail(ErrorCode.DslType, `parameter ${p.name} has no C type`);
      return `${c} ${p.name}`;
    });
    const body = this.body({ where: "device", ctx: "rk_ctx", source: f.source }, f.body);
    return `__device__ ${ret} ${f.name}(${params.join(", ")}) {\n${body}}\n`;
  }

  helpers(): string {
    return (["f2i", "hlc", "copy"] as const).filter((h) => this.#helpers.has(h))
      .map((h) => HELPERS[h]).join("");
  }

  /** ABI parameters and declarations of a bulk or stencil entry, plus the bool unpacking. */
  userParams(params: readonly IrParam[]): { abi: CudaParam[]; decls: string[]; unpack: string[] } {
    const abi: CudaParam[] = [];
    const decls: string[] = [];
    const unpack: string[] = [];
    params.filter((p) => p.type.kind !== "gridpos").forEach((p, arg) => {
      if (p.type.kind === "array") {
        const c = C_SCALAR[p.type.element];
        const written = p.written || p.atomic;
        const cType = written ? `${c}*` : `const ${c}* __restrict__`;
        abi.push({
          kind: "array",
          name: p.name,
          arg,
          element: p.type.element,
          cType,
          written,
          bytes: 8,
        });
        decls.push(`${cType} ${p.name}`);
        return;
      }
      const scalar = scalarOf(p.type);
      if (scalar === undefined) {
        this.#fail(ErrorCode.DslType, `kernel parameter ${p.name} is neither array nor scalar`);
      }
      const bytes = scalar === "f64" || scalar === "u64" || scalar === "i64" ? 8 : 4;
      if (scalar === "bool") {
        // The ABI carries bools as a u32 word; the body sees a real bool.
        const name = `rk_arg_${p.name}`;
        abi.push({ kind: "scalar", name, arg, scalar, cType: "unsigned int", bytes });
        decls.push(`unsigned int ${name}`);
        unpack.push(`const bool ${p.name} = ${name} != 0u;`);
        return;
      }
      abi.push({ kind: "scalar", name: p.name, arg, scalar, cType: C_SCALAR[scalar], bytes });
      decls.push(`${C_SCALAR[scalar]} ${p.name}`);
    });
    return { abi, decls, unpack };
  }

  /** The stencil preamble: cell coordinates, the interior guard, the padded index. */
  stencilPreamble(): string[] {
    const st = this.#ir.stencil;
    if (st === undefined) this.#fail(ErrorCode.DslType, "a stencil kernel needs stencil info");
    const h = st.halo;
    const three = st.dims === 3;
    const cell = (a: "x" | "y" | "z"): string =>
      `const int rk_${a} = (int)(blockIdx.${a} * blockDim.${a} + threadIdx.${a});`;
    const lines = [cell("x"), cell("y")];
    lines.push(three ? cell("z") : "const int rk_z = 0;");
    const guard = three
      ? "if (rk_x >= rk_width || rk_y >= rk_height || rk_z >= rk_depth) return;"
      : "if (rk_x >= rk_width || rk_y >= rk_height) return;";
    lines.push(guard);
    const g = this.#grid;
    if (g.has("idx")) {
      g.add("row");
      if (three) g.add("plane");
    }
    if (g.has("row") || g.has("plane")) lines.push(`const int rk_row = rk_width + ${2 * h};`);
    if (g.has("plane")) lines.push(`const int rk_plane = rk_row * (rk_height + ${2 * h});`);
    if (g.has("idx")) {
      const z = three ? `(rk_z + ${h}) * rk_plane + ` : "";
      lines.push(`const int rk_idx = ${z}(rk_y + ${h}) * rk_row + rk_x + ${h};`);
    }
    if (!three && !g.has("z")) lines.splice(2, 1);
    return lines;
  }
}

/** Outbox record stride in u32 words: target index, message index, then the largest payload. */
function outboxStride(ir: IrKernel): number {
  const largest = Math.max(0, ...(ir.handler?.sendTargets ?? []).map((t) => t.schema.size));
  return 2 + Math.ceil(largest / 4);
}

function signature(head: string, decls: readonly string[]): string {
  const one = `${head}(${decls.join(", ")}) {`;
  if (one.length <= 100) return one;
  return `${head}(\n${decls.map((d) => `    ${d}`).join(",\n")}) {`;
}

// ---------------------------------------------------------------------------------------------
// Entry points

function emitGrid(e: CudaEmitter, ir: IrKernel, functions: string): CudaSource {
  const { abi, decls, unpack } = e.userParams(ir.params);
  if (ir.kind === "stencil") {
    for (const axis of ["width", "height", "depth"] as const) {
      abi.push({ kind: "grid", name: `rk_${axis}`, axis, cType: "int", bytes: 4 });
      decls.push(`int rk_${axis}`);
    }
  }
  const body = e.body({ where: "kernel", ctx: "rk_ctx", source: ir.source }, ir.body);
  const pre = [
    ...e.sharedPrologue(ir.body),
    ...unpack,
    ...(ir.kind === "stencil" ? e.stencilPreamble() : []),
  ];
  const [x, y, z] = ir.workgroupSize;
  const head = `extern "C" __global__ void __launch_bounds__(${x * y * z}) ${ir.name}`;
  const harness = `${signature(head, decls)}\n${pre.map((l) => `  ${l}\n`).join("")}${body}}\n`;
  const parts: CudaParts = {
    prelude: C_PRELUDE + e.helpers(),
    structs: "",
    ctx: "",
    functions,
    handlerFunction: "",
    harness,
  };
  return {
    code: joinParts(parts),
    entry: ir.name,
    kind: ir.kind,
    parts,
    params: abi,
    workgroupSize: ir.workgroupSize,
    handler: undefined,
  };
}

function emitHandler(e: CudaEmitter, ir: IrKernel, functions: string): CudaSource {
  const h = ir.handler;
  if (h === undefined) throw new DslError(ErrorCode.DslType, ir.name, "a handler needs its info");
  const find = (pred: (p: IrParam) => boolean): string | undefined => ir.params.find(pred)?.name;
  const msgName = find((p) => p.type.kind === "struct" && p.type.role === "message") ?? "rk_msg";
  const stateName = find((p) => p.type.kind === "struct" && p.type.role === "state") ??
    "rk_state";
  const ctxName = find((p) => p.type.kind === "ctx") ?? "rk_ctx";
  const ctxStruct = `rk_${ir.name}_ctx`;
  const fnName = `rk_${ir.name}_handle`;
  const outType = h.output?.name ?? "unsigned int";
  const stateType = h.state?.name;

  const roots: StructType[] = [h.input];
  if (h.state !== undefined) roots.push(h.state);
  if (h.output !== undefined) roots.push(h.output);
  for (const t of h.sendTargets) roots.push(t.schema);
  const structs = cStructs(roots);

  const ctx = [
    `// What a handler of ${ir.name} reaches besides its message and state. The batch entry points`,
    `// it at replies[i] / replied[i]; a persistent loop can point it at its own slots.`,
    `struct ${ctxStruct} {`,
    `  ${outType}* reply; // the reply slot${
      h.output ? "" : " (unused: the kernel has no output)"
    }`,
    `  unsigned int* replied; // set to 1 when the handler replies`,
    `  unsigned int* outbox; // K2K send records`,
    `  unsigned int* control; // control words: counts, HLC word, node id`,
    `  unsigned int msg_index; // the message's index in the batch (outbox record word 1)`,
    `};`,
    ``,
  ].join("\n");

  const body = e.body({ where: "handler", ctx: ctxName, source: ir.source }, ir.body);
  const stateParam = stateType === undefined
    ? `unsigned int* ${stateName}`
    : `${stateType}& ${stateName}`;
  const handlerFunction = `__device__ void ${fnName}(const ${h.input.name}& ${msgName}, ` +
    `${stateParam}, ${ctxStruct}& ${ctxName}) {\n${body}}\n`;

  const abi: CudaParam[] = [
    { kind: "handler", name: "msgs", role: "msgs", cType: `const ${h.input.name}*`, bytes: 8 },
    {
      kind: "handler",
      name: "state",
      role: "state",
      cType: `${stateType ?? "unsigned int"}*`,
      bytes: 8,
    },
    { kind: "handler", name: "replies", role: "replies", cType: `${outType}*`, bytes: 8 },
    { kind: "handler", name: "replied", role: "replied", cType: "unsigned int*", bytes: 8 },
    { kind: "handler", name: "outbox", role: "outbox", cType: "unsigned int*", bytes: 8 },
    { kind: "handler", name: "control", role: "control", cType: "unsigned int*", bytes: 8 },
  ];
  const entry = `${ir.name}_batch`;
  const harnessHead = signature(
    `extern "C" __global__ void __launch_bounds__(1) ${entry}`,
    abi.map((p) => `${p.cType} ${p.name}`),
  );
  const hw = new Writer(1);
  hw.line("if (blockIdx.x != 0u || threadIdx.x != 0u) return;");
  hw.line("const unsigned int rk_count = control[0];");
  hw.block("for (unsigned int rk_i = 0u; rk_i < rk_count; ++rk_i)", () => {
    hw.line(`${ctxStruct} rk_c;`);
    hw.line(`rk_c.reply = replies + rk_i;`);
    hw.line(`rk_c.replied = replied + rk_i;`);
    hw.line(`rk_c.outbox = outbox;`);
    hw.line(`rk_c.control = control;`);
    hw.line(`rk_c.msg_index = rk_i;`);
    hw.line(`replied[rk_i] = 0u;`);
    hw.line(`${fnName}(msgs[rk_i], ${stateType === undefined ? "state" : "*state"}, rk_c);`);
  });
  const harness =
    `// Launched 1x1: one thread handles control[0] messages in order, as the CPU backend does.\n` +
    `${harnessHead}\n${hw.text()}}\n`;

  const parts: CudaParts = {
    prelude: C_PRELUDE + e.helpers(),
    structs,
    ctx,
    functions,
    handlerFunction,
    harness,
  };
  return {
    code: joinParts(parts),
    entry,
    kind: "handler",
    parts,
    params: abi,
    workgroupSize: [1, 1, 1],
    handler: {
      function: fnName,
      ctxStruct,
      inputSize: h.input.size,
      stateSize: h.state?.size ?? 0,
      outputSize: h.output?.size ?? 0,
      outboxStride: outboxStride(ir),
      sendTargets: h.sendTargets.map((t) => ({
        dest: t.dest,
        typeId: t.schema.typeId,
        struct: t.schema.name,
        payloadBytes: t.schema.size,
      })),
      usesNow: h.usesNow,
    },
  };
}

function joinParts(p: CudaParts): string {
  return [p.prelude, p.structs, p.ctx, p.functions, p.handlerFunction, p.harness]
    .filter((s) => s !== "").join("\n");
}

/**
 * Emits CUDA C for a checked kernel: one self-contained translation unit for NVRTC or
 * `nvcc -x cu`, its `extern "C"` entry name, the parameters a launcher packs in order, and the
 * parts a persistent-kernel generator can reuse.
 *
 * @param ir a kernel from the checker (`checkKernel`)
 * @throws {DslError} when a node cannot be expressed in CUDA C (a checker gap, located in the
 * user's source)
 */
export function emitCuda(ir: IrKernel): CudaSource {
  const e = new CudaEmitter(ir);
  const functions = ir.functions.map((f) => e.deviceFunction(f)).join("\n");
  return ir.kind === "handler" ? emitHandler(e, ir, functions) : emitGrid(e, ir, functions);
}
