/**
 * The byte layout shared by {@linkcode SpscQueue} and {@linkcode MpscQueue}: one region format for
 * every place a queue lives (a SharedArrayBuffer between workers, mapped pinned host memory
 * between host and a CUDA kernel, device memory, a WebGPU storage buffer). docs/queues.md gives
 * the same table and the algorithms, for authors of the CUDA C and WGSL sides.
 *
 * All words are little-endian u32. Counters are 32-bit and wrap; they are compared with signed
 * differences `(a - b) | 0`, which is exact while fewer than 2^31 slots separate them (capacity
 * is at most 2^30). Words written by producers and words written by the consumer sit on
 * separate 128-byte lines (the GPU cache-line size; this also avoids false sharing on CPUs).
 * `rejectedFull` shares the producers' line because only producers write it, and they may write
 * it on every failed attempt while spinning on a full queue; the wait line is written only when
 * a side parks or wakes the other, so on the fast path both sides merely read it.
 *
 * ```
 * offset  size          field
 * 0       u32           magic 0x31514B52 ("RKQ1" in memory order)
 * 4       u32           version (1)
 * 8       u32           kind (0 SPSC, 1 MPSC)
 * 12      u32           capacity (power of two, 2..2^30)
 * 16      u32           slotSize (data bytes per slot, multiple of 16)
 * 20      u32           mask (capacity - 1)
 * 24      u32           flags (QueueFlag: bit 0 sealed slots)
 * 28..127               reserved, zero
 * 128     u32           tail: producers' counter (MPSC: reservation counter)   [producers' line]
 * 132     u32           rejectedFull: messages refused because the queue was full
 * 136..255              reserved, zero
 * 256     u32           head: consumer's counter                               [consumer's line]
 * 260..383              reserved, zero
 * 384     u32           dataSignal: bumped by producers to wake a waiting consumer  [wait line]
 * 388     u32           consumerWaiting: number of consumer waiters (host side only)
 * 392     u32           spaceSignal: bumped by the consumer to wake waiting producers
 * 396     u32           producersWaiting: number of producer waiters (host side only)
 * 400..511              reserved, zero
 * 512     u32[capacity] seq: per-slot publication sequence (MPSC; SPSC leaves it alone)
 * 512+4c  u32[capacity] len: message length in bytes per slot
 * D       u8[c * slotSize] data, D = align128(512 + 8 * capacity)
 * ```
 * The region's byte length is `align128(D + capacity * slotSize)`, so regions pack back to back.
 *
 * A **sealed** region (flag bit 0) carries every message as a stream, the u32 length then the
 * bytes, cut into 12-byte pieces; piece j fills words 0-2 of the slot's 16-byte vector j and word 3
 * holds the seal of the slot's ticket t, `t + 1`. A reader that loads a vector and finds the seal
 * knows the vector is this message's, whatever order its loads were served in: the GPU polls a
 * slot's bytes in the same PCIe round trip as its sequence word and needs no fence (see
 * {@linkcode SEALED_VECTOR_BYTES}).
 * {@linkcode queueHeaderC} and {@linkcode queueHeaderWgsl} generate the header structs from
 * {@linkcode QueueOffset}.
 * @module
 */

import { CapacityError, ErrorCode, ValidationError } from "./errors.ts";

/** The magic word at offset 0 of every queue region: "RKQ1" read as little-endian bytes. */
export const QUEUE_MAGIC = 0x31514b52;
/** The layout version this library reads and writes. */
export const QUEUE_VERSION = 1;
/** Alignment of a queue region's start and of its data array, in bytes. */
export const QUEUE_ALIGN = 128;
/** Smallest allowed capacity. */
export const QUEUE_MIN_CAPACITY = 2;
/** Largest allowed capacity: keeps signed 32-bit counter differences exact. */
export const QUEUE_MAX_CAPACITY = 2 ** 30;
/** `slotSize` must be a positive multiple of this (keeps every slot 16-byte aligned). */
export const QUEUE_SLOT_ALIGN = 16;

