/**
 * Test helper: runs DSL kernels through the WGSL emitter on a real WebGPU device, with the
 * signatures of the JS runner (`runJs`, `runStencilJs`, `runHandlerJs`) so one corpus driver can
 * compare the paths. Arrays are written back into the caller's typed arrays.
 *
 * The device is requested once per process with the adapter's compute limits (the default 256
 * invocations per workgroup is below what `bulkKernel` allows). Every shader module's
 * `getCompilationInfo()` is checked and errors throw with the numbered source.
 * @module
 */

import type { FieldsSpec, InferFields } from "../../src/core/schema.ts";
import type { BulkKernel, StencilKernel } from "../../src/dsl/define.ts";
import type { IrKernel } from "../../src/dsl/ir.ts";
import { checkKernel } from "../../src/dsl/check.ts";
import { emitWgsl, type WgslSource } from "../../src/dsl/wgsl.ts";
import type { KernelDefinition } from "../../src/runtime/kernel.ts";

// The JS runner's launch, option and result shapes (src/dsl/js.ts), restated structurally so this
// helper does not depend on that module compiling.

/** How {@linkcode runWgsl} launches a bulk kernel (as `runJs`). */
export interface WgslLaunch {
  /** Blocks in the grid: a number is `[n, 1, 1]`. */
  readonly grid: number | readonly [number, number?, number?];
}

/** The interior size of a stencil grid (as `runStencilJs`). */
export interface WgslStencilSize {
  /** Interior width in cells. */
  readonly width: number;
  /** Interior height in cells. */
  readonly height: number;
  /** Interior depth in cells (3D); default 1. */
  readonly depth?: number;
}

/** Options of {@linkcode runHandlerWgsl} (as `runHandlerJs`). */
export interface WgslHandlerOptions<S extends FieldsSpec = FieldsSpec> {
  /** State before the first message; default `def.initialState`, else zeros. */
  readonly initialState?: InferFields<S>;
  /** HLC word before the first `ctx.now()`; default 0n. */
  readonly hlcStart?: bigint;
  /** Node id `ctx.now()` reports; default 0. */
  readonly nodeId?: number;
  /** Outbox records; later sends are counted only. Default 256. */
  readonly sendCapacity?: number;
}

/** A recorded `ctx.send`. */
export interface WgslSend {
  /** Destination kernel id. */
  readonly target: string;
  /** Index of the message whose handling sent it. */
  readonly index: number;
  /** The sent message, decoded. */
  readonly message: object;
}

/** What {@linkcode runHandlerWgsl} returns (as `runHandlerJs`). */
export interface WgslHandlerResult {
  /** Per message: the decoded reply, or undefined. */
  readonly replies: (object | undefined)[];
  /** The state after the last message, decoded (`{}` without state). */
  readonly state: object;
  /** The first `sendCapacity` sends. */
  readonly sends: WgslSend[];
  /** Every send, recorded or not. */
  readonly sendCount: number;
  /** The HLC word after the last message. */
  readonly hlc: bigint;
}

// WebGPU's GPUBufferUsage / GPUMapMode / GPUShaderStage bit values (spec constants).
const MAP_READ = 0x1;
const COPY_SRC = 0x4;
const COPY_DST = 0x8;
const UNIFORM = 0x40;
const STORAGE = 0x80;
const MAP_MODE_READ = 0x1;
const STAGE_COMPUTE = 0x4;

type NavigatorWithGpu = Navigator & { gpu?: GPU };

/** A device, or why there is none. */
export type WgslDevice = { device: GPUDevice; skip: false } | { device: undefined; skip: string };

let devicePromise: Promise<WgslDevice> | undefined;

const RAISED_LIMITS = [
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupSizeZ",
  "maxStorageBuffersPerShaderStage",
  "maxStorageBufferBindingSize",
  "maxBufferSize",
] as const;

