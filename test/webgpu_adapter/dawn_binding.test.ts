/**
 * Our binding of Dawn (ffi/dawn.ts) over the shared dlopen adapter, under Deno and Bun alike:
 * callbacks through the adapter, the struct layouts (checked for consistency, then against the
 * library: limits, adapter info and compilation messages read at the documented offsets must
 * hold Dawn's known values), symbol binding, instance and adapter enumeration, and the compute
 * subset on Dawn's null backend (validation only: it never executes) and on a real adapter when
 * Dawn has one (Mesa's llvmpipe through OpenGL ES here, the GPU on the GPU machine). Without the
 * library (an optional npm dependency) the library tests skip, saying so.
 */
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import process from "node:process";
import { foreignCallback, openLibrary, viewForeign } from "../../ffi/dlopen.ts";
import {
  type DawnAdapter,
  DawnBuffer,
  type DawnDevice,
  DawnGpuError,
  dawnLibraryCandidates,
  DawnPipelineError,
  DawnUncapturedErrorEvent,
  openDawnGpu,
  openDawnLibrary,
} from "../../ffi/dawn.ts";
import * as L from "../../ffi/dawn_symbols.ts";
import { ValidationError } from "../../src/core/errors.ts";

const linux = process.platform === "linux" ? false : "the callback test uses glibc's qsort";

describe("foreignCallback", { skip: linux }, () => {
  it("hands a JS comparator to libc's qsort", () => {
    const libc = openLibrary(
      "libc.so.6",
      {
        qsort: { parameters: ["buffer", "usize", "usize", "pointer"], result: "void" },
      } as const,
    );
    let calls = 0;
    const cmp = foreignCallback(
      { parameters: ["pointer", "pointer"], result: "i32" } as const,
      (a, b) => {
        calls++;
        const x = new Int32Array(viewForeign(a!, 4))[0];
        const y = new Int32Array(viewForeign(b!, 4))[0];
        return x < y ? -1 : x > y ? 1 : 0;
      },
    );
    try {
      const data = new Int32Array([5, -3, 9, 0, 2, 2, -8]);
      libc.symbols.qsort(data, BigInt(data.length), 4n, cmp.pointer);
      assert.deepEqual([...data], [-8, -3, 0, 2, 2, 5, 9]);
      assert.ok(calls > 0);
    } finally {
      cmp.close();
      libc.close();
    }
  });

  it("delivers 64-bit integers as bigint and null pointers as null", () => {
    const libc = openLibrary(
      "libc.so.6",
      {
        bsearch: {
          parameters: ["buffer", "buffer", "usize", "usize", "pointer"],
          result: "pointer",
        },
      } as const,
    );
    const seen: unknown[] = [];
    const cb = foreignCallback(
      { parameters: ["pointer", "pointer"], result: "i32" } as const,
      (key, elem) => {
        seen.push(key === null, elem === null);
        const k = new BigInt64Array(viewForeign(key!, 8))[0];
        const e = new BigInt64Array(viewForeign(elem!, 8))[0];
        return k < e ? -1 : k > e ? 1 : 0;
      },
    );
    try {
      const table = new BigInt64Array([1n, 2n ** 40n, 2n ** 62n]);
      const hit = libc.symbols.bsearch(new BigInt64Array([2n ** 40n]), table, 3n, 8n, cb.pointer);
      assert.ok(hit !== null);
      assert.equal(new BigInt64Array(viewForeign(hit, 8))[0], 2n ** 40n);
      assert.ok(seen.every((x) => x === false), "no null pointers were passed");
    } finally {
      cb.close();
      libc.close();
    }
  });
});

