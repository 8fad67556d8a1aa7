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
export { Backend } from "./src/runtime/backend.ts";
export type {
  ConcreteBackend,
  KernelFailureEvent,
  KernelRuntime,
  ShutdownOptions,
} from "./src/runtime/backend.ts";
export { RingKernel, RuntimeBuilder } from "./src/runtime/runtime.ts";
export {
  BACKEND_ENV,
  chooseAutoBackend,
  DEFAULT_AUTO_PROBES,
  WEBGPU_NOT_AUTO,
} from "./src/runtime/auto_backend.ts";
export type { AutoChoice, AutoProbes } from "./src/runtime/auto_backend.ts";
export { probeCuda } from "./ffi/cuda_probe.ts";
export type { CudaProbe, CudaProbeOptions } from "./ffi/cuda_probe.ts";
export { LaunchOptions, priority, schedulingFor } from "./src/runtime/launch_options.ts";
export type { LaunchPriority, Scheduling, Supervision } from "./src/runtime/launch_options.ts";
export {
  defineKernel,
  isKernelDefinition,
  KERNEL_BRAND,
  passthroughKernel,
} from "./src/runtime/kernel.ts";
export type {
  BuiltinKernel,
  KernelContext,
  KernelDefinition,
  KernelHandler,
  KernelSpec,
  KernelStateView,
} from "./src/runtime/kernel.ts";
export { KernelHandle } from "./src/runtime/kernel_handle.ts";
export type {
  KernelOutput,
  RequestOptions,
  SendOptions,
  TerminateOptions,
  TerminateReport,
} from "./src/runtime/kernel_handle.ts";
export { DeliveryStatus, K2kBroker } from "./src/runtime/k2k.ts";
export type { K2kCounters, K2kReceipt, K2kSendOptions } from "./src/runtime/k2k.ts";
export { EMPTY_REPLY_TYPE_ID, ERROR_REPLY_TYPE_ID } from "./src/runtime/kernel_memory.ts";
export { CpuRuntime } from "./src/backends/cpu/cpu_runtime.ts";
export type { CpuRuntimeOptions } from "./src/backends/cpu/cpu_runtime.ts";
export { CudaRuntime } from "./src/backends/cuda/cuda_runtime.ts";
export type { CudaBatchTrace, CudaRuntimeOptions } from "./src/backends/cuda/cuda_runtime.ts";
export type { QuietStats } from "./src/backends/cuda/device_quiet.ts";
export {
  emitPassthroughPersistent,
  emitPersistent,
  PERSISTENT_PARAMS,
  type PersistentArgs,
  persistentLaunchArgs,
  type PersistentParam,
  type PersistentSource,
} from "./src/backends/cuda/persistent.ts";
export { CudaK2kError, K2K_PARAMS } from "./src/backends/cuda/k2k_device.ts";
export type { K2kArgs, K2kParam } from "./src/backends/cuda/k2k_device.ts";
export type { K2kUsage } from "./src/backends/cuda/k2k_routing.ts";
export { WebGpuRuntime } from "./src/backends/webgpu/webgpu_runtime.ts";
export type { WebGpuRuntimeOptions } from "./src/backends/webgpu/webgpu_runtime.ts";
// The adapter's types, which WebGpuRuntime's options and fields use.
export type {
  DawnBackend,
  WebGpuAdapterInfo,
  WebGpuAdapterOptions,
  WebGpuImplementation,
} from "./src/backends/webgpu/adapter.ts";
export type { WebGpuDeadLetter } from "./src/backends/webgpu/gpu_kernel.ts";
export type { PumpStats } from "./src/backends/webgpu/device_pump.ts";
export type { GpuBufferStats } from "./src/backends/webgpu/tracked_buffers.ts";
export {
  emitPassthroughRing,
  emitRingKernel,
  emitRoutePass,
  type RingKernelSource,
} from "./src/backends/webgpu/shaders.ts";
export { PartialSendError } from "./src/runtime/kernel_handle.ts";
export type { FailureCause, KillCause } from "./src/runtime/kernel_handle.ts";
export * from "./src/dsl/define.ts";
export {
  atomicAdd,
  atomicCompareExchange,
  atomicExchange,
  atomicMax,
  atomicMin,
  atomicSub,
  barrier,
  blockDim,
  blockIdx,
  clamp,
  f32,
  f64,
  fma,
  gridDim,
  i32,
  i64,
  match,
  rsqrt,
  sharedArray,
  threadIdx,
  u32,
  u64,
} from "./src/dsl/intrinsics.ts";
export type {
  AtomicArray,
  Dim3,
  MatchCases,
  SharedArrayOf,
  SharedKind,
} from "./src/dsl/intrinsics.ts";
export { checkKernel } from "./src/dsl/check.ts";
export type { DslKernelInput } from "./src/dsl/check.ts";
export * from "./src/dsl/lane_parallel.ts";
export type * from "./src/dsl/ir.ts";
export { runHandlerJs, runJs, runStencilJs, stencilBufferLength } from "./src/dsl/js.ts";
export type {
  GridSize,
  HandlerRunOptions,
  HandlerRunResult,
  JsLaunch,
  RecordedSend,
  StencilSize,
} from "./src/dsl/js.ts";
export * from "./ffi/mod.ts";
export { emitCuda } from "./src/dsl/cuda.ts";
export type { CudaHandlerAbi, CudaParam, CudaParts, CudaSource } from "./src/dsl/cuda.ts";
export { emitWgsl } from "./src/dsl/wgsl.ts";
export type {
  WgslBinding,
  WgslBindingKind,
  WgslSource,
  WgslUniformMember,
} from "./src/dsl/wgsl.ts";
