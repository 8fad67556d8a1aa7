/**
 * The WGSL of the WebGPU backend: the ring entry a kernel's dispatch runs (around the DSL
 * handler that `emitWgsl` compiles, or the passthrough copy), and the K2K route pass that moves a
 * sender's outbox records into a destination's input ring inside the same submission.
 *
 * WGSL cannot loop forever while the host writes into its memory, so a kernel is emulated: its
 * state and ring live in storage buffers (`layout.ts`) and each dispatch is one turn of the
 * persistent loop of the CPU and CUDA backends — take the commands, move the lifecycle state,
 * handle up to `batchMax` ring messages in order (merging each message's HLC word, ticking for
 * each reply), publish the counters, and end `Terminated` when a terminate asked for it.
 *
 * 64-bit values are `vec2<u32>` (x low, y high): WGSL has no 64-bit integers or atomics. A
 * dispatch is one invocation and the dispatches of a submission run in order, so no device code
 * ever reads a pair another invocation is writing; the host reads pairs only from the staging copy
 * made after the submission's dispatches (docs/webgpu.md, "Two-word values").
 * @module
 */

import { KernelCommand, KernelState } from "../../core/control_block.ts";
import type { IrKernel } from "../../dsl/ir.ts";
import { emitWgsl } from "../../dsl/wgsl.ts";
import type { MessageSchema } from "../../core/schema.ts";
import {
  CtlCb,
  CtlKw,
  CtlWord,
  META_WORDS,
  MetaWord,
  OUTBOX_OVERFLOW_ERROR,
  ROUTE_WORDS,
  RouteWord,
  SendStatus,
} from "./layout.ts";

/** A kernel's ring entry and what the host needs to drive it. */
export interface RingKernelSource {
  /** The WGSL module (entry `main`, bindings 0..7 as `layout.ts` lists them). */
  readonly code: string;
  /** Payload words per input ring slot. */
  readonly slotWords: number;
  /** Words per reply entry. */
  readonly replyWords: number;
  /** Words per outbox record (0 without send targets). */
  readonly outboxStride: number;
  /** The `ctx.send` targets in outbox-record order. */
  readonly sendTargets: readonly { readonly dest: string; readonly schema: MessageSchema }[];
  /** True for the built-in passthrough (copies each payload back under its own typeId). */
  readonly passthrough: boolean;
}

function constants(prefix: string, table: Readonly<Record<string, number>>): string[] {
  return Object.entries(table).map(([k, v]) =>
    `const ${prefix}${k.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toUpperCase()}: u32 = ${v}u;`
  );
}

/** Every layout constant the generated code uses, from the TS tables. */
function layoutConstants(): string {
  return [
    "// Layout constants (generated from src/backends/webgpu/layout.ts; do not edit).",
    ...constants("RKW_", CtlWord),
    ...constants("RKW_CB_", CtlCb),
    ...constants("RKW_KW_", CtlKw),
    ...constants("RKW_ROUTE_", RouteWord),
    ...constants("RKW_META_", MetaWord),
    ...constants("RKW_SEND_", SendStatus),
    ...constants("RKW_STATE_", KernelState),
    ...constants("RKW_CMD_", KernelCommand),
    `const RKW_META_WORDS: u32 = ${META_WORDS}u;`,
    `const RKW_ROUTE_WORDS: u32 = ${ROUTE_WORDS}u;`,
    `const RKW_OUTBOX_OVERFLOW: u32 = 0x${OUTBOX_OVERFLOW_ERROR.toString(16)}u;`,
  ].join("\n");
}

