// Single-thread tests of the lock-free queues: layout, validation, full/empty behaviour, waits,
// and model-based property tests that run random command sequences against an array model.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  CapacityError,
  ErrorCode,
  InvalidStateError,
  QueueFullError,
  TimeoutError,
  ValidationError,
} from "../../src/core/errors.ts";
import { MpscQueue } from "../../src/core/mpsc_queue.ts";
import {
  QUEUE_MAGIC,
  queueByteLength,
  QueueKind,
  queueLayout,
  QueueOffset,
} from "../../src/core/queue_layout.ts";
import type { RingQueue } from "../../src/core/ring_queue.ts";
import { SpscQueue } from "../../src/core/spsc_queue.ts";
import { assertCode, KINDS } from "./queue_helpers.ts";

const bytes = (...values: number[]): Uint8Array => new Uint8Array(values);

describe("queue layout", () => {
  it("places header words on separate 128-byte lines and the data 128-aligned", () => {
    assert.equal(QueueOffset.tail, 128);
    assert.equal(QueueOffset.head, 256);
    assert.equal(QueueOffset.rejectedFull, 132);
    assert.equal(QueueOffset.dataSignal, 384);
    assert.equal(QueueOffset.seq, 512);
    const l = queueLayout(8, 64);
    assert.deepEqual(l, {
      capacity: 8,
      slotSize: 64,
      sealed: false,
      maxMessage: 64,
      seqOffset: 512,
      lenOffset: 544,
      dataOffset: 640,
      byteLength: 640 + 8 * 64,
    });
    assert.equal(queueByteLength(1024, 64), 512 + 8192 + 65536);
    assert.equal(queueByteLength(4, 16), 768, "rounded up to 128 so that regions pack");
    assert.equal(queueLayout(4, 20).slotSize, 32, "slot sizes round up to 16");
  });

  it("writes the documented header", () => {
    const q = MpscQueue.create({ capacity: 16, slotSize: 32, initialCounter: 5 });
    const v = new DataView(q.buffer);
    assert.equal(v.getUint32(0, true), QUEUE_MAGIC);
    assert.equal(new TextDecoder().decode(new Uint8Array(q.buffer, 0, 4)), "RKQ1");
    assert.equal(v.getUint32(4, true), 1);
    assert.equal(v.getUint32(8, true), QueueKind.Mpsc);
    assert.equal(v.getUint32(12, true), 16);
    assert.equal(v.getUint32(16, true), 32);
    assert.equal(v.getUint32(20, true), 15);
    assert.equal(v.getUint32(24, true), 0, "flags: plain slots");
    assert.equal(v.getUint32(128, true), 5);
    assert.equal(v.getUint32(256, true), 5);
    // seq of the slot for ticket t starts at t ("free"), never t + 1 ("published").
    for (let t = 5; t < 21; t++) assert.equal(v.getUint32(512 + 4 * (t & 15), true), t);
  });

  it("rejects capacities that are not powers of two in [2, 2^30]", () => {
    for (const capacity of [0, 1, 3, 6, 1000, 1.5, -4, 2 ** 31, NaN]) {
      assertCode(() => SpscQueue.create({ capacity }), CapacityError, ErrorCode.InvalidCapacity);
      assertCode(() => queueByteLength(capacity), CapacityError, ErrorCode.InvalidCapacity);
    }
  });

  it("rejects misaligned offsets, short buffers and bad slot sizes", () => {
    const sab = new SharedArrayBuffer(queueByteLength(8, 16) + 256);
    assertCode(
      () => SpscQueue.init(sab, 64, { capacity: 8, slotSize: 16 }),
      ValidationError,
      ErrorCode.InvalidLayout,
    );
    assertCode(
      () => SpscQueue.init(sab, 384, { capacity: 8, slotSize: 16 }),
      CapacityError,
      ErrorCode.InvalidLayout,
    );
    assertCode(
      () => SpscQueue.init(new SharedArrayBuffer(100), 0, { capacity: 2 }),
      CapacityError,
      ErrorCode.InvalidLayout,
    );
    for (const slotSize of [0, -1, 2.5]) {
      assertCode(
        () => SpscQueue.create({ capacity: 8, slotSize }),
        ValidationError,
        ErrorCode.InvalidArgument,
      );
    }
    assertCode(
      () => SpscQueue.create({ capacity: 8, initialCounter: 2 ** 32 }),
      ValidationError,
      ErrorCode.InvalidArgument,
    );
  });

  it("attaching validates magic, kind, version and size", () => {
    const sab = new SharedArrayBuffer(queueByteLength(8, 16));
    assertCode(() => new SpscQueue(sab, 0), ValidationError, ErrorCode.InvalidLayout);
    MpscQueue.init(sab, 0, { capacity: 8, slotSize: 16 });
    assertCode(() => new SpscQueue(sab, 0), ValidationError, ErrorCode.InvalidLayout);
    assert.equal(new MpscQueue(sab, 0).capacity, 8);
    assert.equal(MpscQueue.open(sab).slotSize, 16);
    const words = new Uint32Array(sab);
    words[1] = 2;
    assertCode(() => new MpscQueue(sab, 0), ValidationError, ErrorCode.InvalidLayout);
    words[1] = 1;
    words[3] = 16; // capacity larger than the buffer holds
    words[5] = 15;
    assertCode(() => new MpscQueue(sab, 0), CapacityError, ErrorCode.InvalidLayout);
    words[3] = 6;
    assertCode(() => new MpscQueue(sab, 0), CapacityError, ErrorCode.InvalidCapacity);
  });

  it("queues at offsets inside a larger buffer do not touch their neighbours", () => {
    const size = queueByteLength(4, 16);
    const sab = new SharedArrayBuffer(128 + size + size + 128);
    const all = new Uint8Array(sab);
    all.fill(0xee);
    const a = SpscQueue.init(sab, 128, { capacity: 4, slotSize: 16 });
    const b = MpscQueue.init(sab, 128 + size, { capacity: 4, slotSize: 16 });
    for (let i = 0; i < 10; i++) {
      a.tryEnqueue(new Uint8Array(16).fill(1));
      b.tryEnqueue(new Uint8Array(16).fill(2));
      a.tryDequeue();
    }
    assert.ok(all.subarray(0, 128).every((x) => x === 0xee));
    assert.ok(all.subarray(128 + 2 * size).every((x) => x === 0xee));
    assert.equal(a.len, 0);
    assert.equal(b.len, 4);
    assert.deepEqual(b.tryDequeue(), new Uint8Array(16).fill(2));
  });
});

