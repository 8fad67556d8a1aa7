/**
 * The persistent CUDA kernel: CUDA C (for NVRTC) of a loop that runs a DSL handler on the GPU
 * over a kernel's region in mapped pinned host memory, with the protocol of the CPU backend's
 * worker (`src/backends/cpu/kernel_worker.ts`), so one `KernelHandle` drives both:
 *
 * - commands from the control block (activate / deactivate / terminate, with the host's
 *   `terminateMode` word: 1 drain the input first, 0 leave it), and the state moves
 *   `Launched → Active ⇄ Deactivated → Terminating → Terminated` as the worker moves them;
 * - the high lane before the normal lane, with the MPSC per-slot sequence protocol (slot of ticket
 *   `t` is ready when `seq[t & mask] == t + 1`; head stored once per batch per lane), no more
 *   messages per batch than free output slots (every message may reply once);
 * - every envelope validated (magic, version, `payloadLength == sizeof(In)`, length within the
 *   slot, typeId, CRC32C when flagged): a bad one is dropped, counted (`dropped`, `errorCount`,
 *   `lastError`, and the `corrupt` word for checksums) and a requester gets an error reply;
 * - replies in the SPSC output queue as the worker writes them (`Reply` + `correlationId` for
 *   requests, the empty-reply type for requests the handler did not answer, plain outputs for
 *   non-requests that returned a value), in sealed slots the host takes as soon as they land;
 *   each carries in `messageId` the count of messages handled with it, and the batch's state
 *   write-back, then a release fence, then the counters (seqlocked `processed`/`dropped`) and the
 *   tail follow it;
 * - the HLC word of the control block (offset 64) advanced from `%globaltimer` (ms since the
 *   host's `Date.now()` at launch, plus the logical counter), merged with every message's
 *   timestamp; the handler latency histogram, the heartbeat and the queue snapshots.
 *
 * Memory ordering: the host lanes and the output queue have sealed slots (`queue_layout.ts`): every
 * 16-byte vector of a message carries its ticket's seal, so a reader takes a vector it loaded
 * only with the seal, whatever order its loads were served in. The kernel reads host-written
 * words with volatile loads and no acquire fence (a message's vectors are retried until sealed),
 * writes replies with no fence before them, and has one `__threadfence_system()` per batch
 * between the state write-back and the counters, tail and head stores, and around state stores
 * (no libcu++: NVRTC has no headers).
 *
 * Reads of host memory are the warp's: a read costs ~1.1 µs on the H100 host, and one thread's
 * loads of the same 128-byte line are served one after another (four 16-byte loads of an
 * envelope's line took ~4.5 µs), while a warp's coalesced load of a line is one request. A poll is
 * four coalesced loads in flight together (the commands word, 32 sequence words of each lane:
 * readiness by `__ballot_sync`, and the normal lane's head slot, so a request's bytes come with
 * the poll that finds it), an envelope one load per line (lane i takes sealed vector i), gathered
 * into lane 0 by shuffles; lane 0 runs the handler and does every write. `bench/cuda_mailbox.ts`
 * measures the floor under this (a flag in every 16 bytes, read by the warp: ~3.1 µs round trip
 * from Deno) and `bench/cuda_trace.ts` where a request's time goes
 * (`CudaRuntimeOptions.trace`).
 * The commands word is cleared with `atomicAnd_system` (see the caveat in docs: on a PCIe host
 * without native host atomics a command set in the same microsecond as another is cleared may be
 * lost; `KernelHandle` never issues one command before the previous one is acknowledged).
 *
 * The state struct lives in shared memory while the kernel runs (read once at launch, written
 * back to the region before each batch's replies are published), so handlers touch no PCIe.
 *
 * K2K (`ctx.send`) goes from kernel to kernel through device-memory lanes, with no host hop
 * (`k2k_device.ts`: routing table, send protocol, receive batches, linger, close on terminate);
 * each send is counted once in the runtime words `k2kSent` = `k2kDelivered` + `k2kQueueFull` +
 * `k2kNotFound`.
 *
 * Launch: 1 block × 32 threads (one warp: every lane runs the loop, lane 0 handles).
 * @module
 */

import { ControlBlock } from "../../core/control_block.ts";
import { ENVELOPE_MAGIC, ENVELOPE_VERSION, EnvelopeFlag } from "../../core/envelope.ts";
import { ErrorCode } from "../../core/errors.ts";
import { queueHeaderC } from "../../core/queue_layout.ts";
import type { IrKernel } from "../../dsl/ir.ts";
import { emitCuda } from "../../dsl/cuda.ts";
import { C_PRELUDE } from "../../core/schema_codegen.ts";
import { SCALAR_SIZE } from "../../core/schema.ts";
import {
  type LaneParallelPlan,
  laneParallelPlan,
  type ReductionOp,
  type StateReduction,
} from "../../dsl/lane_parallel.ts";
import {
  K2K_NO_SENDS,
  K2K_NONE,
  K2K_PARAMS,
  type K2kArgs,
  k2kDeclarations,
  k2kDefinitions,
  k2kLaunchArgs,
  k2kOutboxWords,
  type K2kSpec,
} from "./k2k_device.ts";
import {
  BULK_BATCH_TYPE_ID,
  EMPTY_REPLY_TYPE_ID,
  ERROR_REPLY_TYPE_ID,
  KernelWord,
} from "../../runtime/kernel_memory.ts";
import { LatencyHistogram } from "../../runtime/histogram.ts";

/** `lastError` code of an input whose checksum did not match (the CPU backend's code). */
export const CUDA_CHECKSUM_MISMATCH = 0x1001;

/** Largest state struct kept in shared memory; larger states are used in place (mapped). */
export const SHARED_STATE_LIMIT = 32 * 1024;

/** One launch parameter of the persistent entry, in order. */
export interface PersistentParam {
  /** C name. */
  readonly name: string;
  /** C type: the region pointer, a u32 or the u64 launch time. */
  readonly type: "ptr" | "u32" | "u64";
}

/** The parameters every persistent entry takes, in order (see {@linkcode PersistentArgs}). */
export const PERSISTENT_PARAMS: readonly PersistentParam[] = [
  { name: "region", type: "ptr" },
  { name: "numeric_id", type: "u32" },
  { name: "off_state", type: "u32" },
  { name: "off_hist", type: "u32" },
  { name: "off_high", type: "u32" },
  { name: "off_normal", type: "u32" },
  { name: "off_output", type: "u32" },
  { name: "in_cap", type: "u32" },
  { name: "out_cap", type: "u32" },
  { name: "slot", type: "u32" },
  { name: "batch_max", type: "u32" },
  { name: "host_ms0", type: "u64" },
  ...K2K_PARAMS,
];

/** Values of {@linkcode PERSISTENT_PARAMS} for one launch. */
export interface PersistentArgs {
  /** Device address of the region (mapped pinned memory). */
  readonly region: bigint;
  /** The kernel's numeric id (envelope source, HLC node id). */
  readonly numericId: number;
  /** Region offsets (`KernelLayout`). */
  readonly state: number;
  /** Offset of the latency histogram. */
  readonly histogram: number;
  /** Offset of the high lane. */
  readonly high: number;
  /** Offset of the normal lane. */
  readonly normal: number;
  /** Offset of the output queue. */
  readonly output: number;
  /** Slots per input lane. */
  readonly inputCapacity: number;
  /** Slots of the output queue. */
  readonly outputCapacity: number;
  /** Bytes per slot. */
  readonly slotSize: number;
  /** Messages per batch at most. */
  readonly batchMax: number;
  /** `Date.now()` at launch: the HLC's physical time origin. */
  readonly hostMs0: number;
  /** K2K memory and route (`DeviceK2k.attach`); absent: unreachable, every send `NotFound`. */
  readonly k2k?: K2kArgs;
}

/** What {@linkcode emitPersistent} returns. */
export interface PersistentSource {
  /** The complete translation unit for NVRTC (or `nvcc -x cu`). */
  readonly code: string;
  /** The `extern "C"` entry: `rk_persistent_<name>`. */
  readonly entry: string;
  /**
   * Threads per block to launch with (one block): one warp runs the loop; a kernel whose packed
   * batches run lane-parallel without outputs adds helper warps ({@linkcode bulkWarps}).
   */
  readonly blockThreads: number;
  /** The entry's parameters in order. */
  readonly params: readonly PersistentParam[];
  /** The input typeId (0 for the passthrough kernel, which takes any). */
  readonly inputTypeId: number;
  /** Bytes of an input payload (0 for the passthrough kernel). */
  readonly inputSize: number;
  /** Bytes of a reply payload (0 without an output schema). */
  readonly outputSize: number;
  /** Bytes of the state struct (0 without state). */
  readonly stateSize: number;
  /** Whether the state is kept in shared memory (else used in place in the region). */
  readonly stateInShared: boolean;
  /** Destination ids of `ctx.send`, by outbox record index (the K2K route table's targets). */
  readonly k2kTargets: readonly string[];
  /** Bytes of shared memory bulk batches are staged in; 0 when the kernel takes none. */
  readonly bulkStageBytes: number;
  /** Whether bulk messages run on the warp's lanes at once (else one after another). */
  readonly laneParallel: boolean;
}

/** Packs {@linkcode PersistentArgs} in {@linkcode PERSISTENT_PARAMS} order for `CudaContext.launch`. */
export function persistentLaunchArgs(
  a: PersistentArgs,
): ({ ptr: bigint } | { u32: number } | { u64: bigint })[] {
  return [
    { ptr: a.region },
    { u32: a.numericId },
    { u32: a.state },
    { u32: a.histogram },
    { u32: a.high },
    { u32: a.normal },
    { u32: a.output },
    { u32: a.inputCapacity },
    { u32: a.outputCapacity },
    { u32: a.slotSize },
    { u32: a.batchMax },
    { u64: BigInt(Math.floor(a.hostMs0)) },
    ...k2kLaunchArgs(a.k2k ?? K2K_NONE),
  ];
}

const round16 = (n: number): number => Math.ceil(n / 16) * 16;

/** C string literal of ASCII text (JSON error replies). */
function cString(text: string): string {
  return `"${text.replace(/[\\"]/g, (c) => `\\${c}`).replace(/[^\x20-\x7e]/g, "?")}"`;
}

/** The layout-pinning structs: control block and queue header, with their asserts. */
function layoutStructs(): string {
  // Offset asserts need __builtin_offsetof, which NVRTC's front end lacks; nvcc checks them.
  const withOffsets = (text: string): string =>
    text.split("\n").map((l) =>
      l.startsWith("static_assert(__builtin_offsetof")
        ? `#if !defined(__CUDACC_RTC__)\n${l}\n#endif`
        : l
    ).join("\n");
  return withOffsets(ControlBlock.cStruct({ asserts: true })) +
    withOffsets(queueHeaderC({ asserts: true }));
}

interface LoopSpec {
  readonly name: string;
  readonly kernelId: string;
  /** Handler mode: the DSL function and its types; undefined for passthrough. */
  readonly handler?: {
    readonly fn: string;
    readonly ctxStruct: string;
    readonly inType: string;
    readonly outType: string | undefined;
    readonly stateType: string | undefined;
  };
  readonly inputTypeId: number;
  readonly inputSize: number;
  readonly outputTypeId: number;
  readonly outputSize: number;
  readonly stateSize: number;
  /** Send targets and outbox stride (K2K). */
  readonly k2k: K2kSpec;
  /** Whether bulk messages may run on the warp's lanes at once (handlers only). */
  readonly parallel?: LaneParallelPlan;
}

/**
 * Emits the persistent kernel of a checked handler (`checkKernel(definition)`): the DSL's
 * handler function and structs (from `emitCuda`) followed by the loop and its `extern "C"`
 * entry `rk_persistent_<name>`, launched 1 block × `blockThreads` threads with
 * {@linkcode persistentLaunchArgs}.
 *
 * @throws {TypeError} when `ir` is not a handler kernel
 */
