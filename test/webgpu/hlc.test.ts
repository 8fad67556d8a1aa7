/**
 * The kernel HLC on WebGPU travels as two u32 words (WGSL has no 64-bit integers or atomics).
 * With an injected physical clock parked just below a 65 536 ms boundary — where the low word
 * wraps and the high word steps — every value the host sees (each output's timestamp, each
 * `ctx.now()` the handler returned) must be strictly increasing: a pair read torn (the high word
 * of one value with the low word of another) would show as a step back of ~2^32. A property test
 * drives random batch sizes and clock steps over many rounds; a second test pushes the logical
 * counter through its 16 bits so the carry crosses from the low word into the high one inside the
 * shader, at each of the three places the shader ticks. Skips, saying why, where no WebGPU adapter is usable.
 */
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { WebGpuRuntime } from "../../src/backends/webgpu/webgpu_runtime.ts";
import type { KernelDefinition } from "../../src/runtime/kernel.ts";
import type { KernelHandle } from "../../src/runtime/kernel_handle.ts";
import { LaunchOptions } from "../../src/runtime/launch_options.ts";
import { encodeMessage } from "../../src/core/envelope.ts";
import { HlcTimestamp } from "../../src/core/hlc.ts";
import { AddValue, dslAccumulator } from "../dsl/corpus.ts";
import { stamper, Tick } from "./kernels.ts";
import { webGpuSkip } from "./probe.ts";

const skip = await webGpuSkip("test/webgpu/hlc.test.ts");
const WRAP = 65536;
type StamperHandle = typeof stamper extends KernelDefinition<infer I, infer O, infer S>
  ? KernelHandle<I, O, S>
  : never;
type AccumulatorHandle = typeof dslAccumulator extends KernelDefinition<infer I, infer O, infer S>
  ? KernelHandle<I, O, S>
  : never;

/** The 64-bit HLC word of a physical/logical pair. */
const word = (physical: number | bigint, logical: number): bigint =>
  (BigInt(physical) << 16n) | BigInt(logical);

/** Sends `n` ticks and returns, in handling order, [ctx.now() word, output timestamp word]. */
async function stampRound(
  k: StamperHandle,
  n: number,
  seq0: number,
): Promise<[bigint, bigint][]> {
  await k.sendMany(Array.from({ length: n }, (_, i) => Tick.of({ seq: seq0 + i })));
  const got: [bigint, bigint][] = [];
  while (got.length < n) {
    for (const o of await k.receiveMany(n - got.length, { timeoutMs: 10_000 })) {
      const v = o.value!;
      assert.equal(v.seq, seq0 + got.length, "outputs come in handling order");
      got.push([
        word(v.physical, v.logical),
        word(o.header.timestamp.physical, o.header.timestamp.logical),
      ]);
    }
  }
  return got;
}

describe("HLC words on WebGPU", { skip }, () => {
  // The physical clock the rounds hand the kernels: parked by the tests, never moved back.
  let now = 0;
  let rt: WebGpuRuntime;
  before(async () => {
    now = (Math.floor(Date.now() / WRAP) + 1) * WRAP - 3;
    rt = await WebGpuRuntime.create({ clock: () => now });
  });
  after(async () => {
    if (!rt.isShutdown) await rt.shutdown();
  });

  it(
    "monotonic and never torn across low-word wraps (property, many rounds)",
    { timeout: 120_000 },
    async () => {
      const k = await rt.launch(stamper, LaunchOptions.default().withQueueCapacity(256));
      let last = 0n;
      let seq = 0;
      let wraps = 0;
      await fc.assert(
        fc.asyncProperty(
          fc.array(
            fc.record({
              count: fc.integer({ min: 1, max: 40 }),
              stepMs: fc.integer({ min: 0, max: 3 }),
            }),
            { minLength: 2, maxLength: 6 },
          ),
          async (rounds) => {
            // Each run starts just below the next low-word wrap (physical ms ≡ 65533 mod 65536).
            now = (Math.floor(now / WRAP) + 1) * WRAP - 3;
            const hiBefore = last >> 32n;
            for (const { count, stepMs } of rounds) {
              const pt = word(now, 0);
              for (const [stamp, ts] of await stampRound(k, count, seq)) {
                assert.ok(stamp > last, `ctx.now() ${stamp} after ${last}`);
                assert.ok(ts > stamp, `timestamp ${ts} after ctx.now() ${stamp}`);
                assert.ok(ts >= pt, `timestamp ${ts} below the round's physical time ${pt}`);
                last = ts;
              }
              seq += count;
              now += stepMs;
            }
            if (last >> 32n !== hiBefore) wraps++;
          },
        ),
        { numRuns: 12 },
      );
      // Each run crosses at least one boundary unless its steps were all 0.
      assert.ok(wraps > 0, "no run crossed a low-word wrap");
      await k.terminate();
    },
  );

  // Where the low word overflows depends on which tick reaches logical 65 536: three runs put it
  // on each of the shader's three ticks (ctx.now(), a message's receipt, an output's timestamp).
  for (
    const [site, via] of [
      ["ctx.now()", "stamper"],
      ["the receipt of a message", "accumulator"],
      ["an output's timestamp", "accumulator with sender clocks at the round's time"],
    ] as const
  ) {
    it(
      `the carry from the low word into the high word, at ${site}`,
      { timeout: 120_000 },
      async () => {
        const stamps = via === "stamper";
        const k = stamps
          ? await rt.launch(stamper, LaunchOptions.default().withQueueCapacity(4096))
          : await rt.launch(dslAccumulator, LaunchOptions.default().withQueueCapacity(4096));
        // Physical ms ≡ 65535 (mod 65536): the word's low half is 0xffff_0000 + logical, so the
        // 65 536th tick in this millisecond carries into the high half.
        now = (Math.floor(now / WRAP) + 1) * WRAP - 1;
        const startHi = BigInt(Math.floor(now / WRAP));
        // Senders' clocks: behind the round's time (receipt ticks +1: the carry lands on a receipt)
        // or equal to it (receipt and output swap parity: the carry lands on an output).
        const sender = new HlcTimestamp(via === "accumulator" ? Date.now() : now, 0, 0);
        let last = 0n;
        let sent = 0;
        try {
          while (last === 0n || last >> 32n === startHi) {
            const n = 4096;
            let words: bigint[];
            if (stamps) {
              words = (await stampRound(k as StamperHandle, n, sent)).flat();
            } else {
              const acc = k as AccumulatorHandle;
              for (let i = 0; i < n; i++) {
                await acc.sendEnvelope(
                  encodeMessage(AddValue.of({ value: 1 }), { timestamp: sender }),
                );
              }
              words = [];
              while (words.length < n) {
                for (const o of await acc.receiveMany(n - words.length, { timeoutMs: 10_000 })) {
                  words.push(word(o.header.timestamp.physical, o.header.timestamp.logical));
                }
              }
            }
            for (const w of words) {
              assert.ok(w > last, `${w} after ${last}`);
              last = w;
            }
            sent += n;
            assert.ok(sent <= 40_960, "the carry never came");
          }
        } finally {
          await k.terminate();
        }
        assert.equal(last >> 32n, startHi + 1n);
        assert.ok((last & 0xffff_ffffn) < 0x1_0000n, "the low word restarted near 0");
      },
    );
  }
});
