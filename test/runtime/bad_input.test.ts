// Bad input: each case gets a typed error, and the runtime stays usable afterwards.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { KernelState } from "../../src/core/control_block.ts";
import { encodeMessage } from "../../src/core/envelope.ts";
import {
  CapacityError,
  DuplicateKernelError,
  ErrorCode,
  HandlerError,
  InvalidStateError,
  KernelFailedError,
  TimeoutError,
  ValidationError,
} from "../../src/core/errors.ts";
import type { KernelFailureEvent, KernelRuntime } from "../../src/runtime/backend.ts";
import { LaunchOptions } from "../../src/runtime/launch_options.ts";
import { CpuRuntime } from "../../src/backends/cpu/cpu_runtime.ts";
import {
  accumulator,
  Add,
  Big,
  bigEater,
  crasher,
  hiddenRef,
  slow,
  Stranger,
  thrower,
} from "../fixtures/kernels.ts";
import { withRuntime } from "./helpers.ts";

/** The runtime still launches and serves a kernel. */
async function assertUsable(rt: KernelRuntime, id = "usable"): Promise<void> {
  const p = await rt.launch(id);
  assert.deepEqual(await p.request(Add.of({ value: 4 }), { timeoutMs: 5000 }), { value: 4 });
  await p.terminate();
}

describe("bad input", () => {
  it("send, request and lifecycle calls on a terminated kernel throw InvalidStateError", async () => {
    await withRuntime(async (rt) => {
      const k = await rt.launch(accumulator);
      await k.terminate();
      await assert.rejects(k.send(Add.of({ value: 1 })), InvalidStateError);
      await assert.rejects(k.request(Add.of({ value: 1 })), InvalidStateError);
      await assert.rejects(k.receive(), InvalidStateError);
      await assert.rejects(k.deactivate(), InvalidStateError);
      await assertUsable(rt);
    });
  });

  it("a message of the wrong type is refused with E_WRONG_MESSAGE_TYPE", async () => {
    await withRuntime(async (rt) => {
      const k = await rt.launch(accumulator);
      const wrongType = (e: unknown) =>
        e instanceof ValidationError && e.code === ErrorCode.WrongMessageType;
      await assert.rejects(k.send(Stranger.of({ x: 1 }) as never), wrongType);
      await assert.rejects(k.request(Stranger.of({ x: 1 }) as never), wrongType);
      await assert.rejects(k.sendEnvelope(encodeMessage(Stranger.of({ x: 1 }))), wrongType);
      const receipt = rt.k2kBroker().send(
        "host",
        "accumulator",
        encodeMessage(Stranger.of({ x: 1 })),
      );
      await assert.rejects(receipt, wrongType);
      assert.deepEqual(await k.request(Add.of({ value: 1 })), { total: 1 });
    });
  });

  it("a payload over the slot size is refused with E_MESSAGE_TOO_LARGE", async () => {
    await withRuntime(async (rt) => {
      const tooLarge = (e: unknown) =>
        e instanceof ValidationError && e.code === ErrorCode.MessageTooLarge;
      // The passthrough kernel takes any type, so only the slot size limits it.
      const p = await rt.launch("processor", LaunchOptions.default().withSlotSize(256));
      await assert.rejects(p.send(Big.of({ data: new Array(256).fill(1) })), tooLarge);
      await assert.rejects(
        p.sendEnvelope(new Uint8Array(1024)),
        (e: unknown) => e instanceof ValidationError,
      );
      // A kernel whose input cannot fit its slots is refused at launch.
      await assert.rejects(
        rt.launch(bigEater, LaunchOptions.default().withSlotSize(512)),
        tooLarge,
      );
      assert.deepEqual(await p.request(Add.of({ value: 2 })), { value: 2 });
      await assertUsable(rt);
    });
  });

  it("launching an id that is already running throws DuplicateKernelError", async () => {
    await withRuntime(async (rt) => {
      await rt.launch(accumulator);
      await assert.rejects(
        rt.launch(accumulator),
        (e: unknown) => e instanceof DuplicateKernelError && e.code === ErrorCode.DuplicateKernel,
      );
      await assert.rejects(rt.launch("accumulator"), DuplicateKernelError);
      // Concurrent launches of one id: exactly one wins.
      const both = await Promise.allSettled([rt.launch("twin"), rt.launch("twin")]);
      assert.deepEqual(both.map((r) => r.status).sort(), ["fulfilled", "rejected"]);
      // Once terminated, the id is free again.
      await rt.getKernel("accumulator")!.terminate();
      const again = await rt.launch(accumulator);
      assert.deepEqual(await again.request(Add.of({ value: 1 })), { total: 1 });
    });
  });

  it("a capacity that is not a power of two throws CapacityError", () => {
    assert.throws(
      () => LaunchOptions.default().withQueueCapacity(1000),
      (e: unknown) => e instanceof CapacityError && e.code === ErrorCode.InvalidCapacity,
    );
  });

  it("a request timeout throws TimeoutError; the late reply is counted and dropped", async () => {
    await withRuntime(async (rt) => {
      const k = await rt.launch(slow);
      await assert.rejects(
        k.request(Add.of({ value: 300 }), { timeoutMs: 50 }),
        (e: unknown) => e instanceof TimeoutError && e.code === ErrorCode.Timeout,
      );
      // The next request gets its own reply (value 1), never the late one (value 300).
      assert.deepEqual(await k.request(Add.of({ value: 1 }), { timeoutMs: 5000 }), { total: 1 });
      assert.equal(k.metrics().lateReplies, 1);
      assert.equal(k.tryReceive(), undefined, "a late reply is not an output either");
    });
  });

  it("shutdown twice throws InvalidStateError; so does launch after shutdown", async () => {
    const rt = await CpuRuntime.create();
    await rt.launch(accumulator);
    await rt.shutdown();
    assert.equal(rt.isShutdown, true);
    assert.deepEqual(rt.listKernels(), []);
    await assert.rejects(rt.shutdown(), InvalidStateError);
    await assert.rejects(rt.launch("x"), InvalidStateError);
  });

  it("a definition its worker cannot find fails the launch with KernelFailedError", async () => {
    await withRuntime(async (rt) => {
      await assert.rejects(
        rt.launch(hiddenRef.def),
        (e: unknown) => e instanceof KernelFailedError && /exports 0 kernel/.test(e.message),
      );
      assert.deepEqual(rt.listKernels(), []);
      await assertUsable(rt);
    });
  });
});