for (const [name, Q] of KINDS) {
  describe(`${name} queue`, () => {
    it("is FIFO and copies messages of any length up to slotSize", () => {
      const q = Q.create({ capacity: 8, slotSize: 16 });
      assert.equal(q.kind, name === "SPSC" ? QueueKind.Spsc : QueueKind.Mpsc);
      assert.ok(q.isEmpty);
      const m = bytes(1, 2, 3);
      assert.ok(q.tryEnqueue(m));
      m[0] = 9; // the queue holds a copy
      assert.ok(q.tryEnqueue(new Uint8Array(0)));
      assert.ok(q.tryEnqueue(new Uint8Array(16).fill(7)));
      assert.equal(q.len, 3);
      assert.deepEqual(q.tryDequeue(), bytes(1, 2, 3));
      assert.deepEqual(q.tryDequeue(), new Uint8Array(0));
      assert.deepEqual(q.tryDequeue(), new Uint8Array(16).fill(7));
      assert.equal(q.tryDequeue(), undefined);
      assert.deepEqual(q.stats(), {
        enqueued: 3,
        dequeued: 3,
        rejectedFull: 0,
        len: 0,
        capacity: 8,
      });
    });

    it("refuses, counts and never overwrites when full", () => {
      const q = Q.create({ capacity: 4, slotSize: 16 });
      for (let i = 0; i < 4; i++) assert.ok(q.tryEnqueue(bytes(i)));
      assert.ok(q.isFull);
      assert.equal(q.tryEnqueue(bytes(99)), false);
      assert.equal(q.tryEnqueue(bytes(98)), false);
      assert.equal(q.stats().rejectedFull, 2);
      assert.equal(q.enqueueMany([bytes(50), bytes(51)]), 0);
      assert.equal(q.stats().rejectedFull, 4);
      assert.deepEqual(q.dequeueMany(10), [bytes(0), bytes(1), bytes(2), bytes(3)]);
    });

    it("enqueues a prefix of a batch when nearly full", () => {
      const q = Q.create({ capacity: 8, slotSize: 16 });
      const src = new Uint8Array(16 * 12);
      for (let i = 0; i < 12; i++) src.fill(i, i * 16, i * 16 + 16);
      assert.equal(q.enqueueMany(src, 5), 5);
      assert.equal(q.enqueueMany(src.subarray(5 * 16), 7), 3);
      assert.equal(q.stats().rejectedFull, 4);
      const out = new Uint8Array(16 * 8);
      const lengths = new Uint32Array(8);
      assert.equal(q.dequeueMany(out, 8, lengths), 8);
      assert.deepEqual(out, src.subarray(0, 16 * 8));
      assert.deepEqual([...lengths], new Array(8).fill(16));
    });

    it("copies packed batches across the wrap point in two pieces", () => {
      const q = Q.create({ capacity: 8, slotSize: 16 });
      assert.equal(q.enqueueMany(new Uint8Array(16 * 6), 6), 6);
      assert.equal(q.dequeueMany(new Uint8Array(16 * 6), 6), 6);
      const src = new Uint8Array(16 * 7).map((_, i) => i & 0xff);
      assert.equal(q.enqueueMany(src, 7), 7); // slots 6, 7, 0..4
      const out = new Uint8Array(16 * 7);
      assert.equal(q.dequeueMany(out, 7), 7);
      assert.deepEqual(out, src);
    });

    it("packs messages shorter than a slot and reports their lengths", () => {
      const q = Q.create({ capacity: 8, slotSize: 16 });
      const src = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9]);
      assert.equal(q.enqueueMany(src, 3, 3), 3);
      assert.deepEqual(q.dequeueMany(8), [bytes(1, 2, 3), bytes(4, 5, 6), bytes(7, 8, 9)]);
      assertCode(() => q.enqueueMany(src, 4, 3), ValidationError, ErrorCode.InvalidArgument);
    });

    it("rejects messages longer than slotSize with MessageTooLarge and enqueues nothing", async () => {
      const q = Q.create({ capacity: 4, slotSize: 16 });
      const big = new Uint8Array(17);
      assertCode(() => q.tryEnqueue(big), ValidationError, ErrorCode.MessageTooLarge);
      assertCode(
        () => q.enqueueMany([bytes(1), big]),
        ValidationError,
        ErrorCode.MessageTooLarge,
      );
      assertCode(
        () => q.enqueueMany(new Uint8Array(34), 2, 17),
        ValidationError,
        ErrorCode.MessageTooLarge,
      );
      assertCode(() => q.enqueueBlocking(big), ValidationError, ErrorCode.MessageTooLarge);
      await assert.rejects(q.enqueue(big), (e: unknown) => {
        return e instanceof ValidationError && e.code === ErrorCode.MessageTooLarge;
      });
      assert.deepEqual(q.stats(), {
        enqueued: 0,
        dequeued: 0,
        rejectedFull: 0,
        len: 0,
        capacity: 4,
      });
    });

    it("tryDequeueInto copies into a caller buffer and keeps a message that does not fit", () => {
      const q = Q.create({ capacity: 4, slotSize: 16 });
      const out = new Uint8Array(16);
      assert.equal(q.tryDequeueInto(out), -1);
      q.tryEnqueue(bytes(5, 6, 7, 8));
      assertCode(
        () => q.tryDequeueInto(new Uint8Array(3)),
        ValidationError,
        ErrorCode.InvalidArgument,
      );
      assert.equal(q.tryDequeueInto(out), 4);
      assert.deepEqual(out.subarray(0, 4), bytes(5, 6, 7, 8));
      assert.ok(q.isEmpty);
    });

    it("peek reads in place and consume releases", () => {
      const q = Q.create({ capacity: 4, slotSize: 16 });
      assert.equal(q.peek(), undefined);
      q.enqueueMany([bytes(1), bytes(2, 2)]);
      const first = q.peek(0);
      const second = q.peek(1);
      assert.deepEqual(first, bytes(1));
      assert.deepEqual(second, bytes(2, 2));
      assert.equal(q.peek(2), undefined);
      assert.equal(first?.buffer, q.buffer, "a view, not a copy");
      assertCode(() => q.consume(3), InvalidStateError, ErrorCode.InvalidState);
      q.consume(2);
      assert.ok(q.isEmpty);
      assert.equal(q.available(), 0);
    });

    it("counters wrap at 2^32 and differences stay exact", () => {
      const q = Q.create({ capacity: 4, slotSize: 16, initialCounter: 2 ** 32 - 3 });
      for (let i = 0; i < 10; i++) {
        assert.ok(q.tryEnqueue(bytes(i)));
        assert.ok(q.tryEnqueue(bytes(i, i)));
        assert.equal(q.len, 2);
        assert.deepEqual(q.tryDequeue(), bytes(i));
        assert.deepEqual(q.tryDequeue(), bytes(i, i));
      }
      const s = q.stats();
      assert.equal(s.enqueued, 17);
      assert.equal(s.dequeued, 17);
      assert.equal(s.len, 0);
    });

    it("enqueue() times out with QueueFullError and counts the message once", async () => {
      const q = Q.create({ capacity: 2, slotSize: 16 });
      q.enqueueMany([bytes(1), bytes(2)]);
      const t0 = performance.now();
      await assert.rejects(q.enqueue(bytes(3), { timeoutMs: 30 }), (e: unknown) => {
        return e instanceof QueueFullError && e.code === ErrorCode.QueueFull;
      });
      assert.ok(performance.now() - t0 >= 25);
      await assert.rejects(q.enqueue(bytes(3), { timeoutMs: 0 }), QueueFullError);
      assertCode(
        () => q.enqueueBlocking(bytes(3), { timeoutMs: 5 }),
        QueueFullError,
        ErrorCode.QueueFull,
      );
      assert.equal(q.stats().rejectedFull, 3);
      assert.deepEqual(q.dequeueMany(4), [bytes(1), bytes(2)]);
    });

    it("dequeue() times out with TimeoutError", async () => {
      const q = Q.create({ capacity: 2, slotSize: 16 });
      await assert.rejects(q.dequeue({ timeoutMs: 20 }), (e: unknown) => {
        return e instanceof TimeoutError && e.code === ErrorCode.Timeout;
      });
      assertCode(() => q.dequeueBlocking({ timeoutMs: 5 }), TimeoutError, ErrorCode.Timeout);
      assert.equal(q.waitForData(5), false);
      assert.equal(await q.waitForDataAsync(5), false);
    });

    it("enqueue() waits for space that a later dequeue frees", async () => {
      const q = Q.create({ capacity: 2, slotSize: 16 });
      q.enqueueMany([bytes(1), bytes(2)]);
      setTimeout(() => q.tryDequeue(), 20);
      await q.enqueue(bytes(3), { timeoutMs: 5_000 });
      assert.deepEqual(q.dequeueMany(4), [bytes(2), bytes(3)]);
      assert.equal(q.stats().rejectedFull, 0);
    });

    it("dequeue() waits for a message that a later enqueue brings", async () => {
      const q = Q.create({ capacity: 2, slotSize: 16 });
      setTimeout(() => q.tryEnqueue(bytes(42)), 20);
      assert.deepEqual(await q.dequeue({ timeoutMs: 5_000 }), bytes(42));
      setTimeout(() => q.tryEnqueue(bytes(43)), 10);
      assert.equal(await q.waitForDataAsync(5_000), true);
      assert.equal(q.waitForData(0), true);
    });

    it("works over a plain ArrayBuffer, polling where it cannot wait", async () => {
      const q = Q.create({ capacity: 4, slotSize: 16, shared: false });
      assert.ok(!(q.buffer instanceof SharedArrayBuffer));
      setTimeout(() => q.tryEnqueue(bytes(1)), 15);
      assert.deepEqual(await q.dequeue({ timeoutMs: 5_000 }), bytes(1));
      q.enqueueMany([bytes(1), bytes(2), bytes(3), bytes(4)]);
      setTimeout(() => q.tryDequeue(), 15);
      await q.enqueue(bytes(5), { timeoutMs: 5_000 });
      assert.equal(q.waitForSpace(3), false);
      assert.deepEqual(q.dequeueMany(8), [bytes(2), bytes(3), bytes(4), bytes(5)]);
      await assert.rejects(q.dequeue({ timeoutMs: 10 }), TimeoutError);
    });

    it("separate producer and consumer handles on one region agree", () => {
      const p = Q.create({ capacity: 4, slotSize: 16 });
      const c = new Q(p.buffer, p.byteOffset);
      for (let round = 0; round < 20; round++) {
        assert.equal(p.enqueueMany([bytes(round), bytes(round + 1), bytes(round + 2)]), 3);
        assert.equal(c.available(), 3);
        assert.deepEqual(c.dequeueMany(2), [bytes(round), bytes(round + 1)]);
        assert.deepEqual(c.tryDequeue(), bytes(round + 2));
      }
      assert.deepEqual(c.stats(), p.stats());
    });
  });
}

