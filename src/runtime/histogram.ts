/**
 * A fixed-memory log-linear latency histogram (HdrHistogram-style) that can live in a
 * SharedArrayBuffer, so a kernel's worker records and the host reads the same memory.
 *
 * Values are nanoseconds, quantised to quarter nanoseconds. Below 16 ns buckets are linear
 * (0.25 ns wide); above, every power of two is split into 32 equal sub-buckets, up to 2^38 ns
 * (about 274.9 s). A percentile is reported as the midpoint of the bucket holding the exact
 * nearest-rank sample, clamped to the exact `[min, max]`, so for any sample `v` in
 * `[8 ns, 2^38 ns]` the reported value is within `v / 64` (1.5625 %) of it; below 8 ns within
 * 0.125 ns. See docs/telemetry.md for the layout and the consistency rules.
 * @module
 */

import { ErrorCode, ValidationError } from "../core/errors.ts";

/** Sub-buckets per power of two (2^SUB_BITS). */
const SUB_BITS = 5;
const SUB_COUNT = 1 << SUB_BITS;
/** Units per nanosecond: quantising to 1/4 ns keeps values from 8 ns up inside the bound. */
const UNITS_PER_NS = 4;
/** Unit values at or above this land in the top bucket (2^40 units = 2^38 ns). */
const TOP_EXPONENT = 40;
const MAX_UNITS = 2 ** TOP_EXPONENT - 1;
/** Linear region [0, 2·SUB_COUNT) units, then octaves 2^6 .. 2^39 units of SUB_COUNT each. */
const BUCKETS = (TOP_EXPONENT - SUB_BITS + 1) * SUB_COUNT;
const TWO_32 = 0x1_0000_0000;

/** Byte offsets inside a histogram region. */
const OFF = { min: 0, max: 8, sum: 16, countLo: 24, countHi: 28, buckets: 32 } as const;
/** u32 word index of bucket 0's low word; bucket i is words (B0 + 2i, B0 + 2i + 1). */
const B0 = OFF.buckets / 4;

/** 2^k for k in [0, 64), so bucketing divides by a table entry and never calls Math.pow. */
const POW2 = new Float64Array(64).map((_, k) => 2 ** k);

/** The summary of a histogram that metrics carry (all times in nanoseconds). */
export interface LatencySummary {
  /** Median (nearest rank), or NaN when empty. */
  readonly p50Ns: number;
  /** 99th percentile (nearest rank), or NaN when empty. */
  readonly p99Ns: number;
  /** Arithmetic mean, or NaN when empty. */
  readonly meanNs: number;
  /** Sum of all recorded values (for a Prometheus summary's `_sum`). */
  readonly sumNs: number;
  /** Number of recorded values. */
  readonly count: number;
  /** Largest recorded value (exact), or NaN when empty. */
  readonly maxNs: number;
}

/** Bucket index of a non-negative value already quantised to whole units. */
function bucketOf(units: number): number {
  if (units < 2 * SUB_COUNT) return units;
  if (units > MAX_UNITS) units = MAX_UNITS;
  const e = units < TWO_32 ? 31 - Math.clz32(units) : 63 - Math.clz32(Math.floor(units / TWO_32));
  const shift = e - SUB_BITS;
  return shift * SUB_COUNT + Math.floor(units / POW2[shift]);
}

/** Lowest unit value of bucket `i` and its width in units. */
function bucketLow(i: number): number {
  if (i < 2 * SUB_COUNT) return i;
  const shift = Math.floor(i / SUB_COUNT) - 1;
  return (i - shift * SUB_COUNT) * POW2[shift];
}

function bucketWidth(i: number): number {
  return i < 2 * SUB_COUNT ? 1 : POW2[Math.floor(i / SUB_COUNT) - 1];
}

/**
 * A log-linear latency histogram over a fixed {@linkcode LatencyHistogram.byteLength}-byte
 * region. `record` is O(1) and allocates nothing.
 *
 * Consistency: bucket and total counts are 64-bit counters kept as u32 pairs bumped with
 * `Atomics.add` (a carry into the high word when the low word wraps), so any number of writers
 * never lose a count. `min`, `max` and `sum` are plain float64 stores (tear-free, as aligned
 * typed-array accesses are), exact with one writer and best-effort with several. A reader racing
 * a writer may see a value counted in its bucket but not yet in `count`, `sum` or `max`; every
 * read is approximate by design, never torn.
 *
 * @example
 * ```ts
 * import { LatencyHistogram } from "@ringkernel/core";
 * const sab = new SharedArrayBuffer(LatencyHistogram.byteLength);
 * const writer = new LatencyHistogram(sab); // in the kernel's worker
 * const reader = new LatencyHistogram(sab); // on the host
 * for (const ns of [1200, 1500, 900, 250_000]) writer.record(ns);
 * console.log(reader.count, reader.percentile(50), reader.percentile(99)); // 4 1200 250000
 * ```
 */