describe("struct layouts (x86-64 / AArch64)", () => {
  it("nested structs end where the next field starts", () => {
    const D = L.DeviceDescriptor;
    assert.equal(D.defaultQueue + L.QueueDescriptor.size, D.deviceLostCallbackInfo);
    assert.equal(D.deviceLostCallbackInfo + L.CallbackInfo.size, D.uncapturedErrorCallbackInfo);
    assert.equal(D.uncapturedErrorCallbackInfo + L.UncapturedErrorCallbackInfo.size, D.size);
    assert.equal(
      L.ComputePipelineDescriptor.compute + L.ComputeState.size,
      L.ComputePipelineDescriptor.size,
    );
    assert.equal(L.InstanceDescriptor.features + L.InstanceCapabilities.size, 32);
    assert.equal(L.ShaderSourceWGSL.code + L.StringView.size, L.ShaderSourceWGSL.size);
    assert.equal(L.AdapterInfo.description + L.StringView.size, L.AdapterInfo.backendType);
    assert.equal(L.AdapterInfo.subgroupMaxSize + 4, L.AdapterInfo.size);
    assert.equal(L.CompilationMessage.length + 8, L.CompilationMessage.size);
    assert.equal(L.ConstantEntry.value + 8, L.ConstantEntry.size);
    assert.equal(L.BindGroupEntry.textureView + 8, L.BindGroupEntry.size);
    assert.equal(L.BindGroupLayoutEntry.buffer + 24 + 16 + 24 + 24, L.BindGroupLayoutEntry.size);
  });

  it("every field is naturally aligned and inside its struct", () => {
    const eight = new Set([
      "nextInChain",
      "next",
      "label",
      "data",
      "length",
      "callback",
      "userdata1",
      "userdata2",
      "future",
      "usage",
      "bufferSize",
      "module",
      "layout",
      "entries",
      "entryCount",
      "buffer",
      "offset",
      "messages",
      "messageCount",
      "lineNum",
      "linePos",
      "visibility",
    ]);
    const structs: Record<string, Record<string, number>> = {
      StringView: L.StringView,
      CallbackInfo: L.CallbackInfo,
      FutureWaitInfo: L.FutureWaitInfo,
      BufferDescriptor: L.BufferDescriptor,
      BindGroupEntry: L.BindGroupEntry,
      BindGroupDescriptor: L.BindGroupDescriptor,
      BindGroupLayoutEntry: L.BindGroupLayoutEntry,
      CompilationMessage: L.CompilationMessage,
      ComputeState: L.ComputeState,
      AdapterInfo: L.AdapterInfo,
    };
    for (const [name, s] of Object.entries(structs)) {
      assert.equal(s.size % 8, 0, `${name} size ${s.size} is a multiple of 8`);
      for (const [field, at] of Object.entries(s)) {
        if (field === "size") continue;
        assert.ok(at >= 0 && at < s.size, `${name}.${field} at ${at} inside ${s.size}`);
        if (eight.has(field)) assert.equal(at % 8, 0, `${name}.${field} at ${at} is 8-aligned`);
        else assert.equal(at % 4, 0, `${name}.${field} at ${at} is 4-aligned`);
      }
    }
    for (const [name, at] of Object.entries(L.Limits.u64)) assert.equal(at % 8, 0, name);
    const all = [...Object.values(L.Limits.u32), ...Object.values(L.Limits.u64)];
    assert.equal(new Set(all).size, all.length, "no two limits share an offset");
  });
});

const library = dawnLibraryCandidates().find((p) => existsSync(p));
const noLibrary = library === undefined
  ? `no Dawn library (tried ${dawnLibraryCandidates().join(", ")}; npm install fetches it)`
  : false;
if (noLibrary) console.log(`dawn_binding.test.ts: skipping: ${noLibrary}`);

describe("the Dawn library", { skip: noLibrary }, () => {
  it("binds every symbol of the table", () => {
    const lib = openDawnLibrary(library!);
    for (const name of Object.keys(L.DAWN_SYMBOLS)) {
      assert.equal(typeof (lib.symbols as Record<string, unknown>)[name], "function", name);
    }
  });

  it("creates an instance with timed waits", () => {
    const gpu = openDawnGpu({ library });
    assert.equal(gpu.timedWaitAny, true);
    assert.equal(openDawnGpu({ library }), gpu, "one instance per library");
  });
});

