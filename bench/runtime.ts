/**
 * Runtime benchmarks: the CPU backend's host API and kernel loop, each against a baseline
 * measured in the same run.
 *
 * 1. **Request/response round trip** to a CPU kernel (the accumulator), `await k.request(...)`
 *    timed one by one: p50/p99/mean over {@linkcode REQUESTS} sequential requests after
 *    {@linkcode WARMUP}, for launch priority NORMAL and HIGH (spin budget 50 µs and 200 µs).
 *    Baseline: the same handler in a plain Worker, `{ value }` posted and `{ total }` posted
 *    back (structured clone).
 * 2. **Throughput** through one kernel, 64-byte payloads (`Samples`, sixteen f32), in windows
 *    of {@linkcode WINDOW} messages (all sent, then all received, so the queues never fill):
 *    unbatched (one `send` and one `receive` call per message) and batched (one `sendMany` per
 *    window, `receiveMany` until the window is back). Baselines: one postMessage per message, and one
 *    postMessage of a window-sized Float32Array each way. Median of {@linkcode RUNS} runs.
 * 3. **K2K hop**, worker to worker: kernel A's handler `ctx.send`s to kernel B, B's back to A,
 *    and so on for {@linkcode CHAIN} hops; the host sends the first message and receives the
 *    last. Workers' `performance.now()` clocks have different origins, so no single hop is
 *    timed across threads; instead the hop is the host-timed chain minus a zero-hop chain (host
 *    → A → host), divided by the hops: `(median T(CHAIN) − median T(0)) / CHAIN`. This is the
 *    mean one-way latency of a hop between two busy (spinning) kernels. A cross-check: each
 *    kernel stamps `performance.timeOrigin + performance.now()` (resolution ~0.25 µs at today's
 *    epoch in a f64, and the origins of two workers may differ by an unknown offset) and the
 *    receiver sums now − stamp; a ring has as many A→B as B→A hops, so the offset cancels in
 *    the mean. Baseline: the same chain relayed through the main thread (A's output →
 *    `receive` → `send` to B → ...), with the same formula. Both at launch priority NORMAL (an
 *    idle kernel spins 50 µs before parking) and LOW (it parks at once, so every hop wakes a
 *    parked kernel): with fewer free cores than spinning threads, a spinning sender holds the
 *    core its receiver needs, and the spin budget can cost more than a wake-up.
 * 4. **CPU time of idle parked kernels**: `process.cpuUsage()` (all threads of the process, in
 *    Deno and Bun alike) over {@linkcode IDLE_MS} of wall time with {@linkcode IDLE_KERNELS}
 *    launched, never-sent kernels, minus the same measurement with no kernels, taken before
 *    and after in the same run (last, once every other worker is gone); reported as CPU ms per
 *    second of wall time per kernel. The first seconds after a launch cost more (worker start,
 *    compile, collection of the start-up garbage), so measuring starts {@linkcode SETTLE_MS}
 *    after the launches.
 *
 * Everything runs on whatever cores the machine has; the load average is recorded with the
 * figures because on a shared 2-core machine it moves the tail latencies more than anything.
 * @module
 */
import { readFileSync } from "node:fs";
import { loadavg } from "node:os";
import process from "node:process";
import type { Message, MessageSchema } from "../src/core/schema.ts";
import { Backend, type KernelRuntime } from "../src/runtime/backend.ts";
import type { LatencySummary } from "../src/runtime/histogram.ts";
import type { KernelHandle } from "../src/runtime/kernel_handle.ts";
import type { KernelDefinition } from "../src/runtime/kernel.ts";
import { LaunchOptions, type LaunchPriority, priority } from "../src/runtime/launch_options.ts";
import { RingKernel } from "../src/runtime/runtime.ts";
import { isMain, percentile, rate, runtimeInfo, writeResult } from "./harness.ts";
import {
  Add,
  benchAccumulator,
  benchHopA,
  benchHopB,
  benchSummer,
  Hop,
  Samples,
  Total,
} from "./kernels.ts";
import type { PeerMode } from "./workers/runtime_peer.ts";

/** Requests before the timed ones (JIT, and the kernel's views and the handle's pump warm). */
const WARMUP = 2_000;
/** Timed sequential requests per round-trip figure. */
const REQUESTS = 10_000;
/** Messages per window of the throughput benchmark (a quarter of the default queue capacity). */
const WINDOW = 256;
/** Messages per throughput run, unbatched and batched (the baselines use the same counts). */
const TP_UNBATCHED = 64 * WINDOW;
const TP_BATCHED = 256 * WINDOW;
/** Throughput runs after a warm-up run; the median is reported. */
const RUNS = 3;
/**
 * Hops per chain, even so that the chain ends where it started (kernel A). Many short chains
 * rather than a few long ones: on a shared machine the median then shows the hop, and the
 * spread between chains shows what other processes did to it.
 */
