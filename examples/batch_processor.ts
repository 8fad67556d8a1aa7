/**
 * Batch processing: the host sends frames of 256 f32 samples in batches with `sendMany` (one
 * queue reservation per run instead of one per message) and reads results with `receiveMany`;
 * the kernel's handler does its f32 math on the WebAssembly SIMD core (`ctx.simd`), and the host
 * checks every result against the same math in plain JS. A batch that does not fit shows
 * `PartialSendError`: which prefix went in, and that the rest is the caller's to retry.
 *
 *   deno run -A examples/batch_processor.ts
 *   bun examples/batch_processor.ts
 *
 * Single-file example: this module exports the kernel definitions (the kernels' workers import it
 * through `module: import.meta.url`) and runs the script only `if (import.meta.main)`, which is
 * false when a worker imports it, in Deno and in Bun.
 */
import {
  array,
  Backend,
  defineKernel,
  defineMessage,
  LaunchOptions,
  PartialSendError,
  RingKernel,
} from "../mod.ts";

/** Samples per frame. */
export const N = 256;

/** A frame of samples and the gain to apply to them. */
export const Frame = defineMessage({
  typeId: 1601,
  name: "Frame",
  fields: { id: "u32", gain: "f32", samples: array("f32", N) },
});
/** Statistics of a frame after the gain: Σx and Σx². */
export const FrameStats = defineMessage({
  typeId: 1602,
  name: "FrameStats",
  fields: { id: "u32", sum: "f32", energy: "f32" },
});

/**
 * The SIMD core works only on its own memory, so the handler copies the samples (a view into the
 * queue slot) into a scratch buffer that lives for the kernel's life, then runs scale, sum and
 * dot there. One copy of 1 KiB is cheap next to the loops it replaces.
 */
export const frameStats = defineKernel({
  id: "frame-stats",
  module: import.meta.url,
  input: Frame,
  output: FrameStats,
  handler: (msg, _state, ctx) => {
    const x = ctx.f32Scratch("x", N);
    x.set(msg.samples);
    ctx.simd.scale(x, msg.gain);
    return { id: msg.id, sum: ctx.simd.sum(x), energy: ctx.simd.dot(x, x) };
  },
});

/** A Frame message, ready to send. */
type FrameMessage = ReturnType<typeof Frame.of>;

/**
 * Deterministic samples. They are multiples of 1/8 in [-8, 8), so with gain 0.5 every sum and
 * every dot product is exact in f32 whatever the order of additions: the SIMD core (32 lanes)
 * and the index-order JS loop must then agree bit for bit, not just within rounding.
 */
function frame(id: number): FrameMessage {
  const samples = Array.from({ length: N }, (_, i) => (((id * 31 + i * 7) % 128) - 64) / 8);
  return Frame.of({ id, gain: 0.5, samples });
}

/** The same statistics in plain JS, rounded to f32 at each step as the kernel computes them. */
function statsInJs(m: FrameMessage): { sum: number; energy: number } {
  const f = Math.fround;
  let sum = 0, energy = 0;
  for (const s of m.value.samples) {
    const x = f(s * m.value.gain);
    sum = f(sum + x);
    energy = f(energy + f(x * x));
  }
  return { sum, energy };
}

async function main(): Promise<void> {
  const BATCH = 256, BATCHES = 8;
  // Host-only handler features (see the handlers): the CPU backend, by name.
  const rt = await RingKernel.builder().backend(Backend.Cpu).build();
  const k = await rt.launch(frameStats, LaunchOptions.default().withQueueCapacity(512));

  // 1. Batches in, batches out, every result checked against plain JS.
  const frames = Array.from({ length: BATCH * BATCHES }, (_, id) => frame(id));
  let mismatches = 0, checked = 0;
  const started = performance.now();
  for (let b = 0; b < BATCHES; b++) {
    const batch = frames.slice(b * BATCH, (b + 1) * BATCH);
    await k.sendMany(batch);
    for (let got = 0; got < batch.length;) {
      for (const out of await k.receiveMany(batch.length - got, { timeoutMs: 5000 })) {
        const want = statsInJs(frames[out.value!.id]);
        if (out.value!.sum !== want.sum || out.value!.energy !== want.energy) mismatches++;
        checked++;
        got++;
      }
    }
  }
  const seconds = (performance.now() - started) / 1000;
  console.log(`1. ${BATCHES} batches of ${BATCH} frames (${N} f32 each) through ${k.id}`);
  console.log(`   results checked against plain JS: ${checked}, mismatches: ${mismatches}`);
  const first = statsInJs(frames[0]);
  console.log(`   frame 0: sum ${first.sum}, energy ${first.energy}`);
  // Machine- and load-dependent; shown, not checked.
  console.log(`   throughput: ${Math.round(checked / seconds)} frames/s`);

  // 2. A batch larger than the room left: the prefix that fits goes in, in order, and the error
  //    says how much; nothing is dropped without the caller knowing.
  await k.deactivate(); // so nothing drains while we send
  const big = Array.from({ length: 600 }, (_, i) => frame(10_000 + i));
  try {
    await k.sendMany(big, { timeoutMs: 20 });
  } catch (e) {
    if (!(e instanceof PartialSendError)) throw e;
    console.log(`2. ${e.name} ${e.code}: accepted ${e.accepted}, rejected ${e.rejected}`);
    await k.activate();
    let handled = 0;
    while (handled < e.accepted) handled += (await k.receiveMany(e.accepted - handled)).length;
    // The caller retries what was not accepted.
    await k.sendMany(big.slice(e.accepted));
    while (handled < big.length) handled += (await k.receiveMany(big.length - handled)).length;
    console.log(`   after activate and a retry of the rest: ${handled} of ${big.length} handled`);
  }
  console.log(`processed by the kernel: ${k.metrics().processed}`);

  await rt.shutdown();
  console.log("done");
}

if (import.meta.main) await main();
