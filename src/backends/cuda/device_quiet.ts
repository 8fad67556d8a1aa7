/**
 * Quiet sections of a CUDA context: some driver calls wait for the whole device to go idle, and a
 * persistent kernel never lets it. Measured on the H100 (driver 580, `bench/cuda_blocking_calls.ts`,
 * `bench/results/cuda-blocking-calls-h100-deno.json`): `cuModuleLoadData`, `cuModuleUnload`,
 * `cuMemFree` and `cuMemFreeHost` each waited for a running kernel to return, while `cuMemAlloc`,
 * `cuMemHostAlloc`, stream creation and launches did not. Made while a persistent kernel runs, such
 * a call hangs the host thread for good.
 *
 * So every such call runs in a quiet section: each persistent kernel of the context is asked to
 * park (leave its loop with state, counters and queues in memory, see `rk_park`), the call runs
 * once all have returned, and each is launched again to go on where it was. Messages sent
 * meanwhile wait in the queues. The sections are process-wide per context, since every runtime of
 * a process shares the device's primary context; they are serialized with launches, so no kernel
 * starts while one is open.
 *
 * @module
 */

import { ErrorCode, TimeoutError } from "../../core/errors.ts";
import type { CudaContext } from "../../../ffi/cuda.ts";

/** How a parked kernel is seen by a quiet section. */
export type ParkState = "parked" | "running" | "ended";

/** A persistent kernel that can park and be launched again. */
export interface Parkable {
  /** Kernel id, for errors. */
  readonly id: string;
  /** Sets the Park command. */
  requestPark(): void;
  /** Takes the Park command back if the kernel has not seen it (a section that gave up). */
  cancelPark(): void;
  /** Where it is: returned parked, still running, or ended (terminated, killed, faulted). */
  parkState(): ParkState;
  /** Launches a parked kernel again. */
  resume(): void;
}

/** What the quiet sections of a context cost so far (process-wide). */
export interface QuietStats {
  /** Sections that parked at least one kernel. */
  readonly sections: number;
  /** Kernel parks (one per kernel per section). */
  readonly parks: number;
  /** The longest wait for every kernel of a section to park, ms. */
  readonly maxParkMs: number;
  /** The last section's wait for its kernels to park, ms. */
  readonly lastParkMs: number;
  /** The last section's call (with the kernels parked), ms. */
  readonly lastCallMs: number;
  /** The last section's whole time, from the first Park to the last relaunch, ms. */
  readonly lastSectionMs: number;
}

/** How long a quiet section waits for the kernels to park before it gives up, by default. */
export const DEFAULT_PARK_TIMEOUT_MS = 10_000;

const sections = new Map<bigint, DeviceQuiet>();

/** The quiet sections of one context (all runtimes of the process that share it). */
export class DeviceQuiet {
  readonly #key: bigint;
  readonly #kernels = new Set<Parkable>();
  #tail: Promise<unknown> = Promise.resolve();
  #quiet = false;
  #users = 0;
  #stats: QuietStats = {
    sections: 0,
    parks: 0,
    maxParkMs: 0,
    lastParkMs: 0,
    lastCallMs: 0,
    lastSectionMs: 0,
  };

  private constructor(key: bigint) {
    this.#key = key;
  }

  /** The sections of `ctx`'s context (keyed by its handle); pair with {@linkcode release}. */
  static acquire(ctx: Pick<CudaContext, "handle">): DeviceQuiet {
    let q = sections.get(ctx.handle);
    if (q === undefined) {
      q = new DeviceQuiet(ctx.handle);
      sections.set(ctx.handle, q);
    }
    q.#users++;
    return q;
  }

  /** Lets go of what {@linkcode acquire} gave. */
  release(): void {
    if (--this.#users === 0 && sections.get(this.#key) === this) sections.delete(this.#key);
  }

  /** What the sections cost so far. */
  get stats(): QuietStats {
    return this.#stats;
  }

  /** True while a section has the kernels parked: a parked kernel waits for it to resume it. */
  get isQuiet(): boolean {
    return this.#quiet;
  }

  /** Registers a running kernel (call inside {@linkcode exclusive}, right after its launch). */
  add(kernel: Parkable): void {
    this.#kernels.add(kernel);
  }

  /** Forgets a kernel (it ended). */
  delete(kernel: Parkable): void {
    this.#kernels.delete(kernel);
  }

  /** Runs `fn` with no quiet section open and no other `exclusive` call running. */
  exclusive<T>(fn: () => T | Promise<T>): Promise<T> {
    const run = this.#tail.then(fn, fn);
    this.#tail = run.catch(() => {});
    return run;
  }

  /**
   * Runs `call` (named `what`, for errors) with every kernel of the context parked, then
   * relaunches them. Rejects with `TimeoutError` (`E_TIMEOUT`), without running `call`, when a
   * kernel has not parked within `timeoutMs` (a handler busy that long); the others go on.
   * Must run inside {@linkcode exclusive}.
   */
  async quietly<T>(what: string, call: () => T, timeoutMs = DEFAULT_PARK_TIMEOUT_MS): Promise<T> {
    const kernels = [...this.#kernels].filter((k) => k.parkState() === "running");
    if (kernels.length === 0) return call();
    this.#quiet = true;
    const t0 = performance.now();
    let parkMs = 0;
    let callMs = 0;
    try {
      for (const k of kernels) k.requestPark();
      const deadline = performance.now() + timeoutMs;
      let wait = 0;
      for (;;) {
        const busy = kernels.filter((k) => k.parkState() === "running");
        if (busy.length === 0) break;
        if (performance.now() > deadline) {
          for (const k of busy) k.cancelPark();
          throw new TimeoutError(
            ErrorCode.Timeout,
            `${what} waits for the GPU to go idle, and kernel${busy.length === 1 ? "" : "s"} ${
              busy.map((k) => k.id).join(", ")
            } did not park within ${timeoutMs} ms (a handler still running)`,
          );
        }
        await new Promise((r) => setTimeout(r, wait));
        wait = Math.min(2, wait + 1);
      }
      const t1 = performance.now();
      parkMs = t1 - t0;
      try {
        return call();
      } finally {
        callMs = performance.now() - t1;
      }
    } finally {
      this.#quiet = false;
      for (const k of kernels) {
        try {
          if (k.parkState() === "parked") k.resume();
        } catch {
          // A fault: the kernel's own poller reports it.
        }
      }
      const st = this.#stats;
      this.#stats = {
        sections: st.sections + 1,
        parks: st.parks + kernels.length,
        maxParkMs: Math.max(st.maxParkMs, parkMs),
        lastParkMs: parkMs,
        lastCallMs: callMs,
        lastSectionMs: performance.now() - t0,
      };
    }
  }
}
