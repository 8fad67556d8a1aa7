// The lane-parallel analysis: which handlers may run a chunk of messages on a warp's lanes at
// once, which state fields the lanes' copies merge into, and why the others stay serial. The
// property at the end checks soundness on the JS reference: handling messages one after another
// gives the same state as merging what each message does on its own. Runs unchanged under
// `deno test` and `bun test`.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  array,
  atomicAdd,
  bulkKernel,
  checkKernel,
  defineKernel,
  defineMessage,
  type FieldsSpec,
  type KernelDefinition,
  runHandlerJs,
  struct,
  threadIdx,
  u32,
} from "../../mod.ts";
import {
  type LaneParallelPlan,
  laneParallelPlan,
  type ReductionOp,
  type StateReduction,
} from "../../src/dsl/lane_parallel.ts";

const In = defineMessage({
  typeId: 4901,
  name: "LpIn",
  fields: { x: "u32", y: "i32", w: "u64", flag: "u32" },
});
const Out = defineMessage({ typeId: 4902, name: "LpOut", fields: { v: "u32" } });
const Note = defineMessage({ typeId: 4903, name: "LpNote", fields: { x: "u32" } });

function planOf<I extends FieldsSpec, O extends FieldsSpec, S extends FieldsSpec>(
  def: KernelDefinition<I, O, S>,
): LaneParallelPlan {
  return laneParallelPlan(checkKernel(def));
}

function reductionsOf(plan: LaneParallelPlan): readonly StateReduction[] {
  assert.ok(plan.parallel, `expected a parallel plan, got: ${plan.parallel ? "" : plan.reason}`);
  return plan.reductions;
}

/** The 1-based line of the first occurrence of `text` in the handler's source as the runtime prints it. */
function lineOf<I extends FieldsSpec, O extends FieldsSpec, S extends FieldsSpec>(
  def: KernelDefinition<I, O, S>,
  text: string,
): number {
  const source = String(def.handler);
  const at = source.indexOf(text);
  assert.ok(at >= 0, `${JSON.stringify(text)} not in the handler's source:\n${source}`);
  return source.slice(0, at).split("\n").length;
}

/** Asserts a serial plan whose reason starts with `prefix` and names `line`. */
function assertSerial(plan: LaneParallelPlan, prefix: string, line: number): void {
  assert.equal(plan.parallel, false, "expected a serial plan");
  if (plan.parallel) return;
  assert.ok(
    plan.reason.startsWith(prefix),
    `reason ${JSON.stringify(plan.reason)} should start with ${JSON.stringify(prefix)}`,
  );
  assert.ok(plan.reason.includes(`(line ${line})`), `${plan.reason} should name line ${line}`);
}

