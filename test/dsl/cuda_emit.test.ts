/**
 * The CUDA C emitter against nvcc: hand-built IR for every node kind (bulk, 2D/3D stencils, a
 * handler with message/state/reply/send/now, atomics, switch and loops, shared memory and
 * barriers, device functions) must compile with `nvcc -ptx -arch=sm_90`, and the ABI-relevant
 * text (entry signatures, literals, layout arithmetic) is pinned by snippets.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  array,
  defineMessage,
  type FieldSpec,
  type ScalarKind,
  struct,
} from "../../src/core/schema.ts";
import type { StructType } from "../../src/core/schema.ts";
import { DslError, ErrorCode } from "../../src/core/errors.ts";
import { defineKernel } from "../../src/runtime/kernel.ts";
import { checkKernel } from "../../src/dsl/check.ts";
import { type CudaSource, emitCuda } from "../../src/dsl/cuda.ts";
import { bulkKernel, deviceFunction, stencilKernel } from "../../src/dsl/define.ts";
import {
  atomicAdd,
  atomicCompareExchange,
  barrier,
  blockDim,
  blockIdx,
  clamp,
  f32,
  fma,
  i32,
  match,
  rsqrt,
  sharedArray,
  threadIdx,
  u32,
} from "../../src/dsl/intrinsics.ts";
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
  LValue,
  MathFn,
  ScalarType,
  Stmt,
  StructRole,
} from "../../src/dsl/ir.ts";

// ---------------------------------------------------------------------------------------------
// nvcc

const NVCC = "/usr/local/bin/nvcc";
const nvccProbe = spawnSync(NVCC, ["--version"], { encoding: "utf8" });
const nvccSkip: string | false = nvccProbe.error || nvccProbe.status !== 0
  ? `${NVCC} is missing (no CUDA toolkit on this machine), so emitted code cannot be compiled`
  : false;
if (nvccSkip) console.log(`cuda_emit: skipping the nvcc tests: ${nvccSkip}`);

/** Compiles `code` to PTX for sm_90; fails with nvcc's message on an error or a warning. */
function nvcc(code: string, name: string): void {
  const dir = mkdtempSync(join(tmpdir(), "rk-cuda-emit-"));
  const file = join(dir, `${name}.cu`);
  try {
    writeFileSync(file, code);
    let stderr = "";
    try {
      // execFileSync hides stderr on success; nvcc prints warnings there, so merge it in.
      stderr = execFileSync(
        "sh",
        ["-c", `"${NVCC}" -ptx -arch=sm_90 -x cu -o /dev/null "${file}" 2>&1`],
        { encoding: "utf8", timeout: 120_000 },
      );
    } catch (err) {
      const e = err as { stdout?: string; message: string };
      stderr = `${e.stdout ?? ""}${e.message}`;
      assert.fail(`nvcc rejected ${name}:\n${stderr}\n${numbered(code)}`);
    }
    assert.doesNotMatch(
      stderr,
      /warning/i,
      `nvcc warned on ${name}:\n${stderr}\n${numbered(code)}`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function numbered(code: string): string {
  return code.split("\n").map((l, i) => `${String(i + 1).padStart(4)} ${l}`).join("\n");
}

/** Collapses whitespace so multi-line signatures compare as one line. */
function flat(text: string): string {
  return text.replace(/\s+/g, " ").replace(/\( /g, "(");
}

// ---------------------------------------------------------------------------------------------
// IR builders

const L: Loc = { line: 1, column: 1, start: 0, end: 0 };
const S = (scalar: ScalarType): DslType => ({ kind: "scalar", scalar });
const F32 = S("f32");
const F64 = S("f64");
const I32 = S("i32");
const U32 = S("u32");
const U64 = S("u64");
const BOOL = S("bool");
const VOID: DslType = { kind: "void" };

function arr(element: ScalarType, space: "global" | "shared" = "global", length?: number): DslType {
  return { kind: "array", element, storage: element as ScalarKind, space, length };
}

const lit = (value: number | boolean, type: DslType = I32): Expr => ({
  op: "literal",
  value,
  type,
  loc: L,
});
const v = (name: string, type: DslType): Expr & LValue => ({ op: "local", name, type, loc: L });

const COMPARE = new Set<BinaryOp>(["==", "!=", "<", "<=", ">", ">=", "&&", "||"]);
const bin = (operator: BinaryOp, left: Expr, right: Expr): Expr => ({
  op: "binary",
  operator,
  left,
  right,
  type: COMPARE.has(operator) ? BOOL : left.type,
  loc: L,
});
const neg = (operand: Expr): Expr => ({
  op: "unary",
  operator: "-",
  operand,
  type: operand.type,
  loc: L,
});
const not = (operand: Expr): Expr => ({ op: "unary", operator: "!", operand, type: BOOL, loc: L });
const inv = (operand: Expr): Expr => ({
  op: "unary",
  operator: "~",
  operand,
  type: operand.type,
  loc: L,
});
const cast = (to: ScalarType, value: Expr): Expr => ({
  op: "cast",
  to,
  value,
  type: S(to),
  loc: L,
});

function at(array: Expr, index: Expr): Expr & LValue {
  if (array.type.kind !== "array") throw new Error("not an array");
  return { op: "index", array, index, type: S(array.type.element), loc: L };
}

const math = (fn: MathFn, type: DslType, ...args: Expr[]): Expr => ({
  op: "math",
  fn,
  args,
  type,
  loc: L,
});
const call = (callee: string, type: DslType, ...args: Expr[]): Expr => ({
  op: "call",
  callee,
  args,
  type,
  loc: L,
});
const ix = (
  which: "threadIdx" | "blockIdx" | "blockDim" | "gridDim",
  axis: "x" | "y" | "z",
): Expr => ({
  op: "index_intrinsic",
  which,
  axis,
  type: I32,
  loc: L,
});
const sel = (cond: Expr, then: Expr, otherwise: Expr): Expr => ({
  op: "select",
  cond,
  then,
  else: otherwise,
  type: then.type,
  loc: L,
});
const pos = (member: "idx" | "x" | "y" | "z" | "width" | "height" | "depth"): Expr => ({
  op: "gridpos",
  member,
  type: I32,
  loc: L,
});
const nb = (array: Expr, dx: number, dy: number, dz = 0): Expr => ({
  op: "neighbor",
  array,
  dx,
  dy,
  dz,
  type: S(array.type.kind === "array" ? array.type.element : "f32"),
  loc: L,
});
function atomic(
  op: "add" | "sub" | "min" | "max" | "exchange" | "compareExchange",
  array: Expr,
  index: Expr,
  ...args: Expr[]
): Expr {
  const t = array.type.kind === "array" ? S(array.type.element) : I32;
  return { op: "atomic", atomic: op, array, index, args, type: t, loc: L };
}

/** Scalar kinds as the DSL reads them. */
function readType(kind: ScalarKind): ScalarType {
  if (kind === "u8" || kind === "u16") return "u32";
  if (kind === "i8" || kind === "i16") return "i32";
  return kind;
}

/** The DSL type of a schema field type. */
function fieldType(t: FieldSpec): { type: DslType; storage: ScalarKind | "array" | "struct" } {
  if (typeof t === "string") return { type: S(readType(t)), storage: t };
  if (t.kind === "struct") {
    return { type: { kind: "struct", struct: t, role: "nested" }, storage: "struct" };
  }
  const el = t.element;
  if (typeof el !== "string") throw new Error("only scalar arrays in these tests");
  return {
    type: { kind: "array", element: readType(el), storage: el, space: "field", length: t.length },
    storage: "array",
  };
}

/** `base.name` on a struct-typed expression. */
function fld(base: Expr, name: string): Expr & LValue {
  if (base.type.kind !== "struct") throw new Error("not a struct");
  const f = base.type.struct.fields.find((x) => x.name === name);
  if (f === undefined) throw new Error(`no field ${name}`);
  const { type, storage } = fieldType(f.type);
  return { op: "field", base, name, storage, offset: f.offset, type, loc: L };
}

function init(schema: StructType, name: string, value: Expr): FieldInit {
  const f = schema.fields.find((x) => x.name === name);
  if (f === undefined) throw new Error(`no field ${name}`);
  return { name, storage: fieldType(f.type).storage, offset: f.offset, value };
}

const structType = (s: StructType, role: StructRole): DslType => ({
  kind: "struct",
  struct: s,
  role,
});

// Statements
const let_ = (name: string, type: DslType, initial: Expr | undefined, mutable = false): Stmt => ({
  kind: "let",
  name,
  type,
  mutable,
  init: initial,
  loc: L,
});
const set = (target: LValue, value: Expr, operator: AssignOp = "="): Stmt => ({
  kind: "assign",
  target,
  operator,
  value,
  loc: L,
});
const do_ = (expr: Expr): Stmt => ({ kind: "expr", expr, loc: L });
const if_ = (cond: Expr, then: Stmt[], otherwise: Stmt[] = []): Stmt => ({
  kind: "if",
  cond,
  then,
  else: otherwise,
  loc: L,
});
const ret = (value?: Expr): Stmt => ({ kind: "return", value, loc: L });
const brk: Stmt = { kind: "break", loc: L };
const cont: Stmt = { kind: "continue", loc: L };
const barrierStmt: Stmt = { kind: "barrier", loc: L };

function param(name: string, type: DslType, written = false, isAtomic = false): IrParam {
  return { name, type, written, atomic: isAtomic };
}

function kernel(partial: Partial<IrKernel> & Pick<IrKernel, "name" | "params" | "body">): IrKernel {
  return {
    kind: "bulk",
    functions: [],
    workgroupSize: [256, 1, 1],
    usesBarrier: false,
    usesAtomics: false,
    stencil: undefined,
    handler: undefined,
    source: "",
    ...partial,
  };
}

/** `const i = blockIdx.x * blockDim.x + threadIdx.x` */
const globalId = (name = "i"): Stmt =>
  let_(
    name,
    I32,
    bin("+", bin("*", ix("blockIdx", "x"), ix("blockDim", "x")), ix("threadIdx", "x")),
  );

// ---------------------------------------------------------------------------------------------
// Kernels

const lerp: IrFunction = {
  name: "lerp",
  source: "",
  params: [param("a", F32), param("b", F32), param("t", F32)],
  returns: F32,
  body: [ret(bin("+", v("a", F32), bin("*", bin("-", v("b", F32), v("a", F32)), v("t", F32))))],
};

const pick: IrFunction = {
  name: "pick",
  source: "",
  params: [param("c", BOOL), param("a", F32), param("b", F32)],
  returns: F32,
  body: [
    if_(v("c", BOOL), [ret(call("lerp", F32, v("a", F32), v("b", F32), lit(0.25, F32)))]),
    ret(v("b", F32)),
  ],
};

const scatter: IrFunction = {
  name: "scatter",
  source: "",
  params: [param("out", arr("f32"), true), param("k", I32), param("x", F32)],
  returns: VOID,
  body: [set(at(v("out", arr("f32")), v("k", I32)), v("x", F32), "+=")],
};

/** Bulk: arrays and scalars of every ABI kind, literals, casts, operators, math, calls. */
const bulk = kernel({
  name: "everything",
  params: [
    param("y", arr("f32"), true),
    param("x", arr("f32")),
    param("a", F32),
    param("n", I32),
    param("flag", BOOL),
    param("d", F64),
    param("mask", U32),
    param("dd", arr("f64"), true),
    param("bits", arr("u32"), true),
  ],
  functions: [lerp, pick, scatter],
  body: [
    globalId(),
    if_(bin(">=", v("i", I32), v("n", I32)), [ret()]),
    let_("xi", F32, at(v("x", arr("f32")), v("i", I32))),
    let_("acc", F32, lit(0, F32), true),
    set(v("acc", F32), math("fma", F32, v("a", F32), v("xi", F32), lit(0.1, F32)), "+="),
    set(v("acc", F32), math("sqrt", F32, math("abs", F32, v("acc", F32))), "+="),
    set(v("acc", F32), math("rsqrt", F32, lit(4, F32)), "+="),
    set(v("acc", F32), math("sin", F32, math("cos", F32, v("acc", F32))), "-="),
    set(v("acc", F32), math("exp", F32, math("log", F32, lit(2, F32))), "*="),
    set(v("acc", F32), math("pow", F32, v("acc", F32), lit(2, F32)), "/="),
    set(v("acc", F32), math("floor", F32, math("ceil", F32, v("acc", F32))), "+="),
    set(v("acc", F32), math("min", F32, v("acc", F32), lit(1e30, F32), lit(Infinity, F32))),
    set(v("acc", F32), math("max", F32, v("acc", F32), lit(-Infinity, F32))),
    set(v("acc", F32), math("clamp", F32, v("acc", F32), lit(-1.5, F32), lit(3.4e38, F32))),
    set(v("acc", F32), lit(2.5, F32), "%="),
    set(v("acc", F32), sel(v("flag", BOOL), neg(v("acc", F32)), lit(-0, F32)), "+="),
    if_(bin("!=", v("acc", F32), v("acc", F32)), [set(v("acc", F32), lit(NaN, F32))]),
    set(v("acc", F32), lit(1e-45, F32), "+="),
    set(v("acc", F32), call("pick", F32, not(v("flag", BOOL)), v("acc", F32), lit(16777217, F32))),
    set(
      at(v("y", arr("f32")), v("i", I32)),
      call("lerp", F32, v("acc", F32), v("xi", F32), v("a", F32)),
    ),
    do_(call("scatter", VOID, v("y", arr("f32")), v("i", I32), lit(1, F32))),
    // integers: casts, shifts, bit ops, wrapping literals
    let_("k", I32, cast("i32", v("acc", F32))),
    let_("u", U32, cast("u32", v("acc", F32)), true),
    set(v("u", U32), cast("u32", v("k", I32)), "^="),
    set(v("u", U32), bin(">>>", v("u", U32), v("k", I32))),
    set(v("u", U32), lit(3, U32), "<<="),
    set(v("u", U32), v("k", I32), ">>>="),
    set(v("u", U32), bin("&", v("u", U32), inv(v("mask", U32)))),
    set(v("u", U32), lit(0xffffffff, U32), "|="),
    let_("m", I32, bin("%", bin(">>", v("k", I32), lit(33)), lit(7)), true),
    set(v("m", I32), lit(-2147483648), "+="),
    set(v("m", I32), math("clamp", I32, v("m", I32), lit(-5), lit(5))),
    set(v("m", I32), math("abs", I32, math("min", I32, v("m", I32), lit(3))), "*="),
    set(v("u", U32), math("max", U32, v("u", U32), lit(7, U32))),
    let_("both", BOOL, bin("&&", v("flag", BOOL), bin("<", v("m", I32), lit(2)))),
    set(
      at(v("bits", arr("u32")), v("i", I32)),
      bin("+", v("u", U32), cast("u32", v("both", BOOL))),
    ),
    // f64
    let_("e", F64, bin("*", v("d", F64), cast("f64", v("acc", F32))), true),
    set(
      v("e", F64),
      math("sqrt", F64, math("fma", F64, v("e", F64), lit(0.1, F64), lit(1e300, F64))),
    ),
    set(v("e", F64), math("min", F64, v("e", F64), lit(Infinity, F64))),
    set(v("e", F64), lit(3, F64), "%="),
    set(at(v("dd", arr("f64")), v("i", I32)), bin("+", v("e", F64), cast("f64", v("m", I32)))),
    set(
      at(v("y", arr("f32")), bin("+", v("i", I32), lit(1))),
      cast("f32", cast("i32", v("e", F64))),
    ),
  ],
});

/** 2D heat stencil, halo 1. */
const heat = kernel({
  name: "heat",
  kind: "stencil",
  workgroupSize: [16, 16, 1],
  stencil: { dims: 2, halo: 1, tile: [16, 16, 1] },
  params: [
    param("pos", { kind: "gridpos", dims: 2 }),
    param("src", arr("f32")),
    param("dst", arr("f32"), true),
    param("c", F32),
  ],
  body: [
    let_("center", F32, at(v("src", arr("f32")), pos("idx"))),
    let_(
      "sum",
      F32,
      bin(
        "+",
        bin("+", nb(v("src", arr("f32")), 0, -1), nb(v("src", arr("f32")), 0, 1)),
        bin("+", nb(v("src", arr("f32")), 1, 0), nb(v("src", arr("f32")), -1, 0)),
      ),
    ),
    let_(
      "edge",
      BOOL,
      bin("||", bin("==", pos("x"), lit(0)), bin("==", pos("y"), bin("-", pos("height"), lit(1)))),
    ),
    set(
      at(v("dst", arr("f32")), pos("idx")),
      sel(
        v("edge", BOOL),
        v("center", F32),
        bin(
          "+",
          v("center", F32),
          bin("*", v("c", F32), bin("-", v("sum", F32), bin("*", lit(4, F32), v("center", F32)))),
        ),
      ),
    ),
  ],
});

/** 3D stencil, halo 2, with `at` offsets reaching the halo's edge. */
const wave = kernel({
  name: "wave3d",
  kind: "stencil",
  workgroupSize: [8, 8, 4],
  stencil: { dims: 3, halo: 2, tile: [8, 8, 4] },
  params: [
    param("pos", { kind: "gridpos", dims: 3 }),
    param("u", arr("f32")),
    param("out", arr("f32"), true),
    param("steps", arr("i32"), true),
  ],
  body: [
    let_(
      "s",
      F32,
      bin(
        "+",
        bin("+", nb(v("u", arr("f32")), 0, 0, 1), nb(v("u", arr("f32")), 0, 0, -1)),
        bin("-", nb(v("u", arr("f32")), 2, -1, 1), nb(v("u", arr("f32")), -2, 2, -2)),
      ),
    ),
    set(at(v("out", arr("f32")), pos("idx")), v("s", F32)),
    if_(bin("==", bin("+", pos("x"), bin("+", pos("y"), pos("z"))), lit(0)), [
      set(
        at(v("steps", arr("i32")), lit(0)),
        bin("*", pos("width"), bin("*", pos("height"), pos("depth"))),
      ),
    ]),
  ],
});

// Handler schemas
const Vec3 = struct({ x: "f32", y: "f32", z: "f32" }, { name: "Vec3" });
const Sample = defineMessage({
  typeId: 11,
  name: "Sample",
  fields: {
    id: "u64",
    value: "f32",
    level: "u8",
    ok: "bool",
    delta: "i16",
    hist: array("u32", 4),
    small: array("u8", 3),
    origin: Vec3,
  },
});
const Summary = defineMessage({
  typeId: 12,
  name: "Summary",
  fields: {
    total: "f32",
    count: "u32",
    level: "u8",
    ok: "bool",
    stamp: "u64",
    hist: array("u32", 4),
    at: Vec3,
  },
});
const Ping = defineMessage({
  typeId: 13,
  name: "Ping",
  fields: { sender: "u32", stamp: "u64", tag: "u8" },
});
const Note = defineMessage({ typeId: 14, name: "Note", fields: { v: "f32" } });
const AccState = struct(
  { total: "f32", count: "u32", flags: array("u8", 4), last: "u64", logical: "u32", sign: "i8" },
  { name: "AccState" },
);

const msgT = structType(Sample, "message");
const stateT = structType(AccState, "state");
const HLC: DslType = { kind: "hlc" };
const msg = v("m", msgT);
const st = v("st", stateT);

const handler = kernel({
  name: "acc",
  kind: "handler",
  workgroupSize: [1, 1, 1],
  params: [param("m", msgT), param("st", stateT), param("ctx", { kind: "ctx" })],
  handler: {
    input: Sample,
    output: Summary,
    state: AccState,
    sendTargets: [{ dest: "pinger", schema: Ping }, { dest: "noter", schema: Note }],
    usesNow: true,
  },
  body: [
    set(fld(st, "total"), fld(msg, "value"), "+="),
    set(fld(st, "count"), lit(1, U32), "+="),
    set(at(fld(st, "flags"), lit(0)), fld(msg, "level")),
    set(at(fld(st, "flags"), lit(1)), lit(3, U32), "+="),
    set(fld(st, "sign"), fld(msg, "delta")),
    set(fld(st, "sign"), lit(1), "<<="),
    let_("t", HLC, { op: "now", type: HLC, loc: L }),
    set(fld(st, "last"), v("t", HLC)),
    set(fld(st, "logical"), {
      op: "hlc_part",
      value: v("t", HLC),
      part: "logical",
      type: U32,
      loc: L,
    }),
    let_("phys", U64, { op: "hlc_part", value: v("t", HLC), part: "physical", type: U64, loc: L }),
    let_("node", U32, {
      op: "hlc_part",
      value: { op: "now", type: HLC, loc: L },
      part: "nodeId",
      type: U32,
      loc: L,
    }),
    let_("p", structType(Vec3, "nested"), fld(msg, "origin")),
    let_("h", fieldType(array("u32", 4)).type, fld(msg, "hist")),
    if_(not(fld(msg, "ok")), [ret()]),
    if_(bin(">", fld(msg, "level"), lit(200, U32)), [
      {
        kind: "send",
        target: 0,
        fields: [
          init(Ping, "sender", v("node", U32)),
          init(Ping, "stamp", fld(msg, "id")),
          init(Ping, "tag", bin("&", fld(msg, "level"), lit(15, U32))),
        ],
        loc: L,
      },
    ]),
    {
      kind: "send",
      target: 1,
      fields: [init(Note, "v", fld(v("p", structType(Vec3, "nested")), "y"))],
      loc: L,
    },
    {
      kind: "reply",
      fields: [
        init(Summary, "total", fld(st, "total")),
        init(Summary, "count", bin("+", fld(st, "count"), cast("u32", v("phys", U64)))),
        init(Summary, "level", at(fld(st, "flags"), lit(1))),
        init(Summary, "ok", bin("<", fld(msg, "delta"), lit(0))),
        init(Summary, "stamp", v("t", HLC)),
        init(Summary, "hist", v("h", fieldType(array("u32", 4)).type)),
        init(Summary, "at", fld(msg, "origin")),
      ],
      loc: L,
    },
  ],
});

/** A handler without state or output: the ABI keeps the parameters as unused `unsigned int*`. */
const fireAndForget = kernel({
  name: "forward",
  kind: "handler",
  workgroupSize: [1, 1, 1],
  params: [param("m", structType(Note, "message")), param("ctx", { kind: "ctx" })],
  handler: {
    input: Note,
    output: undefined,
    state: undefined,
    sendTargets: [{ dest: "noter", schema: Note }],
    usesNow: false,
  },
  body: [
    {
      kind: "send",
      target: 0,
      fields: [
        init(Note, "v", bin("*", fld(v("m", structType(Note, "message")), "v"), lit(2, F32))),
      ],
      loc: L,
    },
  ],
});

/** Atomics on i32 and u32 global arrays, compareExchange as a let initialiser and a statement. */
const atomics = kernel({
  name: "histo",
  usesAtomics: true,
  params: [
    param("data", arr("u32")),
    param("hist", arr("u32"), false, true),
    param("stats", arr("i32"), true, true),
    param("n", I32),
  ],
  body: [
    globalId(),
    if_(bin("<", v("i", I32), v("n", I32)), [
      let_("b", U32, bin("&", at(v("data", arr("u32")), v("i", I32)), lit(255, U32))),
      do_(atomic("add", v("hist", arr("u32")), v("b", U32), lit(1, U32))),
      do_(atomic("sub", v("stats", arr("i32")), lit(0), lit(1))),
      let_("old", I32, atomic("max", v("stats", arr("i32")), lit(1), v("i", I32))),
      do_(atomic("min", v("stats", arr("i32")), lit(2), v("old", I32))),
      do_(atomic("exchange", v("hist", arr("u32")), lit(256), v("b", U32))),
      let_(
        "prev",
        I32,
        atomic("compareExchange", v("stats", arr("i32")), lit(3), lit(0), v("i", I32)),
      ),
      do_(
        atomic(
          "compareExchange",
          v("hist", arr("u32")),
          lit(257, U32),
          lit(0, U32),
          cast("u32", v("prev", I32)),
        ),
      ),
      // an i32 value on a u32 array: the emitter casts to the element type
      do_(atomic("max", v("hist", arr("u32")), lit(258), v("i", I32))),
    ]),
  ],
});

/** switch (grouped labels, fallthrough-free), for/while, break/continue, match. */
const control = kernel({
  name: "control_flow",
  params: [param("out", arr("i32"), true), param("op", U32), param("n", I32)],
  body: [
    globalId(),
    let_("acc", I32, lit(0), true),
    {
      kind: "for",
      init: [let_("j", I32, lit(0), true)],
      cond: bin("<", v("j", I32), v("n", I32)),
      update: [set(v("j", I32), lit(1), "+=")],
      body: [
        if_(bin("==", bin("%", v("j", I32), lit(3)), lit(0)), [cont]),
        if_(bin(">", v("acc", I32), lit(1000)), [brk], [
          if_(bin("<", v("acc", I32), lit(-1000)), [brk], [set(v("acc", I32), v("j", I32), "+=")]),
        ]),
      ],
      loc: L,
    },
    {
      kind: "for",
      init: [let_("a", I32, lit(0), true), let_("b", F32, lit(1, F32), true)],
      cond: undefined,
      update: [set(v("a", I32), lit(1), "+="), set(v("b", F32), lit(2, F32), "*=")],
      body: [
        if_(bin(">", v("b", F32), lit(100, F32)), [brk]),
        set(v("acc", I32), v("a", I32), "^="),
      ],
      loc: L,
    },
    let_("w", I32, lit(10), true),
    {
      kind: "while",
      cond: bin(">", v("w", I32), lit(0)),
      body: [
        set(v("w", I32), lit(1), "-="),
        {
          kind: "switch",
          value: v("op", U32),
          cases: [
            { labels: [0, 1], body: [set(v("acc", I32), lit(1), "+=")] },
            {
              labels: [2],
              body: [
                let_("tmp", I32, bin("*", v("acc", I32), lit(2))),
                set(v("acc", I32), v("tmp", I32)),
              ],
            },
            { labels: [3], body: [cont] },
            { labels: [4], body: [] },
          ],
          fallback: [set(v("acc", I32), lit(1), "-="), if_(bin("<", v("acc", I32), lit(0)), [brk])],
          loc: L,
        },
      ],
      loc: L,
    },
    {
      kind: "switch",
      value: v("acc", I32),
      cases: [{ labels: [-1], body: [ret()] }],
      fallback: undefined,
      loc: L,
    },
    set(
      at(v("out", arr("i32")), v("i", I32)),
      {
        op: "match",
        value: v("op", U32),
        cases: [{ label: 0, expr: v("acc", I32) }, { label: 7, expr: neg(v("acc", I32)) }],
        fallback: lit(-1),
        type: I32,
        loc: L,
      },
    ),
  ],
});

/** Block reduction in shared memory with top-level barriers. */
const reduce = kernel({
  name: "block_sum",
  usesBarrier: true,
  workgroupSize: [128, 1, 1],
  params: [param("x", arr("f32")), param("sums", arr("f32"), true), param("n", I32)],
  body: [
    { kind: "shared", name: "tile", element: "f32", length: 128, loc: L },
    { kind: "shared", name: "hits", element: "u32", length: 4, loc: L },
    globalId(),
    let_("t", I32, ix("threadIdx", "x")),
    set(
      at(v("tile", arr("f32", "shared", 128)), v("t", I32)),
      sel(bin("<", v("i", I32), v("n", I32)), at(v("x", arr("f32")), v("i", I32)), lit(0, F32)),
    ),
    do_(atomic("add", v("hits", arr("u32", "shared", 4)), lit(0), lit(1, U32))),
    barrierStmt,
    if_(bin("==", v("t", I32), lit(0)), [
      let_("s", F32, lit(0, F32), true),
      {
        kind: "for",
        init: [let_("k", I32, lit(0), true)],
        cond: bin("<", v("k", I32), ix("blockDim", "x")),
        update: [set(v("k", I32), lit(1), "+=")],
        body: [set(v("s", F32), at(v("tile", arr("f32", "shared", 128)), v("k", I32)), "+=")],
        loc: L,
      },
      set(at(v("sums", arr("f32")), ix("blockIdx", "x")), v("s", F32)),
    ]),
    barrierStmt,
  ],
});

const CORPUS: readonly IrKernel[] = [
  bulk,
  heat,
  wave,
  handler,
  fireAndForget,
  atomics,
  control,
  reduce,
];

// ---------------------------------------------------------------------------------------------
// Tests

describe("emitCuda: ABI text", () => {
  const sources = new Map<string, CudaSource>(CORPUS.map((k) => [k.name, emitCuda(k)]));
  const src = (name: string): CudaSource => sources.get(name) as CudaSource;

  it("bulk: extern C entry with launch bounds, const restrict read-only arrays, bool as u32", () => {
    const s = src("everything");
    assert.equal(s.entry, "everything");
    assert.ok(
      flat(s.code).includes(
        'extern "C" __global__ void __launch_bounds__(256) everything(float* y, ' +
          "const float* __restrict__ x, float a, int n, unsigned int rk_arg_flag, double d, " +
          "unsigned int mask, double* dd, unsigned int* bits) {",
      ),
      s.parts.harness,
    );
    assert.ok(s.code.includes("const bool flag = rk_arg_flag != 0u;"));
    assert.deepEqual(
      s.params.map((p) => [p.kind, p.name, p.bytes]),
      [
        ["array", "y", 8],
        ["array", "x", 8],
        ["scalar", "a", 4],
        ["scalar", "n", 4],
        ["scalar", "rk_arg_flag", 4],
        ["scalar", "d", 8],
        ["scalar", "mask", 4],
        ["array", "dd", 8],
        ["array", "bits", 8],
      ],
    );
    assert.deepEqual(s.workgroupSize, [256, 1, 1]);
    assert.equal(s.code, [s.parts.prelude, s.parts.functions, s.parts.harness].join("\n"));
  });

  it("literals: shortest f32 with f suffix, non-finite by bits, wrapped integers", () => {
    const c = src("everything").code;
    for (
      const snippet of [
        "0.1f",
        "1e+30f",
        "-1.5f",
        "3.4e+38f",
        "1e-45f",
        "16777216.0f", // 16777217 is no f32: rounds to even
        "(-0.0f)",
        "__int_as_float(0x7fc00000)",
        "__int_as_float(0x7f800000)",
        "fmaxf(acc, -__int_as_float(0x7f800000))",
        "__longlong_as_double(0x7ff0000000000000ll)",
        "1e+300",
        "4294967295u",
        "-2147483647 - 1",
      ]
    ) assert.ok(c.includes(snippet), `missing ${snippet}`);
    assert.ok(src("control_flow").code.includes("if (b > 100.0f) {"), "100 is no 1e+2f");
  });

  it("JS semantics: f32 math names, fmodf, masked shifts, wrapping float->int", () => {
    const c = src("everything").code;
    for (
      const snippet of [
        "fmaf(a, xi, 0.1f)",
        "sqrtf(fabsf(acc))",
        "rsqrtf(4.0f)",
        "fminf(fminf(acc, 1e+30f), __int_as_float(0x7f800000))",
        "fminf(fmaxf(acc, -1.5f), 3.4e+38f)",
        "acc = fmodf(acc, 2.5f);",
        "e = fmod(e, 3.0);",
        "sqrt(fma(e, 0.1, 1e+300))",
        "min(max(m, -5), 5)",
        "u >>= (k & 31);",
        "u <<= 3;",
        "u = u >> (k & 31);",
        "int m = (k >> 1) % 7;", // 33 & 31
        "m += -2147483647 - 1;",
        "rk_f2i(acc)",
        "rk_f2u(acc)",
        "int rk_f2i(float x)",
      ]
    ) assert.ok(c.includes(snippet), `missing ${snippet}\n${c}`);
  });

  it("stencil 2D: grid params trail, padded index, neighbours by row", () => {
    const s = src("heat");
    const c = flat(s.code);
    assert.ok(
      c.includes(
        'extern "C" __global__ void __launch_bounds__(256) heat(const float* __restrict__ src, ' +
          "float* dst, float c, int rk_width, int rk_height, int rk_depth) {",
      ),
      s.parts.harness,
    );
    for (
      const snippet of [
        "if (rk_x >= rk_width || rk_y >= rk_height) return;",
        "const int rk_row = rk_width + 2;",
        "const int rk_idx = (rk_y + 1) * rk_row + rk_x + 1;",
        "src[rk_idx - rk_row]",
        "src[rk_idx + rk_row]",
        "src[rk_idx + 1]",
        "src[rk_idx - 1]",
      ]
    ) assert.ok(c.includes(snippet), `missing ${snippet}`);
    assert.deepEqual(
      s.params.map((p) => (p.kind === "array" || p.kind === "scalar" ? p.arg : p.name)),
      [0, 1, 2, "rk_width", "rk_height", "rk_depth"],
    );
  });

  it("stencil 3D: plane term, halo 2", () => {
    const c = src("wave3d").code;
    for (
      const snippet of [
        "if (rk_x >= rk_width || rk_y >= rk_height || rk_z >= rk_depth) return;",
        "const int rk_row = rk_width + 4;",
        "const int rk_plane = rk_row * (rk_height + 4);",
        "const int rk_idx = (rk_z + 2) * rk_plane + (rk_y + 2) * rk_row + rk_x + 2;",
        "u[rk_idx + rk_plane]",
        "u[rk_idx + rk_plane - rk_row + 2]",
        "u[rk_idx - 2 * rk_plane + 2 * rk_row - 2]",
        "__launch_bounds__(256) wave3d(",
      ]
    ) assert.ok(c.includes(snippet), `missing ${snippet}`);
  });

  it("handler: device function + batch entry, ctx struct, sub-word fields, send records", () => {
    const s = src("acc");
    assert.equal(s.entry, "acc_batch");
    assert.deepEqual(s.workgroupSize, [1, 1, 1]);
    const c = flat(s.code);
    for (
      const snippet of [
        'extern "C" __global__ void __launch_bounds__(1) acc_batch(const Sample* msgs, ' +
        "AccState* state, Summary* replies, unsigned int* replied, unsigned int* outbox, " +
        "unsigned int* control) {",
        "__device__ void rk_acc_handle(const Sample& m, AccState& st, rk_acc_ctx& ctx) {",
        "struct rk_acc_ctx { Summary* reply;",
        "rk_acc_handle(msgs[rk_i], *state, rk_c);",
        "st.flags[0] = (uint8_t)((unsigned int)m.level);",
        "st.flags[1] = (uint8_t)(((unsigned int)st.flags[1]) + 3u);",
        "st.sign = (int8_t)(((int)st.sign) << 1);",
        "const unsigned long long t = rk_hlc_tick(ctx.control);",
        "st.logical = (unsigned int)(t & 0xffffull);",
        "const unsigned long long phys = t >> 16;",
        "const unsigned int node = ((void)rk_hlc_tick(ctx.control), ctx.control[5]);",
        "auto& p = m.origin;",
        "if (!(m.ok != 0)) {",
        "const unsigned int rk_slot = atomicAdd(&ctx.control[2], 1u);",
        "if (rk_slot < ctx.control[1]) {",
        `unsigned int* const rk_rec = ctx.outbox + rk_slot * ${2 + Ping.size / 4}u;`,
        `rk_copy_words(rk_rec + 2, &rk_msg, ${Ping.size / 4}u);`,
        "rk_msg.tag = (uint8_t)(((unsigned int)m.level) & 15u);",
        "Summary rk_reply = {};",
        "rk_reply.ok = (uint8_t)(((int)m.delta) < 0);",
        "rk_copy_bytes(&rk_reply.hist, &h, sizeof(rk_reply.hist));",
        "rk_reply.at = m.origin;",
        "*ctx.reply = rk_reply; *ctx.replied = 1u; return;",
      ]
    ) assert.ok(c.includes(snippet), `missing ${snippet}\n${s.code}`);
    assert.ok(s.handler !== undefined);
    assert.equal(s.handler.outboxStride, 2 + Ping.size / 4);
    assert.deepEqual(s.handler.sendTargets.map((t) => [t.dest, t.typeId, t.payloadBytes]), [
      ["pinger", 13, 24],
      ["noter", 14, 4],
    ]);
    assert.equal(s.handler.inputSize, Sample.size);
    assert.equal(s.handler.stateSize, AccState.size);
    assert.equal(s.handler.outputSize, Summary.size);
    assert.ok(s.parts.handlerFunction.startsWith("__device__ void rk_acc_handle("));
  });

  it("handler without state or output keeps the six parameters", () => {
    const s = src("forward");
    assert.ok(
      flat(s.code).includes(
        "forward_batch(const Note* msgs, unsigned int* state, unsigned int* replies, " +
          "unsigned int* replied, unsigned int* outbox, unsigned int* control)",
      ),
      s.code,
    );
    assert.ok(
      s.code.includes(
        "rk_forward_handle(const Note& m, unsigned int* rk_state, rk_forward_ctx& ctx)",
      ),
    );
    assert.equal(s.handler?.outboxStride, 3);
  });

  it("atomics take &arr[i]; compareExchange is atomicCAS", () => {
    const c = src("histo").code;
    for (
      const snippet of [
        "unsigned int* hist",
        "int* stats",
        "atomicAdd(&hist[b], 1u);",
        "atomicSub(&stats[0], 1);",
        "const int old = atomicMax(&stats[1], i);",
        "atomicMin(&stats[2], old);",
        "atomicExch(&hist[256], b);",
        "const int prev = atomicCAS(&stats[3], 0, i);",
        "atomicCAS(&hist[257u], 0u, (unsigned int)prev);",
        "atomicMax(&hist[258], (unsigned int)(i));",
      ]
    ) assert.ok(c.includes(snippet), `missing ${snippet}\n${c}`);
  });

  it("switch groups labels and breaks unless the case jumps; match nests ternaries", () => {
    const c = src("control_flow").code;
    assert.match(c, /case 0u:\n\s+case 1u: \{\n\s+acc \+= 1;\n\s+break;\n\s+\}/);
    assert.match(c, /case 3u: \{\n\s+continue;\n\s+\}/);
    assert.match(c, /case 4u: \{\n\s+break;\n\s+\}/);
    assert.match(c, /case \(-1\): \{\n\s+return;\n\s+\}/);
    assert.match(c, /default: \{\n[^}]*acc -= 1;/);
    assert.ok(c.includes("for (int j = 0; j < n; j += 1) {"));
    assert.ok(c.includes("for (;; a += 1, b *= 2.0f) {"), c);
    assert.ok(c.includes("} else if (acc < (-1000)) {"));
    assert.ok(c.includes("out[i] = op == 0u ? acc : (op == 7u ? (-acc) : (-1));"));
  });

  it("shared arrays are declared __shared__, zeroed, and barriers are __syncthreads", () => {
    const c = src("block_sum").code;
    assert.ok(c.includes("__shared__ float tile[128];"));
    assert.ok(c.includes("__shared__ unsigned int hits[4];"));
    assert.ok(c.includes("for (int rk_k = rk_tid; rk_k < 128; rk_k += 128) tile[rk_k] = 0;"));
    assert.ok(c.includes("for (int rk_k = rk_tid; rk_k < 4; rk_k += 128) hits[rk_k] = 0;"));
    // one barrier after zeroing both arrays, then the kernel's two
    assert.equal(c.split("__syncthreads();").length - 1, 3);
  });

  it("device functions come before the kernel, callees first", () => {
    const c = src("everything").code;
    const at = (s: string): number => c.indexOf(s);
    assert.ok(at("__device__ float lerp(float a, float b, float t) {") > 0);
    assert.ok(at("__device__ float pick(bool c, float a, float b) {") > at("float lerp("));
    assert.ok(at("__device__ void scatter(float* out, int k, float x) {") > 0);
    assert.ok(at('extern "C"') > at("void scatter("));
  });
});

describe("emitCuda: errors", () => {
  it("a node the kernel kind cannot have is a located DslError", () => {
    const source = "(d) => {\n  d[0] = ctx.now();\n}";
    const loc: Loc = { line: 2, column: 10, start: 18, end: 27 };
    const bad = kernel({
      name: "bad",
      source,
      params: [param("d", arr("u32"), true)],
      body: [{ kind: "expr", expr: { op: "now", type: { kind: "hlc" }, loc }, loc }],
    });
    assert.throws(() => emitCuda(bad), (err: unknown) => {
      assert.ok(err instanceof DslError);
      assert.equal(err.code, ErrorCode.DslUnsupported);
      assert.equal(err.line, 2);
      assert.equal(err.column, 10);
      assert.match(err.snippet, /d\[0\] = ctx\.now\(\);\n\s+\^/);
      return true;
    });
  });
});

describe("emitCuda: nvcc -ptx -arch=sm_90 accepts the emitted code", () => {
  for (const k of CORPUS) {
    it(`${k.kind} ${k.name}`, { skip: nvccSkip }, () => nvcc(emitCuda(k).code, k.name));
  }

  it("several kernels' parts concatenate into one unit (guards keep helpers single)", {
    skip: nvccSkip,
  }, () => {
    const [a, b] = [emitCuda(handler), emitCuda(fireAndForget)];
    const unit = [
      a.parts.prelude,
      b.parts.prelude,
      a.parts.structs,
      a.parts.ctx,
      b.parts.ctx,
      a.parts.handlerFunction,
      b.parts.handlerFunction,
      a.parts.harness,
      b.parts.harness,
    ].join("\n");
    nvcc(unit, "two_handlers");
  });
});

// ---------------------------------------------------------------------------------------------
// Real definitions: TS source → checkKernel → emitCuda → nvcc

export const smooth = deviceFunction(
  { name: "smooth", params: ["f32", "f32", "f32"], returns: "f32" },
  (a, b, t) => clamp(a + (b - a) * t, 0, 1),
);

export const tileSum = bulkKernel(
  {
    name: "tile_sum",
    params: ["f32[]", "f32[]", "u32[]", "i32", "bool"],
    workgroupSize: 64,
    uses: [smooth],
  },
  (x, out, count, n, squash) => {
    const tile = sharedArray("f32", 64);
    const i = blockIdx.x * blockDim.x + threadIdx.x;
    const t = threadIdx.x;
    tile[t] = i < n ? x[i] : 0;
    barrier();
    let s = 0;
    for (let k = 0; k < 64; k++) s += tile[(t + k) % 64];
    if (i < n) {
      out[i] = squash ? smooth(0, s, rsqrt(64)) : s;
      atomicAdd(count, 0, 1);
      const seen = atomicCompareExchange(count, 1, 0, u32(i));
      if (seen === 0 || seen > u32(n)) out[i] = fma(out[i], 2, f32((u32(i32(s)) >>> 3) & 7));
    }
  },
);

export const blur3d = stencilKernel(
  { name: "blur3d", grid: "3d", tile: [8, 4, 2], halo: 2, params: ["f32[]", "f32[]", "f32"] },
  (pos, src, dst, w) => {
    const near = pos.north(src) + pos.south(src) + pos.east(src) + pos.west(src) + pos.up(src) +
      pos.down(src);
    const far = pos.at(src, 2, 0, 0) + pos.at(src, -2, 1, -2);
    dst[pos.idx] = match(pos.z % 2, { 0: near * w, _: far * w }) +
      (pos.x === pos.width - 1 ? 1 : 0);
  },
);

export const edge2d = stencilKernel(
  { name: "edge2d", grid: "2d", tile: [16, 8], params: ["f32[]", "u32[]"] },
  (pos, img, out) => {
    const gx = pos.east(img) - pos.west(img);
    const gy = pos.south(img) - pos.north(img);
    out[pos.idx] = u32(gx * gx + gy * gy > 0.25) + (pos.y < i32(pos.height / 2) ? 2 : 0);
  },
);

const RealVec3 = struct({ x: "f32", y: "f32", z: "f32" }, { name: "RealVec3" });
export const Obs = defineMessage({
  typeId: 9101,
  name: "Obs",
  fields: { id: "u64", at: RealVec3, level: "u8", ok: "bool", delta: "i16", bins: array("u8", 4) },
});
export const ObsAck = defineMessage({
  typeId: 9102,
  name: "ObsAck",
  fields: {
    stamp: "u64",
    phys: "u64",
    count: "u32",
    at: RealVec3,
    bins: array("u8", 4),
    ok: "bool",
  },
});
export const Alert = defineMessage({
  typeId: 9103,
  name: "Alert",
  fields: { id: "u64", level: "u8" },
});

export const observer = defineKernel({
  id: "real-observer",
  module: import.meta.url,
  input: Obs,
  output: ObsAck,
  state: { count: "u32", last: "u64", hist: array("u16", 4), sum: RealVec3 },
  sends: { alarm: Alert },
  handler: (msg, state, ctx) => {
    const t = ctx.now();
    state.count += 1;
    state.last = msg.id;
    for (let k = 0; k < 4; k++) state.hist[k] += msg.bins[k];
    state.sum.x += msg.at.x;
    if (!msg.ok) return;
    switch (msg.level) {
      case 0:
      case 1:
        break;
      case 9:
        ctx.send("alarm", Alert.of({ id: msg.id, level: msg.level }));
        break;
      default:
        if (msg.delta < 0) return;
    }
    return {
      stamp: msg.id,
      phys: msg.id,
      count: state.count + t.logical + t.nodeId,
      at: msg.at,
      bins: [msg.bins[3], msg.bins[2], msg.bins[1], msg.bins[0]],
      ok: msg.delta > 0,
    };
  },
});

describe("checkKernel → emitCuda → nvcc on TS definitions", () => {
  it("bulk with shared memory, barrier, atomics, a device function and a bool param", {
    skip: nvccSkip,
  }, () => {
    const s = emitCuda(checkKernel(tileSum));
    assert.ok(s.code.includes("__device__ float smooth(float a, float b, float t) {"));
    assert.ok(s.code.includes("unsigned int rk_arg_squash"));
    assert.ok(s.code.includes("atomicCAS(&count[1],"), s.code);
    nvcc(s.code, "tile_sum");
  });

  it("3D stencil with every direction, pos.at and match", { skip: nvccSkip }, () => {
    const s = emitCuda(checkKernel(blur3d));
    assert.ok(s.code.includes("src[rk_idx - 2 * rk_plane + rk_row - 2]"), s.code);
    assert.deepEqual(s.workgroupSize, [8, 4, 2]);
    nvcc(s.code, "blur3d");
  });

  it("2D stencil", { skip: nvccSkip }, () => {
    nvcc(emitCuda(checkKernel(edge2d)).code, "edge2d");
  });

  it("handler: u64 and sub-word fields, nested struct, HLC parts, switch, send, reply", {
    skip: nvccSkip,
  }, () => {
    const s = emitCuda(checkKernel(observer));
    assert.equal(s.entry, "real_observer_batch");
    assert.equal(s.handler?.outboxStride, 2 + Alert.size / 4);
    assert.ok(s.code.includes("rk_reply.bins[0] = (uint8_t)((unsigned int)msg.bins[3]);"));
    assert.ok(
      s.code.includes(
        "rk_reply.count = (state.count + ((unsigned int)(t & 0xffffull))) + ctx.control[5];",
      ),
      s.code,
    );
    nvcc(s.code, "observer");
  });
});

describe("every corpus kernel's CUDA C compiles with nvcc", () => {
  // The same kernels bench/dsl_corpus.ts runs through NVRTC on a GPU; here nvcc checks each one
  // on machines without one (one unit per kernel, as NVRTC receives it).
  it("all of test/dsl/corpus.ts", { skip: nvccSkip, timeout: 300_000 }, async () => {
    const { corpus } = await import("./corpus.ts");
    for (const c of corpus) {
      const ir = checkKernel(c.kernel);
      nvcc(emitCuda(ir).code, ir.name);
    }
  });
});
