// The returned messages of a kernel whose device side runs on after its exit settled (a CUDA
// kernel killed while its handler still spins on the GPU): a `KernelHandle` over a fake backend
// site whose "device" (this test) keeps taking input after the kill. The handle must not collect
// the input lanes or the backend's leftovers until the site says the kernel stopped (else a
// message could be both handled and returned); then every message sent is either handled or in
// `unhandled`, exactly once, and the handle's counters and outputs are the final ones. Sites
// without the hook (CPU, WebGPU) collect when the exit settles, as before.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { KernelState } from "../../src/core/control_block.ts";
import { Priority } from "../../src/core/envelope.ts";
import { InvalidStateError, KernelFailedError } from "../../src/core/errors.ts";
import type { KernelHandle } from "../../src/runtime/kernel_handle.ts";
import { fakeKernel, Tag, tagOf } from "./fake_site.ts";

async function sendTags(handle: KernelHandle, tags: readonly number[]): Promise<void> {
  for (const n of tags) await handle.send(Tag.of({ n }));
}

describe("returned messages of a kernel that runs on after its exit settled", () => {
  it("are collected once it stopped: handled or returned, exactly once; final counters", async () => {
    const k = fakeKernel({ hook: "defer", leftovers: [900] });
    await sendTags(k.handle, [1, 2, 3, 4, 5, 6]);
    await k.handle.send(Tag.of({ n: 7 }), { priority: Priority.High });
    assert.ok(k.step()); // 7 (high first)
    k.detachSteps = 1; // 1, taken between the handle's last drain and its copy
    k.kill();
    await k.handle.settled;
    // Killed: Failed at once, but nothing collected while the device side runs.
    assert.equal(k.handle.state(), KernelState.Failed);
    assert.deepEqual(k.failures, ["killed"]);
    assert.deepEqual(k.handle.unhandled, []);
    assert.equal(k.pendingCollectors, 1);
    assert.deepEqual(k.log, ["whenStopped", "detach while running", "dispose"]);
    await assert.rejects(k.handle.send(Tag.of({ n: 99 })), KernelFailedError);
    // The handle reads its copy: the output of 7 (drained before the copy) and of 1 (in it).
    const early = k.handle.tryReceiveMany(10).map((o) => Tag.decode(o.payload).n);
    assert.deepEqual(early, [7, 1]);
    // The device goes on after the copy: 2 and 3 are handled, not returned.
    assert.ok(k.step());
    assert.ok(k.step());
    assert.deepEqual(k.handle.tryReceiveMany(10), [], "the old copy has no newer outputs");
    k.stop();
    assert.deepEqual(k.handle.unhandled.map(tagOf), [4, 5, 6, 900]);
    assert.deepEqual(k.log.slice(3), ["leftovers", "detach"]);
    // Final counters and the outputs written after the first copy, none given twice.
    assert.equal(k.handle.metrics().processed, 4);
    assert.equal(k.handle.metrics().inputDepth, 0);
    assert.deepEqual(k.handle.tryReceiveMany(10).map((o) => Tag.decode(o.payload).n), [2, 3]);
    assert.deepEqual(k.handle.tryReceiveMany(10), []);
    assert.deepEqual(k.handled, [7, 1, 2, 3]);
  });

  it("every message is handled or returned exactly once, whatever the device does when", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 12 }),
        fc.integer({ min: 0, max: 12 }),
        fc.integer({ min: 0, max: 3 }),
        fc.integer({ min: 0, max: 12 }),
        fc.boolean(),
        async (sent, before, inDetach, after, readBetween) => {
          const k = fakeKernel({ hook: "defer" });
          const tags = Array.from({ length: sent }, (_, i) => i + 1);
          await sendTags(k.handle, tags);
          for (let i = 0; i < before; i++) k.step();
          k.detachSteps = inDetach;
          k.kill();
          await k.handle.settled;
          assert.deepEqual(k.handle.unhandled, []);
          const outputs: number[] = [];
          const read = () =>
            outputs.push(...k.handle.tryReceiveMany(64).map((o) => Tag.decode(o.payload).n));
          if (readBetween) read();
          for (let i = 0; i < after; i++) k.step();
          k.stop();
          read();
          const returned = k.handle.unhandled.map(tagOf);
          assert.deepEqual([...k.handled, ...returned].sort((a, b) => a - b), tags);
          assert.deepEqual(outputs, k.handled, "each handled message's output, once, in order");
          assert.equal(k.handle.metrics().processed, k.handled.length);
        },
      ),
      { numRuns: 60 },
    );
  });

  it("are collected when the exit settles where the kernel stopped already", async () => {
    const k = fakeKernel({ hook: "stopped", leftovers: [900] });
    await sendTags(k.handle, [1, 2, 3]);
    assert.ok(k.step());
    k.stop();
    k.kill();
    await k.handle.settled;
    assert.deepEqual(k.handle.unhandled.map(tagOf), [2, 3, 900]);
    assert.deepEqual(k.log, ["whenStopped", "leftovers", "detach", "dispose"]);
  });

  it("are collected when the exit settles on a backend without the hook (CPU, WebGPU)", async () => {
    const k = fakeKernel({ hook: "none", leftovers: [900] });
    await sendTags(k.handle, [1, 2]);
    const report = k.handle.terminate({ drain: false });
    // The kernel honours the terminate, leaving its input; what it left is in the report.
    k.stop();
    k.mem.cb.state = KernelState.Terminated;
    k.terminated();
    const r = await report;
    assert.deepEqual(r.returned.map(tagOf), [1, 2, 900]);
    assert.equal(r.returned, k.handle.unhandled);
    assert.deepEqual(k.log, ["leftovers", "detach", "dispose"]);
    await assert.rejects(k.handle.send(Tag.of({ n: 3 })), InvalidStateError);
  });
});