const CHAIN = 200;
/** Timed chains per mode, warm-up chains (JIT), and zero-hop trips for the fixed cost. */
const CHAINS = 41;
const WARM_CHAINS = 10;
const ZERO_TRIPS = 400;
/** Parked kernels and the wall time the idle CPU is measured over. */
const IDLE_KERNELS = 8;
const IDLE_MS = 2_000;
/** Wait after launching the idle kernels, before measuring (see idleCpu). */
const SETTLE_MS = 3_000;

const PEER = new URL("./workers/runtime_peer.ts", import.meta.url);

/** p50/p99/mean of a latency sample, in microseconds. */
interface Latency {
  p50Us: number;
  p99Us: number;
  meanUs: number;
  samples: number;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1];
}

function summarize(samplesUs: Float64Array): Latency {
  let sum = 0;
  for (const s of samplesUs) sum += s;
  const sorted = samplesUs.slice().sort();
  return {
    p50Us: percentile(sorted, 50),
    p99Us: percentile(sorted, 99),
    meanUs: sum / samplesUs.length,
    samples: samplesUs.length,
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`runtime benchmark: ${what}`);
}

function newRuntime(): Promise<KernelRuntime> {
  return RingKernel.builder().backend(Backend.Cpu).build();
}

function launchOptions(p: LaunchPriority): LaunchOptions {
  return LaunchOptions.default().withPriority(p);
}

// ------------------------------------------------------------------ other load on the machine

/** Linux's USER_HZ: /proc/stat counts in 1/100 s on every architecture Linux runs on. */
const USER_HZ = 100;

/** Busy CPU time of the whole machine so far, in ms, or undefined off Linux. */
function machineBusyMs(): number | undefined {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0];
    // cpu user nice system idle iowait irq softirq steal ...: all but idle and iowait are busy.
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    const busy = f[0] + f[1] + f[2] + f[5] + f[6] + f[7];
    return (busy * 1000) / USER_HZ;
  } catch {
    return undefined;
  }
}

function processCpuMs(): number {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1000;
}

/**
 * Starts watching how many cores other processes keep busy; the returned function stops and
 * answers (undefined off Linux). Spinning kernels need free cores, so on a shared machine this
 * explains a figure better than the load average, which counts the benchmark itself. Coarse:
 * /proc/stat ticks are 10 ms.
 */
function watchOtherLoad(): () => number | undefined {
  const busy0 = machineBusyMs();
  const self0 = processCpuMs();
  const t0 = performance.now();
  return () => {
    const busy1 = machineBusyMs();
    if (busy0 === undefined || busy1 === undefined) return undefined;
    const other = busy1 - busy0 - (processCpuMs() - self0);
    return Math.max(0, other / (performance.now() - t0));
  };
}

// ------------------------------------------------------------------ postMessage peer

async function spawnPeer(mode: PeerMode["mode"]): Promise<Worker> {
  const w = new Worker(PEER, { type: "module" });
  await new Promise<void>((resolve, reject) => {
    w.onmessage = () => resolve();
    w.onerror = (e: ErrorEvent) => reject(new Error(e.message));
    w.postMessage({ mode } satisfies PeerMode);
  });
  return w;
}

/** Resolves with the next message the worker posts. */
function next<T>(w: Worker): Promise<T> {
  return new Promise<T>((resolve) => {
    w.onmessage = (e: MessageEvent<T>) => resolve(e.data);
  });
}

// ------------------------------------------------------------------ 1. round trip

async function kernelRoundTrip(rt: KernelRuntime, p: LaunchPriority): Promise<Latency> {
  const k = await rt.launch(benchAccumulator, launchOptions(p));
  try {
    const msg = Add.of({ value: 1 });
    for (let i = 0; i < WARMUP; i++) await k.request(msg);
    const samples = new Float64Array(REQUESTS);
    let last = 0;
    for (let i = 0; i < REQUESTS; i++) {
      const s = performance.now();
      const reply = await k.request(msg);
      samples[i] = (performance.now() - s) * 1000;
      last = reply?.total ?? NaN;
    }
    check(last === WARMUP + REQUESTS, `accumulator total ${last}`);
    return summarize(samples);
  } finally {
    await k.terminate();
  }
}