/** 64-bit helpers over vec2<u32> and the HLC rules of `HlcClock` (tick, receive). */
const HLC_WGSL = `
fn rkw_lt(a: vec2<u32>, b: vec2<u32>) -> bool {
  return a.y < b.y || (a.y == b.y && a.x < b.x);
}
fn rkw_add(a: vec2<u32>, k: u32) -> vec2<u32> {
  let lo = a.x + k;
  return vec2<u32>(lo, a.y + select(0u, 1u, lo < a.x));
}
// Physical milliseconds of an HLC word (word >> 16) as a 48-bit pair.
fn rkw_ms(w: vec2<u32>) -> vec2<u32> {
  return vec2<u32>((w.x >> 16u) | (w.y << 16u), w.y >> 16u);
}
// A tick for a send or reply: the physical time when it is ahead, else the word + 1.
fn rkw_tick(h: vec2<u32>, pt: vec2<u32>) -> vec2<u32> {
  if (rkw_lt(h, pt)) { return pt; }
  return rkw_add(h, 1u);
}
// Receipt of a remote word rw (SharedHlcClock.updateFromWords); a sender more than 60 s ahead of
// the round's physical time is ignored (the message is still handled), as the CPU worker does.
fn rkw_merge(h: vec2<u32>, rw: vec2<u32>, pt: vec2<u32>) -> vec2<u32> {
  if (rw.x == 0u && rw.y == 0u) { return h; }
  let pt_ms = rkw_ms(pt);
  let r_ms = rkw_ms(rw);
  let o_ms = rkw_ms(h);
  if (rkw_lt(rkw_add(pt_ms, 60000u), r_ms)) { return h; }
  if (rkw_lt(o_ms, pt_ms) && rkw_lt(r_ms, pt_ms)) { return pt; }
  if (o_ms.x == r_ms.x && o_ms.y == r_ms.y) {
    return rkw_add(select(rw, h, rkw_lt(rw, h)), 1u);
  }
  if (rkw_lt(r_ms, o_ms)) { return rkw_add(h, 1u); }
  return rkw_add(rw, 1u);
}
fn rkw_add64(lo: u32, n: u32) {
  let a = rk_control[lo];
  let s = a + n;
  rk_control[lo] = s;
  if (s < a) { rk_control[lo + 1u] = rk_control[lo + 1u] + 1u; }
}
`;

/**
 * The entry around a per-message body: lifecycle, ring, HLC, counters. `handle` is the WGSL that
 * handles the message in ring slot `rk_slot` as batch entry `rk_n` and fills `rk_out_meta`'s
 * typeId and payload-bytes words; `reserve` cuts the batch while the outbox is nearly full.
 */
