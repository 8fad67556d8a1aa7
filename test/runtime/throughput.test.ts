// The batched host API: sendMany, receiveMany / tryReceiveMany, and the batched kernel loop.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { ErrorCode, QueueFullError, ValidationError } from "../../src/core/errors.ts";
import { LaunchOptions, priority } from "../../src/runtime/launch_options.ts";
import { PartialSendError } from "../../src/runtime/kernel_handle.ts";
import { Add, orderer, Tagged } from "../fixtures/kernels.ts";
import { withRuntime } from "./helpers.ts";

describe("batched send and receive", () => {
  it("100k messages through a kernel via sendMany arrive complete and in order", async () => {
    await withRuntime(async (rt) => {
      const N = 100_000;
      const k = await rt.launch(
        orderer,
        LaunchOptions.default().withQueueCapacity(4096).withPriority(priority.HIGH),
      );
      const messages = Array.from({ length: N }, (_, i) => Tagged.of({ tag: i }));
      let received = 0;
      let outOfOrder = 0;
      const reader = (async () => {
        while (received < N) {
          for (const out of await k.receiveMany(4096, { timeoutMs: 20_000 })) {
            const v = out.value!;
            if (v.tag !== received || v.order !== received + 1) outOfOrder++;
            received++;
          }
        }
      })();
      assert.equal(await k.sendMany(messages, { timeoutMs: 20_000 }), N);
      await reader;
      assert.equal(received, N);
      assert.equal(outOfOrder, 0);
      assert.equal(k.metrics().processed, N);
      assert.deepEqual(k.readState(), { count: N });
    });
  });

  it("a full queue: PartialSendError names the accepted prefix, which is handled; none accepted is a plain QueueFullError", async () => {
    await withRuntime(async (rt) => {
      const k = await rt.launch(
        orderer,
        LaunchOptions.default().withQueueCapacity(16).withoutAutoActivate(),
      );
      const msgs = Array.from({ length: 40 }, (_, i) => Tagged.of({ tag: i }));
      const err = await k.sendMany(msgs, { timeoutMs: 30 }).then(
        () => assert.fail("all 40 cannot fit"),
        (e: unknown) => e,
      );
      assert.ok(err instanceof PartialSendError);
      assert.equal(err.code, ErrorCode.QueueFull);
      assert.equal(err.accepted, 16);
      assert.equal(err.rejected, 24);
      assert.ok(err.cause instanceof QueueFullError);
      await assert.rejects(
        k.sendMany(msgs.slice(16), { timeoutMs: 10 }),
        (e: unknown) => e instanceof QueueFullError && !(e instanceof PartialSendError),
      );
      await k.activate();
      const tags: number[] = [];
      while (tags.length < 16) {
        for (const o of await k.receiveMany(8, { timeoutMs: 5000 })) tags.push(o.value!.tag);
      }
      assert.deepEqual(tags, Array.from({ length: 16 }, (_, i) => i));
      assert.deepEqual(k.tryReceiveMany(10), []);
    });
  });

  it("sendMany checks every type first (nothing sent); receiveMany rejects a bad max", async () => {
    await withRuntime(async (rt) => {
      const k = await rt.launch(orderer);
      await assert.rejects(
        k.sendMany([Tagged.of({ tag: 1 }), Add.of({ value: 1 }) as never]),
        (e: unknown) => e instanceof ValidationError && e.code === ErrorCode.WrongMessageType,
      );
      assert.equal(await k.sendMany([]), 0);
      assert.throws(() => k.tryReceiveMany(0), ValidationError);
      await assert.rejects(k.receiveMany(1.5), ValidationError);
      assert.equal(k.metrics().processed, 0);
    });
  });
});
