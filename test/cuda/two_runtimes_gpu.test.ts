/**
 * Two CUDA runtimes in one process share the device's primary context: shutting one down (module
 * unload, pinned memory freed, context released) must not wait for the other's persistent
 * kernels, which never finish by themselves. A hang would sit inside a synchronous driver call,
 * so `scripts/test_gpu.mjs` kills the file and reports it failed: its own file for that reason.
 * Skips, saying why, where no CUDA device or NVRTC is available.
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CudaRuntime } from "../../src/backends/cuda/cuda_runtime.ts";
import { LaunchOptions } from "../../src/runtime/launch_options.ts";
import { cudaRuntimeSkip } from "./gpu_available.ts";
import { cellWriter, Poke, preload } from "./gpu_kernels.ts";

const skip = cudaRuntimeSkip();
if (skip) console.log(`two_runtimes_gpu.test: skipping: ${skip}`);

const cacheDir = mkdtempSync(join(tmpdir(), "rk-cuda-two-"));
after(() => rmSync(cacheDir, { recursive: true, force: true }));

const opts = () => LaunchOptions.default().withQueueCapacity(256);

describe("two CUDA runtimes in one process", { skip }, () => {
  it("one shuts down at once while the other's kernels run; the other works on", {
    timeout: 60_000,
  }, async () => {
    const a = await CudaRuntime.create({ cacheDir });
    try {
      const b = await CudaRuntime.create({ cacheDir });
      // Both modules loaded before any kernel runs (module loading beside a running kernel is
      // concurrent_load_gpu.test.ts's subject, not this one's).
      await preload(a, cellWriter("runtime_a"));
      await preload(b, cellWriter("runtime_b"));
      const ka = await a.launch(cellWriter("runtime_a"), opts());
      const kb = await b.launch(cellWriter("runtime_b"), opts());
      assert.deepEqual(
        await kb.request(Poke.of({ index: 0, value: 2 }), { timeoutMs: 5000 }),
        { first: 2, sum: 2 },
      );
      const t0 = performance.now();
      await b.shutdown();
      const ms = performance.now() - t0;
      assert.ok(b.context.isClosed);
      assert.ok(ms < 2000, `shutdown took ${ms} ms`);
      assert.deepEqual(
        await ka.request(Poke.of({ index: 1, value: 4 }), { timeoutMs: 5000 }),
        { first: 0, sum: 4 },
      );
      console.log(`cuda: a runtime shut down in ${ms.toFixed(1)} ms beside a running one`);
    } finally {
      await a.shutdown();
    }
  });
});
