/**
 * Kernel definitions: `defineKernel({ id, module, input, output, state, handler })`.
 *
 * A definition is data plus one handler function, and it must live in a module: a function cannot
 * be posted to a worker, so the CPU backend's worker imports `module` (the defining module's
 * `import.meta.url`) and picks the exported definition with the same `id`. Importing, rather than
 * shipping `handler.toString()` and re-evaluating it, keeps everything the handler closes over
 * (imported schemas, helper functions, constants) working. The price is the usual one of workers:
 * the module is evaluated once more in each kernel's worker, so module-level mutable variables
 * are per-worker copies, never shared with the host. Keep kernel state in `state`, where both
 * sides see it.
 *
 * The handler contract is backend-neutral, so the kernel DSL can later compile the same function
 * to CUDA C or WGSL: `handler(msg, state, ctx)` gets a zero-copy view of the input payload (in
 * the queue slot), a view of the state struct (in shared memory, kept between messages), and a
 * context with `ctx.send(destKernelId, message)` for kernel-to-kernel messages and `ctx.now()`
 * for the kernel's hybrid logical clock. It returns the reply's fields, or undefined for none.
 * @module
 */

import { ErrorCode, ValidationError } from "../core/errors.ts";
import type { HlcTimestamp } from "../core/hlc.ts";
import {
  type FieldsSpec,
  type InferFields,
  type Message,
  MessageSchema,
  StructType,
  type StructView,
} from "../core/schema.ts";
import type { SimdCore } from "../backends/cpu/simd_core.ts";
import type { K2kReceipt, K2kSendOptions } from "./k2k.ts";

/** What a handler can do besides computing its reply. */
export interface KernelContext {
  /** The id of the kernel running the handler. */
  readonly kernelId: string;
  /** Numeric id of the sender of the current message: 0 for the host, else a kernel's. */
  readonly sourceKernel: number;
  /** Envelope priority of the current message (0 low .. 3 critical). */
  readonly priority: number;
  /**
   * Sends `message` to the kernel `destKernelId` directly into its input queue (no host hop on
   * the CPU backend). Returns a receipt: `Delivered`, `QueueFull` (the message was not sent),
   * `NotFound` (no such kernel, or it is terminating) or `Timeout` (with `timeoutMs`, still full).
   * Throws `ValidationError` (`E_WRONG_MESSAGE_TYPE`) when the destination takes another type,
   * and `InvalidStateError` when this kernel was launched with K2K off.
   */
  send<F extends FieldsSpec>(
    destKernelId: string,
    message: Message<F>,
    options?: K2kSendOptions,
  ): K2kReceipt;
  /** Ticks the kernel's hybrid logical clock (shared with the host through the control block). */
  now(): HlcTimestamp;
  /**
   * The kernel's WebAssembly SIMD core (CPU backend: one instance per kernel worker, over a
   * shared memory of its own). Its methods work only on views of that memory, not on the message
   * or state views (those live in the kernel's queue memory), so copy in and out: take
   * persistent buffers from {@linkcode f32Scratch}, `set` the message's f32 array into them, run
   * `scale`/`add`/`saxpy`/`dot`/`sum`, and return or `set` the result back. A copy of a few
   * hundred floats costs far less than the loop it replaces.
   */
  readonly simd: SimdCore;
  /**
   * A `length`-float buffer in the SIMD core's memory, kept under `key` for the kernel's life:
   * the first call allocates it (the core's arena never frees, so never allocate per message),
   * later calls with the same key and a length no larger return the same memory (a view of the
   * first `length` floats). Contents persist between messages.
   */
  f32Scratch(key: string, length: number): Float32Array;
}

/** The state a handler sees: a view of the state struct, or an empty object without one. */
export type KernelStateView<S extends FieldsSpec> = [keyof S] extends [never]
  ? Record<string, never>
  : StructView<S>;

/** A kernel handler: input view, state view, context → reply fields or undefined. */
export type KernelHandler<I extends FieldsSpec, O extends FieldsSpec, S extends FieldsSpec> = (
  msg: StructView<I>,
  state: KernelStateView<S>,
  ctx: KernelContext,
) => InferFields<O> | undefined | void;

/** What {@linkcode defineKernel} takes. */
export interface KernelSpec<I extends FieldsSpec, O extends FieldsSpec, S extends FieldsSpec> {
  /** Kernel id, unique within a runtime: 1..64 characters. */
  id: string;
  /**
   * The defining module's URL: pass `import.meta.url`. The CPU backend's worker imports it to
   * find this definition among its exports, so the definition must be exported.
   */
  module: string | URL;
  /** Schema of the messages the kernel takes. */
  input: MessageSchema<I>;
  /** Schema of its replies and outputs; omit when the handler never returns a value. */
  output?: MessageSchema<O>;
  /** The state struct's fields, as in a schema (`{ total: "f32" }`); zeroed at launch. */
  state?: S;
  /** Initial state, instead of zeros (also what a `restart` supervision resets to). */
  initialState?: InferFields<S>;
  /** The handler. */
  handler: KernelHandler<I, O, S>;
  /**
   * The kernels this handler sends to with `ctx.send`, and the schema each takes. Optional for
   * the CPU backend (which checks types at send time); the kernel DSL needs it to compile
   * `ctx.send("dest", Schema.of({ ... }))` for a GPU, since the source names no types.
   */
  sends?: Readonly<Record<string, MessageSchema>>;
}

/** Marks definitions so a worker can find them among a module's exports. */
export const KERNEL_BRAND: unique symbol = Symbol.for("ringkernel.kernel") as never;

