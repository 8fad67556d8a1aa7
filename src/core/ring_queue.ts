/**
 * What {@linkcode SpscQueue} and {@linkcode MpscQueue} share: the views over a queue region, the
 * consumer side (identical for both: a single consumer that advances `head` once per batch), the
 * copy loops, stats, and the blocking and async waits. The two subclasses differ only in how a
 * producer reserves slots and publishes them, and in how the consumer learns that a slot is ready.
 * @module
 */

import {
  ErrorCode,
  InvalidStateError,
  QueueFullError,
  TimeoutError,
  ValidationError,
} from "./errors.ts";
import {
  openQueueRegion,
  QUEUE_HEADER_BYTES,
  type QueueKind,
  type QueueRegionLayout,
  QueueWord,
  sealedVectors,
  sealOf,
} from "./queue_layout.ts";
import { notifyWord, waitWord, waitWordAsync } from "./wait.ts";

/** Counters of a queue. All are u32 in shared memory and wrap at 2^32; differences stay exact. */
export interface QueueStats {
  /** Messages enqueued so far: the tail counter (MPSC: reserved, possibly still being written). */
  readonly enqueued: number;
  /** Messages dequeued so far: the head counter. */
  readonly dequeued: number;
  /** Messages refused because the queue was full (failed `tryEnqueue`, timed-out `enqueue`). */
  readonly rejectedFull: number;
  /** Messages in the queue now (`enqueued - dequeued`, wrap-safe). */
  readonly len: number;
  /** Number of slots. */
  readonly capacity: number;
}

/** Options of the waiting variants of enqueue and dequeue. */
export interface QueueWaitOptions {
  /** How long to wait for space (enqueue) or for a message (dequeue). Default: for ever. */
  timeoutMs?: number;
}

const now = (): number => performance.now();

/**
 * Base class of the lock-free ring queues; not constructed directly. Any number of handles, in any
 * number of threads, may be open on one region; each role (producer, consumer) keeps the rules of
 * its queue kind: one consumer thread for both kinds, one producer thread for SPSC.
 *
 * Messages are byte strings of at most `maxMessageSize` bytes, copied into fixed-size slots. Nothing is
 * ever overwritten: a full queue refuses (`tryEnqueue` returns false), waits (`enqueue`), or
 * enqueues only a prefix of a batch (`enqueueMany` returns the count).
 */
export abstract class RingQueue {
  /** The memory the queue lives in: hand it and {@linkcode byteOffset} to another thread to attach. */
  readonly buffer: ArrayBufferLike;
  /** Start of the queue region within {@linkcode buffer} (a multiple of 128). */
  readonly byteOffset: number;
  /** Number of slots (a power of two). */
  readonly capacity: number;
  /** Bytes per slot, the stride of the data array; the largest message unless sealed. */
  readonly slotSize: number;
  /** Largest message in bytes: `slotSize`, or less in a sealed region. */
  readonly maxMessageSize: number;
  /** Whether slots are sealed (queue_layout.ts): each 16-byte vector carries its ticket's seal. */
  readonly sealed: boolean;
  /** Bytes of the whole region. */
  readonly byteLength: number;
  /** The region's layout (array offsets). */
  readonly layout: QueueRegionLayout;

  /** Header words; indices from `QueueWord`. */
  protected readonly h: Int32Array;
  /** Per-slot publication sequence numbers. */
  protected readonly seq: Int32Array;
  /** Per-slot message lengths. */
  protected readonly lens: Uint32Array;
  /** Slot data, stride `slotSize`. */
  protected readonly data: Uint8Array;
  /** The same data as words (sealed slots are read and written a word at a time). */
  protected readonly dataWords: Int32Array;
  /** `capacity - 1`. */
  protected readonly mask: number;
  /** First ticket of the most recent successful `reserve`. */
  protected reservedAt = 0;

