// The CUDA counterpart of webgpu_run.ts: runs a DSL kernel through checkKernel → emitCuda →
// NVRTC → cuLaunchKernel with the same signatures as the JS runners, writing results back into
// the caller's typed arrays. Used by the equivalence corpus on a machine with an NVIDIA GPU
// (bench/dsl_corpus.ts); elsewhere `cudaDevice()` says why there is none.
import {
  type CudaContext,
  CudaDriver,
  type CudaModule,
  type KernelArg,
  Nvrtc,
} from "../../ffi/mod.ts";
import type { FieldsSpec, InferFields } from "../../src/core/schema.ts";
import type { KernelDefinition } from "../../src/runtime/kernel.ts";
import { checkKernel } from "../../src/dsl/check.ts";
import { type CudaSource, emitCuda } from "../../src/dsl/cuda.ts";
import type { BulkKernel, StencilKernel } from "../../src/dsl/define.ts";
import type { IrKernel } from "../../src/dsl/ir.ts";

/** A CUDA context with NVRTC, or why there is none. */
export type CudaRig =
  | { readonly ctx: CudaContext; readonly nvrtc: Nvrtc; readonly skip: false }
  | { readonly ctx: undefined; readonly nvrtc: undefined; readonly skip: string };

let rig: CudaRig | undefined;

/** Opens the driver, device 0 and NVRTC once per process. */
export function cudaDevice(): CudaRig {
  if (rig !== undefined) return rig;
  try {
    const driver = CudaDriver.open();
    if (driver.deviceCount() === 0) throw new Error("cuDeviceGetCount reports no device");
    rig = { ctx: driver.createContext(0), nvrtc: Nvrtc.open(), skip: false };
  } catch (err) {
    rig = {
      ctx: undefined,
      nvrtc: undefined,
      skip: `no CUDA device: ${(err as Error).message.split("\n")[0]}`,
    };
  }
  return rig;
}

/** Compile timings of the last module, for reports. */
export const lastCompile = { nvrtcMs: 0, loadMs: 0, cached: false };

const modules = new Map<string, CudaModule>();

function moduleOf(src: CudaSource, name: string): CudaModule {
  const r = cudaDevice();
  if (r.ctx === undefined) throw new Error(r.skip);
  let m = modules.get(src.code);
  if (m !== undefined) return m;
  const t0 = performance.now();
  const compiled = r.nvrtc.compile(src.code, {
    arch: r.ctx.device.arch,
    context: `kernel ${name}`,
    options: ["--std=c++17"],
  });
  const t1 = performance.now();
  m = r.ctx.loadModule(compiled.image);
  lastCompile.nvrtcMs = t1 - t0;
  lastCompile.loadMs = performance.now() - t1;
  lastCompile.cached = compiled.cached;
  modules.set(src.code, m);
  return m;
}

type Typed = Float32Array | Int32Array | Uint32Array | Float64Array;

function scalarArg(scalar: string, v: unknown): KernelArg {
  switch (scalar) {
    case "f32":
      return { f32: Number(v) };
    case "f64":
      return { f64: Number(v) };
    case "i32":
      return { i32: Number(v) | 0 };
    case "bool":
      return { u32: v ? 1 : 0 };
    default:
      return { u32: Number(v) >>> 0 };
  }
}

/** Launches an emitted bulk or stencil kernel over `grid` blocks with the user's `args`. */
export function dispatchCuda(
  ir: IrKernel,
  src: CudaSource,
  grid: readonly [number, number, number],
  args: readonly unknown[],
  size?: { width: number; height: number; depth: number },
): void {
  const r = cudaDevice();
  if (r.ctx === undefined) throw new Error(r.skip);
  const { ctx } = r;
  const fn = moduleOf(src, ir.name).getFunction(src.entry);
  const allocs: { ptr: bigint; arr: Typed; written: boolean }[] = [];
  try {
    const launchArgs: KernelArg[] = src.params.map((p) => {
      if (p.kind === "array") {
        const arr = args[p.arg] as Typed;
        const ptr = ctx.alloc(arr.byteLength);
        allocs.push({ ptr, arr, written: p.written });
        ctx.copyHtoD(ptr, arr);
        return { ptr };
      }
      if (p.kind === "scalar") return scalarArg(p.scalar, args[p.arg]);
      if (p.kind === "grid") return { i32: size?.[p.axis] ?? 1 };
      throw new Error(`a bulk kernel has no ${p.kind} parameter`);
    });
    ctx.launch(fn, grid, src.workgroupSize, 0, null, launchArgs);
    ctx.synchronize();
    for (const a of allocs) if (a.written) ctx.copyDtoH(a.arr, a.ptr);
  } finally {
    for (const a of allocs) ctx.free(a.ptr);
  }
}

