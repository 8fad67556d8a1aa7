// The floor under a host↔GPU round trip: a one-thread persistent kernel answering a 64-byte
// mailbox in mapped pinned memory, with three ways of learning that a message is there and
// reading it, each in cached and in write-combined pinned memory:
//   - "flag then line": poll a flag word, then read the 60 bytes next to it (two reads in a row);
//   - "flag per 16 B": every 16-byte vector carries the sequence number in its last word; the
//     four vectors are loaded together and retried until all four match (one read when ready);
//   - "flag, data elsewhere": the flag in one page, the data in another (two reads, two pages).
// Plus the latency of one read of host memory timed on the GPU (%globaltimer over 1,000
// dependent reads). These say how much of a request's round trip the slot layout costs; the
// library's request path is measured by bench/cuda.ts.
//
//   deno run -A bench/cuda_mailbox.ts        bun bench/cuda_mailbox.ts
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { CudaDriver, type HostAllocation, Nvrtc } from "../ffi/mod.ts";
import { percentile, runtimeInfo } from "./harness.ts";

const KERNEL = `
struct __align__(16) u4 { unsigned int x, y, z, w; };
__device__ __forceinline__ u4 ld4(const void* p) {
  u4 v;
  asm volatile("ld.volatile.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ u4 ld4cv(const void* p) {
  u4 v;
  asm volatile("ld.global.cv.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ u4 ld4rx(const void* p) {
  u4 v;
  asm volatile("ld.relaxed.sys.global.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p) : "memory");
  return v;
}
// Eight loads of separate lines, issued before any is used, in the way of mode 3 (flavour
// 0 volatile, 1 .cv, 2 relaxed.sys): their time says whether they overlap.
__device__ unsigned int eight(const unsigned int* p, unsigned int flavour) {
  u4 v[8];
  if (flavour == 3u) {
    // Eight pages (4 KiB apart) rather than eight lines of one page.
#pragma unroll
    for (int j = 0; j < 8; ++j) v[j] = ld4(p + 1024 * j);
  } else if (flavour == 0u) {
#pragma unroll
    for (int j = 0; j < 8; ++j) v[j] = ld4(p + 16 * j);
  } else if (flavour == 1u) {
#pragma unroll
    for (int j = 0; j < 8; ++j) v[j] = ld4cv(p + 16 * j);
  } else {
#pragma unroll
    for (int j = 0; j < 8; ++j) v[j] = ld4rx(p + 16 * j);
  }
  unsigned int x = 0u;
#pragma unroll
  for (int j = 0; j < 8; ++j) x += v[j].x;
  return x;
}
__device__ __forceinline__ unsigned long long gtime() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}
// mode 0: flag then line; 1: flag per 16 B; 2: flag, data elsewhere; 3: read latency;
// 4: mode 0 plus 32 bookkeeping stores to host memory before the reply; 5: the same stores after
// the reply is published.
extern "C" __global__ void mbox(unsigned int* in, unsigned int* far, unsigned int* out,
                                unsigned int mode, unsigned int n,
                                unsigned long long* timing) {
  if (mode >= 9u) {
    // Warp-cooperative: lanes 0-3 load the line's four vectors in one coalesced request.
    const unsigned int lane = threadIdx.x;
    for (unsigned int i = 1u; i <= n; ++i) {
      u4 v = {0u, 0u, 0u, 0u};
      if (mode == 9u) {
        // Lane 0 polls the flag word; then the warp reads the line at once.
        if (lane == 0u) {
          while (((volatile unsigned int*)in)[0] != i) {}
        }
        __syncwarp();
        asm volatile("fence.acq_rel.sys;" ::: "memory");
        if (lane < 4u) v = ld4(in + 4u * lane);
      } else {
        // Flag per 16 B, polled by the warp: one coalesced request brings flags and data.
        for (;;) {
          if (lane < 4u) v = ld4(in + 4u * lane);
          if (__all_sync(0xffffffffu, lane >= 4u || v.w == i)) break;
        }
      }
      unsigned int part = lane < 4u ? (mode == 9u ? (lane == 0u ? 0u : v.x) + v.y + v.z + v.w
                                                  : v.x + v.y + v.z) : 0u;
      for (int o = 16; o > 0; o >>= 1) part += __shfl_xor_sync(0xffffffffu, part, o);
      if (lane == 0u) {
        ((volatile unsigned int*)out)[1] = part;
        __threadfence_system();
        ((volatile unsigned int*)out)[0] = i;
      }
      __syncwarp();
    }
    return;
  }
  if (threadIdx.x != 0u) return;
  volatile unsigned int* vin = in;
  volatile unsigned int* vout = out;
  if (mode == 3u) {
    unsigned int x = 0u;
    const unsigned long long t0 = gtime();
    for (unsigned int i = 0u; i < n; ++i) x = vin[(x & 1u) * 16u];
    timing[0] = gtime() - t0;
    for (unsigned int f = 0u; f < 4u; ++f) {
      const unsigned long long t1 = gtime();
      for (unsigned int i = 0u; i < n; ++i) x += eight(far + ((x & 1u) << 2), f);
      timing[1u + f] = gtime() - t1;
    }
    timing[5] = x;
    return;
  }
  for (unsigned int i = 1u; i <= n; ++i) {
    unsigned int sum = 0u;
    if (mode == 1u) {
      for (;;) {
        const u4 a = ld4(in), b = ld4(in + 4), c = ld4(in + 8), d = ld4(in + 12);
        if (a.w == i && b.w == i && c.w == i && d.w == i) {
          sum = a.x + a.y + a.z + b.x + b.y + b.z + c.x + c.y + c.z + d.x + d.y + d.z;
          break;
        }
      }
    } else {
      while (vin[0] != i) {}
      asm volatile("fence.acq_rel.sys;" ::: "memory");
      const unsigned int* src = mode == 2u ? far : in;
      u4 a, b, c, d;
      if (mode == 8u) {
        // The line's four vectors from four pages (the host writes them there too).
        a = ld4(src), b = ld4(src + 1024 + 4), c = ld4(src + 2048 + 8), d = ld4(src + 3072 + 12);
      } else if (mode == 6u) {
        a = ld4cv(src), b = ld4cv(src + 4), c = ld4cv(src + 8), d = ld4cv(src + 12);
      } else if (mode == 7u) {
        a = ld4rx(src), b = ld4rx(src + 4), c = ld4rx(src + 8), d = ld4rx(src + 12);
      } else {
        a = ld4(src), b = ld4(src + 4), c = ld4(src + 8), d = ld4(src + 12);
      }
      sum = (mode == 2u ? a.x : 0u) + a.y + a.z + a.w + b.x + b.y + b.z + b.w + c.x + c.y + c.z +
            c.w + d.x + d.y + d.z + d.w;
    }
    if (mode == 4u) {
      for (unsigned int k = 0u; k < 32u; ++k) ((volatile unsigned int*)far)[64u + 8u * k] = i + k;
    }
    vout[1] = sum;
    __threadfence_system();
    vout[0] = i;
    if (mode == 5u) {
      for (unsigned int k = 0u; k < 32u; ++k) ((volatile unsigned int*)far)[64u + 8u * k] = i + k;
      __threadfence_system();
    }
  }
}`;