export class LatencyHistogram {
  /** Bytes one histogram occupies: 32 header bytes and 1152 buckets of two u32 words. */
  static readonly byteLength: number = OFF.buckets + BUCKETS * 8;
  /** Required alignment of the region's byte offset (float64 header). */
  static readonly byteAlignment = 8;
  /** Number of buckets. */
  static readonly bucketCount: number = BUCKETS;
  /** Largest value with the stated error bound (2^38 ns ≈ 274.9 s); larger values are clamped. */
  static readonly maxTrackableNs: number = 2 ** TOP_EXPONENT / UNITS_PER_NS;
  /** Bound on |percentile − exact| / exact for exact values from 8 ns to maxTrackableNs. */
  static readonly relativeError: number = 1 / (2 * SUB_COUNT);

  /** The memory the histogram lives in (share it to read from another thread). */
  readonly buffer: ArrayBufferLike;
  /** Byte offset of the histogram inside {@linkcode buffer}. */
  readonly byteOffset: number;
  readonly #u32: Uint32Array;
  readonly #f64: Float64Array;

  /**
   * Views a histogram over `buffer` at `byteOffset` (8-byte aligned, `byteLength` bytes). The
   * memory is not cleared: all-zero bytes are an empty histogram, so a fresh SharedArrayBuffer
   * needs no formatting, and a second view over the same bytes sees the same counts. Without a
   * buffer it allocates its own (non-shared) memory.
   */
  constructor(buffer?: ArrayBufferLike, byteOffset = 0) {
    const len = LatencyHistogram.byteLength;
    const mem = buffer ?? new ArrayBuffer(len);
    if (!Number.isSafeInteger(byteOffset) || byteOffset < 0 || byteOffset % 8 !== 0) {
      throw new ValidationError(
        ErrorCode.Misaligned,
        `histogram byteOffset must be a non-negative multiple of 8, got ${byteOffset}`,
      );
    }
    if (byteOffset + len > mem.byteLength) {
      throw new ValidationError(
        ErrorCode.InvalidLayout,
        `histogram needs ${len} bytes at offset ${byteOffset}, buffer has ${mem.byteLength}`,
      );
    }
    this.buffer = mem;
    this.byteOffset = byteOffset;
    this.#u32 = new Uint32Array(mem, byteOffset, len / 4);
    this.#f64 = new Float64Array(mem, byteOffset, OFF.buckets / 8);
  }

  /** A histogram over a fresh SharedArrayBuffer of its own. */
  static shared(): LatencyHistogram {
    return new LatencyHistogram(new SharedArrayBuffer(LatencyHistogram.byteLength));
  }

  /**
   * Records one value in nanoseconds: O(1), no allocation. Values above
   * {@linkcode maxTrackableNs} count in the top bucket (min, max and sum stay exact).
   * @throws {ValidationError} `E_INVALID_ARGUMENT` for NaN, infinities and negatives: a negative
   * latency means two clocks were mixed (each worker's `performance.now()` has its own origin),
   * and hiding that would make every percentile quietly wrong.
   */
  record(ns: number): void {
    if (!(ns >= 0 && ns < Infinity)) {
      throw new ValidationError(
        ErrorCode.InvalidArgument,
        `latency must be a finite non-negative number of ns, got ${ns}`,
      );
    }
    const u = this.#u32;
    const f = this.#f64;
    // Bucket first, count last: a racing reader then sees count <= the bucket total, never a
    // count whose value it cannot find.
    add64(u, B0 + 2 * bucketOf(Math.floor(ns * UNITS_PER_NS)), 1);
    const empty = Atomics.load(u, OFF.countLo / 4) === 0 && Atomics.load(u, OFF.countHi / 4) === 0;
    if (empty || ns < f[0]) f[0] = ns;
    if (empty || ns > f[1]) f[1] = ns;
    f[2] = empty ? ns : f[2] + ns;
    add64(u, OFF.countLo / 4, 1);
  }

  /** Records every value of `values[from..to)` (see {@linkcode record}). */
  recordMany(values: ArrayLike<number>, from = 0, to: number = values.length): void {
    for (let i = from; i < to; i++) this.record(values[i]);
  }