describe("lane-parallel plan: parallel handlers", () => {
  it("a stateless handler with a reply is parallel with nothing to merge", () => {
    const k = defineKernel({
      id: "lp-stateless",
      module: import.meta.url,
      input: In,
      output: Out,
      handler: (msg) => {
        const doubled = msg.x * 2;
        return { v: doubled + u32(msg.y) };
      },
    });
    assert.deepEqual(planOf(k), { parallel: true, reductions: [] });
  });

  it("a handler that declares state but never touches it is parallel with nothing to merge", () => {
    const k = defineKernel({
      id: "lp-untouched",
      module: import.meta.url,
      input: In,
      output: Out,
      state: { count: "u32" },
      handler: (msg) => ({ v: msg.x }),
    });
    assert.deepEqual(planOf(k), { parallel: true, reductions: [] });
  });

  it("counts and sums over u32, i32 and u64 fields reduce as add at their offsets", () => {
    const k = defineKernel({
      id: "lp-sums",
      module: import.meta.url,
      input: In,
      output: Out,
      state: { count: "u32", sum: "i32", big: "u64", bigCount: "u64" },
      handler: (msg, state) => {
        state.count += 1;
        state.sum += msg.y;
        state.big += msg.w;
        state.bigCount += 1n;
        return { v: msg.x };
      },
    });
    assert.deepEqual(reductionsOf(planOf(k)), [
      { field: "count", offset: 0, storage: "u32", op: "add" },
      { field: "sum", offset: 4, storage: "i32", op: "add" },
      { field: "big", offset: 8, storage: "u64", op: "add" },
      { field: "bigCount", offset: 16, storage: "u64", op: "add" },
    ]);
  });

  it("lists reductions once each, in state-field order, whatever order the body writes them", () => {
    const k = defineKernel({
      id: "lp-order",
      module: import.meta.url,
      input: In,
      state: { a: "u32", pad: "u8", b: "i32", c: "u32" },
      handler: (msg, state) => {
        state.c ^= msg.x;
        state.b += msg.y;
        state.c ^= 5;
        state.a |= msg.flag;
        state.b -= 1;
      },
    });
    assert.deepEqual(reductionsOf(planOf(k)), [
      { field: "a", offset: 0, storage: "u32", op: "or" },
      { field: "b", offset: 8, storage: "i32", op: "add" },
      { field: "c", offset: 12, storage: "u32", op: "xor" },
    ]);
  });

  it("-= and ++/-- reduce as add; |=, &=, ^= as or, and, xor; sub-word fields keep their kind", () => {
    const k = defineKernel({
      id: "lp-ops",
      module: import.meta.url,
      input: In,
      state: {
        net: "i32",
        down: "u32",
        ticks: "u16",
        seen: "u8",
        mask: "u32",
        keep: "i16",
        parity: "u8",
      },
      handler: (msg, state) => {
        state.net += msg.y;
        state.net -= 2;
        state.down -= msg.x;
        state.ticks++;
        state.ticks--;
        state.seen |= msg.flag & 0xff;
        state.mask &= msg.x;
        state.keep &= msg.y;
        state.parity ^= msg.flag & 1;
      },
    });
    const s = k.state;
    assert.ok(s !== undefined);
    const offset = (name: string) => s.fields.find((f) => f.name === name)?.offset;
    assert.deepEqual(reductionsOf(planOf(k)), [
      { field: "net", offset: offset("net"), storage: "i32", op: "add" },
      { field: "down", offset: offset("down"), storage: "u32", op: "add" },
      { field: "ticks", offset: offset("ticks"), storage: "u16", op: "add" },
      { field: "seen", offset: offset("seen"), storage: "u8", op: "or" },
      { field: "mask", offset: offset("mask"), storage: "u32", op: "and" },
      { field: "keep", offset: offset("keep"), storage: "i16", op: "and" },
      { field: "parity", offset: offset("parity"), storage: "u8", op: "xor" },
    ]);
  });

  it("writes under if, switch and loops reduce (a lane that skips them adds the identity)", () => {
    const k = defineKernel({
      id: "lp-cond",
      module: import.meta.url,
      input: In,
      output: Out,
      state: { hits: "u32", total: "i64", bits: "u32" },
      handler: (msg, state) => {
        if (msg.flag > 3) state.hits += 1;
        else state.bits |= msg.x;
        switch (msg.flag) {
          case 0:
            state.total += 10n;
            break;
          case 1:
            state.total -= 3n;
            break;
          default:
            return { v: 1 };
        }
        for (let i = 0; i < msg.x % 4; i++) state.hits++;
        let j = 0;
        while (j < 2) {
          state.bits |= u32(j);
          j++;
        }
        return { v: msg.flag > 1 ? msg.x : 0 };
      },
    });
    assert.deepEqual(reductionsOf(planOf(k)), [
      { field: "hits", offset: 0, storage: "u32", op: "add" },
      { field: "total", offset: 8, storage: "i64", op: "add" },
      { field: "bits", offset: 16, storage: "u32", op: "or" },
    ]);
  });
});

