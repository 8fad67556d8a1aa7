/**
 * The kernel DSL's JS path: it runs the user's own function, thread by thread, with the index
 * intrinsics set as the GPU would set them. This is the reference the CUDA C and WGSL outputs are
 * compared against, and what a kernel runs as when no GPU is present.
 *
 * A kernel that calls `barrier()` cannot run as one plain call per thread: every thread of a block
 * must reach the barrier before any continues. For those the runner rebuilds the function from
 * its own source as a generator (`yield` where each `barrier()` statement was) and steps a block's
 * threads round-robin from one barrier to the next. The rebuilt function sees the DSL's
 * intrinsics, `Math` and the kernel's device functions by name — exactly the free identifiers
 * the checker allows, so nothing it closes over is lost.
 *
 * Handlers (`defineKernel`) run against a real state view and message views, with a context
 * whose `send` records and whose `now()` ticks a harness HLC word the way the GPU harness does.
 *
 * @example
 * ```ts
 * import { blockDim, blockIdx, bulkKernel, runJs, threadIdx } from "@ringkernel/core";
 * const scale = bulkKernel({ name: "scale", params: ["f32[]", "f32", "i32"] }, (a, s, n) => {
 *   const i = blockIdx.x * blockDim.x + threadIdx.x;
 *   if (i < n) a[i] = a[i] * s;
 * });
 * const data = new Float32Array([1, 2, 3]);
 * runJs(scale, { grid: 1 }, data, 2, data.length);
 * console.log(data); // Float32Array [2, 4, 6]
 * ```
 * @module
 */

import type { Node as AcornNode } from "acorn";
import { DslError, ErrorCode, InvalidStateError, ValidationError } from "../core/errors.ts";
import { HlcTimestamp } from "../core/hlc.ts";
import type { FieldsSpec, InferFields, Message, StructView } from "../core/schema.ts";
import type { KernelContext, KernelDefinition, KernelStateView } from "../runtime/kernel.ts";
import type { K2kReceipt } from "../runtime/k2k.ts";
import {
  type AnyDeviceFunction,
  type BulkKernel,
  GridPos,
  type ParamType,
  type ParamValues,
  type StencilKernel,
} from "./define.ts";
import * as intrinsics from "./intrinsics.ts";
import {
  blockDim,
  blockIdx,
  type Dim3,
  enterThread,
  gridDim,
  type SharedArrayProvider,
  type SharedKind,
  threadIdx,
} from "./intrinsics.ts";
import { parseFunction } from "./parse.ts";

// ---------------------------------------------------------------------------------------------
// Launch validation

/** A grid of blocks: a number is `[n, 1, 1]`. */
export type GridSize = number | readonly [number, number?, number?];

/** How {@linkcode runJs} launches a bulk kernel. */
export interface JsLaunch {
  /** Blocks in the grid (each of `kernel.workgroupSize` threads). */
  readonly grid: GridSize;
}

/** The interior size of a stencil grid (`depth` only for 3D stencils; default 1). */
export interface StencilSize {
  /** Interior width in cells. */
  readonly width: number;
  /** Interior height in cells. */
  readonly height: number;
  /** Interior depth in cells (3D). */
  readonly depth?: number;
}

function invalid(message: string): never {
  throw new ValidationError(ErrorCode.InvalidArgument, message);
}

function gridDims(name: string, grid: GridSize): [number, number, number] {
  const raw: readonly (number | undefined)[] = typeof grid === "number" ? [grid] : grid;
  if (!Array.isArray(raw) || raw.length < 1 || raw.length > 3) {
    invalid(`kernel ${name}: grid must be a number or [x, y?, z?], got ${String(grid)}`);
  }
  const d: [number, number, number] = [raw[0] ?? 1, raw[1] ?? 1, raw[2] ?? 1];
  if (d.some((n) => !Number.isInteger(n) || n < 1)) {
    invalid(`kernel ${name}: grid sizes must be positive integers, got [${d.join(", ")}]`);
  }
  return d;
}

