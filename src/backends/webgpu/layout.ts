/**
 * The storage buffers a WebGPU kernel lives in, word by word. One table here feeds both sides:
 * the WGSL the backend generates (`shaders.ts` turns these into `const` declarations) and the
 * host code that writes and reads the buffers, so the two cannot disagree. docs/webgpu.md draws
 * the same layouts with byte offsets.
 *
 * A kernel owns eight buffers (the WebGPU minimum of eight storage buffers per stage, all used):
 *
 * | binding | buffer     | what                                                               |
 * | ------- | ---------- | ------------------------------------------------------------------ |
 * | 0       | `msgs`     | input ring payloads, `ringCapacity` slots of `slotWords` words     |
 * | 1       | `state`    | the kernel's state struct (kept across dispatches)                 |
 * | 2       | `replies`  | reply payloads of the last dispatch, `batchCapacity` entries       |
 * | 3       | `replied`  | per reply entry: 1 when the handler returned a value               |
 * | 4       | `outbox`   | `ctx.send` records of the last dispatch (see the DSL's ABI)         |
 * | 5       | `ctl`      | handler words, host words, device words, control block, K2K routes |
 * | 6       | `inMeta`   | input ring metadata, {@linkcode META_WORDS} words per slot           |
 * | 7       | `outMeta`  | metadata of each reply entry, {@linkcode META_WORDS} words          |
 * @module
 */

import { ControlBlockOffset } from "../../core/control_block.ts";
import { KernelWord } from "../../runtime/kernel_memory.ts";

/** Words of the `ctl` region before the K2K route table. */
export const CTL_FIXED_WORDS = 96;
/** Words per K2K route table entry. */
export const ROUTE_WORDS = 8;
/** Words per input-ring and reply metadata record. */
export const META_WORDS = 8;

/**
 * u32 word indices of a kernel's `ctl` buffer. Words 0..7 are the DSL handler's control words
 * (docs/dsl.md); 8..15 the host writes before every round the kernel takes part in; 16..31 are
 * the device's; 32..63 are a control block in the layout of `ControlBlock` (docs/control-block.md)
 * and 64..95 the runtime words of `KernelWord`, so the host mirrors both by copying words; the K2K
 * route table follows at {@linkcode CtlWord.routes}.
 */
export const CtlWord = {
  /** Handler: messages in the dispatch (informational here: the entry loops itself). */
  count: 0,
  /** Handler: outbox capacity in records (constant, set at launch). */
  sendCapacity: 1,
  /** Handler: `ctx.send` calls in this dispatch (records beyond the capacity are not written). */
  sendCount: 2,
  /** Handler: the HLC word's low half while the handler runs (`ctx.now()` ticks it). */
  hlcLo: 3,
  /** Handler: the HLC word's high half. */
  hlcHi: 4,
  /** Handler: the kernel's numeric id (`ctx.now().nodeId`). */
  nodeId: 5,

  /** Host: messages this dispatch may handle (free slots of the host's output queue). */
  batchMax: 8,
  /** Ring: producer counter (host appends before the submission, K2K routes during it). */
  ringTail: 9,
  /** Host: physical time of the round as an HLC word (`ms << 16`), low half. */
  ptLo: 10,
  /** Host: high half of the same. */
  ptHi: 11,
  /** Host: round number (diagnostics). */
  round: 12,
  /** Host: 1 when the host input lanes were empty after this round's upload (drain ends). */
  lanesEmpty: 13,

  /** Ring: consumer counter (the kernel's dispatch advances it). */
  ringHead: 16,
  /** Ring: slots (a power of two; constant). */
  ringCapacity: 17,
  /** Ring: payload words per slot (constant). */
  slotWords: 18,
  /** Reply entries written by the last dispatch. */
  outCount: 19,
  /** Outbox records at most per message before a batch is cut (constant). */
  sendReserve: 20,

  /** The control block (`ControlBlock` layout) starts here. */
  controlBlock: 32,
  /** The runtime words (`KernelWord` layout) start here. */
  kernelWords: 64,
  /** The K2K route table starts here: {@linkcode ROUTE_WORDS} words per send target. */
  routes: CTL_FIXED_WORDS,
} as const;

const cb = (byteOffset: number): number => CtlWord.controlBlock + byteOffset / 4;
const kw = (index: number): number => CtlWord.kernelWords + index;

/** `ctl` word indices of the control block fields the device touches. */
export const CtlCb = {
  /** `state` (KernelState). */
  state: cb(ControlBlockOffset.state),
  /** `commands` (KernelCommand bits the host passed this round; the dispatch clears them). */
  commands: cb(ControlBlockOffset.commands),
  /** `last_error`. */
  lastError: cb(ControlBlockOffset.lastError),
  /** `error_count`. */
  errorCount: cb(ControlBlockOffset.errorCount),
  /** `seq` (seqlock of the 64-bit counters). */
  seq: cb(ControlBlockOffset.seq),
  /** `processed` low word (high word follows). */
  processedLo: cb(ControlBlockOffset.processed),
  /** `dropped` low word (high word follows). */
  droppedLo: cb(ControlBlockOffset.dropped),
  /** The HLC word's low half (high half follows). */
  hlcLo: cb(ControlBlockOffset.hlc),
  /** `input_head` snapshot (the GPU ring's head). */
  inputHead: cb(ControlBlockOffset.inputHead),
  /** `input_tail` snapshot (the GPU ring's tail as the dispatch saw it). */
  inputTail: cb(ControlBlockOffset.inputTail),
  /** `heartbeat`: one per dispatch. */
  heartbeat: cb(ControlBlockOffset.heartbeat),
} as const;

