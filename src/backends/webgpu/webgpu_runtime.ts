/**
 * The WebGPU backend: kernels run their DSL handler (compiled by `emitWgsl`) in WGSL, with
 * persistence emulated (`device_pump.ts`): state, input ring and control block live in storage
 * buffers across dispatches, and a device pump runs rounds — one submission per round for all
 * kernels with work, K2K between them inside the submission, one staging map per round. Each
 * kernel's host side is the region layout of the other backends in a plain ArrayBuffer
 * (`KernelMemory.format`), driven by the same `KernelHandle` in polling mode: sends go into its
 * MPSC lanes, replies come out of its SPSC output queue, commands and counters live in its control
 * block, which the pump mirrors from the device's copy after every round.
 *
 * Device loss (`device.lost`) fails every kernel with a `KernelFailedError` whose `cause` is a
 * `WebGpuDeviceLostError` (`E_WEBGPU_DEVICE_LOST`); the runtime then refuses launches with that
 * error and a new one can be built. docs/webgpu.md has the layouts and the round protocol.
 *
 * Not on this backend: the handler latency histogram (WGSL has no clock; it stays empty), the
 * heartbeat watchdog (`heartbeatTimeoutMs` is ignored: a dispatch cannot hang without losing the
 * device) and supervision (DSL handlers cannot throw).
 * @module
 */

import {
  DuplicateKernelError,
  ErrorCode,
  InvalidStateError,
  KernelFailedError,
  ValidationError,
  WebGpuDeviceLostError,
} from "../../core/errors.ts";
import { ENVELOPE_HEADER_BYTES } from "../../core/envelope.ts";
import { HlcClock } from "../../core/hlc.ts";
import type { FieldsSpec } from "../../core/schema.ts";
import { checkKernel } from "../../dsl/check.ts";
import type {
  ConcreteBackend,
  KernelFailureEvent,
  KernelRuntime,
  ShutdownOptions,
} from "../../runtime/backend.ts";
import { K2kBroker, Route, type RouteInit } from "../../runtime/k2k.ts";
import {
  isKernelDefinition,
  type KernelDefinition,
  passthroughKernel,
} from "../../runtime/kernel.ts";
import {
  type KernelExit,
  KernelHandle,
  type KillCause,
  type TerminateReport,
} from "../../runtime/kernel_handle.ts";
import { KernelLedger } from "../../runtime/kernel_ledger.ts";
import { kernelLayout, KernelMemory } from "../../runtime/kernel_memory.ts";
import { LaunchOptions } from "../../runtime/launch_options.ts";
import {
  type EventStreamOptions,
  type KernelMetrics,
  kernelStateName,
  type RuntimeMetrics,
  type TelemetryEventStream,
  type TelemetryListener,
} from "../../runtime/telemetry.ts";
import {
  requestWebGpuDevice,
  type WebGpuAdapterInfo,
  type WebGpuAdapterOptions,
  type WebGpuImplementation,
} from "./adapter.ts";
import { DevicePump, type PumpStats } from "./device_pump.ts";
import { GpuKernel, type WebGpuDeadLetter } from "./gpu_kernel.ts";
import { emitPassthroughRing, emitRingKernel, type RingKernelSource } from "./shaders.ts";
import { type GpuBufferStats, TrackedBuffers } from "./tracked_buffers.ts";

// Large enough for a useful error text in an error reply (192 bytes after the header).
const MIN_SLOT = 256;
const STAGE_COMPUTE = 0x4;
/** How long a failed round waits for `device.lost` to say whether the device is gone. */
const LOST_GRACE_MS = 250;

/** Options of {@linkcode WebGpuRuntime.create} (and of the builder's `.webgpu(...)`). */
export interface WebGpuRuntimeOptions extends WebGpuAdapterOptions {
  /** Notes to report in `backendNotes`. */
  backendNotes?: readonly string[];
  /**
   * Physical time in ms since the epoch that each round hands the kernels' HLCs (default
   * `Date.now`). For simulations and tests (an HLC carry across the two u32 words).
   */
  clock?: () => number;
}

