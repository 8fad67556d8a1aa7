/**
 * The persistent CUDA kernel's source (`emitPersistent`) for the corpus handlers and the
 * passthrough built-in compiles with `nvcc -ptx -arch=sm_90 -x cu`, without warnings, with the
 * control-block and queue-header offset asserts active (nvcc has `__builtin_offsetof`; NVRTC
 * skips them). Skips, saying why, without nvcc. Also pins the entry's name and parameters.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { checkKernel } from "../../src/dsl/check.ts";
import {
  emitPassthroughPersistent,
  emitPersistent,
  PERSISTENT_PARAMS,
  type PersistentSource,
} from "../../src/backends/cuda/persistent.ts";
import { dslAccumulator, dslCounter, dslForwarder, dslSubword } from "../dsl/corpus.ts";
import { packedCounter, packedDoubler, packedSequencer } from "./packed_kernels.ts";
import { bulkKernel } from "../../src/dsl/define.ts";
import type { KernelDefinition } from "../../src/runtime/kernel.ts";

const NVCC = process.env.NVCC ?? "/usr/local/bin/nvcc";
const probe = spawnSync(NVCC, ["--version"], { encoding: "utf8" });
const nvccSkip: string | false = probe.error || probe.status !== 0
  ? `${NVCC} is missing (no CUDA toolkit on this machine), so the persistent source cannot be ` +
    "compiled"
  : false;
if (nvccSkip) console.log(`persistent_emit: skipping the nvcc tests: ${nvccSkip}`);

function nvcc(code: string, name: string): void {
  const dir = mkdtempSync(join(tmpdir(), "rk-persistent-"));
  const file = join(dir, `${name}.cu`);
  try {
    writeFileSync(file, code);
    let out = "";
    try {
      out = execFileSync(
        "sh",
        ["-c", `"${NVCC}" -ptx -arch=sm_90 -x cu -o /dev/null "${file}" 2>&1`],
        { encoding: "utf8", timeout: 120_000 },
      );
    } catch (err) {
      const e = err as { stdout?: string; message: string };
      assert.fail(`nvcc rejected ${name}:\n${e.stdout ?? ""}${e.message}`);
    }
    assert.doesNotMatch(out, /warning/i, `nvcc warned on ${name}:\n${out}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const handlers: readonly KernelDefinition[] = [
  dslAccumulator,
  dslCounter,
  dslSubword,
  dslForwarder,
  // The packed-batch paths: lane-parallel with reductions, serial with outputs, parallel outputs.
  packedCounter,
  packedSequencer,
  packedDoubler,
] as unknown as readonly KernelDefinition[];

describe("emitPersistent", () => {
  for (const def of handlers) {
    it(`${def.id}: compiles with nvcc for sm_90`, { skip: nvccSkip, timeout: 60_000 }, () => {
      const src = emitPersistent(checkKernel(def), def.id);
      nvcc(src.code, def.id);
    });
  }

  it("passthrough: compiles with nvcc for sm_90", { skip: nvccSkip, timeout: 60_000 }, () => {
    nvcc(emitPassthroughPersistent("echo").code, "passthrough");
  });

  it("runs lane-parallel packed batches without outputs on helper warps, straight to registers", () => {
    const direct = emitPersistent(checkKernel(packedCounter), packedCounter.id);
    assert.equal(direct.blockThreads, 256);
    assert.match(direct.code, /#define RK_P_BULK_DIRECT 1/);
    assert.match(direct.code, /#define RK_P_BULK_WARPS 8u/);
    assert.match(direct.code, /__ldcg\(src \+ v\)/);
    // Every return of warp 0 after the helpers started lets them go first.
    assert.equal(direct.code.match(/rk_bulk_quit\(lane\);/g)?.length, 2);
    // Outputs (the doubler) or a serial handler (the sequencer) keep the one-warp paths.
    for (const def of [packedDoubler, packedSequencer, dslAccumulator]) {
      const src = emitPersistent(checkKernel(def as unknown as KernelDefinition), def.id);
      assert.equal(src.blockThreads, 32, def.id);
      assert.match(src.code, /#define RK_P_BULK_WARPS 1u/, def.id);
    }
  });

  it("names the entry rk_persistent_<name> and takes the region and layout words", () => {
    const src: PersistentSource = emitPersistent(checkKernel(dslAccumulator), dslAccumulator.id);
    assert.equal(src.entry, "rk_persistent_dsl_accumulator");
    assert.equal(src.blockThreads, 32);
    assert.deepEqual(src.params.map((p) => p.name), PERSISTENT_PARAMS.map((p) => p.name));
    assert.equal(src.params[0].type, "ptr");
    assert.equal(src.inputSize, dslAccumulator.input!.size);
    assert.equal(src.outputSize, dslAccumulator.output!.size);
    assert.equal(src.stateSize, dslAccumulator.state!.size);
    assert.ok(src.stateInShared);
    const flat = src.code.replace(/\s+/g, " ");
    assert.match(
      flat,
      /extern "C" __global__ void __launch_bounds__\(32u \* RK_P_BULK_WARPS, 1\) rk_persistent_dsl_accumulator\( unsigned char\* region, unsigned int numeric_id,/,
    );
    // The DSL handler is called, the layout is pinned, K2K sends are delivered after it returns.
    assert.match(src.code, /rk_dsl_accumulator_handle\(/);
    assert.match(src.code, /static_assert\(sizeof\(RkControlBlock\) == 128u/);
    assert.match(src.code, /__builtin_offsetof\(struct RkQueueHeader, head\) == 256/);
    assert.match(src.code, /rk_k2k_flush\(k\);/);
    assert.match(src.code, /__threadfence_system\(\)/);
    assert.match(src.code, /__nanosleep/);
    assert.match(src.code, /%%globaltimer/);
  });

  it("refuses a bulk kernel", () => {
    const k = bulkKernel({ name: "noop", params: ["f32[]"] }, (a: Float32Array) => {
      a[0] = 1;
    });
    assert.throws(() => emitPersistent(checkKernel(k)), TypeError);
  });
});