describe("Dawn's null backend", { skip: noLibrary }, () => {
  let adapter: DawnAdapter;
  let device: DawnDevice;

  it("is always enumerable, and its info reads at the documented offsets", async () => {
    const a = await openDawnGpu({ library }).requestAdapter({ backendType: "null" });
    assert.ok(a !== null);
    adapter = a;
    assert.equal(a.info.backend, "null");
    assert.equal(a.info.backendType, L.BACKEND_NULL);
    assert.equal(a.isNullBackend, true);
    assert.match(a.info.device, /null/i);
  });

  it("reports Dawn's default limits at the documented offsets", () => {
    const l = adapter.limits;
    assert.equal(l.maxTextureDimension1D, 8192);
    assert.equal(l.maxBindGroups, 4);
    assert.equal(l.maxComputeWorkgroupSizeX, 256);
    assert.equal(l.maxComputeWorkgroupSizeZ, 64);
    assert.equal(l.maxComputeWorkgroupsPerDimension, 65535);
    assert.equal(l.minStorageBufferOffsetAlignment, 256);
    assert.equal(l.maxUniformBufferBindingSize, 65536);
    assert.ok(l.maxStorageBufferBindingSize >= 134217728, `${l.maxStorageBufferBindingSize}`);
    assert.ok(l.maxBufferSize >= 268435456, `${l.maxBufferSize}`);
    assert.ok(adapter.features.has("core-features-and-limits"));
  });

  it("refuses requiredFeatures and unknown limits with a ValidationError", async () => {
    await assert.rejects(
      adapter.requestDevice({ requiredFeatures: ["shader-f16"] }),
      (e: unknown) => e instanceof ValidationError && /shader-f16/.test(e.message),
    );
    await assert.rejects(
      adapter.requestDevice({ requiredLimits: { maxWhatever: 4 } }),
      (e: unknown) => e instanceof ValidationError && /maxWhatever/.test(e.message),
    );
  });

  it("passes requiredLimits to Dawn", async () => {
    device = await adapter.requestDevice({
      requiredLimits: {
        maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
        maxComputeWorkgroupStorageSize: adapter.limits.maxComputeWorkgroupStorageSize,
      },
    });
    assert.equal(
      device.limits.maxStorageBufferBindingSize,
      adapter.limits.maxStorageBufferBindingSize,
    );
    assert.equal(
      device.limits.maxComputeWorkgroupStorageSize,
      adapter.limits.maxComputeWorkgroupStorageSize,
    );
  });

  it("returns compilation messages with line and column", async () => {
    device.pushErrorScope("validation");
    const m = device.createShaderModule({ code: "const a = 1;\n\nfn main( { }" });
    const info = await m.getCompilationInfo();
    const scoped = await device.popErrorScope();
    assert.ok(scoped instanceof DawnGpuError && scoped.type === "validation");
    const [first] = info.messages;
    assert.equal(first.type, "error");
    assert.equal(first.lineNum, 3);
    assert.equal(first.linePos, 10);
    assert.match(first.message, /expected '\)'/);
  });

  it("validates explicit bind group and pipeline layouts", async () => {
    const code = `@group(0) @binding(0) var<storage, read> a: array<u32>;
      @group(0) @binding(1) var<storage, read_write> b: array<u32>;
      @compute @workgroup_size(1) fn main() { b[0] = a[0]; }`;
    const module = device.createShaderModule({ code });
    const layout = (types: GPUBufferBindingType[]) =>
      device.createPipelineLayout({
        bindGroupLayouts: [
          device.createBindGroupLayout({
            entries: types.map((type, binding) => ({ binding, visibility: 4, buffer: { type } })),
          }),
        ],
      });
    device.pushErrorScope("validation");
    device.createComputePipeline({
      layout: layout(["read-only-storage", "storage"]),
      compute: { module, entryPoint: "main" },
    });
    assert.equal(await device.popErrorScope(), null, "matching layout");
    device.pushErrorScope("validation");
    device.createComputePipeline({
      layout: layout(["read-only-storage", "read-only-storage"]),
      compute: { module, entryPoint: "main" },
    });
    const err = await device.popErrorScope();
    assert.ok(err instanceof DawnGpuError, "a read_write binding on a read-only layout fails");
  });

  it("rejects createComputePipelineAsync with a bad entry point", async () => {
    const module = device.createShaderModule({
      code: "@compute @workgroup_size(1) fn main() {}",
    });
    await assert.rejects(
      device.createComputePipelineAsync({
        layout: "auto",
        compute: { module, entryPoint: "nope" },
      }),
      (e: unknown) => e instanceof DawnPipelineError && e.reason === "validation",
    );
  });

  it("dispatches uncaptured errors to listeners", () => {
    const got: DawnUncapturedErrorEvent[] = [];
    const listener = (e: Event) => got.push(e as DawnUncapturedErrorEvent);
    device.addEventListener("uncapturederror", listener);
    device.createBuffer({ size: 4, usage: 0x1 | 0x2 }); // MAP_READ | MAP_WRITE is invalid
    device.removeEventListener("uncapturederror", listener);
    assert.equal(got.length, 1);
    assert.equal(got[0].error.type, "validation");
    assert.match(got[0].error.message, /usage/i);
  });

  it("maps, reports map states, and aborts a pending map on unmap", async () => {
    const buf = device.createBuffer({ size: 16, usage: 0x1 | 0x8 });
    assert.equal(buf.mapState, "unmapped");
    const p = buf.mapAsync(1);
    assert.equal(buf.mapState, "pending");
    buf.unmap();
    await assert.rejects(p, (e: unknown) => e instanceof Error && e.name === "AbortError");
    assert.equal(buf.mapState, "unmapped");
    await buf.mapAsync(1);
    assert.equal(buf.mapState, "mapped");
    const range = buf.getMappedRange(0, 8);
    assert.throws(() => buf.getMappedRange(4, 8), /multiple of 8/);
    assert.throws(() => buf.getMappedRange(0, 8), /overlaps/);
    buf.unmap();
    assert.equal(range.byteLength, 0, "ranges are detached on unmap");
    buf.destroy();
  });

  it("resolves device.lost on destroy", async () => {
    device.destroy();
    const info = await device.lost;
    assert.equal(info.reason, "destroyed");
  });
});

