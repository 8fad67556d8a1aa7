/**
 * How a kernel is launched: queue capacities, priority, activation, K2K, supervision, and the GPU
 * geometry a device backend uses. {@linkcode LaunchOptions} is immutable; every `with…` method
 * returns a new value, so a shared default can never be changed by accident.
 * @module
 */

import { ErrorCode, ValidationError } from "../core/errors.ts";
import { Priority } from "../core/envelope.ts";
import { checkQueueCapacity } from "../core/queue_layout.ts";

/**
 * Launch priorities (the scale of the envelope's `priority` field). On the CPU backend the launch
 * priority sets how long an idle kernel spins before it parks and how many messages it handles
 * between two looks at its commands; see {@linkcode schedulingFor}.
 */
export const priority = {
  /** Parks as soon as it is idle; small batches. */
  LOW: Priority.Low,
  /** The default. */
  NORMAL: Priority.Normal,
  /** Spins longer before parking (lower wake-up latency, more CPU while busy). */
  HIGH: Priority.High,
  /** Spins longest; largest batches. */
  CRITICAL: Priority.Critical,
} as const;
/** A launch priority value (0..3). */
export type LaunchPriority = typeof priority[keyof typeof priority];

/**
 * What a kernel does when its handler throws. In every case the failure is counted (control
 * block `errorCount`, `lastError = HandlerFailed`) and a pending request gets a `HandlerError`.
 *
 * - `"resume"`: keep serving with the state as the handler left it (the default).
 * - `"restart"`: reset the state to its initial value, count a restart, keep serving.
 * - `"stop"`: the kernel goes to `Failed` and exits; pending requests are rejected.
 * - `"escalate"`: as `"stop"`, and the runtime's `onKernelFailure` listeners are told.
 */
export type Supervision = "resume" | "restart" | "stop" | "escalate";

const SUPERVISIONS: readonly Supervision[] = ["resume", "restart", "stop", "escalate"];

/** Spin and batch budget a backend derives from the launch priority. */
export interface Scheduling {
  /** Microseconds an idle kernel keeps polling before it parks. */
  readonly spinMicros: number;
  /** Messages handled between two looks at the control block's commands. */
  readonly batchSize: number;
}

const SCHEDULING: readonly Scheduling[] = [
  { spinMicros: 0, batchSize: 16 },
  { spinMicros: 50, batchSize: 64 },
  { spinMicros: 200, batchSize: 256 },
  { spinMicros: 1000, batchSize: 1024 },
];

/**
 * The spin budget and batch size for a launch priority.
 *
 * @example
 * ```ts
 * import { priority, schedulingFor } from "@ringkernel/core";
 * console.log(schedulingFor(priority.HIGH)); // { spinMicros: 200, batchSize: 256 }
 * ```
 */
export function schedulingFor(p: LaunchPriority): Scheduling {
  return SCHEDULING[p];
}

interface Fields {
  inputCapacity: number;
  outputCapacity: number;
  slotSize: number | undefined;
  gridSize: number;
  blockSize: number;
  sharedMemoryBytes: number;
  priority: LaunchPriority;
  autoActivate: boolean;
  k2k: boolean;
  supervision: Supervision;
  heartbeatTimeoutMs: number | undefined;
}

const DEFAULTS: Fields = {
  inputCapacity: 1024,
  outputCapacity: 1024,
  slotSize: undefined,
  gridSize: 1,
  blockSize: 128,
  sharedMemoryBytes: 0,
  priority: priority.NORMAL,
  autoActivate: true,
  k2k: true,
  supervision: "resume",
  heartbeatTimeoutMs: undefined,
};

function positiveInt(name: string, value: number, max: number): void {
  if (!Number.isInteger(value) || value < 1 || value > max) {
    throw new ValidationError(
      ErrorCode.InvalidArgument,
      `${name} must be an integer in [1, ${max}], got ${value}`,
    );
  }
}

