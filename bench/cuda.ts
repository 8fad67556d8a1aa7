// CUDA benchmarks through the library's own FFI layer (ffi/), each against a baseline measured in
// the same run:
//   - request/response round trip through a persistent kernel running a DSL handler
//     (KernelHandle.request on Backend.Cuda), against the non-persistent way: copy 64 B in,
//     launch, copy 64 B out, sync;
//   - bulk host→device copy through CudaContext.copyHtoD from pinned memory, against the same
//     copy from pageable memory;
//   - 64-byte messages per second through a persistent kernel (sendMany / receiveMany windows),
//     against copy + launch + copy per window;
//   - 64-byte messages per second through a persistent kernel by packed batches (sendPacked:
//     DMA into device memory, handled a warp at a time, lane-parallel), against the launch way
//     for the same batches (copy from pinned memory, launch a grid over the batch, synchronize).
// Skips, saying why, without a CUDA device. Writes bench/results/cuda-<runtime>.json (or into
// $RINGKERNEL_RESULTS_DIR).
//
//   deno run -A bench/cuda.ts        bun bench/cuda.ts
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { CudaDriver, Nvrtc } from "../ffi/mod.ts";
import { CudaRuntime } from "../src/backends/cuda/cuda_runtime.ts";
import { LaunchOptions } from "../src/runtime/launch_options.ts";
import { AddValue, dslAccumulator } from "../test/dsl/corpus.ts";
import { benchSummer, Samples } from "./kernels.ts";
import { percentile, runtimeInfo } from "./harness.ts";
import { countMismatch, runWindows, windowsFor } from "./windowed.ts";
import {
  type CounterState,
  foldCounter,
  packedCounter,
  packWords,
} from "../test/cuda/packed_kernels.ts";

const ECHO = `extern "C" __global__ void rk_echo(const unsigned int* in, unsigned int* out) {
  unsigned int i = threadIdx.x;
  if (i < 16) out[i] = in[i] + 1u;
}`;

function stats(samples: number[]): { p50: number; p99: number; mean: number } {
  const sorted = Float64Array.from(samples).sort();
  const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), mean };
}

const round = (x: number, digits = 2): number => Number(x.toFixed(digits));

/** Launch + 64-byte copies per message: the cost a persistent kernel avoids. */
export function launchRoundTrip(iterations = 20_000): { p50: number; p99: number; mean: number } {
  const driver = CudaDriver.open();
  const ctx = driver.createContext(0);
  const nvrtc = Nvrtc.open();
  try {
    const image = nvrtc.compile(ECHO, { arch: ctx.device.arch, context: "rk_echo" }).image;
    const fn = ctx.loadModule(image).getFunction("rk_echo");
    const din = ctx.alloc(64);
    const dout = ctx.alloc(64);
    const hin = new Uint32Array(16);
    const hout = new Uint32Array(16);
    const samples: number[] = [];
    for (let i = 0; i < iterations + 1000; i++) {
      hin[0] = i;
      const t0 = performance.now();
      ctx.copyHtoD(din, hin);
      ctx.launch(fn, 1, 32, 0, null, [{ ptr: din }, { ptr: dout }]);
      ctx.copyDtoH(hout, dout);
      const t1 = performance.now();
      if (hout[0] !== i + 1) throw new Error(`echo returned ${hout[0]} for ${i}`);
      if (i >= 1000) samples.push((t1 - t0) * 1000);
    }
    return stats(samples);
  } finally {
    ctx.close();
    nvrtc.close();
    driver.close();
  }
}

/** Sequential `request`s to a persistent CUDA kernel running the corpus accumulator handler. */
export async function persistentRoundTrip(
  iterations = 5_000,
): Promise<{ p50: number; p99: number; mean: number }> {
  const rt = await CudaRuntime.create();
  try {
    const k = await rt.launch(dslAccumulator, LaunchOptions.default());
    for (let i = 0; i < 500; i++) await k.request(AddValue.of({ value: 1 }));
    const samples: number[] = [];
    for (let i = 0; i < iterations; i++) {
      const t0 = performance.now();
      await k.request(AddValue.of({ value: 1 }));
      samples.push((performance.now() - t0) * 1000);
    }
    return stats(samples);
  } finally {
    await rt.shutdown();
  }
}

