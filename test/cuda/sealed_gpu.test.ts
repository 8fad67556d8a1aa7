/**
 * Sealed slots on a real GPU (src/core/queue_layout.ts): the persistent kernel reads a message's
 * vectors with no fence after its sequence word and takes each only with its seal; the host takes
 * a reply only with its seals, before the kernel's release fence. Every byte must come back:
 * the passthrough kernel echoes messages of 4 to 400 payload bytes (one to three lines of seals,
 * and past the envelope vectors the warp loads, which lane 0 reads itself), many in flight at
 * once, through lanes small enough to wrap hundreds of times. And what a reply shows handled,
 * `metrics()` and `readState()` show too, though the reply lands before the counters.
 * Skips, saying why, where no CUDA device opens.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CudaRuntime } from "../../src/backends/cuda/cuda_runtime.ts";
import { array, defineMessage } from "../../src/core/schema.ts";
import { LaunchOptions } from "../../src/runtime/launch_options.ts";
import { AddValue, dslAccumulator } from "../dsl/corpus.ts";
import { cudaRuntimeSkip } from "./gpu_available.ts";

const skip = cudaRuntimeSkip();
if (skip) console.log(`sealed_gpu.test: skipping: ${skip}`);

const cacheDir = mkdtempSync(join(tmpdir(), "rk-cuda-sealed-"));
after(() => rmSync(cacheDir, { recursive: true, force: true }));

/** Messages of 1, 5, 16, 47 and 100 words: 4 to 400 payload bytes. */
const shapes = [1, 5, 16, 47, 100].map((n) =>
  defineMessage({ typeId: 4400 + n, name: `Words${n}`, fields: { w: array("u32", n) } })
);

describe("sealed slots on a GPU", { skip }, () => {
  let rt: CudaRuntime;
  before(async () => {
    rt = await CudaRuntime.create({ cacheDir });
  });
  after(async () => {
    if (!rt.isShutdown) await rt.shutdown();
  });

  it("echoes every byte of 6,000 messages of 4-400 bytes, 48 in flight, lanes wrapping", {
    timeout: 120_000,
  }, async () => {
    const k = await rt.launch(
      "sealed-echo",
      LaunchOptions.default().withQueueCapacity(64).withSlotSize(64 + 400),
    );
    let seed = 0x9e3779b9;
    const next = (): number => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return seed >>> 0;
    };
    let checked = 0;
    for (let round = 0; round < 125; round++) {
      const sent: { shape: number; words: number[] }[] = [];
      const replies: Promise<unknown>[] = [];
      for (let j = 0; j < 48; j++) {
        const shape = next() % shapes.length;
        const words = Array.from({ length: [1, 5, 16, 47, 100][shape] }, next);
        sent.push({ shape, words });
        replies.push(k.request(shapes[shape].of({ w: words }), { timeoutMs: 10_000 }));
      }
      const got = await Promise.all(replies);
      for (let j = 0; j < got.length; j++) {
        assert.deepEqual(
          (got[j] as { w: number[] }).w,
          sent[j].words,
          `round ${round}, message ${j}`,
        );
        checked++;
      }
    }
    assert.equal(checked, 6000);
    const m = k.metrics();
    assert.equal(m.processed, 6000);
    assert.equal(m.dropped, 0);
    await k.terminate();
  });

  it("metrics() and readState() show what each reply showed handled", {
    timeout: 60_000,
  }, async () => {
    const k = await rt.launch(dslAccumulator, LaunchOptions.default());
    for (let i = 1; i <= 2000; i++) {
      const r = await k.request(AddValue.of({ value: 1 }));
      assert.deepEqual(r, { total: i, count: i });
      // Read at once: the reply may land before the batch's state and counters.
      assert.equal(k.metrics().processed, i, `metrics after reply ${i}`);
      assert.deepEqual(k.readState(), { total: i, count: i }, `state after reply ${i}`);
    }
    await k.terminate();
  });
});