export function emitPersistent(ir: IrKernel, kernelId: string = ir.name): PersistentSource {
  const h = ir.handler;
  if (ir.kind !== "handler" || h === undefined) {
    throw new TypeError(`emitPersistent needs a handler kernel, got a ${ir.kind} kernel`);
  }
  const src = emitCuda(ir);
  const abi = src.handler!;
  const p = src.parts;
  const spec: LoopSpec = {
    name: ir.name,
    kernelId,
    handler: {
      fn: abi.function,
      ctxStruct: abi.ctxStruct,
      inType: h.input.name,
      outType: h.output?.name,
      stateType: h.state?.name,
    },
    inputTypeId: h.input.typeId,
    inputSize: h.input.size,
    outputTypeId: h.output?.typeId ?? 0,
    outputSize: h.output?.size ?? 0,
    stateSize: h.state?.size ?? 0,
    k2k: {
      targets: abi.sendTargets.map((t) => ({
        dest: t.dest,
        typeId: t.typeId,
        payloadBytes: t.payloadBytes,
      })),
      outboxStride: abi.outboxStride,
    },
    parallel: laneParallelPlan(ir),
  };
  const code = [p.prelude, layoutStructs(), p.structs, p.ctx, p.functions, p.handlerFunction]
    .filter((s) => s !== "").join("\n") + "\n" + loopSource(spec);
  return result(spec, code);
}

/**
 * Emits the built-in passthrough kernel (`runtime.launch("id")`): it answers every message with
 * its own payload and typeId (a reply for a request, an output otherwise).
 */
export function emitPassthroughPersistent(kernelId: string): PersistentSource {
  const spec: LoopSpec = {
    name: "passthrough",
    kernelId,
    inputTypeId: 0,
    inputSize: 0,
    outputTypeId: 0,
    outputSize: 0,
    stateSize: 0,
    k2k: K2K_NO_SENDS,
  };
  const code = C_PRELUDE + layoutStructs() + "\n" + loopSource(spec);
  return result(spec, code);
}

function result(spec: LoopSpec, code: string): PersistentSource {
  return {
    code,
    entry: `rk_persistent_${spec.name}`,
    blockThreads: 32 * bulkWarps(spec),
    params: PERSISTENT_PARAMS,
    inputTypeId: spec.inputTypeId,
    inputSize: spec.inputSize,
    outputSize: spec.outputSize,
    stateSize: spec.stateSize,
    stateInShared: spec.stateSize <= SHARED_STATE_LIMIT,
    k2kTargets: spec.k2k.targets.map((t) => t.dest),
    bulkStageBytes: stageBytesOf(spec),
    laneParallel: spec.parallel?.parallel === true,
  };
}

