// Launching CPU kernels, request/reply, state, outputs, lifecycle transitions and termination.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { KernelState } from "../../src/core/control_block.ts";
import { ErrorCode, InvalidStateError } from "../../src/core/errors.ts";
import { LaunchOptions } from "../../src/runtime/launch_options.ts";
import { RingKernel } from "../../src/runtime/runtime.ts";
import { accumulator, Add, silent, Tagged } from "../fixtures/kernels.ts";
import { withRuntime } from "./helpers.ts";

const isInvalidState = (e: unknown) =>
  e instanceof InvalidStateError && e.code === ErrorCode.InvalidState;

describe("CPU kernels: launch and request/reply", () => {
  it("runs the design example: an accumulator whose state persists between messages", async () => {
    const rt = await RingKernel.builder().build();
    try {
      const k = await rt.launch(accumulator, LaunchOptions.default().withQueueCapacity(4096));
      assert.equal(k.state(), KernelState.Active);
      assert.deepEqual(await k.request(Add.of({ value: 2 }), { timeoutMs: 5000 }), { total: 2 });
      assert.deepEqual(await k.request(Add.of({ value: 3.5 }), { timeoutMs: 5000 }), {
        total: 5.5,
      });
      assert.deepEqual(k.readState(), { total: 5.5, count: 2 });
      const replies = await Promise.all(
        Array.from({ length: 100 }, () => k.request(Add.of({ value: 1 }))),
      );
      assert.equal(replies.length, 100);
      assert.equal(Math.max(...replies.map((r) => r!.total)), 105.5);
      const m = k.metrics();
      assert.equal(m.processed, 102);
      assert.equal(m.state, "active");
      assert.equal(m.errors, 0);
      assert.equal(m.latency.count, 102);
      assert.equal(k.requestLatency().count, 102);
    } finally {
      await rt.shutdown();
    }
  });

  it("launching by id alone runs the built-in passthrough kernel", async () => {
    await withRuntime(async (rt) => {
      const p = await rt.launch("processor", LaunchOptions.default());
      assert.deepEqual(await p.request(Add.of({ value: 7 })), { value: 7 });
      assert.deepEqual(await p.request(Tagged.of({ tag: 42 })), { tag: 42 });
      await p.send(Tagged.of({ tag: 9 }));
      const out = await p.receive({ timeoutMs: 5000 });
      assert.equal(out.header.typeId, Tagged.typeId);
      assert.deepEqual(Tagged.decode(out.payload), { tag: 9 });
    });
  });

  it("getKernel, listKernels and metrics cover the running kernels", async () => {
    await withRuntime(async (rt) => {
      const a = await rt.launch(accumulator);
      await rt.launch("processor");
      assert.deepEqual(rt.listKernels(), ["accumulator", "processor"]);
      assert.equal(rt.getKernel("accumulator"), a);
      assert.equal(rt.getKernel("nope"), undefined);
      await a.request(Add.of({ value: 1 }));
      const m = rt.metrics();
      assert.equal(m.kernels.active, 2);
      assert.equal(m.processed, 1);
      assert.equal(rt.kernelMetrics().length, 2);
      await a.terminate();
      assert.deepEqual(rt.listKernels(), ["processor"]);
      assert.equal(rt.metrics().processed, 1, "a terminated kernel's counts are kept");
    });
  });

  it("send + receive/tryReceive deliver outputs in order", async () => {
    await withRuntime(async (rt) => {
      const k = await rt.launch(accumulator);
      assert.equal(k.tryReceive(), undefined);
      for (let i = 1; i <= 5; i++) await k.send(Add.of({ value: i }));
      const totals: number[] = [];
      for (let i = 0; i < 5; i++) totals.push((await k.receive({ timeoutMs: 5000 })).value!.total);
      assert.deepEqual(totals, [1, 3, 6, 10, 15]);
      assert.equal(k.tryReceive(), undefined);
    });
  });

  it("a handler that returns nothing answers a request with undefined", async () => {
    await withRuntime(async (rt) => {
      const k = await rt.launch(silent);
      assert.equal(await k.request(Add.of({ value: 1 })), undefined);
      assert.deepEqual(k.readState(), { seen: 1 });
    });
  });
});

describe("CPU kernels: lifecycle", () => {
  it("follows Launched → Active ⇄ Deactivated → Terminated", async () => {
    await withRuntime(async (rt) => {
      const k = await rt.launch(accumulator, LaunchOptions.default().withoutAutoActivate());
      assert.equal(k.state(), KernelState.Launched);
      await assert.rejects(k.deactivate(), isInvalidState);
      await k.activate();
      assert.equal(k.state(), KernelState.Active);
      await assert.rejects(k.activate(), isInvalidState);
      await k.deactivate();
      assert.equal(k.state(), KernelState.Deactivated);
      await assert.rejects(k.deactivate(), isInvalidState);
      await k.activate();
      assert.equal(k.state(), KernelState.Active);
      await k.terminate();
      assert.equal(k.state(), KernelState.Terminated);
      await assert.rejects(k.activate(), isInvalidState);
      await assert.rejects(k.terminate(), isInvalidState);
    });
  });

  it("a deactivated kernel keeps incoming messages until reactivated", async () => {
    await withRuntime(async (rt) => {
      const k = await rt.launch(accumulator);
      await k.deactivate();
      for (let i = 0; i < 10; i++) await k.send(Add.of({ value: 1 }));
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(k.metrics().processed, 0);
      assert.equal(k.metrics().inputDepth, 10);
      await k.activate();
      assert.deepEqual(await k.request(Add.of({ value: 0 })), { total: 10 });
    });
  });

  it("terminate drains queued messages by default, replies reaching their requesters", async () => {
    await withRuntime(async (rt) => {
      const k = await rt.launch(accumulator);
      await k.deactivate();
      const pending = Array.from({ length: 20 }, () => k.request(Add.of({ value: 1 })));
      const report = await k.terminate();
      assert.deepEqual(report.returned, []);
      assert.equal(report.processed, 20);
      const replies = await Promise.all(pending);
      assert.equal(replies.at(-1)!.total, 20);
    });
  });

  it("terminate({ drain: false }) returns the queued messages and rejects their requests", async () => {
    await withRuntime(async (rt) => {
      const k = await rt.launch(accumulator);
      await k.deactivate();
      const pending = Array.from({ length: 5 }, () => k.request(Add.of({ value: 1 })));
      for (let i = 0; i < 3; i++) await k.send(Add.of({ value: 1 }));
      const settled = Promise.allSettled(pending);
      const report = await k.terminate({ drain: false });
      assert.equal(report.returned.length, 8);
      assert.equal(report.processed, 0);
      for (const r of await settled) {
        assert.equal(r.status, "rejected");
        assert.ok(isInvalidState((r as PromiseRejectedResult).reason));
      }
    });
  });
});