describe("lane-parallel plan: serial handlers name the construct and its line", () => {
  it("refuses a state read inside an expression", () => {
    const k = defineKernel({
      id: "lp-read-expr",
      module: import.meta.url,
      input: In,
      state: { x: "u32", y: "u32" },
      handler: (msg, state) => {
        const next = state.x + 1;
        state.y += next + msg.x;
      },
    });
    assertSerial(planOf(k), "reads state.x", lineOf(k, "state.x + 1"));
  });

  it("refuses a state read in the value of a reduction", () => {
    const k = defineKernel({
      id: "lp-read-value",
      module: import.meta.url,
      input: In,
      state: { x: "u32", y: "u32" },
      handler: (_msg, state) => {
        state.y += state.x;
      },
    });
    assertSerial(planOf(k), "reads state.x", lineOf(k, "state.y += state.x"));
  });

  it("refuses a reply that reads state", () => {
    const k = defineKernel({
      id: "lp-read-reply",
      module: import.meta.url,
      input: In,
      output: Out,
      state: { x: "u32" },
      handler: (msg, state) => {
        state.x += msg.x;
        return { v: state.x };
      },
    });
    assertSerial(planOf(k), "reads state.x", lineOf(k, "v: state.x"));
  });

  it("refuses a condition on state", () => {
    const k = defineKernel({
      id: "lp-read-cond",
      module: import.meta.url,
      input: In,
      state: { x: "i32" },
      handler: (_msg, state) => {
        if (state.x > 0) state.x += 1;
      },
    });
    assertSerial(planOf(k), "reads state.x", lineOf(k, "state.x > 0"));
  });

  it("refuses reading an array field of state and names the element", () => {
    const k = defineKernel({
      id: "lp-read-array",
      module: import.meta.url,
      input: In,
      output: Out,
      state: { slots: array("u32", 4) },
      handler: (msg) => ({ v: msg.x }),
    });
    assert.deepEqual(planOf(k), { parallel: true, reductions: [] });
    const r = defineKernel({
      id: "lp-read-array2",
      module: import.meta.url,
      input: In,
      output: Out,
      state: { slots: array("u32", 4) },
      handler: (msg, state) => ({ v: state.slots[msg.x % 4] }),
    });
    assertSerial(planOf(r), "reads state.slots[…]", lineOf(r, "state.slots"));
  });

  it("refuses a plain assignment to state", () => {
    const k = defineKernel({
      id: "lp-assign",
      module: import.meta.url,
      input: In,
      state: { count: "u32", last: "u32" },
      handler: (msg, state) => {
        state.count += 1;
        state.last = msg.x;
      },
    });
    assertSerial(planOf(k), "assigns state.last with =", lineOf(k, "state.last ="));
  });

  it("refuses compound operators that are not reductions (*=)", () => {
    const k = defineKernel({
      id: "lp-mul",
      module: import.meta.url,
      input: In,
      state: { prod: "u32" },
      handler: (msg, state) => {
        state.prod *= msg.x;
      },
    });
    assertSerial(planOf(k), "state.prod *= …", lineOf(k, "state.prod *="));
  });

  it("refuses += on an f32 field (float addition is not associative)", () => {
    const k = defineKernel({
      id: "lp-float",
      module: import.meta.url,
      input: defineMessage({ typeId: 4904, name: "LpF", fields: { v: "f32" } }),
      state: { count: "u32", total: "f32" },
      handler: (msg, state) => {
        state.count += 1;
        state.total += msg.v;
      },
    });
    const plan = planOf(k);
    assertSerial(plan, "state.total += …", lineOf(k, "state.total +="));
    assert.match(plan.parallel ? "" : plan.reason, /f32 field: float addition is not associative/);
  });

  it("refuses mixed reduction classes on one field, naming both lines", () => {
    const k = defineKernel({
      id: "lp-mixed",
      module: import.meta.url,
      input: In,
      state: { v: "u32" },
      handler: (msg, state) => {
        state.v += msg.x;
        state.v |= msg.flag;
      },
    });
    const plan = planOf(k);
    assertSerial(plan, "state.v is reduced with both += ", lineOf(k, "state.v |="));
    assert.ok(
      !plan.parallel && plan.reason.includes(`(line ${lineOf(k, "state.v +=")})`),
      plan.parallel ? "" : plan.reason,
    );
  });

  it("refuses ctx.send", () => {
    const k = defineKernel({
      id: "lp-send",
      module: import.meta.url,
      input: In,
      state: { sent: "u32" },
      sends: { sink: Note },
      handler: (msg, state, ctx) => {
        state.sent += 1;
        ctx.send("sink", Note.of({ x: msg.x }));
      },
    });
    assertSerial(planOf(k), "ctx.send", lineOf(k, "ctx.send"));
  });

  it("refuses ctx.now()", () => {
    const k = defineKernel({
      id: "lp-now",
      module: import.meta.url,
      input: In,
      output: Out,
      handler: (_msg, _state, ctx) => {
        const t = ctx.now();
        return { v: t.logical };
      },
    });
    assertSerial(planOf(k), "ctx.now()", lineOf(k, "ctx.now()"));
  });

  it("refuses a reduction into an array field of state", () => {
    const k = defineKernel({
      id: "lp-array",
      module: import.meta.url,
      input: In,
      state: { hist: array("u32", 8) },
      handler: (msg, state) => {
        state.hist[msg.x % 8] += 1;
      },
    });
    const plan = planOf(k);
    assertSerial(plan, "state.hist[…] += …", lineOf(k, "state.hist["));
    assert.match(plan.parallel ? "" : plan.reason, /writes an array element/);
  });

  it("refuses a reduction into a nested struct field of state", () => {
    const Pair = struct({ a: "u32", b: "u32" }, { name: "LpPair" });
    const k = defineKernel({
      id: "lp-nested",
      module: import.meta.url,
      input: In,
      state: { pair: Pair },
      handler: (msg, state) => {
        state.pair.a += msg.x;
      },
    });
    const plan = planOf(k);
    assertSerial(plan, "state.pair.a += …", lineOf(k, "state.pair.a"));
    assert.match(plan.parallel ? "" : plan.reason, /nested struct field/);
  });

  it("refuses index intrinsics (each lane sees its own)", () => {
    const k = defineKernel({
      id: "lp-tid",
      module: import.meta.url,
      input: In,
      state: { c: "u32" },
      handler: (msg, state) => {
        state.c += msg.x + u32(threadIdx.x);
      },
    });
    assertSerial(planOf(k), "reads threadIdx.x", lineOf(k, "threadIdx"));
  });

  it("reports the first offending construct in source order", () => {
    const k = defineKernel({
      id: "lp-first",
      module: import.meta.url,
      input: In,
      output: Out,
      state: { a: "u32" },
      sends: { sink: Note },
      handler: (msg, state, ctx) => {
        if (msg.flag === 1) ctx.send("sink", Note.of({ x: msg.x }));
        return { v: state.a };
      },
    });
    assertSerial(planOf(k), "ctx.send", lineOf(k, "ctx.send"));
  });

  it("refuses kernels that are not handlers", () => {
    const k = bulkKernel({ name: "lp_bulk", params: ["u32[]"] }, (a) => {
      atomicAdd(a, 0, 1);
    });
    const plan = laneParallelPlan(checkKernel(k));
    assert.deepEqual(plan, { parallel: false, reason: "lp_bulk is a bulk kernel, not a handler" });
  });
});

