/**
 * Backends and the runtime interface every backend implements.
 *
 * A runtime is what `RingKernel.builder().build()` returns: it launches kernels, finds them,
 * reports metrics, exposes the K2K broker and shuts everything down. The CPU, CUDA and WebGPU
 * backends exist; asking for CUDA or WebGPU where no device opens throws
 * `BackendUnavailableError`. `Auto` picks CUDA where a usable device exists and falls back to the
 * CPU otherwise (recording why in `runtime.backendNotes`); `RINGKERNEL_BACKEND` overrides it.
 * @module
 */

import type { FieldsSpec } from "../core/schema.ts";
import type { KernelFailedError } from "../core/errors.ts";
import type { K2kBroker } from "./k2k.ts";
import type { KernelDefinition } from "./kernel.ts";
import type { FailureCause, KernelHandle, TerminateReport } from "./kernel_handle.ts";
import type { LaunchOptions } from "./launch_options.ts";
import type {
  EventStreamOptions,
  KernelMetrics,
  RuntimeMetrics,
  TelemetryEventStream,
  TelemetryListener,
} from "./telemetry.ts";

/**
 * Where kernels run. `Auto` picks CUDA where a usable device exists, else the CPU (see
 * `runtime.backendNotes`).
 */
export const Backend = {
  /** Each kernel is a persistent loop in a Worker over SharedArrayBuffers. */
  Cpu: "cpu",
  /** Persistent CUDA kernels running DSL handlers in mapped pinned memory. */
  Cuda: "cuda",
  /** WGSL kernels on a WebGPU device, persistence emulated by rounds of dispatches. */
  WebGpu: "webgpu",
  /**
   * CUDA when a usable device exists (libcuda loads, `cuInit` succeeds, the device exists, and
   * its runtime opens), else the CPU; never WebGPU. The environment variable
   * `RINGKERNEL_BACKEND=cpu|cuda|webgpu` overrides the choice (`auto`: this rule).
   * `runtime.backendNotes` says why the others were not chosen. A program that must run the
   * same everywhere (handlers only the CPU runs, such as a K2K send whose receipt is read) names
   * its backend instead.
   */
  Auto: "auto",
} as const;
/** A {@linkcode Backend} value. */
export type Backend = typeof Backend[keyof typeof Backend];
/** A backend a runtime actually runs on (never `auto`). */
export type ConcreteBackend = Exclude<Backend, "auto">;

/** What a kernel failure listener receives. */
export interface KernelFailureEvent {
  /** The kernel. */
  readonly kernelId: string;
  /** The error (`E_KERNEL_FAILED`). */
  readonly error: KernelFailedError;
  /**
   * Why: its worker died (`died`), its handler threw under `stop` or `escalate` supervision, its
   * heartbeat watchdog fired (`watchdog`), or it was force-killed after a terminate or shutdown
   * timeout (`killed`). Listeners hear every failure; `escalate` marks the ones the kernel asked
   * to be escalated.
   */
  readonly cause: FailureCause;
}

/** Options of `shutdown`. */
export interface ShutdownOptions {
  /** Let every kernel handle its queued messages first (default false: they are returned). */
  drain?: boolean;
  /** How long to wait for a kernel to stop before its worker is killed (default 5000 ms). */
  timeoutMs?: number;
}

/** A runtime: launches and owns kernels on one backend. */
export interface KernelRuntime {
  /** The backend in use. */
  readonly backend: ConcreteBackend;
  /**
   * Why `Auto` skipped the backends it skipped, each `"<backend>: <why>"` (empty when a backend
   * was named in code).
   */
  readonly backendNotes: readonly string[];
  /** True once `shutdown` was called. */
  readonly isShutdown: boolean;
  /**
   * Launches `kernel` (a definition from `defineKernel`), or the built-in passthrough kernel
   * under an id. Throws `DuplicateKernelError` when the id is running, `KernelFailedError` when
   * the definition does not load in the worker, `InvalidStateError` after shutdown.
   */
  launch<I extends FieldsSpec, O extends FieldsSpec, S extends FieldsSpec>(
    kernel: KernelDefinition<I, O, S>,
    options?: LaunchOptions,
  ): Promise<KernelHandle<I, O, S>>;
  /** Launches the built-in passthrough kernel under `id`. */
  launch(id: string, options?: LaunchOptions): Promise<KernelHandle>;
  /** The running kernel `id`, or undefined. */
  getKernel(id: string): KernelHandle | undefined;
  /** Ids of the running kernels, in launch order. */
  listKernels(): string[];
  /** Runtime totals (kernels by state, message counts including retired kernels, K2K). */
  metrics(): RuntimeMetrics;
  /** One snapshot per running kernel. */
  kernelMetrics(): KernelMetrics[];
  /** The K2K broker (host-side sends into kernels' input queues). */
  k2kBroker(): K2kBroker;
  /** Registers a failure listener; returns its unsubscribe function. */
  onKernelFailure(listener: (event: KernelFailureEvent) => void): () => void;
  /**
   * An async iterator over every kernel's lifecycle transitions from now on (`StateChangeEvent`:
   * `kernelId`, `from`, `to`, wall-clock `at`, `hlc` from the runtime's clock, `reason` for
   * failures), in the order they happened. It ends after `shutdown` (buffered events are still
   * yielded); `break` detaches it. A reader more than `bufferSize` (default 1024) events behind
   * loses the oldest.
   */
  events(options?: EventStreamOptions): TelemetryEventStream;
  /** Calls `listener` synchronously for every later transition; returns its unsubscribe function. */
  onStateChange(listener: TelemetryListener): () => void;
  /** `metrics()` and `kernelMetrics()` in the Prometheus text format 0.0.4. */
  metricsText(): string;
  /**
   * Terminates every kernel and frees every worker and buffer; afterwards the process can exit
   * by itself. A second call throws `InvalidStateError`.
   */
  shutdown(options?: ShutdownOptions): Promise<Record<string, TerminateReport>>;
}
