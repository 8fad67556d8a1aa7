// Sealed queue slots (queue_layout.ts, docs/queues.md "Sealed slots"): the layout and header flag,
// the byte format of a slot checked against a reference encoder written from the spec, the init
// seals, a sealed SPSC consumer that goes by seals rather than tail (a GPU producer simulated by
// hand-written slots), corrupt slots, and model-based property tests across wrap-around.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  ErrorCode,
  InvalidStateError,
  QueueFullError,
  TimeoutError,
  ValidationError,
} from "../../src/core/errors.ts";
import { MpscQueue } from "../../src/core/mpsc_queue.ts";
import {
  openQueueRegion,
  queueByteLength,
  QueueFlag,
  QueueKind,
  queueLayout,
  QueueOffset,
  type QueueRegionLayout,
  QueueWord,
  SEALED_VECTOR_BYTES,
  sealedSlotSize,
  sealedVectors,
  sealOf,
} from "../../src/core/queue_layout.ts";
import type { RingQueue } from "../../src/core/ring_queue.ts";
import { SpscQueue } from "../../src/core/spsc_queue.ts";
import { assertCode, KINDS } from "./queue_helpers.ts";
import { kernelLayout, KernelMemory } from "../../src/runtime/kernel_memory.ts";

const pattern = (length: number, from: number): Uint8Array =>
  new Uint8Array(length).map((_, i) => (from + 7 * i) & 0xff);

// ------------------------------------------------------------------ a reference, from the spec

/** Where a queue region lives; a RingQueue is one. */
interface Region {
  readonly buffer: ArrayBufferLike;
  readonly byteOffset: number;
  readonly layout: QueueRegionLayout;
}

/** The seal of ticket t, restated: t + 1 as a u32, read back as i32. */
const seal = (t: number): number => (t + 1) | 0;

/** The bytes of slot `t & mask`, all of its stride. */
function slotOf(r: Region, t: number): Uint8Array {
  const { dataOffset, slotSize, capacity } = r.layout;
  const at = r.byteOffset + dataOffset + (t & (capacity - 1)) * slotSize;
  return new Uint8Array(r.buffer, at, slotSize);
}

/** The spanned vectors of a sealed message of ticket t: the stream (u32 length, bytes), 12 bytes
 * a vector, zero-padded, word 3 the seal. */
function encodeSealed(message: Uint8Array, t: number): Uint8Array {
  const stream = new Uint8Array(4 + message.length);
  new DataView(stream.buffer).setUint32(0, message.length, true);
  stream.set(message, 4);
  const vectors = Math.ceil(stream.length / 12);
  const out = new Uint8Array(16 * vectors);
  const dv = new DataView(out.buffer);
  for (let v = 0; v < vectors; v++) {
    out.set(stream.subarray(12 * v, 12 * v + 12), 16 * v);
    dv.setInt32(16 * v + 12, seal(t), true);
  }
  return out;
}

/** Reads the message of ticket t as the GPU would: undefined unless every spanned vector is
 * sealed for t. */
function decodeSealed(r: Region, t: number): Uint8Array | undefined {
  const slot = slotOf(r, t);
  const dv = new DataView(slot.buffer, slot.byteOffset, slot.length);
  if (dv.getInt32(12, true) !== seal(t)) return undefined;
  const length = dv.getUint32(0, true);
  const vectors = Math.ceil((4 + length) / 12);
  assert.ok(16 * vectors <= slot.length, `length ${length} overruns the slot`);
  const stream = new Uint8Array(12 * vectors);
  for (let v = 0; v < vectors; v++) {
    if (dv.getInt32(16 * v + 12, true) !== seal(t)) return undefined;
    stream.set(slot.subarray(16 * v, 16 * v + 12), 12 * v);
  }
  return stream.slice(4, 4 + length);
}

/** What a seal-less vector holds instead of the right seal. */
type BadSeal = { vector: number; seal: number | "untouched" };

/**
 * Writes the message of ticket t the way a GPU producer does: the stream and the seals, no tail
 * and no seq. With `bad`, that vector gets its bytes but a wrong seal (or keeps its old one).
 * Vectors are written last to first, since a GPU's stores land in any order.
 */
function handWrite(r: Region, t: number, message: Uint8Array, bad?: BadSeal): void {
  const enc = encodeSealed(message, t);
  const slot = slotOf(r, t);
  const dv = new DataView(slot.buffer, slot.byteOffset, slot.length);
  for (let v = enc.length / 16 - 1; v >= 0; v--) {
    slot.set(enc.subarray(16 * v, 16 * v + 12), 16 * v);
    if (bad?.vector !== v) dv.setInt32(16 * v + 12, seal(t), true);
    else if (bad.seal !== "untouched") dv.setInt32(16 * v + 12, bad.seal, true);
  }
}

/** Stores the seal of ticket t into vector v of its slot (the straggling store lands). */
function writeSeal(r: Region, t: number, v: number): void {
  const slot = slotOf(r, t);
  new DataView(slot.buffer, slot.byteOffset, slot.length).setInt32(16 * v + 12, seal(t), true);
}

function header(r: Region): Int32Array {
  return new Int32Array(r.buffer, r.byteOffset, QueueOffset.seq >> 2);
}

/** Smallest stride that holds a sealed message of `m` bytes, by counting vectors. */
function strideFor(m: number): number {
  let v = 1;
  while (12 * v < 4 + m) v++;
  return 16 * v;
}

// ------------------------------------------------------------------ layout

