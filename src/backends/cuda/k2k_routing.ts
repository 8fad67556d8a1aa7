/**
 * The host's side of K2K between CUDA kernels (the device side and the layouts are in
 * `k2k_device.ts`): one device-memory arena per runtime holding the route table and every
 * kernel's K2K block, route slots per kernel id, and what a launch, a terminate and a give-up
 * need — the launch arguments, the leftovers of a lane copied back, the delivery histogram.
 *
 * Why an arena allocated once: `cuMemFree` waits for the whole device to go idle (and
 * `cuMemAlloc` may), which persistent kernels never do. So the runtime allocates the arena when
 * it is created, before any kernel runs, and hands out pieces with a first-fit allocator; a
 * launch that finds no room throws `CapacityError` naming `CudaRuntimeOptions.k2kArenaBytes`.
 * Host ↔ device copies and the route-closing kernel go on a non-blocking control stream of the
 * runtime, which never waits for the kernels' streams.
 *
 * Route slots: a kernel id holds one while some live kernel has that id (K2K on) or names it as a
 * send target, so a sender's targets are fixed at its launch and a destination launched, ended or
 * relaunched later is found through the same slot. A slot whose last holder is released (its
 * stream completed) goes back to the free list; its generation counter does not, so a stale
 * sender cache or a late close of an earlier kernel never matches a later one.
 * @module
 */

import type { CudaContext, CudaFunction, CudaStream, DevicePtr } from "../../../ffi/cuda.ts";
import { CapacityError, ErrorCode } from "../../core/errors.ts";
import { MpscQueue } from "../../core/mpsc_queue.ts";
import { initQueueRegion, QueueKind, QueueWord } from "../../core/queue_layout.ts";
import { LatencyHistogram } from "../../runtime/histogram.ts";
import {
  K2K_MAX_GENERATION,
  K2K_NO_ROUTE,
  K2K_NONE,
  K2K_ROUTE_BYTES,
  type K2kArgs,
  type K2kBlockLayout,
  k2kBlockLayout,
  K2kFlag,
} from "./k2k_device.ts";

/** Default bytes of the K2K device arena: room for ~230 kernels of 1024 × 256-byte slots. */
export const K2K_DEFAULT_ARENA_BYTES = 64 * 2 ** 20;
/** Route slots of the table (distinct kernel ids live or named as targets at once). */
export const K2K_ROUTES = 1024;
/**
 * Most slots of a device K2K lane: a kernel launched with a larger input capacity gets a lane of
 * this many (its host lanes keep theirs), so big host queues do not exhaust the arena.
 */
export const K2K_LANE_MAX_SLOTS = 4096;
/** Alignment of the arena's pieces. */
const PIECE_ALIGN = 256;

/**
 * A first-fit allocator of byte ranges `[start, end)` of one allocation, with neighbours merged
 * on free. Sizes are rounded up to 256 bytes.
 */
export class ArenaAllocator {
  readonly #free: { offset: number; bytes: number }[];
  readonly #capacity: number;
  #used = 0;

  /** Manages `[start, end)`; `start` should be 256-aligned. */
  constructor(start: number, end: number) {
    this.#capacity = end - start;
    this.#free = end > start ? [{ offset: start, bytes: end - start }] : [];
  }

  /** Offset of a new range of at least `bytes`, or undefined when none fits. */
  alloc(bytes: number): number | undefined {
    const want = Math.ceil(Math.max(1, bytes) / PIECE_ALIGN) * PIECE_ALIGN;
    const i = this.#free.findIndex((f) => f.bytes >= want);
    if (i < 0) return undefined;
    const f = this.#free[i];
    const offset = f.offset;
    if (f.bytes === want) this.#free.splice(i, 1);
    else this.#free[i] = { offset: f.offset + want, bytes: f.bytes - want };
    this.#used += want;
    return offset;
  }

