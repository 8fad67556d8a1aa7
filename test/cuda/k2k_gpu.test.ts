/**
 * K2K between persistent CUDA kernels on a real GPU, through device-memory lanes with no host hop:
 * a chain head → middle → tail with every reply and output checked and the counters exact; a full
 * destination reported as QueueFull with every message accounted for; NotFound for unknown,
 * K2K-off, terminated and wrongly typed destinations and for a sender with K2K off; the outbox's
 * bound; the host broker into a CUDA kernel; a terminate returning (or draining) what is left in
 * a device lane; a relaunched destination found again; a ping-pong with its device-timed delivery
 * latency; 50 launch/terminate cycles leaving device memory flat. Skips, saying why, where no
 * CUDA device opens (every machine without an NVIDIA GPU).
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CudaRuntime } from "../../src/backends/cuda/cuda_runtime.ts";
import { decodeEnvelope, encodeMessage } from "../../src/core/envelope.ts";
import { DeliveryStatus, type K2kCounters } from "../../src/runtime/k2k.ts";
import type { KernelHandle } from "../../src/runtime/kernel_handle.ts";
import { LaunchOptions } from "../../src/runtime/launch_options.ts";
import type { FieldsSpec } from "../../src/core/schema.ts";
import { cudaRuntimeSkip } from "./gpu_available.ts";
import {
  Ball,
  ChainStart,
  FanOut,
  Hop,
  k2kFanout,
  k2kHead,
  k2kMiddle,
  k2kMistyped,
  k2kPing,
  k2kPong,
  k2kTail,
} from "./k2k_kernels.ts";

const skip = cudaRuntimeSkip();
if (skip) console.log(`k2k_gpu.test: skipping: ${skip}`);

const cacheDir = mkdtempSync(join(tmpdir(), "rk-cuda-k2k-"));
after(() => rmSync(cacheDir, { recursive: true, force: true }));

const LONG = { timeout: 120_000 };
const opts = () => LaunchOptions.default().withQueueCapacity(1024);

/** The runtime's K2K counters minus `base`. */
function delta(rt: CudaRuntime, base: K2kCounters): K2kCounters {
  const m = rt.metrics().k2k;
  return {
    sent: m.sent - base.sent,
    delivered: m.delivered - base.delivered,
    queueFull: m.queueFull - base.queueFull,
    notFound: m.notFound - base.notFound,
  };
}

/**
 * Waits until the counters since `base` equal `want` (a kernel publishes its counters with its
 * batch, which may end after the message it sent was already taken), failing after 5 s.
 */
async function expectCounters(rt: CudaRuntime, base: K2kCounters, want: K2kCounters) {
  const end = performance.now() + 5000;
  let got = delta(rt, base);
  while (JSON.stringify(got) !== JSON.stringify(want) && performance.now() < end) {
    await new Promise((r) => setTimeout(r, 2));
    got = delta(rt, base);
  }
  assert.deepEqual(got, want);
}

/** Receives exactly `n` outputs of `k` (5 s for each wait). */
async function take<I extends FieldsSpec, O extends FieldsSpec, S extends FieldsSpec>(
  k: KernelHandle<I, O, S>,
  n: number,
) {
  const out = [];
  while (out.length < n) out.push(...await k.receiveMany(n - out.length, { timeoutMs: 5000 }));
  return out;
}

