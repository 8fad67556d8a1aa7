// Shared by the runtime tests: a runtime that is always shut down, whatever the test does.
import type { KernelRuntime } from "../../src/runtime/backend.ts";
import { CpuRuntime } from "../../src/backends/cpu/cpu_runtime.ts";

/** Runs `body` with a fresh CPU runtime and shuts it down afterwards (unless the body did). */
export async function withRuntime<T>(body: (rt: KernelRuntime) => Promise<T>): Promise<T> {
  const rt = await CpuRuntime.create();
  try {
    return await body(rt);
  } finally {
    if (!rt.isShutdown) await rt.shutdown();
  }
}

/** Resolves after `ms` milliseconds. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
