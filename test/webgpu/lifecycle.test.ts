/**
 * The WebGPU runtime's life: device loss (`device.destroy()` on lavapipe) fails every kernel with
 * a typed error and refuses launches, and a new runtime works; a kernel killed on a terminate
 * timeout returns what its GPU ring held as dead letters; 100 launch/terminate cycles leave the
 * live GPU buffers where they were; shutdown frees every buffer. Skips, saying why, where no
 * WebGPU adapter is usable.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { WebGpuRuntime } from "../../src/backends/webgpu/webgpu_runtime.ts";
import { KernelState } from "../../src/core/control_block.ts";
import { EnvelopeOffset } from "../../src/core/envelope.ts";
import {
  ErrorCode,
  InvalidStateError,
  KernelFailedError,
  WebGpuDeviceLostError,
} from "../../src/core/errors.ts";
import type { KernelFailureEvent } from "../../src/runtime/backend.ts";
import { LaunchOptions } from "../../src/runtime/launch_options.ts";
import { AddValue, dslAccumulator } from "../dsl/corpus.ts";
import { FanOut, fanOut, fanOutEcho, relayEcho, relaySink } from "./kernels.ts";
import { webGpuSkip } from "./probe.ts";

const skip = await webGpuSkip("test/webgpu/lifecycle.test.ts");
const LONG = { timeout: 120_000 };

const lostCause = (e: unknown): boolean =>
  e instanceof KernelFailedError && e.cause instanceof WebGpuDeviceLostError &&
  e.cause.code === ErrorCode.WebGpuDeviceLost;

describe("WebGPU runtime lifecycle", { skip }, () => {
  it(
    "device loss fails every kernel with a typed error; launches are refused; a new runtime works",
    LONG,
    async () => {
      const rt = await WebGpuRuntime.create();
      const failures: KernelFailureEvent[] = [];
      rt.onKernelFailure((e) => failures.push(e));
      const a = await rt.launch(dslAccumulator);
      const b = await rt.launch(relaySink, LaunchOptions.default().withoutAutoActivate());
      assert.deepEqual(await a.request(AddValue.of({ value: 1 })), { total: 1, count: 1 });
      // A request queued when the device goes: rejected, and its envelope comes back unhandled.
      const pending = a.request(AddValue.of({ value: 2 }));
      rt.device.destroy();
      await assert.rejects(pending, lostCause);
      await a.settled;
      await b.settled;
      for (const k of [a, b]) {
        assert.equal(k.state(), KernelState.Failed);
        assert.ok(lostCause(k.failure), String(k.failure));
      }
      assert.equal(a.unhandled.length, 1);
      const dv = new DataView(a.unhandled[0].buffer, a.unhandled[0].byteOffset);
      assert.equal(dv.getFloat32(EnvelopeOffset.payload, true), 2);
      assert.deepEqual(failures.map((f) => [f.kernelId, f.cause]).sort(), [
        ["dsl_accumulator", "died"],
        ["wg_sink", "died"],
      ]);
      assert.ok(rt.failure instanceof WebGpuDeviceLostError);
      await assert.rejects(
        rt.launch(dslAccumulator),
        (e: unknown) => e instanceof WebGpuDeviceLostError && /build a new runtime/.test(e.message),
      );
      await assert.rejects(a.request(AddValue.of({ value: 3 })), KernelFailedError);
      assert.deepEqual(rt.listKernels(), []);
      assert.deepEqual(await rt.shutdown(), {});

      const again = await WebGpuRuntime.create();
      const k = await again.launch(dslAccumulator);
      assert.deepEqual(await k.request(AddValue.of({ value: 5 })), { total: 5, count: 1 });
      await again.shutdown();
    },
  );

  it(
    "a kernel killed on a terminate timeout: its GPU ring's messages become dead letters",
    LONG,
    async () => {
      const rt = await WebGpuRuntime.create();
      try {
        // Four thousand K2K messages for a kernel that can answer two per round (its output queue
        // holds two): the drain takes far longer than the terminate timeout.
        const echo = await rt.launch(
          relayEcho,
          LaunchOptions.default().withInputCapacity(4096).withOutputCapacity(2),
        );
        const fan = await rt.launch(fanOutEcho);
        const failures: KernelFailureEvent[] = [];
        rt.onKernelFailure((e) => failures.push(e));
        assert.deepEqual(await fan.request(FanOut.of({ count: 4000, base: 0 })), { sent: 4000 });
        await assert.rejects(echo.terminate({ timeoutMs: 20 }), KernelFailedError);
        assert.equal(echo.state(), KernelState.Failed);
        assert.deepEqual(failures.map((f) => f.cause), ["killed"]);
        let dead = rt.takeDeadLetters();
        for (let i = 0; dead.length === 0 && i < 500; i++) {
          await new Promise((r) => setTimeout(r, 10));
          dead = rt.takeDeadLetters();
        }
        assert.ok(dead.length > 0, "no dead letters");
        assert.ok(dead.every((d) => d.reason === "KernelGone" && d.to === "wg_relay_echo"));
        // Every message was either handled or returned, each once, in order.
        const handled = echo.metrics().processed;
        assert.equal(handled + dead.length, 4000);
        assert.deepEqual(
          dead.map((d) => new DataView(d.envelope.buffer).getFloat32(EnvelopeOffset.payload, true)),
          Array.from({ length: dead.length }, (_, i) => handled + i),
        );
      } finally {
        await rt.shutdown();
      }
    },
  );

  it("100 launch/terminate cycles leave the live GPU buffers flat", LONG, async () => {
    const rt = await WebGpuRuntime.create();
    // One cycle of each kind first: the staging buffer grows to the largest round it serves.
    const cycle = async (i: number, k2k: boolean): Promise<void> => {
      const k = await rt.launch(dslAccumulator);
      assert.deepEqual(await k.request(AddValue.of({ value: i })), { total: i, count: 1 });
      await k.terminate();
      if (!k2k) return;
      // A K2K pair and the passthrough as well (routes, other pipelines).
      const s = await rt.launch(relaySink);
      const f = await rt.launch(fanOut);
      const e = await rt.launch("echo");
      await f.request(FanOut.of({ count: 2, base: i }));
      assert.deepEqual(await e.request(AddValue.of({ value: i })), { value: i });
      await Promise.all([f.terminate(), s.terminate(), e.terminate()]);
    };
    await cycle(0, true);
    const before = rt.gpuBuffers();
    const t0 = performance.now();
    for (let i = 0; i < 100; i++) await cycle(i, i % 25 === 24);
    const per = (performance.now() - t0) / 100;
    console.log(`webgpu launch + request + terminate: ${per.toFixed(1)} ms per cycle`);
    assert.deepEqual(rt.gpuBuffers(), before);
    assert.deepEqual(rt.listKernels(), []);
    await rt.shutdown();
    assert.deepEqual(rt.gpuBuffers(), { live: 0, bytes: 0 });
  });

  it("shutdown terminates running kernels, returns their reports, frees every buffer", async () => {
    const rt = await WebGpuRuntime.create();
    const k = await rt.launch(dslAccumulator);
    await k.deactivate();
    for (let i = 0; i < 4; i++) await k.send(AddValue.of({ value: 1 }));
    assert.ok(rt.gpuBuffers().live > 0);
    const reports = await rt.shutdown();
    assert.equal(reports["dsl_accumulator"].returned.length, 4);
    assert.equal(k.state(), KernelState.Terminated);
    assert.deepEqual(rt.gpuBuffers(), { live: 0, bytes: 0 });
    await assert.rejects(rt.shutdown(), InvalidStateError);
    await assert.rejects(rt.launch(dslAccumulator), InvalidStateError);
  });
});
