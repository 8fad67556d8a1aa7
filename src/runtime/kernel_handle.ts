/**
 * `KernelHandle`: the host's side of one launched kernel — lifecycle, sending, request/reply with
 * correlation ids, receiving outputs, state inspection and metrics.
 *
 * It works on the kernel's memory (control block, input lanes, output queue, state) and needs
 * from the backend only a promise that settles when the kernel exits and a `dispose` to free what
 * the backend holds, so a CUDA kernel in mapped pinned memory can use the same handle.
 *
 * Outputs are read by a pump that runs only while someone waits (a pending `request` or
 * `receive`): it spins briefly, then waits on the output queue's data signal without blocking
 * the thread. With nobody waiting, outputs stay in the output queue (backpressure reaches the
 * kernel, then senders); nothing keeps the event loop alive.
 * @module
 */

import { KernelState } from "../core/control_block.ts";
import {
  decodeEnvelope,
  ENVELOPE_HEADER_BYTES,
  ENVELOPE_MAGIC,
  ENVELOPE_VERSION,
  EnvelopeFlag,
  type EnvelopeHeader,
  EnvelopeOffset,
  Priority,
  writeEnvelope,
  writeMessage,
} from "../core/envelope.ts";
import {
  DecodeError,
  ErrorCode,
  HandlerError,
  InvalidStateError,
  KernelFailedError,
  QueueFullError,
  RingKernelError,
  TimeoutError,
  ValidationError,
} from "../core/errors.ts";
import type { MpscQueue } from "../core/mpsc_queue.ts";
import type { SpscQueue } from "../core/spsc_queue.ts";
import type { HlcClock } from "../core/hlc.ts";
import { QueueWord } from "../core/queue_layout.ts";
import type { FieldsSpec, InferFields, Message, MessageSchema } from "../core/schema.ts";
import { isSharedView, waitWordAsync } from "../core/wait.ts";
import { LatencyHistogram, type LatencySummary } from "./histogram.ts";
import {
  enqueueGuarded,
  enqueueManyGuarded,
  laneFor,
  quiesceSenders,
  Route,
  type RouteInit,
} from "./k2k.ts";
import type { KernelDefinition } from "./kernel.ts";
import {
  BULK_BATCH_TYPE_ID,
  EMPTY_REPLY_TYPE_ID,
  ERROR_REPLY_TYPE_ID,
  type KernelMemory,
  KernelWord,
  ringAlways,
  ringForData,
  Sleeping,
} from "./kernel_memory.ts";
import type { LaunchOptions } from "./launch_options.ts";
import type { PackedPath } from "./packed.ts";
import { type KernelMetrics, kernelStateName } from "./telemetry.ts";

/**
 * Why a backend ended a kernel that did not end by itself: `watchdog` (no heartbeat for longer
 * than its launch option allows) or `killed` (it did not stop within a terminate or shutdown
 * timeout).
 */
export type KillCause = "watchdog" | "killed";

/**
 * How a kernel's execution ended, as its backend reports it. An `error` that is an `Error` (the
 * CUDA backend's `KernelFaultError`) becomes the `cause` of the kernel's `KernelFailedError`.
 */
export type KernelExit =
  | { readonly kind: "terminated" }
  | { readonly kind: "stopped"; readonly error: { name: string; message: string } }
  | {
    readonly kind: "died";
    readonly error: { name: string; message: string };
    /** Set when the backend ended it on purpose; absent when the worker died by itself. */
    readonly cause?: KillCause;
  };

/** Why a kernel failed, as `onKernelFailure` listeners hear it. */
export type FailureCause = "died" | "stop" | "escalate" | KillCause;

/** What a backend gives the handle of a kernel it launched. */
export interface KernelSite {
  /** The kernel's memory. */
  readonly mem: KernelMemory;
  /** Its routing entry (also used to validate raw envelopes). */
  readonly route: RouteInit;
  /** Settles when the kernel's execution ends, however it ends. Never rejects. */
  readonly exit: Promise<KernelExit>;
  /** Frees what the backend holds for the kernel (worker, routing entry). Idempotent. */
  dispose(): void;
  /** Told when the kernel fails (worker died, supervision stopped it, killed). */
  onFailure(error: KernelFailedError, cause: FailureCause): void;
  /**
   * Told of every lifecycle transition the handle observes, in order (for the runtime's event
   * stream). `reason` is set for failures.
   */
  onStateChange?(from: KernelState, to: KernelState, reason?: string): void;
  /** Ends the kernel's execution now (force-kills its worker); its exit settles as `died`. */
  kill?(reason: string, cause: KillCause): void;
  /**
   * For backends that free the kernel's memory in `dispose` (CUDA: mapped pinned memory, which
   * must not be touched once freed): called once after the kernel ended, right before `dispose`,
   * it returns a copy of the memory that the handle reads from then on (`metrics`, `readState`,
   * `tryReceive`). For a kernel collected late (see {@linkcode whenStopped}) it is called once
   * more when it stopped, for its final counters and outputs. Absent: the handle keeps reading
   * the original.
   */
  detach?(): KernelMemory;
  /**
   * Envelopes the backend holds for the kernel outside its region (CUDA: what other kernels'
   * `ctx.send` left in its device K2K lane), collected once after the kernel ended and appended
   * to the terminate report's `returned`. Absent: none.
   */
  leftovers?(): Uint8Array[];
  /**
   * For backends whose kernel can go on running after its exit settled (CUDA: a GPU kernel
   * killed by its watchdog or a timeout cannot be interrupted; its handler runs until it returns
   * and the loop then exits). While it runs it still takes input from its lanes, so the handle
   * must not collect them yet: when the device side still runs, the backend keeps `collect`,
   * calls it once after the kernel stopped and before its memory is freed or reused, and
   * returns true; it returns false when the kernel has stopped already (the handle collects at
   * once). Absent: the kernel stopped when its exit settled.
   */
  whenStopped?(collect: () => void): boolean;
  /** The backend's path for packed batches (`sendPacked`); absent: an envelope per message. */
  packed?(): PackedPath | undefined;
  /**
   * A returned envelope as the messages it stands for: a packed batch's descriptor becomes an
   * envelope per message the kernel did not handle. Undefined: return it as it is.
   */
  unpackReturned?(envelope: Uint8Array): Uint8Array[] | undefined;
}

/** Options of `send`. */
export interface SendOptions {
  /** Envelope priority: `Priority.High` and above go to the kernel's high-priority lane. */
  priority?: number;
  /** How long to wait for room in a full input queue (default 1000 ms); then `QueueFullError`. */
  timeoutMs?: number;
  /**
   * Write a CRC32C into each envelope (`EnvelopeFlag.HasChecksum`); the kernel verifies it before
   * the handler sees the message (default false).
   */
  checksum?: boolean;
}

/** Options of `request`. */
export interface RequestOptions extends SendOptions {
  /** How long to wait for the reply (default 5000 ms); then `TimeoutError`. */
  timeoutMs?: number;
}

/** Options of `terminate`. */
export interface TerminateOptions {
  /**
   * true (default): the kernel handles every message already in its input queue before it exits.
   * false: it exits at once and the messages left are returned in the report.
   */
  drain?: boolean;
  /**
   * Force-kill the kernel's worker when it has not stopped this many milliseconds after the
   * request (a handler stuck in an endless loop). The kernel then ends `Failed`, pending requests
   * are rejected with `KernelFailedError`, and so is `terminate` itself; the unhandled envelopes
   * are in `handle.unhandled`. Default: wait as long as it takes.
   */
  timeoutMs?: number;
}

/**
 * `sendMany` accepted only a prefix of its messages: the first {@linkcode accepted} are in the
 * kernel's input queue (in order) and will be handled; the others were not sent and are the
 * caller's to retry. `code` is that of {@linkcode cause}: `E_QUEUE_FULL` when the queue stayed
 * full for `timeoutMs`, `E_INVALID_STATE` / `E_KERNEL_FAILED` when the kernel ended meanwhile,
 * or a schema or validation code when message `accepted` could not be encoded.
 */
