/**
 * The CPU backend: each kernel is a persistent loop in its own Worker (`kernel_worker.ts`), over
 * one SharedArrayBuffer holding its control block, state, input lanes and output queue (layout in
 * `src/runtime/kernel_memory.ts`).
 *
 * The runtime keeps the routing table (kernel id → region) and posts it to every worker whenever
 * it changes, then bumps a shared epoch word; a worker that sees the epoch move lets its event
 * loop run until the new table has arrived. So kernels send K2K messages worker-to-worker, and a
 * kernel launched before `launch` returned is reachable by every message handled afterwards.
 * @module
 */

import {
  DuplicateKernelError,
  ErrorCode,
  InvalidStateError,
  KernelFailedError,
  ValidationError,
} from "../../core/errors.ts";
import { ENVELOPE_HEADER_BYTES } from "../../core/envelope.ts";
import { HlcClock } from "../../core/hlc.ts";
import { KernelState } from "../../core/control_block.ts";
import type { FieldsSpec } from "../../core/schema.ts";
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
import { kernelLayout, KernelMemory, KernelWord, Sleeping } from "../../runtime/kernel_memory.ts";
import { LaunchOptions, schedulingFor } from "../../runtime/launch_options.ts";
import {
  type EventStreamOptions,
  type KernelMetrics,
  kernelStateName,
  type RuntimeMetrics,
  type TelemetryEventStream,
  type TelemetryListener,
} from "../../runtime/telemetry.ts";
import { loadSimdModule } from "./simd_core.ts";
import {
  RUNTIME_WORDS_BYTES,
  RuntimeWord,
  type WorkerInit,
  type WorkerReport,
  type WorkerRoutes,
} from "./protocol.ts";

const WORKER_URL = new URL("./kernel_worker.ts", import.meta.url);
// Large enough for a useful error text in an error reply (192 bytes after the header).
const MIN_SLOT = 256;

interface Entry {
  handle: KernelHandle;
  worker: Worker;
  route: Route;
  k2k: boolean;
  kill(reason: string, cause: KillCause): void;
  /** Heartbeat watchdog state, for kernels launched with a heartbeat timeout. */
  watch: Watch | undefined;
}

interface Watch {
  readonly timeoutMs: number;
  lastBeat: number;
  lastSeen: number;
  fired: boolean;
}

const ENDED: readonly KernelState[] = [KernelState.Terminated, KernelState.Failed];

/** Options of {@linkcode CpuRuntime.create}. */
export interface CpuRuntimeOptions {
  /** Notes to report in `backendNotes` (what `Auto` skipped). */
  backendNotes?: readonly string[];
}

/**
 * A runtime whose kernels run in Workers on the CPU. `RingKernel.builder().backend(Backend.Cpu)`
 * builds one; `CpuRuntime.create()` is the direct way in.
 *
 * @example
 * ```ts
 * import { CpuRuntime, LaunchOptions } from "@ringkernel/core";
 * const rt = await CpuRuntime.create();
 * const k = await rt.launch("processor", LaunchOptions.default());
 * console.log(rt.listKernels()); // ["processor"]
 * await rt.shutdown();
 * ```
 */
export class CpuRuntime implements KernelRuntime {
  /** Always `"cpu"`. */
  readonly backend: ConcreteBackend = "cpu";
  /** Why `Auto` chose the CPU, if it did. */
  readonly backendNotes: readonly string[];
  readonly #ledger = new KernelLedger<Entry>();
  readonly #launching = new Set<string>();
  readonly #runtimeWords = new SharedArrayBuffer(RUNTIME_WORDS_BYTES);
  readonly #epochWord = new Int32Array(this.#runtimeWords);
  readonly #clock = new HlcClock(0);
  readonly #broker: K2kBroker;
  #epoch = 0;
  #nextNumericId = 1;
  #shutdown = false;
  #watchTimer: ReturnType<typeof setInterval> | undefined;
  #watchPeriod = Infinity;

