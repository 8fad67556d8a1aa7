// Bulk 5-point stencil (one explicit heat step, f32) on a 4096² grid through WebGPU: the kernel
// written in the DSL (stencilKernel, compiled by emitWgsl) against a hand-written WGSL kernel of
// the same arithmetic and workgroup shape, the baseline in the same run. Ping-pong buffers, many
// steps in one submission, wall time from submit to completion; no timestamp queries. The time per
// step is the slope between a short and a long run (fixed costs such as the completion latency of
// Deno's navigator.gpu cancel out), reported as Gcells/s (interior cells updated per second).
// Both kernels' results are compared with each other and with a CPU reference before timing.
//
// Measured for every WebGPU implementation this runtime loads (see bench/webgpu_latency.ts).
// Writes bench/results/webgpu-stencil-<device>-<runtime>.json (or into $RINGKERNEL_RESULTS_DIR).
// RINGKERNEL_BENCH_QUICK=1 (or --quick) uses a 512² grid; RINGKERNEL_STENCIL_SIZE=n sets n².
//
//   deno run -A bench/webgpu_stencil.ts        bun bench/webgpu_stencil.ts

import process from "node:process";
import { checkKernel } from "../src/dsl/check.ts";
import { stencilKernel } from "../src/dsl/define.ts";
import { emitWgsl } from "../src/dsl/wgsl.ts";
import type { WebGpuDeviceHandle, WebGpuImplementation } from "../src/backends/webgpu/adapter.ts";
import { runtimeInfo } from "./harness.ts";
import {
  acquire,
  computePipeline,
  deviceSlug,
  implementationsToMeasure,
  quickMode,
  USAGE,
  writeBenchJson,
} from "./webgpu_latency.ts";

const TILE = [32, 8] as const;
const ALPHA = 0.2;

/** The DSL kernel: one explicit heat step with the 5-point Laplacian. */
export const heat5 = stencilKernel(
  { name: "heat5", grid: "2d", tile: TILE, params: ["f32[]", "f32[]", "f32"] },
  (pos, u, out, alpha) => {
    const c = u[pos.idx];
    const lap = pos.north(u) + pos.south(u) + pos.east(u) + pos.west(u) - 4 * c;
    out[pos.idx] = c + alpha * lap;
  },
);

/** The baseline: the same step written by hand, same bindings and uniform layout. */
export const HAND_WGSL = `
struct Params { alpha: f32, width: u32, height: u32, depth: u32 }
@group(0) @binding(0) var<storage, read> u: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;
@compute @workgroup_size(${TILE[0]}, ${TILE[1]})
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  if (g.x >= p.width || g.y >= p.height) { return; }
  let row = p.width + 2u;
  let i = (g.y + 1u) * row + g.x + 1u;
  let c = u[i];
  out[i] = c + p.alpha * (u[i - row] + u[i + row] + u[i + 1u] + u[i - 1u] - 4.0 * c);
}`;

interface Grid {
  readonly n: number;
  readonly a: GPUBuffer;
  readonly b: GPUBuffer;
  readonly params: GPUBuffer;
  readonly initial: Float32Array<ArrayBuffer>;
}

function makeGrid(device: GPUDevice, n: number): Grid {
  const cells = (n + 2) * (n + 2);
  const initial = new Float32Array(cells);
  // A smooth field plus a hot square; the halo stays 0 (fixed boundary).
  for (let y = 1; y <= n; y++) {
    for (let x = 1; x <= n; x++) {
      const hot = Math.abs(x - n / 2) < n / 8 && Math.abs(y - n / 2) < n / 8 ? 100 : 0;
      initial[y * (n + 2) + x] = hot + Math.sin(x * 0.01) * Math.cos(y * 0.013);
    }
  }
  const usage = USAGE.STORAGE | USAGE.COPY_DST | USAGE.COPY_SRC;
  const a = device.createBuffer({ size: initial.byteLength, usage });
  const b = device.createBuffer({ size: initial.byteLength, usage });
  device.queue.writeBuffer(a, 0, initial);
  device.queue.writeBuffer(b, 0, initial);
  const params = device.createBuffer({ size: 16, usage: USAGE.UNIFORM | USAGE.COPY_DST });
  const p = new DataView(new ArrayBuffer(16));
  p.setFloat32(0, ALPHA, true);
  p.setInt32(4, n, true);
  p.setInt32(8, n, true);
  p.setInt32(12, 1, true);
  device.queue.writeBuffer(params, 0, p.buffer);
  return { n, a, b, params, initial };
}

