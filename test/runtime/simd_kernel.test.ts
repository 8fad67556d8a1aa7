// The SIMD core in the CPU backend: ctx.simd in handlers, batch checksum verification of inputs.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { encodeMessage, EnvelopeFlag, EnvelopeOffset } from "../../src/core/envelope.ts";
import { DecodeError, ErrorCode } from "../../src/core/errors.ts";
import { saxpyJs } from "../../src/backends/cpu/simd_js.ts";
import { LaunchOptions } from "../../src/runtime/launch_options.ts";
import { accumulator, Add } from "../fixtures/kernels.ts";
import { VEC, VecJob, vectorMath } from "../fixtures/kernels_extra.ts";
import { delay, withRuntime } from "./helpers.ts";

const smallInts = fc.array(fc.integer({ min: -100, max: 100 }), { minLength: VEC, maxLength: VEC });

describe("SIMD core in kernels", () => {
  it("a handler using ctx.simd saxpy and dot gives the same answer as JS", async () => {
    await withRuntime(async (rt) => {
      const k = await rt.launch(vectorMath);
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: -8, max: 8 }), smallInts, smallInts, async (a, x, y) => {
          const reply = (await k.request(VecJob.of({ a, x, y })))!;
          const yJs = Float32Array.from(y);
          saxpyJs(yJs, Float32Array.from(x), a);
          assert.deepEqual(reply.y, Array.from(yJs), "saxpy is bit-exact");
          // Small integers: every product and partial sum is exact in f32, in any order.
          let dot = 0;
          for (let i = 0; i < VEC; i++) dot += x[i] * y[i];
          assert.equal(reply.dot, dot);
        }),
        { numRuns: 40 },
      );
      // Irrational inputs: dot within the f32 reduction bound of the f64 reference.
      const x = Array.from({ length: VEC }, (_, i) => Math.fround(Math.sin(i + 1)));
      const y = Array.from({ length: VEC }, (_, i) => Math.fround(Math.cos(i * 3)));
      const r = (await k.request(VecJob.of({ a: 0.5, x, y })))!;
      let ref = 0, abs = 0;
      for (let i = 0; i < VEC; i++) (ref += x[i] * y[i]), (abs += Math.abs(x[i] * y[i]));
      assert.ok(Math.abs(r.dot - ref) <= 20 * 2 ** -24 * abs, `${r.dot} vs ${ref}`);
      const yJs = Float32Array.from(y);
      saxpyJs(yJs, Float32Array.from(x), 0.5);
      assert.deepEqual(r.y, Array.from(yJs));
    });
  });

  it("checksummed inputs are verified in batches: a corrupt one is counted and answered with DecodeError, the rest handled in order", async () => {
    await withRuntime(async (rt) => {
      const k = await rt.launch(accumulator, LaunchOptions.default().withQueueCapacity(64));
      // Intact checksums pass, through send, sendMany and request.
      await k.send(Add.of({ value: 1 }), { checksum: true });
      assert.equal(
        await k.sendMany([Add.of({ value: 1 }), Add.of({ value: 1 })], { checksum: true }),
        2,
      );
      assert.deepEqual(await k.request(Add.of({ value: 1 }), { checksum: true }), { total: 4 });
      for (let i = 0; i < 3; i++) await k.receive({ timeoutMs: 5000 });

      // A corrupt request in the middle of a batch (queued while deactivated).
      await k.deactivate();
      await k.sendMany(Array.from({ length: 10 }, () => Add.of({ value: 1 })), { checksum: true });
      const bad = encodeMessage(
        Add.of({ value: 1000 }),
        { flags: EnvelopeFlag.Request, messageId: 1n << 40n },
        { checksum: true },
      );
      bad[EnvelopeOffset.payload] ^= 0x40; // one flipped bit in the payload
      const rejected = k.requestEnvelope(bad, { timeoutMs: 5000 });
      // And a corrupt one-way message: nobody to answer, so only counted.
      const bad2 = encodeMessage(Add.of({ value: 1000 }), {}, { checksum: true });
      bad2[EnvelopeOffset.checksum] ^= 1;
      await k.sendEnvelope(bad2);
      await k.sendMany(Array.from({ length: 10 }, () => Add.of({ value: 1 })), { checksum: true });
      await delay(10);
      await k.activate();
      await assert.rejects(
        rejected,
        (e: unknown) => e instanceof DecodeError && e.code === ErrorCode.DecodeChecksum,
      );
      const totals: number[] = [];
      while (totals.length < 20) {
        for (const o of await k.receiveMany(32, { timeoutMs: 5000 })) totals.push(o.value!.total);
      }
      assert.deepEqual(
        totals,
        Array.from({ length: 20 }, (_, i) => 5 + i),
        "no corrupt value added",
      );
      const m = k.metrics();
      assert.equal(m.processed, 24);
      assert.equal(m.dropped, 2);
      assert.equal(m.errors, 2);
      assert.deepEqual(k.readState(), { total: 24, count: 24 });
    });
  });
});
