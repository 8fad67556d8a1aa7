/**
 * Kernel-to-kernel messaging between persistent CUDA kernels on one GPU, with no host hop: the
 * CUDA C that `persistent.ts` splices into every persistent kernel, the launch parameters it
 * adds, and the byte layouts the host side (`k2k_routing.ts`) allocates and reads.
 *
 * Device memory (one arena per runtime, allocated when the runtime is created, so nothing is
 * allocated or freed while kernels run):
 *
 * ```
 * route table   RK_K2K_ROUTES entries of 64 bytes (K2kRouteOffset), indexed by route slot
 *   @0  u32 guard       generation << 16 | senders << 1 | open
 *   @4  u32 numericId   the destination's numeric id (envelope destKernel)
 *   @8  u64 lane        device address of its K2K input lane
 *   @16 u64 stamps      device address of the lane's publication stamps
 *   @24 u32 capacity    slots of the lane
 *   @28 u32 slotSize    bytes per slot
 *   @32 u32 inputTypeId the typeId it takes (0: any)
 * per-kernel block (k2kBlockLayout)
 *   targets    u32 per send target: its route slot (0xFFFFFFFF: none)
 *   histogram  LatencyHistogram of delivery latency (receivers)
 *   stamps     u64 per lane slot: the publication stamp, a tag naming the ticket (bit 15 set, 15
 *              low bits of ticket + 1) << 48 | %globaltimer's low 48 bits (receivers)
 *   lane       an MPSC queue region in the layout of src/core/queue_layout.ts (receivers)
 * ```
 *
 * Routing: the runtime gives every kernel id a route slot while some live kernel has that id or
 * names it as a send target (`k2k_routing.ts`), so a sender's target list maps to slots once, at
 * its launch, whatever is launched or terminated later. A receiver launched with K2K on writes
 * its entry's fields when it starts and then sets the open bit with its launch's generation (one
 * CAS on the guard word); on terminate it clears the open bit and waits until no sender is inside
 * (the host does the same, with the `rk_k2k_route_close` entry, for a kernel it gave up on).
 *
 * Send (`ctx.send` in a handler fills the outbox in shared memory; after the handler returns,
 * lane 0 delivers each record in order): one `atomicAdd(guard, 2)` enters the guard and reads the
 * open bit and generation in one go (closed: `NotFound`); the sender caches the route's fields
 * per generation; the type and size are checked against the route (a mismatch is `NotFound` and
 * an error code in the sender's control block); a slot is reserved with a CAS on the lane's tail
 * (the MPSC protocol of `MpscQueue`), the envelope and length are written, a release fence waits
 * for them, and the clock is read for the stamp right before the two stores that publish: the
 * stamp (tagged with the ticket, since it is outside the release) and the slot's sequence word;
 * the guard is left with a release fence and an `atomicSub`. Device scope suffices: both kernels
 * run on this GPU. A full lane is retried for up to {@linkcode K2K_FULL_WAIT_NS} per handler call
 * (a draining receiver frees slots within microseconds); then the message is not sent and is
 * counted as `QueueFull` — as on the CPU backend, where `ctx.send` returns that receipt. Every
 * send is counted exactly once in the sender's runtime words: `k2kSent` = `k2kDelivered` + `k2kQueueFull` + `k2kNotFound`.
 *
 * Receive: the device lane is polled in the same coalesced poll as the host lanes (an L2 load
 * with acquire semantics, in flight together with the PCIe loads; lane 0's acquire of the head
 * slot's word orders its reads of that slot, so a take has no fence, and a message's bytes, length
 * and stamp are loaded in flight together), and messages are handled in batches of their own,
 * validated like host input by the same `rk_handle`; replies and outputs go to the receiver's
 * host output queue, as the CPU backend's worker writes them for K2K-delivered messages. While
 * K2K messages keep arriving (one within {@linkcode K2K_HOT_NS}), the warp watches the device lane
 * for up to {@linkcode K2K_LINGER_NS} before its next poll of host memory (a tight loop of acquire
 * loads, the clock read every {@linkcode K2K_LINGER_SPIN} polls), so a hop does not wait behind a
 * PCIe round trip; host input is then polled at least that often. Each message's delivery latency
 * (its publication stamp to the moment the receiver has its bytes) is recorded in the receiver's
 * device histogram (`CudaRuntime.k2kDeliveryLatency`).
 *
 * Terminate: the receiver closes its route first, so a send racing it is `NotFound` or in the
 * lane; with `drain` it handles the lane's messages before it exits, otherwise the host copies
 * what is left back (`leftovers`) into the terminate report's `returned`.
 * @module
 */

import { KernelWord } from "../../runtime/kernel_memory.ts";
import { LatencyHistogram } from "../../runtime/histogram.ts";
import { queueLayout } from "../../core/queue_layout.ts";
import { Priority } from "../../core/envelope.ts";

/** Bytes of one route table entry. */
export const K2K_ROUTE_BYTES = 64;

/** Byte offsets inside a route table entry. */
export const K2kRouteOffset = {
  guard: 0,
  numericId: 4,
  lane: 8,
  stamps: 16,
  capacity: 24,
  slotSize: 28,
  inputTypeId: 32,
} as const;

/** A target or self route slot meaning "none". */
export const K2K_NO_ROUTE = 0xffff_ffff;

/** Route generations are 16 bits (the guard word's high half) and never 0. */
export const K2K_MAX_GENERATION = 0xffff;

/** `k2k_flags` bits. */
export const K2kFlag = {
  /** The kernel was launched with K2K on: it may send (and, with a lane, be reached). */
  Enabled: 1,
} as const;

/**
 * `lastError` codes a sender records (backend range, as `CUDA_CHECKSUM_MISMATCH`); each such
 * send is also counted in `k2kNotFound` or `k2kQueueFull`.
 */
export const CudaK2kError = {
  /** The destination takes another typeId (the CPU backend throws `E_WRONG_MESSAGE_TYPE`). */
  WrongType: 0x1002,
  /** The envelope is longer than the destination's slots (CPU: `E_MESSAGE_TOO_LARGE`). */
  TooLarge: 0x1003,
  /** The sender was launched with K2K off (the CPU backend's `ctx.send` throws). */
  Disabled: 0x1004,
  /** More sends in one handler call than the outbox holds; the rest count as `QueueFull`. */
  OutboxFull: 0x1005,
} as const;

