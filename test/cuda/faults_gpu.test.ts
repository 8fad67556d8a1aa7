/**
 * Failures of persistent CUDA kernels on a real GPU, driven through the public API only:
 * - the heartbeat watchdog: idle kernels (Launched, Active, Deactivated) under the shortest
 *   timeout live on; a handler spinning past its timeout is declared `Failed` (cause `watchdog`)
 *   at once, while the GPU kernel, which cannot be killed, runs on until its handler returns,
 *   keeping its stream until then, and the rest of the runtime works meanwhile;
 * - `request` timeouts fire while the handler keeps the GPU busy; late replies are counted;
 * - `shutdown` returns while a handler keeps running, and releases the context once it ends; the
 *   messages queued behind the running handler are returned only then (a kernel that still runs
 *   still takes input), each either handled or returned, exactly once;
 * - an out-of-bounds write in a handler (a real GPU fault) fails the request within 1 s with the
 *   CUDA error name, fails every other kernel of the runtime, is heard by failure listeners; the
 *   runtime shuts down. The driver documents such errors as leaving the process's CUDA state
 *   inconsistent until it restarts (and on the H100 neither releasing nor resetting the primary
 *   context helped): a new runtime in this process is refused with `BackendUnavailableError`
 *   saying so, and one in a new process works. This test goes last.
 * Skips, saying why, where no CUDA device or NVRTC is available. The device's timings are
 * printed (they land in the GPU test log, bench/results/gpu-tests-*.txt). Without a GPU, the
 * test kernels' persistent sources still compile with nvcc, and the fault's premise is pinned:
 * the DSL indexes a state array without a bounds check on CUDA.
 *
 * Run it in a process of its own (as `scripts/test_gpu.mjs` does): a GPU fault loses the device's
 * primary context for every user in the process, including other test files run alongside.
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import process from "node:process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CudaRuntime } from "../../src/backends/cuda/cuda_runtime.ts";
import { emitPersistent } from "../../src/backends/cuda/persistent.ts";
import { checkKernel } from "../../src/dsl/check.ts";
import { KernelState } from "../../src/core/control_block.ts";
import { decodeEnvelope, Priority } from "../../src/core/envelope.ts";
import {
  BackendUnavailableError,
  InvalidStateError,
  KernelFailedError,
  KernelFaultError,
  TimeoutError,
} from "../../src/core/errors.ts";
import type { KernelFailureEvent } from "../../src/runtime/backend.ts";
import type { KernelDefinition } from "../../src/runtime/kernel.ts";
import { LaunchOptions } from "../../src/runtime/launch_options.ts";
import { cudaRuntimeSkip } from "./gpu_available.ts";
import {
  calibrateSpin,
  cellWriter,
  POISON_INDEX,
  Poke,
  preload,
  Spin,
  spinner,
} from "./gpu_kernels.ts";

const skip = cudaRuntimeSkip();
if (skip) console.log(`faults_gpu.test: skipping: ${skip}`);

const cacheDir = mkdtempSync(join(tmpdir(), "rk-cuda-faults-"));
after(() => rmSync(cacheDir, { recursive: true, force: true }));

const runtime = (): string => ("Deno" in globalThis ? "Deno" : "Bun");
const opts = () => LaunchOptions.default().withQueueCapacity(256);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Spin steps for about `ms` milliseconds (a u32). */
function steps(perMs: number, ms: number): number {
  return Math.min(0xffff_ffff, Math.max(1, Math.round(perMs * ms)));
}

/** Waits until `done()` (checked every 5 ms); returns how long that took; fails after `limitMs`. */
async function until(done: () => boolean, limitMs: number, what: string): Promise<number> {
  const t0 = performance.now();
  while (!done()) {
    if (performance.now() - t0 > limitMs) assert.fail(`${what}: not within ${limitMs} ms`);
    await sleep(5);
  }
  return performance.now() - t0;
}

/** The rejection of `p` (fails if it resolves). */
async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  assert.fail("expected a rejection");
}

