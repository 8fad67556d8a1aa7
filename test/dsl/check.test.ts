// The DSL checker: what it accepts, the types it infers, and the errors it gives (with kernel,
// line, column and snippet). Runs unchanged under `deno test` and `bun test`.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import {
  array,
  atomicAdd,
  atomicCompareExchange,
  barrier,
  blockDim,
  blockIdx,
  bulkKernel,
  checkKernel,
  defineKernel,
  defineMessage,
  type DeviceFunction,
  deviceFunction,
  DslError,
  type Expr,
  f32,
  i32,
  type IrKernel,
  match,
  sharedArray,
  stencilKernel,
  type Stmt,
  threadIdx,
  u32,
} from "../../mod.ts";

function firstLet(ir: IrKernel, name: string): Stmt & { kind: "let" } {
  const found: (Stmt & { kind: "let" })[] = [];
  const walk = (list: readonly Stmt[]) => {
    for (const s of list) {
      if (s.kind === "let" && s.name === name) found.push(s);
      if (s.kind === "if") (walk(s.then), walk(s.else));
      if (s.kind === "for") (walk(s.init), walk(s.body));
      if (s.kind === "while") walk(s.body);
    }
  };
  walk(ir.body);
  assert.ok(found.length > 0, `no let ${name}`);
  return found[0];
}

function scalarOf(e: Expr | undefined): string | undefined {
  return e?.type.kind === "scalar" ? e.type.scalar : e?.type.kind;
}

function rejects(def: object, code: string, pattern: RegExp): DslError {
  try {
    checkKernel(def as Parameters<typeof checkKernel>[0]);
  } catch (err) {
    assert.ok(err instanceof DslError, `expected DslError, got ${err}`);
    assert.equal(err.code, code, err.message);
    assert.match(err.message, pattern);
    return err;
  }
  assert.fail("expected a DslError");
}

