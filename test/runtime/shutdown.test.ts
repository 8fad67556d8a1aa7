// After shutdown() nothing is left: a process that used the runtime exits by itself, and idle
// kernels cost (almost) no CPU while they wait.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import process from "node:process";

const SCRIPT = new URL("../fixtures/runtime_exit.ts", import.meta.url).pathname;

function runChild(timeoutMs: number): Promise<{ code: number | null; out: string; err: string }> {
  const isDeno = typeof (globalThis as { Deno?: unknown }).Deno !== "undefined";
  const args = isDeno ? ["run", "-A", SCRIPT] : [SCRIPT];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout!.on("data", (d: Uint8Array) => (out += new TextDecoder().decode(d)));
    child.stderr!.on("data", (d: Uint8Array) => (err += new TextDecoder().decode(d)));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`child did not exit within ${timeoutMs} ms; stderr: ${err}`));
    }, timeoutMs);
    child.on("close", (code: number | null) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
  });
}

describe("shutdown", () => {
  it("frees everything: the process exits by itself, and idle kernels use no CPU", async () => {
    const { code, out, err } = await runChild(60_000);
    assert.equal(code, 0, err);
    const report = JSON.parse(out.trim().split("\n").at(-1)!) as {
      total: number;
      idleCpuMs: number;
      wallMs: number;
    };
    assert.equal(report.total, 100);
    // Two parked kernels and an idle main thread: a few wake-ups, far below 5% of one core.
    assert.ok(
      report.idleCpuMs < 0.05 * report.wallMs,
      `idle CPU ${report.idleCpuMs} ms over ${report.wallMs} ms`,
    );
  });
});