/** Which algorithm a region is formatted for (u32 at offset 8). */
export const QueueKind = {
  /** Single producer, single consumer: head/tail only. */
  Spsc: 0,
  /** Multiple producers (CAS on tail, per-slot sequence numbers), single consumer. */
  Mpsc: 1,
} as const;
/** The numeric kind stored in a queue header. */
export type QueueKind = typeof QueueKind[keyof typeof QueueKind];

/** Bits of the header's `flags` word. */
export const QueueFlag = {
  /** Sealed slots: every 16-byte vector of a message carries its ticket's seal (see above). */
  Sealed: 1,
} as const;

/**
 * Message bytes a sealed slot keeps per 16-byte vector; the fourth word is the seal. The seal
 * makes a vector self-validating only if a vector is read and written as one piece: true of the
 * GPU's 16-byte loads and stores of mapped host memory on the H100 (one PCIe request each, one
 * cache line), and of the host's word stores read in program order (x86 keeps stores in order;
 * the seal is stored last, with `Atomics.store`). GPU tests check every message's bytes.
 */
export const SEALED_VECTOR_BYTES = 12;

/** The seal of ticket `t` (u32 as a signed 32-bit value): `t + 1`. */
export const sealOf = (t: number): number => (t + 1) | 0;

/** 16-byte vectors a sealed message of `length` bytes spans (its u32 length first). */
export const sealedVectors = (length: number): number =>
  Math.ceil((4 + length) / SEALED_VECTOR_BYTES) || 1;

/** Slot stride that holds a sealed message of `maxMessage` bytes (a multiple of 16). */
export const sealedSlotSize = (maxMessage: number): number => 16 * sealedVectors(maxMessage);

/** Byte offsets of the fixed words, relative to the start of the region. */
export const QueueOffset = {
  magic: 0,
  version: 4,
  kind: 8,
  capacity: 12,
  slotSize: 16,
  mask: 20,
  flags: 24,
  tail: 128,
  rejectedFull: 132,
  head: 256,
  dataSignal: 384,
  consumerWaiting: 388,
  spaceSignal: 392,
  producersWaiting: 396,
  seq: 512,
} as const;

/** Bytes of the fixed header before the `seq` array. */
export const QUEUE_HEADER_BYTES = 512;

/**
 * Indices into an Int32Array over the header (`byteOffset / 4`), for the hot paths.
 * @internal
 */
export const QueueWord = {
  magic: QueueOffset.magic >> 2,
  version: QueueOffset.version >> 2,
  kind: QueueOffset.kind >> 2,
  capacity: QueueOffset.capacity >> 2,
  slotSize: QueueOffset.slotSize >> 2,
  mask: QueueOffset.mask >> 2,
  flags: QueueOffset.flags >> 2,
  tail: QueueOffset.tail >> 2,
  head: QueueOffset.head >> 2,
  rejectedFull: QueueOffset.rejectedFull >> 2,
  dataSignal: QueueOffset.dataSignal >> 2,
  consumerWaiting: QueueOffset.consumerWaiting >> 2,
  spaceSignal: QueueOffset.spaceSignal >> 2,
  producersWaiting: QueueOffset.producersWaiting >> 2,
} as const;

/** Where the arrays of a queue region start, relative to the region. */
export interface QueueRegionLayout {
  /** Number of slots. */
  readonly capacity: number;
  /** Bytes per slot: the stride of the data array. */
  readonly slotSize: number;
  /** Whether slots are sealed (see the module docs). */
  readonly sealed: boolean;
  /** Largest message: `slotSize`, or what a sealed slot of that stride holds. */
  readonly maxMessage: number;
  /** Offset of `seq[capacity]` (always {@linkcode QUEUE_HEADER_BYTES}). */
  readonly seqOffset: number;
  /** Offset of `len[capacity]`. */
  readonly lenOffset: number;
  /** Offset of the data array (128-aligned). */
  readonly dataOffset: number;
  /** Total bytes of the region, a multiple of 128. */
  readonly byteLength: number;
}

