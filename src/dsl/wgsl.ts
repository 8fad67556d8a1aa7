/**
 * The WGSL emitter of the kernel DSL: from a checked {@linkcode IrKernel} to one self-contained
 * compute shader module with entry point `main` and the bind group the runners build from
 * {@linkcode WgslSource.bindings} (explicit layouts: auto layouts drop unused bindings).
 *
 * ABI (docs: the DSL team spec): bulk and stencil kernels bind their array parameters at
 * `@group(0) @binding(0..)` in parameter order, then one uniform `RkParams` with every scalar
 * parameter (4 bytes each, bool as u32) and, for stencils, `rk_width`, `rk_height`, `rk_depth`.
 * Handlers bind `rk_msgs`, `rk_state`, `rk_replies`, `rk_replied`, `rk_outbox`, `rk_control` at
 * 0..5 and run 1×1, processing `rk_control[0]` messages in order. The handler body reads its
 * message at `rk_msgs[rk_slot]` (a private variable the entry sets before each call, equal to the
 * message's index here): a runtime that keeps messages in a ring brings its own entry point and
 * appends it to {@linkcode WgslSource.library} (the WebGPU backend does).
 *
 * What WGSL cannot say directly is lowered here: sub-word schema fields go through the
 * `<Struct>_get_<f>` / `<Struct>_with_<f>` accessors of `wgslStructs`; device functions that take
 * arrays are specialised per array they are called with (WGSL cannot pass a storage array by
 * pointer portably); atomic compare-exchange gets strong semantics from a loop around
 * `atomicCompareExchangeWeak`; f32 → integer conversions wrap as JS does instead of saturating.
 * @module
 */

import { DslError, ErrorCode } from "../core/errors.ts";
import type { FieldLayout, FieldSpec, MessageSchema, StructType } from "../core/schema.ts";
import { ArrayType } from "../core/schema.ts";
import { wgslStructs } from "../core/schema_codegen.ts";
import type {
  AssignOp,
  BinaryOp,
  DslType,
  Expr,
  FieldInit,
  IrFunction,
  IrKernel,
  IrParam,
  Loc,
  ScalarType,
  Stmt,
} from "./ir.ts";
import { locate } from "./parse.ts";

/** How a binding is declared (and what bind group layout entry it needs). */
export type WgslBindingKind = "read-only-storage" | "storage" | "uniform";

/** One `@group(0) @binding(n)` resource of an emitted shader. */
export interface WgslBinding {
  /** Binding number in group 0. */
  readonly binding: number;
  /** The WGSL variable name. */
  readonly name: string;
  /** Index into `IrKernel.params` of the array parameter it holds; undefined for the rest. */
  readonly param: number | undefined;
  /** Buffer binding type. */
  readonly kind: WgslBindingKind;
}

/** One 4-byte member of the `RkParams` uniform, in order. */
export interface WgslUniformMember {
  /** Member name (the parameter's, or `rk_width` / `rk_height` / `rk_depth`). */
  readonly name: string;
  /** Stored type: bool parameters are stored as u32 0/1. */
  readonly type: "f32" | "i32" | "u32";
  /** Index into `IrKernel.params`; undefined for the stencil's grid size members. */
  readonly param: number | undefined;
}

/** An emitted shader and what a runner needs to bind and launch it. */
export interface WgslSource {
  /** The WGSL module text. */
  readonly code: string;
  /** Entry point name. */
  readonly entry: "main";
  /** Every binding of group 0, in binding order. */
  readonly bindings: readonly WgslBinding[];
  /** Members of the `RkParams` uniform in order (empty when there is no uniform). */
  readonly uniformMembers: readonly WgslUniformMember[];
  /** Bytes of the uniform buffer (roundUp(16, 4 × members)); 0 when there is none. */
  readonly uniformSize: number;
  /** `@workgroup_size` of `main`. */
  readonly workgroupSize: readonly [number, number, number];
  /** Handlers: u32 words per outbox record (2 + payload words); 0 for bulk and stencil. */
  readonly outboxStride: number;
  /** Handlers: the send targets, indexed by an outbox record's word 0. */
  readonly sendTargets: readonly { readonly dest: string; readonly schema: MessageSchema }[];
  /**
   * Handlers: the module without its entry point — structs, bindings 0..5, `rk_slot`, helpers
   * and `fn rk_handle(rk_i: u32)` — for a runtime that supplies its own `@compute` entry (which
   * sets `rk_slot` and `rk_control` words before each `rk_handle`). Empty for bulk and stencil.
   */
  readonly library: string;
}

// ---------------------------------------------------------------------------------------------
// Small helpers

type ExprOf<K extends Expr["op"]> = Extract<Expr, { readonly op: K }>;
type StmtOf<K extends Stmt["kind"]> = Extract<Stmt, { readonly kind: K }>;

const SUB_WORD: ReadonlySet<string> = new Set(["u8", "i8", "u16", "i16", "bool"]);

/** An array a local name refers to: a storage binding or a workgroup array. */
interface ArrayRef {
  readonly wgsl: string;
  readonly element: ScalarType;
  readonly space: "global" | "shared";
}

/** Per-function emission state. */
interface Scope {
  /** Device function name, for error messages (undefined in the kernel body). */
  readonly fn: string | undefined;
  /** Source that `loc`s refer to (undefined for device functions: the IR carries none). */
  readonly source: string | undefined;
  /** Array locals → what they refer to. */
  readonly arrays: Map<string, ArrayRef>;
  /** Immutable struct/array locals that alias the expression they were initialised with. */
  readonly aliases: Map<string, Expr>;
  /** Whether `return` leaves a device function with a value. */
  readonly returnsValue: boolean;
}

function roundUp(align: number, n: number): number {
  return Math.ceil(n / align) * align;
}

function isSimplePath(e: Expr): boolean {
  return e.op === "local" || e.op === "literal" ||
    (e.op === "field" && isSimplePath(e.base));
}

/** The runs of words holding only sub-word fields, as `wgslStructs` packs them (`_w<start>`). */
function wordRuns(s: StructType): { start: number; words: number }[] {
  const runOfWord = new Array<{ start: number; words: number } | undefined>(s.size / 4);
  const runs: { start: number; words: number }[] = [];
  for (const f of s.fields) {
    if (f.align >= 4) continue;
    const first = f.offset >> 2;
    const last = (f.offset + f.size - 1) >> 2;
    let run = runOfWord[first] ?? (first > 0 ? runOfWord[first - 1] : undefined);
    if (run === undefined) {
      run = { start: first * 4, words: 0 };
      runs.push(run);
    }
    for (let w = first; w <= last; w++) runOfWord[w] = run;
    run.words = Math.max(run.words, last + 1 - run.start / 4);
  }
  return runs;
}

/** Fresh temporary names (`rk_t0`, `rk_t1`, ...); `rk_` is reserved for generated code. */
class Names {
  #next = 0;
  /** A fresh temporary name. */
  fresh(prefix = "rk_t"): string {
    return `${prefix}${this.#next++}`;
  }
}

// ---------------------------------------------------------------------------------------------
// The emitter

class WgslEmitter {
  readonly ir: IrKernel;
  readonly names = new Names();
  /** Module-scope helper functions by name (emitted once, in first-use order). */
  readonly helpers = new Map<string, string>();
  /** Device functions (specialised per array arguments), callees before callers. */
  readonly functions: string[] = [];
  readonly #specialised = new Map<string, string>();
  readonly #functionByName: Map<string, IrFunction>;
  /** Global/shared arrays an atomic touches (their element is `atomic<T>`). */
  readonly atomicArrays = new Set<string>();
  /** Global arrays something writes (declared read_write). */
  readonly writtenArrays = new Set<string>();
  readonly sharedDecls: string[] = [];
  /** Kernel array params and shared arrays by WGSL name. */
  readonly globals = new Map<string, ArrayRef>();
  /** Handler message and state parameter names. */
  readonly msgName: string | undefined;
  readonly stateName: string | undefined;
  scope: Scope;

