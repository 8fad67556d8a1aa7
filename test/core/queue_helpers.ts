/**
 * What the queue test files share: both queue kinds, and an assertion on a typed error's class
 * and stable code.
 * @module
 */
import assert from "node:assert/strict";
import type { RingKernelError } from "../../src/core/errors.ts";
import { MpscQueue } from "../../src/core/mpsc_queue.ts";
import { SpscQueue } from "../../src/core/spsc_queue.ts";

/** Either queue class. */
export type QueueClass = typeof SpscQueue | typeof MpscQueue;

/** Each queue kind with its name, for tests that run on both. */
export const KINDS: [string, QueueClass][] = [["SPSC", SpscQueue], ["MPSC", MpscQueue]];

/** Asserts that `fn` throws an instance of `cls` carrying the stable code `code`. */
export function assertCode(
  fn: () => unknown,
  cls: new (...a: never[]) => RingKernelError,
  code: string,
): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${err}`);
    assert.equal(err.code, code);
    return true;
  });
}