describe("DSL checker: inference", () => {
  it("types a literal-initialised accumulator from its later use", () => {
    const k = bulkKernel({ name: "acc", params: ["f32[]", "i32"] }, (d, n) => {
      let acc = 0;
      for (let i = 0; i < n; i++) acc += d[i];
      d[0] = acc;
    });
    const ir = checkKernel(k);
    assert.equal(scalarOf(firstLet(ir, "acc").init), "f32");
    assert.equal(scalarOf(firstLet(ir, "i").init), "i32");
  });

  it("gives a loop counter the type of its bound", () => {
    const k = bulkKernel({ name: "cnt", params: ["u32[]", "u32"] }, (d, n) => {
      for (let i = 0; i < n; i++) d[i] = i;
    });
    assert.equal(scalarOf(firstLet(checkKernel(k), "i").init), "u32");
  });

  it("defaults open integer literals to i32 and fractional ones to f32", () => {
    // let, not const: Bun inlines const literals into the function source.
    const k = bulkKernel({ name: "dflt", params: ["f32[]"] }, (d) => {
      // deno-lint-ignore prefer-const
      let a = 3;
      // deno-lint-ignore prefer-const
      let b = 0.5;
      d[a] = b;
    });
    const ir = checkKernel(k);
    assert.equal(scalarOf(firstLet(ir, "a").init), "i32");
    assert.equal(scalarOf(firstLet(ir, "b").init), "f32");
  });

  it("reads Bun's printed forms of true and false (!0, !1) as bools", () => {
    // Bun prints this body as `let f = !0; if (d[0] > 1) f = !1; ...`; Deno keeps true/false.
    const k = bulkKernel({ name: "bunlit", params: ["u32[]"] }, (d) => {
      let f = true;
      if (d[0] > 1) f = false;
      if (f) d[1] = 1;
    });
    const init = firstLet(checkKernel(k), "f").init;
    assert.ok(init?.op === "literal" && init.value === true, JSON.stringify(init));
  });

  it("records written and atomic arrays and barrier/atomic use", () => {
    const k = bulkKernel(
      { name: "hist", params: ["u32[]", "u32[]", "i32"], workgroupSize: 64 },
      (inp, bins, n) => {
        const t = sharedArray("u32", 64);
        t[threadIdx.x] = 0;
        barrier();
        const i = blockIdx.x * blockDim.x + threadIdx.x;
        if (i < n) atomicAdd(bins, i32(inp[i] & 15), 1);
      },
    );
    const ir = checkKernel(k);
    assert.deepEqual(ir.params.map((p) => [p.written, p.atomic]), [[false, false], [true, true], [
      false,
      false,
    ]]);
    assert.ok(ir.usesBarrier && ir.usesAtomics);
    assert.equal(ir.body[0].kind, "shared");
  });

  it("accepts integer division written as a cast, match, switch and device functions", () => {
    const sq = deviceFunction({ name: "sq", params: ["f32"], returns: "f32" }, (x) => x * x);
    const norm = deviceFunction({
      name: "norm",
      params: ["f32", "f32"],
      returns: "f32",
      uses: [sq],
    }, (
      a,
      b,
    ) => Math.sqrt(sq(a) + sq(b)));
    const k = bulkKernel(
      { name: "mix", params: ["f32[]", "i32[]", "i32"], uses: [norm] },
      (f, q, n) => {
        const i = blockIdx.x * blockDim.x + threadIdx.x;
        if (i >= n) return;
        q[i] = i32(q[i] / 3) + match(i % 3, { 0: 1, 1: 2, _: 3 });
        switch (q[i]) {
          case 1:
          case 2:
            f[i] = norm(f[i], 1);
            break;
          default:
            f[i] = f32(u32(i) >>> 1);
        }
      },
    );
    const ir = checkKernel(k);
    assert.deepEqual(ir.functions.map((f) => f.name), ["sq", "norm"]);
    const sw = ir.body.find((s) => s.kind === "switch");
    assert.ok(sw?.kind === "switch");
    assert.deepEqual(sw.cases[0].labels, [1, 2]);
    assert.ok(sw.fallback !== undefined);
  });

  it("checks stencils with GridPos neighbours inside the halo", () => {
    const k = stencilKernel(
      { name: "lap", grid: "2d", tile: [16, 16], params: ["f32[]", "f32[]"] },
      (pos, a, b) => {
        b[pos.idx] = pos.north(a) + pos.south(a) + pos.east(a) + pos.west(a) - 4 * a[pos.idx] +
          pos.at(a, 1, 1);
      },
    );
    const ir = checkKernel(k);
    assert.equal(ir.kind, "stencil");
    assert.deepEqual(ir.stencil, { dims: 2, halo: 1, tile: [16, 16, 1] });
  });

  it("checks handlers: fields, state, reply, sends and now", () => {
    const In = defineMessage({
      typeId: 41,
      name: "CkIn",
      fields: { v: "f32", op: "u8", vals: array("u16", 3) },
    });
    const Out = defineMessage({
      typeId: 42,
      name: "CkOut",
      fields: { total: "f32", n: "u32", t: "u32" },
    });
    const h = defineKernel({
      id: "ck-acc",
      module: import.meta.url,
      input: In,
      output: Out,
      state: { total: "f32", count: "u32" },
      sends: { other: Out },
      handler: (msg, state, ctx) => {
        state.total += msg.v;
        state.count += 1;
        if (msg.op === 2) ctx.send("other", Out.of({ total: state.total, n: msg.vals[1], t: 0 }));
        const t = ctx.now();
        return { total: state.total, n: state.count, t: t.logical };
      },
    });
    const ir = checkKernel(h);
    assert.equal(ir.name, "ck_acc");
    assert.equal(ir.handler?.sendTargets[0].dest, "other");
    assert.ok(ir.handler?.usesNow);
    const reply = ir.body[ir.body.length - 1];
    assert.ok(reply.kind === "reply");
    assert.deepEqual(reply.fields.map((f) => [f.name, f.storage, f.offset]), [["total", "f32", 0], [
      "n",
      "u32",
      4,
    ], ["t", "u32", 8]]);
  });
});

