/**
 * Kernel definitions of bench/runtime.ts. They live in their own module because a CPU kernel's
 * worker imports the module named by `module: import.meta.url` to find its handler, and the
 * benchmark's module (with its top-level run) must not be evaluated again in every worker.
 *
 * The handlers are kept DSL-shaped (they close over nothing but schemas), and the postMessage
 * baselines in bench/workers/runtime_peer.ts run the same arithmetic, so a ratio compares the
 * transports, not the work.
 * @module
 */
import { array, defineMessage } from "../src/core/schema.ts";
import { defineKernel } from "../src/runtime/kernel.ts";

/** Add a value (4-byte payload): the request of the round-trip benchmark. */
export const Add = defineMessage({ typeId: 901, name: "BenchAdd", fields: { value: "f32" } });
/** A running total: the reply of the round-trip benchmark. */
export const Sum = defineMessage({ typeId: 902, name: "BenchSum", fields: { total: "f32" } });
/** Sixteen samples (a 64-byte payload): the message of the throughput benchmark. */
export const Samples = defineMessage({
  typeId: 903,
  name: "BenchSamples",
  fields: { values: array("f32", 16) },
});
/** The sum of one `Samples` message and how many messages were summed so far. */
export const Total = defineMessage({
  typeId: 904,
  name: "BenchTotal",
  fields: { total: "f32", count: "u32" },
});
/**
 * One hop of a chain between two kernels: `remaining` hops to go, `k2k` 1 to forward by
 * `ctx.send` (0: return it as an output for the host to relay), `sentAt` the sender's
 * `performance.timeOrigin + performance.now()` in ms (0 when the host sent it).
 */
export const Hop = defineMessage({
  typeId: 905,
  name: "BenchHop",
  fields: { remaining: "u32", k2k: "u32", sentAt: "f64" },
});

/** Sums what it is sent; the accumulator of the runtime docs. */
export const benchAccumulator = defineKernel({
  id: "bench-accumulator",
  module: import.meta.url,
  input: Add,
  output: Sum,
  state: { total: "f32" },
  handler: (msg, state) => {
    state.total += msg.value;
    return { total: state.total };
  },
});

/** Sums the sixteen samples of each message, replies with the sum and the running count. */
export const benchSummer = defineKernel({
  id: "bench-summer",
  module: import.meta.url,
  input: Samples,
  output: Total,
  state: { count: "u32" },
  handler: (msg, state) => {
    let total = 0;
    for (let i = 0; i < 16; i++) total += msg.values[i];
    state.count += 1;
    return { total, count: state.count };
  },
});

/** What a hop kernel keeps: hops received from the other kernel and their summed one-way time. */
const hopState = { hops: "u32", oneWayMs: "f64" } as const;

/**
 * Kernel A of the hop chain: forwards to `bench-hop-b` (by K2K or through the host) until no hop
 * remains, then returns the message as an output. The one-way time of each hop from B is summed
 * in its state; A's and B's clocks have different origins, so only the sum over both directions
 * of a ring is meaningful (the offset cancels), see bench/runtime.ts.
 */
export const benchHopA = defineKernel({
  id: "bench-hop-a",
  module: import.meta.url,
  input: Hop,
  output: Hop,
  state: hopState,
  handler: (msg, state, ctx) => {
    const now = performance.timeOrigin + performance.now();
    if (msg.sentAt > 0) {
      state.hops += 1;
      state.oneWayMs += now - msg.sentAt;
    }
    const next = { remaining: msg.remaining - 1, k2k: msg.k2k, sentAt: now };
    if (msg.remaining === 0) return { remaining: 0, k2k: msg.k2k, sentAt: now };
    if (msg.k2k === 0) return next;
    const receipt = ctx.send("bench-hop-b", Hop.of(next));
    if (receipt.status !== "Delivered") throw new Error(`hop to B: ${receipt.status}`);
    return undefined;
  },
});

/** Kernel B of the hop chain: the mirror of {@linkcode benchHopA}, forwarding to `bench-hop-a`. */
export const benchHopB = defineKernel({
  id: "bench-hop-b",
  module: import.meta.url,
  input: Hop,
  output: Hop,
  state: hopState,
  handler: (msg, state, ctx) => {
    const now = performance.timeOrigin + performance.now();
    if (msg.sentAt > 0) {
      state.hops += 1;
      state.oneWayMs += now - msg.sentAt;
    }
    const next = { remaining: msg.remaining - 1, k2k: msg.k2k, sentAt: now };
    if (msg.remaining === 0) return { remaining: 0, k2k: msg.k2k, sentAt: now };
    if (msg.k2k === 0) return next;
    const receipt = ctx.send("bench-hop-a", Hop.of(next));
    if (receipt.status !== "Delivered") throw new Error(`hop to A: ${receipt.status}`);
    return undefined;
  },
});
