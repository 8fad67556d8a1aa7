/**
 * Telemetry: per-kernel and runtime metrics as plain readonly objects, an event stream of kernel
 * state changes, and the Prometheus text exposition (format 0.0.4) of the metrics.
 *
 * This module owns no kernels and starts nothing: the runtime fills {@linkcode KernelMetrics}
 * (usually from a kernel's control block and its {@linkcode LatencyHistogram}), emits state
 * changes into a {@linkcode TelemetryEvents}, and renders `metricsText()` with
 * {@linkcode prometheusText}. See docs/telemetry.md.
 * @module
 */

import { type ControlBlock, KernelState } from "../core/control_block.ts";
import { ErrorCode, ValidationError } from "../core/errors.ts";
import type { HlcTimestamp } from "../core/hlc.ts";
import type { LatencySummary } from "./histogram.ts";

export { LatencyHistogram, type LatencySummary } from "./histogram.ts";

// ---------------------------------------------------------------------------------- states

/** Lifecycle state names, as metrics and events spell them (lower case of {@linkcode KernelState}). */
export type KernelStateName =
  | "created"
  | "launched"
  | "active"
  | "deactivated"
  | "terminating"
  | "terminated"
  | "failed";

/** Every state name, in {@linkcode KernelState} order (the order metrics list them in). */
export const KERNEL_STATE_NAMES: readonly KernelStateName[] = [
  "created",
  "launched",
  "active",
  "deactivated",
  "terminating",
  "terminated",
  "failed",
];

/**
 * The name of a control-block state.
 * @throws {ValidationError} `E_INVALID_ARGUMENT` for a number that is no {@linkcode KernelState}.
 */
export function kernelStateName(state: KernelState): KernelStateName {
  const name = KERNEL_STATE_NAMES[state];
  if (name === undefined || KernelState[capitalise(name)] !== state) {
    throw new ValidationError(ErrorCode.InvalidArgument, `unknown kernel state ${state}`);
  }
  return name;
}

function capitalise(name: KernelStateName): keyof typeof KernelState {
  return (name[0].toUpperCase() + name.slice(1)) as keyof typeof KernelState;
}

// ---------------------------------------------------------------------------------- metrics

/** A snapshot of one kernel's telemetry. Plain data: safe to serialise, copy or post. */
export interface KernelMetrics {
  /** The kernel's id (any string; escaped where an exposition format needs it). */
  readonly kernelId: string;
  /** Lifecycle state at the time of the snapshot. */
  readonly state: KernelStateName;
  /** Messages processed since launch. */
  readonly processed: number;
  /** Messages dropped (a full output queue, an undecodable input). */
  readonly dropped: number;
  /** Errors recorded (handler failures and the like). */
  readonly errors: number;
  /** Messages waiting in the input queue. */
  readonly inputDepth: number;
  /** Messages waiting in the output queue. */
  readonly outputDepth: number;
  /** Input queue slots (0 for none). */
  readonly inputCapacity: number;
  /** Output queue slots (0 for none). */
  readonly outputCapacity: number;
  /** Handler latency summary, in nanoseconds. */
  readonly latency: LatencySummary;
  /** Milliseconds since the kernel was launched (0 before). */
  readonly uptimeMs: number;
  /** How many times the kernel was restarted. */
  readonly restarts: number;
  /** Replies that arrived after their request had timed out. */
  readonly lateReplies: number;
}

/** Kernel-to-kernel messaging totals. */
export interface K2kMetrics {
  /** K2K sends attempted. */
  readonly sent: number;
  /** K2K messages placed in the destination's queue. */
  readonly delivered: number;
  /** Sends that failed because the destination's queue was full. */
  readonly queueFull: number;
  /** Sends to a kernel id no one has registered. */
  readonly notFound: number;
}

/** Runtime-wide totals. */
export interface RuntimeMetrics {
  /** How many kernels are in each state (every state present, zero when none). */
  readonly kernels: Readonly<Record<KernelStateName, number>>;
  /** Messages processed by all kernels (including ones no longer listed, if the runtime keeps them). */
  readonly processed: number;
  /** Messages dropped by all kernels. */
  readonly dropped: number;
  /** Errors recorded by all kernels. */
  readonly errors: number;
  /** Kernel-to-kernel messaging totals. */
  readonly k2k: K2kMetrics;
}