/** Options that format a queue region. */
export interface QueueOptions {
  /** Number of slots: a power of two in 2..2^30. */
  capacity: number;
  /** Largest message in bytes; rounded up to a multiple of 16. Default 64. */
  slotSize?: number;
  /**
   * Value head and tail start from (u32, default 0). Any start is valid; tests use one just below
   * 2^32 to exercise counter wrap-around.
   */
  initialCounter?: number;
  /**
   * Sealed slots (see the module docs): each 16-byte vector carries 12 message bytes and its
   * ticket's seal, so a reader validates a slot from its bytes alone. `slotSize` stays the
   * largest message; the stride grows to {@linkcode sealedSlotSize} of it. Default false.
   */
  sealed?: boolean;
}

/** Options of `SpscQueue.create` and `MpscQueue.create`. */
export interface QueueCreateOptions extends QueueOptions {
  /** Allocate a plain ArrayBuffer (one thread only) instead of a SharedArrayBuffer. */
  shared?: boolean;
}

/** Allocates a buffer of `byteLength` bytes, shared unless told otherwise. */
export function allocateQueueBuffer(byteLength: number, shared = true): ArrayBufferLike {
  return shared ? new SharedArrayBuffer(byteLength) : new ArrayBuffer(byteLength);
}

/** Default data bytes per slot. */
export const DEFAULT_SLOT_SIZE = 64;

function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

/** Throws {@linkcode CapacityError} unless `capacity` is a power of two in 2..2^30. */
export function checkQueueCapacity(capacity: number): void {
  if (
    !isPowerOfTwo(capacity) || capacity < QUEUE_MIN_CAPACITY || capacity > QUEUE_MAX_CAPACITY
  ) {
    throw new CapacityError(
      ErrorCode.InvalidCapacity,
      `queue capacity must be a power of two in [${QUEUE_MIN_CAPACITY}, 2^30], got ${capacity}`,
    );
  }
}

/** Rounds a requested message size up to a valid slot size (a positive multiple of 16). */
export function normalizeSlotSize(slotSize: number = DEFAULT_SLOT_SIZE): number {
  if (!Number.isInteger(slotSize) || slotSize < 1 || slotSize > 0x7fff_fff0) {
    throw new ValidationError(
      ErrorCode.InvalidArgument,
      `queue slotSize must be an integer in [1, 2^31 - 16], got ${slotSize}`,
    );
  }
  return Math.ceil(slotSize / QUEUE_SLOT_ALIGN) * QUEUE_SLOT_ALIGN;
}

/**
 * Where everything lives in a region of the given capacity and slot size. Sealed: `slotSize` is
 * the largest message and the layout's `slotSize` the stride that holds it sealed.
 */
export function queueLayout(
  capacity: number,
  slotSize: number = DEFAULT_SLOT_SIZE,
  sealed = false,
): QueueRegionLayout {
  checkQueueCapacity(capacity);
  const rounded = normalizeSlotSize(slotSize); // validates slotSize too
  const slot = sealed ? sealedSlotSize(slotSize) : rounded;
  const seqOffset = QUEUE_HEADER_BYTES;
  const lenOffset = seqOffset + 4 * capacity;
  const dataOffset = Math.ceil((lenOffset + 4 * capacity) / QUEUE_ALIGN) * QUEUE_ALIGN;
  return {
    capacity,
    slotSize: slot,
    sealed,
    maxMessage: sealed ? (slot / 16) * SEALED_VECTOR_BYTES - 4 : slot,
    seqOffset,
    lenOffset,
    dataOffset,
    // Rounded up so that regions placed back to back stay 128-aligned.
    byteLength: Math.ceil((dataOffset + capacity * slot) / QUEUE_ALIGN) * QUEUE_ALIGN,
  };
}

/**
 * Bytes a queue region of `capacity` slots of `slotSize` bytes occupies.
 *
 * @example
 * ```ts
 * import { queueByteLength } from "@ringkernel/core";
 * console.log(queueByteLength(1024, 64)); // 512 + 8 KiB of seq/len + 64 KiB of data
 * ```
 */
export function queueByteLength(
  capacity: number,
  slotSize: number = DEFAULT_SLOT_SIZE,
  sealed = false,
): number {
  return queueLayout(capacity, slotSize, sealed).byteLength;
}