describe("sealed queue layout", () => {
  it("the stride holds the length word and the message at 12 bytes a 16-byte vector", () => {
    assert.equal(SEALED_VECTOR_BYTES, 12);
    for (let m = 0; m <= 400; m++) {
      assert.equal(sealedSlotSize(m), strideFor(m), `message of ${m} bytes`);
      assert.equal(16 * sealedVectors(m), strideFor(m));
    }
    assert.equal(sealedSlotSize(8), 16, "4 + 8 bytes fill one vector");
    assert.equal(sealedSlotSize(9), 32);
    assert.equal(sealedSlotSize(64), 96);
    assert.equal(sealOf(0), 1);
    assert.equal(sealOf(0xffff_ffff), 0, "the seal wraps with the ticket");
    assert.equal(sealOf(-1), 0);
    assert.equal(sealOf(0x7fff_ffff), -0x8000_0000);
  });

  it("queueLayout gives the stride and the largest message it holds", () => {
    assert.deepEqual(queueLayout(8, 64, true), {
      capacity: 8,
      slotSize: 96,
      sealed: true,
      maxMessage: 68,
      seqOffset: 512,
      lenOffset: 544,
      dataOffset: 640,
      byteLength: 640 + 8 * 96,
    });
    assert.equal(queueByteLength(8, 64, true), 1408);
    assert.equal(queueByteLength(8, 64), 1152, "plain by default");
    for (let m = 1; m <= 300; m++) {
      const l = queueLayout(4, m, true);
      assert.equal(l.slotSize, strideFor(m));
      assert.ok(l.maxMessage >= m, `asked for ${m}, holds ${l.maxMessage}`);
      assert.equal(strideFor(l.maxMessage), l.slotSize, "maxMessage fits the stride");
      assert.ok(strideFor(l.maxMessage + 1) > l.slotSize, "and is the largest that does");
      assert.equal(l.byteLength % 128, 0);
    }
  });

  for (const [name, Q] of KINDS) {
    it(`${name}: the header carries the flag and the stride; attaching recognises both`, () => {
      const q = Q.create({ capacity: 8, slotSize: 40, sealed: true, initialCounter: 3 });
      const v = new DataView(q.buffer);
      assert.equal(v.getUint32(QueueOffset.flags, true), QueueFlag.Sealed);
      assert.equal(QueueFlag.Sealed, 1);
      assert.equal(QueueOffset.flags, 24);
      assert.equal(v.getUint32(QueueOffset.slotSize, true), 64, "the stride of 4 + 40 bytes");
      assert.equal(q.sealed, true);
      assert.equal(q.slotSize, 64);
      assert.equal(q.maxMessageSize, 44);
      assert.equal(q.byteLength, queueByteLength(8, 40, true));
      const again = new Q(q.buffer, 0);
      assert.equal(again.sealed, true);
      assert.equal(again.slotSize, 64);
      assert.equal(again.maxMessageSize, 44);
      const kind = name === "SPSC" ? QueueKind.Spsc : QueueKind.Mpsc;
      assert.deepEqual(openQueueRegion(q.buffer, 0, kind), queueLayout(8, 44, true));
      assert.deepEqual(again.layout, q.layout);
      // A message written through one handle reads back through the other.
      assert.ok(q.tryEnqueue(pattern(44, 1)));
      assert.deepEqual(again.tryDequeue(), pattern(44, 1));

      const plain = Q.create({ capacity: 8, slotSize: 40 });
      assert.equal(new DataView(plain.buffer).getUint32(QueueOffset.flags, true), 0);
      assert.equal(plain.sealed, false);
      assert.equal(plain.maxMessageSize, 48);
      assert.equal(new Q(plain.buffer, 0).sealed, false);
    });

    it(`${name}: attaching rejects unknown flag bits`, () => {
      const kind = name === "SPSC" ? QueueKind.Spsc : QueueKind.Mpsc;
      for (const sealed of [false, true]) {
        const q = Q.create({ capacity: 4, slotSize: 16, sealed });
        const words = new Uint32Array(q.buffer, 0, 128);
        const good = words[QueueWord.flags];
        for (const flags of [2, 3, 0x100, 0x8000_0000, 0xffff_ffff]) {
          words[QueueWord.flags] = flags;
          assertCode(() => new Q(q.buffer, 0), ValidationError, ErrorCode.InvalidLayout);
          assertCode(
            () => openQueueRegion(q.buffer, 0, kind),
            ValidationError,
            ErrorCode.InvalidLayout,
          );
        }
        words[QueueWord.flags] = good;
        assert.equal(new Q(q.buffer, 0).sealed, sealed);
      }
      assert.equal(ErrorCode.InvalidLayout, "E_INVALID_LAYOUT");
    });
  }

  it("sealed kernel regions place the lanes and the output queue without overlap", () => {
    for (const sealed of [false, true]) {
      for (const capacity of [2, 64]) {
        for (let slotSize = 1; slotSize <= 140; slotSize += 7) {
          const layout = kernelLayout(24, capacity, capacity * 2, slotSize, sealed);
          const mem = KernelMemory.create(layout, 1);
          const where = `sealed ${sealed}, capacity ${capacity}, slotSize ${slotSize}`;
          for (const q of [mem.high, mem.normal, mem.output]) {
            assert.equal(q.sealed, sealed, where);
            assert.ok(q.maxMessageSize >= layout.slotSize, where);
          }
          assert.equal(mem.high.byteOffset, layout.high);
          assert.ok(mem.high.byteOffset + mem.high.byteLength <= mem.normal.byteOffset, where);
          assert.ok(mem.normal.byteOffset + mem.normal.byteLength <= mem.output.byteOffset, where);
          assert.ok(mem.output.byteOffset + mem.output.byteLength <= layout.byteLength, where);
          // Each queue still works at its largest envelope after its neighbours were used.
          const big = pattern(layout.slotSize, slotSize);
          for (const q of [mem.high, mem.normal, mem.output]) {
            for (let j = 0; j < capacity; j++) assert.ok(q.tryEnqueue(big), where);
          }
          for (const q of [mem.high, mem.normal, mem.output]) {
            assert.deepEqual(q.dequeueMany(capacity), new Array(capacity).fill(big), where);
          }
        }
      }
    }
  });
});

