/**
 * The control block and queue header layouts against a real WebGPU adapter (Mesa lavapipe on
 * machines without a GPU). control_block.test.ts and queue.test.ts only check the generated WGSL
 * text structurally; here a shader has to compile it, read every field of memory the JS
 * accessors formatted, and write fields that the JS accessors then read back. The queue tests
 * move messages from a JS-produced queue into a second queue inside a shader and let JS consume
 * them, so the seq/len/data offsets are exercised from both sides. The generated C text of the
 * queue header goes through nvcc (or the host C++ compiler) with static_asserts on every offset.
 *
 * The GPU parts skip, saying why, where `navigator.gpu` or an adapter is missing (Bun).
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  CONTROL_BLOCK_BYTES,
  CONTROL_BLOCK_FIELDS,
  CONTROL_BLOCK_MAGIC,
  CONTROL_BLOCK_VERSION,
  ControlBlock,
  KernelCommand,
  KernelErrorCode,
  KernelState,
} from "../../src/core/control_block.ts";
import { HlcTimestamp } from "../../src/core/hlc.ts";
import {
  QUEUE_HEADER_BYTES,
  QUEUE_MAGIC,
  QUEUE_VERSION,
  queueByteLength,
  queueHeaderC,
  queueHeaderWgsl,
  QueueKind,
  queueLayout,
  QueueOffset,
} from "../../src/core/queue_layout.ts";
import { SpscQueue } from "../../src/core/spsc_queue.ts";
import { MpscQueue } from "../../src/core/mpsc_queue.ts";
import { probeWebGpu } from "../webgpu_device.ts";

// ---------------------------------------------------------------------------------------------
// WebGPU device, or the reason there is none

const { device, skip: gpuSkip } = await probeWebGpu();
if (gpuSkip) console.log(`layout_gpu: skipping the WebGPU tests: ${gpuSkip}`);

/** The device; only called from tests that are skipped when there is none. */
function gpu(): GPUDevice {
  if (device === undefined) throw new Error("no WebGPU device (the test should have skipped)");
  return device;
}

// WebGPU's GPUBufferUsage / GPUMapMode bit values (spec constants; the globals are not typed here).
const MAP_READ = 0x1;
const COPY_SRC = 0x4;
const COPY_DST = 0x8;
const STORAGE = 0x80;
const MAP_MODE_READ = 0x1;

