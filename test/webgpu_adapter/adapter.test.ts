/**
 * The WebGPU adapter lookup (src/backends/webgpu/adapter.ts): which implementations each runtime
 * tries, the typed NoWebGpuError listing every attempt and why it failed, Dawn's null backend
 * refused, and a real device from each implementation this machine offers (Deno's navigator.gpu
 * on lavapipe; the Dawn-based ones on Mesa's llvmpipe through OpenGL ES), each skipped by an
 * explicit check with the reason when absent.
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import { NoWebGpuError } from "../../src/core/errors.ts";
import {
  implementationsToTry,
  jsRuntime,
  parseWgslDiagnostics,
  requestWebGpuDevice,
  WEBGPU_IMPLEMENTATION_ENV,
  type WebGpuDeviceHandle,
  type WebGpuImplementation,
} from "../../src/backends/webgpu/adapter.ts";
import { dawnLibraryCandidates } from "../../ffi/dawn.ts";
import { existsSync } from "node:fs";

function withEnv<T>(name: string, value: string | undefined, fn: () => T): T {
  const before = process.env[name];
  if (value === undefined) delete process.env[name];
  else process.env[name] = value;
  try {
    return fn();
  } finally {
    if (before === undefined) delete process.env[name];
    else process.env[name] = before;
  }
}

async function withEnvAsync<T>(name: string, value: undefined, fn: () => Promise<T>): Promise<T> {
  const before = process.env[name];
  delete process.env[name];
  try {
    return await fn();
  } finally {
    if (before !== undefined) process.env[name] = before;
    void value;
  }
}

async function rejectsNoWebGpu(p: Promise<unknown>, ...mentions: RegExp[]): Promise<string> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof NoWebGpuError, `expected NoWebGpuError, got ${String(err)}`);
  assert.equal(err.code, "E_NO_WEBGPU");
  for (const m of mentions) assert.match(err.message, m);
  return err.message;
}

/** One round trip through `device`: write, dispatch out = in * 3, copy, map, read. */
async function roundTrip(device: GPUDevice): Promise<number[]> {
  const module = device.createShaderModule({
    code: `@group(0) @binding(0) var<storage, read_write> d: array<u32>;
      @compute @workgroup_size(4) fn main(@builtin(global_invocation_id) g: vec3<u32>) {
        d[g.x] = d[g.x] * 3u;
      }`,
  });
  const pipeline = device.createComputePipeline({ layout: "auto", compute: { module } });
  const data = device.createBuffer({ size: 16, usage: 0x80 | 0x8 | 0x4 });
  const read = device.createBuffer({ size: 16, usage: 0x1 | 0x8 });
  device.queue.writeBuffer(data, 0, new Uint32Array([1, 2, 3, 4]));
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(
    0,
    device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [{ binding: 0, resource: { buffer: data } }],
    }),
  );
  pass.dispatchWorkgroups(1);
  pass.end();
  enc.copyBufferToBuffer(data, 0, read, 0, 16);
  device.queue.submit([enc.finish()]);
  await read.mapAsync(1);
  const out = [...new Uint32Array(read.getMappedRange())];
  read.unmap();
  data.destroy();
  read.destroy();
  return out;
}

describe("implementationsToTry", () => {
  it("auto tries navigator.gpu, and under Bun the bun-webgpu package; never dawn", () => {
    const order = withEnv(WEBGPU_IMPLEMENTATION_ENV, undefined, () => implementationsToTry());
    assert.deepEqual(order, jsRuntime === "bun" ? ["navigator", "bun-webgpu"] : ["navigator"]);
  });

  it("an explicit implementation is the only one tried", () => {
    for (const impl of ["navigator", "bun-webgpu", "dawn"] as const) {
      assert.deepEqual(implementationsToTry(impl), [impl]);
    }
  });

  it("RINGKERNEL_WEBGPU picks the implementation when the option is auto", () => {
    withEnv(WEBGPU_IMPLEMENTATION_ENV, "dawn", () => {
      assert.deepEqual(implementationsToTry("auto"), ["dawn"]);
      assert.deepEqual(implementationsToTry("navigator"), ["navigator"], "the option wins");
    });
  });

  it("an unknown name in RINGKERNEL_WEBGPU is a NoWebGpuError naming it", () => {
    withEnv(WEBGPU_IMPLEMENTATION_ENV, "metal", () => {
      assert.throws(
        () => implementationsToTry(),
        (e: unknown) => e instanceof NoWebGpuError && /"metal"/.test(e.message),
      );
    });
  });
});

