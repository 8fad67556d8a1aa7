/**
 * A lock-free single-producer single-consumer ring queue over any ArrayBuffer or
 * SharedArrayBuffer, in the region format of `queue_layout.ts` (documented in docs/queues.md).
 *
 * The producer writes slots, then stores `tail` once per batch; the consumer reads slots, then
 * stores `head` once per batch. No CAS, no per-slot sequence numbers: each side owns one counter
 * and caches the other's, re-reading it (one cross-core cache miss) only when the cached value
 * says full or empty.
 * @module
 */

import {
  allocateQueueBuffer,
  initQueueRegion,
  type QueueCreateOptions,
  QueueKind,
  queueLayout,
  type QueueOptions,
  QueueWord,
} from "./queue_layout.ts";
import { RingQueue } from "./ring_queue.ts";

/**
 * Single-producer single-consumer lock-free queue of byte messages. Exactly one thread may
 * produce and one (possibly the same) may consume at a time.
 *
 * @example
 * ```ts
 * import { SpscQueue } from "@ringkernel/core";
 * const q = SpscQueue.create({ capacity: 1024, slotSize: 64 });
 * // In a worker: const q = new SpscQueue(buffer, byteOffset) with q.buffer, q.byteOffset.
 * q.tryEnqueue(new TextEncoder().encode("hello"));
 * const batch = new Uint8Array(16 * 64);
 * q.enqueueMany(batch, 16); // 16 messages of 64 bytes, two copies at most
 * console.log(q.len); // 17
 * console.log(new TextDecoder().decode(q.tryDequeue())); // "hello"
 * ```
 */
export class SpscQueue extends RingQueue {
  // Last observed head (producer side) and tail (consumer side); only ever behind the truth.
  #head: number;
  #tail: number;

  /** Attaches to a formatted SPSC region at `byteOffset` (128-aligned) of `buffer`. */
  constructor(buffer: ArrayBufferLike, byteOffset = 0) {
    super(buffer, byteOffset, QueueKind.Spsc);
    this.#head = Atomics.load(this.h, QueueWord.head);
    // Sealed: tail may name slots whose seals have not landed; count from head (#sealedReady).
    this.#tail = this.sealed ? this.#head : Atomics.load(this.h, QueueWord.tail);
  }

  /** Allocates a SharedArrayBuffer (or an ArrayBuffer with `shared: false`) holding a new queue. */
  static create(options: QueueCreateOptions): SpscQueue {
    const { byteLength } = queueLayout(options.capacity, options.slotSize, options.sealed);
    const buffer = allocateQueueBuffer(byteLength, options.shared ?? true);
    return SpscQueue.init(buffer, 0, options);
  }

  /** Formats a new queue at `byteOffset` (128-aligned) of `buffer` and attaches to it. */
  static init(buffer: ArrayBufferLike, byteOffset: number, options: QueueOptions): SpscQueue {
    initQueueRegion(buffer, byteOffset, QueueKind.Spsc, options);
    return new SpscQueue(buffer, byteOffset);
  }

  /** Attaches to an existing queue; the same as the constructor. */
  static open(buffer: ArrayBufferLike, byteOffset = 0): SpscQueue {
    return new SpscQueue(buffer, byteOffset);
  }

  /** Always {@linkcode QueueKind.Spsc}. */
  get kind(): QueueKind {
    return QueueKind.Spsc;
  }

  /** Free slots from the producer's view: reloads head only when the cached one says too few. */
  protected reserve(want: number): number {
    const h = this.h;
    const cap = this.capacity;
    // Only this producer writes tail: a plain read is race-free (see ownHead).
    const t = h[QueueWord.tail];
    let used = (t - this.#head) | 0;
    if (used < 0 || cap - used < want) {
      this.#head = Atomics.load(h, QueueWord.head);
      used = (t - this.#head) | 0;
    }
    const free = cap - used;
    if (free <= 0) return 0;
    this.reservedAt = t;
    return free < want ? free : want;
  }

  /** One release store of tail per batch: the slot writes before it become visible with it. */
  protected publish(start: number, count: number): void {
    Atomics.store(this.h, QueueWord.tail, (start + count) | 0);
  }

  /**
   * Ready messages from the consumer's view: reloads tail only when the cached one says too few.
   * A sealed queue goes by the slots' seals instead (its producer may store tail later, with no
   * fence before it), counting on from the last slot it found sealed.
   */
  protected readable(max: number): number {
    if (this.sealed) return this.#sealedReady(max);
    const h = this.h;
    const head = this.ownHead;
    let ready = (this.#tail - head) | 0;
    if (ready < max) {
      this.#tail = Atomics.load(h, QueueWord.tail);
      ready = (this.#tail - head) | 0;
    }
    if (ready <= 0) return 0;
    return ready < max ? ready : max;
  }

  /**
   * Sealed: the head slot's seals alone say whether it is ready, so its length comes from one
   * look at them (the scan of {@linkcode readable} would read them twice).
   */
  protected override headLength(): number {
    return this.sealed ? this.slotLength(this.ownHead) : super.headLength();
  }

  #sealedReady(max: number): number {
    const head = this.ownHead;
    let ready = (this.#tail - head) | 0;
    if (ready < 0) ready = 0;
    while (ready < max && ready < this.capacity && this.slotLength((head + ready) | 0) >= 0) {
      ready++;
    }
    // The cached tail only ever names slots already seen sealed.
    this.#tail = (head + ready) | 0;
    return ready < max ? ready : max;
  }
}