describe("K2K between CUDA kernels", { skip }, () => {
  let rt: CudaRuntime;
  before(async () => {
    rt = await CudaRuntime.create({ cacheDir });
  });
  after(async () => {
    if (!rt.isShutdown) await rt.shutdown();
  });

  it(
    "a chain head → middle → tail on the GPU: replies, outputs and exact counts",
    LONG,
    async () => {
      const tail = await rt.launch(k2kTail, opts());
      const middle = await rt.launch(k2kMiddle, opts());
      const head = await rt.launch(k2kHead, opts());
      const base = rt.metrics().k2k;
      const n = 100;
      for (let i = 0; i < n; i++) {
        const ack = await head.request(ChainStart.of({ value: i, tag: i }), { timeoutMs: 5000 });
        assert.deepEqual(ack, { sent: i + 1 });
      }
      const outs = await take(tail, n);
      assert.deepEqual(
        outs.map((o) => o.value),
        Array.from(
          { length: n },
          (_, i) => ({ value: (i + 1) * 2, tag: i, hops: 3, count: i + 1 }),
        ),
      );
      assert.ok(outs.every((o) => o.header.sourceKernel === tail.numericId));
      await expectCounters(rt, base, { sent: 2 * n, delivered: 2 * n, queueFull: 0, notFound: 0 });
      assert.equal(middle.metrics().processed, n);
      assert.equal(tail.metrics().processed, n);
      assert.equal(middle.metrics().dropped + tail.metrics().dropped, 0);
      // The tail's delivery histogram counted every hop it took, timed on the GPU.
      const lat = rt.k2kDeliveryLatency("k2k_tail")!;
      assert.equal(lat.count, n);
      assert.ok(lat.percentile(50) > 0 && lat.percentile(50) < 1e9);
      for (const k of [head, middle, tail]) await k.terminate();
    },
  );

  it("a full destination is QueueFull and every message is accounted for", LONG, async () => {
    const tail = await rt.launch(k2kTail, LaunchOptions.default().withInputCapacity(4));
    await tail.deactivate();
    const fan = await rt.launch(k2kFanout, opts());
    const base = rt.metrics().k2k;
    assert.deepEqual(await fan.request(FanOut.of({ count: 6, tag: 1 })), { sent: 6 });
    await expectCounters(rt, base, { sent: 6, delivered: 4, queueFull: 2, notFound: 0 });
    assert.equal(tail.metrics().processed, 0);
    await tail.activate();
    const outs = await take(tail, 4);
    assert.deepEqual(outs.map((o) => o.value!.value), [0, 1, 2, 3]);
    assert.equal(tail.metrics().processed, 4); // delivered 4 + queueFull 2 = sent 6
    // Room again: the next ones go through.
    await fan.request(FanOut.of({ count: 2, tag: 2 }));
    await take(tail, 2);
    await expectCounters(rt, base, { sent: 8, delivered: 6, queueFull: 2, notFound: 0 });
    await fan.terminate();
    await tail.terminate();
  });

  it("more sends in one handler call than the outbox holds count as QueueFull", LONG, async () => {
    const tail = await rt.launch(k2kTail, opts());
    const fan = await rt.launch(k2kFanout, opts());
    const base = rt.metrics().k2k;
    await fan.request(FanOut.of({ count: 40, tag: 3 }));
    const outs = await take(tail, 32);
    assert.deepEqual(outs.map((o) => o.value!.value), Array.from({ length: 32 }, (_, i) => i));
    await expectCounters(rt, base, { sent: 40, delivered: 32, queueFull: 8, notFound: 0 });
    assert.equal(fan.metrics().errors, 1);
    await fan.terminate();
    await tail.terminate();
  });

  it(
    "NotFound: unknown, K2K off, terminated, wrong type, and a sender with K2K off",
    LONG,
    async () => {
      const fan = await rt.launch(k2kFanout, opts());
      let base = rt.metrics().k2k;
      await fan.request(FanOut.of({ count: 3, tag: 4 })); // no k2k_tail anywhere
      await expectCounters(rt, base, { sent: 3, delivered: 0, queueFull: 0, notFound: 3 });

      const off = await rt.launch(k2kTail, opts().withK2k(false));
      base = rt.metrics().k2k;
      await fan.request(FanOut.of({ count: 2, tag: 5 }));
      await expectCounters(rt, base, { sent: 2, delivered: 0, queueFull: 0, notFound: 2 });
      assert.equal(off.metrics().processed, 0);
      await off.terminate();

      const tail = await rt.launch(k2kTail, opts());
      await tail.terminate();
      base = rt.metrics().k2k;
      await fan.request(FanOut.of({ count: 1, tag: 6 }));
      await expectCounters(rt, base, { sent: 1, delivered: 0, queueFull: 0, notFound: 1 });
      assert.equal(fan.metrics().errors, 0);
      await fan.terminate();

      const live = await rt.launch(k2kTail, opts());
      const wrong = await rt.launch(k2kMistyped, opts());
      base = rt.metrics().k2k;
      await wrong.request(ChainStart.of({ value: 1, tag: 7 }));
      await expectCounters(rt, base, { sent: 1, delivered: 0, queueFull: 0, notFound: 1 });
      assert.equal(wrong.metrics().errors, 1);
      assert.equal(live.metrics().processed, 0);
      await wrong.terminate();

      const lone = await rt.launch(k2kFanout, opts().withK2k(false));
      base = rt.metrics().k2k;
      await lone.request(FanOut.of({ count: 2, tag: 8 }));
      await expectCounters(rt, base, { sent: 2, delivered: 0, queueFull: 0, notFound: 2 });
      assert.equal(lone.metrics().errors, 2);
      await lone.terminate();
      await live.terminate();
    },
  );

  it("the host broker still sends into a CUDA kernel's host lanes", LONG, async () => {
    const tail = await rt.launch(k2kTail, opts());
    const broker = rt.k2kBroker();
    assert.ok(broker.routes().includes("k2k_tail"));
    const env = encodeMessage(Hop.of({ value: 5, tag: 9, hops: 0 }));
    assert.deepEqual(await broker.send("host", "k2k_tail", env), {
      status: DeliveryStatus.Delivered,
      dest: "k2k_tail",
    });
    const [out] = await take(tail, 1);
    assert.deepEqual(out.value, { value: 5, tag: 9, hops: 1, count: 1 });
    await tail.terminate();
    const off = await rt.launch(k2kTail, opts().withK2k(false));
    assert.equal((await broker.send("host", "k2k_tail", env)).status, DeliveryStatus.NotFound);
    await off.terminate();
  });

  it("terminate returns what is left in the device lane, or drains it", LONG, async () => {
    const fan = await rt.launch(k2kFanout, opts());
    const tail = await rt.launch(k2kTail, opts());
    await tail.deactivate();
    const base = rt.metrics().k2k;
    await fan.request(FanOut.of({ count: 5, tag: 10 }));
    // One more in a host lane, through the broker: host lanes come first in `returned`.
    const env = encodeMessage(Hop.of({ value: 99, tag: 11, hops: 0 }));
    assert.equal((await rt.k2kBroker().send("host", "k2k_tail", env)).status, "Delivered");
    await expectCounters(rt, base, { sent: 6, delivered: 6, queueFull: 0, notFound: 0 });
    const left = await tail.terminate({ drain: false });
    assert.equal(left.processed, 0);
    assert.equal(left.returned.length, 6);
    const decoded = left.returned.map((b) => {
      const { header, payload } = decodeEnvelope(b, { checksum: "ignore" });
      assert.equal(header.typeId, Hop.typeId);
      return Hop.decode(payload).value;
    });
    assert.deepEqual(decoded, [99, 0, 1, 2, 3, 4]);
    // The device-lane ones as the sender wrote them: from the fanout kernel, to this tail.
    const k2kHeaders = left.returned.slice(1).map((b) => decodeEnvelope(b).header);
    assert.ok(k2kHeaders.every((h) => h.sourceKernel === fan.numericId));
    assert.ok(k2kHeaders.every((h) => h.destKernel === tail.numericId));
    assert.deepEqual(k2kHeaders.map((h) => h.messageId), [1n, 2n, 3n, 4n, 5n]);

    const again = await rt.launch(k2kTail, opts());
    await again.deactivate();
    await fan.request(FanOut.of({ count: 5, tag: 12 }));
    await expectCounters(rt, base, { sent: 11, delivered: 11, queueFull: 0, notFound: 0 });
    const drained = await again.terminate();
    assert.equal(drained.processed, 5);
    assert.deepEqual(drained.returned, []);
    await fan.terminate();
  });

  it("a destination terminated and launched again is found again", LONG, async () => {
    const fan = await rt.launch(k2kFanout, opts());
    const base = rt.metrics().k2k;
    let tail = await rt.launch(k2kTail, opts());
    await fan.request(FanOut.of({ count: 1, tag: 13 }));
    await take(tail, 1);
    await tail.terminate();
    await fan.request(FanOut.of({ count: 1, tag: 14 }));
    tail = await rt.launch(k2kTail, opts());
    await fan.request(FanOut.of({ count: 1, tag: 15 }));
    const [out] = await take(tail, 1);
    assert.deepEqual(out.value, { value: 0, tag: 15, hops: 1, count: 1 });
    await expectCounters(rt, base, { sent: 3, delivered: 2, queueFull: 0, notFound: 1 });
    await tail.terminate();
    await fan.terminate();
  });

  it("ping-pong between two kernels; delivery latency timed on the GPU", LONG, async () => {
    const ping = await rt.launch(k2kPing, opts());
    const pong = await rt.launch(k2kPong, opts());
    const hops = 2000;
    const t0 = performance.now();
    await ping.send(Ball.of({ hops, tag: 1 }));
    const [done] = await take(ping, 1);
    const ms = performance.now() - t0;
    assert.deepEqual(done.value, { hops: 0, tag: 1 });
    const a = rt.k2kDeliveryLatency("k2k_ping")!;
    const b = rt.k2kDeliveryLatency("k2k_pong")!;
    assert.equal(a.count + b.count, hops);
    a.merge(b);
    console.log(
      `cuda K2K ping-pong (${"Deno" in globalThis ? "Deno" : "Bun"}, ${rt.device.name}): ` +
        `${hops} hops in ${ms.toFixed(2)} ms (${((ms * 1000) / hops).toFixed(2)} µs/hop with ` +
        `handling, host-timed); delivery p50 ${(a.percentile(50) / 1000).toFixed(2)} µs, p99 ` +
        `${(a.percentile(99) / 1000).toFixed(2)} µs (device-timed)`,
    );
    assert.ok(a.percentile(50) < 1e6, `delivery p50 ${a.percentile(50)} ns`);
    await ping.terminate();
    await pong.terminate();
  });

  it("50 launch/terminate cycles with K2K leave device memory flat", LONG, async () => {
    const warm = await rt.launch(k2kTail, opts());
    await warm.terminate();
    const first = await rt.launch(k2kFanout, opts());
    await first.terminate();
    const stats = rt.context.stats();
    const usage = rt.k2kUsage();
    assert.deepEqual(
      { blocks: usage.blockBytes, slots: usage.routeSlots, live: usage.attachments },
      { blocks: 0, slots: 0, live: 0 },
    );
    for (let i = 0; i < 50; i++) {
      const tail = await rt.launch(k2kTail, opts());
      const fan = await rt.launch(k2kFanout, opts());
      await fan.request(FanOut.of({ count: 3, tag: i }));
      await take(tail, 3);
      await fan.terminate();
      await tail.terminate({ drain: i % 2 === 0 });
    }
    assert.deepEqual(rt.context.stats(), stats);
    assert.deepEqual(rt.k2kUsage(), usage);
    assert.deepEqual(rt.listKernels(), []);
  });
});
