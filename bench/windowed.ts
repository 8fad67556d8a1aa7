/**
 * The send/receive loop of bench/webgpu_runtime.ts and bench/cuda.ts and its count check, in a
 * module of their own so that test/webgpu/windows.test.ts runs exactly what the benchmarks run
 * (a benchmark's module does its work on import).
 *
 * The loop sends whole windows only. Its first version compared the kernel's count with the
 * number of messages asked for, 200,000, which is not a multiple of the 1,024-message window: it
 * sent 196 windows (200,704 messages), the kernel counted every one of them, and the check failed
 * on every backend. {@linkcode windowsFor} is the one place that rounds, and the check compares
 * with what was sent.
 * @module
 */
import { ErrorCode, ValidationError } from "../src/core/errors.ts";
import type { FieldsSpec, Message } from "../src/core/schema.ts";
import type { KernelHandle } from "../src/runtime/kernel_handle.ts";

/** Windows of `window` messages that send at least `messages` (the loop sends whole windows). */
export function windowsFor(messages: number, window: number): number {
  if (!Number.isSafeInteger(window) || window < 1) {
    throw new ValidationError(
      ErrorCode.InvalidArgument,
      `windowsFor: window must be a positive integer, got ${window}`,
    );
  }
  if (!Number.isSafeInteger(messages) || messages < 0) {
    throw new ValidationError(
      ErrorCode.InvalidArgument,
      `windowsFor: messages must be a non-negative integer, got ${messages}`,
    );
  }
  return Math.ceil(messages / window);
}

/** What {@linkcode runWindows} did. */
export interface WindowsRun {
  /** Messages sent (and outputs received): windows × window length. */
  readonly sent: number;
  /** Wall time of the whole loop, ms. */
  readonly ms: number;
}

/**
 * Sends `window` (all of it, by one `sendMany`) `windows` times; after each send it collects that
 * window's outputs by `receiveMany` before the next. Throws when `sendMany` accepts fewer than the
 * window or an output does not come within `timeoutMs`.
 */
export async function runWindows<I extends FieldsSpec, O extends FieldsSpec, S extends FieldsSpec>(
  k: KernelHandle<I, O, S>,
  window: readonly Message<I>[],
  windows: number,
  timeoutMs = 5000,
): Promise<WindowsRun> {
  const t0 = performance.now();
  const n = window.length;
  for (let w = 0; w < windows; w++) {
    const accepted = await k.sendMany(window);
    if (accepted !== n) throw new Error(`sendMany accepted ${accepted} of ${n}`);
    for (let got = 0; got < n;) got += (await k.receiveMany(n - got, { timeoutMs })).length;
  }
  return { sent: windows * n, ms: performance.now() - t0 };
}

/** Extra figures a runtime can give for a count mismatch (the WebGPU runtime's pump). */
export interface RuntimeDiagnostics {
  /** `WebGpuRuntime.pumpStats()` when the runtime is one. */
  readonly pumpStats?: () => object;
  /** `WebGpuRuntime.takeDeadLetters()` when the runtime is one. */
  readonly takeDeadLetters?: () => readonly unknown[];
}

/**
 * Undefined when the kernel's state `count` equals `expected`; otherwise a line naming everything
 * that tells a lost message from a double-handled one or a lagging read-back: the count, what was
 * expected, the handle's processed/dropped/errors counters, the depths of its queues, unhandled
 * envelopes, late replies, and the runtime's pump counters and dead letters when it has them
 * (taking them: they are reported here). Takes no output.
 */
export function countMismatch<I extends FieldsSpec, O extends FieldsSpec, S extends FieldsSpec>(
  k: KernelHandle<I, O, S>,
  expected: number,
  runtime: RuntimeDiagnostics = {},
): string | undefined {
  const state = k.readState() as { count?: unknown } | undefined;
  const count = state?.count;
  if (count === expected) return undefined;
  const m = k.metrics();
  const dead = runtime.takeDeadLetters?.();
  const figures = {
    count,
    expected,
    difference: typeof count === "number" ? count - expected : undefined,
    processed: m.processed,
    dropped: m.dropped,
    errors: m.errors,
    inputDepth: m.inputDepth,
    outputDepth: m.outputDepth,
    unhandled: k.unhandled.length,
    lateReplies: m.lateReplies,
    state: m.state,
    pump: runtime.pumpStats?.(),
    deadLetters: dead?.length,
  };
  return `kernel ${k.id}: state count ${count}, expected ${expected}: ${JSON.stringify(figures)}`;
}
