// DSL kernels the WebGPU tests launch: K2K chains, fan-out, a self-sending countdown and an HLC
// stamper. Exported with `module: import.meta.url` like every kernel definition (the CPU backend's
// workers import the defining module; the WebGPU backend compiles the handler to WGSL).
import { defineMessage } from "../../src/core/schema.ts";
import { defineKernel } from "../../src/runtime/kernel.ts";
import { f32, u32, u64 } from "../../src/dsl/intrinsics.ts";

/** A job for the head of a chain. */
export const Job = defineMessage({ typeId: 6001, name: "WgJob", fields: { value: "f32" } });
/** What moves along a chain or out of a fan-out. */
export const Relay = defineMessage({ typeId: 6002, name: "WgRelay", fields: { value: "f32" } });
/** The chain head's reply. */
export const JobAck = defineMessage({ typeId: 6003, name: "WgJobAck", fields: { sent: "u32" } });
/** Fan-out order: send `count` relays of base, base + 1, ... */
export const FanOut = defineMessage({
  typeId: 6004,
  name: "WgFanOut",
  fields: { count: "i32", base: "f32" },
});
/** A countdown step. */
export const Countdown = defineMessage({ typeId: 6005, name: "WgCountdown", fields: { n: "u32" } });
/** Something to stamp. */
export const Tick = defineMessage({ typeId: 6006, name: "WgTick", fields: { seq: "u32" } });
/** The handler's view of its clock. */
export const Stamp = defineMessage({
  typeId: 6007,
  name: "WgStamp",
  fields: { seq: "u32", physical: "u64", logical: "u32" },
});

/** Head of the chain: relays value + 1 to wg_chain_b and replies with how many it sent. */
export const chainA = defineKernel({
  id: "wg_chain_a",
  module: import.meta.url,
  input: Job,
  output: JobAck,
  state: { sent: "u32" },
  sends: { wg_chain_b: Relay },
  handler: (msg, state, ctx) => {
    ctx.send("wg_chain_b", Relay.of({ value: msg.value + 1 }));
    state.sent += 1;
    return { sent: state.sent };
  },
});

/** Middle of the chain: relays value × 2 to wg_chain_c. */
export const chainB = defineKernel({
  id: "wg_chain_b",
  module: import.meta.url,
  input: Relay,
  state: { seen: "u32" },
  sends: { wg_chain_c: Relay },
  handler: (msg, state, ctx) => {
    state.seen += 1;
    ctx.send("wg_chain_c", Relay.of({ value: msg.value * 2 }));
  },
});

/** End of the chain: sums what arrives. */
export const chainC = defineKernel({
  id: "wg_chain_c",
  module: import.meta.url,
  input: Relay,
  state: { total: "f32", count: "u32" },
  handler: (msg, state) => {
    state.total += msg.value;
    state.count += 1;
  },
});

/** Sends `count` relays to wg_sink in one handler call. */
export const fanOut = defineKernel({
  id: "wg_fan_out",
  module: import.meta.url,
  input: FanOut,
  output: JobAck,
  sends: { wg_sink: Relay },
  handler: (msg, _state, ctx) => {
    for (let i = 0; i < msg.count; i++) ctx.send("wg_sink", Relay.of({ value: msg.base + f32(i) }));
    return { sent: u32(msg.count) };
  },
});

/** Sums relays; replies with nothing. */
export const relaySink = defineKernel({
  id: "wg_sink",
  module: import.meta.url,
  input: Relay,
  state: { total: "f32", count: "u32" },
  handler: (msg, state) => {
    state.total += msg.value;
    state.count += 1;
  },
});

/** Counts down by sending itself n - 1 until 0 (one step per round: a send back up the order). */
export const countdown = defineKernel({
  id: "wg_countdown",
  module: import.meta.url,
  input: Countdown,
  state: { seen: "u32", last: "u32" },
  sends: { wg_countdown: Countdown },
  handler: (msg, state, ctx) => {
    state.seen += 1;
    state.last = msg.n;
    if (msg.n > 0) ctx.send("wg_countdown", Countdown.of({ n: msg.n - 1 }));
  },
});

/** Replies with its clock as the handler sees it (`ctx.now()`). */
export const stamper = defineKernel({
  id: "wg_stamper",
  module: import.meta.url,
  input: Tick,
  output: Stamp,
  handler: (msg, _state, ctx) => {
    const t = ctx.now();
    return { seq: msg.seq, physical: u64(t.physical), logical: t.logical };
  },
});

/** Answers each relay with its value: a K2K destination whose output can fill up. */
export const relayEcho = defineKernel({
  id: "wg_relay_echo",
  module: import.meta.url,
  input: Relay,
  output: Relay,
  state: { count: "u32" },
  handler: (msg, state) => {
    state.count += 1;
    return { value: msg.value };
  },
});

/** Fans out like wg_fan_out, to wg_relay_echo. */
export const fanOutEcho = defineKernel({
  id: "wg_fan_out_echo",
  module: import.meta.url,
  input: FanOut,
  output: JobAck,
  sends: { wg_relay_echo: Relay },
  handler: (msg, _state, ctx) => {
    for (let i = 0; i < msg.count; i++) {
      ctx.send("wg_relay_echo", Relay.of({ value: msg.base + f32(i) }));
    }
    return { sent: u32(msg.count) };
  },
});