function ringEntry(handle: string[], reserve: boolean): string {
  const cut = reserve
    ? [
      "      // Leave room for this message's sends: the rest waits for the next round.",
      "      if (rk_control[2] + rk_control[RKW_SEND_RESERVE] > rk_control[1]) { break; }",
    ]
    : [];
  return `
// One turn of the persistent loop (docs/webgpu.md, "A round").
@compute @workgroup_size(1)
fn main() {
  rk_nwg = vec3<u32>(1u);
  var state = rk_control[RKW_CB_STATE];
  let cmd = rk_control[RKW_CB_COMMANDS];
  rk_control[RKW_CB_COMMANDS] = 0u;
  if ((cmd & RKW_CMD_TERMINATE) != 0u) {
    if (state != RKW_STATE_TERMINATED) { state = RKW_STATE_TERMINATING; }
  } else if (state != RKW_STATE_TERMINATING && state != RKW_STATE_TERMINATED) {
    if ((cmd & RKW_CMD_DEACTIVATE) != 0u) { state = RKW_STATE_DEACTIVATED; }
    else if ((cmd & RKW_CMD_ACTIVATE) != 0u) { state = RKW_STATE_ACTIVE; }
  }
  rk_control[RKW_CB_HEARTBEAT] = rk_control[RKW_CB_HEARTBEAT] + 1u;
  rk_control[RKW_OUT_COUNT] = 0u;
  rk_control[2] = 0u;
  let pt = vec2<u32>(rk_control[RKW_PT_LO], rk_control[RKW_PT_HI]);
  var hlc = vec2<u32>(rk_control[RKW_CB_HLC_LO], rk_control[RKW_CB_HLC_LO + 1u]);
  let drain = rk_control[RKW_KW_TERMINATE_MODE] == 1u;
  var head = rk_control[RKW_RING_HEAD];
  let tail = rk_control[RKW_RING_TAIL];
  var rk_n = 0u;
  if (state == RKW_STATE_ACTIVE || (state == RKW_STATE_TERMINATING && drain)) {
    let want = min(tail - head, rk_control[RKW_BATCH_MAX]);
    let mask = rk_control[RKW_RING_CAPACITY] - 1u;
    loop {
      if (rk_n >= want) { break; }
${cut.join("\n")}
      rk_slot = (head + rk_n) & mask;
      let m = rk_slot * RKW_META_WORDS;
      hlc = rkw_merge(hlc, vec2<u32>(rk_in_meta[m + RKW_META_TS_LO], rk_in_meta[m + RKW_META_TS_HI]), pt);
      rk_control[3] = hlc.x;
      rk_control[4] = hlc.y;
      let o = rk_n * RKW_META_WORDS;
${handle.join("\n")}
      let after = vec2<u32>(rk_control[3], rk_control[4]);
      if (rkw_lt(hlc, after)) { hlc = after; }
      hlc = rkw_tick(hlc, pt);
      rk_out_meta[o + RKW_META_TAG] = rk_in_meta[m + RKW_META_TAG];
      rk_out_meta[o + RKW_META_SOURCE_KERNEL] = rk_in_meta[m + RKW_META_SOURCE_KERNEL];
      rk_out_meta[o + RKW_META_TS_LO] = hlc.x;
      rk_out_meta[o + RKW_META_TS_HI] = hlc.y;
      rk_out_meta[o + RKW_META_PRIORITY] = rk_in_meta[m + RKW_META_PRIORITY];
      rk_n = rk_n + 1u;
    }
    head = head + rk_n;
    rk_control[RKW_RING_HEAD] = head;
    rk_control[RKW_OUT_COUNT] = rk_n;
    // The counters' seqlock, as every backend writes it (odd while writing).
    rk_control[RKW_CB_SEQ] = rk_control[RKW_CB_SEQ] + 1u;
    rkw_add64(RKW_CB_PROCESSED_LO, rk_n);
    rk_control[RKW_CB_SEQ] = rk_control[RKW_CB_SEQ] + 1u;
  }
  // Sends past the outbox were not recorded: counted as refused, never silent.
  let sends = rk_control[2];
  if (sends > rk_control[1]) {
    let over = sends - rk_control[1];
    rk_control[RKW_KW_K2K_SENT] = rk_control[RKW_KW_K2K_SENT] + over;
    rk_control[RKW_KW_K2K_QUEUE_FULL] = rk_control[RKW_KW_K2K_QUEUE_FULL] + over;
    rk_control[RKW_CB_LAST_ERROR] = RKW_OUTBOX_OVERFLOW;
    rk_control[RKW_CB_ERROR_COUNT] = rk_control[RKW_CB_ERROR_COUNT] + 1u;
  }
  if (state == RKW_STATE_TERMINATING &&
      (!drain || (head == tail && rk_control[RKW_LANES_EMPTY] == 1u))) {
    state = RKW_STATE_TERMINATED;
  }
  rk_control[RKW_CB_HLC_LO] = hlc.x;
  rk_control[RKW_CB_HLC_LO + 1u] = hlc.y;
  rk_control[RKW_CB_INPUT_HEAD] = head;
  rk_control[RKW_CB_INPUT_TAIL] = tail;
  rk_control[RKW_CB_STATE] = state;
}
`;
}

/**
 * The ring kernel of a checked DSL handler (`checkKernel(definition)`): `emitWgsl`'s library
 * (structs, bindings 0..5, `rk_handle`) plus the metadata bindings and the ring entry. Throws
 * `DslError` (`E_DSL_TARGET`) for what WGSL cannot run, as `emitWgsl` does.
 */