interface Entry {
  handle: KernelHandle;
  route: Route;
  k2k: boolean;
  kill(reason: string, cause: KillCause): void;
}

type TimerHandle = ReturnType<typeof setTimeout>;

/**
 * The module's compilation messages where the implementation reports them; otherwise none (the
 * validation error scope around pipeline creation still catches a module that does not compile).
 */
async function compilationInfo(
  module: GPUShaderModule,
): Promise<{ messages: readonly GPUCompilationMessage[] }> {
  if (typeof module.getCompilationInfo !== "function") return { messages: [] };
  try {
    return await module.getCompilationInfo();
  } catch {
    return { messages: [] };
  }
}

/**
 * A runtime whose kernels run in WGSL on one WebGPU device.
 * `RingKernel.builder().backend(Backend.WebGpu)` builds one; `WebGpuRuntime.create()` is the
 * direct way in (it throws `NoWebGpuError` when no adapter is found).
 *
 * @example
 * ```ts ignore
 * import { LaunchOptions, WebGpuRuntime } from "@ringkernel/core";
 * const rt = await WebGpuRuntime.create();
 * const k = await rt.launch(accumulator, LaunchOptions.default());
 * console.log(await k.request(Add.of({ value: 2 }))); // { total: 2 }
 * await rt.shutdown();
 * ```
 */
export class WebGpuRuntime implements KernelRuntime {
  /** Always `"webgpu"`. */
  readonly backend: ConcreteBackend = "webgpu";
  /** Notes given at creation. */
  readonly backendNotes: readonly string[];
  /** The device the kernels run on. */
  readonly device: GPUDevice;
  /** The adapter's identity (`adapterInfo.name`: e.g. `llvmpipe (LLVM 15.0.6, 256 bits)`). */
  readonly adapterInfo: WebGpuAdapterInfo;
  /** Which WebGPU implementation provided the device. */
  readonly implementation: WebGpuImplementation;
  readonly #buffers: TrackedBuffers;
  readonly #pump: DevicePump;
  readonly #ledger = new KernelLedger<Entry>();
  readonly #launching = new Set<string>();
  readonly #clock = new HlcClock(0);
  readonly #broker: K2kBroker;
  readonly #pipelines = new Map<string, Promise<GPUComputePipeline>>();
  readonly #bindGroupLayout: GPUBindGroupLayout;
  readonly #pipelineLayout: GPUPipelineLayout;
  #nextNumericId = 1;
  #shutdown = false;
  #destroying = false;
  #failure: Error | undefined;

