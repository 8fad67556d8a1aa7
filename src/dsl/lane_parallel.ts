/**
 * Whether a handler's messages may be handled on the 32 lanes of a warp at once rather than one
 * after another — decided over the checked IR (`check.ts`), never guessed from source text.
 *
 * A handler has actor semantics: messages are handled in order, each against the state the
 * previous one left. Running a chunk of them concurrently gives the same result exactly when no
 * message can observe another's effects and the effects can be merged afterwards. That holds
 * when the handler never reads its state and only folds values into top-level integer fields
 * with an associative, commutative operator (`+=`/`-=`, `|=`, `&=`, `^=`): each lane then runs
 * the handler on its own copy of the state initialised to the operator's identity (0, or all
 * ones for `&=`), and the lanes' copies are combined into the real state with the same operator,
 * modulo 2^bits of the field's storage. `-=` leaves a wrapped negative delta in the lane's copy,
 * which adds correctly modulo 2^bits, so it reduces as "add". Floats are refused: f32/f64
 * addition is not associative, so regrouping would change the sums.
 *
 * Anything else that could tell lanes apart or order them — `ctx.send` (outbox order),
 * `ctx.now()` (the clock ticks per message), barriers, atomics, index intrinsics (a lane's
 * `threadIdx` differs from the serial handler's), device-function calls (not looked into) — makes
 * the plan serial, with a reason naming the construct and its source line.
 *
 * @example
 * ```ts
 * import { checkKernel, defineKernel, defineMessage, laneParallelPlan } from "@ringkernel/core";
 * const Add = defineMessage({ typeId: 1, name: "Add", fields: { x: "u32" } });
 * const sum = defineKernel({
 *   id: "sum",
 *   module: import.meta.url,
 *   input: Add,
 *   state: { count: "u32", total: "u32" },
 *   handler: (msg, state) => {
 *     state.count += 1;
 *     state.total += msg.x;
 *   },
 * });
 * console.log(laneParallelPlan(checkKernel(sum)));
 * // { parallel: true, reductions: [{ field: "count", offset: 0, storage: "u32", op: "add" }, ...] }
 * ```
 * @module
 */

import type { ScalarKind } from "../core/schema.ts";
import type { AssignOp, Expr, IrKernel, LValue, Stmt } from "./ir.ts";

/** How the lanes' copies of a field are merged (modulo 2^bits of the field's storage). */
export type ReductionOp = "add" | "or" | "and" | "xor";

/** One state field the lanes fold into, and how their per-lane copies combine. */
export interface StateReduction {
  /** Top-level state field name. */
  readonly field: string;
  /** Byte offset of the field in the state struct. */
  readonly offset: number;
  /** Schema kind of the field (an integer kind: u8, i16, u32, i32, u64, i64, ...). */
  readonly storage: ScalarKind;
  /**
   * The merge operator; a lane's copy starts at its identity (0 for add/or/xor, all ones of the
   * storage width for and).
   */
  readonly op: ReductionOp;
}

/**
 * Whether a handler may run its messages on a warp's lanes at once: `parallel: true` with the
 * state fields to merge (each once, in state-field order), or `parallel: false` with the first
 * construct, in source order, that forbids it.
 */
export type LaneParallelPlan =
  | { readonly parallel: true; readonly reductions: readonly StateReduction[] }
  | { readonly parallel: false; readonly reason: string };

const REDUCING: Readonly<Partial<Record<AssignOp, ReductionOp>>> = {
  "+=": "add",
  "-=": "add",
  "|=": "or",
  "&=": "and",
  "^=": "xor",
};

/** Integer storage kinds: modular arithmetic and bitwise operators are associative on them. */
const INTEGER_STORAGE: ReadonlySet<ScalarKind> = new Set<ScalarKind>([
  "u8",
  "i8",
  "u16",
  "i16",
  "u32",
  "i32",
  "u64",
  "i64",
]);

