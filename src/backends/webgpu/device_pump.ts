/**
 * The device pump: one per WebGPU runtime, it plays the device side of every kernel's persistent
 * loop in rounds. A round takes the host's commands and input for every kernel that has work,
 * uploads the input into the kernels' GPU rings, encodes ONE submission — each kernel's ring
 * dispatch, followed by a route pass per `ctx.send` target that moves its outbox into the
 * destination's ring (so a chain A → B → C completes inside the submission when the dispatch
 * order follows the send graph) — copies every kernel's `ctl` and each dispatched kernel's
 * replies into one staging buffer, waits for that buffer's map, and applies the read-back.
 * Rounds run back to back while any kernel has work; then the pump polls the host lanes and
 * control blocks on unref'd timers (an idle runtime does not keep the process alive).
 *
 * Throughput comes from batching: every request queued while a round is in flight goes into the
 * next one, so a map that takes ~10 ms (Deno on lavapipe) costs ~10 ms per round, not per message.
 * @module
 */

import { KernelCommand, KernelState } from "../../core/control_block.ts";
import type { KernelExit } from "../../runtime/kernel_handle.ts";
import { CtlWord } from "./layout.ts";
import {
  type GpuKernel,
  type KernelReadback,
  stateAfter,
  type WebGpuDeadLetter,
} from "./gpu_kernel.ts";
import { emitRoutePass } from "./shaders.ts";
import type { TrackedBuffers } from "./tracked_buffers.ts";

// WebGPU spec constants (Bun's bun-webgpu installs no globals for them).
const MAP_READ = 0x1;
const COPY_DST = 0x8;
const STORAGE = 0x80;
const COPY_SRC = 0x4;
const MAP_MODE_READ = 0x1;
const STAGE_COMPUTE = 0x4;

/**
 * Event-loop turns the pump polls for work after a round before it falls back to timers: the
 * next request of a caller that awaited the last reply then starts a round within a turn. A
 * turn holds the event loop, so this is bounded; the timers after it are unref'd.
 */
const HOT_TURNS = 256;
/** First and longest interval of the idle poll on timers (ms). */
const IDLE_POLL_MIN_MS = 0.25;
const IDLE_POLL_MAX_MS = 4;

type Immediate = (callback: () => void) => unknown;
const setImmediateFn: Immediate | undefined =
  (globalThis as { setImmediate?: Immediate }).setImmediate;
/** Dead letters kept for `takeDeadLetters`; older ones beyond this are counted, then dropped. */
export const DEAD_LETTER_LIMIT = 4096;

type TimerHandle = ReturnType<typeof setTimeout>;

/** Lets a timer not keep the process alive (Deno: `Deno.unrefTimer`; Bun/Node: `unref()`). */
function unref(timer: TimerHandle): void {
  if (typeof timer === "number") {
    (globalThis as { Deno?: { unrefTimer(id: number): void } }).Deno?.unrefTimer(timer);
  } else (timer as { unref?(): void }).unref?.();
}

/**
 * Waits until the round's staging buffer is mapped, i.e. the submission that filled it has
 * completed. The one place a round waits on the device, so a faster completion path (see
 * docs/webgpu.md, "Completion") replaces this function only.
 */
export async function waitForStaging(staging: GPUBuffer, bytes: number): Promise<void> {
  await staging.mapAsync(MAP_MODE_READ, 0, bytes);
}

/** The round's physical time as an HLC word (`ms << 16`), [lo, hi]. */
export function physicalWord(ms: number): [number, number] {
  const t = Math.max(0, Math.floor(ms));
  return [((t % 0x10000) * 0x10000) >>> 0, Math.floor(t / 0x10000) >>> 0];
}

/** Counters of the pump since the runtime started. */
export interface PumpStats {
  /** Submissions (rounds that ran on the device). */
  readonly rounds: number;
  /** Kernel ring dispatches. */
  readonly dispatches: number;
  /** K2K route passes. */
  readonly routePasses: number;
  /** Dead letters waiting in `takeDeadLetters`. */
  readonly deadLetters: number;
  /** Dead letters dropped because more than {@linkcode DEAD_LETTER_LIMIT} were waiting. */
  readonly deadLettersDiscarded: number;
}

/** What the pump needs from its runtime. */
export interface DevicePumpInit {
  readonly device: GPUDevice;
  readonly buffers: TrackedBuffers;
  /** Physical time in ms (`Date.now` unless a test injects a clock). */
  readonly clock: () => number;
  /** Told once when a round fails (device lost, validation error): every kernel is failed. */
  readonly onFatal: (error: Error) => void;
}

