/**
 * One WebGPU kernel as the device pump drives it: its eight storage buffers (`layout.ts`), its
 * host region (the `KernelMemory` its `KernelHandle` works on, in a plain ArrayBuffer), and the
 * host's side of the emulated persistent loop — taking commands, validating and uploading the
 * envelopes of the host input lanes into the GPU ring, and turning a round's read-back into reply
 * envelopes, mirrored counters, dead letters and exits.
 *
 * The host knows the GPU ring's head and tail exactly between rounds (it reads them back after
 * every submission and nothing else runs on the device in between), so it appends at the tail it
 * knows and writes the new tail with the round's host words.
 * @module
 */

import { KernelCommand, KernelState } from "../../core/control_block.ts";
import { crc32cRange, crc32cZeros } from "../../core/checksum.ts";
import {
  ENVELOPE_HEADER_BYTES,
  ENVELOPE_MAGIC,
  ENVELOPE_VERSION,
  EnvelopeFlag,
  EnvelopeOffset,
  Priority,
} from "../../core/envelope.ts";
import { ErrorCode } from "../../core/errors.ts";
import type { KernelDefinition } from "../../runtime/kernel.ts";
import {
  EMPTY_REPLY_TYPE_ID,
  ERROR_REPLY_TYPE_ID,
  type KernelMemory,
  KernelWord,
} from "../../runtime/kernel_memory.ts";
import type { LaunchOptions } from "../../runtime/launch_options.ts";
import {
  CtlCb,
  CtlKw,
  CtlWord,
  type GpuKernelLayout,
  gpuKernelLayout,
  META_WORDS,
  MetaWord,
  ROUTE_WORDS,
  RouteWord,
  SEND_RESERVE,
  SendStatus,
} from "./layout.ts";
import type { RingKernelSource } from "./shaders.ts";
import type { TrackedBuffers } from "./tracked_buffers.ts";

// WebGPU's GPUBufferUsage bits (spec constants: Bun's bun-webgpu has no globals for them).
const COPY_SRC = 0x4;
const COPY_DST = 0x8;
const STORAGE = 0x80;

/** `lastError` of an input whose checksum did not match (the CPU and CUDA backends' code). */
export const CHECKSUM_MISMATCH = 0x1001;
/** `lastError` of an input that is not an envelope of the kernel's input type. */
const INVALID_MESSAGE = 3;

const TWO_32 = 0x1_0000_0000;
const encoder = new TextEncoder();

/** The kernel's eight buffers by name, in binding order. */
export const BUFFER_NAMES = [
  "msgs",
  "state",
  "replies",
  "replied",
  "outbox",
  "ctl",
  "inMeta",
  "outMeta",
] as const;
/** A buffer name. */
export type BufferName = typeof BUFFER_NAMES[number];

/** A K2K message the device refused (full ring, no such kernel) or a killed kernel left. */
export interface WebGpuDeadLetter {
  /** The sending kernel's id (`"host"` for a host message left in a killed kernel). */
  readonly from: string;
  /** The destination kernel's id. */
  readonly to: string;
  /** Why it was not delivered. */
  readonly reason: "QueueFull" | "NotFound" | "KernelGone";
  /** The message as an envelope (typeId, payload, source, HLC timestamp of the send). */
  readonly envelope: Uint8Array;
}

/** Where a round's read-back of one kernel lies in the mapped staging buffer. */
export interface KernelReadback {
  /** `ctl` (every live kernel, every round). */
  ctl: number;
  /** Reply metadata (`batchMax` entries): when it was dispatched. */
  outMeta?: number;
  /** Replied flags: with `outMeta`. */
  replied?: number;
  /** Reply payloads: with `outMeta`. */
  replies?: number;
  /** The state struct: when it was dispatched and has one. */
  state?: number;
  /** The outbox: when it was dispatched and sends. */
  outbox?: number;
  /** The input ring's metadata: when the ring may hold messages that must be returned. */
  inMeta?: number;
  /** The input ring's payloads: with `inMeta`. */
  msgs?: number;
}

/** The state a dispatch moves to after `commands`, as the ring entry computes it. */
export function stateAfter(state: KernelState, commands: number): KernelState {
  if ((commands & KernelCommand.Terminate) !== 0) {
    return state === KernelState.Terminated ? state : KernelState.Terminating;
  }
  if (state === KernelState.Terminating || state === KernelState.Terminated) return state;
  if ((commands & KernelCommand.Deactivate) !== 0) return KernelState.Deactivated;
  if ((commands & KernelCommand.Activate) !== 0) return KernelState.Active;
  return state;
}