const WINDOW = 256;
const SUM16 = `extern "C" __global__ void rk_sum16(const float* in, float* out, unsigned int n) {
  const unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  float t = 0.0f;
  for (int j = 0; j < 16; ++j) t += in[16u * i + j];
  out[i] = t;
}`;

/**
 * Messages per second of 64-byte payloads (sixteen f32, `benchSummer`: sum + running count)
 * through a persistent kernel: windows of {@linkcode WINDOW} by `sendMany`, each window's
 * outputs by `receiveMany` before the next. Baseline: the same windows the launch way: copy the
 * window's payloads in, launch a summing kernel, copy the sums out.
 */
export async function messageThroughput(
  messages = 200_000,
): Promise<{ persistent: number; launchPerWindow: number }> {
  const rt = await CudaRuntime.create();
  let persistent: number;
  let sent: number;
  try {
    const k = await rt.launch(benchSummer, LaunchOptions.default());
    const msg = Samples.of({ values: Array.from({ length: 16 }, (_, i) => i + 0.5) });
    const window = Array.from({ length: WINDOW }, () => msg);
    const warm = await runWindows(k, window, 20);
    // Whole windows only: `sent` is what the kernel must have counted.
    const run = await runWindows(k, window, windowsFor(messages, WINDOW));
    const mismatch = countMismatch(k, warm.sent + run.sent);
    if (mismatch !== undefined) throw new Error(mismatch);
    sent = run.sent;
    persistent = run.sent / (run.ms / 1000);
  } finally {
    await rt.shutdown();
  }
  const driver = CudaDriver.open();
  const ctx = driver.createContext(0);
  const nvrtc = Nvrtc.open();
  try {
    const fn = ctx.loadModule(
      nvrtc.compile(SUM16, { arch: ctx.device.arch, context: "sum16" }).image,
    )
      .getFunction("rk_sum16");
    const din = ctx.alloc(WINDOW * 64);
    const dout = ctx.alloc(WINDOW * 4);
    const hin = new Float32Array(WINDOW * 16).map((_, i) => (i % 16) + 0.5);
    const hout = new Float32Array(WINDOW);
    const windows = sent / WINDOW;
    const t0 = performance.now();
    for (let w = 0; w < windows; w++) {
      ctx.copyHtoD(din, hin);
      ctx.launch(fn, 1, WINDOW, 0, null, [{ ptr: din }, { ptr: dout }, { u32: WINDOW }]);
      ctx.copyDtoH(hout, dout);
    }
    const ms = performance.now() - t0;
    if (hout[0] !== 128) throw new Error(`sum16 gave ${hout[0]}`);
    return { persistent, launchPerWindow: sent / (ms / 1000) };
  } finally {
    ctx.close();
    nvrtc.close();
    driver.close();
  }
}

const COUNT16 = `extern "C" __global__ void rk_count16(const unsigned int* in, unsigned int n,
                                              unsigned int* acc) {
  const unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  unsigned int t = 0u;
  for (int j = 0; j < 16; ++j) t += in[16u * i + j];
  atomicAdd(&acc[0], 1u);
  atomicAdd(&acc[1], t);
}`;

/** Messages per `sendPacked` call of {@linkcode packedThroughput}. */
const PACKED_CALL = 1 << 18;

/**
 * Messages per second of 64-byte payloads (sixteen u32, `packedCounter`: count, sum and folds in
 * its state, lane-parallel) sent by `sendPacked` in calls of {@linkcode PACKED_CALL}, until the
 * kernel counted them all; the state is checked exactly. Baseline: the same batches the launch
 * way: copy from pinned memory, launch a grid that sums them, synchronize.
 */
export async function packedThroughput(
  messages = 50_000_000,
): Promise<
  { packed: number; launchPerBatch: number; sent: number; queuedShare: number; stagingOnly: number }
