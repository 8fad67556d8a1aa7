/**
 * Worker entry of a CPU kernel: a persistent loop over the kernel's shared memory.
 *
 * The loop takes commands from the control block, handles messages from the high lane before the
 * normal lane, writes replies to the output queue, and sends K2K messages straight into other
 * kernels' lanes through the routing table the runtime posts. When idle it spins for the launch
 * priority's budget, lets the worker's event loop run once, then parks on the doorbell word with
 * `Atomics.wait` (bounded by {@linkcode PARK_MS}); producers ring the doorbell only when it parked,
 * so a busy kernel costs them one load and an idle kernel costs no CPU.
 *
 * The loop is synchronous while it works: messages from the host (routing updates) are read only
 * when it yields, which it does when idle and whenever the runtime's routing epoch word says the
 * table changed.
 *
 * Batches: one turn takes up to the priority's batch size of messages (high lane first), bounded
 * by the free output slots so every message has room for its reply. Inputs are read in place
 * (`available` once, then slot offsets, one `consume` per lane); replies are written straight
 * into reserved output slots and published with one tail store per batch, after the counters.
 * Checksummed envelopes of a batch are verified with one `crc32cBatch` call of the kernel's SIMD
 * core (over a copy of the slots in the core's memory, where the core can read them).
 * @module
 */

import { KernelCommand, KernelErrorCode, KernelState } from "../../core/control_block.ts";
import { MpscQueue } from "../../core/mpsc_queue.ts";
import { SpscQueue } from "../../core/spsc_queue.ts";
import {
  ENVELOPE_HEADER_BYTES,
  ENVELOPE_MAGIC,
  EnvelopeFlag,
  EnvelopeOffset,
  Priority,
  writeEnvelope,
  writeMessage,
} from "../../core/envelope.ts";
import { ErrorCode, InvalidStateError, ValidationError } from "../../core/errors.ts";
import type { SharedHlcClock } from "../../core/hlc.ts";
import type { FieldsSpec, Message } from "../../core/schema.ts";
import { SimdCore } from "./simd_core.ts";
import {
  countDelivery,
  deliverBlocking,
  DeliveryStatus,
  type K2kCounters,
  type K2kReceipt,
  type K2kSendOptions,
  Route,
} from "../../runtime/k2k.ts";
import {
  isKernelDefinition,
  type KernelContext,
  type KernelDefinition,
  passthroughKernel,
} from "../../runtime/kernel.ts";
import {
  EMPTY_REPLY_TYPE_ID,
  ERROR_REPLY_TYPE_ID,
  KernelMemory,
  KernelWord,
  Sleeping,
} from "../../runtime/kernel_memory.ts";
import type { Scheduling, Supervision } from "../../runtime/launch_options.ts";
import {
  RuntimeWord,
  type TerminateMode,
  type WorkerInit,
  type WorkerReport,
  type WorkerRoutes,
} from "./protocol.ts";

/** Longest single park; after it the loop lets the worker's event loop run and parks again. */
export const PARK_MS = 1000;

/** `lastError` code of an input whose checksum did not match (backend range, >= 0x1000). */
export const CHECKSUM_MISMATCH = 0x1001;

/** Bytes of slot copies one `crc32cBatch` call verifies at most (bounds the staging buffer). */
const STAGE_BYTES = 256 * 1024;

/** An input lane read in place: offsets of the ready slots without re-scanning per message. */
class LaneReader extends MpscQueue {
  /** Absolute byte offset, in the region's buffer, of the `j`-th ready message. */
  at(j: number): number {
    return this.data.byteOffset + ((this.ownHead + j) & this.mask) * this.slotSize;
  }

  /** Length in bytes of the `j`-th ready message. */
  lengthAt(j: number): number {
    return this.lens[(this.ownHead + j) & this.mask];
  }

  /** Copies `m` ready slots from the `j`-th on (whole slots, wrap-aware) into `target`. */
  copySlots(j: number, m: number, target: Uint8Array): void {
    const slot = this.slotSize;
    const first = (this.ownHead + j) & this.mask;
    const run1 = Math.min(m, this.capacity - first);
    target.set(this.data.subarray(first * slot, (first + run1) * slot), 0);
    if (run1 < m) target.set(this.data.subarray(0, (m - run1) * slot), run1 * slot);
  }
}