/** Built-in behaviours that need no user module. */
export type BuiltinKernel = "passthrough";

/** A kernel definition: what `runtime.launch` takes. Create with {@linkcode defineKernel}. */
export interface KernelDefinition<
  I extends FieldsSpec = FieldsSpec,
  O extends FieldsSpec = FieldsSpec,
  S extends FieldsSpec = FieldsSpec,
> {
  /** Brand. */
  readonly [KERNEL_BRAND]: true;
  /** Kernel id. */
  readonly id: string;
  /** URL of the module that exports this definition (absent for built-ins). */
  readonly moduleUrl: string | undefined;
  /** Input schema (undefined for the passthrough built-in, which takes any type). */
  readonly input: MessageSchema<I> | undefined;
  /** Output schema, if the kernel replies. */
  readonly output: MessageSchema<O> | undefined;
  /** The state struct, if any. */
  readonly state: StructType<S> | undefined;
  /** Initial state value, if given. */
  readonly initialState: InferFields<S> | undefined;
  /** The handler (undefined for built-ins). */
  readonly handler: KernelHandler<I, O, S> | undefined;
  /** Set for built-in kernels. */
  readonly builtin: BuiltinKernel | undefined;
  /** Declared `ctx.send` destinations and their schemas (empty when not declared). */
  readonly sends: Readonly<Record<string, MessageSchema>>;
}

function checkId(id: unknown): asserts id is string {
  if (typeof id !== "string" || id.length < 1 || id.length > 64) {
    throw new ValidationError(
      ErrorCode.InvalidArgument,
      `a kernel id must be a string of 1..64 characters, got ${JSON.stringify(id)}`,
    );
  }
}

function checkSends(
  id: string,
  sends: Readonly<Record<string, MessageSchema>> | undefined,
): Readonly<Record<string, MessageSchema>> {
  if (sends === undefined) return {};
  for (const [dest, schema] of Object.entries(sends)) {
    if (!(schema instanceof MessageSchema)) {
      throw new ValidationError(
        ErrorCode.InvalidArgument,
        `kernel ${id}: sends.${dest} is no message schema`,
      );
    }
  }
  return sends;
}

/**
 * Declares a kernel. Export the result from a module and pass `module: import.meta.url`.
 *
 * @example
 * ```ts
 * import { defineKernel, defineMessage } from "@ringkernel/core";
 * export const Add = defineMessage({ typeId: 1, fields: { value: "f32" } });
 * export const Sum = defineMessage({ typeId: 2, fields: { total: "f32" } });
 * export const accumulator = defineKernel({
 *   id: "accumulator",
 *   module: import.meta.url,
 *   input: Add,
 *   output: Sum,
 *   state: { total: "f32" },
 *   handler: (msg, state) => {
 *     state.total += msg.value;
 *     return { total: state.total };
 *   },
 * });
 * ```
 */
export function defineKernel<
  const I extends FieldsSpec,
  const O extends FieldsSpec = Record<never, never>,
  const S extends FieldsSpec = Record<never, never>,
>(spec: KernelSpec<I, O, S>): KernelDefinition<I, O, S> {
  checkId(spec.id);
  let moduleUrl: string;
  try {
    moduleUrl = new URL(String(spec.module)).href;
  } catch {
    throw new ValidationError(
      ErrorCode.InvalidArgument,
      `kernel ${spec.id}: \`module\` must be the defining module's URL (pass import.meta.url), ` +
        `got ${JSON.stringify(spec.module)}`,
    );
  }
  if (!(spec.input instanceof MessageSchema)) {
    throw new ValidationError(ErrorCode.InvalidArgument, `kernel ${spec.id}: input is no schema`);
  }
  if (spec.output !== undefined && !(spec.output instanceof MessageSchema)) {
    throw new ValidationError(ErrorCode.InvalidArgument, `kernel ${spec.id}: output is no schema`);
  }
  if (typeof spec.handler !== "function") {
    throw new ValidationError(
      ErrorCode.InvalidArgument,
      `kernel ${spec.id}: handler is no function`,
    );
  }
  const state = spec.state === undefined ? undefined : new StructType(spec.state);
  if (state !== undefined && spec.initialState !== undefined) {
    state.encode(spec.initialState); // validates now, not in the worker
  }
  return Object.freeze({
    [KERNEL_BRAND]: true as const,
    id: spec.id,
    moduleUrl,
    input: spec.input,
    output: spec.output,
    state,
    initialState: spec.initialState,
    handler: spec.handler,
    builtin: undefined,
    sends: Object.freeze({ ...checkSends(spec.id, spec.sends) }),
  });
}

/**
 * The built-in passthrough kernel under `id`: it takes a message of any type and answers with
 * the same type and payload bytes (a reply when it was a request, an output otherwise). This is
 * what `runtime.launch("processor", options)` runs.
 */
export function passthroughKernel(id: string): KernelDefinition {
  checkId(id);
  return Object.freeze({
    [KERNEL_BRAND]: true as const,
    id,
    moduleUrl: undefined,
    input: undefined,
    output: undefined,
    state: undefined,
    initialState: undefined,
    handler: undefined,
    builtin: "passthrough" as const,
    sends: Object.freeze({}),
  });
}

/** True for a value made by {@linkcode defineKernel} or {@linkcode passthroughKernel}. */
export function isKernelDefinition(value: unknown): value is KernelDefinition {
  return typeof value === "object" && value !== null &&
    (value as { [KERNEL_BRAND]?: unknown })[KERNEL_BRAND] === true;
}