describe("MPSC publication", () => {
  it("never hands out a slot that is reserved but not yet published", () => {
    const q = MpscQueue.create({ capacity: 8, slotSize: 16 });
    const header = new Int32Array(q.buffer, 0, 128);
    const seq = new Int32Array(q.buffer, QueueOffset.seq, 8);
    // A producer reserves ticket 0 with its CAS and is still writing the slot...
    assert.equal(Atomics.compareExchange(header, QueueOffset.tail / 4, 0, 1), 0);
    // ...while another producer enqueues ticket 1 completely.
    assert.ok(q.tryEnqueue(bytes(2)));
    assert.equal(q.len, 2);
    assert.equal(q.available(), 0);
    assert.equal(q.tryDequeue(), undefined);
    assert.equal(q.peek(), undefined);
    // The first producer finishes: writes data and length, then publishes seq = ticket + 1.
    new Uint8Array(q.buffer, queueLayout(8, 16).dataOffset, 16)[0] = 1;
    new Uint32Array(q.buffer, queueLayout(8, 16).lenOffset, 8)[0] = 1;
    Atomics.store(seq, 0, 1);
    assert.equal(q.available(), 2);
    assert.deepEqual(q.dequeueMany(4), [bytes(1), bytes(2)]);
  });

  it("a batch reservation never passes the consumer", () => {
    const q = MpscQueue.create({ capacity: 8, slotSize: 16 });
    assert.equal(q.enqueueMany(new Uint8Array(16 * 6), 6), 6);
    assert.equal(q.dequeueMany(new Uint8Array(16 * 2), 2), 2);
    assert.equal(q.enqueueMany(new Uint8Array(16 * 8), 8), 4);
    assert.ok(q.isFull);
  });
});