/** A kernel that left the rounds while its ring may still hold messages to return. */
interface Evicted {
  readonly kernel: GpuKernel;
  /** Why (the dead letters' reason). */
  readonly reason: "KernelGone";
  /** Destroy its buffers once read (its handle has disposed of it). */
  released: boolean;
}

/** Runs the rounds of one device. */
export class DevicePump {
  readonly #device: GPUDevice;
  readonly #buffers: TrackedBuffers;
  readonly #clock: () => number;
  readonly #onFatal: (error: Error) => void;
  readonly #kernels: GpuKernel[] = [];
  readonly #exits = new Map<GpuKernel, (exit: KernelExit) => void>();
  #order: GpuKernel[] = [];
  #dirty = true;
  readonly #evicted = new Map<GpuKernel, Evicted>();
  readonly #releasing = new Set<GpuKernel>();
  readonly #routeLayout: GPUBindGroupLayout;
  readonly #routeModule: GPUShaderModule;
  readonly #routePipelines = new Map<string, GPUComputePipeline>();
  readonly #null: { ctl: GPUBuffer; inMeta: GPUBuffer; msgs: GPUBuffer };
  #staging: GPUBuffer | undefined;
  #loop: Promise<void> | undefined;
  #idleTimer: TimerHandle | undefined;
  #idleMs = IDLE_POLL_MIN_MS;
  #hotTurns = 0;
  #turnPending = false;
  #closed = false;
  #failed = false;
  #rounds = 0;
  #dispatches = 0;
  #routePasses = 0;
  readonly #deadLetters: WebGpuDeadLetter[] = [];
  #deadLettersDiscarded = 0;