// ------------------------------------------------------------------ sizes and format

for (const [name, Q] of KINDS) {
  describe(`sealed ${name} messages`, () => {
    it("accept maxMessageSize bytes and refuse one more with MessageTooLarge", () => {
      for (const slotSize of [1, 8, 9, 20, 40, 64, 100]) {
        const q = Q.create({ capacity: 4, slotSize, sealed: true });
        const max = q.maxMessageSize;
        assert.equal(max, (q.slotSize / 16) * 12 - 4);
        assert.ok(max >= slotSize);
        const too = new Uint8Array(max + 1);
        assertCode(() => q.tryEnqueue(too), ValidationError, ErrorCode.MessageTooLarge);
        assertCode(
          () => q.enqueueMany([new Uint8Array(1), too]),
          ValidationError,
          ErrorCode.MessageTooLarge,
        );
        assertCode(
          () => q.enqueueMany(new Uint8Array(2 * (max + 1)), 2, max + 1),
          ValidationError,
          ErrorCode.MessageTooLarge,
        );
        assert.equal(q.len, 0, "a refused batch enqueues nothing");
        assert.ok(q.tryEnqueue(pattern(max, 1)));
        // The packed form defaults to messages of maxMessageSize bytes.
        const packed = pattern(2 * max, 9);
        assert.equal(q.enqueueMany(packed, 2), 2);
        assert.deepEqual(q.dequeueMany(3), [
          pattern(max, 1),
          packed.slice(0, max),
          packed.slice(max),
        ]);
      }
    });

    it("store the stream in 12-byte pieces with the seal in word 3 of each spanned vector", () => {
      // capacity 4, stride 64 (four vectors), ticket 6 lands in slot 2 with seal 7.
      const q = Q.create({ capacity: 4, slotSize: 40, sealed: true, initialCounter: 6 });
      const slot = slotOf(q, 6);
      const dv = new DataView(slot.buffer, slot.byteOffset, 64);
      // Leftovers of an older message in the data words; the init seal (ticket 2) stays.
      for (let v = 0; v < 4; v++) slot.fill(0xee, 16 * v, 16 * v + 12);
      for (let v = 0; v < 4; v++) assert.equal(dv.getInt32(16 * v + 12, true), 3);
      const message = new Uint8Array(17).map((_, i) => 0x10 + i);
      assert.ok(q.tryEnqueue(message));
      // deno-fmt-ignore
      const want = [
        17, 0, 0, 0, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 7, 0, 0, 0,
        0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0, 0, 0, 7, 0, 0, 0,
        0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 3, 0, 0, 0,
        0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 3, 0, 0, 0,
      ];
      assert.deepEqual([...slot], want);
      assert.deepEqual(slot.subarray(0, 32), encodeSealed(message, 6));
      if (name === "MPSC") {
        const seq = new Int32Array(q.buffer, q.layout.seqOffset, 4);
        assert.equal(seq[2], 7, "published by seq as well");
      }
      assert.deepEqual(
        new Uint32Array(q.buffer, q.layout.lenOffset, 4),
        new Uint32Array(4),
        "the len array is not used",
      );
      assert.deepEqual(q.tryDequeue(), message);
    });

    it("seal tickets across 2^32: ticket 0xFFFFFFFF has seal 0, ticket 0 seal 1", () => {
      const q = Q.create({ capacity: 2, slotSize: 20, sealed: true, initialCounter: 0xffff_ffff });
      const a = pattern(20, 3);
      const b = pattern(0, 0);
      assert.equal(q.enqueueMany([a, b]), 2);
      const s1 = slotOf(q, 0xffff_ffff);
      const s0 = slotOf(q, 0);
      const d1 = new DataView(s1.buffer, s1.byteOffset, 32);
      const d0 = new DataView(s0.buffer, s0.byteOffset, 32);
      assert.equal(d1.getUint32(0, true), 20);
      assert.equal(d1.getInt32(12, true), 0);
      assert.equal(d1.getInt32(28, true), 0);
      assert.equal(d0.getUint32(0, true), 0);
      assert.equal(d0.getInt32(12, true), 1);
      assert.equal(d0.getInt32(28, true), sealOf(0 - 2), "an empty message spans one vector");
      assert.deepEqual(q.dequeueMany(2), [a, b]);
    });

    it("a corrupt length word makes the consumer throw InvalidStateError", () => {
      const q = Q.create({ capacity: 4, slotSize: 40, sealed: true, initialCounter: 0xffff_fffe });
      const max = q.maxMessageSize;
      assert.ok(q.tryEnqueue(pattern(max, 5)));
      assert.ok(q.tryEnqueue(pattern(3, 6)));
      const slot = slotOf(q, 0xffff_fffe);
      const dv = new DataView(slot.buffer, slot.byteOffset, slot.length);
      for (const bad of [max + 1, 1000, 0x8000_0000, 0xffff_ffff]) {
        dv.setUint32(0, bad, true);
        const target = new Uint8Array(4 * q.slotSize);
        // SPSC counts ready slots by their seals and so reads the length; MPSC goes by seq.
        if (name === "MPSC") assert.equal(q.available(), 2);
        const consumers: (() => unknown)[] = [
          ...(name === "SPSC" ? [() => q.available()] : []),
          () => q.tryDequeue(),
          () => q.tryDequeueInto(new Uint8Array(4096)),
          () => q.dequeueMany(4),
          () => q.dequeueMany(target, 4, new Uint32Array(4)),
          () => q.peek(),
          () => q.dequeueBlocking({ timeoutMs: 0 }),
        ];
        for (const f of consumers) assertCode(f, InvalidStateError, ErrorCode.InvalidState);
        assert.equal(q.stats().dequeued, 0xffff_fffe, "nothing was consumed");
      }
      // The largest valid length still reads: the check is not off by one.
      dv.setUint32(0, max, true);
      assert.deepEqual(q.dequeueMany(4), [pattern(max, 5), pattern(3, 6)]);
    });
  });
}

