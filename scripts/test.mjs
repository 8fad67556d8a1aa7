#!/usr/bin/env node
// Runs every test under Deno and under Bun and ends with one line "N passed, N failed" summing
// both. Plain Node on purpose: it must work on a fresh machine that has only Node and npm, so the
// runtimes come from the npm registry through npx (cached in ~/.npm, never in node_modules).
// RINGKERNEL_DENO / RINGKERNEL_BUN name other binaries (for example on the GPU machine).
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";

const DENO_VERSION = "2.9.6";
const BUN_VERSION = "1.4.5";
const results = ".test-results";
const only = process.argv[2]; // optional: "deno" or "bun"

rmSync(results, { recursive: true, force: true });
mkdirSync(results, { recursive: true });

function command(envName, pkg, version) {
  const explicit = process.env[envName];
  return explicit ? [explicit] : ["npx", "-y", `${pkg}@${version}`];
}

const runs = [
  {
    name: "deno",
    argv: [
      ...command("RINGKERNEL_DENO", "deno", DENO_VERSION),
      "test",
      "-A",
      "--parallel",
      `--junit-path=${join(results, "deno.xml")}`,
      "test/",
    ],
    xml: join(results, "deno.xml"),
  },
  {
    name: "bun",
    argv: [
      ...command("RINGKERNEL_BUN", "bun", BUN_VERSION),
      "test",
      "--reporter=junit",
      `--reporter-outfile=${join(results, "bun.xml")}`,
    ],
    xml: join(results, "bun.xml"),
  },
].filter((r) => !only || r.name === only);

/** Counts leaf test cases in a JUnit file; Deno lists describe() blocks as cases of their own. */
function count(xmlPath) {
  let xml;
  try {
    xml = readFileSync(xmlPath, "utf8");
  } catch {
    return { passed: 0, failed: 1, skipped: 0, note: "no JUnit report was written" };
  }
  const cases = [];
  const re = /<testcase\b([^>]*?)(\/>|>([\s\S]*?)<\/testcase>)/g;
  for (const m of xml.matchAll(re)) {
    const name = /\bname="([^"]*)"/.exec(m[1])?.[1] ?? "";
    const body = m[3] ?? "";
    cases.push({
      name,
      failed: /<(failure|error)\b/.test(body),
      skipped: /<skipped\b/.test(body),
    });
  }
  const names = cases.map((c) => c.name);
  const leaves = cases.filter((c) =>
    !(names.some((n) => n.startsWith(`${c.name} &gt; `)) && !c.failed)
  );
  const failed = leaves.filter((c) => c.failed).length;
  const skipped = leaves.filter((c) => c.skipped).length;
  return { passed: leaves.length - failed - skipped, failed, skipped };
}

let passed = 0, failed = 0, skipped = 0;
for (const run of runs) {
  console.log(`\n=== ${run.name}: ${run.argv.join(" ")}`);
  const r = spawnSync(run.argv[0], run.argv.slice(1), { stdio: "inherit" });
  const c = count(run.xml);
  // A runner that crashed before reporting must not pass silently.
  if (r.status !== 0 && c.failed === 0) c.failed = 1;
  console.log(
    `=== ${run.name}: ${c.passed} passed, ${c.failed} failed, ${c.skipped} skipped` +
      (c.note ? ` (${c.note})` : ""),
  );
  passed += c.passed;
  failed += c.failed;
  skipped += c.skipped;
}
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed === 0 ? 0 : 1);