export class PartialSendError extends RingKernelError {
  /** How many messages (a prefix of the array) were accepted. */
  readonly accepted: number;
  /** How many were not. */
  readonly rejected: number;

  /** Wraps the error that stopped `sendMany` after `accepted` of `total` messages. */
  constructor(kernelId: string, accepted: number, total: number, cause: RingKernelError) {
    super(
      cause.code,
      `kernel ${kernelId} accepted ${accepted} of ${total} messages: ${cause.message}`,
      { cause },
    );
    this.accepted = accepted;
    this.rejected = total - accepted;
  }
}

/** What `terminate` reports. */
export interface TerminateReport {
  /**
   * Envelopes that were in the input queue and were not handled (empty after a full drain). For
   * a GPU kernel that was killed while its handler still ran (CUDA), they are appended to this
   * same array once the kernel stopped (see `KernelHandle.unhandled`).
   */
  readonly returned: Uint8Array[];
  /** Messages the kernel processed over its life. */
  readonly processed: number;
}

/** An output of a kernel (a message its handler returned for a non-request input). */
export interface KernelOutput<O extends FieldsSpec> {
  /** The envelope header. */
  readonly header: EnvelopeHeader;
  /** The decoded payload, when the kernel's output schema (or a registry) knows the type. */
  readonly value: InferFields<O> | undefined;
  /** The payload bytes (a copy). */
  readonly payload: Uint8Array;
}

interface Pending {
  resolve(value: unknown): void;
  reject(error: Error): void;
  schema: MessageSchema | undefined;
  started: number;
  /** The timeout's timer; undefined in polling mode, where the pump checks `deadline`. */
  timer: ReturnType<typeof setTimeout> | undefined;
  /** `started + timeoutMs`. */
  deadline: number;
  timeoutMs: number;
}

