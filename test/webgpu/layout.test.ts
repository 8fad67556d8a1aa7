/**
 * The WebGPU backend's layouts and host-side rules, without a GPU: the `ctl` buffer's control block
 * and runtime words sit exactly where the host region has them (the pump mirrors by copying
 * words), buffer sizes, the lifecycle transitions the host predicts, the physical-time word, and
 * the dispatch order over the send graph. With an adapter, every handler of the DSL corpus (and
 * the passthrough and the route pass) must also compile as a ring kernel.
 */
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { ControlBlock, ControlBlockOffset, KernelState } from "../../src/core/control_block.ts";
import { KernelCommand } from "../../src/core/control_block.ts";
import { checkKernel } from "../../src/dsl/check.ts";
import { dispatchOrder, physicalWord } from "../../src/backends/webgpu/device_pump.ts";
import { type GpuKernel, stateAfter } from "../../src/backends/webgpu/gpu_kernel.ts";
import {
  CtlCb,
  CtlKw,
  CtlWord,
  gpuKernelLayout,
  MAX_BATCH,
  META_WORDS,
  ROUTE_WORDS,
  SEND_RESERVE,
} from "../../src/backends/webgpu/layout.ts";
import {
  emitPassthroughRing,
  emitRingKernel,
  emitRoutePass,
} from "../../src/backends/webgpu/shaders.ts";
import { requestWebGpuDevice } from "../../src/backends/webgpu/adapter.ts";
import { KERNEL_WORDS_BYTES, KernelWord } from "../../src/runtime/kernel_memory.ts";
import { corpus, dslForwarder } from "../dsl/corpus.ts";
import { webGpuSkip } from "./probe.ts";

