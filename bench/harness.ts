/**
 * Shared helpers of the benchmarks: which runtime and machine ran them, and where results go.
 * Every benchmark compares against a baseline measured in the same run and reports the ratio.
 * @module
 */
import { cpus, hostname, totalmem } from "node:os";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import process from "node:process";

/** The runtime, its version and the machine a benchmark ran on. */
export interface RuntimeInfo {
  runtime: "deno" | "bun" | "node";
  version: string;
  engine: string;
  cpu: string;
  cores: number;
  memoryGiB: number;
  host: string;
  date: string;
}

/** Describes the current runtime and machine. */
export function runtimeInfo(): RuntimeInfo {
  const g = globalThis as {
    Deno?: { version: { deno: string; v8: string } };
    Bun?: { version: string; revision: string };
    process?: { versions: Record<string, string> };
  };
  const cpu = cpus()[0]?.model ?? "unknown";
  const common = {
    cpu,
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    host: hostname(),
    date: new Date().toISOString(),
  };
  if (g.Deno) {
    return {
      runtime: "deno",
      version: g.Deno.version.deno,
      engine: `V8 ${g.Deno.version.v8}`,
      ...common,
    };
  }
  if (g.Bun) return { runtime: "bun", version: g.Bun.version, engine: "JavaScriptCore", ...common };
  return {
    runtime: "node",
    version: g.process?.versions.node ?? "?",
    engine: `V8 ${g.process?.versions.v8}`,
    ...common,
  };
}

/** Writes `<name>-<runtime>.json` (in bench/results or $RINGKERNEL_RESULTS_DIR) with the runtime info and the figures. */
export function writeResult(name: string, figures: Record<string, unknown>): string {
  const info = runtimeInfo();
  // $RINGKERNEL_RESULTS_DIR (the GPU machine's $OUT) keeps a run elsewhere from overwriting these.
  const dir = process.env.RINGKERNEL_RESULTS_DIR ?? new URL("./results/", import.meta.url).pathname;
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${name}-${info.runtime}.json`);
  writeFileSync(path, JSON.stringify({ benchmark: name, ...info, figures }, null, 2) + "\n");
  return path;
}

/** Percentile (0..100) of an ascending-sorted array, nearest-rank. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank];
}

/** Formats a rate like `52.3 M/s`. */
export function rate(perSecond: number): string {
  if (perSecond >= 1e9) return `${(perSecond / 1e9).toFixed(2)} G/s`;
  if (perSecond >= 1e6) return `${(perSecond / 1e6).toFixed(2)} M/s`;
  if (perSecond >= 1e3) return `${(perSecond / 1e3).toFixed(2)} k/s`;
  return `${perSecond.toFixed(1)} /s`;
}

/** True when the benchmark file is the entry point (so `bench/main.ts` can import it quietly). */
export function isMain(meta: ImportMeta): boolean {
  return (meta as ImportMeta & { main?: boolean }).main === true;
}