  private constructor(
    handle: {
      device: GPUDevice;
      adapterInfo: WebGpuAdapterInfo;
      implementation: WebGpuImplementation;
    },
    options: WebGpuRuntimeOptions,
  ) {
    const device = handle.device;
    this.device = device;
    this.adapterInfo = handle.adapterInfo;
    this.implementation = handle.implementation;
    this.backendNotes = Object.freeze([...(options.backendNotes ?? [])]);
    this.#buffers = new TrackedBuffers(device);
    this.#bindGroupLayout = device.createBindGroupLayout({
      label: "rk.kernel",
      entries: [0, 1, 2, 3, 4, 5, 6, 7].map((binding) => ({
        binding,
        visibility: STAGE_COMPUTE,
        buffer: { type: binding === 0 || binding === 6 ? "read-only-storage" as const : "storage" },
      })),
    });
    this.#pipelineLayout = device.createPipelineLayout({
      bindGroupLayouts: [this.#bindGroupLayout],
    });
    this.#pump = new DevicePump({
      device,
      buffers: this.#buffers,
      clock: options.clock ?? Date.now,
      onFatal: (e) => void this.#roundFailed(e),
    });
    this.#broker = new K2kBroker({
      get: (id) => {
        const e = this.#ledger.kernels.get(id);
        return e !== undefined && e.k2k ? e.route : undefined;
      },
      ids: () => [...this.#ledger.kernels.values()].filter((e) => e.k2k).map((e) => e.handle.id),
    });
    device.lost.then((info) => {
      if (this.#destroying) return;
      this.#fail(new WebGpuDeviceLostError(info.reason ?? "unknown", info.message ?? ""));
    });
    const target = device as unknown as {
      addEventListener?(type: string, listener: (event: Event) => void): void;
    };
    // A validation error in a round is a bug of this backend: it fails the runtime rather than
    // leave kernels waiting for replies that will never come.
    target.addEventListener?.("uncapturederror", (event) => {
      const error = (event as Event & { error?: { message?: string } }).error;
      this.#fail(new Error(`WebGPU validation error: ${error?.message ?? "unknown"}`));
    });
  }

  /**
   * Requests a device (`requestWebGpuDevice`: Deno's `navigator.gpu`, Bun's `bun-webgpu`, or
   * Dawn when asked for) and builds a runtime on it. Rejects with `NoWebGpuError` when there is
   * no usable adapter.
   */
  static async create(options: WebGpuRuntimeOptions = {}): Promise<WebGpuRuntime> {
    return new WebGpuRuntime(await requestWebGpuDevice(options), options);
  }

  /** True once `shutdown` was called. */
  get isShutdown(): boolean {
    return this.#shutdown;
  }

  /** The GPU buffers this runtime holds now (kernels' buffers, staging): for leak checks. */
  gpuBuffers(): GpuBufferStats {
    return this.#buffers.stats();
  }

  /** Rounds, dispatches and route passes so far, and the dead letters waiting. */
  pumpStats(): PumpStats {
    return this.#pump.stats();
  }

  /**
   * K2K messages the device could not deliver (the destination's ring was full, no live kernel
   * had the id, or the destination was killed with them in its ring), oldest first; taking them
   * removes them. They are also counted in the sender's `k2kQueueFull` / `k2kNotFound`.
   */
  takeDeadLetters(): WebGpuDeadLetter[] {
    return this.#pump.takeDeadLetters();
  }

  /** Why the runtime can no longer launch kernels, if it cannot. */
  get failure(): Error | undefined {
    return this.#failure;
  }

  #checkOpen(): void {
    if (this.#shutdown) {
      throw new InvalidStateError(ErrorCode.InvalidState, "the runtime has been shut down");
    }
    const f = this.#failure;
    if (f instanceof WebGpuDeviceLostError) {
      throw new WebGpuDeviceLostError(f.reason, f.deviceMessage);
    }
    if (f !== undefined) {
      throw new InvalidStateError(
        ErrorCode.InvalidState,
        `the WebGPU runtime failed (${f.message}); build a new runtime`,
      );
    }
  }

  /** Fails every kernel and closes the runtime to launches. */
  #fail(error: Error): void {
    if (this.#failure !== undefined) return;
    this.#failure = error;
    this.#pump.fail(error);
  }

  /** A round threw: the device is lost (say so with the device's words) or the backend is broken. */
  async #roundFailed(error: Error): Promise<void> {
    let timer: TimerHandle | undefined;
    await Promise.race([
      this.device.lost,
      new Promise<void>((r) => {
        timer = setTimeout(r, LOST_GRACE_MS);
      }),
    ]);
    clearTimeout(timer);
    // device.lost's own handler has run first when it resolved; otherwise this error stands.
    this.#fail(error);
  }

  /** See {@linkcode KernelRuntime.launch}. */
  launch<I extends FieldsSpec, O extends FieldsSpec, S extends FieldsSpec>(
    kernel: KernelDefinition<I, O, S>,
    options?: LaunchOptions,
  ): Promise<KernelHandle<I, O, S>>;
  /** See {@linkcode KernelRuntime.launch}. */
  launch(id: string, options?: LaunchOptions): Promise<KernelHandle>;
  async launch(
    kernel: KernelDefinition | string,
    options: LaunchOptions = LaunchOptions.default(),
  ): Promise<KernelHandle> {
    this.#checkOpen();
    const def = typeof kernel === "string" ? passthroughKernel(kernel) : kernel;
    if (!isKernelDefinition(def)) {
      throw new ValidationError(
        ErrorCode.InvalidArgument,
        "launch takes a kernel id or a definition made by defineKernel",
      );
    }
    if (!(options instanceof LaunchOptions)) {
      throw new ValidationError(ErrorCode.InvalidArgument, "launch options must be LaunchOptions");
    }
    if (this.#ledger.kernels.has(def.id) || this.#launching.has(def.id)) {
      throw new DuplicateKernelError(def.id);
    }
    const largest = Math.max(def.input?.size ?? 0, def.output?.size ?? 0);
    const slotSize = options.slotSize ?? Math.max(MIN_SLOT, ENVELOPE_HEADER_BYTES + largest);
    for (const schema of [def.input, def.output]) {
      if (schema !== undefined && ENVELOPE_HEADER_BYTES + schema.size > slotSize) {
        throw new ValidationError(
          ErrorCode.MessageTooLarge,
          `kernel ${def.id}: a ${schema.name} envelope takes ${
            ENVELOPE_HEADER_BYTES + schema.size
          } bytes, more than the ${slotSize}-byte slots`,
        );
      }
    }
    this.#launching.add(def.id);
    try {
      return await this.#start(def, options, slotSize);
    } finally {
      this.#launching.delete(def.id);
    }
  }

  /** The ring entry of `def` (DSL-checked: throws `DslError` for what WGSL cannot run). */
  #source(def: KernelDefinition, slotSize: number): RingKernelSource {
    if (def.builtin === "passthrough") {
      return emitPassthroughRing((Math.ceil(slotSize / 16) * 16 - ENVELOPE_HEADER_BYTES) / 4);
    }
    return emitRingKernel(checkKernel(def));
  }

  /** The pipeline of `code` (compiled once per runtime; a compile error fails the launch). */
  #pipeline(code: string, id: string): Promise<GPUComputePipeline> {
    let p = this.#pipelines.get(code);
    if (p === undefined) {
      p = this.#compile(code, id);
      this.#pipelines.set(code, p);
      p.catch(() => this.#pipelines.delete(code));
    }
    return p;
  }

  async #compile(code: string, id: string): Promise<GPUComputePipeline> {
    const d = this.device;
    d.pushErrorScope("validation");
    const module = d.createShaderModule({ label: id, code });
    const info = await compilationInfo(module);
    const pipeline = d.createComputePipeline({
      label: id,
      layout: this.#pipelineLayout,
      compute: { module, entryPoint: "main" },
    });
    const scoped = await d.popErrorScope();
    const errors = info.messages.filter((m) => m.type === "error").map((m) =>
      `${m.lineNum}:${m.linePos} ${m.message}`
    );
    if (scoped !== null) errors.push(scoped.message);
    if (errors.length > 0) {
      throw new KernelFailedError(id, `its WGSL did not compile: ${errors.join("; ")}`);
    }
    return pipeline;
  }

  async #start(
    def: KernelDefinition,
    options: LaunchOptions,
    slotSize: number,
  ): Promise<KernelHandle> {
    const source = this.#source(def, slotSize);
    const pipeline = await this.#pipeline(source.code, def.id);
    this.#checkOpen();
    const numericId = this.#nextNumericId++;
    const layout = kernelLayout(
      def.state?.size ?? 0,
      options.inputCapacity,
      options.outputCapacity,
      slotSize,
    );
    const mem = KernelMemory.format(new ArrayBuffer(layout.byteLength), layout, numericId);
    if (def.state !== undefined && def.initialState !== undefined) {
      def.state.encodeInto(def.initialState, mem.buffer, layout.state);
    }
    const gk = new GpuKernel({
      device: this.device,
      buffers: this.#buffers,
      def,
      options,
      source,
      pipeline,
      bindGroupLayout: this.#bindGroupLayout,
      mem,
      numericId,
    });

    let settleExit!: (exit: KernelExit) => void;
    const exit = new Promise<KernelExit>((resolve) => {
      let settled = false;
      settleExit = (e) => {
        if (!settled) {
          settled = true;
          resolve(e);
        }
      };
    });
    const routeInit: RouteInit = {
      id: def.id,
      numericId,
      inputTypeId: def.input?.typeId ?? 0,
      buffer: mem.buffer,
      layout,
    };
    const route = new Route(routeInit);
    const kill = (reason: string, cause: KillCause): void => {
      const name = cause === "watchdog" ? "HeartbeatTimeout" : "Killed";
      this.#pump.evict(gk, { kind: "died", error: { name, message: reason }, cause });
    };
    const handle = new KernelHandle(def, options, {
      mem,
      route: routeInit,
      exit,
      dispose: () => {
        this.#ledger.retire(def.id);
        this.#pump.release(gk);
      },
      onFailure: (error, cause) => this.#ledger.emitFailure({ kernelId: def.id, error, cause }),
      onStateChange: (from, to, reason) => {
        this.#ledger.events.emit({
          kernelId: def.id,
          from: kernelStateName(from),
          to: kernelStateName(to),
          hlc: this.#clock.tick(),
          ...(reason === undefined ? {} : { reason }),
        });
      },
      kill,
    }, this.#clock);
    this.#ledger.kernels.set(def.id, { handle, route, k2k: options.k2k, kill });
    this.#pump.add(gk, settleExit);
    if (options.autoActivate) await handle.activate();
    return handle;
  }

  /** The running kernel `id`, or undefined. */
  getKernel(id: string): KernelHandle | undefined {
    return this.#ledger.getKernel(id);
  }

  /** Ids of the running kernels, in launch order. */
  listKernels(): string[] {
    return this.#ledger.listKernels();
  }

  /** One snapshot per running kernel. */
  kernelMetrics(): KernelMetrics[] {
    return this.#ledger.kernelMetrics();
  }

  /** Runtime totals, including kernels that have terminated. */
  metrics(): RuntimeMetrics {
    return this.#ledger.metrics(this.#broker);
  }

  /** Registers a failure listener; returns its unsubscribe function. */
  onKernelFailure(listener: (event: KernelFailureEvent) => void): () => void {
    return this.#ledger.onKernelFailure(listener);
  }

  /** See {@linkcode KernelRuntime.events}. */
  events(options?: EventStreamOptions): TelemetryEventStream {
    return this.#ledger.events.events(options);
  }

  /** See {@linkcode KernelRuntime.onStateChange}. */
  onStateChange(listener: TelemetryListener): () => void {
    return this.#ledger.events.on(listener);
  }

  /** See {@linkcode KernelRuntime.metricsText}. */
  metricsText(): string {
    return this.#ledger.metricsText(this.#broker);
  }

  /** The K2K broker (host-side sends into the kernels' input lanes). */
  k2kBroker(): K2kBroker {
    this.#checkOpen();
    return this.#broker;
  }

  /**
   * Terminates every kernel (queued messages are returned unless `drain`), gives up on any that
   * does not stop within `timeoutMs` (its ring's messages become dead letters), then frees every
   * buffer and destroys the device. A second call throws `InvalidStateError`.
   */
  async shutdown(options: ShutdownOptions = {}): Promise<Record<string, TerminateReport>> {
    if (this.#shutdown) {
      throw new InvalidStateError(ErrorCode.InvalidState, "the runtime has been shut down");
    }
    this.#shutdown = true;
    const reports = await this.#ledger.terminateAll(options);
    this.#ledger.close();
    await this.#pump.close();
    this.#pump.destroy();
    this.#buffers.destroyAll();
    this.#pipelines.clear();
    this.#destroying = true;
    this.device.destroy();
    return reports;
  }
}