interface ReceiveWaiter {
  resolve(output: KernelOutput<FieldsSpec>): void;
  reject(error: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

/** How long the pump spins on an empty output queue before it waits (latency vs CPU). */
const HOST_SPIN_MS = 0.05;
/**
 * How long it spins instead while the kernel is awake with input queued: output is then due
 * within a batch, and a wait would cost far more (the kernel's notify plus, under Deno, a slow
 * `waitAsync` wake-up) than the spin. Bounded for handlers slower than that.
 */
const HOST_BUSY_SPIN_MS = 1;
/** Output polls between two clock reads of the pump's spin. */
const SPIN_POLLS_PER_CLOCK = 8;
/** Longest single wait of the pump; it re-checks its waiters after each. */
const PUMP_SLICE_MS = 250;
/**
 * Output in memory that cannot be waited on (mapped GPU memory: the kernel cannot notify) is
 * polled: this many event-loop turns (`setImmediate`, a few µs each) after the last output...
 */
const POLL_TURNS = 256;
/** ...then sleeps of this many ms (timers: they keep the process alive only while someone waits). */
const POLL_SLEEP_MS = 1;
/** Longest wait for a sealed region's counters to catch up with its outputs (see #handledMark). */
const HANDLED_MARK_WAIT_MS = 20;

type Immediate = (callback: () => void) => unknown;
const setImmediateFn: Immediate | undefined =
  (globalThis as { setImmediate?: Immediate }).setImmediate;

/** Lets the event loop run once (a macrotask, no timer clamp) where the runtime allows it. */
function nextTurn(): Promise<void> {
  return new Promise<void>((resolve) => {
    if (setImmediateFn !== undefined) setImmediateFn(resolve);
    else setTimeout(resolve, 0);
  });
}
/**
 * Messages `sendMany` encodes before publishing them: small runs let the kernel start on the
 * first while the host encodes the rest (one whole window first would leave it idle meanwhile).
 */
const SEND_RUN = 32;

const decoder = new TextDecoder();

/** Every flag bit an envelope may carry (the others are reserved). */
const KNOWN_ENVELOPE_FLAGS = Object.values(EnvelopeFlag).reduce((a, b) => a | b, 0);

/**
 * Whether the `n`-byte envelope at `at` of `dv` passes every check `decodeEnvelope` makes with
 * `{ checksum: "ignore" }`, read in place (no header object, no BigInts). False sends it down
 * the general path, whose `decodeEnvelope` then reports what is wrong exactly as before.
 */
function envelopeHeaderValid(dv: DataView, at: number, n: number): boolean {
  if (n < ENVELOPE_HEADER_BYTES) return false;
  const flags = dv.getUint16(at + EnvelopeOffset.flags, true);
  return dv.getUint32(at + EnvelopeOffset.magic, true) === ENVELOPE_MAGIC &&
    dv.getUint16(at + EnvelopeOffset.version, true) === ENVELOPE_VERSION &&
    (flags & ~KNOWN_ENVELOPE_FLAGS) === 0 &&
    dv.getUint32(at + EnvelopeOffset.reserved, true) === 0 &&
    dv.getUint32(at + EnvelopeOffset.payloadLength, true) <= n - ENVELOPE_HEADER_BYTES &&
    ((flags & EnvelopeFlag.HasChecksum) !== 0 ||
      dv.getUint32(at + EnvelopeOffset.checksum, true) === 0) &&
    dv.getUint32(at + EnvelopeOffset.typeId, true) !== 0 &&
    dv.getUint32(at + EnvelopeOffset.priority, true) <= 0xff;
}

function checkMax(max: number): void {
  if (!Number.isSafeInteger(max) || max < 1) {
    throw new ValidationError(
      ErrorCode.InvalidArgument,
      `max must be a positive integer, got ${max}`,
    );
  }
}

/**
 * A launched kernel. Get one from `runtime.launch(...)` or `runtime.getKernel(id)`.
 *
 * Lifecycle: `Launched` → `Active` ⇄ `Deactivated` → `Terminated` (or `Failed` from any running
 * state). `activate` is legal from `Launched` and `Deactivated`, `deactivate` from `Active`,
 * `terminate` from any running state; anything else throws `InvalidStateError`.
 *
 * @example
 * ```ts
 * import { LaunchOptions, RingKernel } from "@ringkernel/core";
 * import { Add, accumulator } from "./kernels.ts"; // defineKernel(...) with module: import.meta.url
 * const rt = await RingKernel.builder().build();
 * const k = await rt.launch(accumulator, LaunchOptions.default());
 * console.log(await k.request(Add.of({ value: 2 }), { timeoutMs: 1000 })); // { total: 2 }
 * await k.deactivate();
 * await k.send(Add.of({ value: 1 })); // kept until reactivated
 * await k.activate();
 * await rt.shutdown();
 * ```
 */
export class KernelHandle<
  I extends FieldsSpec = FieldsSpec,
  O extends FieldsSpec = FieldsSpec,
  S extends FieldsSpec = FieldsSpec,
> {
  /** Kernel id. */
  readonly id: string;
  /** Numeric id (envelope source/destination, HLC node id). */
  readonly numericId: number;
  /** The definition it runs. */
  readonly definition: KernelDefinition<I, O, S>;
  /** The options it was launched with. */
  readonly options: LaunchOptions;
  readonly #site: KernelSite;
  #mem: KernelMemory;
  readonly #route: Route;
  readonly #clock: HlcClock;
  readonly #launchedAt = performance.now();
  readonly #scratch: Uint8Array;
  /** The scratch's first `n` bytes, kept while requests are all `n` bytes long (one schema). */
  #scratchHead: Uint8Array;
  /** Where a sealed output queue's messages are copied to be dispatched in place. */
  readonly #reply: Uint8Array;
  readonly #replyView: DataView;
  /** A view over the output queue's buffer (plain slots are dispatched where they lie). */
  #outView: DataView | undefined;
  #outHeader: Int32Array;
  readonly #pending = new Map<bigint, Pending>();
  readonly #receivers: ReceiveWaiter[] = [];
  readonly #outputs: KernelOutput<O>[] = [];
  readonly #rtt = new LatencyHistogram();
  #nextId = 1n;
  #pump: Promise<void> | undefined;
  #pumping = false;
  #terminal: KernelState | undefined;
  #terminating = false;
  #failure: KernelFailedError | undefined;
  #lateReplies = 0;
  /**
   * Sealed regions (CUDA): the most messages the kernel had handled by one of its outputs, which
   * it stamps into the output's `messageId`. Its outputs are seen before that batch's counters
   * and state land (no GPU fence before them), so `metrics()` and `readState()` wait for the
   * counters to reach this first: what a reply has shown, they show too.
   */
  #handledMark = 0;
  #exitHandled: Promise<void>;
  #returned: Uint8Array[] = [];
  #reported: KernelState = KernelState.Created;
  #batchBuf: Uint8Array | undefined;
  /** True when the output queue cannot be waited on (mapped GPU memory): the pump polls. */
  readonly #polling: boolean;
  /** Poll turns since the last output (see {@linkcode POLL_TURNS}). */
  #pollTurns = 0;
  /**
   * Polling mode: no deadline of a pending request is earlier than this (it may be stale, i.e.
   * earlier than the true minimum; {@linkcode #sweepDeadlines} then recomputes it).
   */
  #nextDeadline = Infinity;

  /** Made by a backend's `launch`. */
  constructor(
    definition: KernelDefinition<I, O, S>,
    options: LaunchOptions,
    site: KernelSite,
    clock: HlcClock,
  ) {
    this.id = definition.id;
    this.definition = definition;
    this.options = options;
    this.numericId = site.route.numericId;
    this.#site = site;
    this.#mem = site.mem;
    this.#route = new Route(site.route);
    this.#clock = clock;
    this.#scratch = new Uint8Array(site.mem.layout.slotSize);
    this.#scratchHead = this.#scratch.subarray(0, 0);
    const out = site.mem.output;
    this.#reply = new Uint8Array(Math.max(out.maxMessageSize, ENVELOPE_HEADER_BYTES));
    this.#replyView = new DataView(this.#reply.buffer);
    this.#outHeader = new Int32Array(out.buffer, out.byteOffset, 128);
    this.#polling = !isSharedView(this.#outHeader);
    this.#exitHandled = site.exit.then((exit) => this.#onExit(exit));
    // The backend hands the handle over once the kernel reported ready, i.e. Launched.
    this.#report(KernelState.Launched);
  }

  /** Emits a transition to `to` from the last state reported (once per change). */
  #report(to: KernelState, reason?: string): void {
    const from = this.#reported;
    if (from === to) return;
    this.#reported = to;
    this.#site.onStateChange?.(from, to, reason);
  }

  // ------------------------------------------------------------------------------ lifecycle

  /** The lifecycle state (see {@linkcode KernelState}). */
  state(): KernelState {
    return this.#terminal ?? this.#mem.cb.state;
  }

  /** Why the kernel failed, when it did. */
  get failure(): KernelFailedError | undefined {
    return this.#failure;
  }

  /** Starts (or resumes) processing. Legal from `Launched` and `Deactivated`. */
  async activate(): Promise<void> {
    this.#expect("activate", [KernelState.Launched, KernelState.Deactivated]);
    this.#mem.cb.requestActivate();
    ringAlways(this.#mem.words);
    await this.#awaitState(KernelState.Active);
    this.#report(KernelState.Active);
  }

  /** Pauses processing; incoming messages are kept until `activate`. Legal from `Active`. */
  async deactivate(): Promise<void> {
    this.#expect("deactivate", [KernelState.Active]);
    this.#mem.cb.requestDeactivate();
    ringAlways(this.#mem.words);
    await this.#awaitState(KernelState.Deactivated);
    this.#report(KernelState.Deactivated);
  }

  /**
   * Stops the kernel and frees its worker. By default it first handles every queued message
   * (replies reach their requesters); with `{ drain: false }` the queued messages are returned
   * in the report instead. Requests still unanswered afterwards are rejected with
   * `InvalidStateError`. Legal from `Launched`, `Active` and `Deactivated`. With `timeoutMs`, a
   * kernel that has not stopped in time is force-killed and `terminate` rejects with
   * `KernelFailedError` (see {@linkcode TerminateOptions.timeoutMs}).
   */
  async terminate(options: TerminateOptions = {}): Promise<TerminateReport> {
    this.#expect("terminate", [KernelState.Launched, KernelState.Active, KernelState.Deactivated]);
    if (this.#terminating) {
      throw new InvalidStateError(ErrorCode.InvalidState, `kernel ${this.id} is terminating`);
    }
    const timeoutMs = options.timeoutMs;
    if (timeoutMs !== undefined && !(timeoutMs >= 0)) {
      throw new ValidationError(
        ErrorCode.InvalidArgument,
        `terminate timeoutMs must be a non-negative number, got ${timeoutMs}`,
      );
    }
    this.#terminating = true;
    this.#report(KernelState.Terminating);
    Atomics.store(this.#mem.words, KernelWord.terminateMode, options.drain === false ? 0 : 1);
    this.#mem.cb.requestTerminate();
    ringAlways(this.#mem.words);
    const killer = timeoutMs === undefined ? undefined : setTimeout(() => {
      this.#site.kill?.(`did not stop within ${timeoutMs} ms of terminate`, "killed");
    }, timeoutMs);
    // Read outputs while it drains, so a full output queue cannot stall the drain.
    let done = false;
    const exited = this.#exitHandled.then(() => {
      done = true;
      this.#kick();
    });
    try {
      while (!done) {
        this.#drainOutput();
        // Its end is known: `#onExit` reads the rest and `exited` follows. Waits on the output
        // return at once from here (polling mode), and looping on them would run on microtasks
        // alone, starving the timers `#onExit` itself awaits.
        if (this.#terminal !== undefined) break;
        await this.#waitOutput(PUMP_SLICE_MS, () => done);
      }
      await exited;
    } finally {
      clearTimeout(killer);
    }
    if (this.#failure !== undefined) throw this.#failure;
    return { returned: this.#returned, processed: this.#mem.cb.processed };
  }

  #expect(action: string, legal: readonly KernelState[]): void {
    const s = this.state();
    if (!legal.includes(s) || (this.#terminating && action !== "terminate")) {
      throw new InvalidStateError(
        ErrorCode.InvalidState,
        `cannot ${action} kernel ${this.id} in state ${kernelStateName(s)}` +
          (this.#terminating ? " (terminating)" : ""),
      );
    }
  }

  async #awaitState(target: KernelState): Promise<void> {
    const deadline = performance.now() + 10_000;
    for (;;) {
      if (this.#failure !== undefined) throw this.#failure;
      // Read afresh each time: a backend may detach the memory once the kernel ended.
      const cb = this.#mem.cb;
      const s = cb.state;
      if (s === target) return;
      if (this.#terminal !== undefined) {
        throw new InvalidStateError(
          ErrorCode.InvalidState,
          `kernel ${this.id} ended (${kernelStateName(this.#terminal)}) before becoming ` +
            kernelStateName(target),
        );
      }
      const left = deadline - performance.now();
      if (left <= 0) {
        throw new TimeoutError(
          ErrorCode.Timeout,
          `kernel ${this.id} did not become ${kernelStateName(target)} within 10 s`,
        );
      }
      // The kernel's state store notifies this word; the slice bounds a missed exit.
      const word = new Int32Array(cb.buffer, cb.byteOffset, 32);
      await waitWordAsync(word, 2, s, Math.min(left, 50));
    }
  }

  async #onExit(exit: KernelExit): Promise<void> {
    const cb = this.#mem.cb;
    this.#drainOutput();
    if (exit.kind === "terminated") {
      this.#terminal = KernelState.Terminated;
    } else {
      this.#terminal = KernelState.Failed;
      // A dead or killed worker could not store it; senders must see the kernel gone from now on.
      if (exit.kind === "died") cb.state = KernelState.Failed;
      const what = exit.kind === "stopped"
        ? "supervision stopped it"
        : exit.cause === "watchdog"
        ? "its watchdog fired"
        : exit.cause === "killed"
        ? "its worker was killed"
        : "its worker died";
      this.#failure = new KernelFailedError(
        this.id,
        `${what}: ${exit.error.name}: ${exit.error.message}`,
        exit.error instanceof Error ? { cause: exit.error } : undefined,
      );
    }
    // The state is gone (Terminated or Failed) now: wait out any producer that passed its check
    // before, so what it enqueued is collected below rather than stranded.
    await quiesceSenders(this.#mem);
    this.#drainOutput();
    // The region itself, not the copy `detach` gives below.
    const live = this.#mem;
    const collect = (): Uint8Array[] =>
      [
        ...live.high.dequeueMany(Infinity),
        ...live.normal.dequeueMany(Infinity),
        ...(this.#site.leftovers?.() ?? []),
      ].flatMap((e) => this.#site.unpackReturned?.(e) ?? [e]);
    // A killed GPU kernel whose handler still runs takes input until its loop exits: lanes read
    // now could hand back a message it also handles. Its backend collects them once it stopped.
    const late = this.#site.whenStopped?.(() => {
      this.#returned.push(...collect());
      if (this.#site.detach === undefined || this.#mem === live) return;
      // The copy read since was taken while the kernel ran: take one with its final counters
      // and outputs, minus the outputs already read from the old copy (its consumer position).
      const out = new Int32Array(live.output.buffer, live.output.byteOffset, 128);
      Atomics.store(out, QueueWord.head, Atomics.load(this.#outHeader, QueueWord.head));
      this.#mem = this.#site.detach();
      const copy = this.#mem.output;
      this.#outHeader = new Int32Array(copy.buffer, copy.byteOffset, 128);
    }) === true;
    if (!late) this.#returned = collect();
    this.#report(this.#terminal, this.#failure?.message);
    const reason = this.#failure ??
      new InvalidStateError(ErrorCode.InvalidState, `kernel ${this.id} terminated`);
    for (const [id, p] of this.#pending) {
      clearTimeout(p.timer);
      this.#pending.delete(id);
      p.reject(reason);
    }
    for (const r of this.#receivers.splice(0)) {
      clearTimeout(r.timer);
      r.reject(reason);
    }
    this.#kick();
    await this.#pump;
    if (this.#site.detach !== undefined) {
      this.#mem = this.#site.detach();
      const out = this.#mem.output;
      this.#outHeader = new Int32Array(out.buffer, out.byteOffset, 128);
    }
    this.#site.dispose();
    if (this.#failure !== undefined) {
      const cause: FailureCause = exit.kind === "died"
        ? exit.cause ?? "died"
        : this.options.supervision === "escalate"
        ? "escalate"
        : "stop";
      this.#site.onFailure(this.#failure, cause);
    }
  }

  /**
   * Envelopes that were still in the input queue when the kernel ended and were not handled (the
   * same list as the terminate report's `returned`; also filled when the kernel failed or was
   * killed). Empty while it runs. A CUDA kernel killed (watchdog, terminate or shutdown timeout)
   * while its handler still runs on the GPU goes on taking input until that handler returns, so
   * its envelopes arrive here only then, when its stream completed (the list grows; `metrics()`
   * then shows its final counts, and its last outputs can be read with `tryReceive`).
   */
  get unhandled(): readonly Uint8Array[] {
    return this.#returned;
  }

  /** Resolves once the handle has processed the kernel's exit (for the runtime's shutdown). */
  get settled(): Promise<void> {
    return this.#exitHandled;
  }

  // ------------------------------------------------------------------------------ sending

  #checkOpen(): void {
    const s = this.state();
    if (
      this.#terminating || s === KernelState.Terminated || s === KernelState.Failed ||
      s === KernelState.Terminating
    ) {
      throw this.#failure ??
        new InvalidStateError(
          ErrorCode.InvalidState,
          `kernel ${this.id} is ${this.#terminating ? "terminating" : kernelStateName(s)}`,
        );
    }
  }

  /**
   * {@linkcode #checkOpen} from what this handle knows, without reading the control block: in
   * polling mode that line is mapped memory the GPU writes every batch (a cache miss per read),
   * and only the host can end the kernel (terminate and kills set `#terminating`, an exit
   * `#terminal`, before any state that refuses messages can be seen there). A message enqueued
   * to a kernel whose exit is not handled yet is collected and returned when it is.
   */
  #checkOpenHost(): void {
    if (this.#terminating || this.#terminal !== undefined) this.#checkOpen();
  }

  #checkType(message: Message): void {
    const input = this.definition.input;
    if (input !== undefined && message.schema.typeId !== input.typeId) {
      throw new ValidationError(
        ErrorCode.WrongMessageType,
        `kernel ${this.id} takes ${input.name} (typeId ${input.typeId}), ` +
          `got ${message.schema.name} (typeId ${message.schema.typeId})`,
      );
    }
  }

  #goneError(): Error {
    return this.#failure ??
      new InvalidStateError(
        ErrorCode.InvalidState,
        `kernel ${this.id} is ${kernelStateName(this.state())}`,
      );
  }

  #enqueue(envelope: Uint8Array, priority: number, timeoutMs: number): Promise<void> {
    const lane = priority >= Priority.High ? this.#mem.high : this.#mem.normal;
    return this.#enqueueLane(lane, envelope, timeoutMs, true);
  }

  /**
   * Enqueues through the senders guard (see `enqueueGuarded`), waiting in slices for room and
   * re-checking that the kernel still runs after each: a kernel that ends while we wait makes
   * this throw instead of leaving the message in a queue nobody reads.
   */
  async #enqueueLane(
    lane: MpscQueue,
    envelope: Uint8Array,
    timeoutMs: number,
    copyToWait: boolean,
  ): Promise<void> {
    let r = enqueueGuarded(this.#mem, lane, envelope);
    if (r === "full") {
      // The scratch buffer is reused by the next send: wait with a copy.
      const bytes = copyToWait ? envelope.slice() : envelope;
      const deadline = performance.now() + timeoutMs;
      while (r === "full") {
        const left = deadline - performance.now();
        if (left <= 0) {
          throw new QueueFullError(
            ErrorCode.QueueFull,
            `kernel ${this.id}'s input queue stayed full for ${timeoutMs} ms`,
          );
        }
        await lane.waitForSpaceAsync(Math.min(left, PUMP_SLICE_MS));
        this.#checkOpen();
        r = enqueueGuarded(this.#mem, lane, bytes);
      }
    }
    if (r === "gone") throw this.#goneError();
    ringForData(this.#mem.words);
  }

  /**
   * Sends `message` (the kernel's input type) without waiting for a reply; its output, if any,
   * is read with `receive`. Waits up to `timeoutMs` (default 1000) for room, then throws
   * `QueueFullError`. Throws `ValidationError` `E_WRONG_MESSAGE_TYPE` for another type,
   * `E_MESSAGE_TOO_LARGE` for a message over the slot size, `InvalidStateError` once the kernel
   * is terminating, terminated or failed.
   */
  async send(message: Message<I>, options: SendOptions = {}): Promise<void> {
    this.#checkOpen();
    this.#checkType(message);
    const priority = options.priority ?? Priority.Normal;
    const n = writeMessage(this.#scratch, 0, message, {
      destKernel: this.numericId,
      timestamp: this.#clock.tick(),
      priority,
    }, { checksum: options.checksum === true });
    await this.#enqueue(this.#scratch.subarray(0, n), priority, options.timeoutMs ?? 1000);
  }

  /**
   * Sends `messages` in order, like `send` for each, but with as few queue publications as
   * possible: they are encoded into a staging buffer 32 at a time (`SEND_RUN`) and each run
   * goes in with one reservation (one tail CAS) and one doorbell check. Waits up to `timeoutMs`
   * (default 1000) in total for room whenever the input queue is full.
   *
   * Resolves with `messages.length` once every message is in the queue. It never drops a message
   * silently: when it cannot place them all it rejects — with the plain error (`QueueFullError`,
   * `InvalidStateError`, a schema error, ...) when none was accepted, or with
   * {@linkcode PartialSendError} whose `accepted` says how many (a prefix, in order) are in the
   * queue and will be handled; `messages.slice(accepted)` were not sent. Wrong types are checked
   * for all messages before any is sent (`ValidationError` `E_WRONG_MESSAGE_TYPE`).
   */
  async sendMany(messages: readonly Message<I>[], options: SendOptions = {}): Promise<number> {
    this.#checkOpen();
    for (const m of messages) this.#checkType(m);
    const priority = options.priority ?? Priority.Normal;
    const encode = { checksum: options.checksum === true };
    return await this.#sendRuns(
      messages.length,
      (buf, at, j) =>
        writeMessage(buf, at, messages[j], {
          destKernel: this.numericId,
          timestamp: this.#clock.tick(),
          priority,
        }, encode),
      options,
    );
  }

  /**
   * Sends many messages of the kernel's input type given as bytes: `payloads` holds them back to
   * back in the input schema's layout (`n × input.size` bytes, e.g. filled with
   * `Input.encodeInto(value, view, i * Input.size)`), so no envelope is encoded per message. On
   * CUDA they reach device memory by DMA and the kernel handles them a warp at a time (one
   * descriptor envelope per batch in the input queue; `docs/runtime.md`, "Packed batches");
   * elsewhere each becomes an envelope, as in `sendMany`. They are handled in order, after what
   * was sent before, through the normal lane.
   *
   * Resolves with the number of messages once all are queued. Waits up to `timeoutMs` (default
   * 1000) in total for room, then rejects with `QueueFullError`, or {@linkcode PartialSendError}
   * once some were queued (`accepted` of them, in order). Throws `ValidationError`
   * `E_INVALID_ARGUMENT` when the kernel has no input schema or the bytes are not a whole number
   * of messages.
   */
  async sendPacked(
    payloads: ArrayBufferView,
    options: { timeoutMs?: number } = {},
  ): Promise<number> {
    this.#checkOpen();
    const schema = this.definition.input;
    if (schema === undefined) {
      throw new ValidationError(
        ErrorCode.InvalidArgument,
        `kernel ${this.id} has no input schema: sendPacked needs one for the size of a message`,
      );
    }
    const bytes = new Uint8Array(payloads.buffer, payloads.byteOffset, payloads.byteLength);
    const size = schema.size;
    if (bytes.byteLength % size !== 0) {
      throw new ValidationError(
        ErrorCode.InvalidArgument,
        `sendPacked to kernel ${this.id}: ${bytes.byteLength} bytes are not a whole number of ` +
          `${schema.name} messages (${size} bytes each)`,
      );
    }
    const total = bytes.byteLength / size;
    const path = this.#site.packed?.();
    if (path === undefined) {
      return await this.#sendRuns(total, (buf, at, j) =>
        writeEnvelope(buf, at, {
          typeId: schema.typeId,
          destKernel: this.numericId,
          timestamp: this.#clock.tick(),
        }, bytes.subarray(j * size, (j + 1) * size)), { timeoutMs: options.timeoutMs });
    }
    const timeoutMs = options.timeoutMs ?? 1000;
    const deadline = performance.now() + timeoutMs;
    const lane = this.#mem.normal;
    const per = Math.max(1, path.maxMessages(size));
    let accepted = 0;
    let idle = 0;
    try {
      while (accepted < total) {
        const count = Math.min(per, total - accepted);
        const batch = bytes.subarray(accepted * size, (accepted + count) * size);
        const sub = lane.isFull ? undefined : path.submit(batch, count, size, schema.typeId);
        if (sub === undefined) {
          // No room in the device ring or the lane until the kernel gets on: wait a turn.
          if (performance.now() >= deadline) {
            throw new QueueFullError(
              ErrorCode.QueueFull,
              `kernel ${this.id}'s bulk memory or input queue stayed full for ${timeoutMs} ms`,
            );
          }
          if (++idle < POLL_TURNS) await nextTurn();
          else await new Promise<void>((r) => setTimeout(r, POLL_SLEEP_MS));
          this.#checkOpen();
          continue;
        }
        idle = 0;
        const n = writeEnvelope(this.#scratch, 0, {
          typeId: BULK_BATCH_TYPE_ID,
          destKernel: this.numericId,
          timestamp: this.#clock.tick(),
        }, sub.descriptor);
        const r = enqueueGuarded(this.#mem, lane, this.#scratch.subarray(0, n));
        if (r !== "ok") {
          path.abandon(sub.seq);
          if (r === "gone") throw this.#goneError();
          continue;
        }
        ringForData(this.#mem.words);
        accepted += count;
      }
    } catch (e) {
      if (accepted > 0 && e instanceof RingKernelError) {
        throw new PartialSendError(this.id, accepted, total, e);
      }
      throw e;
    }
    return total;
  }

  /**
   * Sends `count` messages whose envelopes `write(buf, at, j)` writes (message `j` at `buf[at]`,
   * returning its length) in runs of `SEND_RUN`, one reservation per run; see `sendMany`.
   */
  async #sendRuns(
    total: number,
    write: (buf: Uint8Array, at: number, j: number) => number,
    options: SendOptions,
  ): Promise<number> {
    const priority = options.priority ?? Priority.Normal;
    const timeoutMs = options.timeoutMs ?? 1000;
    const lane = priority >= Priority.High ? this.#mem.high : this.#mem.normal;
    const slot = this.#mem.layout.slotSize;
    const chunk = Math.min(lane.capacity, total, SEND_RUN);
    if (this.#batchBuf === undefined || this.#batchBuf.length < chunk * slot) {
      this.#batchBuf = new Uint8Array(chunk * slot);
    }
    const buf = this.#batchBuf;
    const deadline = performance.now() + timeoutMs;
    let accepted = 0;
    try {
      while (accepted < total) {
        const k = Math.min(chunk, total - accepted);
        const views: Uint8Array[] = new Array(k);
        for (let j = 0; j < k; j++) {
          const at = j * slot;
          const n = write(buf, at, accepted + j);
          views[j] = buf.subarray(at, at + n);
        }
        let done = 0;
        while (done < k) {
          const got = enqueueManyGuarded(this.#mem, lane, done === 0 ? views : views.slice(done));
          if (got < 0) throw this.#goneError();
          if (got > 0) {
            done += got;
            accepted += got;
            ringForData(this.#mem.words);
            continue;
          }
          const left = deadline - performance.now();
          if (left <= 0) {
            throw new QueueFullError(
              ErrorCode.QueueFull,
              `kernel ${this.id}'s input queue stayed full for ${timeoutMs} ms`,
            );
          }
          await lane.waitForSpaceAsync(Math.min(left, PUMP_SLICE_MS));
          this.#checkOpen();
        }
      }
    } catch (e) {
      if (accepted > 0 && e instanceof RingKernelError) {
        throw new PartialSendError(this.id, accepted, total, e);
      }
      throw e;
    }
    return total;
  }

  /**
   * Sends a raw envelope (e.g. from `encodeMessage`). Its typeId must be the kernel's input type
   * (`E_WRONG_MESSAGE_TYPE`) and it must fit a slot (`E_MESSAGE_TOO_LARGE`); its priority picks
   * the lane.
   */
  async sendEnvelope(envelope: Uint8Array, options: { timeoutMs?: number } = {}): Promise<void> {
    this.#checkOpen();
    const lane = laneFor(this.#route, envelope);
    await this.#enqueueLane(lane, envelope, options.timeoutMs ?? 1000, false);
  }

  /**
   * Sends a raw envelope as a request and resolves with the reply, like `request`. The envelope
   * must carry `EnvelopeFlag.Request`; its own `messageId` is the correlation id, so it must not
   * equal one of this handle's pending requests (`ValidationError` `E_INVALID_ARGUMENT`). Use it
   * for envelopes built elsewhere, e.g. with a checksum: a kernel that finds the checksum wrong
   * answers with `DecodeError` `E_DECODE_CHECKSUM`. The reply is decoded with the kernel's output
   * schema (undefined for the passthrough kernel, which has none).
   */
  async requestEnvelope(
    envelope: Uint8Array,
    options: { timeoutMs?: number } = {},
  ): Promise<InferFields<O> | undefined> {
    this.#checkOpen();
    const lane = laneFor(this.#route, envelope);
    const dv = new DataView(envelope.buffer, envelope.byteOffset, envelope.length);
    if ((dv.getUint16(EnvelopeOffset.flags, true) & EnvelopeFlag.Request) === 0) {
      throw new ValidationError(
        ErrorCode.InvalidArgument,
        "requestEnvelope needs an envelope with the Request flag",
      );
    }
    const id = dv.getBigUint64(EnvelopeOffset.messageId, true);
    if (this.#pending.has(id)) {
      throw new ValidationError(
        ErrorCode.InvalidArgument,
        `request ${id} is already pending on kernel ${this.id}`,
      );
    }
    const timeoutMs = options.timeoutMs ?? 5000;
    const promise = this.#register(id, this.definition.output, timeoutMs, true);
    await this.#sendRequest(id, () => this.#enqueueLane(lane, envelope, timeoutMs, false));
    return await promise;
  }

  /** Registers a pending request; it is rejected with `TimeoutError` after `timeoutMs`. */
  #register(
    id: bigint,
    schema: MessageSchema | undefined,
    timeoutMs: number,
    markHandled = true,
  ): Promise<InferFields<O> | undefined> {
    const started = performance.now();
    if (this.#polling) {
      // No timer per request (creating and clearing one costs µs under Deno): the pump, which
      // runs while any request waits and polls at least every POLL_SLEEP_MS, checks deadlines.
      const deadline = started + timeoutMs;
      if (deadline < this.#nextDeadline) this.#nextDeadline = deadline;
      const promise = new Promise<InferFields<O> | undefined>((resolve, reject) => {
        this.#pending.set(id, {
          resolve: resolve as (v: unknown) => void,
          reject,
          schema,
          started,
          timer: undefined,
          deadline,
          timeoutMs,
        });
      });
      // Unless it goes straight back to the caller (request's fast path).
      if (markHandled) promise.catch(() => undefined);
      return promise;
    }
    const promise = new Promise<InferFields<O> | undefined>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(
          new TimeoutError(
            ErrorCode.Timeout,
            `kernel ${this.id} did not reply to request ${id} within ${timeoutMs} ms`,
          ),
        );
        if (!this.#waiting()) this.#kick();
      }, timeoutMs);
      this.#pending.set(id, {
        resolve: resolve as (v: unknown) => void,
        reject,
        schema,
        started,
        timer,
        deadline: started + timeoutMs,
        timeoutMs,
      });
    });
    // It may settle while the enqueue still waits for room: mark it handled meanwhile.
    promise.catch(() => undefined);
    return promise;
  }

  /**
   * Polling mode: rejects (`TimeoutError`) the pending requests whose deadline is at or before
   * `now`, as their timers do otherwise, and recomputes {@linkcode #nextDeadline}.
   */
  #sweepDeadlines(now: number): void {
    if (now < this.#nextDeadline) return;
    let next = Infinity;
    for (const [id, p] of this.#pending) {
      if (p.deadline <= now) {
        this.#pending.delete(id);
        p.reject(
          new TimeoutError(
            ErrorCode.Timeout,
            `kernel ${this.id} did not reply to request ${id} within ${p.timeoutMs} ms`,
          ),
        );
      } else if (p.deadline < next) next = p.deadline;
    }
    this.#nextDeadline = next;
  }

  /**
   * Polling mode's fast path of a request: enqueues `envelope` now, without the async hops of
   * {@linkcode #sendRequest}, when there is room and the kernel runs, and starts the pump a
   * microtask later (so requests made in the same synchronous run are all queued before it
   * spins). Returns false, having done nothing, otherwise: the caller takes the general path.
   */
  #enqueueNow(priority: number, envelope: Uint8Array): boolean {
    const mem = this.#mem;
    const lane = priority >= Priority.High ? mem.high : mem.normal;
    // No senders guard and no state check (see #checkOpenHost): the region is a plain
    // ArrayBuffer, reached by this thread alone, so no sender can be inside an enqueue while the
    // exit collects the lanes, and the caller checked that the host has not ended the kernel.
    if (!lane.tryEnqueue(envelope)) return false;
    ringForData(mem.words);
    if (!this.#pumping) {
      this.#pumping = true;
      this.#pump = Promise.resolve().then(() => this.#runPump());
    }
    return true;
  }