/** A real Dawn adapter: the GPU, or llvmpipe through OpenGL ES on a GPU-less Linux machine. */
async function realAdapter(): Promise<DawnAdapter | string> {
  if (noLibrary) return noLibrary;
  const gpu = openDawnGpu({ library });
  const backend = process.env.RINGKERNEL_DAWN_BACKEND as "vulkan" | "opengles" | undefined;
  for (const backendType of backend !== undefined ? [backend] : ["vulkan", "opengles"] as const) {
    const a = await gpu.requestAdapter({ backendType });
    if (a !== null && !a.isNullBackend) return a;
  }
  return "Dawn found no Vulkan adapter and no OpenGL ES one (Mesa EGL) on this machine";
}

const real = await realAdapter();
if (typeof real === "string" && !noLibrary) console.log(`dawn_binding.test.ts: skipping: ${real}`);

describe("a real Dawn device", { skip: typeof real === "string" ? real : false }, () => {
  let device: DawnDevice;
  after(() => device?.destroy());

  const copyOut = async (src: DawnBuffer, bytes: number): Promise<Uint32Array> => {
    const read = device.createBuffer({ size: bytes, usage: 0x1 | 0x8 });
    const enc = device.createCommandEncoder();
    enc.copyBufferToBuffer(src, 0, read, 0, bytes);
    device.queue.submit([enc.finish()]);
    await read.mapAsync(1);
    const out = new Uint32Array(read.getMappedRange().slice(0));
    read.unmap();
    read.destroy();
    return out;
  };

  it("opens a device", async () => {
    device = await (real as DawnAdapter).requestDevice();
    assert.ok(device.limits.maxComputeWorkgroupSizeX >= 128);
  });

  it("writes back a buffer mapped at creation", async () => {
    const buf = device.createBuffer({ size: 16, usage: 0x4 | 0x8, mappedAtCreation: true });
    new Uint32Array(buf.getMappedRange()).set([10, 20, 30, 40]);
    buf.unmap();
    assert.deepEqual([...await copyOut(buf, 16)], [10, 20, 30, 40]);
  });

  it("counts writeBuffer's dataOffset and size in elements for typed arrays", async () => {
    const buf = device.createBuffer({ size: 16, usage: 0x4 | 0x8 });
    device.queue.writeBuffer(buf, 0, new Uint32Array([1, 2, 3, 4, 5, 6]), 2, 4);
    assert.deepEqual([...await copyOut(buf, 16)], [3, 4, 5, 6]);
    device.queue.writeBuffer(buf, 4, new Uint32Array([7, 8, 9]).buffer, 4, 8);
    assert.deepEqual([...await copyOut(buf, 16)], [3, 8, 9, 6]);
    assert.throws(
      () => device.queue.writeBuffer(buf, 0, new Uint32Array(2), 1, 4),
      ValidationError,
    );
  });

  it("runs a pipeline with overridable constants, waiting by blocking calls", async () => {
    const module = device.createShaderModule({
      code: `override K: u32 = 1u;
        @group(0) @binding(0) var<storage, read_write> d: array<u32>;
        @compute @workgroup_size(4) fn main(@builtin(global_invocation_id) g: vec3<u32>) {
          d[g.x] = d[g.x] * K;
        }`,
    });
    const pipeline = await device.createComputePipelineAsync({
      layout: "auto",
      compute: { module, entryPoint: "main", constants: { K: 7 } },
    });
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
    device.queue.waitForSubmittedWork();
    read.mapSync(1);
    assert.deepEqual([...new Uint32Array(read.getMappedRange())], [7, 14, 21, 28]);
    read.unmap();
  });

  it("notices completion without the 10 ms timer of Deno's navigator.gpu", async () => {
    const buf = device.createBuffer({ size: 4, usage: 0x1 | 0x8 });
    const times: number[] = [];
    for (let i = 0; i < 20; i++) {
      device.queue.writeBuffer(buf, 0, new Uint32Array([i]));
      const t0 = performance.now();
      await buf.mapAsync(1);
      times.push(performance.now() - t0);
      assert.equal(new Uint32Array(buf.getMappedRange())[0], i);
      buf.unmap();
    }
    times.sort((a, b) => a - b);
    assert.ok(times[10] < 5, `median map latency ${times[10].toFixed(3)} ms`);
  });
});