const ARRAY_CTORS = {
  "f32[]": Float32Array,
  "i32[]": Int32Array,
  "u32[]": Uint32Array,
  "f64[]": Float64Array,
} as const;

/**
 * Checks `args` against `params` and returns them as the GPU would see them: f32 scalars rounded
 * to f32 (the kernel would otherwise compute with a more precise value than any GPU gets).
 */
function checkArgs<P extends readonly ParamType[]>(
  name: string,
  params: P,
  args: readonly unknown[],
): ParamValues<P> {
  if (args.length !== params.length) {
    invalid(
      `kernel ${name} takes ${params.length} arguments (${params.join(", ")}), got ${args.length}`,
    );
  }
  const out = args.map((arg, i) => {
    const p = params[i];
    const where = `kernel ${name}: argument ${i} (${p})`;
    if (p === "f32[]" || p === "i32[]" || p === "u32[]" || p === "f64[]") {
      const ctor = ARRAY_CTORS[p];
      if (!(arg instanceof ctor)) invalid(`${where} must be a ${ctor.name}, got ${describe(arg)}`);
      return arg;
    }
    if (p === "bool") {
      if (typeof arg !== "boolean") invalid(`${where} must be a boolean, got ${describe(arg)}`);
      return arg;
    }
    if (typeof arg !== "number") invalid(`${where} must be a number, got ${describe(arg)}`);
    if (p === "i32" && !(Number.isInteger(arg) && arg >= -(2 ** 31) && arg < 2 ** 31)) {
      invalid(`${where} must be an integer in [-2^31, 2^31), got ${arg}`);
    }
    if (p === "u32" && !(Number.isInteger(arg) && arg >= 0 && arg < 2 ** 32)) {
      invalid(`${where} must be an integer in [0, 2^32), got ${arg}`);
    }
    return p === "f32" ? Math.fround(arg) : arg;
  });
  return out as ParamValues<P>;
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (typeof v === "object") return v.constructor?.name ?? "an object";
  return `${typeof v} ${String(v)}`;
}

// ---------------------------------------------------------------------------------------------
// Barrier kernels: the generator transform

type Step = () => IteratorResult<unknown, unknown>;
type GeneratorFactory = (...args: unknown[]) => Iterator<unknown, unknown, undefined>;

/** How a kernel runs: plain calls, or a generator rebuilt from its source. */
type Plan = { readonly barrier: false } | {
  readonly barrier: true;
  readonly make: GeneratorFactory;
  /** Barrier count in the source, for error messages. */
  readonly barriers: number;
};

const plans = new WeakMap<object, Plan>();

/** The value names a rebuilt kernel sees: every intrinsic except the runner's own hook. */
function intrinsicBindings(): [string, unknown][] {
  return Object.entries(intrinsics).filter(([k]) => k !== "enterThread");
}

function walk(node: unknown, visit: (n: AcornNode, parent: AcornNode | undefined) => void): void {
  const go = (value: unknown, parent: AcornNode | undefined): void => {
    if (typeof value !== "object" || value === null) return;
    if (Array.isArray(value)) {
      for (const item of value) go(item, parent);
      return;
    }
    const n = value as AcornNode;
    if (typeof n.type !== "string") return;
    visit(n, parent);
    for (const [key, child] of Object.entries(n)) {
      if (key !== "loc" && key !== "range") go(child, n);
    }
  };
  go(node, undefined);
}

interface CallNode extends AcornNode {
  readonly callee: AcornNode & { readonly name?: string };
  readonly arguments: readonly AcornNode[];
}

function isBarrierCall(n: AcornNode): n is CallNode {
  const c = n as Partial<CallNode>;
  return n.type === "CallExpression" && c.callee?.type === "Identifier" &&
    c.callee.name === "barrier";
}

/**
 * Plans a kernel: scans its AST for `barrier()` and, when there is one, builds the generator.
 * `fn` is the user's function; `uses` its device functions (bound by their DSL names).
 */
