/**
 * Hybrid logical clocks (Kulkarni, Demirbas et al., "Logical Physical Clocks and Consistent
 * Snapshots in Globally Distributed Databases", 2014).
 *
 * A timestamp is (physical ms, logical counter, node id), totally ordered in that order. The
 * physical and logical parts pack into one 64-bit word, `physical * 2^16 + logical`, so that a
 * clock shared between threads (or between host and GPU) advances with a single-word
 * compare-and-swap, and so that WGSL, which has no 64-bit integers, reads it as two u32 words
 * `(lo, hi)` that compare as `hi` first, then `lo`.
 *
 * @example
 * ```ts
 * import { HlcClock } from "@ringkernel/core";
 * const a = new HlcClock(1);
 * const b = new HlcClock(2);
 * const sent = a.tick();
 * const received = b.update(sent);
 * console.log(sent < received); // true: valueOf gives a totally ordered primitive
 * ```
 * @module
 */

import { ClockSkewError, ValidationError } from "./errors.ts";
import { ErrorCode } from "./errors.ts";

/** Bits of the packed word given to the logical counter. */
export const HLC_LOGICAL_BITS = 16;
/** Largest logical counter value; one more carries into the physical part. */
export const HLC_LOGICAL_MAX = 0xffff;
/** Largest physical time that packs: 2^48 - 1 ms (the year 10889). */
export const HLC_PHYSICAL_MAX = 2 ** 48 - 1;
/** Bytes an {@linkcode HlcTimestamp} occupies when packed: word lo, word hi, node id (u32 each). */
export const HLC_BYTES = 12;

const TWO_16 = 0x10000;

function checkUint(name: string, value: number, max: number): void {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new ValidationError(
      ErrorCode.InvalidArgument,
      `HlcTimestamp ${name} must be an integer in [0, ${max}], got ${value}`,
    );
  }
}

// Set only around constructions whose parts the clocks already keep in range, so the hot
// tick path skips re-validating them.
let trusted = false;

function issue(physical: number, logical: number, nodeId: number): HlcTimestamp {
  trusted = true;
  const ts = new HlcTimestamp(physical, logical, nodeId);
  trusted = false;
  return ts;
}

function issueFromWord(word: bigint, nodeId: number): HlcTimestamp {
  return issue(Number(word >> 16n), Number(word & 0xffffn), nodeId);
}

/** An immutable hybrid logical timestamp. */
export class HlcTimestamp {
  /** Physical component: milliseconds since the Unix epoch (48 bits). */
  readonly physical: number;
  /** Logical counter that orders events within one physical millisecond (16 bits). */
  readonly logical: number;
  /** Id of the node that produced the timestamp; breaks ties between nodes (32 bits). */
  readonly nodeId: number;

  /** Creates a timestamp; every part is range-checked. */
  constructor(physical: number, logical: number, nodeId: number) {
    if (!trusted) {
      checkUint("physical", physical, HLC_PHYSICAL_MAX);
      checkUint("logical", logical, HLC_LOGICAL_MAX);
      checkUint("nodeId", nodeId, 0xffff_ffff);
    }
    this.physical = physical;
    this.logical = logical;
    this.nodeId = nodeId;
  }

  /** The smallest timestamp of a node: (0, 0, nodeId). */
  static zero(nodeId = 0): HlcTimestamp {
    return new HlcTimestamp(0, 0, nodeId);
  }

  /** Negative, zero or positive as `this` orders before, equal to, or after `other`. */
  compare(other: HlcTimestamp): number {
    return (this.physical - other.physical) || (this.logical - other.logical) ||
      (this.nodeId - other.nodeId);
  }

  /** True when all three parts are equal. */
  equals(other: HlcTimestamp): boolean {
    return this.physical === other.physical && this.logical === other.logical &&
      this.nodeId === other.nodeId;
  }

  /**
   * A bigint that orders exactly as {@linkcode compare}, so `a < b` works on timestamps.
   * (A number cannot hold 96 bits exactly; relational operators compare bigints fine.)
   */
  valueOf(): bigint {
    return (BigInt(this.physical) << 48n) | (BigInt(this.logical) << 32n) | BigInt(this.nodeId);
  }

  /** The packed 64-bit word `physical * 2^16 + logical` (no node id). */
  toWord(): bigint {
    return (BigInt(this.physical) << 16n) | BigInt(this.logical);
  }

  /** Builds a timestamp from a packed word and a node id. */
  static fromWord(word: bigint, nodeId: number): HlcTimestamp {
    return new HlcTimestamp(Number(word >> 16n), Number(word & 0xffffn), nodeId);
  }

  /** The packed word as two u32 words `[lo, hi]`, the form WGSL reads. */
  toWords(): [lo: number, hi: number] {
    const lo = ((this.physical % TWO_16) * TWO_16 + this.logical) >>> 0;
    const hi = Math.floor(this.physical / TWO_16) >>> 0;
    return [lo, hi];
  }