function loopSource(s: LoopSpec): string {
  const pass = s.handler === undefined;
  const checksumText = JSON.stringify({
    name: "DecodeError",
    message: `kernel ${s.kernelId}: checksum mismatch, message dropped`,
    code: ErrorCode.DecodeChecksum,
  });
  const invalidText = JSON.stringify({
    name: "ValidationError",
    message: `kernel ${s.kernelId} does not take this envelope (magic, version, ` +
      `length or typeId), message dropped`,
  });
  const shortChecksum = JSON.stringify({ name: "DecodeError", code: ErrorCode.DecodeChecksum });
  const shortInvalid = JSON.stringify({ name: "ValidationError" });
  const errBytes = round16(64 + Math.max(checksumText.length, invalidText.length));
  const stateVecs = Math.max(1, round16(s.stateSize) / 16);
  const stateShared = s.stateSize > 0 && s.stateSize <= SHARED_STATE_LIMIT;
  const hist = LatencyHistogram;
  const W = KernelWord;
  const params = PERSISTENT_PARAMS.map((q) =>
    q.type === "ptr"
      ? `unsigned char* ${q.name}`
      : q.type === "u32"
      ? `unsigned int ${q.name}`
      : `unsigned long long ${q.name}`
  ).join(",\n    ");

  const handlerCall = pass ? "" : handlerCallSource(s, stateShared);
  const bulk = bulkEnabled(s);
  // A bulk descriptor (header + BULK_DESCRIPTOR_BYTES) is read like an input envelope.
  const inVecs = Math.max(round16(64 + s.inputSize) / 16, bulk ? BULK_DESCRIPTOR_VECS : 0);

  return `
// ===== RingKernel persistent loop (generated by emitPersistent; do not edit) =====
#define RK_P_ENV_MAGIC 0x${ENVELOPE_MAGIC.toString(16).toUpperCase()}u
#define RK_P_ENV_VERSION ${ENVELOPE_VERSION}u
#define RK_P_HDR 64u
#define RK_P_F_CHECKSUM ${EnvelopeFlag.HasChecksum}u
#define RK_P_F_REQUEST ${EnvelopeFlag.Request}u
#define RK_P_F_REPLY ${EnvelopeFlag.Reply}u
#define RK_P_F_ERROR ${EnvelopeFlag.Error}u
#define RK_P_EMPTY_REPLY 0x${EMPTY_REPLY_TYPE_ID.toString(16).toUpperCase()}u
#define RK_P_ERROR_REPLY 0x${ERROR_REPLY_TYPE_ID.toString(16).toUpperCase()}u
#define RK_P_CHECKSUM_MISMATCH 0x${CUDA_CHECKSUM_MISMATCH.toString(16)}u
#define RK_P_PASSTHROUGH ${pass ? 1 : 0}
#define RK_P_INPUT_TYPE ${s.inputTypeId}u
#define RK_P_INPUT_SIZE ${s.inputSize}u
#define RK_P_OUTPUT_TYPE ${s.outputTypeId}u
#define RK_P_OUTPUT_SIZE ${s.outputSize}u
#define RK_P_IN_VECS ${inVecs}u
// Vectors of an envelope the warp loads (the rest, past 512 bytes, lane 0 loads itself); the
// passthrough kernel takes any length: its first 256 bytes, the smallest slot.
#if RK_P_PASSTHROUGH
#define RK_P_ENV_VECS 16u
#define RK_P_ENV_ARRAY 16u
#else
#define RK_P_ENV_VECS (RK_P_IN_VECS < 23u ? RK_P_IN_VECS : 23u)
#define RK_P_ENV_ARRAY RK_P_IN_VECS
#endif
// Host lanes and the output queue have sealed slots (queue_layout.ts): a message is a stream, its
// u32 length then its bytes, 12 bytes per 16-byte vector, word 3 of each the ticket's seal t + 1.
// Vectors of a sealed message of len bytes; vectors holding the first RK_P_ENV_VECS of an envelope.
#define RK_P_SV(len) (((len) + 15u) / 12u)
#define RK_P_SLOT_VECS ((4u + 16u * RK_P_ENV_VECS + 11u) / 12u)
#define RK_P_PER_ROUND (32u / RK_P_SLOT_VECS)
// Loads of a published slot until its seals show (~1 µs each): a slot still unsealed after these
// was published outside the protocol and is dropped, so the loop never hangs on it.
#define RK_P_SEAL_TRIES 4096u
#define RK_P_OUT_VECS ${round16(64 + s.outputSize) / 16}u
#define RK_P_ERR_VECS ${errBytes / 16}u
#define RK_P_STATE_SIZE ${s.stateSize}u
#define RK_P_STATE_VECS ${stateVecs}u
#define RK_P_STATE_SHARED ${stateShared ? 1 : 0}
#define RK_P_W_SLEEPING ${W.sleeping}u
#define RK_P_W_TERMINATE_MODE ${W.terminateMode}u
#define RK_P_W_CORRUPT ${W.corrupt}u
#define RK_P_W_PARKED ${W.parked}u
#define RK_P_WORDS_OFFSET 128u
#define RK_P_HIST_BUCKETS ${hist.bucketCount}u
#define RK_P_SPIN_ITERS 64u
// An idle kernel stores its heartbeat once per this many polls (each store is a PCIe write).
#define RK_P_IDLE_BEAT_MASK 255u
#define RK_P_MAX_SLEEP_NS 20000u
// While Active, an idle kernel polls at least every ~1 µs (plus the PCIe read of the queue words):
// a longer sleep is paid in full by the next request's round trip (20 µs measured 18 µs p50).
#define RK_P_ACTIVE_MAX_SLEEP_NS 1000u
#define RK_P_DRAIN_STALL_NS 1000000000ull
${bulkDefines(s)}

static_assert(sizeof(RkControlBlock) == 128u, "control block size");
static_assert(sizeof(RkQueueHeader) == 512u, "queue header size");

struct __align__(16) rk_u4 { unsigned int x, y, z, w; };

__device__ __forceinline__ rk_u4 rk_ld4(const void* p) {
  rk_u4 v;
  asm volatile("ld.volatile.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ void rk_st4(void* p, const rk_u4& v) {
  asm volatile("st.volatile.v4.u32 [%0], {%1, %2, %3, %4};"
               :: "l"(p), "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w) : "memory");
}
__device__ __forceinline__ unsigned int rk_ld(const volatile unsigned int* p) { return *p; }
__device__ __forceinline__ void rk_st(volatile unsigned int* p, unsigned int v) { *p = v; }
__device__ __forceinline__ void rk_st64(volatile unsigned long long* p, unsigned long long v) {
  *p = v;
}
// Acquire after relaxed (volatile) loads of sequence words: later loads see what they published.
// Lighter than __threadfence_system (fence.sc.sys); still ~0.77 µs on the H100. Polling with
// ld.acquire.sys instead (no fence after) measured worse: the poll, run all the time, slowed
// from 1.8 to 3.1 µs, more than the fence it saved (bench/cuda_trace.ts, 2026-11-25).
__device__ __forceinline__ void rk_fence_acq() { asm volatile("fence.acq_rel.sys;" ::: "memory"); }
__device__ __forceinline__ unsigned long long rk_gtime() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// Stage timestamps of each batch (%globaltimer ns) into a device-memory ring, when the source is
// compiled with RK_P_TRACE (CudaRuntimeOptions.trace): where a round trip's time goes on the GPU.
#ifndef RK_P_TRACE
#define RK_P_TRACE 0
#endif
#define RK_P_TRACE_STAGES 8u
#define RK_P_TRACE_RECORDS 4096u
#if RK_P_TRACE
__device__ unsigned long long rk_trace[RK_P_TRACE_RECORDS * RK_P_TRACE_STAGES];
__device__ unsigned long long rk_trace_count;
__device__ unsigned long long rk_trace_now[RK_P_TRACE_STAGES];
#define RK_TRACE(stage) (rk_trace_now[stage] = rk_gtime())
#else
#define RK_TRACE(stage) ((void)0)
#endif

// CRC32C (Castagnoli, reflected 0x82F63B78), bitwise: envelopes are a few hundred bytes at most.
__device__ __forceinline__ unsigned int rk_crc_byte(unsigned int c, unsigned int b) {
  c ^= b;
#pragma unroll
  for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
  return c;
}
// The envelope CRC: header bytes 0..55, the checksum field as four zeros, then 60..64+payload.
__device__ unsigned int rk_envelope_crc(const unsigned char* env, unsigned int payload) {
  unsigned int c = 0xFFFFFFFFu;
  for (unsigned int i = 0u; i < 56u; ++i) c = rk_crc_byte(c, env[i]);
  for (unsigned int i = 0u; i < 4u; ++i) c = rk_crc_byte(c, 0u);
  for (unsigned int i = 60u; i < RK_P_HDR + payload; ++i) c = rk_crc_byte(c, env[i]);
  return ~c;
}

// One input lane (MPSC) as the consumer sees it.
struct rk_lane {
  volatile RkQueueHeader* q;
  volatile unsigned int* seq;
  volatile unsigned int* lens;
  unsigned char* data;
  unsigned int mask;
  unsigned int head;
};

__device__ void rk_lane_open(rk_lane& l, unsigned char* region, unsigned int off, unsigned int cap) {
  unsigned char* base = region + off;
  l.q = (volatile RkQueueHeader*)base;
  l.seq = (volatile unsigned int*)(base + RK_Q_SEQ_OFFSET);
  l.lens = (volatile unsigned int*)(base + RK_Q_LEN_OFFSET(cap));
  l.data = base + RK_Q_DATA_OFFSET(cap);
  l.mask = cap - 1u;
  l.head = l.q->head;
}

#define RK_P_FULL 0xFFFFFFFFu

// Warp-cooperative reads. A load of mapped host memory costs ~1.1 µs on the H100 host, and
// loads of one 128-byte line from one thread are served one after another (four 16-byte loads
// of a line measured ~4.5 µs), while a warp's coalesced load of a line is one request. So every
// read of host memory on the hot path is made by the whole warp, one line per instruction, and
// lane 0 (which runs the handler) takes the values with shuffles.
__device__ __forceinline__ rk_u4 rk_shfl4(const rk_u4& v, unsigned int from) {
  rk_u4 r;
  r.x = __shfl_sync(RK_P_FULL, v.x, from);
  r.y = __shfl_sync(RK_P_FULL, v.y, from);
  r.z = __shfl_sync(RK_P_FULL, v.z, from);
  r.w = __shfl_sync(RK_P_FULL, v.w, from);
  return r;
}

// Component c (0-2, a constant once unrolled) of a sealed vector: the message stream's words.
__device__ __forceinline__ unsigned int rk_sw(const rk_u4& v, unsigned int c) {
  return c == 0u ? v.x : (c == 1u ? v.y : v.z);
}

// Envelope vector x (stream words 4x+1 .. 4x+4) of the sealed slot at src, ticket t, length len,
// loaded by one lane (for what the warp's loads did not cover); each slot vector it spans is
// reloaded until it carries the seal. Past the message: zeros.
__device__ __noinline__ rk_u4 rk_sealed_env4(const unsigned char* src, unsigned int t, unsigned int len,
                                unsigned int x) {
  unsigned int w[4];
  const unsigned int nv = RK_P_SV(len);
  const unsigned int a = (4u * x + 1u) / 3u;
  rk_u4 va = {0u, 0u, 0u, 0u};
  rk_u4 vb = {0u, 0u, 0u, 0u};
  unsigned int tries = 0u;
  if (a < nv) { do va = rk_ld4(src + 16u * a); while (va.w != t + 1u && ++tries < RK_P_SEAL_TRIES); }
  if (a + 1u < nv) {
    do vb = rk_ld4(src + 16u * (a + 1u)); while (vb.w != t + 1u && ++tries < RK_P_SEAL_TRIES);
  }
  for (unsigned int c = 0u; c < 4u; ++c) {
    const unsigned int s = 4u * x + 1u + c;
    const rk_u4& v = s / 3u == a ? va : vb;
    w[c] = rk_sw(v, s % 3u);
  }
  return {w[0], w[1], w[2], w[3]};
}

// Stores the stream of a message (its len, then the words of buf: vecs 16-byte vectors, zeros
// past them) as sealed vectors of ticket t at dst. No fence: the host takes a vector only with
// its seal, so the reply is seen as soon as its stores land (queue_layout.ts, sealed slots).
__device__ __forceinline__ void rk_store_sealed(unsigned char* dst, const rk_u4* buf,
                                                unsigned int vecs, unsigned int len,
                                                unsigned int t) {
  const unsigned int* bw = (const unsigned int*)buf;
  const unsigned int n = RK_P_SV(len);
  for (unsigned int j = 0u; j < n; ++j) {
    unsigned int w[3];
#pragma unroll
    for (unsigned int c = 0u; c < 3u; ++c) {
      const unsigned int s = 3u * j + c;
      w[c] = s == 0u ? len : (s - 1u < 4u * vecs ? bw[s - 1u] : 0u);
    }
    rk_st4(dst + 16u * j, {w[0], w[1], w[2], t + 1u});
  }
}

// How many slots of lane l are ready from head on (at most 32): lane i loads the sequence word of
// ticket head + i (one coalesced request; ready when seq == t + 1). Every lane gets the count.
__device__ __forceinline__ unsigned int rk_ready_count(unsigned int seq_of_lane, unsigned int head,
                                                       unsigned int lane) {
  const unsigned int ready = __ballot_sync(RK_P_FULL, seq_of_lane == head + lane + 1u);
  return ready == RK_P_FULL ? 32u : (unsigned int)(__ffs(~ready) - 1);
}

// The output queue (SPSC) as its producer sees it.
struct rk_out {
  volatile RkQueueHeader* q;
  volatile unsigned int* lens;
  unsigned char* data;
  unsigned int cap;
  unsigned int mask;
  unsigned int tail;
  unsigned int head; // cached; reloaded only when it says full
  unsigned int count; // committed in this batch
};

__device__ void rk_out_open(rk_out& o, unsigned char* region, unsigned int off, unsigned int cap) {
  unsigned char* base = region + off;
  o.q = (volatile RkQueueHeader*)base;
  o.lens = (volatile unsigned int*)(base + RK_Q_LEN_OFFSET(cap));
  o.data = base + RK_Q_DATA_OFFSET(cap);
  o.cap = cap;
  o.mask = cap - 1u;
  o.tail = o.q->tail;
  o.head = o.q->head;
  o.count = 0u;
}

__device__ unsigned int rk_out_room(rk_out& o, unsigned int want) {
  unsigned int used = o.tail - o.head;
  if ((int)used < 0 || o.cap - used < want) {
    o.head = o.q->head;
    used = o.tail - o.head;
  }
  const unsigned int free_slots = o.cap - used;
  return free_slots < want ? free_slots : want;
}

${k2kDeclarations(s.k2k)}
struct rk_kernel {
  unsigned char* region;
  unsigned int stride; // bytes per sealed slot of the host lanes and output queue
  volatile RkControlBlock* cb;
  volatile unsigned int* words;
  unsigned char* hist;
  rk_lane high;
  rk_lane normal;
  rk_out out;
  unsigned int slot;
  unsigned int numeric_id;
  unsigned long long hlc;
  unsigned long long g0;
  unsigned long long ms0;
  unsigned long long processed;
  unsigned long long dropped;
  unsigned long long pending_processed;
  unsigned long long pending_dropped;
  unsigned int seq;
  unsigned int errors;
  unsigned int corrupt;
  rk_k2k k2k; // K2K: routes, device lane, counters (k2k_device.ts)
  unsigned long long hist_count;
  unsigned int hist_dirty[RK_P_HIST_DIRTY]; // buckets changed since the last rk_hist_flush
  unsigned int hist_ndirty; // > RK_P_HIST_DIRTY: flush them all
  // Bulk batches (every lane keeps the same copy): the descriptor in progress and how far it got,
  // the last one finished, and messages handled in this loop turn.
  unsigned int bulk_seq;
  unsigned int bulk_pos;
  unsigned int bulk_done;
  unsigned int bulk_seq_written; // what rk_bulk_words last stored
  unsigned int bulk_pos_written;
  unsigned int bulk_done_written;
  unsigned int bulk_progress;
  bool bulk_stop; // this batch reached a descriptor: take nothing more in it
  unsigned char* bulk_stage; // shared memory, RK_P_BULK_STAGE bytes
  unsigned char* bulk_cur; // the group being handled, rows RK_P_BULK_PITCH apart
  double hist_min;
  double hist_max;
  double hist_sum;
  unsigned long long* hist_buckets; // shared memory
  unsigned char* state; // shared memory copy (or the region's state when too large)
  unsigned int* ctl; // the handler's control words (shared memory: it uses atomicAdd on [2])
  unsigned int* outbox; // the handler's K2K send records (shared, RK_K2K_OUTBOX_CAP of them)
  unsigned int state_offset;
  unsigned int beat;
};

__device__ __forceinline__ void rk_beat(rk_kernel& k) { rk_st(&k.cb->heartbeat, ++k.beat); }

// HLC: physical ms since the host's Date.now() at launch, from the GPU's global nanosecond timer.
__device__ __forceinline__ unsigned long long rk_pt_ms(const rk_kernel& k) {
  return k.ms0 + (rk_gtime() - k.g0) / 1000000ull;
}
__device__ __forceinline__ unsigned long long rk_hlc_tick_now(rk_kernel& k) {
  const unsigned long long pt = rk_pt_ms(k) << 16;
  k.hlc = pt > k.hlc ? pt : k.hlc + 1ull;
  return k.hlc;
}
// Receipt of a remote word rw (as SharedHlcClock.updateFromWords); a sender more than 60 s
// ahead is ignored (the message is still handled), as the CPU worker does.
__device__ void rk_hlc_merge(rk_kernel& k, unsigned long long rw) {
  const unsigned long long pt_ms = rk_pt_ms(k);
  const unsigned long long r_ms = rw >> 16;
  if (r_ms > pt_ms + 60000ull) return;
  const unsigned long long o_ms = k.hlc >> 16;
  if (pt_ms > o_ms && pt_ms > r_ms) k.hlc = pt_ms << 16;
  else if (o_ms == r_ms) k.hlc = (k.hlc > rw ? k.hlc : rw) + 1ull;
  else if (o_ms > r_ms) k.hlc = k.hlc + 1ull;
  else k.hlc = rw + 1ull;
}

__device__ void rk_record_error(rk_kernel& k, unsigned int code) {
  rk_st(&k.cb->last_error, code);
  rk_st(&k.cb->error_count, ++k.errors);
}

// Handler latency into the region's LatencyHistogram (single writer, lane 0): n messages that
// each took ns. Counted in shared memory; rk_hist_flush writes what changed once per batch, since
// every store to the region is a PCIe write.
__device__ void rk_hist_add(rk_kernel& k, unsigned long long ns, unsigned int n) {
  unsigned long long units = ns * 4ull;
  unsigned int b;
  if (units < 64ull) b = (unsigned int)units;
  else {
    if (units > 0xFFFFFFFFFFull) units = 0xFFFFFFFFFFull;
    const unsigned int e = 63u - (unsigned int)__clzll((long long)units);
    const unsigned int shift = e - 5u;
    b = shift * 32u + (unsigned int)(units >> shift);
  }
  k.hist_buckets[b] += n;
  if (k.hist_ndirty <= RK_P_HIST_DIRTY) {
    bool seen = false;
    for (unsigned int i = 0u; i < k.hist_ndirty && i < RK_P_HIST_DIRTY; ++i) seen |= k.hist_dirty[i] == b;
    if (!seen) {
      if (k.hist_ndirty < RK_P_HIST_DIRTY) k.hist_dirty[k.hist_ndirty] = b;
      ++k.hist_ndirty;
    }
  }
  const double v = (double)ns;
  if (k.hist_count == 0ull || v < k.hist_min) k.hist_min = v;
  if (k.hist_count == 0ull || v > k.hist_max) k.hist_max = v;
  k.hist_sum += v * (double)n;
  k.hist_count += n;
}

// Writes the buckets rk_hist_add changed, then min/max/sum/count (ordered before the host relies
// on them by the batch's release fence).
__device__ void rk_hist_flush(rk_kernel& k) {
  if (k.hist_ndirty == 0u) return;
  if (k.hist_ndirty > RK_P_HIST_DIRTY) {
    for (unsigned int b = 0u; b < RK_P_HIST_BUCKETS; ++b) {
      rk_st64((volatile unsigned long long*)(k.hist + 32u + 8u * b), k.hist_buckets[b]);
    }
  } else {
    for (unsigned int i = 0u; i < k.hist_ndirty; ++i) {
      const unsigned int b = k.hist_dirty[i];
      rk_st64((volatile unsigned long long*)(k.hist + 32u + 8u * b), k.hist_buckets[b]);
    }
  }
  k.hist_ndirty = 0u;
  // min, max, sum, count: two 16-byte stores (the histogram is 128-byte aligned).
  asm volatile("st.volatile.v2.u64 [%0], {%1, %2};" ::"l"(k.hist),
               "l"(__double_as_longlong(k.hist_min)), "l"(__double_as_longlong(k.hist_max))
               : "memory");
  asm volatile("st.volatile.v2.u64 [%0], {%1, %2};" ::"l"(k.hist + 16u),
               "l"(__double_as_longlong(k.hist_sum)), "l"(k.hist_count)
               : "memory");
}

// The reply header (16 words) for input header w (request: Reply + correlation id). Its
// messageId is the kernel's count of messages handled (processed + dropped) with this one: the
// reply is seen before this batch's counters and state land, and a host that saw it waits for
// the counters to reach it before it reports them or the state (KernelHandle's handled mark).
__device__ void rk_reply_header(rk_kernel& k, unsigned int* h, const unsigned int* w,
                                unsigned int type_id, unsigned int payload, unsigned int flags) {
  const bool request = ((w[1] >> 16) & RK_P_F_REQUEST) != 0u;
  const unsigned long long ts = rk_hlc_tick_now(k);
  const unsigned long long handled =
      k.processed + k.pending_processed + k.dropped + k.pending_dropped;
  h[0] = RK_P_ENV_MAGIC;
  h[1] = RK_P_ENV_VERSION | ((request ? (RK_P_F_REPLY | flags) : flags) << 16);
  h[2] = type_id;
  h[3] = payload;
  h[4] = (unsigned int)handled;
  h[5] = (unsigned int)(handled >> 32);
  h[6] = request ? w[4] : 0u;
  h[7] = request ? w[5] : 0u;
  h[8] = k.numeric_id;
  h[9] = 0u;
  h[10] = (unsigned int)ts;
  h[11] = (unsigned int)(ts >> 32);
  h[12] = k.numeric_id;
  h[13] = w[13];
  h[14] = 0u;
  h[15] = 0u;
}

// Writes the len-byte message in vecs 16-byte vectors of buf into the next reserved output slot.
__device__ void rk_out_commit(rk_kernel& k, const rk_u4* buf, unsigned int vecs, unsigned int len) {
  rk_out& o = k.out;
  const unsigned int t = o.tail + o.count;
  rk_store_sealed(o.data + (unsigned long long)(t & o.mask) * k.stride, buf, vecs, len, t);
  ++o.count;
}

// An error reply (flags Reply | Error, typeId ERROR_REPLY): JSON text cut to fit the slot.
__device__ void rk_error_reply(rk_kernel& k, const unsigned int* w, const char* text,
                               const char* short_text) {
  rk_u4 buf[RK_P_ERR_VECS];
  unsigned int n = 0u;
  while (text[n] != 0) ++n;
  if (RK_P_HDR + n > k.slot) {
    text = short_text;
    n = 0u;
    while (text[n] != 0) ++n;
    if (RK_P_HDR + n > k.slot) n = k.slot - RK_P_HDR;
  }
  unsigned int* h = (unsigned int*)buf;
  rk_reply_header(k, h, w, RK_P_ERROR_REPLY, n, RK_P_F_ERROR);
  unsigned char* bytes = (unsigned char*)buf;
  const unsigned int vecs = (RK_P_HDR + n + 15u) / 16u;
  for (unsigned int i = RK_P_HDR; i < vecs * 16u; ++i) {
    bytes[i] = i - RK_P_HDR < n ? (unsigned char)text[i - RK_P_HDR] : 0u;
  }
  rk_out_commit(k, buf, vecs, RK_P_HDR + n);
}

__device__ const char rk_text_checksum[] = ${cString(checksumText)};
__device__ const char rk_text_checksum_short[] = ${cString(shortChecksum)};
__device__ const char rk_text_invalid[] = ${cString(invalidText)};
__device__ const char rk_text_invalid_short[] = ${cString(shortInvalid)};

#if !RK_P_PASSTHROUGH
// Runs the handler (lane 0) on the payload at msg, for the message whose header is w (a bulk
// message: its batch descriptor's), and writes its reply or output.
__device__ void rk_run_handler(rk_kernel& k, const unsigned char* msg, const unsigned int* w,
                               bool request) {
  const unsigned long long t0 = rk_gtime();
  ++k.pending_processed; // before the reply: its header carries the count (rk_reply_header)
${handlerCall}
  RK_TRACE(3);
  rk_hist_add(k, rk_gtime() - t0, 1u);
}
#endif

#if RK_P_PASSTHROUGH
// Writes a stream word by word as sealed vectors (the passthrough reply, of any length).
struct rk_sealer {
  unsigned char* dst;
  unsigned int seal;
  unsigned int v;
  unsigned int n;
  unsigned int w[3];
  __device__ void put(unsigned int x) {
    w[n++] = x;
    if (n == 3u) {
      rk_st4(dst + 16u * v++, {w[0], w[1], w[2], seal});
      n = 0u;
    }
  }
  __device__ void put4(const rk_u4& q) { put(q.x); put(q.y); put(q.z); put(q.w); }
  __device__ void end() { while (n != 0u) put(0u); }
};
#endif

// Handles (lane 0) the message in slot src, its first RK_P_ENV_VECS vectors already gathered
// into env, its length (ready, and an output slot reserved for it). A host lane's slot is sealed
// for ticket t (src_sealed); a device K2K lane's is plain.
__device__ void rk_handle(rk_kernel& k, const unsigned char* src, const rk_u4* env,
                          unsigned int length, bool src_sealed, unsigned int t) {
  const unsigned int* w = (const unsigned int*)env;
  const unsigned int flags = w[1] >> 16;
  const unsigned int payload = w[3];
  const bool request = (flags & RK_P_F_REQUEST) != 0u;
#if RK_P_PASSTHROUGH
  const bool wrong = w[0] != RK_P_ENV_MAGIC || (w[1] & 0xFFFFu) != RK_P_ENV_VERSION ||
                     RK_P_HDR + payload > length || length > k.slot || w[2] == 0u;
#else
  const bool wrong = w[0] != RK_P_ENV_MAGIC || (w[1] & 0xFFFFu) != RK_P_ENV_VERSION ||
                     payload != RK_P_INPUT_SIZE || RK_P_HDR + payload > length ||
                     w[2] != RK_P_INPUT_TYPE;
#endif
  RK_TRACE(2);
  bool corrupt = false;
  if (!wrong && (flags & RK_P_F_CHECKSUM) != 0u) {
#if RK_P_PASSTHROUGH
    unsigned int c = 0xFFFFFFFFu;
    const unsigned char* hb = (const unsigned char*)env;
    for (unsigned int b = 0u; b < 56u; ++b) c = rk_crc_byte(c, hb[b]);
    for (unsigned int b = 0u; b < 4u; ++b) c = rk_crc_byte(c, 0u);
    for (unsigned int b = 60u; b < 64u; ++b) c = rk_crc_byte(c, hb[b]);
    for (unsigned int v = 0u; v < (payload + 15u) / 16u; ++v) {
      const rk_u4 x = 4u + v < RK_P_ENV_VECS ? env[4u + v]
                      : src_sealed        ? rk_sealed_env4(src, t, length, 4u + v)
                                          : rk_ld4(src + RK_P_HDR + 16u * v);
      const unsigned char* xb = (const unsigned char*)&x;
      for (unsigned int b = 0u; b < 16u && 16u * v + b < payload; ++b) c = rk_crc_byte(c, xb[b]);
    }
    corrupt = ~c != w[14];
#else
    corrupt = rk_envelope_crc((const unsigned char*)env, payload) != w[14];
#endif
  }
  if (wrong || corrupt) {
    ++k.pending_dropped;
    if (corrupt) {
      rk_st(&k.words[RK_P_W_CORRUPT], ++k.corrupt);
      rk_record_error(k, RK_P_CHECKSUM_MISMATCH);
    } else {
      rk_record_error(k, RK_ERR_INVALID_MESSAGE);
    }
    if (request) {
      if (corrupt) rk_error_reply(k, w, rk_text_checksum, rk_text_checksum_short);
      else rk_error_reply(k, w, rk_text_invalid, rk_text_invalid_short);
    }
    return;
  }
  const unsigned long long rw = ((unsigned long long)w[11] << 32) | w[10];
  if (rw != 0ull) rk_hlc_merge(k, rw);
#if RK_P_PASSTHROUGH
  const unsigned long long t0 = rk_gtime();
  ++k.pending_processed; // before the reply: its header carries the count (rk_reply_header)
  {
    rk_u4 hdr[4];
    rk_reply_header(k, (unsigned int*)hdr, w, w[2], payload, 0u);
    const unsigned int ot = k.out.tail + k.out.count;
    rk_sealer out = {k.out.data + (unsigned long long)(ot & k.out.mask) * k.stride, ot + 1u, 0u, 0u};
    out.put(RK_P_HDR + payload);
#pragma unroll
    for (unsigned int v = 0u; v < 4u; ++v) out.put4(hdr[v]);
    for (unsigned int v = 0u; v < (payload + 15u) / 16u; ++v) {
      out.put4(4u + v < RK_P_ENV_VECS ? env[4u + v]
               : src_sealed        ? rk_sealed_env4(src, t, length, 4u + v)
                                   : rk_ld4(src + RK_P_HDR + 16u * v));
    }
    out.end();
    ++k.out.count;
  }
  RK_TRACE(3);
  rk_hist_add(k, rk_gtime() - t0, 1u);
#else
  rk_run_handler(k, (const unsigned char*)env + RK_P_HDR, w, request);
#endif
}

${bulkSource(s)}

// Handles the first n ready messages of lane l (the whole warp calls it; lane 0 handles);
// returns n. The warp loads RK_P_PER_ROUND slots per round, lane i sealed vector
// i % RK_P_SLOT_VECS of slot i / RK_P_SLOT_VECS, so each line is one request, and loads again
// until every vector a message spans carries its seal: no fence orders these loads after the
// sequence words that said the slots are published (the seals say the bytes are the message's).
// The first slot's vectors may come from the poll (spec: loaded in the round trip that found it).
// Lane 0 gathers one envelope at a time with shuffles. The head advances locally (lane 0) and is
// stored once per batch by rk_batch, after the replies are published.
__device__ unsigned int rk_take(rk_kernel& k, rk_lane& l, unsigned int n, unsigned int lane,
                                const rk_u4& spec, bool has_spec) {
  if (n == 0u) return 0u;
  if (lane == 0u) RK_TRACE(1);
  const unsigned int head = __shfl_sync(RK_P_FULL, l.head, 0);
  const unsigned int e = lane / RK_P_SLOT_VECS;
  const unsigned int v = lane % RK_P_SLOT_VECS;
  for (unsigned int j0 = 0u; j0 < n; j0 += RK_P_PER_ROUND) {
    const unsigned int m = n - j0 < RK_P_PER_ROUND ? n - j0 : RK_P_PER_ROUND;
    const unsigned int t = head + j0 + e;
    const unsigned char* mine_src = l.data + (unsigned long long)(t & l.mask) * k.stride;
    rk_u4 mine = {0u, 0u, 0u, 0u};
    bool fresh = j0 != 0u || e != 0u || !has_spec;
    if (!fresh) mine = spec;
    unsigned int unsealed = 0u; // lanes whose vector never came sealed
    for (unsigned int tries = 0u;; ++tries) {
      if (fresh && e < m && 16u * v < k.stride) mine = rk_ld4(mine_src + 16u * v);
      // Each slot's length (stream word 0) from its vector 0.
      const unsigned int len = __shfl_sync(RK_P_FULL, mine.x, (e * RK_P_SLOT_VECS) & 31u);
      const bool ok = e >= m || v >= RK_P_SV(len) || mine.w == t + 1u;
      unsealed = __ballot_sync(RK_P_FULL, !ok);
      if (unsealed == 0u || tries == RK_P_SEAL_TRIES) break;
      fresh = true;
    }
    if (lane == 0u) RK_TRACE(7);
    for (unsigned int q = 0u; q < m; ++q) {
      rk_u4 env[RK_P_ENV_ARRAY];
      const unsigned int b = q * RK_P_SLOT_VECS;
#pragma unroll
      for (unsigned int x = 0u; x < RK_P_ENV_VECS; ++x) {
        const unsigned int s = 4u * x + 1u;
        env[x].x = __shfl_sync(RK_P_FULL, rk_sw(mine, s % 3u), b + s / 3u);
        env[x].y = __shfl_sync(RK_P_FULL, rk_sw(mine, (s + 1u) % 3u), b + (s + 1u) / 3u);
        env[x].z = __shfl_sync(RK_P_FULL, rk_sw(mine, (s + 2u) % 3u), b + (s + 2u) / 3u);
        env[x].w = __shfl_sync(RK_P_FULL, rk_sw(mine, (s + 3u) % 3u), b + (s + 3u) / 3u);
      }
      // A slot published without its seals (a producer outside the queue protocol) is dropped as
      // invalid (length 0) rather than handled from bytes that may be another message's.
      const unsigned int vec_mask = RK_P_SLOT_VECS == 32u ? RK_P_FULL : ((1u << RK_P_SLOT_VECS) - 1u);
      const bool torn = ((unsealed >> b) & vec_mask) != 0u;
      const unsigned int length = torn ? 0u : __shfl_sync(RK_P_FULL, mine.x, b);
#if RK_P_BULK
      if (rk_is_bulk(env, length)) {
        // The batch ends at a descriptor: its messages' outputs took the room the batch had.
        const unsigned int upto = j0 + q + (rk_bulk(k, env, lane) ? 1u : 0u);
        k.bulk_stop = true;
        if (lane == 0u) l.head += upto;
        __syncwarp();
        return upto;
      }
#endif
      if (lane == 0u) {
        const unsigned int tq = head + j0 + q;
        const unsigned char* src = l.data + (unsigned long long)(tq & l.mask) * k.stride;
        for (unsigned int x = RK_P_ENV_VECS; x < RK_P_ENV_ARRAY; ++x) {
          env[x] = rk_sealed_env4(src, tq, length, x);
        }
        rk_handle(k, src, env, length, true, tq);
      }
    }
  }
  if (lane == 0u) l.head += n;
  __syncwarp();
  return n;
}

// The seqlock has no fences of its own (two cost ~1.5 µs a batch): the batch's one release fence,
// before it, orders the state, HLC and histogram before the counters, so a host that sees a
// message counted sees the state it left (KernelHandle waits for the counters to reach what a
// sealed reply showed). A reader racing a batch relies on the GPU's stores to host memory
// arriving in program order (PCIe posted writes) for a torn-free pair.
__device__ void rk_flush_counters(rk_kernel& k) {
  if (k.pending_processed == 0ull && k.pending_dropped == 0ull) return;
  const bool dropped = k.pending_dropped != 0ull;
  k.processed += k.pending_processed;
  k.dropped += k.pending_dropped;
  k.pending_processed = 0ull;
  k.pending_dropped = 0ull;
  // Each counter is one 8-byte store (one PCIe write; words 10-11 and 12-13 are 8-byte aligned).
  volatile unsigned int* cbw = (volatile unsigned int*)k.cb;
  rk_st(&k.cb->seq, ++k.seq); // odd: writing
  rk_st64((volatile unsigned long long*)(cbw + 10), k.processed);
  if (dropped) rk_st64((volatile unsigned long long*)(cbw + 12), k.dropped);
  rk_st(&k.cb->seq, ++k.seq); // even: stable
}

__device__ void rk_write_back_state(rk_kernel& k) {
#if RK_P_STATE_SHARED
  unsigned char* dst = k.region + k.state_offset;
  for (unsigned int v = 0u; v < RK_P_STATE_VECS; ++v) {
    rk_st4(dst + 16u * v, ((const rk_u4*)k.state)[v]);
  }
#endif
}

// One batch (the whole warp calls it): the hr / nr messages the poll saw ready in the high and
// normal lanes, the high lane first, at most batch_max and no more than free output slots.
// Returns how many were taken (in every lane); *full is set when no output slot was free.
__device__ unsigned int rk_batch(rk_kernel& k, unsigned int batch_max, bool* full,
                                 unsigned int hr, unsigned int nr, const rk_u4& spec,
                                 unsigned int lane) {
  unsigned int room = lane == 0u ? rk_out_room(k.out, batch_max) : 0u;
  room = __shfl_sync(RK_P_FULL, room, 0);
  *full = room == 0u;
  if (room == 0u || hr + nr == 0u) return 0u;
  if (lane == 0u) k.out.count = 0u;
  k.bulk_progress = 0u;
  k.bulk_stop = false;
  const unsigned int hh = k.high.head;
  const unsigned int nh = k.normal.head;
  const unsigned int th = hr < room ? hr : room;
  const unsigned int tn = nr < room - th ? nr : room - th;
  unsigned int n = rk_take(k, k.high, th, lane, spec, false);
  if (!k.bulk_stop) n += rk_take(k, k.normal, tn, lane, spec, true);
  // A bulk batch counts its messages handled (it may be taken over several turns).
  const unsigned int work = n + k.bulk_progress;
  if (work == 0u) return 0u;
  if (lane != 0u) return work;
  rk_k2k_words(k);
  rk_write_back_state(k);
  rk_st64(&k.cb->hlc, k.hlc);
  rk_hist_flush(k);
  rk_bulk_words(k);
  RK_TRACE(4);
  // The replies went out sealed, with no fence: the host has them already. Release: the state,
  // HLC and histogram above before the counters, tail and heads below.
  __threadfence_system();
  RK_TRACE(5);
  rk_flush_counters(k);
  // The heads go last: every read of the slots they release has completed (values are used).
  if (k.out.count != 0u) {
    k.out.tail += k.out.count;
    k.out.count = 0u;
    rk_st(&k.out.q->tail, k.out.tail);
  }
  if (k.high.head != hh) rk_st(&k.high.q->head, k.high.head);
  if (k.normal.head != nh) rk_st(&k.normal.q->head, k.normal.head);
  rk_st(&k.cb->input_head, k.high.head + k.normal.head);
  rk_st(&k.cb->output_tail, k.out.tail);
  rk_st(&k.cb->output_head, k.out.head);
#if RK_P_TRACE
  RK_TRACE(6);
  const unsigned long long rec = rk_trace_count % RK_P_TRACE_RECORDS;
  for (unsigned int st = 0u; st < RK_P_TRACE_STAGES; ++st) {
    rk_trace[rec * RK_P_TRACE_STAGES + st] = rk_trace_now[st];
  }
  rk_trace_count = rk_trace_count + 1ull;
#endif
  return work;
}

${k2kDefinitions(s.k2k)}
// One poll (the whole warp): the commands word (lane 0) and the sequence words of 32 tickets of
// each lane, three coalesced loads in flight together: one PCIe round trip. Every lane gets the
// same values.
struct rk_polled {
  unsigned int cmd;
  unsigned int high;
  unsigned int normal;
  unsigned int k2k; // ready in the device K2K lane
  rk_u4 spec; // vector \`lane\` of the normal lane's head slot, as loaded (rk_take checks its seal)
};
__device__ __forceinline__ rk_polled rk_poll(rk_kernel& k, unsigned int lane) {
  const unsigned int hh = __shfl_sync(RK_P_FULL, k.high.head, 0);
  const unsigned int nh = __shfl_sync(RK_P_FULL, k.normal.head, 0);
  const unsigned int cmd = lane == 0u ? k.cb->commands : 0u;
  const unsigned int hs = k.high.seq[(hh + lane) & k.high.mask];
  const unsigned int ns = k.normal.seq[(nh + lane) & k.normal.mask];
  // The head slot's bytes in the same round trip: a request is handled without another read.
  rk_u4 spec = {0u, 0u, 0u, 0u};
  if (lane < RK_P_SLOT_VECS && 16u * lane < k.stride) {
    spec = rk_ld4(k.normal.data + (unsigned long long)(nh & k.normal.mask) * k.stride + 16u * lane);
  }
  const unsigned int ks = rk_k2k_seq(k, lane); // device memory: in flight with the PCIe loads
  rk_polled p;
  p.spec = spec;
  p.cmd = __shfl_sync(RK_P_FULL, cmd, 0);
  p.high = rk_ready_count(hs, hh, lane);
  p.normal = rk_ready_count(ns, nh, lane);
  p.k2k = rk_k2k_ready(k, ks, lane);
  return p;
}

__device__ __forceinline__ void rk_set_state(rk_kernel& k, unsigned int s) {
  __threadfence_system();
  rk_st(&k.cb->state, s);
  __threadfence_system();
}

// Publishes what lane 0 keeps locally (every batch already did; this makes it certain), then
// marks the kernel parked. The K2K route stays open: messages sent meanwhile wait in the lane.
__device__ void rk_park(rk_kernel& k) {
  rk_k2k_words(k);
  rk_write_back_state(k);
  rk_st64(&k.cb->hlc, k.hlc);
  rk_hist_flush(k);
  rk_bulk_words(k);
  rk_flush_counters(k);
  __threadfence_system();
  rk_st(&k.words[RK_P_W_PARKED], 1u);
  __threadfence_system();
}

// Warp 0 lets the helper warps go (before it returns): they wait for bulk jobs until then.
__device__ __forceinline__ void rk_bulk_quit(unsigned int lane) {
#if RK_P_BULK_WARPS > 1
  if (lane == 0u) rk_bulk_job.quit = 1u;
  __syncthreads();
#endif
}

extern "C" __global__ void __launch_bounds__(32u * RK_P_BULK_WARPS, 1) rk_persistent_${s.name}(
    ${params}) {
  // Warp 0 runs the loop: every lane of it (the reads of host memory are the warp's, see rk_poll
  // and rk_take); lane 0 alone handles messages, writes and keeps the kernel's authoritative
  // state (the others' copies of k hold only the constant fields). Helper warps, if any, only
  // take shares of packed batches (rk_bulk_helper).
  if (blockIdx.x != 0u) return;
  const unsigned int lane = threadIdx.x & 31u;
#if RK_P_BULK_WARPS > 1
  // Read by the helpers only after the first barrier, which warp 0 reaches after this store.
  if (threadIdx.x == 0u) rk_bulk_job.quit = 0u;
  if (threadIdx.x >= 32u) {
    rk_bulk_helper(threadIdx.x >> 5, lane);
    return;
  }
#endif
  __shared__ unsigned long long rk_hist_buckets[RK_P_HIST_BUCKETS];
  __shared__ unsigned int rk_ctl[8];
  __shared__ unsigned int rk_outbox[RK_K2K_OUTBOX_WORDS];
#if RK_P_BULK
  __shared__ rk_u4 rk_bulk_stage[RK_P_BULK_STAGE / 16u];
#endif
#if RK_P_STATE_SHARED
  __shared__ rk_u4 rk_state_sh[RK_P_STATE_VECS];
#endif
  rk_kernel k;
  k.region = region;
  k.cb = (volatile RkControlBlock*)region;
  k.words = (volatile unsigned int*)(region + RK_P_WORDS_OFFSET);
  k.hist = region + off_hist;
  k.slot = slot;
  k.stride = 16u * RK_P_SV(slot);
  k.numeric_id = numeric_id;
  k.state_offset = off_state;
  k.beat = k.cb->heartbeat;
  rk_lane_open(k.high, region, off_high, in_cap);
  rk_lane_open(k.normal, region, off_normal, in_cap);
  rk_out_open(k.out, region, off_output, out_cap);
  k.g0 = rk_gtime();
  k.ms0 = host_ms0;
  k.hlc = k.cb->hlc;
  // Counters, histogram and state carry on from the region: zero after a launch, what the
  // kernel left there when it parked (rk_park) after a relaunch.
  k.processed = k.cb->processed;
  k.dropped = k.cb->dropped;
  k.pending_processed = 0ull;
  k.pending_dropped = 0ull;
  k.seq = k.cb->seq;
  k.errors = k.cb->error_count;
  k.corrupt = k.words[RK_P_W_CORRUPT];
  {
    const volatile double* f = (const volatile double*)k.hist;
    k.hist_min = f[0];
    k.hist_max = f[1];
    k.hist_sum = f[2];
    k.hist_count = *(const volatile unsigned long long*)(k.hist + 24u);
  }
  if (lane == 0u) {
    for (unsigned int b = 0u; b < RK_P_HIST_BUCKETS; ++b) {
      rk_hist_buckets[b] = *(const volatile unsigned long long*)(k.hist + 32u + 8u * b);
    }
  }
  k.hist_buckets = rk_hist_buckets;
  k.hist_ndirty = 0u;
  // A bulk batch parked half-way goes on where it stopped.
  k.bulk_seq = k.words[RK_P_W_BULK_SEQ];
  k.bulk_pos = k.words[RK_P_W_BULK_POS];
  k.bulk_done = k.words[RK_P_W_BULK_DONE];
  k.bulk_seq_written = k.bulk_seq;
  k.bulk_pos_written = k.bulk_pos;
  k.bulk_done_written = k.bulk_done;
  k.bulk_progress = 0u;
  k.bulk_stop = false;
#if RK_P_BULK
  k.bulk_stage = (unsigned char*)rk_bulk_stage;
#else
  k.bulk_stage = nullptr;
#endif
  k.bulk_cur = k.bulk_stage;
  k.ctl = rk_ctl;
  k.outbox = rk_outbox;
  // Before Launched is reported: a kernel is reachable by K2K once launch() returned.
  rk_k2k_open(k, lane, k2k_routes, (const unsigned int*)k2k_targets, k2k_lane,
              (unsigned long long*)k2k_stamps, k2k_hist, k2k_self, k2k_gen, k2k_cap, k2k_flags);
#if RK_P_STATE_SHARED
  if (lane == 0u) {
    for (unsigned int v = 0u; v < RK_P_STATE_VECS; ++v) {
      rk_state_sh[v] = rk_ld4(region + off_state + 16u * v);
    }
  }
  k.state = (unsigned char*)rk_state_sh;
#else
  k.state = region + off_state;
#endif
  // Relaunched after parking (the host set the word to 2): go on in the state it left.
  const unsigned int resumed = __shfl_sync(
      RK_P_FULL, lane == 0u && k.words[RK_P_W_PARKED] == 2u ? k.cb->state : 0u, 0);
  if (lane == 0u) {
    // The GPU never parks on the doorbell: producers must not wait for a wake-up it cannot hear.
    rk_st(&k.words[RK_P_W_SLEEPING], 0u);
    if (resumed != 0u) rk_st(&k.words[RK_P_W_PARKED], 0u);
    else rk_set_state(k, RK_STATE_LAUNCHED);
  }
  __syncwarp();
  // Every lane computes the same control flow from values lane 0 broadcasts (rk_poll, rk_batch).
  unsigned int state = resumed != 0u ? resumed : RK_STATE_LAUNCHED;
  unsigned int idle = 0u;
  unsigned int sleep_ns = 0u;
  for (;;) {
    if (lane == 0u) RK_TRACE(0);
    rk_k2k_linger(k, state, batch_max, lane);
    const rk_polled p = rk_poll(k, lane);
    const unsigned int cmd = p.cmd;
    if (cmd != 0u) {
      if (lane == 0u) {
        __threadfence_system();
        atomicAnd_system((unsigned int*)&k.cb->commands, ~cmd);
      }
      if ((cmd & RK_CMD_TERMINATE) != 0u) break;
      unsigned int next = state;
      if ((cmd & RK_CMD_DEACTIVATE) != 0u) next = RK_STATE_DEACTIVATED;
      else if ((cmd & RK_CMD_ACTIVATE) != 0u) next = RK_STATE_ACTIVE;
      if (next != state) {
        state = next;
        if (lane == 0u) rk_set_state(k, state);
      }
      if ((cmd & RK_CMD_PARK) != 0u) {
        // Leave everything in memory and return, to be launched again: the host parks every
        // kernel of the context around a driver call that waits for the device to go idle
        // (loading or unloading a module, freeing memory), which a running kernel never lets.
        if (lane == 0u) rk_park(k);
        rk_bulk_quit(lane);
        return;
      }
      idle = 0u;
      sleep_ns = 0u;
    }
    if (state == RK_STATE_ACTIVE) {
      bool full = false;
      const unsigned int taken = rk_batch(k, batch_max, &full, p.high, p.normal, p.spec, lane) +
                                 rk_k2k_batch(k, batch_max, p.k2k, &full, lane);
      if (taken > 0u) {
        idle = 0u;
        sleep_ns = 0u;
        continue;
      }
    }
    if (lane == 0u && (idle & RK_P_IDLE_BEAT_MASK) == 0u) rk_beat(k);
    // Idle: short spins first, then sleeps growing to RK_P_ACTIVE_MAX_SLEEP_NS (the longest,
    // RK_P_MAX_SLEEP_NS, while not Active: commands are rare, messages wait for activate).
    if (state != RK_STATE_ACTIVE) sleep_ns = RK_P_MAX_SLEEP_NS;
    else if (++idle > RK_P_SPIN_ITERS) {
      sleep_ns = sleep_ns == 0u ? 100u : sleep_ns * 2u;
      if (sleep_ns > RK_P_ACTIVE_MAX_SLEEP_NS) sleep_ns = RK_P_ACTIVE_MAX_SLEEP_NS;
    }
    if (sleep_ns != 0u) __nanosleep(sleep_ns);
  }
  // Terminate: close the K2K route (senders get NotFound; those inside are waited out), then
  // drain (host's terminateMode 1) or leave the input, host lanes and K2K lane, to be returned.
  rk_k2k_close(k, lane);
  if (lane == 0u) rk_set_state(k, RK_STATE_TERMINATING);
  const unsigned int mode = __shfl_sync(RK_P_FULL, lane == 0u ? k.words[RK_P_W_TERMINATE_MODE] : 0u, 0);
  if (mode == 1u) {
    unsigned long long stalled_since = 0ull;
    for (;;) {
      bool full = false;
      const rk_polled p = rk_poll(k, lane);
      if (rk_batch(k, batch_max, &full, p.high, p.normal, p.spec, lane) +
              rk_k2k_batch(k, batch_max, p.k2k, &full, lane) >
          0u) {
        stalled_since = 0ull;
        continue;
      }
      if (!full) break;
      // The host reads outputs while the kernel drains; give up after a second without room.
      if (lane == 0u) rk_beat(k);
      const unsigned long long now = __shfl_sync(RK_P_FULL, rk_gtime(), 0);
      if (stalled_since == 0ull) stalled_since = now;
      else if (now - stalled_since > RK_P_DRAIN_STALL_NS) break;
      __nanosleep(RK_P_MAX_SLEEP_NS);
    }
  }
  rk_bulk_quit(lane);
  if (lane != 0u) return;
  rk_hist_flush(k);
  rk_bulk_words(k);
  rk_flush_counters(k);
  rk_st64(&k.cb->hlc, k.hlc);
  rk_set_state(k, RK_STATE_TERMINATED);
}
`;
}

