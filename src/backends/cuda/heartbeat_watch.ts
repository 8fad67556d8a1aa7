/**
 * The heartbeat watchdog of one persistent CUDA kernel (`LaunchOptions.heartbeatTimeoutMs`).
 *
 * The CPU backend's rule, adapted to a GPU that cannot park: a kernel is alive while it shows a
 * sign of life; one that shows none for longer than its timeout is declared `Failed` with cause
 * `watchdog`. The persistent loop (`persistent.ts`) stores its heartbeat on idle polls (every
 * poll while not `Active`, once per 256 while `Active`: each store is a PCIe write), and while it
 * works through a stream of messages it beats no more but stores the counters' seqlock word (host
 * and K2K batches), the input head and the output tail once per batch; all of these count, as
 * does a change of lifecycle state. A handler stuck in an endless loop moves none of them.
 *
 * 256 idle polls of an `Active` kernel take ~1–2 ms (a sleep of at most 1 µs, which
 * `__nanosleep` may double, plus a PCIe read of a few µs each): timeouts below
 * {@linkcode CUDA_MIN_HEARTBEAT_TIMEOUT_MS}, ten times that, are raised to it, so a healthy idle
 * kernel is never declared dead.
 * @module
 */

import type { ControlBlock } from "../../core/control_block.ts";

/** The shortest heartbeat timeout the CUDA backend applies (~10× the longest idle beat gap). */
export const CUDA_MIN_HEARTBEAT_TIMEOUT_MS = 20;

/** The words the watchdog reads (plain loads; the seqlock word itself, never a section). */
export type LifeSigns = Pick<
  ControlBlock,
  "heartbeat" | "seq" | "inputHead" | "outputTail" | "state"
>;

/** Watches one kernel's signs of life against its timeout. */
export class HeartbeatWatch {
  /** The timeout applied: the one asked for, at least {@linkcode CUDA_MIN_HEARTBEAT_TIMEOUT_MS}. */
  readonly timeoutMs: number;
  readonly #signs: () => LifeSigns;
  readonly #last = new Uint32Array(5);
  #lastSeen: number;
  #fired = false;

  /**
   * Starts watching at `now` (ms, `performance.now()`); `signs` returns the kernel's control
   * block each time (a function: the backend may swap the memory it reads).
   */
  constructor(timeoutMs: number, signs: () => LifeSigns, now: number) {
    this.timeoutMs = Math.max(timeoutMs, CUDA_MIN_HEARTBEAT_TIMEOUT_MS);
    this.#signs = signs;
    this.#lastSeen = now;
    this.#read(this.#last);
  }

  #read(into: Uint32Array): void {
    const s = this.#signs();
    into[0] = s.heartbeat;
    into[1] = s.seq;
    into[2] = s.inputHead;
    into[3] = s.outputTail;
    into[4] = s.state;
  }

  /**
   * Looks at the kernel at `now`: undefined while it is alive, else (once) why it is declared
   * dead, e.g. "no heartbeat for 212 ms (limit 200 ms)".
   */
  check(now: number): string | undefined {
    if (this.#fired) return undefined;
    const s = this.#signs();
    const last = this.#last;
    if (
      s.heartbeat !== last[0] || s.seq !== last[1] || s.inputHead !== last[2] ||
      s.outputTail !== last[3] || s.state !== last[4]
    ) {
      this.#read(last);
      this.#lastSeen = now;
      return undefined;
    }
    const silent = now - this.#lastSeen;
    if (silent <= this.timeoutMs) return undefined;
    this.#fired = true;
    return `no heartbeat for ${Math.round(silent)} ms (limit ${this.timeoutMs} ms)`;
  }
}