/**
 * Options of `runtime.launch`. Start from {@linkcode LaunchOptions.default} and chain `with…`
 * calls. Every setter validates at once: a capacity that is not a power of two throws
 * `CapacityError` (`E_INVALID_CAPACITY`) here, not at launch.
 *
 * `gridSize`, `blockSize` and `sharedMemoryBytes` describe the launch geometry of a device
 * kernel. They are validated and recorded on every backend; the CPU backend runs one worker per
 * kernel and does not use them.
 *
 * @example
 * ```ts
 * import { LaunchOptions, priority } from "@ringkernel/core";
 * const opts = LaunchOptions.default()
 *   .withQueueCapacity(4096)
 *   .withBlockSize(256)
 *   .withPriority(priority.HIGH)
 *   .withoutAutoActivate();
 * console.log(opts.inputCapacity, opts.autoActivate); // 4096 false
 * ```
 */
export class LaunchOptions {
  /** Slots of the input queue (each priority lane has this many): a power of two. */
  readonly inputCapacity: number;
  /** Slots of the output queue: a power of two. */
  readonly outputCapacity: number;
  /**
   * Bytes per queue slot (envelope header + payload), or undefined for the default: the larger
   * of 128 and 64 + the largest of the kernel's message sizes.
   */
  readonly slotSize: number | undefined;
  /** Blocks of a device launch. */
  readonly gridSize: number;
  /** Threads per block of a device launch (at most 1024). */
  readonly blockSize: number;
  /** Dynamic shared memory per block of a device launch, in bytes. */
  readonly sharedMemoryBytes: number;
  /** Launch priority (see {@linkcode priority}). */
  readonly priority: LaunchPriority;
  /** Whether `launch` activates the kernel (true) or leaves it `Launched`. */
  readonly autoActivate: boolean;
  /** Whether the kernel joins kernel-to-kernel messaging (sends and receives). */
  readonly k2k: boolean;
  /** What a handler failure does. */
  readonly supervision: Supervision;
  /**
   * Watchdog: a kernel that neither beats (its loop bumps the control block's heartbeat before
   * every message and every idle turn) nor is parked for longer than this many milliseconds is
   * declared `Failed` (`KernelFailedError`, failure cause `watchdog`) and its worker killed.
   * Undefined (the default): no watchdog.
   */
  readonly heartbeatTimeoutMs: number | undefined;

  private constructor(fields: Fields) {
    this.inputCapacity = fields.inputCapacity;
    this.outputCapacity = fields.outputCapacity;
    this.slotSize = fields.slotSize;
    this.gridSize = fields.gridSize;
    this.blockSize = fields.blockSize;
    this.sharedMemoryBytes = fields.sharedMemoryBytes;
    this.priority = fields.priority;
    this.autoActivate = fields.autoActivate;
    this.k2k = fields.k2k;
    this.supervision = fields.supervision;
    this.heartbeatTimeoutMs = fields.heartbeatTimeoutMs;
    Object.freeze(this);
  }

  /** Capacity 1024 in and out, normal priority, auto-activate, K2K on, supervision `resume`. */
  static default(): LaunchOptions {
    return new LaunchOptions(DEFAULTS);
  }

  #with(patch: Partial<Fields>): LaunchOptions {
    return new LaunchOptions({ ...this.#fields(), ...patch });
  }

  #fields(): Fields {
    return {
      inputCapacity: this.inputCapacity,
      outputCapacity: this.outputCapacity,
      slotSize: this.slotSize,
      gridSize: this.gridSize,
      blockSize: this.blockSize,
      sharedMemoryBytes: this.sharedMemoryBytes,
      priority: this.priority,
      autoActivate: this.autoActivate,
      k2k: this.k2k,
      supervision: this.supervision,
      heartbeatTimeoutMs: this.heartbeatTimeoutMs,
    };
  }

