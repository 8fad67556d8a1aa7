/**
 * Waiting on one 32-bit word of shared memory, synchronously (`Atomics.wait`, for workers) or
 * asynchronously (`Atomics.waitAsync`, for any thread), the same way under Deno and Bun.
 *
 * Two things make a bare `Atomics.waitAsync` unsafe to use directly:
 *
 * - Deno does not count a pending `waitAsync` as work that keeps the event loop alive: a program
 *   whose only pending work is such a wait ends with "Promise resolution is still pending but the
 *   event loop has already resolved". {@linkcode waitWordAsync} holds a timer for the length of the
 *   wait and clears it afterwards.
 * - Memory that is not a `SharedArrayBuffer` (a plain `ArrayBuffer`, or mapped pinned GPU memory
 *   viewed as one) cannot be waited on at all, yet another agent (a GPU) may still change it. Both
 *   helpers then sleep for a short poll interval and report `"ok"`, so callers, which re-check
 *   their condition after every wake-up anyway, degrade to polling.
 *
 * @example
 * ```ts
 * import { notifyWord, waitWordAsync } from "@ringkernel/core";
 * const word = new Int32Array(new SharedArrayBuffer(4));
 * setTimeout(() => {
 *   Atomics.store(word, 0, 1);
 *   notifyWord(word, 0);
 * }, 10);
 * console.log(await waitWordAsync(word, 0, 0, 1000)); // "ok"
 * ```
 * @module
 */

/** How a wait ended: woken (`"ok"`), the word already differed, or the timeout passed. */
export type WaitOutcome = "ok" | "not-equal" | "timed-out";

/** Poll interval used where the memory cannot be waited on (not a SharedArrayBuffer). */
export const POLL_INTERVAL_MS = 1;

// setTimeout delays above 2^31 - 1 ms overflow to an immediate timer in every runtime.
const MAX_TIMER_MS = 0x7fff_ffff;

let sleeper: Int32Array | undefined;

/** True when `view` is backed by a SharedArrayBuffer, so that `Atomics.wait`/`notify` apply. */
export function isSharedView(view: Int32Array): boolean {
  return typeof SharedArrayBuffer !== "undefined" && view.buffer instanceof SharedArrayBuffer;
}

/**
 * Blocks the calling thread while `view[index] === expected`, for at most `timeoutMs`
 * (`Infinity` waits for ever). Meant for workers; Deno and Bun also allow it on the main thread.
 * On memory that cannot be waited on it sleeps up to {@linkcode POLL_INTERVAL_MS} and reports
 * `"ok"` (or `"timed-out"` when the timeout was shorter than that).
 *
 * @example
 * ```ts
 * import { waitWord } from "@ringkernel/core";
 * const word = new Int32Array(new SharedArrayBuffer(4));
 * console.log(waitWord(word, 0, 0, 5)); // "timed-out"
 * ```
 */
export function waitWord(
  view: Int32Array,
  index: number,
  expected: number,
  timeoutMs: number = Infinity,
): WaitOutcome {
  if (isSharedView(view)) return Atomics.wait(view, index, expected, Math.max(0, timeoutMs));
  if (Atomics.load(view, index) !== expected) return "not-equal";
  const ms = Math.max(0, Math.min(timeoutMs, POLL_INTERVAL_MS));
  // A private shared word that nobody notifies is the only synchronous sleep both runtimes have.
  sleeper ??= new Int32Array(new SharedArrayBuffer(4));
  Atomics.wait(sleeper, 0, 0, ms);
  return timeoutMs <= POLL_INTERVAL_MS ? "timed-out" : "ok";
}

/**
 * Resolves once `view[index]` is notified or no longer `expected`, or after `timeoutMs`. Holds a
 * timer meanwhile so that Deno keeps the event loop alive; works on the main thread.
 *
 * @example
 * ```ts
 * import { waitWordAsync } from "@ringkernel/core";
 * const word = new Int32Array(new SharedArrayBuffer(4));
 * console.log(await waitWordAsync(word, 0, 0, 5)); // "timed-out"
 * ```
 */
export function waitWordAsync(
  view: Int32Array,
  index: number,
  expected: number,
  timeoutMs: number = Infinity,
): Promise<WaitOutcome> {
  const timeout = Math.max(0, timeoutMs);
  if (!isSharedView(view)) {
    if (Atomics.load(view, index) !== expected) return Promise.resolve("not-equal");
    const ms = Math.min(timeout, POLL_INTERVAL_MS);
    return new Promise((resolve) => {
      setTimeout(() => resolve(timeout <= POLL_INTERVAL_MS ? "timed-out" : "ok"), ms);
    });
  }
  const result = Atomics.waitAsync(view, index, expected, timeout);
  if (!result.async) return Promise.resolve(result.value);
  // The interval only keeps Deno's event loop alive (it never fires in practice). A timeout
  // matching the wait would not do: the wait's own expiry reaches the loop a little later than
  // a timer of the same length, and the loop would already have ended.
  const keepAlive = setInterval(noop, MAX_TIMER_MS);
  return result.value.finally(() => clearInterval(keepAlive));
}

/**
 * Wakes up to `count` threads or async waiters blocked on `view[index]`; returns how many were
 * woken. A no-op returning 0 on memory that cannot be waited on (its waiters poll).
 */
export function notifyWord(view: Int32Array, index: number, count: number = Infinity): number {
  return isSharedView(view) ? Atomics.notify(view, index, count) : 0;
}

/** Sleeps without blocking the thread: resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

function noop(): void {}
