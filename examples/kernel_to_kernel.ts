/**
 * Kernel-to-kernel (K2K) messaging: a pipeline of three kernels where each stage hands its result
 * to the next with `ctx.send`, worker to worker with no hop through the main thread, and the
 * receipts that say what became of every send (`Delivered`, `QueueFull`, `NotFound`), from inside
 * a kernel and from the host's `k2kBroker()`.
 *
 *   deno run -A examples/kernel_to_kernel.ts
 *   bun examples/kernel_to_kernel.ts
 *
 * Single-file example: this module exports the kernel definitions (the kernels' workers import it
 * through `module: import.meta.url`) and runs the script only `if (import.meta.main)`, which is
 * false when a worker imports it, in Deno and in Bun.
 */
import {
  Backend,
  defineKernel,
  defineMessage,
  DeliveryStatus,
  encodeMessage,
  type K2kReceipt,
  LaunchOptions,
  RingKernel,
} from "../mod.ts";

/** A raw sample from the host. */
export const Sample = defineMessage({ typeId: 1401, name: "Sample", fields: { raw: "i32" } });
/** A validated, scaled value. */
export const Scaled = defineMessage({ typeId: 1402, name: "Scaled", fields: { value: "f32" } });

/** What a stage counts: its K2K receipts by status, and what it rejected itself. */
const STAGE_STATE = {
  delivered: "u32",
  queueFull: "u32",
  notFound: "u32",
  rejected: "u32",
} as const;

/** A receipt is data, not an exception: the stage counts it in its state for the host to read. */
function countReceipt(
  receipt: K2kReceipt,
  state: { delivered: number; queueFull: number; notFound: number },
): void {
  if (receipt.status === DeliveryStatus.Delivered) state.delivered++;
  else if (receipt.status === DeliveryStatus.QueueFull) state.queueFull++;
  else state.notFound++;
}

/** Stage 1: drops negative samples, passes the rest on to `scale`. */
export const validate = defineKernel({
  id: "validate",
  module: import.meta.url,
  input: Sample,
  state: STAGE_STATE,
  handler: (msg, state, ctx) => {
    if (msg.raw < 0) {
      state.rejected++;
      return;
    }
    countReceipt(ctx.send("scale", Sample.of({ raw: msg.raw })), state);
  },
});

/** Stage 2: converts to a physical value and passes it on to `total`. */
export const scale = defineKernel({
  id: "scale",
  module: import.meta.url,
  input: Sample,
  state: STAGE_STATE,
  handler: (msg, state, ctx) => {
    countReceipt(ctx.send("total", Scaled.of({ value: msg.raw * 0.5 })), state);
  },
});

/** Stage 3: sums what reaches it and remembers which kernel sent the last message. */
export const total = defineKernel({
  id: "total",
  module: import.meta.url,
  input: Scaled,
  state: { count: "u32", sum: "f32", lastSource: "u32" },
  handler: (msg, state, ctx) => {
    state.count++;
    state.sum += msg.value;
    state.lastSource = ctx.sourceKernel;
  },
});

/** Polls `done` (kernels that reply to no one are watched through their state). */
async function until(done: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!done()) {
    if (Date.now() > deadline) throw new Error("timed out waiting for the pipeline");
    await new Promise((r) => setTimeout(r, 1));
  }
}

async function main(): Promise<void> {
  // Host-only handler features (see the handlers): the CPU backend, by name.
  const rt = await RingKernel.builder().backend(Backend.Cpu).build();
  // The last stage has a small input queue, so the QueueFull step below needs only a few sends.
  const t = await rt.launch(total, LaunchOptions.default().withInputCapacity(4));
  const s = await rt.launch(scale);
  const v = await rt.launch(validate);
  const receipts = (k: typeof s | typeof v) => {
    const { delivered, queueFull, notFound, rejected } = k.readState()!;
    return `delivered ${delivered}, queueFull ${queueFull}, notFound ${notFound}, ` +
      `rejected ${rejected}`;
  };

  console.log("1. pipeline validate -> scale -> total");
  const raws = [10, -3, 4, 8, -1, 2];
  for (const raw of raws) await v.send(Sample.of({ raw }));
  // Each stage counts a receipt after its send returns, so the next stage may be ahead: wait
  // for all three.
  await until(() =>
    t.readState()!.count === 4 && s.readState()!.delivered === 4 &&
    v.readState()!.delivered + v.readState()!.rejected === raws.length
  );
  const tot = t.readState()!;
  const from = rt.listKernels().find((id) => rt.getKernel(id)!.numericId === tot.lastSource);
  console.log(`   total: ${tot.count} values, sum ${tot.sum}, last one sent by ${from}`);
  console.log(`   validate: ${receipts(v)}`);
  console.log(`   scale: ${receipts(s)}`);

  console.log("2. host broker receipts");
  const broker = rt.k2kBroker();
  console.log(`   routes: ${broker.routes().join(", ")}`);
  const envelope = encodeMessage(Scaled.of({ value: 100 }));
  console.log(`   host -> total: ${(await broker.send("host", "total", envelope)).status}`);
  console.log(`   host -> ghost: ${(await broker.send("host", "ghost", envelope)).status}`);
  await until(() => t.readState()!.count === 5);

  console.log("3. a full destination: QueueFull (refused and counted, never lost silently)");
  await t.deactivate(); // keeps what it is sent, handles none of it
  for (let i = 1; i <= 6; i++) await v.send(Sample.of({ raw: i }));
  await until(() =>
    s.readState()!.delivered + s.readState()!.queueFull === 4 + 6 &&
    v.readState()!.delivered === 4 + 6
  );
  console.log(`   scale: ${receipts(s)}`);
  await t.activate();
  await until(() => t.readState()!.count === 9);
  console.log(`   total after reactivation: ${t.readState()!.count} values`);

  console.log("4. a terminated destination: NotFound");
  await t.terminate();
  await v.send(Sample.of({ raw: 7 }));
  await until(() => s.readState()!.notFound === 1 && v.readState()!.delivered === 4 + 6 + 1);
  console.log(`   scale: ${receipts(s)}`);

  const k2k = rt.metrics().k2k;
  console.log(
    `runtime K2K totals: sent ${k2k.sent}, delivered ${k2k.delivered}, ` +
      `queueFull ${k2k.queueFull}, notFound ${k2k.notFound}`,
  );
  await rt.shutdown();
  console.log("done");
}

if (import.meta.main) await main();