// ------------------------------------------------------------------ init

describe("sealed init", () => {
  for (const [name, Q] of KINDS) {
    for (const start of [0, 6, 0xffff_fff0, 0xffff_fffd, 0xffff_ffff]) {
      it(`${name} from ${start}: every vector sealed a lap before its slot's first ticket`, () => {
        const capacity = 8;
        const layout = queueLayout(capacity, 40, true);
        const buffer = new SharedArrayBuffer(layout.byteLength);
        const region: Region = { buffer, byteOffset: 0, layout };
        // Old contents that look exactly like this lap's messages must not survive init.
        for (let j = 0; j < capacity; j++) handWrite(region, start + j, pattern(40, j));
        for (let j = 0; j < capacity; j++) {
          assert.deepEqual(decodeSealed(region, start + j), pattern(40, j));
        }
        const q = Q.init(buffer, 0, {
          capacity,
          slotSize: 40,
          sealed: true,
          initialCounter: start,
        });
        for (let j = 0; j < capacity; j++) {
          const t = start + j;
          const dv = new DataView(buffer, layout.dataOffset + (t & 7) * 64, 64);
          for (let v = 0; v < 4; v++) {
            assert.equal(dv.getInt32(16 * v + 12, true), seal(t - capacity), `ticket ${t}`);
          }
          assert.equal(decodeSealed(q, t), undefined, `ticket ${t} looks written`);
        }
        assert.ok(new Int32Array(buffer, layout.dataOffset).some((w) => w !== 0));
        assert.equal(q.available(), 0);
        assert.equal(q.peek(), undefined);
        assert.equal(q.tryDequeue(), undefined);
        // Even a tail that claims a full lap finds nothing sealed (SPSC goes by seals).
        if (name === "SPSC") {
          Atomics.store(header(q), QueueWord.tail, (start + capacity) | 0);
          assert.equal(q.available(), 0);
          assert.equal(new Q(buffer, 0).available(), 0);
          Atomics.store(header(q), QueueWord.tail, start | 0);
        }
        // Three laps through the wrap of the 32-bit tickets.
        for (let lap = 0; lap < 3; lap++) {
          const msgs = Array.from({ length: capacity }, (_, j) => pattern((j * 5 + lap) % 45, j));
          assert.equal(q.enqueueMany(msgs), capacity);
          assert.equal(q.tryEnqueue(msgs[0]), false);
          assert.deepEqual(q.dequeueMany(capacity), msgs);
        }
      });
    }
  }

  it("a fresh sealed SPSC queue with an initial counter of 0 reads seal -7 in slot 0", () => {
    const q = SpscQueue.create({ capacity: 8, slotSize: 8, sealed: true });
    const words = new Int32Array(q.buffer, q.layout.dataOffset, 8 * 4);
    assert.deepEqual([...words.filter((_, i) => i % 4 === 3)], [-7, -6, -5, -4, -3, -2, -1, 0]);
  });
});

// ------------------------------------------------------------------ consumer goes by seals