/** Shared memory the outbox may take. */
export const K2K_OUTBOX_BYTES = 4096;
/** Most send records one handler call keeps (the outbox capacity's upper bound). */
export const K2K_OUTBOX_MAX = 32;
/** How long one handler call's sends may wait, in all, for room in full destinations (ns). */
export const K2K_FULL_WAIT_NS = 20_000;
/** Longest watch of the device lane between two polls of host memory (ns). */
export const K2K_LINGER_NS = 20_000;
/** A kernel lingers while its last K2K message arrived less than this long ago (ns). */
export const K2K_HOT_NS = 100_000;
/** Polls of the device lane a lingering warp makes between two reads of the clock. */
export const K2K_LINGER_SPIN = 8;
/**
 * Longest wait of a receiver for a message's publication stamp (ns). The sender stores the stamp
 * right beside the sequence word, outside the release (see `rk_k2k_write`), so it may land a moment
 * after the message; a stamp still missing then (only a sender stopped between two stores) is
 * left out of the histogram.
 */
export const K2K_STAMP_WAIT_NS = 100_000;
/** Bits of a publication stamp that hold `%globaltimer` (the rest tag the ticket). */
export const K2K_STAMP_TIME_BITS = 48;
/** Longest wait of a closing route for its senders to leave (ns); a send takes about 1 µs. */
export const K2K_CLOSE_WAIT_NS = 100_000_000;
/** The entry that closes a route from the host (in every persistent module). */
export const K2K_ROUTE_CLOSE_ENTRY = "rk_k2k_route_close";

/** A send target of a handler, in `ctx.send` record order (`CudaHandlerAbi.sendTargets`). */
export interface K2kTarget {
  /** Destination kernel id. */
  readonly dest: string;
  /** The typeId of what is sent there. */
  readonly typeId: number;
  /** Bytes of the payload. */
  readonly payloadBytes: number;
}

/** What the device code of one kernel needs to know at compile time. */
export interface K2kSpec {
  /** Send targets, by record word 0. */
  readonly targets: readonly K2kTarget[];
  /** Outbox record stride in u32 words (`CudaHandlerAbi.outboxStride`; 2 without targets). */
  readonly outboxStride: number;
}

/** The spec of a kernel that sends nothing (the passthrough built-in). */
export const K2K_NO_SENDS: K2kSpec = { targets: [], outboxStride: 2 };

/** Send records one handler call keeps: 0 without targets, else 1..{@linkcode K2K_OUTBOX_MAX}. */
export function k2kOutboxCapacity(spec: K2kSpec): number {
  if (spec.targets.length === 0) return 0;
  const fit = Math.floor(K2K_OUTBOX_BYTES / (4 * spec.outboxStride));
  return Math.max(1, Math.min(K2K_OUTBOX_MAX, fit));
}

/** u32 words of the shared outbox (4 spare: the last record's payload is read in 16-byte runs). */
export function k2kOutboxWords(spec: K2kSpec): number {
  return Math.max(4, k2kOutboxCapacity(spec) * spec.outboxStride) + 4;
}

/** One launch parameter K2K appends to the persistent entry's (`PERSISTENT_PARAMS`). */
export interface K2kParam {
  /** C name. */
  readonly name: string;
  /** A device pointer or a u32. */
  readonly type: "ptr" | "u32";
}

/** The K2K launch parameters, in order, after the persistent entry's own. */
export const K2K_PARAMS: readonly K2kParam[] = [
  { name: "k2k_routes", type: "ptr" },
  { name: "k2k_targets", type: "ptr" },
  { name: "k2k_lane", type: "ptr" },
  { name: "k2k_stamps", type: "ptr" },
  { name: "k2k_hist", type: "ptr" },
  { name: "k2k_self", type: "u32" },
  { name: "k2k_gen", type: "u32" },
  { name: "k2k_cap", type: "u32" },
  { name: "k2k_flags", type: "u32" },
];

/** Values of {@linkcode K2K_PARAMS} for one launch (device addresses 0n where absent). */
export interface K2kArgs {
  /** The route table. */
  readonly routes: bigint;
  /** The kernel's target slots (one u32 per send target). */
  readonly targets: bigint;
  /** Its K2K lane (0n: not reachable). */
  readonly lane: bigint;
  /** The lane's publication stamps. */
  readonly stamps: bigint;
  /** Its delivery-latency histogram. */
  readonly histogram: bigint;
  /** Its own route slot ({@linkcode K2K_NO_ROUTE}: not reachable). */
  readonly self: number;
  /** Its route's generation for this launch (1..{@linkcode K2K_MAX_GENERATION}). */
  readonly generation: number;
  /** Slots of its lane. */
  readonly capacity: number;
  /** {@linkcode K2kFlag} bits. */
  readonly flags: number;
}

/** Arguments of a kernel launched without K2K memory: every send is `NotFound`. */
export const K2K_NONE: K2kArgs = {
  routes: 0n,
  targets: 0n,
  lane: 0n,
  stamps: 0n,
  histogram: 0n,
  self: K2K_NO_ROUTE,
  generation: 0,
  capacity: 0,
  flags: 0,
};

/** Packs {@linkcode K2kArgs} in {@linkcode K2K_PARAMS} order. */
export function k2kLaunchArgs(a: K2kArgs): ({ ptr: bigint } | { u32: number })[] {
  return [
    { ptr: a.routes },
    { ptr: a.targets },
    { ptr: a.lane },
    { ptr: a.stamps },
    { ptr: a.histogram },
    { u32: a.self >>> 0 },
    { u32: a.generation },
    { u32: a.capacity },
    { u32: a.flags },
  ];
}

