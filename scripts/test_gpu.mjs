#!/usr/bin/env node
// Runs the GPU test files (test/ffi/*gpu*.test.ts, test/cuda/*gpu*.test.ts and any
// test/**/*_gpu.test.ts) under Deno and under Bun, whichever of the two is present, one process per
// file (a file that faults the GPU on purpose then cannot disturb the next), and keeps each
// runtime's full output in bench/results/gpu-tests-<device>-<runtime>.txt, headed by the device,
// the driver, CUDA and NVRTC versions, the runtime's version and the date (read through the
// library's own FFI by scripts/gpu_info.ts under that runtime).
//
//   deno task test:gpu            (or: deno run -A scripts/test_gpu.mjs)
//   bun scripts/test_gpu.mjs      (or: bun run test:gpu, node scripts/test_gpu.mjs)
//
// Arguments: `deno` and/or `bun` to run only those; `--out DIR` for another results folder.
// Without a CUDA device the tests still run (and skip, saying why), but the logs go to a folder
// under the OS's temp dir, not bench/results. RINGKERNEL_DENO / RINGKERNEL_BUN name other
// binaries. A file still running after RINGKERNEL_GPU_FILE_TIMEOUT_S seconds (default 90) is
// killed and counted as failed (a hang in a synchronous FFI call blocks the test runner's own
// timeouts). Exits non-zero when a file fails, or when no runtime is present.
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const args = process.argv.slice(2);
const outIndex = args.indexOf("--out");
const outArg = outIndex >= 0 ? args[outIndex + 1] : undefined;
if (outIndex >= 0 && outArg === undefined) {
  console.error("--out needs a folder");
  process.exit(2);
}
const wanted = outIndex < 0 ? args : [...args.slice(0, outIndex), ...args.slice(outIndex + 2)];
for (const w of wanted) {
  if (w !== "deno" && w !== "bun") {
    console.error(`unknown argument ${JSON.stringify(w)} (expected deno, bun or --out DIR)`);
    process.exit(2);
  }
}

/** Every file under `dir` (relative to the project root), recursively. */
function walk(dir) {
  const out = [];
  for (const e of readdirSync(join(root, dir), { withFileTypes: true })) {
    const rel = `${dir}/${e.name}`;
    if (e.isDirectory()) out.push(...walk(rel));
    else out.push(rel);
  }
  return out;
}

/** The GPU test files, sorted. */
function gpuTestFiles() {
  const picked = walk("test").filter((f) => {
    if (!f.endsWith(".test.ts")) return false;
    const name = f.slice(f.lastIndexOf("/") + 1);
    const inGpuDir = f.startsWith("test/ffi/") || f.startsWith("test/cuda/");
    return (inGpuDir && f.split("/").length === 3 && name.includes("gpu")) ||
      name.endsWith("_gpu.test.ts");
  });
  return [...new Set(picked)].sort();
}

/** The binary of `name` (env override or PATH) and its version line, or undefined if absent. */
function findRuntime(name) {
  const bin = process.env[`RINGKERNEL_${name.toUpperCase()}`] ?? name;
  const r = spawnSync(bin, ["--version"], { encoding: "utf8" });
  if (r.error || r.status !== 0) return undefined;
  return { name, bin, version: r.stdout.trim().split("\n")[0] };
}

const FILE_TIMEOUT_S = Number(process.env.RINGKERNEL_GPU_FILE_TIMEOUT_S ?? 90);

/**
 * Runs `argv` in the project root; streams its output to ours and returns it with its status.
 * Kills it (SIGKILL) after FILE_TIMEOUT_S seconds.
 */
function run(argv) {
  return new Promise((resolve) => {
    const child = spawn(argv[0], argv.slice(1), {
      cwd: root,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, NO_COLOR: "1" },
    });
    let text = "";
    const killer = setTimeout(() => {
      text += `\n(still running after ${FILE_TIMEOUT_S} s: killed)\n`;
      child.kill("SIGKILL");
    }, FILE_TIMEOUT_S * 1000);
    const take = (stream, sink) =>
      stream.on("data", (chunk) => {
        const s = chunk.toString();
        text += s;
        sink.write(s);
      });
    take(child.stdout, process.stdout);
    take(child.stderr, process.stderr);
    child.on("error", (err) => {
      clearTimeout(killer);
      text += `\n${err.message}\n`;
      resolve({ status: 127, text });
    });
    child.on("close", (code, signal) => {
      clearTimeout(killer);
      if (signal) text += `\n(killed by ${signal})\n`;
      resolve({ status: code ?? 128, text });
    });
  });
}

/** The device part of a results file name: "NVIDIA H100 80GB HBM3" → "h100". */
function deviceSlug(name) {
  const words = name.toLowerCase().replace(/[^a-z0-9]+/g, " ").trim().split(" ")
    .filter((w) => !["nvidia", "geforce", "tesla", "quadro"].includes(w));
  const taken = [];
  for (const w of words) {
    taken.push(w);
    if (/[0-9]/.test(w)) break;
  }
  return taken.join("-") || "cuda";
}