describe("DSL checker: errors", () => {
  it("names kernel, line, column and shows the line", () => {
    const k = bulkKernel({ name: "loc_err", params: ["f32[]", "i32"] }, (d, n) => {
      d[0] = n;
    });
    const err = rejects(k, "E_DSL_TYPE", /type mismatch in =: f32 and i32/);
    assert.equal(err.kernel, "loc_err");
    assert.equal(err.line, 2);
    assert.ok(err.column > 1);
    assert.match(err.snippet, /d\[0\] = n;\n\s*\^/);
  });

  it("rejects closures over outer variables", () => {
    // Not a literal: Bun would inline a const literal into the source (and Deno would not).
    const outside = new Float32Array(1);
    const k = bulkKernel({ name: "clos", params: ["f32[]"] }, (d) => {
      d[0] = outside[0];
    });
    rejects(k, "E_DSL_UNSUPPORTED", /outside is not defined in this kernel: closures/);
  });

  it("rejects allocation, strings, this, async and nested functions", () => {
    rejects(
      bulkKernel({ name: "alloc", params: ["f32[]"] }, (d) => {
        const a = [d[1], d[2]];
        d[0] = a[0] + a[1];
      }),
      "E_DSL_UNSUPPORTED",
      /allocation/,
    );
    rejects(
      bulkKernel({ name: "str", params: ["f32[]"] }, (d) => {
        const s = d[0] > 1 ? "a" : "b";
        d[0] = s === "a" ? 1 : 0;
      }),
      "E_DSL_UNSUPPORTED",
      /strings/,
    );
    rejects(
      bulkKernel({ name: "self", params: ["f32[]"] }, function (this: unknown, d) {
        d[0] = (this as { v: number }).v;
      }),
      "E_DSL_UNSUPPORTED",
      /`this`/,
    );
    rejects(
      bulkKernel(
        { name: "asy", params: ["f32[]"] },
        // deno-lint-ignore require-await
        (async (d: Float32Array) => {
          d[0] = 1;
        }) as unknown as (d: Float32Array) => void,
      ),
      "E_DSL_UNSUPPORTED",
      /async/,
    );
    rejects(
      bulkKernel({ name: "nest", params: ["f32[]"] }, (d) => {
        const f = (x: number) => x;
        d[0] = f(1);
      }),
      "E_DSL_UNSUPPORTED",
      /nested functions/,
    );
  });

  it("rejects recursion", () => {
    // uses is copied when a function is declared, so a cycle can only be a call of its own name.
    const fact: DeviceFunction<readonly ["i32"], "i32"> = deviceFunction(
      { name: "fact", params: ["i32"], returns: "i32" },
      (x): number => x <= 1 ? 1 : x * fact(x - 1),
    );
    const k = bulkKernel({ name: "rec", params: ["i32[]"], uses: [fact] }, (d) => {
      d[0] = fact(d[0]);
    });
    rejects(k, "E_DSL_UNSUPPORTED", /recursion: fact calls itself/);
  });

  it("demands i32(a / b) for integer division and >>> for u32", () => {
    rejects(
      bulkKernel({ name: "idiv", params: ["i32[]", "i32"] }, (d, n) => {
        d[0] = n / 2;
      }),
      "E_DSL_TYPE",
      /float division in JS; write i32\(a \/ b\)/,
    );
    rejects(
      bulkKernel({ name: "ushr", params: ["u32[]", "u32"] }, (d, n) => {
        d[0] = n >> 1;
      }),
      "E_DSL_TYPE",
      /use >>> for u32/,
    );
  });

  it("rejects barriers threads may not all reach", () => {
    rejects(
      bulkKernel({ name: "bdiv", params: ["f32[]", "i32"], workgroupSize: 64 }, (d, n) => {
        const t = sharedArray("f32", 64);
        const i = threadIdx.x;
        if (i < n) {
          t[i] = d[i];
          barrier();
        }
      }),
      "E_DSL_UNSUPPORTED",
      /barrier\(\) under a condition/,
    );
    rejects(
      bulkKernel({ name: "bret", params: ["f32[]", "i32"], workgroupSize: 64 }, (d, n) => {
        const t = sharedArray("f32", 64);
        const i = threadIdx.x;
        if (i >= n) return;
        t[i] = d[i];
        barrier();
      }),
      "E_DSL_UNSUPPORTED",
      /return inside a condition before barrier/,
    );
  });

  it("rejects side effects in ternaries and misplaced compareExchange", () => {
    rejects(
      bulkKernel({ name: "tern", params: ["u32[]"] }, (d) => {
        d[1] = d[0] > 0 ? atomicAdd(d, 0, 1) : 0;
      }),
      "E_DSL_UNSUPPORTED",
      /free of side effects/,
    );
    rejects(
      bulkKernel({ name: "cas", params: ["u32[]"] }, (d) => {
        d[1] = atomicCompareExchange(d, 0, 1, 2) + 1;
      }),
      "E_DSL_UNSUPPORTED",
      /atomicCompareExchange as a statement/,
    );
  });

  it("checks replies against the output schema and sends against sends", () => {
    const In = defineMessage({ typeId: 43, name: "CkIn2", fields: { v: "f32" } });
    const Out = defineMessage({ typeId: 44, name: "CkOut2", fields: { a: "f32", b: "f32" } });
    rejects(
      defineKernel({
        id: "miss",
        module: import.meta.url,
        input: In,
        output: Out,
        handler: (msg) => ({ a: msg.v }) as { a: number; b: number },
      }),
      "E_DSL_TYPE",
      /CkOut2.b is missing/,
    );
    rejects(
      defineKernel({
        id: "nosends",
        module: import.meta.url,
        input: In,
        handler: (msg, _s, ctx) => {
          ctx.send("x", In.of({ v: msg.v }));
        },
      }),
      "E_DSL_TYPE",
      /declare the destination in the kernel's sends/,
    );
    rejects(
      defineKernel({
        id: "ro",
        module: import.meta.url,
        input: In,
        handler: (msg) => {
          msg.v = 1;
        },
      }),
      "E_DSL_TYPE",
      /messages are read-only/,
    );
  });

  it("rejects GridPos offsets beyond the halo and up/down in 2D", () => {
    rejects(
      stencilKernel({ name: "far", grid: "2d", tile: [8, 8], params: ["f32[]"] }, (pos, a) => {
        a[pos.idx] = pos.at(a, 2, 0);
      }),
      "E_DSL_TYPE",
      /beyond the halo of 1/,
    );
    rejects(
      stencilKernel({ name: "up2", grid: "2d", tile: [8, 8], params: ["f32[]"] }, (pos, a) => {
        a[pos.idx] = pos.up(a);
      }),
      "E_DSL_TYPE",
      /3D stencils only/,
    );
  });

  it("names both types on a mismatch in Math calls and conditions", () => {
    rejects(
      bulkKernel({ name: "msq", params: ["f32[]", "i32"] }, (d, n) => {
        d[0] = Math.sqrt(n);
      }),
      "E_DSL_TYPE",
      /takes f32 or f64, not i32; convert with f32\(\)/,
    );
    rejects(
      bulkKernel({ name: "cnd", params: ["f32[]", "i32"] }, (d, n) => {
        if (n) d[0] = 1;
      }),
      "E_DSL_TYPE",
      /condition must be a bool, not i32/,
    );
  });
});

// Referenced so the intrinsic imports above read as what the kernels call.
void [f32, i32, u32, match];
