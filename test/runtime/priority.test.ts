// Priority changes scheduling: the high lane is drained before the normal lane.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { encodeMessage, Priority } from "../../src/core/envelope.ts";
import { LaunchOptions, priority } from "../../src/runtime/launch_options.ts";
import { Order, orderer, Tagged } from "../fixtures/kernels.ts";
import { withRuntime } from "./helpers.ts";

describe("priority scheduling", () => {
  it("a HIGH message sent behind a backlog of normal ones is handled first", async () => {
    await withRuntime(async (rt) => {
      const k = await rt.launch(orderer, LaunchOptions.default().withPriority(priority.HIGH));
      await k.deactivate();
      for (let tag = 1; tag <= 100; tag++) await k.send(Tagged.of({ tag }));
      await k.send(Tagged.of({ tag: 999 }), { priority: Priority.High });
      await k.send(Tagged.of({ tag: 998 }), { priority: Priority.Critical });
      await k.activate();
      const order = new Map<number, number>();
      for (let i = 0; i < 102; i++) {
        const out = await k.receive({ timeoutMs: 5000 });
        assert.equal(out.header.typeId, Order.typeId);
        order.set(out.value!.tag, out.value!.order);
      }
      assert.equal(order.get(999), 1);
      assert.equal(order.get(998), 2);
      // The normal lane keeps FIFO order behind them.
      for (let tag = 1; tag <= 100; tag++) assert.equal(order.get(tag), tag + 2);
    });
  });

  it("a high-priority request overtakes queued normal requests", async () => {
    await withRuntime(async (rt) => {
      const k = await rt.launch(orderer, LaunchOptions.default().withPriority(priority.LOW));
      await k.deactivate();
      const normal = Array.from({ length: 50 }, (_, i) => k.request(Tagged.of({ tag: i })));
      const urgent = k.request(Tagged.of({ tag: 500 }), { priority: Priority.High });
      await k.activate();
      assert.deepEqual(await urgent, { tag: 500, order: 1 });
      const rest = await Promise.all(normal);
      assert.deepEqual(rest.map((r) => r!.order), Array.from({ length: 50 }, (_, i) => i + 2));
    });
  });

  it("K2K envelopes with High priority go to the destination's high lane", async () => {
    await withRuntime(async (rt) => {
      const dest = await rt.launch(orderer);
      await dest.deactivate();
      const broker = rt.k2kBroker();
      for (let tag = 1; tag <= 20; tag++) {
        await broker.send("host", "orderer", encodeMessage(Tagged.of({ tag })));
      }
      const urgent = encodeMessage(Tagged.of({ tag: 77 }), { priority: Priority.High });
      assert.equal((await broker.send("host", "orderer", urgent)).status, "Delivered");
      await dest.activate();
      const first = await dest.receive({ timeoutMs: 5000 });
      assert.deepEqual(first.value, { tag: 77, order: 1 });
    });
  });
});