function checkRegionStart(buffer: ArrayBufferLike, byteOffset: number): void {
  if (!Number.isInteger(byteOffset) || byteOffset < 0 || byteOffset % QUEUE_ALIGN !== 0) {
    throw new ValidationError(
      ErrorCode.InvalidLayout,
      `queue byteOffset must be a non-negative multiple of ${QUEUE_ALIGN}, got ${byteOffset}`,
    );
  }
  if (byteOffset + QUEUE_HEADER_BYTES > buffer.byteLength) {
    throw new CapacityError(
      ErrorCode.InvalidLayout,
      `a queue header needs ${QUEUE_HEADER_BYTES} bytes at offset ${byteOffset}, ` +
        `but the buffer has ${buffer.byteLength}`,
    );
  }
}

function checkFits(buffer: ArrayBufferLike, byteOffset: number, layout: QueueRegionLayout): void {
  if (byteOffset + layout.byteLength > buffer.byteLength) {
    throw new CapacityError(
      ErrorCode.InvalidLayout,
      `a queue of ${layout.capacity} x ${layout.slotSize}-byte slots needs ${layout.byteLength} ` +
        `bytes at offset ${byteOffset}, but the buffer has ${buffer.byteLength}`,
    );
  }
}

/**
 * Formats a queue region in place and returns its layout. Must finish before any other agent
 * opens the region; the magic word is written last so that a concurrent opener never accepts a
 * half-formatted header.
 */
export function initQueueRegion(
  buffer: ArrayBufferLike,
  byteOffset: number,
  kind: QueueKind,
  options: QueueOptions,
): QueueRegionLayout {
  checkRegionStart(buffer, byteOffset);
  const sealed = options.sealed === true;
  const layout = queueLayout(options.capacity, options.slotSize, sealed);
  checkFits(buffer, byteOffset, layout);
  const start = options.initialCounter ?? 0;
  if (!Number.isInteger(start) || start < 0 || start > 0xffff_ffff) {
    throw new ValidationError(
      ErrorCode.InvalidArgument,
      `queue initialCounter must be a u32, got ${start}`,
    );
  }
  const { capacity } = layout;
  const header = new Int32Array(buffer, byteOffset, QUEUE_HEADER_BYTES >> 2);
  Atomics.store(header, QueueWord.magic, 0);
  header.fill(0, 1);
  header[QueueWord.version] = QUEUE_VERSION;
  header[QueueWord.kind] = kind;
  header[QueueWord.capacity] = capacity;
  header[QueueWord.slotSize] = layout.slotSize;
  header[QueueWord.mask] = capacity - 1;
  header[QueueWord.flags] = sealed ? QueueFlag.Sealed : 0;
  header[QueueWord.tail] = start | 0;
  header[QueueWord.head] = start | 0;
  // Slot of ticket t starts "free for t" (seq = t), never "published" (seq = t + 1).
  const seq = new Int32Array(buffer, byteOffset + layout.seqOffset, capacity);
  for (let j = 0; j < capacity; j++) seq[(start + j) & (capacity - 1)] = (start + j) | 0;
  new Uint32Array(buffer, byteOffset + layout.lenOffset, capacity).fill(0);
  if (sealed) {
    // Every vector sealed for the ticket a lap before the slot's first: never taken as written.
    const words = new Int32Array(
      buffer,
      byteOffset + layout.dataOffset,
      (capacity * layout.slotSize) / 4,
    );
    const perSlot = layout.slotSize >> 2;
    for (let j = 0; j < capacity; j++) {
      const base = ((start + j) & (capacity - 1)) * perSlot;
      const seal = sealOf(start + j - capacity);
      for (let w = 3; w < perSlot; w += 4) words[base + w] = seal;
    }
  }
  Atomics.store(header, QueueWord.magic, QUEUE_MAGIC | 0);
  return layout;
}

/**
 * Checks that a formatted queue region of the expected kind starts at `byteOffset` and fits the
 * buffer; returns its layout. Throws {@linkcode ValidationError} (code `InvalidLayout`) on a bad
 * magic, version or kind, and {@linkcode CapacityError} on a bad capacity or a short buffer.
 */