/** The first construct that makes a handler serial. */
class Refusal {
  constructor(readonly reason: string) {}
}

function refuse(reason: string): never {
  throw new Refusal(reason);
}

/** Whether `e` is the handler's state struct itself. */
function isStateRoot(e: Expr): boolean {
  return e.op === "local" && e.type.kind === "struct" && e.type.role === "state";
}

/** The local at the bottom of a field/index chain (`state` of `state.a.b[i]`), if any. */
function chainRoot(e: Expr): Expr | undefined {
  let at = e;
  while (at.op === "field" || at.op === "index") at = at.op === "field" ? at.base : at.array;
  return at.op === "local" ? at : undefined;
}

/** How an access reads in a reason: `state.sums[…]`, `state.inner.x`. */
function pathOf(e: Expr): string {
  switch (e.op) {
    case "local":
      return e.name;
    case "field":
      return `${pathOf(e.base)}.${e.name}`;
    case "index":
      return `${pathOf(e.array)}[…]`;
    default:
      return "…";
  }
}

/** Walks a handler body in source order, collecting reductions and refusing anything else. */
class LaneAnalysis {
  /** Per reduced field: its operator class and where it was first seen. */
  readonly #fields = new Map<string, { op: ReductionOp; operator: AssignOp; line: number }>();

  get fields(): ReadonlyMap<string, { readonly op: ReductionOp }> {
    return this.#fields;
  }

  stmts(list: readonly Stmt[]): void {
    for (const s of list) this.stmt(s);
  }

  stmt(s: Stmt): void {
    const at = `(line ${s.loc.line})`;
    switch (s.kind) {
      case "let":
        if (s.init !== undefined) this.expr(s.init);
        return;
      case "shared":
      case "break":
      case "continue":
        return;
      case "assign":
        return this.assign(s.target, s.operator, s.value, s.loc.line);
      case "expr":
        return this.expr(s.expr);
      case "if":
        this.expr(s.cond);
        this.stmts(s.then);
        return this.stmts(s.else);
      case "for":
        this.stmts(s.init);
        if (s.cond !== undefined) this.expr(s.cond);
        this.stmts(s.update);
        return this.stmts(s.body);
      case "while":
        this.expr(s.cond);
        return this.stmts(s.body);
      case "switch":
        this.expr(s.value);
        for (const c of s.cases) this.stmts(c.body);
        if (s.fallback !== undefined) this.stmts(s.fallback);
        return;
      case "return":
        if (s.value !== undefined) this.expr(s.value);
        return;
      case "reply":
        for (const f of s.fields) this.expr(f.value);
        return;
      case "barrier":
        return refuse(`barrier() ${at}: lanes of one warp would synchronise across messages`);
      case "send":
        return refuse(`ctx.send ${at}: the outbox must receive sends in message order`);
    }
  }

  assign(target: LValue, operator: AssignOp, value: Expr, line: number): void {
    const root = chainRoot(target);
    if (root === undefined || !isStateRoot(root)) {
      // A local (or, were the checker to allow it, a non-state place): only its reads matter.
      if (target.op !== "local") this.expr(target);
      this.expr(value);
      return;
    }
    const path = pathOf(target);
    const at = `(line ${line})`;
    if (operator === "=") {
      refuse(`assigns ${path} with = ${at}: a plain store depends on message order`);
    }
    const op = REDUCING[operator];
    if (op === undefined) {
      refuse(`${path} ${operator} … ${at} is not a reduction (only +=, -=, |=, &=, ^= are)`);
    }
    if (target.op !== "field" || !isStateRoot(target.base)) {
      const what = target.op === "index" ? "an array element" : "a nested struct field";
      refuse(`${path} ${operator} … ${at} writes ${what}; only top-level integer fields reduce`);
    }
    const storage = target.storage;
    if (storage === "f32" || storage === "f64") {
      refuse(
        `${path} ${operator} … ${at} on an ${storage} field: float addition is not ` +
          "associative, so lanes cannot regroup it",
      );
    }
    if (storage === "array" || storage === "struct" || !INTEGER_STORAGE.has(storage)) {
      refuse(`${path} ${operator} … ${at} on a ${storage} field; only integer fields reduce`);
    }
    const seen = this.#fields.get(target.name);
    if (seen === undefined) this.#fields.set(target.name, { op, operator, line });
    else if (seen.op !== op) {
      refuse(
        `${path} is reduced with both ${seen.operator} (line ${seen.line}) and ${operator} ` +
          `${at}; one field takes one reduction`,
      );
    }
    this.expr(value);
  }

