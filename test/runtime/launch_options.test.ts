// LaunchOptions, the builder's backend choice and defineKernel's checks: no workers involved.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  BackendUnavailableError,
  CapacityError,
  ErrorCode,
  ValidationError,
} from "../../src/core/errors.ts";
import { Backend } from "../../src/runtime/backend.ts";
import { defineKernel, isKernelDefinition, passthroughKernel } from "../../src/runtime/kernel.ts";
import { LaunchOptions, priority, schedulingFor } from "../../src/runtime/launch_options.ts";
import { RingKernel } from "../../src/runtime/runtime.ts";
import { CpuRuntime } from "../../src/backends/cpu/cpu_runtime.ts";
import { accumulator, Add, Sum } from "../fixtures/kernels.ts";
import { webGpuSkip } from "../webgpu/probe.ts";

describe("LaunchOptions", () => {
  it("has the documented defaults", () => {
    const o = LaunchOptions.default();
    assert.equal(o.inputCapacity, 1024);
    assert.equal(o.outputCapacity, 1024);
    assert.equal(o.priority, priority.NORMAL);
    assert.equal(o.autoActivate, true);
    assert.equal(o.k2k, true);
    assert.equal(o.supervision, "resume");
    assert.equal(o.gridSize, 1);
    assert.equal(o.blockSize, 128);
    assert.equal(o.sharedMemoryBytes, 0);
    assert.equal(o.slotSize, undefined);
  });

  it("chains immutably: each with… returns a new value", () => {
    const base = LaunchOptions.default();
    const o = base.withQueueCapacity(4096).withBlockSize(256).withPriority(priority.HIGH)
      .withoutAutoActivate().withGridSize(8).withSharedMemory(1024).withK2k(false)
      .withSupervision("restart").withInputCapacity(64).withOutputCapacity(128).withSlotSize(200);
    assert.deepEqual(
      [o.inputCapacity, o.outputCapacity, o.blockSize, o.priority, o.autoActivate, o.gridSize],
      [64, 128, 256, priority.HIGH, false, 8],
    );
    assert.deepEqual([o.sharedMemoryBytes, o.k2k, o.supervision, o.slotSize], [
      1024,
      false,
      "restart",
      200,
    ]);
    assert.equal(base.inputCapacity, 1024);
    assert.equal(base.autoActivate, true);
    assert.ok(Object.isFrozen(o));
  });

  it("rejects a capacity that is not a power of two with CapacityError", () => {
    fc.assert(
      fc.property(fc.integer({ min: -10, max: 1 << 20 }), (n) => {
        const pow2 = n >= 2 && (n & (n - 1)) === 0;
        for (
          const set of ["withQueueCapacity", "withInputCapacity", "withOutputCapacity"] as const
        ) {
          if (pow2) assert.equal(LaunchOptions.default()[set](n).priority, priority.NORMAL);
          else {
            assert.throws(
              () => LaunchOptions.default()[set](n),
              (e: unknown) => e instanceof CapacityError && e.code === ErrorCode.InvalidCapacity,
            );
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it("validates geometry, priority and supervision", () => {
    const bad = (f: () => unknown) =>
      assert.throws(f, (e: unknown) => e instanceof ValidationError);
    bad(() => LaunchOptions.default().withBlockSize(0));
    bad(() => LaunchOptions.default().withBlockSize(2048));
    bad(() => LaunchOptions.default().withGridSize(1.5));
    bad(() => LaunchOptions.default().withSharedMemory(-1));
    bad(() => LaunchOptions.default().withPriority(7 as never));
    bad(() => LaunchOptions.default().withSupervision("ignore" as never));
  });

  it("maps launch priority to a growing spin budget and batch size", () => {
    const s = [priority.LOW, priority.NORMAL, priority.HIGH, priority.CRITICAL].map(schedulingFor);
    for (let i = 1; i < s.length; i++) {
      assert.ok(s[i].spinMicros > s[i - 1].spinMicros);
      assert.ok(s[i].batchSize > s[i - 1].batchSize);
    }
    assert.equal(s[0].spinMicros, 0);
  });
});

describe("RingKernel.builder backends", () => {
  it("Auto falls back to the CPU and says why", async () => {
    // Without a CUDA device, whatever this machine has (test/runtime/auto_backend.test.ts).
    const rt = await RingKernel.builder().backend(Backend.Auto).autoProbes({
      cuda: () => ({ usable: false, reason: "none in this test" }),
      env: () => undefined,
    }).build();
    try {
      assert.equal(rt.backend, "cpu");
      assert.ok(rt.backendNotes.some((n) => n.startsWith("cuda:")));
      assert.ok(rt.backendNotes.some((n) => n.startsWith("webgpu:")));
    } finally {
      await rt.shutdown();
    }
  });

  it("Cpu builds a CPU runtime; CpuRuntime.create is the direct way in", async () => {
    const a = await RingKernel.builder().backend(Backend.Cpu).build();
    const b = await CpuRuntime.create();
    assert.equal(a.backend, "cpu");
    assert.deepEqual(a.backendNotes, []);
    assert.ok(b instanceof CpuRuntime);
    await a.shutdown();
    await b.shutdown();
  });

  it("Cuda, asked for explicitly, throws BackendUnavailableError", async () => {
    await assert.rejects(
      RingKernel.builder().backend(Backend.Cuda).build(),
      (e: unknown) =>
        e instanceof BackendUnavailableError && e.code === ErrorCode.BackendUnavailable &&
        e.backend === Backend.Cuda,
    );
    assert.throws(() => RingKernel.builder().backend("tpu" as never), ValidationError);
  });

  it("WebGpu, asked for explicitly, builds on an adapter or throws BackendUnavailableError", async () => {
    // The explicit check the WebGPU tests use: Deno has lavapipe here, Bun has no adapter.
    const noAdapter = await webGpuSkip("test/runtime/launch_options.test.ts");
    const built = RingKernel.builder().backend(Backend.WebGpu).build();
    if (noAdapter) {
      await assert.rejects(
        built,
        (e: unknown) =>
          e instanceof BackendUnavailableError && e.code === ErrorCode.BackendUnavailable &&
          e.backend === Backend.WebGpu,
      );
      return;
    }
    const rt = await built;
    assert.equal(rt.backend, "webgpu");
    await rt.shutdown();
  });
});

describe("defineKernel", () => {
  it("brands definitions and normalises the module URL", () => {
    assert.ok(isKernelDefinition(accumulator));
    assert.equal(accumulator.moduleUrl, new URL("../fixtures/kernels.ts", import.meta.url).href);
    assert.equal(accumulator.state?.size, 8);
    const p = passthroughKernel("processor");
    assert.equal(p.builtin, "passthrough");
    assert.equal(isKernelDefinition({ id: "x" }), false);
  });

  it("rejects a missing module, a bad id, a non-schema input and a bad initial state", () => {
    const handler = () => undefined;
    assert.throws(
      () => defineKernel({ id: "k", module: undefined as never, input: Add, handler }),
      (e: unknown) => e instanceof ValidationError && /import\.meta\.url/.test(e.message),
    );
    assert.throws(
      () => defineKernel({ id: "", module: import.meta.url, input: Add, handler }),
      ValidationError,
    );
    assert.throws(
      () => defineKernel({ id: "k", module: import.meta.url, input: {} as never, handler }),
      ValidationError,
    );
    assert.throws(() =>
      defineKernel({
        id: "k",
        module: import.meta.url,
        input: Add,
        output: Sum,
        state: { n: "u8" },
        initialState: { n: 300 },
        handler,
      })
    );
  });
});
