/**
 * The CUDA backend's heartbeat watchdog logic (no GPU needed): each sign of life a persistent
 * kernel gives (heartbeat, counters' seqlock word, input head, output tail, state) restarts the
 * clock; silence longer
 * than the timeout fires once with a reason; timeouts below the CUDA floor are raised to it.
 * Driven over a real control block in an ordinary buffer, written as the GPU loop writes it.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { ControlBlock, ControlBlockOffset, KernelState } from "../../src/core/control_block.ts";
import {
  CUDA_MIN_HEARTBEAT_TIMEOUT_MS,
  HeartbeatWatch,
} from "../../src/backends/cuda/heartbeat_watch.ts";

/** A control block and a writer of the words the GPU loop stores. */
function kernelWords(): { cb: ControlBlock; store(field: Sign, value: number): void } {
  const cb = ControlBlock.create({ kernelId: 1, inputCapacity: 16, outputCapacity: 16 });
  const u32 = new Uint32Array(cb.buffer, cb.byteOffset, 32);
  return { cb, store: (field, value) => Atomics.store(u32, ControlBlockOffset[field] / 4, value) };
}

type Sign = "heartbeat" | "seq" | "inputHead" | "outputTail" | "state";
const SIGNS: readonly Sign[] = ["heartbeat", "seq", "inputHead", "outputTail", "state"];

describe("HeartbeatWatch (CUDA watchdog)", () => {
  it("fires once, after the timeout, on a kernel that shows no sign of life", () => {
    const { cb } = kernelWords();
    const w = new HeartbeatWatch(100, () => cb, 1000);
    assert.equal(w.timeoutMs, 100);
    assert.equal(w.check(1050), undefined);
    assert.equal(w.check(1100), undefined);
    assert.equal(w.check(1101), "no heartbeat for 101 ms (limit 100 ms)");
    assert.equal(w.check(1500), undefined, "fires once");
  });

  for (const sign of SIGNS) {
    it(`a change of ${sign} counts as a sign of life`, () => {
      const { cb, store } = kernelWords();
      const w = new HeartbeatWatch(100, () => cb, 0);
      store(sign, sign === "state" ? KernelState.Active : 7);
      assert.equal(w.check(90), undefined);
      // The clock restarted at 90: silent until 190.
      assert.equal(w.check(189), undefined);
      assert.match(w.check(191) ?? "", /^no heartbeat for 101 ms/);
    });
  }

  it("raises timeouts below the CUDA floor (the idle beat gap of a GPU loop)", () => {
    const { cb } = kernelWords();
    const w = new HeartbeatWatch(10, () => cb, 0);
    assert.equal(w.timeoutMs, CUDA_MIN_HEARTBEAT_TIMEOUT_MS);
    assert.equal(w.check(CUDA_MIN_HEARTBEAT_TIMEOUT_MS - 1), undefined);
    assert.match(
      w.check(CUDA_MIN_HEARTBEAT_TIMEOUT_MS + 1) ?? "",
      new RegExp(`limit ${CUDA_MIN_HEARTBEAT_TIMEOUT_MS} ms`),
    );
  });

  it("reads the block afresh on every check (the backend may swap the memory)", () => {
    const a = kernelWords();
    const b = kernelWords();
    let current = a.cb;
    const w = new HeartbeatWatch(100, () => current, 0);
    b.store("heartbeat", 3);
    current = b.cb;
    assert.equal(w.check(99), undefined);
    assert.equal(w.check(150), undefined, "the swap showed a new heartbeat at 99");
  });

  it("never fires while some sign moves at least once per timeout (property)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: CUDA_MIN_HEARTBEAT_TIMEOUT_MS, max: 1000 }),
        fc.array(fc.tuple(fc.integer({ min: 0, max: 100 }), fc.constantFrom(...SIGNS)), {
          minLength: 1,
          maxLength: 50,
        }),
        (timeout, beats) => {
          const { cb, store } = kernelWords();
          const w = new HeartbeatWatch(timeout, () => cb, 0);
          let now = 0;
          let n = 0;
          let states = 0;
          for (const [gap, sign] of beats) {
            // At most one timeout of silence before each sign.
            now += Math.floor((gap * timeout) / 100);
            assert.equal(w.check(now), undefined);
            // Every store differs from the word's last value (state alternates Active/Deactivated).
            if (sign === "state") store(sign, KernelState.Active + (states++ % 2));
            else store(sign, ++n);
            assert.equal(w.check(now), undefined);
          }
          assert.notEqual(w.check(now + timeout + 1), undefined, "silence after the last sign");
        },
      ),
    );
  });
});