function planOf(
  key: object,
  name: string,
  fn: (...args: never[]) => unknown,
  uses: readonly AnyDeviceFunction[],
): Plan {
  const cached = plans.get(key);
  if (cached !== undefined) return cached;
  const parsed = parseFunction(fn, name);
  const { source, node } = parsed;
  const edits: { start: number; end: number }[] = [];
  walk(node.body, (n, parent) => {
    if (!isBarrierCall(n)) return;
    if (parent?.type !== "ExpressionStatement" || n.arguments.length !== 0) {
      throw new DslError(
        ErrorCode.DslUnsupported,
        name,
        "barrier() takes no arguments and must be a statement of its own",
      );
    }
    edits.push({ start: parent.start, end: parent.end });
  });
  let plan: Plan;
  if (edits.length === 0) {
    plan = { barrier: false };
  } else {
    const body = node.body as AcornNode;
    let text = "";
    let at = body.start;
    for (const e of edits.sort((a, b) => a.start - b.start)) {
      text += `${source.slice(at, e.start)}yield;`;
      at = e.end;
    }
    text += source.slice(at, body.end);
    const params = node.params.length === 0
      ? ""
      : source.slice(node.params[0].start, node.params[node.params.length - 1].end);
    const bindings: [string, unknown][] = [
      ...intrinsicBindings(),
      ["Math", Math],
      ...uses.map((u): [string, unknown] => [u.dslName, u]),
    ];
    // A device function named like an intrinsic would shadow it; the later binding wins, as the
    // checker resolves `uses` names first.
    const names = bindings.map(([k]) => k);
    const factory = new Function(
      ...names,
      `"use strict";\nreturn function* ${name}_rk_gen(${params}) ${text};`,
    ) as (
      ...values: unknown[]
    ) => GeneratorFactory;
    plan = { barrier: true, make: factory(...bindings.map(([, v]) => v)), barriers: edits.length };
  }
  plans.set(key, plan);
  return plan;
}

// ---------------------------------------------------------------------------------------------
// Blocks

/** The workgroup arrays of one block, handed out by declaration ordinal. */
class BlockShared implements SharedArrayProvider {
  readonly #arrays: { kind: SharedKind; array: Float32Array | Int32Array | Uint32Array }[] = [];
  readonly #kernel: string;

  constructor(kernel: string) {
    this.#kernel = kernel;
  }

  get(ordinal: number, kind: SharedKind, length: number): Float32Array | Int32Array | Uint32Array {
    const have = this.#arrays[ordinal];
    if (have !== undefined) {
      if (have.kind !== kind || have.array.length !== length) {
        throw new InvalidStateError(
          ErrorCode.InvalidState,
          `kernel ${this.#kernel}: workgroup array #${ordinal} was declared as ${have.kind}[${have.array.length}] ` +
            `by one thread and ${kind}[${length}] by another; declare shared arrays unconditionally`,
        );
      }
      return have.array;
    }
    if (!Number.isInteger(length) || length < 1) {
      invalid(
        `kernel ${this.#kernel}: sharedArray length must be a positive integer, got ${length}`,
      );
    }
    const array = kind === "f32"
      ? new Float32Array(length)
      : kind === "i32"
      ? new Int32Array(length)
      : new Uint32Array(length);
    this.#arrays[ordinal] = { kind, array };
    return array;
  }
}

/**
 * One thread's view of its block's arrays. A suspended generator thread resumes after other
 * threads declared theirs, so it keeps its own declaration count rather than the global one.
 */
class ThreadShared implements SharedArrayProvider {
  #next = 0;
  readonly #block: BlockShared;

  constructor(block: BlockShared) {
    this.#block = block;
  }

  get(_ordinal: number, kind: SharedKind, length: number): Float32Array | Int32Array | Uint32Array {
    return this.#block.get(this.#next++, kind, length);
  }
}

