// The DSL equivalence corpus on real devices: every case of test/dsl/corpus.ts runs as JS (the
// user's own function, the reference), through NVRTC on a CUDA GPU, and as WGSL on the
// runtime's WebGPU adapter, on 3 seeds each; outputs must agree within the case's tolerance.
// Targets that are absent are reported as skipped, with why. Writes
// bench/results/dsl-corpus-<runtime>.json (or into $RINGKERNEL_RESULTS_DIR) and prints a table.
//
//   deno run -A bench/dsl_corpus.ts        bun bench/dsl_corpus.ts
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";
import { runHandlerJs, runJs, runStencilJs } from "../src/dsl/js.ts";
import { corpus, type CorpusCase, makeRand, mismatch } from "../test/dsl/corpus.ts";
import {
  cudaDevice,
  lastCompile,
  runCuda,
  runHandlerCuda,
  runStencilCuda,
} from "../test/dsl/cuda_run.ts";
import { runtimeInfo } from "./harness.ts";

const SEEDS = [11, 22, 33] as const;
type Target = "cuda" | "wgsl";

interface WgslRunners {
  runWgsl: typeof import("../test/dsl/webgpu_run.ts").runWgsl;
  runStencilWgsl: typeof import("../test/dsl/webgpu_run.ts").runStencilWgsl;
  runHandlerWgsl: typeof import("../test/dsl/webgpu_run.ts").runHandlerWgsl;
  adapter: string;
}

async function wgslRunners(): Promise<WgslRunners | string> {
  const mod = await import("../test/dsl/webgpu_run.ts");
  const d = await mod.wgslDevice();
  if (d.skip) return d.skip;
  const gpu = (navigator as Navigator & { gpu?: GPU }).gpu;
  const adapter = await gpu?.requestAdapter();
  const info = adapter?.info;
  return {
    ...mod,
    adapter: info ? `${info.vendor} ${info.device || info.description}`.trim() : "?",
  };
}

async function outputsOf(
  c: CorpusCase,
  seed: number,
  target: Target | "js",
  wgsl?: WgslRunners,
): Promise<unknown> {
  if (c.kind === "bulk") {
    const inp = c.make(makeRand(seed));
    if (target === "js") runJs(c.kernel, { grid: inp.grid }, ...inp.args);
    else if (target === "cuda") runCuda(c.kernel, { grid: inp.grid }, ...inp.args);
    else await wgsl!.runWgsl(c.kernel, { grid: inp.grid }, ...inp.args);
    return c.outputs.map((i) => inp.args[i]);
  }
  if (c.kind === "stencil") {
    const inp = c.make(makeRand(seed));
    if (target === "js") runStencilJs(c.kernel, inp.size, ...inp.args);
    else if (target === "cuda") runStencilCuda(c.kernel, inp.size, ...inp.args);
    else await wgsl!.runStencilWgsl(c.kernel, inp.size, ...inp.args);
    return c.outputs.map((i) => inp.args[i]);
  }
  const { messages, options } = c.make(makeRand(seed));
  const result: Record<string, unknown> = target === "js"
    ? { ...runHandlerJs(c.kernel, messages, options) }
    : target === "cuda"
    ? { ...runHandlerCuda(c.kernel, messages, options) }
    : { ...(await wgsl!.runHandlerWgsl(c.kernel, messages, options)) };
  return Object.fromEntries(c.outputs.map((k) => [k, result[k]]));
}

interface CaseResult {
  name: string;
  kind: string;
  tolerance: { abs: number; rel: number };
  cuda: string;
  wgsl: string;
  nvrtcMs?: number;
  moduleLoadMs?: number;
}

const rig = cudaDevice();
const wgsl = await wgslRunners();
const results: CaseResult[] = [];
let failed = 0;
for (const c of corpus) {
  const row: CaseResult = {
    name: c.name,
    kind: c.kind,
    tolerance: { abs: c.tolerance.abs, rel: c.tolerance.rel },
    cuda: rig.skip ? "skipped" : "pass",
    wgsl: typeof wgsl === "string" ? "skipped" : "pass",
  };
  for (const target of ["cuda", "wgsl"] as const) {
    if (row[target] === "skipped") continue;
    if (c.kind === "handler" && c.targets !== undefined && !c.targets.includes(target)) {
      row[target] = "n/a"; // the target refuses it (E_DSL_TARGET; the tests check that)
      continue;
    }
    try {
      for (const seed of SEEDS) {
        const ref = await outputsOf(c, seed, "js");
        const got = await outputsOf(c, seed, target, typeof wgsl === "string" ? undefined : wgsl);
        if (target === "cuda" && seed === SEEDS[0]) {
          row.nvrtcMs = Number(lastCompile.nvrtcMs.toFixed(1));
          row.moduleLoadMs = Number(lastCompile.loadMs.toFixed(1));
        }
        const m = mismatch(got, ref, c.tolerance);
        if (m !== undefined) throw new Error(`seed ${seed}: ${m}`);
      }
    } catch (err) {
      row[target] = `FAIL: ${(err as Error).message.split("\n").slice(0, 3).join(" | ")}`;
      failed++;
    }
  }
  results.push(row);
}

const info = runtimeInfo();
const report = {
  benchmark: "dsl-corpus",
  ...info,
  date: new Date().toISOString(),
  command: `${info.runtime === "bun" ? "bun" : "deno run -A"} bench/dsl_corpus.ts`,
  cuda: rig.ctx === undefined ? { skipped: rig.skip } : {
    device: rig.ctx.device.name,
    arch: rig.ctx.device.arch,
    driverVersion: rig.ctx.driver.version,
    nvrtc: `${rig.nvrtc.version.major}.${rig.nvrtc.version.minor}`,
  },
  webgpu: typeof wgsl === "string" ? { skipped: wgsl } : { adapter: wgsl.adapter },
  seeds: SEEDS,
  cases: results.length,
  failed,
  results,
};
const dir = process.env.RINGKERNEL_RESULTS_DIR ?? new URL("./results/", import.meta.url).pathname;
mkdirSync(dir, { recursive: true });
const path = join(dir, `dsl-corpus-${info.runtime}.json`);
writeFileSync(path, JSON.stringify(report, null, 2) + "\n");

console.log(`DSL corpus: ${results.length} kernels × ${SEEDS.length} seeds, JS reference`);
const cudaLine = rig.ctx === undefined
  ? rig.skip
  : `${rig.ctx.device.name} (${rig.ctx.device.arch}), NVRTC ${rig.nvrtc.version.major}.${rig.nvrtc.version.minor}`;
console.log(`CUDA: ${cudaLine}`);
console.log(`WebGPU: ${typeof wgsl === "string" ? wgsl : wgsl.adapter}`);
for (const r of results) {
  console.log(
    `${r.name.padEnd(24)} ${r.kind.padEnd(8)} cuda=${r.cuda.padEnd(8)} wgsl=${r.wgsl}${
      r.nvrtcMs === undefined ? "" : `  nvrtc ${r.nvrtcMs} ms`
    }`,
  );
}
console.log(`${failed === 0 ? "all agree" : `${failed} FAILED`} — ${path}`);
process.exit(failed === 0 ? 0 : 1);