// ---------------------------------------------------------------------------------------------
// Soundness on the JS reference

/** Integer state kinds the property draws from, with their width and signedness. */
const KINDS = {
  u8: { bits: 8, signed: false, wide: false },
  i8: { bits: 8, signed: true, wide: false },
  u16: { bits: 16, signed: false, wide: false },
  i16: { bits: 16, signed: true, wide: false },
  u32: { bits: 32, signed: false, wide: false },
  i32: { bits: 32, signed: true, wide: false },
  u64: { bits: 64, signed: false, wide: true },
  i64: { bits: 64, signed: true, wide: true },
} as const;
type Kind = keyof typeof KINDS;

/** Message fields the generated handlers read: small values, so the serial JS run never overflows. */
const Gen = defineMessage({
  typeId: 4905,
  name: "LpGen",
  fields: { u: "u32", i: "i32", w: "u64", s: "i64", sel: "u32" },
});
const GenOut = defineMessage({ typeId: 4906, name: "LpGenOut", fields: { r: "u32" } });
type GenMsg = { u: number; i: number; w: bigint; s: bigint; sel: number };

interface FieldPlan {
  readonly kind: Kind;
  readonly op: ReductionOp;
  /** One statement per write: the operator and the value expression. */
  readonly writes: readonly { readonly operator: string; readonly value: string }[];
  /** Where each write sits: 0 plain, 1 under `if (msg.sel % 3 === 0)`, 2 in a 0–2 loop. */
  readonly places: readonly number[];
  /** A statement that must make the handler serial (a read, `=`, another operator), or none. */
  readonly poison: string | undefined;
}

/** A value expression of the field's read type (sub-word fields read as u32 / i32). */
function valueFor(kind: Kind, op: ReductionOp, pick: number): string {
  const { signed, wide } = KINDS[kind];
  if (wide) return signed ? ["msg.s", "2n", "msg.s * 3n"][pick % 3] : ["msg.w", "1n"][pick % 2];
  if (op === "add") return signed ? ["msg.i", "1", "-1"][pick % 3] : ["msg.u", "1"][pick % 2];
  // Bitwise: values that fit the smallest storage and keep JS's signed `|` results in range.
  return signed ? ["msg.i", "-2", "msg.i & 7"][pick % 3] : ["msg.u", "msg.sel & 0x7f"][pick % 2];
}