export function openQueueRegion(
  buffer: ArrayBufferLike,
  byteOffset: number,
  kind: QueueKind,
): QueueRegionLayout {
  checkRegionStart(buffer, byteOffset);
  const header = new Uint32Array(buffer, byteOffset, QUEUE_HEADER_BYTES >> 2);
  const magic = Atomics.load(header, QueueWord.magic);
  if (magic !== QUEUE_MAGIC) {
    throw new ValidationError(
      ErrorCode.InvalidLayout,
      `no queue at offset ${byteOffset}: magic is 0x${magic.toString(16)}, ` +
        `expected 0x${QUEUE_MAGIC.toString(16)}`,
    );
  }
  if (header[QueueWord.version] !== QUEUE_VERSION) {
    throw new ValidationError(
      ErrorCode.InvalidLayout,
      `queue layout version ${
        header[QueueWord.version]
      } is not supported (expected ${QUEUE_VERSION})`,
    );
  }
  if (header[QueueWord.kind] !== kind) {
    const names = ["SPSC", "MPSC"];
    throw new ValidationError(
      ErrorCode.InvalidLayout,
      `the queue at offset ${byteOffset} is ${
        names[header[QueueWord.kind]] ?? header[QueueWord.kind]
      }, ` +
        `not ${names[kind]}`,
    );
  }
  const capacity = header[QueueWord.capacity];
  const slotSize = header[QueueWord.slotSize];
  checkQueueCapacity(capacity);
  if (
    slotSize === 0 || slotSize % QUEUE_SLOT_ALIGN !== 0 || header[QueueWord.mask] !== capacity - 1
  ) {
    throw new ValidationError(
      ErrorCode.InvalidLayout,
      `corrupt queue header at offset ${byteOffset}: slotSize ${slotSize}, mask ${
        header[QueueWord.mask]
      }`,
    );
  }
  const flags = header[QueueWord.flags];
  if ((flags & ~QueueFlag.Sealed) !== 0) {
    throw new ValidationError(
      ErrorCode.InvalidLayout,
      `corrupt queue header at offset ${byteOffset}: unknown flags 0x${flags.toString(16)}`,
    );
  }
  const sealed = (flags & QueueFlag.Sealed) !== 0;
  // A sealed header stores the stride; the layout is computed from the largest message it holds.
  const layout = queueLayout(
    capacity,
    sealed ? (slotSize / 16) * SEALED_VECTOR_BYTES - 4 : slotSize,
    sealed,
  );
  checkFits(buffer, byteOffset, layout);
  return layout;
}

// ---------------------------------------------------------------------------------------------
// C and WGSL texts of the header

/** How the C and WGSL texts describe one word of {@linkcode QueueOffset}. */
interface QueueHeaderWordInfo {
  /** Whether device code touches it with atomics (WGSL declares it `atomic<u32>`). */
  readonly atomic: boolean;
  /** One-line description, copied into the struct texts as a comment. */
  readonly doc: string;
}

// Keyed by QueueOffset so that a word added there without a row here fails to type-check; `seq`
// is the first array after the header, not a header word.
const QUEUE_HEADER_WORDS: Record<Exclude<keyof typeof QueueOffset, "seq">, QueueHeaderWordInfo> = {
  magic: { atomic: false, doc: '0x31514B52 ("RKQ1")' },
  version: { atomic: false, doc: "layout version (1)" },
  kind: { atomic: false, doc: "QueueKind: 0 SPSC, 1 MPSC" },
  capacity: { atomic: false, doc: "slots, a power of two" },
  slotSize: { atomic: false, doc: "data bytes per slot, a multiple of 16" },
  mask: { atomic: false, doc: "capacity - 1" },
  flags: { atomic: false, doc: "QueueFlag bits (1: sealed slots)" },
  tail: { atomic: true, doc: "producers' counter (MPSC: reservations)" },
  rejectedFull: { atomic: true, doc: "messages refused because the queue was full" },
  head: { atomic: true, doc: "consumer's counter" },
  dataSignal: { atomic: true, doc: "bumped to wake a waiting consumer (host only)" },
  consumerWaiting: { atomic: true, doc: "consumer waiters (host only)" },
  spaceSignal: { atomic: true, doc: "bumped to wake waiting producers (host only)" },
  producersWaiting: { atomic: true, doc: "producer waiters (host only)" },
};