// ------------------------------------------------------------------ model-based property tests

interface Model {
  items: Uint8Array[];
  rejected: number;
  enqueued: number;
  dequeued: number;
  readonly capacity: number;
  readonly slotSize: number;
}

interface Real {
  producer: RingQueue;
  consumer: RingQueue;
}

type Cmd = fc.Command<Model, Real>;
let executed = 0;

function checkInvariants(m: Model, r: Real): void {
  executed++;
  const s = r.consumer.stats();
  assert.equal(s.len, m.items.length);
  assert.equal(r.producer.len, m.items.length);
  assert.equal(r.consumer.isEmpty, m.items.length === 0);
  assert.equal(r.producer.isFull, m.items.length === m.capacity);
  assert.equal(s.rejectedFull, m.rejected);
  assert.equal((s.enqueued - m.enqueued) >>> 0, 0);
  assert.equal((s.dequeued - m.dequeued) >>> 0, 0);
  assert.equal(r.consumer.available(), m.items.length);
}

class TryEnqueue implements Cmd {
  constructor(readonly msg: Uint8Array) {}
  check = (m: Readonly<Model>): boolean => this.msg.length <= m.slotSize;
  run(m: Model, r: Real): void {
    const ok = r.producer.tryEnqueue(this.msg);
    assert.equal(ok, m.items.length < m.capacity);
    if (ok) {
      m.items.push(this.msg.slice());
      m.enqueued++;
    } else m.rejected++;
    checkInvariants(m, r);
  }
  toString = (): string => `tryEnqueue(${this.msg.length})`;
}

