/**
 * `deno task bench` (or `bun bench/main.ts`): every benchmark in one run, each comparing against
 * its baseline measured in the same run and writing `bench/results/<name>-<runtime>.json`.
 * Pass names to run a subset: `deno task bench queue pubsub`.
 * @module
 */
import { runtimeInfo } from "./harness.ts";

const suites: Record<string, () => Promise<{ run(): Promise<Record<string, unknown>> }>> = {
  hlc: () => import("./hlc.ts"),
  envelope: () => import("./envelope.ts"),
  queue: () => import("./queue.ts"),
  pubsub: () => import("./pubsub.ts"),
  simd: () => import("./simd.ts"),
  runtime: () => import("./runtime.ts"),
};

const args = (globalThis as { Deno?: { args: string[] } }).Deno?.args ??
  (globalThis as { process?: { argv: string[] } }).process?.argv.slice(2) ?? [];
const unknown = args.filter((a) => !(a in suites));
if (unknown.length > 0) {
  console.error(
    `unknown benchmark(s): ${unknown.join(", ")}; known: ${Object.keys(suites).join(", ")}`,
  );
  throw new Error("bad arguments");
}
const selected = args.length > 0 ? args : Object.keys(suites);
const info = runtimeInfo();
console.log(
  `${info.runtime} ${info.version} (${info.engine}) on ${info.cpu}, ${info.cores} cores, ${info.date}`,
);
for (const name of selected) {
  console.log(`\n## ${name}`);
  const suite = await suites[name]();
  await suite.run();
}
console.log(`\nresults written to bench/results/*-${info.runtime}.json`);