/** `runJs` on CUDA. */
export function runCuda(
  kernel: BulkKernel,
  launch: { grid: number | readonly [number, number?, number?] },
  ...args: unknown[]
): void {
  const ir = checkKernel(kernel);
  const g = launch.grid;
  const grid: [number, number, number] = typeof g === "number"
    ? [g, 1, 1]
    : [g[0], g[1] ?? 1, g[2] ?? 1];
  dispatchCuda(ir, emitCuda(ir), grid, args);
}

/** `runStencilJs` on CUDA: one thread per interior cell, tiles as blocks. */
export function runStencilCuda(
  kernel: StencilKernel,
  size: { width: number; height: number; depth?: number },
  ...args: unknown[]
): void {
  const ir = checkKernel(kernel);
  const depth = size.depth ?? 1;
  const [tx, ty, tz] = kernel.workgroupSize;
  const grid: [number, number, number] = [
    Math.ceil(size.width / tx),
    Math.ceil(size.height / ty),
    Math.ceil(depth / tz),
  ];
  dispatchCuda(ir, emitCuda(ir), grid, args, { width: size.width, height: size.height, depth });
}

/** What {@linkcode runHandlerCuda} returns (as `runHandlerJs`). */
export interface CudaHandlerResult {
  /** Per message: the decoded reply, or undefined. */
  readonly replies: (object | undefined)[];
  /** State after the last message (`{}` without state). */
  readonly state: object;
  /** The first `sendCapacity` sends. */
  readonly sends: { readonly target: string; readonly index: number; readonly message: object }[];
  /** Every send, recorded or not. */
  readonly sendCount: number;
  /** The HLC word after the last message. */
  readonly hlc: bigint;
}

/** `runHandlerJs` on CUDA: the handler's batch entry over `messages`, one thread. */
export function runHandlerCuda<I extends FieldsSpec, O extends FieldsSpec, S extends FieldsSpec>(
  def: KernelDefinition<I, O, S>,
  messages: readonly InferFields<I>[],
  options: {
    readonly initialState?: InferFields<S>;
    readonly hlcStart?: bigint;
    readonly nodeId?: number;
    readonly sendCapacity?: number;
  } = {},
): CudaHandlerResult {
  const r = cudaDevice();
  if (r.ctx === undefined) throw new Error(r.skip);
  const { ctx } = r;
  const ir = checkKernel(def as unknown as KernelDefinition);
  const src = emitCuda(ir);
  const abi = src.handler;
  if (abi === undefined) throw new Error(`${def.id}: no handler ABI`);
  const { input, output, state: stateType } = def;
  if (input === undefined) throw new Error(`${def.id}: no input schema`);
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
  const replies = new Uint8Array(slots * (output?.size ?? 4));
  const replied = new Uint32Array(slots);
  const outbox = new Uint32Array(Math.max(1, capacity * abi.outboxStride));
  const buffers: Record<string, Uint8Array | Uint32Array> = {
    msgs: msgBytes,
    state: stateBytes,
    replies,
    replied,
    outbox,
    control,
  };
  const fn = moduleOf(src, ir.name).getFunction(src.entry);
  const ptrs = new Map<string, bigint>();
  try {
    const args: KernelArg[] = src.params.map((p) => {
      if (p.kind !== "handler") throw new Error(`handler entry has a ${p.kind} parameter`);
      const buf = buffers[p.role];
      const ptr = ctx.alloc(buf.byteLength);
      ctx.copyHtoD(ptr, buf);
      ptrs.set(p.role, ptr);
      return { ptr };
    });
    ctx.launch(fn, 1, 1, 0, null, args);
    ctx.synchronize();
    for (const [role, ptr] of ptrs) if (role !== "msgs") ctx.copyDtoH(buffers[role], ptr);
  } finally {
    for (const ptr of ptrs.values()) ctx.free(ptr);
  }
  const decoded: (object | undefined)[] = [];
  for (let i = 0; i < n; i++) {
    decoded.push(
      replied[i] !== 0 && output !== undefined
        ? output.decode(replies, i * output.size)
        : undefined,
    );
  }
  const sends: { target: string; index: number; message: object }[] = [];
  const outboxBytes = new Uint8Array(outbox.buffer);
  for (let k = 0; k < Math.min(control[2], capacity); k++) {
    const at = k * abi.outboxStride;
    const target = ir.handler!.sendTargets[outbox[at]];
    sends.push({
      target: target.dest,
      index: outbox[at + 1],
      message: target.schema.decode(outboxBytes, (at + 2) * 4),
    });
  }
  return {
    replies: decoded,
    state: stateType === undefined ? {} : stateType.decode(stateBytes),
    sends,
    sendCount: control[2],
    hlc: BigInt(control[3]) | (BigInt(control[4]) << 32n),
  };
}
