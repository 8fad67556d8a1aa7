/**
 * Stage 2 of the kernel DSL: acorn's AST → the typed IR of `ir.ts`. This is where the subset is
 * enforced (every rejection is a {@linkcode DslError} with the kernel, line, column and the
 * offending line) and where types are inferred: parameter and field types come from the declared
 * signature or the schemas, literal types from how they are used (see `types.ts`).
 *
 * The checker also guarantees what JS and the GPU need to agree on: integer division only as
 * `i32(a / b)` / `u32(a / b)` (JS's `/` is a float division), `>>>` for u32 shifts (JS's `>>` is
 * arithmetic), barriers reached by every thread of a block, and select/match operands free of
 * side effects (WGSL's `select` evaluates both sides).
 * @module
 */

import type {
  AssignmentExpression,
  BlockStatement,
  CallExpression,
  Expression,
  ForStatement,
  MemberExpression,
  Node,
  ObjectExpression,
  Pattern,
  Statement,
  SwitchStatement,
  VariableDeclaration,
} from "acorn";
import { ErrorCode } from "../core/errors.ts";
import {
  ArrayType,
  type FieldSpec,
  type FieldsSpec,
  type MessageSchema,
  type ScalarKind,
  StructType,
} from "../core/schema.ts";
import { isKernelDefinition, type KernelDefinition } from "../runtime/kernel.ts";
import {
  type AnyDeviceFunction,
  type BulkKernel,
  deviceFunctionSource,
  isDslDefinition,
  type ParamType,
  type StencilKernel,
} from "./define.ts";
import type {
  AssignOp,
  AtomicOp,
  BinaryOp,
  DslType,
  Expr,
  FieldInit,
  GridDirection,
  IrFunction,
  IrKernel,
  IrParam,
  Loc,
  LValue,
  MathFn,
  ScalarType,
  Stmt,
} from "./ir.ts";
import { dslError, type ParsedFunction, parseFunction } from "./parse.ts";
import {
  constrain,
  describe,
  FLOAT_LITERAL,
  FLOATS,
  INT32,
  INT_LITERAL,
  INTS,
  NUMERIC,
  scalar,
  TypeVar,
  unify,
  WIDE,
  WIDE_LITERAL,
} from "./types.ts";

/** Anything the checker takes. */
export type DslKernelInput = BulkKernel | StencilKernel | KernelDefinition;

type Code = typeof ErrorCode.DslUnsupported | typeof ErrorCode.DslType;

const INDEX_OBJECTS = new Set(["threadIdx", "blockIdx", "blockDim", "gridDim"]);
const CASTS: Readonly<Record<string, ScalarType>> = {
  f32: "f32",
  i32: "i32",
  u32: "u32",
  f64: "f64",
  u64: "u64",
  i64: "i64",
};
/** What Math functions take: JS's Math throws on bigint. */
const NUMBERS: ReadonlySet<ScalarType> = new Set(["i32", "u32", "f32", "f64"]);
const MATH: Readonly<Record<string, { fn: MathFn; arity: number; float: boolean }>> = {
  sqrt: { fn: "sqrt", arity: 1, float: true },
  sin: { fn: "sin", arity: 1, float: true },
  cos: { fn: "cos", arity: 1, float: true },
  exp: { fn: "exp", arity: 1, float: true },
  log: { fn: "log", arity: 1, float: true },
  pow: { fn: "pow", arity: 2, float: true },
  floor: { fn: "floor", arity: 1, float: true },
  ceil: { fn: "ceil", arity: 1, float: true },
  min: { fn: "min", arity: 2, float: false },
  max: { fn: "max", arity: 2, float: false },
  abs: { fn: "abs", arity: 1, float: false },
};
const DSL_MATH: Readonly<Record<string, { fn: MathFn; arity: number; float: boolean }>> = {
  rsqrt: { fn: "rsqrt", arity: 1, float: true },
  fma: { fn: "fma", arity: 3, float: true },
  clamp: { fn: "clamp", arity: 3, float: false },
};
const ATOMICS: Readonly<Record<string, AtomicOp>> = {
  atomicAdd: "add",
  atomicSub: "sub",
  atomicMin: "min",
  atomicMax: "max",
  atomicExchange: "exchange",
  atomicCompareExchange: "compareExchange",
};
const DIRECTIONS: Readonly<Record<string, readonly [number, number, number]>> = {
  north: [0, -1, 0],
  south: [0, 1, 0],
  west: [-1, 0, 0],
  east: [1, 0, 0],
  down: [0, 0, -1],
  up: [0, 0, 1],
};

/** Names no local may take: C/C++ and WGSL keywords, builtins the emitters call, our prefixes. */
const RESERVED = new Set(
  (
    "auto bool break case char const continue default do double else enum extern float for goto if " +
    "inline int long register return short signed sizeof static struct switch typedef union " +
    "unsigned void volatile while class namespace template this new delete private public " +
    "protected friend virtual operator using typename true false nullptr restrict asm " +
    "array atomic bitcast f16 f32 f64 i32 u32 i64 u64 fn let loop override ptr sampler var vec2 vec3 " +
    "vec4 mat2x2 mat3x3 mat4x4 alias const_assert continuing diagnostic discard enable requires " +
    "select workgroup uniform storage function read write read_write texture_2d " +
    "min max abs sqrt rsqrt sin cos exp log pow floor ceil fma clamp inverseSqrt fminf fmaxf " +
    "sqrtf rsqrtf sinf cosf expf logf powf floorf ceilf fmaf fabsf main " +
    "and or not xor bitand bitor compl not_eq and_eq or_eq xor_eq mutable explicit typeid " +
    "decltype alignas alignof constexpr noexcept static_assert thread_local concept " +
    "dynamic_cast static_cast reinterpret_cast const_cast wchar_t char8_t char16_t char32_t " +
    "co_await co_return co_yield consteval constinit uint8_t uint16_t uint32_t uint64_t int8_t " +
    "int16_t int32_t int64_t size_t offsetof fmod fmodf fabs fmin fmax llabs atomicAdd atomicSub " +
    "atomicMin atomicMax atomicExch atomicCAS warpSize"
  ).split(" "),
);

const BINARY: ReadonlySet<string> = new Set([
  "+",
  "-",
  "*",
  "/",
  "%",
  "<<",
  ">>",
  ">>>",
  "&",
  "|",
  "^",
  "==",
  "!=",
  "===",
  "!==",
  "<",
  "<=",
  ">",
  ">=",
]);

/** A local variable or parameter in scope. */
interface Local {
  readonly name: string;
  readonly type: DslType;
  readonly mutable: boolean;
  /** Index into the function's params, for arrays whose writes/atomics we record. */
  readonly param: number | undefined;
}

/** What the checks of one kernel share across its device functions. */
interface KernelState {
  readonly kernel: string;
  usesBarrier: boolean;
  usesAtomics: boolean;
  usesNow: boolean;
  readonly sendTargets: { dest: string; schema: MessageSchema }[];
  readonly functions: Map<AnyDeviceFunction, IrFunction>;
  readonly visiting: Set<AnyDeviceFunction>;
  readonly order: IrFunction[];
  readonly sends: Readonly<Record<string, MessageSchema>>;
}

type Role = "bulk" | "stencil" | "handler" | "device";

/** The DSL type of a schema field. */
function fieldType(spec: FieldSpec): DslType | undefined {
  if (typeof spec === "string") return scalar(readType(spec));
  if (spec instanceof StructType) return { kind: "struct", struct: spec, role: "nested" };
  if (spec instanceof ArrayType && typeof spec.element === "string") {
    return {
      kind: "array",
      element: readType(spec.element),
      storage: spec.element,
      space: "field",
      length: spec.length,
    };
  }
  return undefined;
}

/** How a schema scalar reads in the DSL (sub-word integers widen to 32 bits). */
function readType(kind: ScalarKind): ScalarType {
  switch (kind) {
    case "u8":
    case "u16":
    case "u32":
      return "u32";
    case "i8":
    case "i16":
    case "i32":
      return "i32";
    default:
      return kind;
  }
}

function paramType(p: ParamType): DslType {
  if (p.endsWith("[]")) {
    const element = p.slice(0, -2) as ScalarType & ScalarKind;
    return { kind: "array", element, storage: element, space: "global", length: undefined };
  }
  return scalar(p as ScalarType);
}

/** Checks one function body into IR. */
class FunctionChecker {
  readonly #p: ParsedFunction;
  readonly #k: KernelState;
  readonly #role: Role;
  readonly #returns: DslType;
  readonly #uses: Map<string, AnyDeviceFunction>;
  readonly #scopes: Map<string, Local>[] = [new Map()];
  readonly #names = new Set<string>();
  readonly params: IrParam[] = [];
  readonly #written = new Set<number>();
  readonly #atomic = new Set<number>();
  readonly #deferred: (() => void)[] = [];
  #loops = 0;
  #switches = 0;
  #depth = 0;
  #halo = 0;
  #dims: 2 | 3 = 2;
  /** Offsets of barrier() calls and of returns, for the reachability rule. */
  readonly barriers: number[] = [];
  readonly returns: { offset: number; uniform: boolean }[] = [];
  /** How many enclosing conditions may differ between the threads of a block. */
  #divergent = 0;
  /** Locals whose value may differ between the threads of a block. */
  readonly #varying = new Set<string>();