const OPERATORS: Readonly<Record<ReductionOp, readonly string[]>> = {
  add: ["+=", "-="],
  or: ["|="],
  and: ["&="],
  xor: ["^="],
};

const fieldPlan: fc.Arbitrary<FieldPlan> = fc
  .constantFrom(...(Object.keys(KINDS) as Kind[]))
  .chain((kind) =>
    fc.tuple(
      fc.constant(kind),
      // 64-bit fields take no bitwise compound operators in the DSL (i32/u32 only).
      KINDS[kind].wide ? fc.constant<ReductionOp>("add") : fc.constantFrom<ReductionOp>(
        "add",
        "or",
        "and",
        "xor",
      ),
      fc.array(fc.tuple(fc.nat(1), fc.nat(5), fc.nat(2)), { minLength: 1, maxLength: 2 }),
      fc.oneof({ arbitrary: fc.constant(0), weight: 8 }, fc.integer({ min: 1, max: 4 })),
    )
  )
  .map(([kind, op, ws, poison]): FieldPlan => {
    const writes = ws.map(([which, pick]) => ({
      operator: OPERATORS[op][which % OPERATORS[op].length],
      value: valueFor(kind, op, pick),
    }));
    return { kind, op, writes, places: ws.map(([, , place]) => place), poison: poisonFor(poison) };

    function poisonFor(which: number): string | undefined {
      const wide = KINDS[kind].wide;
      const field = "state.FIELD";
      switch (which) {
        case 1:
          return `${field} = ${valueFor(kind, "add", 1)};`;
        case 2:
          return `if (${field} > ${wide ? "0n" : "0"}) { ${field} ${writes[0].operator} ${
            writes[0].value
          }; }`;
        case 3:
          // Another reduction class on the same field, or (64-bit) an operator that is none.
          if (wide) return `${field} *= 2n;`;
          return op === "add" ? `${field} |= 1;` : `${field} += 1;`;
        case 4:
          return `const peekFIELD = ${field};`;
        default:
          return undefined;
      }
    }
  });

/** The handler's source: every write of every field, interleaved, some under if / in loops. */
function handlerSource(fields: readonly FieldPlan[], reply: boolean): string {
  const lines: string[] = [];
  const longest = Math.max(...fields.map((f) => f.writes.length));
  for (let w = 0; w < longest; w++) {
    fields.forEach((f, n) => {
      const write = f.writes[w];
      if (write === undefined) return;
      const stmt = `state.f${n} ${write.operator} ${write.value};`;
      const place = f.places[w];
      if (place === 0) lines.push(stmt);
      else if (place === 1) lines.push(`if (msg.sel % 3 === 0) { ${stmt} }`);
      else lines.push(`for (let k = 0; k < msg.sel % 3; k++) { ${stmt} }`);
    });
  }
  fields.forEach((f, n) => {
    if (f.poison !== undefined) lines.push(f.poison.replaceAll("FIELD", `f${n}`));
  });
  if (reply) lines.push("return { r: msg.u + msg.sel };");
  return lines.join("\n");
}

/** Bits of a field value as an unsigned bigint of its width. */
function bitsOf(kind: Kind, v: number | bigint): bigint {
  return BigInt.asUintN(KINDS[kind].bits, BigInt(v));
}

/** A field value of `kind` from its bits, as the state view decodes it. */
function valueOf(kind: Kind, bits: bigint): number | bigint {
  const { bits: n, signed, wide } = KINDS[kind];
  const v = signed ? BigInt.asIntN(n, bits) : BigInt.asUintN(n, bits);
  return wide ? v : Number(v);
}

/** A start value that leaves room for every add/subtract the messages can make. */
function addBase(kind: Kind): number | bigint {
  const { signed, wide, bits } = KINDS[kind];
  if (signed) return wide ? 0n : 0;
  return wide ? 1n << 40n : 2 ** (bits - 1);
}