interface Figure {
  p50: number;
  p99: number;
  mean: number;
}

function stats(samples: number[]): Figure {
  const sorted = Float64Array.from(samples).sort();
  const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
  return {
    p50: round(percentile(sorted, 50)),
    p99: round(percentile(sorted, 99)),
    mean: round(mean),
  };
}
const round = (x: number, digits = 2): number => Number(x.toFixed(digits));

const MODES = [
  "flag then line",
  "flag per 16 B",
  "flag, data elsewhere",
  "",
  "32 stores, then reply",
  "reply, then 32 stores",
  "flag then line, ld.cv",
  "flag then line, ld.relaxed.sys",
  "flag, data in 4 pages",
  "warp: flag, then line coalesced",
  "warp: flag per 16 B, coalesced",
] as const;

function main(): void {
  let driver: CudaDriver;
  try {
    driver = CudaDriver.open();
    if (driver.deviceCount() === 0) throw new Error("no CUDA device");
  } catch (e) {
    console.log(`skipped: no CUDA device (${(e as Error).message.split("\n")[0]})`);
    return;
  }
  const ctx = driver.createContext(0);
  const nvrtc = Nvrtc.open();
  const fn = ctx.loadModule(nvrtc.compile(KERNEL, { arch: ctx.device.arch, context: "mbox" }).image)
    .getFunction("mbox");
  const iterations = Number(process.env.RINGKERNEL_MAILBOX_N ?? 20_000);
  const results: Record<string, unknown>[] = [];
  const timing = ctx.alloc(64);
  for (const writeCombined of [false, true]) {
    const inAlloc: HostAllocation = ctx.allocHost(16384, { writeCombined });
    const farAlloc: HostAllocation = ctx.allocHost(1 << 20, { writeCombined });
    const outAlloc: HostAllocation = ctx.allocHost(4096);
    const inW = new Uint32Array(inAlloc.buffer, 0, 4096);
    const farW = new Uint32Array(farAlloc.buffer, 512 * 1024, 16);
    const outW = new Int32Array(outAlloc.buffer, 0, 16);
    const farPtr = farAlloc.device + BigInt(512 * 1024);
    const memory = writeCombined ? "write-combined" : "cached";

    // One read of host memory, timed on the GPU.
    const stream = ctx.createStream({ nonBlocking: true });
    ctx.launch(fn, 1, 32, 0, stream, [
      { ptr: inAlloc.device },
      { ptr: farPtr },
      { ptr: outAlloc.device },
      { u32: 3 },
      { u32: 1000 },
      { ptr: timing },
    ]);
    ctx.synchronizeStream(stream);
    const t = new BigUint64Array(8);
    ctx.copyDtoH(t, timing);
    const readNs = Number(t[0]) / 1000;
    results.push({ memory, mode: "one read of host memory (GPU-timed)", ns: round(readNs, 0) });
    console.log(`${memory.padEnd(15)} one read, GPU-timed: ${readNs.toFixed(0)} ns`);
    ["volatile", "ld.cv", "ld.relaxed.sys", "volatile, 8 pages,"].forEach((flavour, f) => {
      const ns = Number(t[1 + f]) / 1000;
      results.push({
        memory,
        mode: `8 independent ${flavour} loads (GPU-timed)`,
        ns: round(ns, 0),
      });
      console.log(`${memory.padEnd(15)} 8 independent ${flavour} loads: ${ns.toFixed(0)} ns`);
    });

    for (let mode = 0; mode < MODES.length; mode++) {
      if (MODES[mode] === "") continue;
      inW.fill(0);
      farW.fill(0);
      outW.fill(0);
      ctx.launch(fn, 1, 32, 0, stream, [
        { ptr: inAlloc.device },
        { ptr: farPtr },
        { ptr: outAlloc.device },
        { u32: mode },
        { u32: iterations },
        { ptr: timing },
      ]);
      const samples: number[] = [];
      const warm = Math.min(1000, iterations / 10);
      for (let i = 1; i <= iterations; i++) {
        const t0 = performance.now();
        let expect = 0;
        if (mode === 1 || mode === 10) {
          for (let v = 0; v < 4; v++) {
            inW[4 * v] = i;
            inW[4 * v + 1] = v;
            inW[4 * v + 2] = 1;
            expect += i + v + 1;
            Atomics.store(inW, 4 * v + 3, i);
          }
        } else {
          const data = mode === 2 ? farW : inW;
          for (let w = 1; w < 16; w++) data[(mode === 8 ? 1024 * (w >> 2) : 0) + w] = i + w;
          expect = 15 * i + 120;
          if (mode === 2) {
            data[0] = i;
            expect += i;
          }
          Atomics.store(inW, 0, i);
        }
        while (Atomics.load(outW, 0) !== i) { /* spin: the GPU cannot notify */ }
        const t1 = performance.now();
        const got = outW[1] >>> 0;
        if (got !== (expect >>> 0)) {
          throw new Error(`${MODES[mode]} (${memory}): message ${i} read ${got}, want ${expect}`);
        }
        if (i > warm) samples.push((t1 - t0) * 1000);
      }
      ctx.synchronizeStream(stream);
      const f = stats(samples);
      results.push({ memory, mode: MODES[mode], roundTripUs: f });
      console.log(
        `${memory.padEnd(15)} ${MODES[mode].padEnd(22)} p50 ${f.p50} µs  p99 ${f.p99} µs`,
      );
    }
    ctx.destroyStream(stream);
    ctx.freeHost(inAlloc);
    ctx.freeHost(farAlloc);
    ctx.freeHost(outAlloc);
  }
  const record = {
    bench: "cuda-mailbox",
    date: new Date().toISOString(),
    device: ctx.device.name,
    runtime: runtimeInfo(),
    iterations,
    results,
  };
  ctx.close();
  nvrtc.close();
  driver.close();
  const dir = process.env.RINGKERNEL_RESULTS_DIR ?? "bench/results";
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `cuda-mailbox-${runtimeInfo().runtime}.json`);
  writeFileSync(file, JSON.stringify(record, null, 2) + "\n");
  console.log(`wrote ${file}`);
}

main();