describe("requestWebGpuDevice failures", () => {
  it("bun-webgpu outside Bun fails with the reason", { skip: jsRuntime === "bun" }, async () => {
    await rejectsNoWebGpu(
      requestWebGpuDevice({ implementation: "bun-webgpu" }),
      /tried bun-webgpu/,
      /runs under Bun only/,
    );
  });

  it("navigator under Bun fails with the reason", { skip: jsRuntime !== "bun" }, async () => {
    await rejectsNoWebGpu(
      requestWebGpuDevice({ implementation: "navigator" }),
      /tried navigator under bun/,
      /navigator\.gpu is absent/,
    );
  });

  it("dawn with a missing library names the path tried", async () => {
    const path = "/nonexistent/libwebgpu_wrapper.so";
    await rejectsNoWebGpu(
      requestWebGpuDevice({ implementation: "dawn", dawnLibrary: path }),
      /tried dawn/,
      new RegExp(path.replaceAll("/", "\\/")),
    );
  });

  it("an unknown Dawn backend is named in the error", async () => {
    await rejectsNoWebGpu(
      requestWebGpuDevice({
        implementation: "dawn",
        dawnBackend: "metal" as unknown as "vulkan",
      }),
      /unknown Dawn backend "metal"/,
    );
  });

  const dawnPresent = dawnLibraryCandidates().some((p) => existsSync(p));
  it(
    "Dawn's null backend is refused unless allowed",
    { skip: dawnPresent ? false : "no Dawn library (npm install fetches bun-webgpu)" },
    async () => {
      // On this kind of machine Dawn's Vulkan backend refuses lavapipe, so Dawn offers its null
      // backend; where a real GPU is present Dawn picks it and there is nothing to refuse.
      // Dawn's own choice (no backend named) falls back to the null backend; naming one does not.
      const request = (allowNullBackend: boolean) =>
        withEnvAsync(
          "RINGKERNEL_DAWN_BACKEND",
          undefined,
          () => requestWebGpuDevice({ implementation: "dawn", allowNullBackend }),
        );
      let handle: WebGpuDeviceHandle | undefined;
      try {
        handle = await request(false);
      } catch (e) {
        assert.ok(e instanceof NoWebGpuError);
        assert.match(e.message, /null backend/);
        const allowed = await request(true);
        assert.equal(allowed.implementation, "dawn");
        assert.match(allowed.adapterInfo.device, /null/i);
        allowed.device.destroy();
        return;
      }
      assert.doesNotMatch(handle.adapterInfo.device, /null/i);
      handle.device.destroy();
    },
  );
});

describe("parseWgslDiagnostics", () => {
  it("turns Dawn's validation text into compilation messages with positions", () => {
    const text = "Error while parsing WGSL: :3:10 error: expected ')' for function declaration\n" +
      "fn main( { }\n         ^\n\n:7:2 warning: unreachable code\n - While calling CreateShaderModule";
    assert.deepEqual(
      parseWgslDiagnostics(text).map((m) => [m.type, m.lineNum, m.linePos, m.message]),
      [
        ["error", 3, 10, "expected ')' for function declaration"],
        ["warning", 7, 2, "unreachable code"],
      ],
    );
  });

  it("keeps a message without positions as one error", () => {
    const [m] = parseWgslDiagnostics("Device lost");
    assert.equal(m.type, "error");
    assert.equal(m.message, "Device lost");
  });
});

/** Whether each implementation gives a real device here, and the reason when not. */
async function probe(
  implementation: WebGpuImplementation,
): Promise<{ handle?: WebGpuDeviceHandle; skip: string | false }> {
  try {
    const handle = await requestWebGpuDevice({
      implementation,
      // Mesa's llvmpipe through headless EGL: the one real adapter Dawn takes on a GPU-less
      // machine. On the GPU machine RINGKERNEL_DAWN_BACKEND=vulkan overrides it.
      dawnBackend: implementation === "navigator"
        ? undefined
        : (process.env.RINGKERNEL_DAWN_BACKEND as "vulkan" | undefined) ?? "opengles",
    });
    return { handle, skip: false };
  } catch (e) {
    const reason = `${implementation}: ${(e as Error).message}`;
    console.log(`adapter.test.ts: skipping: ${reason}`);
    return { skip: reason };
  }
}

for (const implementation of ["navigator", "bun-webgpu", "dawn"] as const) {
  const got = await probe(implementation);
  describe(`a real ${implementation} device`, { skip: got.skip }, () => {
    after(() => got.handle?.device.destroy());

    it("reports where it came from", () => {
      const h = got.handle!;
      assert.equal(h.implementation, implementation);
      assert.ok(h.adapterInfo.name.length > 0, "adapter name");
      assert.equal(typeof h.adapterInfo.isFallback, "boolean");
    });

    it("runs a compute round trip", async () => {
      assert.deepEqual(await roundTrip(got.handle!.device), [3, 6, 9, 12]);
    });

    it("reports WGSL errors through getCompilationInfo and error scopes", async () => {
      const { device } = got.handle!;
      device.pushErrorScope("validation");
      const module = device.createShaderModule({ code: "fn main( { }" });
      const info = await module.getCompilationInfo();
      const scoped = await device.popErrorScope();
      const errors = info.messages.filter((m) => m.type === "error");
      assert.ok(errors.length > 0, "an error message");
      assert.equal(errors[0].lineNum, 1);
      assert.ok(scoped !== null, "the caller's scope still sees the error");
    });
  });
}