describe("lane-parallel plan: soundness on the JS reference", () => {
  it("serial handling equals merging each message's own effect with the plan's operators", () => {
    const message: fc.Arbitrary<GenMsg> = fc.record({
      u: fc.nat(3),
      i: fc.integer({ min: -3, max: 3 }),
      w: fc.bigInt({ min: 0n, max: 1000n }),
      s: fc.bigInt({ min: -1000n, max: 1000n }),
      sel: fc.nat(0xffff),
    });
    let id = 0;
    fc.assert(
      fc.property(
        fc.array(fieldPlan, { minLength: 1, maxLength: 4 }),
        fc.boolean(),
        fc.array(message, { minLength: 1, maxLength: 8 }),
        fc.array(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), { minLength: 4, maxLength: 4 }),
        (fields, reply, messages, seeds) => {
          const stateSpec: Record<string, Kind> = {};
          fields.forEach((f, n) => (stateSpec[`f${n}`] = f.kind));
          const source = handlerSource(fields, reply);
          const handler = new Function("msg", "state", source) as never;
          const def = defineKernel({
            id: `lp-prop-${id++}`,
            module: import.meta.url,
            input: Gen,
            output: GenOut,
            state: stateSpec,
            handler,
          });

          const plan = laneParallelPlan(checkKernel(def));
          if (fields.some((f) => f.poison !== undefined)) {
            assert.equal(plan.parallel, false, `a poisoned handler must be serial:\n${source}`);
            return;
          }
          // Otherwise: parallel, one reduction per field, the op the field was written with.
          assert.ok(plan.parallel, `${source}\n→ ${plan.parallel ? "" : plan.reason}`);
          assert.deepEqual(
            plan.reductions.map((r) => [r.field, r.storage, r.op]),
            fields.map((f, n) => [`f${n}`, f.kind, f.op]),
          );
          const offsets = def.state?.fields.map((f) => f.offset);
          assert.deepEqual(plan.reductions.map((r) => r.offset), offsets);

          // Serial: the handler over every message in order. Bitwise fields start at a seed
          // (kept below 2^31 for 32-bit unsigned: JS's `|` yields a signed int32).
          const start: Record<string, number | bigint> = {};
          fields.forEach((f, n) => {
            const { bits, signed } = KINDS[f.kind];
            const room = bits === 32 && !signed ? 31 : bits;
            start[`f${n}`] = f.op === "add"
              ? addBase(f.kind)
              : valueOf(f.kind, BigInt.asUintN(room, seeds[n % 4]));
          });
          const serial = runHandlerJs(def, messages, { initialState: start as never });

          // Per lane: each message on its own copy. Bitwise copies start at the identity;
          // add copies start at the serial base (JS views range-check rather than wrap, so an
          // unsigned `-=` from 0 would throw) and contribute what they moved, which is the
          // zero-start delta modulo 2^bits.
          const laneStart: Record<string, number | bigint> = {};
          fields.forEach((f, n) => {
            const identity = f.op === "and" ? (1n << 64n) - 1n : 0n;
            laneStart[`f${n}`] = f.op === "add"
              ? addBase(f.kind)
              : valueOf(f.kind, bitsOf(f.kind, identity));
          });
          const merged = new Map<string, bigint>();
          fields.forEach((f, n) => merged.set(`f${n}`, bitsOf(f.kind, start[`f${n}`])));
          messages.forEach((m, index) => {
            const lane = runHandlerJs(def, [m], { initialState: laneStart as never });
            assert.deepEqual(lane.replies[0], serial.replies[index], `reply ${index}`);
            const after = lane.state as Record<string, number | bigint>;
            for (const r of plan.reductions) {
              const kind = r.storage as Kind;
              const acc = merged.get(r.field) ?? 0n;
              const mine = bitsOf(kind, after[r.field]);
              const width = KINDS[kind].bits;
              merged.set(
                r.field,
                r.op === "add"
                  ? BigInt.asUintN(width, acc + mine - bitsOf(kind, laneStart[r.field]))
                  : r.op === "or"
                  ? acc | mine
                  : r.op === "and"
                  ? acc & mine
                  : acc ^ mine,
              );
            }
          });
          const expected: Record<string, number | bigint> = {};
          for (const [name, bits] of merged) {
            expected[name] = valueOf(stateSpec[name], bits);
          }
          assert.deepEqual(serial.state, expected, source);
        },
      ),
      { numRuns: 150, seed: 7 },
    );
  });
});
