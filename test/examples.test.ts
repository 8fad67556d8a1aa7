// Runs each example as a user would (`deno run -A …` under Deno, `bun …` under Bun) and checks
// what it prints. An example must also exit by itself: a kernel, worker or timer left behind
// keeps the process alive, and the run fails on the timeout instead of passing late.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { execPath } from "node:process";
import { fileURLToPath } from "node:url";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { webGpuSkip } from "./webgpu/probe.ts";

const isDeno = "Deno" in globalThis;
const root = fileURLToPath(new URL("../", import.meta.url));
const runtimeName = isDeno ? "Deno" : "Bun";
/** Generous for a 2-core shared machine under a parallel test run; a clean example takes ~1 s. */
const EXIT_TIMEOUT_MS = 60_000;

function runExample(file: string): string {
  // Files outside the repository (the README blocks) need the project's config for its imports.
  const args = isDeno ? ["run", "-A", "--config", join(root, "deno.json"), file] : [file];
  const r = spawnSync(execPath, args, { cwd: root, encoding: "utf8", timeout: EXIT_TIMEOUT_MS });
  assert.ok(
    r.signal === null,
    `${file} did not exit by itself within ${EXIT_TIMEOUT_MS} ms (killed by ${r.signal}):\n` +
      `${r.stdout}\n${r.stderr}`,
  );
  assert.equal(r.status, 0, `${file} exited with ${r.status}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/**
 * Asserts that `out` contains the expected lines in this order (other lines may come between):
 * a string must equal a whole line, a RegExp must match one (for lines with timings in them).
 */
function assertLines(out: string, expected: readonly (string | RegExp)[]): void {
  const lines = out.split("\n").map((l) => l.trimEnd());
  let at = 0;
  for (const want of expected) {
    const found = lines.findIndex((l, i) =>
      i >= at && (typeof want === "string" ? l === want : want.test(l))
    );
    assert.ok(found >= 0, `expected line ${want} (in order) in:\n${out}`);
    at = found + 1;
  }
}

test("examples/core_tour.ts: the core tour runs and every step reports correct results", () => {
  const out = runExample("examples/core_tour.ts");
  assert.match(out, /sent < received: true/);
  assert.match(out, /"pos":\{"x":10,"y":2,"z":3\}/);
  assert.match(out, /static_assert\(offsetof\(Particle, alive\) == 26/);
  assert.match(out, /fn Particle_get_alive\(v: Particle\) -> bool/);
  assert.match(
    out,
    /80 bytes on the wire \(64-byte header\): {"sensor":3,"seq":1,"celsius":21.5,"ok":true}/,
  );
  assert.match(out, /after a bit flip: DecodeError E_DECODE_CHECKSUM at byte 56/);
  assert.match(out, /received 40000 of 40000, out of order per producer: 0/);
  assert.match(out, /enqueued 40000, dequeued 40000/);
  assert.match(out, /delivered to 2 subscriptions/);
  assert.match(out, /dashboard <- sensors\/lab\/temperature = 21.0 \(retained\)/);
  assert.match(out, /logger has 3 pending/);
  assert.match(out, /y\[0\] = 7, dot\(x, y\) = 14336/);
  assert.match(out, /tour done/);
});

test("examples/demo.ts (deno task demo): the runtime tour on the CPU backend", () => {
  assertLines(runExample("examples/demo.ts"), [
    `RingKernel runtime tour on ${runtimeName}`,
    "1. backend: cpu",
    "2. launched accumulator: active",
    "3. request(2) -> total 2",
    '   100 concurrent requests -> highest total 102, state {"total":102}',
    "4. doubler -> accumulator: delivered true",
    "   accumulator output after the K2K message: total 144",
    "   host broker -> ghost: NotFound",
    "5. pub/sub",
    "   dashboard <- kernels/accumulator/total: 154",
    "   dashboard <- kernels/accumulator/total: 174",
    "6. telemetry",
    "   processed 105, errors 0, kernels active 2, k2k delivered 1, notFound 1",
    /^ {3}accumulator handler latency p50 [\d.]+ µs, p99 [\d.]+ µs over 104 messages$/,
    '   ringkernel_messages_processed_total{kernel="accumulator"} 104',
    '   ringkernel_messages_processed_total{kernel="doubler"} 1',
    "   state changes during shutdown:",
    "   accumulator: active -> terminating -> terminated",
    "   doubler: active -> terminating -> terminated",
    "tour done",
  ]);
});

test("examples/wgpu_hello.ts: a stateful kernel on WebGPU, or a clear line without an adapter", async () => {
  // The same explicit check as the WebGPU tests: lavapipe under Deno here, none under Bun.
  const noAdapter = await webGpuSkip("test/examples.test.ts (wgpu_hello)");
  const out = runExample("examples/wgpu_hello.ts");
  if (noAdapter) {
    assertLines(out, [
      `WebGPU hello on ${runtimeName}`,
      /^no WebGPU adapter here, nothing to run \(backend webgpu is unavailable: no WebGPU adapter: /,
    ]);
    return;
  }
  assertLines(out, [
    `WebGPU hello on ${runtimeName}`,
    /^adapter: .+ \(via (navigator|bun-webgpu|dawn)\)$/,
    "deposit 2 -> total 2, deposits 1",
    "deposit 3.5 -> total 5.5, deposits 2",
    /^100 concurrent deposits -> highest count 102 in \d+ rounds?$/,
    'state {"total":105.5,"deposits":102}',
    "shut down: 102 deposits processed",
  ]);
});

test("examples/basic_hello_kernel.ts: launch, request, state, shutdown", () => {
  assertLines(runExample("examples/basic_hello_kernel.ts"), [
    "backend: cpu",
    "launched greeter: active",
    "hello from 7: greeting #1",
    "hello from 8: greeting #2",
    "hello from 9: greeting #3",
    'state: {"greeted":3}',
    "after shutdown greeter is terminated",
  ]);
});

test("examples/kernel_states.ts: lifecycle transitions and supervision", () => {
  const bad = "(RangeError: negative deposit -1)";
  assertLines(runExample("examples/kernel_states.ts"), [
    "1. lifecycle",
    "   account: launched",
    "   account: active, balance 105",
    "   activate twice: InvalidStateError E_INVALID_STATE",
    "   account: deactivated",
    "   while deactivated: 2 messages wait in the input queue",
    "   account: active, outputs 105, 115, 135",
    "2. supervision",
    `   resume: HandlerError E_HANDLER_FAILED ${bad}`,
    '   account: active, state kept: {"total":135}',
    `   restart: HandlerError E_HANDLER_FAILED ${bad}`,
    '   resettable: active, state reset: {"total":100}, restarts 1',
    `   stop: HandlerError E_HANDLER_FAILED ${bad}`,
    "   strict: failed",
    "   failure event: strict (stop)",
    "   send to the failed kernel: KernelFailedError E_KERNEL_FAILED",
    "3. termination",
    "   account: terminated after 5 messages",
    "   send after terminate: InvalidStateError E_INVALID_STATE",
    '   relaunched account: active, state {"total":100}',
    // Retired kernels stay counted in their final state: the terminated account, the failed strict.
    /^ {3}states now: \{.*"active":2,.*"terminated":1,"failed":1\}$/,
    "done",
  ]);
});

test("examples/request_response.ts: correlation, timeouts, late replies, errors, priority", () => {
  assertLines(runExample("examples/request_response.ts"), [
    "1. 200 concurrent requests, every reply matched its request: true",
    "2. slow request with timeoutMs 50: TimeoutError E_TIMEOUT",
    "   the next request gets its own reply: x 4, square 16",
    "   late replies dropped: 1",
    "3. HandlerError E_HANDLER_FAILED: RangeError: cannot square -2 today",
    "   still serving: 5² = 25",
    "4. handled after the busy job: urgent #1, normal #2 #3 #4",
    /^5\. requests: 2208, round trip p50 [\d.]+ µs, p99 [\d.]+ µs$/,
    "done",
  ]);
});

test("examples/pub_sub.ts: kernel outputs on topics, wildcards, retained, into a kernel", () => {
  assertLines(runExample("examples/pub_sub.ts"), [
    "dashboard <- home/kitchen/temperature: 21.5 °C",
    "dashboard <- home/roof/temperature: 34 °C",
    "dashboard <- home/lab/temperature: 22 °C",
    "dashboard <- home/roof/temperature: 35.5 °C",
    "dashboard <- home/kitchen/temperature: 31 °C",
    "kitchen-panel <- home/kitchen/temperature: 21.5 °C",
    "kitchen-panel <- home/kitchen/temperature: 31 °C",
    "kitchen-panel <- home/kitchen/alarm: 31 °C",
    "pager <- home/roof/alarm: 34 °C",
    "pager <- home/roof/alarm: 35.5 °C",
    "pager <- home/kitchen/alarm: 31 °C",
    "alarm-log kernel: 3 alarms, hottest 35.5 °C",
    "auditor <- home/roof/alarm: 35.5 °C (retained)",
    "auditor <- home/kitchen/alarm: 31 °C (retained)",
    "topics with a retained alarm: 2",
    "done",
  ]);
});

test("examples/kernel_to_kernel.ts: a K2K pipeline and its receipts", () => {
  assertLines(runExample("examples/kernel_to_kernel.ts"), [
    "1. pipeline validate -> scale -> total",
    "   total: 4 values, sum 12, last one sent by scale",
    "   validate: delivered 4, queueFull 0, notFound 0, rejected 2",
    "   scale: delivered 4, queueFull 0, notFound 0, rejected 0",
    "2. host broker receipts",
    "   routes: total, scale, validate",
    "   host -> total: Delivered",
    "   host -> ghost: NotFound",
    "3. a full destination: QueueFull (refused and counted, never lost silently)",
    "   scale: delivered 8, queueFull 2, notFound 0, rejected 0",
    "   total after reactivation: 9 values",
    "4. a terminated destination: NotFound",
    "   scale: delivered 8, queueFull 2, notFound 1, rejected 0",
    "runtime K2K totals: sent 24, delivered 20, queueFull 2, notFound 2",
    "done",
  ]);
});

test("examples/batch_processor.ts: sendMany batches, ctx.simd math equal to plain JS", () => {
  assertLines(runExample("examples/batch_processor.ts"), [
    "1. 8 batches of 256 frames (256 f32 each) through frame-stats",
    "   results checked against plain JS: 2048, mismatches: 0",
    "   frame 0: sum -8, energy 1365.5",
    /^ {3}throughput: \d+ frames\/s$/,
    "2. PartialSendError E_QUEUE_FULL: accepted 512, rejected 88",
    "   after activate and a retry of the rest: 600 of 600 handled",
    "processed by the kernel: 2648",
    "done",
  ]);
});

test("examples/telemetry.ts: metrics, latency, Prometheus text, the state-change stream", () => {
  const t = String.raw`\d+(\.\d+)? µs`;
  assertLines(runExample("examples/telemetry.ts"), [
    "1. kernel metrics",
    "   meter: active, processed 2001, errors 1, input 0/1024, output 0/1024",
    new RegExp(String.raw`^ {3}handler latency: p50 ${t}, p99 ${t} \(2001 messages\)$`),
    new RegExp(String.raw`^ {3}request round trip: p50 ${t}, p99 ${t} \(2001 requests\)$`),
    "2. runtime metrics",
    "   processed 2002, errors 2 (the failed kernel's included), kernels active 1",
    /^3\. metricsText\(\): \d+ lines, among them$/,
    '   ringkernel_kernel_state{kernel="meter",state="active"} 1',
    "   # TYPE ringkernel_messages_processed_total counter",
    '   ringkernel_messages_processed_total{kernel="meter"} 2001',
    '   ringkernel_errors_total{kernel="meter"} 1',
    /^ {3}ringkernel_latency_seconds\{kernel="meter",quantile="0\.99"\} [\d.e-]+$/,
    '   ringkernel_latency_seconds_count{kernel="meter"} 2001',
    "4. state changes",
    "   #1 meter: created -> launched",
    "   #2 meter: launched -> active",
    "   #3 meter: active -> deactivated",
    "   #4 meter: deactivated -> active",
    "   #5 fragile: created -> launched",
    "   #6 fragile: launched -> active",
    /^ {3}#7 fragile: active -> failed \(.*supervision stopped it: Error: work item 1 failed\)$/,
    "   #8 meter: active -> terminating",
    "   #9 meter: terminating -> terminated",
    "   the listener heard 9, the stream yielded 9",
    "done",
  ]);
});

test("README.md: every TypeScript block runs as printed", () => {
  const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
  const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
  assert.ok(blocks.length >= 3, "README has its example blocks");
  const modUrl = new URL("../mod.ts", import.meta.url).href;
  const dir = mkdtempSync(join(tmpdir(), "rk-readme-"));
  try {
    const outputs = blocks.map((code, i) => {
      const file = join(dir, `block${i}.ts`);
      writeFileSync(
        file,
        code.replaceAll("jsr:@ringkernel/core", modUrl).replaceAll("./mod.ts", modUrl),
      );
      return runExample(file);
    });
    assert.match(outputs[0], /total: 5/);
    const api = outputs.find((o) => o.includes("launched")) ?? "";
    assert.match(api, /value: 10/);
    assert.match(api, /value: 11/);
    assert.match(api, /^true$/m);
    assert.match(api, /^4 \{/m);
    assert.match(api, /total: 12/);
    assert.match(api, /ringkernel_kernels\{state=\\?"active\\?"\} 2/);
    assert.match(
      api,
      /doubler:launched → doubler:active → doubler:terminating → doubler:terminated/,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
