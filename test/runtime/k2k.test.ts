// Kernel-to-kernel messaging: worker-to-worker delivery, receipts, the host broker, K2K off.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { encodeMessage, Priority } from "../../src/core/envelope.ts";
import { HandlerError, ValidationError } from "../../src/core/errors.ts";
import { DeliveryStatus } from "../../src/runtime/k2k.ts";
import { LaunchOptions } from "../../src/runtime/launch_options.ts";
import { Add, Forward, forwarder, sink, STATUSES } from "../fixtures/kernels.ts";
import { withRuntime } from "./helpers.ts";

const SINK = 0;
const NOWHERE = 1;

describe("K2K messaging", () => {
  it("a handler's ctx.send lands in the destination's inbox without the host", async () => {
    await withRuntime(async (rt) => {
      const s = await rt.launch(sink);
      const f = await rt.launch(forwarder);
      for (let i = 1; i <= 10; i++) {
        const r = await f.request(Forward.of({ dest: SINK, value: i, priority: Priority.Normal }));
        assert.equal(STATUSES[r!.status], DeliveryStatus.Delivered);
      }
      // The sink's outputs (its replies to non-request K2K messages) reach the host.
      const totals: number[] = [];
      for (let i = 0; i < 10; i++) totals.push((await s.receive({ timeoutMs: 5000 })).value!.total);
      assert.equal(totals.at(-1), 55);
      const out = (await s.request(Add.of({ value: 0 })))!;
      assert.equal(out.total, 55);
      const m = rt.metrics();
      assert.equal(m.k2k.delivered, 10);
      assert.equal(m.k2k.sent, 10);
    });
  });

  it("NotFound for an unknown kernel, and for one that has terminated", async () => {
    await withRuntime(async (rt) => {
      const f = await rt.launch(forwarder);
      let r = await f.request(Forward.of({ dest: NOWHERE, value: 1, priority: 1 }));
      assert.equal(STATUSES[r!.status], DeliveryStatus.NotFound);
      const s = await rt.launch(sink);
      r = await f.request(Forward.of({ dest: SINK, value: 1, priority: 1 }));
      assert.equal(STATUSES[r!.status], DeliveryStatus.Delivered);
      await s.terminate();
      r = await f.request(Forward.of({ dest: SINK, value: 1, priority: 1 }));
      assert.equal(STATUSES[r!.status], DeliveryStatus.NotFound);
      assert.equal(rt.metrics().k2k.notFound, 2);
    });
  });

  it("a full destination is reported as QueueFull, never lost silently", async () => {
    await withRuntime(async (rt) => {
      const s = await rt.launch(sink, LaunchOptions.default().withInputCapacity(4));
      await s.deactivate();
      const f = await rt.launch(forwarder);
      const statuses: string[] = [];
      for (let i = 0; i < 6; i++) {
        const r = await f.request(Forward.of({ dest: SINK, value: 1, priority: 1 }));
        statuses.push(STATUSES[r!.status]);
      }
      assert.deepEqual(statuses, [
        ...Array(4).fill(DeliveryStatus.Delivered),
        DeliveryStatus.QueueFull,
        DeliveryStatus.QueueFull,
      ]);
      await s.activate();
      assert.deepEqual(await s.request(Add.of({ value: 0 })), { total: 4 });
      assert.equal(rt.metrics().k2k.queueFull, 2);
    });
  });

  it("the host broker sends envelopes with receipts", async () => {
    await withRuntime(async (rt) => {
      const s = await rt.launch(sink, LaunchOptions.default().withInputCapacity(2));
      const broker = rt.k2kBroker();
      assert.deepEqual(broker.routes(), ["sink"]);
      const env = encodeMessage(Add.of({ value: 5 }));
      assert.deepEqual(await broker.send("host", "sink", env), {
        status: DeliveryStatus.Delivered,
        dest: "sink",
      });
      assert.equal((await broker.send("host", "ghost", env)).status, DeliveryStatus.NotFound);
      assert.deepEqual((await s.receive({ timeoutMs: 5000 })).value, { total: 5 });
      await s.deactivate();
      assert.equal((await broker.send("host", "sink", env)).status, DeliveryStatus.Delivered);
      assert.equal((await broker.send("host", "sink", env)).status, DeliveryStatus.Delivered);
      assert.equal((await broker.send("host", "sink", env)).status, DeliveryStatus.QueueFull);
      assert.equal(
        (await broker.send("host", "sink", env, { timeoutMs: 20 })).status,
        DeliveryStatus.Timeout,
      );
      await assert.rejects(broker.send("host", "sink", new Uint8Array(10)), ValidationError);
      await s.activate();
      assert.deepEqual(await s.request(Add.of({ value: 0 })), { total: 15 });
    });
  });

  it("a kernel launched with K2K off is unreachable and cannot send", async () => {
    await withRuntime(async (rt) => {
      await rt.launch(sink, LaunchOptions.default().withK2k(false));
      const f = await rt.launch(forwarder);
      const r = await f.request(Forward.of({ dest: SINK, value: 1, priority: 1 }));
      assert.equal(STATUSES[r!.status], DeliveryStatus.NotFound);
      assert.deepEqual(rt.k2kBroker().routes(), ["forwarder"]);
      await f.terminate();
      const lone = await rt.launch(forwarder, LaunchOptions.default().withK2k(false));
      await assert.rejects(
        lone.request(Forward.of({ dest: SINK, value: 1, priority: 1 })),
        (e: unknown) =>
          e instanceof HandlerError && e.remoteName === "InvalidStateError" &&
          /K2K off/.test(e.remoteMessage),
      );
    });
  });
});