async function postRoundTrip(): Promise<Latency> {
  const peer = await spawnPeer("acc");
  try {
    const msg = { value: 1 };
    for (let i = 0; i < WARMUP; i++) {
      const p = next<{ total: number }>(peer);
      peer.postMessage(msg);
      await p;
    }
    const samples = new Float64Array(REQUESTS);
    let last = 0;
    for (let i = 0; i < REQUESTS; i++) {
      const s = performance.now();
      const p = next<{ total: number }>(peer);
      peer.postMessage(msg);
      last = (await p).total;
      samples[i] = (performance.now() - s) * 1000;
    }
    check(last === WARMUP + REQUESTS, `postMessage accumulator total ${last}`);
    return summarize(samples);
  } finally {
    peer.terminate();
  }
}

// ------------------------------------------------------------------ 2. throughput

/** The handle type `launch` returns for a definition. */
type HandleOf<D> = D extends KernelDefinition<infer I, infer O, infer S> ? KernelHandle<I, O, S>
  : never;
type SummerHandle = HandleOf<typeof benchSummer>;
type SamplesF = typeof Samples extends MessageSchema<infer F> ? F : never;
type TotalF = typeof Total extends MessageSchema<infer F> ? F : never;

function samplePayload(): Float32Array {
  return Float32Array.from({ length: 16 }, (_, i) => i + 0.5);
}

/** Sends `count` messages in windows, one `send` and one `receive` call per message. */
async function kernelUnbatched(k: SummerHandle, count: number): Promise<number> {
  const msg = Samples.of({ values: Array.from(samplePayload()) });
  const first = k.readState()!;
  let last = 0;
  const t0 = performance.now();
  for (let done = 0; done < count; done += WINDOW) {
    for (let i = 0; i < WINDOW; i++) await k.send(msg);
    for (let i = 0; i < WINDOW; i++) last = (await k.receive()).value?.count ?? NaN;
  }
  const ms = performance.now() - t0;
  check(last === first.count + count, `summer count ${last}`);
  return ms;
}

/** Sends `count` messages in windows, one `sendMany` and as many `receiveMany` as it takes. */
async function kernelBatched(k: SummerHandle, count: number): Promise<number> {
  const msg = Samples.of({ values: Array.from(samplePayload()) });
  const window: Message<SamplesF>[] = Array.from({ length: WINDOW }, () => msg);
  const first = k.readState()!;
  let last = 0;
  const t0 = performance.now();
  for (let done = 0; done < count; done += WINDOW) {
    const sent = await k.sendMany(window);
    check(sent === WINDOW, `sendMany accepted ${sent}`);
    // receiveMany waits for the first output, then takes whatever else is ready.
    for (let got = 0; got < WINDOW;) {
      const outs = await k.receiveMany(WINDOW - got);
      last = outs[outs.length - 1].value?.count ?? NaN;
      got += outs.length;
    }
  }
  const ms = performance.now() - t0;
  check(last === first.count + count, `summer count ${last} (batched)`);
  return ms;
}

/** The baselines: the same windows through postMessage, one message each or one per window. */
async function postThroughput(peer: Worker, count: number, batched: boolean): Promise<number> {
  const one = samplePayload();
  const many = new Float32Array(WINDOW * 16);
  for (let m = 0; m < WINDOW; m++) many.set(one, m * 16);
  let received = 0;
  let target = 0;
  let wake = (): void => {};
  peer.onmessage = (e: MessageEvent<Float32Array | { count: number }>) => {
    received += e.data instanceof Float32Array ? e.data.length >> 1 : 1;
    if (received >= target) wake();
  };
  const t0 = performance.now();
  for (let sent = 0; sent < count; sent += WINDOW) {
    target = sent + WINDOW;
    const arrived = new Promise<void>((r) => (wake = r));
    if (batched) peer.postMessage(many);
    else for (let i = 0; i < WINDOW; i++) peer.postMessage(one);
    await arrived;
  }
  return performance.now() - t0;
}

/** Runs `body(count)` once to warm up, then RUNS times; median messages per second. */
async function measureRate(count: number, body: (n: number) => Promise<number>): Promise<number> {
  await body(count);
  const rates: number[] = [];
  for (let r = 0; r < RUNS; r++) rates.push(count / ((await body(count)) / 1000));
  return median(rates);
}

// ------------------------------------------------------------------ 3. K2K hop

type HopHandle = HandleOf<typeof benchHopA>;