> {
  const payload = packWords(PACKED_CALL);
  const rt = await CudaRuntime.create();
  let packed: number;
  let sent = 0;
  let queuedShare: number;
  let stagingOnly = 0;
  try {
    const k = await rt.launch(packedCounter, LaunchOptions.default());
    let expected: CounterState = {
      count: 0,
      sum: 0,
      bits: 0,
      flips: 0,
      mask: 0xffff_ffff,
      big: 0n,
    };
    const waitFor = async (n: number): Promise<void> => {
      const end = performance.now() + 60_000;
      while (k.metrics().processed < n) {
        if (performance.now() > end) {
          throw new Error(`packed: ${k.metrics().processed} of ${n} processed after 60 s`);
        }
        await new Promise((r) => setTimeout(r, 0));
      }
    };
    await k.sendPacked(payload, { timeoutMs: 30_000 }); // warm-up
    expected = foldCounter(expected, payload);
    await waitFor(PACKED_CALL);
    const calls = Math.ceil(messages / PACKED_CALL);
    const t0 = performance.now();
    for (let c = 0; c < calls; c++) await k.sendPacked(payload, { timeoutMs: 30_000 });
    const queuedMs = performance.now() - t0;
    sent = calls * PACKED_CALL;
    await waitFor(PACKED_CALL + sent);
    const ms = performance.now() - t0;
    // Near 1: the host (or the ring's room) set the pace; well below: the host waited on nothing.
    queuedShare = queuedMs / ms;
    let folded = expected;
    for (let c = 0; c < calls; c++) folded = foldCounter(folded, payload);
    // Exact: every message was handled once (sums wrap as the kernel's u32/u64 do).
    assert.deepStrictEqual(k.readState(), folded);
    packed = sent / (ms / 1000);
  } finally {
    await rt.shutdown();
  }
  const driver = CudaDriver.open();
  const ctx = driver.createContext(0);
  const nvrtc = Nvrtc.open();
  try {
    const fn = ctx.loadModule(
      nvrtc.compile(COUNT16, { arch: ctx.device.arch, context: "count16" }).image,
    ).getFunction("rk_count16");
    const bytes = payload.byteLength;
    const din = ctx.alloc(bytes);
    const acc = ctx.alloc(8);
    ctx.memset(acc, 0, 8);
    const pinned = ctx.allocHost(bytes);
    new Uint8Array(pinned.buffer).set(new Uint8Array(payload.buffer));
    const src = new Uint8Array(pinned.buffer, 0, bytes);
    // The host's share of sendPacked: copying the payload into pinned staging, alone.
    const from = new Uint8Array(payload.buffer);
    const s0 = performance.now();
    for (let r = 0; r < 20; r++) src.set(from);
    stagingOnly = (20 * PACKED_CALL) / ((performance.now() - s0) / 1000);
    const calls = sent / PACKED_CALL;
    const t0 = performance.now();
    for (let c = 0; c < calls; c++) {
      ctx.copyHtoDAsync(din, src, null);
      ctx.launch(fn, PACKED_CALL / 256, 256, 0, null, [{ ptr: din }, { u32: PACKED_CALL }, {
        ptr: acc,
      }]);
      ctx.synchronize();
    }
    const ms = performance.now() - t0;
    const out = new Uint32Array(2);
    ctx.copyDtoH(out, acc);
    if (out[0] !== sent >>> 0) throw new Error(`count16 counted ${out[0]} of ${sent}`);
    return { packed, launchPerBatch: sent / (ms / 1000), sent, queuedShare, stagingOnly };
  } finally {
    ctx.close();
    nvrtc.close();
    driver.close();
  }
}

/** GB/s of `copyHtoD` of `bytes` from pinned and from pageable memory. */
export function bulkCopy(
  bytes = 256 * 2 ** 20,
  repeats = 20,
): { pinned: number; pageable: number } {
  const driver = CudaDriver.open();
  const ctx = driver.createContext(0);
  try {
    const dst = ctx.alloc(bytes);
    const pinned = ctx.allocHost(bytes);
    const pinnedView = new Uint8Array(pinned.buffer);
    pinnedView.fill(7);
    const pageable = new Uint8Array(bytes).fill(7);
    const rate = (src: Uint8Array): number => {
      ctx.copyHtoD(dst, src); // warm-up
      const t0 = performance.now();
      for (let i = 0; i < repeats; i++) ctx.copyHtoD(dst, src);
      const s = (performance.now() - t0) / 1000;
      return (bytes * repeats) / s / 1e9;
    };
    return { pinned: rate(pinnedView), pageable: rate(pageable) };
  } finally {
    ctx.close();
    driver.close();
  }
}