  expr(e: Expr): void {
    const at = `(line ${e.loc.line})`;
    switch (e.op) {
      case "literal":
        return;
      case "local":
        if (isStateRoot(e)) refuse(`reads ${e.name} ${at}`);
        return;
      case "field":
      case "index": {
        const root = chainRoot(e);
        if (root !== undefined && isStateRoot(root)) refuse(`reads ${pathOf(e)} ${at}`);
        if (e.op === "field") return this.expr(e.base);
        this.expr(e.array);
        return this.expr(e.index);
      }
      case "binary":
        this.expr(e.left);
        return this.expr(e.right);
      case "unary":
        return this.expr(e.operand);
      case "cast":
        return this.expr(e.value);
      case "select":
        this.expr(e.cond);
        this.expr(e.then);
        return this.expr(e.else);
      case "match":
        this.expr(e.value);
        for (const c of e.cases) this.expr(c.expr);
        return this.expr(e.fallback);
      case "math":
        for (const a of e.args) this.expr(a);
        return;
      case "call":
        return refuse(`calls ${e.callee}() ${at}; device functions are not analysed`);
      case "atomic":
        return refuse(`atomic ${e.atomic} ${at}: lanes would race on it`);
      case "now":
      case "hlc_part":
        return refuse(`ctx.now() ${at}: the clock ticks once per message, in order`);
      case "index_intrinsic":
        return refuse(
          `reads ${e.which}.${e.axis} ${at}: each lane sees its own index, the serial handler ` +
            "another",
        );
      case "gridpos":
      case "neighbor":
        return refuse(`uses a stencil position ${at}`);
    }
  }
}

/**
 * Decides whether `ir`'s handler may run up to 32 messages at once on a warp's lanes with the
 * same result as running them one after another (see the module documentation for the rules
 * and how the lanes' state copies merge). Never throws: anything it cannot prove is a
 * `parallel: false` plan whose reason names the construct and its source line, e.g.
 * `reads state.count (line 4)`.
 */
export function laneParallelPlan(ir: IrKernel): LaneParallelPlan {
  const handler = ir.handler;
  if (ir.kind !== "handler" || handler === undefined) {
    return { parallel: false, reason: `${ir.name} is a ${ir.kind} kernel, not a handler` };
  }
  const analysis = new LaneAnalysis();
  try {
    analysis.stmts(ir.body);
  } catch (e) {
    if (e instanceof Refusal) return { parallel: false, reason: e.reason };
    throw e;
  }
  // The walk names these with a line; the flags are the checker's own record, kept as a
  // backstop should a construct ever reach the IR somewhere the walk does not look.
  if (handler.sendTargets.length > 0) {
    return { parallel: false, reason: "the handler sends messages (ctx.send)" };
  }
  if (handler.usesNow) return { parallel: false, reason: "the handler calls ctx.now()" };
  if (ir.usesBarrier) return { parallel: false, reason: "the handler uses barrier()" };
  if (ir.usesAtomics) return { parallel: false, reason: "the handler uses atomics" };
  const reductions: StateReduction[] = [];
  for (const f of handler.state?.fields ?? []) {
    const seen = analysis.fields.get(f.name);
    if (seen === undefined || typeof f.type !== "string") continue;
    reductions.push({ field: f.name, offset: f.offset, storage: f.type, op: seen.op });
  }
  return { parallel: true, reductions };
}
