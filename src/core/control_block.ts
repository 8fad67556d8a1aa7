/**
 * The 128-byte control block of a kernel: lifecycle state, host commands, counters, queue
 * snapshots and HLC state, read and written by the host and by the kernel (a worker, a CUDA
 * kernel through mapped pinned memory, or a WGSL shader through a storage buffer).
 *
 * Every field is little-endian and at a fixed offset listed in {@linkcode CONTROL_BLOCK_FIELDS}
 * (and in docs/control-block.md); the C and WGSL struct texts are generated from that table by
 * {@linkcode ControlBlock.cStruct} and {@linkcode ControlBlock.wgslStruct}, so all three sides
 * agree by construction.
 *
 * 64-bit counters (`processed`, `dropped`) are pairs of u32 words guarded by the seqlock word
 * `seq`, because WGSL has no 64-bit atomics: the single writer (the kernel) makes `seq` odd,
 * writes the words, and makes it even again; readers retry until they see the same even value
 * before and after reading. The HLC word is different: it is one u64 advanced by 64-bit CAS
 * (see `SharedHlcClock`); a 32-bit reader reads hi, lo, hi and retries when hi changed, which is
 * sound because the word only grows.
 * @module
 */

import { ErrorCode, InvalidStateError, TimeoutError, ValidationError } from "./errors.ts";
import { type HlcClockOptions, SharedHlcClock } from "./hlc.ts";
import { notifyWord, waitWord, waitWordAsync } from "./wait.ts";

/** Bytes of a control block. */
export const CONTROL_BLOCK_BYTES = 128;
/** Magic word at offset 0: "RKCB" read as little-endian bytes. */
export const CONTROL_BLOCK_MAGIC = 0x42434b52;
/** The control block layout version this library reads and writes. */
export const CONTROL_BLOCK_VERSION = 1;

/** Lifecycle states stored at offset 8. */
export const KernelState = {
  /** Control block formatted; nothing launched yet. */
  Created: 0,
  /** The kernel runs but does not process messages until activated. */
  Launched: 1,
  /** Processing messages. */
  Active: 2,
  /** Paused: alive, keeps its state, processes nothing. */
  Deactivated: 3,
  /** Terminate requested and acknowledged; draining and exiting. */
  Terminating: 4,
  /** Exited normally. */
  Terminated: 5,
  /** Exited on an error; see `lastError`. */
  Failed: 6,
} as const;
/** A lifecycle state value. */
export type KernelState = typeof KernelState[keyof typeof KernelState];

/** Command bits the host sets in the `commands` word (offset 12); the kernel clears them. */
export const KernelCommand = {
  /** Start (or resume) processing messages. */
  Activate: 1,
  /** Pause processing. */
  Deactivate: 2,
  /** Finish and exit. */
  Terminate: 4,
  /**
   * Leave the loop with everything in memory, to be launched again and go on where it was. Only
   * the CUDA backend sets it: around driver calls that wait for the device to go idle.
   */
  Park: 8,
} as const;
/** Mask of every defined command bit. */
export const ALL_KERNEL_COMMANDS = 15;

/**
 * Numeric error codes a kernel stores in `lastError` (offset 20). 0 means none; codes at or above
 * 0x1000 are free for backends and user kernels.
 */
export const KernelErrorCode = {
  /** No error. */
  None: 0,
  /** The output queue stayed full; a result was dropped. */
  OutputQueueFull: 1,
  /** A message longer than the queue's slot. */
  MessageTooLarge: 2,
  /** An input message that does not decode. */
  InvalidMessage: 3,
  /** The handler threw or trapped. */
  HandlerFailed: 4,
  /** A command the current state does not allow. */
  InvalidCommand: 5,
} as const;

/** Byte offsets of the control block fields. */
export const ControlBlockOffset = {
  magic: 0,
  version: 4,
  state: 8,
  commands: 12,
  kernelId: 16,
  lastError: 20,
  errorCount: 24,
  inFlight: 28,
  seq: 32,
  processed: 40,
  dropped: 48,
  hlc: 64,
  hlcNodeId: 72,
  inputHead: 80,
  inputTail: 84,
  outputHead: 88,
  outputTail: 92,
  inputCapacity: 96,
  outputCapacity: 100,
  inputMask: 104,
  outputMask: 108,
  heartbeat: 112,
} as const;

