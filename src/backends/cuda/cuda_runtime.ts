/**
 * The CUDA backend: each kernel is a real persistent CUDA kernel (`persistent.ts`), one block of
 * one warp on a non-blocking stream of its own, running the kernel's DSL handler in a loop over
 * its region in mapped pinned host memory (`cuMemHostAlloc` with DEVICEMAP). The region has the
 * layout of the CPU backend (`KernelMemory.format`), so the host drives it through the same
 * `KernelHandle`: sends go into the MPSC input lanes, replies come out of the SPSC output queue,
 * commands and counters live in the control block.
 *
 * The GPU cannot notify the host, so the host polls: the handle's output pump spins while input
 * is queued, then polls every event-loop turn and then every millisecond while someone waits; a
 * kernel's exit is noticed by a poller of its stream and control block with a backoff of a few
 * hundred µs growing to 5 ms, on unref'd timers (an idle runtime does not keep the process
 * alive; a pending request does, through the pump's timers).
 *
 * Compiled modules are cached on disk by NVRTC (source + arch + options) and kept loaded per
 * source for the runtime's life (one module per kernel definition, unloaded at shutdown), so a
 * relaunch costs no compile and no `cuModuleLoadData`. Regions of ended kernels are pooled for
 * the next launch of the same size (a few; the rest freed after a grace period) rather than
 * unmapped at once, since a host task may still hold a view of one; the handle of an ended
 * kernel reads a copy (`KernelSite.detach`). Both go at shutdown.
 *
 * K2K: a handler's `ctx.send` goes straight into the destination kernel's lane in device memory,
 * with no host hop (`k2k_device.ts`, `k2k_routing.ts`: a device arena allocated with the runtime
 * holds the route table and every K2K-enabled kernel's lane; the messages a terminate leaves in a
 * lane are copied back into its report's `returned`). The host broker (`k2kBroker().send`) writes
 * into the host lanes of a kernel's region, as on the CPU backend.
 *
 * Not yet on this backend: supervision (DSL handlers cannot throw).
 *
 * Failures. A GPU fault (a handler trapped: a sticky CUDA error such as
 * `CUDA_ERROR_ILLEGAL_ADDRESS`) loses the whole context, so every kernel of the runtime ends
 * `Failed` at its poller's next turn (within 5 ms) with a `KernelFailedError` whose `cause` is the
 * `KernelFaultError` naming the CUDA error; `launch` then throws, and `shutdown` resets the
 * device's primary context so that a new runtime starts on a fresh one. The heartbeat watchdog
 * (`heartbeatTimeoutMs`; at least 20 ms on CUDA, see `heartbeat_watch.ts`) runs in the same
 * poller. A GPU kernel cannot be killed without losing the context, so one killed by its watchdog
 * or after a terminate or shutdown timeout is asked to terminate and declared `Failed` at once:
 * its handler runs on until it returns, and its stream and region stay allocated until its
 * stream completes (a shutdown meanwhile returns and releases the context afterwards).
 * @module
 */

