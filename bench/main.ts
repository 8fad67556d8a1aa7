/**
 * `deno task bench` (or `bun bench/main.ts`): every benchmark, each comparing against its baseline
 * measured in the same run and writing `bench/results/<name>-<runtime>.json`.
 * Pass names to run a subset: `deno task bench queue pubsub`.
 *
 * Each suite runs in a process of its own: suites sharing one process disturb each other through
 * JIT feedback and heap state (the batched SPSC figure dropped from ~100 to ~30 M/s when it ran
 * after the envelope suite in the same isolate).
 * @module
 */
import { spawnSync } from "node:child_process";
import { argv, execPath } from "node:process";
import { fileURLToPath } from "node:url";
import { runtimeInfo } from "./harness.ts";

const suites = ["hlc", "envelope", "queue", "pubsub", "simd", "runtime"];

const args = (globalThis as { Deno?: { args: string[] } }).Deno?.args ?? argv.slice(2);
const unknown = args.filter((a) => !suites.includes(a));
if (unknown.length > 0) {
  console.error(`unknown benchmark(s): ${unknown.join(", ")}; known: ${suites.join(", ")}`);
  throw new Error("bad arguments");
}
const selected = args.length > 0 ? args : suites;
const info = runtimeInfo();
console.log(
  `${info.runtime} ${info.version} (${info.engine}) on ${info.cpu}, ${info.cores} cores, ${info.date}`,
);
const failed: string[] = [];
for (const name of selected) {
  console.log(`\n## ${name}`);
  const file = fileURLToPath(new URL(`./${name}.ts`, import.meta.url));
  const runArgs = info.runtime === "deno" ? ["run", "-A", file] : [file];
  const r = spawnSync(execPath, runArgs, { stdio: "inherit" });
  if (r.status !== 0) failed.push(name);
}
console.log(`\nresults written to bench/results/*-${info.runtime}.json`);
if (failed.length > 0) throw new Error(`benchmark(s) failed: ${failed.join(", ")}`);