class EnqueuePacked implements Cmd {
  constructor(readonly count: number, readonly size: number, readonly fill: number) {}
  check = (m: Readonly<Model>): boolean => this.size <= m.slotSize;
  run(m: Model, r: Real): void {
    const src = new Uint8Array(this.count * this.size).map((_, i) => (this.fill + i) & 0xff);
    const got = r.producer.enqueueMany(src, this.count, this.size);
    assert.equal(got, Math.min(this.count, m.capacity - m.items.length));
    for (let j = 0; j < got; j++) m.items.push(src.slice(j * this.size, (j + 1) * this.size));
    m.enqueued += got;
    m.rejected += this.count - got;
    checkInvariants(m, r);
  }
  toString = (): string => `enqueueMany(packed ${this.count} x ${this.size})`;
}

class EnqueueArray implements Cmd {
  constructor(readonly msgs: Uint8Array[]) {}
  check = (m: Readonly<Model>): boolean => this.msgs.every((x) => x.length <= m.slotSize);
  run(m: Model, r: Real): void {
    const got = r.producer.enqueueMany(this.msgs);
    assert.equal(got, Math.min(this.msgs.length, m.capacity - m.items.length));
    for (let j = 0; j < got; j++) m.items.push(this.msgs[j].slice());
    m.enqueued += got;
    m.rejected += this.msgs.length - got;
    checkInvariants(m, r);
  }
  toString = (): string => `enqueueMany([${this.msgs.map((x) => x.length)}])`;
}