  /** Returns the range of `bytes` (as given to `alloc`) at `offset`. */
  free(offset: number, bytes: number): void {
    const size = Math.ceil(Math.max(1, bytes) / PIECE_ALIGN) * PIECE_ALIGN;
    const list = this.#free;
    let i = list.findIndex((f) => f.offset > offset);
    if (i < 0) i = list.length;
    list.splice(i, 0, { offset, bytes: size });
    this.#used -= size;
    // Merge with the next, then with the previous.
    if (i + 1 < list.length && list[i].offset + list[i].bytes === list[i + 1].offset) {
      list[i] = { offset: list[i].offset, bytes: list[i].bytes + list[i + 1].bytes };
      list.splice(i + 1, 1);
    }
    if (i > 0 && list[i - 1].offset + list[i - 1].bytes === list[i].offset) {
      list[i - 1] = { offset: list[i - 1].offset, bytes: list[i - 1].bytes + list[i].bytes };
      list.splice(i, 1);
    }
  }

  /** Bytes handed out. */
  get used(): number {
    return this.#used;
  }

  /** Bytes managed. */
  get capacity(): number {
    return this.#capacity;
  }

  /** The largest range `alloc` could return now. */
  get largestFree(): number {
    return this.#free.reduce((m, f) => Math.max(m, f.bytes), 0);
  }
}

/** What {@linkcode DeviceK2k.attach} needs of a launch. */
export interface K2kLaunch {
  /** The kernel id. */
  readonly kernelId: string;
  /** `LaunchOptions.k2k`: reachable and allowed to send. */
  readonly enabled: boolean;
  /** Its send targets by record index (`PersistentSource.k2kTargets`). */
  readonly targets: readonly string[];
  /** The launch's input capacity (its lane gets as many, at most {@linkcode K2K_LANE_MAX_SLOTS}). */
  readonly capacity: number;
  /** Bytes per slot (the region's slot size). */
  readonly slotSize: number;
}

/** One launched kernel's K2K memory and route, from launch until its stream completed. */
export interface K2kAttachment {
  /** The kernel id. */
  readonly kernelId: string;
  /** Its launch arguments (`persistentLaunchArgs`). */
  readonly args: K2kArgs;
  /** Its block's layout (undefined without K2K). */
  readonly layout: K2kBlockLayout | undefined;
}

interface RouteSlot {
  readonly index: number;
  refs: number;
}

interface Attached extends K2kAttachment {
  readonly offset: number;
  readonly slots: readonly string[];
  /** The route-closing entry of the kernel's module (set by the runtime after loading it). */
  closer: CudaFunction | undefined;
  closedByHost: boolean;
  collected: boolean;
  released: boolean;
}

/** Usage figures (for leak checks: they return to their starting values). */
export interface K2kUsage {
  /** Bytes of the arena (the route table included). */
  readonly arenaBytes: number;
  /** Bytes of kernel blocks allocated now. */
  readonly blockBytes: number;
  /** Route slots held now. */
  readonly routeSlots: number;
  /** Attachments not yet released. */
  readonly attachments: number;
}

/**
 * The device side of a runtime's K2K: its arena (route table + kernel blocks) and control
 * stream. Made by `CudaRuntime.create`; every method is called on the runtime's thread.
 */
export class DeviceK2k {
  readonly #ctx: CudaContext;
  readonly #arenaBytes: number;
  readonly #base: DevicePtr;
  readonly #control: CudaStream;
  readonly #arena: ArenaAllocator;
  readonly #slots = new Map<string, RouteSlot>();
  readonly #freeSlots: number[] = [];
  readonly #generations = new Uint16Array(K2K_ROUTES);
  readonly #live = new Set<Attached>();
  #disposed = false;

  private constructor(ctx: CudaContext, arenaBytes: number, base: DevicePtr, control: CudaStream) {
    this.#ctx = ctx;
    this.#arenaBytes = arenaBytes;
    this.#base = base;
    this.#control = control;
    const table = K2K_ROUTES * K2K_ROUTE_BYTES;
    this.#arena = new ArenaAllocator(table, arenaBytes);
    for (let i = K2K_ROUTES - 1; i >= 0; i--) this.#freeSlots.push(i);
  }