  /** Attaches to an existing region of the given kind, validating its header. */
  protected constructor(buffer: ArrayBufferLike, byteOffset: number, kind: QueueKind) {
    const layout = openQueueRegion(buffer, byteOffset, kind);
    this.buffer = buffer;
    this.byteOffset = byteOffset;
    this.layout = layout;
    this.capacity = layout.capacity;
    this.slotSize = layout.slotSize;
    this.maxMessageSize = layout.maxMessage;
    this.sealed = layout.sealed;
    this.byteLength = layout.byteLength;
    this.mask = layout.capacity - 1;
    this.h = new Int32Array(buffer, byteOffset, QUEUE_HEADER_BYTES >> 2);
    this.seq = new Int32Array(buffer, byteOffset + layout.seqOffset, layout.capacity);
    this.lens = new Uint32Array(buffer, byteOffset + layout.lenOffset, layout.capacity);
    this.data = new Uint8Array(
      buffer,
      byteOffset + layout.dataOffset,
      layout.capacity * layout.slotSize,
    );
    this.dataWords = new Int32Array(
      buffer,
      byteOffset + layout.dataOffset,
      (layout.capacity * layout.slotSize) / 4,
    );
  }

  // ---------------------------------------------------------------- slots

  /** Writes `message` into the slot of ticket `t` (its length too); the caller publishes it. */
  protected writeSlot(t: number, message: Uint8Array): void {
    const i = t & this.mask;
    const at = i * this.slotSize;
    if (!this.sealed) {
      this.data.set(message, at);
      this.lens[i] = message.length;
      return;
    }
    // A word per store (not a byte): the stream's u32 word s >= 1 holds message bytes 4s-4..4s-1
    // and sits at word s % 3 of vector s / 3, so the message never needs a word-aligned view.
    const words = this.dataWords;
    const len = message.length;
    const first = at >> 2;
    words[first] = len;
    let w = first + 1;
    let j = 1;
    let k = 0;
    for (const full = len & ~3; k < full; k += 4) {
      words[w] = message[k] | (message[k + 1] << 8) | (message[k + 2] << 16) |
        (message[k + 3] << 24);
      if (++j === 3) {
        j = 0;
        w += 2;
      } else w++;
    }
    const rest = len - k;
    if (rest > 0) {
      let last = message[k];
      if (rest > 1) last |= message[k + 1] << 8;
      if (rest > 2) last |= message[k + 2] << 16;
      words[w] = last;
      if (++j === 3) j = 0;
      else w++;
    }
    // Zero-pad the last vector's unused words.
    if (j !== 0) { for (; j < 3; j++) words[w++] = 0; }
    // Each seal after its vector's words (a sequentially consistent store orders them).
    const seal = sealOf(t);
    const n = sealedVectors(len);
    for (let v = 0; v < n; v++) Atomics.store(words, first + 4 * v + 3, seal);
  }

  /**
   * Length of the message in the slot of ticket `t`; in a sealed region -1 while any of its
   * vectors does not carry the ticket's seal yet (its writer's stores have not all landed).
   */
  protected slotLength(t: number): number {
    const i = t & this.mask;
    if (!this.sealed) return this.lens[i];
    const words = this.dataWords;
    const w = (i * this.slotSize) >> 2;
    const seal = sealOf(t);
    if (Atomics.load(words, w + 3) !== seal) return -1;
    const len = words[w] >>> 0;
    if (len > this.maxMessageSize) {
      throw new InvalidStateError(
        ErrorCode.InvalidState,
        `corrupt sealed slot ${i}: length ${len} exceeds the ${this.maxMessageSize}-byte maximum`,
      );
    }
    const n = sealedVectors(len);
    for (let v = 1; v < n; v++) if (Atomics.load(words, w + 4 * v + 3) !== seal) return -1;
    return len;
  }

