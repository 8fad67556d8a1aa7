// 64-byte messages per second through a WebGPU kernel (Backend.WebGpu: the runtime's rounds of
// dispatches), against the same definition on the CPU backend in the same run. `benchSummer`
// (sixteen f32 summed, a running count in state), windows of WINDOW messages by `sendMany`, each
// window's outputs by `receiveMany` before the next (`runWindows`, bench/windowed.ts); after the
// run the kernel's count must equal the messages sent (`countMismatch` says what differs if not).
//
//   deno run -A bench/webgpu_runtime.ts     bun bench/webgpu_runtime.ts
//   (RINGKERNEL_WEBGPU=dawn for the Dawn binding; RINGKERNEL_RESULTS_DIR for the JSON's folder;
//   RINGKERNEL_BENCH_MESSAGES for the count, rounded up to whole windows)
// Writes bench/results/webgpu-runtime-<device>-<runtime>.json (or into $RINGKERNEL_RESULTS_DIR).
import process from "node:process";
import {
  Backend,
  BackendUnavailableError,
  LaunchOptions,
  RingKernel,
  WebGpuRuntime,
} from "../mod.ts";
import { benchSummer, Samples } from "./kernels.ts";
import { runtimeInfo } from "./harness.ts";
import { deviceSlug, writeBenchJson } from "./webgpu_latency.ts";
import { countMismatch, runWindows, windowsFor } from "./windowed.ts";

const WINDOW = 1024;
const WARMUP_WINDOWS = 4;
// Whole windows: RINGKERNEL_BENCH_MESSAGES is rounded up to a multiple of WINDOW (200,000 → 196
// windows, 200,704 messages), and every figure below uses the number actually sent.
const WINDOWS = windowsFor(Number(process.env.RINGKERNEL_BENCH_MESSAGES ?? 200_000), WINDOW);

/** What one backend's run measured. */
interface Throughput {
  perSecond: number;
  /** Messages sent in the timed run (whole windows). */
  messages: number;
  /** The WebGPU adapter's name; the CPU model for the CPU backend. */
  device: string;
  notes: string[];
}

async function throughput(
  backend: Backend,
): Promise<Throughput> {
  const rt = await RingKernel.builder().backend(backend).build();
  try {
    const k = await rt.launch(benchSummer, LaunchOptions.default().withQueueCapacity(WINDOW));
    const msg = Samples.of({ values: Array.from({ length: 16 }, (_, i) => i + 0.5) });
    const window = Array.from({ length: WINDOW }, () => msg);
    const warm = await runWindows(k, window, WARMUP_WINDOWS);
    const { sent, ms } = await runWindows(k, window, WINDOWS);
    // Read right after the last window's outputs, as a caller would.
    const mismatch = countMismatch(
      k,
      warm.sent + sent,
      rt instanceof WebGpuRuntime
        ? { pumpStats: () => rt.pumpStats(), takeDeadLetters: () => rt.takeDeadLetters() }
        : {},
    );
    if (mismatch !== undefined) throw new Error(`${backend}: ${mismatch}`);
    return {
      perSecond: sent / (ms / 1000),
      messages: sent,
      device: rt instanceof WebGpuRuntime ? rt.adapterInfo.name : runtimeInfo().cpu,
      notes: [...rt.backendNotes],
    };
  } finally {
    await rt.shutdown();
  }
}

let webgpu: Throughput;
try {
  webgpu = await throughput(Backend.WebGpu);
} catch (e) {
  if (!(e instanceof BackendUnavailableError)) throw e;
  console.log(`skipped: ${e.message}`);
  process.exit(0);
}
const cpu = await throughput(Backend.Cpu);
const info = runtimeInfo();
const figures = {
  device: webgpu.device,
  messages: webgpu.messages,
  window: WINDOW,
  implementation: process.env.RINGKERNEL_WEBGPU ?? "default",
  webgpuMessagesPerSecond: Math.round(webgpu.perSecond),
  cpuMessagesPerSecond: Math.round(cpu.perSecond),
  webgpuVsCpu: Number((webgpu.perSecond / cpu.perSecond).toFixed(3)),
};
console.log(
  `64-byte messages through a WebGPU kernel (${info.runtime} ${info.version}, ${figures.implementation}): ` +
    `${(webgpu.perSecond / 1e6).toFixed(3)} M/s; CPU backend ${
      (cpu.perSecond / 1e6).toFixed(3)
    } M/s ` +
    `(${figures.webgpuVsCpu}×)`,
);
console.log(
  writeBenchJson(`webgpu-runtime-${deviceSlug(webgpu.device)}-${info.runtime}.json`, {
    benchmark: "webgpu-runtime",
    ...info,
    figures,
  }),
);
