/**
 * Kernel-to-kernel (K2K) messaging: delivery of an envelope straight into a destination kernel's
 * input lane, from the host ({@linkcode K2kBroker}) or from inside a handler (`ctx.send`).
 *
 * A route is plain data (kernel id, numeric id, input type, the kernel's shared memory region and
 * its layout), so the runtime can post the routing table to every kernel worker; a worker then
 * writes into the destination's MPSC lane itself, with no hop through the main thread. Delivery
 * never loses a message silently: it is `Delivered` (in the destination's queue), or it is not
 * and the receipt says why (`QueueFull`, `NotFound`, `Timeout`).
 * @module
 */

import { KernelState } from "../core/control_block.ts";
import { ENVELOPE_HEADER_BYTES, EnvelopeOffset, Priority } from "../core/envelope.ts";
import { ErrorCode, ValidationError } from "../core/errors.ts";
import type { MpscQueue } from "../core/mpsc_queue.ts";
import { type KernelLayout, KernelMemory, KernelWord, ringForData } from "./kernel_memory.ts";

/** Outcome of a K2K send. */
export const DeliveryStatus = {
  /** In the destination's input queue. */
  Delivered: "Delivered",
  /** The destination's queue was full; the message was not sent. */
  QueueFull: "QueueFull",
  /** No such kernel (or it is terminating or failed, or has K2K off); not sent. */
  NotFound: "NotFound",
  /** The destination stayed full for the whole `timeoutMs`; not sent. */
  Timeout: "Timeout",
} as const;
/** A {@linkcode DeliveryStatus} value. */
export type DeliveryStatus = typeof DeliveryStatus[keyof typeof DeliveryStatus];

/** The receipt of a K2K send. */
export interface K2kReceipt {
  /** What happened. */
  readonly status: DeliveryStatus;
  /** The destination kernel id. */
  readonly dest: string;
}

/** Options of a K2K send. */
export interface K2kSendOptions {
  /** Envelope priority; `High` and `Critical` go to the destination's high lane. Default normal. */
  priority?: number;
  /** Wait up to this long for room when the destination is full (default 0: do not wait). */
  timeoutMs?: number;
}

/** A routing table entry: plain data, posted to kernel workers. */
export interface RouteInit {
  /** Kernel id. */
  readonly id: string;
  /** Numeric kernel id (envelope `destKernel`). */
  readonly numericId: number;
  /** The typeId the kernel takes, 0 for any. */
  readonly inputTypeId: number;
  /** The kernel's region (a SharedArrayBuffer on the CPU backend, mapped memory on CUDA). */
  readonly buffer: SharedArrayBuffer | ArrayBuffer;
  /** Its layout. */
  readonly layout: KernelLayout;
}

/** A route with the destination's memory attached. */
export class Route {
  /** The posted data. */
  readonly init: RouteInit;
  /** The destination's memory. */
  readonly mem: KernelMemory;

  /** Attaches to the destination's region. */
  constructor(init: RouteInit) {
    this.init = init;
    this.mem = KernelMemory.attach(init.buffer, init.layout);
  }
}

/** K2K counters, as `KernelWord` stores them for a worker and the broker keeps for the host. */
export interface K2kCounters {
  /** Attempts. */
  sent: number;
  /** Delivered. */
  delivered: number;
  /** Refused: full. */
  queueFull: number;
  /** Refused: no such kernel. */
  notFound: number;
}

const GONE: readonly KernelState[] = [
  KernelState.Terminating,
  KernelState.Terminated,
  KernelState.Failed,
];

/** True when the kernel behind `route` no longer takes messages. */
export function routeGone(route: Route): boolean {
  return GONE.includes(route.mem.cb.state);
}

/**
 * Checks that `envelope` may go to `route`'s kernel; throws `ValidationError` for a wrong type
 * (`E_WRONG_MESSAGE_TYPE`) or an envelope longer than a slot (`E_MESSAGE_TOO_LARGE`). Returns the
 * lane its priority selects.
 */
