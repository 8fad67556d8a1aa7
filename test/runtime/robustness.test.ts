// Heartbeat watchdog, terminate with a timeout, and K2K sends racing a terminate.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { KernelState } from "../../src/core/control_block.ts";
import { ErrorCode, KernelFailedError, ValidationError } from "../../src/core/errors.ts";
import type { KernelFailureEvent } from "../../src/runtime/backend.ts";
import { LaunchOptions } from "../../src/runtime/launch_options.ts";
import { accumulator, Add, Forward, forwarder, sink, STATUSES } from "../fixtures/kernels.ts";
import { closer, spinner } from "../fixtures/kernels_extra.ts";
import { delay, withRuntime } from "./helpers.ts";

const isFailed = (e: unknown) =>
  e instanceof KernelFailedError && e.code === ErrorCode.KernelFailed;

describe("robustness", () => {
  it("watchdog: a stuck handler fails the kernel; parked kernels never trip it", async () => {
    await withRuntime(async (rt) => {
      const failures: KernelFailureEvent[] = [];
      rt.onKernelFailure((e) => failures.push(e));
      const idle = await rt.launch(accumulator, LaunchOptions.default().withHeartbeatTimeout(50));
      const idleLaunched = await rt.launch(
        "processor",
        LaunchOptions.default().withHeartbeatTimeout(50).withoutAutoActivate(),
      );
      const stuck = await rt.launch(spinner, LaunchOptions.default().withHeartbeatTimeout(150));
      assert.deepEqual(await stuck.request(Add.of({ value: 2 })), { total: 2 });
      const pending = stuck.request(Add.of({ value: 1 }), { timeoutMs: 10_000 });
      await assert.rejects(pending, isFailed);
      assert.equal(stuck.state(), KernelState.Failed);
      assert.match(stuck.failure!.message, /watchdog/);
      await delay(300); // parked, far longer than their 50 ms timeout
      assert.equal(idle.state(), KernelState.Active);
      assert.equal(idleLaunched.state(), KernelState.Launched);
      assert.deepEqual(await idle.request(Add.of({ value: 3 })), { total: 3 });
      assert.deepEqual(failures.map((f) => [f.kernelId, f.cause]), [["spinner", "watchdog"]]);
      assert.throws(() => LaunchOptions.default().withHeartbeatTimeout(5), ValidationError);
    });
  });

  it("watchdog: a worker that closes itself is declared Failed", async () => {
    await withRuntime(async (rt) => {
      const failures: KernelFailureEvent[] = [];
      rt.onKernelFailure((e) => failures.push(e));
      const k = await rt.launch(closer, LaunchOptions.default().withHeartbeatTimeout(100));
      await assert.rejects(k.request(Add.of({ value: 1 }), { timeoutMs: 10_000 }), isFailed);
      await k.settled;
      assert.equal(k.state(), KernelState.Failed);
      // Bun reports the closed worker (close event); Deno says nothing and the watchdog fires.
      assert.equal(failures.length, 1);
      assert.ok(["died", "watchdog"].includes(failures[0].cause), failures[0].cause);
      assert.deepEqual(rt.listKernels(), []);
    });
  });

  it("terminate({ timeoutMs }) force-kills a stuck handler, marks Failed, rejects pending requests", async () => {
    await withRuntime(async (rt) => {
      const failures: KernelFailureEvent[] = [];
      rt.onKernelFailure((e) => failures.push(e));
      const k = await rt.launch(spinner);
      const stuck = k.request(Add.of({ value: 1 }), { timeoutMs: 10_000 });
      const queued = k.request(Add.of({ value: 2 }), { timeoutMs: 10_000 });
      // Checked from now on: they reject while terminate is awaited.
      const stuckRejected = assert.rejects(stuck, isFailed);
      const queuedRejected = assert.rejects(queued, isFailed);
      await delay(20);
      const t0 = performance.now();
      await assert.rejects(k.terminate({ timeoutMs: 150 }), isFailed);
      assert.ok(performance.now() - t0 < 5000);
      await stuckRejected;
      await queuedRejected;
      assert.equal(k.state(), KernelState.Failed);
      // Both envelopes come back: the queued one, and the one whose handler never returned.
      assert.equal(k.unhandled.length, 2);
      assert.deepEqual(failures.map((f) => f.cause), ["killed"]);
      // The runtime stays usable, and the id can be launched again.
      const again = await rt.launch(spinner);
      assert.deepEqual(await again.request(Add.of({ value: 5 })), { total: 5 });
      await assert.rejects(again.terminate({ timeoutMs: -1 }), ValidationError);
    });
  });

  it("K2K sends racing the destination's terminate: every Delivered message is handled or returned", async () => {
    await withRuntime(async (rt) => {
      const fwd = await rt.launch(forwarder, LaunchOptions.default().withQueueCapacity(4096));
      for (let trial = 0; trial < 4; trial++) {
        // The sink's id is free again once terminated: each trial races a fresh one.
        const dest = await rt.launch(sink, LaunchOptions.default().withQueueCapacity(256));
        const M = 3000;
        const orders = Array.from(
          { length: M },
          () => Forward.of({ dest: 0, value: 1, priority: 1 }),
        );
        const receipts: string[] = [];
        const reading = (async () => {
          while (receipts.length < M) {
            for (const o of await fwd.receiveMany(4096, { timeoutMs: 10_000 })) {
              receipts.push(STATUSES[o.value!.status]);
            }
          }
        })();
        await fwd.sendMany(orders, { timeoutMs: 10_000 });
        await delay(trial); // let the forwarder get going, then pull the destination away
        const report = await dest.terminate({ drain: trial % 2 === 0 });
        await reading;
        const delivered = receipts.filter((s) => s === "Delivered").length;
        const notFound = receipts.filter((s) => s === "NotFound").length;
        assert.equal(
          delivered,
          report.processed + report.returned.length,
          `trial ${trial}: delivered ${delivered}, processed ${report.processed}, ` +
            `returned ${report.returned.length}`,
        );
        // Every order got exactly one receipt. Besides Delivered and NotFound (the race), a send
        // may also meet a full destination (QueueFull/Timeout): refused, so not counted above.
        const refused = receipts.filter((s) => s === "QueueFull" || s === "Timeout").length;
        assert.equal(
          delivered + notFound + refused,
          M,
          `trial ${trial}: receipts ${receipts.length}`,
        );
      }
    });
  });
});