function setDim(d: Dim3, x: number, y: number, z: number): void {
  d.x = x;
  d.y = y;
  d.z = z;
}

/** One thread of a block: its local index, plus what to do before it runs. */
interface ThreadSlot {
  readonly tx: number;
  readonly ty: number;
  readonly tz: number;
}

/**
 * Runs one block's threads round-robin, each from one barrier to the next. All live threads must
 * reach the same barrier, or all finish; anything else is a divergent barrier, which on a GPU
 * deadlocks or corrupts the block's shared memory, so the JS path refuses it.
 */
function runBarrierBlock(
  kernel: string,
  block: readonly [number, number, number],
  threads: readonly ThreadSlot[],
  start: (slot: ThreadSlot, shared: ThreadShared) => Iterator<unknown, unknown, undefined>,
  shared: BlockShared,
): void {
  const steps: Step[] = [];
  const enter = (slot: ThreadSlot, provider: ThreadShared): void => {
    setDim(threadIdx, slot.tx, slot.ty, slot.tz);
    enterThread(provider);
  };
  for (const slot of threads) {
    const provider = new ThreadShared(shared);
    let gen: Iterator<unknown, unknown, undefined> | undefined;
    steps.push(() => {
      enter(slot, provider);
      gen ??= start(slot, provider);
      return gen.next();
    });
  }
  let live = steps.map((_, i) => i);
  let phase = 0;
  while (live.length > 0) {
    const waiting: number[] = [];
    const finished: number[] = [];
    for (const i of live) (steps[i]().done ? finished : waiting).push(i);
    if (waiting.length > 0 && finished.length > 0) {
      const who = (list: number[]) => {
        const shown = list.slice(0, 4).map((i) => {
          const t = threads[i];
          return `(${t.tx},${t.ty},${t.tz})`;
        });
        return shown.join(", ") + (list.length > 4 ? ` and ${list.length - 4} more` : "");
      };
      throw new InvalidStateError(
        ErrorCode.InvalidState,
        `kernel ${kernel}: divergent barrier in block (${block.join(",")}): threads ${
          who(finished)
        } ` +
          `returned while threads ${who(waiting)} wait at barrier ${
            phase + 1
          }; every thread of a ` +
          `block must reach every barrier (move early returns after the last barrier)`,
      );
    }
    live = waiting;
    phase++;
  }
}

function resetIntrinsics(): void {
  setDim(threadIdx, 0, 0, 0);
  setDim(blockIdx, 0, 0, 0);
  setDim(blockDim, 1, 1, 1);
  setDim(gridDim, 1, 1, 1);
  enterThread(undefined);
}

// ---------------------------------------------------------------------------------------------
// Bulk kernels

/**
 * Runs a bulk kernel in JS: `kernel.fn(...args)` once per thread of every block, with
 * `threadIdx`/`blockIdx`/`blockDim`/`gridDim` set as on the GPU (`blockDim` is the kernel's
 * workgroup size). Blocks run one after another, threads of a block in x, then y, then z order;
 * each block gets fresh zeroed `sharedArray`s. A kernel that calls `barrier()` runs its block's
 * threads round-robin between barriers.
 *
 * Arguments are checked against `kernel.params` (`ValidationError`, `E_INVALID_ARGUMENT`, for a
 * wrong count or type, or a grid that is not positive integers); f32 scalars are rounded to f32.
 * A divergent barrier (some threads returned while others wait at a barrier) throws
 * `InvalidStateError`. Arrays are written in place.
 */