  /** Runs the enqueue of request `id`; a failed enqueue unregisters it. Starts the pump. */
  async #sendRequest(id: bigint, enqueue: () => Promise<void>): Promise<void> {
    try {
      await enqueue();
    } catch (e) {
      const p = this.#pending.get(id);
      if (p !== undefined) {
        clearTimeout(p.timer);
        this.#pending.delete(id);
      }
      throw e;
    }
    this.#startPump();
  }

  /**
   * Sends `message` as a request and resolves with the reply's fields (undefined when the
   * handler returned nothing). Rejects with `TimeoutError` after `timeoutMs` (default 5000): a
   * reply that arrives later is counted (`metrics().lateReplies`) and dropped, never given to
   * another caller. Rejects with `HandlerError` when the handler threw, `KernelFailedError` when
   * the kernel failed first, `QueueFullError` when the input queue stayed full for `timeoutMs`,
   * and like `send` for a wrong type, an oversized message or a kernel that is not running.
   */
  request(
    message: Message<I>,
    options: RequestOptions = {},
  ): Promise<InferFields<O> | undefined> {
    // Not an async function: the fast path hands back the pending promise itself, a microtask
    // hop or two sooner than `return await`. Bad input and a closed handle still reject.
    let id: bigint;
    let n: number;
    let priority: number;
    let timeoutMs: number;
    try {
      if (this.#polling) this.#checkOpenHost();
      else this.#checkOpen();
      this.#checkType(message);
      // Skip ids a raw-envelope request (requestEnvelope) holds.
      id = this.#nextId++;
      while (this.#pending.has(id)) id = this.#nextId++;
      priority = options.priority ?? Priority.Normal;
      timeoutMs = options.timeoutMs ?? 5000;
      n = writeMessage(this.#scratch, 0, message, {
        flags: EnvelopeFlag.Request,
        messageId: id,
        destKernel: this.numericId,
        timestamp: this.#clock.tick(),
        priority,
      }, { checksum: options.checksum === true });
    } catch (e) {
      return Promise.reject(e);
    }
    const schema = (this.definition.output ??
      (this.definition.builtin === "passthrough" ? message.schema : undefined)) as
        | MessageSchema
        | undefined;
    let bytes = this.#scratchHead;
    if (bytes.length !== n) bytes = this.#scratchHead = this.#scratch.subarray(0, n);
    // Registered before the message is queued, so an exit that races the enqueue rejects it.
    if (this.#polling) {
      const promise = this.#register(id, schema, timeoutMs, false);
      try {
        if (this.#enqueueNow(priority, bytes)) return promise;
      } catch (e) {
        this.#pending.delete(id);
        return Promise.reject(e);
      }
      // It may settle while the enqueue below still waits for room.
      promise.catch(() => undefined);
      return this.#sendThenAwait(id, bytes, priority, timeoutMs, promise);
    }
    return this.#sendThenAwait(
      id,
      bytes,
      priority,
      timeoutMs,
      this.#register(id, schema, timeoutMs, true),
    );
  }

  /** The general path of a request: enqueues it (waiting for room), then awaits the reply. */
  async #sendThenAwait(
    id: bigint,
    bytes: Uint8Array,
    priority: number,
    timeoutMs: number,
    promise: Promise<InferFields<O> | undefined>,
  ): Promise<InferFields<O> | undefined> {
    // Waiting for room counts against the same timeout as waiting for the reply. The enqueue
    // takes (or copies) `bytes`, the shared scratch, before its first await.
    await this.#sendRequest(id, () => this.#enqueue(bytes, priority, timeoutMs));
    return await promise;
  }

  // ------------------------------------------------------------------------------ receiving

  /** The next output (non-reply message), or undefined when none is ready. */
  tryReceive(): KernelOutput<O> | undefined {
    if (this.#outputs.length === 0) this.#drainOutput();
    return this.#outputs.shift();
  }

  /**
   * Up to `max` outputs that are ready now, oldest first (possibly none). The output queue is
   * drained in batches: one head store per batch, payloads read in place and copied once.
   */
  tryReceiveMany(max: number): KernelOutput<O>[] {
    checkMax(max);
    if (this.#outputs.length < max) this.#drainOutput();
    return this.#outputs.splice(0, max);
  }

  /**
   * Up to `max` outputs, oldest first: waits up to `timeoutMs` (default 5000) for the first,
   * then takes whatever else is ready without waiting. Rejects like `receive`.
   */
  async receiveMany(max: number, options: { timeoutMs?: number } = {}): Promise<KernelOutput<O>[]> {
    const ready = this.tryReceiveMany(max);
    if (ready.length > 0) return ready;
    const first = await this.receive(options);
    return max === 1 ? [first] : [first, ...this.tryReceiveMany(max - 1)];
  }

  /**
   * Waits up to `timeoutMs` (default 5000) for the next output; `TimeoutError` when none comes,
   * `InvalidStateError` / `KernelFailedError` when the kernel ends first.
   */
  receive(options: { timeoutMs?: number } = {}): Promise<KernelOutput<O>> {
    const ready = this.tryReceive();
    if (ready !== undefined) return Promise.resolve(ready);
    if (this.#terminal !== undefined) {
      return Promise.reject(
        this.#failure ??
          new InvalidStateError(ErrorCode.InvalidState, `kernel ${this.id} has terminated`),
      );
    }
    const timeoutMs = options.timeoutMs ?? 5000;
    return new Promise<KernelOutput<O>>((resolve, reject) => {
      const waiter: ReceiveWaiter = {
        resolve: resolve as (o: KernelOutput<FieldsSpec>) => void,
        reject,
        timer: setTimeout(() => {
          const i = this.#receivers.indexOf(waiter);
          if (i >= 0) this.#receivers.splice(i, 1);
          reject(new TimeoutError(ErrorCode.Timeout, `no output within ${timeoutMs} ms`));
          if (!this.#waiting()) this.#kick();
        }, timeoutMs),
      };
      this.#receivers.push(waiter);
      this.#startPump();
    });
  }

  #waiting(): boolean {
    return this.#pending.size > 0 || this.#receivers.length > 0;
  }

  #startPump(): void {
    // #pumping is cleared synchronously when the loop ends; the promise settles a tick later, and
    // a request made in between must start a new pump rather than rely on the finished one.
    if (this.#pumping) return;
    this.#pumping = true;
    this.#pump = this.#runPump();
  }

  async #runPump(): Promise<void> {
    const out = this.#mem.output;
    try {
      while (this.#waiting() && this.#terminal === undefined) {
        if (this.#drainOutput() > 0) continue;
        const start = performance.now();
        if (this.#polling) {
          this.#sweepDeadlines(start);
          if (!this.#waiting()) break;
        }
        let ready = false;
        spin: for (let now = start; now - start < HOST_BUSY_SPIN_MS; now = performance.now()) {
          // A few polls per clock read: a poll of a line nobody wrote is a cache hit, cheaper
          // than performance.now() (tens of ns under Deno), which would otherwise delay seeing
          // the reply by half a clock read on average.
          for (let i = 0; i < SPIN_POLLS_PER_CLOCK; i++) {
            if (out.available(1) > 0) {
              ready = true;
              break spin;
            }
          }
          if (now - start >= HOST_SPIN_MS && !this.#kernelBusy()) break;
        }
        if (ready || !this.#waiting()) continue;
        await this.#waitOutput(PUMP_SLICE_MS, () => !this.#waiting());
      }
    } finally {
      // Cleared in the same synchronous step that ends the loop (see #startPump).
      this.#pumping = false;
    }
  }

  /** True while the kernel is awake (not parked) and has input queued: output is on its way. */
  #kernelBusy(): boolean {
    return Atomics.load(this.#mem.words, KernelWord.sleeping) === Sleeping.No &&
      this.#mem.inputDepth > 0;
  }

  /**
   * Waits once for the output queue's data signal: returns on new output, on a {@linkcode #kick},
   * or after `ms`. Unlike the queue's `waitForDataAsync` it does not wait again after a kick, so
   * a pump whose last waiter left (or a terminate whose kernel exited) stops at once.
   */
  async #waitOutput(ms: number, stop: () => boolean): Promise<void> {
    if (this.#polling) return await this.#pollOutput(ms, stop);
    const h = this.#outHeader;
    // Announce, then re-check: the kernel bumps the signal after publishing only when it sees us.
    Atomics.add(h, QueueWord.consumerWaiting, 1);
    try {
      const signal = Atomics.load(h, QueueWord.dataSignal);
      if (this.#mem.output.available(1) > 0 || stop()) return;
      await waitWordAsync(h, QueueWord.dataSignal, signal, ms);
    } finally {
      Atomics.sub(h, QueueWord.consumerWaiting, 1);
    }
  }

  /**
   * {@linkcode #waitOutput} for memory that cannot be waited on: polls the output queue (and
   * `stop`) every event-loop turn for {@linkcode POLL_TURNS} turns after the last output, then
   * every {@linkcode POLL_SLEEP_MS}; returns on output, `stop()` or after `ms`.
   */
  async #pollOutput(ms: number, stop: () => boolean): Promise<void> {
    const deadline = performance.now() + ms;
    for (;;) {
      // stop() first and #mem afresh: the backend may have detached the memory meanwhile.
      if (stop() || this.#terminal !== undefined) return;
      if (this.#mem.output.available(1) > 0) {
        this.#pollTurns = 0;
        return;
      }
      const now = performance.now();
      // Requests' timeouts (no timers in polling mode); the pump's stop() then sees who is left.
      this.#sweepDeadlines(now);
      const left = deadline - now;
      if (left <= 0) return;
      if (this.#pollTurns < POLL_TURNS) {
        this.#pollTurns++;
        await nextTurn();
      } else {
        await new Promise<void>((r) => setTimeout(r, Math.min(left, POLL_SLEEP_MS)));
      }
    }
  }

  /** Wakes a pump (or terminate) waiting on the output queue. */
  #kick(): void {
    Atomics.add(this.#outHeader, QueueWord.dataSignal, 1);
    Atomics.notify(this.#outHeader, QueueWord.dataSignal);
  }

  /**
   * Moves every ready output to its requester or the output list; returns how many. Plain slots
   * are read in place (`peek`) and released a batch at a time (`consume`); sealed ones are
   * copied one at a time into a reused buffer and dispatched from there.
   */
  #drainOutput(): number {
    const out = this.#mem.output;
    if (out.sealed) return this.#drainSealed(out);
    let view = this.#outView;
    if (view === undefined || view.buffer !== out.buffer) {
      view = this.#outView = new DataView(out.buffer);
    }
    let total = 0;
    for (;;) {
      const n = out.available();
      if (n === 0) return total;
      this.#pollTurns = 0;
      let j = 0;
      try {
        for (; j < n; j++) {
          const bytes = out.peek(j)!;
          this.#dispatch(view, bytes.byteOffset, bytes.length, bytes);
        }
      } finally {
        // On a throw, the message that threw is released with those before it.
        out.consume(j < n ? j + 1 : n);
      }
      total += n;
    }
  }

  /**
   * {@linkcode #drainOutput} of sealed slots: a slot interleaves bytes and seals, so a message
   * is copied out anyway; into one buffer, released before it is dispatched (a throw releases
   * it too). A reply is decoded from that buffer; an output keeps copies of its own.
   */
  #drainSealed(out: SpscQueue): number {
    const reply = this.#reply;
    let total = 0;
    for (;;) {
      const n = out.tryDequeueInto(reply);
      if (n < 0) return total;
      this.#pollTurns = 0;
      total++;
      this.#dispatch(this.#replyView, 0, n, undefined);
    }
  }

  /**
   * Settles the request that the `n`-byte envelope at `at` of `dv` answers, or hands an output
   * to a receiver. `bytes` is the same envelope when the caller has it as an array. A valid
   * reply is read in place: the correlation id is the only BigInt made.
   */
  #dispatch(dv: DataView, at: number, n: number, bytes: Uint8Array | undefined): void {
    if (
      n >= ENVELOPE_HEADER_BYTES &&
      (dv.getUint16(at + EnvelopeOffset.flags, true) & EnvelopeFlag.Reply) !== 0 &&
      envelopeHeaderValid(dv, at, n)
    ) {
      if (this.#mem.layout.sealed) {
        // The kernel's handled count (see #handledMark), exact as a number below 2^53.
        const mark = dv.getUint32(at + EnvelopeOffset.messageId, true) +
          dv.getUint32(at + EnvelopeOffset.messageId + 4, true) * 2 ** 32;
        if (mark > this.#handledMark) this.#handledMark = mark;
      }
      this.#settle(
        dv.getBigUint64(at + EnvelopeOffset.correlationId, true),
        dv.getUint16(at + EnvelopeOffset.flags, true),
        dv.getUint32(at + EnvelopeOffset.typeId, true),
        dv,
        at + ENVELOPE_HEADER_BYTES,
        dv.getUint32(at + EnvelopeOffset.payloadLength, true),
      );
      return;
    }
    bytes ??= new Uint8Array(dv.buffer, dv.byteOffset + at, n);
    const { header, payload } = decodeEnvelope(bytes, { checksum: "ignore" });
    if (this.#mem.layout.sealed) {
      const mark = Number(header.messageId);
      if (mark > this.#handledMark) this.#handledMark = mark;
    }
    if ((header.flags & EnvelopeFlag.Reply) !== 0) {
      this.#settle(
        header.correlationId,
        header.flags,
        header.typeId,
        new DataView(payload.buffer, payload.byteOffset, payload.length),
        0,
        payload.length,
      );
      return;
    }
    const schema = this.definition.output;
    const copy = payload.slice();
    const output: KernelOutput<O> = {
      header,
      value: schema !== undefined && schema.typeId === header.typeId
        ? schema.decode(copy)
        : undefined,
      payload: copy,
    };
    const waiter = this.#receivers.shift();
    if (waiter !== undefined) {
      clearTimeout(waiter.timer);
      waiter.resolve(output as KernelOutput<FieldsSpec>);
    } else {
      this.#outputs.push(output);
    }
  }

  /**
   * Settles request `id` with the reply whose payload is the `length` bytes at `at` of `dv`
   * (counted as late when nobody waits for it). A payload its schema cannot decode rejects the
   * request with the `DecodeError`.
   */
  #settle(
    id: bigint,
    flags: number,
    typeId: number,
    dv: DataView,
    at: number,
    length: number,
  ): void {
    const p = this.#pending.get(id);
    if (p === undefined) {
      this.#lateReplies++;
      return;
    }
    this.#pending.delete(id);
    if (p.timer !== undefined) clearTimeout(p.timer);
    this.#rtt.record((performance.now() - p.started) * 1e6);
    if ((flags & EnvelopeFlag.Error) !== 0 || typeId === ERROR_REPLY_TYPE_ID) {
      p.reject(this.#replyError(new Uint8Array(dv.buffer, dv.byteOffset + at, length)));
      return;
    }
    const schema = p.schema;
    if (typeId === EMPTY_REPLY_TYPE_ID || schema === undefined) {
      p.resolve(undefined);
      return;
    }
    try {
      // Decoded where it lies; a payload shorter than the schema is decoded from its own bytes,
      // so the DecodeError names its length as before.
      p.resolve(
        length >= schema.size
          ? schema.decode(dv, at)
          : schema.decode(new Uint8Array(dv.buffer, dv.byteOffset + at, length)),
      );
    } catch (e) {
      p.reject(e as Error);
    }
  }

  /** The error an error reply's payload (UTF-8 JSON of what the handler threw) stands for. */
  #replyError(payload: Uint8Array): Error {
    let name = "Error";
    let message = "";
    let code: string | undefined;
    try {
      const parsed = JSON.parse(decoder.decode(payload)) as {
        name?: string;
        message?: string;
        code?: string;
      };
      name = String(parsed.name ?? name);
      message = String(parsed.message ?? "");
      code = parsed.code;
    } catch {
      message = "(error text cut off)";
    }
    // Only the kernel loop sets `code` (handler errors carry name and message only).
    if (code === ErrorCode.DecodeChecksum) {
      return new DecodeError(ErrorCode.DecodeChecksum, EnvelopeOffset.checksum, message);
    }
    return new HandlerError(this.id, name, message);
  }

  // ------------------------------------------------------------------------------ inspection

  /** A snapshot of the kernel's state struct (undefined without one). Racy while it runs. */
  readState(): InferFields<S> | undefined {
    this.#awaitHandledMark();
    const s = this.definition.state;
    return s === undefined ? undefined : s.decode(this.#mem.buffer, this.#mem.layout.state);
  }

  /**
   * Waits (spinning: the GPU's stores are already on their way, microseconds) until the control
   * block counts every message an output has shown handled; gives up after
   * {@linkcode HANDLED_MARK_WAIT_MS}, when the kernel stopped before its batch's bookkeeping
   * (a fault): what it reports then is what landed.
   */
  #awaitHandledMark(): void {
    const mark = this.#handledMark;
    if (mark === 0 || this.#terminal !== undefined) return;
    const cb = this.#mem.cb;
    const handled = (): number => {
      const { processed, dropped } = cb.readCounters();
      return Number(processed + dropped);
    };
    if (handled() >= mark) return;
    const deadline = performance.now() + HANDLED_MARK_WAIT_MS;
    while (handled() < mark && performance.now() < deadline) { /* spin */ }
  }

  /** Request round-trip latency as seen by this handle (send to reply dispatched), in ns. */
  requestLatency(): LatencySummary {
    return this.#rtt.summary();
  }

  /** A snapshot of the kernel's telemetry. */
  metrics(): KernelMetrics {
    this.#awaitHandledMark();
    const cb = this.#mem.cb;
    const { processed, dropped } = cb.readCounters();
    return {
      kernelId: this.id,
      state: kernelStateName(this.state()),
      processed: Number(processed),
      dropped: Number(dropped),
      errors: cb.errorCount,
      inputDepth: this.#mem.inputDepth,
      outputDepth: this.#mem.output.len,
      inputCapacity: this.#mem.layout.inputCapacity,
      outputCapacity: this.#mem.layout.outputCapacity,
      latency: this.#mem.histogram.summary(),
      uptimeMs: performance.now() - this.#launchedAt,
      restarts: Atomics.load(this.#mem.words, KernelWord.restarts),
      lateReplies: this.#lateReplies,
    };
  }
}