/** The output queue written in place: reserve a run, fill slots, publish the run once. */
class OutputWriter extends SpscQueue {
  #start = 0;
  #count = 0;

  /** Reserves up to `want` slots; returns how many. */
  reserveRun(want: number): number {
    const k = this.reserve(want);
    this.#start = this.reservedAt;
    this.#count = 0;
    return k;
  }

  /** Absolute byte offset of the next reserved slot. */
  nextAt(): number {
    return this.data.byteOffset + ((this.#start + this.#count) & this.mask) * this.slotSize;
  }

  /** The next reserved slot now holds `length` bytes. */
  commit(length: number): void {
    this.lens[(this.#start + this.#count) & this.mask] = length;
    this.#count++;
  }

  /** Publishes the committed slots with one tail store and wakes a waiting host. */
  publishRun(): void {
    if (this.#count === 0) return;
    this.publish(this.#start, this.#count);
    this.wakeConsumer();
    this.#start = (this.#start + this.#count) | 0;
    this.#count = 0;
  }
}

const scope = globalThis as unknown as {
  onmessage: ((e: MessageEvent<WorkerInit | WorkerRoutes>) => void) | null;
  postMessage(message: WorkerReport): void;
};

const encoder = new TextEncoder();

let loop: KernelLoop | undefined;
let pendingRoutes: WorkerRoutes | undefined;

scope.onmessage = (e) => {
  const msg = e.data;
  if (msg.type === "routes") {
    if (loop === undefined) pendingRoutes = msg;
    else loop.applyRoutes(msg);
    return;
  }
  void start(msg);
};

async function start(init: WorkerInit): Promise<void> {
  let def: KernelDefinition;
  try {
    def = await loadDefinition(init);
  } catch (e) {
    scope.postMessage({ type: "load-error", ...describe(e) });
    return;
  }
  let simd: SimdCore;
  try {
    // A memory of its own per kernel (isolation); 256 MiB of address space at most.
    simd = await SimdCore.create({ module: init.simdModule, initialPages: 16, maximumPages: 4096 });
  } catch (e) {
    scope.postMessage({ type: "load-error", ...describe(e) });
    return;
  }
  loop = new KernelLoop(init, def, simd);
  loop.applyRoutes(pendingRoutes ?? { type: "routes", epoch: init.epoch, routes: init.routes });
  await loop.run();
}

async function loadDefinition(init: WorkerInit): Promise<KernelDefinition> {
  if (init.builtin === "passthrough") return passthroughKernel(init.kernelId);
  const mod = await import(init.moduleUrl!) as Record<string, unknown>;
  const found = Object.values(mod).filter((v): v is KernelDefinition =>
    isKernelDefinition(v) && v.id === init.kernelId
  );
  if (found.length !== 1) {
    throw new ValidationError(
      ErrorCode.InvalidArgument,
      `${init.moduleUrl} exports ${found.length} kernel definitions with id ` +
        `${JSON.stringify(init.kernelId)}; export exactly one`,
    );
  }
  const def = found[0];
  if ((def.input?.typeId ?? 0) !== init.inputTypeId || (def.state?.size ?? 0) !== init.stateSize) {
    throw new ValidationError(
      ErrorCode.InvalidArgument,
      `kernel ${init.kernelId} in ${init.moduleUrl} differs from the definition launched ` +
        `(input type or state size)`,
    );
  }
  return def;
}

function describe(e: unknown): { name: string; message: string } {
  if (e instanceof Error) return { name: e.name, message: e.message };
  return { name: "Error", message: String(e) };
}

/** The persistent loop of one kernel. */
class KernelLoop {
  readonly #init: WorkerInit;
  readonly #def: KernelDefinition;
  readonly #mem: KernelMemory;
  readonly #dv: DataView;
  readonly #runtimeWords: Int32Array;
  readonly #clock: SharedHlcClock;
  readonly #sched: Scheduling;
  readonly #supervision: Supervision;
  readonly #state: object;
  readonly #views = new Map<number, unknown>();
  readonly #ctx: KernelContext & { sourceKernel: number; priority: number };
  readonly #k2k: K2kCounters = { sent: 0, delivered: 0, queueFull: 0, notFound: 0 };
  readonly #bytes: Uint8Array;
  readonly #high: LaneReader;
  readonly #normal: LaneReader;
  readonly #out: OutputWriter;
  readonly #slot: number;
  readonly #simd: SimdCore;
  readonly #scratch = new Map<string, Float32Array>();
  readonly #stage: Uint8Array;
  readonly #stageLens: Uint32Array;
  readonly #stageCrcs: Uint32Array;
  readonly #bad: Uint8Array;
  #routes = new Map<string, Route>();
  #epoch = -1;
  #k2kScratch: Uint8Array;
  #processed = 0;
  #dropped = 0;
  #replyLength = 0;
  #stopped: { name: string; message: string } | undefined;
  #yield: () => Promise<void>;

  constructor(init: WorkerInit, def: KernelDefinition, simd: SimdCore) {
    this.#init = init;
    this.#def = def;
    this.#mem = KernelMemory.attach(init.buffer, init.layout);
    this.#dv = new DataView(init.buffer);
    this.#bytes = new Uint8Array(init.buffer);
    this.#high = new LaneReader(init.buffer, init.layout.high);
    this.#normal = new LaneReader(init.buffer, init.layout.normal);
    this.#out = new OutputWriter(init.buffer, init.layout.output);
    this.#slot = init.layout.slotSize;
    this.#simd = simd;
    const stageCount = Math.max(
      1,
      Math.min(init.scheduling.batchSize, Math.floor(STAGE_BYTES / this.#slot)),
    );
    this.#stage = simd.allocBytes(stageCount * this.#slot).view;
    this.#stageLens = simd.allocU32(stageCount).view;
    this.#stageCrcs = simd.allocU32(stageCount).view;
    this.#bad = new Uint8Array(init.scheduling.batchSize);
    this.#runtimeWords = new Int32Array(init.runtimeWords);
    this.#clock = this.#mem.cb.hlcClock();
    this.#sched = init.scheduling;
    this.#supervision = init.supervision;
    this.#state = def.state === undefined
      ? Object.freeze({})
      : def.state.view(init.buffer, init.layout.state);
    this.#k2kScratch = new Uint8Array(init.layout.slotSize);
    const send = <F extends FieldsSpec>(
      dest: string,
      message: Message<F>,
      options?: K2kSendOptions,
    ): K2kReceipt => this.#send(dest, message, options);
    this.#ctx = {
      kernelId: init.kernelId,
      sourceKernel: 0,
      priority: Priority.Normal,
      send,
      now: () => this.#clock.tick(),
      simd,
      f32Scratch: (key, length) => this.#f32Scratch(key, length),
    };
    // A MessageChannel round trip lets the event loop run without the 4 ms clamp nested timers get.
    const channel = new MessageChannel();
    let wake: (() => void) | undefined;
    channel.port1.onmessage = () => wake?.();
    this.#yield = () =>
      new Promise<void>((resolve) => {
        wake = resolve;
        channel.port2.postMessage(0);
      });
  }

  #f32Scratch(key: string, length: number): Float32Array {
    if (!Number.isSafeInteger(length) || length < 0) {
      throw new ValidationError(
        ErrorCode.InvalidArgument,
        `f32Scratch length must be a non-negative integer, got ${length}`,
      );
    }
    const have = this.#scratch.get(key);
    if (have !== undefined && have.length >= length) {
      return have.length === length ? have : have.subarray(0, length);
    }
    const view = this.#simd.allocF32(length).view;
    this.#scratch.set(key, view);
    return view;
  }

  applyRoutes(msg: WorkerRoutes): void {
    const next = new Map<string, Route>();
    for (const r of msg.routes) next.set(r.id, this.#routes.get(r.id) ?? new Route(r));
    this.#routes = next;
    this.#epoch = msg.epoch;
  }

  #send<F extends FieldsSpec>(
    dest: string,
    message: Message<F>,
    options: K2kSendOptions = {},
  ): K2kReceipt {
    if (!this.#init.k2k) {
      throw new InvalidStateError(
        ErrorCode.InvalidState,
        `kernel ${this.#init.kernelId} was launched with K2K off`,
      );
    }
    const route = this.#routes.get(dest);
    let status: DeliveryStatus;
    if (route === undefined) {
      status = DeliveryStatus.NotFound;
    } else {
      const need = ENVELOPE_HEADER_BYTES + message.schema.size;
      if (this.#k2kScratch.length < need) this.#k2kScratch = new Uint8Array(need);
      const n = writeMessage(this.#k2kScratch, 0, message, {
        sourceKernel: this.#init.numericId,
        destKernel: route.init.numericId,
        timestamp: this.#clock.tick(),
        priority: options.priority ?? Priority.Normal,
      });
      status = deliverBlocking(route, this.#k2kScratch.subarray(0, n), options.timeoutMs ?? 0);
    }
    countDelivery(this.#k2k, status);
    const w = this.#mem.words;
    Atomics.store(w, KernelWord.k2kSent, this.#k2k.sent);
    Atomics.store(w, KernelWord.k2kDelivered, this.#k2k.delivered);
    Atomics.store(w, KernelWord.k2kQueueFull, this.#k2k.queueFull);
    Atomics.store(w, KernelWord.k2kNotFound, this.#k2k.notFound);
    return { status, dest };
  }

  async run(): Promise<void> {
    const cb = this.#mem.cb;
    const words = this.#mem.words;
    cb.state = KernelState.Launched;
    scope.postMessage({ type: "ready" });
    let state: KernelState = KernelState.Launched;
    let idleSince = -1;
    let yielded = false;
    const spinMs = this.#sched.spinMicros / 1000;
    for (;;) {
      if (Atomics.load(this.#runtimeWords, RuntimeWord.routingEpoch) !== this.#epoch) {
        // The routes message was posted before the epoch moved; it arrives within a few yields.
        await this.#yield();
        continue;
      }
      if (cb.pendingCommands !== 0) {
        const cmd = cb.takeCommands();
        if (cmd & KernelCommand.Terminate) return this.#exit();
        if (cmd & KernelCommand.Deactivate) state = KernelState.Deactivated;
        else if (cmd & KernelCommand.Activate) state = KernelState.Active;
        if (cb.state !== state) cb.state = state;
      }
      if (state === KernelState.Active) {
        const n = this.#batch(this.#sched.batchSize);
        if (this.#stopped !== undefined) return this.#fail();
        if (n > 0) {
          idleSince = -1;
          yielded = false;
          continue;
        }
        if (this.#outputFull()) {
          // Backpressure: no reply could be written, so take no input until the host reads.
          this.#mem.output.waitForSpace(10);
          continue;
        }
      }
      cb.beat();
      const now = performance.now();
      if (idleSince < 0) idleSince = now;
      if (state === KernelState.Active && now - idleSince < spinMs) continue;
      if (!yielded) {
        await this.#yield();
        yielded = true;
        continue;
      }
      const mode = state === KernelState.Active ? Sleeping.ForData : Sleeping.ForCommands;
      Atomics.store(words, KernelWord.sleeping, mode);
      const bell = Atomics.load(words, KernelWord.doorbell);
      let outcome = "ok";
      if (this.#nothingToDo(mode)) {
        outcome = Atomics.wait(words, KernelWord.doorbell, bell, PARK_MS);
      }
      Atomics.store(words, KernelWord.sleeping, Sleeping.No);
      cb.beat();
      if (outcome === "timed-out") {
        // Long idle: let timers and messages of the worker run (a 0 ms timer, so due timers do).
        await new Promise((r) => setTimeout(r, 0));
      }
    }
  }

  #nothingToDo(mode: number): boolean {
    if (this.#mem.cb.pendingCommands !== 0) return false;
    if (Atomics.load(this.#runtimeWords, RuntimeWord.routingEpoch) !== this.#epoch) return false;
    if (mode === Sleeping.ForCommands) return true;
    return this.#high.available(1) === 0 && this.#normal.available(1) === 0;
  }

  #outputFull(): boolean {
    return this.#mem.output.isFull;
  }

  /**
   * Handles up to `max` messages, the high lane's first, and no more than there are free output
   * slots (each message may reply once); returns how many were taken. Counters are published
   * before the replies, so a host that sees a reply also sees its message counted.
   */
  #batch(max: number): number {
    const out = this.#out;
    const room = out.reserveRun(max);
    if (room === 0) return 0;
    let n = this.#takeLane(this.#high, room);
    if (this.#stopped === undefined && n < room) n += this.#takeLane(this.#normal, room - n);
    if (n > 0) {
      this.#flushCounters();
      out.publishRun();
      this.#snapshot();
    }
    return n;
  }

  /** Handles up to `max` ready messages of `lane` in place; one `consume` for all of them. */
  #takeLane(lane: LaneReader, max: number): number {
    const k = lane.available(max);
    if (k === 0) return 0;
    const checked = this.#verify(lane, k);
    const cb = this.#mem.cb;
    let j = 0;
    while (j < k) {
      // Per message, so a watchdog sees a long batch of slow-but-finishing handlers as alive.
      cb.beat();
      this.#handle(lane.at(j), lane.lengthAt(j), checked && this.#bad[j] === 1);
      j++;
      if (this.#stopped !== undefined) break;
    }
    lane.consume(j);
    return j;
  }

  /**
   * Verifies the checksums of the `k` ready messages of `lane` that carry one, with one
   * `crc32cBatch` call per staging run (the SIMD core reads only its own memory, so the slots are
   * copied there first, checksum fields zeroed as the CRC defines them). Marks mismatches in
   * `#bad`; returns false when no message of the batch carries a checksum (nothing marked).
   */
  #verify(lane: LaneReader, k: number): boolean {
    const dv = this.#dv;
    let any = false;
    for (let j = 0; j < k && !any; j++) {
      any = (dv.getUint16(lane.at(j) + EnvelopeOffset.flags, true) & EnvelopeFlag.HasChecksum) !==
        0;
    }
    if (!any) return false;
    const bad = this.#bad;
    bad.fill(0, 0, k);
    const slot = this.#slot;
    const stage = this.#stage;
    const lens = this.#stageLens;
    const crcs = this.#stageCrcs;
    const per = lens.length;
    for (let base = 0; base < k; base += per) {
      const m = Math.min(per, k - base);
      lane.copySlots(base, m, stage);
      for (let j = 0; j < m; j++) {
        const o = lane.at(base + j);
        lens[j] = 0;
        if ((dv.getUint16(o + EnvelopeOffset.flags, true) & EnvelopeFlag.HasChecksum) === 0) {
          continue;
        }
        const total = ENVELOPE_HEADER_BYTES + dv.getUint32(o + EnvelopeOffset.payloadLength, true);
        // A length past the message is caught (and dropped) as malformed by #handle.
        if (total > lane.lengthAt(base + j)) continue;
        lens[j] = total;
        stage.fill(0, j * slot + EnvelopeOffset.checksum, j * slot + EnvelopeOffset.checksum + 4);
      }
      this.#simd.crc32cBatch(
        stage.subarray(0, m * slot),
        slot,
        lens.subarray(0, m),
        crcs.subarray(0, m),
      );
      for (let j = 0; j < m; j++) {
        if (lens[j] === 0) continue;
        const stored = dv.getUint32(lane.at(base + j) + EnvelopeOffset.checksum, true);
        if (crcs[j] !== stored) bad[base + j] = 1;
      }
    }
    return true;
  }

  #flushCounters(): void {
    const cb = this.#mem.cb;
    if (this.#processed !== 0 || this.#dropped !== 0) {
      cb.addCounters(this.#processed, this.#dropped);
      this.#processed = 0;
      this.#dropped = 0;
    }
  }

  /** Publishes queue head/tail snapshots in the control block for observers. */
  #snapshot(): void {
    const cb = this.#mem.cb;
    const h = this.#high.stats();
    const m = this.#normal.stats();
    cb.snapshotQueues(
      { enqueued: (h.enqueued + m.enqueued) >>> 0, dequeued: (h.dequeued + m.dequeued) >>> 0 },
      this.#mem.output.stats(),
    );
  }

  /**
   * Handles one envelope read in place at byte `o` (`length` bytes) of a lane slot; its reply,
   * if any, goes straight into the next reserved output slot. `corrupt`: its checksum did not
   * match, so the handler never sees it.
   */
  #handle(o: number, length: number, corrupt: boolean): void {
    const dv = this.#dv;
    const def = this.#def;
    const flags = dv.getUint16(o + EnvelopeOffset.flags, true);
    const isRequest = (flags & EnvelopeFlag.Request) !== 0;
    const typeId = dv.getUint32(o + EnvelopeOffset.typeId, true);
    const payloadLength = dv.getUint32(o + EnvelopeOffset.payloadLength, true);
    const input = def.input;
    const wrong = dv.getUint32(o, true) !== ENVELOPE_MAGIC ||
      ENVELOPE_HEADER_BYTES + payloadLength > length ||
      (input !== undefined && (typeId !== input.typeId || payloadLength !== input.size));
    if (wrong || corrupt) {
      // Dead-lettered: counted (dropped, errors, and `corrupt` for checksums), and a requester
      // is told why; never handed to the handler.
      this.#dropped++;
      if (corrupt) Atomics.add(this.#mem.words, KernelWord.corrupt, 1);
      this.#mem.cb.recordError(corrupt ? CHECKSUM_MISMATCH : KernelErrorCode.InvalidMessage);
      if (isRequest) {
        this.#errorReply(
          o,
          corrupt
            ? {
              name: "DecodeError",
              message: `kernel ${this.#init.kernelId}: checksum mismatch, message dropped`,
              code: ErrorCode.DecodeChecksum,
            }
            : {
              name: "ValidationError",
              message: `kernel ${this.#init.kernelId} does not take typeId ${typeId}`,
            },
        );
        this.#commitReply();
      }
      return;
    }
    const lo = dv.getUint32(o + EnvelopeOffset.timestamp, true);
    const hi = dv.getUint32(o + EnvelopeOffset.timestamp + 4, true);
    if (lo !== 0 || hi !== 0) {
      try {
        this.#clock.updateFromWords(lo, hi);
      } catch {
        // A sender clock too far ahead: keep the local clock; the message is still handled.
      }
    }
    const ctx = this.#ctx;
    ctx.sourceKernel = dv.getUint32(o + EnvelopeOffset.sourceKernel, true);
    ctx.priority = dv.getUint32(o + EnvelopeOffset.priority, true);
    const t0 = performance.now();
    try {
      const at = this.#out.nextAt();
      if (def.builtin === "passthrough") {
        const payloadAt = o + ENVELOPE_HEADER_BYTES;
        this.#replyLength = writeEnvelope(
          this.#bytes,
          at,
          this.#replyInit(o, isRequest, typeId),
          this.#bytes.subarray(payloadAt, payloadAt + payloadLength),
        );
      } else {
        const payloadAt = o + ENVELOPE_HEADER_BYTES;
        let view = this.#views.get(payloadAt);
        if (view === undefined) {
          view = input!.view(this.#init.buffer, payloadAt);
          this.#views.set(payloadAt, view);
        }
        const result = def.handler!(view as never, this.#state as never, ctx);
        if (result !== undefined) {
          const output = def.output;
          if (output === undefined) {
            throw new ValidationError(
              ErrorCode.InvalidArgument,
              `kernel ${this.#init.kernelId} has no output schema but its handler returned a value`,
            );
          }
          // The slot is written in place: nothing may spill into the next one.
          if (ENVELOPE_HEADER_BYTES + output.size > this.#slot) {
            throw new ValidationError(
              ErrorCode.MessageTooLarge,
              `a ${output.name} reply takes ${ENVELOPE_HEADER_BYTES + output.size} bytes, ` +
                `more than the ${this.#slot}-byte slots`,
            );
          }
          const init = this.#replyInit(o, isRequest, output.typeId);
          this.#replyLength = writeMessage(this.#bytes, at, output.of(result as never), init);
        } else if (isRequest) {
          const init = this.#replyInit(o, true, EMPTY_REPLY_TYPE_ID);
          this.#replyLength = writeEnvelope(this.#bytes, at, init, new Uint8Array(0));
        }
      }
      this.#processed++;
    } catch (e) {
      this.#processed++;
      this.#replyLength = 0;
      this.#handlerFailed(o, isRequest, describe(e));
    }
    this.#mem.histogram.record(Math.max(0, (performance.now() - t0) * 1e6));
    this.#commitReply();
  }

  #replyInit(o: number, isRequest: boolean, typeId: number) {
    return {
      typeId,
      flags: isRequest ? EnvelopeFlag.Reply : 0,
      correlationId: isRequest ? this.#dv.getBigUint64(o + EnvelopeOffset.messageId, true) : 0n,
      sourceKernel: this.#init.numericId,
      timestamp: this.#clock.tick(),
      priority: this.#dv.getUint32(o + EnvelopeOffset.priority, true),
    };
  }

  /** Commits the reply written in the next reserved output slot (published with the batch). */
  #commitReply(): void {
    const length = this.#replyLength;
    if (length === 0) return;
    this.#replyLength = 0;
    this.#out.commit(length);
  }

  #errorReply(o: number, error: { name: string; message: string; code?: string }): void {
    const room = this.#slot - ENVELOPE_HEADER_BYTES;
    // Cut the message (never the JSON) until the text fits the slot.
    const name = error.name.slice(0, 40);
    const code = error.code;
    let message = error.message;
    let text = encoder.encode(JSON.stringify({ name, message, code }));
    while (text.length > room && message.length > 0) {
      message = message.slice(0, Math.max(0, message.length - (text.length - room) - 1));
      text = encoder.encode(JSON.stringify({ name, message: message + "…", code }));
    }
    if (text.length > room) {
      text = encoder.encode(JSON.stringify({ name: "Error" })).subarray(0, room);
    }
    const init = {
      ...this.#replyInit(o, true, ERROR_REPLY_TYPE_ID),
      flags: EnvelopeFlag.Reply | EnvelopeFlag.Error,
    };
    this.#replyLength = writeEnvelope(this.#bytes, this.#out.nextAt(), init, text);
  }

  #handlerFailed(o: number, isRequest: boolean, error: { name: string; message: string }): void {
    const cb = this.#mem.cb;
    cb.recordError(KernelErrorCode.HandlerFailed);
    Atomics.add(this.#mem.words, KernelWord.handlerFailures, 1);
    if (isRequest) this.#errorReply(o, error);
    switch (this.#supervision) {
      case "resume":
        break;
      case "restart":
        this.#resetState();
        Atomics.add(this.#mem.words, KernelWord.restarts, 1);
        break;
      case "stop":
      case "escalate":
        this.#stopped = error;
        break;
    }
  }

  #resetState(): void {
    const def = this.#def;
    if (def.state === undefined) return;
    const at = this.#init.layout.state;
    if (def.initialState !== undefined) def.state.encodeInto(def.initialState, this.#dv, at);
    else new Uint8Array(this.#init.buffer, at, def.state.size).fill(0);
  }

  /** Terminate command: drain or not (the host's choice in the runtime words), then exit. */
  #exit(): void {
    const cb = this.#mem.cb;
    cb.state = KernelState.Terminating;
    const mode = Atomics.load(this.#mem.words, KernelWord.terminateMode) as TerminateMode;
    if (mode === 1) {
      // Drain: the host reads outputs meanwhile; give up (leaving the rest to be returned) if it
      // stops reading for a whole second.
      let stalledSince = -1;
      for (;;) {
        const n = this.#batch(this.#sched.batchSize);
        if (this.#stopped !== undefined) return this.#fail();
        if (n > 0) {
          stalledSince = -1;
          continue;
        }
        if (!this.#outputFull()) break;
        cb.beat();
        const now = performance.now();
        if (stalledSince < 0) stalledSince = now;
        else if (now - stalledSince > 1000) break;
        this.#mem.output.waitForSpace(10);
      }
    }
    this.#flushCounters();
    cb.state = KernelState.Terminated;
    scope.postMessage({ type: "exited", reason: "terminated" });
  }

  #fail(): void {
    this.#flushCounters();
    this.#mem.cb.state = KernelState.Failed;
    scope.postMessage({ type: "exited", reason: "stopped", error: this.#stopped });
  }
}
