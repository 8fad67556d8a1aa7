/**
 * Messages between the CPU runtime (main thread) and its kernel workers. Everything on the hot
 * path goes through shared memory; these messages only set a worker up, update its routing table
 * and report that it is ready or has exited.
 * @module
 */

import type { RouteInit } from "../../runtime/k2k.ts";
import type { KernelLayout } from "../../runtime/kernel_memory.ts";
import type { Scheduling, Supervision } from "../../runtime/launch_options.ts";

/** Indices of the runtime-wide shared words every worker maps. */
export const RuntimeWord = {
  /** Bumped after each routing table message is posted to the workers. */
  routingEpoch: 0,
} as const;

/** Bytes of the runtime-wide shared words. */
export const RUNTIME_WORDS_BYTES = 64;

/** `KernelWord.terminateMode` values: 1 drain the input before exiting, 0 leave it. */
export type TerminateMode = 0 | 1;

/** Host → worker: set up and run one kernel. */
export interface WorkerInit {
  /** Discriminant. */
  readonly type: "init";
  /** Kernel id. */
  readonly kernelId: string;
  /** Numeric id (envelope source/dest, HLC node id). */
  readonly numericId: number;
  /** Module to import the definition from (undefined for built-ins). */
  readonly moduleUrl: string | undefined;
  /** Built-in behaviour, if any. */
  readonly builtin: "passthrough" | undefined;
  /** The kernel's region. */
  readonly buffer: SharedArrayBuffer;
  /** Its layout. */
  readonly layout: KernelLayout;
  /** Input typeId the host launched with (0 for any), checked against the imported definition. */
  readonly inputTypeId: number;
  /** State size the host launched with, checked likewise. */
  readonly stateSize: number;
  /** Spin and batch budget. */
  readonly scheduling: Scheduling;
  /** Handler failure policy. */
  readonly supervision: Supervision;
  /** Whether the kernel may send K2K messages. */
  readonly k2k: boolean;
  /** The runtime-wide words ({@linkcode RuntimeWord}). */
  readonly runtimeWords: SharedArrayBuffer;
  /** Routing table at launch. */
  readonly routes: readonly RouteInit[];
  /** Its epoch. */
  readonly epoch: number;
  /** The compiled SIMD core (compiled once per process, instantiated once per worker). */
  readonly simdModule: WebAssembly.Module;
}

/** Host → worker: the whole routing table, replacing the previous one. */
export interface WorkerRoutes {
  /** Discriminant. */
  readonly type: "routes";
  /** Epoch this table belongs to. */
  readonly epoch: number;
  /** Every K2K-reachable kernel. */
  readonly routes: readonly RouteInit[];
}

/** Worker → host. */
export type WorkerReport =
  | { readonly type: "ready" }
  | { readonly type: "load-error"; readonly name: string; readonly message: string }
  | {
    readonly type: "exited";
    readonly reason: "terminated" | "stopped";
    readonly error?: { readonly name: string; readonly message: string };
  };