export function runJs<P extends readonly ParamType[]>(
  kernel: BulkKernel<P>,
  launch: JsLaunch,
  ...args: ParamValues<P>
): void {
  if (typeof launch !== "object" || launch === null) {
    invalid(`kernel ${kernel.name}: launch must be { grid }`);
  }
  const [gx, gy, gz] = gridDims(kernel.name, launch.grid);
  const values = checkArgs(kernel.name, kernel.params, args);
  const [bx, by, bz] = kernel.workgroupSize;
  const plan = planOf(kernel, kernel.name, kernel.fn, kernel.uses);
  const threads: ThreadSlot[] = [];
  for (let tz = 0; tz < bz; tz++) {
    for (let ty = 0; ty < by; ty++) {
      for (let tx = 0; tx < bx; tx++) threads.push({ tx, ty, tz });
    }
  }
  try {
    setDim(blockDim, bx, by, bz);
    setDim(gridDim, gx, gy, gz);
    for (let z = 0; z < gz; z++) {
      for (let y = 0; y < gy; y++) {
        for (let x = 0; x < gx; x++) {
          setDim(blockIdx, x, y, z);
          const shared = new BlockShared(kernel.name);
          if (!plan.barrier) {
            for (const t of threads) {
              setDim(threadIdx, t.tx, t.ty, t.tz);
              enterThread(shared);
              kernel.fn(...values);
            }
          } else {
            runBarrierBlock(kernel.name, [x, y, z], threads, () => plan.make(...values), shared);
          }
        }
      }
    }
  } finally {
    resetIntrinsics();
  }
}

// ---------------------------------------------------------------------------------------------
// Stencils

/** The padded buffer length a stencil grid of `size` needs (elements). */
export function stencilBufferLength(
  kernel: Pick<StencilKernel, "grid" | "halo">,
  size: StencilSize,
): number {
  const h = kernel.halo;
  const planes = kernel.grid === "3d" ? (size.depth ?? 1) + 2 * h : 1;
  return (size.width + 2 * h) * (size.height + 2 * h) * planes;
}

/**
 * Runs a stencil kernel in JS: `kernel.fn(pos, ...args)` once per interior cell of a
 * `width × height (× depth)` grid, with `pos` (a {@linkcode GridPos}) moved to the cell. Cells run
 * tile by tile (a tile is the kernel's workgroup), and `threadIdx`/`blockIdx` are set as the
 * GPU's thread for that cell would see them; threads of a partial tile that fall outside the
 * interior do not run (the GPU's do nothing). Arrays are padded by `kernel.halo` on every side
 * (see {@linkcode stencilBufferLength}).
 *
 * Throws `ValidationError` for a size that is not positive integers (or a depth on a 2D stencil)
 * and for arguments that do not match `kernel.params`.
 */
export function runStencilJs<P extends readonly ParamType[]>(
  kernel: StencilKernel<P>,
  size: StencilSize,
  ...args: ParamValues<P>
): void {
  const name = kernel.name;
  if (typeof size !== "object" || size === null) {
    invalid(`stencil ${name}: size must be { width, height, depth? }`);
  }
  const { width, height } = size;
  const depth = size.depth ?? 1;
  for (const [k, v] of [["width", width], ["height", height], ["depth", depth]] as const) {
    if (!Number.isInteger(v) || v < 1) {
      invalid(`stencil ${name}: ${k} must be a positive integer, got ${v}`);
    }
  }
  if (kernel.grid === "2d" && depth !== 1) {
    invalid(`stencil ${name} is 2D; it takes no depth (got ${depth})`);
  }
  const values = checkArgs(name, kernel.params, args);
  const [tx0, ty0, tz0] = kernel.tile;
  const blocks: [number, number, number] = [
    Math.ceil(width / tx0),
    Math.ceil(height / ty0),
    Math.ceil(depth / tz0),
  ];
  const plan = planOf(kernel, name, kernel.fn, kernel.uses);
  const dims = kernel.grid === "3d" ? 3 : 2;
  const pos = new GridPos(width, height, depth, kernel.halo, dims);
  try {
    setDim(blockDim, tx0, ty0, tz0);
    setDim(gridDim, ...blocks);
    for (let bz = 0; bz < blocks[2]; bz++) {
      for (let by = 0; by < blocks[1]; by++) {
        for (let bx = 0; bx < blocks[0]; bx++) {
          setDim(blockIdx, bx, by, bz);
          const shared = new BlockShared(name);
          const threads: ThreadSlot[] = [];
          for (let tz = 0; tz < tz0; tz++) {
            for (let ty = 0; ty < ty0; ty++) {
              for (let tx = 0; tx < tx0; tx++) {
                const x = bx * tx0 + tx;
                const y = by * ty0 + ty;
                const z = bz * tz0 + tz;
                if (x < width && y < height && z < depth) threads.push({ tx, ty, tz });
              }
            }
          }
          const cell = (t: ThreadSlot): [number, number, number] => [
            bx * tx0 + t.tx,
            by * ty0 + t.ty,
            bz * tz0 + t.tz,
          ];
          if (!plan.barrier) {
            for (const t of threads) {
              setDim(threadIdx, t.tx, t.ty, t.tz);
              enterThread(shared);
              pos.moveTo(...cell(t));
              kernel.fn(pos, ...values);
            }
          } else {
            // A suspended thread keeps its own position: the shared cursor would have moved on.
            runBarrierBlock(name, [bx, by, bz], threads, (t) => {
              const own = new GridPos(width, height, depth, kernel.halo, dims);
              own.moveTo(...cell(t));
              return plan.make(own, ...values);
            }, shared);
          }
        }
      }
    }
  } finally {
    resetIntrinsics();
  }
}