export function emitRingKernel(ir: IrKernel): RingKernelSource {
  const h = ir.handler;
  if (ir.kind !== "handler" || h === undefined) {
    throw new TypeError(`emitRingKernel needs a handler kernel, got a ${ir.kind} kernel`);
  }
  const src = emitWgsl(ir);
  const outType = h.output?.typeId ?? 0;
  const outBytes = h.output?.size ?? 0;
  const handle = [
    "      rk_replied[rk_n] = 0u;",
    "      rk_handle(rk_n);",
    `      rk_out_meta[o + RKW_META_TYPE_ID] = ${outType}u;`,
    `      rk_out_meta[o + RKW_META_PAYLOAD_BYTES] = ${outBytes}u;`,
  ];
  const code = [
    src.library,
    "// Ring metadata (src/backends/webgpu/layout.ts).",
    "@group(0) @binding(6) var<storage, read> rk_in_meta: array<u32>;",
    "@group(0) @binding(7) var<storage, read_write> rk_out_meta: array<u32>;",
    layoutConstants(),
    HLC_WGSL,
    ringEntry(handle, h.sendTargets.length > 0),
  ].join("\n");
  return {
    code,
    slotWords: h.input.size / 4,
    replyWords: Math.max(1, outBytes / 4),
    outboxStride: h.sendTargets.length > 0 ? src.outboxStride : 0,
    sendTargets: h.sendTargets,
    passthrough: false,
  };
}

/**
 * The built-in passthrough (`runtime.launch("id")`) as a ring kernel: each message's payload
 * (up to `slotWords` words) is copied into its reply entry under its own typeId and length.
 */
export function emitPassthroughRing(slotWords: number): RingKernelSource {
  const handle = [
    "      let words = (rk_in_meta[m + RKW_META_PAYLOAD_BYTES] + 3u) / 4u;",
    `      for (var w = 0u; w < words; w = w + 1u) {`,
    `        rk_replies[rk_n * ${slotWords}u + w] = rk_msgs[rk_slot * ${slotWords}u + w];`,
    "      }",
    "      rk_replied[rk_n] = 1u;",
    "      rk_out_meta[o + RKW_META_TYPE_ID] = rk_in_meta[m + RKW_META_TYPE_ID];",
    "      rk_out_meta[o + RKW_META_PAYLOAD_BYTES] = rk_in_meta[m + RKW_META_PAYLOAD_BYTES];",
  ];
  const code = [
    "// The built-in passthrough kernel: generated by @ringkernel/core (WebGPU ring entry).",
    "@group(0) @binding(0) var<storage, read> rk_msgs: array<u32>;",
    "@group(0) @binding(2) var<storage, read_write> rk_replies: array<u32>;",
    "@group(0) @binding(3) var<storage, read_write> rk_replied: array<u32>;",
    "@group(0) @binding(5) var<storage, read_write> rk_control: array<u32>;",
    "@group(0) @binding(6) var<storage, read> rk_in_meta: array<u32>;",
    "@group(0) @binding(7) var<storage, read_write> rk_out_meta: array<u32>;",
    "var<private> rk_slot: u32;",
    "var<private> rk_nwg: vec3<u32>;",
    layoutConstants(),
    HLC_WGSL,
    ringEntry(handle, false),
  ].join("\n");
  return {
    code,
    slotWords,
    replyWords: slotWords,
    outboxStride: 0,
    sendTargets: [],
    passthrough: true,
  };
}

/**
 * The K2K route pass, specialised per (outbox stride, target) by pipeline constants: after a
 * sender's dispatch it appends every outbox record for target `RK_TARGET` to the destination's
 * ring, or marks it refused (full ring, no live destination) for the host to return. Bindings:
 * 0 the sender's `ctl`, 1 its outbox, 2 the destination's `ctl` (a stand-in when `RK_SELF`: the
 * kernel sends to itself), 3 the destination's `inMeta`, 4 its `msgs`.
 */