function handlerCallSource(s: LoopSpec, stateShared: boolean): string {
  const h = s.handler!;
  // Without state the DSL handler takes an unused `unsigned int*`.
  const stateArg = h.stateType === undefined
    ? "k.outbox"
    : `*reinterpret_cast<${h.stateType}*>(k.state)`;
  const stateNote = stateShared ? "shared-memory copy" : "region, in place";
  const outDecl = h.outType === undefined
    ? "unsigned int rk_out_val = 0u;"
    : `${h.outType} rk_out_val = {};`;
  const outputReply = h.outType === undefined ? "" : `if (rk_replied != 0u) {
      rk_u4 buf[RK_P_OUT_VECS];
      unsigned char* bytes = (unsigned char*)buf;
      for (unsigned int b = RK_P_HDR; b < RK_P_OUT_VECS * 16u; ++b) bytes[b] = 0u;
      rk_reply_header(k, (unsigned int*)buf, w, RK_P_OUTPUT_TYPE, RK_P_OUTPUT_SIZE, 0u);
      const unsigned char* ob = (const unsigned char*)&rk_out_val;
      for (unsigned int b = 0u; b < RK_P_OUTPUT_SIZE; ++b) bytes[RK_P_HDR + b] = ob[b];
      rk_out_commit(k, buf, RK_P_OUT_VECS, RK_P_HDR + RK_P_OUTPUT_SIZE);
    } else `;
  return `  {
    // The DSL handler: message from the local copy, state from the ${stateNote}, reply into a
    // local value; control words 3/4 carry the HLC word (ctx.now() ticks it), [5] the node id,
    // [1] the outbox capacity, [2] counts ctx.send calls (delivered by rk_k2k_flush after).
    ${outDecl}
    unsigned int rk_replied = 0u;
    k.ctl[0] = 1u;
    k.ctl[1] = RK_K2K_OUTBOX_CAP;
    k.ctl[2] = 0u;
    k.ctl[3] = (unsigned int)k.hlc;
    k.ctl[4] = (unsigned int)(k.hlc >> 32);
    k.ctl[5] = k.numeric_id;
    ${h.ctxStruct} rk_c;
    rk_c.reply = &rk_out_val;
    rk_c.replied = &rk_replied;
    rk_c.outbox = k.outbox;
    rk_c.control = k.ctl;
    rk_c.msg_index = 0u;
    ${h.fn}(*reinterpret_cast<const ${h.inType}*>(msg), ${stateArg}, rk_c);
    const unsigned long long rk_w = ((unsigned long long)k.ctl[4] << 32) | k.ctl[3];
    if (rk_w > k.hlc) k.hlc = rk_w;
    rk_k2k_flush(k);
    // A reply is seen as soon as it lands (sealed, no fence after it): first let the handler's
    // stores complete, so a handler that faults (an out-of-bounds write) never gets a reply out.
    // Only then: a handler that only sends (K2K) pays no fence per message.
    if (request || rk_replied != 0u) __threadfence();
    ${outputReply}if (request) {
      rk_u4 buf[4];
      rk_reply_header(k, (unsigned int*)buf, w, RK_P_EMPTY_REPLY, 0u, 0u);
      rk_out_commit(k, buf, 4u, RK_P_HDR);
    }
  }`;
}