  /**
   * Allocates the arena (`arenaBytes`, at least the route table plus one piece) and the control
   * stream, and zeroes the route table. Call it before any kernel of the context runs.
   */
  static create(ctx: CudaContext, arenaBytes: number = K2K_DEFAULT_ARENA_BYTES): DeviceK2k {
    const table = K2K_ROUTES * K2K_ROUTE_BYTES;
    if (!Number.isSafeInteger(arenaBytes) || arenaBytes < table + PIECE_ALIGN) {
      throw new CapacityError(
        ErrorCode.InvalidCapacity,
        `k2kArenaBytes must be an integer of at least ${table + PIECE_ALIGN} (the route table ` +
          `and one kernel), got ${arenaBytes}`,
      );
    }
    const base = ctx.alloc(arenaBytes);
    let control: CudaStream;
    try {
      control = ctx.createStream({ nonBlocking: true });
    } catch (e) {
      ctx.free(base);
      throw e;
    }
    const k2k = new DeviceK2k(ctx, arenaBytes, base, control);
    try {
      k2k.#copyIn(base, new Uint8Array(table));
    } catch (e) {
      k2k.dispose();
      throw e;
    }
    return k2k;
  }

  /** Device address of the route table. */
  get routeTable(): DevicePtr {
    return this.#base;
  }

