/**
 * The host side of a CUDA kernel's bulk batches (`KernelHandle.sendPacked`): many messages of the
 * kernel's input type, packed back to back in the schema's layout, reach the kernel through device
 * memory instead of one envelope per queue slot.
 *
 * ```
 * host:   payload ─ set ─► pinned staging[at..] ─ cuMemcpyHtoDAsync ─► arena[at..]
 *         then cuMemsetD32Async(fence, seq) on the same copy stream, then one descriptor
 *         envelope { address, fence, count, stride, typeId, seq } into the kernel's input lane
 * kernel: sees the descriptor, waits for fence >= seq (the copy landed), handles the messages
 *         (on its warps at once where the handler allows), stores bulkDone = seq
 * host:   frees arena[at..] (and staging[at..]) once bulkDone reached seq
 * ```
 *
 * A descriptor returned unhandled (the kernel ended first) is given back as the messages it
 * stands for ({@linkcode unpackBatch}), read from the staging, which still holds them.
 *
 * The arena is a ring in device memory mirrored byte for byte by a pinned staging ring, so a
 * batch's place in one is its place in the other. The first 128 bytes hold the fence word.
 * Batches are freed in the order they were queued: the kernel finishes them in that order because
 * they all go through the normal lane, in seq order.
 * @module
 */

import type { CudaContext, CudaStream, DevicePtr, HostAllocation } from "../../../ffi/cuda.ts";
import {
  decodeEnvelope,
  encodeEnvelope,
  ENVELOPE_HEADER_BYTES,
  EnvelopeOffset,
} from "../../core/envelope.ts";
import { BULK_BATCH_TYPE_ID } from "../../runtime/kernel_memory.ts";
import { BULK_DESCRIPTOR_BYTES } from "./persistent.ts";

/** Bytes of device memory (and as much pinned staging) a kernel's bulk channel takes by default. */
export const DEFAULT_BULK_BYTES = 32 * 1024 * 1024;
/** Where batches start in the arena: the fence word and its line come first. */
const DATA_OFFSET = 128;
const align128 = (n: number): number => Math.ceil(n / 128) * 128;

/** What a descriptor envelope carries ({@linkcode BULK_DESCRIPTOR_BYTES} bytes, little-endian). */
export interface BulkDescriptor {
  /** Device address of the first message. */
  readonly address: DevicePtr;
  /** Device address of the fence word the copy stream stores `seq` into once the copy landed. */
  readonly fence: DevicePtr;
  /** Messages in the batch. */
  readonly count: number;
  /** Bytes per message: the input schema's size. */
  readonly stride: number;
  /** The input schema's typeId. */
  readonly typeId: number;
  /** The batch's sequence number (from 1, per channel use). */
  readonly seq: number;
}

/** Writes `d` as a descriptor payload. */
export function encodeBulkDescriptor(d: BulkDescriptor): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(BULK_DESCRIPTOR_BYTES);
  const v = new DataView(bytes.buffer);
  v.setBigUint64(0, d.address, true);
  v.setBigUint64(8, d.fence, true);
  v.setUint32(16, d.count, true);
  v.setUint32(20, d.stride, true);
  v.setUint32(24, d.typeId, true);
  v.setUint32(28, d.seq, true);
  return bytes;
}

/** What {@linkcode unpackBatch} reads: the channel's staging and the kernel's progress. */
export interface UnpackSource {
  /** The batch's messages from `from` on (see {@linkcode BulkChannel.staged}). */
  readonly channel: { staged(seq: number, from: number): Uint8Array[] | undefined };
  /** The kernel's numeric id (the messages' `destKernel`). */
  readonly numericId: number;
  /** The batch the kernel was in and how many of its messages it had handled. */
  progress(): { seq: number; pos: number };
}

/**
 * A returned envelope as the messages it stands for: for a packed batch's descriptor, an envelope
 * per message the kernel had not handled (its typeId, the descriptor's timestamp), in order;
 * undefined for any other envelope, or a batch no longer in the channel.
 */
export function unpackBatch(envelope: Uint8Array, src: UnpackSource): Uint8Array[] | undefined {
  // Runs on every returned envelope while a kernel's exit is handled: never throws; anything not
  // a well-formed descriptor is returned as it is.
  if (envelope.byteLength < ENVELOPE_HEADER_BYTES + BULK_DESCRIPTOR_BYTES) return undefined;
  const head = new DataView(envelope.buffer, envelope.byteOffset, ENVELOPE_HEADER_BYTES);
  if (head.getUint32(EnvelopeOffset.typeId, true) !== BULK_BATCH_TYPE_ID) return undefined;
  let decoded: ReturnType<typeof decodeEnvelope>;
  try {
    decoded = decodeEnvelope(envelope, { checksum: "ignore" });
  } catch {
    return undefined;
  }
  const { header, payload } = decoded;
  if (payload.byteLength < BULK_DESCRIPTOR_BYTES) return undefined;
  const v = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const typeId = v.getUint32(24, true);
  const seq = v.getUint32(28, true);
  const p = src.progress();
  const messages = src.channel.staged(seq, p.seq === seq ? p.pos : 0);
  return messages?.map((m) =>
    encodeEnvelope({ typeId, destKernel: src.numericId, timestamp: header.timestamp }, m)
  );
}

interface InFlight {
  readonly seq: number;
  readonly start: number;
  readonly end: number;
  readonly count: number;
  readonly stride: number;
  /** Its descriptor never reached the kernel: free once it is the oldest. */
  abandoned: boolean;
}