const NVCC = process.env.NVCC ?? "/usr/local/bin/nvcc";
const nvccProbe = spawnSync(NVCC, ["--version"], { encoding: "utf8" });
const nvccSkip: string | false = nvccProbe.error || nvccProbe.status !== 0
  ? `${NVCC} is missing (no CUDA toolkit here), so the test kernels cannot be compiled`
  : false;

describe("the fault and spin test kernels (no GPU needed)", () => {
  it("index a state array without a bounds check on CUDA (the fault's premise)", () => {
    const code = emitPersistent(checkKernel(cellWriter("cells_a")), "cells_a").code;
    assert.match(code, /state\.cells\[msg\.index\] = msg\.value;/);
    assert.ok(POISON_INDEX * 4 > 2 ** 32 && (POISON_INDEX * 4) % 2 ** 32 >= 2 ** 31);
  });

  const kernels = [cellWriter("cells_a"), spinner("spin")] as unknown as KernelDefinition[];
  for (const def of kernels) {
    it(`${def.id}: its persistent source compiles with nvcc for sm_90`, {
      skip: nvccSkip,
      timeout: 60_000,
    }, () => {
      const dir = mkdtempSync(join(tmpdir(), "rk-fault-kernels-"));
      try {
        const file = join(dir, `${def.id}.cu`);
        writeFileSync(file, emitPersistent(checkKernel(def), def.id).code);
        const out = execFileSync(
          "sh",
          ["-c", `"${NVCC}" -ptx -arch=sm_90 -x cu -o /dev/null "${file}" 2>&1`],
          { encoding: "utf8", timeout: 120_000 },
        );
        assert.doesNotMatch(out, /warning/i, out);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});

describe("CUDA kernel failures on a GPU", { skip }, () => {
  it("idle kernels under the shortest heartbeat timeout live on in every state", {
    timeout: 60_000,
  }, async () => {
    const rt = await CudaRuntime.create({ cacheDir });
    try {
      const failures: KernelFailureEvent[] = [];
      rt.onKernelFailure((e) => failures.push(e));
      // 10 ms is raised to the CUDA floor (20 ms, ~10× the longest idle beat gap of a GPU loop).
      const watched = opts().withHeartbeatTimeout(10);
      const defs = ["cells_a", "cells_b", "cells_c"].map(cellWriter);
      for (const d of defs) await preload(rt, d);
      const launched = await rt.launch(defs[0], watched.withAutoActivate(false));
      const active = await rt.launch(defs[1], watched);
      const paused = await rt.launch(defs[2], watched);
      await paused.deactivate();
      await sleep(1500);
      assert.deepEqual(failures, []);
      assert.equal(launched.state(), KernelState.Launched);
      assert.equal(active.state(), KernelState.Active);
      assert.equal(paused.state(), KernelState.Deactivated);
      // Busy with a stream of messages it stores no idle beat, but its input head moves.
      for (let round = 0; round < 20; round++) {
        const replies = await Promise.all(
          Array.from(
            { length: 200 },
            (_, i) => active.request(Poke.of({ index: i % 4, value: 1 }), { timeoutMs: 5000 }),
          ),
        );
        assert.equal(replies.length, 200);
      }
      await launched.activate();
      await paused.activate();
      for (const k of [launched, active, paused]) {
        const r = await k.request(Poke.of({ index: 3, value: 7 }), { timeoutMs: 5000 });
        assert.equal(r?.first, k === active ? 1 : 0);
      }
      assert.deepEqual(failures, []);
    } finally {
      await rt.shutdown();
    }
  });

  it(
    "a handler spinning past its heartbeat timeout fails at once; the GPU kernel runs on",
    {
      timeout: 60_000,
    },
    async () => {
      const rt = await CudaRuntime.create({ cacheDir });
      try {
        const failures: KernelFailureEvent[] = [];
        rt.onKernelFailure((e) => failures.push(e));
        await preload(rt, cellWriter("cells_a"));
        const spin = await rt.launch(spinner("spinner_a"), opts().withHeartbeatTimeout(200));
        const perMs = await calibrateSpin(spin);
        const sibling = await rt.launch(cellWriter("cells_a"), opts());
        const held = rt.context.stats();
        const t0 = performance.now();
        const err = await rejection(
          spin.request(Spin.of({ n: steps(perMs, 2500), x0: 0 }), { timeoutMs: 30_000 }),
        );
        const firedMs = performance.now() - t0;
        assert.ok(err instanceof KernelFailedError, `${err}`);
        assert.match(
          err.message,
          /its watchdog fired: HeartbeatTimeout: no heartbeat for \d+ ms \(limit 200 ms\)/,
        );
        assert.ok(firedMs >= 190 && firedMs < 1000, `the watchdog fired after ${firedMs} ms`);
        assert.equal(spin.state(), KernelState.Failed);
        await spin.settled; // the handle has retired it and told the listeners
        assert.deepEqual(failures.map((f) => [f.kernelId, f.cause]), [[
          "spinner_a",
          "watchdog",
        ]]);
        assert.deepEqual(rt.listKernels(), ["cells_a"]);
        // The GPU kernel cannot be killed: it still runs, and keeps its stream (and region).
        assert.equal(rt.context.stats().streams, held.streams, "its stream is kept while it runs");
        // The rest of the runtime works meanwhile.
        assert.deepEqual(
          await sibling.request(Poke.of({ index: 1, value: 3 }), { timeoutMs: 1000 }),
          { first: 0, sum: 3 },
        );
        // The handler returns, the loop sees the terminate the watchdog left, and its stream goes.
        await until(() => rt.context.stats().streams === held.streams - 1, 30_000, "stream freed");
        const returnedMs = performance.now() - t0;
        console.log(
          `cuda watchdog (${runtime()}, ${rt.device.name}): spin ${
            (perMs / 1000).toFixed(2)
          } G steps/s; watchdog 200 ms fired after ${firedMs.toFixed(0)} ms; the kernel returned ` +
            `after ${returnedMs.toFixed(0)} ms`,
        );
        assert.ok(returnedMs > firedMs + 500, "the handler ran on after the watchdog fired");
        assert.equal(rt.context.stats().hostAllocations, held.hostAllocations, "region pooled");
        // The id is free again, and the definition relaunches.
        const again = await rt.launch(spinner("spinner_a"), opts().withHeartbeatTimeout(200));
        assert.equal((await again.request(Spin.of({ n: 10, x0: 0 }), { timeoutMs: 5000 }))?.n, 10);
      } finally {
        await rt.shutdown();
      }
    },
  );

  it("request timeouts fire while the handler keeps the GPU busy; late replies are counted", {
    timeout: 60_000,
  }, async () => {
    const rt = await CudaRuntime.create({ cacheDir });
    try {
      await preload(rt, spinner("spinner_a"));
      await preload(rt, cellWriter("cells_a"));
      const spin = await rt.launch(spinner("spinner_a"), opts());
      const other = await rt.launch(cellWriter("cells_a"), opts());
      const perMs = await calibrateSpin(spin);
      const t0 = performance.now();
      const long = spin.request(Spin.of({ n: steps(perMs, 1000), x0: 0 }), { timeoutMs: 50 });
      const queued = spin.request(Spin.of({ n: 1, x0: 0 }), { timeoutMs: 50 });
      const e1 = await rejection(long);
      const t1 = performance.now() - t0;
      const e2 = await rejection(queued);
      const t2 = performance.now() - t0;
      assert.ok(e1 instanceof TimeoutError, `${e1}`);
      assert.ok(e2 instanceof TimeoutError, `${e2}`);
      assert.ok(t1 >= 45 && t1 < 300, `the busy request timed out after ${t1} ms`);
      assert.ok(t2 >= 45 && t2 < 300, `the queued request timed out after ${t2} ms`);
      // Another kernel answers meanwhile (one kernel occupies one SM).
      const t3 = performance.now();
      await other.request(Poke.of({ index: 0, value: 1 }), { timeoutMs: 1000 });
      const neighbourMs = performance.now() - t3;
      // Once the handler is done, the kernel answers again; both timed-out replies were dropped.
      const next = await spin.request(Spin.of({ n: 1, x0: 0 }), { timeoutMs: 10_000 });
      const busyMs = performance.now() - t0;
      assert.equal(next?.n, 1);
      assert.equal(spin.metrics().lateReplies, 2);
      assert.equal(spin.state(), KernelState.Active);
      console.log(
        `cuda request timeouts (${runtime()}): 50 ms requests timed out after ${t1.toFixed(1)} / ` +
          `${t2.toFixed(1)} ms while the handler ran ${busyMs.toFixed(0)} ms; a neighbour ` +
          `answered in ${neighbourMs.toFixed(2)} ms meanwhile`,
      );
      assert.ok(busyMs > 500, `the handler was busy for ${busyMs} ms`);
    } finally {
      await rt.shutdown();
    }
  });

  it("shutdown returns while a handler runs on; the context is released when it returns", {
    timeout: 60_000,
  }, async () => {
    const rt = await CudaRuntime.create({ cacheDir });
    const spin = await rt.launch(spinner("spinner_a"), opts());
    const perMs = await calibrateSpin(spin);
    const processedBefore = spin.metrics().processed;
    const stuck = rejection(
      spin.request(Spin.of({ n: steps(perMs, 2500), x0: 0 }), { timeoutMs: 30_000 }),
    );
    await sleep(50);
    // Queued behind the spinning request (both lanes): the kernel, which takes input until its
    // handler returns, must not handle one that is also returned.
    const tags = [101, 102, 103, 104, 105];
    for (const n of tags.slice(0, 4)) await spin.send(Spin.of({ n, x0: 0 }));
    await spin.send(Spin.of({ n: tags[4], x0: 0 }), { priority: Priority.High });
    const t0 = performance.now();
    await rt.shutdown({ timeoutMs: 200 });
    const shutdownMs = performance.now() - t0;
    assert.ok(shutdownMs < 1500, `shutdown took ${shutdownMs} ms`);
    const err = await stuck;
    assert.ok(err instanceof KernelFailedError, `${err}`);
    assert.match(err.message, /its worker was killed: Killed: did not stop within 200 ms/);
    assert.equal(spin.state(), KernelState.Failed);
    assert.equal(rt.context.isClosed, false, "the context is kept while the kernel runs");
    assert.deepEqual(spin.unhandled, [], "nothing is collected while the handler still runs");
    const closedMs = await until(() => rt.context.isClosed, 30_000, "context released");
    // Collected when its stream completed, before the context went: each queued message was
    // either handled (its output is readable) or returned, exactly once.
    const returned = spin.unhandled.map((e) => Spin.decode(decodeEnvelope(e).payload).n);
    const outputs = spin.tryReceiveMany(64).map((o) => o.value?.n);
    assert.deepEqual([...returned, ...outputs].sort((a, b) => (a ?? 0) - (b ?? 0)), tags);
    assert.equal(
      returned.length + (spin.metrics().processed - processedBefore),
      tags.length + 1,
      "every message sent after the calibration was processed or returned (the spin included)",
    );
    assert.equal(spin.metrics().lateReplies, 1, "the spinning request's reply came after all");
    console.log(
      `cuda shutdown with a running handler (${runtime()}): returned in ${
        shutdownMs.toFixed(0)
      } ms; context released ${closedMs.toFixed(0)} ms later, when the kernel returned; ` +
        `${returned.length} of ${tags.length} queued messages returned then, ${outputs.length} ` +
        `handled`,
    );
    await assert.rejects(rt.launch(spinner("spinner_a"), opts()), InvalidStateError);
  });

  it("an out-of-bounds write in a handler faults every kernel within 1 s; a new process works", {
    timeout: 60_000,
  }, async () => {
    const rt = await CudaRuntime.create({ cacheDir });
    const failures: KernelFailureEvent[] = [];
    rt.onKernelFailure((e) => failures.push(e));
    await preload(rt, cellWriter("cells_a"));
    await preload(rt, cellWriter("cells_b"));
    await preload(rt, spinner("spinner_a"));
    const writer = await rt.launch(cellWriter("cells_a"), opts());
    const bystander = await rt.launch(cellWriter("cells_b"), opts());
    const busy = await rt.launch(spinner("spinner_a"), opts());
    const perMs = await calibrateSpin(busy);
    // In bounds first: the kernel works.
    assert.deepEqual(
      await writer.request(Poke.of({ index: 1, value: 5 }), { timeoutMs: 5000 }),
      { first: 0, sum: 5 },
    );
    const busyRequest = rejection(
      busy.request(Spin.of({ n: steps(perMs, 3000), x0: 0 }), { timeoutMs: 30_000 }),
    );
    await sleep(20);
    const t0 = performance.now();
    const err = await rejection(
      writer.request(Poke.of({ index: POISON_INDEX, value: 1 }), { timeoutMs: 5000 }),
    );
    const faultMs = performance.now() - t0;
    assert.ok(err instanceof KernelFailedError, `${err}`);
    const fault = err.cause;
    assert.ok(fault instanceof KernelFaultError, `cause: ${fault}`);
    assert.match(fault.cudaError, /^CUDA_ERROR_[A-Z_]+$/);
    assert.ok(err.message.includes(fault.cudaError), err.message);
    assert.ok(faultMs < 1000, `the fault surfaced after ${faultMs} ms`);
    assert.equal(rt.context.faulted, fault.cudaError);
    // Every kernel of the context is lost with it: the busy one and the idle one too.
    const busyErr = await busyRequest;
    assert.ok(busyErr instanceof KernelFailedError, `${busyErr}`);
    assert.ok(busyErr.cause instanceof KernelFaultError);
    const allMs = await until(
      () => [writer, bystander, busy].every((k) => k.state() === KernelState.Failed),
      1000,
      "every kernel Failed",
    );
    await until(() => failures.length === 3, 1000, "three failure events");
    assert.deepEqual(
      failures.map((f) => [f.kernelId, f.cause]).sort(),
      [["cells_a", "died"], ["cells_b", "died"], ["spinner_a", "died"]],
    );
    for (const f of failures) assert.ok(f.error.cause instanceof KernelFaultError);
    await assert.rejects(bystander.request(Poke.of({ index: 0, value: 1 })), KernelFailedError);
    await assert.rejects(rt.launch(cellWriter("cells_c"), opts()), InvalidStateError);
    const t1 = performance.now();
    await rt.shutdown();
    const shutdownMs = performance.now() - t1;
    assert.ok(rt.context.isClosed);
    console.log(
      `cuda fault (${runtime()}, ${rt.device.name}): ${fault.cudaError} surfaced after ` +
        `${faultMs.toFixed(1)} ms; all kernels Failed ${allMs.toFixed(1)} ms later; ` +
        `shutdown ${shutdownMs.toFixed(1)} ms`,
    );
    // This process cannot use CUDA again: said with a typed error, not a hang or a raw CUresult.
    await assert.rejects(
      CudaRuntime.create({ cacheDir }),
      (e: unknown) =>
        e instanceof BackendUnavailableError && e.message.includes(fault.cudaError) &&
        /new process/.test(e.message),
    );
    // A new process builds a runtime and gets its answer.
    const script = new URL("./fresh_process_request.ts", import.meta.url).pathname;
    const deno = (globalThis as { Deno?: { execPath(): string } }).Deno;
    const [exe, args] = deno !== undefined
      ? [deno.execPath(), ["run", "-A", script]]
      : [process.execPath, [script]];
    const t2 = performance.now();
    const child = spawnSync(exe, args, {
      encoding: "utf8",
      timeout: 60_000,
      env: { ...process.env, RK_CACHE_DIR: cacheDir },
    });
    assert.equal(child.status, 0, `the new process failed: ${child.stderr}`);
    const last = child.stdout.trim().split("\n").at(-1) ?? "";
    assert.deepEqual(JSON.parse(last), { reply: { first: 0, sum: 9 } });
    console.log(
      `cuda fault: a new process answered a request ${(performance.now() - t2).toFixed(0)} ms ` +
        `after it was started`,
    );
  });
});