  constructor(ir: IrKernel) {
    this.ir = ir;
    this.#functionByName = new Map(ir.functions.map((f) => [f.name, f]));
    this.msgName = ir.params.find((p) => p.type.kind === "struct" && p.type.role === "message")
      ?.name;
    this.stateName = ir.params.find((p) => p.type.kind === "struct" && p.type.role === "state")
      ?.name;
    this.scope = {
      fn: undefined,
      source: ir.source,
      arrays: new Map(),
      aliases: new Map(),
      returnsValue: false,
    };
  }

  // -------------------------------------------------------------------------------------------
  // Errors and types

  fail(reason: string, loc: Loc | undefined): never {
    const fn = this.scope.fn;
    const why = fn === undefined ? reason : `in device function ${fn}: ${reason}`;
    let where: { line: number; column: number; snippet: string } | undefined;
    if (loc !== undefined) {
      where = this.scope.source === undefined
        ? { line: loc.line, column: loc.column, snippet: "" }
        : locate(this.scope.source, loc.start);
    }
    throw new DslError(ErrorCode.DslTarget, this.ir.name, why, where);
  }

  scalarType(s: ScalarType, loc: Loc | undefined): string {
    switch (s) {
      case "f64":
        return this.fail(
          "f64 is not available in WGSL (WebGPU has no 64-bit floats); use f32, or run it on CUDA",
          loc,
        );
      case "u64":
      case "i64":
        return "vec2<u32>";
      default:
        return s;
    }
  }

  typeText(t: DslType, loc: Loc | undefined): string {
    switch (t.kind) {
      case "scalar":
        return this.scalarType(t.scalar, loc);
      case "hlc":
        return "vec2<u32>";
      case "struct":
        return t.struct.name;
      case "array":
        if (t.length === undefined) return this.fail("an unsized array cannot be a local", loc);
        return `array<${this.scalarType(t.element, loc)}, ${t.length}>`;
      default:
        return this.fail(`a value of kind ${t.kind} has no WGSL type`, loc);
    }
  }

  check64(t: DslType, what: string, loc: Loc): void {
    if (t.kind === "scalar" && (t.scalar === "u64" || t.scalar === "i64")) {
      this.fail(`${what} on 64-bit integers: WGSL has none (they are vec2<u32>, copy-only)`, loc);
    }
    if (t.kind === "hlc") this.fail(`${what} on an HLC word: only its parts are numbers`, loc);
  }

  helper(name: string, text: string): string {
    if (!this.helpers.has(name)) this.helpers.set(name, text);
    return name;
  }

  // -------------------------------------------------------------------------------------------
  // Analysis: which arrays are atomic or written (through device functions too)

  analyse(): void {
    for (const p of this.ir.params) {
      if (p.type.kind !== "array") continue;
      if (p.atomic) this.atomicArrays.add(p.name);
      if (p.written || p.atomic) this.writtenArrays.add(p.name);
    }
    const seen = new Set<string>();
    const env = new Map<string, string>();
    for (const p of this.ir.params) if (p.type.kind === "array") env.set(p.name, p.name);
    const visitExpr = (e: Expr, env: Map<string, string>): void => {
      if (e.op === "atomic" && e.array.op === "local") {
        const g = env.get(e.array.name);
        if (g !== undefined) {
          this.atomicArrays.add(g);
          this.writtenArrays.add(g);
        }
      }
      if (e.op === "call") {
        const f = this.#functionByName.get(e.callee);
        if (f === undefined) return;
        const inner = new Map<string, string>();
        f.params.forEach((p, i) => {
          const a = e.args[i];
          if (p.type.kind === "array" && a?.op === "local") {
            const g = env.get(a.name);
            if (g !== undefined) inner.set(p.name, g);
          }
        });
        const key = `${f.name}|${[...inner].join(",")}`;
        if (!seen.has(key)) {
          seen.add(key);
          walkStmts(f.body, inner, visitExpr, visitStmt);
        }
      }
    };
    const visitStmt = (s: Stmt, env: Map<string, string>): void => {
      if (s.kind === "shared") env.set(s.name, s.name);
      if (s.kind === "let" && s.type.kind === "array" && s.init?.op === "local") {
        const g = env.get(s.init.name);
        if (g !== undefined) env.set(s.name, g);
      }
      if (s.kind === "assign" && s.target.op === "index" && s.target.array.op === "local") {
        const g = env.get(s.target.array.name);
        if (g !== undefined) this.writtenArrays.add(g);
      }
    };
    walkStmts(this.ir.body, env, visitExpr, visitStmt);
  }

  // -------------------------------------------------------------------------------------------
  // Expressions

  expr(e: Expr): string {
    switch (e.op) {
      case "literal":
        return this.literal(e);
      case "local":
        return this.local(e);
      case "binary":
        return this.binary(e);
      case "unary":
        return this.unary(e);
      case "cast":
        return this.cast(e);
      case "index":
        return this.index(e);
      case "field":
        return this.field(e);
      case "call":
        return this.call(e);
      case "index_intrinsic":
        return this.indexIntrinsic(e);
      case "math":
        return this.math(e);
      case "atomic":
        return this.atomic(e);
      case "select":
        return this.select(e);
      case "match":
        return this.match(e);
      case "gridpos":
        return this.gridpos(e);
      case "neighbor":
        return this.neighbor(e);
      case "now":
        return this.now(e);
      case "hlc_part":
        return this.hlcPart(e);
    }
  }

  literal(e: ExprOf<"literal">): string {
    if (e.type.kind !== "scalar") return this.fail("a literal must be a scalar", e.loc);
    return this.literalOf(e.type.scalar, e.value, e.loc);
  }

  literalOf(s: ScalarType, raw: number | boolean | bigint, loc: Loc): string {
    if (typeof raw === "bigint") {
      return this.fail(`the ${s} literal ${raw}n: 64-bit integers are copy-only in WGSL`, loc);
    }
    const v = Number(raw);
    switch (s) {
      case "bool":
        return raw === true || v !== 0 ? "true" : "false";
      case "i32": {
        const i = v | 0;
        // 2147483648i is out of range, so the minimum cannot be written as a negated literal.
        if (i === -2147483648) return "(-2147483647i - 1i)";
        return i < 0 ? `(${i}i)` : `${i}i`;
      }
      case "u32":
        return `${v >>> 0}u`;
      case "f32":
        return f32Literal(v);
      case "u64":
      case "i64": {
        const b = BigInt.asUintN(64, BigInt(Math.trunc(v)));
        return `vec2<u32>(${Number(b & 0xffff_ffffn)}u, ${Number(b >> 32n)}u)`;
      }
      case "f64":
        return this.scalarType("f64", loc);
    }
  }

  local(e: ExprOf<"local">): string {
    const alias = this.scope.aliases.get(e.name);
    if (alias !== undefined) return this.expr(alias);
    if (e.type.kind === "struct") {
      if (this.scope.fn === undefined && e.name === this.msgName) return "rk_msgs[rk_slot]";
      if (this.scope.fn === undefined && e.name === this.stateName) return "rk_state";
    }
    if (e.type.kind === "array") return this.arrayRef(e).wgsl;
    if (e.type.kind === "gridpos" || e.type.kind === "ctx") {
      return this.fail(`${e.name} is only usable through its members`, e.loc);
    }
    this.typeText(e.type, e.loc);
    return e.name;
  }

  arrayRef(e: Expr): ArrayRef {
    if (e.op === "local") {
      const alias = this.scope.aliases.get(e.name);
      if (alias !== undefined) return this.arrayRef(alias);
      const ref = this.scope.arrays.get(e.name);
      if (ref !== undefined) return ref;
    }
    return this.fail("this array is not a kernel parameter or a sharedArray", e.loc);
  }

  binary(e: ExprOf<"binary">): string {
    this.check64(e.left.type, `operator ${e.operator}`, e.loc);
    this.check64(e.right.type, `operator ${e.operator}`, e.loc);
    const l = this.expr(e.left);
    if (e.operator === "<<" || e.operator === ">>" || e.operator === ">>>") {
      return `(${l} ${e.operator === "<<" ? "<<" : ">>"} ${this.shiftAmount(e.right)})`;
    }
    if (e.operator === "%" && e.type.kind === "scalar" && e.type.scalar === "i32") {
      return `${this.iremHelper()}(${l}, ${this.expr(e.right)})`;
    }
    return `(${l} ${e.operator} ${this.expr(e.right)})`;
  }