// ---------------------------------------------------------------------------------------------
// Handlers

/** Options of {@linkcode runHandlerJs}. */
export interface HandlerRunOptions<S extends FieldsSpec = FieldsSpec> {
  /** State before the first message; default `def.initialState`, else zeros. */
  readonly initialState?: InferFields<S>;
  /** HLC word before the first `ctx.now()` (physical << 16 | logical); default 0n. */
  readonly hlcStart?: bigint;
  /** Node id of the timestamps `ctx.now()` returns; default 0. */
  readonly nodeId?: number;
  /** Sends recorded (later ones are counted only, as the GPU outbox does); default 256. */
  readonly sendCapacity?: number;
}

/** A message a handler sent with `ctx.send`. */
export interface RecordedSend {
  /** The destination kernel id. */
  readonly target: string;
  /** Index of the message whose handling sent it. */
  readonly index: number;
  /** The sent message, decoded (so f32 fields are f32-rounded, as the bytes carry them). */
  readonly message: object;
}

/** What {@linkcode runHandlerJs} returns. */
export interface HandlerRunResult {
  /** Per message: the decoded reply, or undefined when the handler returned none. */
  readonly replies: (object | undefined)[];
  /** The state after the last message, decoded (`{}` for a kernel without state). */
  readonly state: object;
  /** The first `sendCapacity` sends, in order. */
  readonly sends: RecordedSend[];
  /** Every send, recorded or not. */
  readonly sendCount: number;
  /** The HLC word after the last message (what the GPU harness leaves in control[3..4]). */
  readonly hlc: bigint;
}

/** Default of {@linkcode HandlerRunOptions.sendCapacity}. */
export const DEFAULT_SEND_CAPACITY = 256;

/**
 * Runs a `defineKernel` handler in JS over `messages`, in order, with the semantics of the GPU
 * harness: state is a real view over a state buffer (zeroed, or `initialState` /
 * `def.initialState`), each message is encoded with `def.input` and handed over as a view, and
 * the context's `now()` adds 1 to a 64-bit HLC word (start `hlcStart`) and returns it as an
 * {@linkcode HlcTimestamp} (physical = word >> 16, logical = word & 0xffff, node `nodeId`);
 * `send(dest, message)` records the encoded-and-decoded message (up to `sendCapacity`) and
 * counts every send. Replies are encoded with `def.output` and decoded.
 *
 * Throws `ValidationError` for a definition without a handler or input schema, for options out
 * of range, and `InvalidStateError` when the handler returns a reply but the kernel declares no
 * output. Messages that do not fit the input schema throw its `SchemaError`.
 */