  /** Sets both queue capacities. @throws {CapacityError} unless a power of two in [2, 2^30]. */
  withQueueCapacity(capacity: number): LaunchOptions {
    checkQueueCapacity(capacity);
    return this.#with({ inputCapacity: capacity, outputCapacity: capacity });
  }

  /** Sets the input queue capacity. @throws {CapacityError} unless a power of two. */
  withInputCapacity(capacity: number): LaunchOptions {
    checkQueueCapacity(capacity);
    return this.#with({ inputCapacity: capacity });
  }

  /** Sets the output queue capacity. @throws {CapacityError} unless a power of two. */
  withOutputCapacity(capacity: number): LaunchOptions {
    checkQueueCapacity(capacity);
    return this.#with({ outputCapacity: capacity });
  }

  /** Sets the queue slot size in bytes (rounded up to a multiple of 16 by the queues). */
  withSlotSize(bytes: number): LaunchOptions {
    positiveInt("slotSize", bytes, 1 << 20);
    return this.#with({ slotSize: bytes });
  }

  /** Sets the number of blocks of a device launch. */
  withGridSize(blocks: number): LaunchOptions {
    positiveInt("gridSize", blocks, 0x7fff_ffff);
    return this.#with({ gridSize: blocks });
  }

  /** Sets threads per block of a device launch (1..1024). */
  withBlockSize(threads: number): LaunchOptions {
    positiveInt("blockSize", threads, 1024);
    return this.#with({ blockSize: threads });
  }

  /** Sets dynamic shared memory per block of a device launch, in bytes. */
  withSharedMemory(bytes: number): LaunchOptions {
    if (!Number.isInteger(bytes) || bytes < 0 || bytes > 0x7fff_ffff) {
      throw new ValidationError(
        ErrorCode.InvalidArgument,
        `sharedMemoryBytes must be a non-negative integer, got ${bytes}`,
      );
    }
    return this.#with({ sharedMemoryBytes: bytes });
  }

  /** Sets the launch priority (see {@linkcode priority}). */
  withPriority(p: LaunchPriority): LaunchOptions {
    if (SCHEDULING[p] === undefined) {
      throw new ValidationError(ErrorCode.InvalidArgument, `unknown launch priority ${p}`);
    }
    return this.#with({ priority: p });
  }

  /** Leaves the kernel `Launched` after launch; call `activate()` to start it. */
  withoutAutoActivate(): LaunchOptions {
    return this.#with({ autoActivate: false });
  }

  /** Sets whether the kernel is activated by `launch`. */
  withAutoActivate(on: boolean): LaunchOptions {
    return this.#with({ autoActivate: on });
  }

  /** Sets whether the kernel takes part in kernel-to-kernel messaging (default on). */
  withK2k(enabled: boolean): LaunchOptions {
    return this.#with({ k2k: enabled });
  }

  /**
   * Turns the heartbeat watchdog on (see {@linkcode heartbeatTimeoutMs}): `timeoutMs` from 10 ms
   * to 24 h. A kernel parked waiting for work never trips it; one stuck in a handler (an endless
   * loop) or whose worker ended without a word (a Deno worker calling `self.close()`) does. Pick
   * a timeout above the longest handler call you expect.
   */
  withHeartbeatTimeout(timeoutMs: number): LaunchOptions {
    if (!(Number.isFinite(timeoutMs) && timeoutMs >= 10 && timeoutMs <= 86_400_000)) {
      throw new ValidationError(
        ErrorCode.InvalidArgument,
        `heartbeat timeout must be from 10 ms to 24 h, got ${timeoutMs}`,
      );
    }
    return this.#with({ heartbeatTimeoutMs: timeoutMs });
  }

  /** Sets what a handler failure does (see {@linkcode Supervision}). */
  withSupervision(supervision: Supervision): LaunchOptions {
    if (!SUPERVISIONS.includes(supervision)) {
      throw new ValidationError(ErrorCode.InvalidArgument, `unknown supervision ${supervision}`);
    }
    return this.#with({ supervision });
  }
}