  #copyIn(dst: DevicePtr, bytes: Uint8Array): void {
    this.#ctx.copyHtoDAsync(dst, bytes, this.#control);
    this.#ctx.synchronizeStream(this.#control);
  }

  #copyOut(dst: Uint8Array, src: DevicePtr): void {
    this.#ctx.copyDtoHAsync(dst, src, this.#control);
    this.#ctx.synchronizeStream(this.#control);
  }

  #acquireSlot(id: string): RouteSlot {
    let s = this.#slots.get(id);
    if (s === undefined) {
      const index = this.#freeSlots.pop();
      if (index === undefined) {
        throw new CapacityError(
          ErrorCode.InvalidCapacity,
          `K2K route table full: ${K2K_ROUTES} kernel ids are live or named as send targets`,
        );
      }
      s = { index, refs: 0 };
      this.#slots.set(id, s);
    }
    s.refs++;
    return s;
  }

  #releaseSlot(id: string): void {
    const s = this.#slots.get(id);
    if (s === undefined) return;
    if (--s.refs === 0) {
      this.#slots.delete(id);
      this.#freeSlots.push(s.index);
    }
  }

  /**
   * Reserves a kernel's K2K block and route slots and initialises the block (target slots, an
   * empty histogram, the lane's header and sequence words). A kernel launched with K2K off gets
   * {@linkcode K2K_NONE}: unreachable, and each of its sends is `NotFound`.
   *
   * @throws {CapacityError} when the arena or the route table is full
   */
  attach(l: K2kLaunch): K2kAttachment {
    if (this.#disposed || !l.enabled) {
      return { kernelId: l.kernelId, args: K2K_NONE, layout: undefined };
    }
    const capacity = Math.min(l.capacity, K2K_LANE_MAX_SLOTS);
    const layout = k2kBlockLayout(l.targets.length, true, capacity, l.slotSize);
    const offset = this.#arena.alloc(layout.byteLength);
    if (offset === undefined) {
      throw new CapacityError(
        ErrorCode.InvalidCapacity,
        `kernel ${l.kernelId}: its K2K lane needs ${layout.byteLength} bytes of device memory, ` +
          `the K2K arena has ${this.#arena.largestFree} free in one piece (of ` +
          `${this.#arenaBytes}); raise CudaRuntimeOptions.k2kArenaBytes or lower the input capacity`,
      );
    }
    const held: string[] = [];
    try {
      const self = this.#acquireSlot(l.kernelId);
      held.push(l.kernelId);
      const targetSlots = l.targets.map((dest) => {
        const s = this.#acquireSlot(dest);
        held.push(dest);
        return s.index;
      });
      const init = new ArrayBuffer(layout.lane + layout.laneBytes);
      new Uint32Array(init, layout.targets, Math.max(1, targetSlots.length)).set(
        targetSlots.length > 0 ? targetSlots : [K2K_NO_ROUTE],
      );
      initQueueRegion(init, layout.lane, QueueKind.Mpsc, {
        capacity,
        slotSize: l.slotSize,
      });
      const at = this.#base + BigInt(offset);
      this.#copyIn(at, new Uint8Array(init, 0, layout.initBytes));
      const generation = (this.#generations[self.index] % K2K_MAX_GENERATION) + 1;
      this.#generations[self.index] = generation;
      const a: Attached = {
        kernelId: l.kernelId,
        layout,
        offset,
        slots: held,
        closer: undefined,
        closedByHost: false,
        collected: false,
        released: false,
        args: {
          routes: this.#base,
          targets: at + BigInt(layout.targets),
          lane: at + BigInt(layout.lane),
          stamps: at + BigInt(layout.stamps),
          histogram: at + BigInt(layout.histogram),
          self: self.index,
          generation,
          capacity,
          flags: K2kFlag.Enabled,
        },
      };
      this.#live.add(a);
      return a;
    } catch (e) {
      for (const id of held) this.#releaseSlot(id);
      this.#arena.free(offset, layout.byteLength);
      throw e;
    }
  }

  /** Gives the attachment the route-closing entry of its kernel's module. */
  setCloser(a: K2kAttachment, closer: CudaFunction): void {
    const x = a as Attached;
    if (this.#live.has(x)) x.closer = closer;
  }

  /**
   * Closes the kernel's route from the host (for a kernel the runtime gave up on, or before its
   * leftovers are collected): senders get `NotFound` from then on, and once this returns none is
   * inside. A no-op when the route was closed already or moved on to a later launch.
   */
  closeRoute(a: K2kAttachment): void {
    const x = a as Attached;
    if (!this.#live.has(x) || x.closedByHost || x.closer === undefined) return;
    if (this.#ctx.faulted !== undefined || this.#ctx.isClosed) return;
    x.closedByHost = true;
    this.#ctx.launch(x.closer, 1, 32, 0, this.#control, [
      { ptr: this.#base },
      { u32: x.args.self },
      { u32: x.args.generation },
    ]);
    this.#ctx.synchronizeStream(this.#control);
  }

  /**
   * The envelopes left in the kernel's lane (oldest first), copied back once after it ended (its
   * route closed first). Empty when the context faulted: device memory is lost with it.
   */
  leftovers(a: K2kAttachment): Uint8Array[] {
    const x = a as Attached;
    if (!this.#live.has(x) || x.collected || x.layout === undefined) return [];
    x.collected = true;
    if (this.#ctx.faulted !== undefined || this.#ctx.isClosed) return [];
    try {
      this.closeRoute(x);
      const layout = x.layout;
      const lane = new Uint8Array(layout.laneBytes);
      const at = this.#base + BigInt(x.offset + layout.lane);
      const header = lane.subarray(0, 512);
      this.#copyOut(header, at);
      const words = new Int32Array(lane.buffer, 0, 128);
      if (words[QueueWord.head] === words[QueueWord.tail]) return [];
      this.#copyOut(lane, at);
      return new MpscQueue(lane.buffer, 0).dequeueMany(Infinity);
    } catch {
      // A fault meanwhile: the device memory went with the context.
      return [];
    }
  }

  /** A copy of the kernel's delivery-latency histogram (undefined without a lane). */
  histogram(a: K2kAttachment): LatencyHistogram | undefined {
    const x = a as Attached;
    if (!this.#live.has(x) || x.layout === undefined) return undefined;
    const bytes = new Uint8Array(LatencyHistogram.byteLength);
    this.#copyOut(bytes, this.#base + BigInt(x.offset + x.layout.histogram));
    return new LatencyHistogram(bytes.buffer);
  }

  /** Frees the attachment's block and route slots. Call once its kernel's stream completed. */
  release(a: K2kAttachment): void {
    const x = a as Attached;
    if (!this.#live.delete(x) || x.layout === undefined) return;
    x.released = true;
    this.#arena.free(x.offset, x.layout.byteLength);
    for (const id of x.slots) this.#releaseSlot(id);
  }

  /** What is allocated now. */
  usage(): K2kUsage {
    return {
      arenaBytes: this.#arenaBytes,
      blockBytes: this.#arena.used,
      routeSlots: this.#slots.size,
      attachments: this.#live.size,
    };
  }

  /** Frees the arena and the control stream (at shutdown, once every kernel ended). Idempotent. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    const ctx = this.#ctx;
    if (ctx.faulted !== undefined || ctx.isClosed) return; // closing the context frees them
    try {
      ctx.destroyStream(this.#control);
      ctx.free(this.#base);
    } catch {
      // A fault meanwhile: the context frees them when it closes.
    }
  }
}
