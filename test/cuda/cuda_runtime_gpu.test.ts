/**
 * The CUDA backend on a real GPU: a DSL handler running as a persistent CUDA kernel, driven
 * through the same KernelHandle as the CPU backend — request/reply, sendMany/receiveMany, state
 * kept between messages, deactivate/activate keeping queued messages, terminate draining or
 * returning, readState, metrics, checksums verified on the GPU, the passthrough built-in, and 100
 * launch/terminate cycles leaving the context's allocations flat. Skips, saying why, where no
 * CUDA device opens (every machine without an NVIDIA GPU).
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CudaDriver } from "../../ffi/cuda.ts";
import { CudaRuntime } from "../../src/backends/cuda/cuda_runtime.ts";
import { KernelState } from "../../src/core/control_block.ts";
import { encodeMessage, EnvelopeFlag, EnvelopeOffset } from "../../src/core/envelope.ts";
import { DecodeError, InvalidStateError } from "../../src/core/errors.ts";
import { LaunchOptions } from "../../src/runtime/launch_options.ts";
import { Backend } from "../../src/runtime/backend.ts";
import { RingKernel } from "../../src/runtime/runtime.ts";
import {
  AddValue,
  CounterOp,
  dslAccumulator,
  dslCounter,
  dslForwarder,
  Job,
} from "../dsl/corpus.ts";

let skip: string | false = false;
try {
  const driver = CudaDriver.open();
  const n = driver.deviceCount();
  driver.close();
  if (n === 0) skip = "libcuda loaded but reports no CUDA device";
} catch (err) {
  skip = `no CUDA device: ${(err as Error).message.split("\n")[0]}`;
}
if (skip) console.log(`cuda_runtime_gpu.test: skipping: ${skip}`);

const cacheDir = mkdtempSync(join(tmpdir(), "rk-cuda-rt-"));
after(() => rmSync(cacheDir, { recursive: true, force: true }));

const opts = () => LaunchOptions.default().withQueueCapacity(1024);

describe("CudaRuntime on a GPU", { skip }, () => {
  let rt: CudaRuntime;
  before(async () => {
    rt = await CudaRuntime.create({ cacheDir });
  });
  after(async () => {
    if (!rt.isShutdown) await rt.shutdown();
  });

  it("request/reply runs the DSL handler on the GPU; state persists; readState; metrics", {
    timeout: 60_000,
  }, async () => {
    const k = await rt.launch(dslAccumulator, opts());
    assert.equal(k.state(), KernelState.Active);
    const r1 = await k.request(AddValue.of({ value: 2 }), { timeoutMs: 5000 });
    assert.deepEqual(r1, { total: 2, count: 1 });
    const r2 = await k.request(AddValue.of({ value: 3.5 }), { timeoutMs: 5000 });
    assert.deepEqual(r2, { total: 5.5, count: 2 });
    const many = await Promise.all(
      Array.from({ length: 100 }, () => k.request(AddValue.of({ value: 1 }))),
    );
    assert.equal(Math.max(...many.map((r) => r!.count)), 102);
    assert.deepEqual(k.readState(), { total: 105.5, count: 102 });
    const m = k.metrics();
    assert.equal(m.processed, 102);
    assert.equal(m.dropped, 0);
    assert.equal(m.errors, 0);
    assert.equal(m.latency.count, 102);
    assert.equal(m.state, "active");
    const report = await k.terminate();
    assert.equal(report.processed, 102);
    assert.deepEqual(report.returned, []);
    assert.equal(k.state(), KernelState.Terminated);
    // The handle reads a copy of the freed region afterwards.
    assert.equal(k.metrics().processed, 102);
    assert.deepEqual(k.readState(), { total: 105.5, count: 102 });
  });

  it("request latency (sequential round trips)", { timeout: 60_000 }, async () => {
    const k = await rt.launch(dslAccumulator, opts());
    for (let i = 0; i < 200; i++) await k.request(AddValue.of({ value: 1 }));
    const n = 2000;
    const times: number[] = [];
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      await k.request(AddValue.of({ value: 1 }));
      times.push((performance.now() - t0) * 1000);
    }
    times.sort((a, b) => a - b);
    const p50 = times[Math.floor(n * 0.5)];
    const p99 = times[Math.floor(n * 0.99)];
    console.log(
      `cuda request round trip (${"Deno" in globalThis ? "Deno" : "Bun"}, ${rt.device.name}): ` +
        `p50 ${p50.toFixed(1)} µs, p99 ${p99.toFixed(1)} µs over ${n}`,
    );
    assert.ok(p50 < 1000, `p50 ${p50} µs`);
    await k.terminate();
  });

  it("sendMany/receiveMany: outputs for non-requests, in order", { timeout: 60_000 }, async () => {
    const k = await rt.launch(dslCounter, opts());
    const ops = Array.from({ length: 300 }, (_, i) => CounterOp.of({ op: 0, amount: i }));
    assert.equal(await k.sendMany(ops), 300);
    const got: number[] = [];
    while (got.length < 300) {
      for (const o of await k.receiveMany(64, { timeoutMs: 5000 })) got.push(o.value!.value);
    }
    let sum = 0;
    assert.deepEqual(got, ops.map((_, i) => (sum += i)));
    // Unknown op: no reply to a request is the empty reply (undefined).
    assert.equal(await k.request(CounterOp.of({ op: 9, amount: 1 })), undefined);
    assert.equal(k.metrics().processed, 301);
    await k.terminate();
  });

  it("deactivate keeps messages queued; activate handles them", { timeout: 60_000 }, async () => {
    const k = await rt.launch(dslAccumulator, opts());
    await k.deactivate();
    assert.equal(k.state(), KernelState.Deactivated);
    for (let i = 0; i < 10; i++) await k.send(AddValue.of({ value: 1 }));
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(k.metrics().processed, 0);
    assert.equal(k.metrics().inputDepth, 10);
    await k.activate();
    const outs = [];
    while (outs.length < 10) outs.push(...await k.receiveMany(10, { timeoutMs: 5000 }));
    assert.equal(outs[9].value!.count, 10);
    await k.terminate();
  });

  it(
    "terminate drains by default, returns the queue with drain: false",
    { timeout: 60_000 },
    async () => {
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
      for (let i = 0; i < 7; i++) await b.send(AddValue.of({ value: 1 }));
      const left = await b.terminate({ drain: false });
      assert.equal(left.processed, 0);
      assert.equal(left.returned.length, 7);
    },
  );

  it(
    "a corrupted checksum is dropped on the GPU and the requester told",
    { timeout: 60_000 },
    async () => {
      const k = await rt.launch(dslAccumulator, opts());
      const env = encodeMessage(AddValue.of({ value: 1 }), {
        flags: EnvelopeFlag.Request,
        messageId: 777n,
        destKernel: k.numericId,
      }, { checksum: true });
      const ok = await k.requestEnvelope(env.slice(), { timeoutMs: 5000 });
      assert.deepEqual(ok, { total: 1, count: 1 });
      const bad = env.slice();
      new DataView(bad.buffer).setUint32(EnvelopeOffset.messageId, 778, true);
      bad[EnvelopeOffset.payload] ^= 0x40;
      await assert.rejects(k.requestEnvelope(bad, { timeoutMs: 5000 }), DecodeError);
      const m = k.metrics();
      assert.equal(m.processed, 1);
      assert.equal(m.dropped, 1);
      assert.equal(m.errors, 1);
      await k.terminate();
    },
  );

  it("ctx.send from a GPU handler is counted as not found, never lost silently", {
    timeout: 60_000,
  }, async () => {
    const k = await rt.launch(dslForwarder, opts());
    await k.request(Job.of({ value: 1 }));
    await k.request(Job.of({ value: -1 }));
    const m = rt.metrics();
    assert.equal(m.k2k.sent, 1);
    assert.equal(m.k2k.notFound, 1);
    await k.terminate();
  });

  it("the passthrough built-in echoes", { timeout: 60_000 }, async () => {
    const k = await rt.launch("echo", opts());
    const r = await k.request(AddValue.of({ value: 42 }));
    assert.deepEqual(r, { value: 42 });
    await k.terminate();
  });

  it(
    "100 launch/terminate cycles leave the context's allocations flat",
    { timeout: 60_000 },
    async () => {
      const first = await rt.launch(dslAccumulator, opts());
      await first.request(AddValue.of({ value: 1 }));
      await first.terminate();
      const before = rt.context.stats();
      const t0 = performance.now();
      for (let i = 0; i < 100; i++) {
        const k = await rt.launch(dslAccumulator, opts());
        assert.deepEqual(await k.request(AddValue.of({ value: i })), { total: i, count: 1 });
        await k.terminate();
      }
      const per = (performance.now() - t0) / 100;
      console.log(`cuda launch + request + terminate: ${per.toFixed(2)} ms per cycle`);
      assert.deepEqual(rt.context.stats(), before);
      assert.deepEqual(rt.listKernels(), []);
    },
  );

  it("RingKernel.builder().backend(Backend.Cuda) picks CUDA; so does Auto, unless overridden", {
    timeout: 60_000,
  }, async () => {
    const r = await RingKernel.builder().backend(Backend.Cuda).cuda({ cacheDir }).build();
    assert.equal(r.backend, "cuda");
    const k = await r.launch(dslAccumulator, opts());
    assert.deepEqual(await k.request(AddValue.of({ value: 4 })), { total: 4, count: 1 });
    await r.shutdown();
    const auto = await RingKernel.builder().backend(Backend.Auto).cuda({ cacheDir })
      .autoProbes({ env: () => undefined }).build();
    try {
      assert.equal(auto.backend, "cuda");
      assert.deepEqual(auto.backendNotes.map((n) => n.split(":")[0]), ["webgpu"]);
      const a = await auto.launch(dslAccumulator, opts());
      assert.deepEqual(await a.request(AddValue.of({ value: 5 })), { total: 5, count: 1 });
    } finally {
      await auto.shutdown();
    }
    // RINGKERNEL_BACKEND=cpu keeps Auto on the CPU on a GPU machine.
    const cpu = await RingKernel.builder().backend(Backend.Auto)
      .autoProbes({ env: (name) => name === "RINGKERNEL_BACKEND" ? "cpu" : undefined }).build();
    assert.equal(cpu.backend, "cpu");
    await cpu.shutdown();
  });
});
