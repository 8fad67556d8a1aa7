/**
 * The WebGPU backend on a real adapter (lavapipe under Deno here): DSL handlers compiled to WGSL,
 * driven through the same KernelHandle as the CPU and CUDA backends — request/reply for several
 * fixture kernels, state kept across many dispatches, send vs request, the high-priority lane
 * first, deactivate/activate keeping messages, terminate draining or returning, bad envelopes
 * dropped/counted/answered, the passthrough built-in, unsupported definitions refused with the
 * DSL's typed error, and the builder. Skips, saying why, where no WebGPU adapter is usable (Bun on
 * this machine: bun-webgpu finds only Dawn's null backend).
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { WebGpuRuntime } from "../../src/backends/webgpu/webgpu_runtime.ts";
import { KernelState } from "../../src/core/control_block.ts";
import { encodeMessage, EnvelopeFlag, EnvelopeOffset, Priority } from "../../src/core/envelope.ts";
import {
  BackendUnavailableError,
  DecodeError,
  DslError,
  ErrorCode,
  HandlerError,
  InvalidStateError,
} from "../../src/core/errors.ts";
import { Backend } from "../../src/runtime/backend.ts";
import { LaunchOptions } from "../../src/runtime/launch_options.ts";
import { RingKernel } from "../../src/runtime/runtime.ts";
import {
  accumulator,
  Add,
  Big,
  bigEater,
  Order,
  orderer,
  silent,
  Tagged,
} from "../fixtures/kernels.ts";
import {
  AddValue,
  CounterOp,
  dslAccumulator,
  dslCounter,
  dslSubword,
  dslWide,
  Reading,
  Tick,
} from "../dsl/corpus.ts";
import { until, webGpuSkip } from "./probe.ts";

const skip = await webGpuSkip("test/webgpu/runtime.test.ts");
const opts = () => LaunchOptions.default().withQueueCapacity(1024);
const LONG = { timeout: 60_000 };

describe("WebGpuRuntime on an adapter", { skip }, () => {
  let rt: WebGpuRuntime;
  before(async () => {
    rt = await WebGpuRuntime.create();
  });
  after(async () => {
    if (!rt.isShutdown) await rt.shutdown();
  });

  it(
    "request/reply runs the DSL handler in WGSL; state persists across dispatches",
    LONG,
    async () => {
      const k = await rt.launch(dslAccumulator, opts());
      assert.equal(k.state(), KernelState.Active);
      assert.deepEqual(await k.request(AddValue.of({ value: 2 })), { total: 2, count: 1 });
      assert.deepEqual(await k.request(AddValue.of({ value: 3.5 })), { total: 5.5, count: 2 });
      // 60 sequential requests: 60 rounds, one dispatch each, the state carried in its buffer.
      const rounds0 = rt.pumpStats().rounds;
      for (let i = 0; i < 60; i++) {
        const r = await k.request(AddValue.of({ value: 1 }));
        assert.equal(r!.count, 3 + i);
      }
      assert.ok(rt.pumpStats().rounds - rounds0 >= 60);
      // 500 concurrent requests share a few rounds.
      const many = await Promise.all(
        Array.from({ length: 500 }, () => k.request(AddValue.of({ value: 1 }))),
      );
      assert.deepEqual(
        many.map((r) => r!.count).sort((a, b) => a - b),
        Array.from({ length: 500 }, (_, i) => 63 + i),
      );
      assert.deepEqual(k.readState(), { total: 565.5, count: 562 });
      const m = k.metrics();
      assert.equal(m.processed, 562);
      assert.equal(m.dropped, 0);
      assert.equal(m.errors, 0);
      assert.equal(m.state, "active");
      const report = await k.terminate();
      assert.equal(report.processed, 562);
      assert.deepEqual(report.returned, []);
      assert.equal(k.state(), KernelState.Terminated);
      assert.deepEqual(k.readState(), { total: 565.5, count: 562 });
    },
  );

  it(
    "fixture kernels of the CPU tests run unchanged: accumulator, orderer, silent, big-eater",
    LONG,
    async () => {
      const acc = await rt.launch(accumulator, opts());
      const ord = await rt.launch(orderer, opts());
      const sil = await rt.launch(silent, opts());
      const big = await rt.launch(bigEater, opts());
      assert.deepEqual(await acc.request(Add.of({ value: 1.5 })), { total: 1.5 });
      assert.deepEqual(await ord.request(Tagged.of({ tag: 9 })), { tag: 9, order: 1 });
      assert.equal(await sil.request(Add.of({ value: 1 })), undefined);
      assert.deepEqual(sil.readState(), { seen: 1 });
      const data = Array.from({ length: 256 }, (_, i) => i * 3);
      assert.equal(await big.request(Big.of({ data })), undefined);
      assert.equal(big.metrics().processed, 1);
      for (const k of [acc, ord, sil, big]) await k.terminate();
    },
  );

  it("switches, sub-word fields and arrays (DSL corpus handlers)", async () => {
    const c = await rt.launch(dslCounter, opts());
    assert.deepEqual(await c.request(CounterOp.of({ op: 0, amount: 5 })), { value: 5, resets: 0 });
    assert.deepEqual(await c.request(CounterOp.of({ op: 1, amount: 7 })), { value: -2, resets: 0 });
    // Unknown op: the handler returns nothing, a request gets the empty reply.
    assert.equal(await c.request(CounterOp.of({ op: 9, amount: 1 })), undefined);
    const s = await rt.launch(dslSubword, opts());
    const ack = await s.request(
      Reading.of({ kind: 7, level: 300, urgent: true, vals: [1, 2, 3, 4.5] }),
    );
    assert.deepEqual(ack, { kind: 7, urgent: false, total: 10.5, level: 300 });
    await c.terminate();
    await s.terminate();
  });

  it("send gives outputs (receive), request gives replies; outputs in order", LONG, async () => {
    const k = await rt.launch(dslCounter, opts());
    const ops = Array.from({ length: 300 }, (_, i) => CounterOp.of({ op: 0, amount: i }));
    assert.equal(await k.sendMany(ops), 300);
    const got: number[] = [];
    while (got.length < 300) {
      for (const o of await k.receiveMany(64, { timeoutMs: 5000 })) {
        assert.equal(o.header.flags & EnvelopeFlag.Reply, 0);
        assert.equal(o.header.sourceKernel, k.numericId);
        got.push(o.value!.value);
      }
    }
    let sum = 0;
    assert.deepEqual(got, ops.map((_, i) => (sum += i)));
    assert.deepEqual(await k.request(CounterOp.of({ op: 0, amount: 1 })), {
      value: sum + 1,
      resets: 0,
    });
    assert.equal(k.tryReceive(), undefined, "a reply is not an output");
    await k.terminate();
  });

  it("the high-priority lane is taken first", async () => {
    const k = await rt.launch(orderer, opts().withoutAutoActivate());
    for (let t = 1; t <= 5; t++) await k.send(Tagged.of({ tag: t }));
    for (let t = 101; t <= 105; t++) {
      await k.send(Tagged.of({ tag: t }), { priority: Priority.High });
    }
    await k.activate();
    const outs = [];
    while (outs.length < 10) outs.push(...await k.receiveMany(10, { timeoutMs: 5000 }));
    const byOrder = outs.map((o) => o.value as { tag: number; order: number })
      .sort((a, b) => a.order - b.order).map((v) => v.tag);
    assert.deepEqual(byOrder, [101, 102, 103, 104, 105, 1, 2, 3, 4, 5]);
    assert.equal(outs[0].header.typeId, Order.typeId);
    await k.terminate();
  });

  it("deactivate keeps messages queued; activate handles them", async () => {
    const k = await rt.launch(dslAccumulator, opts());
    await k.deactivate();
    assert.equal(k.state(), KernelState.Deactivated);
    for (let i = 0; i < 10; i++) await k.send(AddValue.of({ value: 1 }));
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(k.metrics().processed, 0);
    assert.equal(k.metrics().inputDepth, 10);
    await k.activate();
    const outs = [];
    while (outs.length < 10) outs.push(...await k.receiveMany(10, { timeoutMs: 5000 }));
    assert.equal(outs[9].value!.count, 10);
    assert.equal(k.metrics().inputDepth, 0);
    await k.terminate();
  });

  it("terminate drains by default, returns the queue with drain: false", async () => {
    const a = await rt.launch(dslAccumulator, opts());
    await a.deactivate();
    for (let i = 0; i < 20; i++) await a.send(AddValue.of({ value: 1 }));
    await a.activate();
    const drained = await a.terminate();
    assert.equal(drained.processed, 20);
    assert.deepEqual(drained.returned, []);
    await assert.rejects(a.send(AddValue.of({ value: 1 })), InvalidStateError);

    const b = await rt.launch(dslAccumulator, opts());
    await b.deactivate();
    for (let i = 0; i < 7; i++) await b.send(AddValue.of({ value: i }));
    const left = await b.terminate({ drain: false });
    assert.equal(left.processed, 0);
    assert.equal(left.returned.length, 7);
    const dv = new DataView(left.returned[6].buffer, left.returned[6].byteOffset);
    assert.equal(dv.getUint32(EnvelopeOffset.typeId, true), AddValue.typeId);
    assert.equal(dv.getFloat32(EnvelopeOffset.payload, true), 6);
  });

  it("bad envelopes are dropped, counted, and requesters told why", async () => {
    const k = await rt.launch(dslAccumulator, opts());
    const env = encodeMessage(AddValue.of({ value: 1 }), {
      flags: EnvelopeFlag.Request,
      messageId: 777n,
      destKernel: k.numericId,
    }, { checksum: true });
    assert.deepEqual(await k.requestEnvelope(env.slice()), { total: 1, count: 1 });
    // A flipped payload bit: the checksum no longer matches.
    const corrupt = env.slice();
    new DataView(corrupt.buffer).setUint32(EnvelopeOffset.messageId, 778, true);
    corrupt[EnvelopeOffset.payload] ^= 0x40;
    await assert.rejects(
      k.requestEnvelope(corrupt),
      (e: unknown) => e instanceof DecodeError && e.code === ErrorCode.DecodeChecksum,
    );
    // The right type with a wrong payload length, and a wrong magic number.
    const short = encodeMessage(AddValue.of({ value: 1 }), {
      flags: EnvelopeFlag.Request,
      messageId: 779n,
    });
    new DataView(short.buffer).setUint32(EnvelopeOffset.payloadLength, 2, true);
    await assert.rejects(
      k.requestEnvelope(short),
      (e: unknown) => e instanceof HandlerError && e.remoteName === "ValidationError",
    );
    const magic = encodeMessage(AddValue.of({ value: 1 }), {
      flags: EnvelopeFlag.Request,
      messageId: 780n,
    });
    magic[0] ^= 0xff;
    await assert.rejects(k.requestEnvelope(magic), HandlerError);
    // A bad envelope that is not a request is dropped and counted only.
    const quiet = encodeMessage(AddValue.of({ value: 1 }), {}, { checksum: true });
    quiet[EnvelopeOffset.payload + 1] ^= 1;
    await k.sendEnvelope(quiet);
    await until(() => k.metrics().dropped === 4, 5000, "the fourth drop");
    assert.deepEqual(await k.request(AddValue.of({ value: 2 })), { total: 3, count: 2 });
    const m = k.metrics();
    assert.equal(m.processed, 2);
    assert.equal(m.dropped, 4);
    assert.equal(m.errors, 4);
    await k.terminate();
  });

  it("the passthrough built-in echoes any type", async () => {
    const k = await rt.launch("echo", opts());
    assert.deepEqual(await k.request(AddValue.of({ value: 42 })), { value: 42 });
    assert.deepEqual(await k.request(Tagged.of({ tag: 0xdead_beef })), { tag: 0xdead_beef });
    await k.send(Tick.of({ amount: 3, stamp: 0x1_0000_0002n }));
    const out = await k.receive({ timeoutMs: 5000 });
    assert.equal(out.header.typeId, Tick.typeId);
    assert.deepEqual(Tick.decode(out.payload), { amount: 3, stamp: 0x1_0000_0002n });
    await k.terminate();
  });

  it("a definition WGSL cannot run fails launch with the DSL's typed error", async () => {
    await assert.rejects(
      rt.launch(dslWide, opts()),
      (e: unknown) => e instanceof DslError && e.code === ErrorCode.DslTarget,
    );
    assert.deepEqual(rt.listKernels(), []);
  });

  it("RingKernel.builder().backend(Backend.WebGpu) builds on the adapter; Auto stays on the CPU", async () => {
    const r = await RingKernel.builder().backend(Backend.WebGpu).webgpu({}).build();
    assert.equal(r.backend, "webgpu");
    const k = await r.launch(dslAccumulator, opts());
    assert.deepEqual(await k.request(AddValue.of({ value: 4 })), { total: 4, count: 1 });
    await r.shutdown();
    // Auto never picks WebGPU: the CPU where there is no CUDA device (as in this test).
    const auto = await RingKernel.builder().backend(Backend.Auto).autoProbes({
      cuda: () => ({ usable: false, reason: "none in this test" }),
      env: () => undefined,
    }).build();
    assert.equal(auto.backend, "cpu");
    assert.ok(auto.backendNotes.some((n) => n.startsWith("webgpu: not chosen automatically")));
    await auto.shutdown();
  });
});

describe("Backend.WebGpu without an adapter", {
  skip: skip === false ? "an adapter exists" : false,
}, () => {
  it("throws BackendUnavailableError naming webgpu and why", async () => {
    await assert.rejects(
      RingKernel.builder().backend(Backend.WebGpu).build(),
      (e: unknown) =>
        e instanceof BackendUnavailableError && e.backend === "webgpu" &&
        /no WebGPU adapter/.test(e.message),
    );
  });
});
