// Which CUDA driver calls wait for the device to go idle? A persistent kernel never lets it, so
// any such call made while one runs would hang (until the kernel returns). For each call: a
// spinner kernel is launched on a non-blocking stream and confirmed running; the call is timed;
// only then is the spinner told to stop. The spinner gives up by itself after SPIN_MS, so a call
// that waits for the device takes about SPIN_MS instead of hanging the bench. The CUDA runtime
// parks its kernels around the calls found to wait (src/backends/cuda/device_quiet.ts).
//
//   deno run -A bench/cuda_blocking_calls.ts        bun bench/cuda_blocking_calls.ts
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { type CudaContext, CudaDriver, type CudaModule, Nvrtc } from "../ffi/mod.ts";
import { runtimeInfo } from "./harness.ts";

const SPIN_MS = 1500;
/** A call that takes longer than this waited for the spinner. */
const WAITED_MS = SPIN_MS / 2;

const SPINNER = `
extern "C" __global__ void spin(volatile unsigned int* flags, unsigned long long limit_ns) {
  unsigned long long t0;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  flags[0] = 1u;
  __threadfence_system();
  for (;;) {
    if (flags[1] != 0u) break;
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    if (t - t0 > limit_ns) { flags[2] = 1u; break; }
    __nanosleep(1000);
  }
}
`;

/** A module no one loaded yet (a different kernel name each time). */
function freshSource(i: number): string {
  return `extern "C" __global__ void fresh_${i}(unsigned int* p) { p[0] = ${i}u; }\n`;
}

function main(): void {
  let driver: CudaDriver;
  try {
    driver = CudaDriver.open();
  } catch (e) {
    console.log(`skipped: no CUDA driver (${(e as Error).message.split("\n")[0]})`);
    return;
  }
  const ctx: CudaContext = driver.createContext(0);
  const nvrtc = Nvrtc.open();
  const arch = ctx.device.arch;
  const compile = (code: string, name: string) =>
    nvrtc.compile(code, { arch, name, context: name, options: ["--std=c++17"] }).image;
  const spinModule = ctx.loadModule(compile(SPINNER, "spin.cu"));
  const spinFn = spinModule.getFunction("spin");
  const preloaded = ctx.loadModule(compile(freshSource(0), "fresh0.cu"));
  const flagsMem = ctx.allocHost(4096);
  const flags = new Uint32Array(flagsMem.buffer, 0, 4);
  const stream = ctx.createStream({ nonBlocking: true });
  const other = ctx.createStream({ nonBlocking: true });
  const scratch = ctx.alloc(4096);

  let n = 1;
  const images = Array.from({ length: 4 }, () => {
    const i = n++;
    return { i, image: compile(freshSource(i), `fresh${i}.cu`) };
  });
  let loaded: CudaModule | undefined;
  let devicePtr = 0n;
  let hostAlloc: ReturnType<CudaContext["allocHost"]> | undefined;

  const calls: Array<[string, () => void]> = [
    ["cuMemAlloc (1 MiB)", () => void (devicePtr = ctx.alloc(1 << 20))],
    ["cuMemFree", () => ctx.free(devicePtr)],
    ["cuMemHostAlloc (1 MiB, mapped)", () => void (hostAlloc = ctx.allocHost(1 << 20))],
    ["cuMemFreeHost", () => ctx.freeHost(hostAlloc!)],
    [
      "cuStreamCreate + cuStreamDestroy",
      () => ctx.destroyStream(ctx.createStream({ nonBlocking: true })),
    ],
    ["cuModuleLoadData (cubin)", () => void (loaded = ctx.loadModule(images[0].image))],
    ["cuModuleGetFunction", () => void loaded!.getFunction(`fresh_${images[0].i}`)],
    [
      "cuLaunchKernel (module loaded before the spinner)",
      () => {
        ctx.launch(preloaded.getFunction("fresh_0"), 1, 1, 0, other, [{ ptr: scratch }]);
        ctx.synchronizeStream(other);
      },
    ],
    [
      "cuLaunchKernel (module loaded while it spins, first launch)",
      () => {
        ctx.launch(loaded!.getFunction(`fresh_${images[0].i}`), 1, 1, 0, other, [{ ptr: scratch }]);
        ctx.synchronizeStream(other);
      },
    ],
    ["cuModuleUnload", () => ctx.unloadModule(loaded!)],
    ["cuMemsetD8 (device memory, legacy stream)", () => ctx.memset(scratch, 0, 4096)],
    [
      "cuMemcpyHtoDAsync on a non-blocking stream + sync",
      () => {
        ctx.copyHtoDAsync(scratch, new Uint8Array(64), other);
        ctx.synchronizeStream(other);
      },
    ],
  ];

  const results: Array<{ call: string; ms: number; waitedForDevice: boolean }> = [];
  for (const [call, run] of calls) {
    flags.fill(0);
    ctx.launch(spinFn, 1, 1, 0, stream, [{ ptr: flagsMem.device }, {
      u64: BigInt(SPIN_MS) * 1_000_000n,
    }]);
    const start = performance.now();
    while (Atomics.load(flags, 0) === 0) {
      if (performance.now() - start > 5000) throw new Error("the spinner did not start");
    }
    const t0 = performance.now();
    let error: string | undefined;
    try {
      run();
    } catch (e) {
      error = (e as Error).message;
    }
    const ms = performance.now() - t0;
    Atomics.store(flags, 1, 1);
    ctx.synchronizeStream(stream);
    const waited = ms > WAITED_MS;
    results.push({ call, ms: Number(ms.toFixed(3)), waitedForDevice: waited });
    console.log(
      `${waited ? "WAITS " : "ok    "} ${ms.toFixed(3).padStart(10)} ms  ${call}${
        error === undefined ? "" : `  (error: ${error})`
      }`,
    );
  }

  ctx.free(scratch);
  ctx.destroyStream(stream);
  ctx.destroyStream(other);
  const info = runtimeInfo();
  const out = {
    benchmark: "cuda-blocking-calls",
    ...info,
    device: ctx.device.name,
    moduleLoading: process.env.CUDA_MODULE_LOADING ?? "(unset)",
    spinMs: SPIN_MS,
    results,
  };
  ctx.close();
  nvrtc.close();
  driver.close();
  const dir = process.env.RINGKERNEL_RESULTS_DIR ?? new URL("./results/", import.meta.url).pathname;
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `cuda-blocking-calls-${info.runtime}.json`);
  writeFileSync(path, JSON.stringify(out, null, 2) + "\n");
  console.log(path);
}

main();
