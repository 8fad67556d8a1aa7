/**
 * A lock-free multi-producer single-consumer ring queue over any ArrayBuffer or SharedArrayBuffer,
 * in the region format of `queue_layout.ts` (documented in docs/queues.md).
 *
 * Producers reserve slots with one compare-and-swap on `tail` (a batch of k slots with one CAS),
 * write them, then publish each slot by storing its sequence number `seq[t & mask] = t + 1`. The
 * consumer reads slot `head` only once its sequence says it is published, so a slow producer
 * never lets it see a half-written slot; it then stores `head` once per batch. Producers see free
 * space through `head` (cached; re-read only when the cached value says full).
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
 * Multi-producer single-consumer lock-free queue of byte messages: any number of threads may
 * produce concurrently; one thread at a time consumes.
 *
 * @example
 * ```ts
 * import { MpscQueue } from "@ringkernel/core";
 * const q = MpscQueue.create({ capacity: 4096, slotSize: 64 });
 * // Each producer worker: const q = new MpscQueue(buffer, byteOffset); q.tryEnqueue(bytes)
 * q.enqueueMany([new Uint8Array([1]), new Uint8Array([2, 3])]);
 * const lengths = new Uint32Array(32);
 * const out = new Uint8Array(32 * q.slotSize);
 * const n = q.dequeueMany(out, 32, lengths); // n === 2, lengths[1] === 2
 * console.log(n, lengths[1]);
 * ```
 */
export class MpscQueue extends RingQueue {
  // Last observed head (producer side); only ever behind the truth.
  #head: number;

  /** Attaches to a formatted MPSC region at `byteOffset` (128-aligned) of `buffer`. */
  constructor(buffer: ArrayBufferLike, byteOffset = 0) {
    super(buffer, byteOffset, QueueKind.Mpsc);
    this.#head = Atomics.load(this.h, QueueWord.head);
  }

  /** Allocates a SharedArrayBuffer (or an ArrayBuffer with `shared: false`) holding a new queue. */
  static create(options: QueueCreateOptions): MpscQueue {
    const { byteLength } = queueLayout(options.capacity, options.slotSize, options.sealed);
    const buffer = allocateQueueBuffer(byteLength, options.shared ?? true);
    return MpscQueue.init(buffer, 0, options);
  }

  /** Formats a new queue at `byteOffset` (128-aligned) of `buffer` and attaches to it. */
  static init(buffer: ArrayBufferLike, byteOffset: number, options: QueueOptions): MpscQueue {
    initQueueRegion(buffer, byteOffset, QueueKind.Mpsc, options);
    return new MpscQueue(buffer, byteOffset);
  }

  /** Attaches to an existing queue; the same as the constructor. */
  static open(buffer: ArrayBufferLike, byteOffset = 0): MpscQueue {
    return new MpscQueue(buffer, byteOffset);
  }

  /** Always {@linkcode QueueKind.Mpsc}. */
  get kind(): QueueKind {
    return QueueKind.Mpsc;
  }

  /**
   * Claims up to `want` slots with one CAS on tail. The free count `capacity - (t - head)` is
   * exact for the `t` the CAS succeeds on: tail stayed `t` from its load to the CAS, so the head
   * read in between was at most `t`, and every slot below `head + capacity` has been read out.
   */
  protected reserve(want: number): number {
    const h = this.h;
    const cap = this.capacity;
    let t = Atomics.load(h, QueueWord.tail);
    for (;;) {
      let used = (t - this.#head) | 0;
      if (used < 0 || cap - used < want) {
        this.#head = Atomics.load(h, QueueWord.head);
        used = (t - this.#head) | 0;
        if (used < 0) {
          // Our tail is stale: the consumer has already passed it. Start over.
          t = Atomics.load(h, QueueWord.tail);
          continue;
        }
      }
      const free = cap - used;
      if (free <= 0) {
        // Full as seen from t; a newer tail only makes it fuller.
        return 0;
      }
      const k = free < want ? free : want;
      const seen = Atomics.compareExchange(h, QueueWord.tail, t, (t + k) | 0);
      if (seen === t) {
        this.reservedAt = t;
        return k;
      }
      t = seen;
    }
  }

  /** Publishes each slot in ticket order, so the consumer can start on the first at once. */
  protected publish(start: number, count: number): void {
    const seq = this.seq;
    const mask = this.mask;
    for (let j = 0; j < count; j++) {
      const t = (start + j) | 0;
      Atomics.store(seq, t & mask, (t + 1) | 0);
    }
  }

  /** Counts consecutive published slots from head: slot of ticket t is ready when seq = t + 1. */
  protected readable(max: number): number {
    const seq = this.seq;
    const mask = this.mask;
    const head = this.ownHead;
    let n = 0;
    while (n < max) {
      const t = (head + n) | 0;
      if (Atomics.load(seq, t & mask) !== ((t + 1) | 0)) break;
      n++;
    }
    return n;
  }
}
