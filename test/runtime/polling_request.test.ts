// KernelHandle.request in polling mode (a region in plain memory, as the CUDA backend's mapped
// pinned memory is) with sealed and plain slots: replies are dispatched in place from the reused
// reply buffer (sealed) or the slot (plain), so payloads of every length that spans one or several
// sealed vectors, empty, error and malformed payloads, late replies, timeouts, a full lane and
// bad input are checked against what the "device" (the test) wrote.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { KernelState } from "../../src/core/control_block.ts";
import { decodeEnvelope, EnvelopeFlag, writeEnvelope } from "../../src/core/envelope.ts";
import {
  DecodeError,
  ErrorCode,
  HandlerError,
  InvalidStateError,
  TimeoutError,
  ValidationError,
} from "../../src/core/errors.ts";
import { HlcClock } from "../../src/core/hlc.ts";
import { MpscQueue } from "../../src/core/mpsc_queue.ts";
import { array, defineMessage, type MessageSchema } from "../../src/core/schema.ts";
import { passthroughKernel } from "../../src/runtime/kernel.ts";
import { type KernelExit, KernelHandle } from "../../src/runtime/kernel_handle.ts";
import {
  EMPTY_REPLY_TYPE_ID,
  ERROR_REPLY_TYPE_ID,
  kernelLayout,
  KernelMemory,
} from "../../src/runtime/kernel_memory.ts";
import { LaunchOptions } from "../../src/runtime/launch_options.ts";
import fc from "fast-check";

const NUMERIC_ID = 9;

/** Messages of payload lengths 1..180 bytes: one to sixteen sealed vectors, odd and even. */
const BYTE_LENGTHS = [1, 3, 7, 8, 9, 11, 12, 13, 20, 23, 24, 25, 47, 48, 49, 97, 131, 180];
const bySize = new Map<number, MessageSchema>(
  BYTE_LENGTHS.map((n) => [
    n,
    defineMessage({ typeId: 7000 + n, name: `Bytes${n}`, fields: { b: array("u8", n) } }),
  ]),
);

/** A polling-mode handle of a passthrough kernel and a hand-stepped device over its region. */
function pollingKernel(sealed: boolean, inputCapacity = 16) {
  const layout = kernelLayout(0, inputCapacity, 64, 256, sealed);
  const mem = KernelMemory.format(new ArrayBuffer(layout.byteLength), layout, NUMERIC_ID);
  mem.cb.state = KernelState.Active;
  let settle!: (exit: KernelExit) => void;
  const exit = new Promise<KernelExit>((r) => (settle = r));
  const handle = new KernelHandle(passthroughKernel("polled"), LaunchOptions.default(), {
    mem,
    route: { id: "polled", numericId: NUMERIC_ID, inputTypeId: 0, buffer: mem.buffer, layout },
    exit,
    dispose: () => {},
    onFailure: () => {},
  }, new HlcClock(NUMERIC_ID));
  const scratch = new Uint8Array(layout.slotSize + 64);
  /** Writes a reply envelope for request `id` into the output queue. */
  const reply = (
    id: bigint,
    typeId: number,
    payload: Uint8Array,
    flags: number = EnvelopeFlag.Reply,
  ): void => {
    const n = writeEnvelope(scratch, 0, { typeId, flags, correlationId: id }, payload);
    assert.ok(mem.output.tryEnqueue(scratch.subarray(0, n)), "output queue full");
  };
  /** Takes the oldest request (high lane first). */
  const take = () => {
    const bytes = mem.high.tryDequeue() ?? mem.normal.tryDequeue();
    if (bytes === undefined) return undefined;
    const { header, payload } = decodeEnvelope(bytes);
    return { header, payload: payload.slice() };
  };
  /** Echoes every queued request back as its reply (the passthrough kernel). */
  const echoAll = (): number => {
    let n = 0;
    for (let r = take(); r !== undefined; r = take(), n++) {
      reply(r.header.messageId, r.header.typeId, r.payload);
    }
    return n;
  };
  return { handle, mem, reply, take, echoAll, end: () => settle({ kind: "terminated" }) };
}

async function closed(k: ReturnType<typeof pollingKernel>): Promise<void> {
  k.end();
  await k.handle.settled;
}