/** Bytes of a bulk batch descriptor's payload (see {@linkcode BulkDescriptor}). */
export const BULK_DESCRIPTOR_BYTES = 32;
/** Vectors of 16 bytes an envelope carrying a bulk descriptor spans. */
const BULK_DESCRIPTOR_VECS = (64 + BULK_DESCRIPTOR_BYTES) / 16;
/** Shared memory a persistent kernel may take in all (the static limit of a block). */
const SHARED_LIMIT = 48 * 1024;
/** Most bytes of bulk messages staged in shared memory at once. */
const BULK_STAGE_MAX = 32 * 1024;
/** Most messages of one bulk batch a kernel handles per loop turn (it polls commands between). */
export const BULK_TURN_BUDGET = 65536;

/**
 * Bytes of shared memory the kernel stages bulk messages in (a multiple of the input size), 0 when
 * the kernel takes no bulk batches: the passthrough kernel, or an input too large to stage beside
 * the histogram, the state and the outbox.
 */
export function bulkStageBytes(s: {
  readonly hasHandler: boolean;
  readonly inputSize: number;
  readonly stateSize: number;
  readonly outboxBytes: number;
}): number {
  if (!s.hasHandler || s.inputSize === 0) return 0;
  const state = s.stateSize <= SHARED_STATE_LIMIT ? round16(s.stateSize) : 0;
  const used = LatencyHistogram.bucketCount * 8 + 32 + s.outboxBytes + state + 1024;
  const room = Math.min(BULK_STAGE_MAX, SHARED_LIMIT - used);
  const messages = Math.floor(room / s.inputSize);
  return messages >= 1 ? round16(messages * s.inputSize) : 0;
}