describe("sealed SPSC consumer (a GPU producer writes the slots)", () => {
  const capacity = 4;
  const make = (start: number): SpscQueue =>
    SpscQueue.create({ capacity, slotSize: 40, sealed: true, initialCounter: start });

  function assertNothingReady(q: SpscQueue, where: string): void {
    assert.equal(q.available(), 0, where);
    assert.equal(q.peek(), undefined, where);
    assert.equal(q.tryDequeue(), undefined, where);
    assert.equal(q.tryDequeueInto(new Uint8Array(64)), -1, where);
    assert.equal(q.dequeueMany(new Uint8Array(4 * q.slotSize), 4), 0, where);
    assert.deepEqual(q.dequeueMany(4), [], where);
    assert.equal(q.waitForData(0), false, where);
    assert.equal(new SpscQueue(q.buffer, 0).available(), 0, `${where} (a new handle)`);
  }

  for (const start of [0, 0xffff_ffff]) {
    it(`a vector without its seal hides the message though tail names it (${start})`, () => {
      const message = pattern(30, 1); // 34 stream bytes: three vectors
      const bads: ((t: number) => number | "untouched")[] = [
        () => "untouched",
        (t) => seal(t - capacity),
        (t) => seal(t + 1),
        (t) => seal(t) ^ 0x100,
        () => 0x7eadbeef,
      ];
      for (let v = 0; v < 3; v++) {
        for (const [k, bad] of bads.entries()) {
          const q = make(start);
          const t = start;
          const where = `vector ${v}, bad seal ${k}`;
          handWrite(q, t, message, { vector: v, seal: bad(t) });
          Atomics.store(header(q), QueueWord.tail, (t + 1) | 0);
          assert.equal(q.len, 1, "tail says one message");
          assertNothingReady(q, where);
          writeSeal(q, t, v);
          assert.equal(q.available(), 1, where);
          assert.deepEqual(q.peek(), message, where);
          assert.deepEqual(q.tryDequeue(), message, where);
          assert.equal(q.stats().dequeued, (t + 1) >>> 0);
        }
      }
    });

    it(`a seal left from the previous lap does not pass for this lap's (${start})`, () => {
      const q = make(start);
      // One real lap of messages that span all four vectors.
      const lap = Array.from({ length: capacity }, (_, j) => pattern(44, j));
      assert.equal(q.enqueueMany(lap), capacity);
      assert.deepEqual(q.dequeueMany(capacity), lap);
      const t = start + capacity;
      const slot = slotOf(q, t);
      const dv = new DataView(slot.buffer, slot.byteOffset, 64);
      for (let v = 0; v < 4; v++) {
        assert.equal(dv.getInt32(16 * v + 12, true), seal(t - capacity), "previous lap's seal");
      }
      for (let v = 0; v < 4; v++) {
        // Back to the previous lap's seals, then this lap's message with vector v's seal late.
        for (let w = 0; w < 4; w++) writeSeal(q, t - capacity, w);
        handWrite(q, t, pattern(44, 9), { vector: v, seal: "untouched" });
        Atomics.store(header(q), QueueWord.tail, (t + 1) | 0);
        assertNothingReady(q, `vector ${v}`);
      }
      writeSeal(q, t, 3);
      assert.equal(q.available(), 1);
      assert.deepEqual(q.dequeueMany(4), [pattern(44, 9)]);
    });

    it(`fully sealed messages are read though tail was never stored (${start})`, () => {
      const q = make(start);
      const msgs = [pattern(0, 0), pattern(44, 1), pattern(8, 2), pattern(9, 3)];
      handWrite(q, start, msgs[0]);
      handWrite(q, start + 2, msgs[2]);
      assert.equal(q.available(), 1, "the run of sealed slots stops at the first gap");
      handWrite(q, start + 1, msgs[1]);
      assert.equal(q.available(), 3);
      assert.equal(q.len, 0, "tail still says empty");
      assert.deepEqual(q.peek(2), msgs[2]);
      const target = new Uint8Array(2 * q.slotSize);
      const lengths = new Uint32Array(2);
      assert.equal(q.dequeueMany(target, 2, lengths), 2);
      assert.deepEqual([...lengths], [0, 44]);
      assert.deepEqual(target.subarray(q.slotSize, q.slotSize + 44), msgs[1]);
      handWrite(q, start + 3, msgs[3]);
      handWrite(q, start + 4, msgs[0]);
      assert.equal(q.available(), 3);
      const into = new Uint8Array(9);
      assert.equal(q.tryDequeueInto(into), 8);
      assert.deepEqual(into.subarray(0, 8), msgs[2]);
      assert.deepEqual(q.dequeueMany(4), [msgs[3], msgs[0]]);
      assert.equal(q.available(), 0);
      // The GPU stores tail late; nothing changes for the consumer.
      Atomics.store(header(q), QueueWord.tail, (start + 5) | 0);
      assert.equal(q.available(), 0);
      assert.equal(q.len, 0);
      assert.equal(q.stats().dequeued, (start + 5) >>> 0);
    });
  }

  it("seals on vectors beyond the message's span do not matter", () => {
    const q = make(0);
    handWrite(q, 0, pattern(20, 4)); // two vectors
    const slot = slotOf(q, 0);
    const dv = new DataView(slot.buffer, slot.byteOffset, 64);
    dv.setInt32(2 * 16 + 12, 0x1234, true);
    dv.setInt32(3 * 16 + 12, 0x5678, true);
    assert.deepEqual(q.tryDequeue(), pattern(20, 4));
  });
});

describe("sealed MPSC consumer", () => {
  it("waits for seq though the seals are there", () => {
    const q = MpscQueue.create({ capacity: 4, slotSize: 20, sealed: true });
    assert.equal(Atomics.compareExchange(header(q), QueueWord.tail, 0, 1), 0);
    handWrite(q, 0, pattern(5, 1));
    assert.equal(q.available(), 0);
    assert.equal(q.tryDequeue(), undefined);
    Atomics.store(new Int32Array(q.buffer, q.layout.seqOffset, 4), 0, 1);
    assert.deepEqual(q.tryDequeue(), pattern(5, 1));
  });

  it("throws InvalidStateError on a slot published without its seals, and keeps it", () => {
    for (const v of [0, 1]) {
      const q = MpscQueue.create({ capacity: 4, slotSize: 20, sealed: true });
      assert.equal(Atomics.compareExchange(header(q), QueueWord.tail, 0, 1), 0);
      handWrite(q, 0, pattern(20, 1), { vector: v, seal: "untouched" });
      Atomics.store(new Int32Array(q.buffer, q.layout.seqOffset, 4), 0, 1);
      assert.equal(q.available(), 1, "seq says published");
      const consumers: (() => unknown)[] = [
        () => q.tryDequeue(),
        () => q.tryDequeueInto(new Uint8Array(64)),
        () => q.dequeueMany(new Uint8Array(4 * q.slotSize), 4, new Uint32Array(4)),
        () => q.dequeueMany(4),
        () => q.peek(),
      ];
      for (const f of consumers) assertCode(f, InvalidStateError, ErrorCode.InvalidState);
      assert.equal(q.stats().dequeued, 0, "nothing was consumed");
      writeSeal(q, 0, v);
      assert.deepEqual(q.tryDequeue(), pattern(20, 1));
    }
  });
});

