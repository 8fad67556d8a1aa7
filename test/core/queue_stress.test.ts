// Queues across real Workers: several producers and one consumer on separate threads, checking
// that nothing is lost, duplicated, torn or reordered per producer, and that waits across
// threads (blocking and async) wake up. The machine may have few cores; the fixtures park with
// Atomics.wait instead of spinning when they cannot make progress.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { MpscQueue } from "../../src/core/mpsc_queue.ts";
import { SpscQueue } from "../../src/core/spsc_queue.ts";
import type { ConsumerJob, ConsumerReport } from "../fixtures/queue_consumer.ts";
import type { ProducerJob } from "../fixtures/queue_producer.ts";

const PRODUCER = new URL("../fixtures/queue_producer.ts", import.meta.url);
const CONSUMER = new URL("../fixtures/queue_consumer.ts", import.meta.url);

/** Runs one fixture worker with `job` and resolves with its single reply. */
function runWorker<T>(url: URL, job: unknown, workers: Worker[], timeoutMs = 60_000): Promise<T> {
  const worker = new Worker(url, { type: "module" });
  workers.push(worker);
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`worker ${url.pathname} timed out`)),
      timeoutMs,
    );
    worker.onmessage = (e: MessageEvent<T>) => {
      clearTimeout(timer);
      resolve(e.data);
    };
    worker.onerror = (e: ErrorEvent) => {
      clearTimeout(timer);
      e.preventDefault();
      reject(new Error(`worker ${url.pathname} failed: ${e.message}`));
    };
    worker.postMessage(job);
  });
}

async function withWorkers<T>(body: (workers: Worker[]) => Promise<T>): Promise<T> {
  const workers: Worker[] = [];
  try {
    return await body(workers);
  } finally {
    for (const w of workers) w.terminate();
  }
}

function assertReport(report: ConsumerReport, producers: number, perProducer: number): void {
  assert.deepEqual(report.errors, []);
  assert.equal(report.received, producers * perProducer);
  assert.deepEqual(report.counts, new Array(producers).fill(perProducer));
}

describe("queues across workers", () => {
  it("MPSC: 4 producers x 1,000,000 messages, none lost, duplicated or reordered", async () => {
    const producers = 4;
    const perProducer = 1_000_000;
    const q = MpscQueue.create({ capacity: 4096, slotSize: 16 });
    const buffer = q.buffer as SharedArrayBuffer;
    const start = new SharedArrayBuffer(4);
    await withWorkers(async (workers) => {
      const consumer = runWorker<ConsumerReport>(
        CONSUMER,
        {
          buffer,
          byteOffset: 0,
          kind: "mpsc",
          producers,
          perProducer,
          seed: 99,
          maxBatch: 256,
        } satisfies ConsumerJob,
        workers,
      );
      const sent = Array.from(
        { length: producers },
        (_, p) =>
          runWorker<{ sent: number }>(
            PRODUCER,
            {
              buffer,
              byteOffset: 0,
              kind: "mpsc",
              producerId: p,
              count: perProducer,
              seed: 1234 + p,
              maxBatch: 64,
              start,
            } satisfies ProducerJob,
            workers,
          ),
      );
      // Release all producers at once so that they contend on the tail CAS.
      await new Promise((r) => setTimeout(r, 50));
      Atomics.store(new Int32Array(start), 0, 1);
      Atomics.notify(new Int32Array(start), 0);
      for (const s of await Promise.all(sent)) assert.equal(s.sent, perProducer);
      assertReport(await consumer, producers, perProducer);
    });
    const stats = q.stats();
    assert.equal(stats.len, 0);
    assert.equal(stats.enqueued, producers * perProducer);
    assert.equal(stats.dequeued, producers * perProducer);
  });

  it("SPSC: 2,000,000 messages with random batch sizes on both sides, in order", async () => {
    const count = 2_000_000;
    // A non-zero start exercises counter wrap-around part-way through the run.
    const q = SpscQueue.create({ capacity: 1024, slotSize: 16, initialCounter: 2 ** 32 - 1000 });
    const buffer = q.buffer as SharedArrayBuffer;
    await withWorkers(async (workers) => {
      const consumer = runWorker<ConsumerReport>(
        CONSUMER,
        {
          buffer,
          byteOffset: 0,
          kind: "spsc",
          producers: 1,
          perProducer: count,
          seed: 7,
          maxBatch: 300,
        } satisfies ConsumerJob,
        workers,
      );
      const sent = await runWorker<{ sent: number }>(
        PRODUCER,
        {
          buffer,
          byteOffset: 0,
          kind: "spsc",
          producerId: 0,
          count,
          seed: 42,
          maxBatch: 200,
        } satisfies ProducerJob,
        workers,
      );
      assert.equal(sent.sent, count);
      assertReport(await consumer, 1, count);
    });
    assert.equal(q.stats().dequeued, (2 ** 32 - 1000 + count) % 2 ** 32);
  });

  it("the main thread awaits dequeue() while a worker produces with pauses", async () => {
    const count = 3_000;
    const q = SpscQueue.create({ capacity: 64, slotSize: 16 });
    await withWorkers(async (workers) => {
      const sent = runWorker<{ sent: number }>(
        PRODUCER,
        {
          buffer: q.buffer as SharedArrayBuffer,
          byteOffset: 0,
          kind: "spsc",
          producerId: 5,
          count,
          seed: 3,
          maxBatch: 16,
          pauseEvery: 500,
        } satisfies ProducerJob,
        workers,
      );
      for (let i = 0; i < count; i++) {
        const m = await q.dequeue({ timeoutMs: 10_000 });
        const view = new DataView(m.buffer, m.byteOffset, m.byteLength);
        assert.equal(view.getInt32(0, true), 5);
        assert.equal(view.getInt32(4, true), i);
      }
      assert.equal((await sent).sent, count);
    });
  });

  it("the main thread awaits enqueue() while a worker consumer frees space", async () => {
    const count = 20_000;
    const q = MpscQueue.create({ capacity: 8, slotSize: 16 });
    await withWorkers(async (workers) => {
      const consumer = runWorker<ConsumerReport>(
        CONSUMER,
        {
          buffer: q.buffer as SharedArrayBuffer,
          byteOffset: 0,
          kind: "mpsc",
          producers: 1,
          perProducer: count,
          seed: 11,
          maxBatch: 3,
        } satisfies ConsumerJob,
        workers,
      );
      const message = new Uint8Array(16);
      const words = new Int32Array(message.buffer);
      for (let i = 0; i < count; i++) {
        words[0] = 0;
        words[1] = i;
        words[2] = i ^ (0xa5a5a5a5 | 0);
        words[3] = 0;
        await q.enqueue(message, { timeoutMs: 10_000 });
      }
      assertReport(await consumer, 1, count);
    });
    assert.equal(q.stats().rejectedFull, 0);
  });
});