/** One chain of `hops` hops between A and B (K2K, or relayed by the host); host-timed ms. */
async function chain(a: HopHandle, b: HopHandle, hops: number, k2k: boolean): Promise<number> {
  const t0 = performance.now();
  await a.send(Hop.of({ remaining: hops, k2k: k2k ? 1 : 0, sentAt: 0 }));
  let from = a;
  if (!k2k) {
    for (let i = 0; i < hops; i++) {
      const out = await from.receive();
      const to = from === a ? b : a;
      await to.send(Hop.of(out.value!));
      from = to;
    }
  }
  const last = await from.receive();
  const ms = performance.now() - t0;
  check(from === a && last.value?.remaining === 0, "hop chain ended elsewhere");
  return ms;
}

interface HopFigures {
  /** (median T(CHAIN) − median T(0)) / CHAIN, µs. */
  perHopUs: number;
  /** The same from the 10th and 90th percentile chain: the spread between chains. */
  perHopP10Us: number;
  perHopP90Us: number;
  /** Median host-timed chain, ms. */
  chainMs: number;
  /** The kernels' own one-way stamps, mean over both directions, µs. */
  stampedOneWayUs: number;
}

function hopTotals(a: HopHandle, b: HopHandle): { hops: number; oneWayMs: number } {
  const sa = a.readState()!;
  const sb = b.readState()!;
  return { hops: sa.hops + sb.hops, oneWayMs: sa.oneWayMs + sb.oneWayMs };
}

async function hopMode(
  a: HopHandle,
  b: HopHandle,
  zeroMs: number,
  k2k: boolean,
): Promise<HopFigures> {
  for (let i = 0; i < WARM_CHAINS; i++) await chain(a, b, CHAIN, k2k);
  const before = hopTotals(a, b);
  const times: number[] = [];
  for (let i = 0; i < CHAINS; i++) times.push(await chain(a, b, CHAIN, k2k));
  const after = hopTotals(a, b);
  times.sort((x, y) => x - y);
  const perHop = (chainMs: number): number => ((chainMs - zeroMs) * 1000) / CHAIN;
  const chainMs = median(times);
  return {
    perHopUs: perHop(chainMs),
    perHopP10Us: perHop(percentile(times, 10)),
    perHopP90Us: perHop(percentile(times, 90)),
    chainMs,
    stampedOneWayUs: ((after.oneWayMs - before.oneWayMs) * 1000) / (after.hops - before.hops),
  };
}

/** The hop figures of one launch priority. */
interface HopRun {
  /** Median host → A → host trip with no hop (the fixed cost subtracted), µs. */
  zeroUs: number;
  /** A and B forwarding by `ctx.send`. */
  k2k: HopFigures;
  /** The host relaying each hop (`receive` from one, `send` to the other). */
  relay: HopFigures;
}

async function hops(rt: KernelRuntime, p: LaunchPriority): Promise<HopRun> {
  const a: HopHandle = await rt.launch(benchHopA, launchOptions(p));
  const b: HopHandle = await rt.launch(benchHopB, launchOptions(p));
  try {
    for (let i = 0; i < ZERO_TRIPS; i++) await chain(a, b, 0, true);
    const zero: number[] = [];
    for (let i = 0; i < ZERO_TRIPS; i++) zero.push(await chain(a, b, 0, true));
    const zeroMs = median(zero);
    const k2k = await hopMode(a, b, zeroMs, true);
    const relay = await hopMode(a, b, zeroMs, false);
    return { zeroUs: zeroMs * 1000, k2k, relay };
  } finally {
    await a.terminate();
    await b.terminate();
  }
}

// ------------------------------------------------------------------ 4. idle CPU

interface CpuSample {
  cpuMs: number;
  wallMs: number;
}

async function cpuOver(ms: number): Promise<CpuSample> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await sleep(ms);
  const c = process.cpuUsage(c0);
  return { cpuMs: (c.user + c.system) / 1000, wallMs: performance.now() - t0 };
}

const perSecond = (s: CpuSample): number => s.cpuMs / (s.wallMs / 1000);