import {
  BackendUnavailableError,
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
import {
  type CudaContext,
  type CudaDeviceInfo,
  CudaDriver,
  type CudaFunction,
  type CudaModule,
  type CudaStream,
  type HostAllocation,
  kernelFaultFrom,
} from "../../../ffi/cuda.ts";
import { Nvrtc } from "../../../ffi/nvrtc.ts";
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
import { kernelLayout, KernelMemory, KernelWord } from "../../runtime/kernel_memory.ts";
import { LaunchOptions, schedulingFor } from "../../runtime/launch_options.ts";
import {
  type EventStreamOptions,
  type KernelMetrics,
  kernelStateName,
  type RuntimeMetrics,
  type TelemetryEventStream,
  type TelemetryListener,
} from "../../runtime/telemetry.ts";
import { HeartbeatWatch } from "./heartbeat_watch.ts";
import {
  DEFAULT_PARK_TIMEOUT_MS,
  DeviceQuiet,
  type Parkable,
  type QuietStats,
} from "./device_quiet.ts";
import { K2K_ROUTE_CLOSE_ENTRY } from "./k2k_device.ts";
import {
  BulkChannel,
  DEFAULT_BULK_BYTES,
  encodeBulkDescriptor,
  unpackBatch,
} from "./bulk_channel.ts";
import type { PackedPath } from "../../runtime/packed.ts";
import {
  DeviceK2k,
  K2K_DEFAULT_ARENA_BYTES,
  type K2kAttachment,
  type K2kUsage,
} from "./k2k_routing.ts";
import type { LatencyHistogram } from "../../runtime/histogram.ts";
import {
  emitPassthroughPersistent,
  emitPersistent,
  persistentLaunchArgs,
  type PersistentSource,
} from "./persistent.ts";

// Large enough for a useful error text in an error reply (192 bytes after the header).
const MIN_SLOT = 256;
/** First and longest interval of the exit poller (ms). */
const EXIT_POLL_MIN_MS = 0.25;
const EXIT_POLL_MAX_MS = 5;
/** Released regions kept for reuse (see `#poolRegion`). */
const POOL_LIMIT = 8;
/** How long a region beyond the pool stays mapped before it is freed. */
const FREE_GRACE_MS = 2000;
/** How long a launch waits for the kernel to report `Launched`. */
const READY_TIMEOUT_MS = 10_000;

/** Options of {@linkcode CudaRuntime.create}. */
export interface CudaRuntimeOptions {
  /** Device ordinal (default 0). */
  ordinal?: number;
  /** Path of libcuda (default: discovery, `RINGKERNEL_LIBCUDA`, ...). */
  libcuda?: string;
  /** Path of libnvrtc (default: discovery, `RINGKERNEL_LIBNVRTC`, ...). */
  libnvrtc?: string;
  /** NVRTC's module cache folder (default: `RINGKERNEL_CACHE_DIR`, then the user cache). */
  cacheDir?: string;
  /** `false` turns the disk cache of compiled modules off. */
  cache?: boolean;
  /** Notes to report in `backendNotes`. */
  backendNotes?: readonly string[];
  /**
   * Compiles kernels with stage timestamps of every batch (device-memory ring, see
   * `CudaRuntime.trace`): for finding where a round trip's time goes. Off by default.
   */
  trace?: boolean;
  /**
   * Bytes of device memory for K2K between kernels (route table and lanes), allocated when the
   * runtime is created: default 64 MiB, enough for ~230 kernels of 1024 × 256-byte slots. A
   * launch that does not fit throws `CapacityError`.
   */
  k2kArenaBytes?: number;
  /**
   * Loading a module and freeing memory wait for the device to go idle, so the runtime parks
   * every persistent kernel of the context around them (see `device_quiet.ts`). A kernel whose
   * handler has not returned within this many ms makes the call fail with `TimeoutError` rather
   * than hang (default 10,000).
   */
  parkTimeoutMs?: number;
  /**
   * Bytes of device memory (and as much pinned host memory) of a kernel's packed batches
   * (`KernelHandle.sendPacked`), allocated on its first packed send and kept for later kernels
   * once it ended: default 32 MiB; a batch takes at most a quarter.
   */
  bulkBytes?: number;
}

/** One batch's stage times from a traced kernel (ns of `%globaltimer`). */
export interface CudaBatchTrace {
  /** Start of the poll that found the batch's input. */
  readonly poll: number;
  /** The input lane's sequence words seen ready. */
  readonly ready: number;
  /** After the acquire fence that follows the readiness check. */
  readonly acquired: number;
  /** The (last) message's envelope loaded and checked. */
  readonly envelope: number;
  /** The (last) handler returned and its reply was written. */
  readonly handled: number;
  /** Bookkeeping written (state, HLC, counters, histogram), before the release fence. */
  readonly bookkept: number;
  /** After the release fence. */
  readonly fenced: number;
  /** Tail and heads stored: the replies are visible to the host from here on. */
  readonly published: number;
}

interface Entry {
  handle: KernelHandle;
  route: Route;
  k2k: boolean;
  /** Its device K2K memory and route. */
  device: K2kAttachment;
  kill(reason: string, cause: KillCause): void;
}

/** What a launched kernel holds on the device until its stream has completed. */
interface Resources {
  readonly region: HostAllocation;
  readonly stream: CudaStream;
  /** True once the stream completed (or the context faulted). */
  finished: boolean;
  freed: boolean;
  /** A timer of `#release` is pending (one at a time, however often it is called). */
  waiting: boolean;
  /** Its device K2K memory and route (freed with the rest once the stream completed). */
  k2k?: K2kAttachment;
  /** Its entry in the context's quiet sections (until the stream completed). */
  parkable?: Parkable;
  /** Its packed-batch channel, opened on its first `sendPacked` (pooled once it ended). */
  bulk?: BulkChannel;
  /**
   * What its handle asked to run once the stream completed (`KernelSite.whenStopped`: the
   * returned messages of a kernel killed while its handler still ran).
   */
  onStopped?: (() => void)[];
}

type TimerHandle = ReturnType<typeof setTimeout>;

/** Lets a timer not keep the process alive (Deno: `Deno.unrefTimer`; Bun/Node: `unref()`). */
/**
 * Raises the context's per-thread stack to what `fns` use, while the caller holds a quiet section.
 * A launch whose functions need more local memory than the context holds makes the driver grow it
 * first, and that waits for the device to go idle, which a running persistent kernel never lets
 * it do: the launch would hang the host thread. Growing it here, with the kernels parked, means no
 * later launch has to. (Without CU_CTX_LMEM_RESIZE_TO_MAX the driver may also shrink it again once
 * such a kernel returns, as a parked one does; a limit it was set to stays.)
 */
function fitStack(ctx: CudaContext, fns: readonly CudaFunction[]): void {
  const need = Math.max(...fns.map((f) => ctx.localBytes(f)));
  if (need > ctx.stackLimit()) ctx.setStackLimit(Math.ceil(need / 256) * 256);
}

function unref(timer: TimerHandle): void {
  if (typeof timer === "number") {
    (globalThis as { Deno?: { unrefTimer(id: number): void } }).Deno?.unrefTimer(timer);
  } else (timer as { unref?(): void }).unref?.();
}

/** `e` as a kernel exit's error: the error itself (the handle keeps it as its failure's cause). */
function describe(e: unknown): { name: string; message: string } {
  if (e instanceof Error) return e;
  return { name: "Error", message: String(e) };
}

/**
 * A runtime whose kernels are persistent CUDA kernels on one GPU.
 * `RingKernel.builder().backend(Backend.Cuda)` builds one; `CudaRuntime.create()` is the direct
 * way in (it throws when no device opens).
 *
 * @example
 * ```ts ignore
 * import { CudaRuntime, LaunchOptions } from "@ringkernel/core";
 * const rt = await CudaRuntime.create();
 * const k = await rt.launch(accumulator, LaunchOptions.default());
 * console.log(await k.request(Add.of({ value: 2 }))); // { total: 2 }
 * await rt.shutdown();
 * ```
 */
export class CudaRuntime implements KernelRuntime {
  /** Always `"cuda"`. */
  readonly backend: ConcreteBackend = "cuda";
  /** Notes given at creation. */
  readonly backendNotes: readonly string[];
  /** The device the kernels run on. */
  readonly device: CudaDeviceInfo;
  readonly #driver: CudaDriver;
  readonly #ctx: CudaContext;
  readonly #nvrtc: Nvrtc;
  readonly #modules = new Map<string, CudaModule>();
  readonly #ledger = new KernelLedger<Entry>();
  readonly #launching = new Set<string>();
  readonly #resources = new Set<Resources>();
  readonly #pool: HostAllocation[] = [];
  readonly #dying = new Set<HostAllocation>();
  /** Packed-batch channels of ended kernels, for the next kernel that sends packed batches. */
  readonly #bulkPool: BulkChannel[] = [];
  readonly #bulkBytes: number;
  readonly #clock = new HlcClock(0);
  readonly #broker: K2kBroker;
  readonly #trace: boolean;
  readonly #k2k: DeviceK2k;
  readonly #quiet: DeviceQuiet;
  readonly #parkTimeoutMs: number;
  #nextNumericId = 1;
  #shutdown = false;
  /** Set by a shutdown that left a killed kernel running: `#release` closes after its stream. */
  #closeWhenIdle = false;
  #deviceClosed = false;

  private constructor(
    driver: CudaDriver,
    ctx: CudaContext,
    nvrtc: Nvrtc,
    options: CudaRuntimeOptions,
    k2k: DeviceK2k,
  ) {
    this.#driver = driver;
    this.#ctx = ctx;
    this.#nvrtc = nvrtc;
    this.#k2k = k2k;
    this.#quiet = DeviceQuiet.acquire(ctx);
    this.#parkTimeoutMs = options.parkTimeoutMs ?? DEFAULT_PARK_TIMEOUT_MS;
    this.#bulkBytes = options.bulkBytes ?? DEFAULT_BULK_BYTES;
    this.device = ctx.device;
    this.backendNotes = Object.freeze([...(options.backendNotes ?? [])]);
    this.#trace = options.trace === true;
    this.#broker = new K2kBroker({
      get: (id) => {
        const e = this.#ledger.kernels.get(id);
        return e !== undefined && e.k2k ? e.route : undefined;
      },
      ids: () => [...this.#ledger.kernels.values()].filter((e) => e.k2k).map((e) => e.handle.id),
    });
  }

  /**
   * Opens the CUDA driver, device `ordinal`'s primary context and NVRTC. Rejects with the
   * driver's error (`NoCudaError`, `CudaError`) when that fails, or `BackendUnavailableError`
   * when the device cannot map host memory.
   */
  static create(options: CudaRuntimeOptions = {}): Promise<CudaRuntime> {
    try {
      const driver = CudaDriver.open(
        options.libcuda === undefined ? {} : { path: options.libcuda },
      );
      let ctx: CudaContext | undefined;
      try {
        const ordinal = options.ordinal ?? 0;
        const count = driver.deviceCount();
        if (ordinal >= count) {
          throw new BackendUnavailableError(
            "cuda",
            `no CUDA device ${ordinal} (${count} device${count === 1 ? "" : "s"})`,
          );
        }
        ctx = driver.createContext(ordinal);
        if (!ctx.device.canMapHostMemory) {
          throw new BackendUnavailableError(
            "cuda",
            `${ctx.device.name} cannot map pinned host memory`,
          );
        }
        const nvrtc = Nvrtc.open({
          ...(options.libnvrtc === undefined ? {} : { path: options.libnvrtc }),
          ...(options.cacheDir === undefined ? {} : { cacheDir: options.cacheDir }),
          ...(options.cache === false ? { cache: false } : {}),
        });
        let k2k: DeviceK2k;
        try {
          // Before any kernel runs: allocating (and freeing) device memory waits for the device.
          k2k = DeviceK2k.create(ctx, options.k2kArenaBytes ?? K2K_DEFAULT_ARENA_BYTES);
        } catch (e) {
          nvrtc.close();
          throw e;
        }
        return Promise.resolve(new CudaRuntime(driver, ctx, nvrtc, options, k2k));
      } catch (e) {
        try {
          driver.close();
        } catch {
          // The first error is the one to report.
        }
        throw e;
      }
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** The CUDA context (for leak checks: `context.stats()`). */
  get context(): CudaContext {
    return this.#ctx;
  }

  /** True once `shutdown` was called. */
  get isShutdown(): boolean {
    return this.#shutdown;
  }

  #checkOpen(): void {
    if (this.#shutdown) {
      throw new InvalidStateError(ErrorCode.InvalidState, "the runtime has been shut down");
    }
    const fault = this.#ctx.faulted;
    if (fault !== undefined) {
      throw new InvalidStateError(
        ErrorCode.InvalidState,
        `the CUDA context faulted (${fault}); build a new runtime`,
      );
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
      // No quiet section may park the context's kernels between this launch and its registration.
      return await this.#quiet.exclusive(() => this.#start(def, options, slotSize));
    } finally {
      this.#launching.delete(def.id);
    }
  }

  /** The persistent source of `def` (DSL-checked; throws `DslError` for what CUDA cannot run). */
  #source(def: KernelDefinition): PersistentSource {
    if (def.builtin === "passthrough") return emitPassthroughPersistent(def.id);
    return emitPersistent(checkKernel(def), def.id);
  }

  /** The loaded module of `src` (compiled and loaded, with the context's kernels parked, once). */
  async #module(src: PersistentSource, id: string): Promise<CudaModule> {
    let m = this.#modules.get(src.code);
    if (m === undefined) {
      const code = this.#trace ? `#define RK_P_TRACE 1\n${src.code}` : src.code;
      const compiled = this.#nvrtc.compile(code, {
        arch: this.#ctx.device.arch,
        context: `persistent kernel ${id}`,
        name: `${src.entry}.cu`,
        options: ["--std=c++17"],
      });
      const ctx = this.#ctx;
      m = await this.#quiet.quietly(
        `loading the module of kernel ${id}`,
        () => {
          const loaded = ctx.loadModule(compiled.image);
          try {
            fitStack(ctx, [
              loaded.getFunction(src.entry),
              loaded.getFunction(K2K_ROUTE_CLOSE_ENTRY),
            ]);
          } catch (e) {
            loaded.unload();
            throw e;
          }
          return loaded;
        },
        this.#parkTimeoutMs,
      );
      this.#modules.set(src.code, m);
    }
    return m;
  }

  async #start(
    def: KernelDefinition,
    options: LaunchOptions,
    slotSize: number,
  ): Promise<KernelHandle> {
    const src = this.#source(def);
    const module = await this.#module(src, def.id);
    const fn = module.getFunction(src.entry);
    const numericId = this.#nextNumericId++;
    const layout = kernelLayout(
      def.state?.size ?? 0,
      options.inputCapacity,
      options.outputCapacity,
      slotSize,
      true, // sealed slots: the GPU reads a message with its poll, the host a reply by its seals
    );
    const ctx = this.#ctx;
    const region = this.#takeRegion(layout.byteLength);
    let stream: CudaStream;
    try {
      stream = ctx.createStream({ nonBlocking: true });
    } catch (e) {
      this.#poolRegion(region);
      throw e;
    }
    const res: Resources = { region, stream, finished: false, freed: false, waiting: false };
    this.#resources.add(res);
    let device: K2kAttachment;
    try {
      device = this.#k2k.attach({
        kernelId: def.id,
        enabled: options.k2k,
        targets: src.k2kTargets,
        capacity: layout.inputCapacity,
        slotSize: layout.slotSize,
      });
      res.k2k = device;
      this.#k2k.setCloser(device, module.getFunction(K2K_ROUTE_CLOSE_ENTRY));
    } catch (e) {
      this.#release(res);
      throw e;
    }
    const mem = KernelMemory.format(region.buffer, layout, numericId);
    if (def.state !== undefined && def.initialState !== undefined) {
      def.state.encodeInto(def.initialState, mem.buffer, layout.state);
    }
    const launchOnStream = (): void =>
      ctx.launch(
        fn,
        1,
        src.blockThreads,
        0,
        stream,
        persistentLaunchArgs({
          region: region.device,
          numericId,
          state: layout.state,
          histogram: layout.histogram,
          high: layout.high,
          normal: layout.normal,
          output: layout.output,
          inputCapacity: layout.inputCapacity,
          outputCapacity: layout.outputCapacity,
          slotSize: layout.slotSize,
          batchMax: Math.max(1, Math.min(schedulingFor(options.priority).batchSize, 256)),
          hostMs0: Date.now(),
          k2k: device.args,
        }),
      );
    try {
      launchOnStream();
    } catch (e) {
      this.#release(res);
      throw e;
    }

    // Set once the exit settled: the poller stops (the memory may be detached from then on).
    let exited = false;
    let settleExit!: (exit: KernelExit) => void;
    const exit = new Promise<KernelExit>((resolve) => {
      settleExit = (e) => {
        if (!exited) {
          exited = true;
          resolve(e);
        }
      };
    });
    // Quiet sections park it and launch it again on the same stream and region.
    const parkedWord = (): number => Atomics.load(mem.words, KernelWord.parked);
    const parkable: Parkable = {
      id: def.id,
      requestPark: () => mem.cb.requestPark(),
      cancelPark: () => mem.cb.cancelPark(),
      parkState: () => {
        let done: boolean;
        try {
          done = res.finished || ctx.queryStream(stream);
        } catch {
          return "ended";
        }
        if (!done) return "running";
        return parkedWord() === 1 && !exited ? "parked" : "ended";
      },
      resume: () => {
        Atomics.store(mem.words, KernelWord.parked, 2);
        launchOnStream();
        // Parked time is no silence of the handler's.
        if (options.heartbeatTimeoutMs !== undefined) {
          watch = new HeartbeatWatch(options.heartbeatTimeoutMs, () => mem.cb, performance.now());
        }
      },
    };
    res.parkable = parkable;
    this.#quiet.add(parkable);

    // Polls the stream (a fault, or the kernel returned) and the control block.
    let pollMs = EXIT_POLL_MIN_MS;
    let lastState = -1;
    const poll = (): void => {
      if (exited) return;
      let done: boolean;
      try {
        done = ctx.queryStream(stream);
        // Parked by a quiet section, which launches it again; or by one that gave up on waiting
        // for it but whose Park it took anyway: launch it again here.
        if (done && parkedWord() === 1) {
          if (!this.#quiet.isQuiet) parkable.resume();
          unref(setTimeout(poll, EXIT_POLL_MIN_MS));
          return;
        }
      } catch (e) {
        res.finished = true;
        // A sticky error ends every kernel of the context: each poller sees it on its next turn.
        // The KernelFaultError itself travels on (the handle's KernelFailedError has it as cause).
        settleExit({ kind: "died", error: kernelFaultFrom(e, def.id) ?? describe(e) });
        return;
      }
      if (done) {
        res.finished = true;
        const s = mem.cb.state;
        settleExit(
          s === KernelState.Terminated ? { kind: "terminated" } : {
            kind: "died",
            error: {
              name: "KernelExited",
              message: `the persistent kernel returned in state ${kernelStateName(s)}`,
            },
          },
        );
        return;
      }
      const s = mem.cb.state;
      if (s !== lastState) {
        lastState = s;
        pollMs = EXIT_POLL_MIN_MS;
      } else pollMs = Math.min(EXIT_POLL_MAX_MS, pollMs * 2);
      const silent = watch?.check(performance.now());
      if (silent !== undefined) {
        kill(silent, "watchdog");
        return;
      }
      unref(setTimeout(poll, pollMs));
    };

    // A GPU kernel cannot be killed without losing the context (and every other kernel in it):
    // ask it to stop (leaving its input) and settle now. A handler stuck in a loop keeps running
    // until it returns; its stream and region stay allocated until the stream completes
    // (`#release`), and one that never completes keeps the context until the process exits.
    const kill = (reason: string, cause: KillCause): void => {
      Atomics.store(mem.words, KernelWord.terminateMode, 0);
      mem.cb.requestTerminate();
      // Senders must stop delivering into a lane nobody may read again.
      try {
        this.#k2k.closeRoute(device);
      } catch {
        // A fault: the lane went with the context.
      }
      const name = cause === "watchdog" ? "HeartbeatTimeout" : "Killed";
      settleExit({ kind: "died", error: { name, message: reason }, cause });
    };
    // The heartbeat watchdog runs in the exit poller (every <= EXIT_POLL_MAX_MS).
    let watch: HeartbeatWatch | undefined;

    // Ready: the kernel stored Launched (or ended first).
    const deadline = performance.now() + READY_TIMEOUT_MS;
    let wait = EXIT_POLL_MIN_MS;
    for (;;) {
      if (mem.cb.state === KernelState.Launched) break;
      let failed: Error | undefined;
      try {
        if (ctx.queryStream(stream)) {
          res.finished = true;
          failed = new Error("the kernel returned before it started");
        }
      } catch (e) {
        res.finished = true;
        failed = kernelFaultFrom(e, def.id) ?? (e as Error);
      }
      if (failed === undefined && performance.now() > deadline) {
        failed = new Error(`it did not report Launched within ${READY_TIMEOUT_MS} ms`);
      }
      if (failed !== undefined) {
        if (!res.finished) {
          // Still running after all: ask it to stop; its memory goes when its stream completes.
          Atomics.store(mem.words, KernelWord.terminateMode, 0);
          mem.cb.requestTerminate();
        }
        this.#release(res);
        throw new KernelFailedError(def.id, `persistent kernel did not start: ${failed.message}`, {
          cause: failed,
        });
      }
      await new Promise((r) => setTimeout(r, wait));
      wait = Math.min(EXIT_POLL_MAX_MS, wait * 2);
    }
    if (options.heartbeatTimeoutMs !== undefined) {
      watch = new HeartbeatWatch(options.heartbeatTimeoutMs, () => mem.cb, performance.now());
    }
    poll();

    const routeInit: RouteInit = {
      id: def.id,
      numericId,
      inputTypeId: def.input?.typeId ?? 0,
      buffer: mem.buffer,
      layout,
    };
    const route = new Route(routeInit);
    const handle = new KernelHandle(def, options, {
      mem,
      route: routeInit,
      exit,
      detach: () => {
        const copy = new ArrayBuffer(layout.byteLength);
        new Uint8Array(copy).set(new Uint8Array(mem.buffer, 0, layout.byteLength));
        return KernelMemory.attach(copy, layout);
      },
      dispose: () => {
        this.#retire(def.id);
        this.#release(res);
      },
      leftovers: () => this.#k2k.leftovers(device),
      whenStopped: (collect) => {
        // A killed kernel's handler runs on, and its loop takes input until it exits.
        if (res.freed || res.finished || ctx.faulted !== undefined) return false;
        try {
          // Completed (also parked for good: a quiet section relaunches no kernel that exited).
          if (ctx.queryStream(stream)) return false;
        } catch {
          return false; // A fault: the kernel is gone with the context.
        }
        (res.onStopped ??= []).push(collect);
        return true;
      },
      packed: () => src.bulkStageBytes === 0 ? undefined : this.#packedPath(res, mem),
      unpackReturned: (envelope) =>
        res.bulk === undefined ? undefined : unpackBatch(envelope, {
          channel: res.bulk,
          numericId,
          // The kernel's progress through the batch it was in (its words, final once it stopped).
          progress: () => ({
            seq: Atomics.load(mem.words, KernelWord.bulkSeq),
            pos: Atomics.load(mem.words, KernelWord.bulkPos),
          }),
        }),
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
    this.#ledger.kernels.set(def.id, { handle, route, k2k: options.k2k, device, kill });
    if (options.autoActivate) await handle.activate();
    return handle;
  }

  /** The packed-batch path of a kernel: its channel, opened (or taken from the pool) on first use. */
  #packedPath(res: Resources, mem: KernelMemory): PackedPath {
    if (res.bulk === undefined) {
      const ch = this.#bulkPool.pop() ?? BulkChannel.open(this.#ctx, this.#bulkBytes);
      ch.attach(() => Atomics.load(mem.words, KernelWord.bulkDone));
      res.bulk = ch;
    }
    const ch = res.bulk;
    return {
      maxMessages: (stride) => Math.max(1, Math.floor(ch.batchBytes / stride)),
      submit: (payload, count, stride, typeId) => {
        const d = ch.submit(payload, count, stride, typeId);
        return d === undefined ? undefined : { descriptor: encodeBulkDescriptor(d), seq: d.seq };
      },
      abandon: (seq) => ch.abandon(seq),
    };
  }

  /**
   * Frees a kernel's stream and region once its stream has completed; until then (a killed
   * kernel still running) polls for it on an unref'd timer. First it runs what the handle left
   * for then (`onStopped`: collecting the returned messages), while the region is still the
   * kernel's and its device K2K lane not yet released.
   */
  #release(res: Resources): void {
    if (res.freed) return;
    const ctx = this.#ctx;
    if (!res.finished && ctx.faulted === undefined) {
      try {
        res.finished = ctx.queryStream(res.stream);
      } catch {
        res.finished = true;
      }
    }
    if (!res.finished && ctx.faulted === undefined) {
      if (!res.waiting) {
        res.waiting = true;
        unref(setTimeout(() => {
          res.waiting = false;
          this.#release(res);
        }, EXIT_POLL_MAX_MS));
      }
      return;
    }
    res.freed = true;
    this.#resources.delete(res);
    if (res.parkable !== undefined) this.#quiet.delete(res.parkable);
    // A faulted context still has the region mapped (its host lanes read fine); its device lanes
    // are lost, and `leftovers` returns none.
    for (const collect of res.onStopped?.splice(0) ?? []) {
      try {
        collect();
      } catch {
        // Nothing may keep the region and stream from being freed.
      }
    }
    if (res.k2k !== undefined) this.#k2k.release(res.k2k);
    if (res.bulk !== undefined && ctx.faulted === undefined) {
      try {
        res.bulk.settle();
        this.#bulkPool.push(res.bulk);
      } catch {
        // A fault meanwhile: the context frees it when it closes.
      }
    }
    // A faulted context frees them when it is closed (reset).
    if (ctx.faulted === undefined) {
      try {
        ctx.destroyStream(res.stream);
      } catch {
        // A fault between the check and here: the context owns it now.
      }
      this.#poolRegion(res.region);
    }
    if (this.#closeWhenIdle && this.#resources.size === 0) void this.#closeDevice();
  }

  /** A region of `bytes` bytes: a pooled one of that size, else a new allocation. */
  #takeRegion(bytes: number): HostAllocation {
    const pooled = this.#pool.findIndex((r) => r.bytes === bytes);
    if (pooled >= 0) return this.#pool.splice(pooled, 1)[0];
    return this.#ctx.allocHost(bytes);
  }

  /**
   * Keeps a released region for the next launch of the same size rather than unmapping it:
   * views of it may still be held by a host task that has not yet noticed its kernel ended
   * (a sender waiting for room), and reading unmapped memory would crash the process. Beyond
   * {@linkcode POOL_LIMIT} regions, the oldest is freed after {@linkcode FREE_GRACE_MS}, longer
   * than any such wait lasts before it re-checks the kernel's state.
   */
  #poolRegion(region: HostAllocation): void {
    this.#pool.push(region);
    while (this.#pool.length > POOL_LIMIT) {
      const old = this.#pool.shift()!;
      this.#dying.add(old);
      unref(setTimeout(() => this.#freeRegion(old), FREE_GRACE_MS));
    }
  }

  #freeRegion(region: HostAllocation): void {
    if (!this.#dying.has(region) || this.#ctx.faulted !== undefined) return;
    const ctx = this.#ctx;
    // cuMemFreeHost waits for the device to go idle: with the context's kernels parked.
    void this.#quiet.exclusive(() =>
      this.#quiet.quietly("freeing a kernel region", () => {
        if (!this.#dying.delete(region) || ctx.isClosed || ctx.faulted !== undefined) return;
        ctx.freeHost(region);
      }, this.#parkTimeoutMs)
    ).catch(() => {
      // A handler kept the device busy (retried later), or the context closed or faulted
      // meanwhile (it frees its memory itself).
      if (this.#dying.has(region)) unref(setTimeout(() => this.#freeRegion(region), FREE_GRACE_MS));
    });
  }

  #retire(id: string): void {
    this.#ledger.retire(id);
  }

  /**
   * The last batches' stage times of kernels of `definition` (a runtime created with
   * `trace: true`), oldest first, up to 4096; `[]` when not traced or not launched. Kernels of
   * one definition share a module, so their batches interleave.
   */
  trace<I extends FieldsSpec, O extends FieldsSpec, S extends FieldsSpec>(
    definition: KernelDefinition<I, O, S> | string,
  ): CudaBatchTrace[] {
    this.#checkOpen();
    if (!this.#trace) return [];
    const def = typeof definition === "string"
      ? passthroughKernel(definition)
      : definition as unknown as KernelDefinition;
    const m = this.#modules.get(this.#source(def).code);
    if (m === undefined) return [];
    const stages = 8;
    const records = 4096;
    const count = new BigUint64Array(1);
    this.#ctx.copyDtoH(count, m.getGlobal("rk_trace_count").ptr);
    const all = new BigUint64Array(records * stages);
    this.#ctx.copyDtoH(all, m.getGlobal("rk_trace").ptr);
    const n = Number(count[0]);
    const out: CudaBatchTrace[] = [];
    for (let i = Math.max(0, n - records); i < n; i++) {
      const r = (i % records) * stages;
      const t = (s: number): number => Number(all[r + s]);
      out.push({
        poll: t(0),
        ready: t(1),
        acquired: t(7),
        envelope: t(2),
        handled: t(3),
        bookkept: t(4),
        fenced: t(5),
        published: t(6),
      });
    }
    return out;
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
   * A copy of the delivery-latency histogram of running kernel `id`'s device K2K lane: for each
   * message another kernel's `ctx.send` put there, the time from its publication to the moment
   * this kernel took it (`%globaltimer` ns, both on the GPU). Undefined when `id` is not running
   * or was launched with K2K off.
   */
  k2kDeliveryLatency(id: string): LatencyHistogram | undefined {
    this.#checkOpen();
    const e = this.#ledger.kernels.get(id);
    return e === undefined ? undefined : this.#k2k.histogram(e.device);
  }

  /**
   * What parking the context's kernels around module loads and frees has cost so far, for every
   * runtime of this process on this device (see `device_quiet.ts`).
   */
  quietStats(): QuietStats {
    return this.#quiet.stats;
  }

  /** Device K2K memory in use (arena pieces, route slots): for leak checks. */
  k2kUsage(): K2kUsage {
    return this.#k2k.usage();
  }

  /**
   * Terminates every kernel (queued messages are returned unless `drain`), gives up on any that
   * does not stop within `timeoutMs` (it is asked to stop and declared `Failed`), then unloads
   * the modules and releases the context and the driver. It never waits for the GPU beyond
   * that: a killed kernel still running then (a handler busy or stuck in a loop) keeps the
   * context until its stream completes, which releases it then, on unref'd timers (never, for a
   * handler that never returns: the process's exit ends it). A second call throws
   * `InvalidStateError`.
   */
  async shutdown(options: ShutdownOptions = {}): Promise<Record<string, TerminateReport>> {
    if (this.#shutdown) {
      throw new InvalidStateError(ErrorCode.InvalidState, "the runtime has been shut down");
    }
    this.#shutdown = true;
    const reports = await this.#ledger.terminateAll(options);
    this.#ledger.close();
    // Kernels that were killed get a short grace to finish before the context goes.
    const graceEnd = performance.now() + 100;
    while (this.#resources.size > 0 && performance.now() < graceEnd) {
      for (const r of [...this.#resources]) this.#release(r);
      if (this.#resources.size > 0) await new Promise((r) => setTimeout(r, 5));
    }
    if (this.#resources.size === 0 || this.#ctx.faulted !== undefined) await this.#closeDevice();
    else this.#closeWhenIdle = true;
    return reports;
  }

  /**
   * Unloads the modules and releases the context (a faulted one is reset, see
   * `CudaContext.close`), NVRTC and the driver. Once.
   */
  async #closeDevice(): Promise<void> {
    if (this.#deviceClosed) return;
    this.#deviceClosed = true;
    this.#closeWhenIdle = false;
    this.#modules.clear();
    this.#pool.length = 0;
    this.#dying.clear();
    await this.#freeDevice();
  }

  /**
   * Frees the K2K arena and the context's memory and modules, and releases it, NVRTC and the
   * driver. Unloading modules and freeing memory wait for the device to go idle, and other
   * runtimes of the process share the context: their kernels are parked meanwhile. If one of
   * their handlers keeps the device busy past the park timeout, it tries again later, on an
   * unref'd timer, rather than hang.
   */
  async #freeDevice(): Promise<void> {
    const free = (): void => {
      this.#k2k.dispose();
      try {
        this.#ctx.close();
      } catch {
        // A faulted context still releases; nothing more to free.
      }
    };
    try {
      await this.#quiet.exclusive(() =>
        this.#quiet.quietly("closing a CUDA runtime", free, this.#parkTimeoutMs)
      );
    } catch {
      unref(setTimeout(() => void this.#freeDevice(), FREE_GRACE_MS));
      return;
    }
    this.#quiet.release();
    this.#nvrtc.close();
    try {
      this.#driver.close();
    } catch {
      // As above.
    }
  }
}