/** What {@linkcode GpuKernel} is made from. */
export interface GpuKernelInit {
  readonly device: GPUDevice;
  readonly buffers: TrackedBuffers;
  readonly def: KernelDefinition;
  readonly options: LaunchOptions;
  readonly source: RingKernelSource;
  readonly pipeline: GPUComputePipeline;
  readonly bindGroupLayout: GPUBindGroupLayout;
  readonly mem: KernelMemory<ArrayBuffer>;
  readonly numericId: number;
}

/** One kernel's GPU buffers and the host's side of its loop. */
export class GpuKernel {
  /** Kernel id. */
  readonly id: string;
  /** Numeric id (envelope source, HLC node id). */
  readonly numericId: number;
  /** The definition. */
  readonly def: KernelDefinition;
  /** Its launch options. */
  readonly options: LaunchOptions;
  /** The host region its handle works on. */
  readonly mem: KernelMemory<ArrayBuffer>;
  /** The ring entry it runs. */
  readonly source: RingKernelSource;
  /** Its buffer sizes. */
  readonly layout: GpuKernelLayout;
  /** The pipeline of its ring entry. */
  readonly pipeline: GPUComputePipeline;
  /** Its buffers. */
  readonly gpu: Readonly<Record<BufferName, GPUBuffer>>;
  /** Bindings 0..7 of its ring entry. */
  readonly bindGroup: GPUBindGroup;
  /** Lifecycle state as the device last reported it. */
  state: KernelState = KernelState.Launched;
  /** GPU ring counters as the device last reported them. */
  ringHead = 0;
  ringTail = 0;
  /** Set once the kernel left the rounds (exited, killed, device lost). */
  gone = false;
  /** Per send target: the destination this round's route pass writes to, if any. */
  routes: (GpuKernel | undefined)[] = [];
  /** Per send target: the route pass's bind group (built for `routes`). */
  routeGroups: (GPUBindGroup | undefined)[] = [];

  /** Commands taken from the host control block for the round being planned. */
  commands = 0;
  /** Terminate mode passed with a terminate command: 1 drain, 0 leave. */
  terminateMode = 1;
  /** Messages the planned dispatch may handle (0: not dispatched). */
  batchMax = 0;

  readonly #buffers: TrackedBuffers;
  readonly #queue: GPUQueue;
  readonly #slotBytes: number;
  /** Host tag → a copy of the envelope, for messages in the GPU ring. */
  readonly #inflight = new Map<number, Uint8Array>();
  #nextTag = 1;
  readonly #metaStage: Uint32Array;
  readonly #payloadStage: Uint8Array;
  readonly #hostWords = new Uint32Array(6);
  readonly #one = new Uint32Array(1);
  readonly #scratch: Uint8Array;
  readonly #scratchView: DataView;
  readonly #cbWords: Uint32Array;
  // Host-side tallies added to the device's when mirroring (the host validates envelopes).
  #hostDropped = 0;
  #hostErrors = 0;
  #gpuErrors = 0;
  #gpuLastError = 0;
  #processed = -1;
  #dropped = -1;

