// Where a request's round trip goes on the GPU: sequential requests to a traced persistent
// kernel (CudaRuntimeOptions.trace), the GPU's stage times per batch (%globaltimer) and the
// host's round trip, p50 of each. The gap between one batch's publication and the next batch's
// poll is the host's part plus the time for a new message to be seen.
//
//   deno run -A bench/cuda_trace.ts        bun bench/cuda_trace.ts
import process from "node:process";
import { CudaRuntime } from "../src/backends/cuda/cuda_runtime.ts";
import { LaunchOptions } from "../src/runtime/launch_options.ts";
import { AddValue, dslAccumulator } from "../test/dsl/corpus.ts";
import { percentile } from "./harness.ts";

const p50 = (xs: number[]): number => {
  const s = Float64Array.from(xs).sort();
  return Number(percentile(s, 50).toFixed(2));
};

let rt: CudaRuntime;
try {
  rt = await CudaRuntime.create({ trace: true, cache: false });
} catch (e) {
  console.log(`skipped: no CUDA device (${(e as Error).message.split("\n")[0]})`);
  process.exit(0);
}
const n = Number(process.env.RINGKERNEL_TRACE_N ?? 3000);
// RINGKERNEL_TRACE_CAPACITY: slots per queue (fewer slots, fewer pages a round trip touches).
const capacity = Number(process.env.RINGKERNEL_TRACE_CAPACITY ?? 0);
const options = capacity > 0
  ? LaunchOptions.default().withQueueCapacity(capacity)
  : LaunchOptions.default();
const k = await rt.launch(dslAccumulator, options);
for (let i = 0; i < 500; i++) await k.request(AddValue.of({ value: 1 }));
const host: number[] = [];
for (let i = 0; i < n; i++) {
  const t0 = performance.now();
  await k.request(AddValue.of({ value: 1 }));
  host.push((performance.now() - t0) * 1000);
}
const t = rt.trace(dslAccumulator).slice(-n);
const us = (a: number, b: number): number => (b - a) / 1000;
const stages = {
  "poll → lane ready": t.map((r) => us(r.poll, r.ready)),
  "ready → slots sealed (no fence)": t.map((r) => us(r.ready, r.acquired)),
  "sealed → envelope checked": t.map((r) => us(r.acquired, r.envelope)),
  "envelope → handled + reply written": t.map((r) => us(r.envelope, r.handled)),
  "GPU: poll → reply written": t.map((r) => us(r.poll, r.handled)),
  "handled → state, histogram written": t.map((r) => us(r.handled, r.bookkept)),
  "release fence": t.map((r) => us(r.bookkept, r.fenced)),
  "counters, tail, heads stored": t.map((r) => us(r.fenced, r.published)),
  "GPU total (poll → published)": t.map((r) => us(r.poll, r.published)),
  "published → next batch's poll": t.slice(1).map((r, i) => us(t[i].published, r.poll)),
};
console.log(
  `${rt.device.name}: ${t.length} batches traced, ${options.inputCapacity}/${options.outputCapacity} slots`,
);
for (const [name, xs] of Object.entries(stages)) console.log(`${name.padEnd(36)} ${p50(xs)} µs`);
console.log(`${"host round trip".padEnd(36)} ${p50(host)} µs`);
await rt.shutdown();
