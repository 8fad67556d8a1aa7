// WebGPU host round trip latency: write 16 bytes, dispatch a tiny compute kernel (out = in + 1),
// copy the result into a MAP_READ staging buffer, map it, read it back, check it. Measured for
// every WebGPU implementation this runtime can load (navigator.gpu, the bun-webgpu package, our
// Dawn binding in ffi/dawn.ts) and every completion strategy each offers; the baseline in the same
// run is the plain path (submit, await mapAsync).
//
// Strategies:
//   mapAsync            submit, await staging.mapAsync (baseline)
//   workDone+mapAsync   submit, await queue.onSubmittedWorkDone, then mapAsync
//   ring-<K>            K requests in flight on K slots (own buffers each); latency per request
//                       from its submit to its read, and the throughput
//   batch-<N>           N requests per submission (one write, one dispatch, one copy, one map);
//                       latency of the submission and the amortized cost per request
//   mapSync             (Dawn binding only) map blocking in wgpuInstanceWaitAny
//   workDoneSync+mapSync (Dawn binding only) blocking work-done wait, then blocking map
//
// Writes bench/results/webgpu-latency-<device>-<runtime>.json (or into $RINGKERNEL_RESULTS_DIR).
// RINGKERNEL_BENCH_QUICK=1 (or --quick) runs fewer iterations; RINGKERNEL_WEBGPU_IMPLS=a,b picks
// implementations (default: all three, each skipped with its reason when absent).
//
//   deno run -A bench/webgpu_latency.ts        bun bench/webgpu_latency.ts

import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { DawnBuffer, DawnQueue } from "../ffi/dawn.ts";
import {
  requestWebGpuDevice,
  type WebGpuDeviceHandle,
  type WebGpuImplementation,
} from "../src/backends/webgpu/adapter.ts";
import { percentile, type RuntimeInfo, runtimeInfo } from "./harness.ts";

// GPUBufferUsage / GPUMapMode values (Bun has no such globals).
const MAP_READ = 0x1;
const COPY_SRC = 0x4;
const COPY_DST = 0x8;
const UNIFORM = 0x40;
const STORAGE = 0x80;
const MAP_MODE_READ = 0x1;

/** `GPUBufferUsage` bits used by the WebGPU benchmarks. */
export const USAGE = { MAP_READ, COPY_SRC, COPY_DST, UNIFORM, STORAGE } as const;

const ADD_ONE = `
@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  if (g.x < arrayLength(&dst)) { dst[g.x] = src[g.x] + 1u; }
}`;

const WORDS = 4; // one request: 16 bytes

/** Whether the benchmarks run their short variant (flag `--quick` or RINGKERNEL_BENCH_QUICK=1). */
export function quickMode(): boolean {
  return process.argv.includes("--quick") || process.env.RINGKERNEL_BENCH_QUICK === "1";
}

/** The implementations to measure: `RINGKERNEL_WEBGPU_IMPLS` or all three. */
export function implementationsToMeasure(): WebGpuImplementation[] {
  const all: WebGpuImplementation[] = ["navigator", "bun-webgpu", "dawn"];
  const pick = process.env.RINGKERNEL_WEBGPU_IMPLS;
  if (pick === undefined || pick === "") return all;
  return pick.split(",").map((s) => s.trim()).filter((s): s is WebGpuImplementation =>
    (all as string[]).includes(s)
  );
}

/** A device of one implementation, or why there is none. */
export type Acquired = { handle: WebGpuDeviceHandle; skip?: undefined } | {
  handle?: undefined;
  skip: string;
};

/** Requests a device of `implementation`, turning failure into a skip reason. */
export async function acquire(implementation: WebGpuImplementation): Promise<Acquired> {
  try {
    return { handle: await requestWebGpuDevice({ implementation }) };
  } catch (err) {
    return { skip: err instanceof Error ? err.message : String(err) };
  }
}

/** A file-name-safe slug of a device name (`NVIDIA H100 80GB HBM3` → `nvidia-h100-80gb-hbm3`). */
export function deviceSlug(name: string): string {
  const s = name.toLowerCase().replace(/\(.*?\)/g, "").replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "");
  return (s === "" ? "unknown" : s).slice(0, 40);
}

/** Writes a result file into bench/results (or $RINGKERNEL_RESULTS_DIR); returns its path. */
export function writeBenchJson(file: string, body: Record<string, unknown>): string {
  const dir = process.env.RINGKERNEL_RESULTS_DIR ?? new URL("./results/", import.meta.url).pathname;
  mkdirSync(dir, { recursive: true });
  const path = join(dir, file);
  writeFileSync(path, JSON.stringify(body, null, 2) + "\n");
  return path;
}