async function idleCpu(): Promise<Record<string, number>> {
  // The benchmarks before leave garbage and compile jobs behind; let the process quiet down.
  await sleep(SETTLE_MS / 3);
  const emptyBefore = await cpuOver(IDLE_MS);
  const rt = await newRuntime();
  let parked: CpuSample;
  try {
    for (let i = 0; i < IDLE_KERNELS; i++) {
      await rt.launch(`bench-idle-${i}`, LaunchOptions.default());
    }
    // A launch costs CPU for a few seconds (worker start, module load and compile, garbage
    // collection of the start-up): measured, it decays to the steady state within about 3 s.
    await sleep(SETTLE_MS);
    parked = await cpuOver(IDLE_MS);
  } finally {
    await rt.shutdown();
  }
  await sleep(300); // worker teardown is not part of the empty baseline
  const emptyAfter = await cpuOver(IDLE_MS);
  const emptyMsPerS = (perSecond(emptyBefore) + perSecond(emptyAfter)) / 2;
  const parkedMsPerS = perSecond(parked);
  return {
    kernels: IDLE_KERNELS,
    wallMs: IDLE_MS,
    settleMs: SETTLE_MS,
    emptyProcessCpuMsPerS: emptyMsPerS,
    emptyBeforeCpuMsPerS: perSecond(emptyBefore),
    emptyAfterCpuMsPerS: perSecond(emptyAfter),
    parkedProcessCpuMsPerS: parkedMsPerS,
    cpuMsPerSPerIdleKernel: (parkedMsPerS - emptyMsPerS) / IDLE_KERNELS,
  };
}

// ------------------------------------------------------------------ driver

const us = (x: number): string => `${x.toFixed(1)} µs`;
const ratio = (x: number): string => `${x.toFixed(2)}x`;