  /** Builds a timestamp from the two u32 words of {@linkcode toWords}. */
  static fromWords(lo: number, hi: number, nodeId: number): HlcTimestamp {
    return new HlcTimestamp(hi * TWO_16 + (lo >>> 16), lo & 0xffff, nodeId);
  }

  /** Writes {@linkcode HLC_BYTES} little-endian bytes: word lo, word hi, node id. */
  writeTo(view: DataView, offset: number): void {
    const [lo, hi] = this.toWords();
    view.setUint32(offset, lo, true);
    view.setUint32(offset + 4, hi, true);
    view.setUint32(offset + 8, this.nodeId, true);
  }

  /** Reads a timestamp written by {@linkcode writeTo}. */
  static readFrom(view: DataView, offset: number): HlcTimestamp {
    const lo = view.getUint32(offset, true);
    const hi = view.getUint32(offset + 4, true);
    return HlcTimestamp.fromWords(lo, hi, view.getUint32(offset + 8, true));
  }

  /** The {@linkcode HLC_BYTES}-byte packed form. */
  toBytes(): Uint8Array {
    const bytes = new Uint8Array(HLC_BYTES);
    this.writeTo(new DataView(bytes.buffer), 0);
    return bytes;
  }

  /** Reads the packed form produced by {@linkcode toBytes}. */
  static fromBytes(bytes: Uint8Array): HlcTimestamp {
    if (bytes.byteLength < HLC_BYTES) {
      throw new ValidationError(
        ErrorCode.InvalidArgument,
        `HLC timestamp needs ${HLC_BYTES} bytes, got ${bytes.byteLength}`,
      );
    }
    return HlcTimestamp.readFrom(new DataView(bytes.buffer, bytes.byteOffset, HLC_BYTES), 0);
  }

  /** `physical.logical@nodeId`, for logs. */
  toString(): string {
    return `${this.physical}.${this.logical}@${this.nodeId}`;
  }
}

/** Options of {@linkcode HlcClock} and {@linkcode SharedHlcClock}. */
export interface HlcClockOptions {
  /** Physical clock in ms since the epoch; defaults to `Date.now`. Injected for tests. */
  now?: () => number;
  /** Largest allowed lead of a remote physical time over local physical time. Default 60,000. */
  maxDriftMs?: number;
}

const DEFAULT_MAX_DRIFT_MS = 60_000;

function checkNodeId(nodeId: number): void {
  checkUint("nodeId", nodeId, 0xffff_ffff);
}

function checkDrift(maxDriftMs: number): void {
  if (!(maxDriftMs >= 0)) {
    throw new ValidationError(
      ErrorCode.InvalidArgument,
      `maxDriftMs must be a non-negative number, got ${maxDriftMs}`,
    );
  }
}

/**
 * A hybrid logical clock owned by one thread.
 *
 * `tick()` stamps a local or send event; `update(remote)` stamps a receive event. Both follow
 * Kulkarni et al. 2014 (Fig. 5). When the logical counter would pass 16 bits it carries into the
 * physical part, exactly as the packed word does, so the clock stays monotonic under any load and
 * when the wall clock steps backwards.
 */
export class HlcClock {
  /** This clock's node id, stamped into every timestamp it issues. */
  readonly nodeId: number;
  /** Largest allowed lead of a remote physical time over local physical time, in ms. */
  readonly maxDriftMs: number;
  #now: () => number;
  #l = 0;
  #c = 0;

  /** Creates a clock for `nodeId` (u32). */
  constructor(nodeId: number, options: HlcClockOptions = {}) {
    checkNodeId(nodeId);
    this.nodeId = nodeId;
    this.maxDriftMs = options.maxDriftMs ?? DEFAULT_MAX_DRIFT_MS;
    checkDrift(this.maxDriftMs);
    this.#now = options.now ?? Date.now;
  }

