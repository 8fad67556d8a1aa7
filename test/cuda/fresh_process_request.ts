// Run as its own process by faults_gpu.test.ts after a GPU fault poisoned the test's process:
// a new process builds a CUDA runtime, launches a kernel and answers a request. Prints one JSON
// line with the reply; exits non-zero on any failure.
import process from "node:process";
import { CudaRuntime } from "../../src/backends/cuda/cuda_runtime.ts";
import { LaunchOptions } from "../../src/runtime/launch_options.ts";
import { cellWriter, Poke } from "./gpu_kernels.ts";

const rt = await CudaRuntime.create(
  process.env.RK_CACHE_DIR === undefined ? {} : { cacheDir: process.env.RK_CACHE_DIR },
);
try {
  const k = await rt.launch(cellWriter("fresh_cells"), LaunchOptions.default());
  const reply = await k.request(Poke.of({ index: 2, value: 9 }), { timeoutMs: 5000 });
  await k.terminate();
  console.log(JSON.stringify({ reply }));
} finally {
  await rt.shutdown();
}
