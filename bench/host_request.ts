// Host-only cost of KernelHandle.request on a kernel whose memory is not a SharedArrayBuffer (the
// CUDA backend's polling mode), with no GPU: the handle drives a region in a plain ArrayBuffer,
// and the "kernel" is emulated by placing each reply in the output queue before the request is
// made (its correlation id is predictable) and draining the input lane afterwards. So the time
// measured is the host's own part of a round trip: encode, register, enqueue, pump, decode,
// dispatch, promise settlement. Two rows: sealed slots (the CUDA backend's layout) and, as the
// baseline of the ratio, unsealed ones. Also times the pieces separately. Writes
// bench/results/host-request-<runtime>.json.
//
//   deno run -A bench/host_request.ts        bun bench/host_request.ts
import { KernelState } from "../src/core/control_block.ts";
import { EnvelopeFlag, writeMessage } from "../src/core/envelope.ts";
import { HlcClock } from "../src/core/hlc.ts";
import { KernelHandle } from "../src/runtime/kernel_handle.ts";
import { kernelLayout, KernelMemory } from "../src/runtime/kernel_memory.ts";
import { LaunchOptions } from "../src/runtime/launch_options.ts";
import { AddValue, dslAccumulator, Total } from "../test/dsl/corpus.ts";
import { percentile, writeResult } from "./harness.ts";

interface Stats {
  p50: number;
  p99: number;
  mean: number;
}

function stats(samples: number[]): Stats {
  const sorted = Float64Array.from(samples).sort();
  const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
  return {
    p50: Number(percentile(sorted, 50).toFixed(3)),
    p99: Number(percentile(sorted, 99).toFixed(3)),
    mean: Number(mean.toFixed(3)),
  };
}

const clock = new HlcClock(1);

/** A handle in polling mode over a plain-ArrayBuffer region, and an emulated kernel for it. */
function makeCase(sealed: boolean) {
  const layout = kernelLayout(dslAccumulator.state!.size, 256, 256, 256, sealed);
  const mem = KernelMemory.format(new ArrayBuffer(layout.byteLength), layout, 1);
  mem.cb.state = KernelState.Active;
  let exitNow: (v: { kind: "terminated" }) => void = () => {};
  const exit = new Promise<{ kind: "terminated" }>((r) => (exitNow = r));
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

  async function close(): Promise<void> {
    exitNow({ kind: "terminated" });
    await k.settled;
  }
  return { requests, batchPer, close };
}

const cases = { sealed: makeCase(true), unsealed: makeCase(false) };
type CaseName = keyof typeof cases;
const names: CaseName[] = ["sealed", "unsealed"];
for (const name of names) await cases[name].requests(20_000);
// Alternated rounds, so that neither row gets the machine's quieter moments alone.
const samples: Record<CaseName, number[]> = { sealed: [], unsealed: [] };
const batch: Record<CaseName, number[]> = { sealed: [], unsealed: [] };
for (let round = 0; round < 5; round++) {
  for (const name of names) {
    samples[name].push(...await cases[name].requests(10_000));
    batch[name].push(await cases[name].batchPer(20_000));
  }
}
interface Row {
  requestUs: Stats;
  requestBatchMeanUs: { best: number; median: number };
}
function row(name: CaseName): Row {
  const b = batch[name].sort((x, y) => x - y);
  return {
    requestUs: stats(samples[name]),
    requestBatchMeanUs: { best: Number(b[0].toFixed(3)), median: Number(b[2].toFixed(3)) },
  };
}
const rows = { sealed: row("sealed"), unsealed: row("unsealed") };
for (const name of names) await cases[name].close();

// Pieces.
const scratch = new Uint8Array(256);
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

const figures = {
  device: "host only (no GPU; the kernel is emulated)",
  ...rows,
  // The baseline of the ratio is the unsealed layout, measured in the same run.
  sealedOverUnsealed: {
    p50: Number((rows.sealed.requestUs.p50 / rows.unsealed.requestUs.p50).toFixed(3)),
    batchBest: Number(
      (rows.sealed.requestBatchMeanUs.best / rows.unsealed.requestBatchMeanUs.best).toFixed(3),
    ),
  },
  pieces,
};
const path = writeResult("host-request", figures);
console.log(JSON.stringify({ runtime: "Deno" in globalThis ? "deno" : "bun", ...figures }));
console.error(`wrote ${path}`);
