/**
 * The backend side of `KernelHandle.sendPacked`: a path that takes many messages of a kernel's
 * input type as one packed batch (CUDA: device memory by DMA plus one descriptor envelope, see
 * `src/backends/cuda/bulk_channel.ts`). Backends without one get an envelope per message.
 * @module
 */

/** A batch queued on a {@linkcode PackedPath}: the descriptor to enqueue, and its number. */
export interface PackedSubmission {
  /** Payload of the descriptor envelope (typeId `BULK_BATCH_TYPE_ID`). */
  readonly descriptor: Uint8Array;
  /** The batch's sequence number, for {@linkcode PackedPath.abandon}. */
  readonly seq: number;
}

/** How a backend moves packed batches to a kernel. */
export interface PackedPath {
  /** The most messages of `stride` bytes one batch may carry. */
  maxMessages(stride: number): number;
  /**
   * Queues the transfer of `payload` (`count` messages of `stride` bytes, type `typeId`) and
   * returns the descriptor to enqueue, or undefined when there is no room until the kernel has
   * finished earlier batches. The caller enqueues it, or abandons it, before the next submit.
   */
  submit(
    payload: Uint8Array,
    count: number,
    stride: number,
    typeId: number,
  ): PackedSubmission | undefined;
  /** The descriptor of batch `seq` could not be enqueued: its memory is freed in turn. */
  abandon(seq: number): void;
}