  /** Creates the buffers and writes their initial contents (state, `ctl`). */
  constructor(init: GpuKernelInit) {
    const { def, mem, source } = init;
    this.id = def.id;
    this.numericId = init.numericId;
    this.def = def;
    this.options = init.options;
    this.mem = mem;
    this.source = source;
    this.pipeline = init.pipeline;
    this.#buffers = init.buffers;
    this.#queue = init.device.queue;
    const layout = gpuKernelLayout({
      ringCapacity: mem.layout.inputCapacity,
      outputCapacity: mem.layout.outputCapacity,
      slotWords: source.slotWords,
      replyWords: source.replyWords,
      stateBytes: def.state?.size ?? 0,
      outboxStride: source.outboxStride,
      targets: source.sendTargets.length,
    });
    this.layout = layout;
    this.#slotBytes = 4 * source.slotWords;
    const gpu = {} as Record<BufferName, GPUBuffer>;
    for (const name of BUFFER_NAMES) {
      gpu[name] = init.buffers.create(
        `${def.id}.${name}`,
        layout.bytes[name],
        STORAGE | COPY_DST | COPY_SRC,
      );
    }
    this.gpu = gpu;
    this.bindGroup = init.device.createBindGroup({
      label: `${def.id}.ring`,
      layout: init.bindGroupLayout,
      entries: BUFFER_NAMES.map((name, binding) => ({ binding, resource: { buffer: gpu[name] } })),
    });
    this.#metaStage = new Uint32Array(layout.batchCapacity * META_WORDS);
    this.#payloadStage = new Uint8Array(layout.batchCapacity * this.#slotBytes);
    this.#scratch = new Uint8Array(mem.layout.slotSize);
    this.#scratchView = new DataView(this.#scratch.buffer);
    this.#cbWords = new Uint32Array(mem.buffer, 0, 32);
    // The GPU never parks on the doorbell; senders must not wait for a wake-up, and the handle
    // must not spin for output while the pump has not yet taken its input.
    Atomics.store(mem.words, KernelWord.sleeping, 1);

    const ctl = new Uint32Array(layout.bytes.ctl / 4);
    ctl[CtlWord.sendCapacity] = layout.outboxRecords;
    ctl[CtlWord.nodeId] = init.numericId;
    ctl[CtlWord.ringCapacity] = layout.ringCapacity;
    ctl[CtlWord.slotWords] = source.slotWords;
    ctl[CtlWord.sendReserve] = SEND_RESERVE;
    ctl.set(this.#cbWords, CtlWord.controlBlock);
    ctl[CtlCb.state] = KernelState.Launched;
    this.#queue.writeBuffer(gpu.ctl, 0, ctl);
    const stateSize = def.state?.size ?? 0;
    if (stateSize > 0) {
      this.#queue.writeBuffer(gpu.state, 0, mem.buffer, mem.layout.state, stateSize);
    }
    mem.cb.state = KernelState.Launched;
  }

  /** Messages in the GPU ring. */
  get ringDepth(): number {
    return (this.ringTail - this.ringHead) >>> 0;
  }

  /** Free slots of the host output queue. */
  get outputRoom(): number {
    return this.mem.output.capacity - this.mem.output.len;
  }

  /** Envelopes waiting in the host input lanes (at most `max`). */
  hostInput(max = 1): number {
    return this.mem.high.available(max) + this.mem.normal.available(max);
  }

  /** Takes the pending commands of the host control block for this round. */
  takeCommands(): number {
    const c = this.mem.cb.takeCommands();
    if ((c & KernelCommand.Terminate) !== 0) {
      this.terminateMode = Atomics.load(this.mem.words, KernelWord.terminateMode) === 0 ? 0 : 1;
    }
    this.commands = c;
    return c;
  }

  /** Whether a dispatch in state `s` handles messages. */
  processes(s: KernelState): boolean {
    return s === KernelState.Active || (s === KernelState.Terminating && this.terminateMode === 1);
  }

  // ------------------------------------------------------------------------------ input

  /**
   * Moves host envelopes into the GPU ring, the high lane first: at most `budget` minus the ring
   * depth (every one of them is then handled by this round's dispatch) and no more than the ring
   * holds. Invalid envelopes are dropped, counted and answered with an error reply (when they
   * are requests) instead. Returns how many envelopes were taken and how many error replies
   * were written (each takes an output slot of `budget`).
   */
  ingest(budget: number): { taken: number; errorReplies: number } {
    const mem = this.mem;
    const depth = this.ringDepth;
    let room = Math.min(budget - depth, this.layout.ringCapacity - depth);
    let good = 0;
    let errorReplies = 0;
    let taken = 0;
    for (const lane of [mem.high, mem.normal]) {
      if (room <= 0) break;
      const n = lane.available(room);
      for (let j = 0; j < n; j++) {
        const env = lane.peek(j)!;
        const verdict = this.#check(env);
        if (verdict !== "ok") {
          if (this.#reject(env, verdict)) errorReplies++;
          continue;
        }
        this.#stage(env, good);
        good++;
      }
      if (n > 0) lane.consume(n);
      room -= n;
      taken += n;
    }
    if (good > 0) this.#upload(good);
    return { taken, errorReplies };
  }

  /** `"ok"`, or why the envelope cannot go to this kernel. */
  #check(env: Uint8Array): "ok" | "invalid" | "corrupt" {
    if (env.length < ENVELOPE_HEADER_BYTES) return "invalid";
    const dv = new DataView(env.buffer, env.byteOffset, env.length);
    const flags = dv.getUint16(EnvelopeOffset.flags, true);
    const typeId = dv.getUint32(EnvelopeOffset.typeId, true);
    const payload = dv.getUint32(EnvelopeOffset.payloadLength, true);
    const input = this.def.input;
    const wrong = dv.getUint32(EnvelopeOffset.magic, true) !== ENVELOPE_MAGIC ||
      dv.getUint16(EnvelopeOffset.version, true) !== ENVELOPE_VERSION ||
      ENVELOPE_HEADER_BYTES + payload > env.length ||
      (input === undefined
        ? typeId === 0 || payload > this.#slotBytes
        : typeId !== input.typeId || payload !== input.size);
    if (wrong) return "invalid";
    if ((flags & EnvelopeFlag.HasChecksum) !== 0) {
      let crc = crc32cRange(env, 0, EnvelopeOffset.checksum);
      crc = crc32cZeros(crc, 4);
      crc = crc32cRange(env, EnvelopeOffset.reserved, ENVELOPE_HEADER_BYTES + payload, crc);
      if (crc !== dv.getUint32(EnvelopeOffset.checksum, true)) return "corrupt";
    }
    return "ok";
  }

  /** Dead-letters a bad envelope: counted, and a requester told why. True if it replied. */
  #reject(env: Uint8Array, why: "invalid" | "corrupt"): boolean {
    this.#hostDropped++;
    this.#hostErrors++;
    const code = why === "corrupt" ? CHECKSUM_MISMATCH : INVALID_MESSAGE;
    Atomics.store(this.#cbWords, CtlCb.lastError - CtlWord.controlBlock, code);
    if (why === "corrupt") Atomics.add(this.mem.words, KernelWord.corrupt, 1);
    this.#mirrorCounters();
    if (env.length < ENVELOPE_HEADER_BYTES) return false;
    const dv = new DataView(env.buffer, env.byteOffset, env.length);
    if ((dv.getUint16(EnvelopeOffset.flags, true) & EnvelopeFlag.Request) === 0) return false;
    const typeId = dv.getUint32(EnvelopeOffset.typeId, true);
    const error = why === "corrupt"
      ? {
        name: "DecodeError",
        message: `kernel ${this.id}: checksum mismatch, message dropped`,
        code: ErrorCode.DecodeChecksum as string,
      }
      : {
        name: "ValidationError",
        message: `kernel ${this.id} does not take this envelope (typeId ${typeId}, magic, ` +
          `version or length), message dropped`,
        code: undefined,
      };
    const room = this.mem.layout.slotSize - ENVELOPE_HEADER_BYTES;
    let message = error.message;
    let text = encoder.encode(JSON.stringify({ ...error, message }));
    while (text.length > room && message.length > 0) {
      message = message.slice(0, Math.max(0, message.length - (text.length - room) - 1));
      text = encoder.encode(JSON.stringify({ ...error, message: message + "…" }));
    }
    if (text.length > room) text = encoder.encode(JSON.stringify({ name: "Error" })).slice(0, room);
    const hlc = this.#hostHlc();
    this.#emit(
      ERROR_REPLY_TYPE_ID,
      EnvelopeFlag.Reply | EnvelopeFlag.Error,
      dv.getBigUint64(EnvelopeOffset.messageId, true),
      hlc[0],
      hlc[1],
      dv.getUint32(EnvelopeOffset.priority, true),
      text,
      text.length,
    );
    return true;
  }

