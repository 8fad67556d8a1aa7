// The runtime's telemetry wiring: state-change events, metricsText, queue depth gauges.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { HlcTimestamp } from "../../src/core/hlc.ts";
import { CpuRuntime } from "../../src/backends/cpu/cpu_runtime.ts";
import { LaunchOptions } from "../../src/runtime/launch_options.ts";
import type { StateChangeEvent } from "../../src/runtime/telemetry.ts";
import { accumulator, Add, thrower } from "../fixtures/kernels.ts";
import { parseExposition, sampleValue } from "./exposition.ts";
import { delay, withRuntime } from "./helpers.ts";

const triple = (e: StateChangeEvent) => `${e.kernelId}: ${e.from} -> ${e.to}`;

describe("runtime telemetry", () => {
  it("a lifecycle produces the exact ordered event sequence, with HLC stamps; shutdown ends the stream", async () => {
    const rt = await CpuRuntime.create();
    const stream = rt.events();
    const heard: StateChangeEvent[] = [];
    const off = rt.onStateChange((e) => heard.push(e));
    try {
      const k = await rt.launch(accumulator);
      await k.deactivate();
      await k.activate();
      await k.terminate();
      const t = await rt.launch(thrower, LaunchOptions.default().withSupervision("stop"));
      await assert.rejects(t.request(Add.of({ value: -1 })));
      await t.settled;
      await rt.launch("processor", LaunchOptions.default().withoutAutoActivate());
    } finally {
      await rt.shutdown();
    }
    const got: StateChangeEvent[] = [];
    for await (const e of stream) got.push(e); // ends: shutdown closed the stream
    assert.deepEqual(got.map(triple), [
      "accumulator: created -> launched",
      "accumulator: launched -> active",
      "accumulator: active -> deactivated",
      "accumulator: deactivated -> active",
      "accumulator: active -> terminating",
      "accumulator: terminating -> terminated",
      "thrower: created -> launched",
      "thrower: launched -> active",
      "thrower: active -> failed",
      "processor: created -> launched",
      "processor: launched -> terminating",
      "processor: terminating -> terminated",
    ]);
    assert.deepEqual(got.map((e) => e.seq), got.map((_, i) => i + 1));
    for (let i = 0; i < got.length; i++) {
      assert.ok(got[i].hlc instanceof HlcTimestamp);
      if (i > 0) assert.ok(got[i].hlc!.compare(got[i - 1].hlc!) > 0, "HLC stamps increase");
    }
    assert.match(got[8].reason ?? "", /supervision stopped it/);
    assert.deepEqual(heard.map(triple), got.map(triple), "listeners hear the same events");
    off();
    // After shutdown: a new stream is empty at once.
    const late: StateChangeEvent[] = [];
    for await (const e of rt.events()) late.push(e);
    assert.equal(late.length, 0);
  });

  it("metricsText parses strictly and shows processed counts and latency quantiles", async () => {
    await withRuntime(async (rt) => {
      const k = await rt.launch(accumulator);
      const N = 50;
      for (let i = 0; i < N; i++) await k.request(Add.of({ value: 1 }));
      const families = parseExposition(rt.metricsText());
      const kernel = { kernel: "accumulator" };
      const v = (family: string, labels: Record<string, string>, name = family) =>
        sampleValue(families, family, name, labels);
      assert.equal(v("ringkernel_messages_processed_total", kernel), N);
      assert.equal(v("ringkernel_runtime_messages_processed_total", {}), N);
      assert.equal(
        v("ringkernel_latency_seconds", kernel, "ringkernel_latency_seconds_count"),
        N,
      );
      const p50 = v("ringkernel_latency_seconds", { ...kernel, quantile: "0.5" });
      const p99 = v("ringkernel_latency_seconds", { ...kernel, quantile: "0.99" });
      assert.ok(p50 > 0 && p50 < 1, `p50 ${p50} s`);
      assert.ok(p99 >= p50 && p99 < 1, `p99 ${p99} s`);
      assert.equal(v("ringkernel_kernel_state", { ...kernel, state: "active" }), 1);
      assert.equal(v("ringkernel_kernels", { state: "active" }), 1);
    });
  });

  it("queue depth gauges show a deactivated kernel's backlog, and it drains on activate", async () => {
    await withRuntime(async (rt) => {
      const k = await rt.launch(accumulator);
      await k.deactivate();
      for (let i = 0; i < 7; i++) await k.send(Add.of({ value: 1 }));
      await delay(20);
      const depth = (queue: string) =>
        sampleValue(
          parseExposition(rt.metricsText()),
          "ringkernel_queue_depth",
          "ringkernel_queue_depth",
          { kernel: "accumulator", queue },
        );
      assert.equal(depth("input"), 7);
      assert.equal(depth("output"), 0);
      assert.equal(k.metrics().processed, 0);
      await k.activate();
      const outs = [];
      for (let i = 0; i < 7; i++) outs.push(await k.receive({ timeoutMs: 5000 }));
      assert.equal(outs[6].value!.total, 7);
      assert.equal(depth("input"), 0);
      assert.equal(k.metrics().processed, 7);
    });
  });
});