// ------------------------------------------------------------------ model-based property tests

interface Model {
  items: Uint8Array[];
  rejected: number;
  enqueued: number;
  dequeued: number;
  readonly capacity: number;
  readonly maxMessage: number;
}

/** The consumer side, and the checks that compare it to the model after each command. */
interface Real {
  readonly consumer: RingQueue;
  verify(m: Model): void;
}

/** A host producer as well. */
interface HostReal extends Real {
  readonly producer: RingQueue;
}

/** A GPU-like producer: hand-written slots, tail stored only when told. */
interface GpuReal extends Real {
  gpuTail: number;
}

type Cmd<R extends Real> = fc.Command<Model, R>;
let executed = 0;

/** A message of `length % (maxMessage + 1)` bytes: any length 0..maxMessage, whatever the queue. */
interface Msg {
  readonly length: number;
  readonly from: number;
}
const resolve = (m: Readonly<Model>, x: Msg): Uint8Array =>
  pattern(x.length % (m.maxMessage + 1), x.from);
const msgArb: fc.Arbitrary<Msg> = fc.record({
  length: fc.nat(200),
  from: fc.nat(255),
});

/** Ready messages, the stats and every queued slot decoded by the reference decoder. */
function verifyCommon(m: Model, q: RingQueue): void {
  executed++;
  assert.equal(q.available(), m.items.length);
  assert.equal((q.stats().dequeued - m.dequeued) >>> 0, 0);
  for (let k = 0; k < m.items.length; k++) {
    assert.deepEqual(decodeSealed(q, m.dequeued + k), m.items[k], `queued item ${k}`);
  }
  if (m.items.length < m.capacity) {
    assert.equal(decodeSealed(q, m.dequeued + m.items.length), undefined, "next slot unsealed");
  }
}

function verifyHost(m: Model, r: HostReal): void {
  verifyCommon(m, r.consumer);
  const s = r.consumer.stats();
  assert.equal(s.len, m.items.length);
  assert.equal(r.producer.len, m.items.length);
  assert.equal(r.producer.isFull, m.items.length === m.capacity);
  assert.equal(s.rejectedFull, m.rejected);
  assert.equal((s.enqueued - m.enqueued) >>> 0, 0);
}

class TryEnqueue implements Cmd<HostReal> {
  constructor(readonly msg: Msg) {}
  check = (): boolean => true;
  run(m: Model, r: HostReal): void {
    const msg = resolve(m, this.msg);
    const ok = r.producer.tryEnqueue(msg);
    assert.equal(ok, m.items.length < m.capacity);
    if (ok) {
      m.items.push(msg);
      m.enqueued++;
    } else m.rejected++;
    r.verify(m);
  }
  toString = (): string => `tryEnqueue(${this.msg.length})`;
}

class EnqueueBlocking implements Cmd<HostReal> {
  constructor(readonly msg: Msg) {}
  check = (): boolean => true;
  run(m: Model, r: HostReal): void {
    const msg = resolve(m, this.msg);
    if (m.items.length < m.capacity) {
      r.producer.enqueueBlocking(msg, { timeoutMs: 0 });
      m.items.push(msg);
      m.enqueued++;
    } else {
      assert.throws(() => r.producer.enqueueBlocking(msg, { timeoutMs: 0 }), QueueFullError);
      m.rejected++;
    }
    r.verify(m);
  }
  toString = (): string => `enqueueBlocking(${this.msg.length})`;
}

class EnqueueArray implements Cmd<HostReal> {
  constructor(readonly msgs: Msg[]) {}
  check = (): boolean => true;
  run(m: Model, r: HostReal): void {
    const msgs = this.msgs.map((x) => resolve(m, x));
    const got = r.producer.enqueueMany(msgs);
    assert.equal(got, Math.min(msgs.length, m.capacity - m.items.length));
    m.items.push(...msgs.slice(0, got));
    m.enqueued += got;
    m.rejected += msgs.length - got;
    r.verify(m);
  }
  toString = (): string => `enqueueMany([${this.msgs.map((x) => x.length)}])`;
}

/** Packed messages of one size; `size` undefined: the default, maxMessageSize. */
class EnqueuePacked implements Cmd<HostReal> {
  constructor(readonly count: number, readonly size: number | undefined, readonly from: number) {}
  check = (): boolean => true;
  run(m: Model, r: HostReal): void {
    const size = this.size === undefined ? m.maxMessage : this.size % (m.maxMessage + 1);
    const src = pattern(this.count * size, this.from);
    const got = this.size === undefined
      ? r.producer.enqueueMany(src, this.count)
      : r.producer.enqueueMany(src, this.count, size);
    assert.equal(got, Math.min(this.count, m.capacity - m.items.length));
    for (let j = 0; j < got; j++) m.items.push(src.slice(j * size, (j + 1) * size));
    m.enqueued += got;
    m.rejected += this.count - got;
    r.verify(m);
  }
  toString = (): string => `enqueueMany(packed ${this.count} x ${this.size ?? "max"})`;
}