for (const sealed of [true, false]) {
  describe(`KernelHandle.request, polling mode, ${sealed ? "sealed" : "plain"} slots`, () => {
    it("decodes replies of every payload length in place", async () => {
      const k = pollingKernel(sealed);
      try {
        for (const [n, schema] of bySize) {
          const b = Array.from({ length: n }, (_, i) => (i * 37 + n) & 0xff);
          const pending = k.handle.request(schema.of({ b }));
          await Promise.resolve();
          assert.equal(k.echoAll(), 1);
          assert.deepEqual(await pending, { b }, `payload of ${n} bytes`);
        }
      } finally {
        await closed(k);
      }
    });

    it("matches many replies to their requests in any order (property)", async () => {
      const k = pollingKernel(sealed, 64);
      try {
        await fc.assert(
          fc.asyncProperty(
            fc.array(fc.constantFrom(...BYTE_LENGTHS), { minLength: 1, maxLength: 40 }),
            fc.integer(),
            async (lengths, seed) => {
              const want = lengths.map((n, j) => ({
                schema: bySize.get(n)!,
                b: Array.from({ length: n }, (_, i) => (i + j * 7 + seed) & 0xff),
              }));
              const pending = want.map((w) => k.handle.request(w.schema.of({ b: w.b })));
              const requests = [];
              for (let r = k.take(); r !== undefined; r = k.take()) requests.push(r);
              assert.equal(requests.length, want.length);
              // Replies leave in a shuffled order; the correlation ids sort them out.
              let s = seed >>> 0;
              for (let i = requests.length - 1; i > 0; i--) {
                s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
                const j = s % (i + 1);
                [requests[i], requests[j]] = [requests[j], requests[i]];
              }
              for (const r of requests) k.reply(r.header.messageId, r.header.typeId, r.payload);
              const got = await Promise.all(pending);
              assert.deepEqual(got, want.map((w) => ({ b: w.b })));
            },
          ),
          { numRuns: 40 },
        );
      } finally {
        await closed(k);
      }
    });

    it("settles empty, error, short and late replies", async () => {
      const k = pollingKernel(sealed);
      const schema = bySize.get(9)!;
      const b = [1, 2, 3, 4, 5, 6, 7, 8, 9];
      try {
        // An empty reply (0-byte payload): undefined.
        let pending = k.handle.request(schema.of({ b }));
        await Promise.resolve();
        let r = k.take()!;
        k.reply(r.header.messageId, EMPTY_REPLY_TYPE_ID, new Uint8Array(0));
        assert.equal(await pending, undefined);

        // An error reply, its JSON spanning several vectors; then one cut to 0 bytes.
        pending = k.handle.request(schema.of({ b }));
        await Promise.resolve();
        r = k.take()!;
        const text = JSON.stringify({ name: "RangeError", message: "value 7 is out of range" });
        k.reply(
          r.header.messageId,
          ERROR_REPLY_TYPE_ID,
          new TextEncoder().encode(text),
          EnvelopeFlag.Reply | EnvelopeFlag.Error,
        );
        await assert.rejects(pending, (e: unknown) => {
          assert.ok(e instanceof HandlerError);
          assert.match(e.message, /RangeError.*value 7 is out of range/);
          return true;
        });
        pending = k.handle.request(schema.of({ b }));
        await Promise.resolve();
        r = k.take()!;
        k.reply(r.header.messageId, ERROR_REPLY_TYPE_ID, new Uint8Array(0), EnvelopeFlag.Reply);
        await assert.rejects(pending, (e: unknown) => {
          assert.ok(e instanceof HandlerError);
          assert.match(e.message, /error text cut off/);
          return true;
        });

        // A payload shorter than the schema (odd, then empty): the request rejects, it does not
        // hang, and the pump goes on.
        for (const short of [new Uint8Array([1, 2, 3]), new Uint8Array(0)]) {
          pending = k.handle.request(schema.of({ b }));
          await Promise.resolve();
          r = k.take()!;
          k.reply(r.header.messageId, r.header.typeId, short);
          await assert.rejects(pending, (e: unknown) => {
            assert.ok(e instanceof DecodeError);
            assert.equal(e.code, ErrorCode.DecodeTruncated);
            return true;
          });
        }

        // A reply nobody waits for is counted, and the next request still gets its own.
        pending = k.handle.request(schema.of({ b }));
        await Promise.resolve();
        r = k.take()!;
        k.reply(r.header.messageId + 1000n, r.header.typeId, r.payload);
        k.reply(r.header.messageId, r.header.typeId, r.payload);
        assert.deepEqual(await pending, { b });
        assert.equal(k.handle.metrics().lateReplies, 1);
      } finally {
        await closed(k);
      }
    });

    it("times out without a reply, then counts the reply as late", async () => {
      const k = pollingKernel(sealed);
      const schema = bySize.get(3)!;
      try {
        const pending = k.handle.request(schema.of({ b: [1, 2, 3] }), { timeoutMs: 30 });
        await assert.rejects(pending, TimeoutError);
        const r = k.take()!;
        k.reply(r.header.messageId, r.header.typeId, r.payload);
        const next = k.handle.request(schema.of({ b: [4, 5, 6] }));
        await Promise.resolve();
        k.echoAll();
        assert.deepEqual(await next, { b: [4, 5, 6] });
        assert.equal(k.handle.metrics().lateReplies, 1);
      } finally {
        await closed(k);
      }
    });

    it("waits for room in a full lane, lap after lap, and loses nothing", async () => {
      const k = pollingKernel(sealed, 4);
      const schema = bySize.get(13)!;
      try {
        // 4 slots, 10 requests at once, served a few at a time for 12 laps of the lane.
        for (let lap = 0; lap < 12; lap++) {
          const want = Array.from({ length: 10 }, (_, i) => ({
            b: Array.from({ length: 13 }, (_, j) => (lap * 31 + i * 3 + j) & 0xff),
          }));
          const pending = want.map((w) => k.handle.request(schema.of(w), { timeoutMs: 2000 }));
          let served = 0;
          while (served < want.length) {
            served += k.echoAll();
            await new Promise((r) => setTimeout(r, 1));
          }
          assert.deepEqual(await Promise.all(pending), want);
        }
        assert.equal(k.mem.normal.len, 0);
      } finally {
        await closed(k);
      }
    });

    it("rejects, never throws, for a wrong message and a closed handle", async () => {
      const k = pollingKernel(sealed);
      const tooBig = defineMessage({
        typeId: 7999,
        name: "TooBig",
        fields: { b: array("u8", 1024) },
      });
      const big = k.handle.request(tooBig.of({ b: new Array(1024).fill(1) }));
      assert.ok(big instanceof Promise);
      await assert.rejects(big, ValidationError);
      await closed(k);
      const late = k.handle.request(bySize.get(1)!.of({ b: [1] }));
      assert.ok(late instanceof Promise);
      await assert.rejects(late, InvalidStateError);
    });
  });
}