class TryDequeue implements Cmd {
  check = (): boolean => true;
  run(m: Model, r: Real): void {
    const got = r.consumer.tryDequeue();
    const want = m.items.shift();
    assert.deepEqual(got, want);
    if (want) m.dequeued++;
    checkInvariants(m, r);
  }
  toString = (): string => "tryDequeue()";
}

class DequeueInto implements Cmd {
  constructor(readonly max: number, readonly withLengths: boolean) {}
  check = (): boolean => true;
  run(m: Model, r: Real): void {
    const slot = m.slotSize;
    const target = new Uint8Array(this.max * slot);
    const lengths = this.withLengths ? new Uint32Array(this.max) : undefined;
    const n = r.consumer.dequeueMany(target, this.max, lengths);
    const want = m.items.splice(0, this.max);
    assert.equal(n, want.length);
    for (let j = 0; j < n; j++) {
      assert.deepEqual(target.subarray(j * slot, j * slot + want[j].length), want[j]);
      if (lengths) assert.equal(lengths[j], want[j].length);
    }
    m.dequeued += n;
    checkInvariants(m, r);
  }
  toString = (): string => `dequeueMany(target, ${this.max}, ${this.withLengths})`;
}

class DequeueArray implements Cmd {
  constructor(readonly max: number) {}
  check = (): boolean => true;
  run(m: Model, r: Real): void {
    const got = r.consumer.dequeueMany(this.max);
    const want = m.items.splice(0, this.max);
    assert.deepEqual(got, want);
    m.dequeued += want.length;
    checkInvariants(m, r);
  }
  toString = (): string => `dequeueMany(${this.max})`;
}