function stageBytesOf(s: LoopSpec): number {
  return bulkStageBytes({
    hasHandler: s.handler !== undefined,
    inputSize: s.inputSize,
    stateSize: s.stateSize,
    outboxBytes: 4 * k2kOutboxWords(s.k2k),
  });
}

function bulkEnabled(s: LoopSpec): boolean {
  return stageBytesOf(s) > 0;
}

/** Most bytes of one message the direct path holds in a lane's registers per message. */
const DIRECT_MAX_INPUT = 128;
/** Warps of a kernel whose packed batches take the direct path. */
const DIRECT_WARPS = 8;

/**
 * Whether packed batches take the direct path: lane-parallel, no outputs, vector-sized inputs of
 * at most {@linkcode DIRECT_MAX_INPUT} bytes. Each lane then loads its own messages from device
 * memory straight into registers (several in flight) on every warp of the block, and the warps'
 * reductions are folded once per turn: one warp staging through shared memory and reducing per
 * group of 32 was the bound (~100 M 64-byte messages/s on the H100).
 */
function bulkDirect(s: LoopSpec): boolean {
  return bulkEnabled(s) && s.parallel?.parallel === true && s.outputSize === 0 &&
    s.inputSize % 16 === 0 && s.inputSize <= DIRECT_MAX_INPUT;
}

/** Warps the persistent kernel is launched with: one, or {@linkcode DIRECT_WARPS} (see bulkDirect). */
function bulkWarps(s: LoopSpec): number {
  return bulkDirect(s) ? DIRECT_WARPS : 1;
}