  /** Prepares the route pass and the null destination; starts no round. */
  constructor(init: DevicePumpInit) {
    this.#device = init.device;
    this.#buffers = init.buffers;
    this.#clock = init.clock;
    this.#onFatal = init.onFatal;
    const d = init.device;
    this.#routeLayout = d.createBindGroupLayout({
      label: "rk.route",
      entries: [0, 1, 2, 3, 4].map((binding) => ({
        binding,
        visibility: STAGE_COMPUTE,
        buffer: { type: "storage" as const },
      })),
    });
    this.#routeModule = d.createShaderModule({ label: "rk.route", code: emitRoutePass() });
    // Where a route pass without a live destination points: state Created, never written.
    const usage = STORAGE | COPY_DST | COPY_SRC;
    this.#null = {
      ctl: init.buffers.create("rk.null.ctl", 4 * CtlWord.routes, usage),
      inMeta: init.buffers.create("rk.null.inMeta", 32, usage),
      msgs: init.buffers.create("rk.null.msgs", 16, usage),
    };
  }

  /** Counters since the start. */
  stats(): PumpStats {
    return {
      rounds: this.#rounds,
      dispatches: this.#dispatches,
      routePasses: this.#routePasses,
      deadLetters: this.#deadLetters.length,
      deadLettersDiscarded: this.#deadLettersDiscarded,
    };
  }

  /** Removes and returns the dead letters collected so far, oldest first. */
  takeDeadLetters(): WebGpuDeadLetter[] {
    return this.#deadLetters.splice(0);
  }

  /** Adds a launched kernel to the rounds; `onExit` settles its handle's exit. */
  add(kernel: GpuKernel, onExit: (exit: KernelExit) => void): void {
    this.#kernels.push(kernel);
    this.#exits.set(kernel, onExit);
    this.#dirty = true;
    this.kick();
  }

  /** Live kernels, in launch order. */
  get kernels(): readonly GpuKernel[] {
    return this.#kernels;
  }

  /**
   * Takes `kernel` out of the rounds now (killed): its exit settles as `exit`, and what its
   * ring still holds is read in the next round and becomes dead letters.
   */
  evict(kernel: GpuKernel, exit: KernelExit): void {
    if (kernel.gone) return;
    this.#leave(kernel);
    // Its ring is read in the next round even when it looked empty: a round in flight now may be
    // delivering K2K messages into it.
    this.#evicted.set(kernel, { kernel, reason: "KernelGone", released: false });
    this.#exits.get(kernel)?.(exit);
    this.#exits.delete(kernel);
    this.kick();
  }

  /** Frees `kernel`'s buffers once no round uses them (its handle disposed of it). */
  release(kernel: GpuKernel): void {
    if (!kernel.gone) this.#leave(kernel);
    const ev = this.#evicted.get(kernel);
    if (ev !== undefined) {
      ev.released = true;
      return;
    }
    // A round in flight may still use the buffers (after a device loss none will complete).
    if (this.#loop !== undefined && !this.#failed) this.#releasing.add(kernel);
    else kernel.destroy();
  }

  #leave(kernel: GpuKernel): void {
    kernel.gone = true;
    const i = this.#kernels.indexOf(kernel);
    if (i >= 0) this.#kernels.splice(i, 1);
    this.#dirty = true;
  }

  /** Starts a round now if one is due and none is running. */
  kick(): void {
    if (this.#closed || this.#failed || this.#loop !== undefined) return;
    if (this.#idleTimer !== undefined) {
      clearTimeout(this.#idleTimer);
      this.#idleTimer = undefined;
    }
    if (!this.#hasWork()) {
      this.#scheduleIdle();
      return;
    }
    this.#idleMs = IDLE_POLL_MIN_MS;
    this.#hotTurns = HOT_TURNS;
    this.#loop = this.#run().finally(() => {
      this.#loop = undefined;
      if (!this.#closed && !this.#failed) this.#scheduleIdle();
    });
  }

  /**
   * Polls for work: every event-loop turn for {@linkcode HOT_TURNS} turns after a round, then on
   * an unref'd timer backing off from 0.25 to 4 ms while there is none.
   */
  #scheduleIdle(): void {
    if (this.#idleTimer !== undefined || this.#turnPending || this.#loop !== undefined) return;
    if (this.#closed || this.#failed) return;
    if (this.#kernels.length === 0 && this.#evicted.size === 0) return;
    if (this.#hotTurns > 0 && setImmediateFn !== undefined) {
      this.#hotTurns--;
      this.#turnPending = true;
      setImmediateFn(() => {
        this.#turnPending = false;
        if (this.#hasWork()) this.kick();
        else this.#scheduleIdle();
      });
      return;
    }
    const t = setTimeout(() => {
      this.#idleTimer = undefined;
      if (this.#hasWork()) this.kick();
      else {
        this.#idleMs = Math.min(IDLE_POLL_MAX_MS, this.#idleMs * 2);
        this.#scheduleIdle();
      }
    }, this.#idleMs);
    unref(t);
    this.#idleTimer = t;
  }

  #hasWork(): boolean {
    if (this.#evicted.size > 0) return true;
    for (const k of this.#kernels) {
      if (k.mem.cb.pendingCommands !== 0) return true;
      if (k.state === KernelState.Terminating) return true;
      if (
        k.processes(k.state) && k.outputRoom > 0 && (k.ringDepth > 0 || k.hostInput() > 0)
      ) {
        return true;
      }
    }
    return false;
  }

  async #run(): Promise<void> {
    try {
      while (!this.#closed && !this.#failed && this.#hasWork()) {
        if (!await this.#round()) break;
      }
    } catch (e) {
      this.#failed = true;
      this.#onFatal(e instanceof Error ? e : new Error(String(e)));
    } finally {
      for (const k of this.#releasing) k.destroy();
      this.#releasing.clear();
    }
  }

  /**
   * Waits for the running round, then stops the rounds for good. After a failure it does not
   * wait: on a lost device a round's map may never settle.
   */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#idleTimer !== undefined) clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
    if (!this.#failed) await this.#loop;
  }

  /**
   * Stops the rounds after a fatal error (device lost): every live kernel's exit settles as
   * `died` with `error`, and the host envelopes that were in its GPU ring go back into its host
   * lanes (so its handle returns them as unhandled).
   */
  fail(error: Error): void {
    this.#failed = true;
    if (this.#idleTimer !== undefined) clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
    for (const k of [...this.#kernels]) {
      this.#leave(k);
      for (const env of k.takeInflight()) {
        if (!k.mem.normal.tryEnqueue(env)) k.mem.high.tryEnqueue(env);
      }
      this.#exits.get(k)?.({ kind: "died", error });
      this.#exits.delete(k);
    }
    this.#evicted.clear();
  }

  // ------------------------------------------------------------------------------ a round

  /** Recomputes routes (destinations, route groups, tables) and the dispatch order. */
  #recompute(): void {
    this.#dirty = false;
    const live = this.#kernels;
    const byId = new Map(live.map((k) => [k.id, k]));
    for (const k of live) {
      k.routes = k.source.sendTargets.map((t) => {
        const d = byId.get(t.dest);
        return d !== undefined && k.options.k2k && d.options.k2k && d.accepts(t.schema)
          ? d
          : undefined;
      });
      k.routeGroups = k.routes.map((d) =>
        this.#device.createBindGroup({
          label: `${k.id}.route`,
          layout: this.#routeLayout,
          entries: [
            k.gpu.ctl,
            k.gpu.outbox,
            // Sending to itself: its ctl is binding 0 only (see RK_SELF in the route pass).
            d === undefined || d === k ? this.#null.ctl : d.gpu.ctl,
            d?.gpu.inMeta ?? this.#null.inMeta,
            d?.gpu.msgs ?? this.#null.msgs,
          ].map((buffer, binding) => ({ binding, resource: { buffer } })),
        })
      );
      k.writeRoutes();
    }
    this.#order = dispatchOrder(live);
  }

  #routePipeline(stride: number, target: number, self: boolean): GPUComputePipeline {
    const key = `${stride}:${target}${self ? ":self" : ""}`;
    let p = this.#routePipelines.get(key);
    if (p === undefined) {
      p = this.#device.createComputePipeline({
        label: `rk.route.${key}`,
        layout: this.#device.createPipelineLayout({ bindGroupLayouts: [this.#routeLayout] }),
        compute: {
          module: this.#routeModule,
          entryPoint: "main",
          constants: { RK_TARGET: target, RK_STRIDE: stride, RK_SELF: self ? 1 : 0 },
        },
      });
      this.#routePipelines.set(key, p);
    }
    return p;
  }

  /** One round; false when no kernel had anything for the device after all. */
  async #round(): Promise<boolean> {
    if (this.#dirty) this.#recompute();
    const round = (this.#rounds + 1) >>> 0;
    const pt = physicalWord(this.#clock());
    const dispatched: GpuKernel[] = [];
    const fed = new Set<GpuKernel>();
    const ringCopies = new Set<GpuKernel>();
    for (const k of this.#order) {
      const cmds = k.takeCommands();
      const next = stateAfter(k.state, cmds);
      const budget = k.processes(next) ? Math.min(k.layout.batchCapacity, k.outputRoom) : 0;
      let taken = 0;
      let errorReplies = 0;
      if (budget > 0) ({ taken, errorReplies } = k.ingest(budget));
      k.batchMax = Math.max(0, budget - errorReplies);
      const work = cmds !== 0 || taken > 0 || next === KernelState.Terminating ||
        (k.batchMax > 0 && (k.ringDepth > 0 || fed.has(k)));
      if (!work) continue;
      dispatched.push(k);
      // A terminate that leaves the input: what the ring holds after the dispatch is returned.
      if ((cmds & KernelCommand.Terminate) !== 0 && k.terminateMode === 0) ringCopies.add(k);
      for (const d of k.routes) if (d !== undefined) fed.add(d);
    }
    for (const ev of this.#evicted.values()) ringCopies.add(ev.kernel);
    if (dispatched.length === 0 && ringCopies.size === 0) return false;

    const device = this.#device;
    for (const k of dispatched) k.writeRoundWords(round, pt);
    const enc = device.createCommandEncoder({ label: `rk.round.${round}` });
    if (dispatched.length > 0) {
      const pass = enc.beginComputePass({ label: `rk.round.${round}` });
      for (const k of dispatched) {
        pass.setPipeline(k.pipeline);
        pass.setBindGroup(0, k.bindGroup);
        pass.dispatchWorkgroups(1);
        this.#dispatches++;
        const stride = k.source.outboxStride;
        k.routeGroups.forEach((group, t) => {
          pass.setPipeline(this.#routePipeline(stride, t, k.routes[t] === k));
          pass.setBindGroup(0, group!);
          pass.dispatchWorkgroups(1);
          this.#routePasses++;
        });
      }
      pass.end();
    }

    // The read-back: every live kernel's ctl (K2K may have moved any ring's tail), the replies
    // of the dispatched ones, and whole rings where messages must be returned.
    const plan = new Map<GpuKernel, KernelReadback>();
    const copies: [GPUBuffer, number, number][] = [];
    let size = 0;
    const take = (buffer: GPUBuffer, bytes: number): number => {
      const at = size;
      copies.push([buffer, at, bytes]);
      size += bytes;
      return at;
    };
    for (const k of this.#kernels) plan.set(k, { ctl: take(k.gpu.ctl, k.layout.bytes.ctl) });
    for (const k of dispatched) {
      const at = plan.get(k)!;
      const n = k.batchMax;
      if (n > 0) {
        at.outMeta = take(k.gpu.outMeta, 32 * n);
        at.replied = take(k.gpu.replied, 4 * n);
        at.replies = take(k.gpu.replies, 4 * k.source.replyWords * n);
      }
      if (k.def.state !== undefined) at.state = take(k.gpu.state, k.layout.bytes.state);
      if (k.layout.outboxRecords > 0) at.outbox = take(k.gpu.outbox, k.layout.bytes.outbox);
    }
    for (const k of ringCopies) {
      let at = plan.get(k);
      if (at === undefined) {
        at = { ctl: take(k.gpu.ctl, k.layout.bytes.ctl) };
        plan.set(k, at);
      }
      at.inMeta = take(k.gpu.inMeta, k.layout.bytes.inMeta);
      at.msgs = take(k.gpu.msgs, k.layout.bytes.msgs);
    }
    const staging = this.#stagingOf(size);
    for (const [buffer, at, bytes] of copies) enc.copyBufferToBuffer(buffer, 0, staging, at, bytes);
    device.queue.submit([enc.finish()]);
    this.#rounds = round;
    await waitForStaging(staging, size);

    const exits: [GpuKernel, Uint8Array[] | undefined][] = [];
    try {
      const bytes = staging.getMappedRange(0, size);
      for (const [k, at] of plan) {
        const ev = this.#evicted.get(k);
        if (k.gone && ev === undefined) continue;
        const left = k.applyReadback(bytes, at, (l) => this.#deadLetter(l));
        if (ev !== undefined) {
          if (left !== undefined) this.#evict(ev, left);
        } else if (k.state === KernelState.Terminated) {
          exits.push([k, left]);
        }
      }
    } finally {
      staging.unmap();
    }
    for (const [k, left] of exits) {
      this.#leave(k);
      // Left in the ring by a terminate without drain: back into the host lanes, where the
      // handle collects them into the report's `returned`; a message that no longer fits there
      // becomes a dead letter rather than vanish.
      for (const env of left ?? []) {
        if (!k.mem.normal.tryEnqueue(env) && !k.mem.high.tryEnqueue(env)) {
          this.#deadLetter({ from: "host", to: k.id, reason: "KernelGone", envelope: env });
        }
      }
      this.#exits.get(k)?.({ kind: "terminated" });
      this.#exits.delete(k);
    }
    for (const k of this.#releasing) k.destroy();
    this.#releasing.clear();
    return true;
  }

  #evict(ev: Evicted, left: Uint8Array[]): void {
    this.#evicted.delete(ev.kernel);
    for (const env of left) {
      this.#deadLetter({ from: "host", to: ev.kernel.id, reason: ev.reason, envelope: env });
    }
    if (ev.released) this.#releasing.add(ev.kernel);
  }

  #deadLetter(letter: WebGpuDeadLetter): void {
    this.#deadLetters.push(letter);
    while (this.#deadLetters.length > DEAD_LETTER_LIMIT) {
      this.#deadLetters.shift();
      this.#deadLettersDiscarded++;
    }
  }

  #stagingOf(bytes: number): GPUBuffer {
    const want = Math.max(65536, 2 ** Math.ceil(Math.log2(Math.max(1, bytes))));
    if (this.#staging === undefined || this.#staging.size < bytes) {
      if (this.#staging !== undefined) this.#buffers.destroy(this.#staging);
      this.#staging = this.#buffers.create("rk.staging", want, MAP_READ | COPY_DST);
    }
    return this.#staging;
  }

  /** Destroys the pump's own buffers (staging, null ring) at shutdown. */
  destroy(): void {
    if (this.#staging !== undefined) this.#buffers.destroy(this.#staging);
    this.#staging = undefined;
    for (const name of ["ctl", "inMeta", "msgs"] as const) this.#buffers.destroy(this.#null[name]);
  }
}

/**
 * The dispatch order: senders before their destinations (Kahn's algorithm over the routes, ties
 * in launch order), so a chain of sends completes in one submission; kernels on a cycle follow
 * in launch order (a message that goes back up the order is handled in the next round).
 */
export function dispatchOrder(live: readonly GpuKernel[]): GpuKernel[] {
  const indegree = new Map<GpuKernel, number>(live.map((k) => [k, 0]));
  for (const k of live) {
    for (const d of new Set(k.routes)) {
      if (d !== undefined && d !== k) indegree.set(d, indegree.get(d)! + 1);
    }
  }
  const order: GpuKernel[] = [];
  const done = new Set<GpuKernel>();
  for (;;) {
    const next = live.find((k) => !done.has(k) && indegree.get(k) === 0) ??
      live.find((k) => !done.has(k));
    if (next === undefined) break;
    done.add(next);
    order.push(next);
    for (const d of new Set(next.routes)) {
      if (d !== undefined && d !== next) indegree.set(d, indegree.get(d)! - 1);
    }
  }
  return order;
}