  /** Writes envelope `env` into staging slot `j` (metadata record and payload). */
  #stage(env: Uint8Array, j: number): void {
    const dv = new DataView(env.buffer, env.byteOffset, env.length);
    let tag = this.#nextTag;
    while (tag === 0 || this.#inflight.has(tag)) tag = (tag + 1) >>> 0;
    this.#nextTag = (tag + 1) >>> 0;
    this.#inflight.set(tag, env.slice());
    const payload = dv.getUint32(EnvelopeOffset.payloadLength, true);
    const m = j * META_WORDS;
    const meta = this.#metaStage;
    meta[m + MetaWord.tag] = tag;
    meta[m + MetaWord.sourceKernel] = dv.getUint32(EnvelopeOffset.sourceKernel, true);
    meta[m + MetaWord.tsLo] = dv.getUint32(EnvelopeOffset.timestamp, true);
    meta[m + MetaWord.tsHi] = dv.getUint32(EnvelopeOffset.timestamp + 4, true);
    meta[m + MetaWord.typeId] = dv.getUint32(EnvelopeOffset.typeId, true);
    meta[m + MetaWord.payloadBytes] = payload;
    meta[m + MetaWord.priority] = dv.getUint32(EnvelopeOffset.priority, true);
    meta[m + 7] = 0;
    const at = j * this.#slotBytes;
    this.#payloadStage.set(
      env.subarray(ENVELOPE_HEADER_BYTES, ENVELOPE_HEADER_BYTES + payload),
      at,
    );
    // Zero the rest of the slot: the passthrough copies whole words.
    if (payload < this.#slotBytes) this.#payloadStage.fill(0, at + payload, at + this.#slotBytes);
  }

