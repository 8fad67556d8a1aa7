/**
 * The worker side of bench/queue.ts: consumes, produces or echoes over a queue, or does the same
 * with postMessage for the baselines. Each job is one message with a `mode`; the queue modes run
 * a synchronous loop and report through shared flags (word 0 ready, 1 go, 2 done) plus a reply.
 * @module
 */
import { MpscQueue } from "../../src/core/mpsc_queue.ts";
import { SpscQueue } from "../../src/core/spsc_queue.ts";
import type { RingQueue } from "../../src/core/ring_queue.ts";

/** A job for the peer worker. */
export type PeerJob =
  | {
    mode: "consume";
    kind: "spsc" | "mpsc";
    buffer: SharedArrayBuffer;
    flags: SharedArrayBuffer;
    count: number;
    /** 0: one tryDequeueInto per message; otherwise the dequeueMany batch. */
    batch: number;
  }
  | {
    mode: "produce";
    buffer: SharedArrayBuffer;
    flags: SharedArrayBuffer;
    count: number;
    /** 1: one tryEnqueue per message; otherwise the enqueueMany batch. */
    batch: number;
    messageSize: number;
  }
  | { mode: "echo"; input: SharedArrayBuffer; output: SharedArrayBuffer; count: number }
  /** Hardware floor: bounce one counter word (word 0 in, word 32 out, separate lines). */
  | { mode: "word-echo"; words: SharedArrayBuffer; count: number }
  | { mode: "pm-receive"; count: number }
  | { mode: "pm-produce"; count: number; batch: number; messageSize: number }
  | { mode: "pm-echo" };

const scope = globalThis as unknown as {
  onmessage: ((e: MessageEvent<unknown>) => void) | null;
  postMessage(msg: unknown): void;
};

const SPIN = 200;

function openQueue(kind: "spsc" | "mpsc", buffer: SharedArrayBuffer): RingQueue {
  return kind === "spsc" ? new SpscQueue(buffer) : new MpscQueue(buffer);
}

function ready(flags: Int32Array): void {
  Atomics.store(flags, 0, 1);
  Atomics.notify(flags, 0);
  while (Atomics.load(flags, 1) === 0) Atomics.wait(flags, 1, 0, 10);
}

function consume(job: Extract<PeerJob, { mode: "consume" }>): void {
  const q = openQueue(job.kind, job.buffer);
  const flags = new Int32Array(job.flags);
  const slot = q.slotSize;
  const target = new Uint8Array(Math.max(1, job.batch) * slot);
  let checksum = 0;
  let got = 0;
  let idle = 0;
  ready(flags);
  while (got < job.count) {
    let n: number;
    if (job.batch === 0) {
      n = q.tryDequeueInto(target) >= 0 ? 1 : 0;
      if (n) checksum += target[0];
    } else {
      n = q.dequeueMany(target, job.batch);
      for (let j = 0; j < n; j++) checksum += target[j * slot];
    }
    got += n;
    if (n === 0 && ++idle > SPIN) {
      // Park instead of burning a core that a producer may need.
      q.waitForData(1);
      idle = 0;
    } else if (n > 0) idle = 0;
  }
  Atomics.store(flags, 2, 1);
  Atomics.notify(flags, 2);
  scope.postMessage({ checksum });
}

function produce(job: Extract<PeerJob, { mode: "produce" }>): void {
  const q = new MpscQueue(job.buffer);
  const flags = new Int32Array(job.flags);
  const size = job.messageSize;
  const src = new Uint8Array(job.batch * size).map((_, i) => (i / size) & 0xff);
  const one = src.subarray(0, size);
  let sent = 0;
  let idle = 0;
  ready(flags);
  while (sent < job.count) {
    const n = job.batch === 1
      ? (q.tryEnqueue(one) ? 1 : 0)
      : q.enqueueMany(src, Math.min(job.batch, job.count - sent), size);
    sent += n;
    if (n === 0 && ++idle > SPIN) {
      q.waitForSpace(1);
      idle = 0;
    } else if (n > 0) idle = 0;
  }
  scope.postMessage({ sent });
}

function echo(job: Extract<PeerJob, { mode: "echo" }>): void {
  const input = new SpscQueue(job.input);
  const output = new SpscQueue(job.output);
  for (let i = 0; i < job.count; i++) {
    let message: Uint8Array | undefined;
    while ((message = input.peek()) === undefined) { /* spin: latency is the point */ }
    // Zero-copy on the way through: read in place, copy once into the reply queue.
    while (!output.tryEnqueue(message)) { /* spin */ }
    input.consume(1);
  }
  scope.postMessage({ echoed: job.count });
}

function wordEcho(job: Extract<PeerJob, { mode: "word-echo" }>): void {
  const words = new Int32Array(job.words);
  for (let i = 1; i <= job.count; i++) {
    while (Atomics.load(words, 0) !== i) { /* spin */ }
    Atomics.store(words, 32, i);
  }
  scope.postMessage({ echoed: job.count });
}

let pmRemaining = 0;
let pmChecksum = 0;
let pmEcho = false;

scope.onmessage = (e: MessageEvent<unknown>) => {
  const data = e.data;
  if (data instanceof Uint8Array) {
    if (pmEcho) {
      scope.postMessage(data);
      return;
    }
    // A single 64-byte message or a batch of them.
    pmChecksum += data[0];
    pmRemaining -= Math.max(1, data.length >> 6);
    if (pmRemaining <= 0) scope.postMessage({ checksum: pmChecksum });
    return;
  }
  const job = data as PeerJob;
  switch (job.mode) {
    case "consume":
      return consume(job);
    case "produce":
      return produce(job);
    case "echo":
      return echo(job);
    case "word-echo":
      return wordEcho(job);
    case "pm-receive":
      pmRemaining = job.count;
      pmChecksum = 0;
      scope.postMessage({ ready: true });
      return;
    case "pm-produce": {
      const msg = new Uint8Array(job.batch * job.messageSize);
      for (let sent = 0; sent < job.count; sent += job.batch) scope.postMessage(msg);
      return;
    }
    case "pm-echo":
      pmEcho = true;
      scope.postMessage({ ready: true });
      return;
  }
};