describe("WebGPU layouts", () => {
  it("the control block and runtime words of ctl are the host region's first 256 bytes", () => {
    assert.equal(CtlWord.controlBlock * 4, 128);
    assert.equal(CtlWord.kernelWords * 4, 128 + 128);
    assert.equal(CtlWord.routes * 4, 128 + 128 + KERNEL_WORDS_BYTES);
    const host = new ArrayBuffer(256);
    const cb = ControlBlock.init(host, 0, { kernelId: 7, inputCapacity: 8, outputCapacity: 8 });
    cb.state = KernelState.Active;
    cb.setCounters(0x1_2345_6789n, 3n);
    const words = new Uint32Array(host);
    // ctl word w holds what the host region holds at word w - 32.
    const at = (ctlWord: number): number => words[ctlWord - CtlWord.controlBlock];
    assert.equal(at(CtlCb.state), KernelState.Active);
    assert.equal(at(CtlCb.processedLo), 0x2345_6789);
    assert.equal(at(CtlCb.processedLo + 1), 1);
    assert.equal(at(CtlCb.droppedLo), 3);
    for (
      const [field, word] of [
        ["state", CtlCb.state],
        ["commands", CtlCb.commands],
        ["lastError", CtlCb.lastError],
        ["errorCount", CtlCb.errorCount],
        ["seq", CtlCb.seq],
        ["hlc", CtlCb.hlcLo],
        ["inputHead", CtlCb.inputHead],
        ["heartbeat", CtlCb.heartbeat],
      ] as const
    ) {
      assert.equal((word - CtlWord.controlBlock) * 4, ControlBlockOffset[field], field);
    }
    assert.equal(CtlKw.k2kSent - CtlWord.kernelWords, KernelWord.k2kSent);
    assert.equal(CtlKw.k2kNotFound - CtlWord.kernelWords, KernelWord.k2kNotFound);
    assert.equal(CtlKw.terminateMode - CtlWord.kernelWords, KernelWord.terminateMode);
    // Handler words, host words and device words do not overlap the block.
    const ranges = [
      [CtlWord.count, CtlWord.nodeId],
      [CtlWord.batchMax, CtlWord.lanesEmpty],
      [CtlWord.ringHead, CtlWord.sendReserve],
    ];
    for (const [lo, hi] of ranges) assert.ok(lo <= hi && hi < CtlWord.controlBlock);
    assert.ok(CtlWord.nodeId < CtlWord.batchMax && CtlWord.lanesEmpty < CtlWord.ringHead);
  });

  it("buffer sizes follow the ring, the batch and the schemas", () => {
    const l = gpuKernelLayout({
      ringCapacity: 1024,
      outputCapacity: 256,
      slotWords: 3,
      replyWords: 2,
      stateBytes: 8,
      outboxStride: 5,
      targets: 2,
    });
    assert.equal(l.batchCapacity, 256);
    assert.equal(l.outboxRecords, 256 * SEND_RESERVE);
    assert.deepEqual(l.bytes, {
      msgs: 4 * 3 * 1024,
      state: 16,
      replies: 4 * 2 * 256,
      replied: 4 * 256,
      outbox: 4 * 5 * 256 * SEND_RESERVE,
      ctl: 4 * (CtlWord.routes + 2 * ROUTE_WORDS),
      inMeta: 4 * META_WORDS * 1024,
      outMeta: 4 * META_WORDS * 256,
    });
    const big = gpuKernelLayout({
      ringCapacity: 1 << 16,
      outputCapacity: 1 << 16,
      slotWords: 1,
      replyWords: 1,
      stateBytes: 0,
      outboxStride: 0,
      targets: 0,
    });
    assert.equal(big.batchCapacity, MAX_BATCH);
    assert.equal(big.outboxRecords, 0);
    assert.equal(big.bytes.outbox, 16);
  });

  it("the host predicts the dispatch's lifecycle transition as the shader makes it", () => {
    const S = KernelState;
    const C = KernelCommand;
    assert.equal(stateAfter(S.Launched, C.Activate), S.Active);
    assert.equal(stateAfter(S.Active, C.Deactivate), S.Deactivated);
    assert.equal(stateAfter(S.Deactivated, C.Activate), S.Active);
    assert.equal(stateAfter(S.Active, C.Deactivate | C.Activate), S.Deactivated);
    assert.equal(stateAfter(S.Deactivated, C.Terminate | C.Activate), S.Terminating);
    assert.equal(stateAfter(S.Terminating, C.Activate), S.Terminating);
    assert.equal(stateAfter(S.Launched, 0), S.Launched);
  });

  it("the physical-time word is ms << 16 split into u32 halves", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 47 }), (ms) => {
        const [lo, hi] = physicalWord(ms);
        assert.equal((BigInt(hi) << 32n) | BigInt(lo), BigInt(ms) << 16n);
      }),
    );
  });

  it("dispatches follow the send graph; cycles fall back to launch order", () => {
    const k = (id: string): GpuKernel => ({ id, routes: [] }) as unknown as GpuKernel;
    const [a, b, c, d] = ["a", "b", "c", "d"].map(k);
    // Launched c, b, a, d; a → b → c; d → d (itself).
    a.routes = [b];
    b.routes = [c, undefined];
    d.routes = [d];
    assert.deepEqual(dispatchOrder([c, b, a, d]).map((x) => x.id), ["a", "b", "c", "d"]);
    // A cycle a → b → a: launch order decides who goes first.
    b.routes = [a];
    assert.deepEqual(dispatchOrder([b, a, c]).map((x) => x.id), ["c", "b", "a"]);
  });

  it("the ring entry adds the metadata bindings and layout constants to the DSL library", () => {
    const src = emitRingKernel(checkKernel(dslForwarder));
    assert.match(src.code, /@group\(0\) @binding\(6\) var<storage, read> rk_in_meta/);
    assert.match(src.code, /@group\(0\) @binding\(7\) var<storage, read_write> rk_out_meta/);
    assert.match(src.code, new RegExp(`const RKW_CB_STATE: u32 = ${CtlCb.state}u;`));
    assert.match(src.code, /rk_slot = \(head \+ rk_n\) & mask;/);
    assert.equal(src.sendTargets.length, 1);
    assert.ok(src.outboxStride >= 2);
    assert.doesNotMatch(src.code, /fn main\(\) \{\n {2}rk_nwg = vec3<u32>\(1u\);\n {2}let rk_n/);
    const pass = emitPassthroughRing(48);
    assert.equal(pass.slotWords, 48);
    assert.ok(pass.passthrough);
    assert.match(emitRoutePass(), /override RK_TARGET: u32/);
  });
});

const skip = await webGpuSkip("test/webgpu/layout.test.ts");

describe("ring kernels compile on an adapter", { skip }, () => {
  it("every DSL corpus handler that WGSL accepts, the passthrough and the route pass", {
    timeout: 60_000,
  }, async () => {
    const { device } = await requestWebGpuDevice();
    try {
      const sources: [string, string][] = [
        ["passthrough", emitPassthroughRing(48).code],
        ["route pass", emitRoutePass()],
      ];
      for (const c of corpus) {
        if (c.kind !== "handler" || (c.targets !== undefined && !c.targets.includes("wgsl"))) {
          continue;
        }
        sources.push([c.name, emitRingKernel(checkKernel(c.kernel)).code]);
      }
      assert.ok(sources.length >= 5);
      for (const [name, code] of sources) {
        device.pushErrorScope("validation");
        const module = device.createShaderModule({ code });
        const info = await module.getCompilationInfo();
        // A pipeline too: lavapipe translates the module to SPIR-V and compiles it here.
        device.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" } });
        const scoped = await device.popErrorScope();
        const errors = info.messages.filter((m) => m.type === "error").map((m) =>
          `${m.lineNum}:${m.linePos} ${m.message}`
        );
        assert.deepEqual(errors, [], `${name} does not compile`);
        assert.equal(scoped, null, `${name}: ${scoped?.message}`);
      }
    } finally {
      device.destroy();
    }
  });
});