export function laneFor(route: Route, envelope: Uint8Array): MpscQueue {
  if (envelope.length < ENVELOPE_HEADER_BYTES) {
    throw new ValidationError(
      ErrorCode.InvalidArgument,
      `a K2K envelope needs at least ${ENVELOPE_HEADER_BYTES} bytes, got ${envelope.length}`,
    );
  }
  const dv = new DataView(envelope.buffer, envelope.byteOffset, envelope.length);
  const typeId = dv.getUint32(EnvelopeOffset.typeId, true);
  const want = route.init.inputTypeId;
  if (want !== 0 && typeId !== want) {
    throw new ValidationError(
      ErrorCode.WrongMessageType,
      `kernel ${route.init.id} takes typeId ${want}, the envelope carries ${typeId}`,
    );
  }
  const slot = route.init.layout.slotSize;
  if (envelope.length > slot) {
    throw new ValidationError(
      ErrorCode.MessageTooLarge,
      `a ${envelope.length}-byte envelope does not fit kernel ${route.init.id}'s ` +
        `${slot}-byte slots`,
    );
  }
  const priority = dv.getUint32(EnvelopeOffset.priority, true);
  return priority >= Priority.High ? route.mem.high : route.mem.normal;
}

/** Outcome of one guarded, non-blocking enqueue attempt. */
export type GuardedResult = "ok" | "full" | "gone";

/**
 * Enqueues `envelope` into `lane` of the kernel owning `mem` unless that kernel no longer takes
 * messages. The check and the copy happen inside the kernel's `senders` count: the host collects
 * a dead kernel's leftovers only after marking it gone and seeing `senders` at 0, so a message
 * that passed the check is either handled or returned by terminate, never stranded in a queue
 * nobody reads. Never blocks.
 */
export function enqueueGuarded(
  mem: KernelMemory,
  lane: MpscQueue,
  envelope: Uint8Array,
): GuardedResult {
  const w = mem.words;
  Atomics.add(w, KernelWord.senders, 1);
  try {
    if (GONE.includes(mem.cb.state)) return "gone";
    return lane.tryEnqueue(envelope) ? "ok" : "full";
  } finally {
    Atomics.sub(w, KernelWord.senders, 1);
  }
}

/**
 * Like {@linkcode enqueueGuarded} for a batch: enqueues a prefix of `envelopes` with one
 * reservation and returns its length, or -1 when the kernel is gone (nothing enqueued).
 */
export function enqueueManyGuarded(
  mem: KernelMemory,
  lane: MpscQueue,
  envelopes: readonly Uint8Array[],
): number {
  const w = mem.words;
  Atomics.add(w, KernelWord.senders, 1);
  try {
    if (GONE.includes(mem.cb.state)) return -1;
    return lane.enqueueMany(envelopes);
  } finally {
    Atomics.sub(w, KernelWord.senders, 1);
  }
}

/** Longest single wait for space before the destination's state is checked again. */
const SPACE_SLICE_MS = 20;

/**
 * Delivers `envelope` into `route`'s kernel, blocking the thread (for workers) up to `timeoutMs`
 * when full. Throws as {@linkcode laneFor}. The wait happens outside the guard (in slices), so a
 * destination that terminates meanwhile is noticed (`NotFound`) and never waits on a sender.
 */
export function deliverBlocking(
  route: Route,
  envelope: Uint8Array,
  timeoutMs: number,
): DeliveryStatus {
  const lane = laneFor(route, envelope);
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const r = enqueueGuarded(route.mem, lane, envelope);
    if (r === "ok") break;
    if (r === "gone") return DeliveryStatus.NotFound;
    if (!(timeoutMs > 0)) return DeliveryStatus.QueueFull;
    const left = deadline - performance.now();
    if (left <= 0) return DeliveryStatus.Timeout;
    lane.waitForSpace(Math.min(left, SPACE_SLICE_MS));
  }
  ringForData(route.mem.words);
  return DeliveryStatus.Delivered;
}