  /**
   * i32 remainder as a - (a / b) * b. WGSL's \`%\` is already the truncated remainder JS and C
   * give, but on the H100's Vulkan driver (through wgpu) it returned wrong values for negative
   * operands (bench/results/dsl-corpus-deno.json, 2026-11-24) while \`/\` was right.
   */
  iremHelper(): string {
    return this.helper(
      "rk_irem",
      `fn rk_irem(a: i32, b: i32) -> i32 {
  if (b == 0i) { return 0i; }
  return a - (a / b) * b;
}`,
    );
  }

  /** A u32 shift amount; literals are masked as JS masks them (WGSL rejects ≥ 32 in constants). */
  shiftAmount(e: Expr): string {
    if (e.op === "literal") return `${Number(e.value) & 31}u`;
    const r = this.expr(e);
    return e.type.kind === "scalar" && e.type.scalar === "u32" ? r : `u32(${r})`;
  }

  unary(e: ExprOf<"unary">): string {
    this.check64(e.operand.type, `operator ${e.operator}`, e.loc);
    const o = this.expr(e.operand);
    if (e.operator === "-" && e.type.kind === "scalar" && e.type.scalar === "u32") {
      return `(0u - ${o})`; // WGSL has no unary minus on u32; JS wraps the same way
    }
    return `(${e.operator}${o})`;
  }

  cast(e: ExprOf<"cast">): string {
    const from = e.value.type.kind === "scalar" ? e.value.type.scalar : undefined;
    if (from === undefined) return this.fail("only scalars can be converted", e.loc);
    this.scalarType(from, e.loc);
    this.scalarType(e.to, e.loc);
    const v = this.expr(e.value);
    if (from === e.to) return v;
    if (from === "u64" || from === "i64" || e.to === "u64" || e.to === "i64") {
      return this.fail(
        `converting ${from} to ${e.to}: 64-bit integers are copy-only in WGSL`,
        e.loc,
      );
    }
    if (from === "f32" && e.to === "i32") {
      return `${
        this.helper(
          "rk_f32_to_i32",
          `// JS (x | 0) wraps values in [2^31, 2^32) where WGSL's i32() saturates.
fn rk_f32_to_i32(x: f32) -> i32 {
  if (x >= 2147483648.0f) { return bitcast<i32>(u32(x)); }
  return i32(x);
}`,
        )
      }(${v})`;
    }
    if (from === "f32" && e.to === "u32") {
      return `${
        this.helper(
          "rk_f32_to_u32",
          `// JS (x >>> 0) wraps negative values where WGSL's u32() saturates at 0.
fn rk_f32_to_u32(x: f32) -> u32 {
  if (x < 0.0f) { return bitcast<u32>(i32(x)); }
  return u32(x);
}`,
        )
      }(${v})`;
    }
    return `${e.to}(${v})`;
  }

  index(e: ExprOf<"index">): string {
    const a = e.array.type;
    if (a.kind === "array" && a.space === "field") return this.fieldElement(e);
    const ref = this.arrayRef(e.array);
    const at = `${ref.wgsl}[${this.expr(e.index)}]`;
    return this.atomicArrays.has(ref.wgsl) ? `atomicLoad(&${at})` : at;
  }

  /** A field array as an expression: the aliased field it stands for. */
  resolveField(e: Expr): Expr {
    if (e.op === "local") {
      const alias = this.scope.aliases.get(e.name);
      if (alias !== undefined) return this.resolveField(alias);
    }
    return e;
  }

  /** `base.f[i]` of a message/state array field; sub-word elements through the accessor. */
  fieldElement(e: ExprOf<"index">): string {
    const arr = this.resolveField(e.array);
    const at = arr.type.kind === "array" ? arr.type.storage : "u32";
    if (arr.op === "field" && SUB_WORD.has(at)) {
      const s = this.structOf(arr.base);
      return `${s.name}_get_${arr.name}(${this.expr(arr.base)}, u32(${this.expr(e.index)}))`;
    }
    if (at === "f64") this.scalarType("f64", e.loc);
    return `${this.expr(arr)}[${this.expr(e.index)}]`;
  }

  structOf(base: Expr): StructType {
    const b = this.resolveField(base);
    if (b.type.kind !== "struct") return this.fail("field access on a non-struct", base.loc);
    return b.type.struct;
  }

  field(e: ExprOf<"field">): string {
    const s = this.structOf(e.base);
    if (e.storage === "f64") {
      return this.fail(`field ${e.name} is f64, which WGSL cannot compute with`, e.loc);
    }
    const base = this.expr(e.base);
    if (SUB_WORD.has(e.storage)) return `${s.name}_get_${e.name}(${base})`;
    return `${base}.${e.name}`;
  }

  call(e: ExprOf<"call">): string {
    const f = this.#functionByName.get(e.callee);
    if (f === undefined) return this.fail(`unknown device function ${e.callee}`, e.loc);
    const refs: ArrayRef[] = [];
    const args: string[] = [];
    f.params.forEach((p, i) => {
      const a = e.args[i];
      if (p.type.kind === "array") refs.push(this.arrayRef(a));
      else args.push(this.expr(a));
    });
    return `${this.ensureFunction(f, refs)}(${args.join(", ")})`;
  }

  indexIntrinsic(e: ExprOf<"index_intrinsic">): string {
    const axis = e.axis === "x" ? 0 : e.axis === "y" ? 1 : 2;
    switch (e.which) {
      case "threadIdx":
        return `i32(rk_lid.${e.axis})`;
      case "blockIdx":
        return `i32(rk_wid.${e.axis})`;
      case "gridDim":
        return `i32(rk_nwg.${e.axis})`;
      case "blockDim":
        return `${this.ir.workgroupSize[axis]}i`;
    }
  }

  math(e: ExprOf<"math">): string {
    for (const a of e.args) {
      if (a.type.kind === "scalar") this.scalarType(a.type.scalar, a.loc);
      this.check64(a.type, `Math.${e.fn}`, a.loc);
    }
    const args = e.args.map((a) => this.expr(a));
    switch (e.fn) {
      case "rsqrt":
        return `inverseSqrt(${args[0]})`;
      case "clamp":
        // JS's min(max(x, lo), hi) is defined for lo > hi too; WGSL's clamp is not.
        return `min(max(${args[0]}, ${args[1]}), ${args[2]})`;
      default:
        return `${e.fn}(${args.join(", ")})`;
    }
  }

  atomic(e: ExprOf<"atomic">): string {
    if (e.atomic === "compareExchange") {
      return this.fail(
        "atomicCompareExchange must be a statement or the initialiser of a const/let",
        e.loc,
      );
    }
    const ref = this.arrayRef(e.array);
    const fn = {
      add: "atomicAdd",
      sub: "atomicSub",
      min: "atomicMin",
      max: "atomicMax",
      exchange: "atomicExchange",
    }[e.atomic];
    return `${fn}(&${ref.wgsl}[${this.expr(e.index)}], ${this.expr(e.args[0])})`;
  }

  select(e: ExprOf<"select">): string {
    return `select(${this.expr(e.else)}, ${this.expr(e.then)}, ${this.expr(e.cond)})`;
  }