/** `ctl` word indices of the runtime words the device touches. */
export const CtlKw = {
  /** K2K sends attempted. */
  k2kSent: kw(KernelWord.k2kSent),
  /** K2K sends delivered into a destination ring. */
  k2kDelivered: kw(KernelWord.k2kDelivered),
  /** K2K sends refused: destination ring full (or the outbox overflowed). */
  k2kQueueFull: kw(KernelWord.k2kQueueFull),
  /** K2K sends to no live kernel. */
  k2kNotFound: kw(KernelWord.k2kNotFound),
  /** 1 drain, 0 leave: written by the host with a terminate command. */
  terminateMode: kw(KernelWord.terminateMode),
} as const;

/** Words of a route table entry (at `CtlWord.routes + ROUTE_WORDS * target`). */
export const RouteWord = {
  /** 1 when a live K2K kernel of the right input type answers to the target's id. */
  present: 0,
  /** Its numeric id. */
  destKernel: 1,
  /** Payload words of the sent schema. */
  payloadWords: 2,
  /** The sent schema's typeId. */
  typeId: 3,
  /** The destination ring's slot stride in words. */
  destSlotWords: 4,
} as const;

/** Words of an input-ring metadata record (and of a reply entry's metadata record). */
export const MetaWord = {
  /** Host tag of the message (0 for a K2K message). */
  tag: 0,
  /** Numeric id of the sender (0 the host). */
  sourceKernel: 1,
  /** Input: the message's HLC word (low). Reply: the reply's HLC word. */
  tsLo: 2,
  /** High half of the same. */
  tsHi: 3,
  /** The payload's typeId. */
  typeId: 4,
  /** Payload bytes. */
  payloadBytes: 5,
  /** Envelope priority. */
  priority: 6,
} as const;

/** Status a route pass stores in bits 24..31 of an outbox record's word 0. */
export const SendStatus = {
  /** Written into the destination's ring. */
  Delivered: 1,
  /** The destination's ring was full: returned to the host (a dead letter). */
  QueueFull: 2,
  /** No live kernel (or a terminating one) under that id: returned to the host. */
  NotFound: 3,
} as const;

/** `lastError` code a dispatch stores when `ctx.send` calls overflowed the outbox. */
export const OUTBOX_OVERFLOW_ERROR = 0x1010;

/** Sizes of one kernel's buffers, in bytes, and the counts they derive from. */
export interface GpuKernelLayout {
  /** Input ring slots. */
  readonly ringCapacity: number;
  /** Payload words per ring slot. */
  readonly slotWords: number;
  /** Reply entries per dispatch at most. */
  readonly batchCapacity: number;
  /** Words per reply payload entry. */
  readonly replyWords: number;
  /** Outbox records. */
  readonly outboxRecords: number;
  /** Words per outbox record. */
  readonly outboxStride: number;
  /** Send targets (route table entries). */
  readonly targets: number;
  /** Bytes of each buffer, by binding. */
  readonly bytes: {
    readonly msgs: number;
    readonly state: number;
    readonly replies: number;
    readonly replied: number;
    readonly outbox: number;
    readonly ctl: number;
    readonly inMeta: number;
    readonly outMeta: number;
  };
}

/** Largest batch a dispatch takes (the host's output queue bounds it further). */
export const MAX_BATCH = 4096;
/** Outbox records per batch entry: a batch is cut before fewer than this many remain free. */
export const SEND_RESERVE = 4;

const atLeast = (n: number, min: number): number => Math.max(min, Math.ceil(n / 4) * 4);

/** The buffer sizes of a kernel: ring and batch in slots, strides in words. */
export function gpuKernelLayout(spec: {
  ringCapacity: number;
  outputCapacity: number;
  slotWords: number;
  replyWords: number;
  stateBytes: number;
  outboxStride: number;
  targets: number;
}): GpuKernelLayout {
  const batchCapacity = Math.min(MAX_BATCH, spec.ringCapacity, spec.outputCapacity);
  const outboxRecords = spec.targets === 0 ? 0 : batchCapacity * SEND_RESERVE;
  // A runtime-sized array binding needs room for one element at least.
  const one = (words: number) => atLeast(4 * words, 16);
  return {
    ringCapacity: spec.ringCapacity,
    slotWords: spec.slotWords,
    batchCapacity,
    replyWords: spec.replyWords,
    outboxRecords,
    outboxStride: spec.outboxStride,
    targets: spec.targets,
    bytes: {
      msgs: Math.max(one(spec.slotWords), 4 * spec.slotWords * spec.ringCapacity),
      state: Math.max(16, atLeast(spec.stateBytes, 16)),
      replies: Math.max(one(spec.replyWords), 4 * spec.replyWords * batchCapacity),
      replied: atLeast(4 * batchCapacity, 16),
      outbox: atLeast(4 * spec.outboxStride * outboxRecords, 16),
      ctl: 4 * (CTL_FIXED_WORDS + ROUTE_WORDS * spec.targets),
      inMeta: 4 * META_WORDS * spec.ringCapacity,
      outMeta: 4 * META_WORDS * batchCapacity,
    },
  };
}