/** Counts from a runner's own summary lines (Deno: "ok | 3 passed (12 steps) | 0 failed"). */
function counts(runtime, text) {
  if (runtime === "deno") {
    const m = /(\d+) passed(?: \((\d+) steps?\))? \| (\d+) failed(?: \| (\d+) ignored)?/.exec(text);
    if (!m) return undefined;
    const steps = m[2] === undefined ? "" : ` (${m[2]} steps)`;
    return `${m[1]} passed${steps}, ${m[3]} failed, ${m[4] ?? 0} ignored`;
  }
  const pass = /^\s*(\d+) pass$/m.exec(text)?.[1];
  const fail = /^\s*(\d+) fail$/m.exec(text)?.[1];
  const skipped = /^\s*(\d+) skip$/m.exec(text)?.[1];
  if (pass === undefined && fail === undefined) return undefined;
  return `${pass ?? 0} passed, ${fail ?? 0} failed, ${skipped ?? 0} skipped`;
}

const files = gpuTestFiles();
const runtimes = ["deno", "bun"].filter((n) => wanted.length === 0 || wanted.includes(n));
let failed = false;
let ran = 0;
const summary = [];
for (const name of runtimes) {
  const rt = findRuntime(name);
  if (rt === undefined) {
    const line = `${name}: absent (not on PATH and RINGKERNEL_${name.toUpperCase()} unset); ` +
      "not run";
    console.log(`\n=== ${line}`);
    summary.push(line);
    continue;
  }
  ran++;
  const infoArgv = name === "deno"
    ? [rt.bin, "run", "-A", "scripts/gpu_info.ts"]
    : [rt.bin, "scripts/gpu_info.ts"];
  const infoRun = spawnSync(infoArgv[0], infoArgv.slice(1), { cwd: root, encoding: "utf8" });
  let info;
  try {
    info = JSON.parse(infoRun.stdout.trim().split("\n").pop());
  } catch {
    info = { error: `gpu_info.ts failed: ${(infoRun.stderr || infoRun.stdout).trim()}` };
  }
  const device = info.device;
  const dir = outArg ?? (device ? join(root, "bench", "results") : join(tmpdir(), "rk-gpu-tests"));
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `gpu-tests-${device ? deviceSlug(device.name) : "no-cuda"}-${name}.txt`);
  const command = name === "deno" ? `${rt.bin} test -A <file>` : `${rt.bin} test ./<file>`;
  const header = [
    `# GPU tests of @ringkernel/core under ${name}`,
    `device: ${
      device
        ? `${device.name} (${device.arch}, ${device.smCount} SMs, ${
          (device.totalMemory / 2 ** 30).toFixed(1)
        } GiB)`
        : `none (${info.error ?? "unknown"})`
    }`,
    `driver: ${info.driverVersion ?? "unknown"}; CUDA (driver API) ${
      info.cudaVersion ?? "unknown"
    }` +
    `; NVRTC ${info.nvrtcVersion ?? "unknown"}; libcuda ${info.libcuda ?? "not loaded"}`,
    `runtime: ${name} ${info.runtimeVersion ?? rt.version}`,
    `date: ${info.date ?? new Date().toISOString()}`,
    `command: ${command}, one process per file, from ${relative(process.cwd(), root) || "."}`,
    `files: ${files.join(" ")}`,
    "",
  ].join("\n");
  console.log(`\n=== ${name}\n${header}`);
  let log = header;
  const rows = [];
  for (const f of files) {
    const argv = name === "deno" ? [rt.bin, "test", "-A", f] : [rt.bin, "test", `./${f}`];
    const t0 = performance.now();
    console.log(`\n--- ${argv.join(" ")}`);
    const r = await run(argv);
    const secs = ((performance.now() - t0) / 1000).toFixed(1);
    const c = counts(name, r.text) ?? "no summary line";
    log += `\n--- ${argv.join(" ")}\n${r.text}`;
    rows.push(`${r.status === 0 ? "ok  " : "FAIL"} ${f}: ${c}; exit ${r.status}; ${secs} s`);
    if (r.status !== 0) failed = true;
  }
  const table = `\n=== ${name} summary\n${rows.join("\n")}\n`;
  log += table;
  writeFileSync(file, log);
  console.log(`${table}(written to ${relative(process.cwd(), file)})`);
  summary.push(
    `${name}: ${rows.filter((r) => r.startsWith("ok")).length}/${rows.length} files ok` +
      ` -> ${relative(process.cwd(), file)}`,
  );
}
console.log(`\n=== GPU tests\n${summary.join("\n")}`);
if (ran === 0) {
  console.error("no runtime to run the GPU tests with (neither deno nor bun was found)");
  process.exit(1);
}
process.exit(failed ? 1 : 0);