/** One row of the layout table the struct texts are generated from. */
export interface ControlBlockField {
  /** Field name in C and WGSL (snake_case). */
  readonly name: string;
  /** Byte offset. */
  readonly offset: number;
  /** `u32`, `u64` (two u32 words `_lo`, `_hi` in WGSL), or `reserved` (`words` u32s). */
  readonly type: "u32" | "u64" | "reserved";
  /** For `reserved`: how many u32 words. */
  readonly words?: number;
  /** Whether device code touches it with atomics (WGSL declares it `atomic<u32>`). */
  readonly atomic: boolean;
  /** One-line description, copied into the struct texts as a comment. */
  readonly doc: string;
}

/** The control block layout, in offset order, covering all 128 bytes. */
export const CONTROL_BLOCK_FIELDS: readonly ControlBlockField[] = [
  { name: "magic", offset: 0, type: "u32", atomic: false, doc: '0x42434B52 ("RKCB")' },
  { name: "version", offset: 4, type: "u32", atomic: false, doc: "layout version (1)" },
  { name: "state", offset: 8, type: "u32", atomic: true, doc: "KernelState" },
  { name: "commands", offset: 12, type: "u32", atomic: true, doc: "KernelCommand bits" },
  { name: "kernel_id", offset: 16, type: "u32", atomic: false, doc: "kernel id" },
  { name: "last_error", offset: 20, type: "u32", atomic: true, doc: "KernelErrorCode" },
  { name: "error_count", offset: 24, type: "u32", atomic: true, doc: "errors so far (wraps)" },
  { name: "in_flight", offset: 28, type: "u32", atomic: true, doc: "messages being handled" },
  { name: "seq", offset: 32, type: "u32", atomic: true, doc: "seqlock of processed/dropped" },
  { name: "reserved36", offset: 36, type: "reserved", words: 1, atomic: false, doc: "zero" },
  { name: "processed", offset: 40, type: "u64", atomic: true, doc: "messages processed" },
  { name: "dropped", offset: 48, type: "u64", atomic: true, doc: "messages dropped" },
  { name: "reserved56", offset: 56, type: "reserved", words: 2, atomic: false, doc: "zero" },
  { name: "hlc", offset: 64, type: "u64", atomic: true, doc: "HLC word physical<<16|logical" },
  { name: "hlc_node_id", offset: 72, type: "u32", atomic: false, doc: "HLC node id" },
  { name: "reserved76", offset: 76, type: "reserved", words: 1, atomic: false, doc: "zero" },
  { name: "input_head", offset: 80, type: "u32", atomic: true, doc: "input head snapshot" },
  { name: "input_tail", offset: 84, type: "u32", atomic: true, doc: "input tail snapshot" },
  { name: "output_head", offset: 88, type: "u32", atomic: true, doc: "output head snapshot" },
  { name: "output_tail", offset: 92, type: "u32", atomic: true, doc: "output tail snapshot" },
  { name: "input_capacity", offset: 96, type: "u32", atomic: false, doc: "input slots" },
  { name: "output_capacity", offset: 100, type: "u32", atomic: false, doc: "output slots" },
  { name: "input_mask", offset: 104, type: "u32", atomic: false, doc: "input_capacity - 1" },
  { name: "output_mask", offset: 108, type: "u32", atomic: false, doc: "output_capacity - 1" },
  { name: "heartbeat", offset: 112, type: "u32", atomic: true, doc: "kernel loop counter" },
  { name: "reserved116", offset: 116, type: "reserved", words: 3, atomic: false, doc: "zero" },
];

/** u32 word indices (offset / 4). */
const W = {
  magic: 0,
  version: 1,
  state: 2,
  commands: 3,
  kernelId: 4,
  lastError: 5,
  errorCount: 6,
  inFlight: 7,
  seq: 8,
  processedLo: 10,
  processedHi: 11,
  droppedLo: 12,
  droppedHi: 13,
  hlcNodeId: 18,
  inputHead: 20,
  inputTail: 21,
  outputHead: 22,
  outputTail: 23,
  inputCapacity: 24,
  outputCapacity: 25,
  inputMask: 26,
  outputMask: 27,
  heartbeat: 28,
} as const;

