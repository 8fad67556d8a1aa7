/**
 * A short tour of the RingKernel runtime on the CPU backend: a persistent kernel, request/response, kernel-to-kernel messages, pub/sub and telemetry. Runs
 * unchanged under Deno and Bun:
 *
 *   deno task demo        (or: deno run -A examples/demo.ts)
 *   bun examples/demo.ts
 *
 * examples/core_tour.ts tours the portable core underneath (clocks, schemas, queues, SIMD), and
 * the other files in examples/ take one topic each.
 *
 * Single-file example: this module exports the kernel definitions (the kernels' workers import it
 * through `module: import.meta.url`) and runs the tour only `if (import.meta.main)`, which is
 * false when a worker imports it, in Deno and in Bun.
 */
import {
  Backend,
  decodeMessage,
  defineKernel,
  defineMessage,
  encodeMessage,
  HlcClock,
  kernelStateName,
  LaunchOptions,
  PubSubBroker,
  PubSubConfig,
  RingKernel,
} from "../mod.ts";

/** Add a value to the running total. */
export const Add = defineMessage({ typeId: 1501, name: "Add", fields: { value: "f32" } });
/** The running total. */
export const Sum = defineMessage({ typeId: 1502, name: "Sum", fields: { total: "f32" } });

/** Sums what it is sent; the total is state in shared memory and persists between messages. */
export const accumulator = defineKernel({
  id: "accumulator",
  module: import.meta.url,
  input: Add,
  output: Sum,
  state: { total: "f32" },
  handler: (msg, state) => {
    state.total += msg.value;
    return { total: state.total };
  },
});

/** Doubles a value and hands it to the accumulator kernel directly (K2K, no host hop). */
export const doubler = defineKernel({
  id: "doubler",
  module: import.meta.url,
  input: Add,
  output: Sum,
  handler: (msg, _state, ctx) => {
    const receipt = ctx.send("accumulator", Add.of({ value: msg.value * 2 }));
    // The reply carries the receipt's outcome: 1 delivered, 0 not.
    return { total: receipt.status === "Delivered" ? 1 : 0 };
  },
});

const runtimeName = "Deno" in globalThis ? "Deno" : "Bun" in globalThis ? "Bun" : "JS";

async function main(): Promise<void> {
  console.log(`RingKernel runtime tour on ${runtimeName}\n`);

  // 1. The CPU backend, by name: the tour's handlers read K2K receipts, which only the CPU
  //    backend has (Backend.Auto picks CUDA where a GPU is usable; examples/wgpu_hello.ts runs
  //    on WebGPU).
  const rt = await RingKernel.builder().backend(Backend.Cpu).build();
  console.log(`1. backend: ${rt.backend}`);

  // 2. A persistent kernel: one worker that keeps running and keeps its state between messages.
  const acc = await rt.launch(accumulator, LaunchOptions.default().withQueueCapacity(4096));
  console.log(`\n2. launched ${acc.id}: ${kernelStateName(acc.state())}`);

  // 3. Request/response, correlated by message id, also when many are in flight.
  const first = await acc.request(Add.of({ value: 2 }), { timeoutMs: 5000 });
  const many = await Promise.all(
    Array.from({ length: 100 }, () => acc.request(Add.of({ value: 1 }))),
  );
  console.log(`\n3. request(2) -> total ${first!.total}`);
  console.log(
    `   100 concurrent requests -> highest total ${Math.max(...many.map((r) => r!.total))}, ` +
      `state ${JSON.stringify(acc.readState())}`,
  );

  // 4. K2K: the doubler's handler sends straight into the accumulator's input queue.
  const dbl = await rt.launch(doubler);
  const delivered = await dbl.request(Add.of({ value: 21 }));
  // The accumulator replies to K2K messages as outputs; the host reads them with receive().
  const out = await acc.receive({ timeoutMs: 5000 });
  console.log(`\n4. doubler -> accumulator: delivered ${delivered!.total === 1}`);
  console.log(`   accumulator output after the K2K message: total ${out.value!.total}`);
  const ghost = await rt.k2kBroker().send("host", "ghost", encodeMessage(Add.of({ value: 1 })));
  console.log(`   host broker -> ghost: ${ghost.status}`);

  // 5. Pub/sub: the accumulator's outputs published on MQTT topics, a wildcard subscriber.
  const clock = new HlcClock(1);
  const broker = new PubSubBroker(PubSubConfig.default());
  const sub = broker.subscribe("dashboard", "kernels/+/total");
  for (const value of [10, 20]) {
    await acc.send(Add.of({ value }));
    const o = await acc.receive({ timeoutMs: 5000 });
    broker.publish(
      `kernels/${acc.id}/total`,
      acc.id,
      encodeMessage(Sum.of(o.value!)),
      clock.tick(),
    );
  }
  console.log("\n5. pub/sub");
  for (let d = sub.tryReceive(); d; d = sub.tryReceive()) {
    console.log(`   dashboard <- ${d.topic}: ${decodeMessage(d.envelope, Sum).value.total}`);
  }
  broker.close();

  // 6. Telemetry: runtime totals, handler latency, Prometheus text, the state-change stream.
  const m = rt.metrics();
  console.log("\n6. telemetry");
  console.log(
    `   processed ${m.processed}, errors ${m.errors}, kernels active ${m.kernels.active}, ` +
      `k2k delivered ${m.k2k.delivered}, notFound ${m.k2k.notFound}`,
  );
  const lat = acc.metrics().latency;
  // Timings vary by machine and load; shown, not checked.
  console.log(
    `   accumulator handler latency p50 ${(lat.p50Ns / 1000).toFixed(1)} µs, ` +
      `p99 ${(lat.p99Ns / 1000).toFixed(1)} µs over ${lat.count} messages`,
  );
  // The same numbers in the Prometheus text format, for a /metrics endpoint.
  const text = rt.metricsText();
  const lines = text.split("\n").filter((l) => l.startsWith("ringkernel_messages_processed_total"));
  for (const l of lines) console.log(`   ${l}`);
  // Lifecycle changes as a stream; it ends by itself once the runtime has shut down. Kernels
  // stop concurrently, so the changes are grouped per kernel for a stable printout.
  const stream = rt.events();
  const changes = (async () => {
    const byKernel = new Map<string, string[]>();
    for await (const e of stream) {
      byKernel.set(e.kernelId, [...byKernel.get(e.kernelId) ?? [e.from], e.to]);
    }
    return [...byKernel].sort(([a], [b]) => a < b ? -1 : 1);
  })();

  await rt.shutdown();
  console.log("   state changes during shutdown:");
  for (const [id, path] of await changes) console.log(`   ${id}: ${path.join(" -> ")}`);
  console.log("\ntour done");
}

if (import.meta.main) await main();
