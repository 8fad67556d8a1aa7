// Core tour worker: attaches to the MPSC queue the main thread created and sends `count` Reading
// envelopes, each stamped by the shared HLC it also attached to.
import { MpscQueue, SharedHlcClock, writeMessage } from "../../mod.ts";
import { Reading } from "../schemas.ts";

interface Job {
  queue: SharedArrayBuffer;
  clock: SharedArrayBuffer;
  producer: number;
  count: number;
}

const scope = globalThis as unknown as {
  onmessage: ((e: MessageEvent<Job>) => void) | null;
  postMessage(msg: unknown): void;
};

scope.onmessage = async ({ data: job }) => {
  const queue = MpscQueue.open(job.queue);
  const clock = new SharedHlcClock(job.clock, 0, job.producer);
  const slot = new Uint8Array(queue.slotSize);
  for (let seq = 0; seq < job.count; seq++) {
    const message = Reading.of({
      sensor: job.producer,
      seq,
      celsius: 20 + job.producer + seq / 100,
      ok: true,
    });
    const length = writeMessage(slot, 0, message, {
      sourceKernel: job.producer,
      timestamp: clock.tick(),
      messageId: BigInt(seq),
    }, { checksum: true });
    // A full queue makes the producer wait (never overwrite); a timeout would throw QueueFullError.
    await queue.enqueue(slot.subarray(0, length), { timeoutMs: 5_000 });
  }
  scope.postMessage("done");
};
