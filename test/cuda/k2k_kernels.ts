// Kernels of the GPU K2K tests and benchmark (test/cuda/k2k_*.test.ts, bench/cuda_k2k.ts), written
// in the DSL as a user writes them:
// - a chain k2k_head → k2k_middle → k2k_tail: the head acknowledges the host's request and sends
//   on, the middle only forwards (no output), the tail's outputs reach the host;
// - k2k_ping ⇄ k2k_pong: a ball bounced `hops` times between two kernels, the last one answering
//   the host (the benchmark's hop);
// - k2k_fanout sends `count` messages to the tail from one handler call (the outbox's bound), and
//   k2k_mistyped sends the tail a type it does not take.
// The CPU backend runs them too (module: import.meta.url).
import { defineMessage } from "../../src/core/schema.ts";
import { f32 } from "../../src/dsl/intrinsics.ts";
import { defineKernel } from "../../src/runtime/kernel.ts";

/** What the host sends the head of the chain. */
export const ChainStart = defineMessage({
  typeId: 4301,
  name: "ChainStart",
  fields: { value: "f32", tag: "u32" },
});
/** One hop along the chain. */
export const Hop = defineMessage({
  typeId: 4302,
  name: "Hop",
  fields: { value: "f32", tag: "u32", hops: "u32" },
});
/** The head's answer to the host. */
export const ChainAck = defineMessage({
  typeId: 4303,
  name: "ChainAck",
  fields: { sent: "u32" },
});
/** What the tail outputs for every hop it takes. */
export const HopSeen = defineMessage({
  typeId: 4304,
  name: "HopSeen",
  fields: { value: "f32", tag: "u32", hops: "u32", count: "u32" },
});

/** Head: acknowledges the request and sends `value + 1` on to k2k_middle. */
export const k2kHead = defineKernel({
  id: "k2k_head",
  module: import.meta.url,
  input: ChainStart,
  output: ChainAck,
  state: { sent: "u32" },
  sends: { k2k_middle: Hop },
  handler: (msg, state, ctx) => {
    ctx.send("k2k_middle", Hop.of({ value: msg.value + 1, tag: msg.tag, hops: 1 }));
    state.sent += 1;
    return { sent: state.sent };
  },
});

/** Middle: doubles the value and forwards to k2k_tail; no output of its own. */
export const k2kMiddle = defineKernel({
  id: "k2k_middle",
  module: import.meta.url,
  input: Hop,
  state: { seen: "u32" },
  sends: { k2k_tail: Hop },
  handler: (msg, state, ctx) => {
    ctx.send("k2k_tail", Hop.of({ value: msg.value * 2, tag: msg.tag, hops: msg.hops + 1 }));
    state.seen += 1;
  },
});

/** Tail: outputs what reached it, with a running count. */
export const k2kTail = defineKernel({
  id: "k2k_tail",
  module: import.meta.url,
  input: Hop,
  output: HopSeen,
  state: { count: "u32" },
  handler: (msg, state) => {
    state.count += 1;
    return { value: msg.value, tag: msg.tag, hops: msg.hops + 1, count: state.count };
  },
});

/** How many messages k2k_fanout sends in one call. */
export const FanOut = defineMessage({
  typeId: 4305,
  name: "FanOut",
  fields: { count: "u32", tag: "u32" },
});

/** Sends `count` hops to k2k_tail from one handler call. */
export const k2kFanout = defineKernel({
  id: "k2k_fanout",
  module: import.meta.url,
  input: FanOut,
  output: ChainAck,
  state: { sent: "u32" },
  sends: { k2k_tail: Hop },
  handler: (msg, state, ctx) => {
    for (let i = 0; i < msg.count; i++) {
      ctx.send("k2k_tail", Hop.of({ value: f32(i), tag: msg.tag, hops: 0 }));
      state.sent += 1;
    }
    return { sent: state.sent };
  },
});

/** Sends k2k_tail a ChainStart, which it does not take (a wrong type, caught by the sender). */
export const k2kMistyped = defineKernel({
  id: "k2k_mistyped",
  module: import.meta.url,
  input: ChainStart,
  output: ChainAck,
  state: { sent: "u32" },
  sends: { k2k_tail: ChainStart },
  handler: (msg, state, ctx) => {
    ctx.send("k2k_tail", ChainStart.of({ value: msg.value, tag: msg.tag }));
    state.sent += 1;
    return { sent: state.sent };
  },
});

/** The ball bounced between k2k_ping and k2k_pong. */
export const Ball = defineMessage({
  typeId: 4306,
  name: "Ball",
  fields: { hops: "u32", tag: "u32" },
});

/** Bounces the ball to k2k_pong while hops remain; outputs it when none do. */
export const k2kPing = defineKernel({
  id: "k2k_ping",
  module: import.meta.url,
  input: Ball,
  output: Ball,
  state: { seen: "u32" },
  sends: { k2k_pong: Ball },
  handler: (msg, state, ctx) => {
    state.seen += 1;
    if (msg.hops > 0) {
      ctx.send("k2k_pong", Ball.of({ hops: msg.hops - 1, tag: msg.tag }));
      return;
    }
    return { hops: 0, tag: msg.tag };
  },
});

/** k2k_ping's partner: bounces back to k2k_ping. */
export const k2kPong = defineKernel({
  id: "k2k_pong",
  module: import.meta.url,
  input: Ball,
  output: Ball,
  state: { seen: "u32" },
  sends: { k2k_ping: Ball },
  handler: (msg, state, ctx) => {
    state.seen += 1;
    if (msg.hops > 0) {
      ctx.send("k2k_ping", Ball.of({ hops: msg.hops - 1, tag: msg.tag }));
      return;
    }
    return { hops: 0, tag: msg.tag };
  },
});

/**
 * The host-relay baseline's kernels: the same bounce, but the ball goes back to the host as an
 * output, and the host sends it on to the other kernel (`k2kBroker().send`).
 */
export const relayPing = defineKernel({
  id: "relay_ping",
  module: import.meta.url,
  input: Ball,
  output: Ball,
  state: { seen: "u32" },
  handler: (msg, state) => {
    state.seen += 1;
    return { hops: msg.hops > 0 ? msg.hops - 1 : 0, tag: msg.tag };
  },
});

/** relay_ping's partner. */
export const relayPong = defineKernel({
  id: "relay_pong",
  module: import.meta.url,
  input: Ball,
  output: Ball,
  state: { seen: "u32" },
  handler: (msg, state) => {
    state.seen += 1;
    return { hops: msg.hops > 0 ? msg.hops - 1 : 0, tag: msg.tag };
  },
});
