/**
 * The memory of one kernel: a single region holding its control block, a few runtime words (the
 * doorbell the kernel parks on, counters), its state struct, its handler-latency histogram, its
 * two input lanes (high and normal priority, both MPSC: the host and other kernels produce) and
 * its output queue (SPSC: the kernel produces, the host consumes).
 *
 * ```
 * offset 0    control block (128 bytes, docs/control-block.md)
 *        128  runtime words (128 bytes, KernelWord below)
 *        256  state struct, rounded up to 128
 *        S    latency histogram (LatencyHistogram.byteLength, rounded up to 128)
 *        H    high-priority input lane   (MPSC, inputCapacity slots)
 *        N    normal-priority input lane (MPSC, inputCapacity slots)
 *        O    output queue               (SPSC, outputCapacity slots)
 * ```
 *
 * On the CPU backend the region is one SharedArrayBuffer that the host, the kernel's worker and
 * every worker that sends K2K messages to it map. On the CUDA backend it is mapped pinned host
 * memory viewed as a plain ArrayBuffer ({@linkcode KernelMemory.format}): `Atomics.load`/`store`/
 * `add`/`compareExchange` work on it, `Atomics.wait`/`notify` do not (the GPU cannot notify), so
 * the host polls it (see `isSharedView` in `src/core/wait.ts`).
 * @module
 */

import { ControlBlock } from "../core/control_block.ts";
import { ErrorCode, ValidationError } from "../core/errors.ts";
import { MpscQueue } from "../core/mpsc_queue.ts";
import { queueByteLength } from "../core/queue_layout.ts";
import { SpscQueue } from "../core/spsc_queue.ts";
import { notifyWord } from "../core/wait.ts";
import { LatencyHistogram } from "./histogram.ts";

/** Bytes of the runtime words region. */
export const KERNEL_WORDS_BYTES = 128;

/** Indices (in i32 words) of the runtime words at offset 128 of a kernel's region. */
export const KernelWord = {
  /** Bumped (and notified) to wake the kernel: new input, a command, a routing change. */
  doorbell: 0,
  /** What the parked kernel waits for: 0 running, 1 data or commands, 2 commands only. */
  sleeping: 1,
  /** Restarts done by `restart` supervision. */
  restarts: 2,
  /** Handler failures (also counted in the control block's `errorCount`). */
  handlerFailures: 3,
  /** K2K sends attempted by this kernel. */
  k2kSent: 4,
  /** K2K sends delivered. */
  k2kDelivered: 5,
  /** K2K sends refused: destination full. */
  k2kQueueFull: 6,
  /** K2K sends to an unknown or terminating kernel. */
  k2kNotFound: 7,
  /** Set by the host before a terminate command: 1 drain the input first, 0 leave it. */
  terminateMode: 8,
  /**
   * Producers between their "is the kernel gone?" check and the end of their enqueue (see
   * `enqueueGuarded` in k2k.ts). Whoever collects a dead kernel's leftovers waits for it to be 0
   * first, so a send racing a terminate is either refused or collected, never stranded.
   */
  senders: 9,
  /** Messages dropped because their checksum did not match (also counted in `dropped`). */
  corrupt: 10,
  /**
   * CUDA: 1 once the persistent kernel left its loop on a Park command (its state, counters and
   * queues all in memory); the host sets 2 before launching it again, and the kernel then goes
   * on in the state it left and clears the word.
   */
  parked: 11,
  /** CUDA bulk batches: the `seq` of the last batch the kernel finished (its memory is free). */
  bulkDone: 12,
  /** CUDA bulk batches: the `seq` of the batch the kernel is in the middle of (0: none). */
  bulkSeq: 13,
  /** CUDA bulk batches: how many messages of batch `bulkSeq` it handled so far. */
  bulkPos: 14,
} as const;

/**
 * Reserved typeId of an error reply (flags `Reply | Error`): the payload is UTF-8 JSON
 * `{ "name": ..., "message": ... }` of what the handler threw, cut to fit a slot.
 */
export const ERROR_REPLY_TYPE_ID = 0xffff_fffe;
/**
 * Reserved typeId of a bulk batch descriptor (CUDA, `KernelHandle.sendPacked`): its payload names
 * messages of the kernel's input type packed in device memory (`src/backends/cuda/bulk_channel.ts`).
 */
export const BULK_BATCH_TYPE_ID = 0xffff_fffc;
/** Reserved typeId of the empty reply to a request whose handler returned undefined. */
export const EMPTY_REPLY_TYPE_ID = 0xffff_fffd;

/** `sleeping` values. */
export const Sleeping = { No: 0, ForData: 1, ForCommands: 2 } as const;

const align128 = (n: number): number => Math.ceil(n / 128) * 128;

/** Offsets and sizes of a kernel's region. Plain data: posted to workers as is. */
export interface KernelLayout {
  /** Offset of the runtime words. */
  readonly words: number;
  /** Offset of the state struct. */
  readonly state: number;
  /** Bytes of the state struct (0 for none). */
  readonly stateSize: number;
  /** Offset of the latency histogram. */
  readonly histogram: number;
  /** Offset of the high-priority lane. */
  readonly high: number;
  /** Offset of the normal lane. */
  readonly normal: number;
  /** Offset of the output queue. */
  readonly output: number;
  /** Slots per input lane. */
  readonly inputCapacity: number;
  /** Slots of the output queue. */
  readonly outputCapacity: number;
  /** Largest envelope in bytes (a multiple of 16); the slots' stride unless sealed. */
  readonly slotSize: number;
  /**
   * Whether the lanes and the output queue have sealed slots (queue_layout.ts): the CUDA backend's,
   * so that the GPU reads a message in the round trip that finds it, and the host reads a reply
   * with no GPU fence before it.
   */
  readonly sealed: boolean;
  /** Total bytes. */
  readonly byteLength: number;
}