class PeekConsume implements Cmd {
  constructor(readonly count: number) {}
  check = (m: Readonly<Model>): boolean => this.count <= m.items.length;
  run(m: Model, r: Real): void {
    for (let j = 0; j < this.count; j++) assert.deepEqual(r.consumer.peek(j), m.items[j]);
    r.consumer.consume(this.count);
    m.items.splice(0, this.count);
    m.dequeued += this.count;
    checkInvariants(m, r);
  }
  toString = (): string => `peek+consume(${this.count})`;
}

class EnqueueFullSlots implements Cmd {
  constructor(readonly count: number, readonly fill: number) {}
  check = (): boolean => true;
  run(m: Model, r: Real): void {
    new EnqueuePacked(this.count, m.slotSize, this.fill).run(m, r);
  }
  toString = (): string => `enqueueMany(packed ${this.count} x slotSize)`;
}

const MAX_SLOT = 32;

const commands: fc.Arbitrary<Iterable<Cmd>> = (() => {
  const msg = fc.uint8Array({ minLength: 0, maxLength: MAX_SLOT });
  const count = fc.integer({ min: 0, max: 20 });
  return fc.commands([
    msg.map((x) => new TryEnqueue(x)),
    fc.tuple(count, fc.integer({ min: 1, max: MAX_SLOT }), fc.nat(255))
      .map(([c, s, f]) => new EnqueuePacked(c, s, f)),
    fc.tuple(count, fc.nat(255)).map(([c, f]) => new EnqueueFullSlots(c, f)),
    fc.array(msg, { maxLength: 12 }).map((x) => new EnqueueArray(x)),
    fc.constant(new TryDequeue()),
    fc.tuple(fc.integer({ min: 1, max: 20 }), fc.boolean()).map(([n, l]) => new DequeueInto(n, l)),
    count.map((n) => new DequeueArray(n)),
    fc.integer({ min: 0, max: 4 }).map((n) => new PeekConsume(n)),
  ], { maxCommands: 200, size: "+1" });
})();

for (const [name, Q] of KINDS) {
  describe(`${name} queue against an array model`, () => {
    it("agrees on random command sequences (sizes, batches, wrap-around, two handles)", () => {
      fc.assert(
        fc.property(
          fc.integer({ min: 1, max: 5 }).map((b) => 2 ** b),
          fc.constantFrom(16, MAX_SLOT),
          fc.oneof(fc.constant(0), fc.integer({ min: 2 ** 32 - 64, max: 2 ** 32 - 1 })),
          fc.boolean(),
          commands,
          (capacity, slotSize, initialCounter, shared, cmds) => {
            const producer = Q.create({ capacity, slotSize, initialCounter, shared });
            const consumer = new Q(producer.buffer, producer.byteOffset);
            const model: Model = {
              items: [],
              rejected: 0,
              enqueued: initialCounter,
              dequeued: initialCounter,
              capacity,
              slotSize,
            };
            fc.modelRun(() => ({ model, real: { producer, consumer } }), cmds);
          },
        ),
        { numRuns: 300 },
      );
      assert.ok(executed > 0);
    });
  });
}