const TWO_32 = 0x1_0000_0000;
const SEQLOCK_GIVE_UP_MS = 1000;

/** Initial values written by {@linkcode ControlBlock.init}; everything else starts at zero. */
export interface ControlBlockInit {
  /** Kernel id (u32). */
  kernelId?: number;
  /** Node id of the kernel's HLC (u32). */
  hlcNodeId?: number;
  /** Input queue capacity (a power of two, or 0 for none). */
  inputCapacity?: number;
  /** Output queue capacity (a power of two, or 0 for none). */
  outputCapacity?: number;
}

/** Head and tail counters of a queue, as a queue's `stats()` reports them. */
export interface QueueCounters {
  /** The tail counter. */
  readonly enqueued: number;
  /** The head counter. */
  readonly dequeued: number;
}

function checkU32(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 0 || value > 0xffff_ffff) {
    throw new ValidationError(ErrorCode.InvalidArgument, `${name} must be a u32, got ${value}`);
  }
}

function checkCapacityOrZero(name: string, value: number): void {
  if (value !== 0 && (!Number.isInteger(value) || value < 2 || (value & (value - 1)) !== 0)) {
    throw new ValidationError(
      ErrorCode.InvalidCapacity,
      `${name} must be 0 or a power of two >= 2, got ${value}`,
    );
  }
}

/**
 * Typed access to a 128-byte control block in any ArrayBuffer or SharedArrayBuffer.
 *
 * Roles: the host sets commands (`requestActivate`, ...), the kernel takes them, moves `state`,
 * and is the single writer of the seqlock-guarded 64-bit counters (`addProcessed`). Everyone may
 * read everything.
 *
 * @example
 * ```ts
 * import { ControlBlock, KernelCommand, KernelState } from "@ringkernel/core";
 * const cb = ControlBlock.create({ kernelId: 7, inputCapacity: 1024, outputCapacity: 1024 });
 * cb.requestActivate(); // host
 * // kernel (in a worker: new ControlBlock(buffer, byteOffset)):
 * if (cb.takeCommands() & KernelCommand.Activate) cb.state = KernelState.Active;
 * cb.addProcessed(3);
 * console.log(cb.state === KernelState.Active, cb.processed); // true 3
 * ```
 */
export class ControlBlock {
  /** The memory the control block lives in. */
  readonly buffer: ArrayBufferLike;
  /** Start of the control block within {@linkcode buffer} (8-aligned; 128 recommended). */
  readonly byteOffset: number;
  #u32: Uint32Array;
  #i32: Int32Array;
  // Scratch for seqlock reads, so a read allocates nothing until it builds its result.
  #snap = [0, 0, 0, 0];

  /** Attaches to a formatted control block; validates its magic and version. */
  constructor(buffer: ArrayBufferLike, byteOffset = 0) {
    ControlBlock.#checkRegion(buffer, byteOffset);
    this.buffer = buffer;
    this.byteOffset = byteOffset;
    this.#u32 = new Uint32Array(buffer, byteOffset, CONTROL_BLOCK_BYTES >> 2);
    this.#i32 = new Int32Array(buffer, byteOffset, CONTROL_BLOCK_BYTES >> 2);
    const magic = Atomics.load(this.#u32, W.magic);
    if (magic !== CONTROL_BLOCK_MAGIC) {
      throw new ValidationError(
        ErrorCode.InvalidLayout,
        `no control block at offset ${byteOffset}: magic is 0x${magic.toString(16)}`,
      );
    }
    const version = this.#u32[W.version];
    if (version !== CONTROL_BLOCK_VERSION) {
      throw new ValidationError(
        ErrorCode.InvalidLayout,
        `control block version ${version} is not supported (expected ${CONTROL_BLOCK_VERSION})`,
      );
    }
  }

  static #checkRegion(buffer: ArrayBufferLike, byteOffset: number): void {
    if (!Number.isInteger(byteOffset) || byteOffset < 0 || byteOffset % 8 !== 0) {
      throw new ValidationError(
        ErrorCode.InvalidLayout,
        `control block byteOffset must be a non-negative multiple of 8, got ${byteOffset}`,
      );
    }
    if (byteOffset + CONTROL_BLOCK_BYTES > buffer.byteLength) {
      throw new ValidationError(
        ErrorCode.InvalidLayout,
        `a control block needs ${CONTROL_BLOCK_BYTES} bytes at offset ${byteOffset}, ` +
          `the buffer has ${buffer.byteLength}`,
      );
    }
  }