  match(e: ExprOf<"match">): string {
    const vt = e.value.type.kind === "scalar" ? e.value.type.scalar : "i32";
    if (isSimplePath(e.value)) {
      const v = this.expr(e.value);
      let out = this.expr(e.fallback);
      for (let i = e.cases.length - 1; i >= 0; i--) {
        const c = e.cases[i];
        out = `select(${out}, ${this.expr(c.expr)}, ${v} == ${this.literalOf(vt, c.label, e.loc)})`;
      }
      return out;
    }
    // The value is evaluated once: a function takes it and every (side-effect free) case.
    const name = this.names.fresh("rk_match");
    const rt = this.typeText(e.type, e.loc);
    const params = [`v: ${this.scalarType(vt, e.loc)}`, ...e.cases.map((_, i) => `c${i}: ${rt}`)];
    let body = "d";
    for (let i = e.cases.length - 1; i >= 0; i--) {
      body = `select(${body}, c${i}, v == ${this.literalOf(vt, e.cases[i].label, e.loc)})`;
    }
    this.helper(
      name,
      `fn ${name}(${[...params, `d: ${rt}`].join(", ")}) -> ${rt} {
  return ${body};
}`,
    );
    const args = [e.value, ...e.cases.map((c) => c.expr), e.fallback].map((a) => this.expr(a));
    return `${name}(${args.join(", ")})`;
  }

  gridpos(e: ExprOf<"gridpos">): string {
    if (this.ir.stencil === undefined || this.scope.fn !== undefined) {
      return this.fail("GridPos members exist only in a stencil body", e.loc);
    }
    return `rk_${e.member}`;
  }

  neighbor(e: ExprOf<"neighbor">): string {
    if (this.ir.stencil === undefined || this.scope.fn !== undefined) {
      return this.fail("neighbour access exists only in a stencil body", e.loc);
    }
    const ref = this.arrayRef(e.array);
    const terms: string[] = ["rk_idx"];
    if (e.dz !== 0) terms.push(`${this.literalOf("i32", e.dz, e.loc)} * rk_plane`);
    if (e.dy !== 0) terms.push(`${this.literalOf("i32", e.dy, e.loc)} * rk_row`);
    if (e.dx !== 0) terms.push(this.literalOf("i32", e.dx, e.loc));
    const at = `${ref.wgsl}[${terms.join(" + ")}]`;
    return this.atomicArrays.has(ref.wgsl) ? `atomicLoad(&${at})` : at;
  }

  now(e: ExprOf<"now">): string {
    if (this.ir.handler === undefined) return this.fail("ctx.now() exists only in handlers", e.loc);
    return `${
      this.helper(
        "rk_now",
        `// The kernel's HLC word (control[3] low, control[4] high) + 1, with carry.
fn rk_now() -> vec2<u32> {
  let lo = rk_control[3] + 1u;
  let hi = rk_control[4] + select(0u, 1u, lo == 0u);
  rk_control[3] = lo;
  rk_control[4] = hi;
  return vec2<u32>(lo, hi);
}`,
      )
    }()`;
  }

  hlcPart(e: ExprOf<"hlc_part">): string {
    const w = this.expr(e.value);
    switch (e.part) {
      case "physical":
        return `${
          this.helper(
            "rk_hlc_physical",
            `fn rk_hlc_physical(w: vec2<u32>) -> vec2<u32> {
  return vec2<u32>((w.x >> 16u) | (w.y << 16u), w.y >> 16u);
}`,
          )
        }(${w})`;
      case "logical":
        return `(${w}.x & 0xffffu)`;
      case "nodeId":
        // Takes the word so that `ctx.now().nodeId` still ticks the clock, as in JS.
        return `${
          this.helper(
            "rk_hlc_node",
            `fn rk_hlc_node(w: vec2<u32>) -> u32 {
  return rk_control[5];
}`,
          )
        }(${w})`;
    }
  }

  // -------------------------------------------------------------------------------------------
  // Device functions

  ensureFunction(f: IrFunction, refs: readonly ArrayRef[]): string {
    const key = `${f.name}|${refs.map((r) => r.wgsl).join(",")}`;
    const done = this.#specialised.get(key);
    if (done !== undefined) return done;
    const name = refs.length === 0 ? f.name : `${f.name}_rk_${refs.map((r) => r.wgsl).join("_")}`;
    this.#specialised.set(key, name);
    const saved = this.scope;
    this.scope = {
      fn: f.name,
      source: undefined,
      arrays: new Map(),
      aliases: new Map(),
      returnsValue: f.returns.kind !== "void",
    };
    try {
      const assigned = assignedLocals(f.body);
      const params: string[] = [];
      const prologue: string[] = [];
      let r = 0;
      for (const p of f.params) {
        if (p.type.kind === "array") {
          this.scope.arrays.set(p.name, refs[r++]);
          continue;
        }
        const t = this.typeText(p.type, undefined);
        if (assigned.has(p.name)) {
          // WGSL parameters are immutable; JS lets a function reassign its own.
          params.push(`rk_arg_${p.name}: ${t}`);
          prologue.push(`  var ${p.name}: ${t} = rk_arg_${p.name};`);
        } else {
          params.push(`${p.name}: ${t}`);
        }
      }
      const ret = f.returns.kind === "void" ? "" : ` -> ${this.typeText(f.returns, undefined)}`;
      const body = this.block(f.body, 1);
      const note = refs.length === 0
        ? ""
        : `// ${f.name} specialised for ${refs.map((x) => x.wgsl).join(", ")}\n`;
      this.functions.push(
        `${note}fn ${name}(${params.join(", ")})${ret} {\n${[...prologue, ...body].join("\n")}\n}`,
      );
    } finally {
      this.scope = saved;
    }
    return name;
  }

  // -------------------------------------------------------------------------------------------
  // Statements

  block(stmts: readonly Stmt[], depth: number): string[] {
    const out: string[] = [];
    for (const s of stmts) this.stmt(s, depth, out);
    return out;
  }

  stmt(s: Stmt, depth: number, out: string[]): void {
    switch (s.kind) {
      case "let":
        return this.letStmt(s, depth, out, false);
      case "shared":
        return this.sharedStmt(s);
      case "assign":
        return this.assignStmt(s, depth, out);
      case "expr":
        return this.exprStmt(s, depth, out);
      case "if":
        return this.ifStmt(s, depth, out);
      case "for":
        return this.forStmt(s, depth, out);
      case "while":
        return this.whileStmt(s, depth, out);
      case "break":
        out.push(`${pad(depth)}break;`);
        return;
      case "continue":
        out.push(`${pad(depth)}continue;`);
        return;
      case "switch":
        return this.switchStmt(s, depth, out);
      case "return":
        return this.returnStmt(s, depth, out);
      case "reply":
        return this.replyStmt(s, depth, out);
      case "barrier":
        // __syncthreads() also orders global memory within the block; workgroupBarrier alone
        // covers only workgroup memory.
        out.push(`${pad(depth)}storageBarrier();`, `${pad(depth)}workgroupBarrier();`);
        return;
      case "send":
        return this.sendStmt(s, depth, out);
    }
  }

  /**
   * `let`/`const`. Immutable struct and array locals initialised from a path alias it (a state
   * view in JS is a reference, not a copy). With `declared`, the variable already exists (a
   * stencil's hoisted top-level locals) and only the value is assigned.
   */
  letStmt(s: StmtOf<"let">, depth: number, out: string[], declared: boolean): void {
    const p = pad(depth);
    if (
      (s.type.kind === "struct" || s.type.kind === "array") && !s.mutable && s.init !== undefined &&
      (s.init.op === "local" || s.init.op === "field")
    ) {
      this.scope.aliases.set(s.name, s.init);
      return;
    }
    if (s.init?.op === "atomic" && s.init.atomic === "compareExchange") {
      if (!declared) out.push(`${p}var ${s.name}: ${this.typeText(s.type, s.loc)};`);
      this.compareExchange(s.init, s.name, depth, out);
      return;
    }
    const t = this.typeText(s.type, s.loc);
    if (declared) {
      if (s.init !== undefined) out.push(`${p}${s.name} = ${this.expr(s.init)};`);
      return;
    }
    if (s.init === undefined) out.push(`${p}var ${s.name}: ${t};`);
    else out.push(`${p}${s.mutable ? "var" : "let"} ${s.name}: ${t} = ${this.expr(s.init)};`);
  }