describe("handler failures and supervision", () => {
  it("resume: the requester gets HandlerError, the failure is counted, the kernel serves on", async () => {
    await withRuntime(async (rt) => {
      const k = await rt.launch(thrower);
      await assert.rejects(
        k.request(Add.of({ value: -1 })),
        (e: unknown) =>
          e instanceof HandlerError && e.code === ErrorCode.HandlerFailed &&
          e.remoteName === "RangeError" && e.remoteMessage === "negative value -1" &&
          e.kernelId === "thrower",
      );
      assert.deepEqual(await k.request(Add.of({ value: 1 })), { total: 101 });
      const m = k.metrics();
      assert.equal(m.errors, 1);
      assert.equal(m.processed, 2);
      assert.equal(k.state(), KernelState.Active);
    });
  });

  it("restart: the state goes back to its initial value and a restart is counted", async () => {
    await withRuntime(async (rt) => {
      const k = await rt.launch(thrower, LaunchOptions.default().withSupervision("restart"));
      assert.deepEqual(await k.request(Add.of({ value: 5 })), { total: 105 });
      await assert.rejects(k.request(Add.of({ value: -1 })), HandlerError);
      assert.deepEqual(await k.request(Add.of({ value: 1 })), { total: 101 });
      assert.equal(k.metrics().restarts, 1);
    });
  });

  it("stop: the kernel fails, other pending requests are rejected, the runtime stays usable", async () => {
    await withRuntime(async (rt) => {
      const events: KernelFailureEvent[] = [];
      rt.onKernelFailure((e) => events.push(e));
      const k = await rt.launch(thrower, LaunchOptions.default().withSupervision("stop"));
      await k.deactivate();
      const bad = k.request(Add.of({ value: -1 }));
      const after = k.request(Add.of({ value: 1 }));
      const settled = Promise.allSettled([bad, after]);
      await k.activate().catch(() => undefined);
      const [r1, r2] = await settled;
      assert.ok(r1.status === "rejected" && r1.reason instanceof HandlerError);
      assert.ok(r2.status === "rejected" && r2.reason instanceof KernelFailedError);
      await k.settled;
      assert.equal(k.state(), KernelState.Failed);
      assert.ok(k.failure instanceof KernelFailedError);
      assert.deepEqual(events.map((e) => [e.kernelId, e.cause]), [["thrower", "stop"]]);
      assert.deepEqual(rt.listKernels(), []);
      // The failure stays visible in the runtime totals after the kernel leaves listKernels().
      assert.equal(rt.metrics().kernels.failed, 1);
      await assert.rejects(k.send(Add.of({ value: 1 })), KernelFailedError);
      await assertUsable(rt);
    });
  });

  it("escalate: like stop, and listeners hear cause escalate", async () => {
    await withRuntime(async (rt) => {
      const events: KernelFailureEvent[] = [];
      rt.onKernelFailure((e) => events.push(e));
      const k = await rt.launch(thrower, LaunchOptions.default().withSupervision("escalate"));
      await assert.rejects(k.request(Add.of({ value: -2 })), HandlerError);
      await k.settled;
      assert.equal(k.state(), KernelState.Failed);
      assert.deepEqual(events.map((e) => e.cause), ["escalate"]);
    });
  });

  it("a worker that dies: kernel Failed with KernelFailedError, pending requests rejected", async () => {
    await withRuntime(async (rt) => {
      const events: KernelFailureEvent[] = [];
      rt.onKernelFailure((e) => events.push(e));
      const k = await rt.launch(crasher);
      // The handler replies, then its worker dies of the error it left behind.
      assert.deepEqual(await k.request(Add.of({ value: 13 })), { total: 13 });
      await k.settled;
      assert.equal(k.state(), KernelState.Failed);
      assert.ok(k.failure instanceof KernelFailedError);
      assert.match(k.failure!.message, /worker died/);
      assert.equal(k.failure!.code, ErrorCode.KernelFailed);
      assert.deepEqual(events.map((e) => e.cause), ["died"]);
      await assert.rejects(k.request(Add.of({ value: 1 })), KernelFailedError);
      assert.deepEqual(rt.listKernels(), []);
      // The same id can be launched again.
      const again = await rt.launch(crasher);
      assert.deepEqual(await again.request(Add.of({ value: 2 })), { total: 2 });
      await assertUsable(rt);
    });
  });

  it("pending requests are rejected when the worker dies under them", async () => {
    await withRuntime(async (rt) => {
      const k = await rt.launch(crasher);
      await k.request(Add.of({ value: 13 }));
      // Requests racing the death: each settles, none hangs.
      const racing = await Promise.allSettled(
        Array.from({ length: 5 }, () => k.request(Add.of({ value: 1 }), { timeoutMs: 5000 })),
      ).catch(() => []);
      await k.settled;
      for (const r of racing) {
        if (r.status === "rejected") assert.ok(r.reason instanceof KernelFailedError);
      }
      assert.equal(k.metrics().state, "failed");
    });
  });
});