/** One u32 member of the header, or a run of reserved words filling a gap. */
interface HeaderMember {
  readonly name: string;
  readonly offset: number;
  /** 0 for a named word; otherwise the number of reserved u32 words. */
  readonly reservedWords: number;
  readonly atomic: boolean;
  readonly doc: string;
}

/** The header words of {@linkcode QueueOffset} in offset order, gaps filled with reserved runs. */
function queueHeaderMembers(): HeaderMember[] {
  const words = (Object.keys(QUEUE_HEADER_WORDS) as (keyof typeof QUEUE_HEADER_WORDS)[])
    .map((key) => ({ key, offset: QueueOffset[key] }))
    .sort((a, b) => a.offset - b.offset);
  const out: HeaderMember[] = [];
  let at = 0;
  const fill = (to: number) => {
    if (to > at) {
      out.push({
        name: `reserved${at}`,
        offset: at,
        reservedWords: (to - at) >> 2,
        atomic: false,
        doc: "zero",
      });
    }
  };
  for (const { key, offset } of words) {
    fill(offset);
    const info = QUEUE_HEADER_WORDS[key];
    out.push({
      name: key.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toLowerCase(),
      offset,
      reservedWords: 0,
      atomic: info.atomic,
      doc: info.doc,
    });
    at = offset + 4;
  }
  fill(QUEUE_HEADER_BYTES);
  return out;
}

function queueKindConstants(format: (name: string, value: number) => string): string[] {
  return Object.entries(QueueKind).map(([k, v]) => format(`RK_Q_KIND_${k.toUpperCase()}`, v));
}

/**
 * The 512-byte queue header as a C/C++/CUDA struct (no includes, so NVRTC compiles it), with
 * the magic, version and kind constants and macros giving the byte offsets of the `len` and
 * `data` arrays and the region length, generated from {@linkcode QueueOffset}. With `asserts`,
 * appends `static_assert`s on every offset and on the size (C++11 and later).
 *
 * @example
 * ```ts
 * import { queueHeaderC } from "@ringkernel/core";
 * const source = queueHeaderC({ asserts: true }); // prepend to a CUDA kernel
 * ```
 */
export function queueHeaderC(options: { name?: string; asserts?: boolean } = {}): string {
  const name = options.name ?? "RkQueueHeader";
  const members = queueHeaderMembers();
  const lines: string[] = [
    "// Generated by queueHeaderC() from QueueOffset; do not edit.",
    "// All fields little-endian u32. Touch `atomic` fields with atomics or volatile accesses.",
    `#define RK_Q_MAGIC 0x${QUEUE_MAGIC.toString(16).toUpperCase()}u`,
    `#define RK_Q_VERSION ${QUEUE_VERSION}u`,
    ...queueKindConstants((k, v) => `#define ${k} ${v}u`),
    `#define RK_Q_ALIGN ${QUEUE_ALIGN}u`,
    `#define RK_Q_HEADER_BYTES ${QUEUE_HEADER_BYTES}u`,
    `#define RK_Q_FLAG_SEALED ${QueueFlag.Sealed}u`,
    "// Byte offsets from the region start of seq[capacity], len[capacity] and the data array,",
    "// and the region length (64-bit arithmetic: capacity may be 2^30).",
    `#define RK_Q_SEQ_OFFSET ${QueueOffset.seq}ull`,
    "#define RK_Q_LEN_OFFSET(capacity) (RK_Q_SEQ_OFFSET + 4ull * (capacity))",
    "#define RK_Q_DATA_OFFSET(capacity) \\",
    "  ((RK_Q_SEQ_OFFSET + 8ull * (capacity) + (RK_Q_ALIGN - 1ull)) & ~(RK_Q_ALIGN - 1ull))",
    "#define RK_Q_BYTE_LENGTH(capacity, slot_size) \\",
    "  ((RK_Q_DATA_OFFSET(capacity) + (unsigned long long)(capacity) * (slot_size) + \\",
    "    (RK_Q_ALIGN - 1ull)) & ~(RK_Q_ALIGN - 1ull))",
    `struct ${name} {`,
  ];
  for (const m of members) {
    const decl = m.reservedWords === 0
      ? `unsigned int ${m.name};`
      : `unsigned int ${m.name}[${m.reservedWords}];`;
    lines.push(`  ${decl.padEnd(40)}// @${m.offset}: ${m.doc}${m.atomic ? " (atomic)" : ""}`);
  }
  lines.push("};");
  if (options.asserts) {
    for (const m of members) {
      lines.push(
        `static_assert(__builtin_offsetof(struct ${name}, ${m.name}) == ${m.offset}, ` +
          `"${m.name} offset");`,
      );
    }
    lines.push(
      `static_assert(sizeof(struct ${name}) == ${QUEUE_HEADER_BYTES}, "${name} size");`,
    );
  }
  return lines.join("\n") + "\n";
}