  /** Allocates a SharedArrayBuffer of 128 bytes holding a new control block. */
  static create(init: ControlBlockInit = {}): ControlBlock {
    return ControlBlock.init(new SharedArrayBuffer(CONTROL_BLOCK_BYTES), 0, init);
  }

  /** Formats a control block at `byteOffset` of `buffer` (zeroing all 128 bytes) and attaches. */
  static init(
    buffer: ArrayBufferLike,
    byteOffset: number,
    init: ControlBlockInit = {},
  ): ControlBlock {
    ControlBlock.#checkRegion(buffer, byteOffset);
    const kernelId = init.kernelId ?? 0;
    const nodeId = init.hlcNodeId ?? 0;
    const inCap = init.inputCapacity ?? 0;
    const outCap = init.outputCapacity ?? 0;
    checkU32("kernelId", kernelId);
    checkU32("hlcNodeId", nodeId);
    checkCapacityOrZero("inputCapacity", inCap);
    checkCapacityOrZero("outputCapacity", outCap);
    const u32 = new Uint32Array(buffer, byteOffset, CONTROL_BLOCK_BYTES >> 2);
    Atomics.store(u32, W.magic, 0);
    u32.fill(0, 1);
    u32[W.version] = CONTROL_BLOCK_VERSION;
    u32[W.kernelId] = kernelId;
    u32[W.hlcNodeId] = nodeId;
    u32[W.inputCapacity] = inCap;
    u32[W.inputMask] = inCap === 0 ? 0 : inCap - 1;
    u32[W.outputCapacity] = outCap;
    u32[W.outputMask] = outCap === 0 ? 0 : outCap - 1;
    // Magic last: an opener never accepts a half-formatted block.
    Atomics.store(u32, W.magic, CONTROL_BLOCK_MAGIC);
    return new ControlBlock(buffer, byteOffset);
  }

  /** Attaches to an existing control block; the same as the constructor. */
  static open(buffer: ArrayBufferLike, byteOffset = 0): ControlBlock {
    return new ControlBlock(buffer, byteOffset);
  }

  // ---------------------------------------------------------------- lifecycle