interface Kernel {
  readonly name: string;
  readonly pipeline: GPUComputePipeline;
  /** [a → b, b → a] */
  readonly groups: readonly [GPUBindGroup, GPUBindGroup];
}

function kernel(device: GPUDevice, name: string, pipeline: GPUComputePipeline, g: Grid): Kernel {
  const bind = (src: GPUBuffer, dst: GPUBuffer) =>
    device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [
        { binding: 0, resource: { buffer: src } },
        { binding: 1, resource: { buffer: dst } },
        { binding: 2, resource: { buffer: g.params } },
      ],
    });
  return { name, pipeline, groups: [bind(g.a, g.b), bind(g.b, g.a)] };
}

/** Encodes `steps` ping-pong steps in one compute pass and submits them; resolves when done. */
async function run(device: GPUDevice, k: Kernel, g: Grid, steps: number): Promise<number> {
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(k.pipeline);
  const wg = [Math.ceil(g.n / TILE[0]), Math.ceil(g.n / TILE[1])] as const;
  for (let s = 0; s < steps; s++) {
    pass.setBindGroup(0, k.groups[s & 1]);
    pass.dispatchWorkgroups(wg[0], wg[1]);
  }
  pass.end();
  const commands = enc.finish();
  const t0 = performance.now();
  device.queue.submit([commands]);
  await device.queue.onSubmittedWorkDone();
  return performance.now() - t0;
}

async function readBuffer(device: GPUDevice, buf: GPUBuffer, bytes: number): Promise<Float32Array> {
  const staging = device.createBuffer({ size: bytes, usage: USAGE.MAP_READ | USAGE.COPY_DST });
  const enc = device.createCommandEncoder();
  enc.copyBufferToBuffer(buf, 0, staging, 0, bytes);
  device.queue.submit([enc.finish()]);
  await staging.mapAsync(1);
  const out = new Float32Array(staging.getMappedRange().slice(0));
  staging.unmap();
  staging.destroy();
  return out;
}

/** Two steps of each kernel from the same start; compares them and samples a CPU reference. */
async function verify(device: GPUDevice, kernels: Kernel[], g: Grid): Promise<number> {
  const results: Float32Array[] = [];
  for (const k of kernels) {
    device.queue.writeBuffer(g.a, 0, g.initial);
    device.queue.writeBuffer(g.b, 0, g.initial);
    await run(device, k, g, 2); // a → b → a
    results.push(await readBuffer(device, g.a, g.initial.byteLength));
  }
  const n = g.n, row = n + 2;
  const step = (u: Float32Array, i: number) =>
    u[i] + ALPHA * (u[i - row] + u[i + row] + u[i + 1] + u[i - 1] - 4 * u[i]);
  let worst = 0;
  for (let s = 0; s < 2000; s++) {
    const x = 2 + Math.floor(Math.random() * (n - 2)), y = 2 + Math.floor(Math.random() * (n - 2));
    const i = y * row + x;
    // Step 2 at i needs step 1 at i and its four neighbours.
    const first = (j: number) => step(g.initial, j);
    const c = first(i);
    const want = c +
      ALPHA * (first(i - row) + first(i + row) + first(i + 1) + first(i - 1) - 4 * c);
    for (const r of results) worst = Math.max(worst, Math.abs(r[i] - want) / (1 + Math.abs(want)));
  }
  const [dsl, hand] = results;
  for (let i = 0; i < dsl.length; i++) {
    worst = Math.max(worst, Math.abs(dsl[i] - hand[i]) / (1 + Math.abs(hand[i])));
  }
  if (!(worst < 1e-4)) throw new Error(`stencil results disagree (relative error ${worst})`);
  return worst;
}

/** Result of one kernel on one implementation. */
export interface StencilResult {
  /** `dsl` or `hand-written`. */
  readonly kernel: string;
  /** Steps in the short and the long run. */
  readonly steps: readonly [number, number];
  /** Wall milliseconds of the short and the long run (best of the repeats). */
  readonly wallMs: readonly [number, number];
  /** Milliseconds per step (slope). */
  readonly msPerStep: number;
  /** Interior cells updated per second, in billions. */
  readonly gcellsPerSecond: number;
  /** Effective memory traffic at 8 bytes per cell (one read, one write), GB/s. */
  readonly effectiveGBps: number;
}