class TooLarge implements Cmd<HostReal> {
  constructor(readonly extra: number) {}
  check = (): boolean => true;
  run(m: Model, r: HostReal): void {
    const big = new Uint8Array(m.maxMessage + 1 + this.extra);
    const p = r.producer;
    assertCode(() => p.tryEnqueue(big), ValidationError, ErrorCode.MessageTooLarge);
    assertCode(() => p.enqueueMany([big.subarray(1), big]), ValidationError, "E_MESSAGE_TOO_LARGE");
    assertCode(
      () => p.enqueueMany(big, 1, big.length),
      ValidationError,
      ErrorCode.MessageTooLarge,
    );
    r.verify(m);
  }
  toString = (): string => `tooLarge(+${this.extra})`;
}

class TryDequeue implements Cmd<Real> {
  check = (): boolean => true;
  run(m: Model, r: Real): void {
    const got = r.consumer.tryDequeue();
    const want = m.items.shift();
    assert.deepEqual(got, want);
    if (want) m.dequeued++;
    r.verify(m);
  }
  toString = (): string => "tryDequeue()";
}

class DequeueBlocking implements Cmd<Real> {
  check = (): boolean => true;
  run(m: Model, r: Real): void {
    const want = m.items.shift();
    if (want === undefined) {
      assert.throws(() => r.consumer.dequeueBlocking({ timeoutMs: 0 }), TimeoutError);
    } else {
      assert.deepEqual(r.consumer.dequeueBlocking({ timeoutMs: 0 }), want);
      m.dequeued++;
    }
    r.verify(m);
  }
  toString = (): string => "dequeueBlocking(0 ms)";
}

class TryDequeueInto implements Cmd<Real> {
  constructor(readonly room: number) {}
  check = (): boolean => true;
  run(m: Model, r: Real): void {
    const target = new Uint8Array(this.room % (m.maxMessage + 2)).fill(0xab);
    const want = m.items[0];
    if (want === undefined) {
      assert.equal(r.consumer.tryDequeueInto(target), -1);
    } else if (target.length < want.length) {
      assertCode(
        () => r.consumer.tryDequeueInto(target),
        ValidationError,
        ErrorCode.InvalidArgument,
      );
    } else {
      assert.equal(r.consumer.tryDequeueInto(target), want.length);
      assert.deepEqual(target.subarray(0, want.length), want);
      assert.ok(target.subarray(want.length).every((x) => x === 0xab), "wrote past the message");
      m.items.shift();
      m.dequeued++;
    }
    r.verify(m);
  }
  toString = (): string => `tryDequeueInto(${this.room})`;
}

class DequeueInto implements Cmd<Real> {
  constructor(readonly max: number, readonly withLengths: boolean) {}
  check = (): boolean => true;
  run(m: Model, r: Real): void {
    const stride = r.consumer.slotSize;
    const target = new Uint8Array(this.max * stride);
    const lengths = this.withLengths ? new Uint32Array(this.max).fill(0xdead) : undefined;
    const n = r.consumer.dequeueMany(target, this.max, lengths);
    const want = m.items.splice(0, this.max);
    assert.equal(n, want.length);
    for (let j = 0; j < n; j++) {
      assert.deepEqual(target.subarray(j * stride, j * stride + want[j].length), want[j]);
      if (lengths) assert.equal(lengths[j], want[j].length);
    }
    m.dequeued += n;
    r.verify(m);
  }
  toString = (): string => `dequeueMany(target, ${this.max}, ${this.withLengths})`;
}

class DequeueArray implements Cmd<Real> {
  constructor(readonly max: number) {}
  check = (): boolean => true;
  run(m: Model, r: Real): void {
    const got = r.consumer.dequeueMany(this.max);
    const want = m.items.splice(0, this.max);
    assert.deepEqual(got, want);
    m.dequeued += want.length;
    r.verify(m);
  }
  toString = (): string => `dequeueMany(${this.max})`;
}

class PeekConsume implements Cmd<Real> {
  constructor(readonly count: number) {}
  check = (m: Readonly<Model>): boolean => this.count <= m.items.length;
  run(m: Model, r: Real): void {
    for (let j = 0; j < this.count; j++) assert.deepEqual(r.consumer.peek(j), m.items[j]);
    assert.equal(r.consumer.peek(m.items.length), undefined);
    r.consumer.consume(this.count);
    m.items.splice(0, this.count);
    m.dequeued += this.count;
    r.verify(m);
  }
  toString = (): string => `peek+consume(${this.count})`;
}

const count = fc.integer({ min: 0, max: 20 });

const consumerCommands: fc.Arbitrary<Cmd<Real>>[] = [
  fc.constant(new TryDequeue()),
  fc.constant(new DequeueBlocking()),
  fc.nat(100).map((n) => new TryDequeueInto(n)),
  fc.tuple(fc.integer({ min: 1, max: 20 }), fc.boolean()).map(([n, l]) => new DequeueInto(n, l)),
  count.map((n) => new DequeueArray(n)),
  fc.integer({ min: 0, max: 4 }).map((n) => new PeekConsume(n)),
];

const hostCommands: fc.Arbitrary<Iterable<Cmd<HostReal>>> = fc.commands<Model, HostReal>([
  msgArb.map((x) => new TryEnqueue(x)),
  msgArb.map((x) => new EnqueueBlocking(x)),
  fc.array(msgArb, { maxLength: 12 }).map((x) => new EnqueueArray(x)),
  fc.tuple(count, fc.option(fc.nat(200), { nil: undefined }), fc.nat(255))
    .map(([c, s, f]) => new EnqueuePacked(c, s, f)),
  fc.nat(20).map((n) => new TooLarge(n)),
  ...consumerCommands,
], { maxCommands: 150, size: "+1" });