/** Where things live in one kernel's K2K block of device memory (offsets from its start). */
export interface K2kBlockLayout {
  /** u32 route slot per send target. */
  readonly targets: number;
  /** Whether the block holds a lane (the kernel is reachable). */
  readonly receives: boolean;
  /** The delivery-latency histogram (receivers; else -1). */
  readonly histogram: number;
  /** The u64 publication stamps, tagged with their tickets (receivers; else -1). */
  readonly stamps: number;
  /** The lane (receivers; else -1). */
  readonly lane: number;
  /** Bytes of the lane region (0 without). */
  readonly laneBytes: number;
  /** Bytes the host initialises: everything up to the lane's data array. */
  readonly initBytes: number;
  /** Total bytes (a multiple of 256). */
  readonly byteLength: number;
}

const align = (n: number, a: number): number => Math.ceil(n / a) * a;

/**
 * The K2K block of a kernel with `targetCount` send targets; with `receives`, also its lane of
 * `capacity` slots of `slotSize` bytes, the stamps and the histogram.
 */
export function k2kBlockLayout(
  targetCount: number,
  receives: boolean,
  capacity: number,
  slotSize: number,
): K2kBlockLayout {
  const targets = 0;
  let at = align(Math.max(1, targetCount) * 4, 128);
  if (!receives) {
    return {
      targets,
      receives,
      histogram: -1,
      stamps: -1,
      lane: -1,
      laneBytes: 0,
      initBytes: at,
      byteLength: align(at, 256),
    };
  }
  const histogram = at;
  at = align(at + LatencyHistogram.byteLength, 128);
  const stamps = at;
  at = align(at + 8 * capacity, 128);
  const lane = at;
  const q = queueLayout(capacity, slotSize);
  return {
    targets,
    receives,
    histogram,
    stamps,
    lane,
    laneBytes: q.byteLength,
    initBytes: lane + q.dataOffset,
    byteLength: align(lane + q.byteLength, 256),
  };
}

const hex = (n: number): string => `0x${n.toString(16).toUpperCase()}u`;

/** The switch bodies mapping a target index to its typeId and payload bytes. */
function targetTable(spec: K2kSpec, pick: (t: K2kTarget) => number): string {
  const cases = spec.targets.map((t, i) => `    case ${i}u: return ${pick(t)}u; // ${t.dest}`);
  return [...cases, "    default: return 0u;"].join("\n");
}

/**
 * The K2K types and forward declarations: spliced in before `struct rk_kernel` (which holds an
 * `rk_k2k k2k;`). Needs `rk_lane` and the loop's `RK_P_*` macros above it.
 */
export function k2kDeclarations(spec: K2kSpec): string {
  const W = KernelWord;
  const E = CudaK2kError;
  const R = K2kRouteOffset;
  return `
// ===== K2K between kernels on this GPU (generated by k2k_device.ts; do not edit) =====
#define RK_K2K_ROUTE_BYTES ${K2K_ROUTE_BYTES}u
// Byte offsets in a route table entry (K2kRouteOffset); the guard word is at 0.
#define RK_K2K_R_NUMERIC_ID ${R.numericId}u
#define RK_K2K_R_LANE ${R.lane}u
#define RK_K2K_R_STAMPS ${R.stamps}u
#define RK_K2K_R_CAPACITY ${R.capacity}u
#define RK_K2K_R_SLOT_SIZE ${R.slotSize}u
#define RK_K2K_R_INPUT_TYPE ${R.inputTypeId}u
#define RK_K2K_NO_ROUTE ${hex(K2K_NO_ROUTE)}
#define RK_K2K_F_ENABLED ${K2kFlag.Enabled}u
#define RK_K2K_TARGETS ${spec.targets.length}u
#define RK_K2K_DEST_SLOTS ${Math.max(1, spec.targets.length)}u
#define RK_K2K_OUTBOX_CAP ${k2kOutboxCapacity(spec)}u
#define RK_K2K_OUTBOX_STRIDE ${spec.outboxStride}u
#define RK_K2K_OUTBOX_WORDS ${k2kOutboxWords(spec)}u
#define RK_K2K_PRIORITY ${Priority.Normal}u
#define RK_K2K_W_SENT ${W.k2kSent}u
#define RK_K2K_W_DELIVERED ${W.k2kDelivered}u
#define RK_K2K_W_QUEUE_FULL ${W.k2kQueueFull}u
#define RK_K2K_W_NOT_FOUND ${W.k2kNotFound}u
#define RK_K2K_ERR_WRONG_TYPE ${hex(E.WrongType)}
#define RK_K2K_ERR_TOO_LARGE ${hex(E.TooLarge)}
#define RK_K2K_ERR_DISABLED ${hex(E.Disabled)}
#define RK_K2K_ERR_OUTBOX_FULL ${hex(E.OutboxFull)}
#define RK_K2K_FULL_WAIT_NS ${K2K_FULL_WAIT_NS}ull
#define RK_K2K_LINGER_NS ${K2K_LINGER_NS}ull
#define RK_K2K_HOT_NS ${K2K_HOT_NS}ull
#define RK_K2K_CLOSE_WAIT_NS ${K2K_CLOSE_WAIT_NS}ull
#define RK_K2K_LINGER_SPIN ${K2K_LINGER_SPIN}u
#define RK_K2K_STAMP_WAIT_NS ${K2K_STAMP_WAIT_NS}ull
// A publication stamp: a tag naming the ticket above RK_K2K_STAMP_BITS bits of %globaltimer.
#define RK_K2K_STAMP_BITS ${K2K_STAMP_TIME_BITS}u
#define RK_K2K_STAMP_TIME ((1ull << RK_K2K_STAMP_BITS) - 1ull)
// Vectors of an envelope lane 0 has in flight at once when it takes a K2K message.
#define RK_K2K_LOAD_CHUNK 16u
// rk_k2k_batch's \`ready\` when no poll counted the lane: count here.
#define RK_K2K_POLL 0xFFFFFFFFu
#define RK_K2K_DELIVERED 0u
#define RK_K2K_FULL 1u
#define RK_K2K_NOT_FOUND 2u

// A sender's copy of one destination's route, valid while the route has generation gen (0: none).
struct rk_k2k_dest {
  unsigned char* lane;
  unsigned long long* stamps;
  unsigned int gen;
  unsigned int numeric_id;
  unsigned int cap;
  unsigned int mask;
  unsigned int slot;
  unsigned int type;
  unsigned int head; // the consumer's head as last read (only ever behind)
  unsigned int tail; // the next ticket to try
};

// A kernel's K2K state (lane 0's copy is authoritative; the others hold the constant fields).
struct rk_k2k {
  unsigned char* routes; // the runtime's route table (null: launched without K2K memory)
  const unsigned int* targets; // route slot per send target
  rk_lane lane; // this kernel's device lane (q == nullptr: not reachable)
  volatile unsigned long long* stamps;
  unsigned char* hist;
  unsigned int self;
  unsigned int gen;
  unsigned int flags;
  unsigned int sent;
  unsigned int delivered;
  unsigned int queue_full;
  unsigned int not_found;
  unsigned int dirty; // counters changed since the runtime words were written
  unsigned int released; // lane head as last stored
  unsigned int msg_seq;
  unsigned long long last_rx; // %globaltimer of the last message taken
  unsigned long long wait_left; // this handler call's budget for full destinations
  unsigned long long h_count;
  double h_min;
  double h_max;
  double h_sum;
  rk_k2k_dest dest[RK_K2K_DEST_SLOTS];
};

struct rk_kernel;
__device__ void rk_k2k_flush(rk_kernel& k);
__device__ void rk_k2k_words(rk_kernel& k);
`;
}

