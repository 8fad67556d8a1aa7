// 64-byte messages per second through a WebGPU kernel (Backend.WebGpu: the runtime's rounds of
// dispatches), against the same definition on the CPU backend in the same run. `benchSummer`
// (sixteen f32 summed, a running count in state), windows of WINDOW messages by `sendMany`, each
// window's outputs by `receiveMany` before the next.
//
//   deno run -A bench/webgpu_runtime.ts     bun bench/webgpu_runtime.ts
//   (RINGKERNEL_WEBGPU=dawn for the Dawn binding; RINGKERNEL_RESULTS_DIR for the JSON's folder)
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { Backend, BackendUnavailableError, LaunchOptions, RingKernel } from "../mod.ts";
import { benchSummer, Samples } from "./kernels.ts";
import { runtimeInfo } from "./harness.ts";

const WINDOW = 1024;
const MESSAGES = Number(process.env.RINGKERNEL_BENCH_MESSAGES ?? 200_000);

async function throughput(backend: Backend): Promise<{ perSecond: number; notes: string[] }> {
  const rt = await RingKernel.builder().backend(backend).build();
  try {
    const k = await rt.launch(benchSummer, LaunchOptions.default().withQueueCapacity(WINDOW));
    const msg = Samples.of({ values: Array.from({ length: 16 }, (_, i) => i + 0.5) });
    const window = Array.from({ length: WINDOW }, () => msg);
    const run = async (count: number): Promise<number> => {
      const t0 = performance.now();
      for (let done = 0; done < count; done += WINDOW) {
        const sent = await k.sendMany(window);
        if (sent !== WINDOW) throw new Error(`sendMany accepted ${sent}`);
        for (let got = 0; got < WINDOW;) got += (await k.receiveMany(WINDOW - got)).length;
      }
      return performance.now() - t0;
    };
    await run(WINDOW * 4);
    const ms = await run(MESSAGES);
    const count = k.readState()?.count;
    if (count !== MESSAGES + WINDOW * 4) throw new Error(`${backend}: summer counted ${count}`);
    return { perSecond: MESSAGES / (ms / 1000), notes: [...rt.backendNotes] };
  } finally {
    await rt.shutdown();
  }
}

let webgpu: { perSecond: number; notes: string[] };
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
  messages: MESSAGES,
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
const dir = process.env.RINGKERNEL_RESULTS_DIR ?? new URL("./results/", import.meta.url).pathname;
mkdirSync(dir, { recursive: true });
const path = join(dir, `webgpu-runtime-${info.runtime}.json`);
writeFileSync(
  path,
  JSON.stringify({ benchmark: "webgpu-runtime", ...info, figures }, null, 2) + "\n",
);
console.log(path);