async function requestDevice(): Promise<WgslDevice> {
  const nav = globalThis.navigator as NavigatorWithGpu | undefined;
  if (nav?.gpu === undefined) {
    return {
      device: undefined,
      skip: "navigator.gpu is absent in this runtime (Bun ships no WebGPU; Deno provides it)",
    };
  }
  const adapter = await nav.gpu.requestAdapter();
  if (adapter === null) {
    return {
      device: undefined,
      skip: "navigator.gpu found no adapter (install Mesa lavapipe for a software one)",
    };
  }
  const limits = adapter.limits as unknown as Record<string, number>;
  const requiredLimits: Record<string, number> = {};
  for (const k of RAISED_LIMITS) if (typeof limits[k] === "number") requiredLimits[k] = limits[k];
  return { device: await adapter.requestDevice({ requiredLimits }), skip: false };
}

/** The process-wide device for WGSL runs (requested on first use). */
export function wgslDevice(): Promise<WgslDevice> {
  return devicePromise ??= requestDevice();
}

async function device(): Promise<GPUDevice> {
  const d = await wgslDevice();
  if (d.device === undefined) throw new Error(`no WebGPU device: ${d.skip}`);
  return d.device;
}

function numbered(code: string): string {
  return code.split("\n").map((l, i) => `${String(i + 1).padStart(4)}| ${l}`).join("\n");
}

/**
 * Compiles `code` and throws with every error of `getCompilationInfo()` (and the numbered
 * source) when there is one. Returns the module and its warnings.
 */
export async function compileWgsl(
  code: string,
): Promise<{ module: GPUShaderModule; warnings: string[] }> {
  const d = await device();
  d.pushErrorScope("validation");
  const module = d.createShaderModule({ code });
  const info = await module.getCompilationInfo();
  const scoped = await d.popErrorScope();
  const text = (m: GPUCompilationMessage) => `${m.lineNum}:${m.linePos} ${m.type}: ${m.message}`;
  const errors = info.messages.filter((m) => m.type === "error").map(text);
  if (errors.length > 0 || scoped !== null) {
    if (scoped !== null) errors.push(scoped.message);
    throw new Error(`WGSL compilation failed:\n${errors.join("\n")}\n${numbered(code)}`);
  }
  return { module, warnings: info.messages.filter((m) => m.type !== "error").map(text) };
}

const pipelines = new Map<string, GPUComputePipeline>();

/** A pipeline with an explicit layout from `src.bindings` (cached by code). */
export async function pipelineOf(src: WgslSource): Promise<GPUComputePipeline> {
  const cached = pipelines.get(src.code);
  if (cached !== undefined) return cached;
  const d = await device();
  const { module } = await compileWgsl(src.code);
  d.pushErrorScope("validation");
  const layout = d.createBindGroupLayout({
    entries: src.bindings.map((b) => ({
      binding: b.binding,
      visibility: STAGE_COMPUTE,
      buffer: { type: b.kind },
    })),
  });
  const pipeline = d.createComputePipeline({
    layout: d.createPipelineLayout({ bindGroupLayouts: [layout] }),
    compute: { module, entryPoint: src.entry },
  });
  const err = await d.popErrorScope();
  if (err !== null) throw new Error(`pipeline: ${err.message}\n${numbered(src.code)}`);
  pipelines.set(src.code, pipeline);
  return pipeline;
}

function makeBuffer(d: GPUDevice, bytes: ArrayBufferView | undefined, size: number, usage: number) {
  const buf = d.createBuffer({ size: Math.max(16, Math.ceil(size / 4) * 4), usage });
  if (bytes !== undefined && bytes.byteLength > 0) {
    d.queue.writeBuffer(buf, 0, bytes.buffer as ArrayBuffer, bytes.byteOffset, bytes.byteLength);
  }
  return buf;
}