const shape = {
  capacity: fc.integer({ min: 1, max: 5 }).map((b) => 2 ** b),
  slotSize: fc.integer({ min: 1, max: 48 }),
  initialCounter: fc.oneof(fc.constant(0), fc.integer({ min: 2 ** 32 - 64, max: 2 ** 32 - 1 })),
};

for (const [name, Q] of KINDS) {
  describe(`sealed ${name} queue against an array model`, () => {
    it("agrees on random command sequences (lengths, batches, wrap-around, two handles)", {
      timeout: 120_000,
    }, () => {
      const before = executed;
      fc.assert(
        fc.property(
          shape.capacity,
          shape.slotSize,
          shape.initialCounter,
          fc.boolean(),
          hostCommands,
          (capacity, slotSize, initialCounter, shared, cmds) => {
            const producer = Q.create({ capacity, slotSize, initialCounter, shared, sealed: true });
            const consumer = new Q(producer.buffer, producer.byteOffset);
            assert.ok(consumer.sealed);
            const model: Model = {
              items: [],
              rejected: 0,
              enqueued: initialCounter,
              dequeued: initialCounter,
              capacity,
              maxMessage: consumer.maxMessageSize,
            };
            const real: HostReal = {
              producer,
              consumer,
              verify: (m) => verifyHost(m, real),
            };
            fc.modelRun(() => ({ model, real }), cmds);
          },
        ),
        { numRuns: 250 },
      );
      assert.ok(executed > before);
    });
  });
}

// A GPU producer, simulated: it writes slots by hand in the reference format, stores tail late or
// never, and sometimes leaves a vector's seal straggling while the consumer looks.

class GpuWrite implements Cmd<GpuReal> {
  constructor(readonly msgs: Msg[], readonly storeTail: boolean) {}
  check = (): boolean => true;
  run(m: Model, r: GpuReal): void {
    const head = Atomics.load(header(r.consumer), QueueWord.head);
    const free = m.capacity - ((r.gpuTail - head) | 0);
    assert.equal(free, m.capacity - m.items.length);
    const k = Math.min(free, this.msgs.length);
    for (let j = 0; j < k; j++) {
      const msg = resolve(m, this.msgs[j]);
      handWrite(r.consumer, r.gpuTail, msg);
      r.gpuTail = (r.gpuTail + 1) | 0;
      m.items.push(msg);
    }
    if (this.storeTail) Atomics.store(header(r.consumer), QueueWord.tail, r.gpuTail);
    r.verify(m);
  }
  toString = (): string => `gpuWrite([${this.msgs.map((x) => x.length)}], tail ${this.storeTail})`;
}

class GpuStoreTail implements Cmd<GpuReal> {
  check = (): boolean => true;
  run(m: Model, r: GpuReal): void {
    Atomics.store(header(r.consumer), QueueWord.tail, r.gpuTail);
    r.verify(m);
  }
  toString = (): string => "gpuStoreTail()";
}

class GpuTornWrite implements Cmd<GpuReal> {
  constructor(readonly msg: Msg, readonly vector: number, readonly stale: boolean) {}
  check = (m: Readonly<Model>): boolean => m.items.length < m.capacity;
  run(m: Model, r: GpuReal): void {
    const msg = resolve(m, this.msg);
    const t = r.gpuTail;
    const v = this.vector % Math.ceil((4 + msg.length) / 12);
    const bad = this.stale ? seal(t - m.capacity) : seal(t) ^ 0x4000;
    handWrite(r.consumer, t, msg, { vector: v, seal: bad });
    // Tail names the message; the consumer must still not see it.
    Atomics.store(header(r.consumer), QueueWord.tail, (t + 1) | 0);
    assert.equal(r.consumer.available(), m.items.length);
    assert.equal(r.consumer.peek(m.items.length), undefined);
    assert.equal(decodeSealed(r.consumer, t), undefined);
    writeSeal(r.consumer, t, v);
    r.gpuTail = (t + 1) | 0;
    m.items.push(msg);
    r.verify(m);
  }
  toString = (): string => `gpuTornWrite(${this.msg.length}, vector ${this.vector})`;
}

const gpuCommands: fc.Arbitrary<Iterable<Cmd<GpuReal>>> = fc.commands<Model, GpuReal>([
  fc.tuple(fc.array(msgArb, { maxLength: 10 }), fc.boolean())
    .map(([x, s]) => new GpuWrite(x, s)),
  fc.constant(new GpuStoreTail()),
  fc.tuple(msgArb, fc.nat(3), fc.boolean()).map(([x, v, s]) => new GpuTornWrite(x, v, s)),
  ...consumerCommands,
], { maxCommands: 150, size: "+1" });

describe("sealed SPSC consumer against an array model, GPU-like producer", () => {
  it("reads exactly the sealed messages, in order, whatever tail says", {
    timeout: 120_000,
  }, () => {
    const before = executed;
    fc.assert(
      fc.property(
        shape.capacity,
        shape.slotSize,
        shape.initialCounter,
        fc.boolean(),
        gpuCommands,
        (capacity, slotSize, initialCounter, shared, cmds) => {
          const q = SpscQueue.create({ capacity, slotSize, initialCounter, shared, sealed: true });
          const model: Model = {
            items: [],
            rejected: 0,
            enqueued: initialCounter,
            dequeued: initialCounter,
            capacity,
            maxMessage: q.maxMessageSize,
          };
          const real: GpuReal = {
            consumer: q,
            gpuTail: initialCounter | 0,
            verify: (m) => verifyCommon(m, q),
          };
          fc.modelRun(() => ({ model, real }), cmds);
        },
      ),
      { numRuns: 250 },
    );
    assert.ok(executed > before);
  });
});