if (import.meta.main) {
  const info = runtimeInfo();
  let figures: Record<string, unknown>;
  let device = "none";
  try {
    const d = CudaDriver.open();
    device = d.deviceInfo(0).name;
    d.close();
  } catch (err) {
    figures = { skipped: `no CUDA device: ${(err as Error).message.split("\n")[0]}` };
    console.log(figures.skipped);
    process.exit(0);
  }
  // RINGKERNEL_BENCH_ONLY=packed: the packed-batch figures alone (the rest read as zero).
  const only = process.env.RINGKERNEL_BENCH_ONLY;
  const zero = { p50: 0, p99: 0, mean: 0 };
  const rtt = only === "packed" ? zero : launchRoundTrip();
  const persistent = only === "packed" ? zero : await persistentRoundTrip();
  const copy = only === "packed" ? { pinned: 0, pageable: 0 } : bulkCopy();
  const tput = only === "packed"
    ? { persistent: 0, launchPerWindow: 0 }
    : await messageThroughput();
  const packed = await packedThroughput();
  figures = {
    device,
    persistentRequestUs: {
      p50: round(persistent.p50),
      p99: round(persistent.p99),
      mean: round(persistent.mean),
    },
    launchRoundTripUs: { p50: round(rtt.p50), p99: round(rtt.p99), mean: round(rtt.mean) },
    persistentVsLaunchP50: round(rtt.p50 / persistent.p50),
    bulkHtoDGBps: { pinned: round(copy.pinned, 1), pageable: round(copy.pageable, 1) },
    messages64BPerSecond: {
      persistent: Math.round(tput.persistent),
      launchPerWindow: Math.round(tput.launchPerWindow),
      window: WINDOW,
    },
    persistentVsLaunchThroughput: round(tput.persistent / tput.launchPerWindow),
    packed64BPerSecond: {
      packed: Math.round(packed.packed),
      launchPerBatch: Math.round(packed.launchPerBatch),
      batch: PACKED_CALL,
      messages: packed.sent,
      queuedShare: round(packed.queuedShare),
      hostStagingOnly: Math.round(packed.stagingOnly),
    },
    packedVsLaunchThroughput: round(packed.packed / packed.launchPerBatch),
    packedVsEnvelopes: round(packed.packed / tput.persistent),
    pinnedVsPageable: round(copy.pinned / copy.pageable),
  };
  const dir = process.env.RINGKERNEL_RESULTS_DIR ?? new URL("./results/", import.meta.url).pathname;
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `cuda-${info.runtime}.json`);
  writeFileSync(path, JSON.stringify({ benchmark: "cuda", ...info, figures }, null, 2) + "\n");
  console.log(`CUDA on ${device} (${info.runtime} ${info.version})`);
  console.log(
    `persistent kernel request (DSL handler): p50 ${round(persistent.p50)} µs, p99 ${
      round(persistent.p99)
    } µs — ${round(rtt.p50 / persistent.p50)}× the launch baseline`,
  );
  console.log(
    `launch + 64 B copies per message: p50 ${round(rtt.p50)} µs, p99 ${round(rtt.p99)} µs`,
  );
  console.log(
    `bulk H2D 256 MiB via copyHtoD: pinned ${round(copy.pinned, 1)} GB/s, pageable ${
      round(copy.pageable, 1)
    } GB/s (${round(copy.pinned / copy.pageable)}×)`,
  );
  console.log(
    `64-byte messages: ${
      (tput.persistent / 1e6).toFixed(2)
    } M/s persistent (sendMany/receiveMany ` +
      `windows of ${WINDOW}), ${(tput.launchPerWindow / 1e6).toFixed(2)} M/s copy+launch+copy ` +
      `per window (${round(tput.persistent / tput.launchPerWindow)}×)`,
  );
  console.log(
    `64-byte messages by sendPacked (lane-parallel handler, ${packed.sent} messages): ${
      (packed.packed / 1e6).toFixed(1)
    } M/s; launch way per batch of ${PACKED_CALL}: ${
      (packed.launchPerBatch / 1e6).toFixed(1)
    } M/s (${round(packed.packed / packed.launchPerBatch)}×); ${
      round(packed.packed / tput.persistent)
    }× sendMany envelopes; host staging alone ${(packed.stagingOnly / 1e6).toFixed(0)} M/s`,
  );
  console.log(path);
  process.exit(0);
}