/** Runs the pass and reads back `readBack` buffers (in order). */
async function submit(
  d: GPUDevice,
  pipeline: GPUComputePipeline,
  buffers: readonly GPUBuffer[],
  groups: readonly [number, number, number],
  readBack: readonly GPUBuffer[],
): Promise<Uint8Array[]> {
  d.pushErrorScope("validation");
  const bind = d.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
  });
  const enc = d.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bind);
  pass.dispatchWorkgroups(...groups);
  pass.end();
  const staging = readBack.map((b) => {
    const s = d.createBuffer({ size: b.size, usage: MAP_READ | COPY_DST });
    enc.copyBufferToBuffer(b, 0, s, 0, b.size);
    return s;
  });
  d.queue.submit([enc.finish()]);
  const err = await d.popErrorScope();
  if (err !== null) throw new Error(`dispatch: ${err.message}`);
  const out: Uint8Array[] = [];
  for (const s of staging) {
    await s.mapAsync(MAP_MODE_READ);
    out.push(new Uint8Array(s.getMappedRange()).slice());
    s.unmap();
    s.destroy();
  }
  for (const b of buffers) b.destroy();
  return out;
}

type TypedArray = Float32Array | Int32Array | Uint32Array | Float64Array;

/**
 * Dispatches an emitted bulk or stencil kernel: `args` are the user's arguments (without the
 * stencil's `pos`), `groups` the workgroup grid, `grid` the stencil's interior size. Written
 * arrays are copied back into `args`' typed arrays.
 */
export async function dispatchWgsl(
  ir: IrKernel,
  src: WgslSource,
  groups: readonly [number, number, number],
  args: readonly unknown[],
  grid?: { width: number; height: number; depth: number },
): Promise<void> {
  const d = await device();
  const pipeline = await pipelineOf(src);
  const shift = ir.kind === "stencil" ? 1 : 0;
  const buffers: GPUBuffer[] = [];
  const back: { buf: GPUBuffer; arr: TypedArray }[] = [];
  for (const b of src.bindings) {
    if (b.kind === "uniform") {
      const dv = new DataView(new ArrayBuffer(src.uniformSize));
      src.uniformMembers.forEach((m, k) => {
        const raw = m.param === undefined
          ? grid?.[m.name.slice(3) as "width" | "height" | "depth"] ?? 1
          : args[m.param - shift];
        const v = Number(raw);
        if (m.type === "f32") dv.setFloat32(4 * k, v, true);
        else if (m.type === "i32") dv.setInt32(4 * k, v | 0, true);
        else dv.setUint32(4 * k, v >>> 0, true);
      });
      buffers.push(makeBuffer(d, dv, src.uniformSize, UNIFORM | COPY_DST));
      continue;
    }
    const arr = args[b.param! - shift] as TypedArray;
    const buf = makeBuffer(d, arr, arr.byteLength, STORAGE | COPY_DST | COPY_SRC);
    buffers.push(buf);
    if (b.kind === "storage") back.push({ buf, arr });
  }
  const bytes = await submit(d, pipeline, buffers, groups, back.map((x) => x.buf));
  back.forEach(({ arr }, i) => {
    const ctor = arr.constructor as new (b: ArrayBuffer, o: number, n: number) => TypedArray;
    arr.set(new ctor(bytes[i].buffer as ArrayBuffer, 0, arr.length));
  });
}

function gridOf(grid: WgslLaunch["grid"]): [number, number, number] {
  return typeof grid === "number" ? [grid, 1, 1] : [grid[0], grid[1] ?? 1, grid[2] ?? 1];
}

/**
 * Dispatches an emitted handler over `messages` with the harness semantics of `runHandlerJs`
 * (control words, outbox records, replied flags) and decodes what it left.
 */
export async function dispatchHandlerWgsl<
  I extends FieldsSpec,
  O extends FieldsSpec,
  S extends FieldsSpec,