  /** Number of recorded values. */
  get count(): number {
    return read64(this.#u32, OFF.countLo / 4);
  }

  /** Smallest recorded value (exact), or NaN when empty. */
  get min(): number {
    return this.count === 0 ? NaN : this.#f64[0];
  }

  /** Largest recorded value (exact), or NaN when empty. */
  get max(): number {
    return this.count === 0 ? NaN : this.#f64[1];
  }

  /** Sum of recorded values (0 when empty). */
  get sum(): number {
    return this.count === 0 ? 0 : this.#f64[2];
  }

  /** Arithmetic mean, or NaN when empty. */
  get mean(): number {
    const n = this.count;
    return n === 0 ? NaN : this.#f64[2] / n;
  }

  /**
   * The `p`-th percentile (0..100) by nearest rank: the value of the ⌈p/100 · n⌉-th smallest
   * sample (the 1st for p = 0), to within {@linkcode relativeError}; exact for the smallest and
   * largest sample. NaN when empty.
   */
  percentile(p: number): number {
    if (!(p >= 0 && p <= 100)) {
      throw new ValidationError(ErrorCode.InvalidArgument, `percentile must be in [0, 100]: ${p}`);
    }
    const u = this.#u32;
    // Rank against the bucket total, not `count`: the scan then always finds the rank even
    // while a writer is between its bucket and count updates.
    let total = 0;
    for (let i = 0; i < BUCKETS; i++) total += read64(u, B0 + 2 * i);
    if (total === 0) return NaN;
    const rank = Math.max(1, Math.ceil((p / 100) * total));
    const min = this.#f64[0];
    const max = this.#f64[1];
    if (rank === 1) return min;
    if (rank === total) return max;
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += read64(u, B0 + 2 * i);
      if (seen >= rank) {
        const mid = (bucketLow(i) + bucketWidth(i) / 2) / UNITS_PER_NS;
        return Math.min(max, Math.max(min, mid));
      }
    }
    return max; // a bucket shrank under a concurrent reset
  }

  /** p50, p99, mean, sum, count and max in one object. */
  summary(): LatencySummary {
    return {
      p50Ns: this.percentile(50),
      p99Ns: this.percentile(99),
      meanNs: this.mean,
      sumNs: this.sum,
      count: this.count,
      maxNs: this.max,
    };
  }

  /** Count of bucket `i` (0 ≤ i < bucketCount); for exporters and tests. */
  bucketCountAt(i: number): number {
    return read64(this.#u32, B0 + 2 * i);
  }

  /** The `[low, high)` nanosecond range bucket `i` covers (the top bucket also holds overflow). */
  static bucketRangeNs(i: number): readonly [number, number] {
    const low = bucketLow(i);
    return [low / UNITS_PER_NS, (low + bucketWidth(i)) / UNITS_PER_NS];
  }

  /** Empties the histogram. Call it from the writer, or while no one records. */
  reset(): void {
    const u = this.#u32;
    for (let i = 0; i < u.length; i++) Atomics.store(u, i, 0);
  }

  /**
   * Adds every value recorded in `other` (which may live in another buffer) to this histogram,
   * as if they had been recorded here. `this` follows the writer rules of {@linkcode record}.
   */
  merge(other: LatencyHistogram): void {
    const n = other.count;
    if (n === 0) return;
    const u = this.#u32;
    const f = this.#f64;
    for (let i = 0; i < BUCKETS; i++) {
      const c = other.bucketCountAt(i);
      if (c !== 0) add64(u, B0 + 2 * i, c);
    }
    const empty = this.count === 0;
    const omin = other.min;
    const omax = other.max;
    if (empty || omin < f[0]) f[0] = omin;
    if (empty || omax > f[1]) f[1] = omax;
    f[2] = empty ? other.sum : f[2] + other.sum;
    add64(u, OFF.countLo / 4, n);
  }
}

/** Adds `n` (a safe integer) to the u32 pair at word `lo`, carrying into the high word. */
function add64(u: Uint32Array, lo: number, n: number): void {
  if (n === 1) {
    // The fast path: exactly one adder sees the low word wrap, so exactly one carry happens.
    if (Atomics.add(u, lo, 1) === 0xffff_ffff) Atomics.add(u, lo + 1, 1);
    return;
  }
  const nLo = n % TWO_32;
  const before = Atomics.add(u, lo, nLo);
  const carry = before + nLo >= TWO_32 ? 1 : 0;
  const hi = Math.floor(n / TWO_32) + carry;
  if (hi !== 0) Atomics.add(u, lo + 1, hi);
}

/** Reads the u32 pair at word `lo` as a number (hi, lo, hi: retries if the high word moved). */
function read64(u: Uint32Array, lo: number): number {
  for (;;) {
    const hi = Atomics.load(u, lo + 1);
    const low = Atomics.load(u, lo);
    if (Atomics.load(u, lo + 1) === hi) return hi * TWO_32 + low;
  }
}
