// Kernels of the CUDA fault, watchdog and leak tests (test/cuda/*_gpu.test.ts), written in the
// DSL as a user writes them:
// - `cellWriter(id)` stores `msg.value` at `state.cells[msg.index]`. The DSL does not bounds-check
//   state arrays on CUDA (C indexing), so `POISON_INDEX` makes the handler write far outside any
//   allocation: a real out-of-bounds write that traps the GPU (a sticky CUDA error), reached
//   through the public API only.
// - `spinner(id)` runs a dependent f32 recurrence `msg.n` times: a handler that keeps the GPU busy
//   for as long as the test asks (calibrated per device with `calibrateSpin`), then answers.
import type { CudaRuntime } from "../../src/backends/cuda/cuda_runtime.ts";
import { array, defineMessage, type FieldsSpec } from "../../src/core/schema.ts";
import { u32 } from "../../src/dsl/intrinsics.ts";
import { defineKernel, type KernelDefinition } from "../../src/runtime/kernel.ts";
import type { KernelHandle } from "../../src/runtime/kernel_handle.ts";
import { LaunchOptions } from "../../src/runtime/launch_options.ts";

/** Where to write, and what. */
export const Poke = defineMessage({
  typeId: 4201,
  name: "Poke",
  fields: { index: "u32", value: "u32" },
});

/** The cells after a write. */
export const Cells = defineMessage({
  typeId: 4202,
  name: "Cells",
  fields: { first: "u32", sum: "u32" },
});

/**
 * An index 1.5 Gi cells (6 GiB) past a 4-cell array. Not a multiple of 4 GiB, so the address is
 * out of range whether the compiler addresses the state (in shared memory) with 32-bit shared
 * offsets, which wrap modulo 4 GiB, or with 64-bit generic addresses.
 */
export const POISON_INDEX = 0x6000_0000;

type CellsSpec = { readonly first: "u32"; readonly sum: "u32" };
type PokeSpec = { readonly index: "u32"; readonly value: "u32" };
type CellState = { readonly cells: ReturnType<typeof array<"u32">> };

/** A kernel `id` that writes `state.cells[msg.index] = msg.value` (no bounds check on CUDA). */
export function cellWriter(id: string): KernelDefinition<PokeSpec, CellsSpec, CellState> {
  return defineKernel({
    id,
    module: import.meta.url,
    input: Poke,
    output: Cells,
    state: { cells: array("u32", 4) },
    handler: (msg, state) => {
      state.cells[msg.index] = msg.value;
      return {
        first: state.cells[0],
        sum: state.cells[0] + state.cells[1] + state.cells[2] + state.cells[3],
      };
    },
  });
}

/** How long to spin. */
export const Spin = defineMessage({
  typeId: 4203,
  name: "Spin",
  fields: { n: "u32", x0: "f32" },
});

/** The recurrence's value after `n` steps. */
export const Spun = defineMessage({
  typeId: 4204,
  name: "Spun",
  fields: { x: "f32", n: "u32" },
});

type SpinSpec = { readonly n: "u32"; readonly x0: "f32" };
type SpunSpec = { readonly x: "f32"; readonly n: "u32" };

/** A kernel `id` whose handler runs `msg.n` dependent f32 steps before it replies. */
export function spinner(id: string): KernelDefinition<SpinSpec, SpunSpec> {
  return defineKernel({
    id,
    module: import.meta.url,
    input: Spin,
    output: Spun,
    handler: (msg) => {
      let x = msg.x0;
      for (let i = u32(0); i < msg.n; i++) {
        x = x * 0.9999 + 1.0;
      }
      return { x, n: msg.n };
    },
  });
}

/**
 * Steps of `spinner` per millisecond on this device, from the fastest of a few 2^22-step
 * requests (each minus the round trip of a 1-step request, so the host's share drops out).
 */
export async function calibrateSpin(k: KernelHandle<SpinSpec, SpunSpec>): Promise<number> {
  const time = async (n: number): Promise<number> => {
    let best = Infinity;
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      await k.request(Spin.of({ n, x0: 0 }), { timeoutMs: 10_000 });
      best = Math.min(best, performance.now() - t0);
    }
    return best;
  };
  const base = await time(1);
  const n = 1 << 22;
  const ms = Math.max(0.01, (await time(n)) - base);
  return n / ms;
}

/**
 * Launches `def` once and terminates it, so that its module is compiled and loaded (the runtime
 * keeps it) before the test runs kernels side by side: loading a module while a persistent kernel
 * runs is a hazard of its own (lazy loading may wait for the GPU to idle), tested on its own in
 * `concurrent_load_gpu.test.ts`, not by the tests that use this.
 */
export async function preload<I extends FieldsSpec, O extends FieldsSpec, S extends FieldsSpec>(
  rt: CudaRuntime,
  def: KernelDefinition<I, O, S>,
): Promise<void> {
  const k = await rt.launch(def, LaunchOptions.default().withAutoActivate(false));
  await k.terminate();
}

/** A message of 480 words: its envelope is gathered into the handler's stack frame (~2 KiB). */
export const Wide = defineMessage({
  typeId: 4205,
  name: "Wide",
  fields: { vals: array("u32", 480) },
});

/** The sum of a `Wide` message's words. */
export const WideSum = defineMessage({
  typeId: 4206,
  name: "WideSum",
  fields: { sum: "u32" },
});

type WideSpec = { readonly vals: ReturnType<typeof array<"u32">> };
type WideSumSpec = { readonly sum: "u32" };

/**
 * A kernel `id` that sums a `Wide` message. It needs more stack per thread than CUDA's default
 * 1 KiB limit, so its launch beside a running kernel has the driver grow the context's local
 * memory unless the runtime fitted the limit while loading its module (`fitStack`).
 */
export function wideSummer(id: string): KernelDefinition<WideSpec, WideSumSpec> {
  return defineKernel({
    id,
    module: import.meta.url,
    input: Wide,
    output: WideSum,
    handler: (msg) => {
      let s = 0;
      for (let i = 0; i < 480; i++) s = u32(s + msg.vals[i]);
      return { sum: s };
    },
  });
}