/** Like {@linkcode deliverBlocking}, waiting without blocking the thread (for the host). */
export async function deliver(
  route: Route,
  envelope: Uint8Array,
  timeoutMs: number,
): Promise<DeliveryStatus> {
  const lane = laneFor(route, envelope);
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const r = enqueueGuarded(route.mem, lane, envelope);
    if (r === "ok") break;
    if (r === "gone") return DeliveryStatus.NotFound;
    if (!(timeoutMs > 0)) return DeliveryStatus.QueueFull;
    const left = deadline - performance.now();
    if (left <= 0) return DeliveryStatus.Timeout;
    await lane.waitForSpaceAsync(Math.min(left, SPACE_SLICE_MS));
  }
  ringForData(route.mem.words);
  return DeliveryStatus.Delivered;
}

/**
 * Waits until no producer is inside a guarded enqueue into `mem`'s kernel. Call it after the
 * kernel's state is gone (Terminating, Terminated or Failed) and before collecting its leftovers.
 * A producer holds the count only for a check and a copy, so this is short; the yields cover a
 * producer thread descheduled in between.
 */
export async function quiesceSenders(mem: KernelMemory): Promise<void> {
  for (let i = 0; Atomics.load(mem.words, KernelWord.senders) !== 0; i++) {
    await new Promise((r) => setTimeout(r, i < 10 ? 0 : 1));
  }
}

/** What the broker reads routes from. */
export interface RouteTable {
  /** The route of a kernel id, if it is reachable. */
  get(id: string): Route | undefined;
  /** Every reachable kernel id. */
  ids(): string[];
}

/** Counts one outcome. */
export function countDelivery(counters: K2kCounters, status: DeliveryStatus): void {
  counters.sent++;
  if (status === DeliveryStatus.Delivered) counters.delivered++;
  else if (status === DeliveryStatus.NotFound) counters.notFound++;
  else counters.queueFull++;
}

/**
 * The host's side of K2K messaging: sends raw envelopes into kernels' input queues, exactly as a
 * kernel's `ctx.send` does, and reports receipts. Get it from `runtime.k2kBroker()`.
 *
 * @example
 * ```ts
 * import { encodeMessage, RingKernel } from "@ringkernel/core";
 * import { Add } from "./kernels.ts";
 * const rt = await RingKernel.builder().build();
 * // ... launch "adder"
 * const receipt = await rt.k2kBroker().send("host", "adder", encodeMessage(Add.of({ value: 1 })));
 * console.log(receipt.status); // "Delivered"
 * ```
 */
export class K2kBroker {
  readonly #table: RouteTable;
  readonly #counters: K2kCounters = { sent: 0, delivered: 0, queueFull: 0, notFound: 0 };

  /** Made by the runtime over its routing table (K2K-enabled, running kernels only). */
  constructor(table: RouteTable) {
    this.#table = table;
  }

  /**
   * Delivers `envelope` (a full envelope, e.g. from `encodeMessage`) to `destId`'s input queue.
   * `sourceId` is informational (the envelope's own `sourceKernel` is not rewritten, so a
   * checksum stays valid). Throws `ValidationError` for a wrong type or an envelope over the
   * slot size; every other outcome is in the receipt.
   */
  async send(
    sourceId: string,
    destId: string,
    envelope: Uint8Array,
    options: { timeoutMs?: number } = {},
  ): Promise<K2kReceipt> {
    void sourceId;
    const route = this.#table.get(destId);
    const status = route === undefined
      ? DeliveryStatus.NotFound
      : await deliver(route, envelope, options.timeoutMs ?? 0);
    countDelivery(this.#counters, status);
    return { status, dest: destId };
  }

  /** Ids of the kernels reachable by K2K. */
  routes(): string[] {
    return this.#table.ids();
  }

  /** The host's own K2K counters (kernels count theirs in their memory). */
  counters(): Readonly<K2kCounters> {
    return { ...this.#counters };
  }
}