>(
  src: WgslSource,
  def: KernelDefinition<I, O, S>,
  messages: readonly InferFields<I>[],
  options: WgslHandlerOptions<S> = {},
): Promise<WgslHandlerResult> {
  const d = await device();
  const pipeline = await pipelineOf(src);
  const { input, output, state: stateType } = def;
  if (input === undefined) throw new Error(`kernel ${def.id} has no input schema`);
  const n = messages.length;
  const slots = Math.max(1, n);
  const msgBytes = new Uint8Array(slots * input.size);
  messages.forEach((m, i) => input.encodeInto(m, msgBytes, i * input.size));
  const initial = options.initialState ?? def.initialState;
  const stateBytes = stateType === undefined
    ? new Uint8Array(4)
    : initial === undefined
    ? new Uint8Array(stateType.size)
    : stateType.encode(initial);
  const capacity = options.sendCapacity ?? 256;
  const hlc = options.hlcStart ?? 0n;
  const control = new Uint32Array([
    n,
    capacity,
    0,
    Number(hlc & 0xffff_ffffn),
    Number((hlc >> 32n) & 0xffff_ffffn),
    options.nodeId ?? 0,
    0,
    0,
  ]);
  const rw = STORAGE | COPY_DST | COPY_SRC;
  const buffers = [
    makeBuffer(d, msgBytes, msgBytes.byteLength, STORAGE | COPY_DST),
    makeBuffer(d, stateBytes, stateBytes.byteLength, rw),
    makeBuffer(d, undefined, slots * (output?.size ?? 4), rw),
    makeBuffer(d, undefined, slots * 4, rw),
    makeBuffer(d, undefined, Math.max(1, capacity) * src.outboxStride * 4, rw),
    makeBuffer(d, control, control.byteLength, rw),
  ];
  const [stateOut, replyOut, repliedOut, outbox, controlOut] = await submit(
    d,
    pipeline,
    buffers,
    [1, 1, 1],
    buffers.slice(1),
  );
  const replied = new Uint32Array(repliedOut.buffer as ArrayBuffer, 0, slots);
  const replies: (object | undefined)[] = [];
  for (let i = 0; i < n; i++) {
    replies.push(
      replied[i] !== 0 && output !== undefined
        ? output.decode(replyOut, i * output.size)
        : undefined,
    );
  }
  const ctl = new Uint32Array(controlOut.buffer as ArrayBuffer, 0, 6);
  const words = new Uint32Array(outbox.buffer as ArrayBuffer);
  const sends: WgslSend[] = [];
  for (let k = 0; k < Math.min(ctl[2], capacity); k++) {
    const at = k * src.outboxStride;
    const target = src.sendTargets[words[at]];
    sends.push({
      target: target.dest,
      index: words[at + 1],
      message: target.schema.decode(outbox, (at + 2) * 4),
    });
  }
  return {
    replies,
    state: stateType === undefined ? {} : stateType.decode(stateOut),
    sends,
    sendCount: ctl[2],
    hlc: BigInt(ctl[3]) | (BigInt(ctl[4]) << 32n),
  };
}

// ---------------------------------------------------------------------------------------------
// Wrappers over the checker

/** `runJs` on WebGPU: checks, emits and dispatches `kernel` over `launch.grid` blocks. */
export async function runWgsl(
  kernel: BulkKernel,
  launch: WgslLaunch,
  ...args: unknown[]
): Promise<void> {
  const ir = checkKernel(kernel);
  await dispatchWgsl(ir, emitWgsl(ir), gridOf(launch.grid), args);
}

/** `runStencilJs` on WebGPU: one thread per interior cell of `size`, tiles as workgroups. */
export async function runStencilWgsl(
  kernel: StencilKernel,
  size: WgslStencilSize,
  ...args: unknown[]
): Promise<void> {
  const ir = checkKernel(kernel);
  const depth = size.depth ?? 1;
  const [tx, ty, tz] = kernel.workgroupSize;
  const groups: [number, number, number] = [
    Math.ceil(size.width / tx),
    Math.ceil(size.height / ty),
    Math.ceil(depth / tz),
  ];
  await dispatchWgsl(ir, emitWgsl(ir), groups, args, { ...size, depth });
}

/** `runHandlerJs` on WebGPU: the handler's batch entry over `messages`, 1×1. */
export async function runHandlerWgsl<
  I extends FieldsSpec,
  O extends FieldsSpec,
  S extends FieldsSpec,
>(
  def: KernelDefinition<I, O, S>,
  messages: readonly InferFields<I>[],
  options: WgslHandlerOptions<S> = {},
): Promise<WgslHandlerResult> {
  const ir = checkKernel(def as unknown as KernelDefinition);
  return await dispatchHandlerWgsl(emitWgsl(ir), def, messages, options);
}