/** Compiles a WGSL compute module, throwing with the compiler's errors. */
export async function computePipeline(
  device: GPUDevice,
  code: string,
  label: string,
): Promise<GPUComputePipeline> {
  const module = device.createShaderModule({ code, label });
  const info = await module.getCompilationInfo();
  const errors = info.messages.filter((m) => m.type === "error");
  if (errors.length > 0) {
    throw new Error(
      `${label}: ${errors.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`).join("; ")}`,
    );
  }
  return await device.createComputePipelineAsync({
    layout: "auto",
    compute: { module, entryPoint: "main" },
    label,
  });
}

// ---------------------------------------------------------------------------------------------
// One slot: the buffers and bind group of one request (or one batch of n requests)

interface Slot {
  readonly n: number;
  readonly src: GPUBuffer;
  readonly dst: GPUBuffer;
  readonly staging: GPUBuffer;
  readonly group: GPUBindGroup;
  readonly input: Uint32Array<ArrayBuffer>;
}

function makeSlot(device: GPUDevice, pipeline: GPUComputePipeline, n: number): Slot {
  const bytes = n * WORDS * 4;
  const src = device.createBuffer({ size: bytes, usage: STORAGE | COPY_DST });
  const dst = device.createBuffer({ size: bytes, usage: STORAGE | COPY_SRC });
  const staging = device.createBuffer({ size: bytes, usage: MAP_READ | COPY_DST });
  const group = device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [{ binding: 0, resource: { buffer: src } }, { binding: 1, resource: { buffer: dst } }],
  });
  return { n, src, dst, staging, group, input: new Uint32Array(n * WORDS) };
}

function destroySlot(s: Slot): void {
  s.src.destroy();
  s.dst.destroy();
  s.staging.destroy();
}

let sequence = 1;

/** Writes fresh input, encodes dispatch + copy, submits. */
function submitSlot(device: GPUDevice, pipeline: GPUComputePipeline, s: Slot): number {
  const first = sequence;
  sequence += s.input.length;
  for (let i = 0; i < s.input.length; i++) s.input[i] = first + i;
  device.queue.writeBuffer(s.src, 0, s.input);
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, s.group);
  pass.dispatchWorkgroups(Math.ceil(s.input.length / 64));
  pass.end();
  enc.copyBufferToBuffer(s.dst, 0, s.staging, 0, s.input.byteLength);
  device.queue.submit([enc.finish()]);
  return first;
}

/** Reads the mapped staging buffer, checks every word, unmaps. */
function readSlot(s: Slot, first: number): void {
  const out = new Uint32Array(s.staging.getMappedRange(0, s.input.byteLength));
  for (let i = 0; i < out.length; i++) {
    if (out[i] !== ((first + i + 1) >>> 0)) {
      s.staging.unmap();
      throw new Error(`wrong result at word ${i}: ${out[i]}, expected ${first + i + 1}`);
    }
  }
  s.staging.unmap();
}

// ---------------------------------------------------------------------------------------------
// Strategies

/** Latency figures of one strategy, in microseconds. */
export interface StrategyResult {
  /** Strategy name. */
  readonly strategy: string;
  /** Requests per submission. */
  readonly requestsPerSubmission: number;
  /** Requests in flight at once. */
  readonly inFlight: number;
  /** Round trips measured. */
  readonly samples: number;
  /** Median latency of one round trip (submission). */
  readonly p50Us: number;
  /** 99th percentile. */
  readonly p99Us: number;
  /** Mean. */
  readonly meanUs: number;
  /** Wall time per request (amortized over batch and ring). */
  readonly perRequestUs: number;
  /** Requests per second. */
  readonly requestsPerSecond: number;
  /** p50 divided by the baseline's p50 (below 1 is faster). */
  ratioToBaseline?: number;
}

type Completion = (device: GPUDevice, s: Slot) => Promise<void> | void;

const mapAsync: Completion = async (_d, s) => {
  await s.staging.mapAsync(MAP_MODE_READ);
};
const workDoneThenMap: Completion = async (d, s) => {
  await d.queue.onSubmittedWorkDone();
  await s.staging.mapAsync(MAP_MODE_READ);
};
const mapSync: Completion = (_d, s) => {
  (s.staging as unknown as DawnBuffer).mapSync(MAP_MODE_READ);
};
const workDoneSyncThenMapSync: Completion = (d, s) => {
  (d.queue as unknown as DawnQueue).waitForSubmittedWork();
  (s.staging as unknown as DawnBuffer).mapSync(MAP_MODE_READ);
};

function summarize(
  strategy: string,
  perSubmission: number,
  inFlight: number,
  lat: number[],
  wallMs: number,
): StrategyResult {
  const sorted = Float64Array.from(lat).sort();
  const requests = lat.length * perSubmission;
  const mean = lat.reduce((a, b) => a + b, 0) / Math.max(1, lat.length);
  return {
    strategy,
    requestsPerSubmission: perSubmission,
    inFlight,
    samples: lat.length,
    p50Us: round(percentile(sorted, 50) * 1000),
    p99Us: round(percentile(sorted, 99) * 1000),
    meanUs: round(mean * 1000),
    perRequestUs: round((wallMs * 1000) / requests),
    requestsPerSecond: Math.round(requests / (wallMs / 1000)),
  };
}

function round(x: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

interface Budget {
  readonly iterations: number;
  readonly seconds: number;
  readonly warmup: number;
}

/** Sequential round trips, one request per submission (or `n` per batch). */
async function sequential(
  device: GPUDevice,
  pipeline: GPUComputePipeline,
  name: string,
  n: number,
  complete: Completion,
  budget: Budget,
): Promise<StrategyResult> {
  const slot = makeSlot(device, pipeline, n);
  try {
    for (let i = 0; i < budget.warmup; i++) {
      const first = submitSlot(device, pipeline, slot);
      await complete(device, slot);
      readSlot(slot, first);
    }
    const lat: number[] = [];
    const start = performance.now();
    const deadline = start + budget.seconds * 1000;
    while (lat.length < budget.iterations && (lat.length < 20 || performance.now() < deadline)) {
      const t0 = performance.now();
      const first = submitSlot(device, pipeline, slot);
      await complete(device, slot);
      readSlot(slot, first);
      lat.push(performance.now() - t0);
    }
    return summarize(name, n, 1, lat, performance.now() - start);
  } finally {
    destroySlot(slot);
  }
}

/** K requests kept in flight on K slots; each awaited in submission order. */
async function ring(
  device: GPUDevice,
  pipeline: GPUComputePipeline,
  k: number,
  budget: Budget,
): Promise<StrategyResult> {
  const slots = Array.from({ length: k }, () => makeSlot(device, pipeline, 1));
  try {
    const inflight: { slot: Slot; first: number; t0: number; mapped: Promise<void> }[] = [];
    const launch = (slot: Slot) => {
      const t0 = performance.now();
      const first = submitSlot(device, pipeline, slot);
      inflight.push({ slot, first, t0, mapped: slot.staging.mapAsync(MAP_MODE_READ) });
    };
    const lat: number[] = [];
    const total = budget.iterations + budget.warmup;
    let started = 0;
    let start = performance.now();
    const deadline = () => start + budget.seconds * 1000;
    for (const s of slots) {
      launch(s);
      started++;
    }
    let done = 0;
    while (inflight.length > 0) {
      const head = inflight.shift()!;
      await head.mapped;
      readSlot(head.slot, head.first);
      done++;
      if (done === budget.warmup) start = performance.now();
      else if (done > budget.warmup) lat.push(performance.now() - head.t0);
      const more = started < total && (lat.length < 20 || performance.now() < deadline());
      if (more) {
        launch(head.slot);
        started++;
      }
    }
    return summarize(`ring-${k}`, 1, k, lat, performance.now() - start);
  } finally {
    slots.forEach(destroySlot);
  }
}

/** Every strategy this implementation offers, baseline first. */
export async function measureLatency(
  handle: WebGpuDeviceHandle,
  quick: boolean,
): Promise<StrategyResult[]> {
  const { device } = handle;
  const pipeline = await computePipeline(device, ADD_ONE, "add_one");
  const slow = handle.implementation === "navigator" && globalThis.Deno !== undefined;
  // Deno's navigator.gpu needs ~11 ms per completion: fewer samples keep the run short.
  const budget: Budget = quick
    ? { iterations: slow ? 30 : 200, seconds: 1, warmup: 5 }
    : { iterations: slow ? 300 : 5000, seconds: slow ? 5 : 4, warmup: 20 };
  const results: StrategyResult[] = [];
  results.push(await sequential(device, pipeline, "mapAsync", 1, mapAsync, budget));
  results.push(await sequential(device, pipeline, "workDone+mapAsync", 1, workDoneThenMap, budget));
  if (device.queue instanceof DawnQueue) {
    results.push(await sequential(device, pipeline, "mapSync", 1, mapSync, budget));
    results.push(
      await sequential(
        device,
        pipeline,
        "workDoneSync+mapSync",
        1,
        workDoneSyncThenMapSync,
        budget,
      ),
    );
  }
  results.push(await ring(device, pipeline, 4, budget));
  results.push(await ring(device, pipeline, 16, budget));
  for (const n of [64, 1024]) {
    results.push(await sequential(device, pipeline, `batch-${n}`, n, mapAsync, budget));
    if (device.queue instanceof DawnQueue) {
      results.push(await sequential(device, pipeline, `batch-${n}+mapSync`, n, mapSync, budget));
    }
  }
  const base = results[0].p50Us;
  for (const r of results) r.ratioToBaseline = round(r.p50Us / base, 3);
  return results;
}

/** The goals of issue 6 on the H100: p50 of one round trip. */
export const LATENCY_GOALS_US = { bun: 100, deno: 1000 } as const;

interface ImplementationReport {
  implementation: WebGpuImplementation;
  skipped?: string;
  adapter?: WebGpuDeviceHandle["adapterInfo"];
  strategies?: StrategyResult[];
  best?: { strategy: string; p50Us: number; perRequestUs: number };
}

function table(info: RuntimeInfo, reports: ImplementationReport[]): void {
  console.log(`WebGPU round trip latency (${info.runtime} ${info.version})`);
  for (const r of reports) {
    if (r.skipped !== undefined) {
      console.log(`  ${r.implementation}: skipped — ${r.skipped}`);
      continue;
    }
    console.log(`  ${r.implementation} on ${r.adapter?.name}:`);
    console.log(
      "    strategy                    p50 µs     p99 µs  per-req µs      req/s  ×baseline",
    );
    for (const s of r.strategies ?? []) {
      console.log(
        `    ${s.strategy.padEnd(24)} ${String(s.p50Us).padStart(9)} ${
          String(s.p99Us).padStart(10)
        } ${String(s.perRequestUs).padStart(11)} ${String(s.requestsPerSecond).padStart(10)} ${
          String(s.ratioToBaseline).padStart(10)
        }`,
      );
    }
  }
}

async function main(): Promise<void> {
  const info = runtimeInfo();
  const quick = quickMode();
  const reports: ImplementationReport[] = [];
  for (const implementation of implementationsToMeasure()) {
    const got = await acquire(implementation);
    if (got.handle === undefined) {
      reports.push({ implementation, skipped: got.skip });
      continue;
    }
    try {
      const strategies = await measureLatency(got.handle, quick);
      // The best single-request round trip (batches and rings answer a different question).
      const single = strategies.filter((s) => s.requestsPerSubmission === 1 && s.inFlight === 1);
      const best = single.reduce((a, b) => (b.p50Us < a.p50Us ? b : a));
      reports.push({
        implementation,
        adapter: got.handle.adapterInfo,
        strategies,
        best: { strategy: best.strategy, p50Us: best.p50Us, perRequestUs: best.perRequestUs },
      });
    } finally {
      got.handle.device.destroy();
    }
  }
  table(info, reports);
  const measured = reports.find((r) => r.adapter !== undefined);
  const device = measured?.adapter?.name ?? "no-device";
  const goal = LATENCY_GOALS_US[info.runtime === "bun" ? "bun" : "deno"];
  const bestOverall = reports.flatMap((r) => r.best ? [{ ...r.best, impl: r.implementation }] : [])
    .sort((a, b) => a.p50Us - b.p50Us)[0];
  const path = writeBenchJson(`webgpu-latency-${deviceSlug(device)}-${info.runtime}.json`, {
    benchmark: "webgpu-latency",
    ...info,
    device,
    quick,
    goalP50Us: goal,
    bestSingleRequest: bestOverall ?? null,
    goalMet: bestOverall === undefined ? null : bestOverall.p50Us <= goal,
    implementations: reports,
  });
  if (bestOverall !== undefined) {
    console.log(
      `best single round trip: ${bestOverall.impl} ${bestOverall.strategy} p50 ${bestOverall.p50Us} µs ` +
        `(goal on the H100 for ${info.runtime}: ≤ ${goal} µs)`,
    );
  }
  console.log(path);
}

if ((import.meta as ImportMeta & { main?: boolean }).main) {
  await main();
  process.exit(0);
}