function bulkDefines(s: LoopSpec): string {
  const stage = stageBytesOf(s);
  const group = stage === 0 ? 0 : Math.min(1024, Math.floor(stage / s.inputSize));
  const unit = s.inputSize % 16 === 0
    ? "uint4"
    : s.inputSize % 4 === 0
    ? "unsigned int"
    : "unsigned char";
  // Double-buffered cp.async (16-byte pieces) for vector-sized inputs without outputs (with
  // outputs a group shrinks to the free output slots, so the next one cannot be fetched ahead).
  // Rows padded by 16 bytes where that spreads a lane's scalar reads over more shared banks.
  const gcd = (a: number, b: number): number => b === 0 ? a : gcd(b, a % b);
  const pitch = s.inputSize % 16 === 0 &&
      gcd((s.inputSize + 16) / 4, 32) < gcd(s.inputSize / 4, 32)
    ? s.inputSize + 16
    : s.inputSize;
  const half = Math.floor(stage / 32) * 16;
  const fits = Math.floor(half / pitch);
  const asyncGroup = fits >= 32 ? fits - (fits % 32) : fits;
  const direct = bulkDirect(s);
  const async = !direct && stage > 0 && s.inputSize % 16 === 0 && s.outputSize === 0 &&
    asyncGroup >= 1;
  // Messages in flight per lane on the direct path: about 256 bytes of registers.
  const unroll = Math.max(1, Math.min(8, Math.floor(256 / Math.max(16, s.inputSize))));
  const W = KernelWord;
  return `#define RK_P_HIST_DIRTY 32u
#define RK_P_W_BULK_DONE ${W.bulkDone}u
#define RK_P_W_BULK_SEQ ${W.bulkSeq}u
#define RK_P_W_BULK_POS ${W.bulkPos}u
#define RK_P_BULK ${stage === 0 ? 0 : 1}
#define RK_P_BULK_TYPE 0x${BULK_BATCH_TYPE_ID.toString(16).toUpperCase()}u
#define RK_P_BULK_DESC ${BULK_DESCRIPTOR_BYTES}u
#define RK_P_BULK_STAGE ${direct ? 16 : Math.max(stage, 16)}u
#define RK_P_BULK_DIRECT ${direct ? 1 : 0}
#define RK_P_BULK_WARPS ${bulkWarps(s)}u
#define RK_P_BULK_UNROLL ${unroll}u
#define RK_P_BULK_ASYNC ${async ? 1 : 0}
#define RK_P_BULK_PITCH ${async ? pitch : Math.max(s.inputSize, 1)}u
#define RK_P_BULK_HALF ${Math.max(half, 16)}u
#define RK_P_BULK_GROUP ${async ? asyncGroup : Math.max(group, 1)}u
#define RK_P_BULK_BUDGET ${BULK_TURN_BUDGET}u
#define RK_P_BULK_UNIT ${unit}
#define RK_P_PARALLEL ${s.parallel?.parallel === true ? 1 : 0}`;
}

/**
 * The bulk path (handler kernels): a batch descriptor in an input lane names `count` messages of
 * the input type packed in device memory, copied there by the host's copy stream, which then
 * stores `seq` into the fence word. Lane-parallel handlers (`laneParallelPlan`: state only
 * reduced) without outputs take the direct path ({@linkcode bulkDirect}: every warp of the block,
 * messages straight into registers). Otherwise the warp copies them into shared memory a group
 * at a time (coalesced loads of L2, many in flight) and handles 32 at a time: on its 32 lanes at
 * once when lane-parallel, else one after another on lane 0, in order, exactly as single messages.
 */
function bulkSource(s: LoopSpec): string {
  const h = s.handler;
  if (h === undefined || !bulkEnabled(s)) {
    return `__device__ __forceinline__ void rk_bulk_words(rk_kernel& k) { (void)k; }`;
  }
  const parallel = s.parallel?.parallel === true ? s.parallel : undefined;
  return `
__device__ __forceinline__ bool rk_is_bulk(const rk_u4* env, unsigned int length) {
  const unsigned int* w = (const unsigned int*)env;
  return w[0] == RK_P_ENV_MAGIC && (w[1] & 0xFFFFu) == RK_P_ENV_VERSION &&
         w[2] == RK_P_BULK_TYPE && w[3] == RK_P_BULK_DESC && length >= RK_P_HDR + RK_P_BULK_DESC;
}

// The bulk progress words (lane 0, in a batch's publication and when parking): the host frees a
// batch's device memory once bulk_done reached its seq; a relaunch goes on from seq/pos.
__device__ __forceinline__ void rk_bulk_words(rk_kernel& k) {
  // Three PCIe writes: only when a bulk batch moved on since the last time.
  if (k.bulk_seq == k.bulk_seq_written && k.bulk_pos == k.bulk_pos_written &&
      k.bulk_done == k.bulk_done_written) {
    return;
  }
  k.bulk_seq_written = k.bulk_seq;
  k.bulk_pos_written = k.bulk_pos;
  k.bulk_done_written = k.bulk_done;
  rk_st(&k.words[RK_P_W_BULK_SEQ], k.bulk_seq);
  rk_st(&k.words[RK_P_W_BULK_POS], k.bulk_pos);
  rk_st(&k.words[RK_P_W_BULK_DONE], k.bulk_done);
}

// Copies bytes from device memory into shared memory (the whole warp): 16 loads per lane issued
// before any store, so their latencies overlap; .cg (L2): the batch's bytes came by DMA.
template <typename T>
__device__ __forceinline__ void rk_bulk_copy(unsigned char* dst, const unsigned char* src,
                                             unsigned int bytes, unsigned int lane) {
  const unsigned int size = (unsigned int)sizeof(T);
  for (unsigned int base = 0u; base < bytes; base += 16u * 32u * size) {
    T r[16];
#pragma unroll
    for (unsigned int i = 0u; i < 16u; ++i) {
      const unsigned int o = base + (i * 32u + lane) * size;
      if (o < bytes) r[i] = __ldcg((const T*)(src + o));
    }
#pragma unroll
    for (unsigned int i = 0u; i < 16u; ++i) {
      const unsigned int o = base + (i * 32u + lane) * size;
      if (o < bytes) *(T*)(dst + o) = r[i];
    }
  }
}

#if RK_P_BULK_ASYNC
// Starts the copy of messages pos..pos+g-1 into dst, rows RK_P_BULK_PITCH apart (the whole warp;
// 16-byte cp.async pieces through L2, committed as one group).
__device__ __forceinline__ void rk_bulk_fetch(unsigned char* dst, unsigned long long addr,
                                              unsigned int pos, unsigned int g, unsigned int lane) {
  const unsigned char* src = (const unsigned char*)(addr + (unsigned long long)pos * RK_P_INPUT_SIZE);
  const unsigned int parts = RK_P_INPUT_SIZE / 16u;
  for (unsigned int t = lane; t < g * parts; t += 32u) {
    const unsigned int m = t / parts;
    const unsigned int shared =
        (unsigned int)__cvta_generic_to_shared(dst + m * RK_P_BULK_PITCH + 16u * (t - m * parts));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" :: "r"(shared), "l"(src + 16u * t)
                 : "memory");
  }
  asm volatile("cp.async.commit_group;" ::: "memory");
}
#endif

// Free output slots after this batch's (lane 0).
__device__ unsigned int rk_out_free(rk_kernel& k) {
  rk_out& o = k.out;
  unsigned int used = o.tail + o.count - o.head;
  if (o.cap - used < RK_P_BULK_GROUP) {
    o.head = o.q->head;
    used = o.tail + o.count - o.head;
  }
  return o.cap - used;
}

${parallel === undefined ? serialGroupSource() : parallelGroupSource(s, parallel)}
${parallel !== undefined && bulkDirect(s) ? directSource(s, parallel) : ""}

// One bulk batch descriptor (the whole warp; env in every lane). Returns true once each of its
// messages was handled (or it was dropped as malformed); false when its copy has not landed yet,
// the output queue has no room, or this turn's budget is spent: it goes on at bulk_pos.
__device__ bool rk_bulk(rk_kernel& k, const rk_u4* env, unsigned int lane) {
  const unsigned int* w = (const unsigned int*)env;
  const unsigned long long addr = ((unsigned long long)w[17] << 32) | w[16];
  const unsigned long long fence = ((unsigned long long)w[19] << 32) | w[18];
  const unsigned int count = w[20];
  const unsigned int stride = w[21];
  const unsigned int type = w[22];
  const unsigned int seq = w[23];
  if (type != RK_P_INPUT_TYPE || stride != RK_P_INPUT_SIZE || count == 0u || seq == 0u ||
      (addr & 15ull) != 0ull || fence == 0ull) {
    if (lane == 0u) {
      ++k.pending_dropped;
      rk_record_error(k, RK_ERR_INVALID_MESSAGE);
    }
    return true;
  }
  unsigned int pos = k.bulk_seq == seq ? k.bulk_pos : 0u;
  if (pos == 0u) {
    // The host queued the copy before the descriptor; the store after it says it landed.
    const unsigned int landed = __shfl_sync(
        RK_P_FULL, lane == 0u ? rk_ld((const volatile unsigned int*)fence) : 0u, 0);
    if ((int)(landed - seq) < 0) return false;
    rk_fence_acq();
    if (lane == 0u) {
      const unsigned long long rw = ((unsigned long long)w[11] << 32) | w[10];
      if (rw != 0ull) rk_hlc_merge(k, rw);
    }
  }
  const unsigned int end = count - pos > RK_P_BULK_BUDGET ? pos + RK_P_BULK_BUDGET : count;
#if RK_P_BULK_DIRECT
  // Every warp takes a share, straight from device memory into registers (rk_bulk_share); the
  // warps' reductions are folded into the state here, by lane 0, once for the whole turn.
  const unsigned long long t0 = rk_gtime();
  if (lane == 0u) {
    rk_bulk_job.addr = addr;
    rk_bulk_job.pos = pos;
    rk_bulk_job.end = end;
  }
  __syncthreads();
  rk_bulk_share(0u, lane);
  __syncthreads();
  if (lane == 0u) {
    rk_bulk_fold(k);
    // The turn's chunks of 32 ran RK_P_BULK_WARPS at a time: each took that share of its time.
    const unsigned int chunks = (end - pos + 31u) / 32u;
    k.pending_processed += end - pos;
    rk_hist_add(k, (rk_gtime() - t0) * RK_P_BULK_WARPS / chunks, end - pos);
  }
  __syncwarp();
  k.bulk_progress += end - pos;
  pos = end;
#elif RK_P_BULK_ASYNC
  // Double-buffered: the next group comes into one half of the stage (cp.async, no registers)
  // while the warp handles this group in the other half.
  unsigned int half = 0u;
  unsigned int g = end - pos < RK_P_BULK_GROUP ? end - pos : RK_P_BULK_GROUP;
  rk_bulk_fetch(k.bulk_stage, addr, pos, g, lane);
  while (pos < end) {
    const unsigned int next = pos + g;
    const unsigned int gn = end - next < RK_P_BULK_GROUP ? end - next : RK_P_BULK_GROUP;
    if (gn != 0u) {
      rk_bulk_fetch(k.bulk_stage + (half ^ 1u) * RK_P_BULK_HALF, addr, next, gn, lane);
      asm volatile("cp.async.wait_group 1;" ::: "memory");
    } else {
      asm volatile("cp.async.wait_group 0;" ::: "memory");
    }
    __syncwarp();
    k.bulk_cur = k.bulk_stage + half * RK_P_BULK_HALF;
    rk_bulk_group(k, g, w, lane);
    __syncwarp();
    pos = next;
    k.bulk_progress += g;
    half ^= 1u;
    g = gn;
  }
#else
  while (pos < end) {
    unsigned int g = end - pos < RK_P_BULK_GROUP ? end - pos : RK_P_BULK_GROUP;
#if RK_P_OUTPUT_SIZE > 0
    // Each message may output once: no more than free output slots.
    const unsigned int room = __shfl_sync(RK_P_FULL, lane == 0u ? rk_out_free(k) : 0u, 0);
    if (room < g) g = room;
    if (g == 0u) break;
#endif
    rk_bulk_copy<RK_P_BULK_UNIT>(
        k.bulk_stage, (const unsigned char*)(addr + (unsigned long long)pos * RK_P_INPUT_SIZE),
        g * RK_P_INPUT_SIZE, lane);
    __syncwarp();
    k.bulk_cur = k.bulk_stage;
    rk_bulk_group(k, g, w, lane);
    __syncwarp();
    pos += g;
    k.bulk_progress += g;
  }
#endif
  if (pos == count) {
    k.bulk_done = seq;
    k.bulk_seq = 0u;
    k.bulk_pos = 0u;
    return true;
  }
  k.bulk_seq = seq;
  k.bulk_pos = pos;
  return false;
}
`;
}