async function timeKernel(device: GPUDevice, k: Kernel, g: Grid, quick: boolean) {
  // Calibrate: double the steps until one run takes long enough to time.
  const target = quick ? 100 : 400;
  let steps = 2;
  await run(device, k, g, steps);
  for (;;) {
    const ms = await run(device, k, g, steps);
    if (ms >= target || steps >= 1 << 16) break;
    steps *= ms < target / 8 ? 4 : 2;
  }
  const short = Math.max(1, Math.floor(steps / 2)), long = steps * 2;
  const best = async (n: number) => {
    let b = Infinity;
    for (let r = 0; r < 3; r++) b = Math.min(b, await run(device, k, g, n));
    return b;
  };
  const tShort = await best(short), tLong = await best(long);
  const msPerStep = Math.max(1e-9, (tLong - tShort) / (long - short));
  const cells = g.n * g.n;
  return {
    kernel: k.name,
    steps: [short, long] as const,
    wallMs: [round(tShort, 3), round(tLong, 3)] as const,
    msPerStep: round(msPerStep, 5),
    gcellsPerSecond: round(cells / (msPerStep / 1000) / 1e9, 2),
    effectiveGBps: round((cells * 8) / (msPerStep / 1000) / 1e9, 1),
  };
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** Measures both kernels on one device. */
export async function measureStencil(
  handle: WebGpuDeviceHandle,
  n: number,
  quick: boolean,
): Promise<{ verifyError: number; results: StencilResult[]; dslVsHand: number }> {
  const { device } = handle;
  const src = emitWgsl(checkKernel(heat5));
  const g = makeGrid(device, n);
  try {
    const kernels = [
      kernel(device, "dsl", await computePipeline(device, src.code, "heat5-dsl"), g),
      kernel(device, "hand-written", await computePipeline(device, HAND_WGSL, "heat5-hand"), g),
    ];
    const verifyError = await verify(device, kernels, g);
    const results: StencilResult[] = [];
    for (const k of kernels) results.push(await timeKernel(device, k, g, quick));
    return {
      verifyError,
      results,
      dslVsHand: round(results[0].gcellsPerSecond / results[1].gcellsPerSecond, 3),
    };
  } finally {
    g.a.destroy();
    g.b.destroy();
    g.params.destroy();
  }
}

/** The goal of issue 6 on the H100. */
export const STENCIL_GOAL_GCELLS = 200;

async function main(): Promise<void> {
  const info = runtimeInfo();
  const quick = quickMode();
  const n = Number(process.env.RINGKERNEL_STENCIL_SIZE ?? (quick ? 512 : 4096));
  const reports: Record<string, unknown>[] = [];
  let device = "no-device";
  console.log(`WebGPU 5-point stencil f32 ${n}² (${info.runtime} ${info.version})`);
  for (const implementation of implementationsToMeasure() as WebGpuImplementation[]) {
    const got = await acquire(implementation);
    if (got.handle === undefined) {
      console.log(`  ${implementation}: skipped — ${got.skip}`);
      reports.push({ implementation, skipped: got.skip });
      continue;
    }
    try {
      let m: Awaited<ReturnType<typeof measureStencil>>;
      try {
        m = await measureStencil(got.handle, n, quick);
      } catch (err) {
        const failed = err instanceof Error ? err.message : String(err);
        console.log(`  ${implementation}: FAILED — ${failed}`);
        reports.push({ implementation, adapter: got.handle.adapterInfo, failed });
        continue;
      }
      if (device === "no-device") device = got.handle.adapterInfo.name;
      console.log(`  ${implementation} on ${got.handle.adapterInfo.name}:`);
      for (const r of m.results) {
        console.log(
          `    ${r.kernel.padEnd(13)} ${String(r.gcellsPerSecond).padStart(8)} Gcells/s  ` +
            `${String(r.effectiveGBps).padStart(7)} GB/s  ${r.msPerStep} ms/step`,
        );
      }
      console.log(`    DSL / hand-written: ${m.dslVsHand}×`);
      reports.push({ implementation, adapter: got.handle.adapterInfo, ...m });
    } finally {
      got.handle.device.destroy();
    }
  }
  const path = writeBenchJson(`webgpu-stencil-${deviceSlug(device)}-${info.runtime}.json`, {
    benchmark: "webgpu-stencil",
    ...info,
    device,
    grid: n,
    quick,
    goalGcellsPerSecond: STENCIL_GOAL_GCELLS,
    implementations: reports,
  });
  console.log(path);
}

if ((import.meta as ImportMeta & { main?: boolean }).main) {
  await main();
  process.exit(0);
}