/** K2K totals of a runtime that has sent nothing. */
export const NO_K2K: K2kMetrics = Object.freeze({
  sent: 0,
  delivered: 0,
  queueFull: 0,
  notFound: 0,
});

/**
 * Sums kernel snapshots into runtime totals. `retired` adds the counts of kernels that are gone
 * (a runtime that drops terminated kernels from its list keeps their totals there, so counters
 * never go backwards, which Prometheus would read as a reset).
 *
 * @example
 * ```ts
 * import { prometheusText, runtimeTotals } from "@ringkernel/core";
 * declare const kernels: import("@ringkernel/core").KernelMetrics[];
 * const text = prometheusText(runtimeTotals(kernels), kernels);
 * ```
 */
export function runtimeTotals(
  kernels: readonly KernelMetrics[],
  k2k: K2kMetrics = NO_K2K,
  retired: RetiredTotals = { processed: 0, dropped: 0, errors: 0 },
): RuntimeMetrics {
  const byState = Object.fromEntries(KERNEL_STATE_NAMES.map((s) => [s, 0])) as Record<
    KernelStateName,
    number
  >;
  // Kernels removed from the runtime still count in their final state (terminated or failed),
  // so a failure stays visible after the failed kernel leaves listKernels().
  for (const [state, n] of Object.entries(retired.kernels ?? {})) {
    byState[state as KernelStateName] += n;
  }
  let { processed, dropped, errors } = retired;
  for (const k of kernels) {
    byState[k.state]++;
    processed += k.processed;
    dropped += k.dropped;
    errors += k.errors;
  }
  return { kernels: byState, processed, dropped, errors, k2k };
}

/** Counts of kernels the runtime no longer holds, added into {@linkcode runtimeTotals}. */
export interface RetiredTotals {
  /** Messages the retired kernels processed. */
  processed: number;
  /** Messages the retired kernels dropped. */
  dropped: number;
  /** Handler errors of the retired kernels. */
  errors: number;
  /** Retired kernels by their final state. */
  kernels?: Partial<Record<KernelStateName, number>>;
}

/** The part of {@linkcode KernelMetrics} a control block holds. */
export type ControlBlockMetrics = Pick<
  KernelMetrics,
  | "state"
  | "processed"
  | "dropped"
  | "errors"
  | "inputDepth"
  | "outputDepth"
  | "inputCapacity"
  | "outputCapacity"
>;

/**
 * Reads the metrics a kernel's control block holds. Depths come from the head/tail snapshots the
 * kernel publishes, so they lag the queues by up to one loop iteration; the u32 counters wrap, and
 * `(tail − head) mod 2^32` is the depth as long as it never exceeds 2^32 − 1 (capacities are far
 * smaller). A depth a torn snapshot pair would put above capacity is clamped to it.
 */
export function readControlBlockMetrics(cb: ControlBlock): ControlBlockMetrics {
  const { processed, dropped } = cb.readCounters();
  const inputCapacity = cb.inputCapacity;
  const outputCapacity = cb.outputCapacity;
  return {
    state: kernelStateName(cb.state),
    processed: Number(processed),
    dropped: Number(dropped),
    errors: cb.errorCount,
    inputDepth: Math.min(inputCapacity, (cb.inputTail - cb.inputHead) >>> 0),
    outputDepth: Math.min(outputCapacity, (cb.outputTail - cb.outputHead) >>> 0),
    inputCapacity,
    outputCapacity,
  };
}

// ---------------------------------------------------------------------------------- events

/** A kernel moved from one lifecycle state to another. */
export interface StateChangeEvent {
  /** Position in the emitter's sequence (1, 2, …): a gap in what a stream yields is a drop. */
  readonly seq: number;
  /** The kernel that changed state. */
  readonly kernelId: string;
  /** The state before. */
  readonly from: KernelStateName;
  /** The state after. */
  readonly to: KernelStateName;
  /** Wall-clock time of the change, ms since the Unix epoch (for humans and dashboards). */
  readonly at: number;
  /** HLC stamp of the change, when the runtime has one (orders it against messages). */
  readonly hlc?: HlcTimestamp;
  /** Why, for changes that were not simply requested (for example the error that failed it). */
  readonly reason?: string;
}

