/**
 * Packed batches on the CUDA backend (`KernelHandle.sendPacked`): messages copied to device
 * memory by DMA, one descriptor per batch in the input lane, handled by the persistent kernel a
 * warp at a time: lane-parallel (state only reduced), one after another (state read), with
 * outputs under back-pressure, mixed with ordinary sends, and across a park. Every check is
 * exact: counts, sums, the order of outputs. Skips, saying why, without a CUDA device.
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CudaRuntime } from "../../src/backends/cuda/cuda_runtime.ts";
import { decodeEnvelope } from "../../src/core/envelope.ts";
import { LaunchOptions } from "../../src/runtime/launch_options.ts";
import type { KernelHandle } from "../../src/runtime/kernel_handle.ts";
import type { FieldsSpec } from "../../src/core/schema.ts";
import { cudaRuntimeSkip } from "./gpu_available.ts";
import { cellWriter } from "./gpu_kernels.ts";
import {
  expectedCounter,
  Numbered,
  packedCounter,
  packedDoubler,
  packedSequencer,
  packNumbered,
  packWords,
} from "./packed_kernels.ts";

const skip = cudaRuntimeSkip();
if (skip) console.log(`packed_gpu.test: skipping: ${skip}`);

const cacheDir = mkdtempSync(join(tmpdir(), "rk-cuda-packed-"));
after(() => rmSync(cacheDir, { recursive: true, force: true }));

async function until(check: () => boolean, ms: number, what: string): Promise<void> {
  const end = performance.now() + ms;
  while (!check()) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

function processed<I extends FieldsSpec, O extends FieldsSpec, S extends FieldsSpec>(
  k: KernelHandle<I, O, S>,
): number {
  return Number(k.metrics().processed);
}

describe("packed batches on CUDA", { skip }, () => {
  it(
    "lane-parallel reductions equal handling each message in turn",
    { timeout: 120_000 },
    async () => {
      const rt = await CudaRuntime.create({ cacheDir });
      try {
        const k = await rt.launch(packedCounter, LaunchOptions.default());
        // Odd sizes: partial chunks of 32, partial staging groups, batches split by the ring.
        const sizes = [1, 31, 33, 1000, 4097, 250_000, 123_457];
        let sent = 0;
        for (const n of sizes) {
          assert.equal(await k.sendPacked(packWords(n, sent), { timeoutMs: 10_000 }), n);
          sent += n;
        }
        await until(() => processed(k) === sent, 20_000, `${sent} processed`);
        const state = k.readState()!;
        assert.deepEqual(state, expectedCounter(sent));
        const m = k.metrics();
        assert.equal(Number(m.dropped), 0);
        console.log(`cuda packed: ${sent} lane-parallel messages, state exact`);
      } finally {
        await rt.shutdown();
      }
    },
  );

  it("a handler that reads its state sees the messages in order; outputs wait for room", {
    timeout: 120_000,
  }, async () => {
    const rt = await CudaRuntime.create({ cacheDir });
    try {
      // An output queue far smaller than a batch: the kernel stops and goes on as the host reads.
      const k = await rt.launch(packedSequencer, LaunchOptions.default().withQueueCapacity(64));
      const n = 5000;
      const sending = k.sendPacked(packNumbered(n), { timeoutMs: 20_000 });
      const outs: { seq: number; count: number; previous: number }[] = [];
      while (outs.length < n) {
        for (const o of await k.receiveMany(256, { timeoutMs: 20_000 })) {
          outs.push(o.value as { seq: number; count: number; previous: number });
        }
      }
      assert.equal(await sending, n);
      for (let i = 0; i < n; i++) {
        assert.deepEqual(outs[i], { seq: i, count: i + 1, previous: i === 0 ? 0 : i - 1 });
      }
      assert.deepEqual(k.readState(), { count: n, last: n - 1 });
    } finally {
      await rt.shutdown();
    }
  });

  it("a batch the kernel did not finish comes back as its unhandled messages, in order", {
    timeout: 120_000,
  }, async () => {
    const rt = await CudaRuntime.create({ cacheDir });
    try {
      // 64 output slots, never read: the sequencer stops part-way through the batch.
      const k = await rt.launch(packedSequencer, LaunchOptions.default().withQueueCapacity(64));
      const n = 1000;
      assert.equal(await k.sendPacked(packNumbered(n), { timeoutMs: 20_000 }), n);
      await until(() => processed(k) === 64, 20_000, "64 processed (the output queue full)");
      const report = await k.terminate({ drain: false });
      const handled = k.tryReceiveMany(n).map((o) => (o.value as { seq: number }).seq);
      const returned = report.returned.map((e) => {
        const { header, payload } = decodeEnvelope(e);
        assert.equal(header.typeId, Numbered.typeId);
        assert.equal(header.destKernel, k.numericId);
        return Numbered.decode(payload);
      });
      assert.deepEqual(handled, Array.from({ length: 64 }, (_, i) => i));
      assert.deepEqual(
        returned,
        Array.from({ length: n - 64 }, (_, i) => ({ seq: 64 + i, value: 3 * (64 + i) + 1 })),
        "each message not handled comes back once, in order, with its payload",
      );
      assert.equal(k.unhandled, report.returned);
    } finally {
      await rt.shutdown();
    }
  });

  it("lane-parallel outputs come in message order, between ordinary sends", {
    timeout: 120_000,
  }, async () => {
    const rt = await CudaRuntime.create({ cacheDir });
    try {
      const k = await rt.launch(packedDoubler, LaunchOptions.default().withQueueCapacity(256));
      const n = 3000;
      await k.send(Numbered.of({ seq: 1_000_000, value: 5 }));
      const sending = k.sendPacked(packNumbered(n), { timeoutMs: 20_000 });
      const outs: { seq: number; twice: number }[] = [];
      let last = false;
      while (outs.length < n + 2) {
        for (const o of await k.receiveMany(256, { timeoutMs: 20_000 })) {
          outs.push(o.value as { seq: number; twice: number });
        }
        if (!last && outs.length > 0) {
          await sending;
          await k.send(Numbered.of({ seq: 2_000_000, value: 7 }));
          last = true;
        }
      }
      assert.deepEqual(outs[0], { seq: 1_000_000, twice: 10 });
      for (let i = 0; i < n; i++) assert.deepEqual(outs[i + 1], { seq: i, twice: 2 * (3 * i + 1) });
      assert.deepEqual(outs[n + 1], { seq: 2_000_000, twice: 14 });
    } finally {
      await rt.shutdown();
    }
  });

  it(
    "a batch in progress survives a park (a module loaded meanwhile)",
    { timeout: 120_000 },
    async () => {
      const rt = await CudaRuntime.create({ cacheDir });
      try {
        const k = await rt.launch(packedCounter, LaunchOptions.default());
        const n = 2_000_000;
        const sending = k.sendPacked(packWords(n), { timeoutMs: 30_000 });
        await until(() => processed(k) > 0, 20_000, "the batch to start");
        // A new definition's module load parks every kernel of the context.
        const other = await rt.launch(cellWriter("packed_park_other"), LaunchOptions.default());
        assert.equal(await sending, n);
        await until(() => processed(k) === n, 30_000, `${n} processed`);
        assert.deepEqual(k.readState(), expectedCounter(n));
        assert.ok(rt.quietStats().parks >= 1, "the kernel was parked");
        await other.terminate();
      } finally {
        await rt.shutdown();
      }
    },
  );
});