  /** Uploads staging slots 0..n into the ring from the tail (two runs when it wraps). */
  #upload(n: number): void {
    const cap = this.layout.ringCapacity;
    const first = this.ringTail & (cap - 1);
    const run1 = Math.min(n, cap - first);
    const metaBytes = 4 * META_WORDS;
    const q = this.#queue;
    const meta = this.#metaStage;
    const payload = this.#payloadStage;
    const slot = this.#slotBytes;
    q.writeBuffer(
      this.gpu.inMeta,
      first * metaBytes,
      meta.buffer as ArrayBuffer,
      0,
      run1 * metaBytes,
    );
    q.writeBuffer(this.gpu.msgs, first * slot, payload.buffer as ArrayBuffer, 0, run1 * slot);
    if (run1 < n) {
      const rest = n - run1;
      q.writeBuffer(
        this.gpu.inMeta,
        0,
        meta.buffer as ArrayBuffer,
        run1 * metaBytes,
        rest * metaBytes,
      );
      q.writeBuffer(this.gpu.msgs, 0, payload.buffer as ArrayBuffer, run1 * slot, rest * slot);
    }
    this.ringTail = (this.ringTail + n) >>> 0;
  }

  /**
   * Writes this round's host words (batch size, ring tail, physical time, round number, whether
   * the host lanes are empty) and the commands taken, before the submission.
   */
  writeRoundWords(round: number, ptWord: readonly [number, number]): void {
    const w = this.#hostWords;
    w[0] = this.batchMax;
    w[1] = this.ringTail;
    w[2] = ptWord[0];
    w[3] = ptWord[1];
    w[4] = round >>> 0;
    w[5] = this.hostInput() === 0 ? 1 : 0;
    const q = this.#queue;
    q.writeBuffer(this.gpu.ctl, 4 * CtlWord.batchMax, w);
    if (this.commands !== 0) {
      if ((this.commands & KernelCommand.Terminate) !== 0) {
        this.#one[0] = this.terminateMode;
        q.writeBuffer(this.gpu.ctl, 4 * CtlKw.terminateMode, this.#one);
      }
      this.#one[0] = this.commands;
      q.writeBuffer(this.gpu.ctl, 4 * CtlCb.commands, this.#one);
    }
  }

  /** Writes the route table (present flags and destinations' geometry) into `ctl`. */
  writeRoutes(): void {
    const targets = this.source.sendTargets;
    if (targets.length === 0) return;
    const table = new Uint32Array(ROUTE_WORDS * targets.length);
    targets.forEach((t, i) => {
      const dest = this.routes[i];
      const at = i * ROUTE_WORDS;
      table[at + RouteWord.present] = dest === undefined ? 0 : 1;
      table[at + RouteWord.destKernel] = dest?.numericId ?? 0;
      table[at + RouteWord.payloadWords] = t.schema.size / 4;
      table[at + RouteWord.typeId] = t.schema.typeId;
      table[at + RouteWord.destSlotWords] = dest?.source.slotWords ?? 0;
    });
    this.#queue.writeBuffer(this.gpu.ctl, 4 * CtlWord.routes, table);
  }

  /** Whether a destination can take the messages this kernel sends to target `i`. */
  accepts(schema: { typeId: number; size: number }): boolean {
    const input = this.def.input;
    return input === undefined
      ? schema.size <= this.#slotBytes
      : input.typeId === schema.typeId && input.size === schema.size;
  }

  // ------------------------------------------------------------------------------ read-back

  /**
   * Applies a round's read-back: the device's words (state, ring, counters, HLC, K2K) mirrored
   * into the host control block and runtime words, replies and outputs written into the host
   * output queue, the state struct copied, refused sends handed to `deadLetter`. Returns the
   * envelopes left in the ring when the read-back holds it (a terminate that leaves them).
   */
  applyReadback(
    bytes: ArrayBuffer,
    at: KernelReadback,
    deadLetter: (letter: WebGpuDeadLetter) => void,
  ): Uint8Array[] | undefined {
    const ctl = new Uint32Array(bytes, at.ctl, this.layout.bytes.ctl / 4);
    this.state = ctl[CtlCb.state] as KernelState;
    if (this.mem.cb.state !== this.state && !this.gone) this.mem.cb.state = this.state;
    const prevHead = this.ringHead;
    this.ringHead = ctl[CtlWord.ringHead];
    this.ringTail = ctl[CtlWord.ringTail];
    const gpuErrors = ctl[CtlCb.errorCount];
    if (gpuErrors !== this.#gpuErrors) {
      this.#gpuErrors = gpuErrors;
      Atomics.store(this.#cbWords, CtlCb.lastError - CtlWord.controlBlock, ctl[CtlCb.lastError]);
    }
    this.#gpuLastError = ctl[CtlCb.lastError];
    const cb = this.#cbWords;
    const base = CtlWord.controlBlock;
    // One thread writes these and every reader is on the same thread: no pair is seen torn.
    Atomics.store(cb, CtlCb.hlcLo - base, ctl[CtlCb.hlcLo]);
    Atomics.store(cb, CtlCb.hlcLo + 1 - base, ctl[CtlCb.hlcLo + 1]);
    Atomics.store(cb, CtlCb.heartbeat - base, ctl[CtlCb.heartbeat]);
    Atomics.store(cb, CtlCb.inputHead - base, ctl[CtlCb.inputHead]);
    Atomics.store(cb, CtlCb.inputTail - base, ctl[CtlCb.inputTail]);
    const words = this.mem.words;
    for (const k of [KernelWord.k2kSent, KernelWord.k2kDelivered, KernelWord.k2kQueueFull]) {
      Atomics.store(words, k, ctl[CtlWord.kernelWords + k] | 0);
    }
    Atomics.store(words, KernelWord.k2kNotFound, ctl[CtlKw.k2kNotFound] | 0);
    this.#processed = ctl[CtlCb.processedLo] + ctl[CtlCb.processedLo + 1] * TWO_32;
    this.#dropped = ctl[CtlCb.droppedLo] + ctl[CtlCb.droppedLo + 1] * TWO_32;

    if (at.outMeta !== undefined) this.#emitOutputs(bytes, at, ctl);
    if (at.state !== undefined && this.def.state !== undefined) {
      new Uint8Array(this.mem.buffer, this.mem.layout.state, this.def.state.size).set(
        new Uint8Array(bytes, at.state, this.def.state.size),
      );
    }
    if (at.outbox !== undefined) this.#deadLetters(bytes, at.outbox, ctl, deadLetter);
    // Counters after the outputs: a host that sees a reply sees its message counted.
    this.#mirrorCounters();
    if (prevHead !== this.ringHead || at.outMeta !== undefined) {
      this.mem.cb.snapshotQueues(undefined, this.mem.output.stats());
    }
    if (at.inMeta !== undefined && at.msgs !== undefined) {
      return this.#leftovers(bytes, at.inMeta, at.msgs, this.ringHead, this.ringTail);
    }
    return undefined;
  }

  /** The processed/dropped pair and error count, device plus host tallies, into the host block. */
  #mirrorCounters(): void {
    const processed = Math.max(0, this.#processed);
    const dropped = Math.max(0, this.#dropped) + this.#hostDropped;
    const cb = this.mem.cb;
    const now = cb.readCounters();
    if (now.processed !== BigInt(processed) || now.dropped !== BigInt(dropped)) {
      cb.setCounters(BigInt(processed), BigInt(dropped));
    }
    Atomics.store(
      this.#cbWords,
      CtlCb.errorCount - CtlWord.controlBlock,
      (this.#gpuErrors + this.#hostErrors) >>> 0,
    );
  }

  /** Replies and outputs of the dispatch into the host output queue. */
  #emitOutputs(bytes: ArrayBuffer, at: KernelReadback, ctl: Uint32Array): void {
    const n = ctl[CtlWord.outCount];
    if (n === 0) return;
    const meta = new Uint32Array(bytes, at.outMeta!, n * META_WORDS);
    const replied = new Uint32Array(bytes, at.replied!, n);
    const replyBytes = 4 * this.source.replyWords;
    const replies = new Uint8Array(bytes, at.replies!, n * replyBytes);
    const outType = this.def.output?.typeId ?? 0;
    for (let i = 0; i < n; i++) {
      const m = i * META_WORDS;
      const tag = meta[m + MetaWord.tag];
      let request = false;
      let correlation = 0n;
      if (tag !== 0) {
        const env = this.#inflight.get(tag);
        if (env !== undefined) {
          this.#inflight.delete(tag);
          const dv = new DataView(env.buffer, env.byteOffset, env.length);
          request = (dv.getUint16(EnvelopeOffset.flags, true) & EnvelopeFlag.Request) !== 0;
          correlation = dv.getBigUint64(EnvelopeOffset.messageId, true);
        }
      }
      const tsLo = meta[m + MetaWord.tsLo];
      const tsHi = meta[m + MetaWord.tsHi];
      const priority = meta[m + MetaWord.priority];
      const flags = request ? EnvelopeFlag.Reply : 0;
      if (replied[i] !== 0) {
        const typeId = this.source.passthrough ? meta[m + MetaWord.typeId] : outType;
        const len = meta[m + MetaWord.payloadBytes];
        const payload = replies.subarray(i * replyBytes, i * replyBytes + len);
        this.#emit(typeId, flags, correlation, tsLo, tsHi, priority, payload, len);
      } else if (request) {
        this.#emit(EMPTY_REPLY_TYPE_ID, flags, correlation, tsLo, tsHi, priority, replies, 0);
      }
    }
  }

  /** One envelope into the host output queue (room was reserved when the round was planned). */
  #emit(
    typeId: number,
    flags: number,
    correlation: bigint,
    tsLo: number,
    tsHi: number,
    priority: number,
    payload: Uint8Array,
    length: number,
  ): void {
    const s = this.#scratch;
    const dv = this.#scratchView;
    dv.setUint32(EnvelopeOffset.magic, ENVELOPE_MAGIC, true);
    dv.setUint16(EnvelopeOffset.version, ENVELOPE_VERSION, true);
    dv.setUint16(EnvelopeOffset.flags, flags, true);
    dv.setUint32(EnvelopeOffset.typeId, typeId, true);
    dv.setUint32(EnvelopeOffset.payloadLength, length, true);
    dv.setBigUint64(EnvelopeOffset.messageId, 0n, true);
    dv.setBigUint64(EnvelopeOffset.correlationId, correlation, true);
    dv.setUint32(EnvelopeOffset.sourceKernel, this.numericId, true);
    dv.setUint32(EnvelopeOffset.destKernel, 0, true);
    dv.setUint32(EnvelopeOffset.timestamp, tsLo, true);
    dv.setUint32(EnvelopeOffset.timestamp + 4, tsHi, true);
    dv.setUint32(EnvelopeOffset.timestamp + 8, this.numericId, true);
    dv.setUint32(EnvelopeOffset.priority, priority & 0xff, true);
    dv.setUint32(EnvelopeOffset.checksum, 0, true);
    dv.setUint32(EnvelopeOffset.reserved, 0, true);
    if (length > 0) s.set(payload.subarray(0, length), ENVELOPE_HEADER_BYTES);
    if (!this.mem.output.tryEnqueue(s.subarray(0, ENVELOPE_HEADER_BYTES + length))) {
      // The round reserved a slot per message; reaching here is a bookkeeping bug, and losing the
      // reply silently would hide it.
      throw new Error(`kernel ${this.id}: the host output queue had no room reserved`);
    }
  }

  /** Outbox records the route passes refused, as dead letters. */
  #deadLetters(
    bytes: ArrayBuffer,
    at: number,
    ctl: Uint32Array,
    deadLetter: (letter: WebGpuDeadLetter) => void,
  ): void {
    const stride = this.source.outboxStride;
    const recorded = Math.min(ctl[CtlWord.sendCount], ctl[CtlWord.sendCapacity]);
    if (recorded === 0 || stride === 0) return;
    const words = new Uint32Array(bytes, at, recorded * stride);
    const hlcLo = ctl[CtlCb.hlcLo];
    const hlcHi = ctl[CtlCb.hlcLo + 1];
    for (let r = 0; r < recorded; r++) {
      const w0 = words[r * stride];
      const status = w0 >>> 24;
      if (status === SendStatus.Delivered) continue;
      const target = this.source.sendTargets[w0 & 0xff_ffff];
      if (target === undefined) continue;
      const size = target.schema.size;
      const env = new Uint8Array(ENVELOPE_HEADER_BYTES + size);
      env.set(
        new Uint8Array(bytes, at + 4 * (r * stride + 2), size),
        ENVELOPE_HEADER_BYTES,
      );
      writeHeader(env, {
        typeId: target.schema.typeId,
        length: size,
        source: this.numericId,
        dest: this.routes[w0 & 0xff_ffff]?.numericId ?? 0,
        tsLo: hlcLo,
        tsHi: hlcHi,
        node: this.numericId,
      });
      deadLetter({
        from: this.id,
        to: target.dest,
        reason: status === SendStatus.QueueFull ? "QueueFull" : "NotFound",
        envelope: env,
      });
    }
  }

  /** The messages in ring slots [head, tail) as envelopes: host ones as they were sent. */
  #leftovers(
    bytes: ArrayBuffer,
    metaAt: number,
    msgsAt: number,
    head: number,
    tail: number,
  ): Uint8Array[] {
    const out: Uint8Array[] = [];
    const cap = this.layout.ringCapacity;
    const meta = new Uint32Array(bytes, metaAt, cap * META_WORDS);
    const msgs = new Uint8Array(bytes, msgsAt, cap * this.#slotBytes);
    for (let t = head; t !== tail; t = (t + 1) >>> 0) {
      const slot = t & (cap - 1);
      const m = slot * META_WORDS;
      const tag = meta[m + MetaWord.tag];
      const hostEnv = tag === 0 ? undefined : this.#inflight.get(tag);
      if (hostEnv !== undefined) {
        this.#inflight.delete(tag);
        out.push(hostEnv);
        continue;
      }
      const len = meta[m + MetaWord.payloadBytes];
      const env = new Uint8Array(ENVELOPE_HEADER_BYTES + len);
      env.set(msgs.subarray(slot * this.#slotBytes, slot * this.#slotBytes + len), 64);
      writeHeader(env, {
        typeId: meta[m + MetaWord.typeId],
        length: len,
        source: meta[m + MetaWord.sourceKernel],
        dest: this.numericId,
        tsLo: meta[m + MetaWord.tsLo],
        tsHi: meta[m + MetaWord.tsHi],
        node: meta[m + MetaWord.sourceKernel],
        priority: meta[m + MetaWord.priority],
      });
      out.push(env);
    }
    return out;
  }

  /**
   * Host envelopes still in the GPU ring (a round that never completed: the device was lost),
   * for the caller to give back to the host lanes so that `unhandled` lists them.
   */
  takeInflight(): Uint8Array[] {
    const all = [...this.#inflight.values()];
    this.#inflight.clear();
    return all;
  }

  /** The kernel's HLC word as the host block last mirrored it, [lo, hi]. */
  #hostHlc(): [number, number] {
    const base = CtlWord.controlBlock;
    return [
      Atomics.load(this.#cbWords, CtlCb.hlcLo - base),
      Atomics.load(this.#cbWords, CtlCb.hlcLo + 1 - base),
    ];
  }

  /** The last `lastError` the device stored (0 for none). */
  get deviceLastError(): number {
    return this.#gpuLastError;
  }

  /** Destroys the buffers (the kernel has left every round). */
  destroy(): void {
    for (const name of BUFFER_NAMES) this.#buffers.destroy(this.gpu[name]);
  }
}

/** Writes an envelope header for a message the device made (K2K), checksum off. */
function writeHeader(
  env: Uint8Array,
  h: {
    typeId: number;
    length: number;
    source: number;
    dest: number;
    tsLo: number;
    tsHi: number;
    node: number;
    priority?: number;
  },
): void {
  const dv = new DataView(env.buffer, env.byteOffset, env.length);
  dv.setUint32(EnvelopeOffset.magic, ENVELOPE_MAGIC, true);
  dv.setUint16(EnvelopeOffset.version, ENVELOPE_VERSION, true);
  dv.setUint16(EnvelopeOffset.flags, 0, true);
  dv.setUint32(EnvelopeOffset.typeId, h.typeId, true);
  dv.setUint32(EnvelopeOffset.payloadLength, h.length, true);
  dv.setUint32(EnvelopeOffset.sourceKernel, h.source, true);
  dv.setUint32(EnvelopeOffset.destKernel, h.dest, true);
  dv.setUint32(EnvelopeOffset.timestamp, h.tsLo, true);
  dv.setUint32(EnvelopeOffset.timestamp + 4, h.tsHi, true);
  dv.setUint32(EnvelopeOffset.timestamp + 8, h.node, true);
  dv.setUint32(EnvelopeOffset.priority, h.priority ?? Priority.Normal, true);
}
