/**
 * The bookkeeping every backend's runtime shares: the running kernels by id, the totals of the
 * ones that ended (so runtime metrics keep counting them), failure listeners, and the lifecycle
 * event hub. A backend keeps one ledger and adds what is its own (workers, streams, memory).
 * @module
 */

import type { KernelFailureEvent, ShutdownOptions } from "./backend.ts";
import type { K2kBroker, K2kCounters } from "./k2k.ts";
import type { KernelHandle, KillCause, TerminateReport } from "./kernel_handle.ts";
import { KernelWord } from "./kernel_memory.ts";
import {
  type KernelMetrics,
  prometheusText,
  type RetiredTotals,
  type RuntimeMetrics,
  runtimeTotals,
  TelemetryEvents,
} from "./telemetry.ts";

/** What a ledger needs of a backend's entry for one kernel. */
export interface LedgerEntry {
  /** The kernel's handle. */
  readonly handle: KernelHandle;
  /** Its routing entry (the runtime words hold its K2K counters). */
  readonly route: { readonly mem: { readonly words: Int32Array } };
}

/** An entry the runtime can give up on (see {@linkcode KernelLedger.terminateAll}). */
export interface KillableEntry extends LedgerEntry {
  /** Stops the kernel however its backend can, settling its exit with `cause`. */
  kill(reason: string, cause: KillCause): void;
}

/** Running kernels, retired totals, failure listeners and lifecycle events of one runtime. */
export class KernelLedger<E extends LedgerEntry> {
  /** Running kernels by id, in launch order. */
  readonly kernels: Map<string, E> = new Map();
  /** The lifecycle event hub behind `events()` and `onStateChange()`. */
  readonly events: TelemetryEvents = new TelemetryEvents();
  readonly #failureListeners = new Set<(event: KernelFailureEvent) => void>();
  readonly #retired: Required<RetiredTotals> = { processed: 0, dropped: 0, errors: 0, kernels: {} };
  readonly #retiredK2k: K2kCounters = { sent: 0, delivered: 0, queueFull: 0, notFound: 0 };

  /** Removes kernel `id`, adding its counters to the retired totals; returns its entry. */
  retire(id: string): E | undefined {
    const e = this.kernels.get(id);
    if (e === undefined) return undefined;
    this.kernels.delete(id);
    const m = e.handle.metrics();
    this.#retired.processed += m.processed;
    this.#retired.dropped += m.dropped;
    this.#retired.errors += m.errors;
    this.#retired.kernels[m.state] = (this.#retired.kernels[m.state] ?? 0) + 1;
    addK2k(this.#retiredK2k, k2kOf(e));
    return e;
  }

  /**
   * Shutdown's first step, the same on every backend: terminates every running kernel (queued
   * messages returned unless `drain`), kills any that does not stop within `timeoutMs` (default
   * 5000), and resolves once every kernel has settled, with the reports of those that stopped.
   */
  async terminateAll(
    this: KernelLedger<E & KillableEntry>,
    options: ShutdownOptions,
  ): Promise<Record<string, TerminateReport>> {
    const timeoutMs = options.timeoutMs ?? 5000;
    const reports: Record<string, TerminateReport> = {};
    await Promise.all([...this.kernels.values()].map(async (e) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const deadline = new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          e.kill(`did not stop within ${timeoutMs} ms of shutdown`, "killed");
          resolve();
        }, timeoutMs);
      });
      try {
        const stop = e.handle.terminate({ drain: options.drain ?? false }).then(
          (r) => {
            reports[e.handle.id] = r;
          },
          () => e.handle.settled,
        );
        await Promise.race([stop, deadline]);
        await e.handle.settled;
      } catch {
        // terminate() refused (the kernel was already ending): wait for it to settle.
        await e.handle.settled;
      } finally {
        clearTimeout(timer);
      }
    }));
    return reports;
  }

  /** Tells every failure listener; a listener that throws does not stop the others. */
  emitFailure(event: KernelFailureEvent): void {
    for (const l of this.#failureListeners) {
      try {
        l(event);
      } catch {
        // A listener's own failure must not take the runtime down.
      }
    }
  }

  /** Registers a failure listener; returns its unsubscribe function. */
  onKernelFailure(listener: (event: KernelFailureEvent) => void): () => void {
    this.#failureListeners.add(listener);
    return () => this.#failureListeners.delete(listener);
  }

  /** The running kernel `id`, or undefined. */
  getKernel(id: string): KernelHandle | undefined {
    return this.kernels.get(id)?.handle;
  }

  /** Ids of the running kernels, in launch order. */
  listKernels(): string[] {
    return [...this.kernels.keys()];
  }

  /** One snapshot per running kernel. */
  kernelMetrics(): KernelMetrics[] {
    return [...this.kernels.values()].map((e) => e.handle.metrics());
  }

  /** Runtime totals, retired kernels and the host broker's sends included. */
  metrics(broker: K2kBroker): RuntimeMetrics {
    const k2k = { ...this.#retiredK2k };
    for (const e of this.kernels.values()) addK2k(k2k, k2kOf(e));
    addK2k(k2k, broker.counters());
    return runtimeTotals(this.kernelMetrics(), k2k, this.#retired);
  }

  /** `metrics` and `kernelMetrics` in the Prometheus text format. */
  metricsText(broker: K2kBroker): string {
    return prometheusText(this.metrics(broker), this.kernelMetrics());
  }

  /** Drops the failure listeners and ends the event streams (at shutdown). */
  close(): void {
    this.#failureListeners.clear();
    this.events.close();
  }
}

function k2kOf(e: LedgerEntry): K2kCounters {
  const w = e.route.mem.words;
  return {
    sent: Atomics.load(w, KernelWord.k2kSent),
    delivered: Atomics.load(w, KernelWord.k2kDelivered),
    queueFull: Atomics.load(w, KernelWord.k2kQueueFull),
    notFound: Atomics.load(w, KernelWord.k2kNotFound),
  };
}

function addK2k(into: K2kCounters, c: Readonly<K2kCounters>): void {
  into.sent += c.sent;
  into.delivered += c.delivered;
  into.queueFull += c.queueFull;
  into.notFound += c.notFound;
}