/** Compiles `code` and fails with every error message and the source when it does not. */
async function compile(d: GPUDevice, code: string): Promise<GPUShaderModule> {
  const module = d.createShaderModule({ code });
  const info = await module.getCompilationInfo();
  const errors = info.messages.filter((m) => m.type === "error");
  assert.deepEqual(errors.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`), [], code);
  return module;
}

async function readBack(d: GPUDevice, src: GPUBuffer, size: number): Promise<Uint8Array> {
  const staging = d.createBuffer({ size, usage: MAP_READ | COPY_DST });
  const enc = d.createCommandEncoder();
  enc.copyBufferToBuffer(src, 0, staging, 0, size);
  d.queue.submit([enc.finish()]);
  await staging.mapAsync(MAP_MODE_READ);
  const out = new Uint8Array(staging.getMappedRange()).slice();
  staging.unmap();
  staging.destroy();
  return out;
}

/**
 * Runs the `main` entry point of `code` once with `workgroups` workgroups, binding `inputs[i]`
 * (copied into a fresh storage buffer) at `@binding(i)`, and returns every buffer's bytes after
 * the dispatch. Every binding is read_write storage, so a test can look at all of them.
 */
async function dispatch(
  code: string,
  inputs: readonly Uint8Array[],
  workgroups = 1,
): Promise<Uint8Array[]> {
  const d = gpu();
  d.pushErrorScope("validation");
  const module = await compile(d, code);
  const pipeline = d.createComputePipeline({
    layout: "auto",
    compute: { module, entryPoint: "main" },
  });
  const buffers = inputs.map((bytes) => {
    const b = d.createBuffer({ size: bytes.byteLength, usage: STORAGE | COPY_SRC | COPY_DST });
    d.queue.writeBuffer(b, 0, bytes);
    return b;
  });
  const bind = d.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
  });
  const enc = d.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bind);
  pass.dispatchWorkgroups(workgroups);
  pass.end();
  d.queue.submit([enc.finish()]);
  const validation = await d.popErrorScope();
  assert.equal(validation, null, `WebGPU validation error: ${validation?.message}\n${code}`);
  const out: Uint8Array[] = [];
  for (let i = 0; i < buffers.length; i++) {
    out.push(await readBack(d, buffers[i], inputs[i].byteLength));
    buffers[i].destroy();
  }
  return out;
}

/** A fresh ArrayBuffer holding a copy of `bytes` (read-back bytes are what JS attaches to). */
function ownBuffer(bytes: Uint8Array): ArrayBuffer {
  const copy = new ArrayBuffer(bytes.byteLength);
  new Uint8Array(copy).set(bytes);
  return copy;
}

function words(bytes: Uint8Array): Uint32Array {
  return new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >> 2);
}

const hex = (n: number) => `0x${n.toString(16)}`;

// ---------------------------------------------------------------------------------------------
// Control block

/** Fixed clock so the HLC word is reproducible. */
const NOW = 1_750_000_000_123;

/**
 * Formats block `k` at `byteOffset` and sets every field through the JS accessors to a value
 * that differs from its neighbours' and from the other block's (so a shifted or swapped read
 * cannot match by accident). The 64-bit counters cross 2^32, so their high words matter.
 */
function fillBlock(buffer: ArrayBuffer, byteOffset: number, k: number): ControlBlock {
  const cb = ControlBlock.init(buffer, byteOffset, {
    kernelId: 0xdead_0000 + k,
    hlcNodeId: 0x0102_0300 + k,
    inputCapacity: 1024 << k,
    outputCapacity: 64 << k,
  });
  cb.state = k === 0 ? KernelState.Deactivated : KernelState.Failed;
  cb.requestActivate();
  if (k === 0) cb.requestTerminate();
  else cb.requestDeactivate();
  cb.recordError(KernelErrorCode.HandlerFailed);
  for (let i = 0; i < 2 + k; i++) cb.recordError(0x1000 + k);
  cb.addInFlight(7 + k);
  cb.setCounters((0x1234n << 32n) | 0xffff_fffen, (0xabn << 32n) | BigInt(0xffff_ffff - k));
  cb.addCounters(5 + k, 3);
  const clock = cb.hlcClock({ now: () => NOW + k });
  clock.tick();
  clock.tick(); // same physical time: logical 1, so both parts of the word are non-zero
  cb.snapshotQueues(
    { enqueued: 0xffff_fff0 + k, dequeued: 0xffff_ffe0 + k },
    { enqueued: 17 + k, dequeued: 9 + k },
  );
  for (let i = 0; i < 5 + k; i++) cb.beat();
  return cb;
}

/**
 * One u32 word of the block: its name in the generated struct, the WGSL expression that reads
 * it (`B` stands for the block; `s`, `p_lo`, ... are the seqlock and HLC reads of the shader
 * below), and the value the JS accessors give for it.
 */
type Probe = readonly [member: string, wgsl: string, js: (cb: ControlBlock) => number];

const lo32 = (v: bigint) => Number(v & 0xffff_ffffn);
const hi32 = (v: bigint) => Number(v >> 32n);
// Written out by hand, not derived from CONTROL_BLOCK_FIELDS, so that a renamed member, a member
// that loses or gains `atomic<u32>`, or a moved word fails here.
const CB_PROBES: readonly Probe[] = [
  ["magic", "B.magic", () => CONTROL_BLOCK_MAGIC],
  ["version", "B.version", () => CONTROL_BLOCK_VERSION],
  ["state", "atomicLoad(&B.state)", (cb) => cb.state],
  ["commands", "atomicLoad(&B.commands)", (cb) => cb.pendingCommands],
  ["kernel_id", "B.kernel_id", (cb) => cb.kernelId],
  ["last_error", "atomicLoad(&B.last_error)", (cb) => cb.lastError],
  ["error_count", "atomicLoad(&B.error_count)", (cb) => cb.errorCount],
  ["in_flight", "atomicLoad(&B.in_flight)", (cb) => cb.inFlight],
  ["seq", "s", (cb) => cb.seq],
  ["reserved36", "B.reserved36", () => 0],
  ["processed_lo", "p_lo", (cb) => lo32(cb.readCounters().processed)],
  ["processed_hi", "p_hi", (cb) => hi32(cb.readCounters().processed)],
  ["dropped_lo", "d_lo", (cb) => lo32(cb.readCounters().dropped)],
  ["dropped_hi", "d_hi", (cb) => hi32(cb.readCounters().dropped)],
  ["reserved56", "B.reserved56[0]", () => 0],
  ["reserved56", "B.reserved56[1]", () => 0],
  ["hlc_lo", "h_lo", (cb) => cb.hlcClock().current().toWords()[0]],
  ["hlc_hi", "h_hi", (cb) => cb.hlcClock().current().toWords()[1]],
  ["hlc_node_id", "B.hlc_node_id", (cb) => cb.hlcNodeId],
  ["reserved76", "B.reserved76", () => 0],
  ["input_head", "atomicLoad(&B.input_head)", (cb) => cb.inputHead],
  ["input_tail", "atomicLoad(&B.input_tail)", (cb) => cb.inputTail],
  ["output_head", "atomicLoad(&B.output_head)", (cb) => cb.outputHead],
  ["output_tail", "atomicLoad(&B.output_tail)", (cb) => cb.outputTail],
  ["input_capacity", "B.input_capacity", (cb) => cb.inputCapacity],
  ["output_capacity", "B.output_capacity", (cb) => cb.outputCapacity],
  ["input_mask", "B.input_mask", (cb) => cb.inputMask],
  ["output_mask", "B.output_mask", (cb) => cb.outputMask],
  ["heartbeat", "atomicLoad(&B.heartbeat)", (cb) => cb.heartbeat],
  ["reserved116", "B.reserved116[0]", () => 0],
  ["reserved116", "B.reserved116[1]", () => 0],
  ["reserved116", "B.reserved116[2]", () => 0],
];

/**
 * Reads both blocks of `array<RkControlBlock, 2>`: the second one only lines up if the WGSL
 * struct is exactly 128 bytes. 64-bit values are read the way docs/control-block.md tells
 * device code to: the counters under the seqlock, the HLC word as hi, lo, hi.
 */
const CB_READ_SHADER = `${ControlBlock.wgslStruct()}
@group(0) @binding(0) var<storage, read_write> cbs: array<RkControlBlock, 2>;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;

fn read_block(i: u32, o: u32) {
  var s = 0u;
  var p_lo = 0u;
  var p_hi = 0u;
  var d_lo = 0u;
  var d_hi = 0u;
  loop {
    s = atomicLoad(&cbs[i].seq);
    p_lo = atomicLoad(&cbs[i].processed_lo);
    p_hi = atomicLoad(&cbs[i].processed_hi);
    d_lo = atomicLoad(&cbs[i].dropped_lo);
    d_hi = atomicLoad(&cbs[i].dropped_hi);
    if ((s & 1u) == 0u && atomicLoad(&cbs[i].seq) == s) { break; }
  }
  var h_lo = 0u;
  var h_hi = 0u;
  loop {
    h_hi = atomicLoad(&cbs[i].hlc_hi);
    h_lo = atomicLoad(&cbs[i].hlc_lo);
    if (atomicLoad(&cbs[i].hlc_hi) == h_hi) { break; }
  }
${CB_PROBES.map(([, e], j) => `  out[o + ${j}u] = ${e.replaceAll("B.", "cbs[i].")};`).join("\n")}
}

@compute @workgroup_size(1)
fn main() {
  read_block(0u, 0u);
  read_block(1u, ${CB_PROBES.length}u);
  // The constants agree with the JS ones.
  out[${2 * CB_PROBES.length}u] = RK_CB_MAGIC;
  out[${2 * CB_PROBES.length + 1}u] = RK_CB_VERSION;
  out[${2 * CB_PROBES.length + 2}u] = RK_CB_BYTES;
  out[${2 * CB_PROBES.length + 3}u] = RK_STATE_FAILED | (RK_CMD_TERMINATE << 8u) |
    (RK_ERR_INVALID_COMMAND << 16u);
}
`;

/**
 * The kernel side of the protocol, on one block: 64 invocations bump `heartbeat` and
 * `in_flight` concurrently; invocation 0 takes the Activate command (atomicAnd), moves the
 * state, sets another command bit (atomicOr), records an error and adds to both 64-bit counters
 * in one seqlock write section, carrying into the high words.
 */
const CB_WRITE_SHADER = `${ControlBlock.wgslStruct()}
@group(0) @binding(0) var<storage, read_write> cb: RkControlBlock;

fn add_processed(n: u32) {
  let lo = atomicLoad(&cb.processed_lo);
  atomicStore(&cb.processed_lo, lo + n);
  if (lo + n < lo) { atomicAdd(&cb.processed_hi, 1u); }
}

fn add_dropped(n: u32) {
  let lo = atomicLoad(&cb.dropped_lo);
  atomicStore(&cb.dropped_lo, lo + n);
  if (lo + n < lo) { atomicAdd(&cb.dropped_hi, 1u); }
}

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32) {
  atomicAdd(&cb.heartbeat, 1u);
  atomicAdd(&cb.in_flight, 1u);
  if (lid != 0u) { return; }
  let cmd = atomicAnd(&cb.commands, ~RK_CMD_ACTIVATE);
  if ((cmd & RK_CMD_ACTIVATE) != 0u) { atomicStore(&cb.state, RK_STATE_ACTIVE); }
  atomicOr(&cb.commands, RK_CMD_DEACTIVATE);
  atomicStore(&cb.last_error, RK_ERR_OUTPUT_QUEUE_FULL);
  atomicAdd(&cb.error_count, 1u);
  let s = atomicLoad(&cb.seq);
  atomicStore(&cb.seq, s + 1u);
  add_processed(3u);
  add_dropped(1u);
  atomicStore(&cb.seq, s + 2u);
  atomicStore(&cb.input_head, 0xfffffffeu);
  atomicStore(&cb.input_tail, 2u);
  atomicStore(&cb.output_head, 40u);
  atomicStore(&cb.output_tail, 41u);
}
`;

describe("control block WGSL on a WebGPU adapter", () => {
  it("every word of the block has a probe, in the member order of CONTROL_BLOCK_FIELDS", () => {
    assert.equal(CB_PROBES.length, CONTROL_BLOCK_BYTES / 4);
    const members = CONTROL_BLOCK_FIELDS.flatMap((f) =>
      f.type === "u64"
        ? [`${f.name}_lo`, `${f.name}_hi`]
        : Array.from({ length: f.words ?? 1 }, () => f.name)
    );
    assert.deepEqual(CB_PROBES.map(([m]) => m), members);
    // naga (Deno's WGSL compiler) accepts a plain read of an atomic<u32>, which the WGSL spec and
    // Tint reject, so the shaders alone would not notice a probe that skips atomicLoad.
    const atomic = new Set(
      CONTROL_BLOCK_FIELDS.filter((f) => f.atomic).flatMap((f) =>
        f.type === "u64" ? [`${f.name}_lo`, `${f.name}_hi`] : [f.name]
      ),
    );
    for (const [m, wgsl] of CB_PROBES) {
      const viaAtomic = wgsl.startsWith("atomicLoad(") || /^[a-z]_(lo|hi)$|^s$/.test(wgsl);
      assert.equal(viaAtomic, atomic.has(m), `${m} read as ${wgsl}`);
    }
  });

  it("compiles with no errors, alone and inside both test shaders", { skip: gpuSkip }, async () => {
    const d = gpu();
    // Alone it declares only constants and a struct: a valid module with no entry point.
    await compile(d, ControlBlock.wgslStruct());
    await compile(d, ControlBlock.wgslStruct({ name: "OtherName" }));
    await compile(d, CB_READ_SHADER);
    await compile(d, CB_WRITE_SHADER);
  });

  it("a shader reads every field the JS accessors wrote", { skip: gpuSkip }, async () => {
    const buffer = new ArrayBuffer(2 * CONTROL_BLOCK_BYTES);
    const blocks = [fillBlock(buffer, 0, 0), fillBlock(buffer, CONTROL_BLOCK_BYTES, 1)];
    const n = CB_PROBES.length;
    const [, outBytes] = await dispatch(CB_READ_SHADER, [
      new Uint8Array(buffer),
      new Uint8Array(4 * (2 * n + 4)),
    ]);
    const out = words(outBytes);
    const raw = new Uint32Array(buffer);
    blocks.forEach((cb, k) => {
      CB_PROBES.forEach(([member, , js], j) => {
        const got = out[k * n + j];
        // Against the accessor (meaning) and against the word at that offset (position).
        assert.equal(got, js(cb), `block ${k} ${member}: GPU read ${hex(got)}`);
        assert.equal(got, raw[k * n + j], `block ${k} ${member}: not the word @${4 * j}`);
      });
      // The 64-bit values reassemble to what JS holds.
      const word = (m: string) => out[k * n + CB_PROBES.findIndex(([name]) => name === m)];
      assert.equal(
        (BigInt(word("processed_hi")) << 32n) | BigInt(word("processed_lo")),
        cb.processedBigInt,
      );
      assert.equal(
        (BigInt(word("dropped_hi")) << 32n) | BigInt(word("dropped_lo")),
        cb.droppedBigInt,
      );
      const stamp = HlcTimestamp.fromWords(word("hlc_lo"), word("hlc_hi"), cb.hlcNodeId);
      assert.ok(stamp.equals(cb.hlcClock().current()));
      assert.equal(stamp.physical, NOW + k);
      assert.equal(stamp.logical, 1);
    });
    assert.equal(blocks[0].processedBigInt, (0x1235n << 32n) | 3n);
    assert.deepEqual(Array.from(out.subarray(2 * n)), [
      CONTROL_BLOCK_MAGIC,
      CONTROL_BLOCK_VERSION,
      CONTROL_BLOCK_BYTES,
      KernelState.Failed | (KernelCommand.Terminate << 8) |
      (KernelErrorCode.InvalidCommand << 16),
    ]);
  });

  it("the JS accessors read what a shader wrote", { skip: gpuSkip }, async () => {
    const buffer = new ArrayBuffer(CONTROL_BLOCK_BYTES);
    const host = ControlBlock.init(buffer, 0, {
      kernelId: 42,
      hlcNodeId: 5,
      inputCapacity: 16,
      outputCapacity: 8,
    });
    host.state = KernelState.Launched;
    host.requestActivate();
    host.requestTerminate();
    host.setCounters(0x7_ffff_fffen, 0xffff_ffffn);
    const stamp = host.hlcClock({ now: () => NOW }).tick();
    const seqBefore = host.seq;
    const [bytes] = await dispatch(CB_WRITE_SHADER, [new Uint8Array(buffer)]);

    // The constructor re-validates magic and version: the shader left them alone.
    const cb = new ControlBlock(ownBuffer(bytes));
    assert.equal(cb.state, KernelState.Active);
    assert.equal(cb.pendingCommands, KernelCommand.Terminate | KernelCommand.Deactivate);
    assert.equal(cb.lastError, KernelErrorCode.OutputQueueFull);
    assert.equal(cb.errorCount, 1);
    assert.equal(cb.heartbeat, 64);
    assert.equal(cb.inFlight, 64);
    assert.equal(cb.seq, seqBefore + 2);
    assert.equal(cb.processedBigInt, 0x8_0000_0001n);
    assert.equal(cb.droppedBigInt, 0x1_0000_0000n);
    assert.deepEqual(cb.readCounters(), { processed: 0x8_0000_0001n, dropped: 0x1_0000_0000n });
    assert.equal(cb.processed, 0x8_0000_0001);
    assert.deepEqual([cb.inputHead, cb.inputTail, cb.outputHead, cb.outputTail], [
      0xffff_fffe,
      2,
      40,
      41,
    ]);
    // What the shader did not touch is unchanged.
    assert.equal(cb.kernelId, 42);
    assert.equal(cb.hlcNodeId, 5);
    assert.deepEqual([cb.inputCapacity, cb.inputMask, cb.outputCapacity, cb.outputMask], [
      16,
      15,
      8,
      7,
    ]);
    assert.ok(cb.hlcClock().current().equals(stamp));
    // And the host side carries on from the shader's state.
    assert.equal(cb.takeCommands(), KernelCommand.Terminate | KernelCommand.Deactivate);
    assert.equal(cb.pendingCommands, 0);
    cb.addProcessed(0xffff_ffff);
    assert.equal(cb.processedBigInt, 0x9_0000_0000n);
  });
});

// ---------------------------------------------------------------------------------------------
// Queue header and slots

/** A header word: its member in the generated struct, its QueueOffset key, and its JS value. */
type QueueProbe = readonly [
  member: string,
  key: keyof typeof QueueOffset,
  js: (q: Queue) => number,
];
type Queue = SpscQueue | MpscQueue;

// By hand, for the same reason as CB_PROBES.
const Q_PROBES: readonly QueueProbe[] = [
  ["magic", "magic", () => QUEUE_MAGIC],
  ["version", "version", () => QUEUE_VERSION],
  ["kind", "kind", (q) => q.kind],
  ["capacity", "capacity", (q) => q.capacity],
  ["slot_size", "slotSize", (q) => q.slotSize],
  ["mask", "mask", (q) => q.capacity - 1],
  ["flags", "flags", (q) => (q.sealed ? 1 : 0)],
  ["tail", "tail", (q) => q.stats().enqueued],
  ["rejected_full", "rejectedFull", (q) => q.stats().rejectedFull],
  ["head", "head", (q) => q.stats().dequeued],
  // The wait words have no accessors; the test stores known values there.
  ["data_signal", "dataSignal", () => 0x5151],
  ["consumer_waiting", "consumerWaiting", () => 0x5252],
  ["space_signal", "spaceSignal", () => 0x5353],
  ["producers_waiting", "producersWaiting", () => 0x5454],
];
const ATOMIC_MEMBERS = new Set([
  "tail",
  "rejected_full",
  "head",
  "data_signal",
  "consumer_waiting",
  "space_signal",
  "producers_waiting",
]);

const Q_READ_SHADER = `${queueHeaderWgsl()}
struct RkQueueRegion { header: RkQueueHeader, body: array<u32> }
@group(0) @binding(0) var<storage, read_write> q: RkQueueRegion;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(1)
fn main() {
${
  Q_PROBES.map(([m], j) =>
    `  out[${j}u] = ${ATOMIC_MEMBERS.has(m) ? `atomicLoad(&q.header.${m})` : `q.header.${m}`};`
  ).join("\n")
}
  let cap = q.header.capacity;
  out[${Q_PROBES.length}u] = rk_queue_len_offset(cap);
  out[${Q_PROBES.length + 1}u] = rk_queue_data_offset(cap);
  out[${Q_PROBES.length + 2}u] = rk_queue_byte_length(cap, q.header.slot_size);
  // The header is exactly 512 bytes: the body starts at the seq array.
  out[${Q_PROBES.length + 3}u] = arrayLength(&q.body) * 4u + RK_Q_HEADER_BYTES;
  out[${Q_PROBES.length + 4}u] = RK_Q_MAGIC ^ RK_Q_VERSION ^ (RK_Q_KIND_MPSC << 8u);
}
`;

/**
 * One kernel step over two queue regions: dequeue every ready message of `inq` (SPSC: up to
 * `tail`; MPSC: while `seq[h & mask] == h + 1`, as docs/queues.md gives it), enqueue each into
 * `outq` (SPSC: data and len, then `tail`; MPSC: reserve with atomicAdd on `tail` after checking
 * space, write, publish with `seq = t + 1`), then store `inq.head`. `report` gets the count and
 * the lengths. Offsets come only from the generated header and functions.
 */
const Q_MOVE_SHADER = `${queueHeaderWgsl()}
struct RkQueueRegion { header: RkQueueHeader, body: array<u32> }
@group(0) @binding(0) var<storage, read_write> inq: RkQueueRegion;
@group(0) @binding(1) var<storage, read_write> outq: RkQueueRegion;
@group(0) @binding(2) var<storage, read_write> report: array<u32>;

// Index into body of the u32 at byte \`offset\` of the region.
fn body_word(offset: u32) -> u32 {
  return (offset - RK_Q_HEADER_BYTES) / 4u;
}

@compute @workgroup_size(1)
fn main() {
  let in_mask = inq.header.mask;
  let in_seq = body_word(RK_Q_SEQ_OFFSET);
  let in_len = body_word(rk_queue_len_offset(inq.header.capacity));
  let in_data = body_word(rk_queue_data_offset(inq.header.capacity));
  let in_slot_words = inq.header.slot_size / 4u;
  let out_cap = outq.header.capacity;
  let out_mask = outq.header.mask;
  let out_seq = body_word(RK_Q_SEQ_OFFSET);
  let out_len = body_word(rk_queue_len_offset(out_cap));
  let out_data = body_word(rk_queue_data_offset(out_cap));
  let out_slot_words = outq.header.slot_size / 4u;
  let in_tail = atomicLoad(&inq.header.tail);
  var h = atomicLoad(&inq.header.head);
  var n = 0u;
  loop {
    var ready = false;
    if (inq.header.kind == RK_Q_KIND_MPSC) {
      ready = inq.body[in_seq + (h & in_mask)] == h + 1u;
    } else {
      ready = bitcast<i32>(in_tail - h) > 0;
    }
    if (!ready) { break; }
    let t = atomicLoad(&outq.header.tail);
    if (bitcast<i32>(t - atomicLoad(&outq.header.head)) >= bitcast<i32>(out_cap)) { break; }
    let len = inq.body[in_len + (h & in_mask)];
    if (len > outq.header.slot_size) { break; }
    if (outq.header.kind == RK_Q_KIND_MPSC) { atomicAdd(&outq.header.tail, 1u); }
    let src = in_data + (h & in_mask) * in_slot_words;
    let dst = out_data + (t & out_mask) * out_slot_words;
    for (var w = 0u; w < (len + 3u) / 4u; w++) {
      outq.body[dst + w] = inq.body[src + w];
    }
    outq.body[out_len + (t & out_mask)] = len;
    if (outq.header.kind == RK_Q_KIND_MPSC) {
      outq.body[out_seq + (t & out_mask)] = t + 1u;
    } else {
      atomicStore(&outq.header.tail, t + 1u);
    }
    report[1u + n] = len;
    h += 1u;
    n += 1u;
  }
  atomicStore(&inq.header.head, h);
  report[0] = n;
}
`;

type QueueClass = typeof SpscQueue | typeof MpscQueue;
const KINDS: readonly (readonly [string, QueueClass])[] = [
  ["SPSC", SpscQueue],
  ["MPSC", MpscQueue],
];

/** Message `i`: `len` bytes of a pattern unique to `i`, so misplaced bytes show. */
function message(i: number, len: number): Uint8Array {
  return Uint8Array.from({ length: len }, (_, b) => (i * 37 + b * 11 + 1) & 0xff);
}

/**
 * A queue of 8 slots (slotSize 20, stored as 32) whose counters start just below 2^32, filled
 * to the brim (one refusal counted in rejectedFull), then 2 taken out and 1 more put in: 7 ready
 * messages of assorted lengths (0 and the full 20 among them) whose tickets wrap 2^32 and whose
 * slots wrap the ring.
 */
function producedQueue(Q: QueueClass): { q: Queue; pending: Uint8Array[] } {
  const layout = queueLayout(8, 20);
  const q = Q.init(new ArrayBuffer(layout.byteLength), 0, {
    capacity: 8,
    slotSize: 20,
    initialCounter: 0xffff_fffd,
  });
  const lengths = [3, 0, 20, 1, 7, 16, 12, 5, 19];
  const all = lengths.map((len, i) => message(i, len));
  for (let i = 0; i < 8; i++) assert.ok(q.tryEnqueue(all[i]));
  assert.equal(q.tryEnqueue(all[8]), false);
  assert.deepEqual(q.tryDequeue(), all[0]);
  assert.deepEqual(q.tryDequeue(), all[1]);
  assert.ok(q.tryEnqueue(all[8]));
  return { q, pending: all.slice(2) };
}

function cCompiler(): { argv: string[]; name: string } | undefined {
  const nvcc = spawnSync("nvcc", ["--version"], { encoding: "utf8" });
  if (!nvcc.error && nvcc.status === 0) {
    return { name: "nvcc", argv: ["nvcc", "-std=c++17", "-x", "cu", "-c", "-o", "/dev/null"] };
  }
  const cxx = spawnSync("c++", ["--version"], { encoding: "utf8" });
  if (!cxx.error && cxx.status === 0) {
    return { name: "c++", argv: ["c++", "-std=c++17", "-x", "c++", "-fsyntax-only"] };
  }
  return undefined;
}
const cc = cCompiler();
const ccSkip: string | false = cc === undefined
  ? "neither nvcc nor c++ is on PATH, so the C header text cannot be compiled"
  : false;

describe("queue header C and WGSL texts", () => {
  it("the WGSL header declares 128 u32 words with the named ones at their QueueOffset", () => {
    const text = queueHeaderWgsl();
    const body = text.slice(text.indexOf("struct RkQueueHeader {"), text.indexOf("}"));
    let at = 0;
    for (
      const m of body.matchAll(/^ {2}(\w+): (atomic<u32>|u32|array<u32, (\d+)>), \/\/ @(\d+):/gm)
    ) {
      assert.equal(Number(m[4]), at, `${m[1]} sits at @${at}`);
      const probe = Q_PROBES.find(([name]) => name === m[1]);
      if (probe !== undefined) {
        assert.equal(at, QueueOffset[probe[1]], m[1]);
        assert.equal(m[2] === "atomic<u32>", ATOMIC_MEMBERS.has(m[1]), `${m[1]} atomic`);
      } else assert.match(m[1], /^reserved\d+$/);
      at += 4 * (m[3] ? Number(m[3]) : 1);
    }
    assert.equal(at, QUEUE_HEADER_BYTES);
    assert.equal(at, QueueOffset.seq);
  });

  it(`the C header compiles with static_asserts on every offset (${cc?.name ?? "no compiler"})`, {
    skip: ccSkip,
  }, () => {
    const checks = Q_PROBES.map(([m, key]) =>
      `static_assert(__builtin_offsetof(RkQueueHeader, ${m}) == ${QueueOffset[key]}, "${m}");`
    );
    // The offset macros against queueLayout() for a few shapes, up to the largest capacity.
    for (const [cap, slot] of [[2, 16], [8, 20], [1000 + 24, 48], [2 ** 30, 64]]) {
      const l = queueLayout(cap, slot);
      checks.push(
        `static_assert(RK_Q_LEN_OFFSET(${cap}u) == ${l.lenOffset}ull, "len ${cap}");`,
        `static_assert(RK_Q_DATA_OFFSET(${cap}u) == ${l.dataOffset}ull, "data ${cap}");`,
        `static_assert(RK_Q_BYTE_LENGTH(${cap}u, ${l.slotSize}u) == ${l.byteLength}ull, "len");`,
      );
    }
    checks.push(
      `static_assert(RK_Q_MAGIC == ${QUEUE_MAGIC}u && RK_Q_VERSION == ${QUEUE_VERSION}u, "id");`,
      `static_assert(RK_Q_KIND_MPSC == ${QueueKind.Mpsc}u, "kind");`,
    );
    const source = `${queueHeaderC({ asserts: true })}\n${checks.join("\n")}\n`;
    const dir = mkdtempSync(join(tmpdir(), "rk-qh-"));
    try {
      const file = join(dir, "queue_header.cu");
      writeFileSync(file, source);
      const argv = cc?.argv ?? [];
      const r = spawnSync(argv[0], [...argv.slice(1), file], {
        encoding: "utf8",
        timeout: 120_000,
      });
      assert.equal(
        r.status,
        0,
        `${argv[0]} rejected the header:\n${r.stderr}${r.error ?? ""}\n${source}`,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("compiles with no errors on the adapter", { skip: gpuSkip }, async () => {
    const d = gpu();
    await compile(d, queueHeaderWgsl());
    await compile(d, ControlBlock.wgslStruct() + queueHeaderWgsl({ name: "Q2" }));
    await compile(d, Q_READ_SHADER);
    await compile(d, Q_MOVE_SHADER);
  });

  for (const [kindName, Q] of KINDS) {
    it(`${kindName}: a shader reads every header word JS wrote`, { skip: gpuSkip }, async () => {
      const { q } = producedQueue(Q);
      const raw = new Uint32Array(q.buffer, 0, QUEUE_HEADER_BYTES >> 2);
      raw[QueueOffset.dataSignal >> 2] = 0x5151;
      raw[QueueOffset.consumerWaiting >> 2] = 0x5252;
      raw[QueueOffset.spaceSignal >> 2] = 0x5353;
      raw[QueueOffset.producersWaiting >> 2] = 0x5454;
      const n = Q_PROBES.length;
      const [, outBytes] = await dispatch(Q_READ_SHADER, [
        new Uint8Array(q.buffer),
        new Uint8Array(4 * (n + 5)),
      ]);
      const out = words(outBytes);
      Q_PROBES.forEach(([member, key, js], j) => {
        assert.equal(out[j], js(q), `${member}: GPU read ${hex(out[j])}`);
        assert.equal(
          out[j],
          raw[QueueOffset[key] >> 2],
          `${member}: not the word @${QueueOffset[key]}`,
        );
      });
      // The values that make this case interesting really are there.
      assert.equal(out[Q_PROBES.findIndex(([m]) => m === "head")], 0xffff_ffff);
      assert.equal(out[Q_PROBES.findIndex(([m]) => m === "tail")], 6);
      assert.equal(out[Q_PROBES.findIndex(([m]) => m === "rejected_full")], 1);
      assert.equal(out[Q_PROBES.findIndex(([m]) => m === "slot_size")], 32);
      assert.deepEqual(Array.from(out.subarray(n)), [
        q.layout.lenOffset,
        q.layout.dataOffset,
        q.layout.byteLength,
        q.layout.byteLength,
        QUEUE_MAGIC ^ QUEUE_VERSION ^ (QueueKind.Mpsc << 8),
      ]);
    });
  }

  for (const [inName, In] of KINDS) {
    for (const [outName, Out] of KINDS) {
      it(
        `a shader moves the messages of a JS-filled ${inName} queue into a ${outName} queue`,
        { skip: gpuSkip },
        async () => {
          const { q: input, pending } = producedQueue(In);
          // A different capacity, slot size and counter start, so no offset is shared by luck;
          // its tickets wrap 2^32 too.
          const output = Out.init(new ArrayBuffer(queueByteLength(16, 48)), 0, {
            capacity: 16,
            slotSize: 48,
            initialCounter: 0xffff_fffa,
          });
          const [inBytes, outBytes, reportBytes] = await dispatch(Q_MOVE_SHADER, [
            new Uint8Array(input.buffer),
            new Uint8Array(output.buffer),
            new Uint8Array(4 * (1 + 16)),
          ]);
          const report = words(reportBytes);
          assert.equal(report[0], pending.length, "messages the shader moved");
          assert.deepEqual(
            Array.from(report.subarray(1, 1 + pending.length)),
            pending.map((m) => m.length),
          );

          const inAfter = In.open(ownBuffer(inBytes));
          assert.ok(inAfter.isEmpty);
          assert.equal(inAfter.stats().dequeued, 6);
          // Every slot is free again for the JS producer.
          for (let i = 0; i < 8; i++) assert.ok(inAfter.tryEnqueue(message(100 + i, 20)));
          assert.equal(inAfter.tryEnqueue(message(108, 1)), false);

          const outAfter = Out.open(ownBuffer(outBytes));
          assert.equal(outAfter.len, pending.length);
          assert.equal(outAfter.stats().enqueued, (0xffff_fffa + pending.length) >>> 0);
          assert.deepEqual(outAfter.dequeueMany(16), pending);
          assert.ok(outAfter.isEmpty);
        },
      );
    }
  }

  it("releases the device", { skip: gpuSkip }, () => {
    device?.destroy();
  });
});
