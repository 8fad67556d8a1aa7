// `KernelHandle.sendPacked` on the CPU backend (an envelope per message, the fallback of backends
// without a device path): order, state, and the errors for bad input. The CUDA path is
// test/cuda/packed_gpu.test.ts.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { ErrorCode, ValidationError } from "../../src/core/errors.ts";
import { LaunchOptions } from "../../src/runtime/launch_options.ts";
import {
  expectedCounter,
  packedCounter,
  packedSequencer,
  packNumbered,
  packWords,
} from "../cuda/packed_kernels.ts";
import { withRuntime } from "./helpers.ts";

describe("sendPacked (CPU backend)", () => {
  it("handles packed messages in order, after what was sent before", async () => {
    await withRuntime(async (rt) => {
      const k = await rt.launch(packedSequencer, LaunchOptions.default().withQueueCapacity(256));
      const n = 2000;
      const sending = k.sendPacked(packNumbered(n), { timeoutMs: 20_000 });
      const outs: unknown[] = [];
      while (outs.length < n) {
        for (const o of await k.receiveMany(256, { timeoutMs: 20_000 })) outs.push(o.value);
      }
      assert.equal(await sending, n);
      for (let i = 0; i < n; i++) {
        assert.deepEqual(outs[i], { seq: i, count: i + 1, previous: i === 0 ? 0 : i - 1 });
      }
    });
  });

  it("reductions reach the same state as the reference", async () => {
    await withRuntime(async (rt) => {
      const k = await rt.launch(packedCounter, LaunchOptions.default().withQueueCapacity(1024));
      const n = 3000;
      assert.equal(await k.sendPacked(packWords(n), { timeoutMs: 20_000 }), n);
      const end = performance.now() + 20_000;
      while (k.metrics().processed < n && performance.now() < end) {
        await new Promise((r) => setTimeout(r, 2));
      }
      assert.deepEqual(k.readState(), expectedCounter(n));
    });
  });

  it("rejects bytes that are not whole messages, and kernels without an input schema", async () => {
    await withRuntime(async (rt) => {
      const k = await rt.launch(packedSequencer, LaunchOptions.default());
      await assert.rejects(
        k.sendPacked(new Uint8Array(12)),
        (e: unknown) =>
          e instanceof ValidationError && e.code === ErrorCode.InvalidArgument &&
          /12 bytes are not a whole number of Numbered messages \(8 bytes each\)/.test(e.message),
      );
      assert.equal(k.metrics().processed, 0);
      const echo = await rt.launch("echo", LaunchOptions.default());
      await assert.rejects(
        echo.sendPacked(new Uint8Array(8)),
        (e: unknown) => e instanceof ValidationError && /has no input schema/.test(e.message),
      );
      assert.equal(await k.sendPacked(new Uint8Array(0)), 0);
    });
  });
});