  constructor(
    parsed: ParsedFunction,
    state: KernelState,
    role: Role,
    returns: DslType,
    uses: readonly AnyDeviceFunction[],
  ) {
    this.#p = parsed;
    this.#k = state;
    this.#role = role;
    this.#returns = returns;
    this.#uses = new Map(uses.map((u) => [u.dslName, u]));
  }

  // -- errors and positions ------------------------------------------------------------------

  fail(code: Code | typeof ErrorCode.DslTarget, node: Node | undefined, reason: string): never {
    throw dslError(code, this.#p.kernel, this.#p.source, node?.start, reason);
  }

  loc(node: Node): Loc {
    const before = this.#p.source.slice(0, node.start);
    const line = before.split("\n").length;
    return {
      line,
      column: node.start - before.lastIndexOf("\n"),
      start: node.start,
      end: node.end,
    };
  }

  mismatch(node: Node, a: DslType, b: DslType, what: string): never {
    this.fail(
      ErrorCode.DslType,
      node,
      `type mismatch in ${what}: ${describe(a)} and ${describe(b)}`,
    );
  }

  // -- scopes --------------------------------------------------------------------------------

  unique(name: string): string {
    let candidate = RESERVED.has(name) || name.startsWith("rk_") || name.startsWith("__")
      ? `${name}_1`
      : name;
    for (let i = 2; this.#names.has(candidate); i++) candidate = `${name}_${i}`;
    this.#names.add(candidate);
    return candidate;
  }

  declare(node: Node, source: string, local: Omit<Local, "name">): Local {
    const scope = this.#scopes[this.#scopes.length - 1];
    if (scope.has(source)) this.fail(ErrorCode.DslUnsupported, node, `${source} is declared twice`);
    const entry = { ...local, name: this.unique(source) };
    scope.set(source, entry);
    return entry;
  }

  lookup(name: string): Local | undefined {
    for (let i = this.#scopes.length - 1; i >= 0; i--) {
      const found = this.#scopes[i].get(name);
      if (found !== undefined) return found;
    }
    return undefined;
  }

  block<T>(f: () => T): T {
    this.#scopes.push(new Map());
    this.#depth++;
    try {
      return f();
    } finally {
      this.#depth--;
      this.#scopes.pop();
    }
  }

  // -- entry ---------------------------------------------------------------------------------

  bindParams(types: readonly DslType[], optional: boolean): void {
    const params = this.#p.params;
    if (params.length > types.length || (!optional && params.length !== types.length)) {
      this.fail(
        ErrorCode.DslType,
        this.#p.node,
        `the function takes ${params.length} parameters but its signature declares ${types.length}`,
      );
    }
    params.forEach((pattern: Pattern, i) => {
      if (pattern.type !== "Identifier") {
        this.fail(
          ErrorCode.DslUnsupported,
          pattern,
          "parameters must be plain names (no destructuring or defaults)",
        );
      }
      const local = this.declare(pattern, pattern.name, {
        type: types[i],
        mutable: false,
        param: i,
      });
      this.params.push({ name: local.name, type: types[i], written: false, atomic: false });
    });
  }

  setStencil(dims: 2 | 3, halo: number): void {
    this.#dims = dims;
    this.#halo = halo;
  }

  body(): Stmt[] {
    const node = this.#p.node;
    let out: Stmt[];
    if (node.body.type === "BlockStatement") {
      out = this.statements((node.body as BlockStatement).body);
    } else {
      // An arrow with an expression body: a value for device functions, an effect otherwise.
      const e = node.body as Expression;
      if (this.#role === "device" && this.#returns.kind !== "void") {
        out = [{ kind: "return", value: this.returnValue(e), loc: this.loc(e) }];
      } else if (this.#role === "handler") {
        out = [this.handlerReturn(e, e)];
      } else {
        out = [this.expressionStatement(e)];
      }
    }
    for (const f of this.#deferred) f();
    this.params.forEach((p, i) => {
      this.params[i] = { ...p, written: this.#written.has(i), atomic: this.#atomic.has(i) };
    });
    return out;
  }

  // -- statements ----------------------------------------------------------------------------

  statements(list: readonly Statement[]): Stmt[] {
    const out: Stmt[] = [];
    for (const s of list) this.statement(s, out);
    return out;
  }

  nested(s: Statement): Stmt[] {
    return this.block(() => this.statements(s.type === "BlockStatement" ? s.body : [s]));
  }

  statement(s: Statement, out: Stmt[]): void {
    const loc = this.loc(s);
    switch (s.type) {
      case "EmptyStatement":
        return;
      case "BlockStatement":
        out.push(...this.nested(s));
        return;
      case "VariableDeclaration":
        out.push(...this.declaration(s));
        return;
      case "ExpressionStatement":
        out.push(this.expressionStatement(s.expression as Expression));
        return;
      case "IfStatement": {
        const cond = this.condition(s.test);
        const [then, otherwise] = this.under(cond, () => [
          this.nested(s.consequent),
          s.alternate ? this.nested(s.alternate) : [],
        ]);
        out.push({ kind: "if", cond, then, else: otherwise, loc });
        return;
      }
      case "ForStatement":
        out.push(this.forStatement(s));
        return;
      case "WhileStatement": {
        const cond = this.condition(s.test);
        this.#loops++;
        const body = this.under(cond, () => this.nested(s.body));
        this.#loops--;
        out.push({ kind: "while", cond, body, loc });
        return;
      }
      case "BreakStatement":
      case "ContinueStatement": {
        if (s.label) {
          this.fail(ErrorCode.DslUnsupported, s, "labelled break/continue is not supported");
        }
        const inLoop = this.#loops > 0;
        if (s.type === "ContinueStatement" && !inLoop) {
          this.fail(ErrorCode.DslUnsupported, s, "continue outside a loop");
        }
        if (s.type === "BreakStatement" && !inLoop && this.#switches === 0) {
          this.fail(ErrorCode.DslUnsupported, s, "break outside a loop or switch");
        }
        out.push({ kind: s.type === "BreakStatement" ? "break" : "continue", loc });
        return;
      }
      case "ReturnStatement":
        this.returns.push({ offset: s.start, uniform: this.#divergent === 0 });
        if (this.#role === "handler") {
          out.push(
            s.argument
              ? this.handlerReturn(s.argument, s)
              : { kind: "return", value: undefined, loc },
          );
        } else if (this.#returns.kind === "void") {
          if (s.argument) {
            this.fail(ErrorCode.DslType, s.argument, "a kernel returns no value; use `return;`");
          }
          out.push({ kind: "return", value: undefined, loc });
        } else {
          if (!s.argument) {
            this.fail(
              ErrorCode.DslType,
              s,
              `this function must return a ${describe(this.#returns)}`,
            );
          }
          out.push({ kind: "return", value: this.returnValue(s.argument), loc });
        }
        return;
      case "SwitchStatement":
        out.push(this.switchStatement(s));
        return;
      case "DoWhileStatement":
        this.fail(ErrorCode.DslUnsupported, s, "do…while is not supported; use while");
        break;
      case "FunctionDeclaration":
        this.fail(
          ErrorCode.DslUnsupported,
          s,
          "nested functions are not supported; declare a deviceFunction and list it in uses",
        );
        break;
      case "ForInStatement":
      case "ForOfStatement":
        this.fail(
          ErrorCode.DslUnsupported,
          s,
          `${
            s.type === "ForInStatement" ? "for…in" : "for…of"
          } is not supported; use an indexed for loop`,
        );
        break;
      case "ThrowStatement":
      case "TryStatement":
        this.fail(ErrorCode.DslUnsupported, s, "exceptions are not supported in kernels");
        break;
      case "ClassDeclaration":
        this.fail(ErrorCode.DslUnsupported, s, "classes are not supported in kernels");
        break;
      default:
        this.fail(ErrorCode.DslUnsupported, s, `${s.type} is not supported in kernels`);
    }
  }

  declaration(s: VariableDeclaration): Stmt[] {
    if (s.kind !== "let" && s.kind !== "const") {
      this.fail(
        ErrorCode.DslUnsupported,
        s,
        `${s.kind} declarations are not supported; use let or const`,
      );
    }
    const out: Stmt[] = [];
    for (const d of s.declarations) {
      if (d.id.type !== "Identifier") {
        this.fail(ErrorCode.DslUnsupported, d.id, "destructuring is not supported");
      }
      const source = d.id.name;
      if (!d.init) {
        this.fail(
          ErrorCode.DslUnsupported,
          d,
          `give ${source} an initial value (its type comes from it)`,
        );
      }
      const init = d.init as Expression;
      if (this.isCallTo(init, "sharedArray")) {
        out.push(this.sharedDeclaration(s, d.id, init as CallExpression));
        continue;
      }
      let value: Expr;
      if (this.isCallTo(init, "atomicCompareExchange")) {
        value = this.call(init as CallExpression, true);
      } else value = this.expr(init);
      const t = value.type;
      if (t.kind !== "scalar" && t.kind !== "hlc") {
        this.fail(
          ErrorCode.DslType,
          init,
          `a local holds a scalar, not ${describe(t)}; index or read its fields directly`,
        );
      }
      // A literal initialiser gets its own variable, so narrowing the local narrows its literal.
      const local = this.declare(d.id, source, {
        type: t,
        mutable: s.kind === "let",
        param: undefined,
      });
      if (this.#divergent > 0 || !this.isUniform(value)) this.#varying.add(local.name);
      out.push({
        kind: "let",
        name: local.name,
        type: t,
        mutable: s.kind === "let",
        init: value,
        loc: this.loc(d),
      });
    }
    return out;
  }

  sharedDeclaration(
    s: VariableDeclaration,
    id: Pattern & { name: string },
    call: CallExpression,
  ): Stmt {
    if (this.#role !== "bulk" && this.#role !== "stencil") {
      this.fail(ErrorCode.DslUnsupported, call, "sharedArray is for bulk and stencil kernels");
    }
    if (this.#depth > 0 || s.kind !== "const") {
      this.fail(
        ErrorCode.DslUnsupported,
        call,
        "declare shared arrays as `const x = sharedArray(...)` at the top of the kernel body",
      );
    }
    const [kind, length] = call.arguments;
    if (kind?.type !== "Literal" || !["f32", "i32", "u32"].includes(String(kind.value))) {
      this.fail(
        ErrorCode.DslType,
        kind ?? call,
        'sharedArray\'s element type must be "f32", "i32" or "u32"',
      );
    }
    if (
      length?.type !== "Literal" || typeof length.value !== "number" ||
      !Number.isInteger(length.value) || length.value < 1
    ) {
      this.fail(
        ErrorCode.DslType,
        length ?? call,
        "sharedArray's length must be a positive integer literal",
      );
    }
    const element = kind.value as ScalarType & ScalarKind;
    const type: DslType = {
      kind: "array",
      element,
      storage: element,
      space: "shared",
      length: length.value,
    };
    const local = this.declare(id, id.name, { type, mutable: false, param: undefined });
    return { kind: "shared", name: local.name, element, length: length.value, loc: this.loc(s) };
  }

  forStatement(s: ForStatement): Stmt {
    return this.block(() => {
      const init: Stmt[] = [];
      if (s.init) {
        if (s.init.type === "VariableDeclaration") init.push(...this.declaration(s.init));
        else init.push(...this.effects(s.init as Expression));
      }
      const cond = s.test ? this.condition(s.test) : undefined;
      const update = s.update ? this.effects(s.update) : [];
      this.#loops++;
      const body = cond === undefined
        ? this.nested(s.body)
        : this.under(cond, () => this.nested(s.body));
      this.#loops--;
      return { kind: "for" as const, init, cond, update, body, loc: this.loc(s) };
    });
  }

  /** A comma list of assignments / updates (for-loop init and update). */
  effects(e: Expression): Stmt[] {
    if (e.type === "SequenceExpression") return e.expressions.flatMap((x) => this.effects(x));
    return [this.expressionStatement(e)];
  }

  switchStatement(s: SwitchStatement): Stmt {
    const value = this.expr(s.discriminant);
    if (!constrain(value.type, INT32)) {
      this.fail(
        ErrorCode.DslType,
        s.discriminant,
        `switch takes an i32 or u32 value, not ${describe(value.type)}`,
      );
    }
    const cases: { labels: number[]; body: Stmt[] }[] = [];
    let fallback: Stmt[] | undefined;
    let labels: number[] = [];
    let pendingDefault = false;
    const seen = new Set<number>();
    this.#switches++;
    const divergent = !this.isUniform(value);
    if (divergent) this.#divergent++;
    s.cases.forEach((c, i) => {
      if (c.test === null || c.test === undefined) pendingDefault = true;
      else {
        const label = this.literalInt(c.test);
        if (seen.has(label)) this.fail(ErrorCode.DslType, c.test, `case ${label} appears twice`);
        seen.add(label);
        labels.push(label);
      }
      if (c.consequent.length === 0 && i < s.cases.length - 1) return;
      const body = this.block(() => this.statements(c.consequent));
      const last = body[body.length - 1];
      const ends = last !== undefined &&
        (last.kind === "break" || last.kind === "return" || last.kind === "continue" ||
          last.kind === "reply");
      if (!ends && i < s.cases.length - 1) {
        this.fail(
          ErrorCode.DslUnsupported,
          c,
          "a case must end in break, return or continue (WGSL has no fall-through)",
        );
      }
      if (last?.kind === "break") body.pop();
      if (pendingDefault) {
        if (labels.length > 0) {
          this.fail(ErrorCode.DslUnsupported, c, "default cannot share its body with case labels");
        }
        fallback = body;
      } else cases.push({ labels, body });
      labels = [];
      pendingDefault = false;
    });
    if (divergent) this.#divergent--;
    this.#switches--;
    return { kind: "switch", value, cases, fallback, loc: this.loc(s) };
  }

  literalInt(e: Expression): number {
    let sign = 1;
    let node = e;
    if (node.type === "UnaryExpression" && node.operator === "-") {
      sign = -1;
      node = node.argument;
    }
    if (
      node.type !== "Literal" || typeof node.value !== "number" || !Number.isInteger(node.value)
    ) {
      this.fail(ErrorCode.DslType, e, "case labels must be integer literals");
    }
    return sign * node.value;
  }

  expressionStatement(e: Expression): Stmt {
    const loc = this.loc(e);
    switch (e.type) {
      case "AssignmentExpression":
        return this.assignment(e);
      case "UpdateExpression": {
        const target = this.lvalue(e.argument as Expression);
        if (!constrain(target.type, NUMERIC)) {
          this.fail(
            ErrorCode.DslType,
            e,
            `${e.operator} needs a number, not ${describe(target.type)}`,
          );
        }
        const t = target.type;
        const one = this.literal(t.kind === "scalar" && WIDE.has(t.scalar) ? 1n : 1, e);
        if (target.op === "local" && this.#divergent > 0) this.#varying.add(target.name);
        this.unifyOrFail(e, target.type, one.type, e.operator);
        return {
          kind: "assign",
          target,
          operator: e.operator === "++" ? "+=" : "-=",
          value: one,
          loc,
        };
      }
      case "CallExpression": {
        if (this.isCallTo(e, "barrier")) return this.barrier(e);
        if (this.isMethodCall(e, "send")) return this.send(e);
        return { kind: "expr", expr: this.call(e, true), loc };
      }
      default:
        this.fail(ErrorCode.DslUnsupported, e, "this expression has no effect as a statement");
    }
  }

  barrier(e: CallExpression): Stmt {
    if (this.#role !== "bulk") {
      // Stencil threads outside the grid leave early, so not all of a block would arrive.
      this.fail(ErrorCode.DslUnsupported, e, "barrier() is for bulk kernel bodies");
    }
    if (e.arguments.length !== 0) this.fail(ErrorCode.DslType, e, "barrier() takes no arguments");
    if (this.#divergent > 0) {
      this.fail(
        ErrorCode.DslUnsupported,
        e,
        "barrier() under a condition that may differ between the threads of a block: every " +
          "thread must reach each barrier (WGSL rejects this too)",
      );
    }
    this.#k.usesBarrier = true;
    this.barriers.push(e.start);
    return { kind: "barrier", loc: this.loc(e) };
  }

  assignment(e: AssignmentExpression): Stmt {
    const op = e.operator;
    const allowed: readonly string[] = [
      "=",
      "+=",
      "-=",
      "*=",
      "/=",
      "%=",
      "<<=",
      ">>=",
      ">>>=",
      "&=",
      "|=",
      "^=",
    ];
    if (!allowed.includes(op)) this.fail(ErrorCode.DslUnsupported, e, `${op} is not supported`);
    const target = this.lvalue(e.left as Expression);
    const value = this.expr(e.right);
    const loc = this.loc(e);
    if (target.op === "local" && (this.#divergent > 0 || !this.isUniform(value))) {
      this.#varying.add(target.name);
    }
    if (op === "<<=" || op === ">>=" || op === ">>>=") {
      this.shiftTypes(e, op.slice(0, -1) as BinaryOp, target.type, value.type);
      return { kind: "assign", target, operator: op as AssignOp, value, loc };
    }
    this.unifyOrFail(e, target.type, value.type, `${op}`);
    if (op !== "=" && !constrain(target.type, NUMERIC)) {
      this.fail(ErrorCode.DslType, e, `${op} needs numbers, not ${describe(target.type)}`);
    }
    if (op === "&=" || op === "|=" || op === "^=") {
      if (!constrain(target.type, INT32)) {
        this.fail(ErrorCode.DslType, e, `${op} needs i32 or u32, not ${describe(target.type)}`);
      }
    }
    if (op === "/=") {
      const t = target.type;
      this.#deferred.push(() => {
        if (t.kind === "scalar" && INT32.has(t.scalar)) {
          this.fail(
            ErrorCode.DslType,
            e,
            `integer /= is a float division in JS; write x = ${t.scalar}(x / y)`,
          );
        }
      });
    }
    return { kind: "assign", target, operator: op as AssignOp, value, loc };
  }

  lvalue(e: Expression): LValue {
    if (e.type === "Identifier") {
      const local = this.lookup(e.name);
      if (local === undefined) {
        this.fail(
          ErrorCode.DslUnsupported,
          e,
          `${e.name} is not a local of this kernel (closures over outer variables are not supported)`,
        );
      }
      if (!local.mutable) {
        this.fail(
          ErrorCode.DslType,
          e,
          `${e.name} is a const or a parameter and cannot be assigned`,
        );
      }
      if (local.type.kind !== "scalar") {
        this.fail(ErrorCode.DslType, e, `${e.name} cannot be reassigned`);
      }
      return { op: "local", name: local.name, type: local.type, loc: this.loc(e) };
    }
    if (e.type === "MemberExpression") {
      const target = this.member(e);
      if (target.op !== "index" && target.op !== "field") {
        this.fail(ErrorCode.DslType, e, "this cannot be assigned");
      }
      if (target.type.kind !== "scalar") {
        this.fail(
          ErrorCode.DslType,
          e,
          `cannot assign a whole ${describe(target.type)}; assign its elements or fields`,
        );
      }
      this.markWrite(target, e);
      return target as LValue;
    }
    this.fail(
      ErrorCode.DslUnsupported,
      e,
      "only locals, array elements and fields can be assigned",
    );
  }

  markWrite(target: Expr, node: Node): void {
    let base: Expr = target;
    while (base.op === "index" || base.op === "field") {
      base = base.op === "index" ? base.array : base.base;
    }
    if (base.op !== "local") return;
    if (base.type.kind === "struct" && base.type.role === "message") {
      this.fail(
        ErrorCode.DslType,
        node,
        "messages are read-only; keep changing values in state or locals",
      );
    }
    const param = this.params.findIndex((p) => p.name === (base as { name: string }).name);
    if (param >= 0) this.#written.add(param);
  }

  /** Runs `f` with `cond` as an enclosing condition (divergent unless it is uniform). */
  under<T>(cond: Expr, f: () => T): T {
    const divergent = !this.isUniform(cond);
    if (divergent) this.#divergent++;
    try {
      return f();
    } finally {
      if (divergent) this.#divergent--;
    }
  }

  /**
   * Whether `e` has one value across a block: built from literals, scalar parameters, block
   * and grid indices and locals that are themselves uniform. Array reads count as varying (a
   * shared array differs between barriers), as do thread indices and grid positions.
   */
  isUniform(e: Expr): boolean {
    switch (e.op) {
      case "literal":
        return true;
      case "local":
        return !this.#varying.has(e.name) && e.type.kind === "scalar";
      case "index_intrinsic":
        return e.which !== "threadIdx";
      case "binary":
        return this.isUniform(e.left) && this.isUniform(e.right);
      case "unary":
        return this.isUniform(e.operand);
      case "cast":
        return this.isUniform(e.value);
      case "math":
        return e.args.every((a) => this.isUniform(a));
      case "select":
        return this.isUniform(e.cond) && this.isUniform(e.then) && this.isUniform(e.else);
      case "match":
        return this.isUniform(e.value) && e.cases.every((c) => this.isUniform(c.expr)) &&
          this.isUniform(e.fallback);
      default:
        return false;
    }
  }

  condition(e: Expression): Expr {
    const cond = this.expr(e);
    if (!constrain(cond.type, new Set(["bool"]))) {
      this.fail(
        ErrorCode.DslType,
        e,
        `a condition must be a bool, not ${describe(cond.type)} (compare it: x != 0)`,
      );
    }
    return cond;
  }

  returnValue(e: Expression): Expr {
    const value = this.expr(e);
    this.unifyOrFail(e, this.#returns, value.type, "return");
    return value;
  }

  // -- handlers: replies and sends -------------------------------------------------------------

  handlerReturn(e: Expression, at: Node): Stmt {
    const loc = this.loc(at);
    const isVoid0 = e.type === "UnaryExpression" && e.operator === "void" &&
      e.argument.type === "Literal";
    if ((e.type === "Identifier" && e.name === "undefined") || isVoid0) {
      return { kind: "return", value: undefined, loc };
    }
    if (e.type !== "ObjectExpression") {
      this.fail(
        ErrorCode.DslUnsupported,
        e,
        "a handler returns an object literal with the reply's fields, or nothing",
      );
    }
    const def = this.#handlerDef;
    if (def?.output === undefined) {
      this.fail(ErrorCode.DslType, e, "this kernel declares no output schema, so it cannot reply");
    }
    return { kind: "reply", fields: this.fieldInits(e, def.output, ""), loc };
  }

  #handlerDef: KernelDefinition | undefined;

  setHandler(def: KernelDefinition): void {
    this.#handlerDef = def;
  }

  fieldInits(obj: ObjectExpression, struct: StructType, prefix: string, base = 0): FieldInit[] {
    const given = new Map<string, Expression>();
    for (const p of obj.properties) {
      if (p.type !== "Property" || p.computed || p.kind !== "init" || p.method) {
        this.fail(
          ErrorCode.DslUnsupported,
          p,
          "only plain `field: value` entries are allowed here",
        );
      }
      const key = p.key.type === "Identifier"
        ? p.key.name
        : p.key.type === "Literal"
        ? String(p.key.value)
        : undefined;
      if (key === undefined || !struct.fields.some((f) => f.name === key)) {
        this.fail(ErrorCode.DslType, p.key, `${struct.name} has no field ${key}`);
      }
      given.set(key, p.value as Expression);
    }
    const out: FieldInit[] = [];
    for (const f of struct.fields) {
      const value = given.get(f.name);
      if (value === undefined) {
        this.fail(ErrorCode.DslType, obj, `${struct.name}.${f.name} is missing`);
      }
      this.fieldInit(value, f.type, `${prefix}${f.name}`, base + f.offset, out);
    }
    return out;
  }

  fieldInit(e: Expression, spec: FieldSpec, path: string, offset: number, out: FieldInit[]): void {
    if (typeof spec === "string") {
      const value = this.expr(e);
      const want = scalar(readType(spec));
      this.unifyOrFail(e, want, value.type, path);
      out.push({ name: path, storage: spec, offset, value });
      return;
    }
    if (spec instanceof StructType) {
      if (e.type === "ObjectExpression") {
        out.push(...this.fieldInits(e, spec, `${path}.`, offset));
        return;
      }
      const value = this.expr(e);
      if (value.type.kind !== "struct" || value.type.struct !== spec) {
        this.fail(
          ErrorCode.DslType,
          e,
          `${path} is a ${spec.name}: give an object literal or a ${spec.name} field`,
        );
      }
      this.fieldFromExpr(value, spec, path, offset, out, e);
      return;
    }
    if (spec instanceof ArrayType && typeof spec.element === "string") {
      if (e.type === "ArrayExpression") {
        if (e.elements.length !== spec.length) {
          this.fail(
            ErrorCode.DslType,
            e,
            `${path} has ${spec.length} elements, the literal ${e.elements.length}`,
          );
        }
        e.elements.forEach((el, i) => {
          if (el === null || el.type === "SpreadElement") {
            this.fail(ErrorCode.DslUnsupported, e, "holes and spreads are not supported");
          }
          this.fieldInit(el, spec.element, `${path}[${i}]`, offset + i * spec.stride, out);
        });
        return;
      }
      const value = this.expr(e);
      if (
        value.type.kind !== "array" || value.type.length !== spec.length ||
        value.type.storage !== spec.element
      ) {
        this.fail(
          ErrorCode.DslType,
          e,
          `${path} is ${spec.element}[${spec.length}]: give an array literal or an equal array field`,
        );
      }
      this.fieldFromExpr(value, spec, path, offset, out, e);
      return;
    }
    this.fail(
      ErrorCode.DslUnsupported,
      e,
      `${path}: arrays of structs are not supported in replies and sends`,
    );
  }

  /** Expands a struct- or array-typed value into one init per leaf. */
  fieldFromExpr(
    value: Expr,
    spec: FieldSpec,
    path: string,
    offset: number,
    out: FieldInit[],
    node: Node,
  ): void {
    if (typeof spec === "string") {
      out.push({ name: path, storage: spec, offset, value });
      return;
    }
    if (spec instanceof StructType) {
      for (const f of spec.fields) {
        const type = fieldType(f.type);
        if (type === undefined) {
          this.fail(
            ErrorCode.DslUnsupported,
            node,
            `${path}.${f.name}: arrays of structs are not supported`,
          );
        }
        const sub: Expr = {
          op: "field",
          base: value,
          name: f.name,
          storage: fieldStorage(f.type),
          offset: f.offset,
          type,
          loc: value.loc,
        };
        this.fieldFromExpr(sub, f.type, `${path}.${f.name}`, offset + f.offset, out, node);
      }
      return;
    }
    if (spec instanceof ArrayType && typeof spec.element === "string") {
      for (let i = 0; i < spec.length; i++) {
        const index: Expr = { op: "literal", value: i, type: scalar("i32"), loc: value.loc };
        const el: Expr = {
          op: "index",
          array: value,
          index,
          type: scalar(readType(spec.element)),
          loc: value.loc,
        };
        out.push({
          name: `${path}[${i}]`,
          storage: spec.element,
          offset: offset + i * spec.stride,
          value: el,
        });
      }
      return;
    }
    this.fail(ErrorCode.DslUnsupported, node, `${path}: arrays of structs are not supported`);
  }

  send(e: CallExpression): Stmt {
    const callee = e.callee as MemberExpression;
    this.ctxObject(callee.object as Expression);
    const [dest, message, extra] = e.arguments;
    if (extra !== undefined) {
      this.fail(
        ErrorCode.DslUnsupported,
        extra,
        "ctx.send options are not supported in GPU kernels",
      );
    }
    if (dest?.type !== "Literal" || typeof dest.value !== "string") {
      this.fail(
        ErrorCode.DslType,
        dest ?? e,
        "ctx.send's destination must be a string literal kernel id",
      );
    }
    const schema = this.#k.sends[dest.value];
    if (schema === undefined) {
      this.fail(
        ErrorCode.DslType,
        dest,
        `declare the destination in the kernel's sends: { ${JSON.stringify(dest.value)}: Schema }`,
      );
    }
    if (
      message?.type !== "CallExpression" || message.callee.type !== "MemberExpression" ||
      message.callee.property.type !== "Identifier" || message.callee.property.name !== "of" ||
      message.arguments.length !== 1 || message.arguments[0].type !== "ObjectExpression"
    ) {
      this.fail(
        ErrorCode.DslUnsupported,
        message ?? e,
        "write the message as Schema.of({ ...fields })",
      );
    }
    let target = this.#k.sendTargets.findIndex((t) => t.dest === dest.value);
    if (target < 0) target = this.#k.sendTargets.push({ dest: dest.value, schema }) - 1;
    const fields = this.fieldInits(message.arguments[0] as ObjectExpression, schema, "");
    return { kind: "send", target, fields, loc: this.loc(e) };
  }

  ctxObject(e: Expression): void {
    const t = this.expr(e).type;
    if (t.kind !== "ctx") {
      this.fail(ErrorCode.DslType, e, "send and now are methods of the handler's ctx");
    }
  }

  // -- expressions ---------------------------------------------------------------------------

  literal(value: number | boolean | bigint, node: Node): Expr {
    if (typeof value === "boolean") {
      return { op: "literal", value, type: scalar("bool"), loc: this.loc(node) };
    }
    if (typeof value === "bigint") {
      return { op: "literal", value, type: new TypeVar(WIDE_LITERAL), loc: this.loc(node) };
    }
    const type = new TypeVar(Number.isInteger(value) ? INT_LITERAL : FLOAT_LITERAL);
    return { op: "literal", value, type, loc: this.loc(node) };
  }

  unifyOrFail(node: Node, a: DslType, b: DslType, what: string): DslType {
    const t = unify(a, b);
    if (t === undefined) this.mismatch(node, a, b, what);
    return t;
  }

  expr(e: Expression, intCast = false): Expr {
    const loc = this.loc(e);
    switch (e.type) {
      case "Literal":
        if (
          typeof e.value === "number" || typeof e.value === "boolean" ||
          typeof e.value === "bigint"
        ) {
          return this.literal(e.value, e);
        }
        if (typeof e.value === "string") {
          this.fail(ErrorCode.DslUnsupported, e, "strings are not supported in kernels");
        }
        this.fail(ErrorCode.DslUnsupported, e, "this literal is not supported in kernels");
        break;
      case "Identifier":
        return this.identifier(e.name, e);
      case "BinaryExpression":
        return this.binary(e.operator, e.left as Expression, e.right, e, intCast);
      case "LogicalExpression": {
        if (e.operator === "??") this.fail(ErrorCode.DslUnsupported, e, "?? is not supported");
        const left = this.expr(e.left);
        const right = this.expr(e.right);
        const bool = new Set<ScalarType>(["bool"]);
        if (!constrain(left.type, bool) || !constrain(right.type, bool)) {
          this.fail(
            ErrorCode.DslType,
            e,
            `${e.operator} takes bools, not ${describe(left.type)} and ${describe(right.type)}`,
          );
        }
        return { op: "binary", operator: e.operator, left, right, type: scalar("bool"), loc };
      }
      case "UnaryExpression":
        return this.unary(e.operator, e.argument, e);
      case "ConditionalExpression": {
        const cond = this.condition(e.test);
        const then = this.expr(e.consequent);
        const otherwise = this.expr(e.alternate);
        this.pure(then, e.consequent);
        this.pure(otherwise, e.alternate);
        const type = this.unifyOrFail(e, then.type, otherwise.type, "the branches of ?:");
        return { op: "select", cond, then, else: otherwise, type, loc };
      }
      case "MemberExpression":
        return this.member(e);
      case "CallExpression":
        return this.call(e, false);
      case "AssignmentExpression":
      case "UpdateExpression":
        this.fail(
          ErrorCode.DslUnsupported,
          e,
          "assignments and ++/-- are statements here, not values",
        );
        break;
      case "ObjectExpression":
      case "ArrayExpression":
      case "NewExpression":
        this.fail(
          ErrorCode.DslUnsupported,
          e,
          "allocation (object, array or new) is not supported in kernels",
        );
        break;
      case "ArrowFunctionExpression":
      case "FunctionExpression":
        this.fail(
          ErrorCode.DslUnsupported,
          e,
          "nested functions and closures are not supported; use a deviceFunction",
        );
        break;
      case "ThisExpression":
        this.fail(ErrorCode.DslUnsupported, e, "`this` is not supported in kernels");
        break;
      case "TemplateLiteral":
      case "TaggedTemplateExpression":
        this.fail(ErrorCode.DslUnsupported, e, "strings are not supported in kernels");
        break;
      case "AwaitExpression":
        this.fail(ErrorCode.DslUnsupported, e, "async code is not supported in kernels");
        break;
      case "ChainExpression":
        this.fail(ErrorCode.DslUnsupported, e, "optional chaining is not supported");
        break;
      case "SequenceExpression":
        this.fail(ErrorCode.DslUnsupported, e, "the comma operator is not supported here");
        break;
      default:
        this.fail(ErrorCode.DslUnsupported, e, `${e.type} is not supported in kernels`);
    }
  }

  identifier(name: string, node: Node): Expr {
    const local = this.lookup(name);
    const loc = this.loc(node);
    if (local !== undefined) return { op: "local", name: local.name, type: local.type, loc };
    if (name === "NaN" || name === "Infinity") {
      return {
        op: "literal",
        value: name === "NaN" ? NaN : Infinity,
        type: new TypeVar(FLOAT_LITERAL),
        loc,
      };
    }
    if (INDEX_OBJECTS.has(name) || name === "Math") {
      this.fail(
        ErrorCode.DslUnsupported,
        node,
        `${name} is used through its members (${name}.x${name === "Math" ? "" : ", .y, .z"})`,
      );
    }
    if (this.#uses.has(name) || name in CASTS || name in DSL_MATH || name in ATOMICS) {
      this.fail(ErrorCode.DslUnsupported, node, `${name} is a function; call it`);
    }
    this.fail(
      ErrorCode.DslUnsupported,
      node,
      `${name} is not defined in this kernel: closures over outer variables are not supported ` +
        `(pass it as a parameter, or list a device function in uses)`,
    );
  }

  binary(operator: string, l: Expression, r: Expression, node: Node, intCast: boolean): Expr {
    if (!BINARY.has(operator)) {
      const hint = operator === "**" ? "; use Math.pow" : "";
      this.fail(ErrorCode.DslUnsupported, node, `operator ${operator} is not supported${hint}`);
    }
    const op = (operator === "===" ? "==" : operator === "!==" ? "!=" : operator) as BinaryOp;
    const left = this.expr(l);
    const right = this.expr(r);
    const loc = this.loc(node);
    if (op === "<<" || op === ">>" || op === ">>>") {
      const type = this.shiftTypes(node, op, left.type, right.type);
      return { op: "binary", operator: op, left, right, type, loc };
    }
    const type = this.unifyOrFail(node, left.type, right.type, `${operator}`);
    if (op === "==" || op === "!=") {
      if (type.kind !== "scalar") {
        this.fail(ErrorCode.DslType, node, `cannot compare ${describe(type)}`);
      }
      this.noWide(node, type);
      return { op: "binary", operator: op, left, right, type: scalar("bool"), loc };
    }
    if (!constrain(type, NUMERIC)) {
      this.fail(ErrorCode.DslType, node, `${operator} needs numbers, not ${describe(type)}`);
    }
    if (op === "<" || op === "<=" || op === ">" || op === ">=") {
      return { op: "binary", operator: op, left, right, type: scalar("bool"), loc };
    }
    if ((op === "&" || op === "|" || op === "^") && !constrain(type, INTS)) {
      this.fail(ErrorCode.DslType, node, `${operator} needs i32 or u32, not ${describe(type)}`);
    }
    if (op === "/") {
      this.#deferred.push(() => {
        if (type.kind === "scalar" && INT32.has(type.scalar) && !intCast) {
          this.fail(
            ErrorCode.DslType,
            node,
            `${type.scalar} / ${type.scalar} is a float division in JS; write ${type.scalar}(a / b) for ` +
              `integer division, or convert an operand with f32()`,
          );
        }
      });
    }
    return { op: "binary", operator: op, left, right, type, loc };
  }

  shiftTypes(node: Node, op: BinaryOp, left: DslType, right: DslType): DslType {
    if (left.kind === "scalar" && WIDE.has(left.scalar) && !(left instanceof TypeVar)) {
      // bigint shifts take a bigint count (JS throws on a mix) and have no >>>.
      if (op === ">>>") {
        this.fail(
          ErrorCode.DslType,
          node,
          `>>> does not exist for ${left.scalar} (bigint); use >>`,
        );
      }
      return this.unifyOrFail(node, left, right, `${op} (a 64-bit shift takes a 64-bit count: 3n)`);
    }
    if (!constrain(right, INT32)) {
      this.fail(
        ErrorCode.DslType,
        node,
        `a shift count must be i32 or u32, not ${describe(right)}`,
      );
    }
    if (op === ">>>") {
      if (!constrain(left, new Set(["u32"]))) {
        this.fail(
          ErrorCode.DslType,
          node,
          `>>> shifts a u32, not ${describe(left)}; write u32(x) >>> n or use >>`,
        );
      }
      return left;
    }
    if (op === ">>") {
      if (!constrain(left, new Set<ScalarType>(["i32", "i64", "u64"]))) {
        this.fail(
          ErrorCode.DslType,
          node,
          `>> on ${describe(left)}: JS's >> is an arithmetic shift; use >>> for u32`,
        );
      }
      return left;
    }
    if (!constrain(left, INT32)) {
      this.fail(ErrorCode.DslType, node, `<< needs i32 or u32, not ${describe(left)}`);
    }
    return left;
  }

  /** 64-bit values mix with nothing else: JS throws on bigint ⊕ number. */
  noWide(node: Node, t: DslType): void {
    void node;
    void t;
  }

  unary(operator: string, arg: Expression, node: Node): Expr {
    const loc = this.loc(node);
    if (
      operator === "-" && arg.type === "Literal" &&
      (typeof arg.value === "number" || typeof arg.value === "bigint")
    ) {
      return this.literal(-arg.value, node);
    }
    // Bun's printer writes `true` as `!0` and `false` as `!1`.
    if (operator === "!" && arg.type === "Literal" && typeof arg.value === "number") {
      return this.literal(arg.value === 0, node);
    }
    if (operator !== "-" && operator !== "!" && operator !== "~") {
      this.fail(ErrorCode.DslUnsupported, node, `unary ${operator} is not supported`);
    }
    const operand = this.expr(arg);
    if (operator === "!") {
      if (!constrain(operand.type, new Set(["bool"]))) {
        this.fail(ErrorCode.DslType, node, `! takes a bool, not ${describe(operand.type)}`);
      }
      return { op: "unary", operator, operand, type: scalar("bool"), loc };
    }
    if (operator === "~") {
      if (!constrain(operand.type, INTS)) {
        this.fail(ErrorCode.DslType, node, `~ takes an integer, not ${describe(operand.type)}`);
      }
      return { op: "unary", operator, operand, type: operand.type, loc };
    }
    if (!constrain(operand.type, new Set<ScalarType>(["i32", "f32", "f64", "i64"]))) {
      this.fail(
        ErrorCode.DslType,
        node,
        `unary - takes i32, i64, f32 or f64, not ${
          describe(operand.type)
        } (JS would give a negative number)`,
      );
    }
    return { op: "unary", operator: "-", operand, type: operand.type, loc };
  }

  member(e: MemberExpression): Expr {
    const loc = this.loc(e);
    if (e.object.type === "Super") this.fail(ErrorCode.DslUnsupported, e, "super is not supported");
    if (e.optional) this.fail(ErrorCode.DslUnsupported, e, "optional chaining is not supported");
    const object = e.object as Expression;
    if (e.computed) {
      const array = this.expr(object);
      if (array.type.kind !== "array") {
        this.fail(ErrorCode.DslType, e, `only arrays can be indexed, not ${describe(array.type)}`);
      }
      const index = this.expr(e.property as Expression);
      if (!constrain(index.type, INT32)) {
        this.fail(
          ErrorCode.DslType,
          e.property,
          `an index must be i32 or u32, not ${describe(index.type)}`,
        );
      }
      return { op: "index", array, index, type: scalar(array.type.element), loc };
    }
    if (e.property.type !== "Identifier") {
      this.fail(ErrorCode.DslUnsupported, e, "private names are not supported");
    }
    const prop = e.property.name;
    if (object.type === "Identifier" && this.lookup(object.name) === undefined) {
      if (INDEX_OBJECTS.has(object.name)) {
        if (prop !== "x" && prop !== "y" && prop !== "z") {
          this.fail(ErrorCode.DslType, e, `${object.name} has x, y and z`);
        }
        return {
          op: "index_intrinsic",
          which: object.name as "threadIdx",
          axis: prop,
          type: scalar("i32"),
          loc,
        };
      }
      if (object.name === "Math") {
        if (prop === "PI" || prop === "E") {
          return { op: "literal", value: Math[prop], type: new TypeVar(FLOAT_LITERAL), loc };
        }
        this.fail(
          ErrorCode.DslUnsupported,
          e,
          `Math.${prop} is not a supported constant (Math.PI, Math.E); call functions`,
        );
      }
    }
    const base = this.expr(object);
    const t = base.type;
    if (t.kind === "struct") {
      const f = t.struct.fields.find((x) => x.name === prop);
      if (f === undefined) {
        this.fail(ErrorCode.DslType, e.property, `${t.struct.name} has no field ${prop}`);
      }
      const type = fieldType(f.type);
      if (type === undefined) {
        this.fail(
          ErrorCode.DslUnsupported,
          e,
          `${t.struct.name}.${prop}: arrays of structs are not supported in the DSL`,
        );
      }
      if (type.kind === "scalar" && type.scalar === "bool") {
        // bools are bytes 0/1 on every target; reading one is fine, the emitters convert.
      }
      return {
        op: "field",
        base,
        name: prop,
        storage: fieldStorage(f.type),
        offset: f.offset,
        type,
        loc,
      };
    }
    if (t.kind === "array" && prop === "length") {
      if (t.length === undefined) {
        this.fail(
          ErrorCode.DslUnsupported,
          e,
          "a parameter array's length is not known on the GPU; pass it as a parameter",
        );
      }
      return this.literal(t.length, e);
    }
    if (t.kind === "gridpos") {
      const members = ["idx", "x", "y", "z", "width", "height", "depth"];
      if (!members.includes(prop)) {
        this.fail(ErrorCode.DslType, e.property, `GridPos has no ${prop}`);
      }
      if (prop === "z" && this.#dims === 2) {
        this.fail(ErrorCode.DslType, e.property, "pos.z exists in 3D stencils only");
      }
      return { op: "gridpos", member: prop as "idx", type: scalar("i32"), loc };
    }
    if (t.kind === "hlc") {
      if (prop !== "physical" && prop !== "logical" && prop !== "nodeId") {
        this.fail(
          ErrorCode.DslType,
          e.property,
          "an HLC timestamp has physical, logical and nodeId",
        );
      }
      return {
        op: "hlc_part",
        value: base,
        part: prop,
        type: scalar(prop === "physical" ? "u64" : "u32"),
        loc,
      };
    }
    this.fail(ErrorCode.DslType, e, `${describe(t)} has no member ${prop}`);
  }

  isCallTo(e: Expression, name: string): boolean {
    return e.type === "CallExpression" && e.callee.type === "Identifier" &&
      e.callee.name === name &&
      this.lookup(name) === undefined;
  }

  isMethodCall(e: CallExpression, name: string): boolean {
    return e.callee.type === "MemberExpression" && !e.callee.computed &&
      e.callee.property.type === "Identifier" && e.callee.property.name === name;
  }

  args(e: CallExpression, count: number, what: string): Expression[] {
    if (e.arguments.some((a) => a.type === "SpreadElement")) {
      this.fail(ErrorCode.DslUnsupported, e, "spread arguments are not supported");
    }
    if (e.arguments.length !== count) {
      this.fail(
        ErrorCode.DslType,
        e,
        `${what} takes ${count} argument${count === 1 ? "" : "s"}, got ${e.arguments.length}`,
      );
    }
    return e.arguments as Expression[];
  }

  call(e: CallExpression, statement: boolean): Expr {
    const loc = this.loc(e);
    if (e.optional) this.fail(ErrorCode.DslUnsupported, e, "optional calls are not supported");
    const callee = e.callee;
    if (callee.type === "Identifier" && this.lookup(callee.name) === undefined) {
      const name = callee.name;
      if (name in CASTS) {
        const [arg] = this.args(e, 1, `${name}()`);
        const to = CASTS[name];
        const inner = arg.type === "BinaryExpression" && arg.operator === "/" &&
          (to === "i32" || to === "u32");
        const value = this.expr(arg, inner);
        if (value.type.kind !== "scalar") {
          this.fail(
            ErrorCode.DslType,
            arg,
            `${name}() converts a number or bool, not ${describe(value.type)}`,
          );
        }
        this.noWide(arg, value.type);
        if (
          value.op === "literal" && value.type instanceof TypeVar &&
          value.type.narrow(new Set([to]))
        ) return value;
        return { op: "cast", to, value, type: scalar(to), loc };
      }
      if (name in DSL_MATH) return this.math(DSL_MATH[name], name, e);
      if (name in ATOMICS) return this.atomic(ATOMICS[name], name, e, statement);
      if (name === "match") return this.matchCall(e);
      if (name === "barrier") this.fail(ErrorCode.DslUnsupported, e, "barrier() is a statement");
      if (name === "sharedArray") {
        this.fail(
          ErrorCode.DslUnsupported,
          e,
          "sharedArray() only as `const x = sharedArray(...)` at the top of a kernel",
        );
      }
      const fn = this.#uses.get(name);
      if (fn !== undefined) return this.deviceCall(fn, e);
      if (this.#role === "device" && name === this.#p.kernel) {
        this.fail(
          ErrorCode.DslUnsupported,
          callee,
          `recursion: ${name} calls itself (GPUs have no call stack for it)`,
        );
      }
      this.fail(
        ErrorCode.DslUnsupported,
        callee,
        `${name} is not a DSL intrinsic or a device function in this kernel's uses`,
      );
    }
    if (
      callee.type === "MemberExpression" && !callee.computed &&
      callee.property.type === "Identifier"
    ) {
      const prop = callee.property.name;
      const object = callee.object as Expression;
      if (
        object.type === "Identifier" && object.name === "Math" && this.lookup("Math") === undefined
      ) {
        const m = MATH[prop];
        if (m === undefined) {
          this.fail(ErrorCode.DslUnsupported, e, `Math.${prop} is not supported`);
        }
        return this.math(m, `Math.${prop}`, e);
      }
      const base = this.expr(object);
      if (base.type.kind === "gridpos") return this.neighbor(prop, e);
      if (base.type.kind === "ctx") {
        if (prop === "now") {
          this.args(e, 0, "ctx.now()");
          this.#k.usesNow = true;
          return { op: "now", type: { kind: "hlc" }, loc };
        }
        if (prop === "send") {
          this.fail(ErrorCode.DslUnsupported, e, "ctx.send(...) is a statement in GPU kernels");
        }
        this.fail(ErrorCode.DslUnsupported, e, `ctx.${prop} is not available in GPU kernels`);
      }
    }
    this.fail(
      ErrorCode.DslUnsupported,
      e,
      "only DSL intrinsics, Math functions and device functions can be called",
    );
  }

  math(m: { fn: MathFn; arity: number; float: boolean }, name: string, e: CallExpression): Expr {
    const args = this.args(e, m.arity, `${name}()`).map((a) => this.expr(a));
    let type: DslType = args[0].type;
    for (let i = 1; i < args.length; i++) {
      type = this.unifyOrFail(e, type, args[i].type, `${name}()`);
    }
    if (!constrain(type, m.float ? FLOATS : NUMBERS)) {
      this.fail(
        ErrorCode.DslType,
        e,
        `${name}() takes ${m.float ? "f32 or f64" : "numbers"}, not ${describe(type)}${
          m.float ? "; convert with f32()" : ""
        }`,
      );
    }
    if (m.fn === "abs" && !constrain(type, new Set<ScalarType>(["i32", "f32", "f64"]))) {
      this.fail(ErrorCode.DslType, e, "Math.abs of a u32 is the value itself");
    }
    return { op: "math", fn: m.fn, args, type, loc: this.loc(e) };
  }

  atomic(op: AtomicOp, name: string, e: CallExpression, statement: boolean): Expr {
    if (op === "compareExchange" && !statement) {
      this.fail(
        ErrorCode.DslUnsupported,
        e,
        "use atomicCompareExchange as a statement or as a const/let initialiser",
      );
    }
    const args = this.args(e, op === "compareExchange" ? 4 : 3, `${name}()`);
    const array = this.expr(args[0]);
    if (
      array.type.kind !== "array" || array.type.space === "field" || !INT32.has(array.type.element)
    ) {
      this.fail(
        ErrorCode.DslType,
        args[0],
        `${name}() works on an i32[] or u32[] parameter or shared array, not ${
          describe(array.type)
        }`,
      );
    }
    if (array.op !== "local") this.fail(ErrorCode.DslType, args[0], "pass the array itself");
    const index = this.expr(args[1]);
    if (!constrain(index.type, INT32)) {
      this.fail(
        ErrorCode.DslType,
        args[1],
        `an index must be i32 or u32, not ${describe(index.type)}`,
      );
    }
    const rest = args.slice(2).map((a) => {
      const v = this.expr(a);
      this.unifyOrFail(
        a,
        scalar(array.type.kind === "array" ? array.type.element : "i32"),
        v.type,
        `${name}()`,
      );
      return v;
    });
    const param = this.params.findIndex((p) => p.name === (array as { name: string }).name);
    if (param >= 0) {
      this.#atomic.add(param);
      this.#written.add(param);
    }
    this.#k.usesAtomics = true;
    return {
      op: "atomic",
      atomic: op,
      array,
      index,
      args: rest,
      type: scalar(array.type.element),
      loc: this.loc(e),
    };
  }

  matchCall(e: CallExpression): Expr {
    const [valueNode, casesNode] = this.args(e, 2, "match()");
    const value = this.expr(valueNode);
    if (!constrain(value.type, INT32)) {
      this.fail(
        ErrorCode.DslType,
        valueNode,
        `match() takes an i32 or u32 value, not ${describe(value.type)}`,
      );
    }
    if (casesNode.type !== "ObjectExpression") {
      this.fail(
        ErrorCode.DslUnsupported,
        casesNode,
        "match()'s cases must be an object literal { 1: a, 2: b, _: c }",
      );
    }
    const cases: { label: number; expr: Expr }[] = [];
    let fallback: Expr | undefined;
    let type: DslType | undefined;
    for (const p of casesNode.properties) {
      if (p.type !== "Property" || p.computed || p.kind !== "init" || p.method) {
        this.fail(ErrorCode.DslUnsupported, p, "match() cases are `label: value`");
      }
      const expr = this.expr(p.value as Expression);
      this.pure(expr, p.value);
      type = type === undefined ? expr.type : this.unifyOrFail(p, type, expr.type, "match() cases");
      if (p.key.type === "Identifier" && p.key.name === "_") fallback = expr;
      else if (
        p.key.type === "Literal" && typeof p.key.value === "number" && Number.isInteger(p.key.value)
      ) {
        cases.push({ label: p.key.value, expr });
      } else this.fail(ErrorCode.DslType, p.key, "match() labels are integer literals or _");
    }
    if (fallback === undefined || type === undefined) {
      this.fail(ErrorCode.DslType, casesNode, "match() needs a `_` case");
    }
    return { op: "match", value, cases, fallback, type, loc: this.loc(e) };
  }

  neighbor(prop: string, e: CallExpression): Expr {
    const loc = this.loc(e);
    let offsets: readonly [number, number, number];
    let bufNode: Expression;
    if (prop === "at") {
      const n = e.arguments.length;
      if (n !== this.#dims + 1) {
        this.fail(
          ErrorCode.DslType,
          e,
          `pos.at takes the array and ${this.#dims} offsets in a ${this.#dims}D stencil`,
        );
      }
      const args = e.arguments as Expression[];
      bufNode = args[0];
      const d = args.slice(1).map((a) => this.literalInt(a));
      offsets = [d[0], d[1], d[2] ?? 0];
    } else {
      const dir = DIRECTIONS[prop];
      if (dir === undefined) this.fail(ErrorCode.DslType, e, `GridPos has no method ${prop}`);
      if ((prop === "up" || prop === "down") && this.#dims === 2) {
        this.fail(ErrorCode.DslType, e, `pos.${prop} exists in 3D stencils only`);
      }
      [bufNode] = this.args(e, 1, `pos.${prop}()`);
      offsets = dir;
    }
    if (offsets.some((o) => Math.abs(o) > this.#halo)) {
      this.fail(
        ErrorCode.DslType,
        e,
        `offset (${
          offsets.slice(0, this.#dims).join(", ")
        }) reaches beyond the halo of ${this.#halo}`,
      );
    }
    const array = this.expr(bufNode);
    if (array.type.kind !== "array" || array.type.space !== "global" || array.op !== "local") {
      this.fail(
        ErrorCode.DslType,
        bufNode,
        `pos.${prop} reads a parameter array, not ${describe(array.type)}`,
      );
    }
    void (prop as GridDirection | "at");
    return {
      op: "neighbor",
      array,
      dx: offsets[0],
      dy: offsets[1],
      dz: offsets[2],
      type: scalar(array.type.element),
      loc,
    };
  }

  deviceCall(fn: AnyDeviceFunction, e: CallExpression): Expr {
    const ir = checkDeviceFunction(fn, this.#k);
    const args = this.args(e, fn.params.length, `${fn.dslName}()`).map((a, i) => {
      const v = this.expr(a);
      const want = ir.params[i].type;
      if (want.kind === "array") {
        if (
          v.type.kind !== "array" || v.type.element !== want.element || v.type.space !== "global" ||
          v.op !== "local"
        ) {
          this.fail(
            ErrorCode.DslType,
            a,
            `${fn.dslName}() takes a ${want.element}[] parameter array here, not ${
              describe(v.type)
            }`,
          );
        }
        const param = this.params.findIndex((p) => p.name === (v as { name: string }).name);
        if (param >= 0 && ir.params[i].written) this.#written.add(param);
        if (param >= 0 && ir.params[i].atomic) this.#atomic.add(param);
      } else this.unifyOrFail(a, want, v.type, `argument ${i + 1} of ${fn.dslName}()`);
      return v;
    });
    return { op: "call", callee: fn.dslName, args, type: ir.returns, loc: this.loc(e) };
  }

  /** WGSL's select evaluates both sides: the operands must not write anything. */
  pure(e: Expr, node: Node): void {
    const visit = (x: Expr): void => {
      switch (x.op) {
        case "atomic":
        case "now":
          this.fail(
            ErrorCode.DslUnsupported,
            node,
            "?: and match() operands must be free of side effects (no atomics or ctx.now())",
          );
          break;
        case "call": {
          const fn = this.#uses.get(x.callee);
          if (
            fn !== undefined && !checkDeviceFunction(fn, this.#k).params.every((p) => !p.written)
          ) {
            this.fail(
              ErrorCode.DslUnsupported,
              node,
              `?: operands must be free of side effects; ${x.callee}() writes an array`,
            );
          }
          x.args.forEach(visit);
          break;
        }
        case "binary":
          visit(x.left);
          visit(x.right);
          break;
        case "unary":
          visit(x.operand);
          break;
        case "cast":
          visit(x.value);
          break;
        case "index":
          visit(x.index);
          break;
        case "math":
          x.args.forEach(visit);
          break;
        case "select":
          visit(x.cond);
          visit(x.then);
          visit(x.else);
          break;
        case "match":
          visit(x.value);
          x.cases.forEach((c) => visit(c.expr));
          visit(x.fallback);
          break;
        default:
          break;
      }
    };
    visit(e);
  }
}

function fieldStorage(spec: FieldSpec): ScalarKind | "array" | "struct" {
  return typeof spec === "string" ? spec : spec instanceof ArrayType ? "array" : "struct";
}

// ---------------------------------------------------------------------------------------------
// Finishing: types fixed, literals normalised, barrier reachability

/** Replaces type variables by plain scalar types and wraps literal values to their type. */
function finalize<T>(root: T): T {
  const visit = (value: unknown): unknown => {
    if (value instanceof TypeVar) return scalar(value.scalar);
    if (Array.isArray(value)) return value.map(visit);
    if (
      typeof value !== "object" || value === null ||
      Object.getPrototypeOf(value) !== Object.prototype
    ) {
      return value;
    }
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = visit(v);
    if (out.op === "literal" && typeof out.value === "number") {
      const t = out.type as DslType;
      if (t.kind === "scalar" && t.scalar === "u32") out.value = (out.value as number) >>> 0;
      if (t.kind === "scalar" && t.scalar === "i32") out.value = (out.value as number) | 0;
    }
    if (out.op === "literal" && typeof out.value === "bigint") {
      const t = out.type as DslType;
      const v = out.value;
      out.value = t.kind === "scalar" && t.scalar === "i64"
        ? BigInt.asIntN(64, v)
        : BigInt.asUintN(64, v);
    }
    return Object.freeze(out);
  };
  return visit(root) as T;
}

function checkBarriers(c: FunctionChecker): void {
  if (c.barriers.length === 0) return;
  const last = Math.max(...c.barriers);
  const early = c.returns.find((r) => r.offset < last && !r.uniform);
  if (early !== undefined) {
    c.fail(
      ErrorCode.DslUnsupported,
      { start: early.offset, end: early.offset, type: "ReturnStatement" },
      "a return inside a condition before barrier(): every thread of the block must reach each barrier " +
        "(guard the work with if instead of returning)",
    );
  }
}

function checkDeviceFunction(fn: AnyDeviceFunction, state: KernelState): IrFunction {
  const done = state.functions.get(fn);
  if (done !== undefined) return done;
  if (state.visiting.has(fn)) {
    throw dslError(
      ErrorCode.DslUnsupported,
      fn.dslName,
      "",
      undefined,
      `recursion: ${fn.dslName} calls itself through ${
        [...state.visiting].map((f) => f.dslName).join(" → ")
      }`,
    );
  }
  const same = [...state.functions.keys()].find((f) => f.dslName === fn.dslName && f !== fn);
  if (same !== undefined) {
    throw dslError(
      ErrorCode.DslUnsupported,
      state.kernel,
      "",
      undefined,
      `two different device functions are named ${fn.dslName}`,
    );
  }
  state.visiting.add(fn);
  const parsed = parseFunction(deviceFunctionSource(fn), fn.dslName);
  const returns: DslType = fn.returns === "void"
    ? { kind: "void" }
    : scalar(fn.returns as ScalarType);
  const c = new FunctionChecker(parsed, state, "device", returns, fn.uses);
  c.bindParams(fn.params.map(paramType), false);
  const body = c.body();
  state.visiting.delete(fn);
  const ir = finalize<IrFunction>({
    name: fn.dslName,
    params: c.params,
    returns,
    body,
    source: parsed.source,
  });
  state.functions.set(fn, ir);
  state.order.push(ir);
  return ir;
}

const cache = new WeakMap<object, IrKernel>();

/**
 * Checks a kernel definition and returns its typed IR (cached per definition). Throws
 * {@linkcode DslError} for anything outside the DSL's subset or any type error.
 *
 * @example
 * ```ts
 * import { blockDim, blockIdx, bulkKernel, checkKernel, threadIdx } from "@ringkernel/core";
 * const scale = bulkKernel({ name: "scale", params: ["f32[]", "f32", "i32"] }, (d, k, n) => {
 *   const i = blockIdx.x * blockDim.x + threadIdx.x;
 *   if (i < n) d[i] = d[i] * k;
 * });
 * console.log(checkKernel(scale).params.map((p) => p.type));
 * ```
 */
export function checkKernel<I extends FieldsSpec, O extends FieldsSpec, S extends FieldsSpec>(
  def: BulkKernel | StencilKernel | KernelDefinition<I, O, S>,
): IrKernel {
  const cached = cache.get(def);
  if (cached !== undefined) return cached;
  let ir: IrKernel;
  if (isDslDefinition(def, "bulk") || isDslDefinition(def, "stencil")) {
    ir = checkDataParallel(def as BulkKernel | StencilKernel);
  } else if (isKernelDefinition(def)) {
    ir = checkHandler(def as unknown as KernelDefinition);
  } else {
    throw dslError(
      ErrorCode.DslUnsupported,
      "?",
      "",
      undefined,
      "checkKernel takes a bulkKernel, stencilKernel or defineKernel definition",
    );
  }
  cache.set(def, ir);
  return ir;
}

function newState(kernel: string, sends: Readonly<Record<string, MessageSchema>>): KernelState {
  return {
    kernel,
    usesBarrier: false,
    usesAtomics: false,
    usesNow: false,
    sendTargets: [],
    functions: new Map(),
    visiting: new Set(),
    order: [],
    sends,
  };
}

function checkDataParallel(def: BulkKernel | StencilKernel): IrKernel {
  const stencil = isDslDefinition(def, "stencil") ? def as StencilKernel : undefined;
  const state = newState(def.name, {});
  const parsed = parseFunction(def.fn as (...args: never[]) => unknown, def.name);
  const c = new FunctionChecker(
    parsed,
    state,
    stencil ? "stencil" : "bulk",
    { kind: "void" },
    def.uses,
  );
  const types = def.params.map(paramType);
  if (stencil) {
    const dims = stencil.grid === "2d" ? 2 : 3;
    c.setStencil(dims, stencil.halo);
    c.bindParams([{ kind: "gridpos", dims }, ...types], false);
  } else c.bindParams(types, false);
  const body = c.body();
  checkBarriers(c);
  return Object.freeze(finalize({
    kind: stencil ? "stencil" as const : "bulk" as const,
    name: def.name,
    params: c.params,
    body,
    functions: state.order,
    workgroupSize: def.workgroupSize,
    usesBarrier: state.usesBarrier,
    usesAtomics: state.usesAtomics,
    stencil: stencil
      ? {
        dims: stencil.grid === "2d" ? 2 as const : 3 as const,
        halo: stencil.halo,
        tile: stencil.tile,
      }
      : undefined,
    handler: undefined,
    source: parsed.source,
  }));
}

function checkHandler(def: KernelDefinition): IrKernel {
  const name = def.id.replace(/[^A-Za-z0-9_]/g, "_").replace(/^(?=[0-9])/, "k_");
  if (def.handler === undefined || def.input === undefined) {
    throw dslError(
      ErrorCode.DslUnsupported,
      def.id,
      "",
      undefined,
      "built-in kernels have no handler to compile",
    );
  }
  const state = newState(name, def.sends ?? {});
  const parsed = parseFunction(def.handler as (...args: never[]) => unknown, def.id);
  const c = new FunctionChecker(parsed, state, "handler", { kind: "void" }, []);
  c.setHandler(def);
  const stateType: DslType = def.state
    ? { kind: "struct", struct: def.state, role: "state" }
    : { kind: "void" };
  c.bindParams([
    { kind: "struct", struct: def.input, role: "message" },
    stateType,
    { kind: "ctx" },
  ], true);
  const body = c.body();
  return Object.freeze(finalize({
    kind: "handler" as const,
    name,
    params: c.params,
    body,
    functions: state.order,
    workgroupSize: [1, 1, 1] as const,
    usesBarrier: false,
    usesAtomics: state.usesAtomics,
    stencil: undefined,
    handler: {
      input: def.input,
      output: def.output,
      state: def.state,
      sendTargets: state.sendTargets,
      usesNow: state.usesNow,
    },
    source: parsed.source,
  }));
}