  sharedStmt(s: StmtOf<"shared">): void {
    const t = this.scalarType(s.element, s.loc);
    const el = this.atomicArrays.has(s.name) ? `atomic<${t}>` : t;
    const ref: ArrayRef = { wgsl: s.name, element: s.element, space: "shared" };
    this.scope.arrays.set(s.name, ref);
    this.globals.set(s.name, ref);
    this.sharedDecls.push(`var<workgroup> ${s.name}: array<${el}, ${s.length}>;`);
  }

  /** Strong compare-exchange: retry the weak one while it fails spuriously. */
  compareExchange(e: ExprOf<"atomic">, into: string | undefined, depth: number, out: string[]) {
    const p = pad(depth);
    const ref = this.arrayRef(e.array);
    const t = this.names.fresh();
    out.push(
      `${p}{`,
      `${p}  let ${t}_i = ${this.expr(e.index)};`,
      `${p}  let ${t}_e = ${this.expr(e.args[0])};`,
      `${p}  let ${t}_d = ${this.expr(e.args[1])};`,
      `${p}  loop {`,
      `${p}    let ${t} = atomicCompareExchangeWeak(&${ref.wgsl}[${t}_i], ${t}_e, ${t}_d);`,
      `${p}    if (${t}.exchanged || ${t}.old_value != ${t}_e) {`,
      ...(into === undefined ? [] : [`${p}      ${into} = ${t}.old_value;`]),
      `${p}      break;`,
      `${p}    }`,
      `${p}  }`,
      `${p}}`,
    );
  }

  assignStmt(s: StmtOf<"assign">, depth: number, out: string[]): void {
    if (s.value.op === "atomic" && s.value.atomic === "compareExchange") {
      if (s.target.op !== "local" || s.operator !== "=") {
        this.fail("atomicCompareExchange must be a statement or the initialiser of a let", s.loc);
      }
      this.compareExchange(s.value, s.target.name, depth, out);
      return;
    }
    this.assign(s.target, s.operator, s.value, s.loc, depth, out);
  }

  /** `target op= value` for every kind of target. */
  assign(target: Expr, op: AssignOp, value: Expr, loc: Loc, depth: number, out: string[]): void {
    const p = pad(depth);
    if (op !== "=") this.check64(target.type, `operator ${op}`, loc);
    const t = this.resolveField(target);
    if (t.op === "field" && SUB_WORD.has(t.storage)) {
      const s = this.structOf(t.base);
      const b = this.expr(t.base);
      const v = this.compound(op, `${s.name}_get_${t.name}(${b})`, value);
      out.push(`${p}${b} = ${s.name}_with_${t.name}(${b}, ${v});`);
      return;
    }
    if (t.op === "field" && t.storage === "array" && value.type.kind === "array") {
      return this.copyArrayField(t, value, loc, depth, out);
    }
    if (t.op === "index") {
      const arr = this.resolveField(t.array);
      const at = arr.type.kind === "array" ? arr.type.storage : "u32";
      if (arr.op === "field" && SUB_WORD.has(at)) {
        const s = this.structOf(arr.base);
        const b = this.expr(arr.base);
        const i = this.names.fresh();
        out.push(`${p}let ${i} = u32(${this.expr(t.index)});`);
        const v = this.compound(op, `${s.name}_get_${arr.name}(${b}, ${i})`, value);
        out.push(`${p}${b} = ${s.name}_with_${arr.name}(${b}, ${i}, ${v});`);
        return;
      }
      if (arr.type.kind === "array" && arr.type.space !== "field") {
        const ref = this.arrayRef(arr);
        if (this.atomicArrays.has(ref.wgsl)) {
          const i = this.names.fresh();
          out.push(`${p}let ${i} = ${this.expr(t.index)};`);
          const v = this.compound(op, `atomicLoad(&${ref.wgsl}[${i}])`, value);
          out.push(`${p}atomicStore(&${ref.wgsl}[${i}], ${v});`);
          return;
        }
      }
    }
    if (t.op === "field" && t.storage === "f64") {
      this.fail(`field ${t.name} is f64, which WGSL cannot compute with`, loc);
    }
    const lhs = this.expr(t);
    if (op === "<<=" || op === ">>=" || op === ">>>=") {
      out.push(`${p}${lhs} ${op === "<<=" ? "<<=" : ">>="} ${this.shiftAmount(value)};`);
      return;
    }
    if (op === "%=" && t.type.kind === "scalar" && t.type.scalar === "i32") {
      out.push(`${p}${lhs} = ${this.iremHelper()}(${lhs}, ${this.expr(value)});`);
      return;
    }
    out.push(`${p}${lhs} ${op} ${this.expr(value)};`);
  }

  /** The new value of a read-modify-write: `old op value` (or `value` for `=`). */
  compound(op: AssignOp, old: string, value: Expr): string {
    if (op === "=") return this.expr(value);
    const bin = op.slice(0, -1) as BinaryOp;
    if (bin === "<<" || bin === ">>" || bin === ">>>") {
      return `(${old} ${bin === "<<" ? "<<" : ">>"} ${this.shiftAmount(value)})`;
    }
    if (bin === "%" && value.type.kind === "scalar" && value.type.scalar === "i32") {
      return `${this.iremHelper()}(${old}, ${this.expr(value)})`;
    }
    return `(${old} ${bin} ${this.expr(value)})`;
  }

  /** Array field ← array value, element by element where either side packs sub-words. */
  copyArrayField(
    target: ExprOf<"field">,
    value: Expr,
    loc: Loc,
    depth: number,
    out: string[],
  ): void {
    const p = pad(depth);
    const src = this.resolveField(value);
    const tt = target.type;
    const st = src.type;
    if (tt.kind !== "array" || st.kind !== "array") return this.fail("array copy", loc);
    const tSub = SUB_WORD.has(tt.storage);
    const sSub = src.op === "field" && SUB_WORD.has(st.storage);
    if (!tSub && !sSub && src.op === "field") {
      out.push(`${p}${this.expr(target)} = ${this.expr(src)};`);
      return;
    }
    const n = tt.length ?? st.length;
    if (n === undefined) return this.fail("copying an array of unknown length", loc);
    const k = this.names.fresh("rk_k");
    let read: string;
    if (src.op === "field" && sSub) {
      read = `${this.structOf(src.base).name}_get_${src.name}(${this.expr(src.base)}, ${k})`;
    } else if (src.op === "field") {
      read = `${this.expr(src)}[${k}]`;
    } else {
      const ref = this.arrayRef(src);
      read = this.atomicArrays.has(ref.wgsl)
        ? `atomicLoad(&${ref.wgsl}[${k}])`
        : `${ref.wgsl}[${k}]`;
    }
    out.push(`${p}for (var ${k} = 0u; ${k} < ${n}u; ${k} += 1u) {`);
    if (tSub) {
      const s = this.structOf(target.base);
      const b = this.expr(target.base);
      out.push(`${p}  ${b} = ${s.name}_with_${target.name}(${b}, ${k}, ${read});`);
    } else {
      out.push(`${p}  ${this.expr(target)}[${k}] = ${read};`);
    }
    out.push(`${p}}`);
  }

  exprStmt(s: StmtOf<"expr">, depth: number, out: string[]): void {
    const e = s.expr;
    if (e.op === "atomic" && e.atomic === "compareExchange") {
      return this.compareExchange(e, undefined, depth, out);
    }
    const text = this.expr(e);
    out.push(`${pad(depth)}${e.type.kind === "void" ? "" : "_ = "}${text};`);
  }

  ifStmt(s: StmtOf<"if">, depth: number, out: string[]): void {
    const p = pad(depth);
    out.push(`${p}if (${this.expr(s.cond)}) {`, ...this.block(s.then, depth + 1));
    if (s.else.length > 0) out.push(`${p}} else {`, ...this.block(s.else, depth + 1));
    out.push(`${p}}`);
  }

  /** An update statement that fits a WGSL `for` header, or undefined. */
  forUpdate(s: Stmt): string | undefined {
    const lines: string[] = [];
    if (s.kind === "assign" || (s.kind === "expr" && s.expr.op === "call")) {
      this.stmt(s, 0, lines);
      if (lines.length === 1 && !lines[0].startsWith("let ")) return lines[0].replace(/;$/, "");
    }
    return undefined;
  }