  /** Copies the `len`-byte message of ticket `t` to `target` at `offset`. */
  protected copySlot(t: number, len: number, target: Uint8Array, offset: number): void {
    const at = (t & this.mask) * this.slotSize;
    if (!this.sealed) {
      target.set(this.data.subarray(at, at + len), offset);
      return;
    }
    // A word per load (see writeSlot); the target takes bytes, so it needs no alignment.
    const words = this.dataWords;
    let w = (at >> 2) + 1;
    let j = 1;
    let o = offset;
    for (const end = offset + (len & ~3); o < end; o += 4) {
      const x = words[w];
      target[o] = x;
      target[o + 1] = x >> 8;
      target[o + 2] = x >> 16;
      target[o + 3] = x >> 24;
      if (++j === 3) {
        j = 0;
        w += 2;
      } else w++;
    }
    const rest = offset + len - o;
    if (rest > 0) {
      const x = words[w];
      target[o] = x;
      if (rest > 1) target[o + 1] = x >> 8;
      if (rest > 2) target[o + 2] = x >> 16;
    }
  }

  /**
   * Length of the oldest message when it is ready to read, else -1. Throws like
   * {@linkcode slotLength} for a corrupt slot and for an MPSC slot published without its seals.
   */
  protected headLength(): number {
    return this.readable(1) === 0 ? -1 : this.#readyLength(this.ownHead);
  }