/**
 * The K2K functions and the `rk_k2k_route_close` entry: spliced in right before the persistent
 * entry (after `rk_batch`). Uses the loop's `rk_handle`, `rk_out_room`, `rk_write_back_state`,
 * `rk_flush_counters`, `rk_ready_count`, `rk_record_error` and `rk_hlc_tick_now`.
 */
export function k2kDefinitions(spec: K2kSpec): string {
  const flush = spec.targets.length === 0
    ? `// This kernel declares no send targets: its handler never fills the outbox.
__device__ void rk_k2k_flush(rk_kernel& k) { (void)k; }`
    : `__device__ __forceinline__ unsigned int rk_k2k_target_type(unsigned int t) {
  switch (t) {
${targetTable(spec, (t) => t.typeId)}
  }
}
__device__ __forceinline__ unsigned int rk_k2k_target_bytes(unsigned int t) {
  switch (t) {
${targetTable(spec, (t) => t.payloadBytes)}
  }
}

// Leaves a route's guard; the release fence first, so a receiver that sees no sender inside
// also sees every slot they published.
__device__ __forceinline__ void rk_k2k_leave(unsigned int* guard) {
  rk_k2k_fence();
  atomicSub(guard, 2u);
}

// Writes the envelope into reserved ticket t of c's lane and publishes it (a release pattern ending
// in its sequence word). messageId is the sender's running send number; priority Normal.
__device__ void rk_k2k_write(rk_kernel& k, const rk_k2k_dest& c, unsigned int t,
                             unsigned int type, unsigned int bytes, const unsigned int* payload) {
  const unsigned int i = t & c.mask;
  unsigned char* dst = c.lane + RK_Q_DATA_OFFSET(c.cap) + (unsigned long long)i * c.slot;
  // Addresses of the publication, in registers before the fence (nothing to load after it).
  unsigned long long* const stamp_at = c.stamps + i;
  unsigned int* const seq_at = (unsigned int*)(c.lane + RK_Q_SEQ_OFFSET) + i;
  const unsigned long long tag = rk_k2k_stamp_tag(t);
  const unsigned long long ts = rk_hlc_tick_now(k);
  const unsigned int id = ++k.k2k.msg_seq;
  const rk_u4 h0 = {RK_P_ENV_MAGIC, RK_P_ENV_VERSION, type, bytes};
  const rk_u4 h1 = {id, 0u, 0u, 0u};
  const rk_u4 h2 = {k.numeric_id, c.numeric_id, (unsigned int)ts, (unsigned int)(ts >> 32)};
  const rk_u4 h3 = {k.numeric_id, RK_K2K_PRIORITY, 0u, 0u};
  rk_st4(dst, h0);
  rk_st4(dst + 16u, h1);
  rk_st4(dst + 32u, h2);
  rk_st4(dst + 48u, h3);
  for (unsigned int v = 0u; v < (bytes + 15u) / 16u; ++v) {
    const unsigned int* p = payload + 4u * v;
    const rk_u4 x = {p[0], p[1], p[2], p[3]};
    rk_st4(dst + RK_P_HDR + 16u * v, x);
  }
  ((volatile unsigned int*)(c.lane + RK_Q_LEN_OFFSET(c.cap)))[i] = RK_P_HDR + bytes;
  // Publication. PTX's release pattern is a fence.acq_rel followed by a strong write: the envelope
  // and its length above are visible on this GPU before the sequence word below to a receiver that
  // reads it with ld.acquire.gpu (rk_k2k_seq, rk_k2k_take). st.release.gpu is the same pattern in
  // one instruction (MEMBAR.GPU, then the store); split, the clock is read after the fence has
  // waited for the stores above, so the stamp is the moment the message is ready, taken right
  // before the store that publishes it, and nothing slow sits between them. The stamp is stored
  // outside the release, so it carries the ticket's tag and the receiver checks it
  // (rk_k2k_record); stored first, it has landed by the time a receiver reads it, a round trip
  // after seeing the word, unless the two stores took very different paths.
  rk_k2k_fence();
  const unsigned long long now = rk_gtime();
  rk_k2k_st_relaxed64(stamp_at, tag | (now & RK_K2K_STAMP_TIME));
  rk_k2k_st_relaxed(seq_at, t + 1u);
}

// One send of target \`target\` (lane 0, after the handler returned): RK_K2K_DELIVERED, _FULL
// (after waiting at most what is left of this handler call's budget) or _NOT_FOUND.
__device__ unsigned int rk_k2k_send(rk_kernel& k, unsigned int target,
                                    const unsigned int* payload) {
  rk_k2k& d = k.k2k;
  if (d.routes == nullptr || (d.flags & RK_K2K_F_ENABLED) == 0u) {
    rk_record_error(k, RK_K2K_ERR_DISABLED);
    return RK_K2K_NOT_FOUND;
  }
  const unsigned int idx = d.targets[target];
  if (idx == RK_K2K_NO_ROUTE) return RK_K2K_NOT_FOUND;
  unsigned char* r = d.routes + (unsigned long long)idx * RK_K2K_ROUTE_BYTES;
  unsigned int* guard = (unsigned int*)r;
  const unsigned int type = rk_k2k_target_type(target);
  const unsigned int bytes = rk_k2k_target_bytes(target);
  rk_k2k_dest& c = d.dest[target];
  unsigned long long full_since = 0ull;
  for (;;) {
    // One atomic enters the guard and reads the open bit and the generation together.
    const unsigned int g = atomicAdd(guard, 2u);
    if ((g & 1u) == 0u) {
      atomicSub(guard, 2u);
      return RK_K2K_NOT_FOUND;
    }
    if (c.gen != (g >> 16)) {
      // Acquire: the fields were written before the receiver opened this generation.
      rk_k2k_fence();
      c.gen = g >> 16;
      c.numeric_id = *(volatile unsigned int*)(r + RK_K2K_R_NUMERIC_ID);
      c.lane = (unsigned char*)*(volatile unsigned long long*)(r + RK_K2K_R_LANE);
      c.stamps = (unsigned long long*)*(volatile unsigned long long*)(r + RK_K2K_R_STAMPS);
      c.cap = *(volatile unsigned int*)(r + RK_K2K_R_CAPACITY);
      c.mask = c.cap - 1u;
      c.slot = *(volatile unsigned int*)(r + RK_K2K_R_SLOT_SIZE);
      c.type = *(volatile unsigned int*)(r + RK_K2K_R_INPUT_TYPE);
      volatile RkQueueHeader* q0 = (volatile RkQueueHeader*)c.lane;
      c.head = rk_k2k_ld_acquire(&q0->head);
      c.tail = q0->tail;
    }
    const bool wrong_type = c.type != 0u && c.type != type;
    if (wrong_type || RK_P_HDR + bytes > c.slot) {
      rk_k2k_leave(guard);
      rk_record_error(k, wrong_type ? RK_K2K_ERR_WRONG_TYPE : RK_K2K_ERR_TOO_LARGE);
      return RK_K2K_NOT_FOUND;
    }
    // Reserve a ticket (the MpscQueue protocol): the cached head is re-read only when it says
    // full; a CAS that sees the tail moved retries from the tail it saw.
    volatile RkQueueHeader* q = (volatile RkQueueHeader*)c.lane;
    unsigned int t = c.tail;
    bool reserved = false;
    for (;;) {
      unsigned int used = t - c.head;
      if ((int)used < 0 || used >= c.cap) {
        c.head = rk_k2k_ld_acquire(&q->head);
        used = t - c.head;
        if ((int)used < 0) {
          t = q->tail;
          continue;
        }
        if (used >= c.cap) break;
      }
      const unsigned int seen = atomicCAS((unsigned int*)&q->tail, t, t + 1u);
      if (seen == t) {
        reserved = true;
        break;
      }
      t = seen;
    }
    c.tail = reserved ? t + 1u : t;
    if (reserved) {
      rk_k2k_write(k, c, t, type, bytes, payload);
      rk_k2k_leave(guard);
      if (full_since != 0ull) {
        const unsigned long long spent = rk_gtime() - full_since;
        d.wait_left = spent >= d.wait_left ? 0ull : d.wait_left - spent;
      }
      return RK_K2K_DELIVERED;
    }
    atomicSub(guard, 2u);
    // Full: outside the guard, wait a little (a draining receiver frees slots within µs).
    const unsigned long long now = rk_gtime();
    if (full_since == 0ull) full_since = now;
    if (now - full_since >= d.wait_left) {
      d.wait_left = 0ull;
      return RK_K2K_FULL;
    }
    __nanosleep(256);
  }
}

// Delivers the handler's outbox records in order (lane 0, right after the handler returned) and
// counts every send once: more than the outbox holds count as QueueFull.
__device__ void rk_k2k_flush(rk_kernel& k) {
  rk_k2k& d = k.k2k;
  const unsigned int asked = k.ctl[2];
  if (asked == 0u) return;
  const unsigned int n = asked < RK_K2K_OUTBOX_CAP ? asked : RK_K2K_OUTBOX_CAP;
  d.sent += asked;
  d.dirty = 1u;
  if (asked > n) {
    d.queue_full += asked - n;
    rk_record_error(k, RK_K2K_ERR_OUTBOX_FULL);
  }
  d.wait_left = RK_K2K_FULL_WAIT_NS;
  for (unsigned int r = 0u; r < n; ++r) {
    const unsigned int* rec = k.outbox + r * RK_K2K_OUTBOX_STRIDE;
    const unsigned int res = rk_k2k_send(k, rec[0], rec + 2);
    if (res == RK_K2K_DELIVERED) ++d.delivered;
    else if (res == RK_K2K_FULL) ++d.queue_full;
    else ++d.not_found;
  }
}`;
  return `
// ===== K2K functions (generated by k2k_device.ts; do not edit) =====
__device__ __forceinline__ unsigned int rk_k2k_ld_acquire(const volatile unsigned int* p) {
  unsigned int v;
  asm volatile("ld.acquire.gpu.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ void rk_k2k_st_relaxed(unsigned int* p, unsigned int v) {
  asm volatile("st.relaxed.gpu.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}
__device__ __forceinline__ void rk_k2k_st_relaxed64(unsigned long long* p, unsigned long long v) {
  asm volatile("st.relaxed.gpu.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}
// The publication stamp of ticket t taken at %globaltimer now: the tag (never 0, so a stamp never
// written does not match; 15 bits of the ticket, and a lane has at most 4096 slots, so the stamp a
// slot's previous ticket left does not match either) above the timer's low RK_K2K_STAMP_BITS bits
// (they wrap after 78 hours; a delivery latency is their difference modulo that).
__device__ __forceinline__ unsigned long long rk_k2k_stamp_tag(unsigned int t) {
  return (unsigned long long)(0x8000u | ((t + 1u) & 0x7FFFu)) << RK_K2K_STAMP_BITS;
}
// Device scope: every producer and consumer of a device lane runs on this GPU.
__device__ __forceinline__ void rk_k2k_fence() { asm volatile("fence.acq_rel.gpu;" ::: "memory"); }
__device__ __forceinline__ unsigned int* rk_k2k_guard(unsigned char* routes, unsigned int idx) {
  return (unsigned int*)(routes + (unsigned long long)idx * RK_K2K_ROUTE_BYTES);
}

// Clears the open bit of a route of generation gen (no-op when the route has moved on to another
// generation) and waits until no sender is inside its guard. True when it was gen's route.
__device__ bool rk_k2k_close_guard(unsigned int* guard, unsigned int gen) {
  unsigned int g = rk_ld(guard);
  while ((g >> 16) == gen && (g & 1u) != 0u) {
    const unsigned int seen = atomicCAS(guard, g, g & ~1u);
    if (seen == g) break;
    g = seen;
  }
  if ((g >> 16) != gen) return false;
  // A sender holds the guard for one enqueue (about a microsecond); the bound only guards
  // against a counting bug turning into a hang.
  const unsigned long long t0 = rk_gtime();
  while (((rk_ld(guard) >> 1) & 0x7FFFu) != 0u && rk_gtime() - t0 < RK_K2K_CLOSE_WAIT_NS) {
    __nanosleep(64);
  }
  rk_k2k_fence();
  return true;
}

// Sets up k.k2k (every lane) and, in lane 0, opens this kernel's route: the entry's fields, a
// fence, then the open bit with this launch's generation (the senders count is kept).
__device__ void rk_k2k_open(rk_kernel& k, unsigned int lane, unsigned char* routes,
                            const unsigned int* targets, unsigned char* lane_mem,
                            unsigned long long* stamps, unsigned char* hist, unsigned int self,
                            unsigned int gen, unsigned int cap, unsigned int flags) {
  rk_k2k& d = k.k2k;
  d.routes = routes;
  d.targets = targets;
  d.stamps = stamps;
  d.hist = hist;
  d.self = self;
  d.gen = gen;
  d.flags = flags;
  // Counters and the histogram's running figures carry on from memory: zero after a launch, what
  // the kernel left when it parked (see rk_park) after a relaunch.
  d.sent = k.words[RK_K2K_W_SENT];
  d.delivered = k.words[RK_K2K_W_DELIVERED];
  d.queue_full = k.words[RK_K2K_W_QUEUE_FULL];
  d.not_found = k.words[RK_K2K_W_NOT_FOUND];
  d.dirty = 0u;
  d.msg_seq = d.sent;
  d.last_rx = 0ull;
  d.wait_left = 0ull;
  d.h_count = 0ull;
  d.h_min = 0.0;
  d.h_max = 0.0;
  d.h_sum = 0.0;
  if (hist != nullptr) {
    const volatile double* f = (const volatile double*)hist;
    d.h_min = f[0];
    d.h_max = f[1];
    d.h_sum = f[2];
    d.h_count = *(const volatile unsigned long long*)(hist + 24u);
  }
  for (unsigned int t = 0u; t < RK_K2K_DEST_SLOTS; ++t) d.dest[t].gen = 0u;
  d.lane.q = nullptr;
  d.lane.head = 0u;
  d.released = 0u;
  if (routes == nullptr || lane_mem == nullptr || self == RK_K2K_NO_ROUTE ||
      (flags & RK_K2K_F_ENABLED) == 0u) {
    return;
  }
  rk_lane_open(d.lane, lane_mem, 0u, cap);
  d.released = d.lane.head;
  if (lane != 0u) return;
  unsigned char* r = routes + (unsigned long long)self * RK_K2K_ROUTE_BYTES;
  *(volatile unsigned int*)(r + RK_K2K_R_NUMERIC_ID) = k.numeric_id;
  *(volatile unsigned long long*)(r + RK_K2K_R_LANE) = (unsigned long long)lane_mem;
  *(volatile unsigned long long*)(r + RK_K2K_R_STAMPS) = (unsigned long long)stamps;
  *(volatile unsigned int*)(r + RK_K2K_R_CAPACITY) = cap;
  *(volatile unsigned int*)(r + RK_K2K_R_SLOT_SIZE) = k.slot;
  *(volatile unsigned int*)(r + RK_K2K_R_INPUT_TYPE) = RK_P_INPUT_TYPE;
  rk_k2k_fence();
  unsigned int* guard = (unsigned int*)r;
  unsigned int g = rk_ld(guard);
  for (;;) {
    const unsigned int seen = atomicCAS(guard, g, (gen << 16) | (g & 0xFFFEu) | 1u);
    if (seen == g) break;
    g = seen;
  }
}

// Closes this kernel's route (terminate): senders get NotFound from here on, and every message
// a sender got in is in the lane once this returns (the whole warp calls it).
__device__ void rk_k2k_close(rk_kernel& k, unsigned int lane) {
  if (lane == 0u && k.k2k.lane.q != nullptr) {
    rk_k2k_close_guard(rk_k2k_guard(k.k2k.routes, k.k2k.self), k.k2k.gen);
  }
  __syncwarp();
}

// The device lane's part of a poll (the whole warp): lane i loads the sequence word of ticket
// head + i (one coalesced L2 load; issue it with the poll's other loads), then every lane gets
// the count of ready slots from rk_k2k_ready. The load is ld.acquire.gpu: a message is taken by
// lane 0, and the head message's sequence word is the one lane 0 loads here, so lane 0's own
// acquire orders its reads of that slot after it (see rk_k2k_take) and the take needs no fence.
__device__ __forceinline__ unsigned int rk_k2k_seq(const rk_kernel& k, unsigned int lane) {
  const rk_lane& l = k.k2k.lane;
  if (l.q == nullptr) return 0u;
  const unsigned int head = __shfl_sync(RK_P_FULL, l.head, 0);
  return rk_k2k_ld_acquire(l.seq + ((head + lane) & l.mask));
}
__device__ __forceinline__ unsigned int rk_k2k_ready(const rk_kernel& k, unsigned int seq,
                                                     unsigned int lane) {
  if (k.k2k.lane.q == nullptr) return 0u;
  return rk_ready_count(seq, __shfl_sync(RK_P_FULL, k.k2k.lane.head, 0), lane);
}

// Delivery latency into the device histogram (LatencyHistogram's layout and buckets; one
// writer: lane 0): seen minus the publication stamp of ticket t in slot i (loaded with the
// message, in flight with its bytes). The stamp is stored beside the release, not inside it (see
// rk_k2k_write), so its tag is checked, and a stamp not yet landed is read again; one that never
// lands (a sender stopped between its two stores) is left out rather than guessed. The bucket
// count is a fire-and-forget atomic, so nothing waits on L2.
__device__ void rk_k2k_record(rk_k2k& d, unsigned int i, unsigned int t, unsigned long long stamp,
                              unsigned long long seen) {
  if (d.hist == nullptr) return;
  const unsigned long long tag = rk_k2k_stamp_tag(t);
  if ((stamp & ~RK_K2K_STAMP_TIME) != tag) {
    const unsigned long long t0 = rk_gtime();
    do {
      stamp = d.stamps[i];
    } while ((stamp & ~RK_K2K_STAMP_TIME) != tag && rk_gtime() - t0 < RK_K2K_STAMP_WAIT_NS);
    if ((stamp & ~RK_K2K_STAMP_TIME) != tag) return;
  }
  // Modulo the timer bits; a difference in the upper half is a negative one (a clock read out of
  // order), as the old clamp counted it: 0.
  unsigned long long ns = (seen - stamp) & RK_K2K_STAMP_TIME;
  if (ns > (RK_K2K_STAMP_TIME >> 1)) ns = 0ull;
  unsigned long long units = ns * 4ull;
  unsigned int b;
  if (units < 64ull) b = (unsigned int)units;
  else {
    if (units > 0xFFFFFFFFFFull) units = 0xFFFFFFFFFFull;
    const unsigned int e = 63u - (unsigned int)__clzll((long long)units);
    const unsigned int shift = e - 5u;
    b = shift * 32u + (unsigned int)(units >> shift);
  }
  atomicAdd((unsigned long long*)(d.hist + 32u + 8u * b), 1ull);
  const double v = (double)ns;
  if (d.h_count == 0ull || v < d.h_min) d.h_min = v;
  if (d.h_count == 0ull || v > d.h_max) d.h_max = v;
  d.h_sum += v;
  ++d.h_count;
  volatile double* f = (volatile double*)d.hist;
  f[0] = d.h_min;
  f[1] = d.h_max;
  f[2] = d.h_sum;
  *(volatile unsigned long long*)(d.hist + 24u) = d.h_count;
}

// Weak (cached) loads of a slot's bytes, ordered after the acquire that saw the slot published.
// Weak, so that one thread's loads of one line are one L1 miss that the others wait on, in flight
// together, where strong loads (which bypass L1) of one line from one thread may be served one
// after another (as mapped host memory measured). A stale line cannot be hit: the acquire's L1
// invalidation comes after the slot's previous use, and in the PTX model the acquire orders these
// loads whatever the caches do.
__device__ __forceinline__ rk_u4 rk_k2k_ld4(const unsigned char* p) {
  rk_u4 v;
  asm volatile("ld.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ unsigned int rk_k2k_ld(const volatile unsigned int* p) {
  unsigned int v;
  asm volatile("ld.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}

// Loads (lane 0) a K2K slot for rk_handle: its first RK_P_ENV_ARRAY vectors into env, its length
// and its publication stamp, every load in flight together: one L2 round trip for a message of
// up to RK_K2K_LOAD_CHUNK vectors. The vectors go to registers first and into env only after the
// last load is issued: env lives in local memory (rk_handle takes its address), and storing each
// vector as it is loaded makes the next load wait for the previous one's data (one round trip per
// vector, what this replaced). The stamp's load is strong: it may be read again (rk_k2k_record).
__device__ __forceinline__ unsigned int rk_k2k_load(const rk_lane& l, unsigned int i,
                                                    unsigned int slot, rk_u4* env,
                                                    const volatile unsigned long long* stamps,
                                                    unsigned long long* stamp) {
  const unsigned char* src = l.data + (unsigned long long)i * slot;
  const unsigned int length = rk_k2k_ld(l.lens + i);
#pragma unroll
  for (unsigned int c = 0u; c < RK_P_ENV_ARRAY; c += RK_K2K_LOAD_CHUNK) {
    rk_u4 v[RK_K2K_LOAD_CHUNK];
#pragma unroll
    for (unsigned int x = 0u; x < RK_K2K_LOAD_CHUNK; ++x) {
      if (c + x < RK_P_ENV_ARRAY) v[x] = rk_k2k_ld4(src + 16u * (c + x));
    }
    if (c == 0u) *stamp = stamps[i];
#pragma unroll
    for (unsigned int x = 0u; x < RK_K2K_LOAD_CHUNK; ++x) {
      if (c + x < RK_P_ENV_ARRAY) env[c + x] = v[x];
    }
  }
  return length;
}

// Handles (lane 0) up to n ready messages of the device lane, an output slot reserved for each;
// returns how many it took (the head moves on by that many).
//
// Ordering, with no fence: the PTX memory model orders a load after an ld.acquire of the same
// thread that read the value of a release pattern (the sender's fence.acq_rel and sequence-word
// store, rk_k2k_write): the acquire synchronizes with the release, so the envelope and length
// written before the release are what the later loads see (the stamp, written after the fence,
// is checked instead: rk_k2k_record). Message 0's sequence word was read by this lane (lane 0)
// itself with ld.acquire.gpu in the poll (rk_k2k_seq; a ready count of at least 1 is lane 0's
// own observation, ballot bit 0). The other ready words were read by other lanes; their
// acquires order those lanes' loads, and the PTX model does not spell out that a warp barrier (bar.warp.sync) carries them over to lane 0,
// so lane 0 reads each of those words again with ld.acquire.gpu before that message's loads, and
// stops at one that it does not see published (the rest are taken in a later batch). A batch of
// one, the hot K2K case, has no extra load.
__device__ unsigned int rk_k2k_take(rk_kernel& k, unsigned int n) {
  rk_k2k& d = k.k2k;
  rk_lane& l = d.lane;
  const unsigned int head = l.head;
  unsigned int j = 0u;
  for (; j < n; ++j) {
    const unsigned int t = head + j;
    const unsigned int i = t & l.mask;
    if (j != 0u && rk_k2k_ld_acquire(l.seq + i) != t + 1u) break;
    rk_u4 env[RK_P_ENV_ARRAY];
    unsigned long long stamp;
    const unsigned int length = rk_k2k_load(l, i, k.slot, env, d.stamps, &stamp);
    // The receiver has the message: its vectors are in env (the stores to env waited for them).
    const unsigned long long seen = rk_gtime();
    rk_handle(k, l.data + (unsigned long long)i * k.slot, env, length, false, 0u);
    rk_k2k_record(d, i, t, stamp, seen);
  }
  l.head += j;
  d.last_rx = rk_gtime();
  return j;
}

// Stores the device lane's head once the batch's reads are done (after the release fence), so
// senders may reuse the slots.
__device__ __forceinline__ void rk_k2k_release(rk_kernel& k) {
  rk_k2k& d = k.k2k;
  if (d.lane.q != nullptr && d.lane.head != d.released) {
    d.released = d.lane.head;
    rk_st(&d.lane.q->head, d.released);
  }
}

// The K2K counters into the runtime words (lane 0, in a batch's publication).
__device__ void rk_k2k_words(rk_kernel& k) {
  rk_k2k& d = k.k2k;
  if (d.dirty == 0u) return;
  d.dirty = 0u;
  rk_st(&k.words[RK_K2K_W_SENT], d.sent);
  rk_st(&k.words[RK_K2K_W_DELIVERED], d.delivered);
  rk_st(&k.words[RK_K2K_W_QUEUE_FULL], d.queue_full);
  rk_st(&k.words[RK_K2K_W_NOT_FOUND], d.not_found);
}

// One batch of the device lane (the whole warp calls it): up to batch_max of its ready messages
// (\`ready\` from the poll, or RK_K2K_POLL to count here), no more than free output slots,
// published as rk_batch publishes (replies, state, counters, one release fence, the output tail)
// and then the lane's head. Returns how many (every lane); sets *full when no slot was free.
// The output queue's head (host memory: a PCIe read) is read again only when the cached one
// leaves fewer free slots than this batch takes, not whenever it leaves fewer than batch_max.
// \`ready\` must be what rk_k2k_ready counted from rk_k2k_seq's loads at the current head: the
// take relies on lane 0 having read the head slot's word with an acquire (rk_k2k_take).
__device__ unsigned int rk_k2k_batch(rk_kernel& k, unsigned int batch_max, unsigned int ready,
                                     bool* full, unsigned int lane) {
  if (k.k2k.lane.q == nullptr) return 0u;
  if (ready == RK_K2K_POLL) ready = rk_k2k_ready(k, rk_k2k_seq(k, lane), lane);
  if (ready == 0u) return 0u;
  unsigned int n = 0u;
  unsigned int room = 0u;
  if (lane == 0u) {
    room = rk_out_room(k.out, ready < batch_max ? ready : batch_max);
    if (room != 0u) {
      k.out.count = 0u;
      n = rk_k2k_take(k, room);
      rk_k2k_words(k);
      rk_write_back_state(k);
      rk_st64(&k.cb->hlc, k.hlc);
      rk_hist_flush(k);
      rk_flush_counters(k);
      __threadfence_system();
      if (k.out.count != 0u) {
        k.out.tail += k.out.count;
        k.out.count = 0u;
        rk_st(&k.out.q->tail, k.out.tail);
      }
      rk_k2k_release(k);
      rk_st(&k.cb->output_tail, k.out.tail);
      rk_st(&k.cb->output_head, k.out.head);
    }
  }
  n = __shfl_sync(RK_P_FULL, n, 0);
  if (__shfl_sync(RK_P_FULL, room, 0) == 0u) *full = true;
  return n;
}

// While K2K messages keep arriving, the warp watches the device lane for up to
// RK_K2K_LINGER_NS before the next poll of host memory (called at the top of the main loop).
// The watch is a tight loop: each lane's sequence word address is fixed while the head stays, and
// the clock is read (and broadcast) once per RK_K2K_LINGER_SPIN polls, not once per poll: polls
// follow each other one L2 round trip and a dozen instructions apart.
__device__ void rk_k2k_linger(rk_kernel& k, unsigned int state, unsigned int batch_max,
                              unsigned int lane) {
  const rk_lane& l = k.k2k.lane;
  if (state != RK_STATE_ACTIVE || l.q == nullptr) return;
  const unsigned long long t0 = __shfl_sync(RK_P_FULL, rk_gtime(), 0);
  unsigned long long rx = __shfl_sync(RK_P_FULL, k.k2k.last_rx, 0);
  if (t0 - rx > RK_K2K_HOT_NS) return;
  for (;;) {
    const unsigned int head = __shfl_sync(RK_P_FULL, l.head, 0);
    const volatile unsigned int* word = l.seq + ((head + lane) & l.mask);
    unsigned int ready = 0u;
    for (unsigned int s = 0u; s < RK_K2K_LINGER_SPIN && ready == 0u; ++s) {
      ready = rk_ready_count(rk_k2k_ld_acquire(word), head, lane);
    }
    if (ready != 0u) {
      bool full = false;
      if (rk_k2k_batch(k, batch_max, ready, &full, lane) == 0u && full) return;
      rx = __shfl_sync(RK_P_FULL, k.k2k.last_rx, 0);
    }
    const unsigned long long now = __shfl_sync(RK_P_FULL, rk_gtime(), 0);
    if (now - t0 > RK_K2K_LINGER_NS || now - rx > RK_K2K_HOT_NS) return;
  }
}

${flush}

// Closes route idx of generation gen from the host (a kernel the runtime gave up on, or one that
// ended without closing it): launched 1 x 32 on the runtime's control stream.
extern "C" __global__ void __launch_bounds__(32) ${K2K_ROUTE_CLOSE_ENTRY}(unsigned char* routes,
                                                                  unsigned int idx,
                                                                  unsigned int gen) {
  if (blockIdx.x != 0u || threadIdx.x != 0u) return;
  rk_k2k_close_guard(rk_k2k_guard(routes, idx), gen);
}
`;
}