/**
 * A lane's private delta of the state for lane-parallel handlers: its declaration (identity
 * values: 0, and ~0 for `&=` fields) and the warp reduction of each reduced field, whose result
 * `v` lane 0 then uses as `apply(type, offset, op)` says.
 */
function laneDelta(
  h: NonNullable<LoopSpec["handler"]>,
  plan: { readonly reductions: readonly StateReduction[] },
  indent: string,
  apply: (type: string, offset: number, op: string) => string,
): { declare: string; reduce: string } {
  const bytes = h.stateType === undefined ? "(unsigned char*)rk_d" : "(unsigned char*)&rk_d";
  const declare = h.stateType === undefined
    ? `unsigned int rk_d_word = 0u;\n${indent}unsigned int* rk_d = &rk_d_word;`
    : `${h.stateType} rk_d = {};`;
  const andInits = plan.reductions.filter((r) => r.op === "and").map((r) => {
    const t = UNSIGNED_OF[SCALAR_SIZE[r.storage]];
    return `\n${indent}*(${t}*)(${bytes} + ${r.offset}u) = (${t})~0ull;`;
  }).join("");
  const reduce = plan.reductions.map((r) => {
    const t = UNSIGNED_OF[SCALAR_SIZE[r.storage]];
    const wide = SCALAR_SIZE[r.storage] === 8 ? "unsigned long long" : "unsigned int";
    const op = REDUCE_OP[r.op];
    return `{ // state.${r.field} (${r.op})
${indent}  ${wide} v = (${wide})*(const ${t}*)(${bytes} + ${r.offset}u);
#pragma unroll
${indent}  for (unsigned int o = 16u; o > 0u; o >>= 1u) v = v ${op} __shfl_xor_sync(RK_P_FULL, v, o);
${indent}  if (lane == 0u) ${apply(t, r.offset, op)}
${indent}}`;
  }).join(`\n${indent}`);
  return { declare: declare + andInits, reduce };
}

/**
 * The direct path's device code (see {@linkcode bulkDirect}): the job warp 0 hands out, each
 * warp's share (chunk c of 32 messages goes to warp c % RK_P_BULK_WARPS, RK_P_BULK_UNROLL chunks'
 * loads in flight per lane), the helper warps' loop, and the fold of the warps' reductions.
 */
function directSource(
  s: LoopSpec,
  plan: { readonly reductions: readonly StateReduction[] },
): string {
  const h = s.handler!;
  const deltaType = h.stateType ?? "unsigned int";
  const lanes = laneDelta(
    h,
    plan,
    "  ",
    (t, offset) => `*(${t}*)(rk_bulk_part[warp] + ${offset}u) = (${t})v;`,
  );
  const fold = plan.reductions.map((r) => {
    const t = UNSIGNED_OF[SCALAR_SIZE[r.storage]];
    const op = REDUCE_OP[r.op];
    return `{ // state.${r.field} (${r.op})
      ${t}* p = (${t}*)(k.state + ${r.offset}u);
      *p = (${t})(*p ${op} *(const ${t}*)(rk_bulk_part[w] + ${r.offset}u));
    }`;
  }).join("\n    ");
  const vecs = s.inputSize / 16;
  return `// The job warp 0 hands the helper warps: messages pos..end-1 at addr; quit: return.
struct rk_bulk_job_t {
  unsigned long long addr;
  unsigned int pos;
  unsigned int end;
  unsigned int quit;
};
__shared__ rk_bulk_job_t rk_bulk_job;
// Each warp's reduced deltas (the state's layout; written by its lane 0).
__shared__ __align__(16) unsigned char rk_bulk_part[RK_P_BULK_WARPS][sizeof(${deltaType})];

// One warp's share of the job: its lanes run the handler on their own messages against private
// identity deltas (laneParallelPlan: the state is only reduced), reduced across the warp at the end.
__device__ void rk_bulk_share(unsigned int warp, unsigned int lane) {
  const unsigned long long addr = rk_bulk_job.addr;
  const unsigned int pos = rk_bulk_job.pos;
  const unsigned int end = rk_bulk_job.end;
  const unsigned int chunks = (end - pos + 31u) / 32u;
  ${lanes.declare}
  unsigned int rk_out_val = 0u;
  unsigned int rk_replied = 0u;
  ${h.ctxStruct} rk_c;
  rk_c.reply = (decltype(rk_c.reply))&rk_out_val;
  rk_c.replied = &rk_replied;
  // laneParallelPlan refuses what would use these (ctx.send, ctx.now()).
  rk_c.outbox = nullptr;
  rk_c.control = nullptr;
  rk_c.msg_index = 0u;
  for (unsigned int c0 = warp; c0 < chunks; c0 += RK_P_BULK_WARPS * RK_P_BULK_UNROLL) {
    uint4 m[RK_P_BULK_UNROLL][${vecs}];
#pragma unroll
    for (unsigned int u = 0u; u < RK_P_BULK_UNROLL; ++u) {
      const unsigned int i = pos + (c0 + u * RK_P_BULK_WARPS) * 32u + lane;
      if (c0 + u * RK_P_BULK_WARPS < chunks && i < end) {
        const uint4* src = (const uint4*)(addr + (unsigned long long)i * RK_P_INPUT_SIZE);
#pragma unroll
        for (unsigned int v = 0u; v < ${vecs}u; ++v) m[u][v] = __ldcg(src + v);
      }
    }
#pragma unroll
    for (unsigned int u = 0u; u < RK_P_BULK_UNROLL; ++u) {
      const unsigned int i = pos + (c0 + u * RK_P_BULK_WARPS) * 32u + lane;
      if (c0 + u * RK_P_BULK_WARPS < chunks && i < end) {
        ${h.fn}(*reinterpret_cast<const ${h.inType}*>(&m[u][0]), rk_d, rk_c);
      }
    }
  }
  ${lanes.reduce}
}

#if RK_P_BULK_WARPS > 1
// A helper warp: waits for a job (or quit) at the block's barrier, takes its share, says done.
__device__ void rk_bulk_helper(unsigned int warp, unsigned int lane) {
  for (;;) {
    __syncthreads();
    if (rk_bulk_job.quit != 0u) return;
    rk_bulk_share(warp, lane);
    __syncthreads();
  }
}
#endif

// Folds every warp's deltas into the state (lane 0 of warp 0, after the job).
__device__ void rk_bulk_fold(rk_kernel& k) {
  for (unsigned int w = 0u; w < RK_P_BULK_WARPS; ++w) {
    ${fold}
  }
}`;
}

function serialGroupSource(): string {
  return `// Not lane-parallel: lane 0 handles the group's messages in order, as single messages.
__device__ void rk_bulk_group(rk_kernel& k, unsigned int g, const unsigned int* w, unsigned int lane) {
  if (lane != 0u) return;
  for (unsigned int q = 0u; q < g; ++q) {
    rk_run_handler(k, k.bulk_cur + (unsigned long long)q * RK_P_BULK_PITCH, w, false);
  }
}`;
}

const UNSIGNED_OF: Record<number, string> = {
  1: "unsigned char",
  2: "unsigned short",
  4: "unsigned int",
  8: "unsigned long long",
};
const REDUCE_OP: Record<ReductionOp, string> = { add: "+", or: "|", and: "&", xor: "^" };

function parallelGroupSource(
  s: LoopSpec,
  plan: { readonly reductions: readonly StateReduction[] },
): string {
  const h = s.handler!;
  const lanes = laneDelta(h, plan, "    ", (t, offset, op) =>
    `{
        ${t}* p = (${t}*)(k.state + ${offset}u);
        *p = (${t})(*p ${op} (${t})v);
      }`);
  const outDecl = h.outType === undefined
    ? "unsigned int rk_out_val = 0u;"
    : `${h.outType} rk_out_val = {};`;
  const outputs = h.outType === undefined ? "" : `
    // Outputs in lane order: lane 0 reserves the slots and one HLC tick per output.
    const unsigned int rb = __ballot_sync(RK_P_FULL, rk_replied != 0u);
    if (rb != 0u) {
      // Sealed outputs are seen as soon as they land: the handlers' stores complete first.
      __threadfence();
      unsigned long long ts0 = 0ull;
      unsigned int at = 0u;
      if (lane == 0u) {
        ts0 = rk_hlc_tick_now(k);
        k.hlc = ts0 + (unsigned long long)(__popc(rb) - 1);
        at = k.out.tail + k.out.count;
        k.out.count += (unsigned int)__popc(rb);
      }
      ts0 = __shfl_sync(RK_P_FULL, ts0, 0);
      at = __shfl_sync(RK_P_FULL, at, 0);
      if (rk_replied != 0u) {
        const unsigned int idx = (unsigned int)__popc(rb & ((1u << lane) - 1u));
        const unsigned long long ts = ts0 + idx;
        rk_u4 buf[RK_P_OUT_VECS];
        unsigned int* hw = (unsigned int*)buf;
        unsigned char* bytes = (unsigned char*)buf;
        for (unsigned int b = RK_P_HDR; b < RK_P_OUT_VECS * 16u; ++b) bytes[b] = 0u;
        hw[0] = RK_P_ENV_MAGIC;
        hw[1] = RK_P_ENV_VERSION;
        hw[2] = RK_P_OUTPUT_TYPE;
        hw[3] = RK_P_OUTPUT_SIZE;
        hw[4] = 0u;
        hw[5] = 0u;
        hw[6] = 0u;
        hw[7] = 0u;
        hw[8] = k.numeric_id;
        hw[9] = 0u;
        hw[10] = (unsigned int)ts;
        hw[11] = (unsigned int)(ts >> 32);
        hw[12] = k.numeric_id;
        hw[13] = w[13];
        hw[14] = 0u;
        hw[15] = 0u;
        const unsigned char* ob = (const unsigned char*)&rk_out_val;
        for (unsigned int b = 0u; b < RK_P_OUTPUT_SIZE; ++b) bytes[RK_P_HDR + b] = ob[b];
        const unsigned int ot = at + idx;
        rk_store_sealed(k.out.data + (unsigned long long)(ot & k.out.mask) * k.stride, buf,
                        RK_P_OUT_VECS, RK_P_HDR + RK_P_OUTPUT_SIZE, ot);
      }
    }`;
  return `// Lane-parallel (laneParallelPlan): each lane handles every 32nd message of the group against a
// private identity copy of the state; the copies are reduced across the warp once per group and
// folded into the state by lane 0, which equals handling them one after another (integer
// +,-,|,&,^ commute). Outputs go out per chunk of 32, in message order.
__device__ void rk_bulk_group(rk_kernel& k, unsigned int g, const unsigned int* w, unsigned int lane) {
  const unsigned long long t0 = rk_gtime();
  ${lanes.declare}
  for (unsigned int c0 = 0u; c0 < g; c0 += 32u) {
    const unsigned int m = g - c0 < 32u ? g - c0 : 32u;
    ${outDecl}
    unsigned int rk_replied = 0u;
    if (lane < m) {
      ${h.ctxStruct} rk_c;
      rk_c.reply = &rk_out_val;
      rk_c.replied = &rk_replied;
      rk_c.outbox = k.outbox;
      rk_c.control = k.ctl;
      rk_c.msg_index = 0u;
      ${h.fn}(*reinterpret_cast<const ${h.inType}*>(
          k.bulk_cur + (unsigned long long)(c0 + lane) * RK_P_BULK_PITCH), rk_d, rk_c);
    }
${outputs}
  }
  ${lanes.reduce}
  if (lane == 0u) {
    // A chunk's 32 messages ran at once: each took the chunk's share of the group's time.
    k.pending_processed += g;
    rk_hist_add(k, (rk_gtime() - t0) / ((g + 31u) / 32u), g);
  }
}`;
}
