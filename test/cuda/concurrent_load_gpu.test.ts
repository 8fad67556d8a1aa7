/**
 * A kernel definition launched for the first time while another persistent kernel runs: its
 * module is compiled and loaded (`cuModuleLoadData`, `cuModuleGetFunction`) with the GPU busy.
 * CUDA's lazy loading (the default since 12.2) may make a kernel's load wait for the context to
 * idle, which a persistent kernel never does: then this test hangs inside a synchronous driver
 * call, and `scripts/test_gpu.mjs` kills it and reports the file failed. Its own file for that
 * reason. Also a kernel whose stack frame is larger than the context's stack limit (CUDA's default
 * 1 KiB): its launch has the driver grow the context's local memory, which waits the same way
 * unless the runtime raised the limit while loading its module. Skips, saying why, where no CUDA
 * device or NVRTC is available.
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CudaRuntime } from "../../src/backends/cuda/cuda_runtime.ts";
import { LaunchOptions } from "../../src/runtime/launch_options.ts";
import { cudaRuntimeSkip } from "./gpu_available.ts";
import { cellWriter, Poke, Spin, spinner, Wide, wideSummer } from "./gpu_kernels.ts";

const skip = cudaRuntimeSkip();
if (skip) console.log(`concurrent_load_gpu.test: skipping: ${skip}`);

const cacheDir = mkdtempSync(join(tmpdir(), "rk-cuda-load-"));
after(() => rmSync(cacheDir, { recursive: true, force: true }));

const opts = () => LaunchOptions.default().withQueueCapacity(256);

describe("kernel modules loaded while kernels run", { skip }, () => {
  it("new definitions launch and answer while earlier kernels keep running", {
    timeout: 60_000,
  }, async () => {
    const rt = await CudaRuntime.create({ cacheDir });
    try {
      const first = await rt.launch(cellWriter("running_first"), opts());
      const t0 = performance.now();
      const second = await rt.launch(cellWriter("loaded_second"), opts());
      const third = await rt.launch(spinner("loaded_third"), opts());
      const loadMs = performance.now() - t0;
      assert.deepEqual(
        await first.request(Poke.of({ index: 0, value: 1 }), { timeoutMs: 5000 }),
        { first: 1, sum: 1 },
      );
      assert.deepEqual(
        await second.request(Poke.of({ index: 1, value: 2 }), { timeoutMs: 5000 }),
        { first: 0, sum: 2 },
      );
      assert.equal((await third.request(Spin.of({ n: 3, x0: 0 }), { timeoutMs: 5000 }))?.n, 3);
      console.log(
        `cuda: two modules compiled and loaded beside a running kernel in ${loadMs.toFixed(0)} ms`,
      );
    } finally {
      await rt.shutdown();
    }
  });

  it(
    "a parked kernel goes on with its state, counters, histogram and HLC; nothing sent meanwhile is lost",
    {
      timeout: 60_000,
    },
    async () => {
      const rt = await CudaRuntime.create({ cacheDir });
      try {
        const k = await rt.launch(cellWriter("parked_and_resumed"), opts());
        for (let i = 1; i <= 5; i++) await k.request(Poke.of({ index: 0, value: i }));
        const before = k.metrics();
        assert.equal(before.processed, 5);
        assert.equal(before.latency.count, 5);
        // Requests in flight while two modules are loaded (each parks and relaunches k).
        const inFlight = Array.from(
          { length: 200 },
          (_, i) => k.request(Poke.of({ index: 1 + (i % 3), value: i }), { timeoutMs: 20_000 }),
        );
        const t0 = performance.now();
        await rt.launch(cellWriter(`parked_loader_${Date.now()}`), opts());
        await rt.launch(spinner(`parked_loader_spin_${Date.now()}`), opts());
        const parkMs = performance.now() - t0;
        const replies = await Promise.all(inFlight);
        assert.equal(replies.length, 200);
        for (const r of replies) assert.equal(r?.first, 5, "cells[0] kept across the parks");
        const after = k.metrics();
        assert.equal(after.processed, 205, "processed counts on from before the parks");
        assert.equal(after.latency.count, 205, "the histogram counts on");
        assert.equal(after.state, "active");
        assert.deepEqual([...(k.readState()?.cells ?? [])], [5, 198, 199, 197]);
        const q = rt.quietStats();
        assert.ok(q.sections >= 2 && q.parks >= 2, JSON.stringify(q));
        console.log(
          `cuda: 2 modules compiled and loaded with a busy kernel parked and relaunched in ` +
            `${parkMs.toFixed(0)} ms; last section: park ${q.lastParkMs.toFixed(2)} ms, ` +
            `cuModuleLoadData ${q.lastCallMs.toFixed(2)} ms, whole ${q.lastSectionMs.toFixed(2)} ` +
            `ms (longest park ${q.maxParkMs.toFixed(2)} ms)`,
        );
      } finally {
        await rt.shutdown();
      }
    },
  );
  it("a kernel needing more stack than the context has launches beside a running one", {
    timeout: 60_000,
  }, async () => {
    // Its launch would have the driver grow the context's local memory, which waits for the
    // device to idle: a running persistent kernel never lets it, so without the stack limit
    // fitted at module load (in a quiet section) this launch hangs the host thread.
    const rt = await CudaRuntime.create({ cacheDir });
    try {
      const running = await rt.launch(cellWriter("running_beside_wide"), opts());
      assert.deepEqual(await running.request(Poke.of({ index: 0, value: 7 })), {
        first: 7,
        sum: 7,
      });
      const wide = await rt.launch(wideSummer("wide_stack"), opts());
      const vals = Array.from({ length: 480 }, (_, i) => i * 3 + 1);
      const want = vals.reduce((a, b) => a + b, 0);
      assert.deepEqual(await wide.request(Wide.of({ vals }), { timeoutMs: 5000 }), { sum: want });
      assert.deepEqual(
        await running.request(Poke.of({ index: 1, value: 2 }), { timeoutMs: 5000 }),
        { first: 7, sum: 9 },
      );
    } finally {
      await rt.shutdown();
    }
  });
});
