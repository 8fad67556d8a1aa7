/**
 * Request/response: every request carries a message id and its reply the same id as correlation
 * id, so concurrent requests each get their own answer; timeouts, late replies, handler errors
 * and priority requests.
 *
 *   deno run -A examples/request_response.ts
 *   bun examples/request_response.ts
 *
 * Single-file example: this module exports the kernel definitions (the kernels' workers import it
 * through `module: import.meta.url`) and runs the script only `if (import.meta.main)`, which is
 * false when a worker imports it, in Deno and in Bun.
 */
import {
  defineKernel,
  defineMessage,
  HandlerError,
  LaunchOptions,
  Priority,
  RingKernel,
  TimeoutError,
} from "../mod.ts";

/** A job: square `x`, after busying the kernel for `workMs` milliseconds. */
export const Job = defineMessage({
  typeId: 1201,
  name: "Job",
  fields: { x: "i32", workMs: "u32" },
});
/** The answer, with the position in which the kernel handled the job. */
export const Answer = defineMessage({
  typeId: 1202,
  name: "Answer",
  fields: { x: "i32", square: "f64", order: "u32" },
});

/** Squares numbers. A negative `x` throws, to show how a handler error reaches the requester. */
export const squarer = defineKernel({
  id: "squarer",
  module: import.meta.url,
  input: Job,
  output: Answer,
  state: { handled: "u32" },
  handler: (msg, state) => {
    state.handled += 1;
    if (msg.x < 0) throw new RangeError(`cannot square ${msg.x} today`);
    // Simulated work: handlers are synchronous, so a long one keeps the kernel busy.
    const until = performance.now() + msg.workMs;
    while (performance.now() < until) {
      // busy
    }
    return { x: msg.x, square: msg.x * msg.x, order: state.handled };
  },
});

async function main(): Promise<void> {
  const rt = await RingKernel.builder().build();
  const k = await rt.launch(squarer, LaunchOptions.default());

  // 1. Many requests in flight at once; each promise resolves with the reply to its own message.
  const xs = Array.from({ length: 200 }, (_, i) => i + 1);
  const answers = await Promise.all(xs.map((x) => k.request(Job.of({ x, workMs: 0 }))));
  const matched = answers.every((a, i) => a!.x === xs[i] && a!.square === xs[i] * xs[i]);
  console.log(`1. ${xs.length} concurrent requests, every reply matched its request: ${matched}`);

  // 2. A request that times out is rejected; its reply, when it comes, is counted and dropped,
  //    never handed to the next caller.
  try {
    await k.request(Job.of({ x: 3, workMs: 300 }), { timeoutMs: 50 });
  } catch (e) {
    if (!(e instanceof TimeoutError)) throw e;
    console.log(`2. slow request with timeoutMs 50: ${e.name} ${e.code}`);
  }
  const next = await k.request(Job.of({ x: 4, workMs: 0 }));
  console.log(`   the next request gets its own reply: x ${next!.x}, square ${next!.square}`);
  console.log(`   late replies dropped: ${k.metrics().lateReplies}`);

  // 3. A handler that throws rejects the request with HandlerError; the kernel serves on.
  try {
    await k.request(Job.of({ x: -2, workMs: 0 }));
  } catch (e) {
    if (!(e instanceof HandlerError)) throw e;
    console.log(`3. ${e.name} ${e.code}: ${e.remoteName}: ${e.remoteMessage}`);
  }
  console.log(`   still serving: 5² = ${(await k.request(Job.of({ x: 5, workMs: 0 })))!.square}`);

  // 4. Priority: while the kernel is busy, a High request overtakes the Normal ones queued
  //    before it (it goes to the kernel's high-priority lane, which is always read first).
  const before = k.readState()!.handled;
  const blocker = k.request(Job.of({ x: 0, workMs: 100 }));
  // Wait until the kernel has taken the busy job (the host reads its state from shared memory),
  // or a quick kernel might see all four requests at once and handle the urgent one first.
  while (k.readState()!.handled === before) await new Promise((r) => setTimeout(r, 1));
  const normal = [1, 2, 3].map((x) => k.request(Job.of({ x, workMs: 0 })));
  const urgent = k.request(Job.of({ x: 99, workMs: 0 }), { priority: Priority.High });
  const [b, u, ...n] = await Promise.all([blocker, urgent, ...normal]);
  const orderOf = (a: typeof b) => a!.order - b!.order;
  console.log(
    `4. handled after the busy job: urgent #${orderOf(u)}, normal ${
      n.map((a) => `#${orderOf(a)}`).join(" ")
    }`,
  );

  // 5. Sequential round trips: the host's view of latency (varies by machine; not checked).
  for (let i = 0; i < 2000; i++) await k.request(Job.of({ x: i, workMs: 0 }));
  const rtt = k.requestLatency();
  console.log(
    `5. requests: ${rtt.count}, round trip p50 ${(rtt.p50Ns / 1000).toFixed(1)} µs, ` +
      `p99 ${(rtt.p99Ns / 1000).toFixed(1)} µs`,
  );

  await rt.shutdown();
  console.log("done");
}

if (import.meta.main) await main();
