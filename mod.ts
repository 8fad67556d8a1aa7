/**
 * @ringkernel/core — GPU-native persistent actors for Deno and Bun.
 *
 * This module is the public facade: it only re-exports. The portable core lives in `src/core/`
 * (clocks, message schemas and envelopes, lock-free queues, the control block, pub/sub); the
 * CPU backend's WebAssembly SIMD core in `src/backends/cpu/`.
 *
 * @example
 * ```ts
 * import { defineMessage, HlcClock, SpscQueue } from "@ringkernel/core";
 *
 * const Add = defineMessage({ typeId: 1, fields: { value: "f32" } });
 * const clock = new HlcClock(1);
 * const queue = SpscQueue.create({ capacity: 1024, slotSize: 64 });
 * queue.tryEnqueue(Add.encode({ value: 2 }));
 * console.log(Add.decode(queue.tryDequeue()!), clock.tick().toString());
 * ```
 * @module
 */

export * from "./src/core/errors.ts";
export * from "./src/core/hlc.ts";
export * from "./src/core/checksum.ts";
export * from "./src/core/schema.ts";
export { C_PRELUDE, cStaticAsserts, cStructs, wgslStructs } from "./src/core/schema_codegen.ts";
export * from "./src/core/envelope.ts";
export {
  checkQueueCapacity,
  DEFAULT_SLOT_SIZE,
  QUEUE_ALIGN,
  QUEUE_HEADER_BYTES,
  QUEUE_MAGIC,
  QUEUE_MAX_CAPACITY,
  QUEUE_MIN_CAPACITY,
  QUEUE_SLOT_ALIGN,
  QUEUE_VERSION,
  queueByteLength,
  queueHeaderC,
  queueHeaderWgsl,
  QueueKind,
  queueLayout,
  QueueOffset,
} from "./src/core/queue_layout.ts";
export type {
  QueueCreateOptions,
  QueueOptions,
  QueueRegionLayout,
} from "./src/core/queue_layout.ts";
export { RingQueue } from "./src/core/ring_queue.ts";
export type { QueueStats, QueueWaitOptions } from "./src/core/ring_queue.ts";
export { SpscQueue } from "./src/core/spsc_queue.ts";
export { MpscQueue } from "./src/core/mpsc_queue.ts";
export * from "./src/core/control_block.ts";
export * from "./src/core/topic.ts";
export * from "./src/core/topic_trie.ts";
export * from "./src/core/pubsub.ts";
export {
  createSharedMemory,
  detectWasmFeatures,
  loadSimdModule,
  SimdCore,
} from "./src/backends/cpu/simd_core.ts";
export type {
  Allocation,
  SimdCoreExports,
  SimdCoreOptions,
  SimdCoreShare,
  WasmFeatures,
} from "./src/backends/cpu/simd_core.ts";
export * from "./src/runtime/telemetry.ts";