/**
 * Free space of a FIFO ring over `[lo, hi)` whose live pieces run from the oldest's start to the
 * newest's end: where a piece of `bytes` goes, or undefined when it does not fit now.
 */
function ringPlace(
  lo: number,
  hi: number,
  oldest: { start: number } | undefined,
  newest: { start: number; end: number } | undefined,
  bytes: number,
): number | undefined {
  if (oldest === undefined || newest === undefined) return lo + bytes <= hi ? lo : undefined;
  if (newest.start >= oldest.start) {
    // Not wrapped: room after the newest, else at the bottom before the oldest.
    if (newest.end + bytes <= hi) return newest.end;
    return lo + bytes <= oldest.start ? lo : undefined;
  }
  // Wrapped: only between the newest and the oldest.
  return newest.end + bytes <= oldest.start ? newest.end : undefined;
}

/** One kernel's bulk arena, staging and copy stream; reused by later kernels once it ended. */
export class BulkChannel {
  readonly #ctx: CudaContext;
  readonly #arena: DevicePtr;
  readonly #staging: HostAllocation;
  readonly #stream: CudaStream;
  /** Bytes of the arena (and of the staging). */
  readonly bytes: number;
  #done: () => number = () => 0;
  #seq = 0;
  readonly #inFlight: InFlight[] = [];

  private constructor(
    ctx: CudaContext,
    arena: DevicePtr,
    staging: HostAllocation,
    stream: CudaStream,
    bytes: number,
  ) {
    this.#ctx = ctx;
    this.#arena = arena;
    this.#staging = staging;
    this.#stream = stream;
    this.bytes = bytes;
  }

  /** Allocates `bytes` of device memory, as much pinned staging and a copy stream. */
  static open(ctx: CudaContext, bytes: number = DEFAULT_BULK_BYTES): BulkChannel {
    const arena = ctx.alloc(bytes);
    const staging = ctx.allocHost(bytes);
    const stream = ctx.createStream({ nonBlocking: true });
    const ch = new BulkChannel(ctx, arena, staging, stream, bytes);
    ctx.memsetD32Async(arena, 0, 1, stream);
    return ch;
  }

  /** Largest batch in bytes (a quarter of the ring, so that several are in flight at once). */
  get batchBytes(): number {
    return Math.floor((this.bytes - DATA_OFFSET) / 4 / 128) * 128;
  }

  /**
   * Hands the channel to a kernel: `done` reads its `KernelWord.bulkDone`. Sequence numbers and
   * the fence word start again (the store is ordered before any copy on the stream).
   */
  attach(done: () => number): void {
    this.#done = done;
    this.#seq = 0;
    this.#inFlight.length = 0;
    this.#ctx.memsetD32Async(this.#arena, 0, 1, this.#stream);
  }

  /** Batches queued and not yet known to be finished. */
  get inFlight(): number {
    return this.#inFlight.length;
  }

  #reclaim(): void {
    const done = this.#done();
    const q = this.#inFlight;
    while (q.length > 0 && (q[0].abandoned || ((done - q[0].seq) | 0) >= 0)) q.shift();
  }

  /**
   * Queues the copy of `payload` (`count` messages of `stride` bytes, `typeId`) to the device and
   * returns its descriptor, or undefined when the ring has no room until the kernel finished
   * earlier batches. The caller enqueues the descriptor (or calls {@linkcode abandon}) before it
   * submits another batch.
   */
  submit(
    payload: Uint8Array,
    count: number,
    stride: number,
    typeId: number,
  ): BulkDescriptor | undefined {
    this.#reclaim();
    const q = this.#inFlight;
    const bytes = align128(payload.byteLength);
    const at = ringPlace(DATA_OFFSET, this.bytes, q[0], q[q.length - 1], bytes);
    if (at === undefined) return undefined;
    const seq = ++this.#seq;
    const staged = new Uint8Array(this.#staging.buffer, at, payload.byteLength);
    staged.set(payload);
    const address = this.#arena + BigInt(at);
    this.#ctx.copyHtoDAsync(address, staged, this.#stream);
    this.#ctx.memsetD32Async(this.#arena, seq, 1, this.#stream);
    q.push({ seq, start: at, end: at + bytes, count, stride, abandoned: false });
    return { address, fence: this.#arena, count, stride, typeId, seq };
  }

  /** The descriptor of batch `seq` could not be enqueued: its space is freed in turn. */
  abandon(seq: number): void {
    const e = this.#inFlight.find((x) => x.seq === seq);
    if (e !== undefined) e.abandoned = true;
  }

  /**
   * The messages of batch `seq` from message `from` on, read back from the pinned staging: a
   * batch the kernel did not finish keeps its place in the ring (its space is reused only once
   * `bulkDone` passed it), so its bytes are still there. Undefined when it is not in flight.
   */
  staged(seq: number, from: number): Uint8Array[] | undefined {
    const b = this.#inFlight.find((x) => x.seq === seq && !x.abandoned);
    if (b === undefined) return undefined;
    const out: Uint8Array[] = [];
    for (let i = Math.max(0, from); i < b.count; i++) {
      out.push(new Uint8Array(this.#staging.buffer, b.start + i * b.stride, b.stride).slice());
    }
    return out;
  }

  /** Waits for the copies queued so far (before the channel is reused). */
  settle(): void {
    this.#ctx.synchronizeStream(this.#stream);
  }
}