/**
 * The 512-byte queue header as a WGSL struct, with the magic, version and kind constants and
 * functions giving the byte offsets of the `len` and `data` arrays and the region length,
 * generated from {@linkcode QueueOffset}. Counters and wait words are `atomic<u32>`, so a struct
 * holding it binds as `storage, read_write`. The arrays after the header depend on the capacity;
 * bind a region as `struct { header: RkQueueHeader, body: array<u32> }` and index `body` with
 * `(offset - RK_Q_HEADER_BYTES) / 4` (the functions use u32 arithmetic: regions below 4 GiB).
 *
 * @example
 * ```ts
 * import { queueHeaderWgsl } from "@ringkernel/core";
 * const code = queueHeaderWgsl() +
 *   "struct Queue { header: RkQueueHeader, body: array<u32> }\n" +
 *   "@group(0) @binding(0) var<storage, read_write> q: Queue;\n";
 * ```
 */
export function queueHeaderWgsl(options: { name?: string } = {}): string {
  const name = options.name ?? "RkQueueHeader";
  const lines: string[] = [
    "// Generated by queueHeaderWgsl() from QueueOffset; do not edit.",
    `const RK_Q_MAGIC: u32 = 0x${QUEUE_MAGIC.toString(16).toUpperCase()}u;`,
    `const RK_Q_VERSION: u32 = ${QUEUE_VERSION}u;`,
    ...queueKindConstants((k, v) => `const ${k}: u32 = ${v}u;`),
    `const RK_Q_ALIGN: u32 = ${QUEUE_ALIGN}u;`,
    `const RK_Q_HEADER_BYTES: u32 = ${QUEUE_HEADER_BYTES}u;`,
    `const RK_Q_SEQ_OFFSET: u32 = ${QueueOffset.seq}u;`,
    `struct ${name} {`,
  ];
  for (const m of queueHeaderMembers()) {
    const t = m.reservedWords === 0
      ? m.atomic ? "atomic<u32>" : "u32"
      : `array<u32, ${m.reservedWords}>`;
    lines.push(`  ${m.name}: ${t}, // @${m.offset}: ${m.doc}`);
  }
  lines.push(
    "}",
    "// Byte offsets from the region start of len[capacity] and the data array (128-aligned).",
    "fn rk_queue_len_offset(capacity: u32) -> u32 {",
    "  return RK_Q_SEQ_OFFSET + 4u * capacity;",
    "}",
    "fn rk_queue_data_offset(capacity: u32) -> u32 {",
    "  return (RK_Q_SEQ_OFFSET + 8u * capacity + RK_Q_ALIGN - 1u) & ~(RK_Q_ALIGN - 1u);",
    "}",
    "// Bytes of the whole region (a multiple of 128, so regions pack back to back).",
    "fn rk_queue_byte_length(capacity: u32, slot_size: u32) -> u32 {",
    "  return (rk_queue_data_offset(capacity) + capacity * slot_size + RK_Q_ALIGN - 1u) &",
    "    ~(RK_Q_ALIGN - 1u);",
    "}",
  );
  return lines.join("\n") + "\n";
}