export function emitRoutePass(): string {
  return `// K2K route pass: generated by @ringkernel/core (docs/webgpu.md, "K2K inside a submission").
override RK_TARGET: u32 = 0u;
override RK_STRIDE: u32 = 2u;
// A kernel sending to itself: its ctl is bound once (binding 0; binding 2 is a stand-in), since
// two writable bindings of one buffer in one dispatch are invalid.
override RK_SELF: bool = false;
@group(0) @binding(0) var<storage, read_write> src_ctl: array<u32>;
@group(0) @binding(1) var<storage, read_write> src_outbox: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst_ctl: array<u32>;
@group(0) @binding(3) var<storage, read_write> dst_meta: array<u32>;
@group(0) @binding(4) var<storage, read_write> dst_msgs: array<u32>;
${layoutConstants()}

fn dst_word(i: u32) -> u32 {
  if (RK_SELF) { return src_ctl[i]; }
  return dst_ctl[i];
}

@compute @workgroup_size(1)
fn main() {
  let recorded = min(src_ctl[2], src_ctl[1]);
  let e = RKW_ROUTES + RK_TARGET * RKW_ROUTE_WORDS;
  let dstate = dst_word(RKW_CB_STATE);
  // Launched, Active and Deactivated kernels take K2K messages; terminating ones do not.
  let alive = src_ctl[e + RKW_ROUTE_PRESENT] == 1u &&
    (dstate == RKW_STATE_LAUNCHED || dstate == RKW_STATE_ACTIVE || dstate == RKW_STATE_DEACTIVATED);
  let words = src_ctl[e + RKW_ROUTE_PAYLOAD_WORDS];
  let stride = src_ctl[e + RKW_ROUTE_DEST_SLOT_WORDS];
  let type_id = src_ctl[e + RKW_ROUTE_TYPE_ID];
  let head = dst_word(RKW_RING_HEAD);
  let cap = dst_word(RKW_RING_CAPACITY);
  var tail = dst_word(RKW_RING_TAIL);
  // Every record of this batch carries the sender's clock after its batch (>= every send).
  let ts_lo = src_ctl[RKW_CB_HLC_LO];
  let ts_hi = src_ctl[RKW_CB_HLC_LO + 1u];
  var sent = 0u;
  var delivered = 0u;
  var full = 0u;
  var missing = 0u;
  for (var r = 0u; r < recorded; r = r + 1u) {
    let at = r * RK_STRIDE;
    if (src_outbox[at] != RK_TARGET) { continue; }
    sent = sent + 1u;
    var status = RKW_SEND_DELIVERED;
    if (!alive) {
      status = RKW_SEND_NOT_FOUND;
      missing = missing + 1u;
    } else if (tail - head >= cap) {
      status = RKW_SEND_QUEUE_FULL;
      full = full + 1u;
    } else {
      let slot = tail & (cap - 1u);
      let m = slot * RKW_META_WORDS;
      dst_meta[m + RKW_META_TAG] = 0u;
      dst_meta[m + RKW_META_SOURCE_KERNEL] = src_ctl[5];
      dst_meta[m + RKW_META_TS_LO] = ts_lo;
      dst_meta[m + RKW_META_TS_HI] = ts_hi;
      dst_meta[m + RKW_META_TYPE_ID] = type_id;
      dst_meta[m + RKW_META_PAYLOAD_BYTES] = words * 4u;
      dst_meta[m + RKW_META_PRIORITY] = 1u;
      dst_meta[m + 7u] = 0u;
      for (var w = 0u; w < words; w = w + 1u) {
        dst_msgs[slot * stride + w] = src_outbox[at + 2u + w];
      }
      tail = tail + 1u;
      delivered = delivered + 1u;
    }
    src_outbox[at] = RK_TARGET | (status << 24u);
  }
  if (alive) {
    if (RK_SELF) { src_ctl[RKW_RING_TAIL] = tail; } else { dst_ctl[RKW_RING_TAIL] = tail; }
  }
  src_ctl[RKW_KW_K2K_SENT] = src_ctl[RKW_KW_K2K_SENT] + sent;
  src_ctl[RKW_KW_K2K_DELIVERED] = src_ctl[RKW_KW_K2K_DELIVERED] + delivered;
  src_ctl[RKW_KW_K2K_QUEUE_FULL] = src_ctl[RKW_KW_K2K_QUEUE_FULL] + full;
  src_ctl[RKW_KW_K2K_NOT_FOUND] = src_ctl[RKW_KW_K2K_NOT_FOUND] + missing;
}
`;
}