export function runHandlerJs<I extends FieldsSpec, O extends FieldsSpec, S extends FieldsSpec>(
  def: KernelDefinition<I, O, S>,
  messages: readonly InferFields<I>[],
  options: HandlerRunOptions<S> = {},
): HandlerRunResult {
  const { input, output, handler } = def;
  if (handler === undefined || input === undefined) {
    invalid(`kernel ${def.id}: runHandlerJs needs a defineKernel definition with a handler`);
  }
  if (!Array.isArray(messages)) invalid(`kernel ${def.id}: messages must be an array`);
  const capacity = options.sendCapacity ?? DEFAULT_SEND_CAPACITY;
  if (!Number.isInteger(capacity) || capacity < 0) {
    invalid(`kernel ${def.id}: sendCapacity must be a non-negative integer, got ${capacity}`);
  }
  const nodeId = options.nodeId ?? 0;
  if (!Number.isInteger(nodeId) || nodeId < 0 || nodeId > 0xffff_ffff) {
    invalid(`kernel ${def.id}: nodeId must be a u32, got ${nodeId}`);
  }
  let word = options.hlcStart ?? 0n;
  if (typeof word !== "bigint" || word < 0n || word >= 1n << 64n) {
    invalid(`kernel ${def.id}: hlcStart must be a bigint in [0, 2^64), got ${String(word)}`);
  }

  const stateType = def.state;
  const initial = options.initialState ?? def.initialState;
  let state: KernelStateView<S>;
  let stateView: StructView<S> | undefined;
  if (stateType !== undefined) {
    const bytes = initial === undefined
      ? new Uint8Array(stateType.size)
      : stateType.encode(initial);
    stateView = stateType.view(bytes);
    state = stateView as KernelStateView<S>;
  } else {
    state = {} as KernelStateView<S>;
  }

  const replies: (object | undefined)[] = [];
  const sends: RecordedSend[] = [];
  let sendCount = 0;
  let index = 0;
  const noSimd = (what: string): never => {
    throw new InvalidStateError(
      ErrorCode.InvalidState,
      `kernel ${def.id}: ctx.${what} is not part of the DSL (the JS harness has no SIMD core)`,
    );
  };
  const ctx: KernelContext = {
    kernelId: def.id,
    sourceKernel: 0,
    priority: 0,
    send<F extends FieldsSpec>(dest: string, message: Message<F>): K2kReceipt {
      const schema = message.schema;
      const declared = def.sends[dest];
      if (Object.keys(def.sends).length > 0 && declared !== schema) {
        throw new ValidationError(
          ErrorCode.WrongMessageType,
          `kernel ${def.id}: ctx.send to ${JSON.stringify(dest)} with ${schema.name}, but ` +
            (declared === undefined
              ? "sends declares no such destination"
              : `sends declares ${declared.name} for it`),
        );
      }
      const decoded = schema.decode(schema.encode(message.value));
      if (sendCount < capacity) sends.push({ target: dest, index, message: decoded });
      sendCount++;
      return { status: "Delivered", dest };
    },
    now(): HlcTimestamp {
      word = BigInt.asUintN(64, word + 1n);
      return new HlcTimestamp(Number(word >> 16n), Number(word & 0xffffn), nodeId);
    },
    get simd(): never {
      return noSimd("simd");
    },
    f32Scratch(): Float32Array {
      return noSimd("f32Scratch");
    },
  };

  for (; index < messages.length; index++) {
    const msg = input.view(input.encode(messages[index]));
    const reply = handler(msg, state, ctx);
    if (reply === undefined || reply === null) {
      replies.push(undefined);
      continue;
    }
    if (output === undefined) {
      throw new InvalidStateError(
        ErrorCode.InvalidState,
        `kernel ${def.id}: the handler returned a reply for message ${index} but declares no output`,
      );
    }
    replies.push(output.decode(output.encode(reply)));
  }
  return {
    replies,
    state: stateView === undefined ? {} : stateView.$get(),
    sends,
    sendCount,
    hlc: word,
  };
}
