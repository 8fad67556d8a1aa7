/**
 * Leak checks of the CUDA backend on a real GPU:
 * - 1,000 launch/request/terminate cycles on one runtime leave the context's live objects
 *   (`context.stats()`: pinned and device bytes, streams, events, modules) exactly as they were
 *   after a warm-up, the device's free memory and the process's file descriptors flat, and the
 *   resident set bounded;
 * - 20 whole runtimes built and shut down (driver, primary context, NVRTC, module) leave the
 *   device's free memory, the file descriptors and the resident set flat, seen from an observer
 *   context that keeps the primary context alive meanwhile.
 * Skips, saying why, where no CUDA device or NVRTC is available. Figures are printed (they land
 * in the GPU test log, bench/results/gpu-tests-*.txt).
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { CudaDriver } from "../../ffi/cuda.ts";
import { CudaRuntime } from "../../src/backends/cuda/cuda_runtime.ts";
import { LaunchOptions } from "../../src/runtime/launch_options.ts";
import { cudaRuntimeSkip } from "./gpu_available.ts";
import { cellWriter, Poke } from "./gpu_kernels.ts";

const skip = cudaRuntimeSkip();
if (skip) console.log(`cycles_gpu.test: skipping: ${skip}`);

const cacheDir = mkdtempSync(join(tmpdir(), "rk-cuda-cycles-"));
after(() => rmSync(cacheDir, { recursive: true, force: true }));

const runtime = (): string => ("Deno" in globalThis ? "Deno" : "Bun");
const opts = () => LaunchOptions.default().withQueueCapacity(256);
const MiB = 1 << 20;

/** Open file descriptors of this process (Linux `/proc/self/fd`), or undefined elsewhere. */
function openFds(): number | undefined {
  return existsSync("/proc/self/fd") ? readdirSync("/proc/self/fd").length : undefined;
}

/** The resident set after a collection where the runtime offers one (bytes). */
function rss(): number {
  (globalThis as { gc?: () => void }).gc?.();
  (globalThis as { Bun?: { gc(force: boolean): void } }).Bun?.gc(true);
  return process.memoryUsage().rss;
}

describe("CUDA backend leak checks on a GPU", { skip }, () => {
  it("1,000 launch/request/terminate cycles leave the context, device memory and fds flat", {
    timeout: 300_000,
  }, async () => {
    const rt = await CudaRuntime.create({ cacheDir });
    try {
      const def = cellWriter("cycler");
      const cycle = async (i: number): Promise<void> => {
        const k = await rt.launch(def, opts());
        const v = i % 1000;
        assert.deepEqual(
          await k.request(Poke.of({ index: i % 4, value: v }), { timeoutMs: 5000 }),
          { first: i % 4 === 0 ? v : 0, sum: v },
        );
        const report = await k.terminate();
        assert.equal(report.processed, 1);
      };
      // Warm-up: the module is loaded, the region pool and the driver's internals settle.
      for (let i = 0; i < 50; i++) await cycle(i);
      const stats0 = rt.context.stats();
      const free0 = rt.context.memInfo().free;
      const fds0 = openFds();
      const rss0 = rss();
      const n = 1000;
      const t0 = performance.now();
      for (let i = 0; i < n; i++) await cycle(i);
      const perCycle = (performance.now() - t0) / n;
      const stats1 = rt.context.stats();
      const free1 = rt.context.memInfo().free;
      const fds1 = openFds();
      const rss1 = rss();
      console.log(
        `cuda ${n} cycles (${runtime()}, ${rt.device.name}): ${perCycle.toFixed(2)} ms per ` +
          `launch+request+terminate; context ${JSON.stringify(stats1)}; device free ` +
          `${((free1 - free0) / MiB).toFixed(1)} MiB moved; fds ${fds0} -> ${fds1}; rss ` +
          `${(rss0 / MiB).toFixed(0)} -> ${(rss1 / MiB).toFixed(0)} MiB`,
      );
      assert.deepEqual(stats1, stats0);
      assert.deepEqual(rt.listKernels(), []);
      const totals = rt.metrics();
      assert.equal(totals.kernels.terminated, n + 50);
      assert.equal(totals.processed, n + 50);
      assert.ok(Math.abs(free1 - free0) < 16 * MiB, `device free memory moved ${free1 - free0} B`);
      if (fds0 !== undefined && fds1 !== undefined) {
        assert.ok(fds1 - fds0 <= 2, `file descriptors grew from ${fds0} to ${fds1}`);
      }
      // One leaked region per cycle would be ~200 MiB here; the heap's own churn is far less.
      assert.ok(rss1 - rss0 < 96 * MiB, `rss grew by ${((rss1 - rss0) / MiB).toFixed(1)} MiB`);
    } finally {
      await rt.shutdown();
    }
  });

  it("20 runtimes built and shut down leave device memory, fds and rss flat", {
    timeout: 300_000,
  }, async () => {
    // Keeps the primary context alive across the runtimes, so its free memory is comparable.
    const driver = CudaDriver.open();
    const observer = driver.createContext(0);
    try {
      const build = async (i: number): Promise<void> => {
        const rt = await CudaRuntime.create({ cacheDir });
        const k = await rt.launch(cellWriter("runtime_cycle"), opts());
        assert.deepEqual(
          await k.request(Poke.of({ index: 0, value: i }), { timeoutMs: 5000 }),
          { first: i, sum: i },
        );
        await rt.shutdown();
        assert.ok(rt.context.isClosed);
        assert.deepEqual(Object.values(rt.context.stats()), [0, 0, 0, 0, 0, 0, 0]);
      };
      for (let i = 0; i < 3; i++) await build(i);
      const free0 = observer.memInfo().free;
      const fds0 = openFds();
      const rss0 = rss();
      const n = 20;
      const t0 = performance.now();
      for (let i = 0; i < n; i++) await build(i);
      const perRuntime = (performance.now() - t0) / n;
      const free1 = observer.memInfo().free;
      const fds1 = openFds();
      const rss1 = rss();
      console.log(
        `cuda ${n} runtimes (${runtime()}): ${perRuntime.toFixed(1)} ms per ` +
          `create+launch+request+shutdown; device free ${((free1 - free0) / MiB).toFixed(1)} ` +
          `MiB moved; fds ${fds0} -> ${fds1}; rss ${(rss0 / MiB).toFixed(0)} -> ` +
          `${(rss1 / MiB).toFixed(0)} MiB`,
      );
      assert.ok(Math.abs(free1 - free0) < 16 * MiB, `device free memory moved ${free1 - free0} B`);
      if (fds0 !== undefined && fds1 !== undefined) {
        assert.ok(fds1 - fds0 <= 2, `file descriptors grew from ${fds0} to ${fds1}`);
      }
      assert.ok(rss1 - rss0 < 96 * MiB, `rss grew by ${((rss1 - rss0) / MiB).toFixed(1)} MiB`);
      assert.deepEqual(observer.stats().streams, 0);
    } finally {
      observer.close();
      driver.close();
    }
  });
});