  /** The lifecycle state. Setting it wakes threads waiting in {@linkcode waitForState}. */
  get state(): KernelState {
    return Atomics.load(this.#u32, W.state) as KernelState;
  }

  set state(next: KernelState) {
    Atomics.store(this.#u32, W.state, next);
    notifyWord(this.#i32, W.state);
  }

  /** Moves from `expected` to `next` atomically; returns false (changing nothing) otherwise. */
  compareExchangeState(expected: KernelState, next: KernelState): boolean {
    const ok = Atomics.compareExchange(this.#u32, W.state, expected, next) === expected;
    if (ok) notifyWord(this.#i32, W.state);
    return ok;
  }

  /**
   * Resolves with the state once it is one of `states`; throws {@linkcode TimeoutError} after
   * `timeoutMs`. Polls every `pollMs` too, since a GPU writer cannot notify.
   */
  async waitForState(
    states: KernelState | readonly KernelState[],
    options: { timeoutMs?: number; pollMs?: number } = {},
  ): Promise<KernelState> {
    const wanted: readonly KernelState[] = typeof states === "number" ? [states] : states;
    const deadline = performance.now() + (options.timeoutMs ?? Infinity);
    const pollMs = options.pollMs ?? 5;
    for (;;) {
      const s = this.state;
      if (wanted.includes(s)) return s;
      const left = deadline - performance.now();
      if (left <= 0) {
        throw new TimeoutError(
          ErrorCode.Timeout,
          `kernel state stayed ${s}, not in [${wanted.join(", ")}], for ${options.timeoutMs} ms`,
        );
      }
      await waitWordAsync(this.#i32, W.state, s, Math.min(left, pollMs));
    }
  }

  /** Asks the kernel to start or resume processing. */
  requestActivate(): void {
    this.#command(KernelCommand.Activate);
  }

  /** Asks the kernel to pause. */
  requestDeactivate(): void {
    this.#command(KernelCommand.Deactivate);
  }

  /** Asks the kernel to finish and exit. */
  requestTerminate(): void {
    this.#command(KernelCommand.Terminate);
  }

  /** Asks the kernel to park (CUDA: see {@linkcode KernelCommand.Park}). */
  requestPark(): void {
    this.#command(KernelCommand.Park);
  }

  /** Takes back a Park command the kernel has not taken yet. */
  cancelPark(): void {
    Atomics.and(this.#u32, W.commands, ~KernelCommand.Park);
  }

  #command(bit: number): void {
    Atomics.or(this.#u32, W.commands, bit);
    notifyWord(this.#i32, W.commands);
  }

  /** Command bits set and not yet taken. */
  get pendingCommands(): number {
    return Atomics.load(this.#u32, W.commands);
  }

  /**
   * Kernel side: returns the pending commands within `mask` and clears exactly those bits with
   * one atomic AND, so a command the host sets meanwhile is kept for the next call.
   */
  takeCommands(mask: number = ALL_KERNEL_COMMANDS): number {
    return Atomics.and(this.#u32, W.commands, ~mask >>> 0) & mask;
  }

  /**
   * Kernel side: blocks the thread (`Atomics.wait`; for workers) until a command is pending or
   * `timeoutMs` passes; returns the pending bits (0 on timeout).
   */
  waitForCommands(timeoutMs: number = Infinity): number {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const pending = Atomics.load(this.#u32, W.commands);
      if (pending !== 0) return pending;
      const left = deadline - performance.now();
      if (left <= 0) return 0;
      waitWord(this.#i32, W.commands, 0, left);
    }
  }

  // ---------------------------------------------------------------- identity and errors

  /** Kernel id (u32). */
  get kernelId(): number {
    return Atomics.load(this.#u32, W.kernelId);
  }

  set kernelId(id: number) {
    checkU32("kernelId", id);
    Atomics.store(this.#u32, W.kernelId, id);
  }

  /** Last error code the kernel recorded ({@linkcode KernelErrorCode}; 0 for none). */
  get lastError(): number {
    return Atomics.load(this.#u32, W.lastError);
  }

  /** Errors recorded so far (u32, wraps). */
  get errorCount(): number {
    return Atomics.load(this.#u32, W.errorCount);
  }

  /** Stores `code` as the last error and counts it. */
  recordError(code: number): void {
    checkU32("error code", code);
    Atomics.store(this.#u32, W.lastError, code);
    Atomics.add(this.#u32, W.errorCount, 1);
  }

  // ---------------------------------------------------------------- counters

  /** Messages currently being handled (u32). */
  get inFlight(): number {
    return Atomics.load(this.#u32, W.inFlight);
  }

  /** Adds `delta` (may be negative) to {@linkcode inFlight} and returns the new value. */
  addInFlight(delta: number): number {
    return (Atomics.add(this.#u32, W.inFlight, delta >>> 0) + delta) >>> 0;
  }

  /** The seqlock word: even when the 64-bit counters are stable. */
  get seq(): number {
    return Atomics.load(this.#u32, W.seq);
  }

  /**
   * Kernel side (the single writer): adds to the 64-bit `processed` and `dropped` counters in one
   * seqlock section. Two writers at once would corrupt the counters; give each kernel one.
   */
  addCounters(processed: number, dropped = 0): void {
    const u = this.#u32;
    const s = Atomics.load(u, W.seq);
    Atomics.store(u, W.seq, (s + 1) >>> 0);
    if (processed !== 0) this.#add64(W.processedLo, processed);
    if (dropped !== 0) this.#add64(W.droppedLo, dropped);
    Atomics.store(u, W.seq, (s + 2) >>> 0);
  }

  /** Kernel side: adds `n` to `processed` (see {@linkcode addCounters}). */
  addProcessed(n: number): void {
    this.addCounters(n, 0);
  }

  /** Kernel side: adds `n` to `dropped` (see {@linkcode addCounters}). */
  addDropped(n: number): void {
    this.addCounters(0, n);
  }

  /** Kernel side: sets both 64-bit counters (mainly for tests and restores). */
  setCounters(processed: bigint, dropped: bigint = 0n): void {
    const u = this.#u32;
    const s = Atomics.load(u, W.seq);
    Atomics.store(u, W.seq, (s + 1) >>> 0);
    Atomics.store(u, W.processedLo, Number(BigInt.asUintN(32, processed)));
    Atomics.store(u, W.processedHi, Number(BigInt.asUintN(32, processed >> 32n)));
    Atomics.store(u, W.droppedLo, Number(BigInt.asUintN(32, dropped)));
    Atomics.store(u, W.droppedHi, Number(BigInt.asUintN(32, dropped >> 32n)));
    Atomics.store(u, W.seq, (s + 2) >>> 0);
  }

  #add64(lo: number, n: number): void {
    if (!Number.isSafeInteger(n) || n < 0) {
      throw new ValidationError(
        ErrorCode.InvalidArgument,
        `counter increments must be non-negative safe integers, got ${n}`,
      );
    }
    const u = this.#u32;
    const sumLo = Atomics.load(u, lo) + (n % TWO_32);
    const carry = sumLo >= TWO_32 ? 1 : 0;
    Atomics.store(u, lo, sumLo >>> 0);
    Atomics.store(u, lo + 1, (Atomics.load(u, lo + 1) + Math.floor(n / TWO_32) + carry) >>> 0);
  }

  /** Reads a seqlock-guarded pair as [lo, hi]; retries while a write is in progress. */
  #read64(lo: number): [number, number] {
    this.#readSection(lo, 2);
    return [this.#snap[0], this.#snap[1]];
  }

  /** Copies `words` words from `first` into #snap under the seqlock. */
  #readSection(first: number, words: number): void {
    const u = this.#u32;
    const snap = this.#snap;
    let spins = 0;
    let since = 0;
    for (;;) {
      const s1 = Atomics.load(u, W.seq);
      if ((s1 & 1) === 0) {
        for (let i = 0; i < words; i++) snap[i] = Atomics.load(u, first + i);
        if (Atomics.load(u, W.seq) === s1) return;
      }
      // A writer that died inside its section would leave seq odd for ever: fail, don't hang.
      if (++spins % 1024 === 0) {
        const t = performance.now();
        if (since === 0) since = t;
        else if (t - since > SEQLOCK_GIVE_UP_MS) {
          throw new InvalidStateError(
            ErrorCode.InvalidState,
            `control block seqlock stuck at ${s1} for ${SEQLOCK_GIVE_UP_MS} ms (writer gone?)`,
          );
        }
      }
    }
  }

  /** Both 64-bit counters from one consistent snapshot (one seqlock read section). */
  readCounters(): { processed: bigint; dropped: bigint } {
    this.#readSection(W.processedLo, 4);
    const [pLo, pHi, dLo, dHi] = this.#snap;
    return {
      processed: (BigInt(pHi) << 32n) | BigInt(pLo),
      dropped: (BigInt(dHi) << 32n) | BigInt(dLo),
    };
  }

  /** Messages processed (64-bit, read consistently; exact below 2^53). */
  get processed(): number {
    const [lo, hi] = this.#read64(W.processedLo);
    return hi * TWO_32 + lo;
  }

  /** Messages processed, exact. */
  get processedBigInt(): bigint {
    const [lo, hi] = this.#read64(W.processedLo);
    return (BigInt(hi) << 32n) | BigInt(lo);
  }

  /** Messages dropped (64-bit, read consistently; exact below 2^53). */
  get dropped(): number {
    const [lo, hi] = this.#read64(W.droppedLo);
    return hi * TWO_32 + lo;
  }

  /** Messages dropped, exact. */
  get droppedBigInt(): bigint {
    const [lo, hi] = this.#read64(W.droppedLo);
    return (BigInt(hi) << 32n) | BigInt(lo);
  }

  // ---------------------------------------------------------------- HLC

  /** Node id of the kernel's HLC. */
  get hlcNodeId(): number {
    return Atomics.load(this.#u32, W.hlcNodeId);
  }

  set hlcNodeId(id: number) {
    checkU32("hlcNodeId", id);
    Atomics.store(this.#u32, W.hlcNodeId, id);
  }

  /**
   * A {@linkcode SharedHlcClock} over the HLC word at offset 64, stamping with `nodeId` (default:
   * the block's `hlcNodeId`). Host and kernel handles advance the same clock.
   */
  hlcClock(options: HlcClockOptions & { nodeId?: number } = {}): SharedHlcClock {
    return new SharedHlcClock(
      this.buffer,
      this.byteOffset + ControlBlockOffset.hlc,
      options.nodeId ?? this.hlcNodeId,
      options,
    );
  }

  // ---------------------------------------------------------------- queue snapshots

  /**
   * Copies head/tail of the input and output queues into the block. These are snapshots the
   * kernel publishes for observers; the authoritative counters live in the queue headers.
   */
  snapshotQueues(input?: QueueCounters, output?: QueueCounters): void {
    const u = this.#u32;
    if (input !== undefined) {
      Atomics.store(u, W.inputHead, input.dequeued >>> 0);
      Atomics.store(u, W.inputTail, input.enqueued >>> 0);
    }
    if (output !== undefined) {
      Atomics.store(u, W.outputHead, output.dequeued >>> 0);
      Atomics.store(u, W.outputTail, output.enqueued >>> 0);
    }
  }

  /** Input queue head snapshot. */
  get inputHead(): number {
    return Atomics.load(this.#u32, W.inputHead);
  }

  /** Input queue tail snapshot. */
  get inputTail(): number {
    return Atomics.load(this.#u32, W.inputTail);
  }

  /** Output queue head snapshot. */
  get outputHead(): number {
    return Atomics.load(this.#u32, W.outputHead);
  }

  /** Output queue tail snapshot. */
  get outputTail(): number {
    return Atomics.load(this.#u32, W.outputTail);
  }

  /** Input queue capacity (0 for none); setting it also sets `input_mask`. */
  get inputCapacity(): number {
    return Atomics.load(this.#u32, W.inputCapacity);
  }

  set inputCapacity(capacity: number) {
    checkCapacityOrZero("inputCapacity", capacity);
    Atomics.store(this.#u32, W.inputCapacity, capacity);
    Atomics.store(this.#u32, W.inputMask, capacity === 0 ? 0 : capacity - 1);
  }

  /** Output queue capacity (0 for none); setting it also sets `output_mask`. */
  get outputCapacity(): number {
    return Atomics.load(this.#u32, W.outputCapacity);
  }

  set outputCapacity(capacity: number) {
    checkCapacityOrZero("outputCapacity", capacity);
    Atomics.store(this.#u32, W.outputCapacity, capacity);
    Atomics.store(this.#u32, W.outputMask, capacity === 0 ? 0 : capacity - 1);
  }

  /** `inputCapacity - 1` (0 for none). */
  get inputMask(): number {
    return Atomics.load(this.#u32, W.inputMask);
  }

  /** `outputCapacity - 1` (0 for none). */
  get outputMask(): number {
    return Atomics.load(this.#u32, W.outputMask);
  }

  // ---------------------------------------------------------------- liveness

  /** Kernel-side loop counter (u32, wraps); a host watchdog sees it move while the kernel lives. */
  get heartbeat(): number {
    return Atomics.load(this.#u32, W.heartbeat);
  }

  /** Kernel side: bumps the heartbeat and returns the new value. */
  beat(): number {
    return (Atomics.add(this.#u32, W.heartbeat, 1) + 1) >>> 0;
  }

  // ---------------------------------------------------------------- struct texts

  /**
   * The control block as a C/C++/CUDA struct (no includes, so NVRTC compiles it), with the
   * magic, state, command and error constants, generated from {@linkcode CONTROL_BLOCK_FIELDS}.
   * With `asserts`, appends `static_assert`s on every offset and on the size (C++11 and later).
   */
  static cStruct(options: { name?: string; asserts?: boolean } = {}): string {
    const name = options.name ?? "RkControlBlock";
    const lines: string[] = [
      "// Generated by ControlBlock.cStruct() from CONTROL_BLOCK_FIELDS; do not edit.",
      "// All fields little-endian. Touch `atomic` fields with atomics or volatile accesses.",
      `#define RK_CB_MAGIC 0x${CONTROL_BLOCK_MAGIC.toString(16).toUpperCase()}u`,
      `#define RK_CB_VERSION ${CONTROL_BLOCK_VERSION}u`,
      `#define RK_CB_BYTES ${CONTROL_BLOCK_BYTES}u`,
      ...constants("#define RK_STATE_", KernelState, (k, v) => `${k} ${v}u`),
      ...constants("#define RK_CMD_", KernelCommand, (k, v) => `${k} ${v}u`),
      ...constants("#define RK_ERR_", KernelErrorCode, (k, v) => `${k} ${v}u`),
      `struct ${name} {`,
    ];
    for (const f of CONTROL_BLOCK_FIELDS) {
      const decl = f.type === "u32"
        ? `unsigned int ${f.name};`
        : f.type === "u64"
        ? `unsigned long long ${f.name};`
        : `unsigned int ${f.name}[${f.words}];`;
      lines.push(`  ${decl.padEnd(40)}// @${f.offset}: ${f.doc}`);
    }
    lines.push("};");
    if (options.asserts) {
      for (const f of CONTROL_BLOCK_FIELDS) {
        lines.push(
          `static_assert(__builtin_offsetof(struct ${name}, ${f.name}) == ${f.offset}, ` +
            `"${f.name} offset");`,
        );
      }
      lines.push(
        `static_assert(sizeof(struct ${name}) == ${CONTROL_BLOCK_BYTES}, "${name} size");`,
      );
    }
    return lines.join("\n") + "\n";
  }

  /**
   * The control block as a WGSL struct for a `storage, read_write` binding, with the constants,
   * generated from {@linkcode CONTROL_BLOCK_FIELDS}. u64 fields become `_lo`/`_hi` u32 pairs
   * (WGSL has no 64-bit integers); fields touched concurrently are `atomic<u32>`.
   */
  static wgslStruct(options: { name?: string } = {}): string {
    const name = options.name ?? "RkControlBlock";
    const lines: string[] = [
      "// Generated by ControlBlock.wgslStruct() from CONTROL_BLOCK_FIELDS; do not edit.",
      `const RK_CB_MAGIC: u32 = 0x${CONTROL_BLOCK_MAGIC.toString(16).toUpperCase()}u;`,
      // The same constants as the C text, so a shader can check the block it was given.
      `const RK_CB_VERSION: u32 = ${CONTROL_BLOCK_VERSION}u;`,
      `const RK_CB_BYTES: u32 = ${CONTROL_BLOCK_BYTES}u;`,
      ...constants("const RK_STATE_", KernelState, (k, v) => `${k}: u32 = ${v}u;`),
      ...constants("const RK_CMD_", KernelCommand, (k, v) => `${k}: u32 = ${v}u;`),
      ...constants("const RK_ERR_", KernelErrorCode, (k, v) => `${k}: u32 = ${v}u;`),
      `struct ${name} {`,
    ];
    for (const f of CONTROL_BLOCK_FIELDS) {
      const t = f.atomic ? "atomic<u32>" : "u32";
      if (f.type === "u32") lines.push(`  ${f.name}: ${t}, // @${f.offset}: ${f.doc}`);
      else if (f.type === "u64") {
        lines.push(`  ${f.name}_lo: ${t}, // @${f.offset}: ${f.doc} (low word)`);
        lines.push(`  ${f.name}_hi: ${t}, // @${f.offset + 4}: high word`);
      } else if (f.words === 1) lines.push(`  ${f.name}: u32, // @${f.offset}: ${f.doc}`);
      else lines.push(`  ${f.name}: array<u32, ${f.words}>, // @${f.offset}: ${f.doc}`);
    }
    lines.push("}");
    return lines.join("\n") + "\n";
  }
}

function constants(
  prefix: string,
  table: Readonly<Record<string, number>>,
  format: (key: string, value: number) => string,
): string[] {
  return Object.entries(table).map(([k, v]) => prefix + format(upperSnake(k), v));
}

function upperSnake(name: string): string {
  return name.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toUpperCase();
}
