// One TypeScript kernel, two targets: every corpus case runs as JS (the user's own function) and
// as WGSL on a real WebGPU adapter, on the same random inputs from 3 seeds, and the outputs must
// agree within the case's stated tolerance. Skips, saying why, where there is no adapter (Bun has
// no WebGPU; Deno needs one, e.g. Mesa lavapipe).
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { runHandlerJs, runJs, runStencilJs } from "../../src/dsl/js.ts";
import { checkKernel } from "../../src/dsl/check.ts";
import { emitWgsl } from "../../src/dsl/wgsl.ts";
import { DslError } from "../../src/core/errors.ts";
import { corpus, type CorpusCase, makeRand, mismatch } from "./corpus.ts";
import { runHandlerWgsl, runStencilWgsl, runWgsl, wgslDevice } from "./webgpu_run.ts";

const SEEDS = [11, 22, 33] as const;

// The runners' own device (webgpu_run.ts probes like test/webgpu_device.ts, with the adapter's
// compute limits): a second device of the same adapter has crashed lavapipe at process exit.
const { skip } = await wgslDevice();
if (skip) console.log(`dsl equivalence: skipping the WGSL comparisons: ${skip}`);

/** Runs `c` on JS and on WGSL from the same seed; returns both sides' outputs. */
async function runBoth(c: CorpusCase, seed: number): Promise<{ js: unknown; gpu: unknown }> {
  if (c.kind === "bulk") {
    const js = c.make(makeRand(seed));
    const gpu = c.make(makeRand(seed));
    runJs(c.kernel, { grid: js.grid }, ...js.args);
    await runWgsl(c.kernel, { grid: gpu.grid }, ...gpu.args);
    return { js: c.outputs.map((i) => js.args[i]), gpu: c.outputs.map((i) => gpu.args[i]) };
  }
  if (c.kind === "stencil") {
    const js = c.make(makeRand(seed));
    const gpu = c.make(makeRand(seed));
    runStencilJs(c.kernel, js.size, ...js.args);
    await runStencilWgsl(c.kernel, gpu.size, ...gpu.args);
    return { js: c.outputs.map((i) => js.args[i]), gpu: c.outputs.map((i) => gpu.args[i]) };
  }
  const { messages, options } = c.make(makeRand(seed));
  const js: Record<string, unknown> = { ...runHandlerJs(c.kernel, messages, options) };
  const gpu: Record<string, unknown> = { ...(await runHandlerWgsl(c.kernel, messages, options)) };
  return {
    js: Object.fromEntries(c.outputs.map((k) => [k, js[k]])),
    gpu: Object.fromEntries(c.outputs.map((k) => [k, gpu[k]])),
  };
}

describe("DSL equivalence: JS vs WGSL on WebGPU", () => {
  for (const c of corpus) {
    if (c.kind === "handler" && c.targets !== undefined && !c.targets.includes("wgsl")) {
      it(`${c.name}: WGSL refuses it with E_DSL_TARGET`, () => {
        assert.throws(
          () => emitWgsl(checkKernel(c.kernel)),
          (err: unknown) => err instanceof DslError && err.code === "E_DSL_TARGET",
        );
      });
      continue;
    }
    it(`${c.name} (${c.kind}, tolerance abs ${c.tolerance.abs} rel ${c.tolerance.rel})`, {
      skip,
    }, async () => {
      for (const seed of SEEDS) {
        const { js, gpu } = await runBoth(c, seed);
        const m = mismatch(gpu, js, c.tolerance);
        assert.equal(m, undefined, `seed ${seed}: WGSL vs JS ${m} — ${c.tolerance.why}`);
      }
    });
  }
});