  forStmt(s: StmtOf<"for">, depth: number, out: string[]): void {
    const p = pad(depth);
    const init = s.init.length === 1 && s.init[0].kind === "let" && s.init[0].init !== undefined &&
        s.init[0].init.op !== "atomic" && s.init[0].type.kind === "scalar"
      ? s.init[0]
      : undefined;
    const update = s.update.length === 0
      ? ""
      : s.update.length === 1
      ? this.forUpdate(s.update[0])
      : undefined;
    const cond = s.cond === undefined ? "" : this.expr(s.cond);
    if (update !== undefined && (init !== undefined || s.init.length === 0)) {
      const head = init === undefined
        ? ""
        : `var ${init.name}: ${this.typeText(init.type, init.loc)} = ${this.expr(init.init!)}`;
      out.push(`${p}for (${head}; ${cond}; ${update}) {`, ...this.block(s.body, depth + 1));
      out.push(`${p}}`);
      return;
    }
    // Several updates (or ones that need statements): `continuing` runs them on `continue` too.
    out.push(`${p}{`, ...this.block(s.init, depth + 1), `${p}  loop {`);
    if (s.cond !== undefined) out.push(`${p}    if (!(${cond})) { break; }`);
    out.push(...this.block(s.body, depth + 2));
    if (s.update.length > 0) {
      out.push(`${p}    continuing {`, ...this.block(s.update, depth + 3), `${p}    }`);
    }
    out.push(`${p}  }`, `${p}}`);
  }

  whileStmt(s: StmtOf<"while">, depth: number, out: string[]): void {
    const p = pad(depth);
    out.push(`${p}while (${this.expr(s.cond)}) {`, ...this.block(s.body, depth + 1), `${p}}`);
  }

  switchStmt(s: StmtOf<"switch">, depth: number, out: string[]): void {
    const p = pad(depth);
    const vt = s.value.type.kind === "scalar" ? s.value.type.scalar : "i32";
    if (vt !== "i32" && vt !== "u32") this.fail("switch needs an i32 or u32 value", s.loc);
    out.push(`${p}switch (${this.expr(s.value)}) {`);
    for (const c of s.cases) {
      const labels = c.labels.map((l) => this.literalOf(vt, l, s.loc)).join(", ");
      out.push(`${p}  case ${labels}: {`, ...this.block(c.body, depth + 2), `${p}  }`);
    }
    // WGSL requires a default clause; an empty one matches JS's "no case matched".
    out.push(`${p}  default: {`, ...this.block(s.fallback ?? [], depth + 2), `${p}  }`, `${p}}`);
  }

  returnStmt(s: StmtOf<"return">, depth: number, out: string[]): void {
    const p = pad(depth);
    if (s.value !== undefined && this.scope.returnsValue) {
      out.push(`${p}return ${this.expr(s.value)};`);
    } else {
      out.push(`${p}return;`);
    }
  }

  /** Field inits into the struct variable `v` of type `s`. */
  initFields(v: string, s: StructType, fields: readonly FieldInit[], depth: number, out: string[]) {
    const p = pad(depth);
    for (const f of fields) {
      const layout = s.fields.find((x) => x.name === f.name);
      if (layout === undefined) this.fail(`${s.name} has no field ${f.name}`, f.value.loc);
      if (f.storage === "f64") {
        this.fail(`field ${f.name} is f64, which WGSL cannot compute with`, f.value.loc);
      }
      if (SUB_WORD.has(f.storage)) {
        out.push(`${p}${v} = ${s.name}_with_${f.name}(${v}, ${this.expr(f.value)});`);
      } else if (f.storage === "array" && f.value.type.kind === "array") {
        const target = syntheticField(v, s, layout, f);
        this.copyArrayField(target, f.value, f.value.loc, depth, out);
      } else {
        out.push(`${p}${v}.${f.name} = ${this.expr(f.value)};`);
      }
    }
  }

  replyStmt(s: StmtOf<"reply">, depth: number, out: string[]): void {
    const p = pad(depth);
    const output = this.ir.handler?.output;
    if (output === undefined) return this.fail("a reply needs the kernel's output schema", s.loc);
    const r = this.names.fresh("rk_reply");
    out.push(`${p}var ${r}: ${output.name};`);
    this.initFields(r, output, s.fields, depth, out);
    out.push(
      `${p}rk_replies[rk_i] = ${r};`,
      `${p}rk_replied[rk_i] = 1u;`,
      `${p}return;`,
    );
  }

  sendStmt(s: StmtOf<"send">, depth: number, out: string[]): void {
    const p = pad(depth);
    const target = this.ir.handler?.sendTargets[s.target];
    if (target === undefined) return this.fail(`send target ${s.target} is not declared`, s.loc);
    const schema = target.schema;
    const m = this.names.fresh("rk_send");
    // Values first: JS evaluates them (ctx.now() ticks) even when the outbox is full.
    out.push(`${p}var ${m}: ${schema.name};`);
    this.initFields(m, schema, s.fields, depth, out);
    const words = schema.size / 4;
    out.push(
      `${p}{`,
      `${p}  let rk_k = rk_control[2];`,
      `${p}  rk_control[2] = rk_k + 1u;`,
      `${p}  if (rk_k < rk_control[1]) {`,
      `${p}    let rk_at = rk_k * ${this.outboxStride()}u;`,
      `${p}    rk_outbox[rk_at] = ${s.target}u;`,
      `${p}    rk_outbox[rk_at + 1u] = rk_i;`,
      `${p}    for (var rk_w = 0u; rk_w < ${words}u; rk_w += 1u) {`,
      `${p}      rk_outbox[rk_at + 2u + rk_w] = 0u;`,
      `${p}    }`,
      `${p}    ${this.putFunction(schema)}(rk_at + 2u, ${m});`,
      `${p}  }`,
      `${p}}`,
    );
  }

  outboxStride(): number {
    const targets = this.ir.handler?.sendTargets ?? [];
    const payload = Math.max(0, ...targets.map((t) => t.schema.size));
    return 2 + Math.ceil(payload / 4);
  }

  /** `rk_put_<S>(at, v)`: writes every word of `v` (schema byte layout) into the outbox. */
  putFunction(s: StructType): string {
    const name = `rk_put_${s.name}`;
    if (this.helpers.has(name)) return name;
    this.helpers.set(name, "");
    const lines: string[] = [];
    for (const f of s.fields) {
      if (f.align < 4) continue;
      this.putValue(f.type, `v.${f.name}`, `at + ${f.offset / 4}u`, 1, lines);
    }
    for (const run of wordRuns(s)) {
      const at = run.start / 4;
      if (run.words === 1) lines.push(`  rk_outbox[at + ${at}u] = v._w${run.start};`);
      else {
        for (let w = 0; w < run.words; w++) {
          lines.push(`  rk_outbox[at + ${at + w}u] = v._w${run.start}[${w}];`);
        }
      }
    }
    this.helpers.delete(name); // re-insert after the nested put functions it calls
    this.helpers.set(name, `fn ${name}(at: u32, v: ${s.name}) {\n${lines.join("\n")}\n}`);
    return name;
  }

  putValue(t: FieldSpec, v: string, at: string, depth: number, lines: string[]): void {
    const p = pad(depth);
    if (typeof t === "string") {
      if (t === "u32") lines.push(`${p}rk_outbox[${at}] = ${v};`);
      else if (t === "i32" || t === "f32") lines.push(`${p}rk_outbox[${at}] = bitcast<u32>(${v});`);
      else {
        lines.push(`${p}rk_outbox[${at}] = ${v}.x;`, `${p}rk_outbox[${at} + 1u] = ${v}.y;`);
      }
      return;
    }
    if (t instanceof ArrayType) {
      const k = `rk_e${depth}`;
      lines.push(`${p}for (var ${k} = 0u; ${k} < ${t.length}u; ${k} += 1u) {`);
      this.putValue(t.element, `${v}[${k}]`, `${at} + ${k} * ${t.stride / 4}u`, depth + 1, lines);
      lines.push(`${p}}`);
      return;
    }
    lines.push(`${p}${this.putFunction(t as StructType)}(${at}, ${v});`);
  }

