/**
 * The WGSL emitter on hand-built IR: every kernel shape compiles on a real WebGPU adapter with no
 * error from getCompilationInfo(), and the ones with a checkable result run and are compared
 * with the same computation in JS. Targets WGSL cannot express raise DslError(DslTarget).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { DslError, ErrorCode } from "../../src/core/errors.ts";
import { array, defineMessage, struct } from "../../src/core/schema.ts";
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
} from "../../src/dsl/ir.ts";
import { emitWgsl } from "../../src/dsl/wgsl.ts";
import {
  compileWgsl,
  dispatchHandlerWgsl,
  dispatchWgsl,
  runHandlerWgsl,
  runStencilWgsl,
  runWgsl,
  wgslDevice,
} from "./webgpu_run.ts";
import { runHandlerJs, runJs, runStencilJs } from "../../src/dsl/js.ts";
import { corpus, makeRand } from "./corpus.ts";
import { defineKernel } from "../../src/runtime/kernel.ts";

const { skip: gpuSkip } = await wgslDevice();
if (gpuSkip) console.log(`wgsl_emit: skipping the WebGPU runs: ${gpuSkip}`);

// ---------------------------------------------------------------------------------------------
// IR builders

const L: Loc = { line: 1, column: 1, start: 0, end: 0 };
const at = (line: number, column: number): Loc => ({ line, column, start: 0, end: 0 });
const T = (s: ScalarType): DslType => ({ kind: "scalar", scalar: s });
const VOID: DslType = { kind: "void" };
const lit = (value: number | boolean, s: ScalarType = "i32"): Expr => ({
  op: "literal",
  value,
  type: T(s),
  loc: L,
});
const v = (name: string, type: DslType | ScalarType = "i32"): Expr => ({
  op: "local",
  name,
  type: typeof type === "string" ? T(type) : type,
  loc: L,
});
const garr = (element: ScalarType): DslType => ({
  kind: "array",
  element,
  storage: element as "f32",
  space: "global",
  length: undefined,
});
const sarr = (element: ScalarType, length: number): DslType => ({
  kind: "array",
  element,
  storage: element as "f32",
  space: "shared",
  length,
});
const CMP = new Set(["==", "!=", "<", "<=", ">", ">=", "&&", "||"]);
const bin = (operator: BinaryOp, left: Expr, right: Expr): Expr => ({
  op: "binary",
  operator,
  left,
  right,
  type: CMP.has(operator) ? T("bool") : left.type,
  loc: L,
});
const idx = (array: Expr, index: Expr): Expr => ({
  op: "index",
  array,
  index,
  type: T(array.type.kind === "array" ? array.type.element : "i32"),
  loc: L,
});
const cast = (to: ScalarType, value: Expr): Expr => ({
  op: "cast",
  to,
  value,
  type: T(to),
  loc: L,
});
const intr = (which: "threadIdx" | "blockIdx" | "blockDim" | "gridDim", axis = "x"): Expr => ({
  op: "index_intrinsic",
  which,
  axis: axis as "x",
  type: T("i32"),
  loc: L,
});
const GID = bin("+", bin("*", intr("blockIdx"), intr("blockDim")), intr("threadIdx"));
const let_ = (name: string, init: Expr | undefined, mutable = false, type?: DslType): Stmt => ({
  kind: "let",
  name,
  type: type ?? init!.type,
  mutable,
  init,
  loc: L,
});
const set = (target: Expr, value: Expr, operator: AssignOp = "="): Stmt => ({
  kind: "assign",
  target: target as Expr & { op: "local" },
  operator,
  value,
  loc: L,
});
const if_ = (cond: Expr, then: Stmt[], els: Stmt[] = []): Stmt => ({
  kind: "if",
  cond,
  then,
  else: els,
  loc: L,
});
const ret: Stmt = { kind: "return", value: undefined, loc: L };
const exprS = (expr: Expr): Stmt => ({ kind: "expr", expr, loc: L });
const param = (name: string, type: DslType | ScalarType = "i32", written = false, atomic = false) =>
  ({
    name,
    type: typeof type === "string" ? T(type) : type,
    written,
    atomic,
  }) satisfies IrParam;
const atomicOp = (
  atomic: "add" | "sub" | "min" | "max" | "exchange" | "compareExchange",
  array: Expr,
  index: Expr,
  ...args: Expr[]
): Expr => ({
  op: "atomic",
  atomic,
  array,
  index,
  args,
  type: T(array.type.kind === "array" ? array.type.element : "i32"),
  loc: L,
});

function kernel(k: Partial<IrKernel> & Pick<IrKernel, "name" | "params" | "body">): IrKernel {
  return {
    kind: "bulk",
    functions: [],
    workgroupSize: [64, 1, 1],
    usesBarrier: false,
    usesAtomics: false,
    stencil: undefined,
    handler: undefined,
    source: "",
    ...k,
  };
}

async function compiles(ir: IrKernel): Promise<string> {
  const src = emitWgsl(ir);
  if (!gpuSkip) await compileWgsl(src.code);
  return src.code;
}

// ---------------------------------------------------------------------------------------------
// Bulk kernels

const saxpy = kernel({
  name: "saxpy",
  params: [param("y", garr("f32"), true), param("x", garr("f32")), param("a", "f32"), param("n")],
  body: [
    let_("i", GID),
    if_(bin(">=", v("i"), v("n")), [ret]),
    set(
      idx(v("y", garr("f32")), v("i")),
      bin(
        "+",
        bin("*", v("a", "f32"), idx(v("x", garr("f32")), v("i"))),
        idx(v("y", garr("f32")), v("i")),
      ),
    ),
  ],
});

const histogram = kernel({
  name: "histogram",
  usesAtomics: true,
  params: [param("data", garr("u32")), param("bins", garr("u32"), true, true), param("n")],
  body: [
    let_("i", GID),
    if_(bin("<", v("i"), v("n")), [
      exprS(
        atomicOp(
          "add",
          v("bins", garr("u32")),
          cast("i32", bin("%", idx(v("data", garr("u32")), v("i")), lit(16, "u32"))),
          lit(1, "u32"),
        ),
      ),
    ]),
  ],
});

// Every thread tries to claim slot[0] (exactly one wins), then increments counter[0] with a
// compare-exchange retry loop (a while with break around a let-initialising CAS).
const claim = kernel({
  name: "claim",
  usesAtomics: true,
  params: [
    param("slot", garr("i32"), true, true),
    param("wins", garr("i32"), true, true),
    param("counter", garr("i32"), true, true),
  ],
  body: [
    let_("i", GID),
    let_(
      "old",
      atomicOp("compareExchange", v("slot", garr("i32")), lit(0), lit(0), bin("+", v("i"), lit(1))),
    ),
    if_(bin("==", v("old"), lit(0)), [
      exprS(atomicOp("add", v("wins", garr("i32")), lit(0), lit(1))),
    ]),
    {
      kind: "while",
      cond: lit(true, "bool"),
      loc: L,
      body: [
        let_("cur", idx(v("counter", garr("i32")), lit(0))),
        let_(
          "seen",
          atomicOp(
            "compareExchange",
            v("counter", garr("i32")),
            lit(0),
            v("cur"),
            bin("+", v("cur"), lit(1)),
          ),
        ),
        if_(bin("==", v("seen"), v("cur")), [{ kind: "break", loc: L }]),
      ],
    },
    exprS(atomicOp("max", v("wins", garr("i32")), lit(1), v("i"))),
    exprS(atomicOp("min", v("wins", garr("i32")), lit(2), v("i"))),
    exprS(atomicOp("sub", v("wins", garr("i32")), lit(3), lit(2))),
    let_("prev", atomicOp("exchange", v("wins", garr("i32")), lit(4), v("i"))),
    set(idx(v("wins", garr("i32")), lit(5)), v("prev"), "+="),
  ],
});

// Control flow corpus: out[i] from a switch with grouped labels, a two-update for with continue
// (emitted as loop/continuing), a while with break, match, select, shifts, unary ops and casts.
const flow = kernel({
  name: "flow",
  params: [
    param("out", garr("i32"), true),
    param("fout", garr("u32"), true),
    param("n"),
    param("neg", "bool"),
  ],
  body: [
    let_("i", GID),
    if_(bin(">=", v("i"), v("n")), [ret]),
    let_("r", lit(0), true),
    {
      kind: "switch",
      value: bin("%", v("i"), lit(5)),
      loc: L,
      cases: [
        { labels: [0, 1], body: [set(v("r"), lit(10))] },
        {
          labels: [2],
          body: [set(v("r"), lit(20)), if_(bin("==", v("i"), lit(7)), [set(v("r"), lit(27))])],
        },
        { labels: [3], body: [] },
      ],
      fallback: [set(v("r"), lit(-1))],
    },
    let_("acc", lit(0), true),
    {
      kind: "for",
      init: [let_("a", lit(0), true), let_("b", lit(10), true)],
      cond: bin("<", v("a"), v("b")),
      update: [set(v("a"), lit(1), "+="), set(v("b"), lit(1), "-=")],
      loc: L,
      body: [
        if_(bin("==", v("a"), lit(2)), [{ kind: "continue", loc: L }]),
        set(v("acc"), bin("*", v("a"), v("b")), "+="),
      ],
    },
    {
      kind: "for",
      init: [let_("k", lit(0), true)],
      cond: bin("<", v("k"), lit(100)),
      update: [set(v("k"), lit(1), "+=")],
      loc: L,
      body: [
        if_(bin("==", v("k"), v("i")), [{ kind: "break", loc: L }]),
        if_(bin("==", bin("&", v("k"), lit(1)), lit(1)), [{ kind: "continue", loc: L }]),
        set(v("acc"), lit(1), "+="),
      ],
    },
    let_("w", lit(0), true),
    {
      kind: "while",
      cond: bin("<", v("w"), lit(1000)),
      loc: L,
      body: [set(v("w"), lit(3), "+="), if_(bin(">", v("w"), v("i")), [{ kind: "break", loc: L }])],
    },
    let_("m", {
      op: "match",
      value: bin("%", v("i"), lit(4)),
      cases: [{ label: 0, expr: lit(100) }, { label: 2, expr: lit(200) }],
      fallback: lit(300),
      type: T("i32"),
      loc: L,
    }),
    let_("m2", {
      op: "match",
      value: v("r"),
      cases: [{ label: -1, expr: lit(5) }],
      fallback: lit(6),
      type: T("i32"),
      loc: L,
    }),
    let_("s", {
      op: "select",
      cond: v("neg", "bool"),
      then: { op: "unary", operator: "-", operand: v("m"), type: T("i32"), loc: L },
      else: v("m"),
      type: T("i32"),
      loc: L,
    }),
    let_(
      "sh",
      bin(
        "^",
        bin("<<", v("i"), lit(33)),
        bin(
          ">>",
          { op: "unary", operator: "~", operand: v("i"), type: T("i32"), loc: L },
          cast("u32", lit(1)),
        ),
      ),
    ),
    set(
      idx(v("out", garr("i32")), v("i")),
      bin(
        "+",
        bin(
          "+",
          bin("+", bin("*", v("r"), lit(1000000)), bin("*", v("acc"), lit(1000))),
          bin("+", v("w"), v("s")),
        ),
        bin("+", v("sh"), v("m2")),
      ),
    ),
    // f32 → u32 wraps like JS (>>> 0) for negatives; u32 logical shift; unary minus on u32.
    let_("f", bin("-", cast("f32", v("i")), lit(3.5, "f32"))),
    set(
      idx(v("fout", garr("u32")), v("i")),
      bin("^", bin(">>>", cast("u32", v("f", "f32")), lit(1, "u32")), {
        op: "unary",
        operator: "-",
        operand: cast("u32", v("i")),
        type: T("u32"),
        loc: L,
      }),
    ),
  ],
});

function flowJs(i: number, neg: boolean): [number, number] {
  let r = 0;
  switch (i % 5) {
    case 0:
    case 1:
      r = 10;
      break;
    case 2:
      r = 20;
      if (i === 7) r = 27;
      break;
    case 3:
      break;
    default:
      r = -1;
  }
  let acc = 0;
  for (let a = 0, b = 10; a < b; a += 1, b -= 1) {
    if (a === 2) continue;
    acc += a * b;
  }
  for (let k = 0; k < 100; k += 1) {
    if (k === i) break;
    if ((k & 1) === 1) continue;
    acc += 1;
  }
  let w = 0;
  while (w < 1000) {
    w += 3;
    if (w > i) break;
  }
  const m = i % 4 === 0 ? 100 : i % 4 === 2 ? 200 : 300;
  const m2 = r === -1 ? 5 : 6;
  const s = neg ? -m : m;
  const sh = (i << 33) ^ (~i >> 1);
  const out = (r * 1000000 + acc * 1000 + (w + s) + (sh + m2)) | 0;
  const f = Math.fround(i - 3.5);
  const fout = ((f >>> 0) >>> 1 ^ (-i >>> 0)) >>> 0;
  return [out, fout];
}

// Workgroup reduction: each thread stores its value in a shared tile; after the barrier thread 0
// sums the tile with a for loop and writes the block's sum.
const blockSum = kernel({
  name: "block_sum",
  usesBarrier: true,
  params: [param("data", garr("f32")), param("sums", garr("f32"), true)],
  body: [
    { kind: "shared", name: "tile", element: "f32", length: 64, loc: L },
    let_("t", intr("threadIdx")),
    set(idx(v("tile", sarr("f32", 64)), v("t")), idx(v("data", garr("f32")), GID)),
    { kind: "barrier", loc: L },
    if_(bin("==", v("t"), lit(0)), [
      let_("acc", lit(0, "f32"), true),
      {
        kind: "for",
        init: [let_("k", lit(0), true)],
        cond: bin("<", v("k"), intr("blockDim")),
        update: [set(v("k"), lit(1), "+=")],
        loc: L,
        body: [set(v("acc", "f32"), idx(v("tile", sarr("f32", 64)), v("k")), "+=")],
      },
      set(idx(v("sums", garr("f32")), intr("blockIdx")), v("acc", "f32")),
    ]),
  ],
});

// Device functions: a scalar one that reassigns its parameter, and one taking an array that is
// specialised for each array it is called with.
const lerp: IrFunction = {
  name: "lerp",
  params: [param("a", "f32"), param("b", "f32"), param("t", "f32")],
  returns: T("f32"),
  body: [
    set(v("t", "f32"), {
      op: "math",
      fn: "clamp",
      args: [v("t", "f32"), lit(0, "f32"), lit(1, "f32")],
      type: T("f32"),
      loc: L,
    }),
    {
      kind: "return",
      value: bin(
        "+",
        v("a", "f32"),
        bin("*", bin("-", v("b", "f32"), v("a", "f32")), v("t", "f32")),
      ),
      loc: L,
    },
  ],
  source: "",
};
const bump: IrFunction = {
  name: "bump",
  params: [param("arr", garr("f32"), true), param("i"), param("by", "f32")],
  returns: VOID,
  body: [set(idx(v("arr", garr("f32")), v("i")), v("by", "f32"), "+=")],
  source: "",
};
const devfn = kernel({
  name: "devfn",
  functions: [lerp, bump],
  params: [param("a", garr("f32"), true), param("b", garr("f32"), true), param("n")],
  body: [
    let_("i", GID),
    if_(bin(">=", v("i"), v("n")), [ret]),
    let_("l", {
      op: "call",
      callee: "lerp",
      args: [idx(v("a", garr("f32")), v("i")), idx(v("b", garr("f32")), v("i")), lit(0.25, "f32")],
      type: T("f32"),
      loc: L,
    }),
    exprS({
      op: "call",
      callee: "bump",
      args: [v("a", garr("f32")), v("i"), v("l", "f32")],
      type: VOID,
      loc: L,
    }),
    exprS({
      op: "call",
      callee: "bump",
      args: [v("b", garr("f32")), v("i"), lit(1, "f32")],
      type: VOID,
      loc: L,
    }),
    let_("q", {
      op: "math",
      fn: "sqrt",
      args: [{
        op: "math",
        fn: "abs",
        args: [idx(v("b", garr("f32")), v("i"))],
        type: T("f32"),
        loc: L,
      }],
      type: T("f32"),
      loc: L,
    }),
    set(idx(v("b", garr("f32")), v("i")), {
      op: "math",
      fn: "fma",
      args: [v("q", "f32"), lit(2, "f32"), {
        op: "math",
        fn: "floor",
        args: [lit(0.5, "f32")],
        type: T("f32"),
        loc: L,
      }],
      type: T("f32"),
      loc: L,
    }),
  ],
});

// ---------------------------------------------------------------------------------------------
// Stencils

const pos = (member: "idx" | "x" | "y" | "z" | "width" | "height" | "depth"): Expr => ({
  op: "gridpos",
  member,
  type: T("i32"),
  loc: L,
});
const nb = (array: Expr, dx: number, dy: number, dz = 0): Expr => ({
  op: "neighbor",
  array,
  dx,
  dy,
  dz,
  type: T("f32"),
  loc: L,
});
const IN = v("inp", garr("f32"));
const OUT = v("out", garr("f32"));

const jacobi2d = kernel({
  kind: "stencil",
  name: "jacobi2d",
  workgroupSize: [8, 8, 1],
  stencil: { dims: 2, halo: 1, tile: [8, 8, 1] },
  params: [
    param("pos", { kind: "gridpos", dims: 2 }),
    param("inp", garr("f32")),
    param("out", garr("f32"), true),
    param("k", "f32"),
  ],
  body: [
    set(
      idx(OUT, pos("idx")),
      bin(
        "+",
        bin(
          "*",
          v("k", "f32"),
          bin("+", bin("+", nb(IN, 0, -1), nb(IN, 0, 1)), bin("+", nb(IN, 1, 0), nb(IN, -1, 0))),
        ),
        cast("f32", bin("+", pos("x"), bin("*", pos("y"), pos("width")))),
      ),
    ),
  ],
});

const sum3d = kernel({
  kind: "stencil",
  name: "sum3d",
  workgroupSize: [4, 4, 4],
  stencil: { dims: 3, halo: 2, tile: [4, 4, 4] },
  params: [
    param("pos", { kind: "gridpos", dims: 3 }),
    param("inp", garr("f32")),
    param("out", garr("f32"), true),
  ],
  body: [
    set(
      idx(OUT, pos("idx")),
      bin(
        "+",
        bin(
          "+",
          bin("+", nb(IN, 0, 0, -1), nb(IN, 0, 0, 1)),
          bin("+", nb(IN, 2, -2, 0), nb(IN, 0, 0, 2)),
        ),
        cast("f32", bin("+", pos("z"), bin("*", pos("depth"), pos("height")))),
      ),
    ),
  ],
});

// A stencil with a barrier: outside cells may not return early (WGSL needs the barrier in
// uniform control flow), so the emitter guards each top-level stretch instead.
const tiled = kernel({
  kind: "stencil",
  name: "tiled",
  usesBarrier: true,
  workgroupSize: [8, 4, 1],
  stencil: { dims: 2, halo: 1, tile: [8, 4, 1] },
  params: [
    param("pos", { kind: "gridpos", dims: 2 }),
    param("inp", garr("f32")),
    param("out", garr("f32"), true),
  ],
  body: [
    { kind: "shared", name: "tile", element: "f32", length: 32, loc: L },
    let_("t", bin("+", intr("threadIdx"), bin("*", intr("threadIdx", "y"), lit(8)))),
    set(idx(v("tile", sarr("f32", 32)), v("t")), idx(IN, pos("idx"))),
    { kind: "barrier", loc: L },
    set(idx(OUT, pos("idx")), bin("*", idx(v("tile", sarr("f32", 32)), v("t")), lit(2, "f32"))),
  ],
});

function paddedIndex(
  w: number,
  h: number,
  halo: number,
  x: number,
  y: number,
  z: number,
  dims: 2 | 3,
) {
  const row = w + 2 * halo;
  const plane = row * (h + 2 * halo);
  return (dims === 3 ? (z + halo) * plane : 0) + (y + halo) * row + x + halo;
}

// ---------------------------------------------------------------------------------------------
// Handler

const Ping = defineMessage({
  typeId: 41,
  name: "Ping",
  fields: { value: "f32", tag: "u8", flag: "bool", ts: "u64" },
});
const Pong = defineMessage({
  typeId: 42,
  name: "Pong",
  fields: { total: "f32", count: "u16", ok: "bool", stamp: "u64", logical: "u32" },
});
const Note = defineMessage({
  typeId: 43,
  name: "Note",
  fields: { a: "u8", b: "f32", c: "i16", when: "u64", node: "u32", flags: array("bool", 3) },
});
const State = struct(
  { total: "f32", count: "u16", last: "u8", flags: array("bool", 4), hist: array("u32", 2) },
  { name: "HState" },
);
const MSG = v("msg", { kind: "struct", struct: Ping, role: "message" });
const ST = v("state", { kind: "struct", struct: State, role: "state" });
const fld = (base: Expr, name: string, storage: FieldInit["storage"], type: DslType): Expr => ({
  op: "field",
  base,
  name,
  storage,
  offset: 0,
  type,
  loc: L,
});
const boolArr: DslType = {
  kind: "array",
  element: "bool",
  storage: "bool",
  space: "field",
  length: 4,
};
const u32Arr: DslType = {
  kind: "array",
  element: "u32",
  storage: "u32",
  space: "field",
  length: 2,
};
const NOW: Expr = { op: "now", type: { kind: "hlc" }, loc: L };
const init = (name: string, storage: FieldInit["storage"], value: Expr): FieldInit => ({
  name,
  storage,
  offset: 0,
  value,
});

const handlerIr = kernel({
  kind: "handler",
  name: "pinger",
  workgroupSize: [1, 1, 1],
  handler: {
    input: Ping,
    output: Pong,
    state: State,
    sendTargets: [{ dest: "notes", schema: Note }],
    usesNow: true,
  },
  params: [
    param("msg", { kind: "struct", struct: Ping, role: "message" }),
    param("state", { kind: "struct", struct: State, role: "state" }),
    param("ctx", { kind: "ctx" }),
  ],
  body: [
    set(fld(ST, "total", "f32", T("f32")), fld(MSG, "value", "f32", T("f32")), "+="),
    set(fld(ST, "count", "u16", T("u32")), lit(1, "u32"), "+="),
    set(fld(ST, "last", "u8", T("u32")), fld(MSG, "tag", "u8", T("u32"))),
    set(
      idx(
        fld(ST, "flags", "array", boolArr),
        cast("i32", bin("&", fld(MSG, "tag", "u8", T("u32")), lit(3, "u32"))),
      ),
      fld(MSG, "flag", "bool", T("bool")),
    ),
    set(
      idx(
        fld(ST, "hist", "array", u32Arr),
        cast("i32", bin("&", fld(MSG, "tag", "u8", T("u32")), lit(1, "u32"))),
      ),
      lit(1, "u32"),
      "+=",
    ),
    if_(fld(MSG, "flag", "bool", T("bool")), [
      {
        kind: "send",
        target: 0,
        loc: L,
        fields: [
          init("a", "u8", bin("+", fld(MSG, "tag", "u8", T("u32")), lit(1, "u32"))),
          init("b", "f32", bin("*", fld(MSG, "value", "f32", T("f32")), lit(2, "f32"))),
          init("c", "i16", lit(-5)),
          init("when", "u64", fld(MSG, "ts", "u64", T("u64"))),
          init("node", "u32", {
            op: "hlc_part",
            part: "nodeId",
            value: NOW,
            type: T("u32"),
            loc: L,
          }),
          init("flags", "array", fld(ST, "flags", "array", boolArr)),
        ],
      },
    ]),
    if_(bin("==", fld(MSG, "tag", "u8", T("u32")), lit(7, "u32")), [ret]),
    let_("t", NOW, false, { kind: "hlc" }),
    {
      kind: "reply",
      loc: L,
      fields: [
        init("total", "f32", fld(ST, "total", "f32", T("f32"))),
        init("count", "u16", fld(ST, "count", "u16", T("u32"))),
        init("ok", "bool", {
          op: "unary",
          operator: "!",
          operand: fld(MSG, "flag", "bool", T("bool")),
          type: T("bool"),
          loc: L,
        }),
        init("stamp", "u64", v("t", { kind: "hlc" })),
        init("logical", "u32", {
          op: "hlc_part",
          part: "logical",
          value: v("t", { kind: "hlc" }),
          type: T("u32"),
          loc: L,
        }),
      ],
    },
  ],
});

const pingerDef = defineKernel({
  id: "pinger",
  module: import.meta.url,
  input: Ping,
  output: Pong,
  state: { total: "f32", count: "u16", last: "u8", flags: array("bool", 4), hist: array("u32", 2) },
  handler: () => undefined,
});

// ---------------------------------------------------------------------------------------------
// Tests

describe("emitWgsl: every kernel shape compiles", () => {
  const all = { saxpy, histogram, claim, flow, blockSum, devfn, jacobi2d, sum3d, tiled, handlerIr };
  for (const [name, ir] of Object.entries(all)) {
    it(`${name} compiles with no errors`, async () => {
      const code = await compiles(ir);
      assert.match(code, /@compute @workgroup_size\(/);
    });
  }

  it("writes literals WGSL accepts: i32 minimum, f32 extremes, NaN, infinities, -0", async () => {
    const vals: [number, ScalarType][] = [
      [-2147483648, "i32"],
      [2147483647, "i32"],
      [-1, "i32"],
      [4294967295, "u32"],
      [3.4028234663852886e38, "f32"],
      [1.401298464324817e-45, "f32"],
      [1e-7, "f32"],
      [0.1, "f32"],
      [-2.5, "f32"],
      [NaN, "f32"],
      [Infinity, "f32"],
      [-Infinity, "f32"],
      [-0, "f32"],
      [16777217, "f32"],
    ];
    const body = vals.map(([x, s], k) => let_(`c${k}`, lit(x, s)));
    const ir = kernel({ name: "lits", params: [param("o", garr("f32"), true)], body });
    const code = await compiles(ir);
    assert.match(code, /\(-2147483647i - 1i\)/);
    assert.match(code, /0\.1f/);
    assert.match(code, /16777216\.0f/);
    assert.match(code, /3\.402823466e\+38f/);
  });

  it("binds arrays in parameter order, then one uniform of the scalars", () => {
    const src = emitWgsl(saxpy);
    assert.deepEqual(src.bindings, [
      { binding: 0, name: "y", param: 0, kind: "storage" },
      { binding: 1, name: "x", param: 1, kind: "read-only-storage" },
      { binding: 2, name: "rk_params", param: undefined, kind: "uniform" },
    ]);
    assert.equal(src.uniformSize, 16);
    const s3 = emitWgsl(sum3d);
    assert.deepEqual(s3.uniformMembers.map((m) => m.name), ["rk_width", "rk_height", "rk_depth"]);
    assert.equal(emitWgsl(handlerIr).outboxStride, 2 + Note.size / 4);
  });

  it("specialises a device function per array argument", () => {
    const code = emitWgsl(devfn).code;
    assert.match(code, /fn bump_rk_a\(/);
    assert.match(code, /fn bump_rk_b\(/);
    assert.ok(code.indexOf("fn lerp(") < code.indexOf("fn main("));
  });
});

describe("emitWgsl: targets WGSL cannot express", () => {
  it("rejects f64 with DslTarget and the location", () => {
    const ir = kernel({
      name: "dbl",
      source: "(a) => {\n  const x = f64(1);\n}",
      params: [param("a", garr("f32"), true)],
      body: [{ ...let_("x", lit(1, "f64")), loc: { line: 2, column: 9, start: 17, end: 23 } }],
    });
    assert.throws(() => emitWgsl(ir), (e: unknown) => {
      assert.ok(e instanceof DslError);
      assert.equal(e.code, ErrorCode.DslTarget);
      assert.equal(e.line, 2);
      assert.match(e.reason, /f64/);
      return true;
    });
    const p = kernel({ name: "dblp", params: [param("a", garr("f64"), true)], body: [] });
    assert.throws(
      () => emitWgsl(p),
      (e: unknown) => e instanceof DslError && e.code === ErrorCode.DslTarget,
    );
  });

  it("rejects arithmetic on u64 with DslTarget", () => {
    const ir = kernel({
      kind: "handler",
      name: "wide",
      workgroupSize: [1, 1, 1],
      handler: {
        input: Ping,
        output: undefined,
        state: undefined,
        sendTargets: [],
        usesNow: false,
      },
      params: [param("msg", { kind: "struct", struct: Ping, role: "message" })],
      body: [let_("z", bin("+", fld(MSG, "ts", "u64", T("u64")), lit(1, "u64")))],
    });
    assert.throws(() => emitWgsl(ir), (e: unknown) => {
      assert.ok(e instanceof DslError && e.code === ErrorCode.DslTarget, String(e));
      assert.equal(e.line, at(1, 1).line);
      return true;
    });
  });
});

describe("emitWgsl: results on a WebGPU adapter", () => {
  it("saxpy", { skip: gpuSkip }, async () => {
    const n = 1000;
    const x = Float32Array.from({ length: n }, (_, i) => i * 0.5);
    const y = Float32Array.from({ length: n + 5 }, (_, i) => 1 - i);
    const want = y.map((yi, i) => i < n ? Math.fround(Math.fround(2.5 * x[i]) + yi) : yi);
    await dispatchWgsl(saxpy, emitWgsl(saxpy), [Math.ceil(n / 64), 1, 1], [y, x, 2.5, n]);
    for (let i = 0; i < y.length; i++) {
      assert.ok(Math.abs(y[i] - want[i]) <= 1e-6 * Math.abs(want[i]) + 1e-6, `y[${i}]=${y[i]}`);
    }
  });

  it("atomic histogram", { skip: gpuSkip }, async () => {
    const n = 3000;
    const data = Uint32Array.from({ length: n }, (_, i) => (i * 2654435761) >>> 0);
    const bins = new Uint32Array(16);
    await dispatchWgsl(histogram, emitWgsl(histogram), [Math.ceil(n / 64), 1, 1], [data, bins, n]);
    const want = new Uint32Array(16);
    for (const d of data) want[d % 16]++;
    assert.deepEqual(bins, want);
  });

  it("compare-exchange: one winner, a CAS loop counts every thread; min/max/sub/exchange", {
    skip: gpuSkip,
  }, async () => {
    const slot = new Int32Array(1);
    const wins = new Int32Array([0, -1, 1 << 30, 1000, 0, 0]);
    const counter = new Int32Array(1);
    const blocks = 8;
    await dispatchWgsl(claim, emitWgsl(claim), [blocks, 1, 1], [slot, wins, counter]);
    const threads = blocks * 64;
    assert.equal(wins[0], 1);
    assert.ok(slot[0] >= 1 && slot[0] <= threads);
    assert.equal(counter[0], threads);
    assert.equal(wins[1], threads - 1);
    assert.equal(wins[2], 0);
    assert.equal(wins[3], 1000 - 2 * threads);
  });

  it(
    "switch, loops, match, select, shifts and casts agree with JS",
    { skip: gpuSkip },
    async () => {
      for (const neg of [false, true]) {
        const n = 200;
        const out = new Int32Array(n);
        const fout = new Uint32Array(n);
        await dispatchWgsl(flow, emitWgsl(flow), [Math.ceil(n / 64), 1, 1], [out, fout, n, neg]);
        for (let i = 0; i < n; i++) {
          const [o, f] = flowJs(i, neg);
          assert.equal(out[i], o, `out[${i}] (neg ${neg})`);
          assert.equal(fout[i], f, `fout[${i}] (neg ${neg})`);
        }
      }
    },
  );

  it("workgroup array and barrier: per-block sums", { skip: gpuSkip }, async () => {
    const blocks = 5;
    const data = Float32Array.from({ length: blocks * 64 }, (_, i) => i % 7);
    const sums = new Float32Array(blocks);
    await dispatchWgsl(blockSum, emitWgsl(blockSum), [blocks, 1, 1], [data, sums]);
    for (let b = 0; b < blocks; b++) {
      let s = 0;
      for (let k = 0; k < 64; k++) s += data[b * 64 + k];
      assert.equal(sums[b], s);
    }
  });

  it("device functions (specialised per array)", { skip: gpuSkip }, async () => {
    const n = 100;
    const a = Float32Array.from({ length: n }, (_, i) => i);
    const b = Float32Array.from({ length: n }, (_, i) => 2 * i + 4);
    const a0 = a.slice();
    const b0 = b.slice();
    await dispatchWgsl(devfn, emitWgsl(devfn), [2, 1, 1], [a, b, n]);
    for (let i = 0; i < n; i++) {
      const l = Math.fround(a0[i] + Math.fround((b0[i] - a0[i]) * 0.25));
      assert.ok(Math.abs(a[i] - Math.fround(a0[i] + l)) < 1e-4, `a[${i}]`);
      assert.ok(Math.abs(b[i] - Math.sqrt(b0[i] + 1) * 2) < 1e-4, `b[${i}]`);
    }
  });

  it("2D stencil over a padded grid (partial tiles)", { skip: gpuSkip }, async () => {
    const [w, h] = [37, 19];
    const len = (w + 2) * (h + 2);
    const inp = Float32Array.from({ length: len }, (_, i) => (i * 7) % 11);
    const out = new Float32Array(len).fill(-1);
    const groups: [number, number, number] = [Math.ceil(w / 8), Math.ceil(h / 8), 1];
    await dispatchWgsl(jacobi2d, emitWgsl(jacobi2d), groups, [inp, out, 0.25], {
      width: w,
      height: h,
      depth: 1,
    });
    const want = new Float32Array(len).fill(-1);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const i = paddedIndex(w, h, 1, x, y, 0, 2);
        const s = inp[i - (w + 2)] + inp[i + w + 2] + inp[i + 1] + inp[i - 1];
        want[i] = Math.fround(0.25 * s) + (x + y * w);
      }
    }
    assert.deepEqual(out, want);
  });

  it("3D stencil with halo 2", { skip: gpuSkip }, async () => {
    const [w, h, d] = [9, 7, 5];
    const row = w + 4;
    const plane = row * (h + 4);
    const len = plane * (d + 4);
    const inp = Float32Array.from({ length: len }, (_, i) => i % 13);
    const out = new Float32Array(len);
    await dispatchWgsl(sum3d, emitWgsl(sum3d), [3, 2, 2], [inp, out], {
      width: w,
      height: h,
      depth: d,
    });
    const want = new Float32Array(len);
    for (let z = 0; z < d; z++) {
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          const i = paddedIndex(w, h, 2, x, y, z, 3);
          want[i] = inp[i - plane] + inp[i + plane] + (inp[i + 2 - 2 * row] + inp[i + 2 * plane]) +
            (z + d * h);
        }
      }
    }
    assert.deepEqual(out, want);
  });

  it("stencil with a barrier and a workgroup tile", { skip: gpuSkip }, async () => {
    const [w, h] = [13, 6];
    const len = (w + 2) * (h + 2);
    const inp = Float32Array.from({ length: len }, (_, i) => i);
    const out = new Float32Array(len);
    await dispatchWgsl(tiled, emitWgsl(tiled), [2, 2, 1], [inp, out], {
      width: w,
      height: h,
      depth: 1,
    });
    const want = new Float32Array(len);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const i = paddedIndex(w, h, 1, x, y, 0, 2);
        want[i] = 2 * inp[i];
      }
    }
    assert.deepEqual(out, want);
  });

  it("handler: state, sub-word fields, replies, sends, now", { skip: gpuSkip }, async () => {
    const msgs = [
      { value: 1.5, tag: 2, flag: true, ts: 0x1_0000_0002n },
      { value: 2, tag: 7, flag: false, ts: 5n },
      { value: -4, tag: 1, flag: true, ts: 6n },
      { value: 8, tag: 3, flag: true, ts: 7n },
    ];
    const r = await dispatchHandlerWgsl(emitWgsl(handlerIr), pingerDef, msgs, {
      sendCapacity: 2,
      hlcStart: (5n << 16n) | 0xfffen,
      nodeId: 9,
      initialState: {
        total: 1,
        count: 65535,
        last: 0,
        flags: [false, false, false, true],
        hist: [0, 0],
      },
    });
    // now(): message 0 ticks twice (send, reply), 1 none (no flag, tag 7 returns), 2 and 3 twice.
    let word = (5n << 16n) | 0xfffen;
    const tick = () => (word += 1n);
    const flags = [false, false, false, true];
    const replies: object[] = [];
    const sends: object[] = [];
    let total = Math.fround(1);
    let count = 65535;
    const hist = [0, 0];
    msgs.forEach((m, i) => {
      total = Math.fround(total + m.value);
      count = (count + 1) & 0xffff;
      flags[m.tag & 3] = m.flag;
      hist[m.tag & 1]++;
      if (m.flag) {
        tick();
        if (sends.length < 2) {
          sends.push({
            target: "notes",
            index: i,
            message: {
              a: m.tag + 1,
              b: m.value * 2,
              c: -5,
              when: m.ts,
              node: 9,
              flags: flags.slice(0, 3),
            },
          });
        }
      }
      if (m.tag === 7) return;
      const t = tick();
      replies[i] = { total, count, ok: !m.flag, stamp: t, logical: Number(t & 0xffffn) };
    });
    assert.deepEqual(r.replies, [replies[0], undefined, replies[2], replies[3]]);
    assert.deepEqual(r.sends, sends);
    assert.equal(r.sendCount, 3);
    assert.equal(r.hlc, word);
    assert.deepEqual(r.state, { total, count, last: 3, flags, hist });
  });
});

// ---------------------------------------------------------------------------------------------
// Real kernels: definition → checkKernel → emitWgsl → WebGPU, against the JS runner

type Numbers = ArrayLike<number>;

function close(a: unknown, b: unknown, tol: { abs: number; rel: number }, path: string): void {
  if (typeof a === "number" && typeof b === "number") {
    if (Number.isNaN(a) && Number.isNaN(b)) return;
    assert.ok(Math.abs(a - b) <= tol.abs + tol.rel * Math.abs(b), `${path}: WGSL ${a}, JS ${b}`);
    return;
  }
  if (ArrayBuffer.isView(a) || Array.isArray(a)) {
    const x = a as Numbers;
    const y = b as Numbers;
    assert.equal(x.length, y.length, `${path}: length`);
    for (let i = 0; i < x.length; i++) close(x[i], y[i], tol, `${path}[${i}]`);
    return;
  }
  if (typeof a === "object" && a !== null && typeof b === "object" && b !== null) {
    assert.deepEqual(Object.keys(a).sort(), Object.keys(b).sort(), `${path}: keys`);
    for (const k of Object.keys(a)) {
      close(
        (a as Record<string, unknown>)[k],
        (b as Record<string, unknown>)[k],
        tol,
        `${path}.${k}`,
      );
    }
    return;
  }
  assert.deepEqual(a, b, path);
}

function copyArgs(args: readonly unknown[]): unknown[] {
  return args.map((a) => ArrayBuffer.isView(a) ? (a as Float32Array).slice() : a);
}

describe("the corpus on WGSL agrees with the JS runner", () => {
  for (const c of corpus) {
    const notWgsl = c.kind === "handler" && c.targets !== undefined && !c.targets.includes("wgsl");
    it(
      c.name,
      { skip: notWgsl ? "not a WGSL case (E_DSL_TARGET, checked elsewhere)" : gpuSkip },
      async () => {
        if (c.kind === "bulk") {
          const { grid, args } = c.make(makeRand(7));
          const gpu = copyArgs(args);
          runJs(c.kernel, { grid }, ...(args as never[]));
          await runWgsl(c.kernel, { grid }, ...gpu);
          for (const o of c.outputs) close(gpu[o], args[o], c.tolerance, `arg ${o}`);
        } else if (c.kind === "stencil") {
          const { size, args } = c.make(makeRand(7));
          const gpu = copyArgs(args);
          runStencilJs(c.kernel, size, ...(args as never[]));
          await runStencilWgsl(c.kernel, size, ...gpu);
          for (const o of c.outputs) close(gpu[o], args[o], c.tolerance, `arg ${o}`);
        } else {
          const { messages, options } = c.make(makeRand(7));
          const js = runHandlerJs(c.kernel, messages, options);
          const gpu = await runHandlerWgsl(c.kernel, messages, options);
          for (const o of c.outputs) close(gpu[o], js[o], c.tolerance, o);
        }
      },
    );
  }
});