/** What {@linkcode TelemetryEvents.emit} takes: the event without its sequence number. */
export type StateChangeInput = Omit<StateChangeEvent, "seq" | "at"> & { readonly at?: number };

/** A callback for state changes. */
export type TelemetryListener = (event: StateChangeEvent) => void;

/** Options of {@linkcode TelemetryEvents}. */
export interface TelemetryEventsOptions {
  /** Wall clock for `at` when `emit` is given none (default `Date.now`). */
  readonly now?: () => number;
  /**
   * Called when a listener throws (default: the error is only counted in `listenerErrors`).
   * Listener errors never reach `emit`'s caller: a state change must not fail because a
   * dashboard callback did.
   */
  readonly onListenerError?: (error: unknown, event: StateChangeEvent) => void;
}

/** Options of {@linkcode TelemetryEvents.events}. */
export interface EventStreamOptions {
  /** Events buffered for a slow reader before the oldest are dropped (default 1024, ≥ 1). */
  readonly bufferSize?: number;
  /** Ends the stream when aborted (its buffered events are discarded). */
  readonly signal?: AbortSignal;
}

/**
 * An async iterator over state changes with a bounded buffer. A reader that falls behind by more
 * than `bufferSize` events loses the oldest ones; {@linkcode dropped} counts them.
 */
export interface TelemetryEventStream extends AsyncIterableIterator<StateChangeEvent, undefined> {
  /** Events dropped because the buffer was full. */
  readonly dropped: number;
  /** Events waiting in the buffer. */
  readonly pending: number;
  /** Ends the stream: pending and future `next()` calls return `done`. */
  return(): Promise<IteratorResult<StateChangeEvent, undefined>>;
}

/**
 * The event stream of kernel state changes. The runtime calls {@linkcode emit}; observers use
 * {@linkcode on} (synchronous callbacks) or {@linkcode events} (an async iterator). No timers and
 * no pending promises outlive {@linkcode close}.
 *
 * @example
 * ```ts
 * import { TelemetryEvents } from "@ringkernel/core";
 * const events = new TelemetryEvents();
 * const off = events.on((e) => console.log(`${e.kernelId}: ${e.from} -> ${e.to}`));
 * const stream = events.events({ bufferSize: 256 });
 * events.emit({ kernelId: "acc", from: "launched", to: "active" });
 * events.close();
 * for await (const e of stream) console.log(e.seq, e.to); // 1 "active", then the loop ends
 * off();
 * ```
 */
export class TelemetryEvents {
  readonly #listeners = new Set<TelemetryListener>();
  readonly #streams = new Set<EventStream>();
  readonly #now: () => number;
  readonly #onListenerError: ((error: unknown, event: StateChangeEvent) => void) | undefined;
  #seq = 0;
  #closed = false;
  #listenerErrors = 0;

  /** Creates an open event stream with no listeners. */
  constructor(options: TelemetryEventsOptions = {}) {
    this.#now = options.now ?? Date.now;
    this.#onListenerError = options.onListenerError;
  }

  /** Whether {@linkcode close} has been called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Events emitted so far (the `seq` of the last one). */
  get emitted(): number {
    return this.#seq;
  }

  /** Listener calls that threw. */
  get listenerErrors(): number {
    return this.#listenerErrors;
  }