/** Runs the runtime benchmarks, prints a table and writes `bench/results/runtime-<runtime>.json`. */
export async function run(): Promise<Record<string, unknown>> {
  const info = runtimeInfo();
  const loadBefore = loadavg();

  const rt = await newRuntime();
  let rtNormal: Latency, rtHigh: Latency, rtPost: Latency;
  let tpUnbatched: number, tpBatched: number, pmUnbatched: number, pmBatched: number;
  let handlerNs: LatencySummary;
  let hop: HopRun, hopLow: HopRun;
  const otherCores: Record<string, number | undefined> = {};
  try {
    let watch = watchOtherLoad();
    rtNormal = await kernelRoundTrip(rt, priority.NORMAL);
    rtHigh = await kernelRoundTrip(rt, priority.HIGH);
    rtPost = await postRoundTrip();
    otherCores.roundTrip = watch();
    watch = watchOtherLoad();

    const summer = await rt.launch(benchSummer, LaunchOptions.default());
    try {
      tpUnbatched = await measureRate(TP_UNBATCHED, (n) => kernelUnbatched(summer, n));
      tpBatched = await measureRate(TP_BATCHED, (n) => kernelBatched(summer, n));
      // The kernel's own time per message (handler and reply encoding, timed in the worker):
      // the ceiling of the kernel's throughput, whatever the host does.
      handlerNs = summer.metrics().latency;
    } finally {
      await summer.terminate();
    }
    const peer = await spawnPeer("sum");
    try {
      pmUnbatched = await measureRate(TP_UNBATCHED, (n) => postThroughput(peer, n, false));
      peer.postMessage({ mode: "sum-batch" } satisfies PeerMode);
      await next(peer);
      pmBatched = await measureRate(TP_BATCHED, (n) => postThroughput(peer, n, true));
    } finally {
      peer.terminate();
    }

    otherCores.throughput = watch();
    watch = watchOtherLoad();
    hop = await hops(rt, priority.NORMAL);
    hopLow = await hops(rt, priority.LOW);
    otherCores.k2kHop = watch();
  } finally {
    await rt.shutdown();
  }
  // Last, with every other worker gone, so the empty baseline is really empty.
  const watch = watchOtherLoad();
  const idle = await idleCpu();
  otherCores.idleCpu = watch();

  const figures = {
    loadAverageBefore: loadBefore,
    loadAverageAfter: loadavg(),
    // Cores kept busy by other processes during each section (Linux /proc/stat; null elsewhere).
    otherProcessesBusyCores: Object.fromEntries(
      Object.entries(otherCores).map(([k, v]) => [k, v ?? null]),
    ),
    roundTrip: {
      warmup: WARMUP,
      requests: REQUESTS,
      kernel: "bench-accumulator (f32 += value, reply total)",
      normal: rtNormal,
      high: rtHigh,
      postMessage: rtPost,
      normalP50Speedup: rtPost.p50Us / rtNormal.p50Us,
      highP50Speedup: rtPost.p50Us / rtHigh.p50Us,
      normalMeanSpeedup: rtPost.meanUs / rtNormal.meanUs,
      highMeanSpeedup: rtPost.meanUs / rtHigh.meanUs,
    },
    throughput: {
      payloadBytes: Samples.size,
      window: WINDOW,
      runs: RUNS,
      batchedVia: "sendMany + receiveMany per window",
      unbatchedMsgsPerSec: tpUnbatched,
      batchedMsgsPerSec: tpBatched,
      postMessageUnbatchedMsgsPerSec: pmUnbatched,
      postMessageBatchedMsgsPerSec: pmBatched,
      unbatchedRatio: tpUnbatched / pmUnbatched,
      batchedRatio: tpBatched / pmBatched,
      batchingGain: tpBatched / tpUnbatched,
      kernelHandlerP50Ns: handlerNs.p50Ns,
      kernelHandlerMeanNs: handlerNs.meanNs,
    },
    k2kHop: {
      hopsPerChain: CHAIN,
      chains: CHAINS,
      method: "(median host-timed chain of N hops − median zero-hop trip) / N; " +
        "stampedOneWayUs: kernels' timeOrigin+now stamps, mean over both ring directions",
      normal: { ...hop, speedup: hop.relay.perHopUs / hop.k2k.perHopUs },
      low: { ...hopLow, speedup: hopLow.relay.perHopUs / hopLow.k2k.perHopUs },
    },
    idleCpu: idle,
  };

  console.log(
    `Runtime, CPU backend (${info.runtime} ${info.version}, ${info.cores} cores, ${info.cpu}); ` +
      `load average ${loadBefore.map((l) => l.toFixed(2)).join(" ")}`,
  );
  const latencyRow = (l: Latency, base?: Latency) => ({
    p50: us(l.p50Us),
    p99: us(l.p99Us),
    mean: us(l.meanUs),
    "postMessage ÷ kernel, p50": base === undefined ? "" : ratio(base.p50Us / l.p50Us),
  });
  console.table({
    "round trip, launch NORMAL": latencyRow(rtNormal, rtPost),
    "round trip, launch HIGH": latencyRow(rtHigh, rtPost),
    "round trip, postMessage worker (baseline)": latencyRow(rtPost),
  });
  const hopRow = (h: HopRun) => ({
    kernel: `${us(h.k2k.perHopUs)} (p10–p90 ${h.k2k.perHopP10Us.toFixed(1)}–${
      h.k2k.perHopP90Us.toFixed(1)
    })`,
    baseline: `${us(h.relay.perHopUs)} (host relay)`,
    ratio: ratio(h.relay.perHopUs / h.k2k.perHopUs),
  });
  console.table({
    [`throughput, unbatched (window ${WINDOW})`]: {
      kernel: rate(tpUnbatched),
      baseline: `${rate(pmUnbatched)} (postMessage)`,
      ratio: ratio(tpUnbatched / pmUnbatched),
    },
    [`throughput, sendMany/receiveMany (window ${WINDOW})`]: {
      kernel: rate(tpBatched),
      baseline: `${rate(pmBatched)} (postMessage)`,
      ratio: ratio(tpBatched / pmBatched),
    },
    "K2K hop one way, launch NORMAL": hopRow(hop),
    "K2K hop one way, launch LOW": hopRow(hopLow),
  });
  console.log(
    `K2K hop cross-check, kernels' own stamps: NORMAL ${us(hop.k2k.stampedOneWayUs)} K2K, ` +
      `${us(hop.relay.stampedOneWayUs)} relayed; LOW ${us(hopLow.k2k.stampedOneWayUs)} K2K, ` +
      `${us(hopLow.relay.stampedOneWayUs)} relayed`,
  );
  const busy = Object.entries(otherCores)
    .map(([k, v]) => `${k} ${v === undefined ? "?" : v.toFixed(2)}`)
    .join(", ");
  console.log(
    `kernel's own time per message (handler + reply encoding): p50 ${
      (handlerNs.p50Ns / 1000).toFixed(2)
    } µs, mean ${(handlerNs.meanNs / 1000).toFixed(2)} µs`,
  );
  console.log(`cores kept busy by other processes: ${busy}`);
  console.log(
    `idle parked kernels: ${idle.cpuMsPerSPerIdleKernel.toFixed(3)} CPU ms/s per kernel ` +
      `(${IDLE_KERNELS} kernels: ${idle.parkedProcessCpuMsPerS.toFixed(2)} ms/s; ` +
      `empty process: ${idle.emptyProcessCpuMsPerS.toFixed(2)} ms/s)`,
  );
  writeResult("runtime", figures);
  return figures;
}

if (isMain(import.meta)) await run();