  /**
   * {@linkcode slotLength} of a slot the consumer counted as ready. Throws when its seals are
   * missing (an MPSC slot published by seq without them), rather than dropping it or reading it.
   */
  #readyLength(t: number): number {
    const len = this.slotLength(t);
    if (len < 0) {
      throw new InvalidStateError(
        ErrorCode.InvalidState,
        `slot ${t & this.mask} was published without its seals`,
      );
    }
    return len;
  }

  /** The message of ticket `t` (published): a view of a plain slot, a copy of a sealed one. */
  protected slotBytes(t: number): Uint8Array {
    const len = this.#readyLength(t);
    if (!this.sealed) {
      const at = (t & this.mask) * this.slotSize;
      return this.data.subarray(at, at + len);
    }
    const out = new Uint8Array(len);
    this.copySlot(t, len, out, 0);
    return out;
  }

  /**
   * The consumer's own head counter. Only the consumer thread writes it, so a plain read is
   * race-free there, and it avoids `Atomics.load`, which V8 does not inline (about 8 ns a call).
   */
  protected get ownHead(): number {
    return this.h[QueueWord.head];
  }

  /** The queue kind stored in the header (0 SPSC, 1 MPSC). */
  abstract get kind(): QueueKind;

  /**
   * Reserves up to `want` consecutive slots for writing; returns how many (0 when full) and sets
   * {@linkcode reservedAt} to the first ticket.
   */
  protected abstract reserve(want: number): number;

  /** Makes `count` written slots starting at ticket `start` visible to the consumer. */
  protected abstract publish(start: number, count: number): void;

  /** How many messages from `head` on are ready to read, at most `max`. */
  protected abstract readable(max: number): number;

  // ---------------------------------------------------------------- producer side

  /**
   * Copies `message` into the queue. Returns false, counting it in `rejectedFull`, when the queue
   * is full; throws {@linkcode ValidationError} (code `MessageTooLarge`) when it exceeds
   * `slotSize`.
   */
  tryEnqueue(message: Uint8Array): boolean {
    if (this.#put(message)) return true;
    Atomics.add(this.h, QueueWord.rejectedFull, 1);
    return false;
  }

  /**
   * Enqueues as many messages as fit, in order, and returns that count; the rest (counted in
   * `rejectedFull`) were not enqueued. Either `count` fixed-size messages packed back to back in
   * `source` (`messageSize` bytes each, default `maxMessageSize`; when it equals `slotSize` the copy is
   * at most two `Uint8Array.set` calls), or an array of messages.
   */
  enqueueMany(source: Uint8Array, count: number, messageSize?: number): number;
  /** Enqueues as many of `messages` as fit, in order; returns that count (see above). */
  enqueueMany(messages: readonly Uint8Array[]): number;
  enqueueMany(
    source: Uint8Array | readonly Uint8Array[],
    count?: number,
    messageSize?: number,
  ): number {
    if (source instanceof Uint8Array) return this.#putPacked(source, count, messageSize);
    return this.#putArray(source);
  }

  /**
   * Enqueues `message`, waiting (without blocking the thread) up to `timeoutMs` for space; throws
   * {@linkcode QueueFullError} if the queue stays full, counting the message in `rejectedFull`.
   */
  async enqueue(message: Uint8Array, options: QueueWaitOptions = {}): Promise<void> {
    if (this.#put(message)) return;
    const deadline = now() + (options.timeoutMs ?? Infinity);
    for (;;) {
      const left = deadline - now();
      if (left > 0) await this.waitForSpaceAsync(left);
      if (this.#put(message)) return;
      if (left <= 0) throw this.#full(options.timeoutMs);
    }
  }

  /**
   * Like {@linkcode enqueue} but blocks the thread (`Atomics.wait`) while waiting: for workers.
   */
  enqueueBlocking(message: Uint8Array, options: QueueWaitOptions = {}): void {
    if (this.#put(message)) return;
    const deadline = now() + (options.timeoutMs ?? Infinity);
    for (;;) {
      const left = deadline - now();
      if (left > 0) this.waitForSpace(left);
      if (this.#put(message)) return;
      if (left <= 0) throw this.#full(options.timeoutMs);
    }
  }

  #full(timeoutMs: number | undefined): QueueFullError {
    Atomics.add(this.h, QueueWord.rejectedFull, 1);
    return new QueueFullError(
      ErrorCode.QueueFull,
      `queue of capacity ${this.capacity} stayed full for ${timeoutMs ?? Infinity} ms`,
    );
  }

  #checkSize(size: number): void {
    if (size > this.maxMessageSize) {
      throw new ValidationError(
        ErrorCode.MessageTooLarge,
        `a ${size}-byte message does not fit the queue's ${this.maxMessageSize}-byte slots`,
      );
    }
  }

  #put(message: Uint8Array): boolean {
    const size = message.length;
    this.#checkSize(size);
    if (this.reserve(1) === 0) return false;
    const t = this.reservedAt;
    this.writeSlot(t, message);
    this.publish(t, 1);
    this.wakeConsumer();
    return true;
  }

  #putPacked(
    source: Uint8Array,
    count: number | undefined,
    messageSize: number | undefined,
  ): number {
    const slot = this.slotSize;
    const size = messageSize ?? this.maxMessageSize;
    const n = count ?? Math.floor(source.length / Math.max(1, size));
    if (!Number.isInteger(n) || n < 0 || !Number.isInteger(size) || size < 0) {
      throw new ValidationError(
        ErrorCode.InvalidArgument,
        `enqueueMany needs a non-negative integer count and messageSize, got ${n} and ${size}`,
      );
    }
    this.#checkSize(size);
    if (n * size > source.length) {
      throw new ValidationError(
        ErrorCode.InvalidArgument,
        `enqueueMany: ${n} messages of ${size} bytes need ${n * size} bytes, ` +
          `the source has ${source.length}`,
      );
    }
    if (n === 0) return 0;
    const got = this.reserve(n);
    if (got < n) Atomics.add(this.h, QueueWord.rejectedFull, n - got);
    if (got === 0) return 0;
    const t = this.reservedAt;
    const first = t & this.mask;
    const run1 = Math.min(got, this.capacity - first);
    const run2 = got - run1;
    if (this.sealed) {
      for (let j = 0; j < got; j++) {
        this.writeSlot(t + j, source.subarray(j * size, (j + 1) * size));
      }
      this.publish(t, got);
      this.wakeConsumer();
      return got;
    }
    if (size === slot) {
      // Same stride on both sides: the slots are one or two contiguous byte ranges.
      this.data.set(source.subarray(0, run1 * slot), first * slot);
      if (run2 > 0) this.data.set(source.subarray(run1 * slot, got * slot), 0);
    } else {
      for (let j = 0; j < got; j++) {
        this.data.set(source.subarray(j * size, (j + 1) * size), ((t + j) & this.mask) * slot);
      }
    }
    this.lens.fill(size, first, first + run1);
    if (run2 > 0) this.lens.fill(size, 0, run2);
    this.publish(t, got);
    this.wakeConsumer();
    return got;
  }

  #putArray(messages: readonly Uint8Array[]): number {
    for (const m of messages) this.#checkSize(m.length);
    const n = messages.length;
    if (n === 0) return 0;
    const got = this.reserve(n);
    if (got < n) Atomics.add(this.h, QueueWord.rejectedFull, n - got);
    if (got === 0) return 0;
    const t = this.reservedAt;
    for (let j = 0; j < got; j++) this.writeSlot(t + j, messages[j]);
    this.publish(t, got);
    this.wakeConsumer();
    return got;
  }

  /** Wakes consumer waiters, if any announced themselves (an eventcount: no waiter, no syscall). */
  protected wakeConsumer(): void {
    const h = this.h;
    if (Atomics.load(h, QueueWord.consumerWaiting) !== 0) {
      Atomics.add(h, QueueWord.dataSignal, 1);
      notifyWord(h, QueueWord.dataSignal);
    }
  }

  // ---------------------------------------------------------------- consumer side

  /** Removes the oldest message and returns a copy of it, or undefined when none is ready. */
  tryDequeue(): Uint8Array | undefined {
    if (this.readable(1) === 0) return undefined;
    const message = this.slotBytes(this.ownHead).slice();
    this.release(1);
    return message;
  }

  /**
   * Removes the oldest message into `target` and returns its length, or -1 when none is ready.
   * Throws {@linkcode ValidationError} (leaving the message queued) when `target` is too short.
   */
  tryDequeueInto(target: Uint8Array): number {
    const size = this.headLength();
    if (size < 0) return -1;
    const t = this.ownHead;
    if (target.length < size) {
      throw new ValidationError(
        ErrorCode.InvalidArgument,
        `tryDequeueInto: a ${size}-byte message does not fit a ${target.length}-byte target`,
      );
    }
    this.copySlot(t, size, target, 0);
    this.release(1);
    return size;
  }

  /**
   * Removes up to `maxCount` messages. With a `target`, copies them to it with stride `slotSize`
   * (at most two `Uint8Array.set` calls; as many as fit) and their lengths to `lengths`, and
   * returns the count; with only a count, returns copies as an array.
   */
  dequeueMany(target: Uint8Array, maxCount?: number, lengths?: Uint32Array): number;
  /** Removes up to `maxCount` messages and returns copies of them, oldest first. */
  dequeueMany(maxCount: number): Uint8Array[];
  dequeueMany(
    target: Uint8Array | number,
    maxCount?: number,
    lengths?: Uint32Array,
  ): number | Uint8Array[] {
    if (typeof target === "number") return this.#takeArray(target);
    const slot = this.slotSize;
    let max = Math.min(maxCount ?? Infinity, Math.floor(target.length / slot));
    if (lengths !== undefined) max = Math.min(max, lengths.length);
    if (max <= 0) return 0;
    const n = this.readable(max);
    if (n === 0) return 0;
    if (this.sealed) {
      const head = this.ownHead;
      for (let j = 0; j < n; j++) {
        const len = this.#readyLength(head + j);
        this.copySlot(head + j, len, target, j * slot);
        if (lengths !== undefined) lengths[j] = len;
      }
      this.release(n);
      return n;
    }
    const first = this.ownHead & this.mask;
    const run1 = Math.min(n, this.capacity - first);
    const run2 = n - run1;
    target.set(this.data.subarray(first * slot, (first + run1) * slot), 0);
    if (run2 > 0) target.set(this.data.subarray(0, run2 * slot), run1 * slot);
    if (lengths !== undefined) {
      lengths.set(this.lens.subarray(first, first + run1), 0);
      if (run2 > 0) lengths.set(this.lens.subarray(0, run2), run1);
    }
    this.release(n);
    return n;
  }

  #takeArray(maxCount: number): Uint8Array[] {
    const n = this.readable(Math.max(0, maxCount));
    const out: Uint8Array[] = new Array(n);
    const head = this.ownHead;
    for (let j = 0; j < n; j++) out[j] = this.slotBytes(head + j).slice();
    if (n > 0) this.release(n);
    return out;
  }

  /**
   * A view (no copy) of the `index`-th ready message counted from the oldest, or undefined when
   * fewer are ready. The bytes stay valid until {@linkcode consume} releases the slot. A sealed
   * queue returns a copy (its slots interleave the bytes with seals).
   */
  peek(index = 0): Uint8Array | undefined {
    if (this.readable(index + 1) <= index) return undefined;
    return this.slotBytes(this.ownHead + index);
  }

  /** Releases the `count` oldest messages (read in place with {@linkcode peek}) to producers. */
  consume(count = 1): void {
    if (count === 0) return;
    if (!Number.isInteger(count) || count < 0 || this.readable(count) < count) {
      throw new InvalidStateError(
        ErrorCode.InvalidState,
        `consume(${count}): only ${this.readable(this.capacity)} messages are ready`,
      );
    }
    this.release(count);
  }

  /** Messages ready for the consumer now, at most `max` (MPSC: published in order from head). */
  available(max: number = this.capacity): number {
    return this.readable(max);
  }

  /** Advances head past `count` read slots and wakes producers waiting for space. */
  protected release(count: number): void {
    const h = this.h;
    Atomics.store(h, QueueWord.head, (h[QueueWord.head] + count) | 0);
    if (Atomics.load(h, QueueWord.producersWaiting) !== 0) {
      Atomics.add(h, QueueWord.spaceSignal, 1);
      notifyWord(h, QueueWord.spaceSignal);
    }
  }

  /**
   * Removes the oldest message, waiting (without blocking the thread) up to `timeoutMs` for one;
   * throws {@linkcode TimeoutError} when none arrives.
   */
  async dequeue(options: QueueWaitOptions = {}): Promise<Uint8Array> {
    let message = this.tryDequeue();
    if (message !== undefined) return message;
    const deadline = now() + (options.timeoutMs ?? Infinity);
    for (;;) {
      const left = deadline - now();
      if (left > 0) await this.waitForDataAsync(left);
      message = this.tryDequeue();
      if (message !== undefined) return message;
      if (left <= 0) throw this.#timeout(options.timeoutMs);
    }
  }

  /** Like {@linkcode dequeue} but blocks the thread (`Atomics.wait`) while waiting: for workers. */
  dequeueBlocking(options: QueueWaitOptions = {}): Uint8Array {
    let message = this.tryDequeue();
    if (message !== undefined) return message;
    const deadline = now() + (options.timeoutMs ?? Infinity);
    for (;;) {
      const left = deadline - now();
      if (left > 0) this.waitForData(left);
      message = this.tryDequeue();
      if (message !== undefined) return message;
      if (left <= 0) throw this.#timeout(options.timeoutMs);
    }
  }

  #timeout(timeoutMs: number | undefined): TimeoutError {
    return new TimeoutError(
      ErrorCode.Timeout,
      `no message arrived within ${timeoutMs ?? Infinity} ms`,
    );
  }

  // ---------------------------------------------------------------- waiting

  /**
   * Blocks the thread until a message is ready or `timeoutMs` passes; returns whether one is.
   * The consumer announces itself in `consumerWaiting` before its last check, and producers bump
   * `dataSignal` after publishing only when that count is non-zero (an eventcount), so a wake-up
   * is never lost and an unwatched queue costs producers one load.
   */
  waitForData(timeoutMs: number = Infinity): boolean {
    if (this.readable(1) > 0) return true;
    const h = this.h;
    const deadline = now() + timeoutMs;
    Atomics.add(h, QueueWord.consumerWaiting, 1);
    try {
      for (;;) {
        const signal = Atomics.load(h, QueueWord.dataSignal);
        if (this.readable(1) > 0) return true;
        const left = deadline - now();
        if (left <= 0) return false;
        waitWord(h, QueueWord.dataSignal, signal, left);
      }
    } finally {
      Atomics.sub(h, QueueWord.consumerWaiting, 1);
    }
  }

  /** Resolves true once a message is ready, or false after `timeoutMs`; never blocks. */
  async waitForDataAsync(timeoutMs: number = Infinity): Promise<boolean> {
    if (this.readable(1) > 0) return true;
    const h = this.h;
    const deadline = now() + timeoutMs;
    Atomics.add(h, QueueWord.consumerWaiting, 1);
    try {
      for (;;) {
        const signal = Atomics.load(h, QueueWord.dataSignal);
        if (this.readable(1) > 0) return true;
        const left = deadline - now();
        if (left <= 0) return false;
        await waitWordAsync(h, QueueWord.dataSignal, signal, left);
      }
    } finally {
      Atomics.sub(h, QueueWord.consumerWaiting, 1);
    }
  }

  /** Blocks the thread until a slot is free or `timeoutMs` passes; returns whether one is. */
  waitForSpace(timeoutMs: number = Infinity): boolean {
    if (!this.isFull) return true;
    const h = this.h;
    const deadline = now() + timeoutMs;
    Atomics.add(h, QueueWord.producersWaiting, 1);
    try {
      for (;;) {
        const signal = Atomics.load(h, QueueWord.spaceSignal);
        if (!this.isFull) return true;
        const left = deadline - now();
        if (left <= 0) return false;
        waitWord(h, QueueWord.spaceSignal, signal, left);
      }
    } finally {
      Atomics.sub(h, QueueWord.producersWaiting, 1);
    }
  }

  /** Resolves true once a slot is free, or false after `timeoutMs`; never blocks. */
  async waitForSpaceAsync(timeoutMs: number = Infinity): Promise<boolean> {
    if (!this.isFull) return true;
    const h = this.h;
    const deadline = now() + timeoutMs;
    Atomics.add(h, QueueWord.producersWaiting, 1);
    try {
      for (;;) {
        const signal = Atomics.load(h, QueueWord.spaceSignal);
        if (!this.isFull) return true;
        const left = deadline - now();
        if (left <= 0) return false;
        await waitWordAsync(h, QueueWord.spaceSignal, signal, left);
      }
    } finally {
      Atomics.sub(h, QueueWord.producersWaiting, 1);
    }
  }

  // ---------------------------------------------------------------- observation

  /** Messages in the queue (MPSC: including slots reserved by producers still writing them). */
  get len(): number {
    const used = (Atomics.load(this.h, QueueWord.tail) - Atomics.load(this.h, QueueWord.head)) | 0;
    return Math.max(0, Math.min(this.capacity, used));
  }

  /** True when no message is in the queue. */
  get isEmpty(): boolean {
    return this.len === 0;
  }

  /** True when every slot is taken. */
  get isFull(): boolean {
    return this.len === this.capacity;
  }

  /** A snapshot of the counters (u32, wrapping at 2^32). */
  stats(): QueueStats {
    const h = this.h;
    const tail = Atomics.load(h, QueueWord.tail);
    const head = Atomics.load(h, QueueWord.head);
    return {
      enqueued: tail >>> 0,
      dequeued: head >>> 0,
      rejectedFull: Atomics.load(h, QueueWord.rejectedFull) >>> 0,
      len: Math.max(0, Math.min(this.capacity, (tail - head) | 0)),
      capacity: this.capacity,
    };
  }
}