/** Computes the layout of a kernel's region. */
export function kernelLayout(
  stateSize: number,
  inputCapacity: number,
  outputCapacity: number,
  slotSize: number,
  sealed = false,
): KernelLayout {
  const words = 128;
  // Rounded before sizing the queues, as KernelMemory formats them with it: a sealed stride
  // depends on the largest message, so sizing by the unrounded one could overlap the regions.
  const slot = Math.ceil(slotSize / 16) * 16;
  const state = words + KERNEL_WORDS_BYTES;
  const histogram = state + align128(stateSize);
  const high = histogram + align128(LatencyHistogram.byteLength);
  const laneBytes = queueByteLength(inputCapacity, slot, sealed);
  const normal = high + laneBytes;
  const output = normal + laneBytes;
  const byteLength = output + queueByteLength(outputCapacity, slot, sealed);
  return {
    words,
    state,
    stateSize,
    histogram,
    high,
    normal,
    output,
    inputCapacity,
    outputCapacity,
    slotSize: slot,
    sealed,
    byteLength,
  };
}

/** The memory a kernel's region lives in: shared (CPU workers) or plain (mapped GPU memory). */
export type RegionBuffer = SharedArrayBuffer | ArrayBuffer;

/** Typed handles over a kernel's region; the host and the kernel's worker each make one. */
export class KernelMemory<B extends RegionBuffer = RegionBuffer> {
  /** The region. */
  readonly buffer: B;
  /** Its layout. */
  readonly layout: KernelLayout;
  /** The control block. */
  readonly cb: ControlBlock;
  /** The runtime words ({@linkcode KernelWord}). */
  readonly words: Int32Array;
  /** High-priority input lane. */
  readonly high: MpscQueue;
  /** Normal input lane. */
  readonly normal: MpscQueue;
  /** Output queue. */
  readonly output: SpscQueue;
  /** Handler latency, written by the kernel. */
  readonly histogram: LatencyHistogram;

  private constructor(buffer: B, layout: KernelLayout, fresh: boolean) {
    this.buffer = buffer;
    this.layout = layout;
    this.words = new Int32Array(buffer, layout.words, KERNEL_WORDS_BYTES >> 2);
    const { slotSize, sealed } = layout;
    if (fresh) {
      const lane = { capacity: layout.inputCapacity, slotSize, sealed };
      this.high = MpscQueue.init(buffer, layout.high, lane);
      this.normal = MpscQueue.init(buffer, layout.normal, lane);
      this.output = SpscQueue.init(buffer, layout.output, {
        capacity: layout.outputCapacity,
        slotSize,
        sealed,
      });
    } else {
      this.high = new MpscQueue(buffer, layout.high);
      this.normal = new MpscQueue(buffer, layout.normal);
      this.output = new SpscQueue(buffer, layout.output);
    }
    this.cb = new ControlBlock(buffer, 0);
    this.histogram = new LatencyHistogram(buffer, layout.histogram);
  }

  /** Allocates and formats a region (control block, queues); the state bytes start zeroed. */
  static create(layout: KernelLayout, kernelId: number): KernelMemory<SharedArrayBuffer> {
    return KernelMemory.format(new SharedArrayBuffer(layout.byteLength), layout, kernelId);
  }

  /**
   * Formats a region in memory the caller allocated (at least `layout.byteLength` bytes, e.g.
   * mapped pinned memory for a GPU kernel), exactly as {@linkcode create} does: zeroes it, then
   * writes the control block and the queue headers.
   */
  static format<B extends RegionBuffer>(
    buffer: B,
    layout: KernelLayout,
    kernelId: number,
  ): KernelMemory<B> {
    if (buffer.byteLength < layout.byteLength) {
      throw new ValidationError(
        ErrorCode.InvalidLayout,
        `a kernel region needs ${layout.byteLength} bytes, the buffer has ${buffer.byteLength}`,
      );
    }
    new Uint8Array(buffer, 0, layout.byteLength).fill(0);
    ControlBlock.init(buffer, 0, {
      kernelId,
      hlcNodeId: kernelId,
      inputCapacity: layout.inputCapacity,
      outputCapacity: layout.outputCapacity,
    });
    return new KernelMemory(buffer, layout, true);
  }

  /** Attaches to a region formatted by {@linkcode create} or {@linkcode format}. */
  static attach<B extends RegionBuffer>(buffer: B, layout: KernelLayout): KernelMemory<B> {
    return new KernelMemory(buffer, layout, false);
  }

  /** Messages waiting in both input lanes. */
  get inputDepth(): number {
    return this.high.len + this.normal.len;
  }
}

/**
 * Wakes the kernel owning `words` after new input, if it parked waiting for data (one load when
 * it did not: producers pay no syscall while the kernel runs).
 */
export function ringForData(words: Int32Array): void {
  if (Atomics.load(words, KernelWord.sleeping) === Sleeping.ForData) {
    Atomics.add(words, KernelWord.doorbell, 1);
    notifyWord(words, KernelWord.doorbell);
  }
}

/** Wakes the kernel owning `words` unconditionally (after a command or a routing change). */
export function ringAlways(words: Int32Array): void {
  Atomics.add(words, KernelWord.doorbell, 1);
  notifyWord(words, KernelWord.doorbell);
}
