// Host-only cost of KernelHandle.request on a kernel whose memory is not a SharedArrayBuffer (the
// CUDA backend's polling mode), with no GPU: the handle drives a region in a plain ArrayBuffer,
// and the "kernel" is emulated by placing each reply in the output queue before the request is
// made (its correlation id is predictable) and draining the input lane afterwards. So the time
// measured is the host's own part of a round trip: encode, register, enqueue, pump, decode,
// dispatch, promise settlement. Also times the pieces separately.
//
//   deno run -A bench/host_request.ts        bun bench/host_request.ts
import { KernelState } from "../src/core/control_block.ts";
import { EnvelopeFlag, writeMessage } from "../src/core/envelope.ts";
import { HlcClock } from "../src/core/hlc.ts";
import { KernelHandle } from "../src/runtime/kernel_handle.ts";
import { kernelLayout, KernelMemory } from "../src/runtime/kernel_memory.ts";
import { LaunchOptions } from "../src/runtime/launch_options.ts";
import { AddValue, dslAccumulator, Total } from "../test/dsl/corpus.ts";
import { percentile } from "./harness.ts";

function stats(samples: number[]): { p50: number; p99: number; mean: number } {
  const sorted = Float64Array.from(samples).sort();
  const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
  return {
    p50: Number(percentile(sorted, 50).toFixed(3)),
    p99: Number(percentile(sorted, 99).toFixed(3)),
    mean: Number(mean.toFixed(3)),
  };
}

const layout = kernelLayout(dslAccumulator.state!.size, 256, 256, 256);
const mem = KernelMemory.format(new ArrayBuffer(layout.byteLength), layout, 1);
mem.cb.state = KernelState.Active;
let exitNow: (v: { kind: "terminated" }) => void = () => {};
const exit = new Promise<{ kind: "terminated" }>((r) => (exitNow = r));
const clock = new HlcClock(1);
const k = new KernelHandle(dslAccumulator, LaunchOptions.default(), {
  mem,
  route: {
    id: dslAccumulator.id,
    numericId: 1,
    inputTypeId: AddValue.typeId,
    buffer: mem.buffer,
    layout,
  },
  exit,
  dispose: () => {},
  onFailure: () => {},
}, clock);

const reply = new Uint8Array(layout.slotSize);
let nextId = 1n;
let total = 0;
function placeReply(): void {
  total += 1;
  const n = writeMessage(reply, 0, Total.of({ total, count: total }), {
    flags: EnvelopeFlag.Reply,
    correlationId: nextId++,
    destKernel: 0,
  });
  if (!mem.output.tryEnqueue(reply.subarray(0, n))) throw new Error("output full");
}

async function requests(iterations: number): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < iterations; i++) {
    placeReply();
    const t0 = performance.now();
    const r = await k.request(AddValue.of({ value: 1 }));
    samples.push((performance.now() - t0) * 1000);
    if (r?.count !== total) throw new Error(`reply ${r?.count} for ${total}`);
    mem.normal.dequeueMany(Infinity);
  }
  return samples;
}

// Throughput view: many requests timed together (per-sample timer resolution is coarse).
async function batchPer(iterations: number): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < iterations; i++) {
    placeReply();
    await k.request(AddValue.of({ value: 1 }));
    mem.normal.dequeueMany(Infinity);
  }
  return ((performance.now() - t0) * 1000) / iterations;
}

await requests(20_000);
const perRequest = stats(await requests(50_000));
const batch: number[] = [];
for (let r = 0; r < 5; r++) batch.push(await batchPer(50_000));
batch.sort((a, b) => a - b);

// Pieces.
const scratch = new Uint8Array(layout.slotSize);
function timeIt(label: string, n: number, f: () => void): [string, number] {
  for (let i = 0; i < n; i++) f();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) f();
  return [label, Number((((performance.now() - t0) * 1e6) / n).toFixed(1))];
}
const pieces = Object.fromEntries([
  timeIt("performance.now ns", 1_000_000, () => performance.now()),
  timeIt("setTimeout+clearTimeout ns", 200_000, () => clearTimeout(setTimeout(() => {}, 5000))),
  timeIt("new Promise ns", 1_000_000, () => new Promise(() => {})),
  timeIt("writeMessage ns", 1_000_000, () =>
    writeMessage(scratch, 0, AddValue.of({ value: 1 }), {
      flags: EnvelopeFlag.Request,
      messageId: 1n,
      destKernel: 1,
      timestamp: clock.tick(),
    })),
]);

console.log(JSON.stringify({
  runtime: "Deno" in globalThis ? "deno" : "bun",
  requestUs: perRequest,
  requestBatchMeanUs: { best: Number(batch[0].toFixed(3)), median: Number(batch[2].toFixed(3)) },
  pieces,
}));
exitNow({ kind: "terminated" });
await k.settled;