  private constructor(options: CpuRuntimeOptions) {
    this.backendNotes = Object.freeze([...(options.backendNotes ?? [])]);
    this.#broker = new K2kBroker({
      get: (id) => {
        const e = this.#ledger.kernels.get(id);
        return e !== undefined && e.k2k ? e.route : undefined;
      },
      ids: () => [...this.#ledger.kernels.values()].filter((e) => e.k2k).map((e) => e.handle.id),
    });
  }

  /** Creates a CPU runtime. Nothing is started until the first launch. */
  static create(options: CpuRuntimeOptions = {}): Promise<CpuRuntime> {
    if (typeof SharedArrayBuffer === "undefined" || typeof Worker === "undefined") {
      return Promise.reject(
        new InvalidStateError(
          ErrorCode.InvalidState,
          "the CPU backend needs Worker and SharedArrayBuffer",
        ),
      );
    }
    return Promise.resolve(new CpuRuntime(options));
  }

  /** True once `shutdown` was called. */
  get isShutdown(): boolean {
    return this.#shutdown;
  }

  #checkOpen(): void {
    if (this.#shutdown) {
      throw new InvalidStateError(ErrorCode.InvalidState, "the runtime has been shut down");
    }
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
    if (def.input !== undefined && ENVELOPE_HEADER_BYTES + def.input.size > slotSize) {
      throw new ValidationError(
        ErrorCode.MessageTooLarge,
        `kernel ${def.id}: a ${def.input.name} envelope takes ${
          ENVELOPE_HEADER_BYTES + def.input.size
        } bytes, more than the ${slotSize}-byte slots`,
      );
    }
    this.#launching.add(def.id);
    try {
      return await this.#start(def, options, slotSize);
    } finally {
      this.#launching.delete(def.id);
    }
  }

  async #start(
    def: KernelDefinition,
    options: LaunchOptions,
    slotSize: number,
  ): Promise<KernelHandle> {
    const numericId = this.#nextNumericId++;
    const layout = kernelLayout(
      def.state?.size ?? 0,
      options.inputCapacity,
      options.outputCapacity,
      slotSize,
    );
    const mem = KernelMemory.create(layout, numericId);
    if (def.state !== undefined && def.initialState !== undefined) {
      def.state.encodeInto(def.initialState, mem.buffer, layout.state);
    }
    const routeInit: RouteInit = {
      id: def.id,
      numericId,
      inputTypeId: def.input?.typeId ?? 0,
      buffer: mem.buffer,
      layout,
    };
    // Compiled once per process (cached), instantiated once in each kernel's worker.
    const simdModule = await loadSimdModule();
    const worker = new Worker(WORKER_URL, { type: "module", name: `ringkernel:${def.id}` });
    let settleExit!: (exit: KernelExit) => void;
    const exit = new Promise<KernelExit>((resolve) => {
      let done = false;
      settleExit = (e) => {
        if (!done) {
          done = true;
          resolve(e);
        }
      };
    });
    let readyResolve!: () => void;
    let readyReject!: (e: Error) => void;
    const ready = new Promise<void>((resolve, reject) => {
      readyResolve = resolve;
      readyReject = reject;
    });
    let terminated = false;
    const killWorker = () => {
      if (!terminated) {
        terminated = true;
        worker.terminate();
      }
    };
    worker.onmessage = (e: MessageEvent<WorkerReport>) => {
      const m = e.data;
      if (m.type === "ready") readyResolve();
      else if (m.type === "load-error") {
        readyReject(
          new KernelFailedError(def.id, `definition did not load: ${m.name}: ${m.message}`),
        );
      } else if (m.reason === "terminated") settleExit({ kind: "terminated" });
      else settleExit({ kind: "stopped", error: m.error ?? { name: "Error", message: "stopped" } });
    };
    worker.onerror = (e: ErrorEvent) => {
      // Handled here: without preventDefault the error would be rethrown on the main thread.
      e.preventDefault();
      const error = { name: "WorkerError", message: e.message || "uncaught error in worker" };
      readyReject(new KernelFailedError(def.id, `worker failed to start: ${error.message}`));
      settleExit({ kind: "died", error });
    };
    // Bun reports a worker that ended (crashed or closed itself) with a close event.
    worker.addEventListener("close", () => {
      if (!terminated) {
        terminated = true;
        readyReject(new KernelFailedError(def.id, "worker closed before it was ready"));
        settleExit({ kind: "died", error: { name: "WorkerClosed", message: "the worker closed" } });
      }
    });
    const init: WorkerInit = {
      type: "init",
      kernelId: def.id,
      numericId,
      moduleUrl: def.moduleUrl,
      builtin: def.builtin,
      buffer: mem.buffer,
      layout,
      inputTypeId: def.input?.typeId ?? 0,
      stateSize: def.state?.size ?? 0,
      scheduling: schedulingFor(options.priority),
      supervision: options.supervision,
      k2k: options.k2k,
      runtimeWords: this.#runtimeWords,
      routes: this.#routeInits(),
      epoch: this.#epoch,
      simdModule,
    };
    worker.postMessage(init);
    try {
      await ready;
    } catch (e) {
      killWorker();
      throw e;
    }
    const route = new Route(routeInit);
    const kill = (reason: string, cause: KillCause) => {
      killWorker();
      const name = cause === "watchdog" ? "HeartbeatTimeout" : "Killed";
      settleExit({ kind: "died", error: { name, message: reason }, cause });
    };
    const handle = new KernelHandle(def, options, {
      mem,
      route: routeInit,
      exit,
      dispose: () => {
        killWorker();
        this.#retire(def.id);
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
    const timeoutMs = options.heartbeatTimeoutMs;
    this.#ledger.kernels.set(def.id, {
      handle,
      worker,
      route,
      k2k: options.k2k,
      kill,
      watch: timeoutMs === undefined ? undefined : {
        timeoutMs,
        lastBeat: mem.cb.heartbeat,
        lastSeen: performance.now(),
        fired: false,
      },
    });
    if (timeoutMs !== undefined) this.#watchEvery(timeoutMs);
    this.#publishRoutes();
    if (options.autoActivate) await handle.activate();
    return handle;
  }

  /**
   * Runs the heartbeat watchdog at least every `timeoutMs / 4` (5..250 ms). One interval for the
   * whole runtime, unref'd (the kernels' workers keep the process alive, not the watchdog), and
   * stopped as soon as no watched kernel is left.
   */
  #watchEvery(timeoutMs: number): void {
    const period = Math.min(250, Math.max(5, Math.floor(timeoutMs / 4)));
    if (period >= this.#watchPeriod) return;
    this.#stopWatchdog();
    this.#watchPeriod = period;
    const timer = setInterval(() => this.#watchTick(), period);
    const deno = (globalThis as { Deno?: { unrefTimer(id: number): void } }).Deno;
    if (typeof timer === "number") deno?.unrefTimer(timer);
    else (timer as { unref?(): void }).unref?.();
    this.#watchTimer = timer;
  }

  #stopWatchdog(): void {
    clearInterval(this.#watchTimer);
    this.#watchTimer = undefined;
    this.#watchPeriod = Infinity;
  }

  /**
   * A kernel is alive while it is parked (its `sleeping` word is set: it waits for work, which
   * may take forever) or its heartbeat moves; one that does neither for its timeout is killed.
   */
  #watchTick(): void {
    const now = performance.now();
    let watched = 0;
    for (const e of this.#ledger.kernels.values()) {
      const w = e.watch;
      if (w === undefined || w.fired || ENDED.includes(e.handle.state())) continue;
      watched++;
      const mem = e.route.mem;
      const beat = mem.cb.heartbeat;
      if (Atomics.load(mem.words, KernelWord.sleeping) !== Sleeping.No || beat !== w.lastBeat) {
        w.lastBeat = beat;
        w.lastSeen = now;
      } else if (now - w.lastSeen > w.timeoutMs) {
        w.fired = true;
        e.kill(
          `no heartbeat for ${Math.round(now - w.lastSeen)} ms (limit ${w.timeoutMs} ms)`,
          "watchdog",
        );
      }
    }
    if (watched === 0) this.#stopWatchdog();
  }

  #routeInits(): RouteInit[] {
    const out: RouteInit[] = [];
    for (const e of this.#ledger.kernels.values()) if (e.k2k) out.push(e.route.init);
    return out;
  }

  /** Posts the routing table to every worker, then moves the epoch so they pick it up. */
  #publishRoutes(): void {
    const msg: WorkerRoutes = { type: "routes", epoch: ++this.#epoch, routes: this.#routeInits() };
    for (const e of this.#ledger.kernels.values()) e.worker.postMessage(msg);
    Atomics.store(this.#epochWord, RuntimeWord.routingEpoch, this.#epoch);
  }

  #retire(id: string): void {
    if (this.#ledger.retire(id) !== undefined) this.#publishRoutes();
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

  /** The K2K broker. */
  k2kBroker(): K2kBroker {
    this.#checkOpen();
    return this.#broker;
  }

  /**
   * Terminates every kernel (queued messages are returned unless `drain`), kills any worker that
   * does not stop within `timeoutMs`, and frees everything. A second call throws
   * `InvalidStateError`.
   */
  async shutdown(options: ShutdownOptions = {}): Promise<Record<string, TerminateReport>> {
    this.#checkOpen();
    this.#shutdown = true;
    const reports = await this.#ledger.terminateAll(options);
    this.#stopWatchdog();
    // Every kernel has settled, so its last transition is in; streams end after yielding it.
    this.#ledger.close();
    return reports;
  }
}