  // -------------------------------------------------------------------------------------------
  // Kernels

  emit(): WgslSource {
    this.analyse();
    switch (this.ir.kind) {
      case "handler":
        return this.emitHandler();
      default:
        return this.emitGrid();
    }
  }

  /** Module text from its parts, in dependency-free WGSL order (readability only). */
  assemble(head: string[], main: string[]): string {
    const helpers = [...this.helpers.values()].filter((h) => h !== "");
    return [
      `// ${this.ir.kind} kernel ${this.ir.name}: generated by @ringkernel/core (WGSL ABI v1).`,
      ...head,
      ...(this.sharedDecls.length > 0 ? ["", ...this.sharedDecls] : []),
      "",
      "var<private> rk_lid: vec3<u32>;",
      "var<private> rk_wid: vec3<u32>;",
      "var<private> rk_nwg: vec3<u32>;",
      ...[...helpers, ...this.functions].flatMap((f) => ["", f]),
      "",
      ...main,
      "",
    ].join("\n");
  }

  emitGrid(): WgslSource {
    const ir = this.ir;
    const st = ir.stencil;
    const bindings: WgslBinding[] = [];
    const head: string[] = [];
    const members: WgslUniformMember[] = [];
    const prologue: string[] = [];
    const assigned = assignedLocals(ir.body);
    ir.params.forEach((p: IrParam, i) => {
      if (p.type.kind === "array") {
        const t = this.scalarType(p.type.element, undefined);
        const atomic = this.atomicArrays.has(p.name);
        if (atomic && p.type.element === "f32") {
          this.fail(`atomics on ${p.name} need an i32[] or u32[] array`, undefined);
        }
        const written = this.writtenArrays.has(p.name);
        const ref: ArrayRef = { wgsl: p.name, element: p.type.element, space: "global" };
        this.scope.arrays.set(p.name, ref);
        this.globals.set(p.name, ref);
        bindings.push({
          binding: bindings.length,
          name: p.name,
          param: i,
          kind: written ? "storage" : "read-only-storage",
        });
        head.push(
          `@group(0) @binding(${bindings.length - 1}) var<storage, ${
            written ? "read_write" : "read"
          }> ${p.name}: array<${atomic ? `atomic<${t}>` : t}>;`,
        );
      } else if (p.type.kind === "scalar") {
        const s = p.type.scalar;
        const t = this.scalarType(s, undefined);
        if (s === "u64" || s === "i64") {
          this.fail(`parameter ${p.name}: no 64-bit scalars`, undefined);
        }
        members.push({
          name: p.name,
          type: s === "bool" ? "u32" : t as "f32" | "i32" | "u32",
          param: i,
        });
        const value = s === "bool" ? `rk_params.${p.name} != 0u` : `rk_params.${p.name}`;
        prologue.push(`  ${assigned.has(p.name) ? "var" : "let"} ${p.name}: ${t} = ${value};`);
      }
    });
    if (st !== undefined) {
      for (const d of ["rk_width", "rk_height", "rk_depth"]) {
        members.push({ name: d, type: "i32", param: undefined });
      }
    }
    let uniformSize = 0;
    if (members.length > 0) {
      uniformSize = roundUp(16, 4 * members.length);
      bindings.push({
        binding: bindings.length,
        name: "rk_params",
        param: undefined,
        kind: "uniform",
      });
      head.unshift(
        "struct RkParams {",
        ...members.map((m) => `  ${m.name}: ${m.type},`),
        "}",
        "",
      );
      head.push(`@group(0) @binding(${bindings.length - 1}) var<uniform> rk_params: RkParams;`);
    }
    const [wx, wy, wz] = ir.workgroupSize;
    const main: string[] = [
      `@compute @workgroup_size(${wx}, ${wy}, ${wz})`,
      "fn main(",
      "  @builtin(local_invocation_id) rk_lid_in: vec3<u32>,",
      "  @builtin(workgroup_id) rk_wid_in: vec3<u32>,",
      "  @builtin(num_workgroups) rk_nwg_in: vec3<u32>,",
      ") {",
      "  rk_lid = rk_lid_in;",
      "  rk_wid = rk_wid_in;",
      "  rk_nwg = rk_nwg_in;",
    ];
    let body: string[];
    if (st === undefined) {
      body = [...prologue, ...this.block(ir.body, 1)];
    } else {
      body = this.stencilBody(prologue);
    }
    main.push(...body, "}");
    return {
      code: this.assemble(head, main),
      entry: "main",
      bindings,
      uniformMembers: members,
      uniformSize,
      workgroupSize: ir.workgroupSize,
      outboxStride: 0,
      sendTargets: [],
      library: "",
    };
  }

  /**
   * The stencil prologue (cell coordinates, padded index) and body. Cells outside the interior
   * return at once; with barriers that return would make the barrier non-uniform, which WGSL
   * rejects, so there every top-level stretch between barriers runs under `if (rk_inside)`
   * instead, with the top-level locals declared before it.
   */
  stencilBody(prologue: string[]): string[] {
    const ir = this.ir;
    const st = ir.stencil!;
    const h = st.halo;
    const [wx, wy, wz] = ir.workgroupSize;
    const out = [
      "  let rk_width = rk_params.rk_width;",
      "  let rk_height = rk_params.rk_height;",
      "  let rk_depth = rk_params.rk_depth;",
      `  let rk_x = i32(rk_wid.x * ${wx}u + rk_lid.x);`,
      `  let rk_y = i32(rk_wid.y * ${wy}u + rk_lid.y);`,
      st.dims === 3 ? `  let rk_z = i32(rk_wid.z * ${wz}u + rk_lid.z);` : "  let rk_z = 0i;",
      `  let rk_row = rk_width + ${2 * h}i;`,
      `  let rk_plane = rk_row * (rk_height + ${2 * h}i);`,
      `  let rk_idx = ${
        st.dims === 3 ? `(rk_z + ${h}i) * rk_plane + ` : ""
      }(rk_y + ${h}i) * rk_row + rk_x + ${h}i;`,
      "  let rk_inside = rk_x < rk_width && rk_y < rk_height && rk_z < rk_depth;",
    ];
    if (!ir.usesBarrier) {
      out.push("  if (!rk_inside) { return; }", ...prologue, ...this.block(ir.body, 1));
      return out;
    }
    out.push(...prologue);
    const decls: string[] = [];
    const segments: string[] = [];
    let run: string[] = [];
    const flush = (): void => {
      if (run.length > 0) segments.push("  if (rk_inside) {", ...run, "  }");
      run = [];
    };
    for (const s of ir.body) {
      if (s.kind === "barrier") {
        flush();
        this.stmt(s, 1, segments);
      } else if (s.kind === "let") {
        const before = this.scope.aliases.size;
        this.letStmt(s, 2, run, true);
        if (this.scope.aliases.size === before) {
          decls.push(`  var ${s.name}: ${this.typeText(s.type, s.loc)};`);
        }
      } else {
        this.stmt(s, 2, run);
      }
    }
    flush();
    out.push(...decls, ...segments);
    return out;
  }