describe("MPSC producers' cached head (sealed slots)", () => {
  it("never overwrites an unread slot: several producers, counters wrapping (property)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(2), fc.nat(3)), { minLength: 1, maxLength: 200 }),
        (ops) => {
          const capacity = 4;
          const consumer = MpscQueue.create({
            capacity,
            slotSize: 40,
            sealed: true,
            shared: false,
            initialCounter: 2 ** 32 - 6,
          });
          // Each producer caches the head it last saw; the consumer moves it on meanwhile.
          const producers = [0, 1, 2].map(() => new MpscQueue(consumer.buffer, 0));
          const model: number[] = [];
          let next = 0;
          for (const [who, what] of ops) {
            if (what === 0) {
              const got = consumer.tryDequeue();
              const want = model.shift();
              if (want === undefined) assert.equal(got, undefined);
              else assert.deepEqual(got, message(want));
            } else {
              const ok = producers[who].tryEnqueue(message(next));
              // A stale cached head only under-counts room: the producer re-reads it when it
              // looks full, so it refuses exactly when the queue is full.
              assert.equal(ok, model.length < capacity);
              if (ok) model.push(next);
              next++;
            }
          }
          for (const want of model) assert.deepEqual(consumer.tryDequeue(), message(want));
          assert.equal(consumer.tryDequeue(), undefined);
        },
      ),
      { numRuns: 300 },
    );
  });
});

/** Message `i`: 1 to 37 bytes (one to four sealed vectors), its bytes derived from `i`. */
function message(i: number): Uint8Array {
  return Uint8Array.from({ length: 1 + (i * 7) % 37 }, (_, j) => (i * 13 + j) & 0xff);
}
