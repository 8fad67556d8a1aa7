/**
 * Telemetry: per-kernel and runtime metrics, handler and round-trip latency percentiles, the
 * stream of kernel state changes (`runtime.events()` and `runtime.onStateChange`), and the same
 * metrics as Prometheus text (`runtime.metricsText()`), ready to serve on a /metrics endpoint.
 *
 *   deno run -A examples/telemetry.ts
 *   bun examples/telemetry.ts
 *
 * Single-file example: this module exports the kernel definitions (the kernels' workers import it
 * through `module: import.meta.url`) and runs the script only `if (import.meta.main)`, which is
 * false when a worker imports it, in Deno and in Bun.
 */
import {
  defineKernel,
  defineMessage,
  HandlerError,
  LaunchOptions,
  RingKernel,
  type StateChangeEvent,
} from "../mod.ts";

/** A unit of work; `fail` makes the handler throw. */
export const Work = defineMessage({
  typeId: 1701,
  name: "Work",
  fields: { n: "u32", fail: "bool" },
});
/** The result. */
export const Done = defineMessage({ typeId: 1702, name: "Done", fields: { n: "u32" } });

function work(msg: { n: number; fail: boolean }): { n: number } {
  if (msg.fail) throw new Error(`work item ${msg.n} failed`);
  return { n: msg.n };
}

/** The kernel being measured (default supervision: a failure is counted and it serves on). */
export const meter = defineKernel({
  id: "meter",
  module: import.meta.url,
  input: Work,
  output: Done,
  handler: work,
});

/** Same work, launched with `stop` supervision: its first failure fails the kernel. */
export const fragile = defineKernel({
  id: "fragile",
  module: import.meta.url,
  input: Work,
  output: Done,
  handler: work,
});

const us = (ns: number) => `${(ns / 1000).toFixed(1)} µs`;

async function main(): Promise<void> {
  const rt = await RingKernel.builder().build();

  // Two ways to watch state changes: a synchronous listener, and an async iterator read by a
  // task of its own. The stream ends by itself after shutdown, which ends the task.
  let heard = 0;
  const off = rt.onStateChange(() => heard++);
  const stream = rt.events();
  const reading = (async () => {
    const events: StateChangeEvent[] = [];
    for await (const e of stream) events.push(e);
    return events;
  })();

  const k = await rt.launch(meter);
  for (let n = 0; n < 2000; n++) await k.request(Work.of({ n, fail: false }));
  try {
    await k.request(Work.of({ n: 2000, fail: true }));
  } catch (e) {
    if (!(e instanceof HandlerError)) throw e;
  }
  await k.deactivate();
  await k.activate();

  const f = await rt.launch(fragile, LaunchOptions.default().withSupervision("stop"));
  await f.request(Work.of({ n: 1, fail: true })).catch(() => undefined);
  await f.settled;

  // 1. Snapshots: plain data, cheap to take (counters are read from shared memory).
  const m = k.metrics();
  console.log("1. kernel metrics");
  console.log(
    `   ${m.kernelId}: ${m.state}, processed ${m.processed}, errors ${m.errors}, ` +
      `input ${m.inputDepth}/${m.inputCapacity}, output ${m.outputDepth}/${m.outputCapacity}`,
  );
  // Latencies depend on the machine and its load: shown, checked only for their shape.
  console.log(
    `   handler latency: p50 ${us(m.latency.p50Ns)}, p99 ${us(m.latency.p99Ns)} ` +
      `(${m.latency.count} messages)`,
  );
  const rtt = k.requestLatency();
  console.log(
    `   request round trip: p50 ${us(rtt.p50Ns)}, p99 ${us(rtt.p99Ns)} (${rtt.count} requests)`,
  );
  const t = rt.metrics();
  console.log("2. runtime metrics");
  console.log(
    `   processed ${t.processed}, errors ${t.errors} (the failed kernel's included), ` +
      `kernels active ${t.kernels.active}`,
  );

  // 3. Prometheus text: every metric, one sample per line; a few of them here.
  const text = rt.metricsText();
  const wanted = [
    /^# TYPE ringkernel_messages_processed_total counter$/,
    /^ringkernel_messages_processed_total\{kernel="meter"\}/,
    /^ringkernel_errors_total\{kernel="meter"\}/,
    /^ringkernel_kernel_state\{kernel="meter"/,
    /^ringkernel_latency_seconds\{kernel="meter",quantile="0.99"\}/,
    /^ringkernel_latency_seconds_count\{kernel="meter"\}/,
  ];
  console.log(`3. metricsText(): ${text.split("\n").length - 1} lines, among them`);
  for (const line of text.split("\n")) {
    if (wanted.some((re) => re.test(line))) console.log(`   ${line}`);
  }

  await rt.shutdown();
  const events = await reading;
  off();
  console.log("4. state changes");
  for (const e of events) {
    const why = e.reason === undefined ? "" : ` (${e.reason})`;
    console.log(`   #${e.seq} ${e.kernelId}: ${e.from} -> ${e.to}${why}`);
  }
  console.log(`   the listener heard ${heard}, the stream yielded ${events.length}`);
  console.log("done");
}

if (import.meta.main) await main();