  /**
   * Calls `listener` synchronously for every later event, until the returned function is called
   * (calling it twice is harmless). After {@linkcode close} the listener is never called.
   */
  on(listener: TelemetryListener): () => void {
    if (this.#closed) return () => {};
    // Wrapped so the same function subscribed twice gets two independent subscriptions.
    const entry: TelemetryListener = (e) => listener(e);
    this.#listeners.add(entry);
    return () => {
      this.#listeners.delete(entry);
    };
  }

  /**
   * A new async iterator over later events. It ends (after yielding what it buffered) when
   * {@linkcode close} is called, or at once when its `return()` runs (a `break` out of
   * `for await`) or its signal aborts. After `close` it is empty.
   */
  events(options: EventStreamOptions = {}): TelemetryEventStream {
    const size = options.bufferSize ?? 1024;
    if (!Number.isSafeInteger(size) || size < 1) {
      throw new ValidationError(
        ErrorCode.InvalidArgument,
        `bufferSize must be a positive integer, got ${size}`,
      );
    }
    const stream = new EventStream(size, (s) => this.#streams.delete(s), options.signal);
    if (this.#closed) stream.end();
    else if (!stream.finished) this.#streams.add(stream);
    return stream;
  }

  /**
   * Publishes a state change to every listener and stream, stamping `seq` (and `at` when not
   * given), and returns the event. A no-op returning the event after {@linkcode close}: the
   * runtime may still be tearing kernels down when its observers have gone.
   */
  emit(input: StateChangeInput): StateChangeEvent {
    const event: StateChangeEvent = Object.freeze({
      ...input,
      seq: ++this.#seq,
      at: input.at ?? this.#now(),
    });
    if (this.#closed) return event;
    for (const l of this.#listeners) {
      try {
        l(event);
      } catch (err) {
        this.#listenerErrors++;
        this.#onListenerError?.(err, event);
      }
    }
    for (const s of this.#streams) s.push(event);
    return event;
  }

  /** Ends every stream (they yield what they buffered, then finish) and drops every listener. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#listeners.clear();
    for (const s of this.#streams) s.end();
    this.#streams.clear();
  }
}

type Result = IteratorResult<StateChangeEvent, undefined>;
const DONE: Result = Object.freeze({ done: true, value: undefined });

/** One reader's bounded ring buffer plus the `next()` calls waiting on it. */
class EventStream implements TelemetryEventStream {
  readonly #buf: (StateChangeEvent | undefined)[];
  #head = 0;
  #count = 0;
  #dropped = 0;
  #ended = false;
  readonly #waiters: ((r: Result) => void)[] = [];
  readonly #detach: (s: EventStream) => void;
  readonly #signal: AbortSignal | undefined;
  readonly #onAbort = (): void => {
    void this.return();
  };

  constructor(size: number, detach: (s: EventStream) => void, signal?: AbortSignal) {
    this.#buf = new Array<StateChangeEvent | undefined>(size).fill(undefined);
    this.#detach = detach;
    this.#signal = signal;
    if (signal?.aborted) this.#ended = true;
    else signal?.addEventListener("abort", this.#onAbort, { once: true });
  }

  get dropped(): number {
    return this.#dropped;
  }

  get pending(): number {
    return this.#count;
  }

  get finished(): boolean {
    return this.#ended;
  }

  push(event: StateChangeEvent): void {
    if (this.#ended) return;
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) return waiter({ done: false, value: event });
    const cap = this.#buf.length;
    if (this.#count === cap) {
      // Drop the oldest: for state changes the latest state is the one worth keeping.
      this.#head = (this.#head + 1) % cap;
      this.#count--;
      this.#dropped++;
    }
    this.#buf[(this.#head + this.#count) % cap] = event;
    this.#count++;
  }

  /** No more events will come; buffered ones are still delivered. */
  end(): void {
    this.#ended = true;
    this.#signal?.removeEventListener("abort", this.#onAbort);
    for (const w of this.#waiters.splice(0)) w(DONE);
  }

  next(): Promise<Result> {
    if (this.#count > 0) {
      const event = this.#buf[this.#head] as StateChangeEvent;
      this.#buf[this.#head] = undefined;
      this.#head = (this.#head + 1) % this.#buf.length;
      this.#count--;
      return Promise.resolve({ done: false, value: event });
    }
    if (this.#ended) return Promise.resolve(DONE);
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  return(): Promise<Result> {
    this.#buf.fill(undefined);
    this.#head = 0;
    this.#count = 0;
    this.#detach(this);
    this.end();
    return Promise.resolve(DONE);
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}

// ---------------------------------------------------------------------------------- Prometheus

/** The `Content-Type` of {@linkcode prometheusText}'s output. */
export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/**
 * Escapes a label value for the text format: backslash, double quote and line feed, the only
 * three escapes the format defines. Lone UTF-16 surrogates become U+FFFD, since the output is
 * UTF-8 and they have no UTF-8 form.
 */
export function escapeLabelValue(value: string): string {
  return value.toWellFormed().replace(/[\\"\n]/g, (c) => c === "\n" ? "\\n" : "\\" + c);
}

/** Escapes `# HELP` text: backslash and line feed (quotes are literal there). */
function escapeHelp(text: string): string {
  return text.toWellFormed().replace(/[\\\n]/g, (c) => c === "\n" ? "\\n" : "\\\\");
}

/** A sample value as Go's ParseFloat reads it; the format spells infinities `+Inf`/`-Inf`. */
function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

type Labels = readonly (readonly [string, string])[];

/** Accumulates the exposition one metric family at a time (HELP, TYPE, then its samples). */
class Exposition {
  readonly #lines: string[] = [];

  family(
    name: string,
    type: "counter" | "gauge" | "summary",
    help: string,
    samples: readonly (readonly [suffix: string, labels: Labels, value: number])[],
  ): void {
    // A family without samples is legal, but it would only be noise in every scrape.
    if (samples.length === 0) return;
    this.#lines.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`);
    for (const [suffix, labels, value] of samples) {
      const l = labels.length === 0
        ? ""
        : "{" + labels.map(([k, v]) => `${k}="${escapeLabelValue(v)}"`).join(",") + "}";
      this.#lines.push(`${name}${suffix}${l} ${formatValue(value)}`);
    }
  }

  text(): string {
    return this.#lines.length === 0 ? "" : this.#lines.join("\n") + "\n";
  }
}

/**
 * Renders runtime totals and kernel snapshots in the Prometheus text exposition format 0.0.4
 * (serve it with {@linkcode PROMETHEUS_CONTENT_TYPE}). Per-kernel series carry a `kernel` label;
 * latency is a `summary` in seconds with quantiles 0.5 and 0.99 (NaN while empty, as client
 * libraries report it). docs/telemetry.md lists every metric.
 * @throws {ValidationError} `E_INVALID_ARGUMENT` when two kernels share an id: their series would
 * collide, and Prometheus rejects the whole scrape.
 *
 * @example
 * ```ts
 * import { LatencyHistogram, prometheusText, runtimeTotals } from "@ringkernel/core";
 * const h = new LatencyHistogram();
 * h.record(1500);
 * const k = {
 *   kernelId: "acc", state: "active", processed: 1, dropped: 0, errors: 0,
 *   inputDepth: 0, outputDepth: 0, inputCapacity: 1024, outputCapacity: 1024,
 *   latency: h.summary(), uptimeMs: 10, restarts: 0, lateReplies: 0,
 * } as const;
 * console.log(prometheusText(runtimeTotals([k]), [k]));
 * // # HELP ringkernel_kernels Kernels in each lifecycle state.
 * // # TYPE ringkernel_kernels gauge
 * // ringkernel_kernels{state="created"} 0
 * // ...
 * ```
 */
export function prometheusText(
  runtime: RuntimeMetrics,
  kernels: readonly KernelMetrics[],
): string {
  const ids = new Set<string>();
  for (const k of kernels) {
    if (ids.has(k.kernelId)) {
      throw new ValidationError(
        ErrorCode.InvalidArgument,
        `duplicate kernel id ${JSON.stringify(k.kernelId)} in metrics`,
      );
    }
    ids.add(k.kernelId);
  }
  const out = new Exposition();
  const per = (value: (k: KernelMetrics) => number) =>
    kernels.map((k) => ["", [["kernel", k.kernelId]], value(k)] as const);

  out.family(
    "ringkernel_kernels",
    "gauge",
    "Kernels in each lifecycle state.",
    KERNEL_STATE_NAMES.map((s) => ["", [["state", s]], runtime.kernels[s] ?? 0] as const),
  );
  out.family(
    "ringkernel_runtime_messages_processed_total",
    "counter",
    "Messages processed by all kernels of the runtime.",
    [["", [], runtime.processed]],
  );
  out.family(
    "ringkernel_runtime_messages_dropped_total",
    "counter",
    "Messages dropped by all kernels of the runtime.",
    [["", [], runtime.dropped]],
  );
  out.family(
    "ringkernel_runtime_errors_total",
    "counter",
    "Errors recorded by all kernels of the runtime.",
    [["", [], runtime.errors]],
  );
  out.family("ringkernel_k2k_sent_total", "counter", "Kernel-to-kernel sends attempted.", [
    ["", [], runtime.k2k.sent],
  ]);
  out.family(
    "ringkernel_k2k_delivered_total",
    "counter",
    "Kernel-to-kernel messages placed in the destination queue.",
    [["", [], runtime.k2k.delivered]],
  );
  out.family(
    "ringkernel_k2k_queue_full_total",
    "counter",
    "Kernel-to-kernel sends that found the destination queue full.",
    [["", [], runtime.k2k.queueFull]],
  );
  out.family(
    "ringkernel_k2k_not_found_total",
    "counter",
    "Kernel-to-kernel sends to an unknown kernel id.",
    [["", [], runtime.k2k.notFound]],
  );
  out.family(
    "ringkernel_kernel_state",
    "gauge",
    "1 for the current lifecycle state of each kernel.",
    kernels.map((k) => ["", [["kernel", k.kernelId], ["state", k.state]], 1] as const),
  );
  out.family(
    "ringkernel_messages_processed_total",
    "counter",
    "Messages processed by the kernel.",
    per((k) => k.processed),
  );
  out.family(
    "ringkernel_messages_dropped_total",
    "counter",
    "Messages dropped by the kernel.",
    per((k) => k.dropped),
  );
  out.family(
    "ringkernel_errors_total",
    "counter",
    "Errors recorded by the kernel.",
    per((k) => k.errors),
  );
  out.family(
    "ringkernel_queue_depth",
    "gauge",
    "Messages waiting in the kernel's queue.",
    kernels.flatMap((k) => [
      ["", [["kernel", k.kernelId], ["queue", "input"]], k.inputDepth] as const,
      ["", [["kernel", k.kernelId], ["queue", "output"]], k.outputDepth] as const,
    ]),
  );
  out.family(
    "ringkernel_queue_capacity",
    "gauge",
    "Slots of the kernel's queue.",
    kernels.flatMap((k) => [
      ["", [["kernel", k.kernelId], ["queue", "input"]], k.inputCapacity] as const,
      ["", [["kernel", k.kernelId], ["queue", "output"]], k.outputCapacity] as const,
    ]),
  );
  out.family(
    "ringkernel_latency_seconds",
    "summary",
    "Handler latency of the kernel.",
    kernels.flatMap((k) => {
      const id = k.kernelId;
      const l = k.latency;
      return [
        ["", [["kernel", id], ["quantile", "0.5"]], l.p50Ns / 1e9] as const,
        ["", [["kernel", id], ["quantile", "0.99"]], l.p99Ns / 1e9] as const,
        ["_sum", [["kernel", id]], l.sumNs / 1e9] as const,
        ["_count", [["kernel", id]], l.count] as const,
      ];
    }),
  );
  out.family(
    "ringkernel_latency_max_seconds",
    "gauge",
    "Largest handler latency of the kernel (NaN before the first message).",
    per((k) => k.latency.maxNs / 1e9),
  );
  out.family(
    "ringkernel_kernel_uptime_seconds",
    "gauge",
    "Seconds since the kernel was launched.",
    per((k) => k.uptimeMs / 1e3),
  );
  out.family(
    "ringkernel_kernel_restarts_total",
    "counter",
    "Times the kernel was restarted.",
    per((k) => k.restarts),
  );
  out.family(
    "ringkernel_late_replies_total",
    "counter",
    "Replies that arrived after their request timed out.",
    per((k) => k.lateReplies),
  );
  return out.text();
}