  emitHandler(): WgslSource {
    const ir = this.ir;
    const h = ir.handler!;
    const roots: StructType[] = [h.input];
    if (h.output !== undefined) roots.push(h.output);
    if (h.state !== undefined) roots.push(h.state);
    for (const t of h.sendTargets) roots.push(t.schema);
    const bindings: WgslBinding[] = [
      { binding: 0, name: "rk_msgs", param: undefined, kind: "read-only-storage" },
      { binding: 1, name: "rk_state", param: undefined, kind: "storage" },
      { binding: 2, name: "rk_replies", param: undefined, kind: "storage" },
      { binding: 3, name: "rk_replied", param: undefined, kind: "storage" },
      { binding: 4, name: "rk_outbox", param: undefined, kind: "storage" },
      { binding: 5, name: "rk_control", param: undefined, kind: "storage" },
    ];
    const head = [
      wgslStructs(roots).trimEnd(),
      "",
      `@group(0) @binding(0) var<storage, read> rk_msgs: array<${h.input.name}>;`,
      `@group(0) @binding(1) var<storage, read_write> rk_state: ${
        h.state?.name ?? "array<u32, 1>"
      };`,
      `@group(0) @binding(2) var<storage, read_write> rk_replies: array<${
        h.output?.name ?? "u32"
      }>;`,
      "@group(0) @binding(3) var<storage, read_write> rk_replied: array<u32>;",
      "@group(0) @binding(4) var<storage, read_write> rk_outbox: array<u32>;",
      "// control: [0] count, [1] send capacity, [2] send count, [3..4] HLC word, [5] nodeId",
      "@group(0) @binding(5) var<storage, read_write> rk_control: array<u32>;",
      "// Where rk_handle reads its message: set by the entry point before each call.",
      "var<private> rk_slot: u32;",
    ];
    const body = this.block(ir.body, 1);
    this.functions.push(`// The handler body for message rk_i; return ends that message.
fn rk_handle(rk_i: u32) {
${body.join("\n")}
}`);
    const main = [
      "@compute @workgroup_size(1)",
      "fn main() {",
      "  rk_nwg = vec3<u32>(1u);",
      "  let rk_n = rk_control[0];",
      "  for (var rk_i = 0u; rk_i < rk_n; rk_i += 1u) {",
      "    rk_replied[rk_i] = 0u;",
      "    rk_slot = rk_i;",
      "    rk_handle(rk_i);",
      "  }",
      "}",
    ];
    return {
      code: this.assemble(head, main),
      entry: "main",
      bindings,
      uniformMembers: [],
      uniformSize: 0,
      workgroupSize: [1, 1, 1],
      outboxStride: this.outboxStride(),
      sendTargets: h.sendTargets,
      library: this.assemble(head, []),
    };
  }
}

// ---------------------------------------------------------------------------------------------
// IR walking

function pad(depth: number): string {
  return "  ".repeat(depth);
}

function f32Literal(v: number): string {
  const f = Math.fround(v);
  if (Number.isNaN(f)) return "bitcast<f32>(0x7fc00000u)";
  if (f === Infinity) return "bitcast<f32>(0x7f800000u)";
  if (f === -Infinity) return "bitcast<f32>(0xff800000u)";
  if (Object.is(f, -0)) return "(-0.0f)";
  let s = shortestF32(Math.abs(f));
  if (!s.includes(".") && !s.includes("e")) s += ".0";
  return f < 0 ? `(-${s}f)` : `${s}f`;
}

const F32_MAX = 3.4028234663852886e38;
const F32_BITS = new Float32Array(1);
const U32_BITS = new Uint32Array(F32_BITS.buffer);

function f32Step(f: number, by: number): number {
  F32_BITS[0] = f;
  U32_BITS[0] += by;
  return F32_BITS[0];
}

/**
 * The shortest decimal spelling of the positive f32 `f` that reads back as `f`. Readers may go
 * through a double first, so a spelling whose double lies exactly halfway between two f32s
 * (where that second rounding could go either way) is skipped.
 */
function shortestF32(f: number): string {
  const halfUp = (f + f32Step(f, 1)) / 2;
  const halfDown = f === 0 ? -1 : (f + f32Step(f, -1)) / 2;
  for (let p = 1; p < 17; p++) {
    const s = f.toPrecision(p);
    const d = Number(s);
    // A spelling above the largest f32 (3.4028235e38) rounds to it, but Tint rejects it.
    if (Math.fround(d) === f && d !== halfUp && d !== halfDown && d <= F32_MAX) return String(d);
  }
  return String(f);
}

/** A `field` expression over the struct variable `v` (for reply and send field inits). */
function syntheticField(
  v: string,
  s: StructType,
  layout: FieldLayout,
  f: FieldInit,
): ExprOf<"field"> {
  const loc = f.value.loc;
  const base: Expr = {
    op: "local",
    name: v,
    type: { kind: "struct", struct: s, role: "nested" },
    loc,
  };
  return {
    op: "field",
    base,
    name: f.name,
    storage: f.storage,
    offset: layout.offset,
    type: fieldType(layout.type, f.value.type),
    loc,
  };
}

/** The DSL type a schema field reads as (`fallback` for what the DSL has no type for). */
function fieldType(t: FieldSpec, fallback: DslType): DslType {
  if (t instanceof ArrayType && typeof t.element === "string") {
    const k = t.element;
    const element: ScalarType = k === "u8" || k === "u16"
      ? "u32"
      : k === "i8" || k === "i16"
      ? "i32"
      : k;
    return { kind: "array", element, storage: k, space: "field", length: t.length };
  }
  return fallback;
}

function childExprs(e: Expr): Expr[] {
  switch (e.op) {
    case "binary":
      return [e.left, e.right];
    case "unary":
      return [e.operand];
    case "cast":
      return [e.value];
    case "index":
      return [e.array, e.index];
    case "field":
      return [e.base];
    case "call":
    case "math":
      return [...e.args];
    case "atomic":
      return [e.array, e.index, ...e.args];
    case "select":
      return [e.cond, e.then, e.else];
    case "match":
      return [e.value, ...e.cases.map((c) => c.expr), e.fallback];
    case "neighbor":
      return [e.array];
    case "hlc_part":
      return [e.value];
    default:
      return [];
  }
}

function stmtParts(s: Stmt): { exprs: Expr[]; blocks: (readonly Stmt[])[] } {
  switch (s.kind) {
    case "let":
      return { exprs: s.init === undefined ? [] : [s.init], blocks: [] };
    case "assign":
      return { exprs: [s.target, s.value], blocks: [] };
    case "expr":
      return { exprs: [s.expr], blocks: [] };
    case "if":
      return { exprs: [s.cond], blocks: [s.then, s.else] };
    case "for":
      return {
        exprs: s.cond === undefined ? [] : [s.cond],
        blocks: [s.init, s.update, s.body],
      };
    case "while":
      return { exprs: [s.cond], blocks: [s.body] };
    case "switch":
      return { exprs: [s.value], blocks: [...s.cases.map((c) => c.body), s.fallback ?? []] };
    case "return":
      return { exprs: s.value === undefined ? [] : [s.value], blocks: [] };
    case "reply":
    case "send":
      return { exprs: s.fields.map((f) => f.value), blocks: [] };
    default:
      return { exprs: [], blocks: [] };
  }
}

function walkStmts<E>(
  stmts: readonly Stmt[],
  env: E,
  onExpr: (e: Expr, env: E) => void,
  onStmt: (s: Stmt, env: E) => void,
): void {
  const visit = (e: Expr): void => {
    onExpr(e, env);
    for (const c of childExprs(e)) visit(c);
  };
  for (const s of stmts) {
    onStmt(s, env);
    const { exprs, blocks } = stmtParts(s);
    for (const e of exprs) visit(e);
    for (const b of blocks) walkStmts(b, env, onExpr, onStmt);
  }
}

/** Locals that some statement assigns to (parameters among them need a mutable copy). */
function assignedLocals(body: readonly Stmt[]): Set<string> {
  const out = new Set<string>();
  walkStmts(body, undefined, () => {}, (s) => {
    if (s.kind === "assign" && s.target.op === "local") out.add(s.target.name);
  });
  return out;
}

/**
 * Emits a checked kernel as a WGSL compute shader (entry `main`) with the bindings its runner
 * must create. Throws `DslError` (`ErrorCode.DslTarget`) with the source location for what WGSL
 * cannot express: f64 anywhere, arithmetic on 64-bit integers, atomics on f32 arrays.
 *
 * @example
 * ```ts
 * import { emitWgsl } from "./wgsl.ts";
 * import { checkKernel } from "./check.ts";
 * declare const saxpy: import("./define.ts").BulkKernel;
 * const { code, bindings, uniformSize } = emitWgsl(checkKernel(saxpy));
 * ```
 */
export function emitWgsl(ir: IrKernel): WgslSource {
  return new WgslEmitter(ir).emit();
}
