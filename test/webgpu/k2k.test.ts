/**
 * K2K between WebGPU kernels without a host hop: a chain A → B → C completes inside the one
 * submission that handles A's request (counted in rounds), a full destination ring refuses the
 * rest (counted in k2kQueueFull, returned as dead letters, nothing lost), sends to an absent
 * kernel are counted and returned, a self-sending kernel keeps the pump going while only its GPU
 * ring holds messages, and a terminate without drain returns the K2K messages left in the ring.
 * Skips, saying why, where no WebGPU adapter is usable.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { WebGpuRuntime } from "../../src/backends/webgpu/webgpu_runtime.ts";
import { EnvelopeOffset } from "../../src/core/envelope.ts";
import { LaunchOptions } from "../../src/runtime/launch_options.ts";
import {
  chainA,
  chainB,
  chainC,
  Countdown,
  countdown,
  FanOut,
  fanOut,
  Job,
  Relay,
  relaySink,
} from "./kernels.ts";
import { until, webGpuSkip } from "./probe.ts";

const skip = await webGpuSkip("test/webgpu/k2k.test.ts");
const LONG = { timeout: 60_000 };

function relayValue(envelope: Uint8Array): number {
  return new DataView(envelope.buffer, envelope.byteOffset).getFloat32(
    EnvelopeOffset.payload,
    true,
  );
}

describe("K2K between WebGPU kernels", { skip }, () => {
  let rt: WebGpuRuntime;
  before(async () => {
    rt = await WebGpuRuntime.create();
  });
  after(async () => {
    if (!rt.isShutdown) await rt.shutdown();
  });

  it("A → B → C completes inside the submission that handles A's request", LONG, async () => {
    // Launched in reverse so that the dispatch order comes from the send graph, not launch order.
    const c = await rt.launch(chainC);
    const b = await rt.launch(chainB);
    const a = await rt.launch(chainA);
    for (let i = 1; i <= 5; i++) {
      const rounds = rt.pumpStats().rounds;
      const ack = await a.request(Job.of({ value: i }));
      // The reply arrives with the round's read-back, which already holds C's state.
      assert.equal(rt.pumpStats().rounds - rounds, 1, "one submission, no host hop");
      assert.deepEqual(ack, { sent: i });
      assert.deepEqual(b.readState(), { seen: i });
      const total = Array.from({ length: i }, (_, j) => (j + 2) * 2).reduce((s, v) => s + v);
      assert.deepEqual(c.readState(), { total, count: i });
    }
    // Never through the host lanes or the host broker.
    const m = rt.metrics();
    assert.equal(m.k2k.sent, 10);
    assert.equal(m.k2k.delivered, 10);
    assert.equal(b.metrics().processed, 5);
    assert.equal(c.metrics().processed, 5);
    assert.deepEqual(rt.k2kBroker().counters(), {
      sent: 0,
      delivered: 0,
      queueFull: 0,
      notFound: 0,
    });
    for (const k of [a, b, c]) await k.terminate();
  });

  it(
    "a full destination ring: counted in k2kQueueFull, returned as dead letters, none lost",
    LONG,
    async () => {
      const before = rt.metrics().k2k;
      const sink = await rt.launch(
        relaySink,
        LaunchOptions.default().withInputCapacity(4).withoutAutoActivate(),
      );
      const fan = await rt.launch(fanOut);
      assert.deepEqual(await fan.request(FanOut.of({ count: 10, base: 100 })), { sent: 10 });
      const k2k = rt.metrics().k2k;
      assert.equal(k2k.sent - before.sent, 10);
      assert.equal(k2k.delivered - before.delivered, 4);
      assert.equal(k2k.queueFull - before.queueFull, 6);
      const dead = rt.takeDeadLetters();
      assert.deepEqual(dead.map((d) => d.reason), Array(6).fill("QueueFull"));
      assert.ok(dead.every((d) => d.from === "wg_fan_out" && d.to === "wg_sink"));
      assert.deepEqual(dead.map((d) => relayValue(d.envelope)), [104, 105, 106, 107, 108, 109]);
      const typeIds = dead.map((d) =>
        new DataView(d.envelope.buffer).getUint32(EnvelopeOffset.typeId, true)
      );
      assert.deepEqual(new Set(typeIds), new Set([Relay.typeId]));
      // The four delivered ones wait in the deactivated sink's GPU ring.
      assert.deepEqual(sink.readState(), { total: 0, count: 0 });
      await sink.activate();
      await until(() => sink.metrics().processed === 4, 5000, "the sink's four messages");
      assert.deepEqual(sink.readState(), { total: 100 + 101 + 102 + 103, count: 4 });
      await fan.terminate();
      await sink.terminate();
    },
  );

  it("sends to a kernel that is not running are counted and returned", async () => {
    const before = rt.metrics().k2k.notFound;
    const fan = await rt.launch(fanOut);
    assert.deepEqual(await fan.request(FanOut.of({ count: 3, base: 1 })), { sent: 3 });
    assert.equal(rt.metrics().k2k.notFound - before, 3);
    const dead = rt.takeDeadLetters();
    assert.deepEqual(dead.map((d) => [d.reason, d.to, relayValue(d.envelope)]), [
      ["NotFound", "wg_sink", 1],
      ["NotFound", "wg_sink", 2],
      ["NotFound", "wg_sink", 3],
    ]);
    await fan.terminate();
  });

  it("a kernel fed only by K2K keeps the pump going (a self-sending countdown)", LONG, async () => {
    const k = await rt.launch(countdown);
    await k.send(Countdown.of({ n: 30 }));
    await until(() => k.metrics().processed === 31, 10_000, "31 countdown steps");
    assert.deepEqual(k.readState(), { seen: 31, last: 0 });
    assert.equal(k.metrics().inputDepth, 0);
    await k.terminate();
  });

  it("terminate without drain returns the K2K messages left in the ring", async () => {
    const sink = await rt.launch(relaySink, LaunchOptions.default().withoutAutoActivate());
    const fan = await rt.launch(fanOut);
    await fan.request(FanOut.of({ count: 5, base: 10 }));
    await sink.send(Relay.of({ value: 99 }));
    const report = await sink.terminate({ drain: false });
    assert.equal(report.processed, 0);
    const values = report.returned.map(relayValue).sort((x, y) => x - y);
    assert.deepEqual(values, [10, 11, 12, 13, 14, 99]);
    const fromFan = report.returned.filter((e) =>
      new DataView(e.buffer, e.byteOffset).getUint32(EnvelopeOffset.sourceKernel, true) ===
        fan.numericId
    );
    assert.equal(fromFan.length, 5);
    await fan.terminate();
  });
});