  /** The last timestamp issued (or zero before the first). Does not advance the clock. */
  current(): HlcTimestamp {
    return issue(this.#l, this.#c, this.nodeId);
  }

  /** Stamps a local or send event: strictly greater than every timestamp issued before. */
  tick(): HlcTimestamp {
    const pt = this.#now();
    if (pt > this.#l) {
      this.#l = pt;
      this.#c = 0;
    } else if (this.#c < HLC_LOGICAL_MAX) {
      this.#c++;
    } else {
      this.#l++;
      this.#c = 0;
    }
    return issue(this.#l, this.#c, this.nodeId);
  }

  /**
   * Stamps the receipt of `remote`: the result is greater than both `remote` and every timestamp
   * this clock issued before. Throws {@linkcode ClockSkewError} (leaving the clock unchanged) when
   * `remote.physical` leads local physical time by more than `maxDriftMs`.
   */
  update(remote: HlcTimestamp): HlcTimestamp {
    const pt = this.#now();
    const drift = remote.physical - pt;
    if (drift > this.maxDriftMs) throw new ClockSkewError(drift, this.maxDriftMs);
    const lOld = this.#l;
    const lm = remote.physical;
    const l = Math.max(lOld, lm, pt);
    let c: number;
    if (l === lOld && l === lm) c = Math.max(this.#c, remote.logical) + 1;
    else if (l === lOld) c = this.#c + 1;
    else if (l === lm) c = remote.logical + 1;
    else c = 0;
    this.#l = l;
    this.#c = c;
    if (c > HLC_LOGICAL_MAX) {
      this.#l = l + 1;
      this.#c = 0;
    }
    return issue(this.#l, this.#c, this.nodeId);
  }
}

/** Bytes a {@linkcode SharedHlcClock} needs in its shared buffer (one 64-bit word). */
export const SHARED_HLC_BYTES = 8;

/**
 * A hybrid logical clock whose state is one 64-bit word in a SharedArrayBuffer, advanced by
 * compare-and-swap, so any number of workers (each with its own node id) tick it concurrently and
 * never receive the same (physical, logical) pair. The word layout matches the HLC word of the
 * control block, so the same state can live in memory a GPU kernel also updates.
 *
 * @example
 * ```ts
 * import { SharedHlcClock } from "@ringkernel/core";
 * const sab = new SharedArrayBuffer(8);
 * const clock = new SharedHlcClock(sab, 0, 7); // pass `sab` to workers, each with its node id
 * console.log(clock.tick().toString());
 * ```
 */
export class SharedHlcClock {
  /** This handle's node id, stamped into every timestamp it issues. */
  readonly nodeId: number;
  /** Largest allowed lead of a remote physical time over local physical time, in ms. */
  readonly maxDriftMs: number;
  #word: BigUint64Array;
  #now: () => number;

  /**
   * Opens the clock word at `byteOffset` (8-byte aligned) of `buffer`. A zeroed word is a valid
   * initial state; all handles on one word share the clock.
   */
  constructor(
    buffer: SharedArrayBuffer | ArrayBuffer,
    byteOffset: number,
    nodeId: number,
    options: HlcClockOptions = {},
  ) {
    checkNodeId(nodeId);
    if (byteOffset % 8 !== 0 || byteOffset < 0 || byteOffset + 8 > buffer.byteLength) {
      throw new ValidationError(
        ErrorCode.InvalidLayout,
        `SharedHlcClock needs 8 aligned bytes at offset ${byteOffset} of a ${buffer.byteLength}-byte buffer`,
      );
    }
    this.nodeId = nodeId;
    this.maxDriftMs = options.maxDriftMs ?? DEFAULT_MAX_DRIFT_MS;
    checkDrift(this.maxDriftMs);
    this.#now = options.now ?? Date.now;
    this.#word = new BigUint64Array(buffer, byteOffset, 1);
  }

  /** The current shared state, stamped with this handle's node id. Does not advance the clock. */
  current(): HlcTimestamp {
    return issueFromWord(Atomics.load(this.#word, 0), this.nodeId);
  }

  /** Stamps a local or send event; unique across every handle on the same word. */
  tick(): HlcTimestamp {
    for (;;) {
      const old = Atomics.load(this.#word, 0);
      const pt = BigInt(this.#now()) << 16n;
      // old + 1 carries a full logical counter into the physical part by itself.
      const next = pt > old ? pt : old + 1n;
      if (Atomics.compareExchange(this.#word, 0, old, next) === old) {
        return issueFromWord(next, this.nodeId);
      }
    }
  }

  /** Stamps the receipt of `remote`, as {@linkcode HlcClock.update}, with one CAS per attempt. */
  update(remote: HlcTimestamp): HlcTimestamp {
    return issueFromWord(this.#merge(remote.physical, remote.toWord()), this.nodeId);
  }

  /**
   * {@linkcode update} for a remote timestamp given as the two u32 words of
   * {@linkcode HlcTimestamp.toWords} (as an envelope holds them), without building or issuing
   * timestamp objects: a kernel does this for every message it takes.
   */
  updateFromWords(lo: number, hi: number): void {
    this.#merge(hi * TWO_16 + (lo >>> 16), (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0));
  }

  /** The CAS loop of `update`: merges remote word `rw` (physical part `remotePhysical`). */
  #merge(remotePhysical: number, rw: bigint): bigint {
    const ptMs = this.#now();
    const drift = remotePhysical - ptMs;
    if (drift > this.maxDriftMs) throw new ClockSkewError(drift, this.maxDriftMs);
    const pt = BigInt(ptMs) << 16n;
    // Physical parts compared as numbers (48 bits are exact): fewer bigint operations per call.
    for (;;) {
      const old = Atomics.load(this.#word, 0);
      const oPhys = Number(old >> 16n);
      let next: bigint;
      if (ptMs > oPhys && ptMs > remotePhysical) next = pt;
      else if (oPhys === remotePhysical) next = (old > rw ? old : rw) + 1n;
      else if (oPhys > remotePhysical) next = old + 1n;
      else next = rw + 1n;
      if (Atomics.compareExchange(this.#word, 0, old, next) === old) return next;
    }
  }
}
